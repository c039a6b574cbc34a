//! Training the `ensemble` family (`[[model]] name = "ensemble"`): stacked generalisation
//! (Wolpert 1992) over members of any family the run trains, on out-of-fold predictions from
//! purged chronological folds (López de Prado 2018, ch. 7).
//!
//! 1. The ensemble target's training windows are cut into `folds` contiguous blocks by time.
//!    For each block, each member is trained on its own target's training windows minus those
//!    whose label interval [e, reach(e)] touches the block's label span, minus an embargo of
//!    `embargo` rows after it (default: the longest label horizon of any target involved plus
//!    the window length, so no training input sees a held-out label either), and predicts the
//!    block. So no out-of-fold input of a row comes from a member trained on that row's label.
//! 2. The meta-learner is fitted on these out-of-fold rows (labels: the ensemble's target); the
//!    `lightgbm` one (feature `lightgbm`) picks its rounds by early stopping on a purged holdout
//!    of the latest rows ([`purged_holdout`]), then refits on all of them.
//! 3. Final members are refitted on all training windows (early stopping on validation as any
//!    model of the run) and exported into `<ensemble>/members/<id>/`: the fold models only
//!    produce the meta-learner's inputs and are deleted. The refitted members see ~1/(folds−1)
//!    more data than the fold models whose outputs the meta-learner was fitted on — the usual
//!    stacking trade (Wolpert 1992; scikit-learn's StackingClassifier does the same).
//! 4. The ensemble is tested through the exported, burn-free predictors (candle, gbdt).
//!
//! Formulas: docs/models.md.

use crate::config::{EnsembleParams, Experiment, MemberSpec, MetaKind, ModelSpec};
use crate::error::{Result, TrainError};
use crate::model::{train_model, ModelCtx, ModelOut};
use flowcast_contract::baselines::{self, Baseline};
use flowcast_contract::card::{sha256_file, Family, ModelCard, TrainingEntry, WeightsEntry};
use flowcast_contract::ensemble::{
    fit_logistic, fit_weighted_average, hedge_prequential, EnsembleDoc, EnsemblePredictor, MemberEntry, MetaLearner, ENSEMBLE_DOC_FORMAT,
    ENSEMBLE_DOC_VERSION, ENSEMBLE_FILE,
};
use flowcast_contract::eval::EVAL_CHUNK;
use flowcast_contract::files::{CARD_FILE, CARD_FORMAT, CARD_VERSION, PREDICTIONS_FILE};
use flowcast_contract::metrics::Metrics;
use flowcast_contract::predictions::write_predictions;
use flowcast_contract::predictor::{predict_set, Predictor};
use flowcast_contract::prepare::PreparedData;
use flowcast_contract::target::{OutputKind, TargetDef};
use flowcast_contract::window::WindowSet;
use flowcast_datasets::labels::SampleRows;
use serde_json::{json, Value};
use std::path::Path;

/// The last row each row's label reads (rows beyond the end: the last row): from the target's
/// row horizon, or its clock duration on the row times.
pub fn reach_rows(def: &TargetDef, rows: &SampleRows) -> Result<Vec<usize>> {
    let n = rows.ts.len();
    if let Some(h) = def.horizon {
        return Ok((0..n).map(|r| (r + h).min(n.saturating_sub(1))).collect());
    }
    let d = def.duration.as_deref().ok_or_else(|| {
        TrainError::Invalid(format!("target {}: neither a row horizon nor a duration: the ensemble cannot purge its folds", def.id))
    })?;
    let ns = flowcast_datasets::time::parse_duration(d).map_err(|e| TrainError::Invalid(format!("target {}: duration {e}", def.id)))?;
    let mut out = Vec::with_capacity(n);
    let mut j = 0;
    for r in 0..n {
        j = j.max(r);
        while j + 1 < n && rows.ts[j] < rows.ts[r].saturating_add(ns) {
            j += 1;
        }
        out.push(j);
    }
    Ok(out)
}

/// Contiguous, near-equal blocks of `0..n`.
pub fn fold_ranges(n: usize, folds: usize) -> Vec<std::ops::Range<usize>> {
    (0..folds).map(|j| j * n / folds..(j + 1) * n / folds).filter(|r| !r.is_empty()).collect()
}

/// The windows of `set` at indices `idx`, labels (and values) kept.
pub fn subset(set: &WindowSet, idx: &[usize]) -> WindowSet {
    let w = WindowSet::new(
        set.data.clone(),
        set.window,
        idx.iter().map(|&i| set.ends[i]).collect(),
        idx.iter().map(|&i| set.labels[i]).collect(),
    );
    if set.values.is_empty() {
        w
    } else {
        w.with_values(idx.iter().map(|&i| set.values[i]).collect())
    }
}

