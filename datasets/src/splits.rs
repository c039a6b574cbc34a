//! Chronological train / validation / test splits with purge gaps (docs/labels.md).
//!
//! Nominal boundaries come from the fractions: b₁ = round(train·n), b₂ = round((train+validation)·n).
//! Every training row whose label reads row b₁ or later (its *reach*, see [`crate::labels`]) is
//! purged, and likewise every validation row reaching b₂: so no label of an earlier split sees the
//! data of a later one. The purge is therefore at least the longest label horizon, in rows for
//! event horizons and in time for clock horizons. Purged rows are kept in outputs with split "gap".

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::ops::Range;

/// The split a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
    Test,
    /// Purged: its label would read the next split.
    Gap,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Validation, Split::Test, Split::Gap];
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::Gap => "gap",
        }
    }
    pub fn parse(s: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Split fractions (of rows); test gets the rest of `start..end`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitConfig {
    pub train: f64,
    pub validation: f64,
    /// First row used, as a fraction of all rows (walk-forward folds; 0 otherwise).
    pub start: f64,
    /// End of the rows used (exclusive), as a fraction of all rows (1 otherwise).
    pub end: f64,
}

impl SplitConfig {
    /// The whole row range: `train` then `validation`, test gets the rest.
    pub fn fractions(train: f64, validation: f64) -> SplitConfig {
        SplitConfig { train, validation, start: 0.0, end: 1.0 }
    }
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig::fractions(0.7, 0.15)
    }
}

/// Row ranges of the three splits (everything between them is purge gap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    pub n: usize,
    pub train: Range<usize>,
    pub validation: Range<usize>,
    pub test: Range<usize>,
}

impl Splits {
    /// Chronological splits of `reach.len()` rows; `reach[r]` is the last row the labels of row r
    /// read (`Labels::max_reach`), `ts` the row times (only for the report).
    pub fn chronological(reach: &[usize], ts: &[i64], cfg: &SplitConfig) -> Result<Splits> {
        let n = reach.len();
        let (tr, va, st, en) = (cfg.train, cfg.validation, cfg.start, cfg.end);
        if !(tr > 0.0 && va >= 0.0 && st >= 0.0 && en <= 1.0 && st + tr + va <= en + 1e-12) {
            return Err(DataError::Invalid(format!(
                "split fractions must satisfy 0 < train, 0 <= validation, 0 <= start, start + train + validation <= end <= 1 \
                 (got train {tr}, validation {va}, start {st}, end {en})"
            )));
        }
        let at = |f: f64| ((f * n as f64).round() as usize).min(n);
        let b0 = at(st);
        let b3 = at(en).max(b0);
        let b1 = at(st + tr).clamp(b0, b3);
        let b2 = at(st + tr + va).clamp(b1, b3);
        // First row of [start, boundary) whose label reads `boundary` or later.
        let purge = |start: usize, boundary: usize| (start..boundary).find(|&r| reach[r] >= boundary).unwrap_or(boundary);
        let e1 = if b1 < n { purge(b0, b1) } else { b1 };
        let e2 = if b2 < n { purge(b1, b2) } else { b2 };
        let e3 = if b3 < n { purge(b2, b3) } else { b3 };
        let s = Splits { n, train: b0..e1, validation: b1..e2, test: b2..e3 };
        let empty = |what: &str, frac: f64| {
            DataError::Invalid(format!(
                "{what} split is empty after purging ({n} rows, fraction {frac}): the longest label horizon reaches past the next split; use shorter label horizons or more data (rows={n}, train={:?}, validation={:?}, test={:?}){}",
                s.train,
                s.validation,
                s.test,
                if ts.is_empty() { String::new() } else { format!(", data span {:.3} s", (ts[n - 1] - ts[0]) as f64 / 1e9) }
            ))
        };
        if s.train.is_empty() {
            return Err(empty("train", tr));
        }
        if va > 0.0 && s.validation.is_empty() {
            return Err(empty("validation", va));
        }
        if st + tr + va < en && s.test.is_empty() {
            return Err(empty("test", en - st - tr - va));
        }
        Ok(s)
    }

    /// Split of row `r`.
    pub fn split_of(&self, r: usize) -> Split {
        if self.train.contains(&r) {
            Split::Train
        } else if self.validation.contains(&r) {
            Split::Validation
        } else if self.test.contains(&r) {
            Split::Test
        } else {
            Split::Gap
        }
    }

