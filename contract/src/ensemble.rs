//! The `ensemble` family: a stacked ensemble (Wolpert 1992) of exported members combined by a
//! meta-learner, burn-free so the server and the backtest load it through [`Predictor`].
//!
//! An ensemble directory holds `ensemble.json` (the document below, also the card's `model`),
//! the card `model.json`, and one ordinary exported model directory per model member
//! (`members/<id>/`, each with its own card); baseline members are stored fitted, inline. Every
//! member reads the ensemble's inputs (same preprocessing inputs); a member may predict another
//! label horizon (its own card's target). The meta-learner maps the members' class
//! probabilities to the ensemble's:
//!
//! - `weighted_average`: p = Σ_m w_m p_m, w on the simplex (fitted by exponentiated gradient on
//!   the out-of-fold log loss);
//! - `logistic`: multinomial logistic regression on ln p_m (L2-penalised);
//! - `hedge`: Freund & Schapire's (1997) Hedge with discounted losses: w_m ∝ exp(−η L_m),
//!   L_m ← γ L_m + (−ln p_m(y)) for each matured label — online through [`OnlinePredictor`];
//! - `lightgbm`: shallow multiclass gradient-boosted trees on the M·K member probabilities, in
//!   LightGBM's text format beside `ensemble.json` (trained with `--features lightgbm`), served
//!   by the pure-Rust evaluator [`crate::gbdt`] — no C++ at serve time.
//!
//! Loading and validating an ensemble card live beside the card (`card.rs`), so this module does
//! not depend on it. Formulas, the out-of-fold protocol and sources: docs/models.md.

use crate::baselines::{Baseline, BaselinePredictor};
use crate::error::{ContractError, Result};
use crate::gbdt::{GbdtModel, Objective};
use crate::predictor::{Batch, Matured, OnlinePredictor, Outputs, Predictor, PredictorInfo};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The ensemble document file (its SHA-256 is the card's `weights.sha256`).
pub const ENSEMBLE_FILE: &str = "ensemble.json";
pub const ENSEMBLE_DOC_FORMAT: &str = "flowcast-ensemble";
pub const ENSEMBLE_DOC_VERSION: u64 = 1;
/// The LightGBM meta-learner's text model, beside `ensemble.json` (its SHA-256 is in the document).
pub const META_LIGHTGBM_FILE: &str = "meta_lightgbm.txt";
/// Probabilities are clamped here before a logarithm.
const EPS: f64 = 1e-6;

/// The meta-learner and its fitted parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetaLearner {
    /// p = Σ_m w_m p_m; w ≥ 0, Σ w = 1.
    WeightedAverage { weights: Vec<f64> },
    /// p = softmax(W·ln p_1..M + b): `coef` is `[classes × (members·classes + 1)]` row-major,
    /// the intercept last in each row.
    Logistic { coef: Vec<f64>, l2: f64 },
    /// w_m ∝ exp(−η (L_m − min L)); `losses` are the discounted cumulative log losses when exported.
    Hedge { eta: f64, discount: f64, losses: Vec<f64> },
    /// p = LightGBM multiclass trees on z (feature m·K + c = p_m(c)). `file` (beside
    /// `ensemble.json`, SHA-256 `sha256`) is LightGBM's text model; `model` is that file parsed,
    /// set by the card's loader (`EnsembleDoc::load_meta`) — `check` refuses it unset.
    Lightgbm {
        file: String,
        sha256: String,
        /// Boosting rounds kept (chosen by early stopping) and LightGBM's parameters: for the record.
        iterations: usize,
        params: serde_json::Value,
        #[serde(skip)]
        model: Option<Arc<GbdtModel>>,
    },
}

