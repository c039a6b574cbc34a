//! The model card `model.json`: everything needed to reproduce a model's inputs and judge its
//! outputs, beside `model.safetensors` (weights) and `model_config.json` (architecture, as
//! flowcast-models exports it). Loading validates every field: a card that disagrees with its
//! weights, its own inputs or itself is rejected naming the field. Fields: docs/training.md.

use crate::baselines::Baselines;
use crate::data::{DataInfo, Preprocessing};
use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

pub const CARD_FILE: &str = "model.json";
pub const CARD_FORMAT: &str = "flowcast-model-card";
pub const CARD_VERSION: u32 = 1;

/// One tensor of the weights file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsEntry {
    pub file: String,
    pub sha256: String,
    pub tensors: Vec<TensorEntry>,
}

/// What training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingEntry {
    pub seed: u64,
    /// The experiment's `[training]` table, resolved.
    pub spec: serde_json::Value,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub class_weights: Option<Vec<f32>>,
    pub train_windows: usize,
    pub validation_windows: usize,
    pub device: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub format: String,
    pub version: u32,
    pub flowcast_version: String,
    /// Experiment name and model id within it.
    pub experiment: String,
    pub model_id: String,
    /// `model_config.json`'s document: `{format, version, architecture, config}`.
    pub model: serde_json::Value,
    /// Trainable parameters.
    pub params: usize,
    pub weights: WeightsEntry,
    /// Input columns (with the fitted feature set), window length, normalisation statistics
    /// and the label definition with its α.
    pub preprocessing: Preprocessing,
    /// Class names in logit order.
    pub classes: Vec<String>,
    pub training_data: DataInfo,
    pub training: TrainingEntry,
    /// Fitted baselines (applied unchanged by `eval`).
    pub baselines: Baselines,
    /// Test metrics of the model and the baselines on the training run's test split.
    pub metrics: serde_json::Value,
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let b = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    Ok(Sha256::digest(&b).iter().map(|x| format!("{x:02x}")).collect())
}

/// A safetensors file split into its bytes, the header's tensor entries (without
/// `__metadata__`) and the offset where tensor data starts (8-byte LE length + JSON header).
fn read_safetensors(path: &Path) -> Result<(Vec<u8>, serde_json::Map<String, serde_json::Value>, usize)> {
    let b = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let bad = |r: String| TrainError::card(path, "header", r);
    let n = u64::from_le_bytes(b.get(..8).ok_or_else(|| bad("file shorter than 8 bytes".into()))?.try_into().unwrap()) as usize;
    let h = b.get(8..8 + n).ok_or_else(|| bad(format!("header of {n} bytes runs past the end")))?;
    let v: serde_json::Value = serde_json::from_slice(h).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(mut map) = v else { return Err(bad("header is not an object".into())) };
    map.remove("__metadata__");
    Ok((b, map, 8 + n))
}

