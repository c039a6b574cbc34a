//! Run directories: `flowcast train|run` (train → test → export), `eval` (another dataset with
//! the stored preprocessing, burn) and `predict` (the serve crate's candle forward, no burn).
//!
//! ```text
//! runs/<name>-<UTC timestamp>/
//!   experiment.toml   the experiment as written       config.json   resolved (every default)
//!   run.json          flowcast version, git revision, data hashes, splits, windows, memory
//!   metrics.json      test metrics of every model and both baselines, training histories
//!   <model id>/       model.safetensors, model_config.json, model.json (card),
//!                     predictions.parquet, tensorboard/events.out.tfevents.*,
//!                     checkpoints/{last,best}/ (model.bpk, optimizer.bpk, state.json)
//! ```

use crate::baselines::Baselines;
use crate::card::{safetensors_header, sha256_file, ModelCard, TrainingEntry, WeightsEntry, CARD_FORMAT, CARD_VERSION};
use crate::config::Experiment;
use crate::data::{prepare, prepare_with, PreparedData, CLASSES};
use crate::error::{Result, TrainError};
use crate::metrics::{argmax, Metrics};
use crate::progress::Mode;
use crate::tensorboard::EventWriter;
use crate::trainer::{predict, targets, train, TrainJob};
use crate::window::{WindowBatcher, WindowSet};
use arrow_array::{ArrayRef, Float32Array, RecordBatch, TimestampNanosecondArray, UInt64Array, UInt8Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use burn::prelude::Device;
use flowcast_datasets::store::{read_dataset, Dataset};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to run an experiment.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Continue the run in this directory from its checkpoints instead of starting a new one.
    pub resume: Option<PathBuf>,
    pub progress: Mode,
    /// Stop each model after this many epochs in this call (0 = train to the end).
    pub stop_after: usize,
    /// Override the experiment's device.
    pub device: Option<String>,
    /// Override the experiment's runs_dir.
    pub runs_dir: Option<PathBuf>,
    /// After export, reload each model through the serve crate's candle forward pass and
    /// compare its test probabilities with burn's (`flowcast run`).
    pub verify_export: bool,
    /// Refuse to train unless the loaded events hash to this (`flowcast reproduce`).
    pub expect_events_sha256: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            resume: None,
            progress: Mode::auto(),
            stop_after: 0,
            device: None,
            runs_dir: None,
            verify_export: false,
            expect_events_sha256: None,
        }
    }
}

/// The outcome of a command: what `--json` prints and the table renders.
#[derive(Clone, Debug)]
pub struct Summary {
    pub json: Value,
}

impl Summary {
    /// The summary table: one row per model and baseline.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if let Some(d) = self.json["run_dir"].as_str() {
            s.push_str(&format!("run        {d}\n"));
        }
        if let Some(d) = self.json["data"].as_str() {
            s.push_str(&format!("data       {d}\n"));
        }
        let w = &self.json["windows"];
        if w.is_object() {
            s.push_str(&format!("windows    train {} · validation {} · test {}\n", w["train"], w["validation"], w["test"]));
        }
        s.push_str(&format!(
            "\n{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "model (test split)", "samples", "accuracy", "macro-F1", "MCC", "kappa", "ROC-AUC", "PR-AUC"
        ));
        let row = |name: &str, m: &Value| {
            let f = |k: &str| m[k].as_f64().map(|v| format!("{v:.4}")).unwrap_or("-".into());
            format!(
                "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                name,
                m["samples"],
                f("accuracy"),
                f("macro_f1"),
                f("mcc"),
                f("cohen_kappa"),
                f("roc_auc_macro"),
                f("pr_auc_macro")
            )
        };
        if let Some(ms) = self.json["models"].as_object() {
            for (id, m) in ms {
                s.push_str(&row(id, m));
            }
        }
        for b in ["majority", "ofi_logistic"] {
            if self.json["baselines"][b].is_object() {
                s.push_str(&row(&format!("baseline: {b}"), &self.json["baselines"][b]));
            }
        }
        if let Some(ag) = self.json["agreement"].as_object() {
            for (id, a) in ag {
                s.push_str(&format!("\n{id}: {a}\n"));
            }
        }
        s
    }
}

