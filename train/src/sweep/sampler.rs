//! Samplers: which parameters trial n gets. Grid (the Cartesian product, in order), seeded
//! random, and TPE (Bergstra et al. 2011). Each trial's random draws come from ChaCha8 seeded by
//! (sweep seed, trial number), so a trial's parameters do not depend on which worker asked.
//! Formulas: docs/sweeps.md.

use super::space::{Distribution, Params};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A finished trial as the samplers see it.
#[derive(Clone, Debug)]
pub struct Observation {
    pub params: Params,
    /// The objective as a loss (lower is better): the metric, negated when maximised.
    pub loss: f64,
    /// Stopped by the pruner: always counted among the bad trials.
    pub pruned: bool,
}

/// Chooses the parameters of trial `trial` given the finished trials.
pub trait Sampler {
    fn sample(&self, trial: usize, history: &[Observation]) -> Params;
}

/// The space: parameters in a fixed (name) order.
pub type Space = BTreeMap<String, Distribution>;

pub fn trial_rng(seed: u64, trial: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ (trial as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// One uniform draw of every parameter (in its internal coordinate).
pub fn sample_prior(space: &Space, rng: &mut impl Rng) -> Params {
    space
        .iter()
        .map(|(k, d)| {
            let (a, b) = d.internal_bounds();
            (k.clone(), d.from_internal(a + (b - a) * rng.random::<f64>()))
        })
        .collect()
}

/// Every combination, the last parameter (by name) varying fastest; trial n gets point n.
pub struct GridSampler {
    pub points: Vec<Params>,
}

impl GridSampler {
    pub fn new(space: &Space) -> Result<GridSampler, String> {
        let mut points = vec![Params::new()];
        for (k, d) in space {
            let vals = d.grid(k)?;
            points = points
                .into_iter()
                .flat_map(|p| vals.iter().map(move |v| (p.clone(), v)))
                .map(|(mut p, v)| {
                    p.insert(k.clone(), v.clone());
                    p
                })
                .collect();
        }
        Ok(GridSampler { points })
    }
}

impl Sampler for GridSampler {
    fn sample(&self, trial: usize, _: &[Observation]) -> Params {
        self.points[trial % self.points.len()].clone()
    }
}

pub struct RandomSampler {
    pub space: Space,
    pub seed: u64,
}

impl Sampler for RandomSampler {
    fn sample(&self, trial: usize, _: &[Observation]) -> Params {
        sample_prior(&self.space, &mut trial_rng(self.seed, trial))
    }
}

/// TPE settings (`[tpe]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpeConfig {
    /// Random trials before the model is used (and while fewer finished trials exist).
    #[serde(default = "startup")]
    pub startup_trials: usize,
    /// Share of the finished trials in the good group: n_good = ⌈γ·n⌉.
    #[serde(default = "gamma")]
    pub gamma: f64,
    /// Draws from l(x) per parameter; the one with the largest l(x)/g(x) is taken.
    #[serde(default = "candidates")]
    pub candidates: usize,
    /// Weight of the prior component of each Parzen estimator.
    #[serde(default = "prior_weight")]
    pub prior_weight: f64,
}

fn startup() -> usize {
    4
}
fn gamma() -> f64 {
    0.25
}
fn candidates() -> usize {
    24
}
fn prior_weight() -> f64 {
    1.0
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig { startup_trials: startup(), gamma: gamma(), candidates: candidates(), prior_weight: prior_weight() }
    }
}

impl TpeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.gamma > 0.0 && self.gamma < 1.0) {
            return Err(format!("[tpe] gamma must be in (0, 1), got {}", self.gamma));
        }
        if self.candidates == 0 || self.prior_weight.is_nan() || self.prior_weight <= 0.0 {
            return Err("[tpe] candidates and prior_weight must be positive".into());
        }
        Ok(())
    }
}

