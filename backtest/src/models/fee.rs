//! Trading fees, in the quote currency, positive = paid, negative = rebate.

use serde::{Deserialize, Serialize};

/// What a fee model sees of one fill.
#[derive(Clone, Copy, Debug)]
pub struct FeeInput {
    /// `|price × quantity|` in quote currency.
    pub notional: f64,
    /// Quantity in base units (shares, coins).
    pub qty: f64,
    /// True for a resting (maker) fill, false for liquidity taking.
    pub maker: bool,
}

pub trait FeeModel {
    fn name(&self) -> &'static str;
    fn fee(&self, f: &FeeInput) -> f64;
}

/// `fee = notional × rate/10⁴`, the rate in bps depending on maker/taker; a negative maker rate is
/// a rebate (e.g. Binance USD-M VIP0 2/5 bps; NASDAQ rebates ≈ −0.2 bps on $100 stock).
#[derive(Clone, Copy, Debug)]
pub struct MakerTaker {
    pub maker_bps: f64,
    pub taker_bps: f64,
}

impl FeeModel for MakerTaker {
    fn name(&self) -> &'static str {
        "maker_taker"
    }
    fn fee(&self, f: &FeeInput) -> f64 {
        f.notional * if f.maker { self.maker_bps } else { self.taker_bps } / 1e4
    }
}

/// `fee = c × quantity` (the OFI chapter's commission of $0.001 per share).
#[derive(Clone, Copy, Debug)]
pub struct PerUnit {
    pub per_unit: f64,
}

impl FeeModel for PerUnit {
    fn name(&self) -> &'static str {
        "per_unit"
    }
    fn fee(&self, f: &FeeInput) -> f64 {
        self.per_unit * f.qty
    }
}

/// A flat amount per fill.
#[derive(Clone, Copy, Debug)]
pub struct PerTrade {
    pub per_trade: f64,
}

impl FeeModel for PerTrade {
    fn name(&self) -> &'static str {
        "per_trade"
    }
    fn fee(&self, _: &FeeInput) -> f64 {
        self.per_trade
    }
}

/// `[fees]` in the backtest TOML: every non-zero part applies and the parts add up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeeSpec {
    pub maker_bps: f64,
    pub taker_bps: f64,
    pub per_unit: f64,
    pub per_trade: f64,
}

/// The sum of several fee models.
pub struct Fees(Vec<Box<dyn FeeModel>>);

impl Fees {
    #[inline]
    pub fn fee(&self, f: &FeeInput) -> f64 {
        self.0.iter().map(|m| m.fee(f)).sum()
    }
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|m| m.name()).collect()
    }
}

impl FeeSpec {
    pub fn build(&self) -> Fees {
        let mut v: Vec<Box<dyn FeeModel>> = Vec::new();
        if self.maker_bps != 0.0 || self.taker_bps != 0.0 {
            v.push(Box::new(MakerTaker { maker_bps: self.maker_bps, taker_bps: self.taker_bps }));
        }
        if self.per_unit != 0.0 {
            v.push(Box::new(PerUnit { per_unit: self.per_unit }));
        }
        if self.per_trade != 0.0 {
            v.push(Box::new(PerTrade { per_trade: self.per_trade }));
        }
        Fees(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_by_hand() {
        let f = FeeSpec { maker_bps: -0.5, taker_bps: 4.0, per_unit: 0.001, per_trade: 0.25 }.build();
        // Taker: 10,000 notional × 4 bps = 4; 100 shares × 0.001 = 0.1; flat 0.25.
        let taker = f.fee(&FeeInput { notional: 10_000.0, qty: 100.0, maker: false });
        assert!((taker - 4.35).abs() < 1e-12, "{taker}");
        // Maker rebate: −0.5 bps × 10,000 = −0.5.
        let maker = f.fee(&FeeInput { notional: 10_000.0, qty: 100.0, maker: true });
        assert!((maker - (-0.5 + 0.1 + 0.25)).abs() < 1e-12);
        assert!(FeeSpec::default().build().names().is_empty());
    }
}
