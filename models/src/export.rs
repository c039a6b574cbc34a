//! Export: the weights as `model.safetensors` (burn-store, burn's native layout, no enum
//! variant names) and the resolved config as `model_config.json`. `flowcast-serve` loads exactly
//! these two files; docs/models.md lists every tensor name and layout.

use crate::error::{ModelError, Result};
use crate::registry::{Model, ModelConfig, TensorInfo};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Weights file name inside an export directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Config file name inside an export directory.
pub const CONFIG_FILE: &str = "model_config.json";
/// `format` field of the config JSON; readers reject anything else.
pub const CONFIG_FORMAT: &str = "flowcast-model-config";
/// Version of the config JSON layout and tensor naming.
pub const CONFIG_VERSION: u64 = 1;

/// The config document written beside the weights:
/// `{"format", "version", "architecture", "config": {...}}`.
pub fn config_document(config: &ModelConfig) -> Value {
    let mut doc = json!({ "format": CONFIG_FORMAT, "version": CONFIG_VERSION });
    let body = config.to_json();
    let obj = doc.as_object_mut().expect("object");
    for (k, v) in body.as_object().expect("tagged config is an object") {
        obj.insert(k.clone(), v.clone());
    }
    doc
}

/// Parses a config document, checking its format and version.
pub fn parse_config_document(doc: &Value, origin: &Path) -> Result<ModelConfig> {
    let bad = |reason: String| ModelError::Config { path: origin.to_path_buf(), reason };
    match doc.get("format").and_then(Value::as_str) {
        Some(CONFIG_FORMAT) => {}
        other => return Err(bad(format!("field 'format': expected \"{CONFIG_FORMAT}\", got {other:?}"))),
    }
    match doc.get("version").and_then(Value::as_u64) {
        Some(CONFIG_VERSION) => {}
        other => return Err(bad(format!("field 'version': expected {CONFIG_VERSION}, got {other:?}"))),
    }
    let body = json!({ "architecture": doc.get("architecture"), "config": doc.get("config") });
    serde_json::from_value(body).map_err(|e| bad(format!("field 'config': {e}")))
}

fn store(path: &Path) -> SafetensorsStore {
    // Enum variant names (Model::Deeplob, RnnLayer::Lstm) stay out of tensor names: the config
    // already says which architecture it is.
    SafetensorsStore::from_file(path).skip_enum_variants(true)
}

/// Writes `dir/model.safetensors` and `dir/model_config.json` (creating `dir`). Returns the two
/// paths.
pub fn save(model: &Model, config: &ModelConfig, dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
    let weights = dir.join(WEIGHTS_FILE);
    let mut st = store(&weights)
        .overwrite(true)
        .metadata("flowcast_version", env!("CARGO_PKG_VERSION"))
        .metadata("architecture", config.architecture().name());
    model.save_into(&mut st).map_err(|e| ModelError::Store { path: weights.clone(), reason: e.to_string() })?;
    let cfg = dir.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config_document(config)).expect("json");
    std::fs::write(&cfg, text + "\n").map_err(|source| ModelError::Io { path: cfg.clone(), source })?;
    Ok((weights, cfg))
}

/// Reads the config of an export directory.
pub fn load_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| ModelError::Config { path: path.clone(), reason: e.to_string() })?;
    parse_config_document(&doc, &path)
}

/// Loads an export directory back into burn (resume, evaluation). Every tensor must be present
/// with the right shape and none may be left over.
pub fn load(dir: &Path, device: &Device) -> Result<(Model, ModelConfig)> {
    let config = load_config(dir)?;
    let mut model = config.init(device);
    let weights = dir.join(WEIGHTS_FILE);
    let result = model
        .load_from(&mut store(&weights))
        .map_err(|e| ModelError::Store { path: weights.clone(), reason: e.to_string() })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(ModelError::Store { path: weights, reason: result.to_string() });
    }
    Ok((model, config))
}

/// Names and shapes of the tensors [`save`] writes for `model`, in module order.
pub fn tensor_infos(model: &Model) -> Vec<TensorInfo> {
    model
        .collect(None, None, true)
        .into_iter()
        .map(|t| TensorInfo { name: t.name.clone(), shape: t.shape.iter().copied().collect() })
        .collect()
}
