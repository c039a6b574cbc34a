//! The decision an execution layer acts on, from one prediction: the **one** function the
//! inference server returns and the backtest trades, so what is backtested is what is served.
//!
//! Inputs are one window's outputs in the card's class order (direction targets: `down`,
//! `stationary`, `up`) plus, where the model has them, a regression output (bps) and a predictive
//! standard deviation (bps). Formulas (docs/backtest.md, "Signals"):
//! - strength `s = P(up) − P(down)` ∈ [−1, 1];
//! - confidence `c = max(P(up), P(down))`, the probability of the side the signal points to;
//! - expected edge `e` (bps): the regression output when there is one, else `Σ_k P(k)·v_k` with
//!   `v_k` the mean target value of class k on the training split (`class_value_bps`), else
//!   `α_bps · s` (each class at its threshold: a conservative guess);
//! - direction: `Buy` when `P(up) ≥ enter` and `e ≥ min_edge_bps`, `StrongBuy` when also
//!   `P(up) ≥ strong`; `Sell`/`StrongSell` symmetric; otherwise `None`. A regression-only model
//!   uses `e` against `min_edge_bps` (and `strong_edge_bps` for strong).
//!
//! Defaults follow the OFI chapter's rule (long if P(up) > 0.55).

use serde::{Deserialize, Serialize};

/// What to do. Serialised as lower-case snake case (`strong_buy`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    None,
    Buy,
    Sell,
    StrongBuy,
    StrongSell,
}

impl Direction {
    /// −2, −1, 0, +1, +2.
    pub fn level(self) -> i8 {
        match self {
            Direction::None => 0,
            Direction::Buy => 1,
            Direction::StrongBuy => 2,
            Direction::Sell => -1,
            Direction::StrongSell => -2,
        }
    }
    /// −1, 0, +1.
    pub fn sign(self) -> i8 {
        self.level().signum()
    }
    pub fn is_strong(self) -> bool {
        matches!(self, Direction::StrongBuy | Direction::StrongSell)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::None => "none",
            Direction::Buy => "buy",
            Direction::Sell => "sell",
            Direction::StrongBuy => "strong_buy",
            Direction::StrongSell => "strong_sell",
        }
    }
}

/// A decision with the numbers behind it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub direction: Direction,
    /// `P(up) − P(down)` (regression-only models: `tanh(e / strong_edge_bps)`).
    pub strength: f32,
    /// Probability of the side the signal points to (`max(P(up), P(down))`; NaN without classes).
    pub confidence: f32,
    /// Expected edge in bps (see the module docs for which estimate).
    pub edge_bps: f32,
}

/// Decision thresholds, kept in the model's serving config (the card's `signal` section).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalConfig {
    /// P(up) (or P(down)) needed for a buy (sell).
    pub enter: f64,
    /// P(up) (or P(down)) needed for a strong buy (sell).
    pub strong: f64,
    /// Minimum |expected edge| in bps for any trade (0: probabilities alone decide).
    pub min_edge_bps: f64,
    /// |expected edge| in bps for a strong regression-only signal.
    pub strong_edge_bps: f64,
    /// Mean target value per class on the training split, bps (optional, card order).
    pub class_value_bps: Option<Vec<f64>>,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig { enter: 0.55, strong: 0.70, min_edge_bps: 0.0, strong_edge_bps: 5.0, class_value_bps: None }
    }
}

/// Where `up` and `down` are in the class order (`None` when the classes are not directions).
pub fn direction_indices(classes: &[String]) -> Option<(usize, usize)> {
    let up = classes.iter().position(|c| c == "up")?;
    let down = classes.iter().position(|c| c == "down")?;
    Some((up, down))
}

impl SignalConfig {
    pub fn validate(&self) -> Result<(), String> {
        let p = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("signal.{name} = {v}: must be a probability in [0, 1]"))
            }
        };
        p("enter", self.enter)?;
        p("strong", self.strong)?;
        if self.strong < self.enter {
            return Err(format!("signal.strong = {} is below signal.enter = {}", self.strong, self.enter));
        }
        if !(self.min_edge_bps >= 0.0 && self.strong_edge_bps > 0.0) {
            return Err("signal.min_edge_bps must be ≥ 0 and signal.strong_edge_bps > 0".into());
        }
        Ok(())
    }

    /// The decision for one window. `probs` in card class order (empty for regression-only
    /// models), `dir` = [`direction_indices`] of the card's classes, `regression` the model's
    /// regression output in bps if any, `alpha_bps` the target's class threshold in bps.
    pub fn decide(&self, probs: &[f32], dir: Option<(usize, usize)>, regression: Option<f32>, alpha_bps: f64) -> Signal {
        let Some((up, down)) = dir.filter(|&(u, d)| u < probs.len() && d < probs.len()) else {
            // Regression only.
            let e = regression.unwrap_or(f32::NAN) as f64;
            // False for NaN too: no estimate, no trade.
            let tradeable = e.abs() >= self.min_edge_bps.max(f64::MIN_POSITIVE);
            let direction = if !tradeable {
                Direction::None
            } else if e.abs() >= self.strong_edge_bps {
                if e > 0.0 {
                    Direction::StrongBuy
                } else {
                    Direction::StrongSell
                }
            } else if e > 0.0 {
                Direction::Buy
            } else {
                Direction::Sell
            };
            return Signal { direction, strength: (e / self.strong_edge_bps).tanh() as f32, confidence: f32::NAN, edge_bps: e as f32 };
        };
        let (pu, pd) = (probs[up] as f64, probs[down] as f64);
        let s = pu - pd;
        let e = match (regression, &self.class_value_bps) {
            (Some(r), _) => r as f64,
            (None, Some(v)) if v.len() == probs.len() => probs.iter().zip(v).map(|(&p, &v)| p as f64 * v).sum(),
            _ => alpha_bps * s,
        };
        let direction = if pu >= self.enter && pu > pd && e >= self.min_edge_bps {
            if pu >= self.strong {
                Direction::StrongBuy
            } else {
                Direction::Buy
            }
        } else if pd >= self.enter && pd > pu && -e >= self.min_edge_bps {
            if pd >= self.strong {
                Direction::StrongSell
            } else {
                Direction::Sell
            }
        } else {
            Direction::None
        };
        Signal { direction, strength: s as f32, confidence: pu.max(pd) as f32, edge_bps: e as f32 }
    }
}

