//! The card's target label computed one sample row at a time, for online learning in stream
//! mode: at each row it hands back the labels that *mature* there (their last read row is this
//! one), with the values and classes `flowcast_datasets::labels::Labels::compute` gives the same
//! rows, bit for bit (same prefix sums, same base, same operations; tested against the batch
//! code on synthetic and LOBSTER data for every target kind). Maturity is the row
//! [`crate::prequential::maturity_rows`] names, so a stream that updates its model with these
//! labels follows the prequential order exactly (docs/models.md, "Streaming labels").
//!
//! Memory is fixed at construction and nothing allocates per row: a ring of 2k (smoothed vs the
//! past mean), k + 1 (smoothed vs the current mid) or h + 1 (event horizon) rows; for a clock
//! horizon a FIFO of the rows still waiting, at most `max_pending` (beyond it the oldest waiting
//! row is dropped and counted in [`StreamLabeller::dropped`] — a clock horizon has no row bound).

use crate::error::{ContractError, Result};
use crate::target::{LabelKind, TargetDef, BPS};
use std::collections::VecDeque;

/// A label that matured at the current row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaturedLabel {
    /// The row it labels (0-based since the labeller started or was reset).
    pub row: u64,
    /// The target value (relative change or log return; NaN = unlabelled, as offline).
    pub value: f64,
    /// Class index in the card's order (0 down, 1 stationary, 2 up); `None` where unlabelled.
    pub class: Option<u8>,
}

impl MaturedLabel {
    /// The value in bps as f32, the unit and rounding of prepared window sets.
    pub fn value_bps(&self) -> f32 {
        (self.value * BPS) as f32
    }
}

/// One past row of the ring.
#[derive(Clone, Copy, Default)]
struct Past {
    mid: f64,
    segment: u32,
    /// Prefix sums before this row: Σ (mid − base) over valid rows and the count of invalid ones.
    sum: f64,
    bad: u32,
}

/// A clock-horizon row waiting for its future mid.
#[derive(Clone, Copy)]
struct Waiting {
    row: u64,
    goal: i64,
    mid: f64,
    segment: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Smoothed { k: usize, past: bool },
    Events { h: usize },
    Clock { h_ns: i64 },
}

/// Streaming labeller of one fitted target (the card's `preprocessing.target`).
#[derive(Clone)]
pub struct StreamLabeller {
    kind: Kind,
    alpha: f64,
    ring: Vec<Past>,
    waiting: VecDeque<Waiting>,
    max_pending: usize,
    rows: u64,
    base: Option<f64>,
    sum: f64,
    bad: u32,
    tau: i64,
    dropped: u64,
    out: Vec<MaturedLabel>,
}

impl StreamLabeller {
    /// The labeller of `def` with its fitted α; `max_pending` bounds a clock horizon's waiting rows.
    pub fn new(def: &TargetDef, max_pending: usize) -> Result<StreamLabeller> {
        let bad = |m: &str| ContractError::Invalid(format!("target {}: {m}", def.id));
        if !(def.alpha.is_finite() && def.alpha >= 0.0) {
            return Err(bad(&format!("α = {} is not a finite number ≥ 0", def.alpha)));
        }
        let h = || def.horizon.filter(|&h| h > 0).ok_or_else(|| bad("needs a horizon ≥ 1"));
        let kind = match def.kind {
            LabelKind::Smoothed => Kind::Smoothed { k: h()?, past: false },
            LabelKind::SmoothedPast => Kind::Smoothed { k: h()?, past: true },
            LabelKind::Events => Kind::Events { h: h()? },
            LabelKind::Clock => {
                let d = def.duration.as_deref().ok_or_else(|| bad("a clock target needs a duration"))?;
                Kind::Clock { h_ns: flowcast_datasets::time::parse_duration(d).map_err(|e| bad(&e))? }
            }
        };
        let ring = match kind {
            Kind::Smoothed { k, past: true } => 2 * k,
            Kind::Smoothed { k, past: false } => k + 1,
            Kind::Events { h } => h + 1,
            Kind::Clock { .. } => 0,
        };
        let pending = if matches!(kind, Kind::Clock { .. }) { max_pending.max(1) } else { 1 };
        Ok(StreamLabeller {
            kind,
            alpha: def.alpha,
            ring: vec![Past::default(); ring],
            waiting: VecDeque::with_capacity(if ring == 0 { pending } else { 0 }),
            max_pending: pending,
            rows: 0,
            base: None,
            sum: 0.0,
            bad: 0,
            tau: i64::MIN,
            dropped: 0,
            out: Vec::with_capacity(pending),
        })
    }

