//! The `bayes_online` family end to end: an experiment fits a full and a diagonal model; the run
//! directory holds the state, the card, both predictions files and the permutation importance;
//! the metrics carry batch and prequential test metrics with calibration; the card rejects
//! tampering naming the field; `reproduce` is bit-identical; `eval` reloads the state through the card and predicts the
//! training run's test windows exactly as the run did.

use flowcast_contract::card::{Family, ModelCard};
use flowcast_train::progress::Mode;
use flowcast_train::run::{evaluate, run_experiment, Engine, RunOptions};
use flowcast_train::Experiment;
use std::path::Path;

const EXPERIMENT: &str = r#"
name = "bayes"
seed = 5
[data]
synthetic = { levels = 5, events = 30000, seed = 13 }
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
[label]
id = "dir"
kind = "smoothed"
horizon = 20
alpha = 0.00005
[[model]]
name = "bayes_online"
id = "full"
prior_var = 0.01
[[model]]
name = "bayes_online"
id = "diag"
form = "diagonal"
discount = 0.9999
[training]
importance_rows = 300
"#;

#[test]
fn bayes_online_trains_exports_scores_prequentially_and_evaluates() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = Experiment::from_toml(EXPERIMENT, "bayes.toml").unwrap();
    let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(tmp.path().to_path_buf()), ..RunOptions::default() };
    let s = run_experiment(&exp, EXPERIMENT, &opts).unwrap();
    let run_dir = std::path::PathBuf::from(s.json["run_dir"].as_str().unwrap());
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap()).unwrap();
    for id in ["full", "diag"] {
        let d = run_dir.join(id);
        for f in [
            "bayes_state.json",
            "model.json",
            "predictions.parquet",
            "predictions_prequential.parquet",
            "importance.json",
            "reliability.svg",
        ] {
            assert!(d.join(f).is_file(), "{id}: {f} missing");
        }
        let card = ModelCard::load(&d).unwrap();
        assert_eq!(card.family, Family::BayesOnline);
        let m = &metrics["models"][id];
        let test = m["test"]["samples"].as_u64().unwrap();
        let pq = &m["prequential"];
        assert_eq!(pq["test"]["samples"].as_u64(), Some(test), "{id}: {pq}");
        // Every validation and test label but the last few has matured inside the pass.
        let val = card.training.validation_windows as u64;
        let updates = pq["updates"].as_u64().unwrap();
        assert!(updates + 20 >= val + test && updates < val + test, "{id}: {updates} updates for {} windows", val + test);
        for k in ["log_loss", "brier", "ece"] {
            let v = m["test"][k].as_f64().unwrap();
            assert!(v.is_finite() && v >= 0.0, "{id}: {k} = {v}");
            assert!(pq["test"][k].as_f64().is_some(), "{id}: prequential {k}");
        }
        assert_eq!(m["test"]["reliability"].as_array().unwrap().len(), flowcast_contract::metrics::CALIBRATION_BINS);
        let imp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("importance.json")).unwrap()).unwrap();
        assert_eq!(imp["importance"].as_array().unwrap().len(), card.preprocessing.inputs.names.len());
        assert_eq!(imp["rows"], 300);
        let h = &s.json["models"][id];
        assert!(h["prequential"]["accuracy"].as_f64().unwrap() > 0.0, "{id}: {h}");
        eprintln!("{id}: batch {}\n  prequential {}", h, h["prequential"]);
    }
    tampered_cards_are_rejected(&run_dir.join("full"));

    // Deterministic: a reproduction gives the same state files and every test number.
    let r = flowcast_train::reproduce::reproduce(&run_dir, &RunOptions { progress: Mode::Quiet, ..RunOptions::default() }).unwrap();
    assert_eq!(r.json["reproduction"]["identical"], true, "{}", r.json["reproduction"]);
    assert_eq!(r.json["reproduction"]["models"]["full"]["weights_identical"], true);

    // eval on the same events stored as a dataset: the reloaded state, the run's predictions.
    let ds = flowcast_train::run::load_data(&exp).unwrap();
    let data_dir = run_dir.join("data");
    flowcast_datasets::write_dataset(&data_dir, &ds).unwrap();
    let out = run_dir.join("eval");
    let e = evaluate(&run_dir, &data_dir, Engine::Candle, &burn::prelude::Device::flex(), Some(&out)).unwrap();
    for id in ["full", "diag"] {
        assert_eq!(e.json["models"][id]["engine"], "bayes", "{}", e.json);
        let trained = read_probs(&run_dir.join(id).join("predictions.parquet"));
        let evald = read_probs(&out.join(format!("{id}.parquet")));
        assert!(!trained.is_empty());
        for (row, p) in &trained {
            assert_eq!(evald.get(row), Some(p), "{id}: row {row}");
        }
        assert!(e.json["models"][id]["regression"]["rmse_bps"].as_f64().unwrap() > 0.0);
    }
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
        ("family", Box::new(|c| c["family"] = "lightgbm".into())),
        ("family", Box::new(|c| c["family"] = "bayes".into())),
        ("model.version", Box::new(|c| c["model"]["version"] = 9.into())),
        ("model.features", Box::new(|c| c["preprocessing"]["inputs"]["names"].as_array_mut().unwrap().pop().map(|_| ()).unwrap())),
        ("preprocessing.target.alpha", Box::new(|c| c["preprocessing"]["target"]["alpha"] = 0.001.into())),
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
    // A state file edited after export: its hash no longer matches.
    let state = dir.join("bayes_state.json");
    let s = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, s.replacen("\"a\":", "\"a\": ", 1)).unwrap();
    let e = ModelCard::load(dir).unwrap_err().to_string();
    assert!(e.contains("weights.sha256"), "{e}");
    std::fs::write(&state, s).unwrap();
    ModelCard::load(dir).unwrap();
}
