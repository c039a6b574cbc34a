//! `flowcast analyze`: analyses of stored datasets (OFI price impact).

use super::emit;
use anyhow::{Context, Result};
use clap::Subcommand;
use flowcast_datasets::store;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum AnalyzeCmd {
    /// Cont, Kukanov & Stoikov (2014): regress mid change (ticks) on OFI per interval, per window.
    OfiImpact {
        /// Dataset directory (from `data import`).
        #[arg(long)]
        data: PathBuf,
        /// Interval of each observation, e.g. 10s, 500ms.
        #[arg(long, default_value = "10s")]
        interval: String,
        /// Window of each regression, e.g. 30m, 1h (a multiple of the interval).
        #[arg(long, default_value = "30m")]
        window: String,
        /// Fewest usable intervals for a window's regression.
        #[arg(long, default_value_t = 10)]
        min_intervals: usize,
        /// Print one JSON object on stdout (`--json`), or also write it to a file (`--json FILE`).
        #[arg(long, num_args = 0..=1, default_missing_value = "-")]
        json: Option<PathBuf>,
    },
}

pub fn run(cmd: AnalyzeCmd) -> Result<bool> {
    use flowcast_datasets::analysis::ofi_impact::{ofi_impact, OfiImpactConfig};
    use flowcast_datasets::time::parse_duration;
    match cmd {
        AnalyzeCmd::OfiImpact { data, interval, window, min_intervals, json } => {
            let cfg = OfiImpactConfig {
                interval_ns: parse_duration(&interval).map_err(anyhow::Error::msg)?,
                window_ns: parse_duration(&window).map_err(anyhow::Error::msg)?,
                min_intervals,
            };
            let ds = store::read_dataset(&data)?;
            let res = ofi_impact(&ds, &cfg)?;
            let report = res.report();
            match json.as_deref() {
                Some(p) if p == Path::new("-") => emit(&report, true),
                Some(p) => {
                    std::fs::write(p, report.to_json()).with_context(|| format!("writing {}", p.display()))?;
                    print!("{}", res.table());
                }
                None => print!("{}", res.table()),
            }
            Ok(report.ok)
        }
    }
}
