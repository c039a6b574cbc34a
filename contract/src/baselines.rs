//! Baselines: ordinary predictors in a small registry by name ([`BASELINES`], [`fit`]), fitted
//! on the training windows only, scored on the same windows as every model, and stored in each
//! card so `eval` applies them unchanged. The two floors every report shows:
//! - `majority`: always the most frequent training class; its probabilities are the training
//!   class frequencies (constant scores, so its ROC-AUC is 0.5).
//! - `ofi_logistic`: multinomial logistic regression on one input, the best-level order-flow
//!   imbalance of Cont, Kukanov & Stoikov (2014) summed over the window's rows, standardised with
//!   training mean/std. Fitted by Newton's method (IRLS) on the full softmax with a small ridge
//!   (λ = 1e-4 per weight, which also pins the softmax's redundant degree of freedom), with the
//!   experiment's class weights (`[training] class_weights`) as sample weights, so the floor is
//!   trained for the same objective as the deep models (unweighted, on imbalanced labels it
//!   collapses to the majority class and its macro-F1 says nothing about OFI).

use crate::error::{ContractError, Result};
use crate::predictor::{Batch, Outputs, Predictor, PredictorInfo};
use crate::window::WindowSet;
use serde::{Deserialize, Serialize};

/// Names of the registry, in report order (the default set of every experiment).
pub const BASELINES: [&str; 2] = ["majority", "ofi_logistic"];

/// A fitted baseline, tagged by its registry name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Baseline {
    Majority(Majority),
    OfiLogistic(OfiLogistic),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Majority {
    pub class: usize,
    /// Training class frequencies (the constant probabilities).
    pub frequencies: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfiLogistic {
    pub mean: f64,
    pub std: f64,
    /// Per class (intercept, slope) on the standardised OFI.
    pub coef: Vec<[f64; 2]>,
    /// Class weights used as sample weights in the fit (none: unweighted).
    #[serde(default)]
    pub class_weights: Option<Vec<f64>>,
    pub iterations: usize,
    pub converged: bool,
}

impl Majority {
    pub fn fit(train: &WindowSet, k: usize) -> Majority {
        let counts = train.class_counts(k);
        let n = counts.iter().sum::<u64>().max(1) as f64;
        let frequencies: Vec<f64> = counts.iter().map(|&c| c as f64 / n).collect();
        // First maximum: ties go to the lower class index.
        let class = (0..k).fold(0, |b, c| if counts[c] > counts[b] { c } else { b });
        Majority { class, frequencies }
    }
    pub fn probs(&self, n: usize) -> Vec<f32> {
        let mut p = Vec::new();
        self.probs_into(n, &mut p);
        p
    }
    /// Appends the probabilities of `n` windows to `out` (no allocation beyond growing it).
    pub fn probs_into(&self, n: usize, out: &mut Vec<f32>) {
        for _ in 0..n {
            out.extend(self.frequencies.iter().map(|&f| f as f32));
        }
    }
}

fn softmax(z: &mut [f64]) {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = z
        .iter_mut()
        .map(|v| {
            *v = (*v - m).exp();
            *v
        })
        .sum();
    z.iter_mut().for_each(|v| *v /= s);
}

/// Solve `a x = b` (n×n, row-major) by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<f64>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))?;
        if a[piv * n + col].abs() < 1e-300 {
            return None;
        }
        for j in 0..n {
            a.swap(col * n + j, piv * n + j);
        }
        b.swap(col, piv);
        for i in col + 1..n {
            let f = a[i * n + col] / a[col * n + col];
            for j in col..n {
                a[i * n + j] -= f * a[col * n + j];
            }
            b[i] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| a[i * n + j] * x[j]).sum();
        x[i] = (b[i] - s) / a[i * n + i];
    }
    Some(x)
}

impl OfiLogistic {
    const RIDGE: f64 = 1e-4;

