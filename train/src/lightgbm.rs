//! The `lightgbm` model family: gradient-boosted trees (LightGBM through the `lightgbm3` crate's
//! C API, cargo feature `lightgbm`) on the feature row at each window's end — the last row of
//! the window is the current feature vector, so the model is tabular.
//!
//! Per target: multiclass direction (softmax, class weights as the deep models get them) or
//! regression (the target value in bps, l2), early stopping on the validation split, seeded and
//! deterministic (`deterministic`, `force_col_wise`, a fixed `num_threads`). The run directory
//! gets LightGBM's text model `model.txt` (the served artifact, read by the pure-Rust evaluator
//! `flowcast_contract::gbdt`), `importance.json` (gain and split importance, mean |SHAP|) and
//! `shap.parquet` (TreeSHAP contributions of test rows, LightGBM's `pred_contrib`, Lundberg et
//! al. 2018). Test metrics come from the Rust evaluator, the one that serves; its agreement with
//! LightGBM's own predictions is recorded. Formulas and sources: docs/models.md.

use crate::config::{Experiment, ModelSpec};
use crate::error::{Result, TrainError};
use flowcast_contract::baselines::Baseline;
use flowcast_contract::prepare::PreparedData;
#[cfg(feature = "lightgbm")]
use serde_json::json;
use serde_json::Value;
use std::path::Path;

/// What the run loop needs back: the headline for the summary and the full metrics entry.
pub struct Trained {
    pub headline: Value,
    pub full: Value,
}

/// Everything one lightgbm model of a run needs.
pub struct Job<'a> {
    pub exp: &'a Experiment,
    pub spec: &'a ModelSpec,
    /// The run's model id (its directory name).
    pub id: &'a str,
    pub dir: &'a Path,
    pub target: usize,
    pub baselines: &'a [Baseline],
    pub baseline_headline: &'a serde_json::Map<String, Value>,
    pub device: &'a str,
}

/// The feature rows at the ends of `set`'s windows, row-major.
pub fn end_rows(data: &PreparedData, set: &flowcast_contract::window::WindowSet) -> Vec<f32> {
    let f = data.n_features();
    let mut x = Vec::with_capacity(set.len() * f);
    for &e in &set.ends {
        x.extend_from_slice(data.matrix.row(e as usize));
    }
    x
}

#[cfg(not(feature = "lightgbm"))]
pub fn train_and_export(_job: &Job<'_>, _data: &PreparedData) -> Result<Trained> {
    Err(not_built())
}

/// The error of an experiment with a lightgbm model in a build without the feature.
pub fn not_built() -> TrainError {
    TrainError::Invalid(
        "[[model]] name = \"lightgbm\" needs flowcast built with `--features lightgbm` (bundled LightGBM: CMake ≥ 3.28 and libclang at build time; docs/models.md)".into(),
    )
}

/// The error of an ensemble with `meta = "lightgbm"` in a build without the feature.
pub fn meta_not_built(id: &str) -> TrainError {
    TrainError::Invalid(format!(
        "[[model]] {id}: meta = \"lightgbm\" (LightGBM stacking) needs flowcast built with `--features lightgbm` (bundled LightGBM: CMake ≥ 3.28 and libclang at build time; docs/models.md); without it use \"logistic\", \"weighted_average\" or \"hedge\""
    ))
}

/// Row-major training rows for LightGBM: `x` is `y.len() × features`, `weights` one per row.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub x: &'a [f32],
    pub y: &'a [f32],
    pub weights: Option<&'a [f32]>,
}

#[cfg(feature = "lightgbm")]
pub use imp::{fit, parameters, train_and_export};

#[cfg(feature = "lightgbm")]
mod imp {
    use super::*;
    use crate::config::LightgbmParams;
    use crate::error::write_json;
    use flowcast_contract::card::{sha256_file, Family, ModelCard, TrainingEntry, WeightsEntry};
    use flowcast_contract::files::{
        CARD_FORMAT, CARD_VERSION, LIGHTGBM_DOC_FORMAT, LIGHTGBM_DOC_VERSION, LIGHTGBM_MODEL_FILE, PREDICTIONS_FILE,
    };
    use flowcast_contract::gbdt::{GbdtModel, GbdtPredictor};
    use flowcast_contract::metrics::Metrics;
    use flowcast_contract::predictions::write_predictions;
    use flowcast_contract::predictor::predict_set;
    use flowcast_contract::target::OutputKind;
    use lightgbm3::{Booster, Dataset, ImportanceType};

    fn lgb(e: lightgbm3::Error) -> TrainError {
        TrainError::Invalid(format!("LightGBM: {e}"))
    }