/// Load the experiment's events.
pub fn load_data(exp: &Experiment) -> Result<Dataset> {
    let d = &exp.data;
    if let Some(s) = &d.synthetic {
        return Ok(flowcast_datasets::synth::synth_dataset(s.levels, s.events, s.seed.unwrap_or(exp.seed))?);
    }
    if let Some(dir) = &d.dataset {
        return Ok(read_dataset(dir)?);
    }
    let imp = d.import.as_ref().expect("validated: one data source");
    let opts = flowcast_datasets::loaders::ImportOptions {
        lenient: imp.lenient,
        levels: imp.levels,
        tick_size: imp.tick_size.clone(),
        size_scale: imp.size_scale,
        symbol: imp.symbol.clone(),
        date: imp.date.clone(),
    };
    let fmt = flowcast_datasets::loaders::Format::parse(&imp.format)?;
    let mut imported = flowcast_datasets::loaders::import(fmt, &imp.inputs, &opts)?;
    match imported.datasets.len() {
        1 => Ok(imported.datasets.remove(0)),
        0 => Err(TrainError::Invalid(format!("[data.import] built no dataset from {:?}", imp.inputs))),
        n => Err(TrainError::Invalid(format!("[data.import] built {n} datasets (several instruments): set `symbol`"))),
    }
}

/// `git rev-parse HEAD` of the checkout holding `dir` (the run directory: `runs/` sits in the
/// checkout by default), else of the working directory, with `-dirty` when it has changes;
/// "unknown" outside any checkout.
pub fn git_revision(dir: &Path) -> String {
    match git_revision_in(Some(dir)) {
        r if r == "unknown" => git_revision_in(None),
        r => r,
    }
}

fn git_revision_in(dir: Option<&Path>) -> String {
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new("git");
        if let Some(d) = dir {
            c.arg("-C").arg(d);
        }
        c.args(args).output().ok().filter(|o| o.status.success())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(o) => {
            let rev = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|o| !o.stdout.is_empty());
            if dirty {
                format!("{rev}-dirty")
            } else {
                rev
            }
        }
        None => "unknown".into(),
    }
}

/// `YYYYmmddTHHMMSSZ` of now.
pub fn timestamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (y, m, d) = flowcast_datasets::time::civil_from_days(now.div_euclid(86_400));
    let s = now.rem_euclid(86_400);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json") + "\n").map_err(|e| TrainError::io(path, e))
}

pub fn device_of(spec: &str) -> Result<Device> {
    let d = flowcast_models::device::DeviceSpec::parse(spec).map_err(TrainError::Invalid)?;
    d.device().map_err(TrainError::Invalid)
}

/// `predictions.parquet`: one row per test window.
pub fn write_predictions(path: &Path, set: &WindowSet, data: &PreparedData, probs: &[f32], k: usize) -> Result<()> {
    let mut fields = vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("event_index", DataType::UInt64, false),
        Field::new("ts_exchange", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("label", DataType::UInt8, false),
        Field::new("pred", DataType::UInt8, false),
    ];
    for c in CLASSES.iter().take(k) {
        fields.push(Field::new(format!("p_{c}"), DataType::Float32, false));
    }
    let schema = Arc::new(Schema::new(fields));
    let ends = &set.ends;
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(ends.iter().map(|&e| e as u64))),
        Arc::new(UInt64Array::from_iter_values(ends.iter().map(|&e| data.rows.event_index[e as usize]))),
        Arc::new(TimestampNanosecondArray::from_iter_values(ends.iter().map(|&e| data.rows.ts[e as usize])).with_timezone("UTC")),
        Arc::new(UInt8Array::from(set.labels.clone())),
        Arc::new(UInt8Array::from_iter_values(probs.chunks(k).map(|r| argmax(r) as u8))),
    ];
    for c in 0..k {
        cols.push(Arc::new(Float32Array::from_iter_values(probs.chunks(k).map(|r| r[c]))));
    }
    let perr = |e: &dyn std::fmt::Display| TrainError::card(path, "parquet", e.to_string());
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| perr(&e))?;
    let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).map_err(|e| perr(&e))?;
    w.write(&batch).map_err(|e| perr(&e))?;
    w.close().map_err(|e| perr(&e))?;
    Ok(())
}

