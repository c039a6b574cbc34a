//! `flowcast features compute`: features + labels + splits + normalisation, written as a run
//! directory (docs/labels.md lists every file and key).
//!
//! Order of work, chosen so that nothing is fitted on anything but training rows:
//! 1. sample rows (event_index, ts, mid) from the canonical replay;
//! 2. labels on those rows, chronological splits purged by the labels' reach, α fitted on train;
//! 3. the feature set's fitted parameters fitted on the training rows, then the features computed
//!    (the caller's closure: part A's `fit` + `compute`);
//! 4. the normaliser fitted on the training rows;
//! 5. summary statistics and information coefficients.

use crate::analysis::ic::{information_coefficients, Horizon};
use crate::analysis::summary::feature_stats;
use crate::error::{DataError, Result};
use crate::features::{FeatureSet, FeatureTable};
use crate::features_io::{write_csv, write_parquet, OutputTable};
use crate::labels::{LabelConfig, Labels, SampleRows, Target};
use crate::normalize::{Method, Normalizer};
use crate::report::Report;
use crate::splits::{SplitConfig, Splits};
use crate::store::Dataset;
use serde_json::{json, Value};
use std::ops::Range;
use std::path::Path;

/// Version of the run-directory layout (summary.json `format`).
pub const PREPARE_FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrepareConfig {
    pub labels: LabelConfig,
    pub splits: SplitConfig,
    /// Method recorded in normalization.json (every method's statistics are stored).
    pub normalization: NormalizationChoice,
}

/// Normalisation method (z-score by default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormalizationChoice(pub Method);

impl Default for NormalizationChoice {
    fn default() -> Self {
        NormalizationChoice(Method::Zscore)
    }
}

/// Everything `features compute` produces, in memory (the training crate can use it directly).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub rows: SampleRows,
    pub table: FeatureTable,
    pub labels: Labels,
    pub splits: Splits,
    pub normalizer: Normalizer,
    /// The fitted feature set, as written to feature_set.json.
    pub feature_set: Value,
    /// Short description of the dataset (source, instrument, events).
    pub dataset: Value,
}

/// Labels and splits on the sample rows, α fitted on the training split.
pub fn label_and_split(rows: &SampleRows, cfg: &PrepareConfig) -> Result<(Labels, Splits)> {
    let mut labels = Labels::compute(rows, &cfg.labels)?;
    let splits = Splits::chronological(&labels.max_reach(), &rows.ts, &cfg.splits)?;
    labels.fit_alpha(splits.train.clone());
    Ok((labels, splits))
}

/// Run the pipeline on `ds`. `features(train_rows)` fits the feature set on the training rows and
/// computes the table, returning it with the fitted set's JSON.
pub fn run_with(
    ds: &Dataset,
    cfg: &PrepareConfig,
    features: impl FnOnce(Range<usize>) -> Result<(FeatureTable, Value)>,
) -> Result<Prepared> {
    let rows = SampleRows::from_dataset(ds);
    if rows.len() < 2 {
        return Err(DataError::Invalid(format!("dataset has {} sample rows (synced batch ends); need more", rows.len())));
    }
    let (labels, splits) = label_and_split(&rows, cfg)?;
    let (table, feature_set) = features(splits.train.clone())?;
    if table.event_index != rows.event_index {
        let first = table.event_index.iter().zip(&rows.event_index).position(|(a, b)| a != b);
        return Err(DataError::Invalid(format!(
            "feature rows ({}) differ from the replay's sample rows ({}); first difference at row {:?}",
            table.rows(),
            rows.len(),
            first
        )));
    }
    let label_names = labels.column_names();
    let mut seen = std::collections::HashSet::new();
    let fixed = ["event_index", "ts", "split"].map(String::from);
    for name in fixed.iter().chain(&table.names).chain(&label_names) {
        if !seen.insert(name.as_str()) {
            return Err(DataError::Invalid(format!("output column {name:?} appears twice (feature and label names must be unique)")));
        }
    }
    let normalizer = Normalizer::fit(&table.names, &table.values, splits.train.clone(), cfg.normalization.0)?;
    let dataset = json!({
        "source_format": ds.meta.source_format,
        "instrument": ds.meta.instrument,
        "events": ds.events.len(),
        "source_files": ds.meta.source_files,
    });
    Ok(Prepared { rows, table, labels, splits, normalizer, feature_set, dataset })
}