    /// Rows a label waits at most (row horizons), `None` for a clock horizon.
    pub fn horizon_rows(&self) -> Option<usize> {
        match self.kind {
            Kind::Smoothed { k, .. } => Some(k),
            Kind::Events { h } => Some(h),
            Kind::Clock { .. } => None,
        }
    }

    /// Rows whose label is still waiting, at most (the bound the caller keeps windows for).
    pub fn max_waiting(&self) -> usize {
        self.horizon_rows().unwrap_or(self.max_pending)
    }

    /// Rows pushed since the start or the last reset.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Clock-horizon rows dropped unlabelled because more than `max_pending` were waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes held (fixed at construction).
    pub fn bytes(&self) -> usize {
        self.ring.len() * std::mem::size_of::<Past>()
            + self.waiting.capacity() * std::mem::size_of::<Waiting>()
            + self.out.capacity() * std::mem::size_of::<MaturedLabel>()
    }

    /// Forget every row (a fresh stream: row indices restart at 0).
    pub fn reset(&mut self) {
        self.waiting.clear();
        self.out.clear();
        self.rows = 0;
        self.base = None;
        self.sum = 0.0;
        self.bad = 0;
        self.tau = i64::MIN;
    }

    fn classify(&self, row: u64, value: f64) -> MaturedLabel {
        let a = self.alpha;
        let class = if !value.is_finite() {
            None
        } else if value > a {
            Some(2)
        } else if value < -a {
            Some(0)
        } else {
            Some(1)
        };
        MaturedLabel { row, value, class }
    }

    /// Adds the next sample row (`ts_exchange`, mid in ticks — NaN when a side is empty — and
    /// its gap segment, the number of `Gap` events so far) and returns the labels that mature
    /// at it, in the order of the rows they label.
    pub fn push(&mut self, ts: i64, mid: f64, segment: u32) -> &[MaturedLabel] {
        self.out.clear();
        let r = self.rows;
        self.rows += 1;
        if self.base.is_none() && mid.is_finite() {
            self.base = Some(mid);
        }
        let base = self.base.unwrap_or(0.0);
        let (sum_before, bad_before) = (self.sum, self.bad);
        if mid.is_finite() && mid > 0.0 {
            self.sum += mid - base;
        } else {
            self.bad += 1;
        }
        match self.kind {
            Kind::Clock { h_ns } => {
                self.tau = self.tau.max(ts);
                while let Some(w) = self.waiting.front().copied() {
                    if w.goal > self.tau {
                        break;
                    }
                    self.waiting.pop_front();
                    let v = if w.segment == segment { log_return(w.mid, mid) } else { f64::NAN };
                    let l = self.classify(w.row, v);
                    self.out.push(l);
                }
                if self.waiting.len() == self.max_pending {
                    self.waiting.pop_front();
                    self.dropped += 1;
                }
                self.waiting.push_back(Waiting { row: r, goal: self.tau.saturating_add(h_ns), mid, segment });
            }
            _ => {
                let n = self.ring.len() as u64;
                self.ring[(r % n) as usize] = Past { mid, segment, sum: sum_before, bad: bad_before };
                let Some(h) = self.horizon_rows() else { unreachable!() };
                if r >= h as u64 {
                    let t = r - h as u64;
                    let v = self.value_at(t, r, base);
                    let l = self.classify(t, v);
                    self.out.push(l);
                }
            }
        }
        &self.out
    }

    fn past(&self, row: u64) -> &Past {
        &self.ring[(row % self.ring.len() as u64) as usize]
    }

    /// Prefix sums before `row` (`row` = the current row + 1: the running totals).
    fn prefix(&self, row: u64) -> (f64, u32) {
        if row == self.rows {
            (self.sum, self.bad)
        } else {
            let p = self.past(row);
            (p.sum, p.bad)
        }
    }

    /// Σ (mid − base) over rows a..b, None when one of them has no valid mid.
    fn dev_sum(&self, a: u64, b: u64) -> Option<f64> {
        let ((sa, ba), (sb, bb)) = (self.prefix(a), self.prefix(b));
        (ba == bb).then_some(sb - sa)
    }

