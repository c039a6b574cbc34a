//! Errors that name where bad input is, and the `--lenient` collector that counts instead of failing.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where in the input a problem is: file, 1-based line (or row), and the field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: String,
    pub line: u64,
    pub field: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.field)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Malformed input: `file:line: field: reason`.
    #[error("{file}:{line}: {field}: {reason}")]
    Parse { file: String, line: u64, field: String, reason: String },
    /// The io error is part of the message (not a `source`), so `{:#}` chains don't repeat it.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: parquet: {msg}")]
    Store { path: PathBuf, msg: String },
    /// The input is well-formed but inconsistent (crossed book, unsynchronisable stream, ...).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub fn parse(file: &str, line: u64, field: &str, reason: impl Into<String>) -> DataError {
        DataError::Parse { file: file.into(), line, field: field.into(), reason: reason.into() }
    }
    pub fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io { path: path.to_path_buf(), err: source }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// How many bad lines were skipped under `--lenient`, and the first few of them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BadLines {
    /// Whether bad lines are skipped (true) or the first one aborts the import (false).
    #[serde(skip)]
    pub lenient: bool,
    /// Number of skipped lines.
    pub count: u64,
    /// The first [`BadLines::KEEP`] as `file:line: field: reason`.
    pub first: Vec<String>,
}

impl BadLines {
    pub const KEEP: usize = 10;

    pub fn new(lenient: bool) -> BadLines {
        BadLines { lenient, count: 0, first: Vec::new() }
    }

    /// Under `--lenient`, record the error and return `Ok(())` so the caller skips the line;
    /// otherwise return the error so the import stops with it. Non-parse errors always propagate.
    pub fn handle(&mut self, err: DataError) -> Result<()> {
        match err {
            DataError::Parse { .. } if self.lenient => {
                self.count += 1;
                if self.first.len() < Self::KEEP {
                    self.first.push(err.to_string());
                }
                Ok(())
            }
            other => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_propagates_lenient_counts() {
        let e = || DataError::parse("f.csv", 7, "price", "not a number: \"x\"");
        assert_eq!(e().to_string(), "f.csv:7: price: not a number: \"x\"");
        let mut strict = BadLines::new(false);
        assert!(strict.handle(e()).is_err());
        let mut lenient = BadLines::new(true);
        for _ in 0..12 {
            lenient.handle(e()).unwrap();
        }
        assert_eq!(lenient.count, 12);
        assert_eq!(lenient.first.len(), BadLines::KEEP);
        assert!(lenient.handle(DataError::Invalid("crossed".into())).is_err());
    }
}
