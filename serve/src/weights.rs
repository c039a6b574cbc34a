//! The safetensors file of an export, taken tensor by tensor with shape checks, so a file that
//! does not match its config fails naming the tensor instead of giving wrong logits.

use crate::error::{Result, ServeError};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Weights {
    path: PathBuf,
    map: HashMap<String, Tensor>,
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
        Ok(Weights { path: path.to_path_buf(), map })
    }

    fn err(&self, name: &str, reason: impl Into<String>) -> ServeError {
        ServeError::Tensor { path: self.path.clone(), name: name.into(), reason: reason.into() }
    }

    /// Removes and returns `name`, which must be f32 of exactly `shape`.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
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
