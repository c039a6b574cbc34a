//! The `bayes_online` model family in a training run: Bayesian online linear regression
//! (`flowcast_contract::bayes`) of the target value (bps) on the feature row at each window's
//! end, fitted by one pass over the training windows in time order (every training label has
//! matured before the validation split starts: the splits are purged), then
//!
//! - batch test metrics: the posterior frozen after training, on the test windows (what the
//!   card's `bayes_state.json` reproduces in `eval`/`predict`, the server and the backtest);
//! - prequential metrics (docs/models.md, "Prequential evaluation"): from the same posterior,
//!   over the validation then the test windows in time order, predicting each window before
//!   absorbing any label that has not matured at its end row (`flowcast_contract::prequential`).
//!
//! Files: `bayes_state.json` (the frozen state), `model.json`, `predictions.parquet` (batch),
//! `predictions_prequential.parquet` (the test windows' prequential predictions),
//! `importance.json` (permutation importance, `crate::explain`).

use crate::config::BayesParams;
use crate::error::{Result, TrainError};
use crate::lightgbm::{Job, Trained};
use flowcast_contract::bayes::BayesOnline;
use flowcast_contract::bayes_changepoint::AdaptiveBayes;
use flowcast_contract::card::{sha256_file, Family, ModelCard, TrainingEntry, WeightsEntry};
use flowcast_contract::files::{BAYES_DOC_FORMAT, BAYES_DOC_VERSION, BAYES_STATE_FILE, CARD_FORMAT, CARD_VERSION, PREDICTIONS_FILE};
use flowcast_contract::metrics::{regression_metrics, Metrics};
use flowcast_contract::predictions::write_predictions;
use flowcast_contract::predictor::{predict_set, Outputs};
use flowcast_contract::prepare::PreparedData;
use flowcast_contract::prequential::{concat, maturity_rows, prequential};
use flowcast_contract::target::{OutputKind, BPS};
use flowcast_contract::window::WindowSet;
use serde_json::{json, Value};

/// The prequential test predictions.
pub const PREQUENTIAL_FILE: &str = "predictions_prequential.parquet";

use crate::error::write_json;

/// Windows `range` of `out` as their own outputs.
fn slice(out: &Outputs, range: std::ops::Range<usize>) -> Outputs {
    let k = out.classes;
    let part = |v: &Vec<f32>, w: usize| if v.is_empty() { Vec::new() } else { v[range.start * w..range.end * w].to_vec() };
    Outputs { classes: k, probs: part(&out.probs, k), regression: part(&out.regression, 1), std: part(&out.std, 1) }
}

/// Classification metrics (with calibration) and regression metrics of `out` on `set`.
fn score(set: &WindowSet, out: &Outputs, k: usize) -> (Metrics, Value) {
    (Metrics::compute(&set.targets(), &out.probs, k), regression_metrics(&set.values, &out.regression))
}

