//! `flowcast backtest` with `[walk_forward]`: every fold's model trains only on rows before the
//! segment it trades, and the strategy acts only inside that segment.

use super::flowcast;
use serde_json::Value;
use std::path::Path;

const EXP: &str = r#"
name = "wfexp"
seed = 5
[data]
synthetic = { levels = 2, events = 9000, seed = 21 }
[columns]
kind = "book"
window = 16
train_stride = 4
[label]
kind = "smoothed"
horizon = 5
[[model]]
name = "lstm"
hidden = 8
[[model]]
name = "deeplob"
conv_channels = 4
inception_channels = 4
lstm_hidden = 4
[training]
epochs = 1
batch = 32
max_batches = 4
"#;

fn backtest(extra: &str) -> String {
    format!(
        r#"
name = "wf"
seed = 5
{extra}
[data]
synthetic = {{ levels = 2, events = 9000, seed = 21 }}
[strategy]
name = "market_schedule"
qty = "1"
every = "5s"
[report]
html = false
"#
    )
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[test]
fn walk_forward_trains_on_the_past_and_trades_only_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exp.toml"), EXP).unwrap();
    let bt = dir.path().join("bt.toml");
    std::fs::write(&bt, backtest("[walk_forward]\nexperiment = \"exp.toml\"\nmodel = \"lstm\"\nsegments = 3\nmodel_latency = \"0\""))
        .unwrap();
    let runs = dir.path().join("runs");
    let (code, out, err) = flowcast(&["backtest", bt.to_str().unwrap(), "--runs-dir", runs.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let folds = v["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 2, "3 segments: train on 1, trade 2; train on 2, trade 3");
    let mut prev_to = None;
    let mut nets = 0.0;
    for f in folds {
        let train_run = Path::new(f["train_run"].as_str().unwrap());
        let bt_run = Path::new(f["backtest_run"].as_str().unwrap());
        // Only the chosen model is trained.
        assert!(train_run.join("lstm").is_dir() && !train_run.join("deeplob").exists(), "{}", train_run.display());
        let run = read(&train_run.join("run.json"));
        let sp = &run["splits"];
        let n = sp["n"].as_u64().unwrap() as f64;
        let (tr0, va1, te0) =
            (sp["train"]["start"].as_u64().unwrap(), sp["validation"]["end"].as_u64().unwrap(), sp["test"]["start"].as_u64().unwrap());
        let k = f["fold"].as_u64().unwrap() as f64;
        // Rolling window of one segment: rows [k−1, k)/3 fit the model, [k, k+1)/3 are traded.
        assert_eq!(tr0, ((k - 1.0) / 3.0 * n).round() as u64, "{sp}");
        assert_eq!(te0, (k / 3.0 * n).round() as u64, "{sp}");
        assert!(va1 <= te0 && sp["test"]["end"].as_u64().unwrap() <= ((k + 1.0) / 3.0 * n).round() as u64, "{sp}");
        // The model's first test prediction is the first event the strategy may act on.
        let m = read(&bt_run.join("metrics.json"));
        let a = &m["activity"];
        assert_eq!(a["trade_from_event"], f["events"][0], "{a}");
        assert_eq!(a["events_to"], f["events"][1], "{a}");
        let from_ns = a["trade_from_ns"].as_i64().unwrap();
        assert!(a["first_order_sent_ns"].as_i64().expect("the schedule trades") >= from_ns, "an order before the segment: {a}");
        // The in-sample guard dropped the model's training windows; the rest are its signals.
        assert!(m["signal"]["dropped_in_sample"].as_u64().unwrap() > 0 && m["signal"]["points"].as_u64().unwrap() > 0, "{}", m["signal"]);
        // The model ran only on the windows that could give this fold a signal.
        assert_eq!(m["signal"]["windows_predicted"], m["signal"]["points"], "{}", m["signal"]);
        // Segments tile the data: this fold trades from where the last one stopped.
        if let Some(p) = prev_to {
            assert_eq!(f["events"][0], p);
        }
        prev_to = Some(f["events"][1].clone());
        // The fold's own files say the same: its backtest.toml holds the [segment] it ran with.
        let cfg = std::fs::read_to_string(bt_run.join("backtest.toml")).unwrap();
        assert!(cfg.contains("[segment]") && cfg.contains(&format!("from_event = {}", f["events"][0])), "{cfg}");
        nets += f["net_pnl"].as_f64().unwrap();
    }
    assert!((v["total"]["net_pnl"].as_f64().unwrap() - nets).abs() < 1e-9);
    let md = std::fs::read_to_string(Path::new(v["run_dir"].as_str().unwrap()).join("walk_forward.md")).unwrap();
    assert!(md.contains("| 2 |") && md.contains("Total over 2 folds"), "{md}");
}

#[test]
fn walk_forward_refuses_a_fixed_signal_and_an_unknown_model() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exp.toml"), EXP).unwrap();
    let bt = dir.path().join("bt.toml");
    std::fs::write(&bt, backtest("[walk_forward]\nexperiment = \"exp.toml\"\nmodel = \"lstm\"\nsegments = 3\n[signal]\nmodel = \"x\""))
        .unwrap();
    let (code, _, err) = flowcast(&["backtest", bt.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("drop [signal]"), "{err}");
    std::fs::write(&bt, backtest("[walk_forward]\nexperiment = \"exp.toml\"\nmodel = \"gru\"\nsegments = 3")).unwrap();
    let (code, _, err) = flowcast(&["backtest", bt.to_str().unwrap(), "--runs-dir", dir.path().join("r").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("model = \"gru\"") && err.contains("lstm") && err.contains("deeplob"), "{err}");
}
