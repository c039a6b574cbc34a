//! Coinbase mock → collector → cryptofeed recording → the Coinbase loader's `check`: a clean run,
//! a dropped match (trade-id break → resubscribe → fresh snapshot) and a disconnect.

use flowcast_datasets::loaders::{self, Format, ImportOptions};
use flowcast_live::coinbase::{collect, CoinbaseConfig, CoinbaseReport};
use flowcast_live::mock_coinbase::{CoinbaseFaults, CoinbaseMock, CoinbaseMockLog};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const PRODUCTS: [&str; 4] = ["SKL-USD", "DASH-BTC", "BAND-BTC", "NMR-EUR"];

async fn run(faults: CoinbaseFaults) -> Option<(CoinbaseReport, CoinbaseMockLog, Value)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let rec = std::env::var_os("FLOWCAST_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("shared/data"))
        .join("cryptofeed/COINBASE.ws.28.0");
    if !rec.exists() {
        eprintln!("SKIP: {} not found", rec.display());
        return None;
    }
    let mock = CoinbaseMock::start(rec, 10.0, None, faults).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = CoinbaseConfig::new(PRODUCTS.iter().map(|s| s.to_string()).collect(), dir.path().to_path_buf());
    cfg.ws_url = mock.ws_url();
    cfg.reconnect_base = Duration::from_millis(100);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(collect(cfg, rx));
    tokio::time::timeout(Duration::from_secs(120), mock.wait_done()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(true).unwrap();
    let report = task.await.unwrap().unwrap();
    let files: Vec<PathBuf> = report.files.iter().map(PathBuf::from).collect();
    let check = loaders::check(Format::CryptofeedCoinbase, &files, &ImportOptions::default()).unwrap();
    let check: Value = serde_json::from_str(&check.to_json()).unwrap();
    Some((report, mock.log(), check))
}

fn gaps(check: &Value) -> u64 {
    PRODUCTS.iter().map(|p| check["products"][p]["gaps"].as_u64().unwrap_or(0)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_clean_run_checks_ok() {
    let Some((r, _, c)) = run(CoinbaseFaults::default()).await else { return };
    assert_eq!(c["ok"], true, "{}", serde_json::to_string_pretty(&c).unwrap());
    assert_eq!(r.connections, 1);
    assert!(r.breaks.is_empty(), "{:?}", r.breaks);
    assert_eq!(r.snapshots, PRODUCTS.len() as u64);
    assert_eq!(gaps(&c), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_dropped_match_resubscribes_and_resyncs() {
    let faults = CoinbaseFaults { drop_matches: vec![("SKL-USD".into(), 10)], ..Default::default() };
    let Some((r, log, c)) = run(faults).await else { return };
    assert_eq!(c["ok"], true, "{}", serde_json::to_string_pretty(&c).unwrap());
    assert_eq!(r.breaks.len(), 1, "{:?}", r.breaks);
    let b = &r.breaks[0];
    let dropped = log.dropped[0].1;
    assert_eq!((b.product.as_str(), b.field.as_str(), b.expected, b.received), ("SKL-USD", "trade_id", dropped, dropped + 1));
    assert_eq!(r.connections, 2);
    assert_eq!(r.snapshots, 2 * PRODUCTS.len() as u64);
    // The reconnect marks every synced book as a gap; the new snapshots resync them.
    assert_eq!(gaps(&c), PRODUCTS.len() as u64, "{}", c["products"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_disconnect_reconnects_and_resyncs() {
    let faults = CoinbaseFaults { disconnect_after: vec![1500], ..Default::default() };
    let Some((r, log, c)) = run(faults).await else { return };
    assert_eq!(log.disconnects, 1);
    assert_eq!(c["ok"], true, "{}", serde_json::to_string_pretty(&c).unwrap());
    assert_eq!(r.connections, 2, "{:?}", r.disconnects);
    assert_eq!(gaps(&c), PRODUCTS.len() as u64);
}
