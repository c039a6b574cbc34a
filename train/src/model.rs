//! One model of a run, any non-ensemble family: train on a target's training windows, test on
//! its test windows, export into a model directory (the run loop and the ensemble's members
//! both come here). Families are dispatched by registry name: `lightgbm` (crate::lightgbm) or a
//! deep architecture (crate::trainer).

use crate::batch::BurnPredictor;
use crate::config::Experiment;
use crate::error::{Result, TrainError};
use crate::progress::Mode;
use crate::tensorboard::EventWriter;
use crate::trainer::{train, EpochObserver, TrainJob};
use burn::prelude::Device;
use flowcast_contract::baselines::Baseline;
use flowcast_contract::card::{safetensors_header, sha256_file, ModelCard, TrainingEntry, WeightsEntry};
use flowcast_contract::files::{CARD_FORMAT, CARD_VERSION, PREDICTIONS_FILE, WEIGHTS_FILE};
use flowcast_contract::metrics::{argmax, Metrics};
use flowcast_contract::predictions::write_predictions;
use flowcast_contract::predictor::{predict_set, Predictor};
use flowcast_contract::prepare::PreparedData;
use flowcast_contract::target::OutputKind;
use serde_json::{json, Value};
use std::path::Path;

/// The candle twin of the exported model in `dir` (flowcast-serve, no burn) as a predictor.
pub fn candle_predictor(dir: &Path, card: &ModelCard) -> flowcast_contract::Result<Box<dyn Predictor>> {
    let m =
        flowcast_serve::Model::load_dir(dir).map_err(|e| flowcast_contract::ContractError::Invalid(format!("{}: {e}", dir.display())))?;
    Ok(Box::new(flowcast_serve::CandlePredictor::new(m, card)))
}

/// What one model of a run needs besides its spec and data: the experiment, the device, the
/// run options that reach training, and its target's fitted baselines.
pub(crate) struct ModelCtx<'a> {
    pub exp: &'a Experiment,
    pub device: Device,
    pub device_name: String,
    pub resume: bool,
    pub stop_after: usize,
    pub progress: Mode,
    pub verify_export: bool,
    pub observer: Option<&'a dyn EpochObserver>,
    pub baselines: &'a [Baseline],
    pub baseline_headline: &'a serde_json::Map<String, Value>,
    pub data_key: String,
}

/// One trained and exported model: its summary headline, its metrics.json entry, its
/// export check, and extra summary rows (an ensemble's members).
pub(crate) struct ModelOut {
    pub headline: Value,
    pub full: Value,
    pub agreement: Option<Value>,
    pub extra: Vec<(String, Value)>,
}

