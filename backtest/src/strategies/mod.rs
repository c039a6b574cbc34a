//! Built-in strategies, chosen by name in the backtest TOML (`[strategy] name = "..."`).

mod maker;
mod ofi_rule;
mod scalper;
mod schedule;

pub use maker::MicroMaker;
pub use ofi_rule::OfiRule;
pub use scalper::ImbalanceScalper;
pub use schedule::MarketSchedule;

use crate::error::{BacktestError, Result};
use crate::strategy::Strategy;
use flowcast_datasets::Instrument;
use serde::{Deserialize, Serialize};

/// `[strategy]` in the backtest TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategySpec {
    OfiRule(Box<ofi_rule::OfiRuleSpec>),
    ImbalanceScalper(scalper::ScalperSpec),
    MicroMaker(maker::MakerSpec),
    MarketSchedule(schedule::ScheduleSpec),
}

pub const STRATEGIES: [(&str, &str); 4] = [
    (
        "ofi_rule",
        "OFI chapter: long if the model says buy (P(up) > 0.55) and OFI > threshold, short symmetric; hold, stop-loss, flat at the end",
    ),
    ("imbalance_scalper", "composite imbalance: weak → passive at the touch, strong → aggressive IOC; close when profitable"),
    ("micro_maker", "passive two-sided quote around the micro-price with inventory skew (market-making baseline)"),
    ("market_schedule", "market orders on a fixed clock schedule, alternating sides (cross-check reference)"),
];

/// Base-unit quantity string ("0.01", "100") → lots of the instrument.
pub(crate) fn lots(inst: &Instrument, qty: &str, field: &str) -> Result<i64> {
    let l = inst.size_to_lots(qty).map_err(|e| BacktestError::Config(format!("strategy.{field} = {qty:?}: {e}")))?;
    if l <= 0 {
        return Err(BacktestError::Config(format!("strategy.{field} = {qty:?}: must be positive")));
    }
    Ok(l)
}

impl StrategySpec {
    pub fn name(&self) -> &'static str {
        match self {
            StrategySpec::OfiRule(_) => "ofi_rule",
            StrategySpec::ImbalanceScalper(_) => "imbalance_scalper",
            StrategySpec::MicroMaker(_) => "micro_maker",
            StrategySpec::MarketSchedule(_) => "market_schedule",
        }
    }
    /// Whether the strategy trades on a model signal (then the backtest needs `[signal]`).
    pub fn needs_signal(&self) -> bool {
        matches!(self, StrategySpec::OfiRule(s) if s.require_signal)
    }
    pub fn build(&self, inst: &Instrument) -> Result<Box<dyn Strategy>> {
        Ok(match self {
            StrategySpec::OfiRule(s) => Box::new(OfiRule::new(s, inst)?),
            StrategySpec::ImbalanceScalper(s) => Box::new(ImbalanceScalper::new(s, inst)?),
            StrategySpec::MicroMaker(s) => Box::new(MicroMaker::new(s, inst)?),
            StrategySpec::MarketSchedule(s) => Box::new(MarketSchedule::new(s, inst)?),
        })
    }
}