impl MetaLearner {
    pub fn name(&self) -> &'static str {
        match self {
            MetaLearner::WeightedAverage { .. } => "weighted_average",
            MetaLearner::Logistic { .. } => "logistic",
            MetaLearner::Hedge { .. } => "hedge",
            MetaLearner::Lightgbm { .. } => "lightgbm",
        }
    }

    /// Checks the parameters' shapes against `m` members of `k` classes (the reason on error).
    pub fn check(&self, m: usize, k: usize) -> std::result::Result<(), String> {
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        match self {
            MetaLearner::WeightedAverage { weights } => {
                if weights.len() != m || !finite(weights) || weights.iter().any(|&w| w < 0.0) {
                    return Err(format!("weights: need {m} finite non-negative values, got {weights:?}"));
                }
                if (weights.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
                    return Err(format!("weights sum to {}, not 1", weights.iter().sum::<f64>()));
                }
            }
            MetaLearner::Logistic { coef, l2 } => {
                if coef.len() != k * (m * k + 1) || !finite(coef) || !(l2.is_finite() && *l2 >= 0.0) {
                    return Err(format!("coef: need {} finite values ({k} × ({m}·{k} + 1)), got {}", k * (m * k + 1), coef.len()));
                }
            }
            MetaLearner::Hedge { eta, discount, losses } => {
                if !(eta.is_finite() && *eta >= 0.0 && *discount > 0.0 && *discount <= 1.0) {
                    return Err(format!("eta = {eta} / discount = {discount}: need η ≥ 0 and 0 < γ ≤ 1"));
                }
                if losses.len() != m || !finite(losses) {
                    return Err(format!("losses: need {m} finite values, got {}", losses.len()));
                }
            }
            MetaLearner::Lightgbm { file, model, .. } => {
                if !is_plain_file_name(file) {
                    return Err(format!("file {file:?}: need a plain file name beside the ensemble document"));
                }
                let Some(g) = model else {
                    return Err(format!("file {file:?}: the LightGBM meta model is not loaded"));
                };
                if g.objective != (Objective::Multiclass { classes: k }) {
                    return Err(format!(
                        "file {file:?}: objective {:?}, need multiclass over the ensemble's {k} classes",
                        g.objective_line
                    ));
                }
                if g.features != m * k {
                    return Err(format!(
                        "file {file:?}: the model reads {} features, the meta-learner's inputs are {m}·{k} = {}",
                        g.features,
                        m * k
                    ));
                }
            }
        }
        Ok(())
    }

    /// The ensemble's k probabilities from one row `z` of member probabilities (`[m × k]`).
    pub fn combine(&self, z: &[f32], k: usize, out: &mut Vec<f32>) {
        let m = z.len() / k;
        match self {
            MetaLearner::WeightedAverage { weights } => mix(weights, z, k, out),
            MetaLearner::Hedge { eta, losses, .. } => {
                let mut stack = [0.0f64; 16];
                let mut heap = Vec::new();
                let w: &mut [f64] = if m <= 16 {
                    &mut stack[..m]
                } else {
                    heap.resize(m, 0.0);
                    &mut heap
                };
                hedge_weights_into(*eta, losses, w);
                mix(w, z, k, out)
            }
            MetaLearner::Logistic { coef, .. } => {
                let d = m * k + 1;
                let mut s = [0.0f64; 16];
                let mut heap = Vec::new();
                let s: &mut [f64] = if k <= 16 {
                    &mut s[..k]
                } else {
                    heap.resize(k, 0.0);
                    &mut heap
                };
                for (c, sc) in s.iter_mut().enumerate() {
                    let row = &coef[c * d..(c + 1) * d];
                    *sc = row[d - 1] + z.iter().zip(row).map(|(&p, &w)| w * (p as f64).max(EPS).ln()).sum::<f64>();
                }
                softmax_into(s, out);
            }
            MetaLearner::Lightgbm { model: Some(g), .. } => {
                let mut s = [0.0f64; 16];
                let mut heap = Vec::new();
                let raw: &mut [f64] = if k <= 16 {
                    &mut s[..k]
                } else {
                    heap.resize(k, 0.0);
                    &mut heap
                };
                g.raw_into(|j| z[j] as f64, raw);
                g.transform(raw);
                out.extend(raw.iter().map(|&p| p as f32));
            }
            // Unreachable through `EnsemblePredictor` (its `check` refuses an unloaded model).
            MetaLearner::Lightgbm { model: None, .. } => out.extend(std::iter::repeat_n(f32::NAN, k)),
        }
    }
}

/// A name without directories (the meta model's file lives beside `ensemble.json`).
pub fn is_plain_file_name(f: &str) -> bool {
    !f.is_empty() && f != "." && f != ".." && !f.contains(['/', '\\'])
}

