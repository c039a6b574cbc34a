//! Errors of the training crate: each names the file (and line or field) it is about.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad experiment file: `file:line: reason` (line 0 when the problem spans keys).
    #[error("{file}:{line}: {reason}")]
    Config { file: String, line: u64, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] flowcast_datasets::DataError),
    #[error(transparent)]
    Model(#[from] flowcast_models::ModelError),
    #[error(transparent)]
    Contract(#[from] flowcast_contract::ContractError),
    /// A model card or run file that fails validation: `file: field: reason`.
    #[error("{}: {field}: {reason}", file.display())]
    Card { file: PathBuf, field: String, reason: String },
    /// The data cannot feed the experiment (too few windows, a class missing, ...).
    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub fn io(path: &Path, source: std::io::Error) -> TrainError {
        TrainError::Io { path: path.to_path_buf(), source }
    }
    pub fn card(file: &Path, field: &str, reason: impl Into<String>) -> TrainError {
        TrainError::Card { file: file.to_path_buf(), field: field.into(), reason: reason.into() }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Pretty JSON plus a newline to `path` (run files: config.json, run.json, importance.json, ...).
pub(crate) fn write_json(path: &std::path::Path, v: &impl serde::Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(v).expect("json") + "\n").map_err(|e| TrainError::io(path, e))
}
