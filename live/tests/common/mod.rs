//! Shared test helpers: the real recordings, the mock → collector → recording → `data check`
//! pipeline, and the NATS server.
#![allow(dead_code)]

use flowcast_datasets::loaders::binance::Market;
use flowcast_datasets::loaders::{self, Format, ImportOptions};
use flowcast_live::binance::{collect, BinanceConfig, CollectReport};
use flowcast_live::http::RetryPolicy;
use flowcast_live::mock::{Faults, MockConfig, MockExchange, MockLog};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// `../shared/data/binance` beside the checkout (or `$FLOWCAST_SHARED_DATA/binance`).
pub fn binance_data() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = std::env::var_os("FLOWCAST_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| root.join("shared/data")).join("binance");
    if p.join("spot-btcusdt_20240808.gz").exists() {
        Some(p)
    } else {
        eprintln!("SKIP: {} not found (shared Binance recordings)", p.display());
        None
    }
}

pub fn recordings(market: Market, symbols: &[&str]) -> Option<Vec<PathBuf>> {
    let d = binance_data()?;
    Some(symbols.iter().map(|s| d.join(format!("{}-{}_20240808.gz", market.name(), s.to_ascii_lowercase()))).collect())
}

pub struct Case {
    pub market: Market,
    pub symbols: Vec<&'static str>,
    pub faults: Faults,
    /// Recorded seconds replayed, at `speed`.
    pub replay_s: u64,
    pub speed: f64,
    pub ping: Option<Duration>,
    pub max_connection_age: Option<Duration>,
    pub nats: Option<String>,
    pub rotate: Option<Duration>,
}

