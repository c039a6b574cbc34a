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
//!                     checkpoints/{last,best}/ (model.bpk, optimizer.bpk, state.json);
//!                     lightgbm models: model.txt, model.json, predictions.parquet,
//!                     importance.json, shap.parquet (crate::lightgbm);
//!                     bayes_online models: bayes_state.json, model.json, predictions.parquet,
//!                     predictions_prequential.parquet (crate::bayes);
//!                     deep and bayes_online models: importance.json (permutation, crate::explain);
//!                     every model: reliability.svg (crate::reliability)
//! ```

use crate::batch::BurnPredictor;
use crate::config::Experiment;
use crate::error::{Result, TrainError};
use crate::progress::Mode;
use crate::trainer::EpochObserver;
use burn::prelude::Device;
use flowcast_contract::baselines::{self, Baseline};
use flowcast_contract::card::ModelCard;
use flowcast_contract::eval::{evaluate_with, summary, target_json, EVAL_CHUNK};
use flowcast_contract::metrics::Metrics;
use flowcast_contract::predictor::{predict_set, Predictor};
use flowcast_contract::prepare::{prepare, PrepareSpec, PreparedData};
use flowcast_datasets::store::Dataset;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub use flowcast_contract::eval::Summary;

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

/// Load the experiment's events (`[data]`, the generator seeded by the experiment's seed).
pub fn load_data(exp: &Experiment) -> Result<Dataset> {
    Ok(exp.data.load(exp.seed)?)
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
    flowcast_datasets::time::now_stamp()
}

pub(crate) use crate::error::write_json;

pub fn device_of(spec: &str) -> Result<Device> {
    let d = flowcast_models::device::DeviceSpec::parse(spec).map_err(TrainError::Invalid)?;
    d.device().map_err(TrainError::Invalid)
}

pub use crate::model::candle_predictor;

/// The run's id of model `spec` trained for target `tid`: the model id alone when the
/// experiment has one target, else `<model id>_<target id>`.
pub fn run_model_id(exp: &Experiment, spec: &crate::config::ModelSpec, tid: &str) -> String {
    if exp.targets.len() == 1 {
        spec.id().to_string()
    } else {
        format!("{}_{tid}", spec.id())
    }
}

/// A target's baselines: fitted, their headline test metrics and their full test metrics.
struct TargetBaselines {
    fitted: Vec<Baseline>,
    headline: serde_json::Map<String, Value>,
    full: serde_json::Map<String, Value>,
}

/// Fits the experiment's baselines for target `t` and scores them on its test windows.
fn fit_baselines(exp: &Experiment, data: &PreparedData, t: usize) -> Result<TargetBaselines> {
    let pt = &data.targets[t];
    let k = pt.def.n_classes();
    // The logistic floor uses the same class weights as the deep models.
    let cw = crate::trainer::class_weights(&exp.training.class_weights, &pt.train, k)?;
    let (mut fitted, mut head, mut full) = (Vec::new(), serde_json::Map::new(), serde_json::Map::new());
    for name in &exp.baselines {
        let b = baselines::fit(name, &pt.train, &data.window_ofi, k, cw.as_deref())?;
        let p = b.predictor(&pt.def.classes, pt.test.window, data.n_features());
        let o = predict_set(&p, &pt.test, &data.window_ofi, EVAL_CHUNK)?;
        let m = Metrics::compute(&pt.test.targets(), &o.probs, k);
        head.insert(name.clone(), m.headline());
        full.insert(name.clone(), serde_json::to_value(&m).expect("json"));
        fitted.push(b);
    }
    Ok(TargetBaselines { fitted, headline: head, full })
}

/// Train every model of the experiment for each of its targets, evaluate on the test split,
/// export. Returns the summary.
pub fn run_experiment(exp: &Experiment, exp_text: &str, opts: &RunOptions) -> Result<Summary> {
    let t0 = std::time::Instant::now();
    let data = prepare_experiment(exp, &load_data(exp)?)?;
    run_prepared(exp, exp_text, opts, &data, t0.elapsed().as_secs_f64(), None)
}

/// The experiment's windows from its loaded events (what [`run_prepared`] trains on).
pub fn prepare_experiment(exp: &Experiment, ds: &Dataset) -> Result<PreparedData> {
    let spec = PrepareSpec { columns: &exp.columns, targets: &exp.targets, splits: &exp.splits, normalization: &exp.normalization };
    Ok(prepare(ds, spec)?)
}