/// [`run_with`] using the feature engine: `features::fit` on the training rows, then
/// `features::compute` with the fitted set.
pub fn run(ds: &Dataset, set: &FeatureSet, cfg: &PrepareConfig) -> Result<Prepared> {
    run_with(ds, cfg, |train| {
        let fitted = crate::features::fit(ds, set, train)?;
        let table = crate::features::compute(ds, &fitted)?;
        let json = serde_json::to_value(&fitted).map_err(|e| DataError::Invalid(e.to_string()))?;
        Ok((table, json))
    })
}

impl Prepared {
    /// Forward log-return columns used for the IC: every event and clock horizon label.
    fn horizons(&self) -> Vec<Horizon<'_>> {
        self.labels
            .targets
            .iter()
            .filter(|t| matches!(t.target, Target::Events { .. } | Target::Clock { .. }))
            .map(|t| Horizon { name: t.target.name(), forward_return: &t.value })
            .collect()
    }

    /// summary.json: per feature statistics and IC, splits, label α.
    pub fn summary(&self) -> Value {
        let horizons = self.horizons();
        let ic = information_coefficients(&self.table, &horizons, &self.splits);
        let features: Vec<Value> = feature_stats(&self.table)
            .into_iter()
            .zip(ic)
            .map(|(s, ic)| {
                let mut v = serde_json::to_value(s).expect("stats serialise");
                v["ic"] = ic;
                v
            })
            .collect();
        let labels: serde_json::Map<String, Value> = self
            .labels
            .targets
            .iter()
            .map(|t| {
                let labelled = t.value.iter().filter(|v| v.is_finite()).count();
                (t.target.name(), json!({"alpha": t.alpha, "labelled_rows": labelled}))
            })
            .collect();
        json!({
            "format": PREPARE_FORMAT,
            "dataset": self.dataset,
            "rows": self.table.rows(),
            "feature_columns": self.table.cols(),
            "label_columns": self.labels.column_names().len(),
            "splits": self.splits.report(&self.rows.ts),
            "normalization": self.normalizer.method,
            "ic_method": "spearman",
            "ic_target": "forward mid log return of each event/clock horizon label (label_<h>_logret), per split, over rows where both are finite",
            "ic_horizons": horizons.iter().map(|h| h.name.clone()).collect::<Vec<_>>(),
            "quantile_method": "linear interpolation (type 7)",
            "labels": labels,
            "features": features,
        })
    }

    /// Write the run directory; returns the CLI report (summary keys without the per-feature list).
    pub fn write(&self, out: &Path, csv: bool) -> Result<(Report, Value)> {
        std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
        let split = self.splits.assignment();
        let table = OutputTable { features: &self.table, split: &split, labels: &self.labels };
        let mut files = vec!["features.parquet"];
        write_parquet(&out.join("features.parquet"), &table)?;
        if csv {
            write_csv(&out.join("features.csv"), &table)?;
            files.push("features.csv");
        }
        self.normalizer.save(&out.join("normalization.json"))?;
        let summary = self.summary();
        for (name, v) in
            [("feature_set.json", &self.feature_set), ("labels.json", &self.labels.report(&self.splits)), ("summary.json", &summary)]
        {
            let p = out.join(name);
            let s = serde_json::to_string_pretty(v).map_err(|e| DataError::Invalid(e.to_string()))?;
            std::fs::write(&p, s).map_err(|e| DataError::io(&p, e))?;
        }
        files.extend(["normalization.json", "feature_set.json", "labels.json", "summary.json"]);
        let mut r = Report::new(true);
        r.set("out", out.display().to_string())
            .set("files", files)
            .set("rows", self.table.rows())
            .set("feature_columns", self.table.cols())
            .set("label_columns", self.labels.column_names().len())
            .set("splits", self.splits.report(&self.rows.ts))
            .set("alpha", summary["labels"].clone());
        Ok((r, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{flags, Event, EventKind, Side};
    use crate::features_io::{read_parquet, ColumnValues};
    use crate::instrument::Instrument;
    use crate::labels::AlphaRule;
    use crate::store::DatasetMeta;
    use rand::{Rng, SeedableRng};

    /// A random-walk one-level book, one batch per 0.1 s, with a feed gap in the middle.
    fn dataset(n: usize) -> Dataset {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut ev = Vec::new();
        let (mut bid, mut ask) = (1000, 1001);
        for i in 0..n as i64 {
            let ts = 1_700_000_000_000_000_000 + i * 100_000_000;
            if i == n as i64 / 2 {
                ev.push(Event::new(EventKind::Gap, Side::Bid, 0, 0, ts));
                ev.push(Event::new(EventKind::Snapshot, Side::Bid, 0, 0, ts));
            }
            // One level per side: delete the old touch, set the new one.
            ev.push(Event::level(Side::Bid, bid, 0, ts));
            ev.push(Event::level(Side::Ask, ask, 0, ts));
            bid += rng.random_range(-1..=1);
            ask = bid + rng.random_range(1..3);
            let q = rng.random_range(1..50);
            ev.push(Event::level(Side::Bid, bid, q, ts));
            ev.push(Event::level(Side::Ask, ask, q + 1, ts).with_flags(flags::BATCH_END));
        }
        Dataset { meta: DatasetMeta::new("test", Instrument::new("test", "X", "0.01", 0).unwrap(), 1, true), events: ev }
    }

    /// A stand-in feature computation from the replay (part A's engine replaces it in the CLI).
    fn toy_features(ds: &Dataset) -> FeatureTable {
        let mut t = FeatureTable { names: vec!["spread".into(), "bid_size".into()], ..Default::default() };
        ds.replay(|i, b| {
            t.event_index.push(i as u64);
            t.ts.push(ds.events[i].ts_exchange);
            t.mid.push(b.mid().unwrap_or(f64::NAN));
            let (bb, ba) = (b.best_bid().unwrap(), b.best_ask().unwrap());
            t.values.push((ba.0 - bb.0) as f64);
            t.values.push(bb.1 as f64);
        });
        t
    }

    fn cfg() -> PrepareConfig {
        PrepareConfig {
            labels: LabelConfig {
                smooth_k: vec![5],
                smooth_past: true,
                event_horizons: vec![10],
                clock_horizons_ns: vec![2_000_000_000],
                alpha: AlphaRule::BalancedOnTrain,
            },
            ..Default::default()
        }
    }

    #[test]
    fn pipeline_writes_consistent_run_dir() {
        let ds = dataset(2000);
        let mut seen_train = None;
        let p = run_with(&ds, &cfg(), |train| {
            seen_train = Some(train);
            Ok((toy_features(&ds), json!({"features": ["spread", "bid_size"]})))
        })
        .unwrap();
        assert_eq!(seen_train, Some(p.splits.train.clone()));
        // The gap splits the rows into two segments; labels never span it.
        assert_eq!(*p.rows.segment.last().unwrap(), 1);
        let gap_row = p.rows.segment.iter().position(|&s| s == 1).unwrap();
        let ev10 = p.labels.targets.iter().find(|t| t.target.name() == "ev10").unwrap();
        assert!(ev10.value[gap_row - 10..gap_row].iter().all(|v| v.is_nan()));
        assert!(ev10.value[gap_row - 11].is_finite());
        // Normaliser fitted on train rows only.
        let want = Normalizer::fit(&p.table.names, &p.table.values, p.splits.train.clone(), Method::Zscore).unwrap();
        assert_eq!(p.normalizer, want);

        let dir = tempfile::tempdir().unwrap();
        let (report, summary) = p.write(dir.path(), true).unwrap();
        assert!(report.ok);
        for f in ["features.parquet", "features.csv", "normalization.json", "feature_set.json", "labels.json", "summary.json"] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
        let back = Normalizer::load(&dir.path().join("normalization.json")).unwrap();
        assert_eq!(back.columns.len(), 2);
        let cols = read_parquet(&dir.path().join("features.parquet")).unwrap();
        assert_eq!(cols[0].1, ColumnValues::U64(p.rows.event_index.clone()));
        let labels: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("labels.json")).unwrap()).unwrap();
        assert!(labels["labels"][0]["alpha"].as_f64().unwrap() >= 0.0);
        assert_eq!(labels["class_balance"]["smooth_k5"]["train"]["rows"], json!(p.splits.train.len()));
        let f0 = &summary["features"][0];
        assert_eq!(f0["name"], json!("spread"));
        for k in ["mean", "std", "p01", "p25", "p50", "p75", "p99", "nan", "warmup"] {
            assert!(!f0[k].is_null(), "{k}");
        }
        assert!(f0["ic"]["ev10"]["train"].is_number());
        assert!(f0["ic"]["clock_2s"]["test"].is_number());
        assert_eq!(summary["ic_horizons"], json!(["ev10", "clock_2s"]));
    }

    #[test]
    fn mismatched_feature_rows_are_rejected() {
        let ds = dataset(300);
        let e = run_with(&ds, &cfg(), |_| {
            let mut t = toy_features(&ds);
            t.event_index[5] += 1;
            Ok((t, Value::Null))
        })
        .unwrap_err();
        assert!(e.to_string().contains("first difference at row Some(5)"), "{e}");
    }
}