/// Trains model `spec` for target `ti` of `data`, tests it on that target's test windows and
/// exports it into `dir` (any non-ensemble family: the ensemble trains its members here).
pub(crate) fn train_model(
    ctx: &ModelCtx<'_>,
    spec: &crate::config::ModelSpec,
    id: &str,
    dir: &Path,
    ti: usize,
    data: &PreparedData,
) -> Result<ModelOut> {
    let exp = ctx.exp;
    let pt = &data.targets[ti];
    let tid = pt.def.id.clone();
    let k = pt.def.n_classes();
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    // The row models (CPU, no burn) share one job description.
    let row_job = || crate::lightgbm::Job {
        exp,
        spec,
        id,
        dir,
        target: ti,
        baselines: ctx.baselines,
        baseline_headline: ctx.baseline_headline,
        device: "cpu",
    };
    if spec.name == crate::config::LIGHTGBM {
        let t = crate::lightgbm::train_and_export(&row_job(), data)?;
        let agreement = ctx.verify_export.then(|| {
            json!({"engine": "flowcast_contract::gbdt (pure Rust) vs LightGBM C++",
            "max_abs_diff": t.full["evaluator"]["max_abs_diff_vs_lightgbm"], "windows": pt.test.len()})
        });
        return Ok(ModelOut { headline: t.headline, full: t.full, agreement, extra: Vec::new() });
    }
    if spec.name == crate::config::BAYES_ONLINE {
        let t = crate::bayes::train_and_export(&row_job(), data)?;
        return Ok(ModelOut { headline: t.headline, full: t.full, agreement: None, extra: Vec::new() });
    }
    if pt.def.output != OutputKind::Direction {
        return Err(TrainError::Invalid(format!(
            "[[model]] {}: target {tid} is a regression target; the deep models predict direction classes (name targets = [...] on the model)",
            spec.id()
        )));
    }
    let (device, device_name) = (&ctx.device, &ctx.device_name);
    let job = TrainJob {
        spec,
        id,
        training: &exp.training,
        seed: exp.seed,
        device: device.clone(),
        dir: dir.to_path_buf(),
        resume: ctx.resume,
        stop_after: ctx.stop_after,
        progress: ctx.progress,
        data_key: ctx.data_key.clone(),
        observer: ctx.observer,
    };
    let trained = {
        let mut tb = EventWriter::create(&dir.join("tensorboard")).map_err(|e| TrainError::io(&dir.join("tensorboard"), e))?;
        train(&job, &pt.train, &pt.validation, k, Some(&mut tb))?
        // `tb` dropped here: its events are on disk before anyone reads them.
    };
    let arch = trained.config.architecture().name();
    let bp = BurnPredictor::new(&trained.model, device, arch, &pt.def.classes, pt.test.window, data.n_features());
    let out = predict_set(&bp, &pt.test, &data.window_ofi, 512)?;
    let m = Metrics::compute(&pt.test.targets(), &out.probs, k);
    flowcast_models::export::save(&trained.model, &trained.config, dir)?;
    write_predictions(&dir.join(PREDICTIONS_FILE), &pt.test, &data.rows, &pt.def.classes, &out)?;
    let importance = if exp.training.importance_rows > 0 {
        let imp = crate::explain::permutation_importance(&bp, &pt.test, &data.window_ofi, k, exp.seed, exp.training.importance_rows)?;
        crate::error::write_json(&dir.join("importance.json"), &imp.to_json(id, &tid, &data.inputs.names))?;
        Some(imp.top(&data.inputs.names, 10))
    } else {
        None
    };
    let weights = dir.join(WEIGHTS_FILE);
    let card = ModelCard {
        format: CARD_FORMAT.into(),
        version: CARD_VERSION,
        flowcast_version: env!("CARGO_PKG_VERSION").into(),
        experiment: exp.name.clone(),
        model_id: id.to_string(),
        family: flowcast_contract::card::Family::Deep,
        model: flowcast_models::export::config_document(&trained.config),
        params: trained.params,
        weights: WeightsEntry { file: WEIGHTS_FILE.into(), sha256: sha256_file(&weights)?, tensors: safetensors_header(&weights)? },
        preprocessing: data.preprocessing(ti),
        classes: pt.def.classes.clone(),
        training_data: data.info.clone(),
        training: TrainingEntry {
            seed: exp.seed,
            spec: serde_json::to_value(&exp.training).expect("json"),
            epochs_run: trained.state.completed_epochs,
            best_epoch: trained.state.best_epoch.unwrap_or(0),
            stopped_early: trained.state.stopped_early,
            class_weights: trained.class_weights.clone(),
            train_windows: pt.train.len(),
            validation_windows: pt.validation.len(),
            device: device_name.clone(),
        },
        baselines: ctx.baselines.to_vec(),
        metrics: json!({"test": m.headline(), "baselines": ctx.baseline_headline}),
        signal: exp.signal.clone(),
    };
    card.save(dir)?;
    ModelCard::load(dir)?; // what we wrote must pass our own validation
    let mut h = m.headline();
    h["target"] = json!(tid);
    h["params"] = json!(trained.params);
    h["best_epoch"] = json!(trained.state.best_epoch);
    h["epochs_run"] = json!(trained.state.completed_epochs);
    h["pruned"] = json!(trained.state.pruned);
    h["train_samples_per_s"] = json!(trained.state.history.last().map(|r| r.samples_per_s));
    let mut agreement = None;
    if ctx.verify_export {
        let cp = candle_predictor(dir, &card)?;
        let co = predict_set(cp.as_ref(), &pt.test, &data.window_ofi, 256)?;
        let max_diff = out.probs.iter().zip(&co.probs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let same = out.probs.chunks(k).zip(co.probs.chunks(k)).filter(|(a, b)| argmax(a) == argmax(b)).count();
        agreement = Some(json!({"engine": "candle (flowcast-serve)", "max_abs_prob_diff": max_diff,
                   "argmax_agreement": same as f64 / pt.test.len().max(1) as f64, "windows": pt.test.len()}));
    }
    Ok(ModelOut {
        headline: h,
        full: json!({"target": tid, "test": m, "history": trained.state.history, "params": trained.params, "importance_top": importance}),
        agreement,
        extra: Vec::new(),
    })
}