fn mix(w: &[f64], z: &[f32], k: usize, out: &mut Vec<f32>) {
    let base = out.len();
    out.resize(base + k, 0.0);
    for (wm, pm) in w.iter().zip(z.chunks(k)) {
        for (o, &p) in out[base..].iter_mut().zip(pm) {
            *o += (*wm * p as f64) as f32;
        }
    }
}

fn softmax_into(s: &[f64], out: &mut Vec<f32>) {
    let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tot: f64 = s.iter().map(|v| (v - mx).exp()).sum();
    out.extend(s.iter().map(|v| ((v - mx).exp() / tot) as f32));
}

/// Hedge weights exp(−η (L_m − min L)) / Σ (shifted by the minimum for stability).
pub fn hedge_weights(eta: f64, losses: &[f64]) -> Vec<f64> {
    let mut w = vec![0.0; losses.len()];
    hedge_weights_into(eta, losses, &mut w);
    w
}

/// [`hedge_weights`] into `w` (`losses.len()` values; no allocation: the serving path).
pub fn hedge_weights_into(eta: f64, losses: &[f64], w: &mut [f64]) {
    let mn = losses.iter().copied().fold(f64::INFINITY, f64::min);
    for (o, l) in w.iter_mut().zip(losses) {
        *o = (-eta * (l - mn)).exp();
    }
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= s);
}

/// Hedge's loss update with one matured label `y` of member probabilities `z` (`[m × k]`).
pub fn hedge_update(losses: &mut [f64], discount: f64, z: &[f32], k: usize, y: usize) {
    for (l, pm) in losses.iter_mut().zip(z.chunks(k)) {
        *l = discount * *l - (pm[y] as f64).max(EPS).ln();
    }
}

/// Per-class sample weights (none: 1).
fn sample_weight(cw: Option<&[f64]>, y: u8) -> f64 {
    cw.map_or(1.0, |w| w[y as usize])
}

/// Simplex weights minimising the (class-weighted) log loss of Σ w_m p_m over rows `z`
/// (`[n × m × k]`) with labels `y`: exponentiated gradient (Kivinen & Warmuth 1997), a mirror
/// descent that stays on the simplex; the objective is convex in w.
pub fn fit_weighted_average(z: &[f32], y: &[u8], m: usize, k: usize, cw: Option<&[f64]>) -> Vec<f64> {
    let mut w = vec![1.0 / m as f64; m];
    if y.is_empty() {
        return w;
    }
    let tot: f64 = y.iter().map(|&c| sample_weight(cw, c)).sum();
    let mut g = vec![0.0; m];
    for _ in 0..300 {
        g.iter_mut().for_each(|v| *v = 0.0);
        for (row, &c) in z.chunks(m * k).zip(y) {
            let p: f64 = (0..m).map(|j| w[j] * row[j * k + c as usize] as f64).sum::<f64>().max(EPS);
            let sw = sample_weight(cw, c);
            for j in 0..m {
                g[j] -= sw * row[j * k + c as usize] as f64 / p;
            }
        }
        let mut s = 0.0;
        for j in 0..m {
            w[j] *= (-0.5 * g[j] / tot).exp();
            s += w[j];
        }
        w.iter_mut().for_each(|v| *v /= s);
    }
    w
}

