//! LightGBM stacking end to end (`cargo test -p flowcast-train --features lightgbm --test
//! ensemble_lightgbm`): an ensemble with `meta = "lightgbm"` over a LightGBM, an LSTM and the
//! OFI-logistic members trains from a tiny experiment; its meta model (LightGBM's text format,
//! `meta_lightgbm.txt`) is evaluated by the pure-Rust gbdt evaluator, which agrees with
//! LightGBM's own predictions on every out-of-fold row (recorded by the run) and on the test
//! rows (checked here through lightgbm3 and, when installed, Python's `lightgbm`); the ensemble
//! reloads through `flowcast_serve::load_predictor` with the training-time predictions exactly,
//! runs in `eval` and `predict`, and its card rejects a changed meta model or a meta model of
//! the wrong width.
#![cfg(feature = "lightgbm")]

use flowcast_contract::card::{sha256_file, Family, ModelCard};
use flowcast_contract::ensemble::{EnsembleDoc, EnsemblePredictor, MetaLearner, META_LIGHTGBM_FILE};
use flowcast_contract::predictor::{predict_set, Batch, Predictor};
use flowcast_train::progress::Mode;
use flowcast_train::run::{evaluate, run_experiment, Engine, RunOptions};
use flowcast_train::Experiment;
use std::path::Path;

const EXPERIMENT: &str = r#"
name = "ens_lgb"
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
[[model]]
name = "ensemble"
id = "stack"
meta = "lightgbm"
folds = 2
meta_lightgbm = { num_threads = 2, min_data_in_leaf = 20 }
members = [
  { name = "lightgbm", num_iterations = 30, num_threads = 2, shap_rows = 20 },
  { name = "lstm", hidden = 6 },
  { name = "ofi_logistic" },
]
[training]
epochs = 1
batch = 32
max_batches = 3
class_weights = "balanced"
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

/// The p_* columns of a predictions file, in its row order.
fn read_probs(p: &Path, k: usize) -> Vec<f32> {
    let f = std::fs::File::open(p).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        let first = (0..b.num_columns()).find(|&c| b.schema().field(c).name().starts_with("p_")).expect("p_* columns");
        let ps: Vec<&arrow_array::Float32Array> = (first..first + k).map(|c| b.column(c).as_any().downcast_ref().unwrap()).collect();
        for i in 0..b.num_rows() {
            out.extend(ps.iter().map(|c| c.value(i)));
        }
    }
    out
}

/// The `row` column of a predictions file.
fn read_rows(p: &Path) -> Vec<u64> {
    let f = std::fs::File::open(p).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        let c = b.column_by_name("row").unwrap().as_any().downcast_ref::<arrow_array::UInt64Array>().unwrap();
        out.extend(c.values().iter().copied());
    }
    out
}