impl Case {
    pub fn new(market: Market, symbols: &[&'static str]) -> Case {
        Case {
            market,
            symbols: symbols.to_vec(),
            faults: Faults::default(),
            replay_s: 20,
            speed: 10.0,
            ping: None,
            max_connection_age: None,
            nats: None,
            rotate: None,
        }
    }
}

pub struct Outcome {
    pub report: CollectReport,
    pub mock: MockLog,
    /// `data check` over all recorded files.
    pub check: Value,
    pub files: Vec<PathBuf>,
    pub dir: tempfile::TempDir,
}

/// Mock exchange → collector → recording files → the Binance loader's `check`.
pub async fn run(case: Case) -> Option<Outcome> {
    let files = recordings(case.market, &case.symbols)?;
    let mut mc = MockConfig::new(case.market, files);
    mc.speed = case.speed;
    mc.replay = Some(Duration::from_secs(case.replay_s));
    mc.faults = case.faults.clone();
    mc.ping_interval = case.ping;
    let mock = MockExchange::start(mc).await.expect("mock starts");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = BinanceConfig::new(case.market, case.symbols.iter().map(|s| s.to_string()).collect(), dir.path().to_path_buf());
    cfg.ws_url = mock.ws_url();
    cfg.rest_url = mock.rest_url();
    cfg.reconnect_base = Duration::from_millis(100);
    cfg.reconnect_cap = Duration::from_millis(800);
    cfg.rest = RetryPolicy { base: Duration::from_millis(50), cap: Duration::from_millis(400), ..RetryPolicy::default() };
    cfg.ping_interval = Duration::from_millis(500);
    if let Some(a) = case.max_connection_age {
        cfg.max_connection_age = a;
    }
    cfg.nats = case.nats.clone();
    if let Some(r) = case.rotate {
        cfg.rotate = r;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(collect(cfg, stop_rx));
    tokio::time::timeout(Duration::from_secs(120), mock.wait_done()).await.expect("replay finishes");
    // Let the last snapshot responses arrive.
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop_tx.send(true).unwrap();
    let report = task.await.unwrap().expect("collector runs");
    let files: Vec<PathBuf> = report.symbols.iter().flat_map(|s| s.files.iter().map(PathBuf::from)).collect();
    let check = loaders::check(Format::Binance, &files, &ImportOptions::default()).expect("data check reads the recording");
    let check: Value = serde_json::from_str(&check.to_json()).unwrap();
    Some(Outcome { report, mock: mock.log(), check, files, dir })
}

/// The per-file reports of a check (one file: the report itself).
pub fn parts(check: &Value) -> Vec<Value> {
    match check.get("files") {
        Some(Value::Array(a)) => a.clone(),
        _ => vec![check.clone()],
    }
}

/// What every run must show: the loader verifies every recorded file (100% bookTicker agreement
/// on the synced spans, synced at the end) and reports exactly the gaps the collector recorded.
pub fn assert_consistent(o: &Outcome) {
    assert_files_consistent(o, false)
}

/// [`assert_consistent`]; with `short_last`, each symbol's first and last files (cut by the start
/// and end of the run at arbitrary points of a rotation period) need only agree with the
/// collector, not be synced.
pub fn assert_files_consistent(o: &Outcome, short_last: bool) {
    let c = &o.check;
    let last: Vec<String> = o.report.symbols.iter().flat_map(|s| s.files.first().into_iter().chain(s.files.last()).cloned()).collect();
    for p in parts(c) {
        if short_last && last.iter().any(|f| p["file"] == f.as_str()) {
            continue;
        }
        assert_eq!(p["verdict"], "ok", "{}: {}", p["file"], serde_json::to_string_pretty(&p).unwrap());
        assert_eq!(p["bbo_agreement"], 1.0, "{}", p["file"]);
        // Rotated files hold 1.5 s of replay (15 s of recording): fewer bookTickers to check.
        let min_checks = if short_last { 5 } else { 20 };
        assert!(p["bbo_checks"].as_u64().unwrap() >= min_checks, "{}: too few bookTicker checks: {}", p["file"], p["bbo_checks"]);
        assert_eq!(p["bbo_mismatches"], 0);
    }
    for s in &o.report.symbols {
        assert!(short_last || s.synced_at_end, "{}: not synced at the end: {:?}", s.symbol, s);
        assert_eq!(s.rejected_lines, 0);
        for f in &s.files {
            let p = parts(c).into_iter().find(|p| p["file"] == f.as_str()).expect("file in the check");
            let gaps: Vec<(u64, u64, u64)> =
                s.gaps.iter().filter(|g| g.kind == "gap" && &g.file == f).map(|g| (g.line, g.expected, g.received)).collect();
            let loader: Vec<(u64, u64, u64)> = p["first_gaps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| (g["line"].as_u64().unwrap(), g["expected"].as_u64().unwrap(), g["received"].as_u64().unwrap()))
                .collect();
            assert_eq!(gaps, loader, "{f}: collector gaps vs loader first_gaps");
            assert_eq!(p["gaps"].as_u64().unwrap(), gaps.len() as u64);
            let nb: Vec<u64> = s.gaps.iter().filter(|g| g.kind == "no_bridge" && &g.file == f).map(|g| g.line).collect();
            let lnb: Vec<u64> = p["sync_failures"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["reason"] == "no_bridge")
                .map(|x| x["diff_line"].as_u64().unwrap())
                .collect();
            assert_eq!(nb, lnb, "{f}: collector no_bridge vs loader sync_failures");
            if !(short_last && (s.files.last() == Some(f) || s.files.first() == Some(f))) {
                assert_eq!(p["sync_failures"].as_array().unwrap().len(), nb.len(), "{f}: only no_bridge failures: {}", p["sync_failures"]);
            }
        }
        let lines: u64 =
            parts(c).iter().filter(|p| s.files.iter().any(|f| p["file"] == f.as_str())).map(|p| p["lines"].as_u64().unwrap()).sum();
        assert_eq!(lines, s.lines, "{}: lines written vs read", s.symbol);
    }
}

/// The loopback `nats-server -js` of the tests (`None`, with a message, without the binary).
pub fn start_nats() -> Option<flowcast_live::bus::LocalNats> {
    flowcast_live::bus::LocalNats::start()
}
