//! burn ↔ candle parity: every architecture is built in burn with seeded random weights (and
//! perturbed BatchNorm statistics, so inference-mode BatchNorm is exercised), exported with
//! `flowcast_models::export::save`, loaded by `flowcast_serve` from the two files alone, and both
//! run the same random input. Logits must agree within 1e-5 (absolute, f32).

use flowcast_models::burn::module::{ModuleMapper, Param};
use flowcast_models::burn::prelude::*;
use flowcast_models::burn::tensor::Distribution;
use flowcast_models::{build, export, Params};
use serde_json::json;
use std::path::Path;

const TOL: f32 = 1e-5;

/// Deterministic inputs without a rand dependency (SplitMix64 → uniform [-2, 2)).
fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Adds U(-0.2, 0.2) to every float tensor, running statistics included: a fresh BatchNorm has
/// mean 0 / var 1 / γ 1 / β 0 and would hide a candle side that ignored them.
struct Perturb;
impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let noise = Tensor::random(t.shape(), Distribution::Uniform(-0.2, 0.2), &t.device());
            t + noise
        })
    }
}

fn params(v: serde_json::Value) -> Params {
    v.as_object().cloned().unwrap_or_default()
}

/// Builds, exports, reloads in candle and compares; returns the max abs difference.
fn parity(name: &str, hp: serde_json::Value, features: usize, classes: usize, batch: usize, seq: usize, seed: u64) -> f32 {
    let device = Device::flex();
    device.seed(seed);
    let (model, config) = build(name, &params(hp), features, classes, &device).expect("build");
    config.check_window(seq).expect("window fits");
    let model = model.map(&mut Perturb);

    let dir = tempfile::tempdir().unwrap();
    export::save(&model, &config, dir.path()).expect("save");

    let x = inputs(batch * seq * features, seed ^ 0xABCD);
    let input = Tensor::<3>::from_data(TensorData::new(x.clone(), [batch, seq, features]), &device);
    let burn_logits: Vec<f32> = model.forward(input.clone()).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(burn_logits.len(), batch * classes);

    let served = flowcast_serve::Model::load_dir(dir.path()).expect("candle load");
    let candle_logits = served.logits(&x, batch, seq).expect("candle forward");
    assert_eq!(candle_logits.len(), burn_logits.len());

    // The logits must carry signal, or agreement would prove nothing.
    let spread = burn_logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(spread > 1e-3 && burn_logits.iter().all(|v| v.is_finite()), "{name}: degenerate logits {burn_logits:?}");
    let rows_differ = (1..batch).any(|b| (0..classes).any(|c| (burn_logits[b * classes + c] - burn_logits[c]).abs() > 1e-6));
    assert!(rows_differ, "{name}: every batch row gave the same logits");

    let diff = burn_logits.iter().zip(&candle_logits).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{name}: max |burn - candle| = {diff:.3e} over {} logits (max |logit| {spread:.3})", burn_logits.len());
    assert!(diff <= TOL, "{name}: burn and candle logits differ by {diff} > {TOL}\nburn   {burn_logits:?}\ncandle {candle_logits:?}");

    // burn reads its own export back bit for bit.
    let (reloaded, _) = export::load(dir.path(), &device).expect("burn load");
    let again: Vec<f32> = reloaded.forward(input).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(again, burn_logits, "{name}: burn reload changed the logits");
    diff
}

#[test]
fn parity_lstm() {
    parity("lstm", json!({"hidden": 24, "layers": 2}), 7, 3, 4, 12, 1);
}

#[test]
fn parity_lstm_bidirectional() {
    parity("lstm", json!({"hidden": 16, "layers": 2, "bidirectional": true}), 5, 3, 3, 9, 2);
}

#[test]
fn parity_gru() {
    parity("gru", json!({"hidden": 20, "layers": 2}), 6, 3, 4, 11, 3);
}

#[test]
fn parity_gru_bidirectional() {
    parity("gru", json!({"hidden": 12, "bidirectional": true}), 4, 2, 3, 8, 4);
}