#[test]
fn lightgbm_stacking_trains_exports_and_serves_in_rust() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = Experiment::from_toml(EXPERIMENT, "ens_lgb.toml").unwrap();
    let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(tmp.path().to_path_buf()), verify_export: true, ..RunOptions::default() };
    let s = run_experiment(&exp, EXPERIMENT, &opts).unwrap();
    let j = &s.json;
    assert_eq!(j["models"]["stack"]["meta"], "lightgbm", "{j}");
    for id in ["stack", "stack/lightgbm", "stack/lstm", "stack/ofi_logistic"] {
        assert!(j["models"][id]["macro_f1"].is_number(), "{id}: {j}");
    }
    assert!(j["agreement"]["stack"]["max_abs_prob_diff"].as_f64().unwrap() <= 1e-5, "{j}");
    let run = Path::new(j["run_dir"].as_str().unwrap());
    let dir = run.join("stack");

    // (a) The run's parity record: the Rust evaluator vs LightGBM on every out-of-fold row.
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let lm = &metrics["models"]["stack"]["meta_fit"]["lightgbm"];
    let oof_rows = lm["evaluator"]["rows"].as_u64().unwrap();
    let train_windows = j["targets"]["k5"]["windows"]["train"].as_u64().unwrap();
    assert_eq!(oof_rows, train_windows, "the meta model is fitted on every out-of-fold row: {lm}");
    let diff = lm["evaluator"]["max_abs_diff_vs_lightgbm"].as_f64().unwrap();
    assert!(diff <= 1e-6, "meta model: Rust evaluator vs LightGBM on the out-of-fold rows: {diff}");
    let es = &lm["early_stopping"];
    assert!(es["best_iteration"].as_u64().unwrap() >= 1 && es["holdout_rows"].as_u64().unwrap() > 0, "{lm}");
    assert_eq!(lm["iterations"], es["best_iteration"], "refitted with the early-stopped round count: {lm}");
    assert_eq!(lm["features"].as_array().unwrap().len(), 3 * 3);
    // Real trees (splits), so the parity checks compare something.
    assert!(lm["leaves"].as_u64().unwrap() > 2 * lm["trees"].as_u64().unwrap(), "{lm}");
    eprintln!("meta: {lm}");

    // The artifact: the meta model beside ensemble.json, hashed by the document.
    let card = ModelCard::load(&dir).unwrap();
    assert_eq!(card.family, Family::Ensemble);
    let doc = EnsembleDoc::from_card(&card, &dir).unwrap();
    let MetaLearner::Lightgbm { file, sha256, .. } = &doc.meta else { panic!("meta: {:?}", doc.meta) };
    assert_eq!(file, META_LIGHTGBM_FILE);
    assert_eq!(*sha256, sha256_file(&dir.join(file)).unwrap());

    // (b) Served: flowcast_serve::load_predictor gives the training-time test predictions exactly.
    let ds = flowcast_train::run::load_data(&exp).unwrap();
    let data = flowcast_train::run::prepare_experiment(&exp, &ds).unwrap(); // the run's own splits
    let test = &data.targets[0].test;
    let served = flowcast_serve::load_predictor(&dir, &card).unwrap();
    assert_eq!(served.info().name, "ensemble");
    let out = predict_set(served.as_ref(), test, &data.window_ofi, 97).unwrap();
    let trained = read_probs(&dir.join("predictions.parquet"), 3);
    assert_eq!(out.probs.len(), trained.len());
    let max_dp = out.probs.iter().zip(&trained).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert_eq!(max_dp, 0.0, "served vs training-time ensemble predictions");

    // (a) On the test rows: the members' probabilities through LightGBM (lightgbm3) and through
    // the served meta-learner.
    let ens = EnsemblePredictor::<dyn Predictor + Send + Sync>::load(&dir, &card, &|d, c| flowcast_serve::load_predictor(d, c)).unwrap();
    let (t, f) = (test.window, test.data.cols());
    let mut x = Vec::with_capacity(test.len() * t * f);
    for &e in &test.ends {
        let e = e as usize;
        for r in e + 1 - t..=e {
            x.extend_from_slice(test.data.row(r));
        }
    }
    let ofi: Vec<f64> = test.ends.iter().map(|&e| data.window_ofi[e as usize]).collect();
    let b = Batch::new(&x, test.len(), t, f).unwrap().with_ofi(&ofi).unwrap();
    let z = ens.member_probs(&b).unwrap();
    let booster = lightgbm3::Booster::from_file(&dir.join(META_LIGHTGBM_FILE).display().to_string()).unwrap();
    let own = booster.predict(&z, 9, true).unwrap();
    let d = own.iter().zip(&out.probs).map(|(a, &b)| (a - b as f64).abs()).fold(0.0f64, f64::max);
    assert!(d <= 1e-6, "served ensemble vs LightGBM on the test rows' member probabilities: {d}");
    python_predicts_the_same(&dir.join(META_LIGHTGBM_FILE), &z, &own);

    // `eval` (burn members) and `predict` (candle members) on the stored events.
    let data_dir = tmp.path().join("data");
    flowcast_datasets::write_dataset(&data_dir, &ds).unwrap();
    let pout = tmp.path().join("pred");
    let candle = evaluate(&dir, &data_dir, Engine::Candle, &burn::prelude::Device::flex(), Some(&pout)).unwrap();
    let by_row = |p: &Path| -> std::collections::HashMap<u64, Vec<f32>> {
        read_rows(p).into_iter().zip(read_probs(p, 3).chunks(3).map(|c| c.to_vec())).collect()
    };
    let (evald, trained_rows) = (by_row(&pout.join("stack.parquet")), by_row(&dir.join("predictions.parquet")));
    assert!(!trained_rows.is_empty());
    for (row, p) in &trained_rows {
        assert_eq!(evald.get(row), Some(p), "predict vs training-time predictions, row {row}");
    }
    let burn = evaluate(&dir, &data_dir, Engine::Burn, &burn::prelude::Device::flex(), None).unwrap();
    let (a, c) = (&burn.json["models"]["stack"], &candle.json["models"]["stack"]);
    assert!((a["accuracy"].as_f64().unwrap() - c["accuracy"].as_f64().unwrap()).abs() < 0.01, "burn {a} vs candle {c}");

    // Validation: a changed meta model; a meta model of the wrong width (a member dropped from
    // a re-hashed document).
    let bad = tmp.path().join("bad");
    copy_dir(&dir, &bad);
    let mf = bad.join(META_LIGHTGBM_FILE);
    std::fs::write(&mf, std::fs::read_to_string(&mf).unwrap() + "\n").unwrap();
    let e = ModelCard::load(&bad).unwrap_err().to_string();
    assert!(e.contains("model.meta.sha256"), "{e}");
    let bad2 = tmp.path().join("bad2");
    copy_dir(&dir, &bad2);
    let mut doc_v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bad2.join("ensemble.json")).unwrap()).unwrap();
    doc_v["members"].as_array_mut().unwrap().pop();
    std::fs::write(bad2.join("ensemble.json"), serde_json::to_string_pretty(&doc_v).unwrap()).unwrap();
    let mut card_v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(bad2.join("model.json")).unwrap()).unwrap();
    card_v["model"] = doc_v;
    card_v["weights"]["sha256"] = sha256_file(&bad2.join("ensemble.json")).unwrap().into();
    std::fs::write(bad2.join("model.json"), serde_json::to_string_pretty(&card_v).unwrap()).unwrap();
    let e = ModelCard::load(&bad2).unwrap_err().to_string();
    assert!(e.contains("model.meta") && e.contains("9 features") && e.contains("2·3"), "{e}");
}

