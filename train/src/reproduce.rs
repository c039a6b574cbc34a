//! `flowcast reproduce --run <dir>`: re-run a run directory's resolved experiment (`config.json`,
//! same seed, same data) into a new run directory and compare every number it reported.
//!
//! Before training, the data must hash to the run's `run.json` `data.events_sha256` (the canonical
//! events, so a changed source file or loader is caught). After training, per model: the exported
//! weights' SHA-256 and every numeric leaf of the test metrics; and both baselines. On the CPU
//! backend training is deterministic, so a reproduction is expected to be bit-identical; on a GPU
//! (non-deterministic reductions) it reports the largest difference instead.

use crate::config::Experiment;
use crate::error::{Result, TrainError};
use crate::run::{run_experiment, RunOptions, Summary};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn read_json(path: &Path) -> Result<Value> {
    let s = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| TrainError::card(path, "json", e.to_string()))
}

/// Every numeric leaf of `a` and `b` with its path; the largest |a − b| and the paths that differ
/// (missing on one side counts as differing).
fn compare(a: &Value, b: &Value, path: &str, max: &mut f64, differ: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                compare(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}"), max, differ);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                compare(u, v, &format!("{path}[{i}]"), max, differ);
            }
        }
        (Value::Number(x), Value::Number(y)) => {
            let d = (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs();
            if d != 0.0 || x != y {
                *max = max.max(if d.is_nan() { f64::INFINITY } else { d });
                differ.push(path.trim_start_matches('.').to_string());
            }
        }
        (x, y) if x == y => {}
        _ => {
            *max = f64::INFINITY;
            differ.push(path.trim_start_matches('.').to_string());
        }
    }
}

/// What identifies an exported model's weights: deep weights by their tensors (safetensors
/// headers are not byte-stable), `model.txt` / `bayes_state.json` by their bytes, an ensemble by
/// its document with each member's card hash replaced by that member's own digest (a member card
/// records run-dependent figures such as training speed, so its bytes differ between runs).
fn weights_digest(dir: &Path) -> Result<String> {
    use flowcast_contract::card::Family;
    let card = read_json(&dir.join(flowcast_contract::files::CARD_FILE))?;
    let file = card["weights"]["file"].as_str().unwrap_or(flowcast_contract::files::WEIGHTS_FILE);
    let path = dir.join(file);
    let family = card["family"].as_str().unwrap_or_default();
    if family == Family::Deep.name() {
        return Ok(flowcast_contract::card::tensors_sha256(&path)?);
    }
    if family != Family::Ensemble.name() {
        return Ok(flowcast_contract::card::sha256_file(&path)?);
    }
    let mut doc = read_json(&path)?;
    if let Some(members) = doc["members"].as_array_mut() {
        for m in members {
            if let Some(d) = m["dir"].as_str().map(str::to_string) {
                m["card_sha256"] = json!(weights_digest(&dir.join(d))?);
            }
        }
    }
    Ok(doc.to_string())
}

/// Re-run `run_dir` and compare. `opts.runs_dir` defaults to the original's parent directory.
pub fn reproduce(run_dir: &Path, opts: &RunOptions) -> Result<Summary> {
    let cfg_path = run_dir.join("config.json");
    let cfg_text = std::fs::read_to_string(&cfg_path).map_err(|e| TrainError::io(&cfg_path, e))?;
    let exp: Experiment = serde_json::from_str(&cfg_text).map_err(|e| TrainError::card(&cfg_path, "config", e.to_string()))?;
    let exp_text_path = run_dir.join("experiment.toml");
    let exp_text = std::fs::read_to_string(&exp_text_path).map_err(|e| TrainError::io(&exp_text_path, e))?;
    let old_run = read_json(&run_dir.join("run.json"))?;
    let old_metrics = read_json(&run_dir.join("metrics.json"))?;
    let sha = old_run["data"]["events_sha256"].as_str().map(str::to_string);
    if sha.is_none() {
        return Err(TrainError::card(&run_dir.join("run.json"), "data.events_sha256", "missing"));
    }
    let mut o = opts.clone();
    o.resume = None;
    o.expect_events_sha256 = sha;
    if o.runs_dir.is_none() {
        o.runs_dir = Some(run_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")));
    }
    let device = o.device.clone().unwrap_or_else(|| exp.device.clone());
    let mut s = run_experiment(&exp, &exp_text, &o)?;
    let new_dir = PathBuf::from(s.json["run_dir"].as_str().expect("run_dir"));
    let new_metrics = read_json(&new_dir.join("metrics.json"))?;

    let mut identical = true;
    let mut models = serde_json::Map::new();
    let ids: Vec<String> = old_metrics["models"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    for id in ids.iter().map(String::as_str) {
        let (mut max, mut differ) = (0.0f64, Vec::new());
        compare(&old_metrics["models"][id]["test"], &new_metrics["models"][id]["test"], "", &mut max, &mut differ);
        let weights_identical = weights_digest(&run_dir.join(id))? == weights_digest(&new_dir.join(id))?;
        identical &= weights_identical && differ.is_empty();
        models.insert(
            id.into(),
            json!({"weights_identical": weights_identical, "metrics_identical": differ.is_empty(),
                   "max_abs_diff": max, "differing": differ}),
        );
    }
    let (mut bmax, mut bdiff) = (0.0f64, Vec::new());
    // Every target's baselines (metrics and fitted parameters).
    compare(&old_metrics["targets"], &new_metrics["targets"], "targets", &mut bmax, &mut bdiff);
    identical &= bdiff.is_empty();
    let new_run = read_json(&new_dir.join("run.json"))?;
    s.json["ok"] = json!(identical);
    s.json["reproduction"] = json!({
        "original": run_dir.display().to_string(),
        "identical": identical,
        "device": device,
        "git_revision": {"original": old_run["git_revision"], "now": new_run["git_revision"]},
        "models": models,
        "baselines": {"identical": bdiff.is_empty(), "max_abs_diff": bmax, "differing": bdiff},
    });
    Ok(s)
}
