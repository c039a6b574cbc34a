//! The `lightgbm` family end to end (`cargo test -p flowcast-train --features lightgbm --test
//! lightgbm`): an experiment trains a direction and a regression model through LightGBM's C API;
//! the run directory holds model.txt, the card, importance and TreeSHAP; the pure-Rust evaluator
//! agrees with LightGBM (≤ 1e-6) and SHAP adds up; the card rejects tampering; training is
//! deterministic; `eval` runs through the Rust evaluator; and Python's `lightgbm` (skipped with a
//! message when not installed) loads the exported model.txt and predicts the same.
#![cfg(feature = "lightgbm")]

use flowcast_contract::card::{Family, ModelCard};
use flowcast_contract::gbdt::GbdtModel;
use flowcast_train::progress::Mode;
use flowcast_train::run::{evaluate, run_experiment, Engine, RunOptions};
use flowcast_train::Experiment;
use std::path::Path;

const EXPERIMENT: &str = r#"
name = "lgb"
seed = 5
[data]
synthetic = { levels = 5, events = 60000, seed = 13 }
[columns]
kind = "features"
window = 1
feature = [
  { name = "ofi", window_events = 10 },
  { name = "ofi", window_events = 100 },
  { level = 3, name = "mlofi", window_events = 100 },
  { levels = 1, name = "imbalance" },
  { levels = 5, name = "imbalance_price_weighted" },
  { name = "spread_zscore", window_events = 100 },
  { levels = 5, name = "depth_ratio" },
  { classification = "aggressor", name = "trade_imbalance", window_events = 100 },
  { name = "log_return", window_events = 10 },
  { name = "time_since_trade" },
]
[[label]]
id = "dir"
kind = "smoothed"
horizon = 10
[[label]]
id = "mag"
kind = "smoothed"
horizon = 10
output = "regression"
[[model]]
name = "lightgbm"
num_iterations = 60
early_stopping_rounds = 10
min_data_in_leaf = 20
num_threads = 2
shap_rows = 300
[training]
class_weights = "balanced"
"#;

fn run(dir: &Path) -> flowcast_train::run::Summary {
    let exp = Experiment::from_toml(EXPERIMENT, "lgb.toml").unwrap();
    let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(dir.to_path_buf()), verify_export: true, ..RunOptions::default() };
    run_experiment(&exp, EXPERIMENT, &opts).unwrap()
}

#[test]
fn lightgbm_trains_exports_explains_and_evaluates_in_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let s = run(&tmp.path().join("a"));
    let run_dir = std::path::PathBuf::from(s.json["run_dir"].as_str().unwrap());
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap()).unwrap();
    for (id, regression) in [("lightgbm_dir", false), ("lightgbm_mag", true)] {
        let d = run_dir.join(id);
        for f in ["model.txt", "model.json", "predictions.parquet", "importance.json", "shap.parquet"] {
            assert!(d.join(f).is_file(), "{id}: {f} missing");
        }
        let card = ModelCard::load(&d).unwrap();
        assert_eq!(card.family, Family::Lightgbm);
        let m = &metrics["models"][id];
        let diff = m["evaluator"]["max_abs_diff_vs_lightgbm"].as_f64().unwrap();
        assert!(diff <= 1e-6, "{id}: Rust evaluator vs LightGBM {diff}");
        let add = m["shap"]["max_additivity_error"].as_f64().unwrap();
        assert!(add <= 1e-6, "{id}: SHAP additivity {add}");
        assert!(m["importance_top_gain"].as_array().unwrap().len() == 10, "{id}: {m}");
        let h = &s.json["models"][id];
        assert!(h["accuracy"].as_f64().unwrap() > 0.0, "{id}: {h}");
        assert_eq!(h["regression"].is_object(), regression, "{id}: {h}");
        eprintln!("{id}: {h}\n  evaluator {}", m["evaluator"]);
        let imp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("importance.json")).unwrap()).unwrap();
        assert_eq!(imp["importance"].as_array().unwrap().len(), card.preprocessing.inputs.names.len());
        let gain_total: f64 = imp["importance"].as_array().unwrap().iter().map(|e| e["gain"].as_f64().unwrap()).sum();
        assert!(gain_total > 0.0);
    }
    assert_eq!(metrics["models"]["lightgbm_dir"]["test"]["samples"], s.json["models"]["lightgbm_dir"]["samples"]);

    tampered_cards_are_rejected(&run_dir.join("lightgbm_dir"));
    python_loads_the_exported_model(&run_dir.join("lightgbm_dir"));

    // Deterministic: the same experiment gives the same model file.
    let s2 = run(&tmp.path().join("b"));
    let run2 = std::path::PathBuf::from(s2.json["run_dir"].as_str().unwrap());
    for id in ["lightgbm_dir", "lightgbm_mag"] {
        let a = std::fs::read_to_string(run_dir.join(id).join("model.txt")).unwrap();
        let b = std::fs::read_to_string(run2.join(id).join("model.txt")).unwrap();
        assert!(a == b, "{id}: model.txt differs between two runs of one experiment");
    }

    // eval on the same events stored as a dataset: through the Rust evaluator, with the same
    // predictions on the training run's test windows.
    let exp = Experiment::from_toml(EXPERIMENT, "lgb.toml").unwrap();
    let ds = flowcast_train::run::load_data(&exp).unwrap();
    let data_dir = run_dir.join("data");
    flowcast_datasets::write_dataset(&data_dir, &ds).unwrap();
    let out = run_dir.join("eval");
    let e = evaluate(&run_dir, &data_dir, Engine::Candle, &burn::prelude::Device::flex(), Some(&out)).unwrap();
    for id in ["lightgbm_dir", "lightgbm_mag"] {
        assert_eq!(e.json["models"][id]["engine"], "gbdt", "{}", e.json);
        let trained = read_probs(&run_dir.join(id).join("predictions.parquet"));
        let evald = read_probs(&out.join(format!("{id}.parquet")));
        for (row, p) in &trained {
            assert_eq!(evald.get(row), Some(p), "{id}: row {row}");
        }
    }
    assert!(e.json["models"]["lightgbm_mag"]["regression"]["rmse_bps"].as_f64().unwrap() > 0.0);
}