/// Multinomial logistic regression on ln p_m with an L2 penalty λ‖W‖² (intercepts free), fitted
/// by full-batch Adam on the mean (class-weighted) cross-entropy from W = 0; the objective is
/// convex, so the fit is determined by the data, not the start.
pub fn fit_logistic(z: &[f32], y: &[u8], m: usize, k: usize, l2: f64, cw: Option<&[f64]>) -> Vec<f64> {
    let d = m * k + 1;
    let mut coef = vec![0.0; k * d];
    if y.is_empty() {
        return coef;
    }
    let x: Vec<f64> = z.iter().map(|&p| (p as f64).max(EPS).ln()).collect();
    let tot: f64 = y.iter().map(|&c| sample_weight(cw, c)).sum();
    let (mut mo, mut ve) = (vec![0.0; k * d], vec![0.0; k * d]);
    let (lr, b1, b2) = (0.05, 0.9, 0.999);
    let mut g = vec![0.0; k * d];
    let mut s = vec![0.0; k];
    for it in 1..=400 {
        g.iter_mut().for_each(|v| *v = 0.0);
        for (row, &c) in x.chunks(m * k).zip(y) {
            for (cl, sc) in s.iter_mut().enumerate() {
                let r = &coef[cl * d..(cl + 1) * d];
                *sc = r[d - 1] + row.iter().zip(r).map(|(a, b)| a * b).sum::<f64>();
            }
            let mx = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let t: f64 = s.iter().map(|v| (v - mx).exp()).sum();
            let sw = sample_weight(cw, c) / tot;
            for cl in 0..k {
                let err = sw * ((s[cl] - mx).exp() / t - if cl == c as usize { 1.0 } else { 0.0 });
                let gr = &mut g[cl * d..(cl + 1) * d];
                for (gj, xj) in gr.iter_mut().zip(row) {
                    *gj += err * xj;
                }
                gr[d - 1] += err;
            }
        }
        for cl in 0..k {
            for j in 0..d - 1 {
                g[cl * d + j] += 2.0 * l2 * coef[cl * d + j];
            }
        }
        for i in 0..k * d {
            mo[i] = b1 * mo[i] + (1.0 - b1) * g[i];
            ve[i] = b2 * ve[i] + (1.0 - b2) * g[i] * g[i];
            let mh = mo[i] / (1.0 - b1.powi(it));
            let vh = ve[i] / (1.0 - b2.powi(it));
            coef[i] -= lr * mh / (vh.sqrt() + 1e-8);
        }
    }
    coef
}

/// The prequential (predict, then update once matured) Hedge log loss over rows `z` in time
/// order with labels `y`; `matured[i]` = how many rows' labels have matured when row i is
/// predicted (non-decreasing, ≤ i); `(m, k)` members × classes, `(η, γ)`. Returns the mean log loss and the final losses.
pub fn hedge_prequential(
    z: &[f32],
    y: &[u8],
    matured: &[usize],
    (m, k): (usize, usize),
    (eta, discount): (f64, f64),
    start: &[f64],
    probs: Option<&mut Vec<f32>>,
) -> (f64, Vec<f64>) {
    let mut losses = start.to_vec();
    let mut done = 0;
    let mut ll = 0.0;
    let mut buf = Vec::with_capacity(k);
    let mut probs = probs;
    for i in 0..y.len() {
        while done < matured[i].min(i) {
            hedge_update(&mut losses, discount, &z[done * m * k..(done + 1) * m * k], k, y[done] as usize);
            done += 1;
        }
        buf.clear();
        mix(&hedge_weights(eta, &losses), &z[i * m * k..(i + 1) * m * k], k, &mut buf);
        ll -= (buf[y[i] as usize] as f64).max(1e-12).ln();
        if let Some(p) = probs.as_deref_mut() {
            p.extend_from_slice(&buf);
        }
    }
    while done < y.len() {
        hedge_update(&mut losses, discount, &z[done * m * k..(done + 1) * m * k], k, y[done] as usize);
        done += 1;
    }
    (ll / y.len().max(1) as f64, losses)
}

/// One member of the ensemble document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    pub id: String,
    /// Target id the member predicts (its own label horizon).
    pub target: String,
    /// Model members: directory relative to the ensemble's, and the SHA-256 of its card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_sha256: Option<String>,
    /// Baseline members: the fitted baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// `ensemble.json` (= the card's `model`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleDoc {
    pub format: String,
    pub version: u64,
    pub members: Vec<MemberEntry>,
    pub meta: MetaLearner,
    /// How the meta-learner's inputs were made (folds, embargo, refit rule): for the record.
    pub stacking: serde_json::Value,
}

/// A member as loaded: an exported model through the caller's loader, or an inline baseline.
pub enum Member<M: ?Sized> {
    Model(Box<M>),
    Baseline(BaselinePredictor),
}

fn member_predict<M: ?Sized + Predictor>(m: &Member<M>, b: &Batch<'_>, out: &mut Outputs) -> Result<()> {
    match m {
        Member::Model(p) => p.predict(b, out),
        Member::Baseline(p) => p.predict(b, out),
    }
}

