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

use super::bank::{Bank, Src, WinRef};
use super::ctx::Ctx;
use super::node::Node;
use super::spec::Fitted;
use super::window::Span;
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
    w: WinRef,
}

impl WindowOfi {
    pub fn new(level: usize, span: Span, bank: &mut Bank) -> Self {
        WindowOfi { w: bank.window(Src::Ofi(level - 1), span) }
    }
}

impl Node for WindowOfi {
    fn on_sample(&mut self, ctx: &Ctx, bank: &Bank) -> f64 {
        if ctx.has_prev && bank.ready(self.w) {
            bank.sum(self.w, 0)
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {}
}

/// The windows of CCZ's (2023) normalisation over one span: Σ e^m per level, Σ of the per-sample
/// mean depth per level (1/2M) Σ_{i≤M} (q^b_i + q^a_i), and the number of samples; then
/// x_m = Σ e^m / Q̄ with Q̄ = Σ depth / samples.
struct NormWindows {
    ofi: Vec<WinRef>,
    depth: WinRef,
    n: WinRef,
}

impl NormWindows {
    fn new(levels: usize, span: Span, bank: &mut Bank) -> Self {
        NormWindows {
            ofi: (0..levels).map(|m| bank.window(Src::Ofi(m), span)).collect(),
            depth: bank.window(Src::DepthAvg(levels), span),
            n: bank.window(Src::OfiSamples, span),
        }
    }
    /// Q̄⁻¹ if the window is full and has depth.
    #[inline]
    fn inv_depth(&self, ctx: &Ctx, b: &Bank) -> Option<f64> {
        let ok = ctx.has_prev && b.ready(self.depth) && b.sum(self.depth, 0) > 0.0;
        ok.then(|| b.sum(self.n, 0) / b.sum(self.depth, 0))
    }
}

/// `mlofi_norm`: one component x_m.
pub(crate) struct NormOfi {
    i: usize,
    w: NormWindows,
}

impl NormOfi {
    pub fn new(level: usize, levels: usize, span: Span, bank: &mut Bank) -> Self {
        NormOfi { i: level - 1, w: NormWindows::new(levels, span, bank) }
    }
}

impl Node for NormOfi {
    fn on_sample(&mut self, ctx: &Ctx, bank: &Bank) -> f64 {
        match self.w.inv_depth(ctx, bank) {
            Some(q) => bank.sum(self.w.ofi[self.i], 0) * q,
            None => f64::NAN,
        }
    }
    fn reset(&mut self) {}
}

/// `ofi_integrated`: w · x with w the fitted first principal component (NaN until fitted).
pub(crate) struct IntegratedOfi {
    w: NormWindows,
    weights: Option<Vec<f64>>,
}

impl IntegratedOfi {
    pub fn new(levels: usize, span: Span, fitted: Option<&Fitted>, bank: &mut Bank) -> Self {
        let weights = match fitted {
            Some(Fitted::IntegratedOfi { weights, .. }) => Some(weights.clone()),
            _ => None,
        };
        IntegratedOfi { w: NormWindows::new(levels, span, bank), weights }
    }
}

impl Node for IntegratedOfi {
    fn on_sample(&mut self, ctx: &Ctx, bank: &Bank) -> f64 {
        let (Some(weights), Some(q)) = (&self.weights, self.w.inv_depth(ctx, bank)) else { return f64::NAN };
        weights.iter().zip(&self.w.ofi).map(|(wi, &r)| wi * bank.sum(r, 0) * q).sum()
    }
    fn reset(&mut self) {}
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
