//! Forecasting labels: the only columns allowed to look forward. Definitions, the α rule and the
//! leakage argument are in docs/labels.md.
//!
//! Labels are computed on the sample rows of a dataset (every batch end of a synced book, the same
//! rows as a [`crate::features::FeatureTable`]) from their mid prices (ticks) and timestamps:
//! - smoothed (Zhang, Zohren & Roberts 2019; Ntakaris et al. 2018): l_t = (m⁺_k − m_t)/m_t with
//!   m⁺_k the mean of the next k mids, or vs the past mean m⁻_k = mean(m_{t−k+1..=t});
//! - fixed event horizon h: log return ln(m_{t+h}/m_t) and change m_{t+h} − m_t in ticks;
//! - clock horizon h: the same with the future mid taken at the first row whose time is at or
//!   after τ_t + h (τ = running maximum of the row timestamps).
//!
//! Each label also reports its *reach*: the last row it reads. A row whose reach runs past the end
//! or crosses a feed gap is unlabelled (NaN), never padded. Classes (−1 down, 0 stationary, +1 up)
//! come from a threshold α fitted on the training split only ([`Labels::fit_alpha`]).

use crate::analysis::stats::quantile_sorted;
use crate::error::{DataError, Result};
use crate::event::EventKind;
use crate::splits::{Split, Splits};
use crate::store::Dataset;
use crate::time::format_duration;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::ops::Range;

/// What the smoothed label compares the future mean with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmoothRef {
    /// The current mid m_t (FI-2010; DeepLOB's first variant).
    Current,
    /// The mean of the past k mids m_{t−k+1..=t} (DeepLOB's second variant).
    PastMean,
}

/// One label target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// Smoothed relative change with k future mids.
    Smoothed { k: usize, reference: SmoothRef },
    /// Mid change over a fixed number of rows (events).
    Events { h: usize },
    /// Mid change over a clock horizon in ns.
    Clock { h_ns: i64 },
}

impl Target {
    /// Stable column stem: `smooth_k10`, `smooth_past_k10`, `ev100`, `clock_1s`, `clock_5min`
    /// (durations in the form of [`format_duration`]).
    pub fn name(&self) -> String {
        match *self {
            Target::Smoothed { k, reference: SmoothRef::Current } => format!("smooth_k{k}"),
            Target::Smoothed { k, reference: SmoothRef::PastMean } => format!("smooth_past_k{k}"),
            Target::Events { h } => format!("ev{h}"),
            Target::Clock { h_ns } => format!("clock_{}", format_duration(h_ns)),
        }
    }

    /// One-line definition for labels.json.
    pub fn definition(&self) -> String {
        match *self {
            Target::Smoothed { k, reference: SmoothRef::Current } => format!(
                "(mean(mid[t+1..=t+{k}]) - mid[t]) / mid[t]; class by threshold alpha"
            ),
            Target::Smoothed { k, reference: SmoothRef::PastMean } => format!(
                "(mean(mid[t+1..=t+{k}]) - mean(mid[t-{}..=t])) / mean(mid[t-{}..=t]); class by threshold alpha",
                k - 1,
                k - 1
            ),
            Target::Events { h } => format!(
                "logret = ln(mid[t+{h}] / mid[t]), ticks = mid[t+{h}] - mid[t]; class of logret by threshold alpha"
            ),
            Target::Clock { h_ns } => format!(
                "j = first row with time >= time[t] + {} (time = running max of row ts); logret = ln(mid[j] / mid[t]), ticks = mid[j] - mid[t]; class of logret by threshold alpha",
                format_duration(h_ns)
            ),
        }
    }

    /// Column holding the value the class is derived from.
    pub fn value_column(&self) -> String {
        match self {
            Target::Smoothed { .. } => format!("label_{}", self.name()),
            _ => format!("label_{}_logret", self.name()),
        }
    }

