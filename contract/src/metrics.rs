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
    /// Multiclass Brier score (Brier 1950): mean over samples of Σ_c (p_c − 1[y = c])², in
    /// [0, 2]; `None` when the scores are not probabilities.
    #[serde(default)]
    pub brier: Option<f64>,
    /// Expected calibration error of the top-label confidence over [`CALIBRATION_BINS`]
    /// equal-width bins (Naeini, Cooper & Hauskrecht 2015; Guo et al. 2017, eq. 3):
    /// Σ_b (|B_b|/n)·|acc(B_b) − conf(B_b)|; `None` when the scores are not probabilities.
    #[serde(default)]
    pub ece: Option<f64>,
    /// The reliability diagram behind `ece`: one entry per bin (empty bins included).
    #[serde(default)]
    pub reliability: Vec<ReliabilityBin>,
}

/// Bins of the expected calibration error and the reliability diagram (Guo et al. 2017 use 15).
pub const CALIBRATION_BINS: usize = 15;

/// One bin ((lower, upper] of top-label confidence; the first also holds 0) of a reliability
/// diagram: how many samples, their mean confidence and the fraction whose top class was right.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean max-probability of the bin's samples (`None` when empty).
    pub confidence: Option<f64>,
    /// Fraction of the bin's samples whose arg-max is the true class (`None` when empty).
    pub accuracy: Option<f64>,
}

/// Brier score, ECE and reliability bins of `probs` (`y.len() × k`) against `y`, with `bins`
/// equal-width confidence bins. Empty `y` gives `(0, 0, empty bins)`.
pub fn calibration(y: &[usize], probs: &[f32], k: usize, bins: usize) -> (f64, f64, Vec<ReliabilityBin>) {
    let n = y.len();
    let mut brier = 0.0f64;
    let (mut cnt, mut conf, mut hit) = (vec![0u64; bins], vec![0.0f64; bins], vec![0u64; bins]);
    for (i, &t) in y.iter().enumerate() {
        let row = &probs[i * k..(i + 1) * k];
        for (c, &p) in row.iter().enumerate() {
            let d = p as f64 - (c == t) as u8 as f64;
            brier += d * d;
        }
        let top = argmax(row);
        let p = (row[top] as f64).clamp(0.0, 1.0);
        // Bin b holds ((b)/M, (b + 1)/M]: ⌈p·M⌉ − 1, with p = 0 in the first.
        let b = ((p * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        cnt[b] += 1;
        conf[b] += p;
        hit[b] += (top == t) as u64;
    }
    let mut ece = 0.0;
    let rel = (0..bins)
        .map(|b| {
            let c = cnt[b];
            let (mc, ma) = if c > 0 { (Some(conf[b] / c as f64), Some(hit[b] as f64 / c as f64)) } else { (None, None) };
            if let (Some(mc), Some(ma)) = (mc, ma) {
                ece += c as f64 / n as f64 * (ma - mc).abs();
            }
            ReliabilityBin { lower: b as f64 / bins as f64, upper: (b + 1) as f64 / bins as f64, count: c, confidence: mc, accuracy: ma }
        })
        .collect();
    (if n > 0 { brier / n as f64 } else { 0.0 }, ece, rel)
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
        let (brier, ece, reliability) = if ll_ok && n > 0 {
            let (b, e, r) = calibration(y, probs, k, CALIBRATION_BINS);
            (Some(b), Some(e), r)
        } else {
            (None, None, Vec::new())
        };
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
        Metrics {
            samples: n,
            accuracy,
            macro_f1,
            mcc,
            cohen_kappa,
            per_class,
            roc_auc_macro,
            pr_auc_macro,
            confusion,
            log_loss,
            brier,
            ece,
            reliability,
        }
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
            "log_loss": self.log_loss,
            "brier": self.brier,
            "ece": self.ece,
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
    fn brier_ece_and_reliability_match_hand_computed_values() {
        // 4 samples, 2 classes, 2 bins ((0, .5], (.5, 1]).
        // rows: [.9,.1] y0 (top .9 right), [.6,.4] y1 (top .6 wrong), [.3,.7] y1 (top .7 right),
        //       [.5,.5] y0 (top class 0 by first max, .5, right).
        let y = [0, 1, 1, 0];
        let p = [0.9, 0.1, 0.6, 0.4, 0.3, 0.7, 0.5, 0.5];
        let (brier, ece, rel) = calibration(&y, &p, 2, 2);
        // Brier: (.01+.01) + (.36+.36) + (.09+.09) + (.25+.25) = 1.42 → 1.42 / 4 = 0.355.
        assert!((brier - 0.355).abs() < 1e-6, "{brier}");
        // Bin 0: {.5 right}: conf .5, acc 1. Bin 1: {.9 right, .6 wrong, .7 right}: conf 2.2/3, acc 2/3.
        assert_eq!((rel[0].count, rel[1].count), (1, 3));
        assert!((rel[1].confidence.unwrap() - 2.2 / 3.0).abs() < 1e-6 && (rel[1].accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // ECE = 1/4·|1 − .5| + 3/4·|2/3 − 2.2/3| = .125 + .05 = .175.
        assert!((ece - 0.175).abs() < 1e-6, "{ece}");
        // Metrics carries them with 15 bins; a perfect confident forecast has Brier 0 and ECE 0.
        let m = Metrics::compute(&[0, 1], &[1.0, 0.0, 0.0, 1.0], 2);
        assert_eq!((m.brier, m.ece, m.reliability.len()), (Some(0.0), Some(0.0), CALIBRATION_BINS));
        assert_eq!(m.reliability[CALIBRATION_BINS - 1].count, 2);
        // Uniform 1/3 over 3 classes: Brier = (2/3)² + 2·(1/3)² = 2/3; ECE = |acc − 1/3|.
        let m = Metrics::compute(&[0, 1, 2], &[1.0 / 3.0; 9], 3);
        assert!((m.brier.unwrap() - 2.0 / 3.0).abs() < 1e-6);
        assert!((m.ece.unwrap() - (1.0 / 3.0 - 1.0 / 3.0f32 as f64)).abs() < 1e-6, "{:?}", m.ece);
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
