//! `flowcast bench`: training-stack benchmarks (model training/inference rate, feature engine)
//! and serving latency (`bench serve`: in-process single-window latency, loopback load).

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
    /// Serving latency: single-window p50/p99 per model kind (candle beside burn), then an
    /// open-loop loopback load over REST and gRPC on LSTM-64 (docs/serve.md "Speed").
    Serve {
        /// Rows per window.
        #[arg(long, default_value_t = 100)]
        window: usize,
        /// Book levels (4 columns each).
        #[arg(long, default_value_t = 10)]
        levels: usize,
        /// Timed single-window calls per model and stack.
        #[arg(long, default_value_t = 200)]
        iters: usize,
        /// Request rates (req/s) of the loopback load, ascending; stops at the first whose p99
        /// misses --p99-us.
        #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000,3000,5000,7500,10000")]
        rates: Vec<f64>,
        /// Seconds per rate.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// HTTP/1.1 connections of the load generator (gRPC: channels, at most 8).
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 1000.0)]
        p99_us: f64,
        /// Dynamic batching of the loopback server: most windows per model call (1 = off).
        #[arg(long, default_value_t = 1)]
        max_batch: usize,
        #[arg(long, default_value_t = 0)]
        max_queue_delay_us: u64,
        /// Only the in-process latencies.
        #[arg(long)]
        no_loopback: bool,
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
    let signals = flowcast_backtest::signals::Signals::of(cfg.signal.as_ref(), &ds)?;
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