    /// Change-in-ticks column (horizon targets only).
    pub fn ticks_column(&self) -> Option<String> {
        match self {
            Target::Smoothed { .. } => None,
            _ => Some(format!("label_{}_ticks", self.name())),
        }
    }

    pub fn class_column(&self) -> String {
        format!("label_{}_class", self.name())
    }
}

/// How the class threshold α is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum AlphaRule {
    /// α = the 1/3 quantile (type 7) of |value| over the labelled training rows, so that about a
    /// third of training rows are stationary (|value| ≤ α) and the rest split into up/down by the data.
    BalancedOnTrain,
    /// A fixed α for every target (FI-2010 used 0.002 for its smoothed labels).
    Fixed { alpha: f64 },
}

/// Which labels to compute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelConfig {
    /// k of the smoothed labels.
    pub smooth_k: Vec<usize>,
    /// Also compute the past-mean variant of each smoothed label.
    pub smooth_past: bool,
    /// Fixed event (row) horizons.
    pub event_horizons: Vec<usize>,
    /// Clock horizons in ns.
    pub clock_horizons_ns: Vec<i64>,
    pub alpha: AlphaRule,
}

impl Default for LabelConfig {
    /// DeepLOB's k = 10, 20, 50, 100 (both variants), event horizons 10 and 100, clock horizons
    /// 1 s, 10 s, 1 min, 5 min; α balanced on train.
    fn default() -> Self {
        let s = crate::time::NS_PER_SEC;
        LabelConfig {
            smooth_k: vec![10, 20, 50, 100],
            smooth_past: true,
            event_horizons: vec![10, 100],
            clock_horizons_ns: vec![s, 10 * s, 60 * s, 300 * s],
            alpha: AlphaRule::BalancedOnTrain,
        }
    }
}

impl LabelConfig {
    pub fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        for &k in &self.smooth_k {
            t.push(Target::Smoothed { k, reference: SmoothRef::Current });
        }
        if self.smooth_past {
            for &k in &self.smooth_k {
                t.push(Target::Smoothed { k, reference: SmoothRef::PastMean });
            }
        }
        t.extend(self.event_horizons.iter().map(|&h| Target::Events { h }));
        t.extend(self.clock_horizons_ns.iter().map(|&h_ns| Target::Clock { h_ns }));
        t
    }

    fn validate(&self) -> Result<()> {
        if self.smooth_k.contains(&0) || self.event_horizons.contains(&0) {
            return Err(DataError::Invalid("label horizons k and h must be at least 1".into()));
        }
        if self.clock_horizons_ns.iter().any(|&h| h <= 0) {
            return Err(DataError::Invalid("clock label horizons must be positive".into()));
        }
        if let AlphaRule::Fixed { alpha } = self.alpha {
            if !(alpha >= 0.0 && alpha.is_finite()) {
                return Err(DataError::Invalid(format!("label alpha must be a finite number >= 0, got {alpha}")));
            }
        }
        Ok(())
    }
}

/// The sample rows of a dataset: the batch ends of a synced book, as in `Dataset::replay`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleRows {
    /// Index of each row's batch-end event in `Dataset::events`.
    pub event_index: Vec<u64>,
    /// `ts_exchange` of the row (ns UTC).
    pub ts: Vec<i64>,
    /// Mid in ticks (NaN when a side is empty).
    pub mid: Vec<f64>,
    /// Number of `Gap` events at or before the row: labels never span two segments.
    pub segment: Vec<u32>,
}

impl SampleRows {
    /// Rows of `ds` from the canonical replay.
    pub fn from_dataset(ds: &Dataset) -> SampleRows {
        let mut rows = SampleRows::default();
        let mut gaps = 0u32;
        let mut scanned = 0usize;
        ds.replay(|i, book| {
            gaps += ds.events[scanned..=i].iter().filter(|e| e.kind == EventKind::Gap).count() as u32;
            scanned = i + 1;
            rows.event_index.push(i as u64);
            rows.ts.push(ds.events[i].ts_exchange);
            rows.mid.push(book.mid().unwrap_or(f64::NAN));
            rows.segment.push(gaps);
        });
        rows
    }

