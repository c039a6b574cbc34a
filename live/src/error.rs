//! Errors of the live crate: each names what failed (URL, file, field).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{url}: HTTP {status}: {body}")]
    Http { url: String, status: u16, body: String },
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url}: websocket: {reason}")]
    WebSocket { url: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Data(#[from] flowcast_datasets::DataError),
    #[error("nats: {0}")]
    Nats(String),
    #[error("{0}")]
    Config(String),
    #[error("{what}: {reason}")]
    Parse { what: String, reason: String },
}

pub type Result<T, E = LiveError> = std::result::Result<T, E>;

impl LiveError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> LiveError {
        LiveError::Io { path: path.into(), source }
    }
    pub fn nats(e: impl std::fmt::Display) -> LiveError {
        LiveError::Nats(e.to_string())
    }
}
