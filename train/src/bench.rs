//! `flowcast bench train`: training samples/s (forward + backward + Adam step) and inference
//! windows/s of a registry model on random windows, on the chosen device. Random inputs are
//! enough: the cost of these models does not depend on the values.

use crate::error::Result;
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
    pub batch: usize,
    pub window: usize,
    pub features: usize,
    pub classes: usize,
    /// Timed training steps (after one warm-up step).
    pub steps: usize,
    pub device: String,
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
}

pub fn run(spec: &BenchSpec) -> Result<BenchReport> {
    let device = crate::run::device_of(&spec.device)?;
    let ad = device.clone().autodiff();
    ad.seed(1);
    let (mut model, config) = flowcast_models::build(&spec.model, &spec.params, spec.features, spec.classes, &ad)?;
    config.check_window(spec.window)?;
    let params = flowcast_models::trainable_params(&model);
    let mut optim = AdamConfig::new().init();
    let shape = [spec.batch, spec.window, spec.features];
    let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &ad);
    let labels: Vec<i64> = (0..spec.batch).map(|i| (i % spec.classes) as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [spec.batch]), &ad);
    let mut step = |model: Model| {
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
    let xi = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let _ = valid.forward(xi.clone()).into_data();
    let t = Instant::now();
    for _ in 0..spec.steps {
        let _ = valid.forward(xi.clone()).into_data();
    }
    let infer_seconds = t.elapsed().as_secs_f64();
    let n = (spec.steps * spec.batch) as f64;
    Ok(BenchReport {
        model: spec.model.clone(),
        params,
        device: spec.device.clone(),
        batch: spec.batch,
        window: spec.window,
        features: spec.features,
        steps: spec.steps,
        train_seconds,
        train_samples_per_s: n / train_seconds.max(1e-12),
        infer_seconds,
        infer_windows_per_s: n / infer_seconds.max(1e-12),
    })
}

type Model = flowcast_models::Model;