    /// Rows without gaps (one segment), e.g. from a hand-built or feature table.
    pub fn new(ts: Vec<i64>, mid: Vec<f64>) -> SampleRows {
        let n = ts.len();
        SampleRows { event_index: (0..n as u64).collect(), ts, mid, segment: vec![0; n] }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
}

/// The values of one target on every row.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetLabels {
    pub target: Target,
    /// Smoothed l_t, or the log return for horizon targets (NaN = unlabelled).
    pub value: Vec<f64>,
    /// Mid change in ticks (horizon targets; empty for smoothed targets).
    pub ticks: Vec<f64>,
    /// Last row the label of each row reads (`n` when it runs past the end).
    pub reach: Vec<usize>,
    /// Class threshold, NaN until [`Labels::fit_alpha`].
    pub alpha: f64,
    /// −1 down, 0 stationary, +1 up; `None` = unlabelled (filled by [`Labels::fit_alpha`]).
    pub class: Vec<Option<i8>>,
}

/// All labels of a table.
#[derive(Clone, Debug, PartialEq)]
pub struct Labels {
    pub n: usize,
    pub targets: Vec<TargetLabels>,
    /// Rows whose timestamp is below an earlier row's (clock horizons use the running maximum).
    pub ts_out_of_order: usize,
    pub alpha_rule: AlphaRule,
    /// Training rows α was fitted on.
    pub fitted_on: Option<Range<usize>>,
}

/// Prefix sums of mid deviations from a base (exact for half-tick mids far beyond any real range)
/// and of non-finite mids, so that every window mean costs O(1).
struct Prefix {
    base: f64,
    sum: Vec<f64>,
    bad: Vec<u32>,
}

impl Prefix {
    fn new(mid: &[f64]) -> Prefix {
        let base = mid.iter().copied().find(|m| m.is_finite()).unwrap_or(0.0);
        let mut sum = Vec::with_capacity(mid.len() + 1);
        let mut bad = Vec::with_capacity(mid.len() + 1);
        let (mut s, mut b) = (0.0, 0u32);
        sum.push(s);
        bad.push(b);
        for &m in mid {
            if m.is_finite() && m > 0.0 {
                s += m - base;
            } else {
                b += 1;
            }
            sum.push(s);
            bad.push(b);
        }
        Prefix { base, sum, bad }
    }
    /// Sum of (mid − base) over rows a..b, or None if one of them has no valid mid.
    #[inline]
    fn dev_sum(&self, a: usize, b: usize) -> Option<f64> {
        (self.bad[b] == self.bad[a]).then(|| self.sum[b] - self.sum[a])
    }
}

impl Labels {
    /// Compute every target of `cfg` on `rows` (classes wait for [`Labels::fit_alpha`]).
    pub fn compute(rows: &SampleRows, cfg: &LabelConfig) -> Result<Labels> {
        cfg.validate()?;
        let n = rows.len();
        if rows.mid.len() != n || rows.segment.len() != n {
            return Err(DataError::Invalid("label rows: ts, mid and segment lengths differ".into()));
        }
        // τ = running max of ts: a clock horizon needs a non-decreasing clock.
        let mut tau = Vec::with_capacity(n);
        let mut ooo = 0;
        for &t in &rows.ts {
            match tau.last() {
                Some(&last) if t < last => {
                    ooo += 1;
                    tau.push(last);
                }
                _ => tau.push(t),
            }
        }
        if ooo > 0 {
            tracing::warn!(rows = ooo, "row timestamps go backwards; clock labels use their running maximum");
        }
        let pre = Prefix::new(&rows.mid);
        let targets = cfg.targets().into_iter().map(|t| compute_target(t, rows, &tau, &pre)).collect();
        Ok(Labels { n, targets, ts_out_of_order: ooo, alpha_rule: cfg.alpha, fitted_on: None })
    }