    /// The rows of one split (gap rows are not contiguous: they are yielded in order).
    pub fn rows(&self, s: Split) -> Box<dyn Iterator<Item = usize> + '_> {
        match s {
            Split::Train => Box::new(self.train.clone()),
            Split::Validation => Box::new(self.validation.clone()),
            Split::Test => Box::new(self.test.clone()),
            Split::Gap => Box::new((0..self.n).filter(move |&r| self.split_of(r) == Split::Gap)),
        }
    }

    /// Per-row split.
    pub fn assignment(&self) -> Vec<Split> {
        (0..self.n).map(|r| self.split_of(r)).collect()
    }

    /// Row ranges, sizes and the purge gaps in rows and time.
    pub fn report(&self, ts: &[i64]) -> Value {
        let gap = |a: &Range<usize>, b: &Range<usize>| {
            let rows = b.start.saturating_sub(a.end);
            let ns = match (a.end.checked_sub(1), ts.get(b.start)) {
                (Some(last), Some(&first)) if !a.is_empty() && !b.is_empty() => Some(first - ts[last]),
                _ => None,
            };
            json!({"rows": rows, "ns": ns})
        };
        let r = |x: &Range<usize>| json!({"start": x.start, "end": x.end, "rows": x.len()});
        json!({
            "rows": self.n,
            "train": r(&self.train),
            "validation": r(&self.validation),
            "test": r(&self.test),
            "gap_train_validation": gap(&self.train, &self.validation),
            "gap_validation_test": gap(&self.validation, &self.test),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{AlphaRule, LabelConfig, Labels, SampleRows};

    #[test]
    fn chronological_with_purge_of_longest_horizon() {
        let n = 1000;
        let ts: Vec<i64> = (0..n as i64).map(|i| i * 1_000 + (i % 7) * 100).collect();
        let mid: Vec<f64> = (0..n).map(|i| 500.0 + ((i * 13) % 11) as f64 * 0.5).collect();
        let cfg = LabelConfig {
            smooth_k: vec![5],
            smooth_past: false,
            event_horizons: vec![20],
            clock_horizons_ns: vec![30_500],
            alpha: AlphaRule::BalancedOnTrain,
        };
        let rows = SampleRows::new(ts.clone(), mid);
        let labels = Labels::compute(&rows, &cfg).unwrap();
        let reach = labels.max_reach();
        let s = Splits::chronological(&reach, &ts, &SplitConfig::fractions(0.6, 0.2)).unwrap();
        // Chronological and disjoint.
        assert!(s.train.end <= s.validation.start && s.validation.end <= s.test.start);
        assert_eq!((s.validation.start, s.test.start, s.test.end), (600, 800, 1000));
        // No train label reads validation rows, none of validation reads test rows.
        for r in s.train.clone() {
            assert!(reach[r] < s.validation.start);
            // In time: the clock horizon ends before validation starts.
            assert!(ts[r] + 30_500 <= ts[s.validation.start]);
        }
        for r in s.validation.clone() {
            assert!(reach[r] < s.test.start);
        }
        // The gap is at least the longest horizon in rows (20 events) and in time (30.5 µs):
        // ts gaps are ~1 µs, so the clock horizon (≈31 rows) dominates.
        let gap_rows = s.validation.start - s.train.end;
        assert!(gap_rows >= 20);
        assert!(ts[s.validation.start] - ts[s.train.end - 1] >= 30_500);
        // ... and is tight: the first purged row does reach the next split.
        assert!(reach[s.train.end] >= s.validation.start);
        let rep = s.report(&ts);
        assert_eq!(rep["gap_train_validation"]["rows"], json!(gap_rows));
        assert_eq!(s.split_of(0), Split::Train);
        assert_eq!(s.split_of(s.train.end), Split::Gap);
        assert_eq!(s.rows(Split::Gap).count(), n - s.train.len() - s.validation.len() - s.test.len());
    }

    #[test]
    fn impossible_splits_are_errors() {
        let reach: Vec<usize> = (0..100).map(|r| r + 90).collect();
        let e = Splits::chronological(&reach, &[], &SplitConfig::fractions(0.7, 0.15)).unwrap_err();
        assert!(e.to_string().contains("train split is empty"), "{e}");
        assert!(Splits::chronological(&reach, &[], &SplitConfig::fractions(0.9, 0.2)).is_err());
        // No validation, no test: everything is train.
        let reach: Vec<usize> = (0..10).collect();
        let s = Splits::chronological(&reach, &[], &SplitConfig::fractions(1.0, 0.0)).unwrap();
        assert_eq!((s.train.clone(), s.test.len()), (0..10, 0));
    }

    #[test]
    fn a_walk_forward_fold_uses_only_its_rows_and_purges_at_both_ends() {
        // 1000 rows, labels read 5 rows ahead; fold 1 of 4: train+validation = rows 250..500,
        // test = rows 500..750.
        let reach: Vec<usize> = (0..1000).map(|r| (r + 5).min(999)).collect();
        let cfg = SplitConfig { train: 0.2, validation: 0.05, start: 0.25, end: 0.75 };
        let s = Splits::chronological(&reach, &[], &cfg).unwrap();
        assert_eq!((s.train.start, s.validation.start, s.test.start), (250, 450, 500));
        assert_eq!(s.train.end, 445, "train labels reading validation rows are purged");
        assert_eq!(s.validation.end, 495);
        assert_eq!(s.test.end, 745, "test labels reading rows after the fold are purged too");
        assert_eq!(s.split_of(249), Split::Gap);
        assert_eq!(s.split_of(800), Split::Gap);
        for r in s.test.clone() {
            assert!(reach[r] < 750);
        }
        let bad = SplitConfig { train: 0.3, validation: 0.1, start: 0.5, end: 0.75 };
        assert!(Splits::chronological(&reach, &[], &bad).unwrap_err().to_string().contains("start + train + validation <= end"));
    }
}
