//! `flowcast analyze ofi-impact`: the price-impact regression of Cont, Kukanov & Stoikov (2014),
//! "The price impact of order book events", J. Financial Econometrics 12(1). See docs/ofi-impact.md.
//!
//! Within each window (30 min in the paper) the mid-price change over each interval (10 s),
//! ΔP_k in ticks, is regressed on the order-flow imbalance over the same interval,
//! OFI_k = Σ e_n (CKS per-update contribution, [`crate::features::ofi::ofi_event`]):
//! ΔP_k = α + β·OFI_k + ε_k (OLS with intercept). Per window we report β, R² and the average depth
//! AD = mean over the window's book updates of (q^B + q^A)/2 (lots at the touch), then fit
//! β = c / AD^λ across windows (OLS of ln β on ln AD) and the linear fit of β on 1/AD.
//!
//! The book is the canonical replay ([`Dataset::replay`]): one sample per batch end of a synced
//! book; e_n is the OFI between consecutive samples. Interval k is [k·Δ, (k+1)·Δ) in UTC ns (windows
//! likewise, so 30 min windows start on the half hour); a sample belongs to the interval holding its
//! timestamp (running maximum, should timestamps step back). ΔP_k = mid after the last sample of
//! interval k − mid after the last sample before it; an interval without samples has ΔP = OFI = 0.
//! Intervals are *broken*, and left out, when their start state is unknown (the first interval),
//! when the book had a `Gap` or an empty side during them, and the last interval (it may be cut
//! short by the end of the data).

use crate::analysis::stats::{ols, Ols};
use crate::error::{DataError, Result};
use crate::event::EventKind;
use crate::features::ofi::{ofi_event, Touch};
use crate::report::Report;
use crate::store::Dataset;
use crate::time::{format_duration, format_utc};
use serde::Serialize;

/// Regression set-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfiImpactConfig {
    /// Interval length Δ (ns).
    pub interval_ns: i64,
    /// Window length (ns); a multiple of the interval.
    pub window_ns: i64,
    /// Fewest usable intervals for a window's regression.
    pub min_intervals: usize,
}

impl Default for OfiImpactConfig {
    /// The paper's 10 s intervals in 30 min windows.
    fn default() -> Self {
        let s = crate::time::NS_PER_SEC;
        OfiImpactConfig { interval_ns: 10 * s, window_ns: 1800 * s, min_intervals: 10 }
    }
}

/// One interval's observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Interval index k (start = k·Δ ns).
    pub k: i64,
    /// Σ e_n over the interval (lots).
    pub ofi: i64,
    /// Mid change (ticks).
    pub dp: f64,
    pub broken: bool,
}

/// Per-window regression row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowFit {
    pub start: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// Usable intervals in the regression.
    pub intervals: usize,
    /// Intervals left out (gap, empty side, first/last).
    pub intervals_broken: usize,
    /// Book samples (batch ends) with both sides, over which AD is averaged.
    pub samples: usize,
    /// Whether the regression could be run (enough intervals, non-constant OFI and ΔP).
    pub fitted: bool,
    /// β (ticks per lot of OFI), α (ticks), R², t statistic of β; null when not fitted.
    pub beta: Option<f64>,
    pub alpha: Option<f64>,
    pub r2: Option<f64>,
    pub beta_t: Option<f64>,
    /// Average depth at the touch (lots): mean over samples of (q^B + q^A)/2.
    pub avg_depth: Option<f64>,
}

/// A fit `y = a + b·x` across windows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineFit {
    pub intercept: f64,
    pub slope: f64,
    pub r2: f64,
    pub n: usize,
}

impl From<Ols> for LineFit {
    fn from(o: Ols) -> Self {
        LineFit { intercept: o.intercept, slope: o.slope, r2: o.r2, n: o.n }
    }
}

/// β against depth across windows (windows with β > 0 only for the power law).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BetaDepthFit {
    /// β = c / AD^λ, fitted as ln β = ln c − λ ln AD: λ, c and that regression's R².
    pub lambda: Option<f64>,
    pub c: Option<f64>,
    pub r2: Option<f64>,
    /// Windows used in the power-law fit.
    pub n: usize,
    /// OLS of β on 1/AD.
    pub inverse_depth_linear: Option<LineFit>,
}

