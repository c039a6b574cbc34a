//! `flowcast`: the command-line edge of the framework (anyhow errors, tracing logs, clap).

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use flowcast_datasets::loaders::{self, Format, ImportOptions};
use flowcast_datasets::{store, Report};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "flowcast", version, about = "Limit-order-book research and forecasting")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load, check, inspect, benchmark and synthesise order-book datasets.
    #[command(subcommand)]
    Data(DataCmd),
    /// Microstructure features: the registry, and features + labels + splits for a dataset.
    #[command(subcommand)]
    Features(FeaturesCmd),
    /// Analyses of stored datasets.
    #[command(subcommand)]
    Analyze(AnalyzeCmd),
}

#[derive(Subcommand)]
enum FeaturesCmd {
    /// Print the feature registry: name, group, parameters, warm-up, reference.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Features, labels, chronological splits and train-fitted normalisation, written to --out.
    Compute(ComputeArgs),
}

#[derive(Args)]
struct ComputeArgs {
    /// Dataset directory (from `data import`).
    #[arg(long)]
    data: PathBuf,
    /// Feature set TOML (`[[feature]]` tables); default: the full registry.
    #[arg(long)]
    set: Option<PathBuf>,
    /// Output directory: features.parquet, normalization.json, feature_set.json, labels.json, summary.json.
    #[arg(long)]
    out: PathBuf,
    /// Also write features.csv.
    #[arg(long)]
    csv: bool,
    /// Print summary.json on stdout.
    #[arg(long)]
    json: bool,
    /// Training fraction of the rows (chronological).
    #[arg(long, default_value_t = 0.7)]
    train: f64,
    /// Validation fraction; the test split gets the rest.
    #[arg(long, default_value_t = 0.15)]
    validation: f64,
    /// Normalisation recorded in normalization.json: zscore, minmax, decimal.
    #[arg(long, default_value = "zscore")]
    normalization: String,
    /// k of the smoothed labels (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "10,20,50,100")]
    smooth_k: Vec<usize>,
    /// Skip the past-mean variant of the smoothed labels.
    #[arg(long)]
    no_smooth_past: bool,
    /// Fixed event (row) horizons of the return labels.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    horizons: Vec<usize>,
    /// Clock horizons of the return labels (e.g. 1s,10s,1m,5m).
    #[arg(long, value_delimiter = ',', default_value = "1s,10s,1m,5m")]
    clock: Vec<String>,
    /// Fixed class threshold alpha instead of the balanced-on-train rule.
    #[arg(long)]
    alpha: Option<f64>,
}

fn run_features(cmd: FeaturesCmd) -> Result<bool> {
    match cmd {
        FeaturesCmd::List { json } => {
            if json {
                println!("{}", flowcast_datasets::features::list_report().to_json());
            } else {
                print!("{}", flowcast_datasets::features::list_table());
            }
            Ok(true)
        }
        FeaturesCmd::Compute(a) => run_features_compute(a),
    }
}

fn run_features_compute(a: ComputeArgs) -> Result<bool> {
    use flowcast_datasets::features::FeatureSet;
    use flowcast_datasets::labels::{AlphaRule, LabelConfig};
    use flowcast_datasets::normalize::Method;
    use flowcast_datasets::prepare::{self, NormalizationChoice, PrepareConfig};
    use flowcast_datasets::splits::SplitConfig;
    let set = match &a.set {
        Some(p) => {
            let s = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            FeatureSet::from_toml(&s).with_context(|| format!("feature set {}", p.display()))?
        }
        None => FeatureSet::default_set(),
    };
    let clock = a
        .clock
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| flowcast_datasets::time::parse_duration(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let cfg = PrepareConfig {
        labels: LabelConfig {
            smooth_k: a.smooth_k,
            smooth_past: !a.no_smooth_past,
            event_horizons: a.horizons,
            clock_horizons_ns: clock,
            alpha: a.alpha.map_or(AlphaRule::BalancedOnTrain, |alpha| AlphaRule::Fixed { alpha }),
        },
        splits: SplitConfig { train: a.train, validation: a.validation },
        normalization: NormalizationChoice(Method::parse(&a.normalization)?),
    };
    let ds = store::read_dataset(&a.data)?;
    let prepared = prepare::run(&ds, &set, &cfg)?;
    let (report, summary) = prepared.write(&a.out, a.csv)?;
    if a.json {
        println!("{summary}");
    } else {
        print!("{}", report.table());
    }
    Ok(report.ok)
}

#[derive(Subcommand)]
enum AnalyzeCmd {
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

#[derive(Args, Clone)]
struct SourceArgs {
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
enum DataCmd {
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

fn emit(report: &Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
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

fn run_data(cmd: DataCmd) -> Result<bool> {
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

fn run_analyze(cmd: AnalyzeCmd) -> Result<bool> {
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

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOWCAST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Data(c) => run_data(c),
        Cmd::Features(c) => run_features(c),
        Cmd::Analyze(c) => run_analyze(c),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}
