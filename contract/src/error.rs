//! Errors of the contract crate: each names the file (and field or line) or the input field it
//! is about.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A model card, config document or run file that fails validation: `file: field: reason`.
    #[error("{}: {field}: {reason}", file.display())]
    Card { file: PathBuf, field: String, reason: String },
    /// Input handed to a predictor that does not fit it: `input: field: reason`.
    #[error("input: {field}: {reason}")]
    Input { field: String, reason: String },
    /// The data cannot feed the preprocessing (too few rows, no labelled window, ...).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Data(#[from] flowcast_datasets::DataError),
}

impl ContractError {
    pub fn io(path: &Path, source: std::io::Error) -> ContractError {
        ContractError::Io { path: path.to_path_buf(), source }
    }
    pub fn card(file: &Path, field: &str, reason: impl Into<String>) -> ContractError {
        ContractError::Card { file: file.to_path_buf(), field: field.into(), reason: reason.into() }
    }
    pub fn input(field: &str, reason: impl Into<String>) -> ContractError {
        ContractError::Input { field: field.into(), reason: reason.into() }
    }
}

pub type Result<T, E = ContractError> = std::result::Result<T, E>;