/// One fold of the out-of-fold plan: the held-out block (indices into the ensemble's training
/// windows) and the member's training windows clear of it (indices into the member's).
#[derive(Clone, Debug)]
pub struct Fold {
    pub held_out: std::ops::Range<usize>,
    pub train: Vec<usize>,
}

/// The purged folds for one member: a member window ending at row e (label through
/// `member_reach[e]`) is dropped when its label interval [e, reach] meets the block's label
/// span [lo, hi_reach], or when e falls in the embargo (hi_reach, hi_reach + embargo].
pub fn purged_folds(
    ens: &WindowSet,
    ens_reach: &[usize],
    member: &WindowSet,
    member_reach: &[usize],
    folds: usize,
    embargo: usize,
) -> Vec<Fold> {
    fold_ranges(ens.len(), folds)
        .into_iter()
        .map(|held_out| {
            let lo = held_out.clone().map(|i| ens.ends[i] as usize).min().unwrap_or(0);
            let hi_reach = held_out.clone().map(|i| ens_reach[ens.ends[i] as usize]).max().unwrap_or(0);
            let train = (0..member.len())
                .filter(|&i| {
                    let e = member.ends[i] as usize;
                    member_reach[e] < lo || e > hi_reach + embargo
                })
                .collect();
            Fold { held_out, train }
        })
        .collect()
}

/// Fits a member on fold `j`'s training windows and returns its probabilities on the held-out ones.
pub type FitPredict<'a> = dyn FnMut(usize, &WindowSet, &WindowSet) -> Result<Vec<f32>> + 'a;

/// Out-of-fold probabilities `[ens.len() × k]`: for each fold, `fit_predict(fold, train, held_out)`
/// fits a member on `train` (a subset of `member`) and returns its probabilities on `held_out`
/// (a subset of `ens`).
pub fn out_of_fold(ens: &WindowSet, member: &WindowSet, folds: &[Fold], k: usize, fit_predict: &mut FitPredict<'_>) -> Result<Vec<f32>> {
    let mut out = vec![f32::NAN; ens.len() * k];
    for (j, f) in folds.iter().enumerate() {
        if f.train.is_empty() {
            return Err(TrainError::Invalid(format!(
                "ensemble fold {j}: no member training window is clear of the held-out block (fewer folds or a shorter embargo)"
            )));
        }
        let idx: Vec<usize> = f.held_out.clone().collect();
        let p = fit_predict(j, &subset(member, &f.train), &subset(ens, &idx))?;
        if p.len() != idx.len() * k {
            return Err(TrainError::Invalid(format!("ensemble fold {j}: {} probabilities for {} windows", p.len(), idx.len())));
        }
        out[f.held_out.start * k..f.held_out.end * k].copy_from_slice(&p);
    }
    Ok(out)
}

/// The burn-free predictor of an exported member: what serving uses (`flowcast_serve::load_predictor`).
pub fn member_predictor(dir: &Path, card: &ModelCard) -> flowcast_contract::Result<Box<dyn Predictor>> {
    if card.family == Family::Ensemble {
        return Err(flowcast_contract::ContractError::Invalid(format!("{}: an ensemble member cannot be an ensemble", dir.display())));
    }
    Ok(flowcast_serve::load_predictor(dir, card)?)
}

/// A member fitted on some windows.
enum Fitted {
    Model { pred: Box<dyn Predictor>, out: ModelOut },
    Baseline(Baseline),
}

/// Fits member `m` for target `tm` on `data` with the training windows `train` (and, for
/// model members, test windows `test`), exporting model members into `dir`.
fn fit_member(
    ctx: &ModelCtx<'_>,
    m: &MemberSpec,
    tm: usize,
    data: &PreparedData,
    sets: Option<(&WindowSet, &WindowSet)>,
    dir: &Path,
) -> Result<Fitted> {
    let pt = &data.targets[tm];
    let k = pt.def.n_classes();
    if m.is_baseline() {
        let train = sets.map(|s| s.0).unwrap_or(&pt.train);
        let cw = crate::trainer::class_weights(&ctx.exp.training.class_weights, train, k)?;
        return Ok(Fitted::Baseline(baselines::fit(&m.name, train, &data.window_ofi, k, cw.as_deref())?));
    }
    let spec = m.model_spec();
    let out = match sets {
        None => train_model(ctx, &spec, m.id(), dir, tm, data)?,
        Some((train, test)) => {
            let mut d = data.clone();
            d.targets[tm].train = train.clone();
            d.targets[tm].test = test.clone();
            train_model(ctx, &spec, m.id(), dir, tm, &d)?
        }
    };
    let card = ModelCard::load(dir)?;
    Ok(Fitted::Model { pred: member_predictor(dir, &card)?, out })
}

