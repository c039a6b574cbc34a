//! Errors of loading an exported model and running it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// The config document or card is malformed, of another format/version, or names an
    /// unknown field.
    #[error(transparent)]
    Contract(#[from] flowcast_contract::ContractError),
    /// A tensor is missing, has the wrong shape/dtype, or is left over.
    #[error("{}: tensor '{name}': {reason}", path.display())]
    Tensor { path: PathBuf, name: String, reason: String },
    /// Input of the wrong shape for the model.
    #[error("input: {0}")]
    Input(String),
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = ServeError> = std::result::Result<T, E>;
