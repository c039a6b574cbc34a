//! Scoring exported models on a dataset through [`Predictor`] only, whatever the family or
//! engine: `flowcast eval` (burn) and `flowcast predict` (candle, no burn on the path) are this
//! loop with different loaders. Also the summary both print.

use crate::card::{model_dirs, Family, ModelCard};
use crate::error::{ContractError, Result};
use crate::files::CARD_FILE;
use crate::gbdt::GbdtPredictor;
use crate::metrics::{regression_metrics, Metrics};
use crate::predictions::write_predictions;
use crate::predictor::{predict_set, Predictor};
use crate::prepare::{prepare_with, PreparedData};
use crate::preprocessing::Preprocessing;
use flowcast_datasets::store::read_dataset;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The outcome of a command: what `--json` prints and the table renders.
#[derive(Clone, Debug)]
pub struct Summary {
    pub json: Value,
}

impl Summary {
    /// The summary table: one row per model and baseline.
    pub fn table(&self) -> String {
        let mut s = String::new();
        if let Some(d) = self.json["run_dir"].as_str() {
            s.push_str(&format!("run        {d}\n"));
        }
        if let Some(d) = self.json["data"].as_str() {
            s.push_str(&format!("data       {d}\n"));
        }
        let head = format!(
            "\n{:<32} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "model (test split)", "samples", "accuracy", "macro-F1", "MCC", "kappa", "ROC-AUC", "PR-AUC", "log-loss", "Brier", "ECE"
        );
        let row = |name: &str, m: &Value| {
            let f = |k: &str| m[k].as_f64().map(|v| format!("{v:.4}")).unwrap_or("-".into());
            format!(
                "{:<32} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
                name,
                m["samples"],
                f("accuracy"),
                f("macro_f1"),
                f("mcc"),
                f("cohen_kappa"),
                f("roc_auc_macro"),
                f("pr_auc_macro"),
                f("log_loss"),
                f("brier"),
                f("ece")
            )
        };
        if let Some(ts) = self.json["targets"].as_object() {
            for (tid, t) in ts {
                let w = &t["windows"];
                s.push_str(&format!("\ntarget     {tid}: {} (α = {})\n", t["definition"].as_str().unwrap_or("?"), t["alpha"]));
                if w.is_object() {
                    s.push_str(&format!("windows    train {} · validation {} · test {}\n", w["train"], w["validation"], w["test"]));
                }
                s.push_str(&head);
                if let Some(ms) = self.json["models"].as_object() {
                    for (id, m) in ms.iter().filter(|(_, m)| m["target"] == tid.as_str()) {
                        s.push_str(&row(id, m));
                        if m["prequential"].is_object() {
                            s.push_str(&row(&format!("{id} (prequential)"), &m["prequential"]));
                        }
                        let r = &m["regression"];
                        if r.is_object() {
                            let f = |k: &str| r[k].as_f64().map(|v| format!("{v:.4}")).unwrap_or("-".into());
                            s.push_str(&format!(
                                "  {id} regression (bps): RMSE {} · MAE {} · corr {} · R² {}\n",
                                f("rmse_bps"),
                                f("mae_bps"),
                                f("corr"),
                                f("r2")
                            ));
                        }
                    }
                }
                if let Some(bs) = t["baselines"].as_object() {
                    for (b, m) in bs {
                        s.push_str(&row(&format!("baseline: {b}"), m));
                    }
                }
            }
        }
        if let Some(ag) = self.json["agreement"].as_object() {
            for (id, a) in ag {
                s.push_str(&format!("\n{id}: {a}\n"));
            }
        }
        s
    }
}

/// The headline JSON of one target: definition, α, windows and its baselines' metrics.
pub fn target_json(data: &PreparedData, t: usize, baselines: &serde_json::Map<String, Value>) -> Value {
    let pt = &data.targets[t];
    json!({
        "definition": pt.def.definition,
        "output": pt.def.output,
        "alpha": pt.def.alpha,
        "alpha_rule": pt.def.alpha_rule,
        "classes": pt.def.classes,
        "windows": {"train": pt.train.len(), "validation": pt.validation.len(), "test": pt.test.len()},
        "baselines": baselines,
    })
}

/// The `--json` object of `run`/`eval`/`predict`: the first model's headline at the top (and
/// the first target's baselines and windows, the single-target keys scripts read), every model
/// under `models` (each with its `target`), every target under `targets`.
pub fn summary(
    run_dir: &Path,
    data_dir: Option<&Path>,
    models: &serde_json::Map<String, Value>,
    targets: &serde_json::Map<String, Value>,
    data: &PreparedData,
) -> Summary {
    let (first_id, first) = models.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap_or_default();
    let first_target =
        targets.get(first["target"].as_str().unwrap_or("")).or_else(|| targets.values().next()).cloned().unwrap_or(Value::Null);
    let mut j = json!({
        "ok": true,
        "run_dir": run_dir.display().to_string(),
        "model": first_id,
        "accuracy": first["accuracy"],
        "macro_f1": first["macro_f1"],
        "mcc": first["mcc"],
        "models": models,
        "baselines": first_target["baselines"],
        "windows": first_target["windows"],
        "targets": targets,
        "memory": data.memory,
        "data_sha256": data.info.events_sha256,
    });
    if let Some(d) = data_dir {
        j["data"] = json!(d.display().to_string());
    }
    Summary { json: j }
}