fn predict_fitted(f: &Fitted, set: &WindowSet, data: &PreparedData, classes: &[String]) -> Result<Vec<f32>> {
    Ok(match f {
        Fitted::Model { pred, .. } => predict_set(pred.as_ref(), set, &data.window_ofi, EVAL_CHUNK)?.probs,
        Fitted::Baseline(b) => predict_set(&b.predictor(classes, set.window, data.n_features()), set, &data.window_ofi, EVAL_CHUNK)?.probs,
    })
}

/// Interleaves per-member probabilities (`[m][n × k]`) into rows `[n × m × k]`.
fn stack(per_member: &[Vec<f32>], k: usize) -> Vec<f32> {
    let m = per_member.len();
    let n = per_member.first().map_or(0, |p| p.len() / k);
    let mut z = vec![0.0; n * m * k];
    for (j, p) in per_member.iter().enumerate() {
        for i in 0..n {
            z[(i * m + j) * k..(i * m + j + 1) * k].copy_from_slice(&p[i * k..(i + 1) * k]);
        }
    }
    z
}

/// For each window of `set` in time order: how many earlier windows' labels have matured
/// (reach ≤ its end row) — the prequential protocol's updates.
fn matured_counts(set: &WindowSet, reach: &[usize]) -> Vec<usize> {
    let mut done = 0;
    set.ends
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            while done < i && reach[set.ends[done] as usize] <= e as usize {
                done += 1;
            }
            done
        })
        .collect()
}

/// A purged holdout of `set`'s windows (in time order) for early stopping: the latest `frac` of
/// them, and the earlier ones whose label interval [e, reach(e)] ends before the holdout's
/// first end row (the rest, whose labels reach into the holdout, are purged).
pub fn purged_holdout(set: &WindowSet, reach: &[usize], frac: f64) -> (Vec<usize>, Vec<usize>) {
    let n = set.len();
    let tail = ((n as f64 * frac).round() as usize).min(n);
    if tail == 0 || tail == n {
        return ((0..n).collect(), Vec::new());
    }
    let cut = n - tail;
    let lo = set.ends[cut..].iter().copied().min().unwrap_or(0) as usize;
    ((0..cut).filter(|&i| reach[set.ends[i] as usize] < lo).collect(), (cut..n).collect())
}

/// Feature names of the stacked rows: `<member>__<class>` (LightGBM refuses JSON punctuation).
#[cfg(feature = "lightgbm")]
fn meta_feature_names(members: &[&str], classes: &[String]) -> Vec<String> {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect::<String>();
    members.iter().flat_map(|m| classes.iter().map(move |c| format!("{}__{}", clean(m), clean(c)))).collect()
}

#[cfg(not(feature = "lightgbm"))]
#[allow(clippy::too_many_arguments)]
fn fit_lightgbm_meta(
    _p: &EnsembleParams,
    id: &str,
    _seed: u64,
    _dir: &Path,
    _rows: (&[f32], &[u8], Option<&[f64]>),
    _members: &[&str],
    _classes: &[String],
    _set: &WindowSet,
    _reach: &[usize],
) -> Result<(MetaLearner, Value)> {
    Err(crate::lightgbm::meta_not_built(id))
}

