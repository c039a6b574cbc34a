//! `flowcast backtest`: an execution-aware backtest of a strategy (optionally on a model's
//! signals) into a run directory; with `[walk_forward]`, retrain and trade fold by fold
//! (`walkforward`; docs/backtest.md).

use anyhow::{Context, Result};
use clap::Args;
use flowcast_backtest::config::BacktestConfig;
use flowcast_backtest::run::run_backtest;
use flowcast_datasets::source::DataSpec;
use std::path::PathBuf;

#[derive(Args)]
pub struct BacktestArgs {
    /// The backtest file (TOML).
    pub config: PathBuf,
    /// Replay the same strategy on another stored dataset directory instead of `[data]`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Constant order latencies to sweep, e.g. `0,100us,1ms,10ms,50ms` (replaces `latency_sweep`).
    #[arg(long, value_delimiter = ',')]
    pub latency_sweep: Option<Vec<String>>,
    /// Write the run under this directory instead of the file's `runs_dir`.
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// Print one JSON object (`run_dir`, `metrics`, `latency_sweep`, ...) instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: BacktestArgs) -> Result<bool> {
    let text = std::fs::read_to_string(&a.config).with_context(|| format!("reading {}", a.config.display()))?;
    let mut cfg = BacktestConfig::load(&a.config)?;
    if let Some(d) = &a.data {
        cfg.data = DataSpec { synthetic: None, dataset: Some(std::path::absolute(d).unwrap_or(d.clone())), import: None };
    }
    if let Some(s) = a.latency_sweep {
        cfg.latency_sweep = s;
    }
    if let Some(r) = a.runs_dir {
        cfg.runs_dir = r;
    }
    let ds = cfg.data.load(cfg.seed)?;
    if cfg.walk_forward.is_some() {
        let doc = super::walkforward::run(&cfg, &text, &ds, a.json)?;
        if a.json {
            println!("{}", serde_json::to_string(&doc)?);
        } else {
            print!("{}", super::walkforward::markdown(&doc));
            println!("run directory {}", doc["run_dir"].as_str().unwrap_or(""));
        }
        return Ok(true);
    }
    let r = run_backtest(&cfg, &ds, Some(&text))?;
    if a.json {
        println!("{}", serde_json::to_string(&r.summary)?);
        return Ok(true);
    }
    let m = &r.metrics;
    println!(
        "backtest {} — {} on {}",
        cfg.name,
        r.summary["strategy"].as_str().unwrap_or(""),
        r.summary["dataset"]["instrument"].as_str().unwrap_or("")
    );
    println!("  net P&L {:.4} (gross {:.4}, fees {:.4}) over {} round trips, {} fills", m.net_pnl, m.gross_pnl, m.fees, m.trades, m.fills);
    println!("  Sharpe {:.3}  Sortino {:.3}  max drawdown {:.4}  VaR95 {:.4}", m.sharpe, m.sortino, m.max_drawdown, m.var_95);
    println!(
        "  win rate {:.3}  profit factor {:.3}  avg hold {:.1}s  fill rate {:.3}  slippage {:.3} bps",
        m.win_rate, m.profit_factor, m.avg_holding_s, m.fill_rate, m.slippage_bps
    );
    for s in &m.signal {
        println!("  signal {:>6}: IC {:+.4}  rank IC {:+.4}  hit rate {:.3}  (n {})", s.horizon, s.ic, s.rank_ic, s.hit_rate, s.n);
    }
    for p in &r.sweep {
        println!("  latency {:>8}: net P&L {:+.4}  fill rate {:.3}  trades {}", p.latency, p.net_pnl, p.fill_rate, p.trades);
    }
    println!("  replay {:.0} events/s · run directory {}", r.summary["events_per_second"].as_f64().unwrap_or(0.0), r.run_dir.display());
    Ok(true)
}
