//! The safetensors file of an export, taken tensor by tensor with shape checks, so a file that
//! does not match its config fails naming the tensor instead of giving wrong logits.

use crate::error::{Result, ServeError};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Weights {
    path: PathBuf,
    map: HashMap<String, Tensor>,
    /// Benchmarks and tests: synthesise any tensor asked for (seeded), instead of reading a file.
    random: Option<std::cell::Cell<u64>>,
}

impl Weights {
    pub fn load(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(ServeError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let map = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| ServeError::Tensor {
            path: path.to_path_buf(),
            name: "*".into(),
            reason: e.to_string(),
        })?;
        Ok(Weights { path: path.to_path_buf(), map, random: None })
    }

    /// Weights that hand out deterministic U(−0.5, 0.5) tensors of whatever shape is asked for
    /// (BatchNorm running variances U(0.5, 1.5)), so a model of any spec can be built without an
    /// export: for benchmarks (the cost does not depend on the values) and tests.
    pub fn random(seed: u64) -> Self {
        Weights { path: PathBuf::from("<random>"), map: HashMap::new(), random: Some(std::cell::Cell::new(seed)) }
    }

    fn err(&self, name: &str, reason: impl Into<String>) -> ServeError {
        ServeError::Tensor { path: self.path.clone(), name: name.into(), reason: reason.into() }
    }

    /// Removes and returns `name`, which must be f32 of exactly `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if let Some(state) = &self.random {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
                    state.set(z);
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    let u = ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    if name.ends_with("running_var") {
                        u + 1.0
                    } else {
                        u
                    }
                })
                .collect();
            return Ok(Tensor::from_vec(v, shape, &Device::Cpu)?);
        }
        let t = self.map.remove(name).ok_or_else(|| self.err(name, "missing"))?;
        if t.dtype() != DType::F32 {
            return Err(self.err(name, format!("dtype {:?}, expected F32", t.dtype())));
        }
        if t.dims() != shape {
            return Err(self.err(name, format!("shape {:?}, expected {shape:?}", t.dims())));
        }
        Ok(t)
    }

    /// Fails if any tensor was not used: the file holds a different architecture.
    pub fn finish(self) -> Result<()> {
        let mut left: Vec<&String> = self.map.keys().collect();
        left.sort();
        match left.first() {
            None => Ok(()),
            Some(first) => Err(self.err(first, format!("not used by the architecture ({} tensor(s) left over)", left.len()))),
        }
    }
}
