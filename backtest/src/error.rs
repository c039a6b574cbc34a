use std::path::{Path, PathBuf};

/// Backtest errors: configuration (naming the TOML key), data and I/O (naming the file).
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("backtest config: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Data(#[from] flowcast_datasets::DataError),
    #[error("{0}")]
    Contract(#[from] flowcast_contract::ContractError),
    #[error("{0}")]
    Serve(#[from] flowcast_serve::ServeError),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
}

impl BacktestError {
    pub fn io(path: &Path, source: std::io::Error) -> BacktestError {
        BacktestError::Io { path: path.to_path_buf(), source }
    }
    pub fn file(path: &Path, msg: impl std::fmt::Display) -> BacktestError {
        BacktestError::File { path: path.to_path_buf(), msg: msg.to_string() }
    }
}

pub type Result<T, E = BacktestError> = std::result::Result<T, E>;
