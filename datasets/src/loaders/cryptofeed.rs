//! cryptofeed raw recordings (in progress).
use super::{ImportOptions, Imported};
use crate::error::{DataError, Result};
use crate::report::Report;
use std::path::PathBuf;

fn todo<T>() -> Result<T> {
    Err(DataError::Invalid("cryptofeed loaders not built yet".into()))
}
pub fn import_binance(_i: &[PathBuf], _o: &ImportOptions) -> Result<Imported> { todo() }
pub fn check_binance(_i: &[PathBuf], _o: &ImportOptions) -> Result<Report> { todo() }
pub fn import_coinbase(_i: &[PathBuf], _o: &ImportOptions) -> Result<Imported> { todo() }
pub fn check_coinbase(_i: &[PathBuf], _o: &ImportOptions) -> Result<Report> { todo() }
pub fn import_kraken(_i: &[PathBuf], _o: &ImportOptions) -> Result<Imported> { todo() }
pub fn check_kraken(_i: &[PathBuf], _o: &ImportOptions) -> Result<Report> { todo() }
