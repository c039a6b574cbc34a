//! The model registry: architectures by name, hyperparameters from a TOML/JSON table, the
//! resolved config that export writes, and the trainable-parameter count.

use crate::deeplob::{DeepLob, DeepLobConfig};
use crate::error::{ModelError, Result};
use crate::rnn::{RnnCell, RnnClassifier, RnnClassifierConfig};
use crate::translob::{TransLob, TransLobConfig};
use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Hyperparameter overrides as an experiment's `[model]` table (TOML converts losslessly into it).
pub type Params = Map<String, Value>;

/// The architectures the registry knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Lstm,
    Gru,
    Deeplob,
    Transformer,
}

impl Architecture {
    pub const ALL: [Architecture; 4] = [Architecture::Lstm, Architecture::Gru, Architecture::Deeplob, Architecture::Transformer];

    /// Registry name (what an experiment writes as `model = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Lstm => "lstm",
            Architecture::Gru => "gru",
            Architecture::Deeplob => "deeplob",
            Architecture::Transformer => "transformer",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name.to_ascii_lowercase())
            .ok_or_else(|| ModelError::UnknownModel { name: name.into(), known: Self::ALL.map(|a| a.name()).join(", ") })
    }

    /// One-line description for `models list`.
    pub fn summary(self) -> &'static str {
        match self {
            Architecture::Lstm => "stacked (optionally bidirectional) LSTM, last hidden state -> linear",
            Architecture::Gru => "stacked (optionally bidirectional) GRU, last hidden state -> linear",
            Architecture::Deeplob => "CNN + Inception + LSTM over 4*levels book columns",
            Architecture::Transformer => "TransLOB: causal dilated convs + positional channel + transformer encoder",
        }
    }

    /// Paper the architecture follows.
    pub fn reference(self) -> &'static str {
        match self {
            Architecture::Lstm => "Hochreiter & Schmidhuber (1997), Neural Computation 9(8)",
            Architecture::Gru => "Cho et al. (2014), arXiv:1406.1078",
            Architecture::Deeplob => "Zhang, Zohren & Roberts (2019), IEEE Trans. Signal Process. 67(11), arXiv:1808.03668",
            Architecture::Transformer => "Wallbridge (2020), Transformers for limit order books, arXiv:2003.00130",
        }
    }
}

/// A fully resolved model: architecture plus every hyperparameter, shapes included. This is
/// what `export::save` writes as JSON and what the candle twin in `flowcast-serve` reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "architecture", content = "config", rename_all = "lowercase")]
pub enum ModelConfig {
    Lstm(RnnClassifierConfig),
    Gru(RnnClassifierConfig),
    Deeplob(DeepLobConfig),
    Transformer(TransLobConfig),
}

/// Keys of a config that come from the data, not from the experiment's hyperparameters.
const DATA_KEYS: [&str; 3] = ["cell", "d_input", "n_classes"];

impl ModelConfig {
    /// The architecture's defaults for `n_features` inputs and `n_classes` outputs, with
    /// `params` applied on top (unknown keys and bad values are errors naming the key).
    pub fn resolve(arch: Architecture, params: &Params, n_features: usize, n_classes: usize) -> Result<Self> {
        let name = arch.name();
        if n_features == 0 {
            return Err(ModelError::shape(name, "the data has no feature columns"));
        }
        if n_classes < 2 {
            return Err(ModelError::shape(name, format!("needs at least 2 classes, got {n_classes}")));
        }
        let default = match arch {
            Architecture::Lstm => ModelConfig::Lstm(RnnClassifierConfig::new(RnnCell::Lstm, n_features, n_classes)),
            Architecture::Gru => ModelConfig::Gru(RnnClassifierConfig::new(RnnCell::Gru, n_features, n_classes)),
            Architecture::Deeplob => {
                if !n_features.is_multiple_of(4) {
                    return Err(ModelError::shape(
                        name,
                        format!("input must be 4 columns per level (ask price, ask size, bid price, bid size); got {n_features} columns"),
                    ));
                }
                if let Some(v) = params.get("levels") {
                    if v.as_u64() != Some(n_features as u64 / 4) {
                        return Err(ModelError::bad(
                            name,
                            "levels",
                            format!("{v} does not match the data's {n_features} columns (= {} levels)", n_features / 4),
                        ));
                    }
                }
                ModelConfig::Deeplob(DeepLobConfig::new(n_features / 4, n_classes))
            }
            Architecture::Transformer => ModelConfig::Transformer(TransLobConfig::new(n_features, n_classes)),
        };
        let mut json = serde_json::to_value(&default).expect("configs serialise");
        let fields = json["config"].as_object_mut().expect("config is an object");
        let known: Vec<String> = fields.keys().filter(|k| !DATA_KEYS.contains(&k.as_str())).cloned().collect();
        for (key, value) in params {
            if DATA_KEYS.contains(&key.as_str()) || !fields.contains_key(key) {
                return Err(ModelError::UnknownParam { model: name.into(), key: key.clone(), known: known.join(", ") });
            }
            // Type-check each key on its own so the error names it.
            let old = fields.insert(key.clone(), value.clone()).expect("known key");
            if !same_kind(&old, value) {
                return Err(ModelError::bad(name, key, format!("expected {}, got {value}", kind(&old))));
            }
        }
        let config: ModelConfig = serde_json::from_value(json).map_err(|e| ModelError::bad(name, "?", e.to_string()))?;
        config.validate().map_err(|(key, reason)| ModelError::bad(name, key, reason))?;
        Ok(config)
    }