/// Fits, scores (batch and prequential) and exports one `bayes_online` model.
pub fn train_and_export(job: &Job<'_>, data: &PreparedData) -> Result<Trained> {
    let BayesParams { mut config, prior_b_from_data, changepoint } = BayesParams::from_spec(job.spec).map_err(TrainError::Invalid)?;
    let pt = &data.targets[job.target];
    let f = data.n_features();
    let k = pt.def.n_classes();
    if k != 3 {
        return Err(TrainError::Invalid(format!("[[model]] {}: bayes_online predicts the 3 direction classes, target has {k}", job.id)));
    }
    for (name, s) in [("training", &pt.train), ("validation", &pt.validation), ("test", &pt.test)] {
        if s.values.len() != s.len() {
            return Err(TrainError::Invalid(format!("target {}: {name} windows carry no target values", pt.def.id)));
        }
    }
    config.alpha_bps = pt.def.alpha * BPS;
    if prior_b_from_data {
        let y = &pt.train.values;
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len().max(1) as f64;
        let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / y.len().max(1) as f64;
        config.prior_b = config.prior_a * var.max(1e-12);
    }
    let t0 = std::time::Instant::now();
    let model = BayesOnline::new(config.clone(), pt.train.window, f)?;
    let mut adaptive = changepoint.clone().map(|c| AdaptiveBayes::new(model.clone(), c)).transpose()?;
    let mut model = model;
    tracing::info!(model = job.id, target = %pt.def.id, rows = pt.train.len(), features = f, form = ?config.form, "fitting bayes_online");
    for i in 0..pt.train.len() {
        let v = pt.train.view(i);
        let (row, y) = (&v[v.len() - f..], pt.train.values[i] as f64);
        match &mut adaptive {
            Some(a) => a.update_row(row, y),
            None => model.update_row(row, y).map(|_| ()),
        }
        .map_err(|e| TrainError::Invalid(format!("[[model]] {}: training window {i} (row {}): {e}", job.id, pt.train.ends[i])))?;
    }
    let fired_train = adaptive.as_ref().map(|a| a.fired);
    if let Some(a) = &adaptive {
        model = a.model.clone();
    }
    let train_s = t0.elapsed().as_secs_f64();
    let us_per_update = train_s * 1e6 / pt.train.len().max(1) as f64;

    // Batch: the frozen posterior on the test windows.
    let t1 = std::time::Instant::now();
    let out = predict_set(&model, &pt.test, &data.window_ofi, 512)?;
    let us_per_predict = t1.elapsed().as_secs_f64() * 1e6 / pt.test.len().max(1) as f64;
    let (m, reg) = score(&pt.test, &out, k);
    write_predictions(&job.dir.join(PREDICTIONS_FILE), &pt.test, &data.rows, &pt.def.classes, &out)?;

    // Prequential: validation then test, learning from matured labels only.
    // An ensemble's out-of-fold member sees a test fold inside the training range, before the
    // validation split: then the test windows alone (concatenated they would not be in time order).
    let in_order = match (pt.validation.ends.last(), pt.test.ends.first()) {
        (Some(v), Some(t)) => v < t,
        _ => true,
    };
    let empty = WindowSet::new(pt.test.data.clone(), pt.test.window, vec![], vec![]).with_values(vec![]);
    let seq = concat(if in_order { &pt.validation } else { &empty }, &pt.test);
    let mature = maturity_rows(&pt.def, &data.rows.ts, &seq.ends)?;
    let t2 = std::time::Instant::now();
    let (pq, fired_pq) = match adaptive {
        Some(mut a) => {
            let before = a.fired;
            let pq = prequential(&mut a, &seq, &mature)?;
            (pq, Some(a.fired - before))
        }
        None => (prequential(&mut model.clone(), &seq, &mature)?, None),
    };
    let pq_s = t2.elapsed().as_secs_f64();
    let nv = if in_order { pt.validation.len() } else { 0 };
    let pq_test = slice(&pq.outputs, nv..seq.len());
    let (pm, preg) = score(&pt.test, &pq_test, k);
    let pq_val = (nv > 0).then(|| score(&pt.validation, &slice(&pq.outputs, 0..nv), k));
    write_predictions(&job.dir.join(PREQUENTIAL_FILE), &pt.test, &data.rows, &pt.def.classes, &pq_test)?;

    // Export and reload through the card: the reloaded predictor must give the same outputs.
    let state_path = job.dir.join(BAYES_STATE_FILE);
    model.write(&state_path)?;
    let doc = json!({
        "format": BAYES_DOC_FORMAT, "version": BAYES_DOC_VERSION, "file": BAYES_STATE_FILE,
        "form": config.form, "discount": config.discount, "intercept": config.intercept, "features": f,
        "weights": model.dim(), "updates": model.posterior().updates, "input": "last row of each window",
        "prior_b_from_data": prior_b_from_data, "changepoint": changepoint,
    });
    let mut test = m.headline();
    test["regression"] = reg.clone();
    test["prequential"] = pm.headline();
    let card = ModelCard {
        format: CARD_FORMAT.into(),
        version: CARD_VERSION,
        flowcast_version: env!("CARGO_PKG_VERSION").into(),
        experiment: job.exp.name.clone(),
        model_id: job.id.into(),
        family: Family::BayesOnline,
        model: doc,
        params: model.dim(),
        weights: WeightsEntry { file: BAYES_STATE_FILE.into(), sha256: sha256_file(&state_path)?, tensors: vec![] },
        preprocessing: data.preprocessing(job.target),
        classes: pt.def.classes.clone(),
        training_data: data.info.clone(),
        training: TrainingEntry {
            seed: job.exp.seed,
            spec: serde_json::to_value(&config).expect("json"),
            epochs_run: 1,
            best_epoch: 1,
            stopped_early: false,
            class_weights: None,
            train_windows: pt.train.len(),
            validation_windows: pt.validation.len(),
            device: job.device.into(),
        },
        baselines: job.baselines.to_vec(),
        metrics: json!({"test": test, "baselines": job.baseline_headline}),
        signal: job.exp.signal.clone(),
    };
    card.save(job.dir)?;
    let card = ModelCard::load(job.dir)?; // what we wrote must pass our own validation
    let reloaded = BayesOnline::load(job.dir, &card)?;
    let again = predict_set(&reloaded, &pt.test, &data.window_ofi, 512)?;
    if again != out {
        return Err(TrainError::Invalid(format!("{}: the reloaded state predicts differently", state_path.display())));
    }

    let rows = job.exp.training.importance_rows;
    let imp = if rows > 0 {
        let imp = crate::explain::permutation_importance(&model, &pt.test, &data.window_ofi, k, job.exp.seed, rows)?;
        write_json(&job.dir.join("importance.json"), &imp.to_json(job.id, &pt.def.id, &data.inputs.names))?;
        Some(imp)
    } else {
        None
    };
    tracing::info!(model = job.id, us_per_update, us_per_predict, "bayes_online exported");

    let mut h = m.headline();
    h["target"] = json!(pt.def.id);
    h["params"] = json!(model.dim());
    h["best_epoch"] = json!(1);
    h["epochs_run"] = json!(1);
    if pt.def.output == OutputKind::Regression {
        h["regression"] = reg.clone();
    }
    h["prequential"] = pm.headline();
    let full = json!({
        "target": pt.def.id, "family": "bayes_online", "test": m, "regression": reg, "train_seconds": train_s,
        "config": config,
        "speed": {"us_per_update": us_per_update, "us_per_predict": us_per_predict, "form": config.form, "weights": model.dim()},
        "prequential": {
            "protocol": "validation then test windows in time order; predict each window, then absorb every label whose maturity row ≤ the next window's end row (docs/models.md)",
            "test": pm, "regression": preg, "updates": pq.updates, "seconds": pq_s,
            "validation": pq_val.as_ref().map(|(m, r)| json!({"metrics": m, "regression": r})),
            "predictions": PREQUENTIAL_FILE,
            "changepoint": changepoint.as_ref().map(|c| json!({"response": c, "fired_in_training": fired_train, "fired_in_prequential": fired_pq})),
        },
        "importance_top": imp.as_ref().map(|i| i.top(&data.inputs.names, 10)),
    });
    Ok(Trained { headline: h, full })
}
