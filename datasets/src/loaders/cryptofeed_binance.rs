//! cryptofeed binance loader (in progress).
use super::{ImportOptions, Imported};
use crate::error::{DataError, Result};
use crate::report::Report;
use std::path::PathBuf;

pub fn import(_inputs: &[PathBuf], _opts: &ImportOptions) -> Result<Imported> {
    Err(DataError::Invalid("cryptofeed binance loader not built yet".into()))
}
pub fn check(_inputs: &[PathBuf], _opts: &ImportOptions) -> Result<Report> {
    Err(DataError::Invalid("cryptofeed binance check not built yet".into()))
}
