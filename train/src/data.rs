//! Experiment data → one normalised input matrix and the windows of each split.
//!
//! Order of work (nothing fitted on anything but training rows):
//! 1. the dataset's sample rows (every batch end of a synced book, `labels::SampleRows`);
//! 2. the label target on those rows, chronological purged splits, α fitted on train
//!    (`prepare::label_and_split`);
//! 3. the input columns on the same rows: raw book levels from the canonical replay and/or the
//!    feature engine's columns (fitted on the training rows);
//! 4. the normaliser fitted on the training rows (`normalize::Normalizer`), applied to every row;
//! 5. windows: a window of T rows ending at row e belongs to the split of e, needs a class at e
//!    and finite inputs on all its rows. Inputs only look back, so a window may start before its
//!    split (e.g. a test window reading validation-period rows): no label of it is used.
//!
//! Evaluation on another dataset ([`prepare_with`]) repeats 1–5 with the stored preprocessing
//! (feature parameters, α, normaliser): nothing is refitted, every labelled row is a test row.

use crate::config::{AlphaSpec, ColumnKind, Experiment, LabelKind, LabelSpec};
use crate::error::{Result, TrainError};
use crate::window::{Matrix, MemoryReport, WindowSet};
use flowcast_datasets::features::ofi::ofi_event;
use flowcast_datasets::labels::{AlphaRule, LabelConfig, Labels, SampleRows, SmoothRef, Target};
use flowcast_datasets::normalize::{Method, Normalizer};
use flowcast_datasets::prepare::{label_and_split, NormalizationChoice, PrepareConfig};
use flowcast_datasets::splits::{SplitConfig, Splits};
use flowcast_datasets::store::{Dataset, SourceFile};
use flowcast_datasets::{TopN, NO_PRICE};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Class names in class-index order (label −1, 0, +1).
pub const CLASSES: [&str; 3] = ["down", "stationary", "up"];

/// Everything needed to turn another dataset into the same inputs: stored in the model card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    pub columns: ColumnKind,
    /// Book levels used (0 when the columns hold no book levels).
    pub levels: usize,
    pub window: usize,
    /// Input column names, in order.
    pub names: Vec<String>,
    /// The fitted feature set (feature engine JSON), `null` without engineered features.
    pub feature_set: serde_json::Value,
    pub label: LabelDef,
    pub normalizer: Normalizer,
}

/// The label definition with its fitted α.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelDef {
    pub kind: LabelKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Column stem of the target (`smooth_k10`, `ev100`, ...).
    pub target: String,
    /// Formula in words.
    pub definition: String,
    /// Class threshold used (fitted on train or fixed).
    pub alpha: f64,
    /// How α was chosen: "balanced_on_train" or "fixed".
    pub alpha_rule: String,
    /// Class names in index order.
    pub classes: Vec<String>,
}

/// Where the data came from and its hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub source_format: String,
    pub instrument: String,
    pub events: usize,
    pub rows: usize,
    pub source_files: Vec<SourceFile>,
    /// SHA-256 over the canonical event stream (every field of every event, little-endian):
    /// identifies the data exactly, also for synthetic data that has no source file.
    pub events_sha256: String,
}

/// The prepared windows of one experiment (or of an evaluation dataset).
pub struct PreparedData {
    pub matrix: Arc<Matrix>,
    pub train: WindowSet,
    pub validation: WindowSet,
    pub test: WindowSet,
    pub prep: Preprocessing,
    pub splits: Splits,
    /// Row times (ns UTC) and event indices, for predictions.
    pub rows: SampleRows,
    /// Best-level OFI summed over each window's rows (CKS 2014), per row: the baseline's input.
    pub window_ofi: Vec<f64>,
    pub info: DataInfo,
    pub memory: MemoryReport,
}

impl PreparedData {
    pub fn n_classes(&self) -> usize {
        CLASSES.len()
    }
    pub fn n_features(&self) -> usize {
        self.matrix.cols()
    }
}