/// The LightGBM meta-learner on the out-of-fold rows `z` (`[n × m·k]`, labels `y`, class
/// weights `cw`): the number of rounds by early stopping on a purged holdout of the latest
/// rows (fitted on the earlier ones), then refitted with that many rounds on all rows — the
/// rows the other meta-learners are fitted on. Writes `dir/meta_lightgbm.txt`; records the
/// pure-Rust evaluator's agreement with LightGBM's own predictions on every out-of-fold row.
#[cfg(feature = "lightgbm")]
#[allow(clippy::too_many_arguments)]
fn fit_lightgbm_meta(
    p: &EnsembleParams,
    id: &str,
    seed: u64,
    dir: &Path,
    (z, y, cw): (&[f32], &[u8], Option<&[f64]>),
    members: &[&str],
    classes: &[String],
    set: &WindowSet,
    reach: &[usize],
) -> Result<(MetaLearner, Value)> {
    use crate::lightgbm::{fit, parameters, Rows};
    use flowcast_contract::ensemble::META_LIGHTGBM_FILE;
    use flowcast_contract::gbdt::GbdtModel;
    let lgb = |e: lightgbm3::Error| TrainError::Invalid(format!("[[model]] {id}: LightGBM meta-learner: {e}"));
    let mut lp = p.meta_lightgbm_params(id).map_err(TrainError::Invalid)?;
    let (k, f) = (classes.len(), members.len() * classes.len());
    let names = meta_feature_names(members, classes);
    let yf: Vec<f32> = y.iter().map(|&c| c as f32).collect();
    let w: Option<Vec<f32>> = cw.map(|w| y.iter().map(|&c| w[c as usize] as f32).collect());
    let pick = |idx: &[usize]| -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
        (
            idx.iter().flat_map(|&i| z[i * f..(i + 1) * f].iter().copied()).collect(),
            idx.iter().map(|&i| yf[i]).collect(),
            w.as_ref().map(|w| idx.iter().map(|&i| w[i]).collect()),
        )
    };
    let (head, tail) = purged_holdout(set, reach, p.meta_holdout);
    let mut es = json!(null);
    if lp.early_stopping_rounds > 0 && !head.is_empty() && !tail.is_empty() {
        let (hx, hy, hw) = pick(&head);
        let (tx, ty, tw) = pick(&tail);
        let params = parameters(&lp, Some(k), seed, true);
        let b =
            fit(&params, &names, Rows { x: &hx, y: &hy, weights: hw.as_deref() }, Some(Rows { x: &tx, y: &ty, weights: tw.as_deref() }))?;
        let best = (b.num_iterations().max(1)) as u32;
        es = json!({"fit_rows": head.len(), "holdout_rows": tail.len(), "purged_rows": set.len() - head.len() - tail.len(),
                    "best_iteration": best, "max_iterations": lp.num_iterations});
        lp.num_iterations = best;
    } else {
        tracing::warn!(id, rows = set.len(), "ensemble: no early stopping for the LightGBM meta-learner (no holdout or rounds = 0)");
    }
    let params = parameters(&lp, Some(k), seed, false);
    let booster = fit(&params, &names, Rows { x: z, y: &yf, weights: w.as_deref() }, None)?;
    let path = dir.join(META_LIGHTGBM_FILE);
    booster.save_file(&path.display().to_string()).map_err(lgb)?;
    let model = GbdtModel::load(&path)?;
    // The served evaluator against LightGBM on every out-of-fold row.
    let own = booster.predict(z, f as i32, true).map_err(lgb)?;
    let (mut row, mut mine) = (vec![0.0f64; f], vec![0.0f64; k]);
    let mut max_diff = 0.0f64;
    for (r, x) in z.chunks(f).enumerate() {
        row.iter_mut().zip(x).for_each(|(d, &s)| *d = s as f64);
        model.predict_row(&row, &mut mine);
        for (a, b) in mine.iter().zip(&own[r * k..(r + 1) * k]) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    let iterations = model.iterations();
    tracing::info!(id, iterations, max_diff, "ensemble: LightGBM meta-learner");
    let info = json!({"lightgbm": {"early_stopping": es, "iterations": iterations, "trees": model.trees(), "leaves": model.leaves(),
                                   "features": names, "evaluator": {"max_abs_diff_vs_lightgbm": max_diff, "rows": y.len()}}});
    let meta = MetaLearner::Lightgbm {
        file: META_LIGHTGBM_FILE.into(),
        sha256: sha256_file(&path)?,
        iterations,
        params,
        model: Some(std::sync::Arc::new(model)),
    };
    Ok((meta, info))
}

fn headline(m: &Metrics) -> Value {
    let mut h = m.headline();
    h["log_loss"] = json!(m.log_loss);
    h
}

