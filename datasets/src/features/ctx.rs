//! What every feature node reads: the per-sample state the engine maintains ([`Ctx`]: book now
//! and at the previous sample, per-level OFI, trade and touch flow since the previous sample),
//! one trade as nodes see it ([`TradeTick`]), and the trade-classification indices.

use super::orders::OrderTracker;
use crate::book::{TopN, NO_PRICE};
use crate::event::{Side, NO_TS};

/// Trade classification index into [`Flow`] arrays.
pub(crate) const AGGRESSOR: usize = 0;
pub(crate) const TICK: usize = 1;
pub(crate) const LEE_READY: usize = 2;

pub(crate) fn class_index(c: Option<&str>) -> usize {
    match c {
        Some("tick") => TICK,
        Some("lee_ready") => LEE_READY,
        _ => AGGRESSOR,
    }
}

/// Trades since the previous sample.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Flow {
    /// Buy / sell size (lots) per classification (aggressor, tick, Lee-Ready).
    pub buy: [f64; 3],
    pub sell: [f64; 3],
    pub trades: f64,
    pub volume: f64,
    /// Σ price (ticks) × size (lots).
    pub notional: f64,
}

/// L3 order events at the touch of one side since the previous sample (counts).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TouchFlow {
    pub adds: f64,
    pub cancels: f64,
    pub execs: f64,
}

/// One trade as nodes see it: signs are +1 buy, −1 sell, 0 unclassified, per classification.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TradeTick {
    pub ts: i64,
    /// Ticks; x.5 for LOBSTER's half-tick (midpoint) executions (`flags::HALF_TICK`).
    pub price: f64,
    pub size: i64,
    pub sign: [i8; 3],
}

/// State shared by all nodes, updated once per event / sample.
pub(crate) struct Ctx {
    pub ts: i64,
    /// First sample time since the last reset (clock-window warm-up).
    pub t0: i64,
    /// Samples since the last reset, including the current one.
    pub samples: u64,
    /// Book at this sample and at the previous one.
    pub top: TopN,
    pub prev: TopN,
    /// Cumulative size of the top i+1 levels per side at this sample (bid, ask).
    pub cum: [Vec<f64>; 2],
    /// `prev` holds the previous sample's book (false at the first sample after a reset).
    pub has_prev: bool,
    /// Mid (ticks) at this sample; NaN if a side is empty.
    pub mid: f64,
    /// Mid at the previous sample (NaN if none).
    pub prev_mid: f64,
    /// ln(mid) and ln(prev_mid), computed once per sample for the return features.
    pub ln_mid: f64,
    pub prev_ln_mid: f64,
    /// Per-level OFI e^m_n (m = 1..len) between the previous and this sample (valid iff has_prev).
    pub ofi: Vec<f64>,
    pub flow: Flow,
    pub touch: [TouchFlow; 2],
    pub l3_seen: bool,
    pub last_trade_ts: i64,
    /// Last trade price in half ticks (exact for half-tick executions); NO_PRICE if none.
    pub last_trade_px2: i64,
    /// Last non-zero tick-rule sign.
    pub tick_sign: i8,
    pub last_mid_change_ts: i64,
    pub orders: Option<OrderTracker>,
}

impl Ctx {
    pub(crate) fn new(levels: usize, ofi_levels: usize, orders: bool) -> Ctx {
        Ctx {
            ts: 0,
            t0: 0,
            samples: 0,
            top: TopN::new(levels),
            prev: TopN::new(levels),
            cum: [vec![0.0; levels], vec![0.0; levels]],
            has_prev: false,
            mid: f64::NAN,
            prev_mid: f64::NAN,
            ln_mid: f64::NAN,
            prev_ln_mid: f64::NAN,
            ofi: vec![0.0; ofi_levels],
            flow: Flow::default(),
            touch: [TouchFlow::default(); 2],
            l3_seen: false,
            last_trade_ts: NO_TS,
            last_trade_px2: NO_PRICE,
            tick_sign: 0,
            last_mid_change_ts: NO_TS,
            orders: orders.then(OrderTracker::new),
        }
    }

    pub(crate) fn reset(&mut self) {
        self.samples = 0;
        self.has_prev = false;
        self.mid = f64::NAN;
        self.prev_mid = f64::NAN;
        self.ln_mid = f64::NAN;
        self.prev_ln_mid = f64::NAN;
        self.flow = Flow::default();
        self.touch = [TouchFlow::default(); 2];
        self.l3_seen = false;
        self.last_trade_ts = NO_TS;
        self.last_trade_px2 = NO_PRICE;
        self.tick_sign = 0;
        self.last_mid_change_ts = NO_TS;
        if let Some(o) = &mut self.orders {
            o.reset();
        }
    }

    /// Best bid / ask `(price, size)` at this sample.
    #[inline]
    pub fn best(&self, side: Side) -> Option<(i64, i64)> {
        let (px, sz) = match side {
            Side::Bid => (self.top.bid_px[0], self.top.bid_sz[0]),
            Side::Ask => (self.top.ask_px[0], self.top.ask_sz[0]),
        };
        (px != NO_PRICE).then_some((px, sz))
    }

    /// Prices and sizes of one side at this sample.
    #[inline]
    pub fn side(&self, side: Side) -> (&[i64], &[i64]) {
        match side {
            Side::Bid => (&self.top.bid_px, &self.top.bid_sz),
            Side::Ask => (&self.top.ask_px, &self.top.ask_sz),
        }
    }

    /// Σ sizes of the top `l` levels of `side` (absent levels count 0); O(1).
    #[inline]
    pub fn cum_depth(&self, side: Side, l: usize) -> f64 {
        let c = &self.cum[side as usize];
        c[l.min(c.len()) - 1]
    }
}