/// The Tree-structured Parzen Estimator (Bergstra, Bardenet, Bengio, Kégl 2011, "Algorithms
/// for Hyper-Parameter Optimization", NeurIPS), univariate: per parameter, a Parzen estimator
/// l(x) of the good trials and g(x) of the others; the candidate drawn from l maximising
/// l(x)/g(x) (which maximises expected improvement, their eq. 3) is chosen.
pub struct TpeSampler {
    pub space: Space,
    pub seed: u64,
    pub config: TpeConfig,
}

impl Sampler for TpeSampler {
    fn sample(&self, trial: usize, history: &[Observation]) -> Params {
        let mut rng = trial_rng(self.seed, trial);
        let mut done: Vec<&Observation> = history.iter().filter(|o| o.loss.is_finite() || o.pruned).collect();
        let complete = done.iter().filter(|o| !o.pruned).count();
        if complete < self.config.startup_trials.max(1) {
            return sample_prior(&self.space, &mut rng);
        }
        // Completed trials by loss; pruned ones always in the bad group.
        done.sort_by(|a, b| (a.pruned, a.loss).partial_cmp(&(b.pruned, b.loss)).unwrap_or(std::cmp::Ordering::Equal));
        let n_good = ((self.config.gamma * complete as f64).ceil() as usize).clamp(1, complete);
        let (good, bad) = done.split_at(n_good);
        self.space
            .iter()
            .map(|(name, d)| {
                let xs = |set: &[&Observation]| -> Vec<f64> {
                    set.iter().filter_map(|o| o.params.get(name).and_then(|v| d.to_internal(v))).collect()
                };
                let (xg, xb) = (xs(good), xs(bad));
                let v = match d {
                    Distribution::Categorical { values } => {
                        let l = categorical_weights(&xg, values.len(), self.config.prior_weight);
                        let g = categorical_weights(&xb, values.len(), self.config.prior_weight);
                        let best = (0..self.config.candidates)
                            .map(|_| pick(&l, &mut rng))
                            .max_by(|&i, &j| {
                                (l[i].ln() - g[i].ln()).partial_cmp(&(l[j].ln() - g[j].ln())).unwrap_or(std::cmp::Ordering::Equal)
                            })
                            .unwrap_or(0);
                        values[best].clone()
                    }
                    _ => {
                        let (a, b) = d.internal_bounds();
                        let l = Parzen::fit(&xg, a, b, self.config.prior_weight);
                        let g = Parzen::fit(&xb, a, b, self.config.prior_weight);
                        let best = (0..self.config.candidates)
                            .map(|_| l.sample(&mut rng))
                            .map(|x| (x, l.log_pdf(x) - g.log_pdf(x)))
                            .max_by(|p, q| p.1.partial_cmp(&q.1).unwrap_or(std::cmp::Ordering::Equal))
                            .map(|p| p.0)
                            .unwrap_or((a + b) / 2.0);
                        d.from_internal(best)
                    }
                };
                (name.clone(), v)
            })
            .collect()
    }
}

/// p(c) = (count_c + w/K) / (n + w): observed category shares smoothed by a uniform prior.
fn categorical_weights(xs: &[f64], k: usize, w: f64) -> Vec<f64> {
    let mut p = vec![w / k as f64; k];
    for x in xs {
        p[(x.floor() as usize).min(k - 1)] += 1.0;
    }
    let s: f64 = p.iter().sum();
    p.iter().map(|v| v / s).collect()
}

fn pick(w: &[f64], rng: &mut impl Rng) -> usize {
    let mut u = rng.random::<f64>();
    for (i, p) in w.iter().enumerate() {
        if u < *p {
            return i;
        }
        u -= p;
    }
    w.len() - 1
}

/// A mixture of Gaussians truncated to [a, b]: one at each observation, plus a prior one at the
/// middle of the range with σ = b − a. Bandwidths are the adaptive Parzen rule of Bergstra et
/// al. (hyperopt): the larger distance to a neighbour among the sorted centres, clipped to
/// [(b − a)/min(100, n + 1), b − a].
#[derive(Clone, Debug)]
pub struct Parzen {
    pub mu: Vec<f64>,
    pub sigma: Vec<f64>,
    pub weight: Vec<f64>,
    pub a: f64,
    pub b: f64,
}

