//! A tiny experiment end to end: every run-directory artifact is written and readable, the model
//! card reloads and rejects tampering, the exported models give the same logits through burn
//! and through the serve crate's candle twin, `eval` on a stored copy of the data reproduces the
//! test metrics, and (when Python's `safetensors` is installed) the weights file matches the card.

use flowcast_contract::card::ModelCard;
use flowcast_train::progress::Mode;
use flowcast_train::run::{evaluate, run_experiment, Engine, RunOptions};
use flowcast_train::tensorboard::read_scalars;
use flowcast_train::Experiment;
use std::path::Path;

const EXPERIMENT: &str = r#"
name = "tiny"
seed = 3
[data]
synthetic = { levels = 2, events = 6000, seed = 11 }
[columns]
kind = "book"
window = 20
train_stride = 3
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
[[model]]
name = "transformer"
window = 20
conv_channels = 5
conv_layers = 2
heads = 2
depth = 1
mlp_hidden = 8
[training]
epochs = 2
batch = 32
max_batches = 4
class_weights = "balanced"
schedule = { kind = "step", every = 1, gamma = 0.5 }
"#;

fn run(dir: &Path) -> (Experiment, flowcast_train::run::Summary) {
    let exp = Experiment::from_toml(EXPERIMENT, "tiny.toml").unwrap();
    let opts = RunOptions { progress: Mode::Quiet, runs_dir: Some(dir.to_path_buf()), verify_export: true, ..RunOptions::default() };
    let s = run_experiment(&exp, EXPERIMENT, &opts).unwrap();
    (exp, s)
}

#[test]
fn tiny_run_writes_every_artifact_and_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let (exp, s) = run(tmp.path());
    let j = &s.json;
    let run_dir = Path::new(j["run_dir"].as_str().unwrap()).to_path_buf();
    assert!(run_dir.file_name().unwrap().to_str().unwrap().starts_with("tiny-"));
    for key in ["accuracy", "macro_f1", "mcc"] {
        assert!(j[key].is_number(), "{key} in {j}");
        for b in ["majority", "ofi_logistic"] {
            assert!(j["baselines"][b][key].is_number(), "baselines.{b}.{key} in {j}");
        }
    }
    // Memory: the shared matrix plus a small index, far below per-window copies.
    let mem = &j["memory"];
    assert!(mem["ratio"].as_f64().unwrap() < 1.2, "{mem}");
    // Per-window copies would take ~T/stride times more (T = 20, training stride 3).
    assert!(mem["copied_windows_bytes"].as_u64().unwrap() > 5 * mem["dataset_bytes"].as_u64().unwrap(), "{mem}");

    for f in ["experiment.toml", "config.json", "run.json", "metrics.json"] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let rj: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    assert!(rj["git_revision"].is_string() && rj["data"]["events_sha256"].as_str().unwrap().len() == 64);
    let test_windows = j["windows"]["test"].as_u64().unwrap() as usize;

    for m in &exp.models {
        let d = run_dir.join(m.id());
        for f in [
            "model.safetensors",
            "model_config.json",
            "model.json",
            "predictions.parquet",
            "checkpoints/last/model.bpk",
            "checkpoints/last/optimizer.bpk",
            "checkpoints/last/state.json",
            "checkpoints/best/model.bpk",
            "importance.json",
            "reliability.svg",
        ] {
            assert!(d.join(f).is_file(), "{}/{f}", m.id());
        }
        // Permutation importance: one Δ log loss per input column, on the test windows.
        let imp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("importance.json")).unwrap()).unwrap();
        assert_eq!(imp["importance"].as_array().unwrap().len(), rj["columns"].as_array().unwrap().len());
        assert!(imp["importance"].as_array().unwrap().iter().all(|e| e["delta_log_loss"].as_f64().is_some_and(f64::is_finite)), "{imp}");
        // TensorBoard: every tag of both epochs, readable (CRCs checked).
        let ev = std::fs::read_dir(d.join("tensorboard")).unwrap().next().unwrap().unwrap().path();
        let scalars = read_scalars(&ev).unwrap();
        for tag in ["train/loss", "train/accuracy", "train/macro_f1", "val/loss", "val/accuracy", "val/macro_f1", "learning_rate"] {
            let steps: Vec<i64> = scalars.iter().filter(|s| s.0 == tag).map(|s| s.1).collect();
            assert_eq!(steps, vec![1, 2], "{tag}");
        }
        let lr: Vec<f32> = scalars.iter().filter(|s| s.0 == "learning_rate").map(|s| s.2).collect();
        assert_eq!(lr, vec![1e-3, 5e-4]);
        // Predictions: one row per test window.
        let f = std::fs::File::open(d.join("predictions.parquet")).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        assert_eq!(r.metadata().file_metadata().num_rows() as usize, test_windows);
        let names: Vec<String> = r.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["row", "event_index", "ts_exchange", "label", "pred", "p_down", "p_stationary", "p_up"]);
        // The card written by train loads in the burn-free crates (flowcast-contract's card,
        // flowcast-serve's predictor; tests/tests/no_burn.rs checks they hold no burn) and
        // predicts through the contract trait.
        let (cp, card) = flowcast_serve::CandlePredictor::load(&d).unwrap();
        use flowcast_contract::Predictor;
        assert_eq!(cp.info().classes, ["down", "stationary", "up"]);
        assert_eq!((cp.info().window, cp.info().features), (20, 8));
        assert_eq!(card.model_id, m.id());
        assert_eq!(card.preprocessing.inputs.window, 20);
        assert_eq!(card.preprocessing.target.id, "smooth_k5");
        assert_eq!(card.baselines.iter().map(|b| b.name()).collect::<Vec<_>>(), ["majority", "ofi_logistic"]);
        let ag = &j["agreement"][m.id()];
        assert!(ag["max_abs_prob_diff"].as_f64().unwrap() < 1e-5, "{}: {ag}", m.id());
        assert_eq!(ag["argmax_agreement"].as_f64().unwrap(), 1.0, "{}: {ag}", m.id());
    }
    logits_agree(&run_dir, &exp);
    tampered_cards_are_rejected(&run_dir.join("lstm"));
    eval_on_stored_data_reproduces_test_metrics(&run_dir, &exp, j);
    python_safetensors_matches_card(&run_dir.join("deeplob"));
    python_tensorboard_reads_history(&run_dir);
}

