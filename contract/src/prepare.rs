//! Dataset → one normalised input matrix and, per target, the windows of each split. The same
//! code fits the preprocessing for training ([`prepare`]) and applies a stored one to other data
//! ([`prepare_with`]: evaluation, prediction, the backtest), so serve/evaluation inputs are the
//! training inputs by construction.
//!
//! Order of work (nothing fitted on anything but training rows):
//! 1. the dataset's sample rows (every batch end of a synced book, `labels::SampleRows`);
//! 2. each target's label on those rows; chronological purged splits whose gap covers the
//!    longest reach of any target; α fitted per target on the training rows;
//! 3. the input columns on the same rows: raw book levels from the canonical replay and/or the
//!    feature engine's columns (fitted on the training rows);
//! 4. the normaliser fitted on the training rows (`normalize::Normalizer`), applied to every row;
//! 5. windows: a window of T rows ending at row e belongs to the split of e, needs a label at e
//!    and finite inputs on all its rows. Inputs only look back, so a window may start before its
//!    split (e.g. a test window reading validation-period rows): no label of it is used.
//!
//! With stored preprocessing, 1–5 repeat with the stored feature parameters, α and normaliser:
//! nothing is refitted and every labelled row is a test row.

use crate::error::{ContractError, Result};
use crate::preprocessing::{ColumnKind, ColumnsSpec, DataInfo, InputDef, NormSpec, Preprocessing, SplitSpec};
use crate::stream::{normalise_row, RowBuilder};
use crate::target::{TargetDef, TargetSpec, BPS, DIRECTION_CLASSES};
use crate::window::{Matrix, MemoryReport, WindowSet};
use flowcast_datasets::features::ofi::ofi_event;
use flowcast_datasets::features::{self, FeatureSet, FeatureSpec};
use flowcast_datasets::labels::{AlphaRule, Labels, SampleRows, TargetLabels};
use flowcast_datasets::normalize::{Method, Normalizer};
use flowcast_datasets::splits::Splits;
use flowcast_datasets::store::Dataset;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What [`prepare`] fits: the experiment's preprocessing tables.
#[derive(Clone, Copy, Debug)]
pub struct PrepareSpec<'a> {
    pub columns: &'a ColumnsSpec,
    pub targets: &'a [TargetSpec],
    pub splits: &'a SplitSpec,
    pub normalization: &'a NormSpec,
}

/// The windows of one target.
#[derive(Clone, Debug)]
pub struct PreparedTarget {
    pub def: TargetDef,
    pub train: WindowSet,
    pub validation: WindowSet,
    pub test: WindowSet,
}

/// The prepared windows of one experiment (or of an evaluation dataset). Cloning shares the
/// matrix (an `Arc`); the ensemble clones it to train fold members on subsets.
#[derive(Clone)]
pub struct PreparedData {
    pub matrix: Arc<Matrix>,
    pub inputs: InputDef,
    pub targets: Vec<PreparedTarget>,
    pub splits: Splits,
    /// Row times (ns UTC) and event indices, for predictions.
    pub rows: SampleRows,
    /// Best-level OFI summed over each window's rows (CKS 2014), per row: the OFI baseline's input.
    pub window_ofi: Vec<f64>,
    pub info: DataInfo,
    pub memory: MemoryReport,
}

impl PreparedData {
    pub fn n_features(&self) -> usize {
        self.matrix.cols()
    }
    /// The card's preprocessing for target `t`.
    pub fn preprocessing(&self, t: usize) -> Preprocessing {
        Preprocessing { inputs: self.inputs.clone(), target: self.targets[t].def.clone() }
    }
    /// Target by id.
    pub fn target(&self, id: &str) -> Option<&PreparedTarget> {
        self.targets.iter().find(|t| t.def.id == id)
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

fn invalid(e: String) -> ContractError {
    ContractError::Invalid(e)
}

/// The computed labels of one target (its own `Labels`, one target inside).
fn target_labels<'l>(labels: &'l Labels, spec: &TargetSpec) -> Result<&'l TargetLabels> {
    let want = spec.label_target().map_err(invalid)?;
    labels
        .targets
        .iter()
        .find(|t| t.target == want)
        .ok_or_else(|| invalid(format!("label target {} missing from the computed labels", want.name())))
}