    /// The value of row t whose last read row `end` is the current row (the batch formulas).
    fn value_at(&self, t: u64, end: u64, base: f64) -> f64 {
        match self.kind {
            Kind::Smoothed { k, past } => {
                let start = if past {
                    if t + 1 < k as u64 {
                        return f64::NAN; // not enough history
                    }
                    t + 1 - k as u64
                } else {
                    t
                };
                if self.past(start).segment != self.past(end).segment {
                    return f64::NAN;
                }
                let (Some(fut), Some(now)) = (self.dev_sum(t + 1, end + 1), self.dev_sum(start, t + 1)) else { return f64::NAN };
                let kf = k as f64;
                let reference_dev = if past { now / kf } else { now };
                (fut / kf - reference_dev) / (reference_dev + base)
            }
            Kind::Events { .. } => {
                let (a, b) = (self.past(t), self.past(end));
                if a.segment != b.segment {
                    return f64::NAN;
                }
                log_return(a.mid, b.mid)
            }
            Kind::Clock { .. } => unreachable!("clock labels come from the waiting queue"),
        }
    }
}

/// ln(b / a) where both mids are valid, else NaN (the batch rule).
fn log_return(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0 {
        (b / a).ln()
    } else {
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prequential::maturity_rows;
    use crate::target::{AlphaSpec, TargetSpec};
    use flowcast_datasets::labels::{AlphaRule, Labels, SampleRows};

    fn spec(kind: LabelKind, horizon: Option<usize>, duration: Option<&str>) -> TargetSpec {
        TargetSpec {
            id: None,
            kind,
            horizon,
            duration: duration.map(String::from),
            alpha: AlphaSpec::Rule("balanced_on_train".into()),
            ..Default::default()
        }
    }

    /// α fitted on the first 60% of rows (as training fits it), then the card's definition.
    fn fitted(rows: &SampleRows, s: &TargetSpec) -> (TargetDef, Labels) {
        let mut l = Labels::compute(rows, &s.label_config(AlphaRule::BalancedOnTrain).unwrap()).unwrap();
        l.fit_alpha(0..rows.len() * 6 / 10);
        // A past-mean config computes both smoothed variants: keep the one asked for.
        let want = s.label_target().unwrap();
        l.targets.retain(|t| t.target == want);
        let t = &l.targets[0];
        let def = TargetDef {
            id: s.resolved_id().unwrap(),
            kind: s.kind,
            horizon: s.horizon,
            duration: s.duration.clone(),
            target: t.target.name(),
            definition: t.target.definition(),
            output: s.output,
            alpha: t.alpha,
            alpha_rule: "balanced_on_train".into(),
            classes: crate::target::DIRECTION_CLASSES.iter().map(|c| c.to_string()).collect(),
            unit: "bps".into(),
        };
        (def, l)
    }

    /// Streams `rows` and checks every label against the batch one: same value bits, same
    /// class, emitted at the row `maturity_rows` names; unlabelled rows too (NaN).
    fn check_equal(what: &str, rows: &SampleRows, s: &TargetSpec) -> (usize, usize) {
        let (def, batch) = fitted(rows, s);
        let t = &batch.targets[0];
        let n = rows.len();
        let ends: Vec<u32> = (0..n as u32).collect();
        let mature = maturity_rows(&def, &rows.ts, &ends).unwrap();
        let mut sl = StreamLabeller::new(&def, n + 1).unwrap();
        let mut seen = vec![false; n];
        let mut labelled = 0;
        for r in 0..n {
            for l in sl.push(rows.ts[r], rows.mid[r], rows.segment[r]).to_vec() {
                let i = l.row as usize;
                assert!(!seen[i], "{what} {}: row {i} labelled twice", def.id);
                seen[i] = true;
                let want = t.value[i];
                assert!(
                    want.to_bits() == l.value.to_bits() || (want.is_nan() && l.value.is_nan()),
                    "{what} {}: row {i}: stream {} vs batch {want}",
                    def.id,
                    l.value
                );
                let wc = t.class[i].map(|c| (c + 1) as u8);
                assert_eq!(l.class, wc, "{what} {}: class of row {i}", def.id);
                assert_eq!(mature[i], r, "{what} {}: row {i} matured at row {r}, maturity_rows says {}", def.id, mature[i]);
                labelled += l.class.is_some() as usize;
            }
        }
        // Every labelled batch row matured inside the data; the rest run past the end.
        for i in 0..n {
            if t.value[i].is_finite() {
                assert!(seen[i], "{what} {}: labelled row {i} never matured", def.id);
            } else if !seen[i] {
                assert!(t.reach[i] >= n || mature[i] == usize::MAX, "{what} {}: row {i}", def.id);
            }
        }
        assert!(labelled > n / 4, "{what} {}: only {labelled} of {n} rows labelled", def.id);
        (labelled, n)
    }

    fn all_kinds(rows: &SampleRows, clock: &[&str]) -> Vec<TargetSpec> {
        let mut v = Vec::new();
        for k in [1, 5, 50] {
            v.push(spec(LabelKind::Smoothed, Some(k), None));
            v.push(spec(LabelKind::SmoothedPast, Some(k), None));
            v.push(spec(LabelKind::Events, Some(k), None));
        }
        for d in clock {
            v.push(spec(LabelKind::Clock, None, Some(d)));
        }
        assert!(rows.len() > 100);
        v
    }

    #[test]
    fn streaming_labels_equal_batch_labels_on_a_synthetic_day() {
        let ds = flowcast_datasets::synth::synth_dataset(3, 20_000, 11).unwrap();
        let mut rows = SampleRows::from_dataset(&ds);
        // A feed gap in the middle and a few empty-book (NaN) mids: labels that touch them are unlabelled.
        let n = rows.len();
        for s in &mut rows.segment[n / 2..] {
            *s += 1;
        }
        for i in [10, 11, n / 3, n / 3 + 40] {
            rows.mid[i] = f64::NAN;
        }
        for s in all_kinds(&rows, &["50ms", "1s", "10s"]) {
            let (l, n) = check_equal("synthetic", &rows, &s);
            eprintln!("synthetic {:?} h={:?} d={:?}: {l} of {n} rows labelled, all equal", s.kind, s.horizon, s.duration);
        }
    }

    #[test]
    fn streaming_labels_equal_batch_labels_on_lobster_amzn() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/lobster");
        let msg = dir.join("AMZN_2012-06-21_34200000_57600000_message_1.csv");
        if !msg.is_file() {
            eprintln!("SKIP: streaming labels on LOBSTER AMZN: {} not found", msg.display());
            return;
        }
        let ob = dir.join("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv");
        let opts = flowcast_datasets::loaders::ImportOptions::default();
        let mut imp = flowcast_datasets::loaders::import(flowcast_datasets::loaders::Format::Lobster, &[msg, ob], &opts).unwrap();
        let rows = SampleRows::from_dataset(&imp.datasets.remove(0));
        for s in all_kinds(&rows, &["100ms", "1s", "1min"]) {
            let (l, n) = check_equal("LOBSTER AMZN", &rows, &s);
            eprintln!("AMZN {:?} h={:?} d={:?}: {l} of {n} rows labelled, all equal", s.kind, s.horizon, s.duration);
        }
    }

    #[test]
    fn a_clock_horizon_keeps_at_most_max_pending_rows_and_push_allocates_nothing() {
        let (def, _) = fitted(
            &SampleRows::new((0..200).collect(), (0..200).map(|i| 100.0 + (i % 7) as f64).collect()),
            &spec(LabelKind::Clock, None, Some("50ns")),
        );
        let mut sl = StreamLabeller::new(&def, 10).unwrap();
        let before = crate::bayes::tests::alloc_count::count();
        let mut got = 0;
        for r in 0..200i64 {
            got += sl.push(r, 100.0 + (r % 7) as f64, 0).len();
        }
        assert_eq!(crate::bayes::tests::alloc_count::count(), before, "push allocated");
        // Each label waits 50 rows but only 10 may wait: every row is dropped before it matures.
        assert_eq!((got, sl.dropped()), (0, 190));
        let mut wide = StreamLabeller::new(&def, 64).unwrap();
        let got: usize = (0..200i64).map(|r| wide.push(r, 100.0 + (r % 7) as f64, 0).len()).sum();
        assert_eq!((got, wide.dropped()), (150, 0));
        let e = StreamLabeller::new(&TargetDef { horizon: None, kind: LabelKind::Events, ..def }, 1).err().unwrap().to_string();
        assert!(e.contains("horizon"), "{e}");
    }
}