#[test]
fn parity_deeplob_10_levels() {
    // Paper configuration (40 columns), a short window to keep the test quick.
    parity("deeplob", json!({}), 40, 3, 2, 30, 5);
}

#[test]
fn parity_deeplob_level1() {
    parity("deeplob", json!({"conv_channels": 8, "inception_channels": 16, "lstm_hidden": 16}), 4, 3, 3, 25, 6);
}

#[test]
fn parity_transformer() {
    parity("transformer", json!({"window": 20, "depth": 2, "heads": 3}), 10, 3, 3, 20, 7);
}

#[test]
fn parity_transformer_wider() {
    parity("transformer", json!({"window": 16, "conv_channels": 15, "conv_layers": 3, "heads": 4, "depth": 1, "d_ff": 24}), 6, 4, 2, 16, 8);
}

/// serve refuses weights that do not match the config, naming the tensor.
#[test]
fn serve_rejects_mismatched_export() {
    let device = Device::flex();
    let (model, config) = build("lstm", &params(json!({"hidden": 8})), 3, 3, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    export::save(&model, &config, dir.path()).unwrap();
    let cfg_path = dir.path().join(export::CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).unwrap().replace("\"hidden\": 8", "\"hidden\": 9");
    std::fs::write(&cfg_path, text).unwrap();
    let err = flowcast_serve::Model::load_dir(dir.path()).err().expect("must fail").to_string();
    assert!(err.contains("model.safetensors") && err.contains("layers.0.") && err.contains("shape"), "{err}");

    let text = std::fs::read_to_string(&cfg_path).unwrap().replace("\"hidden\": 9", "\"hidden\": 8,\n    \"extra\": 1");
    std::fs::write(&cfg_path, text).unwrap();
    let err = flowcast_serve::Model::load_dir(dir.path()).err().expect("must fail").to_string();
    assert!(err.contains("model_config.json") && err.contains("extra"), "{err}");
}

/// Python's `safetensors` reads the export: names, dtypes and shapes as the model reports them.
#[test]
fn python_safetensors_reads_export() {
    let ok = std::process::Command::new("python3").args(["-c", "import safetensors"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIP: python3 with the `safetensors` package not found (pip install safetensors)");
        return;
    }
    let device = Device::flex();
    let (model, config) = build("deeplob", &Params::new(), 40, 3, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (weights, _) = export::save(&model, &config, dir.path()).unwrap();
    let expected: serde_json::Map<String, serde_json::Value> =
        flowcast_models::registry::tensor_infos(&model).into_iter().map(|t| (t.name, json!(t.shape))).collect();
    let out = run_python(&weights);
    let got: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("python output {out:?}: {e}"));
    let tensors = got["tensors"].as_object().unwrap();
    assert_eq!(tensors.len(), expected.len(), "tensor count");
    for (name, shape) in &expected {
        let t = tensors.get(name).unwrap_or_else(|| panic!("python does not see {name}"));
        assert_eq!(t["dtype"], "F32", "{name}");
        assert_eq!(&t["shape"], shape, "{name}");
    }
    assert_eq!(got["metadata"]["architecture"], "deeplob");
    // 143,907 trainable + BatchNorm running statistics (2 × channels per BatchNorm).
    let total: u64 = tensors.values().map(|t| t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product::<u64>()).sum();
    let bn_channels: u64 = 3 * 3 * 32 + 5 * 64;
    assert_eq!(total, 143_907 + 2 * bn_channels);
}

fn run_python(weights: &Path) -> String {
    let script = r#"
import json, sys
from safetensors import safe_open
out = {"tensors": {}, "metadata": None}
with safe_open(sys.argv[1], framework="numpy") as f:
    out["metadata"] = f.metadata()
    for k in f.keys():
        s = f.get_slice(k)
        out["tensors"][k] = {"dtype": s.get_dtype(), "shape": s.get_shape()}
print(json.dumps(out))
"#;
    let o = std::process::Command::new("python3").args(["-c", script]).arg(weights).output().unwrap();
    assert!(o.status.success(), "python failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}
