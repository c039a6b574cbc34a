//! The output tensors of every inference (tensor and stream mode): the probabilities, the
//! regression and uncertainty outputs where the model has them, and the execution layer's
//! signal per window from the card's thresholds — `flowcast_contract::signal::SignalRule`, the
//! one decision function the backtest also trades (docs/serve.md, "Signals").

use crate::repo::Model;
use flowcast_contract::PredictorInfo;

pub const PROBS: &str = "probs";
pub const REGRESSION: &str = "regression";
pub const STD: &str = "std";
/// −2 strong sell, −1 sell, 0 none, +1 buy, +2 strong buy (INT32).
pub const SIGNAL_DIRECTION: &str = "signal_direction";
/// P(up) − P(down) (FP32).
pub const SIGNAL_STRENGTH: &str = "signal_strength";
/// Probability of the side the signal points to (FP32).
pub const SIGNAL_CONFIDENCE: &str = "signal_confidence";
/// Expected edge in bps (FP32).
pub const SIGNAL_EDGE_BPS: &str = "signal_edge_bps";

/// A tensor's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl Data {
    pub fn datatype(&self) -> &'static str {
        match self {
            Data::F32(_) => "FP32",
            Data::I32(_) => "INT32",
            Data::I64(_) => "INT64",
        }
    }
    /// Little-endian bytes (the binary-tensor extension, `raw_output_contents`).
    pub fn to_le(&self) -> Vec<u8> {
        match self {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// One output tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// Output names, datatypes and shapes (−1: the batch) of a model, in response order.
pub fn output_metadata(info: &PredictorInfo) -> Vec<(&'static str, &'static str, Vec<i64>)> {
    let mut v = Vec::new();
    if !info.classes.is_empty() {
        v.push((PROBS, "FP32", vec![-1, info.classes.len() as i64]));
    }
    if info.regression {
        v.push((REGRESSION, "FP32", vec![-1]));
    }
    if info.uncertainty {
        v.push((STD, "FP32", vec![-1]));
    }
    v.push((SIGNAL_DIRECTION, "INT32", vec![-1]));
    v.push((SIGNAL_STRENGTH, "FP32", vec![-1]));
    v.push((SIGNAL_CONFIDENCE, "FP32", vec![-1]));
    v.push((SIGNAL_EDGE_BPS, "FP32", vec![-1]));
    v
}

/// The decisions of `b` windows: (direction level, strength, confidence, edge bps) columns.
pub fn signal_columns(model: &Model, probs: &[f32], regression: &[f32], b: usize) -> [Data; 4] {
    let k = probs.len().checked_div(b).unwrap_or(0);
    let (mut d, mut s, mut c, mut e) = (Vec::with_capacity(b), Vec::with_capacity(b), Vec::with_capacity(b), Vec::with_capacity(b));
    for i in 0..b {
        let sig = model.signal.decide(&probs[i * k..(i + 1) * k], regression.get(i).copied());
        d.push(sig.direction.level() as i32);
        s.push(sig.strength);
        c.push(sig.confidence);
        e.push(sig.edge_bps);
    }
    [Data::I32(d), Data::F32(s), Data::F32(c), Data::F32(e)]
}

/// Every output tensor of `b` windows, in [`output_metadata`] order.
pub fn tensors(model: &Model, probs: Vec<f32>, regression: Vec<f32>, std: Vec<f32>, b: usize) -> Vec<Tensor> {
    let info = model.info();
    let [d, s, c, e] = signal_columns(model, &probs, &regression, b);
    let mut v = Vec::with_capacity(7);
    if !info.classes.is_empty() {
        v.push(Tensor { name: PROBS, shape: vec![b, info.classes.len()], data: Data::F32(probs) });
    }
    if info.regression {
        v.push(Tensor { name: REGRESSION, shape: vec![b], data: Data::F32(regression) });
    }
    if info.uncertainty {
        v.push(Tensor { name: STD, shape: vec![b], data: Data::F32(std) });
    }
    for (name, data) in [(SIGNAL_DIRECTION, d), (SIGNAL_STRENGTH, s), (SIGNAL_CONFIDENCE, c), (SIGNAL_EDGE_BPS, e)] {
        v.push(Tensor { name, shape: vec![b], data });
    }
    v
}
