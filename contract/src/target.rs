//! Targets as data: what a model predicts, written in the experiment (`[[label]]`, unfitted) and
//! in the card (`target`, fitted: α and the class names). Several targets per experiment are
//! allowed (e.g. direction at 10 and 50 rows); each model is trained once per target it names.
//!
//! Values: every target has a value per sample row (`flowcast_datasets::labels`: a relative
//! change for the smoothed kinds, a log return for the horizon kinds); the direction classes are
//! that value against ±α; a regression target predicts the value itself, in basis points
//! (value × 10⁴).

use flowcast_datasets::labels::{AlphaRule, LabelConfig, SmoothRef, Target};
use serde::{Deserialize, Serialize};

/// The three direction classes in class-index order (label −1, 0, +1).
pub const DIRECTION_CLASSES: [&str; 3] = ["down", "stationary", "up"];

/// Basis points per unit of a target value.
pub const BPS: f64 = 1e4;

/// Which label formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// Mean of the next k mids vs the current mid.
    Smoothed,
    /// Mean of the next k mids vs the mean of the past k.
    SmoothedPast,
    /// Mid log return over h rows.
    Events,
    /// Mid log return over a clock duration.
    Clock,
}

/// What the model outputs for a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// k-class direction (down / stationary / up by ±α): class probabilities.
    #[default]
    Direction,
    /// The target value itself, in bps (the seeds' "expected magnitude").
    Regression,
}

/// Class threshold: a number or `"balanced_on_train"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AlphaSpec {
    Fixed(f64),
    Rule(String),
}

fn default_alpha() -> AlphaSpec {
    AlphaSpec::Rule("balanced_on_train".into())
}

/// One target as the experiment writes it (`[label]` or each `[[label]]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Name of the target in the run (default: the label's column stem, e.g. `smooth_k10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `smoothed`, `smoothed_past`, `events`, `clock`.
    pub kind: LabelKind,
    /// k or h in rows (smoothed, smoothed_past, events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<usize>,
    /// Clock horizon, e.g. "1s", "500ms" (clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Class threshold: `"balanced_on_train"` (1/3 quantile of |value| on train) or a number.
    #[serde(default = "default_alpha")]
    pub alpha: AlphaSpec,
    /// `direction` (default) or `regression`.
    #[serde(default, skip_serializing_if = "is_direction")]
    pub output: OutputKind,
}

fn is_direction(o: &OutputKind) -> bool {
    *o == OutputKind::Direction
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec {
            id: None,
            kind: LabelKind::Smoothed,
            horizon: Some(10),
            duration: None,
            alpha: default_alpha(),
            output: OutputKind::Direction,
        }
    }
}

impl TargetSpec {
    pub fn validate(&self) -> Result<(), String> {
        if let AlphaSpec::Rule(r) = &self.alpha {
            if r != "balanced_on_train" {
                return Err(format!("[label] alpha must be \"balanced_on_train\" or a number, got {r:?}"));
            }
        }
        if let AlphaSpec::Fixed(a) = self.alpha {
            if !(a.is_finite() && a >= 0.0) {
                return Err(format!("[label] alpha must be a finite number ≥ 0, got {a}"));
            }
        }
        if let Some(id) = &self.id {
            if id.is_empty() || id.contains(['/', '\\']) {
                return Err(format!("[label] id {id:?} must be non-empty and contain no path separator"));
            }
        }
        match self.kind {
            LabelKind::Clock => match &self.duration {
                None => Err("[label] kind = \"clock\" needs `duration`".into()),
                Some(d) => flowcast_datasets::time::parse_duration(d).map(|_| ()).map_err(|e| format!("[label] duration: {e}")),
            },
            _ if self.horizon.unwrap_or(0) == 0 => Err("[label] needs `horizon` ≥ 1 for this kind".into()),
            _ => Ok(()),
        }
    }

    pub fn alpha_rule(&self) -> AlphaRule {
        match self.alpha {
            AlphaSpec::Fixed(a) => AlphaRule::Fixed { alpha: a },
            AlphaSpec::Rule(_) => AlphaRule::BalancedOnTrain,
        }
    }

    /// The datasets-level target this spec computes.
    pub fn label_target(&self) -> Result<Target, String> {
        let h = self.horizon.unwrap_or(0);
        Ok(match self.kind {
            LabelKind::Smoothed => Target::Smoothed { k: h, reference: SmoothRef::Current },
            LabelKind::SmoothedPast => Target::Smoothed { k: h, reference: SmoothRef::PastMean },
            LabelKind::Events => Target::Events { h },
            LabelKind::Clock => {
                let d = self.duration.as_deref().unwrap_or("");
                Target::Clock { h_ns: flowcast_datasets::time::parse_duration(d).map_err(|e| format!("[label] duration: {e}"))? }
            }
        })
    }

    /// The label computation of this target alone.
    pub fn label_config(&self, alpha: AlphaRule) -> Result<LabelConfig, String> {
        let mut c = LabelConfig { smooth_k: vec![], smooth_past: false, event_horizons: vec![], clock_horizons_ns: vec![], alpha };
        match self.label_target()? {
            Target::Smoothed { k, reference } => {
                c.smooth_k = vec![k];
                c.smooth_past = reference == SmoothRef::PastMean;
            }
            Target::Events { h } => c.event_horizons = vec![h],
            Target::Clock { h_ns } => c.clock_horizons_ns = vec![h_ns],
        }
        Ok(c)
    }

    /// The id used in run directories and reports.
    pub fn resolved_id(&self) -> Result<String, String> {
        match &self.id {
            Some(id) => Ok(id.clone()),
            None => Ok(self.label_target()?.name()),
        }
    }
}

/// A fitted target, as stored in the card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDef {
    pub id: String,
    pub kind: LabelKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Column stem of the label (`smooth_k10`, `ev100`, ...).
    pub target: String,
    /// Formula in words.
    pub definition: String,
    pub output: OutputKind,
    /// Class threshold used (fitted on train or fixed).
    pub alpha: f64,
    /// How α was chosen: "balanced_on_train" or "fixed".
    pub alpha_rule: String,
    /// Class names in index order (direction targets; the classes of α also label regression
    /// targets' windows for reporting).
    pub classes: Vec<String>,
    /// Unit of a regression output ("bps").
    pub unit: String,
}

impl TargetDef {
    /// The unfitted spec that recomputes this target with its fitted α (evaluation data).
    pub fn fixed_spec(&self) -> TargetSpec {
        TargetSpec {
            id: Some(self.id.clone()),
            kind: self.kind,
            horizon: self.horizon,
            duration: self.duration.clone(),
            alpha: AlphaSpec::Fixed(self.alpha),
            output: self.output,
        }
    }

    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }
}