    /// Per row, the last row any label reads (the row itself when there are no labels).
    pub fn max_reach(&self) -> Vec<usize> {
        let mut r: Vec<usize> = (0..self.n).collect();
        for t in &self.targets {
            for (a, &b) in r.iter_mut().zip(&t.reach) {
                *a = (*a).max(b);
            }
        }
        r
    }

    /// Choose α per target from the training rows only (see [`AlphaRule`]) and classify every row.
    /// A target with no labelled training row gets α = NaN and no classes.
    pub fn fit_alpha(&mut self, train: Range<usize>) {
        let mut buf = Vec::new();
        for t in &mut self.targets {
            t.alpha = match self.alpha_rule {
                AlphaRule::Fixed { alpha } => alpha,
                AlphaRule::BalancedOnTrain => {
                    buf.clear();
                    buf.extend(t.value[train.clone()].iter().filter(|v| v.is_finite()).map(|v| v.abs()));
                    buf.sort_unstable_by(f64::total_cmp);
                    quantile_sorted(&buf, 1.0 / 3.0)
                }
            };
            let a = t.alpha;
            t.class = t
                .value
                .iter()
                .map(|&v| {
                    if !v.is_finite() || a.is_nan() {
                        None
                    } else if v > a {
                        Some(1)
                    } else if v < -a {
                        Some(-1)
                    } else {
                        Some(0)
                    }
                })
                .collect();
        }
        self.fitted_on = Some(train);
    }

    /// Output column names, in order: per target its value, ticks (horizon targets) and class.
    pub fn column_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        for t in &self.targets {
            v.push(t.target.value_column());
            v.extend(t.target.ticks_column());
            v.push(t.target.class_column());
        }
        v
    }

    /// Class counts per split for every target: `{target: {split: {down, stationary, up, unlabelled, rows}}}`.
    pub fn class_balance(&self, splits: &Splits) -> Value {
        let mut out = serde_json::Map::new();
        for t in &self.targets {
            let mut per = serde_json::Map::new();
            for s in Split::ALL {
                let mut c = [0u64; 4];
                for r in splits.rows(s) {
                    match t.class.get(r).copied().flatten() {
                        Some(-1) => c[0] += 1,
                        Some(0) => c[1] += 1,
                        Some(_) => c[2] += 1,
                        None => c[3] += 1,
                    }
                }
                let labelled = (c[0] + c[1] + c[2]).max(1) as f64;
                per.insert(
                    s.name().into(),
                    json!({"down": c[0], "stationary": c[1], "up": c[2], "unlabelled": c[3],
                           "rows": c.iter().sum::<u64>(),
                           "frac_down": c[0] as f64 / labelled, "frac_stationary": c[1] as f64 / labelled,
                           "frac_up": c[2] as f64 / labelled}),
                );
            }
            out.insert(t.target.name(), Value::Object(per));
        }
        Value::Object(out)
    }

    /// `labels.json`: definitions, α per target with its rule, and class balance per split.
    pub fn report(&self, splits: &Splits) -> Value {
        let defs: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                let labelled = t.value.iter().filter(|v| v.is_finite()).count();
                json!({
                    "name": t.target.name(),
                    "target": t.target,
                    "definition": t.target.definition(),
                    "value_column": t.target.value_column(),
                    "ticks_column": t.target.ticks_column(),
                    "class_column": t.target.class_column(),
                    "alpha": if t.alpha.is_finite() { json!(t.alpha) } else { Value::Null },
                    "labelled_rows": labelled,
                    "unlabelled_rows": self.n - labelled,
                })
            })
            .collect();
        json!({
            "rows": self.n,
            "classes": {"-1": "down", "0": "stationary", "1": "up"},
            "class_rule": "up if value > alpha, down if value < -alpha, else stationary; unlabelled (null) where the value is NaN",
            "alpha_rule": self.alpha_rule,
            "alpha_fitted_on_rows": self.fitted_on.as_ref().map(|r| json!({"start": r.start, "end": r.end})),
            "time_base": "clock horizons compare with the first row whose time >= time[t] + h, time being the running maximum of row ts_exchange",
            "ts_out_of_order_rows": self.ts_out_of_order,
            "labels": defs,
            "class_balance": self.class_balance(splits),
        })
    }
}