    /// Fit on `(ofi, class)` pairs of the training windows; each pair weighs `class_weights[y]`.
    pub fn fit(x: &[f64], y: &[u8], k: usize, class_weights: Option<&[f64]>) -> OfiLogistic {
        let sw = |c: u8| class_weights.map_or(1.0, |w| w[c as usize]);
        let n = y.iter().map(|&c| sw(c)).sum::<f64>().max(f64::MIN_POSITIVE);
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        let z: Vec<f64> = x.iter().map(|v| (v - mean) / std).collect();
        let d = 2 * k; // per class: intercept, slope
        let mut w = vec![0.0f64; d];
        let (mut iterations, mut converged) = (0, false);
        let mut p = vec![0.0f64; k];
        for it in 1..=50 {
            iterations = it;
            let mut g = vec![0.0f64; d];
            let mut h = vec![0.0f64; d * d];
            for (&zi, &yi) in z.iter().zip(y) {
                let f = [1.0, zi];
                let wi = sw(yi);
                for c in 0..k {
                    p[c] = w[2 * c] + w[2 * c + 1] * zi;
                }
                softmax(&mut p);
                for c in 0..k {
                    let r = wi * (p[c] - (yi as usize == c) as u8 as f64);
                    for a in 0..2 {
                        g[2 * c + a] += r * f[a];
                    }
                    for c2 in 0..k {
                        let s = wi * p[c] * ((c == c2) as u8 as f64 - p[c2]);
                        for a in 0..2 {
                            for b in 0..2 {
                                h[(2 * c + a) * d + 2 * c2 + b] += s * f[a] * f[b];
                            }
                        }
                    }
                }
            }
            for i in 0..d {
                g[i] += Self::RIDGE * n * w[i];
                h[i * d + i] += Self::RIDGE * n;
            }
            let Some(step) = solve(h, g) else { break };
            let mut max = 0.0f64;
            for i in 0..d {
                w[i] -= step[i];
                max = max.max(step[i].abs());
            }
            if max < 1e-10 {
                converged = true;
                break;
            }
        }
        OfiLogistic {
            mean,
            std,
            coef: (0..k).map(|c| [w[2 * c], w[2 * c + 1]]).collect(),
            class_weights: class_weights.map(|w| w.to_vec()),
            iterations,
            converged,
        }
    }

    pub fn probs(&self, x: &[f64]) -> Vec<f32> {
        let mut out = Vec::with_capacity(x.len() * self.coef.len());
        self.probs_into(x, &mut out);
        out
    }
    /// Appends the probabilities of the windows with OFI sums `x` to `out` (no allocation
    /// beyond growing it for up to 16 classes).
    pub fn probs_into(&self, x: &[f64], out: &mut Vec<f32>) {
        let k = self.coef.len();
        let mut stack = [0.0f64; 16];
        let mut heap = Vec::new();
        let p: &mut [f64] = if k <= 16 {
            &mut stack[..k]
        } else {
            heap.resize(k, 0.0);
            &mut heap
        };
        for &v in x {
            let z = (v - self.mean) / self.std;
            for (c, w) in self.coef.iter().enumerate() {
                p[c] = w[0] + w[1] * z;
            }
            softmax(p);
            out.extend(p.iter().map(|&q| q as f32));
        }
    }
}

/// The baseline input of each window of `set`: the OFI sum at its end row.
pub fn window_inputs(set: &WindowSet, window_ofi: &[f64]) -> Vec<f64> {
    set.ends.iter().map(|&e| window_ofi[e as usize]).collect()
}

/// Fits the baseline `name` on the training windows; `class_weights` (the experiment's, see
/// `[training] class_weights`) weigh the logistic fit.
pub fn fit(name: &str, train: &WindowSet, window_ofi: &[f64], k: usize, class_weights: Option<&[f32]>) -> Result<Baseline> {
    match name {
        "majority" => Ok(Baseline::Majority(Majority::fit(train, k))),
        "ofi_logistic" => {
            let cw: Option<Vec<f64>> = class_weights.map(|w| w.iter().map(|&v| v as f64).collect());
            Ok(Baseline::OfiLogistic(OfiLogistic::fit(&window_inputs(train, window_ofi), &train.labels, k, cw.as_deref())))
        }
        other => Err(ContractError::Invalid(format!("unknown baseline {other:?} (known: {})", BASELINES.join(", ")))),
    }
}

