//! Model outputs for the replay: from an exported model run over the dataset with its card's
//! preprocessing (causal features, train-fitted normaliser: the inputs the model was tested on),
//! or from a `predictions.parquet`. Either way each output is keyed by the event index of its
//! window's last row, and the engine releases it only after that event (plus the model latency).
//!
//! In-sample guard: when the dataset is the model's own training data (same events SHA-256), only
//! the rows of the training run's test split are kept (from the run's `predictions.parquet`),
//! unless `allow_in_sample` says otherwise.

use crate::config::SignalSpec;
use crate::error::{BacktestError, Result};
use crate::strategy::SignalPoint;
use arrow_array::{Array, Float32Array, UInt64Array};
use flowcast_contract::files::PREDICTIONS_FILE;
use flowcast_contract::predictor::predict_set;
use flowcast_contract::prepare::{events_hash, prepare_with};
use flowcast_contract::signal::{SignalConfig, SignalRule};
use flowcast_contract::window::WindowSet;
use flowcast_contract::ModelCard;
use flowcast_datasets::Dataset;
use std::path::Path;

/// What the signal source produced, with the cost of producing it.
pub struct Signals {
    pub points: Vec<SignalPoint>,
    /// Model name / predictions file, for the report.
    pub source: String,
    /// Wall-clock model compute per window (ns), when the model ran here.
    pub compute_ns_per_window: Option<f64>,
    /// Windows dropped because they were in the model's training data.
    pub dropped_in_sample: usize,
    /// Windows the model was run on (0 for a predictions file): those ending in the part of the
    /// data that can produce a signal (after the in-sample guard, before the segment's end).
    pub windows_predicted: usize,
    pub rule: SignalConfig,
}

impl Signals {
    /// No model: the strategy trades on the book and its features alone.
    pub fn none() -> Signals {
        Signals {
            points: vec![],
            source: "none".into(),
            compute_ns_per_window: None,
            dropped_in_sample: 0,
            windows_predicted: 0,
            rule: SignalConfig::default(),
        }
    }
    /// The signals of `[signal]`, or [`Signals::none`] without one.
    pub fn of(spec: Option<&SignalSpec>, ds: &Dataset) -> Result<Signals> {
        Self::of_until(spec, ds, None)
    }
    /// [`Signals::of`] keeping only signals of events before `until` (a segment's end): a model
    /// is run only on the windows that can give one, so a walk-forward fold predicts its own
    /// segment instead of the whole data. The points are exactly those of `of` before `until`
    /// (predictors hold no state across windows).
    pub fn of_until(spec: Option<&SignalSpec>, ds: &Dataset, until: Option<u64>) -> Result<Signals> {
        let mut s = spec.map_or_else(|| Ok(Signals::none()), |s| load(s, ds, until))?;
        if let Some(to) = until {
            s.points.retain(|p| p.event_index < to);
        }
        Ok(s)
    }
}

/// The columns of a predictions file the backtest reads.
#[derive(Clone, Debug, Default)]
pub struct PredictionColumns {
    pub event_index: Vec<u64>,
    /// Class names from the `p_<class>` columns, in file order.
    pub classes: Vec<String>,
    /// One vector per class.
    pub probs: Vec<Vec<f32>>,
    pub regression: Option<Vec<f32>>,
}