    /// LightGBM's parameters for `p` on a target with `k` classes (None: regression).
    pub fn parameters(p: &LightgbmParams, k: Option<usize>, seed: u64, early_stopping: bool) -> Value {
        let mut v = json!({
            "num_leaves": p.num_leaves, "max_depth": p.max_depth, "learning_rate": p.learning_rate,
            "num_iterations": p.num_iterations, "min_data_in_leaf": p.min_data_in_leaf,
            "feature_fraction": p.feature_fraction, "bagging_fraction": p.bagging_fraction, "bagging_freq": p.bagging_freq,
            "lambda_l2": p.lambda_l2, "max_bin": p.max_bin, "num_threads": p.num_threads,
            // Reproducible: one seed for every random choice, deterministic histogram sums.
            "seed": seed % (i32::MAX as u64), "deterministic": true, "force_col_wise": true, "verbosity": -1,
        });
        match k {
            Some(k) => {
                v["objective"] = json!("multiclass");
                v["num_class"] = json!(k);
                v["metric"] = json!("multi_logloss");
            }
            None => {
                v["objective"] = json!("regression");
                v["metric"] = json!("l2");
            }
        }
        if early_stopping && p.early_stopping_rounds > 0 {
            v["early_stopping_rounds"] = json!(p.early_stopping_rounds);
        }
        v
    }

    /// A booster trained with LightGBM `params` on `train` (columns named `names`), with
    /// `valid` as its validation set (early stopping when `params` asks for it).
    pub fn fit(params: &Value, names: &[String], train: Rows<'_>, valid: Option<Rows<'_>>) -> Result<Booster> {
        let f = names.len() as i32;
        let mut ds = Dataset::from_slice(train.x, train.y, f, true).map_err(lgb)?;
        ds.set_feature_names(names).map_err(lgb)?;
        if let Some(w) = train.weights {
            ds.set_weights(w).map_err(lgb)?;
        }
        let valid = match valid {
            None => None,
            Some(v) => {
                let mut d = Dataset::from_slice_with_reference(v.x, v.y, f, true, Some(&ds)).map_err(lgb)?;
                if let Some(w) = v.weights {
                    d.set_weights(w).map_err(lgb)?;
                }
                Some(d)
            }
        };
        Booster::train_with_valid(ds, valid, params).map_err(lgb)
    }

    /// TreeSHAP contributions (`C_API_PREDICT_CONTRIB`) of row-major `x` from the saved model:
    /// `rows × outputs × (features + 1)`, the buffer LightGBM's C API documents.
    fn contributions(model: &Path, x: &[f32], f: usize, outputs: usize) -> Result<Vec<f64>> {
        use lightgbm3_sys as sys;
        let rows = x.len() / f;
        let last_error = || unsafe { std::ffi::CStr::from_ptr(sys::LGBM_GetLastError()).to_string_lossy().into_owned() };
        let file = std::ffi::CString::new(model.display().to_string()).map_err(|e| TrainError::Invalid(e.to_string()))?;
        let (mut handle, mut iters): (sys::BoosterHandle, i32) = (std::ptr::null_mut(), 0);
        // SAFETY: `file` is a NUL-terminated path; `handle` receives a booster we free below.
        if unsafe { sys::LGBM_BoosterCreateFromModelfile(file.as_ptr(), &mut iters, &mut handle) } != 0 {
            return Err(TrainError::Invalid(format!("LightGBM: {}: {}", model.display(), last_error())));
        }
        let mut out = vec![0.0f64; rows * outputs * (f + 1)];
        let mut len = 0i64;
        let params = std::ffi::CString::new("num_threads=1").expect("no NUL");
        // SAFETY: `x` holds rows × f f32 values (row-major), `out` the documented
        // num_class × rows × (f + 1) doubles; LightGBM writes `len` ≤ that many.
        let rc = unsafe {
            sys::LGBM_BoosterPredictForMat(
                handle,
                x.as_ptr() as *const std::ffi::c_void,
                sys::C_API_DTYPE_FLOAT32 as i32,
                rows as i32,
                f as i32,
                1,
                sys::C_API_PREDICT_CONTRIB as i32,
                0,
                -1,
                params.as_ptr(),
                &mut len,
                out.as_mut_ptr(),
            )
        };
        let err = (rc != 0).then(last_error);
        // SAFETY: `handle` came from LGBM_BoosterCreateFromModelfile and is freed once.
        unsafe { sys::LGBM_BoosterFree(handle) };
        if let Some(e) = err {
            return Err(TrainError::Invalid(format!("LightGBM pred_contrib: {e}")));
        }
        if len as usize != out.len() {
            return Err(TrainError::Invalid(format!("LightGBM pred_contrib: {len} values, expected {}", out.len())));
        }
        Ok(out)
    }

