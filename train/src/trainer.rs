//! The training loop: burn autodiff, Adam/AdamW, per-epoch learning-rate schedules, gradient
//! clipping, class-weighted cross-entropy, early stopping on validation macro-F1, checkpoints
//! (last + best, optimizer state included) and exact resume.
//!
//! Reproducibility (CPU): the model is initialised after `device.seed(seed)`; epoch e shuffles
//! the training windows with ChaCha8 seeded from (seed, e) and reseeds the device from (seed, e)
//! (dropout), so an epoch's work depends only on the weights and optimizer state it starts from.
//! Those are exactly what a checkpoint holds (burnpack files keep parameter ids, which key the
//! optimizer state), so a resumed run continues bit-for-bit like an uninterrupted one.

use crate::batch::BurnBatcher;
use crate::config::{ClassWeights, ClipSpec, ModelSpec, OptimizerKind, Schedule, TrainingSpec};
use crate::error::{Result, TrainError};
use crate::progress::{Mode, Progress};
use crate::tensorboard::EventWriter;
use burn::data::dataloader::batcher::Batcher;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, TensorData};
use flowcast_contract::metrics::Metrics;
use flowcast_contract::window::{WindowBatcher, WindowSet};
use flowcast_models::{Model, ModelConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Version of `checkpoints/*/state.json`.
pub const STATE_FORMAT: u32 = 1;

/// One epoch's numbers (history in state.json and metrics.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub train_macro_f1: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub val_macro_f1: Option<f64>,
    /// Mean global gradient norm of the epoch's batches, before clipping.
    #[serde(default)]
    pub grad_norm: f64,
    pub seconds: f64,
    pub samples_per_s: f64,
}

/// What a checkpoint records besides the weights and optimizer state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: u32,
    /// Hash of everything that determines the run (model, training, seed, data): resume refuses
    /// a checkpoint of another run.
    pub fingerprint: String,
    pub completed_epochs: usize,
    pub best_epoch: Option<usize>,
    pub best_score: f64,
    /// Learning rate of the next epoch for reduce-on-plateau (others recompute it).
    pub plateau_lr: f64,
    pub plateau_wait: usize,
    pub bad_epochs: usize,
    pub stopped_early: bool,
    pub history: Vec<EpochRecord>,
    /// An [`EpochObserver`] stopped the training after `completed_epochs` (sweep pruning).
    #[serde(default)]
    pub pruned: bool,
}

/// Settings of one training run.
pub struct TrainJob<'a> {
    pub spec: &'a ModelSpec,
    /// The model's id in the run (`<model id>` or `<model id>_<target id>`).
    pub id: &'a str,
    pub training: &'a TrainingSpec,
    pub seed: u64,
    /// Plain (non-autodiff) device.
    pub device: Device,
    /// The model's directory in the run (checkpoints/ and tensorboard/ go there).
    pub dir: PathBuf,
    /// Continue from `dir/checkpoints/last` when it exists.
    pub resume: bool,
    /// Stop after this many epochs in this call (tests interrupt a run this way); 0 = no limit.
    pub stop_after: usize,
    pub progress: Mode,
    /// Identifies the data (events hash, windows) in the fingerprint.
    pub data_key: String,
    /// Told every finished epoch; may stop the training (a sweep's ASHA pruner).
    pub observer: Option<&'a dyn EpochObserver>,
}

/// What an [`EpochObserver`] wants after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochControl {
    Continue,
    /// Stop training this model now (the run still tests and exports it, marked `pruned`).
    Stop,
    /// Give the run up: training returns an error (a sweep worker that lost its trial).
    Abort,
}

/// Sees each epoch's record after its checkpoint is written (so a stopped model can resume
/// from there); sweeps report the per-epoch validation metric and prune through it.
pub trait EpochObserver: Send + Sync {
    fn epoch_end(&self, model_id: &str, record: &EpochRecord) -> EpochControl;
}

