//! `flowcast bench`: training-stack benchmarks (model training/inference rate, feature engine).

use super::{emit, parse_overrides};
use anyhow::{Context, Result};
use clap::Subcommand;
use flowcast_datasets::{store, Report};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCmd {
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
    /// Backtest replay rate (book + strategy + order and queue simulation) against the bare book
    /// replay on the same events; a model's cost (signals) timed separately.
    Backtest {
        /// The backtest file (its strategy, exchange models and signal source).
        config: PathBuf,
        /// Dataset directory instead of the file's `[data]`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Timed passes (the best is reported).
        #[arg(long, default_value_t = 5)]
        passes: usize,
        #[arg(long)]
        json: bool,
    },
}

fn bench_backtest(config: &std::path::Path, data: Option<&std::path::Path>, passes: usize, json: bool) -> Result<bool> {
    use flowcast_backtest::run::replay;
    let mut cfg = flowcast_backtest::config::BacktestConfig::load(config)?;
    if let Some(d) = data {
        cfg.data = flowcast_datasets::source::DataSpec { synthetic: None, dataset: Some(d.to_path_buf()), import: None };
    }
    let ds = cfg.data.load(cfg.seed)?;
    let t = std::time::Instant::now();
    let signals = match &cfg.signal {
        Some(s) => flowcast_backtest::signals::load(s, &ds)?,
        None => flowcast_backtest::signals::Signals {
            points: vec![],
            source: "none".into(),
            compute_ns_per_window: None,
            dropped_in_sample: 0,
            rule: Default::default(),
        },
    };
    let signal_s = t.elapsed().as_secs_f64();
    let (mut book_best, mut bt_best, mut fills) = (f64::INFINITY, f64::INFINITY, 0);
    for _ in 0..passes.max(1) {
        let t = std::time::Instant::now();
        let mut n = 0u64;
        ds.replay(|_, b| n += b.best_bid().is_some() as u64);
        std::hint::black_box(n);
        book_best = book_best.min(t.elapsed().as_secs_f64());
        let t = std::time::Instant::now();
        let o = replay(&cfg, &ds, &signals, &cfg.latency)?;
        bt_best = bt_best.min(t.elapsed().as_secs_f64());
        fills = o.fills.len();
    }
    let ev = ds.events.len() as f64;
    let mut r = Report::new(true);
    r.set("config", config.display().to_string())
        .set("strategy", cfg.strategy.name())
        .set("events", ds.events.len())
        .set("passes", passes)
        .set("book_replay_events_per_s", ev / book_best)
        .set("backtest_events_per_s", ev / bt_best)
        .set("backtest_vs_book_replay", book_best / bt_best)
        .set("fills", fills)
        .set("signal_source", signals.source.clone())
        .set("signal_points", signals.points.len())
        .set("signal_seconds", signal_s)
        .set("model_ns_per_window", signals.compute_ns_per_window);
    emit(&r, json);
    Ok(true)
}

pub fn run(c: BenchCmd) -> Result<bool> {
    if let BenchCmd::Backtest { config, data, passes, json } = &c {
        return bench_backtest(config, data.as_deref(), *passes, *json);
    }
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
        BenchCmd::Backtest { .. } => unreachable!("handled above"),
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
