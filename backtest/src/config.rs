//! The backtest file (TOML). Every key is documented in docs/backtest.md; unknown keys are errors.

use crate::error::{BacktestError, Result};
use crate::exchange::FillRule;
use crate::metrics::Calendar;
use crate::models::{FeeSpec, ImpactSpec, LatencySpec, QueueSpec};
use crate::risk::RiskSpec;
use crate::strategies::StrategySpec;
use flowcast_datasets::source::DataSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestConfig {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    pub data: DataSpec,
    /// Model outputs to trade on (absent: the strategy trades without a model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalSpec>,
    pub strategy: StrategySpec,
    #[serde(default)]
    pub exchange: ExchangeSpec,
    #[serde(default)]
    pub latency: LatencySpec,
    #[serde(default)]
    pub fees: FeeSpec,
    #[serde(default)]
    pub impact: ImpactSpec,
    #[serde(default)]
    pub risk: RiskSpec,
    #[serde(default)]
    pub report: ReportSpec,
    /// Constant order latencies (each way) to replay the same strategy at, e.g.
    /// `["0", "100us", "1ms", "10ms", "50ms"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_sweep: Vec<String>,
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    /// Replay only a part of the events (walk-forward folds write it; see [`SegmentSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentSpec>,
    /// Retrain the model per segment and trade it on the next one (`flowcast backtest` runs the
    /// folds; docs/backtest.md, "Walk-forward").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk_forward: Option<WalkForwardSpec>,
}

/// `[segment]`: replay events `[0, to_event)` and let the strategy act only from `from_event` on.
/// The earlier events warm the book, the features and the model's windows; equity is marked
/// from `from_event` on, so the metrics cover the traded part alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    #[serde(default)]
    pub from_event: u64,
    /// Exclusive; absent: to the end of the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_event: Option<u64>,
}

/// `[walk_forward]`: the data is cut into `segments` equal parts (of the experiment's sample
/// rows); fold k trains `experiment`'s model `model` on the `train_segments` segments before
/// segment k+1 (its last `validation` fraction for early stopping) and trades segment k+1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalkForwardSpec {
    /// The training experiment (TOML; relative to this file). Its `[data]` is replaced by this
    /// file's, its `[splits]` by each fold's.
    pub experiment: PathBuf,
    /// The `[[model]]` id of that experiment whose signal is traded (the others are not trained).
    pub model: String,
    pub segments: usize,
    /// Segments each fold trains on (rolling window); 0: all earlier ones (expanding window).
    #[serde(default = "one_segment")]
    pub train_segments: usize,
    /// Fraction of each fold's training rows kept for validation (at their end).
    #[serde(default = "default_validation")]
    pub validation: f64,
    /// As `[signal] model_latency`.
    #[serde(default = "measured")]
    pub model_latency: String,
    /// As `[signal] rule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<flowcast_contract::signal::SignalConfig>,
}

fn one_segment() -> usize {
    1
}
fn default_validation() -> f64 {
    0.2
}
fn measured() -> String {
    "measured".into()
}

impl WalkForwardSpec {
    /// Folds as (start, train + validation end = test start, test end) in fractions of the rows,
    /// one per test segment 1..segments.
    pub fn folds(&self) -> Vec<(f64, f64, f64)> {
        let k = self.segments as f64;
        (1..self.segments)
            .map(|j| {
                let first = if self.train_segments == 0 { 0 } else { j.saturating_sub(self.train_segments) };
                (first as f64 / k, j as f64 / k, (j + 1) as f64 / k)
            })
            .collect()
    }
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// `[signal]`: exactly one of `model` (an exported model directory, run inside the replay with
/// its card's preprocessing) or `predictions` (a `predictions.parquet`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<PathBuf>,
    /// Time from a window's last event to its prediction being usable ("0", "200us"; or
    /// "measured": the model's measured compute time per window in this replay).
    #[serde(default = "zero")]
    pub model_latency: String,
    /// Override the card's decision thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<flowcast_contract::signal::SignalConfig>,
    /// Allow trading on the model's own training data (in-sample: the result is then no test).
    #[serde(default)]
    pub allow_in_sample: bool,
}

