//! Market impact of our own liquidity-taking orders. The replayed book cannot react to us, so an
//! order walking the visible book pays the levels it crosses (slippage) and, optionally, an
//! impact surcharge on top.

use serde::{Deserialize, Serialize};

pub trait ImpactModel {
    fn name(&self) -> &'static str;
    /// Price concession in bps for taking `qty` base units.
    fn impact_bps(&self, qty: f64) -> f64;
}

/// No impact beyond walking the visible book.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoImpact;

impl ImpactModel for NoImpact {
    fn name(&self) -> &'static str {
        "none"
    }
    fn impact_bps(&self, _: f64) -> f64 {
        0.0
    }
}

/// Square-root law (Almgren, Thum, Hauptmann & Li 2005; Tóth et al. 2011; the forecasting
/// plan's cost formula): `I = Y · σ · √(Q / V)` with σ the daily volatility (bps), V the daily
/// volume and Q the order size (same units), Y ≈ 1.
#[derive(Clone, Copy, Debug)]
pub struct SquareRoot {
    pub y: f64,
    pub daily_vol_bps: f64,
    pub daily_volume: f64,
}

impl ImpactModel for SquareRoot {
    fn name(&self) -> &'static str {
        "square_root"
    }
    fn impact_bps(&self, qty: f64) -> f64 {
        if self.daily_volume <= 0.0 {
            return 0.0;
        }
        self.y * self.daily_vol_bps * (qty.abs() / self.daily_volume).sqrt()
    }
}

/// `[impact]` in the backtest TOML (`model = "none"` by default).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum ImpactSpec {
    #[default]
    None,
    SquareRoot {
        #[serde(default = "one")]
        y: f64,
        daily_vol_bps: f64,
        daily_volume: f64,
    },
}

fn one() -> f64 {
    1.0
}

impl ImpactSpec {
    pub fn build(&self) -> Box<dyn ImpactModel> {
        match *self {
            ImpactSpec::None => Box::new(NoImpact),
            ImpactSpec::SquareRoot { y, daily_vol_bps, daily_volume } => Box::new(SquareRoot { y, daily_vol_bps, daily_volume }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_root_by_hand() {
        // σ = 200 bps, Q/V = 1% → I = 200 × 0.1 = 20 bps.
        let m = SquareRoot { y: 1.0, daily_vol_bps: 200.0, daily_volume: 1e6 };
        assert!((m.impact_bps(1e4) - 20.0).abs() < 1e-9);
        assert_eq!(NoImpact.impact_bps(1e9), 0.0);
    }
}