/// Builds the predictor of an exported model directory (its card already validated).
pub type Loader<'a> = dyn Fn(&Path, &ModelCard) -> Result<Box<dyn Predictor>> + 'a;

/// Chunk of windows per predictor call.
pub const EVAL_CHUNK: usize = 256;

/// Model directories of a run in the experiment's order (its `config.json` model list, when
/// readable; a model trained for several targets has directories `<id>_<target>`).
pub fn ordered_model_dirs(run: &Path) -> Result<Vec<PathBuf>> {
    let mut v = model_dirs(run)?;
    if let Ok(s) = std::fs::read_to_string(run.join("config.json")) {
        if let Ok(cfg) = serde_json::from_str::<Value>(&s) {
            let ids: Vec<String> = cfg["model"]
                .as_array()
                .map(|ms| ms.iter().map(|m| m["id"].as_str().or(m["name"].as_str()).unwrap_or("").to_string()).collect())
                .unwrap_or_default();
            let pos = |p: &PathBuf| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                ids.iter().position(|id| n == id || n.starts_with(&format!("{id}_"))).unwrap_or(usize::MAX)
            };
            v.sort_by_key(pos);
        }
    }
    Ok(v)
}

/// Scores every model of `run` (a run directory or one model directory) on the stored dataset
/// `data_dir`, preparing the inputs with each card's stored preprocessing and predicting through
/// `load`'s predictors; the card's baselines are scored beside. `out`: write each model's
/// predictions to `<out>/<model id>.parquet`.
pub fn evaluate_with(run: &Path, data_dir: &Path, engine: &str, load: &Loader<'_>, out: Option<&Path>) -> Result<Summary> {
    let dirs = ordered_model_dirs(run)?;
    let ds = read_dataset(data_dir)?;
    let mut models = serde_json::Map::new();
    let mut targets = serde_json::Map::new();
    let mut prepared: Vec<(Preprocessing, PreparedData)> = Vec::new();
    for dir in &dirs {
        let card = ModelCard::load(dir)?;
        // Models of one run share preprocessing: prepare once per distinct one.
        let pi = match prepared.iter().position(|(p, _)| *p == card.preprocessing) {
            Some(i) => i,
            None => {
                let pre = card.preprocessing.clone();
                let data = prepare_with(&ds, &pre.inputs, std::slice::from_ref(&pre.target))?;
                prepared.push((pre, data));
                prepared.len() - 1
            }
        };
        let data = &prepared[pi].1;
        let test = &data.targets[0].test;
        let k = card.classes.len();
        // The contract's own families load here (no engine choice); the loader builds deep ones.
        let (p, model_engine): (Box<dyn Predictor>, &str) = match card.family {
            Family::Lightgbm => (Box::new(GbdtPredictor::load(dir, &card)?), "gbdt"),
            Family::BayesOnline => (Box::new(crate::bayes::BayesOnline::load(dir, &card)?), "bayes"),
            Family::Deep => (load(dir, &card)?, engine),
            Family::Ensemble => {
                let member = |d: &Path, c: &ModelCard| -> Result<Box<dyn Predictor>> {
                    match c.family {
                        Family::Lightgbm => Ok(Box::new(GbdtPredictor::load(d, c)?)),
                        Family::BayesOnline => Ok(Box::new(crate::bayes::BayesOnline::load(d, c)?)),
                        Family::Deep => load(d, c),
                        Family::Ensemble => {
                            Err(ContractError::Invalid(format!("{}: an ensemble member cannot be an ensemble", d.display())))
                        }
                    }
                };
                (Box::new(crate::ensemble::EnsemblePredictor::<dyn Predictor>::load(dir, &card, &member)?), engine)
            }
        };
        let o = predict_set(p.as_ref(), test, &data.window_ofi, EVAL_CHUNK)?;
        let m = Metrics::compute(&test.targets(), &o.probs, k);
        let tid = card.preprocessing.target.id.clone();
        if !targets.contains_key(&tid) {
            let mut bs = serde_json::Map::new();
            for b in &card.baselines {
                let bp = b.predictor(&card.classes, test.window, test.data.cols());
                let bo = predict_set(&bp, test, &data.window_ofi, EVAL_CHUNK)?;
                bs.insert(b.name().into(), Metrics::compute(&test.targets(), &bo.probs, k).headline());
            }
            let mut tj = target_json(data, 0, &bs);
            tj["windows"] = json!({"train": 0, "validation": 0, "test": test.len()});
            targets.insert(tid.clone(), tj);
        }
        if let Some(o_dir) = out {
            std::fs::create_dir_all(o_dir).map_err(|e| ContractError::io(o_dir, e))?;
            write_predictions(&o_dir.join(format!("{}.parquet", card.model_id)), test, &data.rows, &card.classes, &o)?;
        }
        let mut h = m.headline();
        h["target"] = json!(tid);
        h["engine"] = json!(model_engine);
        if !o.regression.is_empty() && !test.values.is_empty() {
            h["regression"] = regression_metrics(&test.values, &o.regression);
        }
        models.insert(card.model_id.clone(), h);
    }
    let data = &prepared.first().ok_or_else(|| ContractError::Invalid(format!("{}: no {CARD_FILE}", run.display())))?.1;
    let mut s = summary(run, Some(data_dir), &models, &targets, data);
    s.json["engine"] = json!(engine);
    Ok(s)
}