fn member_info<M: ?Sized + Predictor>(m: &Member<M>) -> &PredictorInfo {
    match m {
        Member::Model(p) => p.info(),
        Member::Baseline(p) => p.info(),
    }
}

/// The ensemble as a [`Predictor`]: each member predicts the batch, the meta-learner combines.
/// `M` is the members' predictor type (`dyn Predictor + Send + Sync` in the server).
pub struct EnsemblePredictor<M: ?Sized = dyn Predictor + Send + Sync> {
    members: Vec<Member<M>>,
    meta: MetaLearner,
    info: PredictorInfo,
}

impl<M: ?Sized + Predictor> EnsemblePredictor<M> {
    /// Members (in the document's order) and a meta-learner, checked against each other.
    pub fn new(members: Vec<Member<M>>, meta: MetaLearner, classes: &[String], window: usize, features: usize) -> Result<Self> {
        let k = classes.len();
        meta.check(members.len(), k).map_err(|r| ContractError::Invalid(format!("ensemble meta-learner: {r}")))?;
        let mut info = PredictorInfo::classifier("ensemble", classes, window, features);
        for m in &members {
            let mi = member_info(m);
            if mi.classes.len() != k || mi.window != window || mi.features != features {
                return Err(ContractError::Invalid(format!(
                    "ensemble member {}: {} classes over {}×{} inputs, the ensemble has {k} over {window}×{features}",
                    mi.name,
                    mi.classes.len(),
                    mi.window,
                    mi.features
                )));
            }
            info.needs_window_ofi |= mi.needs_window_ofi;
        }
        Ok(EnsemblePredictor { members, meta, info })
    }

    pub fn meta(&self) -> &MetaLearner {
        &self.meta
    }

    /// The members' probabilities `[batch × m × k]` for `b`.
    pub fn member_probs(&self, b: &Batch<'_>) -> Result<Vec<f32>> {
        let mut z = Vec::new();
        self.member_probs_into(b, &mut z, &mut Outputs::new(self.info.classes.len()))?;
        Ok(z)
    }

    /// [`EnsemblePredictor::member_probs`] into `z`, with `o` the members' output buffer: both
    /// are reused, so once they have grown to the batch size nothing here allocates.
    pub fn member_probs_into(&self, b: &Batch<'_>, z: &mut Vec<f32>, o: &mut Outputs) -> Result<()> {
        let k = self.info.classes.len();
        let m = self.members.len();
        z.clear();
        z.resize(b.batch * m * k, 0.0);
        o.classes = k;
        for (j, mem) in self.members.iter().enumerate() {
            o.clear();
            member_predict(mem, b, o)?;
            if o.probs.len() != b.batch * k {
                return Err(ContractError::Invalid(format!(
                    "ensemble member {} gave {} probabilities for {} windows of {k} classes",
                    member_info(mem).name,
                    o.probs.len(),
                    b.batch
                )));
            }
            for w in 0..b.batch {
                z[(w * m + j) * k..(w * m + j + 1) * k].copy_from_slice(&o.probs[w * k..(w + 1) * k]);
            }
        }
        Ok(())
    }

    /// The ensemble's outputs for `b` with the meta-learner `meta` instead of its own (stream
    /// mode keeps one Hedge state per stream; members are shared). Reuses a per-thread scratch.
    pub fn predict_with(&self, meta: &MetaLearner, b: &Batch<'_>, out: &mut Outputs) -> Result<()> {
        self.info.check(b)?;
        let k = self.info.classes.len();
        let m = self.members.len();
        meta.check(m, k).map_err(|r| ContractError::Invalid(format!("ensemble meta-learner: {r}")))?;
        with_scratch(|z, o| {
            self.member_probs_into(b, z, o)?;
            for row in z.chunks(m * k) {
                meta.combine(row, k, &mut out.probs);
            }
            Ok(())
        })
    }