/// Class index (0 down, 1 stationary, 2 up) and value (bps) of each row, and the fitted definition.
fn classes_of(labels: &Labels, spec: &TargetSpec) -> Result<(Vec<Option<u8>>, Vec<f32>, TargetDef)> {
    let t = target_labels(labels, spec)?;
    if !t.alpha.is_finite() {
        return Err(invalid(format!("label {}: no labelled training row to fit alpha on", t.target.name())));
    }
    let classes = t.class.iter().map(|c| c.map(|v| (v + 1) as u8)).collect();
    let values = t.value.iter().map(|&v| (v * BPS) as f32).collect();
    let def = TargetDef {
        id: spec.resolved_id().map_err(invalid)?,
        kind: spec.kind,
        horizon: spec.horizon,
        duration: spec.duration.clone(),
        target: t.target.name(),
        definition: t.target.definition(),
        output: spec.output,
        alpha: t.alpha,
        alpha_rule: match labels.alpha_rule {
            AlphaRule::BalancedOnTrain => "balanced_on_train".into(),
            AlphaRule::Fixed { .. } => "fixed".into(),
        },
        classes: DIRECTION_CLASSES.iter().map(|s| s.to_string()).collect(),
        unit: "bps".into(),
    };
    Ok((classes, values, def))
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

/// Windows of `t` rows ending in `range` with a class at the end, finite inputs throughout and
/// no gap inside (all rows of one `segment`: nothing is carried across a hole in the data, as
/// the feature engine resets and stream mode restarts its window there); `values` (bps per row)
/// is attached when given (the prepare functions always give it).
/// Per row: whether its inputs are all finite, and its gap-free segment.
#[derive(Clone, Copy)]
struct RowMask<'a> {
    valid: &'a [bool],
    segment: &'a [u32],
}

