//! flowcast-serve: inference for models exported by `flowcast-models`, in candle-core on the
//! CPU with no burn dependency. It reads `model.safetensors` and `model_config.json` (tensor
//! names and layouts: docs/models.md; the schema: `flowcast_contract::spec`) and implements the
//! contract's `Predictor` ([`CandlePredictor`]).

pub mod error;
pub mod fast;
pub mod kernels;
pub mod layers;
pub mod models;
pub mod predictor;
pub mod weights;

pub use error::{Result, ServeError};
pub use flowcast_contract::spec::ModelSpec;
pub use predictor::{load_ensemble, load_predictor, CandlePredictor};

use candle_core::{Device, Tensor};
use flowcast_contract::files::{CONFIG_FILE, WEIGHTS_FILE};
use std::path::Path;
use weights::Weights;

pub(crate) enum Net {
    Rnn(models::RnnClassifier, fast::FastRnn),
    DeepLob(models::DeepLob, Box<fast::FastDeepLob>),
    TransLob(models::TransLob, fast::FastTransLob),
}

/// A loaded model, ready for inference.
pub struct Model {
    spec: ModelSpec,
    net: Net,
}

impl Model {
    /// Loads `dir/model_config.json` and `dir/model.safetensors`.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        Self::load(&ModelSpec::from_file(&dir.join(CONFIG_FILE))?, &dir.join(WEIGHTS_FILE))
    }

    /// Builds the model described by `spec` from the safetensors file at `weights`; every
    /// tensor must be there with its exact shape and none may be left over.
    pub fn load(spec: &ModelSpec, weights: &Path) -> Result<Self> {
        let mut ws = Weights::load(weights)?;
        let m = Self::build(spec, &mut ws)?;
        ws.finish()?;
        Ok(m)
    }

    /// A model of `spec` with seeded random weights ([`Weights::random`]), for benchmarks.
    pub fn random(spec: &ModelSpec, seed: u64) -> Result<Self> {
        Self::build(spec, &mut Weights::random(seed))
    }

    fn build(spec: &ModelSpec, ws: &mut Weights) -> Result<Self> {
        let ws = &mut *ws;
        let net = match spec {
            ModelSpec::Lstm(c) | ModelSpec::Gru(c) => {
                let m = models::RnnClassifier::load(ws, c)?;
                let f = fast::FastRnn::of(&m)?;
                Net::Rnn(m, f)
            }
            ModelSpec::Deeplob(c) => {
                let m = models::DeepLob::load(ws, c)?;
                let f = Box::new(fast::FastDeepLob::of(&m)?);
                Net::DeepLob(m, f)
            }
            ModelSpec::Transformer(c) => {
                let m = models::TransLob::load(ws, c)?;
                let f = fast::FastTransLob::of(&m)?;
                Net::TransLob(m, f)
            }
        };
        Ok(Model { spec: spec.clone(), net })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Logits through the candle twins (the reference the fast path is tested against):
    /// [batch, seq, features] f32 → [batch, classes].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, f) = x.dims3()?;
        if f != self.spec.n_features() {
            return Err(ServeError::Input(format!("{} expects {} features per step, got {f}", self.spec.name(), self.spec.n_features())));
        }
        match &self.net {
            Net::Rnn(m, _) => m.forward(x),
            Net::DeepLob(m, _) => m.forward(x),
            Net::TransLob(m, _) => m.forward(x),
        }
    }

    /// Logits for a row-major `[batch, seq, features]` buffer; returns `[batch × classes]`.
    /// Runs on the fast kernels ([`fast`]); inputs they do not take (too short a window) go to
    /// the candle twins, which refuse them with the reason.
    pub fn logits(&self, data: &[f32], batch: usize, seq: usize) -> Result<Vec<f32>> {
        let f = self.check(data, batch, seq)?;
        match &self.net {
            Net::Rnn(_, fast) if seq > 0 => Ok(fast.logits(data, batch, seq)),
            Net::DeepLob(m, fast) if seq > flowcast_contract::spec::DEEPLOB_TIME_SHRINK && f == 4 * m.levels => {
                Ok(fast.logits(data, batch, seq))
            }
            Net::TransLob(m, fast) if seq == m.window => Ok(fast.logits(data, batch, seq)),
            _ => self.logits_reference(data, batch, seq),
        }
    }

    /// [`Model::logits`] through the candle twins only.
    pub fn logits_reference(&self, data: &[f32], batch: usize, seq: usize) -> Result<Vec<f32>> {
        self.check(data, batch, seq)?;
        let x = Tensor::from_slice(data, (batch, seq, self.spec.n_features()), &Device::Cpu)?;
        Ok(self.forward(&x)?.flatten_all()?.to_vec1()?)
    }

    fn check(&self, data: &[f32], batch: usize, seq: usize) -> Result<usize> {
        let f = self.spec.n_features();
        if data.len() != batch * seq * f {
            return Err(ServeError::Input(format!("buffer of {} values is not {batch}×{seq}×{f}", data.len())));
        }
        Ok(f)
    }
}
