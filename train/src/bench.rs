//! `flowcast bench train`: training samples/s (forward + backward + Adam step) and inference
//! windows/s of a registry model on random windows, on the chosen device, beside two
//! same-process references: a baseline model (default: a one-layer LSTM, hidden 64) on the same
//! windows, and the serve crate's candle forward pass (CPU) on the benchmarked model's exported
//! weights. Random inputs are enough: the cost of these models does not depend on the values.

use crate::error::{Result, TrainError};
use crate::trainer::cross_entropy;
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::{Distribution, Int, TensorData};
use serde::Serialize;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub model: String,
    pub params: flowcast_models::Params,
    /// Reference model measured in the same process (`None`: no baseline).
    pub baseline: Option<(String, flowcast_models::Params)>,
    pub batch: usize,
    pub window: usize,
    pub features: usize,
    pub classes: usize,
    /// Timed training steps (after one warm-up step).
    pub steps: usize,
    pub device: String,
}

/// Rates of one model.
#[derive(Clone, Debug, Serialize)]
pub struct Rates {
    pub model: String,
    pub params: usize,
    pub train_seconds: f64,
    pub train_samples_per_s: f64,
    pub infer_seconds: f64,
    pub infer_windows_per_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub params: usize,
    pub device: String,
    pub batch: usize,
    pub window: usize,
    pub features: usize,
    pub steps: usize,
    pub train_seconds: f64,
    pub train_samples_per_s: f64,
    pub infer_seconds: f64,
    pub infer_windows_per_s: f64,
    /// The baseline model's rates on the same windows and device.
    pub baseline: Option<Rates>,
    /// Baseline samples/s ÷ model samples/s: how many times costlier a training step is.
    pub train_cost_vs_baseline: Option<f64>,
    pub infer_cost_vs_baseline: Option<f64>,
    /// The same weights through flowcast-serve's candle forward pass (CPU), windows/s.
    pub candle_infer_windows_per_s: f64,
    /// candle windows/s ÷ burn windows/s.
    pub candle_vs_burn_infer: f64,
}

fn measure(
    name: &str,
    params: &flowcast_models::Params,
    spec: &BenchSpec,
    device: &Device,
) -> Result<(Rates, flowcast_models::Model, flowcast_models::ModelConfig)> {
    let ad = device.clone().autodiff();
    ad.seed(1);
    let (mut model, config) = flowcast_models::build(name, params, spec.features, spec.classes, &ad)?;
    config.check_window(spec.window)?;
    let n_params = flowcast_models::trainable_params(&model);
    let mut optim = AdamConfig::new().init();
    let shape = [spec.batch, spec.window, spec.features];
    let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &ad);
    let labels: Vec<i64> = (0..spec.batch).map(|i| (i % spec.classes) as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [spec.batch]), &ad);
    let mut step = |model: flowcast_models::Model| {
        let loss = cross_entropy(model.forward(x.clone()), y.clone(), None);
        let _: f32 = loss.clone().into_scalar(); // synchronise, as the training loop does
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-4, model, grads)
    };
    model = step(model); // warm-up (allocations, kernel compilation on GPU)
    let t = Instant::now();
    for _ in 0..spec.steps {
        model = step(model);
    }
    let train_seconds = t.elapsed().as_secs_f64();

    let valid = model.valid();
    let xi = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let _ = valid.forward(xi.clone()).into_data();
    let t = Instant::now();
    for _ in 0..spec.steps {
        let _ = valid.forward(xi.clone()).into_data();
    }
    let infer_seconds = t.elapsed().as_secs_f64();
    let n = (spec.steps * spec.batch) as f64;
    let rates = Rates {
        model: name.into(),
        params: n_params,
        train_seconds,
        train_samples_per_s: n / train_seconds.max(1e-12),
        infer_seconds,
        infer_windows_per_s: n / infer_seconds.max(1e-12),
    };
    Ok((rates, valid, config))
}

/// candle windows/s of the exported `model` (one warm-up batch, then `steps` timed batches).
fn candle_rate(model: &flowcast_models::Model, config: &flowcast_models::ModelConfig, spec: &BenchSpec) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!("flowcast-bench-{}", std::process::id()));
    flowcast_models::export::save(model, config, &dir)?;
    let loaded = flowcast_serve::Model::load_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let m = loaded.map_err(|e| TrainError::Invalid(format!("candle load: {e}")))?;
    let x: Vec<f32> = (0..spec.batch * spec.window * spec.features).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    let run = || m.logits(&x, spec.batch, spec.window).map_err(|e| TrainError::Invalid(format!("candle forward: {e}")));
    run()?;
    let t = Instant::now();
    for _ in 0..spec.steps {
        run()?;
    }
    Ok((spec.steps * spec.batch) as f64 / t.elapsed().as_secs_f64().max(1e-12))
}

pub fn run(spec: &BenchSpec) -> Result<BenchReport> {
    let device = crate::run::device_of(&spec.device)?;
    let (r, valid, config) = measure(&spec.model, &spec.params, spec, &device)?;
    let base = match &spec.baseline {
        Some((name, p)) => Some(measure(name, p, spec, &device)?.0),
        None => None,
    };
    let candle = candle_rate(&valid, &config, spec)?;
    Ok(BenchReport {
        model: r.model.clone(),
        params: r.params,
        device: spec.device.clone(),
        batch: spec.batch,
        window: spec.window,
        features: spec.features,
        steps: spec.steps,
        train_seconds: r.train_seconds,
        train_samples_per_s: r.train_samples_per_s,
        infer_seconds: r.infer_seconds,
        infer_windows_per_s: r.infer_windows_per_s,
        train_cost_vs_baseline: base.as_ref().map(|b| b.train_samples_per_s / r.train_samples_per_s),
        infer_cost_vs_baseline: base.as_ref().map(|b| b.infer_windows_per_s / r.infer_windows_per_s),
        baseline: base,
        candle_infer_windows_per_s: candle,
        candle_vs_burn_infer: candle / r.infer_windows_per_s,
    })
}
