//! The model-config schema (`model_config.json`) that both implementations of a deep model
//! follow: flowcast-models' burn configs serialise to exactly these documents (tested over the
//! whole registry) and flowcast-serve's candle twins are built from them. Field sets are closed
//! (`deny_unknown_fields`): a field this reader does not know means the exporter changed the
//! architecture, and guessing would give wrong logits.

use crate::error::{ContractError, Result};
use crate::files::{CONFIG_FORMAT, CONFIG_VERSION};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Steps DeepLOB's unpadded convolutions remove from a window (3 blocks × 2 convs of (4×1) × 3).
pub const DEEPLOB_TIME_SHRINK: usize = 18;

/// Recurrent cell of an LSTM/GRU classifier (burn's `RnnCell`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum RnnCell {
    Lstm,
    Gru,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RnnSpec {
    pub cell: RnnCell,
    pub d_input: usize,
    pub n_classes: usize,
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
    /// Training-only; ignored at inference.
    pub dropout: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepLobSpec {
    pub levels: usize,
    pub n_classes: usize,
    pub conv_channels: usize,
    pub inception_channels: usize,
    pub lstm_hidden: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransLobSpec {
    pub d_input: usize,
    pub n_classes: usize,
    pub window: usize,
    pub conv_channels: usize,
    pub conv_layers: usize,
    pub kernel_size: usize,
    pub heads: usize,
    pub depth: usize,
    /// 0 means 4 × d_model.
    pub d_ff: usize,
    pub mlp_hidden: usize,
    /// Training-only; ignored at inference.
    pub dropout: f64,
}

impl TransLobSpec {
    pub fn d_model(&self) -> usize {
        self.conv_channels + 1
    }
    pub fn d_ff_resolved(&self) -> usize {
        if self.d_ff == 0 {
            4 * self.d_model()
        } else {
            self.d_ff
        }
    }
}

/// Architecture and hyperparameters of an exported model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "architecture", content = "config", rename_all = "lowercase")]
pub enum ModelSpec {
    Lstm(RnnSpec),
    Gru(RnnSpec),
    Deeplob(DeepLobSpec),
    Transformer(TransLobSpec),
}

impl ModelSpec {
    /// Parses a config document (`{"format", "version", "architecture", "config"}`).
    pub fn from_document(doc: &serde_json::Value, origin: &Path) -> Result<Self> {
        let bad = |field: &str, reason: String| ContractError::card(origin, field, reason);
        match doc.get("format").and_then(|v| v.as_str()) {
            Some(CONFIG_FORMAT) => {}
            other => return Err(bad("format", format!("expected \"{CONFIG_FORMAT}\", got {other:?}"))),
        }
        match doc.get("version").and_then(|v| v.as_u64()) {
            Some(CONFIG_VERSION) => {}
            other => return Err(bad("version", format!("expected {CONFIG_VERSION}, got {other:?}"))),
        }
        let body = serde_json::json!({ "architecture": doc.get("architecture"), "config": doc.get("config") });
        let spec: ModelSpec = serde_json::from_value(body).map_err(|e| bad("config", e.to_string()))?;
        spec.check().map_err(|(field, reason)| bad(&field, reason))?;
        Ok(spec)
    }

    /// The document written beside the weights: `{"format", "version", "architecture", "config"}`.
    pub fn document(&self) -> serde_json::Value {
        let mut doc = serde_json::json!({ "format": CONFIG_FORMAT, "version": CONFIG_VERSION });
        let body = serde_json::to_value(self).expect("specs serialise");
        let obj = doc.as_object_mut().expect("object");
        for (k, v) in body.as_object().expect("tagged spec is an object") {
            obj.insert(k.clone(), v.clone());
        }
        doc
    }

    /// Reads and parses a config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ContractError::io(path, e))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ContractError::card(path, &format!("line {}", e.line()), e.to_string()))?;
        Self::from_document(&doc, path)
    }

    /// Checks that windows of `window` steps fit the architecture (DeepLOB loses 18 steps to
    /// unpadded convolutions; the transformer's head is built for one window length).
    pub fn check_window(&self, window: usize) -> Result<(), String> {
        match self {
            ModelSpec::Deeplob(_) if window <= DEEPLOB_TIME_SHRINK => {
                Err(format!("deeplob: window must exceed {DEEPLOB_TIME_SHRINK} steps, got {window}"))
            }
            ModelSpec::Transformer(c) if c.window != window => {
                Err(format!("transformer: built for window = {} but the data has {window}; set window = {window}", c.window))
            }
            _ if window == 0 => Err(format!("{}: window must be at least 1", self.name())),
            _ => Ok(()),
        }
    }

    fn check(&self) -> Result<(), (String, String)> {
        let positive = |pairs: &[(&str, usize)]| -> Result<(), (String, String)> {
            match pairs.iter().find(|(_, v)| *v == 0) {
                Some((k, _)) => Err((format!("config.{k}"), "must be at least 1".into())),
                None => Ok(()),
            }
        };
        match self {
            ModelSpec::Lstm(c) | ModelSpec::Gru(c) => {
                let want = if matches!(self, ModelSpec::Lstm(_)) { RnnCell::Lstm } else { RnnCell::Gru };
                if c.cell != want {
                    return Err(("config.cell".into(), format!("{:?} under architecture {:?}", c.cell, want)));
                }
                positive(&[("d_input", c.d_input), ("n_classes", c.n_classes), ("hidden", c.hidden), ("layers", c.layers)])
            }
            ModelSpec::Deeplob(c) => positive(&[
                ("levels", c.levels),
                ("n_classes", c.n_classes),
                ("conv_channels", c.conv_channels),
                ("inception_channels", c.inception_channels),
                ("lstm_hidden", c.lstm_hidden),
            ]),
            ModelSpec::Transformer(c) => {
                positive(&[
                    ("d_input", c.d_input),
                    ("n_classes", c.n_classes),
                    ("window", c.window),
                    ("conv_channels", c.conv_channels),
                    ("conv_layers", c.conv_layers),
                    ("kernel_size", c.kernel_size),
                    ("heads", c.heads),
                    ("depth", c.depth),
                    ("mlp_hidden", c.mlp_hidden),
                ])?;
                if c.d_model() % c.heads != 0 {
                    return Err(("config.heads".into(), format!("{} does not divide d_model {}", c.heads, c.d_model())));
                }
                if c.conv_layers > 16 {
                    return Err(("config.conv_layers".into(), "at most 16".into()));
                }
                Ok(())
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ModelSpec::Lstm(_) => "lstm",
            ModelSpec::Gru(_) => "gru",
            ModelSpec::Deeplob(_) => "deeplob",
            ModelSpec::Transformer(_) => "transformer",
        }
    }

    pub fn n_features(&self) -> usize {
        match self {
            ModelSpec::Lstm(c) | ModelSpec::Gru(c) => c.d_input,
            ModelSpec::Deeplob(c) => 4 * c.levels,
            ModelSpec::Transformer(c) => c.d_input,
        }
    }

    pub fn n_classes(&self) -> usize {
        match self {
            ModelSpec::Lstm(c) | ModelSpec::Gru(c) => c.n_classes,
            ModelSpec::Deeplob(c) => c.n_classes,
            ModelSpec::Transformer(c) => c.n_classes,
        }
    }
}
