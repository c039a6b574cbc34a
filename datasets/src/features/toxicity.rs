//! Toxicity and price impact: VPIN (Easley, López de Prado & O'Hara 2012) and Kyle's (1985)
//! lambda as a rolling regression.
//!
//! Time bars (BVC, Kyle) are aligned to multiples of `bar` since the epoch; a bar closes at the
//! first trade or sample whose timestamp lies in a later bar, so nothing is known before its time.

use super::bank::Bank;
use super::ctx::{Ctx, TradeTick, AGGRESSOR, TICK};
use super::node::Node;
use super::spec::{FeatureSpec, Fitted};
use super::window::{RollingSums, Span};
use crate::error::{DataError, Result};
use crate::time::parse_duration;

/// Standard normal CDF Φ(x) = erfc(−x/√2)/2, with the Chebyshev-fitted erfc of Numerical Recipes
/// (fractional error < 1.2e-7 everywhere).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Bar index tracking: `roll(ts)` returns how many bars closed since the last call.
#[derive(Clone, Copy, Debug)]
struct Bars {
    ns: i64,
    cur: i64,
    started: bool,
}

impl Bars {
    fn new(ns: i64) -> Self {
        Bars { ns, cur: 0, started: false }
    }
    #[inline]
    fn roll(&mut self, ts: i64) -> i64 {
        let b = ts.div_euclid(self.ns);
        if !self.started {
            self.started = true;
            self.cur = b;
            return 0;
        }
        if b <= self.cur {
            return 0;
        }
        let k = b - self.cur;
        self.cur = b;
        k
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VpinClass {
    Aggressor,
    Tick,
    Bvc,
}

/// VPIN = Σ_{τ=1..n} |V^S_τ − V^B_τ| / (n V) over the last n completed volume buckets of size V.
/// Volume is split across buckets exactly (a trade can fill one and open the next). Buy fraction
/// per trade: 1/0 by the aggressor side or the tick rule; with bulk-volume classification per
/// time bar: Φ(ΔP/σ_ΔP), ΔP the bar's last-trade price change and σ_ΔP the std of the previous
/// `sigma_bars` bars' ΔP (past only: ELO use the whole sample's σ, which would look ahead).
pub(crate) struct Vpin {
    class: VpinClass,
    v: f64,
    n: usize,
    cur_buy: f64,
    cur_sell: f64,
    cur_vol: f64,
    buckets: RollingSums<1>,
    // Bulk-volume classification state.
    bars: Bars,
    sigma_bars: usize,
    bar_vol: f64,
    bar_px: f64,
    ref_px: f64,
    dp: RollingSums<2>,
}

impl Vpin {
    pub fn new(s: &FeatureSpec) -> Result<Self> {
        let class = match s.classification.as_deref() {
            Some("tick") => VpinClass::Tick,
            Some("bvc") => VpinClass::Bvc,
            _ => VpinClass::Aggressor,
        };
        let v = match (s.bucket_volume, &s.fitted) {
            (Some(v), _) => v,
            (None, Some(Fitted::Vpin { bucket_volume, .. })) => *bucket_volume,
            _ => f64::NAN,
        };
        let bar_ns = parse_duration(s.bar.as_deref().unwrap_or("1s")).map_err(DataError::Invalid)?;
        let n = s.window_buckets.unwrap_or(50);
        let sigma_bars = s.sigma_bars.unwrap_or(100);
        Ok(Vpin {
            class,
            v,
            n,
            cur_buy: 0.0,
            cur_sell: 0.0,
            cur_vol: 0.0,
            buckets: RollingSums::new(Span::Events(n)),
            bars: Bars::new(bar_ns),
            sigma_bars,
            bar_vol: 0.0,
            bar_px: f64::NAN,
            ref_px: f64::NAN,
            dp: RollingSums::new(Span::Events(if class == VpinClass::Bvc { sigma_bars } else { 1 })),
        })
    }

    /// Pour `vol` lots with buy fraction `f` into the buckets.
    fn pour(&mut self, vol: f64, f: f64) {
        if self.v.is_nan() || self.v <= 0.0 {
            return;
        }
        let mut rem = vol;
        while rem > 0.0 {
            let take = rem.min(self.v - self.cur_vol);
            self.cur_buy += take * f;
            self.cur_sell += take * (1.0 - f);
            self.cur_vol += take;
            rem -= take;
            if self.cur_vol >= self.v * (1.0 - 1e-12) {
                self.buckets.push(0, &[(self.cur_buy - self.cur_sell).abs()]);
                self.cur_buy = 0.0;
                self.cur_sell = 0.0;
                self.cur_vol = 0.0;
                // Buckets that would be pushed out of the window by this same trade are skipped.
                let whole = (rem / self.v).floor();
                if whole > self.n as f64 {
                    rem -= (whole - self.n as f64) * self.v;
                }
            }
        }
    }

    fn close_bar(&mut self, vol: f64, last_px: f64) {
        let end = if last_px.is_nan() { self.ref_px } else { last_px };
        if !self.ref_px.is_nan() && !end.is_nan() {
            let dp = end - self.ref_px;
            if self.dp.ready(0, 0) && vol > 0.0 {
                let n = self.sigma_bars as f64;
                let mean = self.dp.sum(0) / n;
                let sd = (self.dp.sum(1) / n - mean * mean).max(0.0).sqrt();
                let f = if sd > 0.0 {
                    normal_cdf(dp / sd)
                } else if dp > 0.0 {
                    1.0
                } else if dp < 0.0 {
                    0.0
                } else {
                    0.5
                };
                self.pour(vol, f);
            }
            self.dp.push(0, &[dp, dp * dp]);
        }
        self.ref_px = end;
    }

    fn roll_bars(&mut self, ts: i64) {
        let k = self.bars.roll(ts);
        if k == 0 {
            return;
        }
        let (vol, px) = (self.bar_vol, self.bar_px);
        self.bar_vol = 0.0;
        self.bar_px = f64::NAN;
        self.close_bar(vol, px);
        // Empty bars in between: ΔP = 0. Beyond sigma_bars of them the state no longer changes.
        for _ in 0..(k - 1).min(self.sigma_bars as i64 + 1) {
            self.close_bar(0.0, f64::NAN);
        }
    }
}

impl Node for Vpin {
    fn wants_trades(&self) -> bool {
        true
    }
    fn on_trade(&mut self, _ctx: &Ctx, t: &TradeTick) {
        let q = t.size as f64;
        match self.class {
            VpinClass::Aggressor => self.pour(q, if t.sign[AGGRESSOR] > 0 { 1.0 } else { 0.0 }),
            VpinClass::Tick => match t.sign[TICK] {
                1 => self.pour(q, 1.0),
                -1 => self.pour(q, 0.0),
                _ => {}
            },
            VpinClass::Bvc => {
                self.roll_bars(t.ts);
                self.bar_vol += q;
                self.bar_px = t.price;
            }
        }
    }
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        if self.class == VpinClass::Bvc {
            self.roll_bars(ctx.ts);
        }
        if self.v.is_nan() || !self.buckets.ready(0, 0) {
            return f64::NAN;
        }
        self.buckets.sum(0) / (self.n as f64 * self.v)
    }
    fn reset(&mut self) {
        self.cur_buy = 0.0;
        self.cur_sell = 0.0;
        self.cur_vol = 0.0;
        self.buckets.reset();
        self.bars = Bars::new(self.bars.ns);
        self.bar_vol = 0.0;
        self.bar_px = f64::NAN;
        self.ref_px = f64::NAN;
        self.dp.reset();
    }
}

/// Kyle's lambda: OLS slope of Δmid (ticks, last mid of a bar minus last mid of the previous
/// bar) on signed traded size (lots, aggressor sign) over the last `window_bars` time bars.
/// NaN until the window is full or when the signed volume has no variance.
pub(crate) struct KyleLambda {
    bars: Bars,
    n: usize,
    x: f64,
    last_mid: f64,
    ref_mid: f64,
    reg: RollingSums<5>,
    buf: [f64; 5],
}

impl KyleLambda {
    pub fn new(s: &FeatureSpec) -> Result<Self> {
        let ns = parse_duration(s.bar.as_deref().unwrap_or("1s")).map_err(DataError::Invalid)?;
        let n = s.window_bars.unwrap_or(300);
        Ok(KyleLambda {
            bars: Bars::new(ns),
            n,
            x: 0.0,
            last_mid: f64::NAN,
            ref_mid: f64::NAN,
            reg: RollingSums::new(Span::Events(n)),
            buf: [0.0; 5],
        })
    }

