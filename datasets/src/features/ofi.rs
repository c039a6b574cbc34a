//! Order-flow imbalance (OFI) of Cont, Kukanov & Stoikov (2014), "The price impact of order book
//! events", J. Financial Econometrics 12(1). Per book update n (best bid P^B, size q^B; best ask
//! P^A, size q^A):
//!
//! e_n = 1{P^B_n ≥ P^B_{n−1}} q^B_n − 1{P^B_n ≤ P^B_{n−1}} q^B_{n−1}
//!     − 1{P^A_n ≤ P^A_{n−1}} q^A_n + 1{P^A_n ≥ P^A_{n−1}} q^A_{n−1}
//!
//! Positive e_n is buying pressure (bid queue grows or bid price rises, ask queue shrinks or ask
//! price rises). OFI over an interval is the sum of e_n. Prices in ticks, sizes in lots.
//!
//! Multi-level OFI (Xu, Gould & Howison 2019) applies the same formula to the m-th level of each
//! side; Cont, Cucuringu & Zhang (2023) normalise it by the mean depth per level and integrate the
//! levels with the first principal component of the normalised vector (fitted in `fit.rs`).
//! In the engine, n runs over sample points (consistent books), not over raw level events.

use super::engine::{Ctx, Node};
use super::spec::Fitted;
use super::window::{RollingSums, Span};
use crate::book::{TopN, NO_PRICE};

/// Best level of one side: (price ticks, size lots).
pub type Touch = (i64, i64);

/// The CKS (2014) per-update OFI contribution e_n from the previous and current touches.
#[inline]
pub fn ofi_event(prev_bid: Touch, prev_ask: Touch, bid: Touch, ask: Touch) -> i64 {
    let mut e = 0;
    if bid.0 >= prev_bid.0 {
        e += bid.1;
    }
    if bid.0 <= prev_bid.0 {
        e -= prev_bid.1;
    }
    if ask.0 <= prev_ask.0 {
        e -= ask.1;
    }
    if ask.0 >= prev_ask.0 {
        e += prev_ask.1;
    }
    e
}

/// e^m between two books at level index `m` (0 = touch). An absent level has size 0 and price
/// −∞ on the bid ([`NO_PRICE`] already is `i64::MIN`) and +∞ on the ask, so a level that vanishes
/// counts as its whole queue leaving and one that appears as a new, better-priced queue.
#[inline]
pub fn level_ofi(prev: &TopN, cur: &TopN, m: usize) -> i64 {
    let ask = |t: &TopN| {
        let p = t.ask_px[m];
        (if p == NO_PRICE { i64::MAX } else { p }, t.ask_sz[m])
    };
    ofi_event((prev.bid_px[m], prev.bid_sz[m]), ask(prev), (cur.bid_px[m], cur.bid_sz[m]), ask(cur))
}

/// Σ e^m over a window (best level: m = 1). `ofi` and `mlofi`.
pub(crate) struct WindowOfi {
    m: usize,
    sums: RollingSums,
}

impl WindowOfi {
    pub fn new(level: usize, span: Span) -> Self {
        WindowOfi { m: level - 1, sums: RollingSums::new(span, 1) }
    }
}

