//! Trade-flow features. Every trade comes from `Event::trade()` (exchange prints, visible and
//! hidden executions). Its sign is, by `classification`:
//! - `aggressor`: the source's aggressor side (LOBSTER: opposite of the executed order's side;
//!   Binance `m` flag; Coinbase/Kraken taker side). Every loader in flowcast provides it.
//! - `tick`: tick rule — sign of the price change from the previous trade, the last non-zero sign
//!   carried over zero ticks; the first trade (after start or a gap) is unclassified.
//! - `lee_ready`: Lee & Ready (1991) — above the prevailing mid (book before the trade's message)
//!   a buy, below a sell, at the mid the tick rule.
//!
//! The tick and Lee-Ready variants are the documented fallback for sources without an aggressor
//! flag and a check of the flag where it exists. Unclassified trades count in neither side.

use super::bank::{Bank, Src, WinRef};
use super::ctx::{Ctx, TradeTick};
use super::node::Node;
use super::window::{Ring, Span};

/// Rolling mean size of the previous N trades, for "large trade" tests.
pub(crate) struct TradeSizeStats {
    k: f64,
    ring: Ring<f64>,
    sum: f64,
}

impl TradeSizeStats {
    pub fn new(k: f64, n: usize) -> Self {
        TradeSizeStats { k, ring: Ring::new(n), sum: 0.0 }
    }
    /// Whether `size` exceeds k × the mean of the previous N trades (None while fewer than N
    /// trades were seen); then records it. Sizes are integers, so the running sum is exact.
    #[inline]
    pub fn observe(&mut self, size: i64) -> Option<bool> {
        let q = size as f64;
        let verdict = self.ring.is_full().then(|| q > self.k * self.sum / self.ring.len() as f64);
        if let Some(old) = self.ring.push(q) {
            self.sum -= old;
        }
        self.sum += q;
        verdict
    }
    pub fn ready(&self) -> bool {
        self.ring.is_full()
    }
    pub fn reset(&mut self) {
        self.ring.clear();
        self.sum = 0.0;
    }
}

/// Buy or sell volume (lots) over the window.
pub(crate) struct Volume {
    buy: bool,
    w: WinRef,
}

impl Volume {
    pub fn new(class: usize, buy: bool, span: Span, bank: &mut Bank) -> Self {
        Volume { buy, w: bank.window(Src::Flow(class), span) }
    }
}

impl Node for Volume {
    fn on_sample(&mut self, _ctx: &Ctx, bank: &Bank) -> f64 {
        if bank.ready(self.w) {
            bank.sum(self.w, if self.buy { 0 } else { 1 })
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {}
}

/// (B − S)/(B + S) over the window; 0 when nothing (classified) traded.
pub(crate) struct TradeImbalance {
    w: WinRef,
}

impl TradeImbalance {
    pub fn new(class: usize, span: Span, bank: &mut Bank) -> Self {
        TradeImbalance { w: bank.window(Src::Flow(class), span) }
    }
}

impl Node for TradeImbalance {
    fn on_sample(&mut self, _ctx: &Ctx, bank: &Bank) -> f64 {
        if !bank.ready(self.w) {
            return f64::NAN;
        }
        let (b, s) = (bank.sum(self.w, 0), bank.sum(self.w, 1));
        if b + s > 0.0 {
            (b - s) / (b + s)
        } else {
            0.0
        }
    }
    fn reset(&mut self) {}
}

/// 1 if a trade since the previous sample was large, else 0; NaN until N trades were seen.
pub(crate) struct LargeTrade {
    stats: TradeSizeStats,
    hit: bool,
}

impl LargeTrade {
    pub fn new(k: f64, n: usize) -> Self {
        LargeTrade { stats: TradeSizeStats::new(k, n), hit: false }
    }
}

impl Node for LargeTrade {
    fn wants_trades(&self) -> bool {
        true
    }
    fn on_trade(&mut self, _ctx: &Ctx, t: &TradeTick) {
        if self.stats.observe(t.size) == Some(true) {
            self.hit = true;
        }
    }
    fn on_sample(&mut self, _ctx: &Ctx, _bank: &Bank) -> f64 {
        let v = if self.hit {
            1.0
        } else if self.stats.ready() {
            0.0
        } else {
            f64::NAN
        };
        self.hit = false;
        v
    }
    fn reset(&mut self) {
        self.stats.reset();
        self.hit = false;
    }
}

/// Trades per second over a clock window.
pub(crate) struct Intensity {
    secs: f64,
    w: WinRef,
}

impl Intensity {
    pub fn new(span: Span, bank: &mut Bank) -> Self {
        let secs = match span {
            Span::Clock { ns, .. } => ns as f64 / 1e9,
            Span::Events(_) => f64::NAN,
        };
        Intensity { secs, w: bank.window(Src::Trades, span) }
    }
}

impl Node for Intensity {
    fn on_sample(&mut self, _ctx: &Ctx, bank: &Bank) -> f64 {
        if bank.ready(self.w) {
            bank.sum(self.w, 0) / self.secs
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {}
}
