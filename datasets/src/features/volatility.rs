//! Volatility and momentum of the mid price (log units, not annualised).

use super::engine::{Ctx, Node};
use super::window::{Lagged, RollingExtrema, RollingSums, Span};

/// ln(mid_t / mid one window ago): N samples back, or the mid in force at t − W.
pub(crate) struct LogReturn {
    lag: Lagged,
}

impl LogReturn {
    pub fn new(span: Span) -> Self {
        LogReturn { lag: Lagged::new(span) }
    }
}

impl Node for LogReturn {
    fn on_sample(&mut self, ctx: &Ctx) -> f64 {
        let past = self.lag.push(ctx.ts, ctx.mid);
        (ctx.mid / past).ln()
    }
    fn reset(&mut self) {
        self.lag.reset();
    }
    fn overflows(&self) -> u64 {
        self.lag.overflows()
    }
}

/// Realised volatility sqrt(Σ r_i²), r_i = ln(mid_i / mid_{i−1}) between consecutive samples
/// (a sample with an empty side contributes 0 and the next return spans it). An event window of
/// N holds N returns.
pub(crate) struct RealizedVol {
    sums: RollingSums,
}

impl RealizedVol {
    pub fn new(span: Span) -> Self {
        RealizedVol { sums: RollingSums::new(span, 1) }
    }
}

impl Node for RealizedVol {
    fn on_sample(&mut self, ctx: &Ctx) -> f64 {
        if ctx.samples == 1 {
            // No return into the first sample after a reset.
            self.sums.advance(ctx.ts);
            return f64::NAN;
        }
        let r = (ctx.mid / ctx.prev_mid).ln();
        self.sums.push(ctx.ts, &[if r.is_nan() { 0.0 } else { r * r }]);
        if self.sums.ready(ctx.ts, ctx.t0) {
            self.sums.sum(0).max(0.0).sqrt()
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

/// Parkinson (1980): σ = sqrt(ln(H/L)² / (4 ln 2)) with H, L the highest and lowest mid in the
/// window (monotone deques, amortised O(1)).
pub(crate) struct Parkinson {
    ext: RollingExtrema,
}

impl Parkinson {
    pub fn new(span: Span) -> Self {
        Parkinson { ext: RollingExtrema::new(span) }
    }
}

impl Node for Parkinson {
    fn on_sample(&mut self, ctx: &Ctx) -> f64 {
        self.ext.push(ctx.ts, ctx.mid);
        if !self.ext.ready(ctx.ts, ctx.t0) {
            return f64::NAN;
        }
        let hl = (self.ext.max() / self.ext.min()).ln();
        (hl * hl / (4.0 * std::f64::consts::LN_2)).sqrt()
    }
    fn reset(&mut self) {
        self.ext.reset();
    }
    fn overflows(&self) -> u64 {
        self.ext.overflows()
    }
}