impl Node for WindowOfi {
    fn on_sample(&mut self, ctx: &Ctx) -> f64 {
        if ctx.has_prev {
            self.sums.push(ctx.ts, &[ctx.ofi[self.m]]);
        } else {
            self.sums.advance(ctx.ts);
        }
        if ctx.has_prev && self.sums.ready(ctx.ts, ctx.t0) {
            self.sums.sum(0)
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {
        self.sums.reset();
    }
    fn overflows(&self) -> u64 {
        self.sums.overflows()
    }
}

/// Normalised multi-level OFI vector of CCZ (2023): x_m = Σ_window e^m / Q̄, where Q̄ is the
/// window mean of the per-sample average depth per level (1/2M) Σ_{i≤M} (q^b_i + q^a_i).
pub(crate) struct NormVec {
    levels: usize,
    /// Columns: e^1..e^M, depth average, 1 (sample count).
    sums: RollingSums,
    buf: Vec<f64>,
}

impl NormVec {
    pub fn new(levels: usize, span: Span) -> Self {
        NormVec { levels, sums: RollingSums::new(span, levels + 2), buf: vec![0.0; levels + 2] }
    }
    /// Update at a sample; returns whether `x` is defined.
    pub fn update(&mut self, ctx: &Ctx) -> bool {
        if !ctx.has_prev {
            self.sums.advance(ctx.ts);
            return false;
        }
        let m = self.levels;
        let mut d = 0i64;
        for i in 0..m {
            self.buf[i] = ctx.ofi[i];
            d += ctx.top.bid_sz[i] + ctx.top.ask_sz[i];
        }
        self.buf[m] = d as f64 / (2 * m) as f64;
        self.buf[m + 1] = 1.0;
        self.sums.push(ctx.ts, &self.buf);
        self.sums.ready(ctx.ts, ctx.t0) && self.sums.sum(m) > 0.0
    }
    /// x_m for level index `i` (0-based).
    #[inline]
    pub fn x(&self, i: usize) -> f64 {
        let m = self.levels;
        self.sums.sum(i) * self.sums.sum(m + 1) / self.sums.sum(m)
    }
    pub fn reset(&mut self) {
        self.sums.reset();
    }
    pub fn overflows(&self) -> u64 {
        self.sums.overflows()
    }
}

/// `mlofi_norm`: one component x_m of [`NormVec`].
pub(crate) struct NormOfi {
    i: usize,
    v: NormVec,
}

impl NormOfi {
    pub fn level(level: usize, levels: usize, span: Span) -> Self {
        NormOfi { i: level - 1, v: NormVec::new(levels, span) }
    }
}

impl Node for NormOfi {
    fn on_sample(&mut self, ctx: &Ctx) -> f64 {
        if self.v.update(ctx) {
            self.v.x(self.i)
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {
        self.v.reset();
    }
    fn overflows(&self) -> u64 {
        self.v.overflows()
    }
}

/// `ofi_integrated`: w · x with w the fitted first principal component (NaN until fitted).
pub(crate) struct IntegratedOfi {
    v: NormVec,
    w: Option<Vec<f64>>,
}

impl IntegratedOfi {
    pub fn new(levels: usize, span: Span, fitted: Option<&Fitted>) -> Self {
        let w = match fitted {
            Some(Fitted::IntegratedOfi { weights, .. }) => Some(weights.clone()),
            _ => None,
        };
        IntegratedOfi { v: NormVec::new(levels, span), w }
    }
}

impl Node for IntegratedOfi {
    fn on_sample(&mut self, ctx: &Ctx) -> f64 {
        let ok = self.v.update(ctx);
        match &self.w {
            Some(w) if ok => w.iter().enumerate().map(|(i, wi)| wi * self.v.x(i)).sum(),
            _ => f64::NAN,
        }
    }
    fn reset(&mut self) {
        self.v.reset();
    }
    fn overflows(&self) -> u64 {
        self.v.overflows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(bids: &[(i64, i64)], asks: &[(i64, i64)], levels: usize) -> TopN {
        let mut t = TopN::new(levels);
        for (i, &(p, q)) in bids.iter().enumerate() {
            t.bid_px[i] = p;
            t.bid_sz[i] = q;
        }
        for (i, &(p, q)) in asks.iter().enumerate() {
            t.ask_px[i] = p;
            t.ask_sz[i] = q;
        }
        t
    }

    /// Multi-level OFI (XGH 2019, eq. 3): the CKS cases level by level, including levels that
    /// appear and vanish.
    #[test]
    fn multi_level_by_hand() {
        let a = book(&[(99, 20), (98, 30), (97, 40)], &[(101, 10), (102, 15), (103, 5)], 3);
        // Level 1 bid grows 20→25 (+5); level 2 bid queue at 98 shrinks 30→8 (−22); level 3:
        // ask 103/5 vanishes (+5 buying pressure).
        let b = book(&[(99, 25), (98, 8), (97, 40)], &[(101, 10), (102, 15)], 3);
        assert_eq!(level_ofi(&a, &b, 0), 5);
        assert_eq!(level_ofi(&a, &b, 1), -22);
        assert_eq!(level_ofi(&a, &b, 2), 5);
        // Level 1 bid price up (new queue 3 counts fully); level 2 now holds the old touch 99/25 at a
        // higher price than 98: +25; level 3: bid 97→98 (+8) and an ask appears at 104, better
        // than +∞, so its queue counts as selling pressure (−7).
        let c = book(&[(100, 3), (99, 25), (98, 8)], &[(101, 10), (102, 15), (104, 7)], 3);
        assert_eq!(level_ofi(&b, &c, 0), 3);
        assert_eq!(level_ofi(&b, &c, 1), 25);
        assert_eq!(level_ofi(&b, &c, 2), 8 - 7);
        // The best level agrees with the CKS function on touches.
        assert_eq!(level_ofi(&a, &b, 0), ofi_event((99, 20), (101, 10), (99, 25), (101, 10)));
    }

    /// The six bid/ask price-move cases of CKS (2014), Section 2.
    #[test]
    fn six_cases() {
        let pa = (101, 10);
        let pb = (99, 20);
        // Bid unchanged price: e = q_b(n) - q_b(n-1) (bid side); ask unchanged: e += q_a(n-1) - q_a(n).
        assert_eq!(ofi_event(pb, pa, (99, 25), pa), 5);
        // Bid price up: the whole new bid queue counts as buying.
        assert_eq!(ofi_event(pb, pa, (100, 3), pa), 3);
        // Bid price down: the whole old bid queue counts as selling.
        assert_eq!(ofi_event(pb, pa, (98, 50), pa), -20);
        // Ask unchanged, size down (ask liquidity consumed) is buying pressure.
        assert_eq!(ofi_event(pb, pa, pb, (101, 4)), 6);
        // Ask price down (new better offer): the new ask queue counts as selling.
        assert_eq!(ofi_event(pb, pa, pb, (100, 7)), -7);
        // Ask price up (ask queue depleted): the old ask queue counts as buying.
        assert_eq!(ofi_event(pb, pa, pb, (102, 30)), 10);
    }
}
