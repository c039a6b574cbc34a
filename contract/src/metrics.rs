//! Classification metrics for k-class forecasts, defined as scikit-learn defines them (checked
//! against scikit-learn on a fixed vector in `contract/tests/metrics_sklearn.rs`; formulas in
//! docs/metrics.md).
//!
//! Inputs: true classes `y` (0..k) and, per sample, k class probabilities (row-major). The hard
//! prediction is the arg-max, the first maximum on ties (numpy's `argmax`).

use serde::{Deserialize, Serialize};

/// Every metric of one evaluation. Undefined values (a ROC-AUC for a class absent from `y`) are
/// `None` and the macro averages skip them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub samples: usize,
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 over all k classes.
    pub macro_f1: f64,
    /// Matthews correlation coefficient, multiclass form (Gorodkin 2004).
    pub mcc: f64,
    pub cohen_kappa: f64,
    /// Per class (index = class): precision, recall, F1 (0 where the denominator is 0, as
    /// scikit-learn's `zero_division=0`) and support (true count).
    pub per_class: Vec<ClassMetrics>,
    /// Mean of the defined one-vs-rest ROC-AUCs.
    pub roc_auc_macro: Option<f64>,
    /// Mean of the defined one-vs-rest average precisions (PR-AUC).
    pub pr_auc_macro: Option<f64>,
    /// `confusion[true][pred]` counts.
    pub confusion: Vec<Vec<u64>>,
    /// Mean cross-entropy −ln p(true class), probabilities clamped at 1e-12; `None` when the
    /// scores are not probabilities (hard baselines still give one-hot probabilities).
    pub log_loss: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
    /// One-vs-rest ROC-AUC of this class's probability; `None` if the class is always or never true.
    pub roc_auc: Option<f64>,
    /// One-vs-rest average precision (area under the step PR curve); `None` if never true.
    pub pr_auc: Option<f64>,
}

/// Index of the first maximum of `row` (NaN never wins).
#[inline]
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] || (row[best].is_nan() && !v.is_nan()) {
            best = j;
        }
    }
    best
}

impl Metrics {
    /// Metrics of probabilities `probs` (`y.len() × k`, row-major) against `y`.
    ///
    /// Panics if the lengths disagree or a class is out of range (a programming error: callers
    /// build both from the same windows).
    pub fn compute(y: &[usize], probs: &[f32], k: usize) -> Metrics {
        let n = y.len();
        assert!(k >= 2, "metrics need at least 2 classes");
        assert_eq!(probs.len(), n * k, "probabilities are not {n} × {k}");
        let mut confusion = vec![vec![0u64; k]; k];
        let mut ll = 0.0f64;
        let mut ll_ok = true;
        for (i, &t) in y.iter().enumerate() {
            assert!(t < k, "class {t} out of range 0..{k}");
            let row = &probs[i * k..(i + 1) * k];
            confusion[t][argmax(row)] += 1;
            let p = row[t] as f64;
            if !(0.0..=1.0 + 1e-6).contains(&p) {
                ll_ok = false;
            }
            ll -= p.clamp(1e-12, 1.0).ln();
        }
        let log_loss = (ll_ok && n > 0).then(|| ll / n as f64);
        let (accuracy, macro_f1, mcc, cohen_kappa, mut per_class) = from_confusion(&confusion);
        let mut scores = Vec::with_capacity(n);
        for (c, m) in per_class.iter_mut().enumerate() {
            scores.clear();
            scores.extend(y.iter().enumerate().map(|(i, &t)| (probs[i * k + c], t == c)));
            let (auc, ap) = binary_auc_ap(&mut scores);
            m.roc_auc = auc;
            m.pr_auc = ap;
        }
        let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let roc_auc_macro = mean(per_class.iter().filter_map(|m| m.roc_auc).collect());
        let pr_auc_macro = mean(per_class.iter().filter_map(|m| m.pr_auc).collect());
        Metrics { samples: n, accuracy, macro_f1, mcc, cohen_kappa, per_class, roc_auc_macro, pr_auc_macro, confusion, log_loss }
    }

    /// Metrics of hard predictions (one-hot probabilities: AUCs then measure the hard rule).
    pub fn from_predictions(y: &[usize], pred: &[usize], k: usize) -> Metrics {
        let mut probs = vec![0.0f32; y.len() * k];
        for (i, &p) in pred.iter().enumerate() {
            probs[i * k + p] = 1.0;
        }
        Metrics::compute(y, &probs, k)
    }

    /// The headline numbers as a flat JSON object (what `--json` and the summary table show).
    pub fn headline(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "mcc": self.mcc,
            "cohen_kappa": self.cohen_kappa,
            "roc_auc_macro": self.roc_auc_macro,
            "pr_auc_macro": self.pr_auc_macro,
        })
    }
}

