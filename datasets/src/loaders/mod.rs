//! Loaders: each maps one real source format into canonical [`Event`]s.
//!
//! Every loader offers `import` (build datasets) and `check` (verify the rebuilt book against the
//! source's own reference: LOBSTER's orderbook file, Binance's bookTicker stream, Kraken's CRC32
//! checksums, ...). Both return a [`Report`] whose keys are documented in docs/data.md.
//!
//! Module layers, bottom to top; each module imports only from layers below it (and from
//! crate-level modules such as `book`, `event`, `instrument`), never from its own layer or above:
//! 1. `text`, `cfline`, `options` ([`ImportOptions`], [`Imported`])
//! 2. `venue` (the shared half of the cryptofeed book loaders), `binance`, `lobster`
//! 3. `coinbase`, `kraken` (venue), `cryptofeed_binance` (binance)
//! 4. `cryptofeed` (the cryptofeed entry points: coinbase, kraken, cryptofeed_binance)
//! 5. this module: [`Format`] and the `import` / `check` dispatch.

use crate::error::{DataError, Result};
use crate::report::Report;
use std::path::PathBuf;

pub mod binance;
pub mod cfline;
pub mod coinbase;
pub mod cryptofeed;
pub mod cryptofeed_binance;
pub mod kraken;
pub mod lobster;
mod options;
pub mod text;
mod venue;

pub use options::{ImportOptions, Imported};

/// Source formats known to `flowcast data import --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// LOBSTER message + orderbook CSV pair (any level count).
    Lobster,
    /// Binance recordings: `<local_ts_ns> <json>` lines, combined streams + REST snapshot line.
    Binance,
    /// cryptofeed raw recordings of Binance (REST snapshot file + websocket diff file).
    CryptofeedBinance,
    /// cryptofeed raw recordings of Coinbase level2 (snapshot + l2update).
    CryptofeedCoinbase,
    /// cryptofeed raw recordings of Kraken book (with CRC32 checksums).
    CryptofeedKraken,
}

impl Format {
    pub const ALL: [Format; 5] =
        [Format::Lobster, Format::Binance, Format::CryptofeedBinance, Format::CryptofeedCoinbase, Format::CryptofeedKraken];
    pub fn name(self) -> &'static str {
        match self {
            Format::Lobster => "lobster",
            Format::Binance => "binance",
            Format::CryptofeedBinance => "cryptofeed-binance",
            Format::CryptofeedCoinbase => "cryptofeed-coinbase",
            Format::CryptofeedKraken => "cryptofeed-kraken",
        }
    }
    pub fn parse(s: &str) -> Result<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
            DataError::Invalid(format!("unknown format {s:?}; known: {}", names.join(", ")))
        })
    }
}

/// Import `inputs` of `format`.
pub fn import(format: Format, inputs: &[PathBuf], opts: &ImportOptions) -> Result<Imported> {
    match format {
        Format::Lobster => lobster::import(inputs, opts),
        Format::Binance => binance::import(inputs, opts),
        Format::CryptofeedBinance => cryptofeed::import_binance(inputs, opts),
        Format::CryptofeedCoinbase => cryptofeed::import_coinbase(inputs, opts),
        Format::CryptofeedKraken => cryptofeed::import_kraken(inputs, opts),
    }
}

/// Check `inputs` of `format` against the source's own reference; `report.ok` is the verdict.
pub fn check(format: Format, inputs: &[PathBuf], opts: &ImportOptions) -> Result<Report> {
    match format {
        Format::Lobster => lobster::check(inputs, opts),
        Format::Binance => binance::check(inputs, opts),
        Format::CryptofeedBinance => cryptofeed::check_binance(inputs, opts),
        Format::CryptofeedCoinbase => cryptofeed::check_coinbase(inputs, opts),
        Format::CryptofeedKraken => cryptofeed::check_kraken(inputs, opts),
    }
}
