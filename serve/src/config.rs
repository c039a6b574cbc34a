//! The config JSON written by `flowcast_models::export` (`model_config.json`), read without burn.
//! Field sets are closed (`deny_unknown_fields`): a field this reader does not know means the
//! exporter changed the architecture, and guessing would give wrong logits.

use crate::error::{Result, ServeError};
use serde::Deserialize;
use std::path::Path;

pub const CONFIG_FORMAT: &str = "flowcast-model-config";
pub const CONFIG_VERSION: u64 = 1;

/// Recurrent cell of an LSTM/GRU classifier (burn's `RnnCell`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum RnnCell {
    Lstm,
    Gru,
}

#[derive(Clone, Debug, Deserialize)]
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

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepLobSpec {
    pub levels: usize,
    pub n_classes: usize,
    pub conv_channels: usize,
    pub inception_channels: usize,
    pub lstm_hidden: usize,
}

#[derive(Clone, Debug, Deserialize)]
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
#[derive(Clone, Debug, Deserialize)]
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
        let bad = |reason: String| ServeError::Config { path: origin.to_path_buf(), reason };
        match doc.get("format").and_then(|v| v.as_str()) {
            Some(CONFIG_FORMAT) => {}
            other => return Err(bad(format!("field 'format': expected \"{CONFIG_FORMAT}\", got {other:?}"))),
        }
        match doc.get("version").and_then(|v| v.as_u64()) {
            Some(CONFIG_VERSION) => {}
            other => return Err(bad(format!("field 'version': expected {CONFIG_VERSION}, got {other:?}"))),
        }
        let body = serde_json::json!({ "architecture": doc.get("architecture"), "config": doc.get("config") });
        let spec: ModelSpec = serde_json::from_value(body).map_err(|e| bad(format!("field 'config': {e}")))?;
        spec.check().map_err(bad)?;
        Ok(spec)
    }

    /// Reads and parses a config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Io { path: path.to_path_buf(), source })?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ServeError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
        Self::from_document(&doc, path)
    }

    fn check(&self) -> Result<(), String> {
        let positive = |pairs: &[(&str, usize)]| -> Result<(), String> {
            match pairs.iter().find(|(_, v)| *v == 0) {
                Some((k, _)) => Err(format!("field 'config.{k}' must be at least 1")),
                None => Ok(()),
            }
        };
        match self {
            ModelSpec::Lstm(c) | ModelSpec::Gru(c) => {
                let want = if matches!(self, ModelSpec::Lstm(_)) { RnnCell::Lstm } else { RnnCell::Gru };
                if c.cell != want {
                    return Err(format!("field 'config.cell': {:?} under architecture {:?}", c.cell, want));
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
                    return Err(format!("field 'config.heads': {} does not divide d_model {}", c.heads, c.d_model()));
                }
                if c.conv_layers > 16 {
                    return Err("field 'config.conv_layers': at most 16".into());
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