/// Tensor names, dtypes and shapes from a safetensors header.
pub fn safetensors_header(path: &Path) -> Result<Vec<TensorEntry>> {
    let bad = |r: String| TrainError::card(path, "header", r);
    let (_, map, _) = read_safetensors(path)?;
    let mut out: Vec<TensorEntry> = map
        .iter()
        .map(|(k, t)| {
            Ok(TensorEntry {
                name: k.clone(),
                dtype: t["dtype"].as_str().ok_or_else(|| bad(format!("{k}: no dtype")))?.to_string(),
                shape: serde_json::from_value(t["shape"].clone()).map_err(|e| bad(format!("{k}: shape: {e}")))?,
            })
        })
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// SHA-256 over the tensors of a safetensors file — for each tensor in name order: name, dtype,
/// shape and data bytes — ignoring the header's key order and metadata, which are not
/// byte-stable across writes. Equal digests mean bit-identical weights.
pub fn tensors_sha256(path: &Path) -> Result<String> {
    let bad = |r: String| TrainError::card(path, "header", r);
    let (b, map, start) = read_safetensors(path)?;
    let body = &b[start..];
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let mut d = Sha256::new();
    for k in names {
        let t = &map[k];
        let off = |i: usize| t["data_offsets"][i].as_u64().map(|x| x as usize).ok_or_else(|| bad(format!("{k}: no data_offsets")));
        let data = body.get(off(0)?..off(1)?).ok_or_else(|| bad(format!("{k}: data_offsets past the end")))?;
        d.update(k.as_bytes());
        d.update(t["dtype"].to_string().as_bytes());
        d.update(t["shape"].to_string().as_bytes());
        d.update(data);
    }
    Ok(d.finalize().iter().map(|x| format!("{x:02x}")).collect())
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

impl ModelCard {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CARD_FILE);
        std::fs::write(&p, serde_json::to_string_pretty(self).expect("card serialises") + "\n").map_err(|e| TrainError::io(&p, e))
    }

    /// Load `dir/model.json` and validate it against itself and the weights beside it.
    pub fn load(dir: &Path) -> Result<ModelCard> {
        let p = dir.join(CARD_FILE);
        let s = std::fs::read_to_string(&p).map_err(|e| TrainError::io(&p, e))?;
        let mut card: ModelCard =
            serde_json::from_str(&s).map_err(|e| TrainError::card(&p, &format!("line {}", e.line()), e.to_string()))?;
        // The normaliser's per-column (shift, scale) is derived state: rebuild it from the stats.
        card.preprocessing.normalizer = flowcast_datasets::normalize::Normalizer::from_json(
            &card.preprocessing.normalizer.to_json(),
            &format!("{}: preprocessing.normalizer", p.display()),
        )?;
        card.validate(dir)?;
        Ok(card)
    }

    /// Every check `load` makes; errors name the field.
    pub fn validate(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CARD_FILE);
        let err = |field: &str, r: String| Err(TrainError::card(&p, field, r));
        if self.format != CARD_FORMAT {
            return err("format", format!("{:?}, expected {CARD_FORMAT:?}", self.format));
        }
        if self.version != CARD_VERSION {
            return err("version", format!("{}, expected {CARD_VERSION}", self.version));
        }
        if self.flowcast_version.is_empty() {
            return err("flowcast_version", "empty".into());
        }
        let config = flowcast_models::export::parse_config_document(&self.model, &p)?;
        let pre = &self.preprocessing;
        let f = pre.names.len();
        if config.n_features() != f {
            return err("model.config", format!("{} input features, but preprocessing.names has {f}", config.n_features()));
        }
        if config.n_classes() != self.classes.len() {
            return err("classes", format!("{} names for a model with {} classes", self.classes.len(), config.n_classes()));
        }
        if self.classes != pre.label.classes {
            return err("classes", format!("{:?} differ from preprocessing.label.classes {:?}", self.classes, pre.label.classes));
        }
        if pre.window == 0 {
            return err("preprocessing.window", "0".into());
        }
        config.check_window(pre.window).map_err(|e| TrainError::card(&p, "preprocessing.window", e.to_string()))?;
        let book = if pre.columns == crate::config::ColumnKind::Features { 0 } else { 4 * pre.levels };
        if pre.names[..book.min(f)] != crate::data::book_names(pre.levels)[..book.min(f)] || book > f {
            return err("preprocessing.names", format!("do not start with the {} book-level columns of {} levels", book, pre.levels));
        }
        if pre.normalizer.check_names(&pre.names).is_err() {
            return err("preprocessing.normalizer", "its columns differ from preprocessing.names".into());
        }
        let has_features = pre.columns != crate::config::ColumnKind::Book;
        if has_features != !pre.feature_set.is_null() {
            return err("preprocessing.feature_set", format!("must be {} for columns = {:?}", if has_features { "a feature set" } else { "null" }, pre.columns));
        }
        if has_features {
            let set = flowcast_datasets::features::FeatureSet::from_json(&pre.feature_set.to_string())
                .map_err(|e| TrainError::card(&p, "preprocessing.feature_set", e.to_string()))?;
            let n = set.names();
            if pre.names[book..] != n[..] {
                return err("preprocessing.feature_set", "its columns differ from preprocessing.names".into());
            }
        }
        if !(pre.label.alpha.is_finite() && pre.label.alpha >= 0.0) {
            return err("preprocessing.label.alpha", format!("{} is not a finite threshold", pre.label.alpha));
        }
        if !is_hex64(&self.training_data.events_sha256) {
            return err("training_data.events_sha256", "not a SHA-256 hex digest".into());
        }
        if self.baselines.majority.frequencies.len() != self.classes.len() || self.baselines.ofi_logistic.coef.len() != self.classes.len() {
            return err("baselines", "not fitted for this number of classes".into());
        }
        for key in ["accuracy", "macro_f1", "mcc"] {
            if !self.metrics["test"][key].is_number() {
                return err(&format!("metrics.test.{key}"), "missing".into());
            }
        }
        // The weights: file present, hash as recorded, tensors exactly as recorded.
        let w = dir.join(&self.weights.file);
        let sha = sha256_file(&w)?;
        if sha != self.weights.sha256 {
            return err("weights.sha256", format!("{} does not match {} ({sha})", self.weights.sha256, w.display()));
        }
        let mut want = self.weights.tensors.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        let got = safetensors_header(&w)?;
        if got != want {
            let first = got.iter().zip(&want).find(|(a, b)| a != b).map(|(a, b)| format!("{} vs {}", a.name, b.name));
            return err("weights.tensors", format!("differ from the file ({} vs {} tensors; first difference {first:?})", got.len(), want.len()));
        }
        // model_config.json beside it must be the same document.
        let cfg_path = dir.join(flowcast_models::export::CONFIG_FILE);
        let cfg_doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).map_err(|e| TrainError::io(&cfg_path, e))?)
            .map_err(|e| TrainError::card(&cfg_path, "json", e.to_string()))?;
        if cfg_doc != self.model {
            return err("model", format!("differs from {}", cfg_path.display()));
        }
        Ok(())
    }
}
