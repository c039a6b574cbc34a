//! What both protocols share: the error type, the checks of an input tensor against a model,
//! and running the predictor on tokio's blocking pool (the async runtime never computes).

pub use crate::error::{ApiError, ErrorKind};
use crate::repo::Model;
use flowcast_contract::{Batch, ContractError, Outputs};
use std::sync::Arc;
use std::time::Instant;

/// The one input tensor and output tensor of every flowcast model.
pub const INPUT: &str = "x";
pub const OUTPUT: &str = "probs";
pub const DATATYPE: &str = "FP32";

/// Checks an input tensor's name, datatype and shape against `model` (`field`: e.g.
/// `inputs[0]`) and returns `[batch, window, features]`.
pub fn check_input(model: &Model, field: &str, name: &str, datatype: &str, shape: &[i64]) -> Result<[usize; 3], ApiError> {
    let info = model.info();
    if name != INPUT {
        return Err(ApiError::bad(
            &format!("{field}.name"),
            format!("unknown input {name:?}: model {:?} has one input {INPUT:?}", model.name),
        ));
    }
    if datatype != DATATYPE {
        return Err(ApiError::bad(&format!("{field}.datatype"), format!("{datatype:?}: input {INPUT:?} is {DATATYPE}")));
    }
    let want = format!("[B, {}, {}]", info.window, info.features);
    let bad_shape = |r: String| ApiError::bad(&format!("{field}.shape"), format!("{shape:?}: {r} (expected {want}, B ≥ 1)"));
    if shape.len() != 3 {
        return Err(bad_shape(format!("{} dimensions", shape.len())));
    }
    let dims: Vec<usize> =
        shape.iter().map(|&d| usize::try_from(d).map_err(|_| bad_shape(format!("dimension {d} is negative")))).collect::<Result<_, _>>()?;
    if dims[0] == 0 {
        return Err(bad_shape("empty batch".into()));
    }
    if dims[1] != info.window {
        return Err(bad_shape(format!("model {:?} takes windows of {} steps", model.name, info.window)));
    }
    if dims[2] != info.features {
        return Err(bad_shape(format!("model {:?} takes {} features per step", model.name, info.features)));
    }
    if dims[0].checked_mul(dims[1]).and_then(|v| v.checked_mul(dims[2])).and_then(|v| v.checked_mul(4)).is_none() {
        return Err(bad_shape("too many elements".into()));
    }
    Ok([dims[0], dims[1], dims[2]])
}

/// Checks the requested output names (`outputs`, possibly empty = all) against `model`'s.
pub fn check_outputs<'a>(model: &Model, names: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    let known: Vec<&str> = crate::signal::output_metadata(model.info()).into_iter().map(|(n, _, _)| n).collect();
    for (i, n) in names.enumerate() {
        if !known.contains(&n) {
            return Err(ApiError::bad(&format!("outputs[{i}].name"), format!("unknown output {n:?}: the model's outputs are {known:?}")));
        }
    }
    Ok(())
}

/// `n` little-endian FP32 values from raw bytes (`field` names the tensor's bytes).
pub fn f32_from_le(bytes: &[u8], n: usize, field: &str) -> Result<Vec<f32>, ApiError> {
    if bytes.len() != n * 4 {
        return Err(ApiError::bad(field, format!("{} bytes, expected {} ({n} FP32 values)", bytes.len(), n * 4)));
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

pub fn f32_to_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A finished inference: `[batch × classes]` probabilities (plus regression and std where the
/// model has them), the wait for a blocking thread and the compute time.
pub struct Inference {
    pub probs: Vec<f32>,
    pub regression: Vec<f32>,
    pub std: Vec<f32>,
    pub batch: usize,
    pub classes: usize,
    pub compute_us: u64,
    /// Time waiting for a blocking thread, plus (through the scheduler) in the inference queue (µs).
    pub queue_us: u64,
    /// Windows of the model call this request was part of (> `batch` when batched with others).
    pub batch_windows: usize,
}

/// Runs `model` on `x` (`shape` from [`check_input`]) on the blocking pool. Non-finite values
/// and a data length that does not match the shape are 400s naming `field`.
pub async fn run(model: Arc<Model>, x: Vec<f32>, shape: [usize; 3], field: String) -> Result<Inference, ApiError> {
    let [b, t, f] = shape;
    if x.len() != b * t * f {
        return Err(ApiError::bad(
            &format!("{field}.data"),
            format!("{} values for shape [{b}, {t}, {f}] ({} values)", x.len(), b * t * f),
        ));
    }
    let queued = Instant::now();
    let task = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        let queue_us = t0.duration_since(queued).as_micros() as u64;
        let batch = Batch::new(&x, b, t, f).map_err(|e| ApiError::bad(&format!("{field}.data"), e))?;
        let k = model.info().classes.len();
        let mut out = Outputs::new(k);
        model.predictor.predict(&batch, &mut out).map_err(|e| match e {
            ContractError::Input { .. } => ApiError::bad(&field, e),
            e => ApiError::internal(format!("model {:?}: {e}", model.name)),
        })?;
        if out.probs.len() != b * k {
            return Err(ApiError::internal(format!(
                "model {:?} returned {} probabilities for {b} windows × {k} classes",
                model.name,
                out.probs.len()
            )));
        }
        Ok(Inference {
            probs: out.probs,
            regression: out.regression,
            std: out.std,
            batch: b,
            classes: k,
            queue_us,
            compute_us: t0.elapsed().as_micros() as u64,
            batch_windows: b,
        })
    });
    task.await.map_err(|e| ApiError::internal(format!("inference task failed: {e}")))?
}