fn zero() -> String {
    "0".into()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeSpec {
    pub fill: FillRule,
    pub queue: QueueSpec,
    /// Feed latency added to exchange time when the data has no local timestamps ("0", "1ms").
    pub feed_latency: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportSpec {
    /// Equity mark / Sharpe bar ("1s", "1min").
    pub bar: String,
    pub calendar: Calendar,
    /// Forward-return horizons of the signal IC and hit rate.
    pub horizons: Vec<String>,
    /// Write report.html (plots).
    pub html: bool,
}

impl Default for ReportSpec {
    fn default() -> Self {
        ReportSpec { bar: "1s".into(), calendar: Calendar::Crypto, horizons: vec!["1s".into(), "10s".into(), "1min".into()], html: true }
    }
}

impl BacktestConfig {
    pub fn from_toml(s: &str, origin: &str) -> Result<BacktestConfig> {
        let c: BacktestConfig = toml::from_str(s).map_err(|e| {
            let line = e.span().map(|r| s[..r.start.min(s.len())].lines().count().max(1)).unwrap_or(0);
            BacktestError::Config(format!("{origin}: line {line}: {}", e.message()))
        })?;
        c.validate().map_err(|e| BacktestError::Config(format!("{origin}: {e}")))?;
        Ok(c)
    }

    /// Reads a file, resolving relative paths against its directory (runs_dir against the
    /// checkout: `experiments/x.toml` → `<checkout>/runs`).
    pub fn load(path: &Path) -> Result<BacktestConfig> {
        let s = std::fs::read_to_string(path).map_err(|e| BacktestError::io(path, e))?;
        let mut c = BacktestConfig::from_toml(&s, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.data.resolve_paths(base);
        let abs = |p: &Path| {
            let j = if p.is_relative() { base.join(p) } else { p.to_path_buf() };
            std::path::absolute(&j).unwrap_or(j)
        };
        if let Some(w) = &mut c.walk_forward {
            w.experiment = abs(&w.experiment);
        }
        if let Some(sig) = &mut c.signal {
            sig.model = sig.model.as_deref().map(abs);
            sig.predictions = sig.predictions.as_deref().map(abs);
        }
        if let crate::models::LatencySpec::Interpolated { file } = &mut c.latency {
            *file = abs(file);
        }
        if c.runs_dir.is_relative() {
            let root = base.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let r = root.join(&c.runs_dir);
            c.runs_dir = std::path::absolute(&r).unwrap_or(r);
        }
        Ok(c)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.data.validate()?;
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(format!("name {:?} must be non-empty and contain no path separator", self.name));
        }
        if let Some(s) = &self.signal {
            if s.model.is_some() == s.predictions.is_some() {
                return Err("[signal] needs exactly one of `model`, `predictions`".into());
            }
            if let Some(r) = &s.rule {
                r.validate()?;
            }
        }
        if let Some(w) = &self.walk_forward {
            if self.signal.is_some() {
                return Err(
                    "[walk_forward] trains its own model per fold: drop [signal] (model_latency and rule go in [walk_forward])".into()
                );
            }
            if w.segments < 2 {
                return Err(format!("[walk_forward] segments = {}: at least 2 (train on one, trade the next)", w.segments));
            }
            if !(0.0..1.0).contains(&w.validation) {
                return Err(format!("[walk_forward] validation = {}: a fraction in [0, 1)", w.validation));
            }
            if self.segment.is_some() {
                return Err("[walk_forward] and [segment] exclude each other (the folds write [segment])".into());
            }
            return Ok(());
        }
        if let Some(g) = &self.segment {
            if g.to_event.is_some_and(|t| t <= g.from_event) {
                return Err(format!("[segment] to_event {:?} must be after from_event {}", g.to_event, g.from_event));
            }
        }
        if self.strategy.needs_signal() && self.signal.is_none() {
            return Err(format!(
                "strategy {} trades on a model signal: add [signal] (or set require_signal = false)",
                self.strategy.name()
            ));
        }
        Ok(())
    }
}
