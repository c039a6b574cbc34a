//! Resume continues the same run: training 1 epoch, stopping, and resuming for the rest gives
//! the same weights, optimizer trajectory and metrics as an uninterrupted run (seeded, CPU).
//! Alone in its binary: burn's CPU seed is process-global.

use flowcast_train::progress::Mode;
use flowcast_train::run::{run_experiment, RunOptions};
use flowcast_train::Experiment;
use std::path::{Path, PathBuf};

const EXPERIMENT: &str = r#"
name = "resume"
seed = 5
[data]
synthetic = { levels = 2, events = 5000, seed = 9 }
[columns]
kind = "book"
window = 10
train_stride = 2
[label]
kind = "events"
horizon = 5
[[model]]
name = "lstm"
hidden = 8
layers = 2
dropout = 0.2
[training]
optimizer = "adamw"
weight_decay = 0.01
epochs = 3
batch = 16
max_batches = 5
grad_clip = { norm = 1.0 }
schedule = { kind = "cosine", min_lr = 0.0001 }
"#;

fn history(run: &Path) -> Vec<serde_json::Value> {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("lstm/checkpoints/last/state.json")).unwrap()).unwrap();
    s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let o = r.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("samples_per_s");
            r
        })
        .collect()
}

/// name → raw bytes of every tensor in the run's exported safetensors file (the header's key
/// order is not canonical, so files are compared tensor by tensor).
fn tensors(run: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let b = std::fs::read(run.join("lstm/model.safetensors")).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: serde_json::Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    h.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let (s, e) = (v["data_offsets"][0].as_u64().unwrap() as usize, v["data_offsets"][1].as_u64().unwrap() as usize);
            (k.clone(), b[8 + n + s..8 + n + e].to_vec())
        })
        .collect()
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = Experiment::from_toml(EXPERIMENT, "resume.toml").unwrap();
    let opts = |runs: &str| RunOptions { progress: Mode::Quiet, runs_dir: Some(tmp.path().join(runs)), ..RunOptions::default() };
    let full = run_experiment(&exp, EXPERIMENT, &opts("a")).unwrap();
    let full_dir = PathBuf::from(full.json["run_dir"].as_str().unwrap());

    let part = run_experiment(&exp, EXPERIMENT, &RunOptions { stop_after: 1, ..opts("b") }).unwrap();
    let part_dir = PathBuf::from(part.json["run_dir"].as_str().unwrap());
    assert_eq!(history(&part_dir).len(), 1);
    let resumed = run_experiment(&exp, EXPERIMENT, &RunOptions { resume: Some(part_dir.clone()), ..opts("b") }).unwrap();
    assert_eq!(resumed.json["run_dir"], part.json["run_dir"]);

    assert_eq!(history(&full_dir), history(&part_dir));
    let (a, b) = (tensors(&full_dir), tensors(&part_dir));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name}: resumed weights differ from the uninterrupted run's");
    }
    for k in ["accuracy", "macro_f1", "mcc"] {
        assert_eq!(full.json[k], resumed.json[k], "{k}");
    }

    // A checkpoint of another experiment is refused.
    let other = EXPERIMENT.replace("seed = 5", "seed = 6");
    let e2 = Experiment::from_toml(&other, "other.toml").unwrap();
    let err = run_experiment(&e2, &other, &RunOptions { resume: Some(part_dir), ..opts("b") }).unwrap_err().to_string();
    assert!(err.contains("different experiment") || err.contains("fingerprint"), "{err}");
}