/// Batch-64 rate and single-window latency of one export through flowcast-serve's serving path
/// (`Model::logits`) and its candle twins (`Model::logits_reference`).
#[derive(serde::Serialize)]
struct ServeRate {
    kind: String,
    threads: usize,
    serve_windows_per_s: f64,
    candle_windows_per_s: f64,
    serve_p50_us: f64,
    serve_p99_us: f64,
    candle_p50_us: f64,
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn serve_rate(kind: &str, dir: &std::path::Path, window: usize, features: usize, iters: usize) -> Result<ServeRate> {
    use std::time::{Duration, Instant};
    let m = flowcast_server::flowcast_serve::Model::load_dir(dir)?;
    let batch = 64;
    let x: Vec<f32> = (0..batch * window * features).map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0).collect();
    // Windows/s over at least 3 batches and ~1 s, after one warm-up batch.
    let rate = |reference: bool| -> Result<f64> {
        let run = || if reference { m.logits_reference(&x, batch, window) } else { m.logits(&x, batch, window) };
        std::hint::black_box(run()?);
        let (t, mut n) = (Instant::now(), 0);
        while n < 3 || t.elapsed() < Duration::from_secs(1) {
            std::hint::black_box(run()?);
            n += 1;
        }
        Ok((n * batch) as f64 / t.elapsed().as_secs_f64())
    };
    let one = &x[..window * features];
    let lat = |reference: bool, calls: usize| -> Result<Vec<u64>> {
        let run = || if reference { m.logits_reference(one, 1, window) } else { m.logits(one, 1, window) };
        for _ in 0..calls.div_ceil(10).max(3) {
            std::hint::black_box(run()?);
        }
        let mut ns: Vec<u64> = (0..calls)
            .map(|_| {
                let t = Instant::now();
                run().map(|v| {
                    std::hint::black_box(v);
                    t.elapsed().as_nanos() as u64
                })
            })
            .collect::<std::result::Result<_, _>>()?;
        ns.sort_unstable();
        Ok(ns)
    };
    let pct = |ns: &[u64], q: f64| ns[((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len()) - 1] as f64 / 1e3;
    let serve = lat(false, iters.max(1))?;
    let candle = lat(true, (iters / 4).max(5))?;
    Ok(ServeRate {
        kind: kind.into(),
        threads: rayon_threads(),
        serve_windows_per_s: rate(false)?,
        candle_windows_per_s: rate(true)?,
        serve_p50_us: pct(&serve, 0.5),
        serve_p99_us: pct(&serve, 0.99),
        candle_p50_us: pct(&candle, 0.5),
    })
}

/// `flowcast bench serve`.
#[allow(clippy::too_many_arguments)]
fn serve_bench(
    window: usize,
    levels: usize,
    iters: usize,
    rates: Vec<f64>,
    seconds: f64,
    connections: usize,
    p99_us: f64,
    batching: flowcast_server::config::Batching,
    no_loopback: bool,
    json: bool,
) -> Result<bool> {
    let features = 4 * levels;
    let tmp = tempfile::tempdir().context("temporary directory")?;
    let kinds: [(&str, &str, &[&str]); 4] = [
        ("LSTM-64", "lstm", &["hidden=64"]),
        ("DeepLOB (quickstart)", "deeplob", &["conv_channels=16", "inception_channels=16", "lstm_hidden=32"]),
        ("DeepLOB (full)", "deeplob", &[]),
        ("TransLOB", "transformer", &[]),
    ];
    let mut lat = Vec::new();
    for (i, (kind, model, set)) in kinds.iter().enumerate() {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        let dir = tmp.path().join(format!("m{i}"));
        lat.push(flowcast_train::serve_bench::single_window(kind, model, &parse_overrides(&set)?, window, features, iters, &dir)?);
    }
    // The serving path (flowcast-serve's fast kernels) against its candle twins on the same
    // exports: batch-64 windows/s and single-window p50 (docs/serve.md "Speed").
    let mut serving = Vec::new();
    for (i, (kind, _, _)) in kinds.iter().enumerate() {
        serving.push(serve_rate(kind, &tmp.path().join(format!("m{i}")), window, features, iters)?);
    }
    if !json {
        println!(
            "serving path vs candle twins, batch 64 × [{window}, {features}] windows/s and single-window p50 µs, {} rayon thread(s):",
            rayon_threads()
        );
        println!(
            "{:<22} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}",
            "model", "serve w/s", "candle w/s", "ratio", "serve p50", "candle p50", "ratio"
        );
        for r in &serving {
            println!(
                "{:<22} {:>12.0} {:>12.0} {:>6.1}× {:>12.1} {:>12.1} {:>6.1}×",
                r.kind,
                r.serve_windows_per_s,
                r.candle_windows_per_s,
                r.serve_windows_per_s / r.candle_windows_per_s,
                r.serve_p50_us,
                r.candle_p50_us,
                r.candle_p50_us / r.serve_p50_us
            );
        }
        println!();
    }
    if !json {
        println!("single window [1, {window}, {features}], {iters} calls each, p50 / p99 µs:");
        println!("{:<22} {:>9} {:>12} {:>12} {:>12} {:>12}", "model", "params", "serve p50", "serve p99", "burn p50", "burn p99");
        for l in &lat {
            println!(
                "{:<22} {:>9} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
                l.kind, l.params, l.candle_p50_us, l.candle_p99_us, l.burn_p50_us, l.burn_p99_us
            );
        }
    }
    let mut loads = Vec::new();
    if !no_loopback {
        // The LSTM-64 export (m0), served by an in-process server; model.json marks it for discovery.
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo)?;
        std::fs::rename(tmp.path().join("m0"), repo.join("lstm64"))?;
        std::fs::write(repo.join("lstm64/model.json"), "{}\n")?;
        let ops = flowcast_server::config::Ops { batching, ..Default::default() };
        let d = std::time::Duration::from_secs_f64(seconds);
        loads = flowcast_server::bench::loopback(&repo, "lstm64", window, features, &rates, d, connections, p99_us, ops)?;
        if !json {
            println!("\nloopback open-loop load, LSTM-64, one window per request, latency from the scheduled send (µs):");
            println!(
                "{:<6} {:>8} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
                "proto", "rate", "achieved", "errors", "p50", "p99", "p99.9", "max"
            );
            for p in &loads {
                for r in &p.runs {
                    println!(
                        "{:<6} {:>8.0} {:>10.0} {:>7} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
                        format!("{:?}", r.protocol).to_lowercase(),
                        r.rate,
                        r.achieved_rate,
                        r.errors,
                        r.p50_us,
                        r.p99_us,
                        r.p999_us,
                        r.max_us
                    );
                }
                match p.highest_rate {
                    Some(r) => println!("{:?}: highest tested rate with p99 < {p99_us} µs: {r} req/s", p.protocol),
                    None => println!("{:?}: no tested rate kept p99 < {p99_us} µs", p.protocol),
                }
            }
        }
    }
    if json {
        println!("{}", serde_json::json!({ "serving_path": serving, "single_window": lat, "loopback": loads }));
    }
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
        BenchCmd::Serve {
            window,
            levels,
            iters,
            rates,
            seconds,
            connections,
            p99_us,
            max_batch,
            max_queue_delay_us,
            no_loopback,
            json,
        } => {
            let batching = flowcast_server::config::Batching { max_batch, max_queue_delay_us, instances: 1 };
            return serve_bench(window, levels, iters, rates, seconds, connections, p99_us, batching, no_loopback, json);
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