    /// Evenly spaced indices: at most `n` of `0..len`.
    fn spaced(len: usize, n: usize) -> Vec<usize> {
        if len <= n {
            return (0..len).collect();
        }
        (0..n).map(|i| i * len / n).collect()
    }

    pub fn train_and_export(job: &Job<'_>, data: &PreparedData) -> Result<Trained> {
        let p = LightgbmParams::from_spec(job.spec).map_err(TrainError::Invalid)?;
        let pt = &data.targets[job.target];
        let f = data.n_features();
        let regression = pt.def.output == OutputKind::Regression;
        let k = pt.def.n_classes();
        let label = |s: &flowcast_contract::window::WindowSet| -> Vec<f32> {
            if regression {
                s.values.clone()
            } else {
                s.labels.iter().map(|&c| c as f32).collect()
            }
        };
        let t0 = std::time::Instant::now();
        let (xtr, ytr) = (end_rows(data, &pt.train), label(&pt.train));
        let class_weights = if regression { None } else { crate::trainer::class_weights(&job.exp.training.class_weights, &pt.train, k)? };
        let sw: Option<Vec<f32>> = class_weights.as_ref().map(|w| pt.train.labels.iter().map(|&c| w[c as usize]).collect());
        let has_valid = !pt.validation.is_empty();
        let (xv, yv) = if has_valid { (end_rows(data, &pt.validation), label(&pt.validation)) } else { (Vec::new(), Vec::new()) };
        let params = parameters(&p, (!regression).then_some(k), job.exp.seed, has_valid);
        tracing::info!(model = job.id, target = %pt.def.id, rows = pt.train.len(), features = f, "training lightgbm");
        let booster = fit(
            &params,
            &data.inputs.names,
            Rows { x: &xtr, y: &ytr, weights: sw.as_deref() },
            has_valid.then_some(Rows { x: &xv, y: &yv, weights: None }),
        )?;
        let train_s = t0.elapsed().as_secs_f64();
        let iterations = booster.num_iterations() as usize;
        let model_path = job.dir.join(LIGHTGBM_MODEL_FILE);
        booster.save_file(&model_path.display().to_string()).map_err(lgb)?;

        // The served evaluator scores the test split; LightGBM's own predictions check it.
        let model = GbdtModel::load(&model_path)?;
        let xte = end_rows(data, &pt.test);
        let own = booster.predict(&xte, f as i32, true).map_err(lgb)?;
        let out_k = model.outputs();
        let (mut row, mut mine) = (vec![0.0f64; f], vec![0.0f64; out_k]);
        let mut max_diff = 0.0f64;
        for (r, x) in xte.chunks(f).enumerate() {
            row.iter_mut().zip(x).for_each(|(d, &s)| *d = s as f64);
            model.predict_row(&row, &mut mine);
            for (m, o) in mine.iter().zip(&own[r * out_k..(r + 1) * out_k]) {
                max_diff = max_diff.max((m - o).abs());
            }
        }
        let us_per_row = {
            let t = std::time::Instant::now();
            let mut s = 0.0;
            for x in xte.chunks(f) {
                row.iter_mut().zip(x).for_each(|(d, &v)| *d = v as f64);
                model.predict_row(&row, &mut mine);
                s += mine[0];
            }
            std::hint::black_box(s);
            t.elapsed().as_secs_f64() * 1e6 / pt.test.len().max(1) as f64
        };
        let gp = GbdtPredictor::from_parts(model.clone(), &pt.def, pt.test.window, f);
        let out = predict_set(&gp, &pt.test, &data.window_ofi, 512)?;
        let m = Metrics::compute(&pt.test.targets(), &out.probs, k);
        write_predictions(&job.dir.join(PREDICTIONS_FILE), &pt.test, &data.rows, &pt.def.classes, &out)?;
        let reg = regression.then(|| flowcast_contract::metrics::regression_metrics(&pt.test.values, &out.regression));

        // Explanations: importance over the whole model, TreeSHAP on evenly spaced test rows.
        let gain = booster.feature_importance(ImportanceType::Gain).map_err(lgb)?;
        let split = booster.feature_importance(ImportanceType::Split).map_err(lgb)?;
        let idx = spaced(pt.test.len(), p.shap_rows);
        let xs: Vec<f32> = idx.iter().flat_map(|&i| xte[i * f..(i + 1) * f].iter().copied()).collect();
        let contrib = if xs.is_empty() { Vec::new() } else { contributions(&model_path, &xs, f, out_k)? };
        let shap = crate::explain::Shap::new(&contrib, idx.len(), out_k, f)?;
        // TreeSHAP is exact: Σ contributions + bias = the raw score, checked with the evaluator.
        let mut additivity = 0.0f64;
        for (j, x) in xs.chunks(f).enumerate() {
            row.iter_mut().zip(x).for_each(|(d, &s)| *d = s as f64);
            model.raw_into(|c| row[c], &mut mine);
            for (c, raw) in mine.iter().enumerate() {
                additivity = additivity.max((shap.total(j, c) - raw).abs());
            }
        }
        let ends: Vec<u32> = idx.iter().map(|&i| pt.test.ends[i]).collect();
        let class_names: Vec<String> = if regression { vec!["value".into()] } else { pt.def.classes.clone() };
        shap.write_parquet(&job.dir.join("shap.parquet"), &ends, &class_names, &data.inputs.names)?;
        let mean_abs = shap.mean_abs();
        let mut imp: Vec<Value> = (0..f)
            .map(|j| json!({"feature": data.inputs.names[j], "gain": gain[j], "split": split[j], "shap_mean_abs": mean_abs[j]}))
            .collect();
        imp.sort_by(|a, b| b["gain"].as_f64().unwrap_or(0.0).total_cmp(&a["gain"].as_f64().unwrap_or(0.0)));
        write_json(
            &job.dir.join("importance.json"),
            &json!({"model": job.id, "target": pt.def.id, "importance": imp,
                    "shap": {"rows": idx.len(), "file": "shap.parquet", "outputs": class_names,
                             "space": if regression { "bps" } else { "raw score (log-odds of the softmax)" },
                             "max_additivity_error": additivity}}),
        )?;
        let top = |key: &str| -> Vec<Value> {
            let mut v: Vec<&Value> = imp.iter().collect();
            v.sort_by(|a, b| b[key].as_f64().unwrap_or(0.0).total_cmp(&a[key].as_f64().unwrap_or(0.0)));
            v.iter().take(10).map(|e| json!({"feature": e["feature"], key: e[key]})).collect()
        };

        let doc = json!({
            "format": LIGHTGBM_DOC_FORMAT, "version": LIGHTGBM_DOC_VERSION, "file": LIGHTGBM_MODEL_FILE,
            "objective": model.objective_line, "trees": model.trees(), "iterations": iterations,
            "features": f, "params": params, "input": "last row of each window",
        });
        let mut test = m.headline();
        if let Some(r) = &reg {
            test["regression"] = r.clone();
        }
        let card = ModelCard {
            format: CARD_FORMAT.into(),
            version: CARD_VERSION,
            flowcast_version: env!("CARGO_PKG_VERSION").into(),
            experiment: job.exp.name.clone(),
            model_id: job.id.into(),
            family: Family::Lightgbm,
            model: doc,
            params: model.leaves(),
            weights: WeightsEntry { file: LIGHTGBM_MODEL_FILE.into(), sha256: sha256_file(&model_path)?, tensors: vec![] },
            preprocessing: data.preprocessing(job.target),
            classes: pt.def.classes.clone(),
            training_data: data.info.clone(),
            training: TrainingEntry {
                seed: job.exp.seed,
                spec: serde_json::to_value(&p).expect("json"),
                epochs_run: iterations,
                best_epoch: iterations,
                stopped_early: iterations < p.num_iterations as usize,
                class_weights: class_weights.clone(),
                train_windows: pt.train.len(),
                validation_windows: pt.validation.len(),
                device: job.device.into(),
            },
            baselines: job.baselines.to_vec(),
            metrics: json!({"test": test, "baselines": job.baseline_headline}),
            signal: job.exp.signal.clone(),
        };
        card.save(job.dir)?;
        ModelCard::load(job.dir)?; // what we wrote must pass our own validation
        tracing::info!(model = job.id, iterations, max_diff, us_per_row, "lightgbm exported");

        let mut h = m.headline();
        h["target"] = json!(pt.def.id);
        h["params"] = json!(model.leaves());
        h["best_epoch"] = json!(iterations);
        h["epochs_run"] = json!(iterations);
        if let Some(r) = &reg {
            h["regression"] = r.clone();
        }
        let full = json!({
            "target": pt.def.id, "family": "lightgbm", "test": m, "regression": reg, "iterations": iterations,
            "trees": model.trees(), "train_seconds": train_s,
            "evaluator": {"max_abs_diff_vs_lightgbm": max_diff, "us_per_row": us_per_row, "rows": pt.test.len()},
            "importance_top_gain": top("gain"), "importance_top_split": top("split"), "shap_top_mean_abs": top("shap_mean_abs"),
            "shap": {"rows": idx.len(), "max_additivity_error": additivity},
        });
        Ok(Trained { headline: h, full })
    }
}
