//! The stacked ensemble end to end: an experiment with two horizons trains ensembles whose
//! members are an LSTM (own horizon), a GRU (the other horizon) and the majority baseline;
//! the exported ensemble (one card, members inside) reloads through `Predictor` in `eval`
//! (burn and candle), the server's model repository and the backtest's signals, and its card
//! validation catches a changed member or document.

use flowcast_contract::card::{Family, ModelCard};
use flowcast_contract::ensemble::EnsembleDoc;
use flowcast_train::progress::Mode;
use flowcast_train::run::{evaluate, run_experiment, Engine, RunOptions};
use flowcast_train::Experiment;
use std::path::Path;

const EXPERIMENT: &str = r#"
name = "ens"
seed = 4
[data]
synthetic = { levels = 2, events = 6000, seed = 13 }
[columns]
kind = "book"
window = 10
train_stride = 3
[[label]]
id = "k5"
kind = "smoothed"
horizon = 5
[[label]]
id = "k20"
kind = "smoothed"
horizon = 20
[[model]]
name = "ensemble"
id = "stack"
targets = ["k5"]
meta = "logistic"
folds = 2
members = [
  { name = "lstm", hidden = 6 },
  { name = "gru", hidden = 6, target = "k20" },
  { name = "majority" },
]
[[model]]
name = "ensemble"
id = "online"
targets = ["k5"]
meta = "hedge"
folds = 2
members = [{ name = "lstm", hidden = 6 }, { name = "ofi_logistic" }]
[training]
epochs = 1
batch = 32
max_batches = 3
"#;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

#[test]
fn ensemble_trains_exports_and_serves_through_predictor() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = Experiment::from_toml(EXPERIMENT, "ens.toml").unwrap();
    let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(tmp.path().to_path_buf()), verify_export: true, ..RunOptions::default() };
    let s = run_experiment(&exp, EXPERIMENT, &opts).unwrap();
    let j = &s.json;
    let models = j["models"].as_object().unwrap();
    // Two targets: run ids are `<model id>_<target>`.
    for id in ["stack_k5", "stack_k5/lstm", "stack_k5/gru", "stack_k5/majority", "online_k5", "online_k5/lstm", "online_k5/ofi_logistic"] {
        assert!(models[id]["macro_f1"].is_number(), "{id}: {j}");
        assert_eq!(models[id]["target"], "k5", "{id}: members are scored on the ensemble's labels");
    }
    assert_eq!(models["stack_k5/gru"]["member_target"], "k20");
    assert_eq!(models["stack_k5"]["meta"], "logistic");
    assert!(models["online_k5"]["prequential"]["accuracy"].is_number(), "hedge reports its online protocol: {j}");
    assert!(j["agreement"]["stack_k5"]["max_abs_prob_diff"].as_f64().unwrap() <= 1e-5, "{j}");

    let run = Path::new(j["run_dir"].as_str().unwrap());
    let dir = run.join("stack_k5");
    let card = ModelCard::load(&dir).unwrap();
    assert_eq!(card.family, Family::Ensemble);
    let doc = EnsembleDoc::from_card(&card, &dir).unwrap();
    let ids: Vec<&str> = doc.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["lstm", "gru", "majority"]);
    assert_eq!(doc.members[1].target, "k20");
    assert!(doc.members[2].baseline.is_some() && doc.members[2].dir.is_none());
    let gru = ModelCard::load(&dir.join("members/gru")).unwrap();
    assert_eq!(gru.family, Family::Deep);
    assert_eq!(gru.preprocessing.target.horizon, Some(20), "a member keeps its own horizon");
    assert!(!dir.join("folds").exists(), "fold models are not part of the artifact");

    // eval (burn members) and predict (candle members) on the stored events.
    let ds = flowcast_train::run::load_data(&exp).unwrap();
    let data_dir = tmp.path().join("data");
    flowcast_datasets::write_dataset(&data_dir, &ds).unwrap();
    let burn = evaluate(&dir, &data_dir, Engine::Burn, &burn::prelude::Device::flex(), None).unwrap();
    let candle = evaluate(&dir, &data_dir, Engine::Candle, &burn::prelude::Device::flex(), None).unwrap();
    let (a, b) = (&burn.json["models"]["stack_k5"], &candle.json["models"]["stack_k5"]);
    assert!(a["accuracy"].is_number(), "{}", burn.json);
    assert!((a["accuracy"].as_f64().unwrap() - b["accuracy"].as_f64().unwrap()).abs() < 0.01, "burn {a} vs candle {b}");

    // The server's model repository loads it (burn-free), as does the backtest's signal loader.
    let loaded = (flowcast_server::repo::candle_loader())(&dir).unwrap();
    assert_eq!(loaded.predictor.info().name, "ensemble");
    assert_eq!(loaded.predictor.info().classes, card.classes);
    let spec: flowcast_backtest::config::SignalSpec =
        serde_json::from_value(serde_json::json!({"model": run.join("online_k5"), "allow_in_sample": true})).unwrap();
    let sig = flowcast_backtest::signals::load(&spec, &ds, None).unwrap();
    assert!(!sig.points.is_empty() && sig.source.contains("online"), "{}", sig.source);

    // Validation: a changed member card, a changed document.
    let bad = tmp.path().join("bad");
    copy_dir(&dir, &bad);
    let mc = bad.join("members/gru/model.json");
    std::fs::write(&mc, std::fs::read_to_string(&mc).unwrap() + " ").unwrap();
    let e = ModelCard::load(&bad).unwrap_err().to_string();
    assert!(e.contains("model.members[1] (gru)") && e.contains("card_sha256"), "{e}");
    let bad2 = tmp.path().join("bad2");
    copy_dir(&dir, &bad2);
    let doc_path = bad2.join("ensemble.json");
    std::fs::write(&doc_path, std::fs::read_to_string(&doc_path).unwrap().replace("\"logistic\"", "\"hedge\"")).unwrap();
    let e = ModelCard::load(&bad2).unwrap_err().to_string();
    assert!(e.contains("weights.sha256"), "{e}");
}

