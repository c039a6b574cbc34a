//! End-to-end tests of `flowcast analyze ofi-impact` and `flowcast features compute`.

use super::flowcast;
use flowcast_datasets::store::{write_dataset, Dataset, DatasetMeta};
use flowcast_datasets::{flags, Event, Instrument, Side};
use std::path::Path;

const S: i64 = 1_000_000_000;

/// Two minutes of a one-level book with depth 10 on both sides moving ±1 tick per batch:
/// every move has OFI ±20 and ΔP ±1, so β = 1/20 and R² = 1 exactly.
fn impact_dataset(dir: &Path) {
    let t0 = 1_700_000_040 * S;
    let (q, mut bid) = (10i64, 1000i64);
    let mut events = vec![Event::level(Side::Bid, bid, q, t0), Event::level(Side::Ask, bid + 2, q, t0).with_flags(flags::BATCH_END)];
    let mut x = 12345u64;
    for k in 0..120i64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let moves = (x >> 33) % 4;
        for m in 0..moves as i64 {
            let up = (x >> (40 + m)) & 1 == 1;
            let nb = if up { bid + 1 } else { bid - 1 };
            let ts = t0 + k * S + 1000 + m;
            events.push(Event::level(Side::Bid, bid, 0, ts));
            events.push(Event::level(Side::Bid, nb, q, ts));
            events.push(Event::level(Side::Ask, bid + 2, 0, ts));
            events.push(Event::level(Side::Ask, nb + 2, q, ts).with_flags(flags::BATCH_END));
            bid = nb;
        }
    }
    let ds = Dataset { meta: DatasetMeta::new("test", Instrument::new("test", "XYZ", "0.01", 0).unwrap(), 1, true), events };
    write_dataset(dir, &ds).unwrap();
}

