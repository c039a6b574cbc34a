//! `flowcast data`: import, check, inspect, benchmark and synthesise order-book datasets.

use super::emit;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use flowcast_datasets::loaders::{self, Format, ImportOptions};
use flowcast_datasets::store;
use std::path::{Path, PathBuf};

#[derive(Args, Clone)]
pub struct SourceArgs {
    /// Source format: lobster, binance, cryptofeed-binance, cryptofeed-coinbase, cryptofeed-kraken.
    #[arg(long)]
    format: String,
    /// Input files (LOBSTER: message and orderbook CSV; Binance: one or more .gz recordings;
    /// cryptofeed: the recording files of one exchange).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Skip and count malformed lines instead of stopping at the first one.
    #[arg(long)]
    lenient: bool,
    /// Depth of the stored top-N book snapshots.
    #[arg(long, default_value_t = 10)]
    levels: usize,
    /// Tick size override (decimal string, e.g. 0.01).
    #[arg(long)]
    tick_size: Option<String>,
    /// Number of decimals of sizes (lot = 10^-N units) override.
    #[arg(long)]
    size_scale: Option<u32>,
    /// Product to select in multi-product recordings (e.g. BTC-USD, XBT/USD).
    #[arg(long)]
    symbol: Option<String>,
    /// Trading date YYYY-MM-DD for LOBSTER files not named LOBSTER's way.
    #[arg(long)]
    date: Option<String>,
}

impl SourceArgs {
    fn options(&self) -> ImportOptions {
        ImportOptions {
            lenient: self.lenient,
            levels: self.levels,
            tick_size: self.tick_size.clone(),
            size_scale: self.size_scale,
            symbol: self.symbol.clone(),
            date: self.date.clone(),
        }
    }
    fn format(&self) -> Result<Format> {
        Ok(Format::parse(&self.format)?)
    }
}

#[derive(Subcommand)]
pub enum DataCmd {
    /// Import a source into a Parquet dataset directory.
    Import {
        #[command(flatten)]
        src: SourceArgs,
        /// Output dataset directory (one subdirectory per instrument when the source has several).
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Verify a source: rebuild the book and compare it with the source's own reference.
    Check {
        #[command(flatten)]
        src: SourceArgs,
        #[arg(long)]
        json: bool,
    },
    /// Summarise a stored dataset.
    Info {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Benchmark book replay from a stored dataset (and LOBSTER CSV import when given).
    Bench {
        /// Dataset directory to replay (default: a synthetic dataset generated in memory).
        #[arg(long)]
        data: Option<PathBuf>,
        /// LOBSTER message + orderbook files to time the CSV import on.
        #[arg(long, num_args = 2)]
        lobster: Vec<PathBuf>,
        /// Replay passes per layout (more = steadier numbers).
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[arg(long)]
        json: bool,
    },
    /// Generate a synthetic L3 order book (LOBSTER files + imported dataset) and check it.
    Synth {
        #[arg(long, default_value_t = 10)]
        levels: usize,
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn write_datasets(imported: &loaders::Imported, out: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for ds in &imported.datasets {
        let dir = if imported.datasets.len() == 1 { out.to_path_buf() } else { store::default_dir(out, &ds.meta.instrument) };
        store::write_dataset(&dir, ds).with_context(|| format!("writing dataset {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), events = ds.events.len(), "dataset written");
        dirs.push(dir);
    }
    Ok(dirs)
}

pub fn run(cmd: DataCmd) -> Result<bool> {
    match cmd {
        DataCmd::Import { src, out, json } => {
            let imported = loaders::import(src.format()?, &src.inputs, &src.options())?;
            if imported.datasets.is_empty() {
                bail!("no dataset could be built from the inputs (see the report above)");
            }
            let dirs = write_datasets(&imported, &out)?;
            let mut report = imported.report.clone();
            report.set("datasets", dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>());
            emit(&report, json);
            Ok(report.ok)
        }
        DataCmd::Check { src, json } => {
            let report = loaders::check(src.format()?, &src.inputs, &src.options())?;
            emit(&report, json);
            Ok(report.ok)
        }
        DataCmd::Info { dir, json } => {
            let report = flowcast_datasets::info::info(&dir)?;
            emit(&report, json);
            Ok(report.ok)
        }
        DataCmd::Bench { data, lobster, passes, json } => {
            let report = flowcast_datasets::bench::run(data.as_deref(), &lobster, passes)?;
            emit(&report, json);
            Ok(report.ok)
        }
        DataCmd::Synth { levels, events, seed, out, json } => {
            let report = flowcast_datasets::synth::run_cli(levels, events, seed, &out)?;
            emit(&report, json);
            Ok(report.ok)
        }
    }
}