/// SHA-256 of the canonical event stream.
pub fn events_hash(ds: &Dataset) -> String {
    let mut h = Sha256::new();
    for e in &ds.events {
        h.update(e.ts_exchange.to_le_bytes());
        h.update(e.ts_local.to_le_bytes());
        h.update(e.seq.to_le_bytes());
        h.update(e.order_id.to_le_bytes());
        h.update(e.price.to_le_bytes());
        h.update(e.size.to_le_bytes());
        h.update([e.kind as u8, e.side as u8, e.flags]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn label_config(spec: &LabelSpec, alpha: AlphaRule) -> Result<LabelConfig> {
    let mut c = LabelConfig {
        smooth_k: vec![],
        smooth_past: false,
        event_horizons: vec![],
        clock_horizons_ns: vec![],
        alpha,
    };
    let h = spec.horizon.unwrap_or(0);
    match spec.kind {
        LabelKind::Smoothed => c.smooth_k = vec![h],
        LabelKind::SmoothedPast => {
            c.smooth_k = vec![h];
            c.smooth_past = true;
        }
        LabelKind::Events => c.event_horizons = vec![h],
        LabelKind::Clock => {
            let d = spec.duration.as_deref().unwrap_or("");
            let ns = flowcast_datasets::time::parse_duration(d).map_err(|e| TrainError::Invalid(format!("[label] duration: {e}")))?;
            c.clock_horizons_ns = vec![ns];
        }
    }
    Ok(c)
}

/// The target of `spec` among the computed ones.
fn wanted(spec: &LabelSpec, t: &Target) -> bool {
    match (spec.kind, t) {
        (LabelKind::Smoothed, Target::Smoothed { reference: SmoothRef::Current, .. }) => true,
        (LabelKind::SmoothedPast, Target::Smoothed { reference: SmoothRef::PastMean, .. }) => true,
        (LabelKind::Events, Target::Events { .. }) | (LabelKind::Clock, Target::Clock { .. }) => true,
        _ => false,
    }
}

/// Class index (0 down, 1 stationary, 2 up) of each row, `None` where unlabelled.
fn classes_of(labels: &Labels, spec: &LabelSpec) -> Result<(Vec<Option<u8>>, LabelDef)> {
    let t = labels
        .targets
        .iter()
        .find(|t| wanted(spec, &t.target))
        .ok_or_else(|| TrainError::Invalid("label target missing from the computed labels".into()))?;
    if !t.alpha.is_finite() {
        return Err(TrainError::Invalid(format!("label {}: no labelled training row to fit alpha on", t.target.name())));
    }
    let classes = t.class.iter().map(|c| c.map(|v| (v + 1) as u8)).collect();
    let def = LabelDef {
        kind: spec.kind,
        horizon: spec.horizon,
        duration: spec.duration.clone(),
        target: t.target.name(),
        definition: t.target.definition(),
        alpha: t.alpha,
        alpha_rule: match labels.alpha_rule {
            AlphaRule::BalancedOnTrain => "balanced_on_train".into(),
            AlphaRule::Fixed { .. } => "fixed".into(),
        },
        classes: CLASSES.iter().map(|s| s.to_string()).collect(),
    };
    Ok((classes, def))
}

/// Book-level column names for `levels` levels: per level ask price − mid, ask size, bid price −
/// mid, bid size (DeepLOB's column order).
pub fn book_names(levels: usize) -> Vec<String> {
    let mut v = Vec::with_capacity(4 * levels);
    for l in 1..=levels {
        v.push(format!("ask_px_rel_{l}"));
        v.push(format!("ask_sz_{l}"));
        v.push(format!("bid_px_rel_{l}"));
        v.push(format!("bid_sz_{l}"));
    }
    v
}

/// Raw book columns on the sample rows (one canonical replay) and the per-row best-level OFI
/// contribution e_n. Prices are ticks relative to the mid, sizes lots. An absent level is put
/// one tick beyond the previous level of its side with size 0 (so the column stays a price
/// offset); a row without both touches has NaN prices (its windows are dropped).
fn book_columns(ds: &Dataset, rows: &SampleRows, levels: usize) -> (Vec<f64>, Vec<f64>) {
    let c = 4 * levels;
    let mut vals = Vec::with_capacity(rows.len() * c);
    let mut e = Vec::with_capacity(rows.len());
    let mut top = TopN::new(levels.max(1));
    let mut prev: Option<((i64, i64), (i64, i64), u32)> = None;
    let mut r = 0usize;
    ds.replay(|_, book| {
        book.top_n(&mut top);
        let mid = book.mid().unwrap_or(f64::NAN);
        let (mut last_ask, mut last_bid) = (f64::NAN, f64::NAN);
        for l in 0..levels {
            let ask = if top.ask_px[l] != NO_PRICE { top.ask_px[l] as f64 - mid } else { last_ask + 1.0 };
            let bid = if top.bid_px[l] != NO_PRICE { top.bid_px[l] as f64 - mid } else { last_bid - 1.0 };
            vals.extend_from_slice(&[ask, top.ask_sz[l] as f64, bid, top.bid_sz[l] as f64]);
            last_ask = ask;
            last_bid = bid;
        }
        let seg = rows.segment.get(r).copied().unwrap_or(0);
        let cur = match (book.best_bid(), book.best_ask()) {
            (Some(b), Some(a)) => Some((b, a)),
            _ => None,
        };
        let en = match (prev, cur) {
            (Some((pb, pa, ps)), Some((b, a))) if ps == seg => ofi_event(pb, pa, b, a) as f64,
            _ => 0.0,
        };
        e.push(en);
        prev = cur.map(|(b, a)| (b, a, seg));
        r += 1;
    });
    (vals, e)
}

/// Σ of e over each row's window (rows r−T+1..=r, fewer at the start).
fn window_sums(e: &[f64], t: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(e.len());
    let mut s = 0.0;
    for i in 0..e.len() {
        s += e[i];
        if i >= t {
            s -= e[i - t];
        }
        out.push(s);
    }
    out
}

/// Windows of `t` rows ending in `range` with a class at the end and finite inputs throughout.
fn windows(m: &Arc<Matrix>, valid: &[bool], class: &[Option<u8>], range: std::ops::Range<usize>, t: usize, stride: usize) -> WindowSet {
    // bad[i] = number of invalid rows before i: a window [s, e] is clean iff bad[e+1] == bad[s].
    let mut bad = Vec::with_capacity(valid.len() + 1);
    let mut b = 0u32;
    bad.push(0);
    for &v in valid {
        b += !v as u32;
        bad.push(b);
    }
    let (mut ends, mut labels) = (Vec::new(), Vec::new());
    let mut kept = 0usize;
    for e in range {
        if e + 1 < t {
            continue;
        }
        let Some(c) = class[e] else { continue };
        if bad[e + 1] != bad[e + 1 - t] {
            continue;
        }
        if kept % stride == 0 {
            ends.push(e as u32);
            labels.push(c);
        }
        kept += 1;
    }
    WindowSet::new(Arc::clone(m), t, ends, labels)
}

/// Input columns (unnormalised, f64 row-major) with their names and the fitted feature set.
fn columns(
    ds: &Dataset,
    rows: &SampleRows,
    kind: ColumnKind,
    levels: usize,
    features: &FeatureSource,
    train: std::ops::Range<usize>,
) -> Result<(Vec<String>, Vec<f64>, Vec<f64>, serde_json::Value)> {
    let (book, e) = book_columns(ds, rows, levels);
    let n = rows.len();
    let (fnames, fvals, fset) = match kind {
        ColumnKind::Book => (vec![], vec![], serde_json::Value::Null),
        ColumnKind::Features | ColumnKind::Both => crate::feature_cols::compute(ds, rows, features, train)?,
    };
    let bc = if kind == ColumnKind::Features { 0 } else { 4 * levels };
    let fc = fnames.len();
    let mut names = if bc > 0 { book_names(levels) } else { vec![] };
    names.extend(fnames);
    let c = bc + fc;
    if c == 0 {
        return Err(TrainError::Invalid("the experiment selects no input columns".into()));
    }
    let mut vals = Vec::with_capacity(n * c);
    for r in 0..n {
        if bc > 0 {
            vals.extend_from_slice(&book[r * bc..(r + 1) * bc]);
        }
        if fc > 0 {
            vals.extend_from_slice(&fvals[r * fc..(r + 1) * fc]);
        }
    }
    Ok((names, vals, e, fset))
}

/// Feature specs from the experiment, or a fitted set from a model card.
pub enum FeatureSource {
    /// `[[columns.feature]]` tables (empty = the engine's default set), to be fitted on train.
    Specs(Vec<serde_json::Value>),
    /// A fitted set (model card): used as is.
    Fitted(serde_json::Value),
}

fn to_matrix(names: Vec<String>, vals: &[f64]) -> (Arc<Matrix>, Vec<bool>) {
    let c = names.len();
    let values: Vec<f32> = vals.iter().map(|&v| v as f32).collect();
    let valid = values.chunks(c).map(|r| r.iter().all(|v| v.is_finite())).collect();
    (Arc::new(Matrix { names, values }), valid)
}

fn info(ds: &Dataset, rows: usize) -> DataInfo {
    DataInfo {
        source_format: ds.meta.source_format.clone(),
        instrument: ds.meta.instrument.to_string(),
        events: ds.events.len(),
        rows,
        source_files: ds.meta.source_files.clone(),
        events_sha256: events_hash(ds),
    }
}

/// Prepare an experiment's data: fit everything on the training rows.
pub fn prepare(ds: &Dataset, exp: &Experiment) -> Result<PreparedData> {
    let levels = exp.columns.levels.unwrap_or(ds.meta.levels);
    if exp.columns.kind != ColumnKind::Features && (levels == 0 || levels > ds.meta.levels) {
        return Err(TrainError::Invalid(format!(
            "[columns] levels = {levels}, but the dataset stores {} book levels",
            ds.meta.levels
        )));
    }
    let method = Method::parse(&exp.normalization.method)?;
    let rows = SampleRows::from_dataset(ds);
    let t = exp.columns.window;
    if rows.len() < t + 2 {
        return Err(TrainError::Invalid(format!("the dataset has {} sample rows; a window needs {t}", rows.len())));
    }
    let alpha = match exp.label.alpha {
        AlphaSpec::Fixed(a) => AlphaRule::Fixed { alpha: a },
        AlphaSpec::Rule(_) => AlphaRule::BalancedOnTrain,
    };
    let cfg = PrepareConfig {
        labels: label_config(&exp.label, alpha)?,
        splits: SplitConfig { train: exp.splits.train, validation: exp.splits.validation },
        normalization: NormalizationChoice(method),
    };
    let (labels, splits) = label_and_split(&rows, &cfg)?;
    let (class, label) = classes_of(&labels, &exp.label)?;
    let levels_used = if exp.columns.kind == ColumnKind::Features { 0 } else { levels };
    let feats = FeatureSource::Specs(exp.columns.features.clone());
    let (names, mut vals, e, feature_set) = columns(ds, &rows, exp.columns.kind, levels_used, &feats, splits.train.clone())?;
    let normalizer = Normalizer::fit(&names, &vals, splits.train.clone(), method)?;
    normalizer.apply(&mut vals);
    let (matrix, valid) = to_matrix(names.clone(), &vals);
    drop(vals);
    let stride = exp.columns.train_stride;
    let train = windows(&matrix, &valid, &class, splits.train.clone(), t, stride);
    let validation = windows(&matrix, &valid, &class, splits.validation.clone(), t, 1);
    let test = windows(&matrix, &valid, &class, splits.test.clone(), t, 1);
    if train.is_empty() {
        return Err(TrainError::Invalid("no complete training window (check window length and data size)".into()));
    }
    let memory = MemoryReport::of(&matrix, &[&train, &validation, &test]);
    let prep = Preprocessing { columns: exp.columns.kind, levels: levels_used, window: t, names, feature_set, label, normalizer };
    let info = info(ds, rows.len());
    Ok(PreparedData { window_ofi: window_sums(&e, t), matrix, train, validation, test, prep, splits, rows, info, memory })
}

/// Prepare another dataset with stored preprocessing: every labelled row is a test row.
pub fn prepare_with(ds: &Dataset, prep: &Preprocessing) -> Result<PreparedData> {
    if prep.levels > ds.meta.levels {
        return Err(TrainError::Invalid(format!(
            "the model reads {} book levels but the dataset stores {}",
            prep.levels, ds.meta.levels
        )));
    }
    let rows = SampleRows::from_dataset(ds);
    let t = prep.window;
    if rows.len() < t + 1 {
        return Err(TrainError::Invalid(format!("the dataset has {} sample rows; a window needs {t}", rows.len())));
    }
    let spec = LabelSpec {
        kind: prep.label.kind,
        horizon: prep.label.horizon,
        duration: prep.label.duration.clone(),
        alpha: AlphaSpec::Fixed(prep.label.alpha),
    };
    let mut labels = Labels::compute(&rows, &label_config(&spec, AlphaRule::Fixed { alpha: prep.label.alpha })?)?;
    labels.fit_alpha(0..rows.len()); // fixed α: classifies, fits nothing
    let (class, _) = classes_of(&labels, &spec)?;
    let feats = FeatureSource::Fitted(prep.feature_set.clone());
    let (names, mut vals, e, _) = columns(ds, &rows, prep.columns, prep.levels, &feats, 0..0)?;
    if names != prep.names {
        return Err(TrainError::Invalid(format!("input columns differ from the model's: {names:?} vs {:?}", prep.names)));
    }
    prep.normalizer.check_names(&names)?;
    prep.normalizer.apply(&mut vals);
    let (matrix, valid) = to_matrix(names, &vals);
    let n = rows.len();
    let splits = Splits { n, train: 0..0, validation: 0..0, test: 0..n };
    let empty = WindowSet::new(Arc::clone(&matrix), t, vec![], vec![]);
    let test = windows(&matrix, &valid, &class, 0..n, t, 1);
    if test.is_empty() {
        return Err(TrainError::Invalid("no complete labelled window in the evaluation data".into()));
    }
    let memory = MemoryReport::of(&matrix, &[&test]);
    let info = info(ds, n);
    Ok(PreparedData {
        window_ofi: window_sums(&e, t),
        matrix,
        train: empty.clone(),
        validation: empty,
        test,
        prep: prep.clone(),
        splits,
        rows,
        info,
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sums_are_trailing() {
        assert_eq!(window_sums(&[1.0, 2.0, 3.0, 4.0], 2), vec![1.0, 3.0, 5.0, 7.0]);
    }

    #[test]
    fn windows_skip_invalid_rows_and_unlabelled_ends() {
        let m = Arc::new(Matrix { names: vec!["a".into()], values: (0..8).map(|v| v as f32).collect() });
        let valid = [true, true, false, true, true, true, true, true];
        let class = [Some(0), Some(1), Some(2), Some(0), Some(1), None, Some(2), Some(0)];
        let w = windows(&m, &valid, &class, 0..8, 2, 1);
        // End 1: rows 0-1 ok. End 2,3: contain row 2. End 5: unlabelled.
        assert_eq!(w.ends, vec![1, 4, 6, 7]);
        assert_eq!(w.labels, vec![1, 1, 2, 0]);
        let w = windows(&m, &valid, &class, 0..8, 2, 2);
        assert_eq!(w.ends, vec![1, 6]);
    }
}
