//! cryptofeed raw recordings (line format: [`super::cfline`]): the entry points of the three
//! venues. Coinbase level2 lives in `coinbase.rs`, Kraken book (with CRC32 checksums) in
//! `kraken.rs`, both built on the shared half in `venue.rs`; Binance in `cryptofeed_binance.rs`
//! (it shares the synchronisation logic of `binance.rs`).
use super::options::{ImportOptions, Imported};
use super::venue::{import_venue, run};
use super::{coinbase, cryptofeed_binance, kraken};
use crate::error::Result;
use crate::report::Report;
use std::path::PathBuf;

pub fn import_binance(i: &[PathBuf], o: &ImportOptions) -> Result<Imported> {
    cryptofeed_binance::import(i, o)
}
pub fn check_binance(i: &[PathBuf], o: &ImportOptions) -> Result<Report> {
    cryptofeed_binance::check(i, o)
}
/// Coinbase `level2` (+ `matches` as trades, `ticker` as the check's reference), one dataset per
/// product (or only `opts.symbol`); see `coinbase.rs`.
pub fn import_coinbase(i: &[PathBuf], o: &ImportOptions) -> Result<Imported> {
    import_venue::<coinbase::Loader>(i, o)
}
/// Rebuild every product's book and compare it with the ticker channel; see
/// `coinbase::BBO_MIN_AGREEMENT`.
pub fn check_coinbase(i: &[PathBuf], o: &ImportOptions) -> Result<Report> {
    Ok(run::<coinbase::Loader>(i, o)?.1)
}
/// Kraken `book-N`, one dataset per pair, validating every CRC32 checksum on the way; see
/// `kraken.rs`.
pub fn import_kraken(i: &[PathBuf], o: &ImportOptions) -> Result<Imported> {
    import_venue::<kraken::Loader>(i, o)
}
/// Rebuild every pair's book and validate Kraken's checksum after every update; `ok` = at least
/// one checksum checked and none failed.
pub fn check_kraken(i: &[PathBuf], o: &ImportOptions) -> Result<Report> {
    Ok(run::<kraken::Loader>(i, o)?.1)
}