/// [`run_experiment`] on data prepared already (a sweep shares one preparation between the
/// trials with the same preprocessing); `prep_s` is recorded as the preparation time, and
/// `observer` sees every epoch of every model.
pub fn run_prepared(
    exp: &Experiment,
    exp_text: &str,
    opts: &RunOptions,
    data: &PreparedData,
    prep_s: f64,
    observer: Option<&dyn EpochObserver>,
) -> Result<Summary> {
    let device_name = opts.device.clone().unwrap_or_else(|| exp.device.clone());
    let device = device_of(&device_name)?;
    if !cfg!(feature = "lightgbm") {
        if exp.models.iter().any(|m| m.uses(crate::config::LIGHTGBM)) {
            return Err(crate::lightgbm::not_built());
        }
        if let Some(m) =
            exp.models.iter().find(|m| m.name == crate::config::ENSEMBLE && m.params.get("meta").is_some_and(|v| v == "lightgbm"))
        {
            return Err(crate::lightgbm::meta_not_built(m.id()));
        }
    }
    if let Some(want) = &opts.expect_events_sha256 {
        if &data.info.events_sha256 != want {
            return Err(TrainError::Invalid(format!(
                "the data changed: its events hash to {} but the run recorded {want} (source files: {})",
                data.info.events_sha256,
                data.info.source_files.iter().map(|f| f.path.clone()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    for pt in &data.targets {
        for (name, set) in [("training", &pt.train), ("test", &pt.test)] {
            if set.is_empty() {
                return Err(TrainError::Invalid(format!(
                    "target {}: no {name} windows: more data or a shorter window/horizon is needed",
                    pt.def.id
                )));
            }
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
    let target_info: Vec<Value> = data
        .targets
        .iter()
        .map(|pt| {
            let k = pt.def.n_classes();
            json!({"target": pt.def,
                   "windows": {"train": pt.train.len(), "validation": pt.validation.len(), "test": pt.test.len()},
                   "class_counts": {"train": pt.train.class_counts(k), "validation": pt.validation.class_counts(k), "test": pt.test.class_counts(k)}})
        })
        .collect();
    write_json(
        &run_dir.join("run.json"),
        &json!({
            "flowcast_version": env!("CARGO_PKG_VERSION"),
            "git_revision": git_revision(&run_dir),
            "created": timestamp(),
            "device": device_name,
            "data": data.info,
            "splits": data.splits,
            "targets": target_info,
            "columns": data.inputs.names,
            "memory": data.memory,
            "prepare_seconds": prep_s,
        }),
    )?;

    let mut models = serde_json::Map::new();
    let mut full = serde_json::Map::new();
    let mut agreement = serde_json::Map::new();
    let mut targets_json = serde_json::Map::new();
    let mut targets_full = serde_json::Map::new();
    for (ti, pt) in data.targets.iter().enumerate() {
        let tid = pt.def.id.clone();
        let TargetBaselines { fitted, headline: bhead, full: bfull } = fit_baselines(exp, data, ti)?;
        targets_json.insert(tid.clone(), target_json(data, ti, &bhead));
        targets_full.insert(tid.clone(), json!({"target": pt.def, "baselines": bfull, "fitted": fitted}));
        let data_key = format!("{}:{}:{:?}:{}", data.info.events_sha256, data.inputs.window, data.inputs.names, tid);
        let ctx = crate::model::ModelCtx {
            exp,
            device: device.clone(),
            device_name: device_name.clone(),
            resume: opts.resume.is_some(),
            stop_after: opts.stop_after,
            progress: opts.progress,
            verify_export: opts.verify_export,
            observer,
            baselines: &fitted,
            baseline_headline: &bhead,
            data_key: data_key.clone(),
        };
        for spec in exp.models.iter().filter(|m| m.targets.as_ref().is_none_or(|ts| ts.contains(&tid))) {
            let id = run_model_id(exp, spec, &tid);
            let dir = run_dir.join(&id);
            let t = if spec.name == crate::config::ENSEMBLE {
                crate::ensemble::train_and_export(&ctx, spec, &id, &dir, ti, data)?
            } else {
                crate::model::train_model(&ctx, spec, &id, &dir, ti, data)?
            };
            if let Some(a) = t.agreement {
                agreement.insert(id.clone(), a);
            }
            for (mid, h) in t.extra {
                models.insert(mid, h);
            }
            models.insert(id.clone(), t.headline);
            full.insert(id, t.full);
        }
    }
    // A reliability diagram per model (batch test; and prequential where the model has one).
    for (id, v) in &full {
        let mut series = Vec::new();
        if let Some(b) = crate::reliability::bins_of(&v["test"]["reliability"]) {
            series.push(("test", b));
        }
        if let Some(b) = crate::reliability::bins_of(&v["prequential"]["test"]["reliability"]) {
            series.push(("test, prequential", b));
        }
        if !series.is_empty() {
            crate::reliability::write_svg(&run_dir.join(id).join("reliability.svg"), &format!("{id}: reliability"), &series)?;
        }
    }
    let first = targets_full.values().next().cloned().unwrap_or(Value::Null);
    let metrics = json!({
        "classes": data.targets[0].def.classes,
        "models": full,
        "baselines": {"majority": first["baselines"]["majority"], "ofi_logistic": first["baselines"]["ofi_logistic"], "fitted": first["fitted"]},
        "targets": targets_full,
    });
    write_json(&run_dir.join("metrics.json"), &metrics)?;
    let mut s = summary(&run_dir, None, &models, &targets_json, data);
    if opts.verify_export {
        s.json["agreement"] = Value::Object(agreement);
    }
    Ok(s)
}

/// Which forward pass evaluates the exported model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// burn (flowcast-models), on the chosen device.
    Burn,
    /// candle (flowcast-serve), CPU, no burn.
    Candle,
}

/// Evaluate every model of a run on another dataset with the stored preprocessing, through the
/// contract's `Predictor` (`flowcast eval` = burn, `flowcast predict` = candle).
/// `out`: write each model's predictions to `<out>/<model id>.parquet`.
pub fn evaluate(run: &Path, data_dir: &Path, engine: Engine, device: &Device, out: Option<&Path>) -> Result<Summary> {
    Ok(match engine {
        Engine::Burn => {
            let load = |dir: &Path, card: &ModelCard| -> flowcast_contract::Result<Box<dyn Predictor>> {
                let p = BurnPredictor::load(dir, card, device).map_err(|e| flowcast_contract::ContractError::Invalid(e.to_string()))?;
                Ok(Box::new(p))
            };
            evaluate_with(run, data_dir, "burn", &load, out)?
        }
        Engine::Candle => evaluate_with(run, data_dir, "candle", &candle_predictor, out)?,
    })
}