    pub fn architecture(&self) -> Architecture {
        match self {
            ModelConfig::Lstm(_) => Architecture::Lstm,
            ModelConfig::Gru(_) => Architecture::Gru,
            ModelConfig::Deeplob(_) => Architecture::Deeplob,
            ModelConfig::Transformer(_) => Architecture::Transformer,
        }
    }

    /// The contract schema of this config (`flowcast_contract::spec`): the same JSON, read by
    /// the contract's closed field sets, so a burn field the schema lacks fails here, at
    /// export, not at serve time.
    pub fn spec(&self) -> Result<flowcast_contract::ModelSpec> {
        serde_json::from_value(self.to_json()).map_err(|e| ModelError::Config {
            path: std::path::PathBuf::from(flowcast_contract::files::CONFIG_FILE),
            reason: format!("the {} config does not fit the contract schema: {e}", self.architecture().name()),
        })
    }

    /// The burn config of a contract spec.
    pub fn from_spec(spec: &flowcast_contract::ModelSpec) -> Result<Self> {
        let v = serde_json::to_value(spec).expect("specs serialise");
        serde_json::from_value(v)
            .map_err(|e| ModelError::Config { path: flowcast_contract::files::CONFIG_FILE.into(), reason: e.to_string() })
    }

    fn schema(&self) -> flowcast_contract::ModelSpec {
        self.spec().expect("registry configs fit the contract schema (tested in export.rs)")
    }

    /// Feature columns per time step the model expects.
    pub fn n_features(&self) -> usize {
        self.schema().n_features()
    }

    pub fn n_classes(&self) -> usize {
        self.schema().n_classes()
    }

    /// Checks that windows of `window` steps fit the architecture (the contract's rule: DeepLOB
    /// loses 18 steps to unpadded convolutions; the transformer's head is built for one window).
    pub fn check_window(&self, window: usize) -> Result<()> {
        self.schema().check_window(window).map_err(|reason| ModelError::shape(self.architecture().name(), reason))
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        match self {
            ModelConfig::Lstm(c) | ModelConfig::Gru(c) => c.validate(),
            ModelConfig::Deeplob(c) => c.validate(),
            ModelConfig::Transformer(c) => c.validate(),
        }
    }

    /// Builds the module with fresh weights on `device` (seed the device first for
    /// reproducibility: `device.seed(s)`).
    pub fn init(&self, device: &Device) -> Model {
        match self {
            ModelConfig::Lstm(c) | ModelConfig::Gru(c) => Model::Rnn(c.init(device)),
            ModelConfig::Deeplob(c) => Model::Deeplob(c.init(device)),
            ModelConfig::Transformer(c) => Model::Transformer(c.init(device)),
        }
    }

    /// The config as JSON (`{"architecture": ..., "config": {...}}`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("configs serialise")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Null => "null",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

fn same_kind(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Number(o), Value::Number(n)) => o.is_f64() || !n.is_f64() && n.as_u64().is_some(),
        (Value::Bool(_), Value::Bool(_)) | (Value::String(_), Value::String(_)) => true,
        _ => false,
    }
}

/// Names and shapes of the tensors `export::save` writes for `model`, in module order.
pub fn tensor_infos(model: &Model) -> Vec<TensorInfo> {
    use burn::store::ModuleSnapshot;
    model
        .collect(None, None, true)
        .into_iter()
        .map(|t| TensorInfo { name: t.name.clone(), shape: t.shape.iter().copied().collect() })
        .collect()
}

