//! Targets are data: an experiment with two direction targets (smoothed mid at 5 and 20 rows)
//! trains each model once per target it names, reports both with their own baselines, writes one
//! card per (model, target) naming its target, and `eval` scores each on its own target again.

use flowcast_contract::card::ModelCard;
use flowcast_train::progress::Mode;
use flowcast_train::run::{evaluate, run_experiment, Engine, RunOptions};
use flowcast_train::Experiment;
use std::path::Path;

const EXPERIMENT: &str = r#"
name = "two-targets"
seed = 4
[data]
synthetic = { levels = 2, events = 5000, seed = 13 }
[columns]
kind = "book"
window = 10
train_stride = 3
[[label]]
kind = "smoothed"
horizon = 5
[[label]]
id = "slow"
kind = "smoothed"
horizon = 20
alpha = 0.0
[[model]]
name = "lstm"
hidden = 6
[[model]]
name = "gru"
hidden = 6
targets = ["slow"]
[training]
epochs = 1
batch = 32
max_batches = 3
"#;

#[test]
fn two_targets_train_report_export_and_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = Experiment::from_toml(EXPERIMENT, "two.toml").unwrap();
    assert_eq!(exp.targets.len(), 2);
    let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(tmp.path().to_path_buf()), ..RunOptions::default() };
    let s = run_experiment(&exp, EXPERIMENT, &opts).unwrap();
    let j = &s.json;
    // lstm on both targets, gru only on the one it names.
    let ids: Vec<&String> = j["models"].as_object().unwrap().keys().collect();
    assert_eq!(ids, ["gru_slow", "lstm_slow", "lstm_smooth_k5"], "{j}");
    assert_eq!(j["models"]["lstm_smooth_k5"]["target"], "smooth_k5");
    assert_eq!(j["models"]["gru_slow"]["target"], "slow");
    for t in ["smooth_k5", "slow"] {
        let tj = &j["targets"][t];
        for b in ["majority", "ofi_logistic"] {
            assert!(tj["baselines"][b]["macro_f1"].is_number(), "{t}/{b}: {tj}");
        }
        assert!(tj["windows"]["test"].as_u64().unwrap() > 0);
    }
    assert_eq!(j["targets"]["slow"]["alpha"], 0.0, "fixed α is kept");
    assert_ne!(j["targets"]["smooth_k5"]["definition"], j["targets"]["slow"]["definition"]);
    // The two targets give different windows (different label reach) and different labels.
    let run = Path::new(j["run_dir"].as_str().unwrap());
    let a = ModelCard::load(&run.join("lstm_smooth_k5")).unwrap();
    let b = ModelCard::load(&run.join("lstm_slow")).unwrap();
    assert_eq!(a.preprocessing.target.horizon, Some(5));
    assert_eq!(b.preprocessing.target.horizon, Some(20));
    assert_eq!(a.preprocessing.inputs, b.preprocessing.inputs, "one input pipeline for every target");
    assert_eq!(b.preprocessing.target.alpha_rule, "fixed");
    // metrics.json keeps each target's baselines; reproduce compares all of them.
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert!(m["targets"]["slow"]["fitted"].as_array().unwrap().len() == 2);
    assert_eq!(m["models"]["gru_slow"]["target"], "slow");

    // eval on the stored events: each model is scored on its own target with its stored α.
    let ds = flowcast_train::run::load_data(&exp).unwrap();
    let data_dir = tmp.path().join("data");
    flowcast_datasets::write_dataset(&data_dir, &ds).unwrap();
    let e = evaluate(run, &data_dir, Engine::Candle, &burn::prelude::Device::flex(), None).unwrap();
    assert_eq!(e.json["models"]["gru_slow"]["target"], "slow");
    assert!(e.json["targets"]["slow"]["baselines"]["majority"]["accuracy"].is_number(), "{}", e.json);
    assert!(
        e.json["targets"]["smooth_k5"]["windows"]["test"].as_u64().unwrap()
            > e.json["targets"]["slow"]["windows"]["test"].as_u64().unwrap()
    );
}

#[test]
fn bad_target_references_and_regression_on_a_deep_model_are_named() {
    let bad = EXPERIMENT.replace("targets = [\"slow\"]", "targets = [\"fast\"]");
    let e = Experiment::from_toml(&bad, "two.toml").unwrap_err().to_string();
    assert!(e.contains("two.toml") && e.contains("\"fast\""), "{e}");
    let bad = EXPERIMENT.replace("id = \"slow\"", "id = \"smooth_k5\"");
    let e = Experiment::from_toml(&bad, "two.toml").unwrap_err().to_string();
    assert!(e.contains("share the id"), "{e}");
    let bad = EXPERIMENT.replace("alpha = 0.0", "alpha = 0.0\noutput = \"regression\"");
    let exp = Experiment::from_toml(&bad, "two.toml").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(tmp.path().to_path_buf()), ..RunOptions::default() };
    let e = run_experiment(&exp, &bad, &opts).unwrap_err().to_string();
    assert!(e.contains("regression target") && e.contains("slow"), "{e}");
    let bad = EXPERIMENT.replace("[training]", "baselines = [\"coin_flip\"]\n[training]");
    // `baselines` is a top-level key: put it before the first table.
    let bad = format!("baselines = [\"coin_flip\"]\n{}", bad.replace("baselines = [\"coin_flip\"]\n", ""));
    let e = Experiment::from_toml(&bad, "two.toml").unwrap_err().to_string();
    assert!(e.contains("coin_flip") && e.contains("majority"), "{e}");
}
