//! Export: the weights as `model.safetensors` (burn-store, burn's native layout, no enum
//! variant names) and the resolved config as `model_config.json`. `flowcast-serve` loads exactly
//! these two files; docs/models.md lists every tensor name and layout.

use crate::error::{ModelError, Result};
use crate::registry::{Model, ModelConfig};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use flowcast_contract::spec::ModelSpec;
use serde_json::Value;
use std::path::{Path, PathBuf};

pub use flowcast_contract::files::{CONFIG_FILE, CONFIG_FORMAT, CONFIG_VERSION, WEIGHTS_FILE};

/// The contract schema of a burn config (`ModelConfig::spec`).
pub fn spec_of(config: &ModelConfig) -> Result<ModelSpec> {
    config.spec()
}

/// The burn config of a contract spec (`ModelConfig::from_spec`).
pub fn config_of(spec: &ModelSpec) -> Result<ModelConfig> {
    ModelConfig::from_spec(spec)
}

/// The config document written beside the weights:
/// `{"format", "version", "architecture", "config": {...}}` (`ModelSpec::document`).
pub fn config_document(config: &ModelConfig) -> Value {
    spec_of(config).expect("registry configs fit the contract schema (tested)").document()
}

/// Parses a config document (format, version and fields checked by the contract).
pub fn parse_config_document(doc: &Value, origin: &Path) -> Result<ModelConfig> {
    let spec =
        ModelSpec::from_document(doc, origin).map_err(|e| ModelError::Config { path: origin.to_path_buf(), reason: e.to_string() })?;
    config_of(&spec)
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
    let result = model.load_from(&mut store(&weights)).map_err(|e| ModelError::Store { path: weights.clone(), reason: e.to_string() })?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(ModelError::Store { path: weights, reason: result.to_string() });
    }
    Ok((model, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{list, Architecture, Params};
    use serde_json::json;

    fn p(v: Value) -> Params {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn config_document_round_trips_through_the_contract_schema() {
        let c = ModelConfig::resolve(Architecture::Transformer, &p(json!({"depth": 3})), 8, 2).unwrap();
        let doc = config_document(&c);
        assert_eq!(doc["architecture"], "transformer");
        assert_eq!(doc["config"]["depth"], 3);
        let back = parse_config_document(&doc, Path::new("x.json")).unwrap();
        assert_eq!(back.to_json(), c.to_json());
        let mut wrong = doc.clone();
        wrong["version"] = json!(99);
        assert!(parse_config_document(&wrong, Path::new("x.json")).unwrap_err().to_string().contains("version"));
    }

    /// Every architecture of the registry, with its defaults: the burn config and the contract
    /// spec are the same document and agree on inputs, classes and which windows fit.
    #[test]
    fn every_registry_config_is_the_contract_schema() {
        for (arch, _) in list() {
            let c = ModelConfig::resolve(arch, &Params::new(), 40, 3).unwrap();
            let spec = spec_of(&c).unwrap();
            assert_eq!(serde_json::to_value(&spec).unwrap(), c.to_json(), "{}", arch.name());
            assert_eq!(config_of(&spec).unwrap().to_json(), c.to_json());
            assert_eq!((spec.n_features(), spec.n_classes(), spec.name()), (c.n_features(), c.n_classes(), arch.name()));
            for w in [1, 18, 19, 50, 100] {
                assert_eq!(spec.check_window(w).is_ok(), c.check_window(w).is_ok(), "{} window {w}", arch.name());
            }
        }
    }
}