/// The whole result (`--json` keys).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OfiImpact {
    pub interval: String,
    pub interval_ns: i64,
    pub window: String,
    pub window_ns: i64,
    pub windows: Vec<WindowFit>,
    pub windows_fitted: usize,
    pub mean_r2: Option<f64>,
    pub min_r2: Option<f64>,
    pub max_r2: Option<f64>,
    pub median_r2: Option<f64>,
    pub mean_beta: Option<f64>,
    pub beta_depth_fit: BetaDepthFit,
    /// One regression over every usable interval of the data.
    pub pooled: Option<LineFit>,
    pub intervals_total: usize,
    pub intervals_used: usize,
    pub intervals_broken: usize,
    pub samples: usize,
    /// Samples whose timestamp was below an earlier sample's.
    pub ts_out_of_order: usize,
    /// Units: ΔP in ticks of `tick_size`, OFI and depth in lots of `lot_size`.
    pub tick_size: String,
    pub lot_size: String,
}

impl OfiImpact {
    pub fn report(&self) -> Report {
        Report::from_struct(self.windows_fitted > 0, self)
    }

    /// Human-readable table: one line per window, then the aggregates.
    pub fn table(&self) -> String {
        let f = |v: Option<f64>, p: usize| v.map_or_else(|| "-".to_string(), |x| format!("{x:.p$}"));
        let mut s = format!(
            "CKS (2014) OFI price impact: dP (ticks of {}) ~ OFI (lots of {}), {} intervals in {} windows\n",
            self.tick_size, self.lot_size, self.interval, self.window
        );
        s.push_str(&format!(
            "{:<32} {:>9} {:>12} {:>8} {:>9} {:>11}\n",
            "window start (UTC)", "intervals", "beta", "R2", "beta t", "avg depth"
        ));
        for w in &self.windows {
            s.push_str(&format!(
                "{:<32} {:>9} {:>12} {:>8} {:>9} {:>11}\n",
                w.start,
                w.intervals,
                f(w.beta, 6),
                f(w.r2, 4),
                f(w.beta_t, 1),
                f(w.avg_depth, 1)
            ));
        }
        s.push_str(&format!(
            "windows fitted {} of {}; R2 mean {} (min {}, median {}, max {}); pooled R2 {}\n",
            self.windows_fitted,
            self.windows.len(),
            f(self.mean_r2, 4),
            f(self.min_r2, 4),
            f(self.median_r2, 4),
            f(self.max_r2, 4),
            f(self.pooled.as_ref().map(|p| p.r2), 4)
        ));
        let b = &self.beta_depth_fit;
        s.push_str(&format!(
            "beta = c / AD^lambda over {} windows: lambda {}, c {}, R2 {}; beta ~ 1/AD: slope {}, intercept {}, R2 {}\n",
            b.n,
            f(b.lambda, 3),
            f(b.c, 4),
            f(b.r2, 3),
            f(b.inverse_depth_linear.as_ref().map(|l| l.slope), 4),
            f(b.inverse_depth_linear.as_ref().map(|l| l.intercept), 6),
            f(b.inverse_depth_linear.as_ref().map(|l| l.r2), 3)
        ));
        s
    }
}

/// Window accumulator: depth sum over samples.
struct WinAcc {
    w: i64,
    depth_sum: f64,
    samples: usize,
}

