//! Volatility and momentum of the mid price (log units, not annualised).

use super::bank::{Bank, Src, WinRef};
use super::ctx::Ctx;
use super::node::Node;
use super::window::{Lagged, RollingExtrema, Span};

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
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        // ln mid_t − ln mid_{t−w}: one logarithm per sample for all return features.
        ctx.ln_mid - self.lag.push(ctx.ts, ctx.ln_mid)
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
    w: WinRef,
}

impl RealizedVol {
    pub fn new(span: Span, bank: &mut Bank) -> Self {
        RealizedVol { w: bank.window(Src::RetSq, span) }
    }
}

impl Node for RealizedVol {
    fn on_sample(&mut self, ctx: &Ctx, bank: &Bank) -> f64 {
        // No return into the first sample after a reset (the shared window skips it).
        if ctx.samples > 1 && bank.ready(self.w) {
            bank.sum(self.w, 0).max(0.0).sqrt()
        } else {
            f64::NAN
        }
    }
    fn reset(&mut self) {}
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
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        // Extremes of ln mid: ln(H/L) = max ln mid − min ln mid.
        self.ext.push(ctx.ts, ctx.ln_mid);
        if !self.ext.ready(ctx.ts, ctx.t0) {
            return f64::NAN;
        }
        let hl = self.ext.max() - self.ext.min();
        (hl * hl / (4.0 * std::f64::consts::LN_2)).sqrt()
    }
    fn reset(&mut self) {
        self.ext.reset();
    }
    fn overflows(&self) -> u64 {
        self.ext.overflows()
    }
}
