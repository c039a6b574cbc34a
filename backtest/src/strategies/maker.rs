//! Market-making baseline: quote both sides passively around the micro-price
//! `μ = (P_b·Q_a + P_a·Q_b)/(Q_a + Q_b)` (size-weighted mid at the touch, ticks), at
//! `bid = ⌊μ − h − k·q⌋`, `ask = ⌈μ + h − k·q⌉` with h the half spread, q the position in order
//! units and k the inventory skew (ticks per unit), never crossing the touch; requote when a
//! target price moves. Max position is the risk layer's.

use crate::error::Result;
use crate::order::{Action, OrderKind};
use crate::strategy::{tags, AccountView, MarketView, Strategy};
use flowcast_datasets::{Instrument, Side};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MakerSpec {
    pub qty: String,
    pub half_spread_ticks: f64,
    pub skew_ticks: f64,
}

impl Default for MakerSpec {
    fn default() -> Self {
        MakerSpec { qty: "1".into(), half_spread_ticks: 0.5, skew_ticks: 0.5 }
    }
}

pub struct MicroMaker {
    s: MakerSpec,
    qty: i64,
}

impl MicroMaker {
    pub fn new(s: &MakerSpec, inst: &Instrument) -> Result<MicroMaker> {
        Ok(MicroMaker { s: s.clone(), qty: super::lots(inst, &s.qty, "qty")? })
    }
}

impl Strategy for MicroMaker {
    fn name(&self) -> &'static str {
        "micro_maker"
    }
    fn on_sample(&mut self, m: &MarketView<'_>, a: &AccountView<'_>, out: &mut Vec<Action>) {
        let (Some((pb, qb)), Some((pa, qa))) = (m.book.best_bid(), m.book.best_ask()) else { return };
        if qa + qb <= 0 {
            return;
        }
        let micro = (pb as f64 * qa as f64 + pa as f64 * qb as f64) / (qa + qb) as f64;
        let inv = a.position as f64 / self.qty as f64;
        let shift = self.s.skew_ticks * inv;
        let bid = ((micro - self.s.half_spread_ticks - shift).floor() as i64).min(pa - 1);
        let ask = ((micro + self.s.half_spread_ticks - shift).ceil() as i64).max(pb + 1);
        for (side, target) in [(Side::Bid, bid), (Side::Ask, ask)] {
            let mut mine = a.open.iter().filter(|o| o.side == side);
            match (mine.next(), mine.next()) {
                (None, _) if !a.halted => {
                    out.push(Action::Submit { side, kind: OrderKind::PostOnly, price: target, qty: self.qty, tag: tags::QUOTE })
                }
                (Some(o), None) if o.price != target && o.status == crate::order::Status::Resting => out.push(Action::Cancel { id: o.id }),
                _ => {}
            }
        }
    }
}
