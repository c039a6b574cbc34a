//! Backtest replay rate in a release build without the CLI's training stack:
//! `cargo run --release -p flowcast-backtest --example replay_rate -- <backtest.toml> [dataset dir] [passes]`.
//! Prints the best pass of the bare book replay and of the full backtest (book, strategy, order
//! and queue simulation) on the same events, as events/s.

use flowcast_backtest::config::BacktestConfig;
use flowcast_backtest::run::replay;
use flowcast_backtest::signals::Signals;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: replay_rate <backtest.toml> [dataset dir] [passes]");
        std::process::exit(2);
    };
    let mut cfg = BacktestConfig::load(std::path::Path::new(path))?;
    if let Some(d) = args.get(2) {
        cfg.data = flowcast_datasets::source::DataSpec { synthetic: None, dataset: Some(d.into()), import: None };
    }
    let passes: usize = args.get(3).and_then(|p| p.parse().ok()).unwrap_or(10);
    let ds = cfg.data.load(cfg.seed)?;
    let sig = Signals::of(cfg.signal.as_ref(), &ds)?;
    let (mut book, mut bt, mut fills) = (f64::INFINITY, f64::INFINITY, 0);
    for _ in 0..passes {
        let t = Instant::now();
        let mut n = 0u64;
        ds.replay(|_, b| n += b.best_bid().is_some() as u64);
        std::hint::black_box(n);
        book = book.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let o = replay(&cfg, &ds, &sig, &cfg.latency)?;
        bt = bt.min(t.elapsed().as_secs_f64());
        fills = o.fills.len();
    }
    let ev = ds.events.len() as f64;
    println!(
        "{{\"events\": {}, \"strategy\": \"{}\", \"fills\": {fills}, \"book_replay_events_per_s\": {:.0}, \"backtest_events_per_s\": {:.0}, \"model_ns_per_window\": {}}}",
        ds.events.len(),
        cfg.strategy.name(),
        ev / book,
        ev / bt,
        sig.compute_ns_per_window.map_or("null".to_string(), |x| format!("{x:.0}"))
    );
    Ok(())
}
