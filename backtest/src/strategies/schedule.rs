//! Market orders on a fixed clock schedule (every `every` from the first sample), alternating
//! buy and sell so the book ends flat: the simplest strategy whose fills an independent backtester
//! must reproduce exactly (the hftbacktest cross-check).

use crate::error::Result;
use crate::models::latency::duration_ns;
use crate::order::{Action, OrderKind};
use crate::strategy::{tags, AccountView, MarketView, Strategy};
use flowcast_datasets::{Instrument, Side};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSpec {
    pub qty: String,
    pub every: String,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec { qty: "1".into(), every: "10s".into() }
    }
}

pub struct MarketSchedule {
    qty: i64,
    every_ns: i64,
    next: Option<i64>,
    buy: bool,
}

impl MarketSchedule {
    pub fn new(s: &ScheduleSpec, inst: &Instrument) -> Result<MarketSchedule> {
        Ok(MarketSchedule {
            qty: super::lots(inst, &s.qty, "qty")?,
            every_ns: duration_ns(&s.every, "strategy.every")?.max(1),
            next: None,
            buy: true,
        })
    }
}

impl Strategy for MarketSchedule {
    fn name(&self) -> &'static str {
        "market_schedule"
    }
    fn on_sample(&mut self, m: &MarketView<'_>, a: &AccountView<'_>, out: &mut Vec<Action>) {
        let next = *self.next.get_or_insert(m.ts_local + self.every_ns);
        if m.ts_local < next || a.halted {
            return;
        }
        self.next = Some(next + self.every_ns * ((m.ts_local - next) / self.every_ns + 1));
        let side = if self.buy { Side::Bid } else { Side::Ask };
        self.buy = !self.buy;
        out.push(Action::Submit { side, kind: OrderKind::Market, price: 0, qty: self.qty, tag: tags::ENTRY });
    }
}