/// A trained model: the best weights (by validation macro-F1, or the last without validation).
pub struct Trained {
    pub model: Model,
    pub config: ModelConfig,
    pub state: TrainerState,
    pub resumed_from: Option<usize>,
    pub class_weights: Option<Vec<f32>>,
    pub params: usize,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl TrainJob<'_> {
    fn fingerprint(&self, n_features: usize, n_classes: usize) -> String {
        use sha2::Digest;
        let v = serde_json::json!({"model": self.spec, "training": self.training, "seed": self.seed,
            "data": self.data_key, "features": n_features, "classes": n_classes});
        hex(&sha2::Sha256::digest(v.to_string().as_bytes()))
    }
    pub fn checkpoint_dir(&self, which: &str) -> PathBuf {
        self.dir.join("checkpoints").join(which)
    }
}

/// Class weights from the experiment: `balanced` = n / (k · count_c) on the training windows.
pub fn class_weights(cw: &ClassWeights, train: &WindowSet, k: usize) -> Result<Option<Vec<f32>>> {
    match cw {
        ClassWeights::Rule(r) if r == "none" => Ok(None),
        ClassWeights::Rule(_) => {
            let counts = train.class_counts(k);
            let n: u64 = counts.iter().sum();
            Ok(Some(counts.iter().map(|&c| if c == 0 { 0.0 } else { n as f32 / (k as f32 * c as f32) }).collect()))
        }
        ClassWeights::Explicit(w) if w.len() == k && w.iter().all(|v| v.is_finite() && *v >= 0.0) => Ok(Some(w.clone())),
        ClassWeights::Explicit(w) => {
            Err(TrainError::Invalid(format!("[training] class_weights: need {k} non-negative numbers, got {w:?}")))
        }
    }
}

/// Weighted mean cross-entropy Σ w_y·(−log p_y) / Σ w_y (PyTorch's `CrossEntropyLoss(weight)`).
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>, weights: Option<&Tensor<1>>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let nll = log_softmax(logits, 1).gather(1, targets.clone().reshape([b, 1])).reshape([b]).neg();
    match weights {
        None => nll.mean(),
        Some(w) => {
            let wi = w.clone().select(0, targets);
            (nll * wi.clone()).sum() / wi.sum()
        }
    }
}

fn optimizer(t: &TrainingSpec) -> ModuleOptimizer {
    let clip = t.grad_clip.as_ref().and_then(|c| match c {
        ClipSpec::TensorNorm(v) => Some(GradientClippingConfig::Norm(*v)),
        ClipSpec::Value(v) => Some(GradientClippingConfig::Value(*v)),
        // Global-norm clipping happens in the loop (`clip_global_norm`), not in the optimizer.
        ClipSpec::Norm(_) => None,
    });
    match t.optimizer {
        OptimizerKind::Adam => AdamConfig::new()
            .with_weight_decay((t.weight_decay > 0.0).then(|| WeightDecayConfig::new(t.weight_decay as f32)))
            .with_grad_clipping(clip)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new().with_weight_decay(t.weight_decay as f32).with_grad_clipping(clip).init(),
    }
}

/// Sums ‖g_p‖² over the parameters that have a gradient.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    acc: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(p.id) {
            let s = (g.clone() * g).sum(); // [1]
            self.acc = Some(match self.acc.take() {
                None => s,
                Some(a) => a + s,
            });
        }
    }
}

/// Multiplies every gradient by `factor`.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(p.id) {
            self.grads.register::<D>(p.id, g.mul_scalar(self.factor));
        }
    }
}

/// The global gradient norm sqrt(Σ_p ‖g_p‖²) before clipping; when it exceeds `max_norm` every
/// gradient is scaled by max_norm / (norm + 1e-6), as PyTorch's `clip_grad_norm_` does (burn's
/// own `GradientClipping::Norm` bounds each tensor separately, which changes the update's
/// direction).
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: Option<f32>) -> f32 {
    let mut v = SquaredNorm { grads, acc: None };
    module.visit(&mut v);
    let norm = v.acc.map(|a| a.into_scalar::<f32>().sqrt()).unwrap_or(0.0);
    if let Some(m) = max_norm {
        if norm.is_finite() && norm > m {
            module.visit(&mut ScaleGrads { grads, factor: m / (norm + 1e-6) });
        }
    }
    norm
}

