//! End-to-end tests of `flowcast analyze ofi-impact` and `flowcast features compute`.

use super::flowcast;
use flowcast_datasets::store::{write_dataset, Dataset, DatasetMeta, LOADER_VERSION, STORE_FORMAT_VERSION};
use flowcast_datasets::{flags, Event, Instrument, Side};
use std::path::Path;

const S: i64 = 1_000_000_000;

/// Two minutes of a one-level book with depth 10 on both sides moving ±1 tick per batch:
/// every move has OFI ±20 and ΔP ±1, so β = 1/20 and R² = 1 exactly.
fn impact_dataset(dir: &Path) {
    let t0 = 1_700_000_040 * S;
    let (q, mut bid) = (10i64, 1000i64);
    let mut events = vec![
        Event::level(Side::Bid, bid, q, t0),
        Event::level(Side::Ask, bid + 2, q, t0).with_flags(flags::BATCH_END),
    ];
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
    let ds = Dataset {
        meta: DatasetMeta {
            store_format: STORE_FORMAT_VERSION,
            loader_version: LOADER_VERSION.into(),
            source_format: "test".into(),
            instrument: Instrument::new("test", "XYZ", "0.01", 0).unwrap(),
            levels: 1,
            starts_synced: true,
            source_files: vec![],
            import_report: serde_json::Value::Null,
        },
        events,
    };
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