impl Baseline {
    pub fn name(&self) -> &'static str {
        match self {
            Baseline::Majority(_) => "majority",
            Baseline::OfiLogistic(_) => "ofi_logistic",
        }
    }
    /// Classes it was fitted for.
    pub fn n_classes(&self) -> usize {
        match self {
            Baseline::Majority(m) => m.frequencies.len(),
            Baseline::OfiLogistic(m) => m.coef.len(),
        }
    }
    /// The baseline as a [`Predictor`] over windows of `window × features` with the card's classes.
    pub fn predictor(&self, classes: &[String], window: usize, features: usize) -> BaselinePredictor {
        let mut info = PredictorInfo::classifier(self.name(), classes, window, features);
        info.needs_window_ofi = matches!(self, Baseline::OfiLogistic(_));
        BaselinePredictor { baseline: self.clone(), info }
    }
}

/// A fitted baseline with the shape of the inputs it is served beside.
#[derive(Clone, Debug)]
pub struct BaselinePredictor {
    pub baseline: Baseline,
    info: PredictorInfo,
}

impl Predictor for BaselinePredictor {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }
    fn predict(&self, batch: &Batch<'_>, out: &mut Outputs) -> Result<()> {
        self.info.check(batch)?;
        match &self.baseline {
            Baseline::Majority(m) => m.probs_into(batch.batch, &mut out.probs),
            Baseline::OfiLogistic(m) => m.probs_into(batch.window_ofi.expect("checked"), &mut out.probs),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_recovers_a_monotone_relation() {
        // Class 2 (up) when x is high, 0 when low, 1 in between: the fit must order them.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..300 {
            let v = (i as f64 - 150.0) / 10.0;
            x.push(v);
            y.push(if v < -5.0 {
                0
            } else if v > 5.0 {
                2
            } else {
                1
            });
        }
        let m = OfiLogistic::fit(&x, &y, 3, None);
        assert!(m.converged, "{m:?}");
        assert!(m.coef[2][1] > m.coef[1][1] && m.coef[1][1] > m.coef[0][1], "{m:?}");
        let p = m.probs(&[-14.0, 0.0, 14.0]);
        assert_eq!(crate::metrics::argmax(&p[0..3]), 0);
        assert_eq!(crate::metrics::argmax(&p[3..6]), 1);
        assert_eq!(crate::metrics::argmax(&p[6..9]), 2);
        let acc = crate::metrics::Metrics::compute(&y.iter().map(|&c| c as usize).collect::<Vec<_>>(), &m.probs(&x), 3).accuracy;
        assert!(acc > 0.95, "{acc}");
    }

    #[test]
    fn class_weights_are_sample_weights() {
        // 90% stationary with a weak OFI signal: unweighted, the fit never leaves the majority
        // class; balanced weights make it call up/down at extreme OFI.
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..1000u32 {
            let v = ((i * 7919) % 1000) as f64 / 500.0 - 1.0;
            let c = if i % 10 == 0 {
                if v > 0.0 {
                    2
                } else {
                    0
                }
            } else {
                1
            };
            x.push(v);
            y.push(c);
        }
        let plain = OfiLogistic::fit(&x, &y, 3, None);
        let calls = |m: &OfiLogistic| m.probs(&x).chunks(3).filter(|p| crate::metrics::argmax(p) != 1).count();
        assert_eq!(calls(&plain), 0);
        let w = [1000.0 / (3.0 * 50.0), 1000.0 / (3.0 * 900.0), 1000.0 / (3.0 * 50.0)];
        let weighted = OfiLogistic::fit(&x, &y, 3, Some(&w));
        assert!(weighted.converged, "{weighted:?}");
        assert!(calls(&weighted) > 100, "{}", calls(&weighted));
        // Integer weights equal duplicated samples: weight 2 on class 0 == class-0 rows twice.
        let w2 = [2.0, 1.0, 1.0];
        let a = OfiLogistic::fit(&x, &y, 3, Some(&w2));
        let (mut xd, mut yd) = (x.clone(), y.clone());
        for (&v, &c) in x.iter().zip(&y) {
            if c == 0 {
                xd.push(v);
                yd.push(0);
            }
        }
        let b = OfiLogistic::fit(&xd, &yd, 3, None);
        let z = |m: &OfiLogistic| m.probs(&[-0.9, 0.0, 0.9]);
        // Same likelihood; only the tiny ridge acts on differently standardised inputs.
        for (p, q) in z(&a).iter().zip(z(&b)) {
            assert!((p - q).abs() < 1e-3, "{:?} vs {:?}", z(&a), z(&b));
        }
    }

    #[test]
    fn solve_small_system() {
        let x = solve(vec![2.0, 1.0, 1.0, 3.0], vec![3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
    }
}
