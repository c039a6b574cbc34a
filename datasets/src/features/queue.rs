//! Queue dynamics at the touch for L3 (order-by-order) sources, after Cont, Stoikov & Talreja
//! (2010): arrival, cancellation and execution rates, cancel ratio. On L2-only sources (no L3
//! events seen) these features are NaN. (The order tracker behind order-count imbalance is in
//! `orders.rs`.)
//!
//! "At the touch" is judged against the book before the event's message: an add at or better
//! than the side's best price, a cancel/delete at or better than it, and every visible execution.

use super::bank::{Bank, Src, WinRef};
use super::ctx::Ctx;
use super::node::Node;
use super::window::Span;
use crate::event::Side;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueEvent {
    Add,
    Cancel,
    Execute,
}

/// Events of one type at one side's touch per second over a clock window.
pub(crate) struct QueueRate {
    col: usize,
    secs: f64,
    w: WinRef,
}

impl QueueRate {
    pub fn new(ev: QueueEvent, side: Side, span: Span, bank: &mut Bank) -> Self {
        let secs = match span {
            Span::Clock { ns, .. } => ns as f64 / 1e9,
            Span::Events(_) => f64::NAN,
        };
        let col = match ev {
            QueueEvent::Add => 0,
            QueueEvent::Cancel => 1,
            QueueEvent::Execute => 2,
        };
        QueueRate { col, secs, w: bank.window(Src::Touch(side), span) }
    }
}

impl Node for QueueRate {
    fn on_sample(&mut self, ctx: &Ctx, bank: &Bank) -> f64 {
        if ctx.l3_seen && bank.ready(self.w) {
            bank.sum(self.w, self.col) / self.secs
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {}
}

/// Cancellations / arrivals at one side's touch over the window (NaN without arrivals).
pub(crate) struct CancelRatio {
    w: WinRef,
}

impl CancelRatio {
    pub fn new(side: Side, span: Span, bank: &mut Bank) -> Self {
        CancelRatio { w: bank.window(Src::Touch(side), span) }
    }
}

impl Node for CancelRatio {
    fn on_sample(&mut self, ctx: &Ctx, bank: &Bank) -> f64 {
        let b = bank;
        if ctx.l3_seen && b.ready(self.w) && b.sum(self.w, 0) > 0.0 {
            b.sum(self.w, 1) / b.sum(self.w, 0)
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {}
}
