//! `flowcast`: the command-line edge of the framework (anyhow errors, tracing logs, clap).
//!
//! This file holds the top-level command enum, logging setup, dispatch and exit codes; each
//! command group's arguments and handlers live in `cli/`.

mod cli;

use clap::{Parser, Subcommand};
use cli::analyze::AnalyzeCmd;
use cli::backtest::BacktestArgs;
use cli::bench::BenchCmd;
use cli::collect::CollectCmd;
use cli::data::DataCmd;
use cli::features::FeaturesCmd;
use cli::models::ModelsCmd;
use cli::serve::ServeArgs;
use cli::sweep::SweepArgs;
use cli::train::{EvalArgs, ReproduceArgs, TrainArgs};

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
    /// Serve exported models over the Open Inference Protocol (KServe v2): REST and gRPC,
    /// tensor mode (docs/serve.md).
    Serve(ServeArgs),
    /// Execution-aware backtest of a strategy on model signals: queue position, latency, fees,
    /// slippage, risk limits; P&L against latency (docs/backtest.md).
    Backtest(BacktestArgs),
    /// Hyperparameter sweeps: grid, random or TPE over any experiment key, ASHA early stopping,
    /// trials on local worker processes or a Slurm job array, coordinated by one journal file
    /// (docs/sweeps.md).
    Sweep(SweepArgs),
    /// Live data: record Binance streams, poll the order-book imbalance, run the mock exchange
    /// (docs/live.md).
    #[command(subcommand)]
    Collect(CollectCmd),
}

/// Training allocates the same large buffers every step (activations, tapes, gradients). glibc
/// serves blocks over its dynamic mmap threshold with fresh `mmap`s and returns freed heap tops
/// to the OS, so each step paid page faults and kernel zeroing again: ≈ 9 % of a DeepLOB step
/// (perf), and DeepLOB trained ≈ 1.25× faster with freed memory kept for reuse (docs/models.md
/// "Speed (CPU)"). The resident size then stays at its peak instead of shrinking between steps,
/// so the long-running `serve` and `collect` keep glibc's defaults.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::os::raw::c_int, value: std::os::raw::c_int) -> std::os::raw::c_int;
        }
        // glibc <malloc.h>: M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3 (at most 32 MiB on 64-bit).
        const M_TRIM_THRESHOLD: std::os::raw::c_int = -1;
        const M_MMAP_THRESHOLD: std::os::raw::c_int = -3;
        // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
        let ok = unsafe { mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 };
        if !ok {
            tracing::debug!("mallopt refused the allocator settings; glibc defaults stay");
        }
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("FLOWCAST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Cli::parse();
    if !matches!(args.cmd, Cmd::Serve(_) | Cmd::Collect(_)) {
        keep_freed_memory();
    }
    let result = match args.cmd {
        Cmd::Data(c) => cli::data::run(c),
        Cmd::Features(c) => cli::features::run(c),
        Cmd::Analyze(c) => cli::analyze::run(c),
        Cmd::Models(c) => cli::models::run(c),
        Cmd::Train(a) => cli::train::run_train(a, false),
        Cmd::Run(a) => cli::train::run_train(a, true),
        Cmd::Reproduce(a) => cli::train::run_reproduce(a),
        Cmd::Eval(a) => cli::train::run_eval(a, flowcast_train::run::Engine::Burn),
        Cmd::Predict(a) => cli::train::run_eval(a, flowcast_train::run::Engine::Candle),
        Cmd::Bench(c) => cli::bench::run(c),
        Cmd::Serve(a) => cli::serve::run(a),
        Cmd::Backtest(a) => cli::backtest::run(a),
        Cmd::Sweep(a) => cli::sweep::run(a),
        Cmd::Collect(c) => cli::collect::run(c),
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
