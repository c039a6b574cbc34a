//! The OFI chapter's rule: enter long when the model's decision is a buy (the shared signal rule:
//! P(up) ≥ 0.55 by default) **and** the order-flow imbalance over the last N samples exceeds a
//! threshold; short symmetric. Hold for a fixed time, exit early on a stop-loss in ticks; the
//! risk layer flattens at the session end. Entries and exits are market orders.

use crate::error::Result;
use crate::models::latency::duration_ns;
use crate::order::{Action, OrderKind};
use crate::strategy::{flatten, tags, AccountView, MarketView, Strategy};
use flowcast_datasets::features::spec::FeatureSpec;
use flowcast_datasets::{Instrument, Side};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfiRuleSpec {
    /// Order size in base units.
    pub qty: String,
    /// OFI feature (any registry spec; default best-level OFI over 50 samples, lots).
    pub ofi: FeatureSpec,
    /// Enter long when OFI > threshold, short when OFI < −threshold (lots).
    pub ofi_threshold: f64,
    /// Holding period ("1min" … "5min").
    pub hold: String,
    /// Exit when the position is this many ticks under water (0: no stop).
    pub stop_loss_ticks: i64,
    /// Trade only with a model signal (false: OFI alone, a baseline).
    pub require_signal: bool,
}

impl Default for OfiRuleSpec {
    fn default() -> Self {
        OfiRuleSpec {
            qty: "1".into(),
            ofi: FeatureSpec { name: "ofi".into(), window_events: Some(50), ..Default::default() },
            ofi_threshold: 0.0,
            hold: "2min".into(),
            stop_loss_ticks: 0,
            require_signal: true,
        }
    }
}

pub struct OfiRule {
    qty: i64,
    spec: OfiRuleSpec,
    hold_ns: i64,
    /// Local time of the entry order (the hold clock starts when we decide, not at the fill).
    entered_at: Option<i64>,
}

impl OfiRule {
    pub fn new(s: &OfiRuleSpec, inst: &Instrument) -> Result<OfiRule> {
        Ok(OfiRule {
            qty: super::lots(inst, &s.qty, "qty")?,
            spec: s.clone(),
            hold_ns: duration_ns(&s.hold, "strategy.hold")?,
            entered_at: None,
        })
    }
}

impl Strategy for OfiRule {
    fn name(&self) -> &'static str {
        "ofi_rule"
    }
    fn features(&self) -> Vec<FeatureSpec> {
        vec![self.spec.ofi.clone()]
    }
    fn on_sample(&mut self, m: &MarketView<'_>, a: &AccountView<'_>, out: &mut Vec<Action>) {
        if !a.open.is_empty() {
            return; // wait for the working order's outcome
        }
        if a.position != 0 {
            let entered = self.entered_at.unwrap_or(a.entry_ts);
            let stop = self.spec.stop_loss_ticks > 0
                && m.mid().is_some_and(|mid| (mid - a.entry_price) * (a.position.signum() as f64) <= -(self.spec.stop_loss_ticks as f64));
            if stop || m.ts_local - entered >= self.hold_ns {
                out.extend(flatten(a.position, if stop { tags::STOP } else { tags::EXIT }));
                self.entered_at = None;
            }
            return;
        }
        if a.halted {
            return;
        }
        let ofi = m.features[0];
        if !ofi.is_finite() {
            return;
        }
        let dir = match m.signal {
            Some(s) => s.signal.direction.sign(),
            None if !self.spec.require_signal => ofi.signum() as i8,
            None => return,
        };
        let side = if dir > 0 && ofi > self.spec.ofi_threshold {
            Side::Bid
        } else if dir < 0 && ofi < -self.spec.ofi_threshold {
            Side::Ask
        } else {
            return;
        };
        out.push(Action::Submit { side, kind: OrderKind::Market, price: 0, qty: self.qty, tag: tags::ENTRY });
        self.entered_at = Some(m.ts_local);
    }
}