/// A [`SignalConfig`] bound to one model's classes and threshold: what a server or a backtest
/// holds per model, so the per-window call does no lookups.
#[derive(Clone, Debug, PartialEq)]
pub struct SignalRule {
    pub config: SignalConfig,
    pub dir: Option<(usize, usize)>,
    pub alpha_bps: f64,
}

impl SignalRule {
    /// `alpha` in the target's own unit (a return); stored ×1e4 as bps.
    pub fn new(config: SignalConfig, classes: &[String], alpha: f64) -> SignalRule {
        SignalRule { config, dir: direction_indices(classes), alpha_bps: alpha * crate::target::BPS }
    }
    /// The rule of an exported model (its card's `signal` section, classes and α).
    pub fn of_card(card: &crate::ModelCard) -> SignalRule {
        SignalRule::new(card.signal.clone(), &card.classes, card.preprocessing.target.alpha)
    }
    #[inline]
    pub fn decide(&self, probs: &[f32], regression: Option<f32>) -> Signal {
        self.config.decide(probs, self.dir, regression, self.alpha_bps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Option<(usize, usize)> {
        direction_indices(&["down".into(), "stationary".into(), "up".into()])
    }

    #[test]
    fn thresholds_by_hand() {
        let c = SignalConfig::default();
        let s = c.decide(&[0.2, 0.2, 0.6], dir(), None, 2.0);
        assert_eq!(s.direction, Direction::Buy);
        assert!((s.strength - 0.4).abs() < 1e-6 && (s.confidence - 0.6).abs() < 1e-6);
        assert!((s.edge_bps - 0.8).abs() < 1e-6, "α·s = 2 × 0.4");
        assert_eq!(c.decide(&[0.1, 0.1, 0.8], dir(), None, 2.0).direction, Direction::StrongBuy);
        assert_eq!(c.decide(&[0.75, 0.2, 0.05], dir(), None, 2.0).direction, Direction::StrongSell);
        assert_eq!(c.decide(&[0.56, 0.3, 0.14], dir(), None, 2.0).direction, Direction::Sell);
        assert_eq!(c.decide(&[0.3, 0.4, 0.3], dir(), None, 2.0).direction, Direction::None);
        assert_eq!(c.decide(&[0.54, 0.0, 0.46], dir(), None, 2.0).direction, Direction::None);
    }

    #[test]
    fn edge_estimates_and_min_edge() {
        let mut c = SignalConfig { class_value_bps: Some(vec![-3.0, 0.0, 3.0]), min_edge_bps: 1.0, ..Default::default() };
        // Σ p·v = 0.6·3 − 0.2·3 = 1.2 ≥ 1 → buy.
        let s = c.decide(&[0.2, 0.2, 0.6], dir(), None, 2.0);
        assert!((s.edge_bps - 1.2).abs() < 1e-6);
        assert_eq!(s.direction, Direction::Buy);
        c.min_edge_bps = 1.5;
        assert_eq!(c.decide(&[0.2, 0.2, 0.6], dir(), None, 2.0).direction, Direction::None);
        // A regression output overrides the class estimate.
        assert_eq!(c.decide(&[0.2, 0.2, 0.6], dir(), Some(2.0), 2.0).edge_bps, 2.0);
        assert_eq!(c.decide(&[0.2, 0.2, 0.6], dir(), Some(2.0), 2.0).direction, Direction::Buy);
    }

    #[test]
    fn regression_only() {
        let c = SignalConfig { min_edge_bps: 1.0, ..Default::default() };
        assert_eq!(c.decide(&[], None, Some(0.5), 0.0).direction, Direction::None);
        assert_eq!(c.decide(&[], None, Some(-2.0), 0.0).direction, Direction::Sell);
        assert_eq!(c.decide(&[], None, Some(6.0), 0.0).direction, Direction::StrongBuy);
        assert_eq!(c.decide(&[], None, None, 0.0).direction, Direction::None);
        assert_eq!(c.decide(&[], None, Some(f32::NAN), 0.0).direction, Direction::None);
    }

    #[test]
    fn validation() {
        assert!(SignalConfig::default().validate().is_ok());
        assert!(SignalConfig { enter: 1.2, ..Default::default() }.validate().is_err());
        assert!(SignalConfig { strong: 0.5, ..Default::default() }.validate().is_err());
        let t: SignalConfig = toml::from_str("enter = 0.6\nstrong = 0.8").unwrap();
        assert_eq!(t.enter, 0.6);
        assert!(toml::from_str::<SignalConfig>("entr = 0.6").is_err());
    }
}