/// Trains, stacks, tests and exports ensemble `spec` for target `ti` into `dir`.
pub(crate) fn train_and_export(
    ctx: &ModelCtx<'_>,
    spec: &ModelSpec,
    id: &str,
    dir: &Path,
    ti: usize,
    data: &PreparedData,
) -> Result<ModelOut> {
    let exp: &Experiment = ctx.exp;
    let tids: Vec<String> = data.targets.iter().map(|t| t.def.id.clone()).collect();
    let p = EnsembleParams::from_spec(spec, &tids).map_err(TrainError::Invalid)?;
    let pt = &data.targets[ti];
    let (k, classes) = (pt.def.n_classes(), pt.def.classes.clone());
    if pt.def.output != OutputKind::Direction {
        return Err(TrainError::Invalid(format!(
            "[[model]] {id}: the ensemble combines class probabilities; target {} is a regression target",
            pt.def.id
        )));
    }
    let tm_of = |m: &MemberSpec| -> usize { m.target.as_ref().and_then(|t| tids.iter().position(|x| x == t)).unwrap_or(ti) };
    for m in &p.members {
        let d = &data.targets[tm_of(m)].def;
        if d.output != OutputKind::Direction || d.classes != classes {
            return Err(TrainError::Invalid(format!(
                "[[model]] {id}: member {} predicts target {} ({:?} {:?}); members need the ensemble's classes {classes:?}",
                m.id(),
                d.id,
                d.output,
                d.classes
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let reach: Vec<Vec<usize>> = data.targets.iter().map(|t| reach_rows(&t.def, &data.rows)).collect::<Result<_>>()?;
    let used: Vec<usize> = std::iter::once(ti).chain(p.members.iter().map(tm_of)).collect();
    let longest =
        used.iter().map(|&t| reach[t].iter().enumerate().map(|(r, &e)| e.saturating_sub(r)).max().unwrap_or(0)).max().unwrap_or(0);
    let embargo = p.embargo.unwrap_or(longest + data.inputs.window);
    tracing::info!(id, folds = p.folds, embargo, members = p.members.len(), "ensemble: out-of-fold predictions");

    // 1. Out-of-fold member predictions on the ensemble's training windows.
    let fold_ctx = ModelCtx {
        exp,
        device: ctx.device.clone(),
        device_name: ctx.device_name.clone(),
        resume: false,
        stop_after: 0,
        progress: ctx.progress,
        verify_export: false,
        observer: None,
        baselines: ctx.baselines,
        baseline_headline: ctx.baseline_headline,
        data_key: ctx.data_key.clone(),
    };
    let folds_dir = dir.join("folds");
    let mut oof = Vec::new();
    let mut fold_report = Vec::new();
    for m in &p.members {
        let tm = tm_of(m);
        let folds = purged_folds(&pt.train, &reach[ti], &data.targets[tm].train, &reach[tm], p.folds, embargo);
        let mut fold_metrics = Vec::new();
        let mut fit = |j: usize, train: &WindowSet, held: &WindowSet| -> Result<Vec<f32>> {
            let fdir = folds_dir.join(format!("{}-{j}", m.id()));
            let f = fit_member(&fold_ctx, m, tm, data, Some((train, held)), &fdir)?;
            let probs = predict_fitted(&f, held, data, &classes)?;
            fold_metrics.push(json!({"fold": j, "train_windows": train.len(), "held_out": held.len(),
                                     "test": headline(&Metrics::compute(&held.targets(), &probs, k))}));
            if fdir.exists() {
                std::fs::remove_dir_all(&fdir).map_err(|e| TrainError::io(&fdir, e))?;
            }
            Ok(probs)
        };
        oof.push(out_of_fold(&pt.train, &data.targets[tm].train, &folds, k, &mut fit)?);
        fold_report.push(json!({"member": m.id(), "target": data.targets[tm].def.id,
            "member_train_windows": data.targets[tm].train.len(), "folds": fold_metrics}));
    }
    if folds_dir.exists() {
        std::fs::remove_dir_all(&folds_dir).map_err(|e| TrainError::io(&folds_dir, e))?;
    }
    let z_oof = stack(&oof, k);
    let m_n = p.members.len();

    // 2. Final members on all training windows, exported as ordinary model directories.
    let mut finals = Vec::new();
    for m in &p.members {
        let tm = tm_of(m);
        let mdir = dir.join("members").join(m.id());
        finals.push(fit_member(ctx, m, tm, data, None, &mdir)?);
    }
    let val_probs: Vec<Vec<f32>> = finals.iter().map(|f| predict_fitted(f, &pt.validation, data, &classes)).collect::<Result<_>>()?;
    let test_probs: Vec<Vec<f32>> = finals.iter().map(|f| predict_fitted(f, &pt.test, data, &classes)).collect::<Result<_>>()?;
    let z_val = stack(&val_probs, k);

    // 3. The meta-learner on the out-of-fold rows.
    let cw: Option<Vec<f64>> =
        crate::trainer::class_weights(&exp.training.class_weights, &pt.train, k)?.map(|w| w.into_iter().map(|v| v as f64).collect());
    let y = &pt.train.labels;
    let mut meta_info = json!({});
    let mut params = 0usize;
    let meta = match p.meta {
        MetaKind::WeightedAverage => MetaLearner::WeightedAverage { weights: fit_weighted_average(&z_oof, y, m_n, k, cw.as_deref()) },
        MetaKind::Logistic => MetaLearner::Logistic { coef: fit_logistic(&z_oof, y, m_n, k, p.l2, cw.as_deref()), l2: p.l2 },
        MetaKind::Hedge => {
            let mat = matured_counts(&pt.train, &reach[ti]);
            let zero = vec![0.0; m_n];
            let grid: Vec<f64> = p.eta.map(|e| vec![e]).unwrap_or_else(|| vec![0.1, 0.3, 1.0, 3.0, 10.0]);
            let scored: Vec<(f64, f64)> =
                grid.iter().map(|&eta| (eta, hedge_prequential(&z_oof, y, &mat, (m_n, k), (eta, p.discount), &zero, None).0)).collect();
            let (eta, _) = scored.iter().copied().fold((grid[0], f64::INFINITY), |b, s| if s.1 < b.1 { s } else { b });
            meta_info = json!({"eta_grid_oof_log_loss": scored});
            // The exported state: losses after the out-of-fold rows, then the validation rows
            // (final members; those labels have matured before any test row).
            let (_, l1) = hedge_prequential(&z_oof, y, &mat, (m_n, k), (eta, p.discount), &zero, None);
            let vmat = matured_counts(&pt.validation, &reach[ti]);
            let (_, l2) = hedge_prequential(&z_val, &pt.validation.labels, &vmat, (m_n, k), (eta, p.discount), &l1, None);
            MetaLearner::Hedge { eta, discount: p.discount, losses: l2 }
        }
        MetaKind::Lightgbm => {
            let ids: Vec<&str> = p.members.iter().map(|m| m.id()).collect();
            let (meta, info) = fit_lightgbm_meta(&p, id, exp.seed, dir, (&z_oof, y, cw.as_deref()), &ids, &classes, &pt.train, &reach[ti])?;
            meta_info = info;
            meta
        }
    };
    if let MetaLearner::Lightgbm { model: Some(g), .. } = &meta {
        params += g.leaves();
    }

    // 4. The document, the card, then test through the reloaded (burn-free) ensemble.
    let mut entries = Vec::new();
    for (m, f) in p.members.iter().zip(&finals) {
        let target = data.targets[tm_of(m)].def.id.clone();
        entries.push(match f {
            Fitted::Model { .. } => {
                let rel = format!("members/{}", m.id());
                let c = ModelCard::load(&dir.join(&rel))?;
                params += c.params;
                MemberEntry {
                    id: m.id().into(),
                    target,
                    card_sha256: Some(sha256_file(&dir.join(&rel).join(CARD_FILE))?),
                    dir: Some(rel),
                    baseline: None,
                }
            }
            Fitted::Baseline(b) => MemberEntry { id: m.id().into(), target, dir: None, card_sha256: None, baseline: Some(b.clone()) },
        });
    }
    let doc = EnsembleDoc {
        format: ENSEMBLE_DOC_FORMAT.into(),
        version: ENSEMBLE_DOC_VERSION,
        members: entries,
        meta: meta.clone(),
        stacking: json!({"method": "out-of-fold predictions from purged chronological folds; final members refitted on all training windows",
                         "folds": p.folds, "embargo_rows": embargo, "meta_fit_rows": pt.train.len(), "meta_class_weights": cw}),
    };
    let doc_v = serde_json::to_value(&doc).expect("json");
    let doc_path = dir.join(ENSEMBLE_FILE);
    std::fs::write(&doc_path, serde_json::to_string_pretty(&doc_v).expect("json") + "\n").map_err(|e| TrainError::io(&doc_path, e))?;
    let z_test = stack(&test_probs, k);
    let mut static_probs = Vec::with_capacity(pt.test.len() * k);
    for row in z_test.chunks(m_n * k) {
        meta.combine(row, k, &mut static_probs);
    }
    let m_test = Metrics::compute(&pt.test.targets(), &static_probs, k);
    let mut val_ens = Vec::new();
    for row in z_val.chunks(m_n * k) {
        meta.combine(row, k, &mut val_ens);
    }
    let m_val = Metrics::compute(&pt.validation.targets(), &val_ens, k);
    let card = ModelCard {
        format: CARD_FORMAT.into(),
        version: CARD_VERSION,
        flowcast_version: env!("CARGO_PKG_VERSION").into(),
        experiment: exp.name.clone(),
        model_id: id.to_string(),
        family: Family::Ensemble,
        model: doc_v,
        params,
        weights: WeightsEntry { file: ENSEMBLE_FILE.into(), sha256: sha256_file(&doc_path)?, tensors: Vec::new() },
        preprocessing: data.preprocessing(ti),
        classes: classes.clone(),
        training_data: data.info.clone(),
        training: TrainingEntry {
            seed: exp.seed,
            spec: serde_json::to_value(&exp.training).expect("json"),
            epochs_run: 0,
            best_epoch: 0,
            stopped_early: false,
            class_weights: cw.as_ref().map(|w| w.iter().map(|&v| v as f32).collect()),
            train_windows: pt.train.len(),
            validation_windows: pt.validation.len(),
            device: ctx.device_name.clone(),
        },
        baselines: ctx.baselines.to_vec(),
        metrics: json!({"test": m_test.headline(), "baselines": ctx.baseline_headline}),
        signal: exp.signal.clone(),
    };
    card.save(dir)?;
    let card = ModelCard::load(dir)?; // what we wrote must pass our own validation (members included)
    let reloaded = EnsemblePredictor::<dyn Predictor>::load(dir, &card, &member_predictor)?;
    let out = predict_set(&reloaded, &pt.test, &data.window_ofi, EVAL_CHUNK)?;
    let max_diff = out.probs.iter().zip(&static_probs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    if max_diff > 1e-5 {
        return Err(TrainError::Invalid(format!("[[model]] {id}: the reloaded ensemble differs from the trained one by {max_diff}")));
    }
    write_predictions(&dir.join(PREDICTIONS_FILE), &pt.test, &data.rows, &classes, &out)?;

    // Members beside the ensemble, scored on the ensemble's test labels.
    let mut extra = Vec::new();
    let mut members_json = serde_json::Map::new();
    for ((m, f), probs) in p.members.iter().zip(&finals).zip(&test_probs) {
        let mm = Metrics::compute(&pt.test.targets(), probs, k);
        let mut h = headline(&mm);
        h["target"] = json!(pt.def.id);
        h["member_target"] = json!(data.targets[tm_of(m)].def.id);
        h["member_of"] = json!(id);
        if let Fitted::Model { out: o, .. } = f {
            h["own_target_test"] = o.headline.clone();
        }
        members_json.insert(m.id().into(), json!({"test": mm, "headline": h.clone()}));
        extra.push((format!("{id}/{}", m.id()), h));
    }
    let mut h = headline(&m_test);
    h["target"] = json!(pt.def.id);
    h["params"] = json!(params);
    h["meta"] = json!(meta.name());
    h["validation"] = headline(&m_val);
    let mut full = json!({"target": pt.def.id, "test": m_test, "validation": m_val, "meta": meta, "meta_fit": meta_info,
                          "members": members_json, "out_of_fold": fold_report, "embargo_rows": embargo, "params": params});
    if let MetaLearner::Hedge { eta, discount, losses } = &meta {
        // Online protocol on the test rows: predict, then update once each label has matured.
        let tmat = matured_counts(&pt.test, &reach[ti]);
        let mut probs = Vec::new();
        let (_, end) = hedge_prequential(&z_test, &pt.test.labels, &tmat, (m_n, k), (*eta, *discount), losses, Some(&mut probs));
        let mp = Metrics::compute(&pt.test.targets(), &probs, k);
        h["prequential"] = headline(&mp);
        full["prequential"] = json!({"test": mp, "final_weights": flowcast_contract::ensemble::hedge_weights(*eta, &end)});
    }
    let agreement = ctx.verify_export.then(|| {
        json!({"engine": "ensemble reloaded through Predictor (members: candle / gbdt)", "max_abs_prob_diff": max_diff, "windows": pt.test.len()})
    });
    Ok(ModelOut { headline: h, full, agreement, extra })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowcast_contract::window::Matrix;
    use std::sync::Arc;

    /// Windows of 1 row over `n` rows, labels cycling with a drift so folds differ.
    fn set(n: usize) -> WindowSet {
        let data = Arc::new(Matrix { names: vec!["x".into()], values: (0..n).map(|i| i as f32).collect() });
        let labels: Vec<u8> = (0..n).map(|i| ((i * i / 7) % 3) as u8).collect();
        WindowSet::new(data, 1, (0..n as u32).collect(), labels)
    }

    /// A member that depends on every training label: its class frequencies (the majority baseline).
    fn oof_of(member: &WindowSet, ens: &WindowSet, reach: &[usize]) -> Vec<f32> {
        let folds = purged_folds(ens, reach, member, reach, 4, 5);
        let classes: Vec<String> = ["down", "flat", "up"].iter().map(|s| s.to_string()).collect();
        let mut fit = |_j: usize, train: &WindowSet, held: &WindowSet| -> Result<Vec<f32>> {
            let b = baselines::fit("majority", train, &[], 3, None)?;
            Ok(predict_set(&b.predictor(&classes, 1, 1), held, &vec![0.0; 400], 64)?.probs)
        };
        out_of_fold(ens, member, &folds, 3, &mut fit).unwrap()
    }

    #[test]
    fn perturbing_a_label_changes_no_out_of_fold_input_of_its_row() {
        let n = 400;
        let s = set(n);
        let reach: Vec<usize> = (0..n).map(|r| (r + 3).min(n - 1)).collect();
        let base = oof_of(&s, &s, &reach);
        assert!(base.iter().all(|v| v.is_finite()));
        for r in [0usize, 57, 199, 250, 399] {
            let mut p = s.clone();
            p.labels[r] = (p.labels[r] + 1) % 3;
            let got = oof_of(&p, &p, &reach);
            assert_eq!(got[r * 3..r * 3 + 3], base[r * 3..r * 3 + 3], "row {r}: its out-of-fold input moved");
            // ... while the rows of other folds (whose members did train on row r) do move:
            // the test can fail.
            assert!(got.iter().zip(&base).any(|(a, b)| a != b), "row {r}: the perturbation changed nothing at all");
            // Rows whose labels overlap row r's within the embargo are protected too.
            for q in r.saturating_sub(3)..(r + 4).min(n) {
                let f = fold_ranges(n, 4).iter().position(|f| f.contains(&q)).unwrap();
                let fr = fold_ranges(n, 4).iter().position(|f| f.contains(&r)).unwrap();
                if f == fr {
                    assert_eq!(got[q * 3..q * 3 + 3], base[q * 3..q * 3 + 3], "row {q} of row {r}'s fold");
                }
            }
        }
    }

    #[test]
    fn purge_and_embargo_keep_labels_and_inputs_apart() {
        let n = 100;
        let s = set(n);
        let reach: Vec<usize> = (0..n).map(|r| (r + 4).min(n - 1)).collect();
        let folds = purged_folds(&s, &reach, &s, &reach, 4, 6);
        let f = &folds[1]; // held out: rows 25..50, labels through row 53
        assert_eq!(f.held_out, 25..50);
        assert!(f.train.iter().all(|&i| i + 4 < 25 || i > 53 + 6), "{:?}", f.train);
        assert!(f.train.contains(&20) && f.train.contains(&60) && !f.train.contains(&21) && !f.train.contains(&59));
    }

    #[test]
    fn purged_holdout_drops_labels_reaching_into_it() {
        let n = 100;
        let reach: Vec<usize> = (0..n).map(|r| (r + 4).min(n - 1)).collect();
        let (head, tail) = purged_holdout(&set(n), &reach, 0.2);
        assert_eq!(tail, (80..100).collect::<Vec<_>>());
        assert_eq!(head, (0..76).collect::<Vec<_>>(), "rows 76..79 read labels of holdout rows");
        let (head, tail) = purged_holdout(&set(2), &reach[..2], 0.2);
        assert_eq!((head.len(), tail.len()), (2, 0), "too few rows for a holdout: no early stopping");
    }

    #[test]
    fn ensemble_tables_are_checked() {
        let tids = vec!["k10".to_string()];
        let spec = |s: &str| -> ModelSpec {
            let v: toml::Value = toml::from_str(&format!("name = \"ensemble\"\n{s}")).unwrap();
            serde_json::from_value(serde_json::to_value(v).unwrap()).unwrap()
        };
        let ok = spec("members = [{ name = \"lstm\", hidden = 8 }, { name = \"majority\" }]\nmeta = \"hedge\"");
        assert_eq!(EnsembleParams::from_spec(&ok, &tids).unwrap().meta, MetaKind::Hedge);
        let e = EnsembleParams::from_spec(&spec("members = [{ name = \"lstm\", target = \"k99\" }]"), &tids).unwrap_err();
        assert!(e.contains("k99"), "{e}");
        let e = EnsembleParams::from_spec(&spec("members = [{ name = \"lstm\" }]\nfolds = 1"), &tids).unwrap_err();
        assert!(e.contains("folds"), "{e}");
        let e = EnsembleParams::from_spec(&spec("members = [{ name = \"lstm\" }]\nmetta = \"logistic\""), &tids).unwrap_err();
        assert!(e.contains("metta"), "{e}");
        let e = EnsembleParams::from_spec(&spec("members = [{ name = \"lstm\" }, { name = \"lstm\" }]"), &tids).unwrap_err();
        assert!(e.contains("share"), "{e}");
    }
}