/// Python's `lightgbm` (skipped with a message when not installed) loads the meta model and
/// predicts what LightGBM's C API did through lightgbm3 (`own`) on rows `z` of 9 features.
fn python_predicts_the_same(model: &Path, z: &[f32], own: &[f64]) {
    let ok = std::process::Command::new("python3").args(["-c", "import lightgbm, numpy"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: Python's lightgbm (and numpy) not installed: pip install lightgbm numpy");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let csv: String = z.chunks(9).map(|r| r.iter().map(|v| format!("{v:e}")).collect::<Vec<_>>().join(",") + "\n").collect();
    std::fs::write(tmp.path().join("z.csv"), csv).unwrap();
    let script = "import sys, numpy as np, lightgbm as lgb\nb = lgb.Booster(model_file=sys.argv[1])\nX = np.loadtxt(sys.argv[2], delimiter=',', ndmin=2, dtype=np.float32)\nnp.savetxt(sys.argv[3], b.predict(X).reshape(len(X), -1), delimiter=',', fmt='%.17g')\n";
    let o = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(model)
        .arg(tmp.path().join("z.csv"))
        .arg(tmp.path().join("p.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "python lightgbm: {}", String::from_utf8_lossy(&o.stderr));
    let py: Vec<f64> = std::fs::read_to_string(tmp.path().join("p.csv"))
        .unwrap()
        .lines()
        .flat_map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect::<Vec<_>>())
        .collect();
    assert_eq!(py.len(), own.len());
    let d = py.iter().zip(own).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
    assert!(d <= 1e-6, "Python lightgbm vs the C API on the meta model: {d}");
    eprintln!("python lightgbm agrees with the meta model on {} rows: max |Δp| = {d:e}", z.len() / 9);
}