/// Every architecture behind one type, so a generic training loop holds any of them.
// One instance per trained model: the size difference between variants costs nothing, and
// boxing would put a `Box` between burn's `Module` derive and the modules it names.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model {
    Rnn(RnnClassifier),
    Deeplob(DeepLob),
    Transformer(TransLob),
}

impl Model {
    /// [batch, seq, features] → logits [batch, classes]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        match self {
            Model::Rnn(m) => m.forward(x),
            Model::Deeplob(m) => m.forward(x),
            Model::Transformer(m) => m.forward(x),
        }
    }
}

/// Builds a model by registry name: hyperparameters from `params`, shapes from the data.
/// Returns the resolved config too (export writes it beside the weights).
pub fn build(name: &str, params: &Params, n_features: usize, n_classes: usize, device: &Device) -> Result<(Model, ModelConfig)> {
    let config = ModelConfig::resolve(Architecture::parse(name)?, params, n_features, n_classes)?;
    Ok((config.init(device), config))
}

/// Trainable parameters of `module`: float parameters that require gradients, so BatchNorm
/// running statistics are excluded. Only meaningful on an autodiff device (elsewhere nothing
/// requires gradients); [`trainable_params_of`] builds on one for you.
pub fn trainable_params<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if t.is_require_grad() {
                self.0 += t.shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    module.visit(&mut c);
    c.0
}

/// Trainable parameter count of a config: the module is built on an autodiff CPU device and
/// counted by [`trainable_params`], never by formula.
pub fn trainable_params_of(config: &ModelConfig) -> usize {
    let device = Device::flex().autodiff();
    trainable_params(&config.init(&device))
}

/// One stored tensor: its safetensors name and shape.
#[derive(Clone, Debug, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// What `flowcast models describe` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Description {
    pub name: String,
    pub summary: String,
    pub reference: String,
    /// The resolved config (same JSON as export writes).
    pub model: Value,
    pub n_features: usize,
    pub n_classes: usize,
    /// Trainable parameters, counted from the module.
    pub params: usize,
    /// Every tensor export writes (trainable parameters and BatchNorm running statistics).
    pub tensors: Vec<TensorInfo>,
    /// burn's module tree.
    pub architecture: String,
}

/// Describes an architecture with `overrides` applied. Besides the architecture's own
/// hyperparameters, `features` (default 40, or 4·levels for DeepLOB) and `classes` (default 3)
/// set the data shape.
pub fn describe(name: &str, overrides: &Params) -> Result<Description> {
    let arch = Architecture::parse(name)?;
    let mut params = overrides.clone();
    let take = |params: &mut Params, key: &str| -> Result<Option<usize>> {
        match params.remove(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| ModelError::bad(arch.name(), key, format!("expected an integer, got {v}"))),
        }
    };
    let features = take(&mut params, "features")?;
    let classes = take(&mut params, "classes")?.unwrap_or(3);
    let levels = params.get("levels").and_then(Value::as_u64).map(|l| l as usize);
    let features = features.or(levels.map(|l| 4 * l)).unwrap_or(40);
    let config = ModelConfig::resolve(arch, &params, features, classes)?;
    let device = Device::flex().autodiff();
    let model = config.init(&device);
    let params = trainable_params(&model);
    let tensors = tensor_infos(&model);
    Ok(Description {
        name: arch.name().into(),
        summary: arch.summary().into(),
        reference: arch.reference().into(),
        model: config.to_json(),
        n_features: features,
        n_classes: classes,
        params,
        tensors,
        architecture: format!("{model}"),
    })
}

