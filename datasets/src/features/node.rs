//! The feature node interface: one streaming state per feature column, driven by the engine.

use super::bank::Bank;
use super::ctx::{Ctx, TradeTick};

/// A feature's streaming state. `on_sample` returns the feature value at the sample.
pub(crate) trait Node: Send {
    /// `bank` holds the shared windows, already updated for this sample.
    fn on_sample(&mut self, ctx: &Ctx, bank: &Bank) -> f64;
    /// Called for each trade (after the context saw it), before the sample closing its batch.
    fn on_trade(&mut self, _ctx: &Ctx, _t: &TradeTick) {}
    fn wants_trades(&self) -> bool {
        false
    }
    fn reset(&mut self);
    /// Clock-window capacity overflows (see `window.rs`).
    fn overflows(&self) -> u64 {
        0
    }
}