fn compute_target(target: Target, rows: &SampleRows, tau: &[i64], pre: &Prefix) -> TargetLabels {
    let n = rows.len();
    let mid = &rows.mid;
    let seg = &rows.segment;
    let mut value = vec![f64::NAN; n];
    let horizon = !matches!(target, Target::Smoothed { .. });
    let mut ticks = if horizon { vec![f64::NAN; n] } else { Vec::new() };
    let mut reach = vec![n; n];
    let mut j = 0usize; // clock two-pointer
    for t in 0..n {
        // Last row read (j_end) and the first row of the look-back (j_start).
        let (start, end) = match target {
            Target::Smoothed { k, reference: SmoothRef::Current } => (t, t + k),
            Target::Smoothed { k, reference: SmoothRef::PastMean } => {
                if t + 1 < k {
                    // Not enough history: the reach is still t + k (no leakage question), unlabelled.
                    reach[t] = (t + k).min(n);
                    continue;
                }
                (t + 1 - k, t + k)
            }
            Target::Events { h } => (t, t + h),
            Target::Clock { h_ns } => {
                let goal = tau[t].saturating_add(h_ns);
                j = j.max(t + 1);
                while j < n && tau[j] < goal {
                    j += 1;
                }
                (t, j)
            }
        };
        if end >= n {
            continue; // runs past the end: unlabelled, reach = n
        }
        reach[t] = end;
        if seg[start] != seg[end] {
            continue; // spans a feed gap
        }
        match target {
            Target::Smoothed { k, reference } => {
                let Some(fut) = pre.dev_sum(t + 1, end + 1) else { continue };
                let Some(now) = pre.dev_sum(start, t + 1) else { continue };
                let kf = k as f64;
                let reference_dev = match reference {
                    SmoothRef::Current => now, // start == t: one row
                    SmoothRef::PastMean => now / kf,
                };
                let reference_mid = reference_dev + pre.base;
                value[t] = (fut / kf - reference_dev) / reference_mid;
            }
            _ => {
                let (a, b) = (mid[t], mid[end]);
                if a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0 {
                    value[t] = (b / a).ln();
                    ticks[t] = b - a;
                }
            }
        }
    }
    TargetLabels { target, value, ticks, reach, alpha: f64::NAN, class: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splits::SplitConfig;

    fn cfg(smooth: &[usize], ev: &[usize], clock: &[i64]) -> LabelConfig {
        LabelConfig {
            smooth_k: smooth.to_vec(),
            smooth_past: true,
            event_horizons: ev.to_vec(),
            clock_horizons_ns: clock.to_vec(),
            alpha: AlphaRule::BalancedOnTrain,
        }
    }

    fn get<'a>(l: &'a Labels, name: &str) -> &'a TargetLabels {
        l.targets.iter().find(|t| t.target.name() == name).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    fn assert_vec(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(close(*g, *w), "row {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}");
        }
    }

    const NAN: f64 = f64::NAN;

    #[test]
    fn smoothed_and_horizon_labels_exact() {
        let mid = vec![100.0, 101.0, 102.0, 101.0, 100.0, 100.5];
        let ts = vec![0, 10, 20, 30, 40, 50];
        let l = Labels::compute(&SampleRows::new(ts, mid), &cfg(&[2], &[1, 3], &[15, 25])).unwrap();
        // k = 2 vs current: (mean(next 2) − m_t)/m_t; the last two rows run past the end.
        assert_vec(&get(&l, "smooth_k2").value, &[1.5 / 100.0, 0.5 / 101.0, -1.5 / 102.0, -0.75 / 101.0, NAN, NAN]);
        // k = 2 vs past mean of 2 (rows t−1, t): first row has no history.
        assert_vec(
            &get(&l, "smooth_past_k2").value,
            &[NAN, (101.5 - 100.5) / 100.5, (100.5 - 101.5) / 101.5, (100.25 - 101.5) / 101.5, NAN, NAN],
        );
        let e3 = get(&l, "ev3");
        assert_vec(&e3.ticks, &[1.0, -1.0, -1.5, NAN, NAN, NAN]);
        assert_vec(&e3.value, &[(101.0f64 / 100.0).ln(), (100.0f64 / 101.0).ln(), (100.5f64 / 102.0).ln(), NAN, NAN, NAN]);
        assert_eq!(e3.reach, vec![3, 4, 5, 6, 6, 6]);
        // Clock 15 ns: first row at or after ts + 15 → row t+2; 25 ns → t+3 (t=0: ts 30).
        let c15 = get(&l, "clock_15ns");
        assert_vec(&c15.ticks, &[2.0, 0.0, -2.0, -0.5, NAN, NAN]);
        assert_eq!(c15.reach, vec![2, 3, 4, 5, 6, 6]);
        let c25 = get(&l, "clock_25ns");
        assert_vec(&c25.ticks, &[1.0, -1.0, -1.5, NAN, NAN, NAN]);
        // Exactly at t + h counts ("at or after"): 20 ns from row 0 is row 2.
        let l2 = Labels::compute(&SampleRows::new(vec![0, 10, 20], vec![1.0, 2.0, 3.0]), &cfg(&[], &[], &[20])).unwrap();
        assert_eq!(l2.targets[0].reach, vec![2, 3, 3]);
        assert_vec(&l2.targets[0].ticks, &[2.0, NAN, NAN]);
    }

    #[test]
    fn nan_mids_and_gaps_unlabel_only_rows_that_touch_them() {
        let mid = vec![100.0, 101.0, NAN, 103.0, 104.0, 105.0, 106.0];
        let mut rows = SampleRows::new((0..7).collect(), mid);
        rows.segment = vec![0, 0, 0, 0, 0, 1, 1]; // a feed gap before row 5
        let l = Labels::compute(&rows, &cfg(&[1], &[1], &[])).unwrap();
        let k1 = get(&l, "smooth_k1");
        assert_vec(&k1.value, &[1.0 / 100.0, NAN, NAN, 1.0 / 103.0, NAN, 1.0 / 105.0, NAN]);
        let e1 = get(&l, "ev1");
        assert_vec(&e1.ticks, &[1.0, NAN, NAN, 1.0, NAN, 1.0, NAN]);
    }

    #[test]
    fn out_of_order_timestamps_use_running_max() {
        let rows = SampleRows::new(vec![0, 10, 5, 20, 30], vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let l = Labels::compute(&rows, &cfg(&[], &[], &[10])).unwrap();
        assert_eq!(l.ts_out_of_order, 1);
        // τ = 0, 10, 10, 20, 30: row 0 → row 1; rows 1, 2 → row 3.
        assert_eq!(l.targets[0].reach, vec![1, 3, 3, 4, 5]);
    }

    /// Perturbing every mid after row t changes only labels whose reach is past t.
    #[test]
    fn no_label_reads_past_its_reach() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let n = 400;
        let mut m = 1000.0;
        let mid: Vec<f64> = (0..n)
            .map(|_| {
                m += rng.random_range(-2..=2) as f64 * 0.5;
                m
            })
            .collect();
        let mut ts = Vec::new();
        let mut t = 0i64;
        for _ in 0..n {
            t += rng.random_range(0..30);
            ts.push(t);
        }
        let c = cfg(&[3, 10], &[1, 7], &[50, 200]);
        let base = Labels::compute(&SampleRows::new(ts.clone(), mid.clone()), &c).unwrap();
        for cut in [0, 17, 150, 398] {
            let mut m2 = mid.clone();
            for v in &mut m2[cut + 1..] {
                *v += rng.random_range(1..5) as f64;
            }
            let pert = Labels::compute(&SampleRows::new(ts.clone(), m2), &c).unwrap();
            let mut changed = 0;
            for (a, b) in base.targets.iter().zip(&pert.targets) {
                for r in 0..n {
                    if a.reach[r] <= cut {
                        assert!(close(a.value[r], b.value[r]), "{} row {r} cut {cut}", a.target.name());
                    } else if !close(a.value[r], b.value[r]) {
                        changed += 1;
                    }
                }
            }
            assert!(cut == 398 || changed > 0, "perturbation must be visible to some label");
        }
    }

    #[test]
    fn alpha_fitted_on_train_only_and_classes() {
        let mid: Vec<f64> = (0..40).map(|i| 100.0 + ((i * 7) % 5) as f64).collect();
        let rows = SampleRows::new((0..40).collect(), mid.clone());
        let c = cfg(&[], &[1], &[]);
        let mut l = Labels::compute(&rows, &c).unwrap();
        let splits = Splits::chronological(&l.max_reach(), &rows.ts, &SplitConfig::fractions(0.5, 0.25)).unwrap();
        l.fit_alpha(splits.train.clone());
        let t = &l.targets[0];
        let mut abs: Vec<f64> = t.value[splits.train.clone()].iter().filter(|v| v.is_finite()).map(|v| v.abs()).collect();
        abs.sort_by(f64::total_cmp);
        assert_eq!(t.alpha, quantile_sorted(&abs, 1.0 / 3.0));
        for (v, c) in t.value.iter().zip(&t.class) {
            match c {
                None => assert!(v.is_nan()),
                Some(1) => assert!(*v > t.alpha),
                Some(-1) => assert!(*v < -t.alpha),
                Some(_) => assert!(v.abs() <= t.alpha),
            }
        }
        // Changing test-split mids leaves α unchanged.
        let mut m2 = mid;
        for v in &mut m2[splits.test.clone()] {
            *v *= 3.0;
        }
        let mut l2 = Labels::compute(&SampleRows::new((0..40).collect(), m2), &c).unwrap();
        l2.fit_alpha(splits.train.clone());
        assert_eq!(l2.targets[0].alpha, t.alpha);
        let bal = l.class_balance(&splits);
        let tr = &bal["ev1"]["train"];
        assert_eq!(tr["rows"], json!(splits.train.len()));
        let total: u64 = ["down", "stationary", "up", "unlabelled"].iter().map(|k| tr[*k].as_u64().unwrap()).sum();
        assert_eq!(total as usize, splits.train.len());
        // A fixed α is used as given.
        let mut l3 = Labels::compute(&rows, &LabelConfig { alpha: AlphaRule::Fixed { alpha: 0.002 }, ..c }).unwrap();
        l3.fit_alpha(0..20);
        assert_eq!(l3.targets[0].alpha, 0.002);
    }

    #[test]
    fn names_are_stable() {
        let l = Labels::compute(&SampleRows::new(vec![0], vec![1.0]), &LabelConfig::default()).unwrap();
        let names = l.column_names();
        assert_eq!(&names[..2], &["label_smooth_k10", "label_smooth_k10_class"]);
        assert!(names.contains(&"label_smooth_past_k100_class".to_string()));
        assert!(names.contains(&"label_ev100_ticks".to_string()));
        assert!(names.contains(&"label_clock_5min_logret".to_string()));
        assert!(names.contains(&"label_clock_1s_class".to_string()));
        assert!(Labels::compute(&SampleRows::new(vec![0], vec![1.0]), &cfg(&[0], &[], &[])).is_err());
    }
}
