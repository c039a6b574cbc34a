//! Price features: mid, weighted mid, Stoikov (2018) micro-price, spread, VWAP distance.
//! All prices are in ticks (f64 because a mid can be a half tick).

use super::bank::{Bank, Src, WinRef};
use super::ctx::Ctx;
use super::microprice::imbalance_bucket;
use super::node::Node;
use super::spec::{FeatureSpec, Fitted};
use super::window::{RollingZ, Span};
use crate::event::Side;

pub(crate) struct Mid;

impl Node for Mid {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        ctx.mid
    }
    fn reset(&mut self) {}
}

/// Touch imbalance I = q^b/(q^b + q^a) and the touch prices, if both sides exist.
#[inline]
fn touch(ctx: &Ctx) -> Option<(i64, i64, f64)> {
    let (b, qb) = ctx.best(Side::Bid)?;
    let (a, qa) = ctx.best(Side::Ask)?;
    let tot = (qb + qa) as f64;
    (tot > 0.0).then(|| (b, a, qb as f64 / tot))
}

/// Weighted mid I·P^a + (1 − I)·P^b (Stoikov 2018, eq. 2); `offset` subtracts the mid.
pub(crate) struct WeightedMid {
    pub offset: bool,
}

impl Node for WeightedMid {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        let Some((b, a, i)) = touch(ctx) else { return f64::NAN };
        let wm = i * a as f64 + (1.0 - i) * b as f64;
        if self.offset {
            wm - ctx.mid
        } else {
            wm
        }
    }
    fn reset(&mut self) {}
}

/// Micro-price P^micro = mid + g*(s, b) with s the spread in ticks and b the imbalance bucket
/// (table fitted by `fit`, see `microprice.rs`). NaN before fitting, for spreads outside
/// 1..=spread_buckets ticks, and for states the training data never visited.
pub(crate) struct Microprice {
    offset: bool,
    buckets: usize,
    spreads: usize,
    edges: Vec<f64>,
    g: Vec<Option<f64>>,
}

impl Microprice {
    pub fn new(s: &FeatureSpec, offset: bool) -> Self {
        let (edges, g) = match &s.fitted {
            Some(Fitted::Microprice { imbalance_edges, adjustment, .. }) => (imbalance_edges.clone(), adjustment.clone()),
            _ => (Vec::new(), Vec::new()),
        };
        Microprice { offset, buckets: s.imbalance_buckets.unwrap_or(10), spreads: s.spread_buckets.unwrap_or(2), edges, g }
    }
}

impl Node for Microprice {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        if self.g.is_empty() {
            return f64::NAN;
        }
        let Some((b, a, i)) = touch(ctx) else { return f64::NAN };
        let s = a - b;
        if s < 1 || s as usize > self.spreads {
            return f64::NAN;
        }
        let k = (s as usize - 1) * self.buckets + imbalance_bucket(&self.edges, i);
        match self.g[k] {
            Some(g) if self.offset => g,
            Some(g) => ctx.mid + g,
            None => f64::NAN,
        }
    }
    fn reset(&mut self) {}
}

/// Spread in ticks, or relative to the mid in basis points.
pub(crate) struct Spread {
    pub bps: bool,
}

#[inline]
fn spread(ctx: &Ctx) -> f64 {
    match (ctx.best(Side::Bid), ctx.best(Side::Ask)) {
        (Some((b, _)), Some((a, _))) => (a - b) as f64,
        _ => f64::NAN,
    }
}

impl Node for Spread {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        let s = spread(ctx);
        if self.bps {
            s / ctx.mid * 1e4
        } else {
            s
        }
    }
    fn reset(&mut self) {}
}

pub(crate) struct SpreadZ {
    z: RollingZ,
}

impl SpreadZ {
    pub fn new(span: Span) -> Self {
        SpreadZ { z: RollingZ::new(span) }
    }
}

impl Node for SpreadZ {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        self.z.push(ctx.ts, ctx.t0, spread(ctx))
    }
    fn reset(&mut self) {
        self.z.reset();
    }
    fn overflows(&self) -> u64 {
        self.z.overflows()
    }
}

/// mid − VWAP, VWAP = Σ p·q / Σ q over the trades in the window; NaN if nothing traded.
pub(crate) struct VwapDistance {
    w: WinRef,
}

impl VwapDistance {
    pub fn new(span: Span, bank: &mut Bank) -> Self {
        VwapDistance { w: bank.window(Src::Vwap, span) }
    }
}

impl Node for VwapDistance {
    fn on_sample(&mut self, ctx: &Ctx, bank: &Bank) -> f64 {
        let b = bank;
        if !b.ready(self.w) || b.sum(self.w, 1) <= 0.0 {
            return f64::NAN;
        }
        ctx.mid - b.sum(self.w, 0) / b.sum(self.w, 1)
    }
    fn reset(&mut self) {}
}