/// Learning rate of epoch `e` (0-based) for the closed-form schedules.
pub fn scheduled_lr(t: &TrainingSpec, e: usize, plateau_lr: f64) -> f64 {
    match &t.schedule {
        Schedule::Constant => t.lr,
        Schedule::Step { every, gamma } => t.lr * gamma.powi((e / (*every).max(1)) as i32),
        Schedule::Cosine { min_lr } => min_lr + (t.lr - min_lr) * (1.0 + (std::f64::consts::PI * e as f64 / t.epochs as f64).cos()) / 2.0,
        Schedule::Plateau { .. } => plateau_lr,
    }
}

fn epoch_seed(seed: u64, e: usize) -> u64 {
    seed ^ (e as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn save_model(model: &Model, path: &Path) -> Result<()> {
    let mut st = BurnpackStore::from_file(path).overwrite(true);
    model.save_into(&mut st).map_err(|e| TrainError::card(path, "weights", e.to_string()))
}

fn load_model(config: &ModelConfig, path: &Path, device: &Device) -> Result<Model> {
    let mut model = config.init(device);
    let r = model.load_from(&mut BurnpackStore::from_file(path)).map_err(|e| TrainError::card(path, "weights", e.to_string()))?;
    if !r.errors.is_empty() || !r.missing.is_empty() || !r.unused.is_empty() {
        return Err(TrainError::card(path, "weights", r.to_string()));
    }
    Ok(model)
}

use crate::error::write_json;

fn read_state(path: &Path) -> Result<TrainerState> {
    let s = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let st: TrainerState = serde_json::from_str(&s).map_err(|e| TrainError::card(path, "state", e.to_string()))?;
    if st.format != STATE_FORMAT {
        return Err(TrainError::card(path, "format", format!("{} (expected {STATE_FORMAT})", st.format)));
    }
    Ok(st)
}

/// Writes a checkpoint into `dir` through a temporary sibling, so a crash mid-write leaves the
/// previous checkpoint intact.
fn write_checkpoint(dir: &Path, model: &Model, optim: Option<&ModuleOptimizer>, state: &TrainerState) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    save_model(model, &tmp.join("model.bpk"))?;
    if let Some(o) = optim {
        let p = tmp.join("optimizer.bpk");
        o.save(&p).map_err(|e| TrainError::card(&p, "optimizer", e.to_string()))?;
    }
    write_json(&tmp.join("state.json"), state)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(|e| TrainError::io(dir, e))
}

/// Class probabilities `[n × k]` of every window of `set` (inference mode, no autodiff).
pub fn predict(model: &Model, set: &WindowSet, batch: usize, device: &Device) -> Vec<f32> {
    let model = model.valid();
    let f = set.data.cols();
    let batcher = WindowBatcher { window: set.window, features: f };
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(batch.max(1)) {
        batcher.fill(&set.items(chunk), &mut buf);
        let x = Tensor::<3>::from_data(TensorData::new(std::mem::take(&mut buf), [chunk.len(), set.window, f]), device);
        let p = softmax(model.forward(x), 1);
        out.extend(p.into_data().try_to_vec::<f32>().expect("f32 probabilities"));
    }
    out
}

/// Labels of `set` as class indices.
pub fn targets(set: &WindowSet) -> Vec<usize> {
    set.labels.iter().map(|&c| c as usize).collect()
}

/// Train (or resume) one model on `train`, selecting on `validation`.
pub fn train(job: &TrainJob<'_>, train: &WindowSet, validation: &WindowSet, k: usize, mut tb: Option<&mut EventWriter>) -> Result<Trained> {
    let t = job.training;
    let f = train.data.cols();
    let ad = job.device.clone().autodiff();
    let config = ModelConfig::resolve(flowcast_models::Architecture::parse(&job.spec.name)?, &job.spec.params, f, k)?;
    config.check_window(train.window)?;
    if validation.is_empty() && (t.early_stopping.is_some() || matches!(t.schedule, Schedule::Plateau { .. })) {
        return Err(TrainError::Invalid("early stopping and reduce-on-plateau need validation windows (splits.validation > 0)".into()));
    }
    let weights = class_weights(&t.class_weights, train, k)?;
    let w_tensor = weights.as_ref().map(|w| Tensor::<1>::from_data(TensorData::new(w.clone(), [k]), &ad));
    let fingerprint = job.fingerprint(f, k);

    let last = job.checkpoint_dir("last");
    let best_dir = job.checkpoint_dir("best");
    let (mut model, mut optim, mut state, resumed_from) = if job.resume && last.join("state.json").exists() {
        let st = read_state(&last.join("state.json"))?;
        if st.fingerprint != fingerprint {
            return Err(TrainError::card(
                &last.join("state.json"),
                "fingerprint",
                "the checkpoint belongs to another experiment (model, training, seed or data differ)",
            ));
        }
        let model = load_model(&config, &last.join("model.bpk"), &ad)?;
        let op = last.join("optimizer.bpk");
        let optim = optimizer(t).load(&op).map_err(|e| TrainError::card(&op, "optimizer", e.to_string()))?;
        let from = st.completed_epochs;
        (model, optim, st, Some(from))
    } else {
        ad.seed(job.seed);
        let model = config.init(&ad);
        let st = TrainerState {
            format: STATE_FORMAT,
            fingerprint,
            completed_epochs: 0,
            best_epoch: None,
            best_score: f64::NEG_INFINITY,
            plateau_lr: t.lr,
            plateau_wait: 0,
            bad_epochs: 0,
            stopped_early: false,
            history: vec![],
            pruned: false,
        };
        (model, optimizer(t), st, None)
    };
    let n_params = flowcast_models::trainable_params(&model);

    let global_clip = match t.grad_clip {
        Some(ClipSpec::Norm(v)) => Some(v),
        _ => None,
    };
    let batcher = BurnBatcher(WindowBatcher { window: train.window, features: f });
    let mut progress = Progress::new(job.progress, job.id, t.epochs, state.completed_epochs);
    if let Some(e) = resumed_from {
        progress.note(&format!("resuming after epoch {e} from {}", last.display()));
    }
    let mut ran = 0;
    let mut order: Vec<usize> = (0..train.len()).collect();
    while state.completed_epochs < t.epochs && !state.stopped_early && !state.pruned {
        if job.stop_after > 0 && ran >= job.stop_after {
            break;
        }
        let e = state.completed_epochs;
        let lr = scheduled_lr(t, e, state.plateau_lr);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(epoch_seed(job.seed, e));
        order.iter_mut().enumerate().for_each(|(i, v)| *v = i);
        order.shuffle(&mut rng);
        ad.seed(epoch_seed(job.seed, e).rotate_left(17));
        let mut nb = order.len().div_ceil(t.batch);
        if t.max_batches > 0 {
            nb = nb.min(t.max_batches);
        }
        progress.start_epoch(e, nb, lr);
        let started = Instant::now();
        let (mut loss_sum, mut seen, mut grad_norm_sum) = (0.0f64, 0usize, 0.0f64);
        let mut cm = vec![vec![0u64; k]; k];
        for chunk in order.chunks(t.batch).take(nb) {
            let b = batcher.batch(train.items(chunk), &ad);
            let logits = model.forward(b.inputs);
            let loss = cross_entropy(logits.clone(), b.targets, w_tensor.as_ref());
            let preds: Vec<i64> = logits.clone().argmax(1).reshape([chunk.len()]).into_data().iter::<i64>().collect();
            let lv: f32 = loss.clone().into_scalar();
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let gn = clip_global_norm(&model, &mut grads, global_clip);
            grad_norm_sum += gn as f64;
            model = optim.step(lr, model, grads);
            for (&i, &p) in chunk.iter().zip(&preds) {
                cm[train.labels[i] as usize][p as usize] += 1;
            }
            if !lv.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "{}: training loss is {lv} at epoch {} (lower the learning rate?)",
                    job.id,
                    e + 1
                )));
            }
            loss_sum += lv as f64 * chunk.len() as f64;
            seen += chunk.len();
            progress.batch(chunk.len(), lv);
        }
        let secs = started.elapsed().as_secs_f64();
        let (ys, ps): (Vec<usize>, Vec<usize>) = cm
            .iter()
            .enumerate()
            .flat_map(|(i, r)| r.iter().enumerate().flat_map(move |(j, &c)| std::iter::repeat_n((i, j), c as usize)))
            .unzip();
        let tm = Metrics::from_predictions(&ys, &ps, k);
        let vm = (!validation.is_empty()).then(|| {
            let probs = predict(&model, validation, t.batch.max(256), &job.device);
            Metrics::compute(&targets(validation), &probs, k)
        });
        let rec = EpochRecord {
            epoch: e + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: tm.accuracy,
            train_macro_f1: tm.macro_f1,
            val_loss: vm.as_ref().and_then(|m| m.log_loss),
            val_accuracy: vm.as_ref().map(|m| m.accuracy),
            val_macro_f1: vm.as_ref().map(|m| m.macro_f1),
            grad_norm: grad_norm_sum / nb.max(1) as f64,
            seconds: secs,
            samples_per_s: seen as f64 / secs.max(1e-9),
        };
        // Selection, early stopping and plateau all follow validation macro-F1.
        let score = rec.val_macro_f1.unwrap_or(f64::NAN);
        let min_delta = t.early_stopping.as_ref().map(|s| s.min_delta).unwrap_or(0.0);
        let improved = validation.is_empty() || score > state.best_score + min_delta || state.best_epoch.is_none();
        if improved {
            state.best_score = if validation.is_empty() { rec.train_macro_f1 } else { score };
            state.best_epoch = Some(e + 1);
            state.bad_epochs = 0;
        } else {
            state.bad_epochs += 1;
        }
        if let Schedule::Plateau { factor, patience, min_lr } = &t.schedule {
            if improved {
                state.plateau_wait = 0;
            } else {
                state.plateau_wait += 1;
                if state.plateau_wait >= *patience {
                    state.plateau_lr = (state.plateau_lr * factor).max(*min_lr);
                    state.plateau_wait = 0;
                }
            }
        }
        if let Some(es) = &t.early_stopping {
            if state.bad_epochs >= es.patience {
                state.stopped_early = true;
            }
        }
        if let Some(w) = tb.as_deref_mut() {
            let s = rec.epoch as i64;
            let mut put = |tag: &str, v: f64| {
                let _ = w.scalar(tag, v as f32, s);
            };
            put("train/loss", rec.train_loss);
            put("train/accuracy", rec.train_accuracy);
            put("train/macro_f1", rec.train_macro_f1);
            put("learning_rate", lr);
            put("train/grad_norm", rec.grad_norm);
            put("train/samples_per_s", rec.samples_per_s);
            if let (Some(l), Some(a), Some(m)) = (rec.val_loss, rec.val_accuracy, rec.val_macro_f1) {
                put("val/loss", l);
                put("val/accuracy", a);
                put("val/macro_f1", m);
            }
            let _ = w.flush();
        }
        let line = format!(
            "loss {:.4} acc {:.3} | val loss {} acc {} macro-F1 {} | lr {lr:.2e} | {:.0} samples/s{}",
            rec.train_loss,
            rec.train_accuracy,
            rec.val_loss.map(|v| format!("{v:.4}")).unwrap_or("-".into()),
            rec.val_accuracy.map(|v| format!("{v:.3}")).unwrap_or("-".into()),
            rec.val_macro_f1.map(|v| format!("{v:.3}")).unwrap_or("-".into()),
            rec.samples_per_s,
            if improved { " *" } else { "" }
        );
        state.history.push(rec);
        state.completed_epochs = e + 1;
        if improved {
            write_checkpoint(&best_dir, &model, None, &state)?;
        }
        write_checkpoint(&last, &model, Some(&optim), &state)?;
        progress.end_epoch(e, &line);
        if state.stopped_early {
            progress.note(&format!("early stop: no validation macro-F1 gain for {} epochs", state.bad_epochs));
        }
        ran += 1;
        if let Some(o) = job.observer {
            match o.epoch_end(job.id, state.history.last().expect("pushed above")) {
                EpochControl::Continue => {}
                EpochControl::Stop => {
                    state.pruned = true;
                    write_checkpoint(&last, &model, Some(&optim), &state)?;
                    progress.note(&format!("pruned after epoch {}", state.completed_epochs));
                }
                EpochControl::Abort => {
                    return Err(TrainError::Invalid(format!(
                        "{}: abandoned after epoch {} (the observer gave the run up)",
                        job.id, state.completed_epochs
                    )));
                }
            }
        }
    }
    progress.finish();
    // Hand back the best weights.
    let model = if best_dir.join("model.bpk").exists() && state.best_epoch != Some(state.completed_epochs) {
        load_model(&config, &best_dir.join("model.bpk"), &job.device)?
    } else {
        model.valid()
    };
    Ok(Trained { model, config, state, resumed_from, class_weights: weights, params: n_params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let mut t = TrainingSpec { lr: 1.0, epochs: 4, ..TrainingSpec::default() };
        t.schedule = Schedule::Step { every: 2, gamma: 0.5 };
        assert_eq!((0..4).map(|e| scheduled_lr(&t, e, 0.0)).collect::<Vec<_>>(), vec![1.0, 1.0, 0.5, 0.5]);
        t.schedule = Schedule::Cosine { min_lr: 0.0 };
        assert!((scheduled_lr(&t, 2, 0.0) - 0.5).abs() < 1e-12);
        assert_eq!(scheduled_lr(&t, 0, 0.0), 1.0);
    }

    #[test]
    fn weighted_cross_entropy_matches_hand_computation() {
        let d = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 0.0, 0.0, 1.0, 0.0, 0.0], [2, 3]), &d);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 0], [2]), &d);
        let l0 = (3f32).ln();
        let l1 = -(1f32.exp() / (1f32.exp() + 2.0)).ln();
        let v: f32 = cross_entropy(logits.clone(), y.clone(), None).into_scalar();
        assert!((v - (l0 + l1) / 2.0).abs() < 1e-6);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &d);
        let w = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 3.0], [3]), &d);
        let l2 = -(1.0 / (1f32.exp() + 2.0)).ln();
        let v: f32 = cross_entropy(logits, y, Some(&w)).into_scalar();
        assert!((v - (l0 + 3.0 * l2) / 4.0).abs() < 1e-6, "{v}");
    }

    #[test]
    fn global_norm_clipping_scales_all_gradients_together() {
        use burn::nn::{Linear, LinearConfig};
        let d = Device::flex().autodiff();
        d.seed(5);
        let lin: Linear = LinearConfig::new(4, 3).init(&d);
        let x = Tensor::<2>::from_data(TensorData::new((0..8).map(|v| v as f32 - 3.0).collect::<Vec<_>>(), [2, 4]), &d);
        let loss = lin.forward(x).powi_scalar(2).sum() * 10.0;
        let mut grads = GradientsParams::from_grads(loss.backward(), &lin);
        let w0: Vec<f32> = grads.get::<2>(lin.weight.id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let b0: Vec<f32> = grads.get::<1>(lin.bias.as_ref().unwrap().id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let by_hand = w0.iter().chain(&b0).map(|v| v * v).sum::<f32>().sqrt();
        let norm = clip_global_norm(&lin, &mut grads, None);
        assert!((norm - by_hand).abs() <= 1e-4 * by_hand, "{norm} vs {by_hand}");
        assert!(norm > 1.0, "the test needs a norm above the bound: {norm}");
        // Clip to 1: the norm becomes 1 and every element keeps its share (direction unchanged).
        let before = clip_global_norm(&lin, &mut grads, Some(1.0));
        assert_eq!(before, norm);
        let after = clip_global_norm(&lin, &mut grads, None);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
        let w1: Vec<f32> = grads.get::<2>(lin.weight.id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let b1: Vec<f32> = grads.get::<1>(lin.bias.as_ref().unwrap().id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let f = 1.0 / (norm + 1e-6);
        for (a, b) in w0.iter().chain(&b0).zip(w1.iter().chain(&b1)) {
            assert!((a * f - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} · {f} vs {b}");
        }
        // Below the bound nothing changes.
        let again = clip_global_norm(&lin, &mut grads, Some(10.0));
        assert!((again - 1.0).abs() < 1e-4);
    }
}
