//! Synthetic LOB generator (in progress).
use crate::error::{DataError, Result};
use crate::report::Report;
use crate::store::Dataset;
use std::path::Path;

/// Generate a synthetic dataset in memory.
pub fn synth_dataset(_levels: usize, _events: usize, _seed: u64) -> Result<Dataset> {
    Err(DataError::Invalid("synthetic generator not built yet".into()))
}

/// `flowcast data synth`.
pub fn run_cli(_levels: usize, _events: usize, _seed: u64, _out: &Path) -> Result<Report> {
    Err(DataError::Invalid("synthetic generator not built yet".into()))
}