    fn roll(&mut self, ts: i64) {
        let k = self.bars.roll(ts);
        if k == 0 {
            return;
        }
        if !self.ref_mid.is_nan() && !self.last_mid.is_nan() {
            let (x, y) = (self.x, self.last_mid - self.ref_mid);
            self.buf = [x, y, x * x, x * y, 1.0];
            self.reg.push(0, &self.buf);
            // Empty bars: no trades, no mid change.
            for _ in 0..(k - 1).min(self.n as i64) {
                self.reg.push(0, &[0.0, 0.0, 0.0, 0.0, 1.0]);
            }
        }
        self.ref_mid = self.last_mid;
        self.x = 0.0;
    }
}

impl Node for KyleLambda {
    fn wants_trades(&self) -> bool {
        true
    }
    fn on_trade(&mut self, _ctx: &Ctx, t: &TradeTick) {
        self.roll(t.ts);
        self.x += t.sign[AGGRESSOR] as f64 * t.size as f64;
    }
    fn on_sample(&mut self, ctx: &Ctx, _bank: &Bank) -> f64 {
        self.roll(ctx.ts);
        if !ctx.mid.is_nan() {
            self.last_mid = ctx.mid;
        }
        if !self.reg.ready(0, 0) {
            return f64::NAN;
        }
        let s = |j| self.reg.sum(j);
        let n = s(4);
        let var = n * s(2) - s(0) * s(0);
        if var <= 1e-12 * n * s(2).max(1.0) {
            return f64::NAN;
        }
        (n * s(3) - s(0) * s(1)) / var
    }
    fn reset(&mut self) {
        self.bars = Bars::new(self.bars.ns);
        self.x = 0.0;
        self.last_mid = f64::NAN;
        self.ref_mid = f64::NAN;
        self.reg.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_cdf_values() {
        for (x, p) in [(0.0, 0.5), (1.0, 0.841_344_746_068_543), (-1.96, 0.024_997_895_148_220), (3.0, 0.998_650_101_968_37)] {
            assert!((normal_cdf(x) - p).abs() < 2e-7, "Φ({x}) = {} vs {p}", normal_cdf(x));
        }
    }
}