fn headline(m: &Metrics) -> Value {
    m.headline()
}

/// Train every model of the experiment, evaluate on the test split, export. Returns the summary.
pub fn run_experiment(exp: &Experiment, exp_text: &str, opts: &RunOptions) -> Result<Summary> {
    let device_name = opts.device.clone().unwrap_or_else(|| exp.device.clone());
    let device = device_of(&device_name)?;
    let t0 = std::time::Instant::now();
    let ds = load_data(exp)?;
    let data = prepare(&ds, exp)?;
    drop(ds);
    if let Some(want) = &opts.expect_events_sha256 {
        if &data.info.events_sha256 != want {
            return Err(TrainError::Invalid(format!(
                "the data changed: its events hash to {} but the run recorded {want} (source files: {})",
                data.info.events_sha256,
                data.info.source_files.iter().map(|f| f.path.clone()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let prep_s = t0.elapsed().as_secs_f64();
    let k = data.n_classes();
    for (name, set) in [("training", &data.train), ("test", &data.test)] {
        if set.is_empty() {
            return Err(TrainError::Invalid(format!("no {name} windows: more data or a shorter window/horizon is needed")));
        }
    }
    let run_dir = match &opts.resume {
        Some(d) => d.clone(),
        None => {
            let base = opts.runs_dir.clone().unwrap_or_else(|| exp.runs_dir.clone());
            let mut d = base.join(format!("{}-{}", exp.name, timestamp()));
            let mut n = 1;
            while d.exists() {
                n += 1;
                d = base.join(format!("{}-{}-{n}", exp.name, timestamp()));
            }
            d
        }
    };
    std::fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
    let exp_path = run_dir.join("experiment.toml");
    if opts.resume.is_some() && exp_path.exists() {
        let old = std::fs::read_to_string(&exp_path).map_err(|e| TrainError::io(&exp_path, e))?;
        if Experiment::from_toml(&old, &exp_path.display().to_string())? != Experiment::from_toml(exp_text, "experiment")? {
            return Err(TrainError::Invalid(format!("{} holds a different experiment; resume needs the same file", run_dir.display())));
        }
    }
    std::fs::write(&exp_path, exp_text).map_err(|e| TrainError::io(&exp_path, e))?;
    write_json(&run_dir.join("config.json"), exp)?;
    let windows = json!({"train": data.train.len(), "validation": data.validation.len(), "test": data.test.len()});
    let class_counts = json!({
        "train": data.train.class_counts(k), "validation": data.validation.class_counts(k), "test": data.test.class_counts(k)});
    write_json(
        &run_dir.join("run.json"),
        &json!({
            "flowcast_version": env!("CARGO_PKG_VERSION"),
            "git_revision": git_revision(&run_dir),
            "created": timestamp(),
            "device": device_name,
            "data": data.info,
            "splits": data.splits,
            "windows": windows,
            "class_counts": class_counts,
            "classes": CLASSES,
            "label": data.prep.label,
            "columns": data.prep.names,
            "memory": data.memory,
            "prepare_seconds": prep_s,
        }),
    )?;

    // The logistic floor uses the same class weights as the deep models.
    let cw = crate::trainer::class_weights(&exp.training.class_weights, &data.train, k)?;
    let baselines = Baselines::fit(&data.train, &data.window_ofi, k, cw.as_deref());
    let (maj, ofi) = baselines.evaluate(&data.test, &data.window_ofi, k);
    let baselines_json = json!({"majority": headline(&maj), "ofi_logistic": headline(&ofi)});
    let data_key = format!("{}:{}:{:?}", data.info.events_sha256, data.prep.window, data.prep.names);

    let mut models = serde_json::Map::new();
    let mut full = serde_json::Map::new();
    let mut agreement = serde_json::Map::new();
    for spec in &exp.models {
        let dir = run_dir.join(spec.id());
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let job = TrainJob {
            spec,
            training: &exp.training,
            seed: exp.seed,
            device: device.clone(),
            dir: dir.clone(),
            resume: opts.resume.is_some(),
            stop_after: opts.stop_after,
            progress: opts.progress,
            data_key: data_key.clone(),
        };
        let trained = {
            let mut tb = EventWriter::create(&dir.join("tensorboard")).map_err(|e| TrainError::io(&dir.join("tensorboard"), e))?;
            train(&job, &data.train, &data.validation, k, Some(&mut tb))?
            // `tb` dropped here: its events are on disk before anyone reads them.
        };
        let probs = predict(&trained.model, &data.test, 512, &device);
        let m = Metrics::compute(&targets(&data.test), &probs, k);
        flowcast_models::export::save(&trained.model, &trained.config, &dir)?;
        write_predictions(&dir.join("predictions.parquet"), &data.test, &data, &probs, k)?;
        let weights = dir.join(flowcast_models::export::WEIGHTS_FILE);
        let test_metrics = json!({"test": headline(&m), "baselines": baselines_json});
        let card = ModelCard {
            format: CARD_FORMAT.into(),
            version: CARD_VERSION,
            flowcast_version: env!("CARGO_PKG_VERSION").into(),
            experiment: exp.name.clone(),
            model_id: spec.id().into(),
            model: flowcast_models::export::config_document(&trained.config),
            params: trained.params,
            weights: WeightsEntry {
                file: flowcast_models::export::WEIGHTS_FILE.into(),
                sha256: sha256_file(&weights)?,
                tensors: safetensors_header(&weights)?,
            },
            preprocessing: data.prep.clone(),
            classes: CLASSES.iter().map(|s| s.to_string()).collect(),
            training_data: data.info.clone(),
            training: TrainingEntry {
                seed: exp.seed,
                spec: serde_json::to_value(&exp.training).expect("json"),
                epochs_run: trained.state.completed_epochs,
                best_epoch: trained.state.best_epoch.unwrap_or(0),
                stopped_early: trained.state.stopped_early,
                class_weights: trained.class_weights.clone(),
                train_windows: data.train.len(),
                validation_windows: data.validation.len(),
                device: device_name.clone(),
            },
            baselines: baselines.clone(),
            metrics: test_metrics,
        };
        card.save(&dir)?;
        ModelCard::load(&dir)?; // what we wrote must pass our own validation
        let mut h = headline(&m);
        h["params"] = json!(trained.params);
        h["best_epoch"] = json!(trained.state.best_epoch);
        h["epochs_run"] = json!(trained.state.completed_epochs);
        h["train_samples_per_s"] = json!(trained.state.history.last().map(|r| r.samples_per_s));
        if opts.verify_export {
            let cp = predict_candle(&dir, &data.test, 256)?;
            let max_diff = probs.iter().zip(&cp).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let same = probs.chunks(k).zip(cp.chunks(k)).filter(|(a, b)| argmax(a) == argmax(b)).count();
            agreement.insert(
                spec.id().into(),
                json!({"engine": "candle (flowcast-serve)", "max_abs_prob_diff": max_diff,
                       "argmax_agreement": same as f64 / data.test.len().max(1) as f64, "windows": data.test.len()}),
            );
        }
        models.insert(spec.id().into(), h);
        full.insert(spec.id().into(), json!({"test": m, "history": trained.state.history, "params": trained.params}));
    }
    let metrics = json!({
        "classes": CLASSES,
        "models": full,
        "baselines": {"majority": maj, "ofi_logistic": ofi, "fitted": baselines},
    });
    write_json(&run_dir.join("metrics.json"), &metrics)?;
    let mut s = summary(&run_dir, None, &models, baselines_json, windows, &data);
    if opts.verify_export {
        s.json["agreement"] = Value::Object(agreement);
    }
    Ok(s)
}

fn summary(run_dir: &Path, data_dir: Option<&Path>, models: &serde_json::Map<String, Value>, baselines: Value, windows: Value, data: &PreparedData) -> Summary {
    let (first_id, first) = models.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap_or_default();
    let mut j = json!({
        "ok": true,
        "run_dir": run_dir.display().to_string(),
        "model": first_id,
        "accuracy": first["accuracy"],
        "macro_f1": first["macro_f1"],
        "mcc": first["mcc"],
        "models": models,
        "baselines": baselines,
        "windows": windows,
        "memory": data.memory,
        "data_sha256": data.info.events_sha256,
    });
    if let Some(d) = data_dir {
        j["data"] = json!(d.display().to_string());
    }
    Summary { json: j }
}

/// Model directories of a run (or the directory itself when it holds a model card).
pub fn model_dirs(run: &Path) -> Result<Vec<PathBuf>> {
    if run.join(crate::card::CARD_FILE).exists() {
        return Ok(vec![run.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(run)
        .map_err(|e| TrainError::io(run, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(crate::card::CARD_FILE).exists())
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(TrainError::Invalid(format!("{}: no model.json in it or its sub-directories", run.display())));
    }
    // Keep the experiment's model order when metrics.json lists it.
    if let Ok(s) = std::fs::read_to_string(run.join("config.json")) {
        if let Ok(e) = serde_json::from_str::<Experiment>(&s) {
            let pos = |p: &PathBuf| e.models.iter().position(|m| Some(m.id()) == p.file_name().and_then(|n| n.to_str())).unwrap_or(usize::MAX);
            v.sort_by_key(pos);
        }
    }
    Ok(v)
}

/// Which forward pass evaluates the exported model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// burn (flowcast-models), on the chosen device.
    Burn,
    /// candle (flowcast-serve), CPU, no burn.
    Candle,
}

/// Class probabilities of `set` from the candle twin of the exported model in `dir`.
pub fn predict_candle(dir: &Path, set: &WindowSet, batch: usize) -> Result<Vec<f32>> {
    let m = flowcast_serve::Model::load_dir(dir).map_err(|e| TrainError::Invalid(format!("{}: {e}", dir.display())))?;
    let f = set.data.cols();
    let b = WindowBatcher { window: set.window, features: f };
    let k = m.spec().n_classes();
    let mut out = Vec::with_capacity(set.len() * k);
    let mut buf = Vec::new();
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        b.fill(&set.items(chunk), &mut buf);
        let logits = m.logits(&buf, chunk.len(), set.window).map_err(|e| TrainError::Invalid(format!("{}: {e}", dir.display())))?;
        for row in logits.chunks(k) {
            let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = row.iter().map(|v| (v - mx).exp()).sum();
            out.extend(row.iter().map(|v| (v - mx).exp() / s));
        }
    }
    Ok(out)
}

/// Evaluate every model of a run on another dataset with the stored preprocessing.
/// `out`: write each model's predictions to `<out>/<model id>.parquet`.
pub fn evaluate(run: &Path, data_dir: &Path, engine: Engine, device: &Device, out: Option<&Path>) -> Result<Summary> {
    let dirs = model_dirs(run)?;
    let ds = read_dataset(data_dir)?;
    let mut models = serde_json::Map::new();
    let mut baselines_json = Value::Null;
    let mut prepared: Option<(crate::data::Preprocessing, PreparedData)> = None;
    let mut windows = Value::Null;
    for dir in &dirs {
        let card = ModelCard::load(dir)?;
        // Models of one run share preprocessing: prepare once.
        if prepared.as_ref().is_none_or(|(p, _)| *p != card.preprocessing) {
            prepared = Some((card.preprocessing.clone(), prepare_with(&ds, &card.preprocessing)?));
        }
        let data = &prepared.as_ref().expect("prepared").1;
        let k = card.classes.len();
        let probs = match engine {
            Engine::Burn => {
                let (model, _) = flowcast_models::export::load(dir, device)?;
                predict(&model, &data.test, 512, device)
            }
            Engine::Candle => predict_candle(dir, &data.test, 256)?,
        };
        let m = Metrics::compute(&targets(&data.test), &probs, k);
        let (maj, ofi) = card.baselines.evaluate(&data.test, &data.window_ofi, k);
        baselines_json = json!({"majority": headline(&maj), "ofi_logistic": headline(&ofi)});
        if let Some(o) = out {
            std::fs::create_dir_all(o).map_err(|e| TrainError::io(o, e))?;
            write_predictions(&o.join(format!("{}.parquet", card.model_id)), &data.test, data, &probs, k)?;
        }
        windows = json!({"train": 0, "validation": 0, "test": data.test.len()});
        models.insert(card.model_id.clone(), headline(&m));
    }
    let data = &prepared.expect("at least one model").1;
    let mut s = summary(run, Some(data_dir), &models, baselines_json, windows, data);
    s.json["engine"] = json!(match engine {
        Engine::Burn => "burn",
        Engine::Candle => "candle",
    });
    Ok(s)
}