impl Parzen {
    pub fn fit(xs: &[f64], a: f64, b: f64, prior_weight: f64) -> Parzen {
        let range = b - a;
        let prior_mu = (a + b) / 2.0;
        let mut pts: Vec<(f64, bool)> = xs.iter().map(|&x| (x.clamp(a, b), false)).collect();
        pts.push((prior_mu, true));
        pts.sort_by(|p, q| p.0.partial_cmp(&q.0).unwrap_or(std::cmp::Ordering::Equal));
        let n = pts.len();
        let lo = range / (100f64.min(n as f64 + 1.0));
        let (mut mu, mut sigma, mut weight) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let (x, prior) = pts[i];
            if prior {
                mu.push(x);
                sigma.push(range);
                weight.push(prior_weight);
                continue;
            }
            let left = if i > 0 { x - pts[i - 1].0 } else { x - a };
            let right = if i + 1 < n { pts[i + 1].0 - x } else { b - x };
            mu.push(x);
            sigma.push(left.max(right).clamp(lo, range));
            weight.push(1.0);
        }
        let s: f64 = weight.iter().sum();
        weight.iter_mut().for_each(|w| *w /= s);
        Parzen { mu, sigma, weight, a, b }
    }

    /// ln of the truncated mixture density at x.
    pub fn log_pdf(&self, x: f64) -> f64 {
        let mut p = 0.0;
        for ((m, s), w) in self.mu.iter().zip(&self.sigma).zip(&self.weight) {
            let z = normal_cdf((self.b - m) / s) - normal_cdf((self.a - m) / s);
            let u = (x - m) / s;
            p += w * (-0.5 * u * u).exp() / (s * (2.0 * std::f64::consts::PI).sqrt() * z.max(1e-300));
        }
        p.max(1e-300).ln()
    }

    /// A draw: a component by weight, then its Gaussian truncated to [a, b] (by rejection;
    /// clamped after 100 misses).
    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        let k = pick(&self.weight, rng);
        for _ in 0..100 {
            let x = self.mu[k] + self.sigma[k] * standard_normal(rng);
            if (self.a..=self.b).contains(&x) {
                return x;
            }
        }
        self.mu[k].clamp(self.a, self.b)
    }
}