    /// Absorbs matured labels into `meta` (Hedge only; the other meta-learners refuse).
    pub fn update_meta(&self, meta: &mut MetaLearner, b: &Batch<'_>, labels: &Matured<'_>) -> Result<()> {
        self.info.check(b)?;
        if labels.classes.len() != b.batch {
            return Err(ContractError::input("classes", format!("{} labels for {} windows", labels.classes.len(), b.batch)));
        }
        let k = self.info.classes.len();
        if let Some(&c) = labels.classes.iter().find(|&&c| c as usize >= k) {
            return Err(ContractError::input("classes", format!("class {c} of {k}")));
        }
        let MetaLearner::Hedge { discount, losses, .. } = meta else {
            return Err(ContractError::Invalid(format!("the {} meta-learner does not learn online (use meta = \"hedge\")", meta.name())));
        };
        let m = self.members.len();
        with_scratch(|z, o| {
            self.member_probs_into(b, z, o)?;
            for (row, &c) in z.chunks(m * k).zip(labels.classes) {
                hedge_update(losses, *discount, row, k, c as usize);
            }
            Ok(())
        })
    }
}

thread_local! {
    /// The members' probabilities and outputs of the ensemble calls on this thread (members are
    /// never ensembles, so the calls do not nest; if they did, a fresh scratch is used).
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Outputs)> = std::cell::RefCell::new((Vec::new(), Outputs::new(0)));
}

fn with_scratch<T>(f: impl FnOnce(&mut Vec<f32>, &mut Outputs) -> Result<T>) -> Result<T> {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut g) => {
            let (z, o) = &mut *g;
            f(z, o)
        }
        Err(_) => f(&mut Vec::new(), &mut Outputs::new(0)),
    })
}

impl<M: ?Sized + Predictor> Predictor for EnsemblePredictor<M> {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }
    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> Result<()> {
        self.predict_with(&self.meta, b, out)
    }
}

