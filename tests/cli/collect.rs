//! `flowcast collect`: the mock exchange, the Binance collector and the polling monitor as
//! processes, and `flowcast data check` reading what the collector wrote.

use super::flowcast;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn collect_mock_binance_poll_then_data_check() {
    let rec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/binance/spot-btcusdt_20240808.gz");
    if !rec.exists() {
        eprintln!("SKIP: {} not found (shared Binance recordings)", rec.display());
        return;
    }
    let mut mock = Command::new(env!("CARGO_BIN_EXE_flowcast"))
        .args(["collect", "mock", rec.to_str().unwrap(), "--market", "spot", "--speed", "10", "--replay", "40s"])
        .args(["--faults", r#"{"drop_diffs":[["BTCUSDT",60]]}"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the mock");
    let mut first = String::new();
    BufReader::new(mock.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let urls: serde_json::Value = serde_json::from_str(first.trim()).expect("the mock prints its URLs");
    let (ws, rest) = (urls["ws_url"].as_str().unwrap().to_string(), urls["rest_url"].as_str().unwrap().to_string());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();

    let (code, out, err) =
        flowcast(&["collect", "poll", "--symbol", "BTCUSDT", "--interval", "200ms", "--minutes", "0.02", "--rest-url", &rest, "--out", d]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["samples"], 6);
    assert_eq!(std::fs::read_to_string(dir.path().join("obi_btcusdt.csv")).unwrap().lines().count(), 7);

    let (code, out, err) =
        flowcast(&["collect", "binance", "--symbols", "BTCUSDT", "--out", d, "--duration", "6s", "--ws-url", &ws, "--rest-url", &rest]);
    let _ = mock.kill();
    let _ = mock.wait();
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let file = r["symbols"][0]["files"][0].as_str().unwrap().to_string();
    assert_eq!(r["symbols"][0]["gaps"].as_array().unwrap().len(), 1, "{out}");
    let (code, out, err) = flowcast(&["data", "check", "--format", "binance", &file, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let c: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(c["bbo_agreement"], 1.0);
    assert_eq!(c["gaps"], 1);
    assert_eq!(c["first_gaps"][0]["line"], r["symbols"][0]["gaps"][0]["line"]);
}
