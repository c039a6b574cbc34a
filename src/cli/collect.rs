//! `flowcast collect`: record Binance market data, poll the order-book imbalance, or run the
//! loopback mock exchange (docs/live.md).

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use flowcast_datasets::loaders::binance::Market;
use flowcast_datasets::time::parse_duration;
use flowcast_live::binance::{endpoints, BinanceConfig};
use flowcast_live::mock::{Faults, MockConfig, MockExchange};
use flowcast_live::poll::PollConfig;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Subcommand)]
pub enum CollectCmd {
    /// Record Binance combined streams (depth diffs, trades, bookTicker) + REST snapshots as the
    /// gzip recordings `flowcast data import/check --format binance` read.
    Binance(BinanceArgs),
    /// Record Coinbase Exchange level2 + matches + ticker in the cryptofeed format
    /// `flowcast data import/check --format cryptofeed-coinbase` read.
    Coinbase(CoinbaseArgs),
    /// Poll the REST depth at a fixed cadence and write the imbalance CSV + JSON summary.
    Poll(PollArgs),
    /// Serve a loopback mock Binance that replays recordings, with optional faults.
    Mock(MockArgs),
}

fn market(s: &str) -> Result<Market> {
    Market::parse(s).ok_or_else(|| anyhow!("--market {s:?}: expected spot, usdm or coinm"))
}

fn duration(flag: &str, s: &str) -> Result<Duration> {
    let ns = parse_duration(s).map_err(|e| anyhow!("--{flag}: {e}"))?;
    Ok(Duration::from_nanos(ns as u64))
}

#[derive(Args)]
pub struct BinanceArgs {
    /// Comma-separated symbols (BTCUSDT,ETHUSDT).
    #[arg(long, value_delimiter = ',', required = true)]
    symbols: Vec<String>,
    /// spot, usdm (USD-M futures) or coinm (COIN-M futures).
    #[arg(long, default_value = "spot")]
    market: String,
    /// Output directory (one file per symbol and hour, gaps.jsonl, collect-report.json).
    #[arg(long)]
    out: PathBuf,
    /// Stop after this long (10m, 1h); default: until Ctrl-C.
    #[arg(long)]
    duration: Option<String>,
    /// WebSocket base URL (default: the market's public endpoint).
    #[arg(long)]
    ws_url: Option<String>,
    /// REST base URL (default: the market's public endpoint).
    #[arg(long)]
    rest_url: Option<String>,
    /// Depth stream (depth@100ms; futures also depth@0ms, depth@250ms, depth@500ms).
    #[arg(long, default_value = "depth@100ms")]
    depth_stream: String,
    /// REST snapshot depth.
    #[arg(long, default_value_t = 1000)]
    depth_limit: u32,
    /// File rotation period.
    #[arg(long, default_value = "1h")]
    rotate: String,
    /// Publish the verified events to this NATS server's JetStream (nats://127.0.0.1:4222).
    #[arg(long)]
    nats: Option<String>,
    /// Tick size for symbols the loader does not know.
    #[arg(long)]
    tick_size: Option<String>,
    /// Size decimals for symbols the loader does not know.
    #[arg(long)]
    size_scale: Option<u32>,
}

#[derive(Args)]
pub struct CoinbaseArgs {
    /// Comma-separated products (BTC-USD,ETH-USD).
    #[arg(long, value_delimiter = ',', required = true)]
    products: Vec<String>,
    /// Output directory (COINBASE.ws.<stamp> per hour, coinbase-report.json).
    #[arg(long)]
    out: PathBuf,
    /// Stop after this long; default: until Ctrl-C.
    #[arg(long)]
    duration: Option<String>,
    #[arg(long, default_value = flowcast_live::coinbase::COINBASE_WS)]
    ws_url: String,
    /// level2_batch (public) or level2 (authenticated on today's feed).
    #[arg(long, default_value = "level2_batch")]
    level2_channel: String,
    #[arg(long, default_value = "1h")]
    rotate: String,
}