/// Build the interval series and per-window depth from the canonical replay.
fn intervals(ds: &Dataset, cfg: &OfiImpactConfig) -> (Vec<Interval>, Vec<WinAcc>, usize, usize) {
    let dt = cfg.interval_ns;
    let mut out: Vec<Interval> = Vec::new();
    let mut wins: Vec<WinAcc> = Vec::new();
    let mut prev: Option<(Touch, Touch)> = None;
    let mut scanned = 0usize;
    let mut clock = i64::MIN;
    let (mut samples, mut ooo) = (0usize, 0usize);
    // The interval being accumulated.
    let mut cur_k: Option<i64> = None;
    let (mut cur_ofi, mut cur_broken) = (0i64, false);
    let mut mid_start: Option<f64> = None; // mid at the start of cur_k
    let mut mid_last: Option<f64> = None; // mid after the last sample
    ds.replay(|i, book| {
        samples += 1;
        let ts = ds.events[i].ts_exchange;
        if ts < clock {
            ooo += 1;
        }
        clock = clock.max(ts);
        let k = clock.div_euclid(dt);
        // A feed gap since the previous sample: intervals from the gap's to this one are broken.
        let gap_k = ds.events[scanned..=i].iter().find(|e| e.kind == EventKind::Gap).map(|e| e.ts_exchange.div_euclid(dt).min(k));
        scanned = i + 1;
        let touch = book.best_bid().zip(book.best_ask());
        // Close intervals before k.
        if let Some(ck) = cur_k {
            if k > ck {
                let broken = cur_broken || gap_k.is_some_and(|g| g <= ck);
                let dp = match (mid_start, mid_last) {
                    (Some(a), Some(b)) if !broken => b - a,
                    _ => f64::NAN,
                };
                out.push(Interval { k: ck, ofi: cur_ofi, dp, broken: broken || dp.is_nan() });
                for e in ck + 1..k {
                    let broken = gap_k.is_some_and(|g| g <= e) || mid_last.is_none();
                    out.push(Interval { k: e, ofi: 0, dp: if broken { f64::NAN } else { 0.0 }, broken });
                }
                mid_start = mid_last;
                cur_ofi = 0;
                cur_broken = false;
            }
        }
        if cur_k.is_none_or(|ck| k > ck) {
            cur_k = Some(k);
        }
        if gap_k.is_some() || touch.is_none() {
            cur_broken = true;
            prev = None;
        }
        match touch {
            Some((b, a)) => {
                if let Some((pb, pa)) = prev {
                    cur_ofi += ofi_event(pb, pa, b, a);
                }
                prev = Some((b, a));
                mid_last = Some((b.0 + a.0) as f64 / 2.0);
                let w = clock.div_euclid(cfg.window_ns);
                if wins.last().is_none_or(|x| x.w != w) {
                    wins.push(WinAcc { w, depth_sum: 0.0, samples: 0 });
                }
                let acc = wins.last_mut().expect("pushed");
                acc.depth_sum += (b.1 + a.1) as f64 / 2.0;
                acc.samples += 1;
            }
            None => mid_last = None,
        }
    });
    // The open last interval is dropped: the data may end inside it.
    if let Some(ck) = cur_k {
        out.push(Interval { k: ck, ofi: cur_ofi, dp: f64::NAN, broken: true });
    }
    // The first interval has no known start state.
    if let Some(first) = out.first_mut() {
        first.broken = true;
    }
    (out, wins, samples, ooo)
}