fn windows(
    m: &Arc<Matrix>,
    rows: RowMask<'_>,
    class: &[Option<u8>],
    values: Option<&[f32]>,
    range: std::ops::Range<usize>,
    t: usize,
    stride: usize,
) -> WindowSet {
    // bad[i] = number of invalid rows before i: a window [s, e] is clean iff bad[e+1] == bad[s].
    let RowMask { valid, segment } = rows;
    let mut bad = Vec::with_capacity(valid.len() + 1);
    let mut b = 0u32;
    bad.push(0);
    for &v in valid {
        b += !v as u32;
        bad.push(b);
    }
    let (mut ends, mut labels, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    let mut kept = 0usize;
    for e in range {
        if e + 1 < t {
            continue;
        }
        let Some(c) = class[e] else { continue };
        if bad[e + 1] != bad[e + 1 - t] || segment[e + 1 - t] != segment[e] {
            continue;
        }
        if kept.is_multiple_of(stride) {
            ends.push(e as u32);
            labels.push(c);
            if let Some(v) = values {
                vals.push(v[e]);
            }
        }
        kept += 1;
    }
    let set = WindowSet::new(Arc::clone(m), t, ends, labels);
    if values.is_some() {
        set.with_values(vals)
    } else {
        set
    }
}

/// (price, size) at a touch.
type Touch = (i64, i64);

/// Feature specs from the experiment, or a fitted set from a model card.
pub enum FeatureSource {
    /// `[[columns.feature]]` tables (empty = the engine's default set), to be fitted on train.
    Specs(Vec<serde_json::Value>),
    /// A fitted set (model card): used as is.
    Fitted(serde_json::Value),
}

/// The fitted feature set: fitted on the `train` rows from specs, or the card's as is.
fn fitted_set(ds: &Dataset, src: &FeatureSource, train: std::ops::Range<usize>) -> Result<FeatureSet> {
    Ok(match src {
        FeatureSource::Specs(specs) if specs.is_empty() => features::fit(ds, &FeatureSet::default_set(), train)?,
        FeatureSource::Specs(specs) => {
            let specs: Vec<FeatureSpec> = specs
                .iter()
                .enumerate()
                .map(|(i, v)| serde_json::from_value(v.clone()).map_err(|e| invalid(format!("[[columns.feature]] #{}: {e}", i + 1))))
                .collect::<Result<_>>()?;
            features::fit(ds, &FeatureSet::new(specs)?, train)?
        }
        FeatureSource::Fitted(json) => FeatureSet::from_json(&json.to_string())?,
    })
}

/// Input columns of the sample rows before normalisation.
struct Columns {
    names: Vec<String>,
    /// Row-major f64 values.
    values: Vec<f64>,
    /// Per row, the best-level OFI term e_n (the OFI baseline's input, summed per window).
    ofi_terms: Vec<f64>,
    /// The fitted feature set's JSON (`null` without engineered features).
    feature_set: serde_json::Value,
}

/// Input columns (unnormalised) with their names, the per-row OFI term and the fitted feature
/// set: one canonical replay feeding [`RowBuilder`], the builder stream mode uses event by
/// event (book levels relative to the mid in ticks, sizes in lots, then the engine's features).
/// The OFI term is the best-level e_n of CKS 2014 between consecutive rows of a segment.
fn columns(
    ds: &Dataset,
    rows: &SampleRows,
    kind: ColumnKind,
    levels: usize,
    features: &FeatureSource,
    train: std::ops::Range<usize>,
) -> Result<Columns> {
    let set = match kind {
        ColumnKind::Book => None,
        ColumnKind::Features | ColumnKind::Both => Some(fitted_set(ds, features, train)?),
    };
    let mut b = RowBuilder::new(kind, levels, set.as_ref(), &ds.meta)?;
    let names = b.names();
    let (n, c) = (rows.len(), b.columns());
    let mut vals = Vec::with_capacity(n * c);
    let mut e = Vec::with_capacity(n);
    // (best bid, best ask, segment) of the previous row: (price, size) per touch.
    let mut prev: Option<(Touch, Touch, u32)> = None;
    let mut book = ds.new_book();
    let mut r = 0usize;
    for (i, ev) in ds.events.iter().enumerate() {
        book.apply(ev);
        if !b.on_event(ev, &book) {
            continue;
        }
        if rows.event_index.get(r) != Some(&(i as u64)) {
            return Err(invalid(format!("input row {r} is at event {i}, the label row at {:?}", rows.event_index.get(r))));
        }
        vals.extend_from_slice(b.row());
        let seg = rows.segment[r];
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
    }
    if r != n {
        return Err(invalid(format!("{r} input rows for {n} label rows")));
    }
    if let Some(d) = b.diagnostics().filter(|d| d.crossed_samples + d.resets + d.window_overflows + d.order_tracker_overflows > 0) {
        tracing::warn!(
            crossed = d.crossed_samples,
            resets = d.resets,
            window_overflows = d.window_overflows,
            order_tracker_overflows = d.order_tracker_overflows,
            "feature computation: data issues detected"
        );
    }
    let feature_set = match set {
        Some(s) => serde_json::from_str(&s.to_json()).expect("feature set JSON"),
        None => serde_json::Value::Null,
    };
    Ok(Columns { names, values: vals, ofi_terms: e, feature_set })
}

/// Normalises the raw rows (in place) into the f32 matrix, row by row with stream mode's
/// [`normalise_row`]; a row is valid when all its values are finite.
fn to_matrix(names: Vec<String>, vals: &mut [f64], norm: &Normalizer) -> (Arc<Matrix>, Vec<bool>) {
    let c = names.len();
    let mut values = vec![0f32; vals.len()];
    let valid = vals.chunks_exact_mut(c).zip(values.chunks_exact_mut(c)).map(|(raw, out)| normalise_row(norm, raw, out)).collect();
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

/// Labels of every target on `rows`, each with its own α rule.
fn all_labels(rows: &SampleRows, targets: &[TargetSpec]) -> Result<Vec<Labels>> {
    targets
        .iter()
        .map(|t| {
            let cfg = t.label_config(t.alpha_rule()).map_err(invalid)?;
            Ok(Labels::compute(rows, &cfg)?)
        })
        .collect()
}

/// Prepare an experiment's data: fit everything on the training rows.
pub fn prepare(ds: &Dataset, spec: PrepareSpec<'_>) -> Result<PreparedData> {
    let cols = spec.columns;
    let levels = cols.levels.unwrap_or(ds.meta.levels);
    if cols.kind != ColumnKind::Features && (levels == 0 || levels > ds.meta.levels) {
        return Err(invalid(format!("[columns] levels = {levels}, but the dataset stores {} book levels", ds.meta.levels)));
    }
    if spec.targets.is_empty() {
        return Err(invalid("at least one [label] target is needed".into()));
    }
    let method = Method::parse(&spec.normalization.method)?;
    let rows = SampleRows::from_dataset(ds);
    let t = cols.window;
    if rows.len() < t + 2 {
        return Err(invalid(format!("the dataset has {} sample rows; a window needs {t}", rows.len())));
    }
    let mut labels = all_labels(&rows, spec.targets)?;
    // One split for every target: the purge gap covers the longest reach of any of them.
    let mut reach: Vec<usize> = (0..rows.len()).collect();
    for l in &labels {
        for (a, b) in reach.iter_mut().zip(l.max_reach()) {
            *a = (*a).max(b);
        }
    }
    let splits = Splits::chronological(&reach, &rows.ts, &spec.splits.config())?;
    for l in &mut labels {
        l.fit_alpha(splits.train.clone());
    }
    let levels_used = if cols.kind == ColumnKind::Features { 0 } else { levels };
    let feats = FeatureSource::Specs(cols.features.clone());
    let Columns { names, values: mut vals, ofi_terms: e, feature_set } =
        columns(ds, &rows, cols.kind, levels_used, &feats, splits.train.clone())?;
    let normalizer = Normalizer::fit(&names, &vals, splits.train.clone(), method)?;
    let (matrix, valid) = to_matrix(names.clone(), &mut vals, &normalizer);
    drop(vals);
    let mut targets = Vec::with_capacity(spec.targets.len());
    for (ts, l) in spec.targets.iter().zip(&labels) {
        let (class, values, def) = classes_of(l, ts)?;
        // Every window carries its target value (bps): regression targets train on it and the
        // online models (`bayes_online`) regress it for direction targets too.
        let v = Some(&values[..]);
        let train =
            windows(&matrix, RowMask { valid: &valid, segment: &rows.segment }, &class, v, splits.train.clone(), t, cols.train_stride);
        if train.is_empty() {
            return Err(invalid(format!("target {}: no complete training window (check window length and data size)", def.id)));
        }
        let validation = windows(&matrix, RowMask { valid: &valid, segment: &rows.segment }, &class, v, splits.validation.clone(), t, 1);
        let test = windows(&matrix, RowMask { valid: &valid, segment: &rows.segment }, &class, v, splits.test.clone(), t, 1);
        targets.push(PreparedTarget { def, train, validation, test });
    }
    let mut ids: Vec<&str> = targets.iter().map(|t| t.def.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(format!("two [[label]] targets share the id {:?}: set `id` on one of them", w[0])));
    }
    let sets: Vec<&WindowSet> = targets.iter().flat_map(|t| [&t.train, &t.validation, &t.test]).collect();
    let memory = MemoryReport::of(&matrix, &sets);
    let inputs = InputDef { columns: cols.kind, levels: levels_used, window: t, names, feature_set, normalizer };
    let info = info(ds, rows.len());
    Ok(PreparedData { window_ofi: window_sums(&e, t), matrix, inputs, targets, splits, rows, info, memory })
}

/// Prepare another dataset with stored preprocessing (the inputs and the fitted targets): every
/// labelled row is a test row.
pub fn prepare_with(ds: &Dataset, inputs: &InputDef, targets: &[TargetDef]) -> Result<PreparedData> {
    if inputs.levels > ds.meta.levels {
        return Err(invalid(format!("the model reads {} book levels but the dataset stores {}", inputs.levels, ds.meta.levels)));
    }
    let rows = SampleRows::from_dataset(ds);
    let t = inputs.window;
    if rows.len() < t + 1 {
        return Err(invalid(format!("the dataset has {} sample rows; a window needs {t}", rows.len())));
    }
    let specs: Vec<TargetSpec> = targets.iter().map(TargetDef::fixed_spec).collect();
    let mut labels = all_labels(&rows, &specs)?;
    for l in &mut labels {
        l.fit_alpha(0..rows.len()); // fixed α: classifies, fits nothing
    }
    let feats = FeatureSource::Fitted(inputs.feature_set.clone());
    let Columns { names, values: mut vals, ofi_terms: e, .. } = columns(ds, &rows, inputs.columns, inputs.levels, &feats, 0..0)?;
    if names != inputs.names {
        return Err(invalid(format!("input columns differ from the model's: {names:?} vs {:?}", inputs.names)));
    }
    inputs.normalizer.check_names(&names)?;
    let (matrix, valid) = to_matrix(names, &mut vals, &inputs.normalizer);
    let n = rows.len();
    let splits = Splits { n, train: 0..0, validation: 0..0, test: 0..n };
    let empty = WindowSet::new(Arc::clone(&matrix), t, vec![], vec![]);
    let mut out = Vec::with_capacity(targets.len());
    for ((def, spec), l) in targets.iter().zip(&specs).zip(&labels) {
        let (class, values, _) = classes_of(l, spec)?;
        // Every window carries its target value (bps): regression targets train on it and the
        // online models (`bayes_online`) regress it for direction targets too.
        let v = Some(&values[..]);
        let test = windows(&matrix, RowMask { valid: &valid, segment: &rows.segment }, &class, v, 0..n, t, 1);
        if test.is_empty() {
            return Err(invalid(format!("target {}: no complete labelled window in the evaluation data", def.id)));
        }
        out.push(PreparedTarget { def: def.clone(), train: empty.clone(), validation: empty.clone(), test });
    }
    let sets: Vec<&WindowSet> = out.iter().map(|t| &t.test).collect();
    let memory = MemoryReport::of(&matrix, &sets);
    let info = info(ds, n);
    Ok(PreparedData { window_ofi: window_sums(&e, t), matrix, inputs: inputs.clone(), targets: out, splits, rows, info, memory })
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
        let seg = [0u32; 8];
        let w = windows(&m, RowMask { valid: &valid, segment: &seg }, &class, None, 0..8, 2, 1);
        // End 1: rows 0-1 ok. End 2,3: contain row 2. End 5: unlabelled.
        assert_eq!(w.ends, vec![1, 4, 6, 7]);
        assert_eq!(w.labels, vec![1, 1, 2, 0]);
        assert!(w.values.is_empty());
        let vals: Vec<f32> = (0..8).map(|v| v as f32 * 10.0).collect();
        let w = windows(&m, RowMask { valid: &valid, segment: &seg }, &class, Some(&vals), 0..8, 2, 2);
        assert_eq!(w.ends, vec![1, 6]);
        assert_eq!(w.values, vec![10.0, 60.0]);
        // A gap between rows 6 and 7: the window ending at 7 would straddle it.
        let seg = [0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(windows(&m, RowMask { valid: &valid, segment: &seg }, &class, None, 0..8, 2, 1).ends, vec![1, 4, 6]);
    }
}