/// Hedge learns online: each matured label updates the members' discounted losses. The other
/// meta-learners are fitted once and refuse.
impl<M: ?Sized + Predictor> OnlinePredictor for EnsemblePredictor<M> {
    fn update(&mut self, b: &Batch<'_>, labels: &Matured<'_>) -> Result<()> {
        // The meta state is taken out for the call (members are read, the meta is written).
        let mut meta = std::mem::replace(&mut self.meta, MetaLearner::WeightedAverage { weights: Vec::new() });
        let r = self.update_meta(&mut meta, b, labels);
        self.meta = meta;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of two members: member 0 is right (0.8 on the true class), member 1 is noise.
    fn rows(n: usize) -> (Vec<f32>, Vec<u8>) {
        let (mut z, mut y) = (Vec::new(), Vec::new());
        for i in 0..n {
            let c = (i * 7 % 3) as u8;
            for j in 0..3u8 {
                z.push(if j == c { 0.8 } else { 0.1 });
            }
            z.extend_from_slice(&[0.34, 0.33, 0.33]);
            y.push(c);
        }
        (z, y)
    }

    fn ll(meta: &MetaLearner, z: &[f32], y: &[u8]) -> f64 {
        let mut p = Vec::new();
        for row in z.chunks(6) {
            meta.combine(row, 3, &mut p);
        }
        y.iter().enumerate().map(|(i, &c)| -(p[i * 3 + c as usize] as f64).ln()).sum::<f64>() / y.len() as f64
    }

    #[test]
    fn fits_prefer_the_informative_member() {
        let (z, y) = rows(300);
        let w = fit_weighted_average(&z, &y, 2, 3, None);
        assert!(w[0] > 0.95 && (w[0] + w[1] - 1.0).abs() < 1e-9, "{w:?}");
        let wa = MetaLearner::WeightedAverage { weights: w };
        let uniform = MetaLearner::WeightedAverage { weights: vec![0.5, 0.5] };
        assert!(ll(&wa, &z, &y) < ll(&uniform, &z, &y));
        let lg = MetaLearner::Logistic { coef: fit_logistic(&z, &y, 2, 3, 1e-4, None), l2: 1e-4 };
        lg.check(2, 3).unwrap();
        assert!(ll(&lg, &z, &y) < ll(&wa, &z, &y) + 0.05, "{} vs {}", ll(&lg, &z, &y), ll(&wa, &z, &y));
        // Hedge: weights move to member 0 as labels mature.
        let matured: Vec<usize> = (0..300usize).map(|i| i.saturating_sub(5)).collect();
        let (pre, losses) = hedge_prequential(&z, &y, &matured, (2, 3), (1.0, 0.99), &[0.0, 0.0], None);
        assert!(losses[0] < losses[1] && pre < ll(&uniform, &z, &y), "{losses:?} {pre}");
        assert!(hedge_weights(1.0, &losses)[0] > 0.99);
    }

    #[test]
    fn bad_meta_parameters_name_the_field() {
        let e = MetaLearner::WeightedAverage { weights: vec![0.7, 0.7] }.check(2, 3).unwrap_err();
        assert!(e.contains("sum"), "{e}");
        let e = MetaLearner::Logistic { coef: vec![0.0; 5], l2: 0.0 }.check(2, 3).unwrap_err();
        assert!(e.contains("coef"), "{e}");
        let e = MetaLearner::Hedge { eta: 1.0, discount: 1.5, losses: vec![0.0; 2] }.check(2, 3).unwrap_err();
        assert!(e.contains("discount"), "{e}");
    }

    /// A hand-written 3-class meta model over 2 members × 3 classes (6 features): class c's
    /// tree splits member 0's p(c) (feature c) at 0.5 — leaf 1 above, 0 below.
    fn meta_model(features: usize) -> GbdtModel {
        let mut s = format!(
            "tree\nversion=v4\nnum_class=3\nnum_tree_per_iteration=3\nlabel_index=0\nmax_feature_idx={}\nobjective=multiclass num_class:3\n\n",
            features - 1
        );
        for c in 0..3 {
            s += &format!(
                "Tree={c}\nnum_leaves=2\nnum_cat=0\nsplit_feature={c}\nthreshold=0.5\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=0 1\nshrinkage=1\n\n"
            );
        }
        s += "end of trees\n";
        GbdtModel::parse(&s, std::path::Path::new("meta.txt")).unwrap()
    }

    fn lgb_meta(model: Option<GbdtModel>) -> MetaLearner {
        MetaLearner::Lightgbm {
            file: META_LIGHTGBM_FILE.into(),
            sha256: "0".repeat(64),
            iterations: 1,
            params: serde_json::json!({}),
            model: model.map(Arc::new),
        }
    }

    #[test]
    fn lightgbm_meta_is_checked_and_evaluated() {
        let meta = lgb_meta(Some(meta_model(6)));
        meta.check(2, 3).unwrap();
        assert!(meta.check(3, 3).unwrap_err().contains("reads 6 features"), "{:?}", meta.check(3, 3));
        assert!(meta.check(2, 2).unwrap_err().contains("objective"));
        assert!(lgb_meta(None).check(2, 3).unwrap_err().contains("not loaded"));
        assert!(lgb_meta(Some(meta_model(7))).check(2, 3).unwrap_err().contains("7 features"));
        let mut bad = lgb_meta(Some(meta_model(6)));
        if let MetaLearner::Lightgbm { file, .. } = &mut bad {
            *file = "../x.txt".into();
        }
        assert!(bad.check(2, 3).unwrap_err().contains("plain file name"));
        // Member 0 says "up" (p = 0.8): softmax(0, 0, 1); member 1 is not read.
        let mut out = Vec::new();
        meta.combine(&[0.1, 0.1, 0.8, 0.9, 0.05, 0.05], 3, &mut out);
        let e = 1f64.exp();
        let want = [1.0 / (2.0 + e), 1.0 / (2.0 + e), e / (2.0 + e)];
        assert!(out.iter().zip(want).all(|(&a, b)| (a as f64 - b).abs() < 1e-6), "{out:?}");
        // The document keeps the file's name and hash, never the parsed model.
        let v = serde_json::to_value(&meta).unwrap();
        assert_eq!(v["kind"], "lightgbm");
        assert!(v.get("model").is_none(), "{v}");
        let back: MetaLearner = serde_json::from_value(v).unwrap();
        assert!(matches!(back, MetaLearner::Lightgbm { model: None, .. }));
    }

    #[test]
    fn online_hedge_updates_only_hedge() {
        use crate::baselines::Majority;
        let classes: Vec<String> = ["down", "flat", "up"].iter().map(|s| s.to_string()).collect();
        let good = Baseline::Majority(Majority { class: 2, frequencies: vec![0.1, 0.1, 0.8] });
        let bad = Baseline::Majority(Majority { class: 0, frequencies: vec![0.8, 0.1, 0.1] });
        let mk = |meta| {
            let ms: Vec<Member<dyn Predictor>> =
                vec![Member::Baseline(good.predictor(&classes, 1, 2)), Member::Baseline(bad.predictor(&classes, 1, 2))];
            EnsemblePredictor::new(ms, meta, &classes, 1, 2).unwrap()
        };
        let mut e = mk(MetaLearner::Hedge { eta: 1.0, discount: 1.0, losses: vec![0.0, 0.0] });
        let x = vec![0.0f32; 4 * 2];
        let b = Batch::new(&x, 4, 1, 2).unwrap();
        let mut o = Outputs::new(3);
        e.predict(&b, &mut o).unwrap();
        assert!((o.probs[2] - 0.45).abs() < 1e-6, "{:?}", o.probs);
        e.update(&b, &Matured { classes: &[2, 2, 2, 2], values: &[] }).unwrap();
        o.clear();
        e.predict(&b, &mut o).unwrap();
        assert!(o.probs[2] > 0.79, "{:?}", o.probs);
        let mut w = mk(MetaLearner::WeightedAverage { weights: vec![0.5, 0.5] });
        assert!(w.update(&b, &Matured { classes: &[2, 2, 2, 2], values: &[] }).unwrap_err().to_string().contains("hedge"));
    }

    /// The hot path reuses its buffers: once warm, neither `predict` (every meta-learner) nor a
    /// Hedge `update` allocates (counted by the test binary's allocator, per thread); a
    /// per-stream meta state gives the same outputs as the ensemble's own.
    #[test]
    fn predict_and_update_reuse_their_buffers() {
        use crate::baselines::Majority;
        use crate::bayes::tests::alloc_count::count;
        let classes: Vec<String> = ["down", "flat", "up"].iter().map(|s| s.to_string()).collect();
        let a = Baseline::Majority(Majority { class: 2, frequencies: vec![0.1, 0.1, 0.8] });
        let c = Baseline::Majority(Majority { class: 0, frequencies: vec![0.8, 0.1, 0.1] });
        let x = vec![0.0f32; 64 * 2];
        let b = Batch::new(&x, 64, 1, 2).unwrap();
        let labels = vec![2u8; 64];
        for meta in [
            MetaLearner::Hedge { eta: 1.0, discount: 0.99, losses: vec![0.0, 0.0] },
            MetaLearner::WeightedAverage { weights: vec![0.3, 0.7] },
            MetaLearner::Logistic { coef: vec![0.1; 3 * 7], l2: 0.0 },
        ] {
            let ms: Vec<Member<dyn Predictor>> =
                vec![Member::Baseline(a.predictor(&classes, 1, 2)), Member::Baseline(c.predictor(&classes, 1, 2))];
            let mut e = EnsemblePredictor::new(ms, meta.clone(), &classes, 1, 2).unwrap();
            let mut o = Outputs::new(3);
            o.probs.reserve(64 * 3);
            e.predict(&b, &mut o).unwrap(); // warm-up: the scratch grows
            let hedge = matches!(meta, MetaLearner::Hedge { .. });
            if hedge {
                e.update(&b, &Matured { classes: &labels, values: &[] }).unwrap();
            }
            let before = count();
            for _ in 0..10 {
                o.clear();
                e.predict(&b, &mut o).unwrap();
                if hedge {
                    e.update(&b, &Matured { classes: &labels, values: &[] }).unwrap();
                }
            }
            assert_eq!(count(), before, "{} allocated on a warm path", meta.name());
            // Outside state: the same outputs as the ensemble's own meta.
            let mut mine = e.meta().clone();
            let mut p = Outputs::new(3);
            e.predict_with(&mine, &b, &mut p).unwrap();
            o.clear();
            e.predict(&b, &mut o).unwrap();
            assert_eq!(p, o);
            if hedge {
                e.update_meta(&mut mine, &b, &Matured { classes: &labels, values: &[] }).unwrap();
                e.update(&b, &Matured { classes: &labels, values: &[] }).unwrap();
                assert_eq!(&mine, e.meta());
            }
        }
    }
}