/// Run the CKS regression on `ds`.
pub fn ofi_impact(ds: &Dataset, cfg: &OfiImpactConfig) -> Result<OfiImpact> {
    if cfg.interval_ns <= 0 || cfg.window_ns <= 0 || cfg.window_ns % cfg.interval_ns != 0 {
        return Err(DataError::Invalid(format!(
            "window ({}) must be a positive multiple of the interval ({})",
            format_duration(cfg.window_ns),
            format_duration(cfg.interval_ns)
        )));
    }
    let (ivs, wins, samples, ooo) = intervals(ds, cfg);
    let per_win = cfg.window_ns / cfg.interval_ns;
    let mut windows = Vec::new();
    let (mut all_x, mut all_y) = (Vec::new(), Vec::new());
    let mut i = 0;
    let mut wi = 0;
    while i < ivs.len() {
        let w = ivs[i].k.div_euclid(per_win);
        let (mut x, mut y, mut broken) = (Vec::new(), Vec::new(), 0usize);
        while i < ivs.len() && ivs[i].k.div_euclid(per_win) == w {
            if ivs[i].broken {
                broken += 1;
            } else {
                x.push(ivs[i].ofi as f64);
                y.push(ivs[i].dp);
            }
            i += 1;
        }
        all_x.extend_from_slice(&x);
        all_y.extend_from_slice(&y);
        while wi < wins.len() && wins[wi].w < w {
            wi += 1;
        }
        let (depth, n_samples) = match wins.get(wi) {
            Some(a) if a.w == w && a.samples > 0 => (Some(a.depth_sum / a.samples as f64), a.samples),
            _ => (None, 0),
        };
        let fit = if x.len() >= cfg.min_intervals { ols(&x, &y) } else { None };
        let start_ns = w * cfg.window_ns;
        windows.push(WindowFit {
            start: format_utc(start_ns),
            start_ns,
            end_ns: start_ns + cfg.window_ns,
            intervals: x.len(),
            intervals_broken: broken,
            samples: n_samples,
            fitted: fit.is_some(),
            beta: fit.map(|f| f.slope),
            alpha: fit.map(|f| f.intercept),
            r2: fit.map(|f| f.r2),
            beta_t: fit.map(|f| f.slope / f.slope_se),
            avg_depth: depth,
        });
    }
    let fitted: Vec<&WindowFit> = windows.iter().filter(|w| w.fitted).collect();
    if fitted.is_empty() {
        let most = windows.iter().map(|w| w.intervals).max().unwrap_or(0);
        return Err(DataError::Invalid(format!(
            "ofi-impact: no window has {} usable intervals with varying OFI and mid (best: {most} intervals of {} in windows of {}; {} samples); use a shorter interval or a longer window",
            cfg.min_intervals,
            format_duration(cfg.interval_ns),
            format_duration(cfg.window_ns),
            samples
        )));
    }
    let mut r2s: Vec<f64> = fitted.iter().filter_map(|w| w.r2).collect();
    r2s.sort_by(f64::total_cmp);
    let nf = r2s.len() as f64;
    let median = crate::analysis::stats::quantile_sorted(&r2s, 0.5);
    // β vs depth across windows.
    let (mut lx, mut ly, mut ix, mut iy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for w in &fitted {
        if let (Some(b), Some(d)) = (w.beta, w.avg_depth) {
            if d > 0.0 {
                ix.push(1.0 / d);
                iy.push(b);
                if b > 0.0 {
                    lx.push(d.ln());
                    ly.push(b.ln());
                }
            }
        }
    }
    let power = ols(&lx, &ly);
    let beta_depth_fit = BetaDepthFit {
        lambda: power.map(|f| -f.slope),
        c: power.map(|f| f.intercept.exp()),
        r2: power.map(|f| f.r2),
        n: lx.len(),
        inverse_depth_linear: ols(&ix, &iy).map(LineFit::from),
    };
    let used = ivs.iter().filter(|v| !v.broken).count();
    let inst = &ds.meta.instrument;
    Ok(OfiImpact {
        interval: format_duration(cfg.interval_ns),
        interval_ns: cfg.interval_ns,
        window: format_duration(cfg.window_ns),
        window_ns: cfg.window_ns,
        windows_fitted: fitted.len(),
        mean_r2: Some(r2s.iter().sum::<f64>() / nf),
        min_r2: r2s.first().copied(),
        max_r2: r2s.last().copied(),
        median_r2: Some(median),
        mean_beta: Some(fitted.iter().filter_map(|w| w.beta).sum::<f64>() / fitted.len() as f64),
        beta_depth_fit,
        pooled: ols(&all_x, &all_y).map(LineFit::from),
        intervals_total: ivs.len(),
        intervals_used: used,
        intervals_broken: ivs.len() - used,
        samples,
        ts_out_of_order: ooo,
        tick_size: inst.tick_size(),
        lot_size: crate::instrument::format_fixed(1, inst.size_scale),
        windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{flags, Event, Side};
    use crate::instrument::Instrument;
    use crate::store::DatasetMeta;
    use rand::{Rng, SeedableRng};

    const S: i64 = crate::time::NS_PER_SEC;

    /// A one-level book that moves ±1 tick at a time with depth Q on both sides, so every move
    /// has e = ±2Q and ΔP = ±1: ΔP = OFI/(2Q) exactly.
    struct Tape {
        ev: Vec<Event>,
        bid: i64,
        q: i64,
    }

    impl Tape {
        fn new(q: i64, ts: i64) -> Tape {
            let mut t = Tape { ev: Vec::new(), bid: 1000, q };
            t.set_book(ts);
            t
        }
        fn batch(&mut self, evs: &[Event]) {
            let n = evs.len();
            for (j, e) in evs.iter().enumerate() {
                self.ev.push(if j + 1 == n { e.with_flags(flags::BATCH_END) } else { *e });
            }
        }
        fn set_book(&mut self, ts: i64) {
            let (b, q) = (self.bid, self.q);
            self.batch(&[Event::level(Side::Bid, b, q, ts), Event::level(Side::Ask, b + 2, q, ts)]);
        }
        fn step(&mut self, up: bool, ts: i64) {
            let (b, q) = (self.bid, self.q);
            let nb = if up { b + 1 } else { b - 1 };
            self.batch(&[
                Event::level(Side::Bid, b, 0, ts),
                Event::level(Side::Bid, nb, q, ts),
                Event::level(Side::Ask, b + 2, 0, ts),
                Event::level(Side::Ask, nb + 2, q, ts),
            ]);
            self.bid = nb;
        }
        /// Change the depth on both sides at unchanged prices: e = ΔQ − ΔQ = 0.
        fn depth(&mut self, q: i64, ts: i64) {
            self.q = q;
            self.set_book(ts);
        }
        fn dataset(self) -> Dataset {
            Dataset { meta: DatasetMeta::new("test", Instrument::new("test", "X", "0.01", 0).unwrap(), 1, true), events: self.ev }
        }
    }

    /// Windows of 60 s with depth 10, 20, 40, 80 and 1 s intervals of random moves.
    fn tape(seed: u64, noise: bool, gap: bool) -> Dataset {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let t0 = 1_700_000_040 * S; // a multiple of 60 s
        let mut t = Tape::new(10, t0);
        for (w, q) in [10, 20, 40, 80].into_iter().enumerate() {
            let ws = t0 + w as i64 * 60 * S;
            if w > 0 {
                t.depth(q, ws);
            }
            for k in 0..60 {
                let is = ws + k * S;
                if gap && w == 2 && k == 30 {
                    // Feed gap; resync 3 s later 5 ticks higher: those intervals must be left out.
                    t.ev.push(Event::new(EventKind::Gap, Side::Bid, 0, 0, is + 1));
                    t.bid += 5;
                    t.ev.push(Event::new(EventKind::Snapshot, Side::Bid, 0, 0, is + 3 * S));
                    let (b, q) = (t.bid, t.q);
                    t.batch(&[
                        Event::level(Side::Bid, b, q, is + 3 * S).with_flags(flags::SNAPSHOT),
                        Event::level(Side::Ask, b + 2, q, is + 3 * S).with_flags(flags::SNAPSHOT),
                    ]);
                    continue;
                }
                if gap && w == 2 && (31..33).contains(&k) {
                    continue;
                }
                for m in 0..rng.random_range(0..4) {
                    t.step(rng.random_bool(0.5), is + 10 + m * 1000);
                }
                if noise && rng.random_bool(0.5) {
                    // Queue change at the touch without a price move: OFI ≠ 0, ΔP = 0.
                    let extra = rng.random_range(1..=t.q);
                    t.batch(&[Event::level(Side::Bid, t.bid, t.q + extra, is + 700_000)]);
                }
                // A trade print (no book change): a sample with e = 0.
                t.batch(&[Event::new(EventKind::Trade, Side::Bid, t.bid + 2, 1, is + 900_000)]);
            }
        }
        t.ev.sort_by_key(|e| e.ts_exchange); // stable: batches stay in order
        t.dataset()
    }

    fn cfg() -> OfiImpactConfig {
        OfiImpactConfig { interval_ns: S, window_ns: 60 * S, min_intervals: 10 }
    }

    #[test]
    fn recovers_exact_beta_and_depth_law() {
        for gap in [false, true] {
            let r = ofi_impact(&tape(1, false, gap), &cfg()).unwrap();
            assert_eq!(r.windows_fitted, 4, "{r:#?}");
            for (w, q) in r.windows.iter().zip([10.0, 20.0, 40.0, 80.0]) {
                let beta = w.beta.unwrap();
                assert!((beta - 1.0 / (2.0 * q)).abs() < 1e-12, "β {beta} vs {}", 1.0 / (2.0 * q));
                assert!((w.r2.unwrap() - 1.0).abs() < 1e-12);
                assert!(w.alpha.unwrap().abs() < 1e-12);
                // AD is the mean of (q^B + q^A)/2 = Q.
                assert_eq!(w.avg_depth, Some(q));
            }
            assert!((r.mean_r2.unwrap() - 1.0).abs() < 1e-12);
            let f = &r.beta_depth_fit;
            assert!((f.lambda.unwrap() - 1.0).abs() < 1e-9 && (f.c.unwrap() - 0.5).abs() < 1e-9);
            assert!((f.r2.unwrap() - 1.0).abs() < 1e-9);
            let lin = f.inverse_depth_linear.as_ref().unwrap();
            assert!((lin.slope - 0.5).abs() < 1e-9 && lin.intercept.abs() < 1e-9);
            if gap {
                // Gap interval, the unsynced ones and the interval after resync's start are out.
                assert!(r.windows[2].intervals_broken >= 3, "{:?}", r.windows[2]);
            }
            let rep = r.report();
            assert!(rep.ok);
            for k in ["windows", "mean_r2", "min_r2", "max_r2", "beta_depth_fit"] {
                assert!(rep.get(k).is_some(), "{k}");
            }
        }
    }

    #[test]
    fn noise_lowers_r2_and_too_few_intervals_fails() {
        let r = ofi_impact(&tape(2, true, false), &cfg()).unwrap();
        for w in &r.windows {
            let r2 = w.r2.unwrap();
            assert!(r2 > 0.05 && r2 < 0.999, "{w:?}");
        }
        assert!(r.min_r2 <= r.mean_r2 && r.mean_r2 <= r.max_r2);
        let e = ofi_impact(&tape(1, false, false), &OfiImpactConfig { interval_ns: 30 * S, window_ns: 60 * S, min_intervals: 10 });
        assert!(e.unwrap_err().to_string().contains("no window"));
        assert!(ofi_impact(&tape(1, false, false), &OfiImpactConfig { interval_ns: 7 * S, ..cfg() }).is_err());
    }
}
