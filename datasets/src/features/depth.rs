//! Depth and book-shape features (Næs & Skjeltorp 2006 for slopes; Large 2007 for resilience).
//! Sizes in lots, distances in ticks.

use super::bank::Bank;
use super::ctx::{Ctx, TradeTick, AGGRESSOR};
use super::node::Node;
use super::trades::TradeSizeStats;
use crate::book::NO_PRICE;
use crate::event::Side;

#[derive(Clone, Copy, Debug)]
pub(crate) enum DepthKind {
    Total,
    Side(Side),
    /// bid depth / ask depth.
    Ratio,
}

pub(crate) struct Depth {
    kind: DepthKind,
    levels: usize,
}

impl Depth {
    pub fn new(kind: DepthKind, levels: usize) -> Self {
        Depth { kind, levels }
    }
}

impl Node for Depth {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        let (b, a) = (ctx.cum_depth(Side::Bid, self.levels), ctx.cum_depth(Side::Ask, self.levels));
        match self.kind {
            DepthKind::Total => b + a,
            DepthKind::Side(Side::Bid) => b,
            DepthKind::Side(Side::Ask) => a,
            DepthKind::Ratio if a > 0.0 => b / a,
            DepthKind::Ratio => f64::NAN,
        }
    }
    fn reset(&mut self) {}
}

/// |P_L − mid| / Σ_{i≤L} q_i: ticks of price impact per lot of a market order sweeping L levels.
/// NaN if the side has fewer than L levels or there is no mid.
pub(crate) struct SlopeImpact {
    pub side: Side,
    pub levels: usize,
}

impl Node for SlopeImpact {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        let (px, sz) = ctx.side(self.side);
        let l = self.levels.min(px.len());
        if ctx.mid.is_nan() || px[l - 1] == NO_PRICE {
            return f64::NAN;
        }
        let q: i64 = sz[..l].iter().sum();
        (px[l - 1] as f64 - ctx.mid).abs() / q as f64
    }
    fn reset(&mut self) {}
}

/// OLS slope of ln(Q_i) on d_i over the present levels i ≤ L of one side, with Q_i the cumulative
/// size to level i and d_i = |P_i − mid| in ticks: how fast depth accumulates away from the mid.
/// NaN with fewer than two levels.
pub(crate) struct SlopeLog {
    pub side: Side,
    pub levels: usize,
}

impl Node for SlopeLog {
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        if ctx.mid.is_nan() {
            return f64::NAN;
        }
        let (px, sz) = ctx.side(self.side);
        let (mut n, mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut cum = 0i64;
        for i in 0..self.levels.min(px.len()) {
            if px[i] == NO_PRICE {
                break;
            }
            cum += sz[i];
            let x = (px[i] as f64 - ctx.mid).abs();
            let y = (cum as f64).ln();
            n += 1.0;
            sx += x;
            sy += y;
            sxx += x * x;
            sxy += x * y;
        }
        let var = n * sxx - sx * sx;
        if n < 2.0 || var <= 0.0 {
            return f64::NAN;
        }
        (n * sxy - sx * sy) / var
    }
    fn reset(&mut self) {}
}

/// Resilience after the last large trade (size > k × mean of the previous N trades): with D_before
/// the hit side's top-L depth in the book the trade met, and D_min the lowest depth of that side
/// since, value = (D_t − D_min)/(D_before − D_min): 0 right after the hit, 1 once refilled (can
/// exceed 1). NaN before the first large trade and while no depletion has been seen.
pub(crate) struct Resilience {
    levels: usize,
    stats: TradeSizeStats,
    side: Option<Side>,
    before: f64,
    min: f64,
}

impl Resilience {
    pub fn new(levels: usize, threshold: f64, trades: usize) -> Self {
        Resilience { levels, stats: TradeSizeStats::new(threshold, trades), side: None, before: 0.0, min: f64::INFINITY }
    }
}

impl Node for Resilience {
    fn wants_trades(&self) -> bool {
        true
    }
    fn on_trade(&mut self, ctx: &Ctx, t: &TradeTick) {
        if self.stats.observe(t.size) == Some(true) {
            // A buy hits the ask side, a sell the bid side.
            let hit = if t.sign[AGGRESSOR] > 0 { Side::Ask } else { Side::Bid };
            self.side = Some(hit);
            self.before = ctx.cum_depth(hit, self.levels);
            self.min = f64::INFINITY;
        }
    }
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        let Some(side) = self.side else { return f64::NAN };
        let d = ctx.cum_depth(side, self.levels);
        self.min = self.min.min(d);
        if self.before > self.min {
            (d - self.min) / (self.before - self.min)
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {
        self.stats.reset();
        self.side = None;
        self.min = f64::INFINITY;
    }
}
