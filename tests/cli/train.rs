//! `flowcast models|run|eval|predict` from the binary: the `--json` contract (keys the issue
//! names), run-directory artifacts, burn `eval` vs candle `predict` on another dataset, and exit
//! code 2 with the file named for a bad experiment.

use super::flowcast;
use std::path::Path;

const EXPERIMENT: &str = r#"
name = "cli"
seed = 5
[data]
synthetic = { levels = 2, events = 5000, seed = 21 }
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
[training]
epochs = 2
batch = 32
max_batches = 3
grad_clip = { norm = 0.5 }
"#;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out}"))
}

fn headline_keys(v: &serde_json::Value, what: &str) {
    for key in ["accuracy", "macro_f1", "mcc"] {
        assert!(v[key].is_number(), "{what}: {key} missing in {v}");
        for b in ["majority", "ofi_logistic"] {
            assert!(v["baselines"][b][key].is_number(), "{what}: baselines.{b}.{key} missing in {v}");
        }
    }
    // The majority baseline predicts one class: its MCC is 0 by definition.
    assert_eq!(v["baselines"]["majority"]["mcc"].as_f64(), Some(0.0), "{what}");
}

#[test]
fn models_describe_reports_the_deeplob_reference_count() {
    let (code, out, err) = flowcast(&["models", "describe", "deeplob", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["params"], 143_907, "DeepLOB, 10 levels, 3 classes (Zhang et al. 2019)");
    let (code, out, err) = flowcast(&["models", "describe", "deeplob", "--set", "levels=1", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(json(&out)["params"].as_u64().unwrap() < 143_907);
    let (code, _, err) = flowcast(&["models", "describe", "no_such_model"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no_such_model"), "{err}");
}

#[test]
fn run_json_eval_and_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("cli.toml");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let runs = tmp.path().join("runs");
    let (code, out, err) = flowcast(&["run", exp.to_str().unwrap(), "--json", "--quiet", "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    headline_keys(&v, "run");
    let run_dir = Path::new(v["run_dir"].as_str().unwrap()).to_path_buf();
    assert!(run_dir.starts_with(&runs));
    for f in ["experiment.toml", "config.json", "run.json", "metrics.json"] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let m = run_dir.join("lstm");
    for f in ["model.safetensors", "model.json", "predictions.parquet", "checkpoints/last/state.json"] {
        assert!(m.join(f).is_file(), "lstm/{f}");
    }
    assert!(std::fs::read_dir(m.join("tensorboard")).unwrap().count() == 1);
    // `run` reloads the export through candle and reports the agreement with burn.
    let ag = &v["agreement"]["lstm"];
    assert!(ag["max_abs_prob_diff"].as_f64().unwrap() < 1e-5, "{ag}");
    // The grad-norm history is recorded per epoch.
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap()).unwrap();
    let hist = metrics["models"]["lstm"]["history"].as_array().unwrap();
    assert_eq!(hist.len(), 2);
    assert!(hist.iter().all(|h| h["grad_norm"].as_f64().unwrap() > 0.0), "{hist:?}");

    // Another dataset (another seed = "another day"): burn eval and candle predict agree.
    let other = tmp.path().join("other");
    let (code, _, err) = flowcast(&["data", "synth", "--levels", "2", "--events", "4000", "--seed", "9", "--out", other.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = flowcast(&["eval", "--run", run_dir.to_str().unwrap(), "--data", other.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let e = json(&out);
    headline_keys(&e, "eval");
    assert_eq!(e["engine"], "burn");
    let (code, out, err) = flowcast(&["predict", "--run", run_dir.to_str().unwrap(), "--data", other.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let p = json(&out);
    assert_eq!(p["engine"], "candle");
    assert_eq!(p["windows"]["test"], e["windows"]["test"]);
    assert!(e["windows"]["test"].as_u64().unwrap() > 0);
    for key in ["accuracy", "macro_f1", "mcc"] {
        let (a, b) = (e[key].as_f64().unwrap(), p[key].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{key}: burn {a} vs candle {b}");
    }

    reproduce(&run_dir, tmp.path());
}

/// `flowcast reproduce`: bit-identical on CPU; a changed number or changed data is caught.
fn reproduce(run_dir: &Path, tmp: &Path) {
    let again = tmp.join("again");
    let args = |extra: &[&str]| {
        let mut a = vec!["reproduce", "--run", run_dir.to_str().unwrap(), "--quiet", "--json", "--runs-dir", again.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let call = |a: Vec<String>| flowcast(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, out, err) = call(args(&[]));
    assert_eq!(code, 0, "{out} {err}");
    let r = &json(&out)["reproduction"];
    assert_eq!(r["identical"], true, "{r}");
    assert_eq!(r["models"]["lstm"]["weights_identical"], true, "{r}");
    assert_eq!(r["models"]["lstm"]["max_abs_diff"].as_f64(), Some(0.0), "{r}");

    // A reported number that the run does not reproduce: exit 1, the key named.
    let mpath = run_dir.join("metrics.json");
    let good = std::fs::read_to_string(&mpath).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&good).unwrap();
    let acc = m["models"]["lstm"]["test"]["accuracy"].as_f64().unwrap();
    m["models"]["lstm"]["test"]["accuracy"] = (acc + 0.01).into();
    std::fs::write(&mpath, m.to_string()).unwrap();
    let (code, out, err) = call(args(&[]));
    assert_eq!(code, 1, "{out} {err}");
    let r = &json(&out)["reproduction"];
    assert_eq!(r["identical"], false);
    assert_eq!(r["models"]["lstm"]["differing"], serde_json::json!(["accuracy"]), "{r}");
    std::fs::write(&mpath, good).unwrap();

    // Different data than recorded: refused before training (exit 2).
    let rpath = run_dir.join("run.json");
    let good = std::fs::read_to_string(&rpath).unwrap();
    let mut rj: serde_json::Value = serde_json::from_str(&good).unwrap();
    rj["data"]["events_sha256"] = "0".repeat(64).into();
    std::fs::write(&rpath, rj.to_string()).unwrap();
    let (code, _, err) = call(args(&[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the data changed"), "{err}");
    std::fs::write(&rpath, good).unwrap();
}

#[test]
fn bad_experiment_exits_2_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("typo.toml");
    std::fs::write(&exp, EXPERIMENT.replace("max_batches = 3", "max_batchez = 3")).unwrap();
    let (code, out, err) = flowcast(&["run", exp.to_str().unwrap(), "--json", "--runs-dir", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 2, "stdout {out} stderr {err}");
    assert!(err.contains("typo.toml") && err.contains("max_batchez"), "{err}");
}

#[test]
fn bench_train_reports_rates_and_same_process_ratios() {
    let (code, out, err) = flowcast(&[
        "bench",
        "train",
        "--model",
        "deeplob",
        "--set",
        "conv_channels=4",
        "--set",
        "inception_channels=4",
        "--set",
        "lstm_hidden=4",
        "--levels",
        "1",
        "--batch",
        "4",
        "--window",
        "24",
        "--steps",
        "1",
        "--baseline-set",
        "hidden=4",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert_eq!(v["model"], "deeplob");
    assert_eq!(v["baseline"]["model"], "lstm");
    for k in ["train_samples_per_s", "infer_windows_per_s", "candle_infer_windows_per_s", "candle_vs_burn_infer", "train_cost_vs_baseline"]
    {
        assert!(v[k].as_f64().is_some_and(|x| x > 0.0 && x.is_finite()), "{k} in {v}");
    }
    let ratio = v["baseline"]["train_samples_per_s"].as_f64().unwrap() / v["train_samples_per_s"].as_f64().unwrap();
    assert!((ratio - v["train_cost_vs_baseline"].as_f64().unwrap()).abs() < 1e-9 * ratio);
}

/// `flowcast reproduce` on an ensemble run (experiments/ensemble_quickstart.toml cut to tiny
/// sizes: two LSTM members on two horizons, a baseline member, logistic and Hedge meta-learners):
/// the re-run is identical — every ensemble's and member's test metrics and the exported
/// `ensemble.json` (which records each member card's SHA-256) — and a changed number is caught.
#[test]
fn ensemble_run_reproduces() {
    let tmp = tempfile::tempdir().unwrap();
    let quick = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/ensemble_quickstart.toml")).unwrap();
    let mut exp: toml::Table = toml::from_str(&quick).unwrap();
    exp["name"] = "ensemble_repro".into();
    exp["data"]["synthetic"] = toml::Value::Table(toml::toml! { levels = 2
    events = 6000
    seed = 13 });
    exp["columns"]["levels"] = 2.into();
    exp["columns"]["window"] = 8.into();
    let models = exp["model"].as_array_mut().unwrap();
    models.retain(|m| m["id"].as_str() != Some("ens_weighted"));
    for m in models.iter_mut() {
        m["folds"] = 2.into();
        for mem in m["members"].as_array_mut().unwrap() {
            if mem.get("hidden").is_some() {
                mem["hidden"] = 4.into();
            }
        }
    }
    let t = exp["training"].as_table_mut().unwrap();
    t.insert("epochs".into(), 1.into());
    t.insert("batch".into(), 32.into());
    t.insert("max_batches".into(), 2.into());
    let path = tmp.path().join("ensemble.toml");
    std::fs::write(&path, toml::to_string(&exp).unwrap()).unwrap();
    let runs = tmp.path().join("runs");
    let (code, out, err) = flowcast(&["run", path.to_str().unwrap(), "--json", "--quiet", "--runs-dir", runs.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let run_dir = std::path::PathBuf::from(json(&out)["run_dir"].as_str().unwrap());
    // Two targets in the experiment: model directories (and metrics keys) are `<id>_<target>`.
    let ids = ["ens_logistic_k10", "ens_hedge_k10"];
    for id in ids {
        assert!(run_dir.join(id).join("ensemble.json").is_file(), "{id} exported");
    }
    let again = tmp.path().join("again");
    let args = ["reproduce", "--run", run_dir.to_str().unwrap(), "--quiet", "--json", "--runs-dir", again.to_str().unwrap()];
    let (code, out, err) = flowcast(&args);
    assert_eq!(code, 0, "{out} {err}");
    let r = &json(&out)["reproduction"];
    assert_eq!(r["identical"], true, "{r}");
    for id in ids {
        assert_eq!(r["models"][id]["weights_identical"], true, "{id}: {r}");
        assert_eq!(r["models"][id]["max_abs_diff"].as_f64(), Some(0.0), "{id}: {r}");
    }
    // A changed ensemble number: exit 1, the key named.
    let mpath = run_dir.join("metrics.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    let acc = m["models"]["ens_hedge_k10"]["test"]["accuracy"].as_f64().unwrap();
    m["models"]["ens_hedge_k10"]["test"]["accuracy"] = (acc + 0.01).into();
    std::fs::write(&mpath, m.to_string()).unwrap();
    let (code, out, err) = flowcast(&args);
    assert_eq!(code, 1, "{out} {err}");
    let r = &json(&out)["reproduction"];
    assert_eq!(r["models"]["ens_hedge_k10"]["differing"], serde_json::json!(["accuracy"]), "{r}");
}
