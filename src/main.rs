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
    /// List the deep model architectures and describe one with its trainable parameter count.
    #[command(subcommand)]
    Models(ModelsCmd),
    /// Train every model of an experiment, test it beside the baselines and export it to a run
    /// directory (docs/training.md).
    Train(TrainArgs),
    /// `train`, then reload each exported model through the serve crate's candle forward pass
    /// and compare its test predictions with burn's: the main job.
    Run(TrainArgs),
    /// Re-run a run directory's resolved experiment (same seed, same data, checked by hash) and
    /// compare every reported number and the exported weights; exit 1 when they differ.
    Reproduce(ReproduceArgs),
    /// Evaluate an exported run on another dataset (another day or instrument) with the stored
    /// preprocessing (burn forward pass).
    Eval(EvalArgs),
    /// Predict with an exported run on a dataset through the serve crate's candle forward pass
    /// (no burn), with metrics against the dataset's labels.
    Predict(EvalArgs),
    /// Training-stack benchmarks.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Args)]
struct TrainArgs {
    /// Experiment file (TOML, see experiments/ and docs/training.md).
    experiment: PathBuf,
    /// Continue the run in this directory from its last checkpoints (same experiment file).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Device override: cpu, vulkan, vulkan:N (`gpu` feature), cuda, cuda:N (`cuda` feature, untested).
    #[arg(long)]
    device: Option<String>,
    /// Where run directories go (default: the experiment's runs_dir).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Stop every model after this many epochs in this call (resume later with --resume).
    #[arg(long, default_value_t = 0)]
    stop_after_epochs: usize,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReproduceArgs {
    /// Run directory to reproduce (it holds config.json, run.json, metrics.json).
    #[arg(long)]
    run: PathBuf,
    /// Where the new run directory goes (default: beside the original).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Device override (bit-identical results are expected on cpu only).
    #[arg(long)]
    device: Option<String>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Run directory (or one model directory inside it).
    #[arg(long)]
    run: PathBuf,
    /// Dataset directory (`flowcast data import` output).
    #[arg(long)]
    data: PathBuf,
    /// Device for the burn forward pass (`eval` only).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Write each model's predictions to <out>/<model id>.parquet.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Training samples/s and inference windows/s of a model on random windows.
    Train {
        #[arg(long, default_value = "deeplob")]
        model: String,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Rows per window.
        #[arg(long, default_value_t = 100)]
        window: usize,
        /// Book levels (4 columns each).
        #[arg(long, default_value_t = 10)]
        levels: usize,
        /// Timed steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Hyperparameter override KEY=VALUE (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Reference model timed in the same process on the same windows (`none`: skip).
        #[arg(long, default_value = "lstm")]
        baseline: String,
        /// Baseline hyperparameter KEY=VALUE (repeatable; default for lstm: hidden=64).
        #[arg(long = "baseline-set", value_name = "KEY=VALUE")]
        baseline_set: Vec<String>,
        #[arg(long, default_value = "cpu")]
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Feature-engine rate (full registry and best-level OFI alone) against the raw book replay.
    Features {
        /// Dataset directory (default: a synthetic 10-level dataset generated in memory).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Feature set TOML (default: the full registry).
        #[arg(long)]
        set: Option<PathBuf>,
        /// Also time every feature alone, most expensive first.
        #[arg(long)]
        per_feature: bool,
        #[arg(long)]
        json: bool,
    },
}

fn emit_summary(s: &flowcast_train::run::Summary, json: bool) {
    if json {
        println!("{}", s.json);
    } else {
        print!("{}", s.table());
    }
}

fn run_train(a: TrainArgs, verify_export: bool) -> Result<bool> {
    let text = std::fs::read_to_string(&a.experiment).with_context(|| format!("reading {}", a.experiment.display()))?;
    let exp = flowcast_train::Experiment::load(&a.experiment)?;
    let opts = flowcast_train::run::RunOptions {
        resume: a.resume,
        progress: if a.quiet { flowcast_train::progress::Mode::Quiet } else { flowcast_train::progress::Mode::auto() },
        stop_after: a.stop_after_epochs,
        device: a.device,
        runs_dir: a.runs_dir,
        verify_export,
        expect_events_sha256: None,
    };
    let s = flowcast_train::run::run_experiment(&exp, &text, &opts)?;
    emit_summary(&s, a.json);
    Ok(true)
}

fn run_reproduce(a: ReproduceArgs) -> Result<bool> {
    let opts = flowcast_train::run::RunOptions {
        progress: if a.quiet { flowcast_train::progress::Mode::Quiet } else { flowcast_train::progress::Mode::auto() },
        device: a.device,
        runs_dir: a.runs_dir,
        verify_export: true,
        ..Default::default()
    };
    let s = flowcast_train::reproduce::reproduce(&a.run, &opts)?;
    if a.json {
        println!("{}", s.json);
    } else {
        print!("{}", s.table());
        let r = &s.json["reproduction"];
        println!("\nreproduction of {} (git {} → {}):", r["original"].as_str().unwrap_or("?"), r["git_revision"]["original"], r["git_revision"]["now"]);
        if let Some(ms) = r["models"].as_object() {
            for (id, m) in ms {
                println!(
                    "  {id:<12} weights {} · test metrics {} (max |Δ| {})",
                    if m["weights_identical"] == true { "identical" } else { "DIFFER" },
                    if m["metrics_identical"] == true { "identical" } else { "DIFFER" },
                    m["max_abs_diff"]
                );
            }
        }
        println!("  baselines    {}", if r["baselines"]["identical"] == true { "identical" } else { "DIFFER" });
    }
    Ok(s.json["ok"] == true)
}

fn run_eval(a: EvalArgs, engine: flowcast_train::run::Engine) -> Result<bool> {
    let device = flowcast_train::run::device_of(&a.device)?;
    let s = flowcast_train::run::evaluate(&a.run, &a.data, engine, &device, a.out.as_deref())?;
    emit_summary(&s, a.json);
    Ok(true)
}

fn run_bench(c: BenchCmd) -> Result<bool> {
    let (model, batch, window, levels, steps, set, baseline, baseline_set, device, json) = match c {
        BenchCmd::Train { model, batch, window, levels, steps, set, baseline, baseline_set, device, json } => {
            (model, batch, window, levels, steps, set, baseline, baseline_set, device, json)
        }
        BenchCmd::Features { data, set, per_feature, json } => {
            use flowcast_datasets::features::{bench, bench_per_feature, FeatureSet};
            let ds = match &data {
                Some(d) => store::read_dataset(d)?,
                None => flowcast_datasets::synth::synth_dataset(10, 200_000, 1)?,
            };
            let fs = match &set {
                Some(p) => FeatureSet::from_toml(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)?,
                None => FeatureSet::default_set(),
            };
            let mut report = bench(&ds, &fs)?;
            if per_feature {
                report.set("per_feature", bench_per_feature(&ds, &fs)?.fields);
            }
            emit(&report, json);
            return Ok(report.ok);
        }
    };
    let baseline = match baseline.as_str() {
        "none" => None,
        name => {
            let default_lstm = name == "lstm" && baseline_set.is_empty();
            let set = if default_lstm { vec!["hidden=64".to_string()] } else { baseline_set };
            Some((name.to_string(), parse_overrides(&set)?))
        }
    };
    let spec = flowcast_train::bench::BenchSpec {
        model,
        params: parse_overrides(&set)?,
        baseline,
        batch,
        window,
        features: 4 * levels,
        classes: 3,
        steps,
        device,
    };
    let r = flowcast_train::bench::run(&spec)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("model        {} ({} trainable params) on {}", r.model, r.params, r.device);
        println!("input        batch {} × window {} × {} features", r.batch, r.window, r.features);
        println!("training     {:.1} samples/s ({} steps, {:.2} s)", r.train_samples_per_s, r.steps, r.train_seconds);
        println!("inference    {:.1} windows/s (burn)", r.infer_windows_per_s);
        println!(
            "             {:.1} windows/s (candle, flowcast-serve, CPU) = {:.2}× burn",
            r.candle_infer_windows_per_s, r.candle_vs_burn_infer
        );
        if let Some(b) = &r.baseline {
            println!(
                "baseline     {} ({} params): training {:.1} samples/s, inference {:.1} windows/s",
                b.model, b.params, b.train_samples_per_s, b.infer_windows_per_s
            );
            println!(
                "cost ratio   {} is {:.2}× the baseline per training sample, {:.2}× per inference window",
                r.model,
                r.train_cost_vs_baseline.unwrap_or(f64::NAN),
                r.infer_cost_vs_baseline.unwrap_or(f64::NAN)
            );
        }
    }
    Ok(true)
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

#[derive(Subcommand)]
enum ModelsCmd {
    /// Every registered architecture (parameter counts at 40 features, 3 classes).
    List {
        #[arg(long)]
        json: bool,
    },
    /// One architecture: resolved config, tensors, module tree and trainable parameters.
    Describe {
        /// Registry name (lstm, gru, deeplob, transformer).
        name: String,
        /// Hyperparameter override KEY=VALUE (repeatable); also features=N, classes=N.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long)]
        json: bool,
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

/// `KEY=VALUE` pairs as a hyperparameter table; VALUE is read as JSON (numbers, booleans) and
/// falls back to a string.
fn parse_overrides(set: &[String]) -> Result<flowcast_models::Params> {
    let mut params = flowcast_models::Params::new();
    for kv in set {
        let Some((k, v)) = kv.split_once('=') else { bail!("--set {kv:?}: expected KEY=VALUE") };
        let value = serde_json::from_str(v.trim()).unwrap_or_else(|_| serde_json::Value::String(v.trim().to_string()));
        params.insert(k.trim().to_string(), value);
    }
    Ok(params)
}

fn run_models(cmd: ModelsCmd) -> Result<bool> {
    match cmd {
        ModelsCmd::List { json } => {
            let models = flowcast_models::list();
            if json {
                let rows: Vec<_> = models
                    .iter()
                    .map(|(a, p)| serde_json::json!({"name": a.name(), "summary": a.summary(), "reference": a.reference(), "params": p}))
                    .collect();
                println!("{}", serde_json::json!({ "models": rows }));
            } else {
                println!("{:<12} {:>10}  summary (params at 40 features, 3 classes)", "model", "params");
                for (a, p) in &models {
                    println!("{:<12} {:>10}  {}", a.name(), p, a.summary());
                }
            }
        }
        ModelsCmd::Describe { name, set, json } => {
            let d = flowcast_models::describe(&name, &parse_overrides(&set)?)?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!("model      {}\nsummary    {}\nreference  {}", d.name, d.summary, d.reference);
                println!("input      [batch, seq, {}] -> logits [batch, {}]", d.n_features, d.n_classes);
                println!("params     {} trainable", d.params);
                println!("config     {}", d.model["config"]);
                println!("tensors    {} in model.safetensors", d.tensors.len());
                for t in &d.tensors {
                    println!("  {:<48} {:?}", t.name, t.shape);
                }
                println!("architecture\n{}", d.architecture);
            }
        }
    }
    Ok(true)
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
        Cmd::Models(c) => run_models(c),
        Cmd::Train(a) => run_train(a, false),
        Cmd::Run(a) => run_train(a, true),
        Cmd::Reproduce(a) => run_reproduce(a),
        Cmd::Eval(a) => run_eval(a, flowcast_train::run::Engine::Burn),
        Cmd::Predict(a) => run_eval(a, flowcast_train::run::Engine::Candle),
        Cmd::Bench(c) => run_bench(c),
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