/// p_* columns per window end row.
fn read_probs(p: &Path) -> std::collections::HashMap<u64, Vec<f32>> {
    let f = std::fs::File::open(p).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let mut out = std::collections::HashMap::new();
    for b in r {
        let b = b.unwrap();
        let row = b.column(0).as_any().downcast_ref::<arrow_array::UInt64Array>().unwrap();
        let ps: Vec<&arrow_array::Float32Array> = (5..8).map(|c| b.column(c).as_any().downcast_ref().unwrap()).collect();
        for i in 0..b.num_rows() {
            out.insert(row.value(i), ps.iter().map(|c| c.value(i)).collect());
        }
    }
    out
}

fn tampered_cards_are_rejected(dir: &Path) {
    let card_path = dir.join("model.json");
    let good = std::fs::read_to_string(&card_path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    type Tamper = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("weights.sha256", Box::new(|c| c["weights"]["sha256"] = "0".repeat(64).into())),
        ("family", Box::new(|c| c["family"] = "deep".into())),
        ("family", Box::new(|c| c["family"] = "xgboost".into())),
        ("model.features", Box::new(|c| c["preprocessing"]["inputs"]["names"].as_array_mut().unwrap().pop().map(|_| ()).unwrap())),
        ("model.objective", Box::new(|c| c["model"]["objective"] = "regression".into())),
        ("model.objective", Box::new(|c| c["preprocessing"]["target"]["output"] = "regression".into())),
        ("classes", Box::new(|c| c["classes"][0] = "sell".into())),
        ("weights.tensors", Box::new(|c| c["weights"]["tensors"] = serde_json::json!([{"name": "w", "dtype": "F32", "shape": [1]}]))),
    ];
    for (field, tamper) in cases {
        let mut c = v.clone();
        tamper(&mut c);
        std::fs::write(&card_path, serde_json::to_string(&c).unwrap()).unwrap();
        let e = ModelCard::load(dir).unwrap_err().to_string();
        assert!(e.contains(field), "tampering {field}: {e}");
    }
    std::fs::write(&card_path, good).unwrap();
    ModelCard::load(dir).unwrap();
}

fn python_loads_the_exported_model(dir: &Path) {
    let ok = std::process::Command::new("python3").args(["-c", "import lightgbm, numpy"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: Python's lightgbm (and numpy) not installed: pip install lightgbm numpy");
        return;
    }
    let model = GbdtModel::load(&dir.join("model.txt")).unwrap();
    let f = model.features;
    // Rows around the normalised range, with exact zeros and NaNs mixed in.
    let mut s = 1u64;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let n = 500;
    let x: Vec<f64> = (0..n * f)
        .map(|_| {
            let u = next();
            if u < 0.02 {
                f64::NAN
            } else if u < 0.05 {
                0.0
            } else {
                ((next() * 6.0 - 3.0) as f32) as f64
            }
        })
        .collect();
    let csv: String = x
        .chunks(f)
        .map(|r| r.iter().map(|v| if v.is_nan() { "nan".into() } else { v.to_string() }).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("x.csv"), csv).unwrap();
    let script = "import sys, numpy as np, lightgbm as lgb\nb = lgb.Booster(model_file=sys.argv[1])\nX = np.loadtxt(sys.argv[2], delimiter=',', ndmin=2)\nnp.savetxt(sys.argv[3], b.predict(X).reshape(len(X), -1), delimiter=',', fmt='%.17g')\n";
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("model.txt"))
        .arg(tmp.path().join("x.csv"))
        .arg(tmp.path().join("p.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "python: {}", String::from_utf8_lossy(&o.stderr));
    let want: Vec<f64> = std::fs::read_to_string(tmp.path().join("p.csv"))
        .unwrap()
        .split([',', '\n'])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let k = model.outputs();
    assert_eq!(want.len(), n * k);
    let mut got = vec![0.0; k];
    let mut max = 0.0f64;
    for (r, row) in x.chunks(f).enumerate() {
        model.predict_row(row, &mut got);
        for c in 0..k {
            max = max.max((got[c] - want[r * k + c]).abs());
        }
    }
    eprintln!("Python lightgbm vs the Rust evaluator on the exported model.txt: max |Δ| = {max:.3e} over {n} rows");
    assert!(max <= 1e-6, "{max}");
}
