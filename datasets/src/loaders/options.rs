//! What every loader takes ([`ImportOptions`]) and returns ([`Imported`]).

use crate::report::Report;
use crate::store::Dataset;

/// Options shared by all loaders (CLI flags of `flowcast data import|check`).
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Skip and count malformed lines instead of stopping at the first.
    pub lenient: bool,
    /// Depth of the stored top-N snapshots.
    pub levels: usize,
    /// Override the instrument's tick size (decimal string).
    pub tick_size: Option<String>,
    /// Override the number of decimals of sizes.
    pub size_scale: Option<u32>,
    /// Select one product in multi-product recordings (Coinbase "BTC-USD", Kraken "XBT/USD").
    pub symbol: Option<String>,
    /// Trading date `YYYY-MM-DD` for sources whose times are relative to midnight (LOBSTER);
    /// by default taken from the file name.
    pub date: Option<String>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { lenient: false, levels: 10, tick_size: None, size_scale: None, symbol: None, date: None }
    }
}

/// Result of an import: one dataset per instrument found, and the import report.
#[derive(Debug)]
pub struct Imported {
    pub datasets: Vec<Dataset>,
    pub report: Report,
}