#[derive(Args)]
pub struct PollArgs {
    #[arg(long)]
    symbol: String,
    #[arg(long, default_value = "spot")]
    market: String,
    /// Top levels summed per side.
    #[arg(long, default_value_t = 20)]
    levels: usize,
    /// Poll cadence (1s, 500ms).
    #[arg(long, default_value = "1s")]
    interval: String,
    /// Minutes to run (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// EWMA span of OBI, in samples.
    #[arg(long, default_value_t = 30.0)]
    ema: f64,
    /// Rolling z-score window (default: one minute of samples).
    #[arg(long)]
    z_window: Option<usize>,
    /// REST base URL (default: the market's public endpoint).
    #[arg(long)]
    rest_url: Option<String>,
    /// Output directory for obi_<symbol>.csv and obi_<symbol>_summary.json.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

#[derive(Args)]
pub struct MockArgs {
    /// Recordings to replay (one symbol each, all of one market).
    #[arg(required = true)]
    recordings: Vec<PathBuf>,
    #[arg(long, default_value = "spot")]
    market: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// Replay speed (× recorded time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Recorded time to replay (30s, 5min); default: all of it.
    #[arg(long)]
    replay: Option<String>,
    /// Faults as JSON, e.g. '{"drop_diffs":[["BTCUSDT",100]],"http_errors":[["BTCUSDT",1,429,1]]}'.
    #[arg(long)]
    faults: Option<String>,
}

pub fn run(cmd: CollectCmd) -> Result<bool> {
    let rt = flowcast_live::runtime()?;
    match cmd {
        CollectCmd::Binance(a) => {
            let m = market(&a.market)?;
            let mut cfg = BinanceConfig::new(m, a.symbols.clone(), a.out.clone());
            if let Some(d) = &a.duration {
                cfg.duration = Some(duration("duration", d)?);
            }
            cfg.ws_url = a.ws_url.unwrap_or_else(|| endpoints(m).0.into());
            cfg.rest_url = a.rest_url.unwrap_or_else(|| endpoints(m).1.into());
            cfg.depth_stream = a.depth_stream;
            cfg.depth_limit = a.depth_limit;
            cfg.rotate = duration("rotate", &a.rotate)?;
            cfg.nats = a.nats;
            cfg.import.tick_size = a.tick_size;
            cfg.import.size_scale = a.size_scale;
            let report = rt.block_on(async move {
                let stop = flowcast_live::stop_on_ctrl_c();
                flowcast_live::binance::collect(cfg, stop).await
            })?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(report.symbols.iter().all(|s| s.lines > 0))
        }
        CollectCmd::Coinbase(a) => {
            let mut cfg = flowcast_live::coinbase::CoinbaseConfig::new(a.products, a.out);
            if let Some(d) = &a.duration {
                cfg.duration = Some(duration("duration", d)?);
            }
            cfg.ws_url = a.ws_url;
            cfg.level2_channel = a.level2_channel;
            cfg.rotate = duration("rotate", &a.rotate)?;
            let report = rt.block_on(async move {
                let stop = flowcast_live::stop_on_ctrl_c();
                flowcast_live::coinbase::collect(cfg, stop).await
            })?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(report.lines > 0)
        }
        CollectCmd::Poll(a) => {
            let m = market(&a.market)?;
            let interval = duration("interval", &a.interval)?;
            if a.minutes.is_nan() || a.minutes <= 0.0 {
                bail!("--minutes {}: must be positive", a.minutes);
            }
            let samples = ((a.minutes * 60.0) / interval.as_secs_f64()).round().max(1.0) as u64;
            let mut cfg = PollConfig::new(m, &a.symbol, interval, samples, &a.out);
            cfg.levels = a.levels;
            cfg.ema_span = a.ema;
            if let Some(z) = a.z_window {
                cfg.z_window = z;
            }
            if let Some(u) = a.rest_url {
                cfg.rest_url = u;
            }
            let policy = flowcast_live::poll::retry_policy(interval);
            let summary = rt.block_on(async move {
                let stop = flowcast_live::stop_on_ctrl_c();
                flowcast_live::poll::poll(cfg, policy, stop).await
            })?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(summary["ok_samples"].as_u64().unwrap_or(0) > 0)
        }
        CollectCmd::Mock(a) => {
            let m = market(&a.market)?;
            let mut cfg = MockConfig::new(m, a.recordings);
            cfg.bind = a.bind.parse().with_context(|| format!("--bind {:?}: expected HOST:PORT", a.bind))?;
            cfg.speed = a.speed;
            if let Some(r) = &a.replay {
                cfg.replay = Some(duration("replay", r)?);
            }
            if let Some(f) = a.faults {
                cfg.faults = serde_json::from_str::<Faults>(&f).with_context(|| "--faults: not a faults object")?;
            }
            rt.block_on(async move {
                let mock = MockExchange::start(cfg).await?;
                println!("{}", serde_json::json!({"ws_url": mock.ws_url(), "rest_url": mock.rest_url(), "symbols": mock.symbols()}));
                mock.wait_done_or_stop(flowcast_live::stop_on_ctrl_c()).await;
                eprintln!("{}", serde_json::to_string(&mock.log()).unwrap_or_default());
                anyhow::Ok(())
            })?;
            Ok(true)
        }
    }
}