/// `(name, summary, default trainable params for 40 features / 3 classes)` of every architecture.
pub fn list() -> Vec<(Architecture, usize)> {
    Architecture::ALL
        .into_iter()
        .map(|a| {
            let c = ModelConfig::resolve(a, &Params::new(), 40, 3).expect("defaults are valid");
            (a, trainable_params_of(&c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Params {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn deeplob_trainable_params_match_the_paper() {
        // Zhang, Zohren & Roberts' PyTorch reference: 10 levels (40 inputs), 3 classes.
        let c = ModelConfig::resolve(Architecture::Deeplob, &Params::new(), 40, 3).unwrap();
        assert_eq!(trainable_params_of(&c), 143_907);
        // Running statistics are not trainable: the raw float count is larger.
        let m = c.init(&Device::flex());
        assert_eq!(m.num_params(), 143_907 + 2 * (9 * 32 + 5 * 64));
    }

    #[test]
    fn lstm_count_agrees_with_the_formula() {
        // 4 gates × (W_x + b_x + W_h + b_h) + head.
        let c = ModelConfig::resolve(Architecture::Lstm, &Params::new(), 40, 3).unwrap();
        assert_eq!(trainable_params_of(&c), 4 * (40 * 64 + 64 + 64 * 64 + 64) + 64 * 3 + 3);
        let c = ModelConfig::resolve(Architecture::Gru, &p(json!({"hidden": 8, "bidirectional": true})), 5, 2).unwrap();
        assert_eq!(trainable_params_of(&c), 2 * 3 * (5 * 8 + 8 + 8 * 8 + 8) + 16 * 2 + 2);
    }

    #[test]
    fn every_model_maps_batch_seq_features_to_logits() {
        let device = Device::flex();
        for (name, hp, f, seq) in [
            ("lstm", json!({"layers": 2, "hidden": 8}), 6, 5),
            ("gru", json!({"bidirectional": true, "hidden": 8}), 6, 5),
            ("deeplob", json!({"conv_channels": 4, "inception_channels": 4, "lstm_hidden": 4}), 4, 20),
            ("transformer", json!({"window": 12}), 6, 12),
        ] {
            let (m, c) = build(name, &p(hp), f, 3, &device).unwrap();
            c.check_window(seq).unwrap();
            let y = m.forward(Tensor::zeros([2, seq, f], &device));
            assert_eq!(y.dims(), [2, 3], "{name}");
        }
    }

    #[test]
    fn bad_hyperparameters_are_errors_naming_the_key() {
        let e = ModelConfig::resolve(Architecture::Lstm, &p(json!({"hiden": 3})), 4, 3).unwrap_err().to_string();
        assert!(e.contains("unknown hyperparameter 'hiden'") && e.contains("hidden"), "{e}");
        let e = ModelConfig::resolve(Architecture::Lstm, &p(json!({"hidden": "big"})), 4, 3).unwrap_err().to_string();
        assert!(e.contains("'hidden'") && e.contains("integer"), "{e}");
        let e = ModelConfig::resolve(Architecture::Lstm, &p(json!({"layers": 0})), 4, 3).unwrap_err().to_string();
        assert!(e.contains("'layers'"), "{e}");
        let e = ModelConfig::resolve(Architecture::Transformer, &p(json!({"heads": 4})), 4, 3).unwrap_err().to_string();
        assert!(e.contains("'heads'") && e.contains("15"), "{e}");
        let e = ModelConfig::resolve(Architecture::Deeplob, &Params::new(), 42, 3).unwrap_err().to_string();
        assert!(e.contains("4 columns per level"), "{e}");
        let e = ModelConfig::resolve(Architecture::Deeplob, &p(json!({"levels": 5})), 40, 3).unwrap_err().to_string();
        assert!(e.contains("'levels'"), "{e}");
        let e = ModelConfig::resolve(Architecture::Lstm, &p(json!({"d_input": 5})), 4, 3).unwrap_err().to_string();
        assert!(e.contains("unknown hyperparameter 'd_input'"), "{e}");
        assert!(Architecture::parse("cnn").unwrap_err().to_string().contains("lstm, gru, deeplob, transformer"));
        let c = ModelConfig::resolve(Architecture::Lstm, &p(json!({"dropout": 0})), 4, 3).unwrap();
        assert!(matches!(c, ModelConfig::Lstm(ref r) if r.dropout == 0.0));
    }

    #[test]
    fn windows_are_checked() {
        let d = ModelConfig::resolve(Architecture::Deeplob, &Params::new(), 40, 3).unwrap();
        assert!(d.check_window(18).is_err() && d.check_window(19).is_ok());
        let t = ModelConfig::resolve(Architecture::Transformer, &Params::new(), 40, 3).unwrap();
        assert!(t.check_window(100).is_ok() && t.check_window(50).unwrap_err().to_string().contains("window = 50"));
    }

    #[test]
    fn describe_level1_deeplob() {
        let d = describe("deeplob", &p(json!({"levels": 1}))).unwrap();
        assert_eq!(d.n_features, 4);
        // Only conv3's (1, levels) kernel depends on the levels: 32·32·(10 − 1) fewer weights.
        assert_eq!(d.params, 143_907 - 32 * 32 * 9);
    }
}