/// Reads `event_index`, `p_<class>` and (optional) `regression` of a predictions file.
pub fn read_predictions(path: &Path) -> Result<PredictionColumns> {
    let f = std::fs::File::open(path).map_err(|e| BacktestError::io(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .and_then(|b| b.build())
        .map_err(|e| BacktestError::file(path, e))?;
    let mut out = PredictionColumns::default();
    for batch in reader {
        let batch = batch.map_err(|e| BacktestError::file(path, e))?;
        let schema = batch.schema();
        let col = |name: &str| batch.column_by_name(name);
        let ei = col("event_index")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .ok_or_else(|| BacktestError::file(path, "column event_index (uint64) missing"))?;
        out.event_index.extend(ei.values().iter().copied());
        if out.classes.is_empty() {
            out.classes = schema.fields().iter().filter_map(|f| f.name().strip_prefix("p_").map(String::from)).collect();
            out.probs = vec![Vec::new(); out.classes.len()];
        }
        for (k, c) in out.classes.iter().enumerate() {
            let a = col(&format!("p_{c}"))
                .and_then(|c| c.as_any().downcast_ref::<Float32Array>())
                .ok_or_else(|| BacktestError::file(path, format!("column p_{c} (float) missing")))?;
            out.probs[k].extend(a.values().iter().copied());
        }
        if let Some(r) = col("regression").and_then(|c| c.as_any().downcast_ref::<Float32Array>()) {
            out.regression.get_or_insert_with(Vec::new).extend(r.values().iter().copied());
        }
    }
    let idx = &out.event_index;
    if let Some(k) = (1..idx.len()).find(|&k| idx[k] <= idx[k - 1]) {
        return Err(BacktestError::file(path, format!("row {k}: event_index {} does not increase", idx[k])));
    }
    Ok(out)
}

fn points(
    idx: &[u64],
    probs_rows: impl Fn(usize, &mut Vec<f32>),
    reg: Option<&[f32]>,
    rule: &SignalRule,
    n_classes: usize,
    keep: impl Fn(u64) -> bool,
) -> (Vec<SignalPoint>, usize) {
    let mut buf = Vec::with_capacity(n_classes);
    let (mut out, mut dropped) = (Vec::with_capacity(idx.len()), 0);
    for (i, &e) in idx.iter().enumerate() {
        if !keep(e) {
            dropped += 1;
            continue;
        }
        buf.clear();
        probs_rows(i, &mut buf);
        let r = reg.map(|r| r[i]);
        let s = rule.decide(&buf, r);
        let (pu, pd) = rule
            .dir
            .map_or((f32::NAN, f32::NAN), |(u, d)| (buf.get(u).copied().unwrap_or(f32::NAN), buf.get(d).copied().unwrap_or(f32::NAN)));
        out.push(SignalPoint { event_index: e, available_at: 0, signal: s, p_up: pu, p_down: pd });
    }
    (out, dropped)
}

/// Event index where the training run's test split starts (its predictions file's first row).
fn test_start(model_dir: &Path) -> Result<u64> {
    let p = model_dir.join(PREDICTIONS_FILE);
    if !p.exists() {
        return Err(BacktestError::Config(format!(
            "{}: this dataset is the model's training data and the model directory has no {PREDICTIONS_FILE} to tell its test split; \
             use another dataset or set [signal] allow_in_sample = true",
            model_dir.display()
        )));
    }
    Ok(read_predictions(&p)?.event_index.first().copied().unwrap_or(u64::MAX))
}

/// Resolves one `*` in a path component to the last match in name order (run directories end in
/// a UTC timestamp, so that is the newest run): `runs/quickstart-*/lstm`.
pub fn resolve_latest(path: &Path) -> Result<std::path::PathBuf> {
    let s = path.to_string_lossy();
    let Some(star) = s.find('*') else { return Ok(path.to_path_buf()) };
    let dir_end = s[..star].rfind('/').map_or(0, |i| i + 1);
    let comp_end = s[star..].find('/').map_or(s.len(), |i| star + i);
    let (parent, pattern, rest) = (&s[..dir_end], &s[dir_end..comp_end], &s[comp_end..]);
    let (pre, post) = pattern.split_once('*').expect("has a star");
    let parent_dir = if parent.is_empty() { Path::new(".") } else { Path::new(parent) };
    let mut names: Vec<String> = std::fs::read_dir(parent_dir)
        .map_err(|e| BacktestError::io(parent_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(pre) && n.ends_with(post) && n.len() >= pre.len() + post.len())
        .filter(|n| Path::new(&format!("{parent}{n}{rest}")).exists())
        .collect();
    names.sort();
    match names.last() {
        Some(n) => Ok(std::path::PathBuf::from(format!("{parent}{n}{rest}"))),
        None => Err(BacktestError::Config(format!(
            "[signal] {}: no match (train the model first, e.g. `flowcast run experiments/<experiment>.toml`)",
            path.display()
        ))),
    }
}

pub fn load(spec: &SignalSpec, ds: &Dataset, until: Option<u64>) -> Result<Signals> {
    let hash = events_hash(ds);
    if let Some(dir) = &spec.model {
        let dir = &resolve_latest(dir)?;
        let card = ModelCard::load(dir)?;
        // Any family through the contract's Predictor, burn-free: the serving kernels for deep
        // models, the pure-Rust model.txt evaluator for lightgbm, frozen posteriors, ensembles.
        let pred = flowcast_serve::load_predictor(dir, &card)?;
        let mut card_rule = SignalRule::of_card(&card);
        if let Some(r) = &spec.rule {
            card_rule.config = r.clone();
        }
        let in_sample = card.training_data.events_sha256 == hash;
        let start = if in_sample && !spec.allow_in_sample { test_start(dir)? } else { 0 };
        let data = prepare_with(ds, &card.preprocessing.inputs, std::slice::from_ref(&card.preprocessing.target))?;
        let all = &data.targets[0].test;
        // Only the windows that can give a signal: ending at or after the in-sample guard's
        // start and before `until`.
        let event = |i: usize| data.rows.event_index[all.ends[i] as usize];
        let dropped = (0..all.len()).filter(|&i| event(i) < start).count();
        let live: Vec<usize> = (0..all.len()).filter(|&i| event(i) >= start && until.is_none_or(|t| event(i) < t)).collect();
        let set = &WindowSet {
            data: all.data.clone(),
            window: all.window,
            ends: live.iter().map(|&i| all.ends[i]).collect(),
            labels: live.iter().map(|&i| all.labels[i]).collect(),
            values: if all.values.is_empty() { Vec::new() } else { live.iter().map(|&i| all.values[i]).collect() },
        };
        let t0 = std::time::Instant::now();
        let out = predict_set(pred.as_ref(), set, &data.window_ofi, 256)?;
        let ns = t0.elapsed().as_nanos() as f64 / set.len().max(1) as f64;
        let idx: Vec<u64> = live.iter().map(|&i| event(i)).collect();
        let k = out.classes;
        let reg = (!out.regression.is_empty()).then_some(&out.regression[..]);
        let (points, _) = points(&idx, |i, b| b.extend_from_slice(&out.probs[i * k..(i + 1) * k]), reg, &card_rule, k, |_| true);
        return Ok(Signals {
            points,
            source: format!("model {} ({})", card.model_id, dir.display()),
            compute_ns_per_window: Some(ns),
            dropped_in_sample: dropped,
            windows_predicted: set.len(),
            rule: card_rule.config,
        });
    }
    let path = &resolve_latest(spec.predictions.as_ref().expect("validated: model or predictions"))?;
    let PredictionColumns { event_index: idx, classes, probs, regression: reg } = read_predictions(path)?;
    // The card beside the predictions (a run's model directory) gives the rule and α.
    let card = path.parent().and_then(|d| ModelCard::load(d).ok());
    let mut rule = match &card {
        Some(c) => SignalRule::of_card(c),
        None => SignalRule::new(SignalConfig::default(), &classes, 0.0),
    };
    if let Some(r) = &spec.rule {
        rule.config = r.clone();
    }
    if let Some(c) = &card {
        if c.classes != classes {
            return Err(BacktestError::file(
                path,
                format!("probability columns {classes:?} differ from the card's classes {:?}", c.classes),
            ));
        }
    }
    if let Some(&last) = idx.last() {
        if last as usize >= ds.events.len() {
            return Err(BacktestError::file(
                path,
                format!("event_index {last} is beyond the dataset's {} events: predictions of another dataset?", ds.events.len()),
            ));
        }
    }
    let k = classes.len();
    let (points, dropped) = points(&idx, |i, b| b.extend(probs.iter().map(|c| c[i])), reg.as_deref(), &rule, k, |_| true);
    Ok(Signals {
        points,
        source: format!("predictions {}", path.display()),
        compute_ns_per_window: None,
        dropped_in_sample: dropped,
        windows_predicted: 0,
        rule: rule.config,
    })
}