#[test]
fn bad_ensemble_tables_are_named() {
    let bad = EXPERIMENT.replace("folds = 2\nmembers = [\n", "folds = 2\nmembers = [\n  { name = \"lstm\", hidden = 6 },\n");
    let e = Experiment::from_toml(&bad, "ens.toml").unwrap_err().to_string();
    assert!(e.contains("stack") && e.contains("share the id"), "{e}");
    let bad = EXPERIMENT.replace("target = \"k20\"", "target = \"k99\"");
    let e = Experiment::from_toml(&bad, "ens.toml").unwrap_err().to_string();
    assert!(e.contains("k99"), "{e}");
    let bad = EXPERIMENT.replace("meta = \"logistic\"", "meta = \"lightgbm\"\nmeta_lightgbm = { num_leavs = 3 }");
    let e = Experiment::from_toml(&bad, "ens.toml").unwrap_err().to_string();
    assert!(e.contains("meta_lightgbm") && e.contains("num_leavs"), "{e}");
    let bad = EXPERIMENT.replace("meta = \"logistic\"", "meta = \"logistic\"\nmeta_lightgbm = { num_leaves = 3 }");
    let e = Experiment::from_toml(&bad, "ens.toml").unwrap_err().to_string();
    assert!(e.contains("meta_lightgbm is for meta = \"lightgbm\""), "{e}");
    // LightGBM stacking parses in every build; without the feature the run refuses before
    // training anything, saying how to build it (with it: tests/ensemble_lightgbm.rs).
    let lgb_meta = EXPERIMENT.replace("meta = \"logistic\"", "meta = \"lightgbm\"");
    let exp = Experiment::from_toml(&lgb_meta, "ens.toml").unwrap();
    if !cfg!(feature = "lightgbm") {
        let tmp = tempfile::tempdir().unwrap();
        let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(tmp.path().to_path_buf()), ..RunOptions::default() };
        let e = run_experiment(&exp, &lgb_meta, &opts).unwrap_err().to_string();
        assert!(e.contains("[[model]] stack") && e.contains("meta = \"lightgbm\"") && e.contains("--features lightgbm"), "{e}");
    }
    if !cfg!(feature = "lightgbm") {
        let with_lgbm = EXPERIMENT.replace("{ name = \"majority\" },", "{ name = \"lightgbm\" },");
        let exp = Experiment::from_toml(&with_lgbm, "ens.toml").unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(tmp.path().to_path_buf()), ..RunOptions::default() };
        let e = run_experiment(&exp, &with_lgbm, &opts).unwrap_err().to_string();
        assert!(e.contains("--features lightgbm"), "{e}");
    }
}
