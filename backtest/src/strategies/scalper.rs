//! The imbalance scalper: a composite book imbalance `c = Σ w_L · I_L` (I_L the volume imbalance
//! over the top L levels, default L = 1, 3, 5 with weights 0.5, 0.3, 0.2). `|c| ≥ weak` (0.15):
//! join the touch passively on c's side (post-only); `|c| ≥ strong` (0.35): take the touch with
//! an IOC. With a position: close (IOC at the touch) as soon as the mid is `take_profit_ticks` in
//! our favour; stale passive orders are cancelled after `order_ttl`.

use crate::error::{BacktestError, Result};
use crate::models::latency::duration_ns;
use crate::order::{Action, OrderKind};
use crate::strategy::{tags, AccountView, MarketView, Strategy};
use flowcast_datasets::features::spec::FeatureSpec;
use flowcast_datasets::{Instrument, Side};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScalperSpec {
    pub qty: String,
    pub levels: Vec<usize>,
    pub weights: Vec<f64>,
    pub weak: f64,
    pub strong: f64,
    pub take_profit_ticks: f64,
    pub order_ttl: String,
}

impl Default for ScalperSpec {
    fn default() -> Self {
        ScalperSpec {
            qty: "1".into(),
            levels: vec![1, 3, 5],
            weights: vec![0.5, 0.3, 0.2],
            weak: 0.15,
            strong: 0.35,
            take_profit_ticks: 1.0,
            order_ttl: "5s".into(),
        }
    }
}

pub struct ImbalanceScalper {
    s: ScalperSpec,
    qty: i64,
    ttl_ns: i64,
}

impl ImbalanceScalper {
    pub fn new(s: &ScalperSpec, inst: &Instrument) -> Result<ImbalanceScalper> {
        if s.levels.is_empty() || s.levels.len() != s.weights.len() {
            return Err(BacktestError::Config("strategy.levels and strategy.weights must be non-empty and of equal length".into()));
        }
        if !(0.0 < s.weak && s.weak <= s.strong && s.strong <= 1.0) {
            return Err(BacktestError::Config(format!("strategy: need 0 < weak ({}) ≤ strong ({}) ≤ 1", s.weak, s.strong)));
        }
        Ok(ImbalanceScalper {
            s: s.clone(),
            qty: super::lots(inst, &s.qty, "qty")?,
            ttl_ns: duration_ns(&s.order_ttl, "strategy.order_ttl")?,
        })
    }
}

impl Strategy for ImbalanceScalper {
    fn name(&self) -> &'static str {
        "imbalance_scalper"
    }
    fn features(&self) -> Vec<FeatureSpec> {
        self.s
            .levels
            .iter()
            .map(|&l| FeatureSpec {
                name: "imbalance".into(),
                levels: Some(l),
                column: Some(format!("scalper_imbalance_l{l}")),
                ..Default::default()
            })
            .collect()
    }
    fn on_sample(&mut self, m: &MarketView<'_>, a: &AccountView<'_>, out: &mut Vec<Action>) {
        let (Some(bid), Some(ask), Some(mid)) = (m.best_bid(), m.best_ask(), m.mid()) else { return };
        // Cancel stale passive orders.
        for o in a.open.iter().filter(|o| o.kind == OrderKind::PostOnly && o.ts_sent > 0) {
            if m.ts_local - o.ts_sent >= self.ttl_ns {
                out.push(Action::Cancel { id: o.id });
            }
        }
        if !a.open.is_empty() {
            return;
        }
        if a.position != 0 {
            let gain = (mid - a.entry_price) * a.position.signum() as f64;
            if gain >= self.s.take_profit_ticks {
                let (side, price) = if a.position > 0 { (Side::Ask, bid) } else { (Side::Bid, ask) };
                out.push(Action::Submit { side, kind: OrderKind::Ioc, price, qty: a.position.abs(), tag: tags::EXIT });
            }
            return;
        }
        if a.halted {
            return;
        }
        let c: f64 = m.features.iter().zip(&self.s.weights).map(|(i, w)| i * w).sum();
        if !c.is_finite() || c.abs() < self.s.weak {
            return;
        }
        let side = if c > 0.0 { Side::Bid } else { Side::Ask };
        let action = if c.abs() >= self.s.strong {
            let price = if side == Side::Bid { ask } else { bid };
            Action::Submit { side, kind: OrderKind::Ioc, price, qty: self.qty, tag: tags::ENTRY }
        } else {
            let price = if side == Side::Bid { bid } else { ask };
            Action::Submit { side, kind: OrderKind::PostOnly, price, qty: self.qty, tag: tags::ENTRY }
        };
        out.push(action);
    }
}
