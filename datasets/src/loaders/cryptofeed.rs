//! cryptofeed raw recordings: Coinbase level2 and Kraken book (in progress). Binance lives in
//! `cryptofeed_binance.rs` (it shares the synchronisation logic of `binance.rs`).
use super::{ImportOptions, Imported};
use crate::error::{DataError, Result};
use crate::report::Report;
use std::path::PathBuf;

fn todo<T>() -> Result<T> {
    Err(DataError::Invalid("cryptofeed loaders not built yet".into()))
}
pub fn import_binance(i: &[PathBuf], o: &ImportOptions) -> Result<Imported> {
    super::cryptofeed_binance::import(i, o)
}
pub fn check_binance(i: &[PathBuf], o: &ImportOptions) -> Result<Report> {
    super::cryptofeed_binance::check(i, o)
}
pub fn import_coinbase(_i: &[PathBuf], _o: &ImportOptions) -> Result<Imported> { todo() }
pub fn check_coinbase(_i: &[PathBuf], _o: &ImportOptions) -> Result<Report> { todo() }
pub fn import_kraken(_i: &[PathBuf], _o: &ImportOptions) -> Result<Imported> { todo() }
pub fn check_kraken(_i: &[PathBuf], _o: &ImportOptions) -> Result<Report> { todo() }