/// Scores of a regression output (`Outputs::regression`) against the targets, both in bps:
/// RMSE, MAE, Pearson correlation and R².
pub fn regression_metrics(y: &[f32], p: &[f32]) -> serde_json::Value {
    let n = y.len().min(p.len());
    if n == 0 {
        return serde_json::json!({"samples": 0});
    }
    let (mut se, mut ae, mut sy, mut sp) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        let d = p[i] as f64 - y[i] as f64;
        se += d * d;
        ae += d.abs();
        sy += y[i] as f64;
        sp += p[i] as f64;
    }
    let (my, mp) = (sy / n as f64, sp / n as f64);
    let (mut cov, mut vy, mut vp) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (a, b) = (y[i] as f64 - my, p[i] as f64 - mp);
        cov += a * b;
        vy += a * a;
        vp += b * b;
    }
    let corr = if vy > 0.0 && vp > 0.0 { Some(cov / (vy * vp).sqrt()) } else { None };
    serde_json::json!({"samples": n, "rmse_bps": (se / n as f64).sqrt(), "mae_bps": ae / n as f64, "corr": corr,
           "r2": if vy > 0.0 { Some(1.0 - se / vy) } else { None }})
}

type Summary = (f64, f64, f64, f64, Vec<ClassMetrics>);

/// Accuracy, macro-F1, MCC, kappa and per-class precision/recall/F1 from a confusion matrix.
fn from_confusion(cm: &[Vec<u64>]) -> Summary {
    let k = cm.len();
    let n: f64 = cm.iter().flatten().map(|&v| v as f64).sum();
    let t: Vec<f64> = (0..k).map(|i| cm[i].iter().sum::<u64>() as f64).collect(); // true counts
    let p: Vec<f64> = (0..k).map(|j| (0..k).map(|i| cm[i][j]).sum::<u64>() as f64).collect(); // predicted counts
    let correct: f64 = (0..k).map(|i| cm[i][i] as f64).sum();
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = cm[c][c] as f64;
            let precision = div(tp, p[c]);
            let recall = div(tp, t[c]);
            ClassMetrics { precision, recall, f1: div(2.0 * tp, p[c] + t[c]), support: t[c] as u64, roc_auc: None, pr_auc: None }
        })
        .collect();
    let accuracy = div(correct, n);
    let macro_f1 = per_class.iter().map(|m| m.f1).sum::<f64>() / k as f64;
    // MCC = (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²)), 0 when a factor is 0 (sklearn).
    let pt: f64 = (0..k).map(|i| p[i] * t[i]).sum();
    let pp: f64 = p.iter().map(|v| v * v).sum();
    let tt: f64 = t.iter().map(|v| v * v).sum();
    let denom = ((n * n - pp) * (n * n - tt)).sqrt();
    let mcc = if denom > 0.0 { (correct * n - pt) / denom } else { 0.0 };
    // κ = (p_o − p_e) / (1 − p_e), p_e = Σ t_k p_k / n².
    let pe = if n > 0.0 { pt / (n * n) } else { 0.0 };
    let cohen_kappa = if pe < 1.0 { (accuracy - pe) / (1.0 - pe) } else { 0.0 };
    (accuracy, macro_f1, mcc, cohen_kappa, per_class)
}

/// One-vs-rest ROC-AUC and average precision of `(score, positive)` pairs (sorted in place).
///
/// ROC-AUC: the trapezoidal area under the ROC curve over distinct thresholds, which equals the
/// Mann–Whitney probability P(score⁺ > score⁻) + ½ P(tie). Average precision: Σ_n (R_n − R_{n−1}) P_n
/// over distinct thresholds from the highest score down (scikit-learn's step form, no
/// interpolation).
pub fn binary_auc_ap(scores: &mut [(f32, bool)]) -> (Option<f64>, Option<f64>) {
    let pos = scores.iter().filter(|s| s.1).count() as f64;
    let neg = scores.len() as f64 - pos;
    if pos == 0.0 {
        return (None, None);
    }
    scores.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let (mut auc, mut ap) = (0.0f64, 0.0f64);
    let mut i = 0;
    while i < scores.len() {
        // All samples tied at this score move the curve together.
        let s = scores[i].0;
        let (tp0, fp0) = (tp, fp);
        while i < scores.len() && scores[i].0.total_cmp(&s).is_eq() {
            if scores[i].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        auc += (fp - fp0) * (tp + tp0) / 2.0;
        ap += (tp - tp0) / pos * (tp / (tp + fp));
    }
    let auc = (neg > 0.0).then(|| auc / (pos * neg));
    (auc, Some(ap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_constant_predictions() {
        let y = [0, 1, 2, 1, 0];
        let m = Metrics::from_predictions(&y, &y, 3);
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.macro_f1, 1.0);
        assert!((m.mcc - 1.0).abs() < 1e-12 && (m.cohen_kappa - 1.0).abs() < 1e-12);
        assert_eq!(m.roc_auc_macro, Some(1.0));
        // A constant prediction has no correlation with the truth.
        let m = Metrics::from_predictions(&y, &[1; 5], 3);
        assert_eq!(m.mcc, 0.0);
        assert_eq!(m.cohen_kappa, 0.0);
        assert_eq!(m.per_class[0].precision, 0.0);
        assert_eq!(m.per_class[1].recall, 1.0);
    }

    #[test]
    fn argmax_takes_first_maximum() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.1, 0.0]), 1);
    }

    #[test]
    fn absent_class_has_no_auc() {
        let m = Metrics::compute(&[0, 1, 0], &[0.6, 0.3, 0.1, 0.2, 0.7, 0.1, 0.9, 0.05, 0.05], 3);
        assert_eq!(m.per_class[2].roc_auc, None);
        assert_eq!(m.per_class[2].pr_auc, None);
        assert_eq!(m.roc_auc_macro, Some(1.0));
    }
}