#[test]
fn ofi_impact_json_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    impact_dataset(dir.path());
    let d = dir.path().to_str().unwrap();
    let (code, out, err) = flowcast(&["analyze", "ofi-impact", "--data", d, "--interval", "1s", "--window", "1m", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["ok"], true);
    assert_eq!(v["windows"].as_array().unwrap().len(), 2);
    for w in v["windows"].as_array().unwrap() {
        assert!((w["beta"].as_f64().unwrap() - 0.05).abs() < 1e-12, "{w}");
        assert!((w["r2"].as_f64().unwrap() - 1.0).abs() < 1e-12, "{w}");
        assert_eq!(w["avg_depth"], 10.0);
    }
    for k in ["mean_r2", "min_r2", "max_r2", "beta_depth_fit", "pooled", "interval_ns", "window_ns"] {
        assert!(v.get(k).is_some(), "{k}");
    }
    // --json FILE writes the object and prints the table.
    let file = dir.path().join("impact.json");
    let (code, out, _) =
        flowcast(&["analyze", "ofi-impact", "--data", d, "--interval", "1s", "--window", "1m", "--json", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("R2 mean 1.0000"), "{out}");
    let f: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(f["windows"], v["windows"]);
    // Too few intervals per window, and a bad duration, fail with a message and non-zero status.
    let (code, _, err) = flowcast(&["analyze", "ofi-impact", "--data", d, "--interval", "30s", "--window", "1m"]);
    assert_ne!(code, 0);
    assert!(err.contains("no window has 10 usable intervals"), "{err}");
    let (code, _, err) = flowcast(&["analyze", "ofi-impact", "--data", d, "--interval", "1.5s"]);
    assert_ne!(code, 0);
    assert!(err.contains("duration \"1.5s\""), "{err}");
}

/// A 3-level random-walk book with trades, one batch per 50 ms (≈ 100 s in all).
fn walk_dataset(dir: &Path, batches: i64) {
    let t0 = 1_700_000_000 * S;
    let mut x = 99u64;
    let mut rnd = |m: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let mut events = Vec::new();
    let mut bid = 10_000i64;
    let mut levels: Vec<(Side, i64)> = Vec::new();
    for b in 0..batches {
        let ts = t0 + b * 50_000_000;
        for (side, px) in levels.drain(..) {
            events.push(Event::level(side, px, 0, ts));
        }
        bid += rnd(3) as i64 - 1;
        let ask = bid + 1 + rnd(2) as i64;
        for l in 0..3 {
            levels.push((Side::Bid, bid - l));
            levels.push((Side::Ask, ask + l));
        }
        for &(side, px) in &levels {
            events.push(Event::level(side, px, 1 + rnd(40) as i64, ts));
        }
        if rnd(3) == 0 {
            let side = if rnd(2) == 0 { Side::Bid } else { Side::Ask };
            let px = if side == Side::Bid { ask } else { bid };
            events.push(Event::new(flowcast_datasets::EventKind::Trade, side, px, 1 + rnd(5) as i64, ts));
        }
        let last = events.len() - 1;
        events[last] = events[last].with_flags(flags::BATCH_END);
    }
    let ds = Dataset { meta: DatasetMeta::new("test", Instrument::new("test", "XYZ", "0.01", 0).unwrap(), 3, true), events };
    write_dataset(dir, &ds).unwrap();
}

#[test]
fn features_compute_writes_the_run_directory() {
    use flowcast_datasets::features::FeatureSet;
    use flowcast_datasets::features_io::{read_parquet, ColumnValues};
    use flowcast_datasets::normalize::{Method, Normalizer};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ds");
    walk_dataset(&data, 2000);
    let out = dir.path().join("run");
    let (code, stdout, err) = flowcast(&[
        "features",
        "compute",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--csv",
        "--json",
        "--clock",
        "1s,5s",
        "--smooth-k",
        "10,20",
    ]);
    assert_eq!(code, 0, "{err}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("summary JSON");
    assert_eq!(summary["rows"], 2000);
    assert_eq!(summary["ic_method"], "spearman");
    assert_eq!(summary["ic_horizons"], serde_json::json!(["ev10", "ev100", "clock_1s", "clock_5s"]));
    let set = FeatureSet::default_set();
    assert_eq!(summary["feature_columns"], set.names().len());
    let feats = summary["features"].as_array().unwrap();
    assert_eq!(feats.len(), set.names().len());
    assert!(feats.iter().all(|f| f["ic"]["clock_1s"].get("train").is_some() && f.get("p99").is_some()));
    for f in ["features.parquet", "features.csv", "normalization.json", "feature_set.json", "labels.json", "summary.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // feature_set.json reloads, fitted on exactly the training rows.
    let fitted = FeatureSet::from_json(&std::fs::read_to_string(out.join("feature_set.json")).unwrap()).unwrap();
    let train = &summary["splits"]["train"];
    let (t0, t1) = (train["start"].as_u64().unwrap() as usize, train["end"].as_u64().unwrap() as usize);
    assert_eq!(fitted.fitted_on, Some((t0, t1)));
    assert!(fitted.unfitted().is_empty());
    // The normaliser equals one refitted from the Parquet file's training rows.
    let cols = read_parquet(&out.join("features.parquet")).unwrap();
    let ColumnValues::Str(split) = &cols[2].1 else { panic!() };
    assert!(split[t0..t1].iter().all(|s| s == "train") && split[t1] == "gap");
    let names = fitted.names();
    let n = split.len();
    let mut values = vec![0.0; n * names.len()];
    for (j, name) in names.iter().enumerate() {
        let (cname, ColumnValues::F64(v)) = &cols[3 + j] else { panic!("{name}") };
        assert_eq!(cname, name);
        for r in 0..n {
            values[r * names.len() + j] = v[r];
        }
    }
    let stored = Normalizer::load(&out.join("normalization.json")).unwrap();
    let refit = Normalizer::fit(&names, &values, t0..t1, Method::Zscore).unwrap();
    // (JSON comparison: all-NaN columns have NaN statistics, which `==` never equates.)
    assert_eq!(stored.to_json(), refit.to_json());
    let labels: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("labels.json")).unwrap()).unwrap();
    assert!(labels["labels"].as_array().unwrap().iter().all(|l| l["alpha"].is_number()));
    assert!(labels["class_balance"]["clock_5s"]["test"]["rows"].as_u64().unwrap() > 0);
    // CSV: header + one line per row.
    let csv = std::fs::read_to_string(out.join("features.csv")).unwrap();
    assert_eq!(csv.lines().count(), n + 1);
    // A horizon longer than the data cannot be split without leakage: refused.
    let (code, _, err) =
        flowcast(&["features", "compute", "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--clock", "5m"]);
    assert_ne!(code, 0);
    assert!(err.contains("train split is empty after purging"), "{err}");
}