fn standard_normal(rng: &mut impl Rng) -> f64 {
    // Box–Muller.
    let u1 = rng.random::<f64>().max(1e-300);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Φ(x) = (1 + erf(x/√2))/2.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5·10⁻⁷), enough for mixture weights.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y =
        1.0 - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592) * t * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn space() -> Space {
        let mut s = Space::new();
        s.insert("training.lr".into(), Distribution::LogUniform { low: 1e-4, high: 1e-1, grid_points: Some(3) });
        s.insert("model.0.hidden".into(), Distribution::Int { low: 4, high: 64, step: 4, log: false });
        s.insert("training.optimizer".into(), Distribution::Categorical { values: vec![json!("adam"), json!("adamw")] });
        s.insert("splits.train".into(), Distribution::Uniform { low: 0.5, high: 0.8, grid_points: Some(2) });
        s
    }

    fn in_bounds(p: &Params) {
        let lr = p["training.lr"].as_f64().unwrap();
        assert!((1e-4..=1e-1).contains(&lr), "{lr}");
        let h = p["model.0.hidden"].as_i64().unwrap();
        assert!((4..=64).contains(&h) && h % 4 == 0, "{h}");
        assert!(["adam", "adamw"].contains(&p["training.optimizer"].as_str().unwrap()));
        let s = p["splits.train"].as_f64().unwrap();
        assert!((0.5..=0.8).contains(&s), "{s}");
    }

    #[test]
    fn random_is_seeded_per_trial_and_respects_bounds() {
        let r = RandomSampler { space: space(), seed: 11 };
        let a: Vec<Params> = (0..200).map(|t| r.sample(t, &[])).collect();
        let b: Vec<Params> = (0..200).rev().map(|t| r.sample(t, &[])).collect();
        assert_eq!(a, b.into_iter().rev().collect::<Vec<_>>(), "same seed + trial → same parameters, in any order");
        a.iter().for_each(in_bounds);
        let other = RandomSampler { space: space(), seed: 12 };
        assert_ne!(a[0], other.sample(0, &[]));
        // Both categories and both ends of the int range appear.
        assert!(a.iter().any(|p| p["training.optimizer"] == "adamw") && a.iter().any(|p| p["training.optimizer"] == "adam"));
        assert!(a.iter().any(|p| p["model.0.hidden"] == 4) && a.iter().any(|p| p["model.0.hidden"] == 64));
    }

    #[test]
    fn grid_enumerates_the_product_in_order() {
        let g = GridSampler::new(&space()).unwrap();
        assert_eq!(g.points.len(), 16 * 2 * 2 * 3);
        assert_eq!(g.points[0]["model.0.hidden"], 4);
        assert_eq!((&g.points[0]["training.optimizer"], &g.points[1]["training.optimizer"]), (&json!("adam"), &json!("adamw")));
        assert!((g.points[2]["training.lr"].as_f64().unwrap() - 10f64.powf(-2.5)).abs() < 1e-12, "the log grid's middle point");
        let mut seen = std::collections::HashSet::new();
        for p in &g.points {
            in_bounds(p);
            assert!(seen.insert(serde_json::to_string(p).unwrap()), "duplicate grid point {p:?}");
        }
    }

    #[test]
    fn tpe_is_reproducible_in_bounds_and_moves_towards_good_trials() {
        let s = space();
        let tpe = TpeSampler { space: s.clone(), seed: 3, config: TpeConfig::default() };
        // A loss with its minimum at lr = 1e-2, hidden = 48, adamw.
        let loss = |p: &Params| {
            let lr = p["training.lr"].as_f64().unwrap();
            let h = p["model.0.hidden"].as_f64().unwrap();
            (lr.log10() + 2.0).powi(2) + ((h - 48.0) / 16.0).powi(2) + if p["training.optimizer"] == "adamw" { 0.0 } else { 1.0 }
        };
        let run = || {
            let mut hist = Vec::new();
            for t in 0..40 {
                let p = tpe.sample(t, &hist);
                in_bounds(&p);
                hist.push(Observation { loss: loss(&p), params: p, pruned: false });
            }
            hist
        };
        let (h1, h2) = (run(), run());
        assert!(h1.iter().zip(&h2).all(|(a, b)| a.params == b.params), "seeded TPE is reproducible");
        let mean = |xs: &[Observation]| xs.iter().map(|o| o.loss).sum::<f64>() / xs.len() as f64;
        // Random search with the same budget, as the yardstick.
        let r = RandomSampler { space: s, seed: 3 };
        let rand_hist: Vec<Observation> =
            (0..40).map(|t| r.sample(t, &[])).map(|p| Observation { loss: loss(&p), params: p, pruned: false }).collect();
        let (tpe_late, rand_late) = (mean(&h1[20..]), mean(&rand_hist[20..]));
        assert!(tpe_late < rand_late, "TPE's later trials should beat random ones: {tpe_late} vs {rand_late}");
    }

    #[test]
    fn parzen_density_integrates_to_one_on_its_range() {
        let p = Parzen::fit(&[0.1, 0.15, 0.9], 0.0, 1.0, 1.0);
        let n = 20_000;
        let integral: f64 = (0..n).map(|i| p.log_pdf((i as f64 + 0.5) / n as f64).exp()).sum::<f64>() / n as f64;
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
        let mut rng = trial_rng(1, 0);
        assert!((0..1000).all(|_| (0.0..=1.0).contains(&p.sample(&mut rng))));
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
    }
}