/// TensorBoard's own reader (Python `tensorboard` package) loads our event files and sees every
/// epoch's value of metrics.json's history.
fn python_tensorboard_reads_history(run_dir: &Path) {
    if !python_has("tensorboard") {
        return;
    }
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1])
ea.Reload()
print(json.dumps({t: [[e.step, e.value] for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}))
"#;
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap()).unwrap();
    for (id, m) in metrics["models"].as_object().unwrap() {
        let tb = run_dir.join(id).join("tensorboard");
        let out = std::process::Command::new("python3").args(["-c", script, tb.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{id}: python tensorboard failed: {}", String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let hist = m["history"].as_array().unwrap();
        for (tag, key) in
            [("train/loss", "train_loss"), ("val/macro_f1", "val_macro_f1"), ("learning_rate", "lr"), ("train/grad_norm", "grad_norm")]
        {
            let series = got[tag].as_array().unwrap_or_else(|| panic!("{id}: TensorBoard has no {tag}: {got}"));
            assert_eq!(series.len(), hist.len(), "{id} {tag}");
            for (s, h) in series.iter().zip(hist) {
                assert_eq!(s[0], h["epoch"], "{id} {tag}");
                let want = h[key].as_f64().unwrap() as f32 as f64;
                assert_eq!(s[1].as_f64().unwrap(), want, "{id} {tag} epoch {}", h["epoch"]);
            }
        }
    }
}

/// burn vs candle logits (not just probabilities) on the exported files, for every model.
fn logits_agree(run_dir: &Path, exp: &Experiment) {
    use burn::prelude::*;
    let device = Device::flex();
    for m in &exp.models {
        let d = run_dir.join(m.id());
        let (bm, cfg) = flowcast_models::export::load(&d, &device).unwrap();
        let cm = flowcast_serve::Model::load_dir(&d).unwrap();
        let (b, t, f) = (5, 20, cfg.n_features());
        let x: Vec<f32> = (0..b * t * f).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        let bl: Vec<f32> = bm
            .valid()
            .forward(Tensor::<3>::from_data(burn::tensor::TensorData::new(x.clone(), [b, t, f]), &device))
            .into_data()
            .try_to_vec()
            .unwrap();
        let cl = cm.logits(&x, b, t).unwrap();
        let diff = bl.iter().zip(&cl).map(|(a, c)| (a - c).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{}: burn vs candle logits differ by {diff}", m.id());
    }
}

fn tampered_cards_are_rejected(dir: &Path) {
    let card_path = dir.join("model.json");
    let good = std::fs::read_to_string(&card_path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    type Tamper = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("weights.sha256", Box::new(|c| c["weights"]["sha256"] = "0".repeat(64).into())),
        (
            "preprocessing.inputs.normalizer",
            Box::new(|c| c["preprocessing"]["inputs"]["normalizer"]["columns"][0]["name"] = "other".into()),
        ),
        ("model.config", Box::new(|c| c["preprocessing"]["inputs"]["names"].as_array_mut().unwrap().pop().map(|_| ()).unwrap())),
        ("classes", Box::new(|c| c["classes"][0] = "sell".into())),
        ("version", Box::new(|c| c["version"] = 9.into())),
        ("weights.tensors", Box::new(|c| c["weights"]["tensors"][0]["shape"][0] = 999.into())),
        ("preprocessing.target.alpha", Box::new(|c| c["preprocessing"]["target"]["alpha"] = (-1.0).into())),
        ("baselines", Box::new(|c| c["baselines"][1]["coef"].as_array_mut().unwrap().pop().map(|_| ()).unwrap())),
        ("family", Box::new(|c| c["family"] = "lightgbm".into())),
        ("metrics.test.macro_f1", Box::new(|c| c["metrics"]["test"].as_object_mut().unwrap().remove("macro_f1").map(|_| ()).unwrap())),
    ];
    for (field, tamper) in cases {
        let mut c = v.clone();
        tamper(&mut c);
        std::fs::write(&card_path, serde_json::to_string(&c).unwrap()).unwrap();
        let e = ModelCard::load(dir).unwrap_err().to_string();
        assert!(e.contains("model.json") && e.contains(field), "tampering {field}: {e}");
    }
    // An unknown field is rejected too.
    let mut c = v.clone();
    c["extra"] = 1.into();
    std::fs::write(&card_path, serde_json::to_string(&c).unwrap()).unwrap();
    assert!(ModelCard::load(dir).unwrap_err().to_string().contains("extra"));
    std::fs::write(&card_path, good).unwrap();
    ModelCard::load(dir).unwrap();
}

/// `eval` on the same events stored as a dataset: the test windows are a subset of all windows;
/// restricted to them the predictions are identical, so we check the stored α/normaliser path by
/// recomputing on the full data and comparing the model's predictions on the shared windows.
fn eval_on_stored_data_reproduces_test_metrics(run_dir: &Path, exp: &Experiment, j: &serde_json::Value) {
    let ds = flowcast_train::run::load_data(exp).unwrap();
    let data_dir = run_dir.join("data");
    flowcast_datasets::write_dataset(&data_dir, &ds).unwrap();
    let out = run_dir.join("eval");
    let burn = evaluate(run_dir, &data_dir, Engine::Burn, &burn::prelude::Device::flex(), Some(&out)).unwrap();
    let candle = evaluate(run_dir, &data_dir, Engine::Candle, &burn::prelude::Device::flex(), None).unwrap();
    assert_eq!(burn.json["data_sha256"], j["data_sha256"], "stored dataset has the same events");
    for m in &exp.models {
        let a = burn.json["models"][m.id()]["accuracy"].as_f64().unwrap();
        let b = candle.json["models"][m.id()]["accuracy"].as_f64().unwrap();
        assert!((a - b).abs() < 1e-9, "{}: burn {a} vs candle {b}", m.id());
        // Every window of the training run's test split is also a window here, with the same
        // inputs (stored normaliser) and label (stored α): its probabilities must match.
        let read = |p: &Path| -> std::collections::HashMap<u64, [f32; 3]> {
            let f = std::fs::File::open(p).unwrap();
            let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
            let mut out = std::collections::HashMap::new();
            for b in r {
                let b = b.unwrap();
                let row = b.column(0).as_any().downcast_ref::<arrow_array::UInt64Array>().unwrap();
                let ps: Vec<&arrow_array::Float32Array> = (5..8).map(|c| b.column(c).as_any().downcast_ref().unwrap()).collect();
                for i in 0..b.num_rows() {
                    out.insert(row.value(i), [ps[0].value(i), ps[1].value(i), ps[2].value(i)]);
                }
            }
            out
        };
        let trained = read(&run_dir.join(m.id()).join("predictions.parquet"));
        let evald = read(&out.join(format!("{}.parquet", m.id())));
        for (row, p) in &trained {
            let q = evald.get(row).unwrap_or_else(|| panic!("{}: test window ending at row {row} missing from eval", m.id()));
            for c in 0..3 {
                assert!((p[c] - q[c]).abs() < 1e-6, "{}: row {row}: {p:?} vs {q:?}", m.id());
            }
        }
    }
}

fn python_safetensors_matches_card(dir: &Path) {
    if !python_has("safetensors, numpy") {
        return;
    }
    let script = r#"
import json, sys
from safetensors import safe_open
d = sys.argv[1]
card = json.load(open(d + "/model.json"))
want = {t["name"]: (t["dtype"], t["shape"]) for t in card["weights"]["tensors"]}
got = {}
with safe_open(d + "/model.safetensors", framework="numpy") as f:
    for k in f.keys():
        a = f.get_tensor(k)
        got[k] = ({"float32": "F32"}.get(str(a.dtype), str(a.dtype)), list(a.shape))
assert got == want, (sorted(set(got) ^ set(want)), [k for k in got if got.get(k) != want.get(k)][:5])
print(len(got), "tensors match")
"#;
    let out = std::process::Command::new("python3").args(["-c", script, dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "python safetensors check failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Whether `python3 -c "import <modules>"` works; says SKIP on stderr when not (CI installs them).
fn python_has(modules: &str) -> bool {
    let ok = std::process::Command::new("python3").args(["-c", &format!("import {modules}")]).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: python3 with `{modules}` not available (pip install {})", modules.replace(',', ""));
    }
    ok
}
