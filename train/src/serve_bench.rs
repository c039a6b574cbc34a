//! `flowcast bench serve`, in-process part: single-window latency (one `[1, T, F]` window per
//! call, what a server answering one client does) of a registry model through burn (the training
//! stack) and through flowcast-serve's candle forward pass (what `flowcast serve` runs), on the
//! same randomly initialised weights. Random weights are enough: the cost does not depend on them.

use crate::error::{Result, TrainError};
use burn::prelude::*;
use burn::tensor::TensorData;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// What is measured, e.g. "LSTM-64".
    pub kind: String,
    pub model: String,
    pub params: usize,
    pub window: usize,
    pub features: usize,
    pub iters: usize,
    pub burn_p50_us: f64,
    pub burn_p99_us: f64,
    pub candle_p50_us: f64,
    pub candle_p99_us: f64,
}

/// Percentile `q` of sorted durations (nearest rank), µs.
fn pct(sorted_ns: &[u64], q: f64) -> f64 {
    let i = ((q * sorted_ns.len() as f64).ceil() as usize).clamp(1, sorted_ns.len()) - 1;
    sorted_ns[i] as f64 / 1e3
}

fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<u64>> {
    for _ in 0..iters.div_ceil(10).max(3) {
        f()?; // warm-up: allocations, caches
    }
    let mut ns = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        ns.push(t.elapsed().as_nanos() as u64);
    }
    ns.sort_unstable();
    Ok(ns)
}

/// Builds `model` (CPU, random weights), exports it to `dir` (model_config.json +
/// model.safetensors) and times `iters` single-window forward passes through burn and candle.
pub fn single_window(
    kind: &str,
    model: &str,
    params: &flowcast_models::Params,
    window: usize,
    features: usize,
    iters: usize,
    dir: &Path,
) -> Result<Latency> {
    let device = crate::run::device_of("cpu")?;
    // Built on the autodiff device (parameters are counted there, as in bench train), run without it.
    let ad = device.clone().autodiff();
    ad.seed(1);
    let (trainable, config) = flowcast_models::build(model, params, features, 3, &ad)?;
    config.check_window(window)?;
    let n_params = flowcast_models::trainable_params(&trainable);
    let m = trainable.valid();
    flowcast_models::export::save(&m, &config, dir)?;
    let c = flowcast_serve::Model::load_dir(dir).map_err(|e| TrainError::Invalid(format!("candle load: {e}")))?;
    let x: Vec<f32> = (0..window * features).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    let burn_ns = time(iters, || {
        let t = Tensor::<3>::from_data(TensorData::new(x.clone(), [1, window, features]), &device);
        let _ = m.forward(t).into_data();
        Ok(())
    })?;
    let candle_ns = time(iters, || {
        c.logits(&x, 1, window).map_err(|e| TrainError::Invalid(format!("candle forward: {e}")))?;
        Ok(())
    })?;
    Ok(Latency {
        kind: kind.into(),
        model: model.into(),
        params: n_params,
        window,
        features,
        iters,
        burn_p50_us: pct(&burn_ns, 0.50),
        burn_p99_us: pct(&burn_ns, 0.99),
        candle_p50_us: pct(&candle_ns, 0.50),
        candle_p99_us: pct(&candle_ns, 0.99),
    })
}
