//! Book imbalance features. With bid weights w^b_i and ask weights w^a_i over the top L levels,
//! imbalance = (Σ w^b_i q^b_i − Σ w^a_i q^a_i) / (Σ w^b_i q^b_i + Σ w^a_i q^a_i) ∈ [−1, 1]:
//! volume (w = 1, Gould & Bonart 2016 for L = 1), notional (w = price in ticks) and inverse
//! distance (w = 1/|p − mid| in ticks, Cao, Hansch & Wang 2009 weigh levels by distance).

use super::bank::Bank;
use super::ctx::Ctx;
use super::node::Node;
use super::window::{Ewma, RollingZ, Span};
use crate::book::NO_PRICE;
use crate::event::Side;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Weighting {
    Volume,
    Notional,
    InvDistance,
}

/// Weighted imbalance of the top `l` levels; NaN on an empty book (or no mid for InvDistance).
#[inline]
pub(crate) fn imbalance(ctx: &Ctx, w: Weighting, l: usize) -> f64 {
    if w == Weighting::Volume {
        let (b, a) = (ctx.cum_depth(Side::Bid, l), ctx.cum_depth(Side::Ask, l));
        return if b + a > 0.0 { (b - a) / (b + a) } else { f64::NAN };
    }
    if w == Weighting::InvDistance && ctx.mid.is_nan() {
        return f64::NAN;
    }
    let weight = |p: i64| match w {
        Weighting::Volume => 1.0,
        Weighting::Notional => p as f64,
        Weighting::InvDistance => 1.0 / (p as f64 - ctx.mid).abs().max(0.5),
    };
    let l = l.min(ctx.top.levels());
    let mut sums = [0.0f64; 2];
    for (k, side) in [Side::Bid, Side::Ask].into_iter().enumerate() {
        let (px, sz) = ctx.side(side);
        for i in 0..l {
            if px[i] != NO_PRICE {
                sums[k] += weight(px[i]) * sz[i] as f64;
            }
        }
    }
    let tot = sums[0] + sums[1];
    if tot > 0.0 {
        (sums[0] - sums[1]) / tot
    } else {
        f64::NAN
    }
}

pub(crate) struct Imbalance {
    w: Weighting,
    levels: usize,
}

impl Imbalance {
    pub fn new(w: Weighting, levels: usize) -> Self {
        Imbalance { w, levels }
    }
}

impl Node for Imbalance {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        imbalance(ctx, self.w, self.levels)
    }
    fn reset(&mut self) {}
}

/// (N^b − N^a)/(N^b + N^a) with N the number of resting orders in the top L levels, counted from
/// the L3 stream. NaN unless every counted level is fully explained by orders whose submission the
/// stream showed (orders resting before the data started are unknown), and on L2-only sources.
pub(crate) struct OrderCount {
    levels: usize,
}

impl OrderCount {
    pub fn new(levels: usize) -> Self {
        OrderCount { levels }
    }
}

impl Node for OrderCount {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        let Some(orders) = ctx.orders.as_ref() else { return f64::NAN };
        if !ctx.l3_seen || !orders.valid() {
            return f64::NAN;
        }
        let mut n = [0u64; 2];
        for (k, side) in [Side::Bid, Side::Ask].into_iter().enumerate() {
            let (px, sz) = ctx.side(side);
            for i in 0..self.levels.min(px.len()) {
                if px[i] == NO_PRICE {
                    continue;
                }
                match orders.exact_count(side, px[i], sz[i]) {
                    Some(c) => n[k] += c as u64,
                    None => return f64::NAN,
                }
            }
        }
        let tot = (n[0] + n[1]) as f64;
        if tot > 0.0 {
            (n[0] as f64 - n[1] as f64) / tot
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {}
}

/// EWMA of the volume imbalance; NaN for the first `halflife` samples.
pub(crate) struct ImbalanceEwma {
    levels: usize,
    halflife: f64,
    e: Ewma,
}

impl ImbalanceEwma {
    pub fn new(levels: usize, halflife: f64) -> Self {
        ImbalanceEwma { levels, halflife, e: Ewma::new(halflife) }
    }
}

impl Node for ImbalanceEwma {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        let v = self.e.push(imbalance(ctx, Weighting::Volume, self.levels));
        if (self.e.count() as f64) < self.halflife {
            f64::NAN
        } else {
            v
        }
    }
    fn reset(&mut self) {
        self.e.reset();
    }
}

/// Rolling z-score of the volume imbalance.
pub(crate) struct ImbalanceZ {
    levels: usize,
    z: RollingZ,
}

impl ImbalanceZ {
    pub fn new(levels: usize, span: Span) -> Self {
        ImbalanceZ { levels, z: RollingZ::new(span) }
    }
}

impl Node for ImbalanceZ {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        self.z.push(ctx.ts, ctx.t0, imbalance(ctx, Weighting::Volume, self.levels))
    }
    fn reset(&mut self) {
        self.z.reset();
    }
    fn overflows(&self) -> u64 {
        self.z.overflows()
    }
}
