//! End-to-end tests of the `flowcast` binary (exit codes, `--json` keys). Declared as a test of the
//! root package so cargo builds the binary for it (`CARGO_BIN_EXE_flowcast`).

use flowcast_datasets::store::{write_dataset, Dataset, DatasetMeta};
use flowcast_datasets::{flags, Event, EventKind, Instrument, Side};
use std::path::Path;
use std::process::Command;

mod collect;
mod labels;
mod online;
mod serve;
mod serve_ops;
mod stream;
mod sweep;
mod train;
mod walkforward;

fn flowcast(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flowcast")).args(args).output().expect("run flowcast");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn small_dataset(dir: &Path) {
    let inst = Instrument::new("test", "XYZ", "0.01", 0).unwrap();
    let t0 = 1_700_000_000_000_000_000i64;
    let mut events = vec![
        Event::new(EventKind::Snapshot, Side::Bid, 0, 0, t0).with_seq(1),
        Event::level(Side::Bid, 100, 5, t0).with_flags(flags::SNAPSHOT),
        Event::level(Side::Ask, 101, 5, t0).with_flags(flags::SNAPSHOT | flags::BATCH_END),
    ];
    for i in 1..50i64 {
        events.push(Event::level(Side::Bid, 100, 5 + i, t0 + i * 1_000_000).with_seq(1 + i as u64).with_flags(flags::BATCH_END));
    }
    events.push(Event::new(EventKind::Gap, Side::Bid, 0, 0, t0 + 60_000_000).with_seq(60).with_order(62).with_flags(flags::BATCH_END));
    let ds = Dataset { meta: DatasetMeta::new("test", inst, 5, false), events };
    write_dataset(dir, &ds).unwrap();
}

#[test]
fn info_json_has_stable_keys() {
    let dir = tempfile::tempdir().unwrap();
    small_dataset(dir.path());
    let (code, out, err) = flowcast(&["data", "info", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["events"], 53);
    assert_eq!(v["levels"], 5);
    assert_eq!(v["gaps"], 1);
    assert_eq!(v["snapshots"], 1);
    assert_eq!(v["book_rows"], 50);
    assert_eq!(v["by_kind"]["level_set"], 51);
    assert_eq!(v["start_ns"], 1_700_000_000_000_000_000i64);
    assert_eq!(v["end_ns"], 1_700_000_000_060_000_000i64);
    assert_eq!(v["first_gaps"][0]["expected_seq"], 60);
    // The readable table carries the same facts.
    let (code, table, _) = flowcast(&["data", "info", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(table.contains("events") && table.contains("53"), "{table}");
}

#[test]
fn bench_replays_a_stored_dataset() {
    let dir = tempfile::tempdir().unwrap();
    small_dataset(dir.path());
    let (code, out, err) = flowcast(&["data", "bench", "--data", dir.path().to_str().unwrap(), "--passes", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    for layout in ["vec", "dense", "btree"] {
        assert!(v["layouts"][layout]["events_per_s"].as_f64().unwrap() > 0.0, "{v}");
    }
}

#[test]
fn bad_input_is_rejected_with_exit_2_and_a_named_file() {
    let (code, _, err) = flowcast(&["data", "check", "--format", "nope", "x.csv"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown format \"nope\""), "{err}");
    let (code, _, err) = flowcast(&["data", "info", "/nonexistent/flowcast-ds"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/flowcast-ds/meta.json"), "{err}");
}

#[test]
fn features_list_prints_the_registry() {
    let (code, out, err) = flowcast(&["features", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true);
    let rows = v["features"].as_array().unwrap();
    assert!(rows.len() >= 50 && v["count"].as_u64() == Some(rows.len() as u64), "{v}");
    for key in ["name", "group", "params", "warmup", "reference"] {
        assert!(rows.iter().all(|r| !r[key].is_null()), "missing {key}");
    }
    let (code, out, _) = flowcast(&["features", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("ofi_10s") && out.contains("Cont, Kukanov & Stoikov (2014)"), "{out}");
}

#[test]
fn models_list_and_describe_include_lightgbm() {
    let (code, out, err) = flowcast(&["models", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let lgb = v["models"].as_array().unwrap().iter().find(|m| m["name"] == "lightgbm").expect("lightgbm listed");
    assert_eq!(lgb["family"], "lightgbm");
    let (code, out, _) = flowcast(&["models", "list"]);
    assert!(code == 0 && out.lines().any(|l| l.starts_with("lightgbm")), "{out}");
    let (code, out, err) = flowcast(&["models", "describe", "lightgbm", "--set", "num_leaves=63", "--json"]);
    assert_eq!(code, 0, "{err}");
    let d: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((d["params"]["num_leaves"].as_u64(), d["params"]["max_depth"].as_i64()), (Some(63), Some(6)), "{d}");
    assert_eq!(d["params"]["learning_rate"].as_f64(), Some(0.05));
    let (code, _, err) = flowcast(&["models", "describe", "lightgbm", "--set", "num_leavs=63"]);
    assert!(code != 0 && err.contains("num_leavs"), "{err}");
}
