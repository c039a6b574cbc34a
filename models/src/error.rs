//! Errors of model construction, configuration and export.

use std::path::PathBuf;

/// Everything that can go wrong building, configuring, saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The registry has no architecture of that name.
    #[error("unknown model '{name}' (known: {known})")]
    UnknownModel { name: String, known: String },
    /// A hyperparameter override names no field of the architecture's config.
    #[error("model '{model}': unknown hyperparameter '{key}' (known: {known})")]
    UnknownParam { model: String, key: String, known: String },
    /// A hyperparameter has the wrong type or an invalid value.
    #[error("model '{model}': hyperparameter '{key}': {reason}")]
    BadParam { model: String, key: String, reason: String },
    /// Input shape (features, window) incompatible with the architecture.
    #[error("model '{model}': {reason}")]
    Shape { model: String, reason: String },
    /// Reading or writing an export file.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A config JSON file that does not parse or does not describe a model.
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    /// burn-store failed to write or apply the safetensors file.
    #[error("{}: safetensors: {reason}", path.display())]
    Store { path: PathBuf, reason: String },
}

impl ModelError {
    pub(crate) fn bad(model: &str, key: &str, reason: impl Into<String>) -> Self {
        ModelError::BadParam { model: model.into(), key: key.into(), reason: reason.into() }
    }
    pub(crate) fn shape(model: &str, reason: impl Into<String>) -> Self {
        ModelError::Shape { model: model.into(), reason: reason.into() }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
