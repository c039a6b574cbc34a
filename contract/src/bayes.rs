//! Bayesian online linear regression (`bayes_online`): a conjugate Normal–Inverse-Gamma model of
//! the target value (bps) on one feature row, updated one matured label at a time, with
//! exponential forgetting by discounting. Formulas and sources: docs/models.md, section
//! "Bayesian online regression (`bayes_online`)".
//!
//! Model (West & Harrison 1997, *Bayesian Forecasting and Dynamic Models*, 2nd ed., chs. 4 and
//! 10: the DLM with unknown observational variance, discounting the state's precision and the
//! variance's degrees of freedom):
//!
//! - y = wᵀx + ε, ε ~ N(0, σ²); x is the row's features, then a constant 1 when
//!   [`BayesConfig::intercept`] is set;
//! - one-step-ahead prior w | σ² ~ N(m, σ² P), σ² ~ IG(a, b);
//! - update with (x, y): e = y − mᵀx, q = 1 + xᵀPx, k = Px / q, m ← m + k e, P ← P − k kᵀ q,
//!   a ← a + ½, b ← b + e² / (2q);
//! - discount (forgetting, λ ∈ (0, 1]): P ← P / λ, a ← λ a, b ← λ b — the precision P⁻¹ and the
//!   degrees of freedom n = 2a are multiplied by λ, b/a (the point estimate of σ²) is kept. An
//!   observation k steps old weighs λᵏ. Variance factors are capped at the prior's (see
//!   [`BayesConfig::cap_at_prior`]);
//! - predictive y | x ~ Student-t with 2a degrees of freedom, location mᵀx and scale² =
//!   (b/a)(1 + xᵀPx); its standard deviation is scale·√(ν/(ν − 2)) for ν = 2a > 2.
//!
//! The stored state is the one-step-ahead prior: the discount is applied right after each
//! observation, so [`Predictor::predict`] uses the state as it is.
//!
//! Two posterior forms ([`Form`]):
//! - `full`: P = U D Uᵀ with U unit upper triangular and D > 0 diagonal, updated by Bierman's
//!   square-root-free UD measurement update (Bierman 1977, *Factorization Methods for Discrete
//!   Sequential Estimation*, ch. V; the same loop as Grewal & Andrews' `bierman` routine in
//!   *Kalman Filtering: Theory and Practice*).
//!   Each D stays positive by construction (dⱼ ← dⱼ·αⱼ₋₁/αⱼ with 1 = α₀ ≤ α₁ ≤ …), so P stays
//!   symmetric positive definite whatever its conditioning, which the textbook update
//!   P − PxxᵀP/q of a dense P does not guarantee (rounding can make it asymmetric or
//!   indefinite once P is ill-conditioned, as under wind-up). O(d²) per update and per
//!   prediction.
//! - `diagonal`: P restricted to its diagonal after every update (the diagonal of the exact
//!   rank-one downdate, Pⱼⱼ ← Pⱼⱼ(1 − Pⱼⱼxⱼ²/q)), so O(d). Exact for one input; with correlated
//!   inputs it ignores the weights' correlations (its variances are then too small and its mean
//!   converges more slowly along nearly collinear directions).
//!
//! Class probabilities of the direction classes (down / stationary / up by ±α, in bps; see
//! [`crate::target`]) are the predictive's mass beyond ±α: P(down) = F(−α), P(up) = 1 − F(α),
//! P(stationary) = the rest, F the Student-t CDF ([`StudentT`], the regularised incomplete beta
//! function by its continued fraction, Numerical Recipes 3rd ed. §6.4 `betacf`, modified Lentz).
//!
//! [`Changepoints`] (optional; wired into training by `crate::bayes_changepoint`): Bayesian online changepoint
//! detection (Adams & MacKay 2007) on the standardised residuals that
//! [`BayesOnline::update_row`] returns.

use crate::error::{ContractError, Result};
use crate::predictor::{Batch, Matured, OnlinePredictor, Outputs, Predictor, PredictorInfo};
use crate::target::DIRECTION_CLASSES;
use serde::{Deserialize, Serialize};

/// Registry name of the model family.
pub const NAME: &str = "bayes_online";

/// Representation of the posterior covariance factor P.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// Full P as a UD factorisation (Bierman update).
    #[default]
    Full,
    /// diag(P) only.
    Diagonal,
}

fn default_discount() -> f64 {
    0.999
}
fn default_one() -> f64 {
    1.0
}
fn default_two() -> f64 {
    2.0
}
fn default_true() -> bool {
    true
}

/// Hyperparameters of the model (stored in the card beside the posterior).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayesConfig {
    /// `full` (default) or `diagonal`.
    #[serde(default)]
    pub form: Form,
    /// Discount factor λ ∈ (0, 1]: an observation k updates old weighs λᵏ (effective memory
    /// ≈ 1/(1 − λ) observations); 1 = no forgetting.
    #[serde(default = "default_discount")]
    pub discount: f64,
    /// Class threshold α in bps (the card's α × [`crate::target::BPS`]).
    pub alpha_bps: f64,
    /// Append a constant 1 to the features (an intercept weight, the last of the mean).
    #[serde(default = "default_true")]
    pub intercept: bool,
    /// Prior mean m₀ of every weight (bps per unit of input).
    #[serde(default)]
    pub prior_mean: f64,
    /// Prior variance factor p₀: P₀ = p₀ I, so each weight's prior variance is σ²·p₀.
    #[serde(default = "default_one")]
    pub prior_var: f64,
    /// Prior shape a₀ of σ² ~ IG(a₀, b₀) (prior degrees of freedom 2a₀).
    #[serde(default = "default_two")]
    pub prior_a: f64,
    /// Prior scale b₀ of σ² (bps²); b₀/a₀ is the prior point estimate of σ², e.g. a₀ times the
    /// training variance of the target.
    #[serde(default = "default_two")]
    pub prior_b: f64,
    /// Cap every variance factor at p₀ when discounting: Dⱼ ← min(Dⱼ/λ, p₀) (full form),
    /// Pⱼⱼ ← min(Pⱼⱼ/λ, p₀) (diagonal). Without the cap a direction the inputs never excite (a
    /// constant-zero or exactly collinear feature) has its variance multiplied by 1/λ at every
    /// update and overflows after ~ln(10³⁰⁸)/(1 − λ) updates (covariance wind-up); with it, that
    /// direction returns to the prior. It binds only along directions whose discounted
    /// information from the data (≈ E[xxᵀ]/(1 − λ)) is below the prior precision 1/p₀ — there
    /// a weight stays about as uncertain as under the prior — and never for λ = 1. Default true.
    #[serde(default = "default_true")]
    pub cap_at_prior: bool,
}

impl Default for BayesConfig {
    fn default() -> Self {
        BayesConfig {
            form: Form::Full,
            discount: default_discount(),
            alpha_bps: 0.0,
            intercept: true,
            prior_mean: 0.0,
            prior_var: 1.0,
            prior_a: 2.0,
            prior_b: 2.0,
            cap_at_prior: true,
        }
    }
}

impl BayesConfig {
    pub fn validate(&self) -> Result<(), String> {
        let pos = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("{NAME}: {name} must be finite and > 0, got {v}"))
            }
        };
        if !(self.discount > 0.0 && self.discount <= 1.0) {
            return Err(format!("{NAME}: discount must be in (0, 1], got {}", self.discount));
        }
        if !(self.alpha_bps.is_finite() && self.alpha_bps >= 0.0) {
            return Err(format!("{NAME}: alpha_bps must be finite and ≥ 0, got {}", self.alpha_bps));
        }
        if !self.prior_mean.is_finite() {
            return Err(format!("{NAME}: prior_mean must be finite, got {}", self.prior_mean));
        }
        pos("prior_var", self.prior_var)?;
        pos("prior_a", self.prior_a)?;
        pos("prior_b", self.prior_b)
    }
}

/// The one-step-ahead prior N(m, σ² P) × IG(a, b) over `dim` weights (features, then the
/// intercept).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posterior {
    /// m, `dim` values.
    pub mean: Vec<f64>,
    /// Full form: the strictly upper triangle of U packed by column (column j holds U₀ⱼ … Uⱼ₋₁ⱼ
    /// at offset j(j − 1)/2), `dim(dim − 1)/2` values. Diagonal form: empty.
    pub u: Vec<f64>,
    /// Full form: D of P = U D Uᵀ. Diagonal form: diag(P). `dim` values, all > 0.
    pub d: Vec<f64>,
    pub a: f64,
    pub b: f64,
    /// Observations absorbed.
    pub updates: u64,
}

impl Posterior {
    /// The prior of `config` over `dim` weights.
    pub fn prior(config: &BayesConfig, dim: usize) -> Posterior {
        let packed = if config.form == Form::Full { dim * dim.saturating_sub(1) / 2 } else { 0 };
        Posterior {
            mean: vec![config.prior_mean; dim],
            u: vec![0.0; packed],
            d: vec![config.prior_var; dim],
            a: config.prior_a,
            b: config.prior_b,
            updates: 0,
        }
    }

    /// Weights.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Checks lengths against `form` and that every number is finite (D, a, b also > 0).
    pub fn check(&self, form: Form) -> Result<(), String> {
        let n = self.dim();
        let packed = if form == Form::Full { n * n.saturating_sub(1) / 2 } else { 0 };
        if self.d.len() != n || self.u.len() != packed {
            return Err(format!(
                "{NAME}: posterior has {} means, {} D values and {} U values ({form:?} form)",
                n,
                self.d.len(),
                self.u.len()
            ));
        }
        if !self.mean.iter().chain(&self.u).all(|v| v.is_finite()) {
            return Err(format!("{NAME}: posterior mean or U is not finite"));
        }
        if !self.d.iter().chain([&self.a, &self.b]).all(|v| v.is_finite() && *v > 0.0) {
            return Err(format!("{NAME}: posterior D, a and b must be finite and > 0"));
        }
        Ok(())
    }
}

/// The serialised form of a [`BayesOnline`] (what a card stores).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BayesState {
    pub config: BayesConfig,
    /// Rows per window of the batches it is served (the last row is used).
    pub window: usize,
    /// Input columns per row.
    pub features: usize,
    pub posterior: Posterior,
}

/// One predictive distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// Location mᵀx (bps), also the mean when ν > 1.
    pub mean: f64,
    /// Scale √((b/a)(1 + xᵀPx)) (bps).
    pub scale: f64,
    /// Degrees of freedom ν = 2a.
    pub dof: f64,
    /// Standard deviation scale·√(ν/(ν − 2)); +∞ for ν ≤ 2.
    pub std: f64,
    /// P(down), P(stationary), P(up) at ±α.
    pub probs: [f64; 3],
}

/// Bayesian online linear regression, a [`Predictor`] and [`OnlinePredictor`]. Serialises as
/// [`BayesState`] (deserialising checks it).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(into = "BayesState", try_from = "BayesState")]
pub struct BayesOnline {
    config: BayesConfig,
    posterior: Posterior,
    info: PredictorInfo,
    /// Scratch of [`BayesOnline::update_row`] (no allocation per update): x as f64 (with the
    /// intercept's 1) and the unnormalised gain.
    xs: Vec<f64>,
    gain: Vec<f64>,
}

impl From<BayesOnline> for BayesState {
    fn from(m: BayesOnline) -> BayesState {
        BayesState { config: m.config, window: m.info.window, features: m.info.features, posterior: m.posterior }
    }
}

impl TryFrom<BayesState> for BayesOnline {
    type Error = ContractError;
    fn try_from(s: BayesState) -> Result<BayesOnline> {
        BayesOnline::from_state(s)
    }
}

impl BayesOnline {
    /// The prior of `config` for rows of `features` inputs, served in windows of `window` rows
    /// (1 for a row model; for longer windows only the last row of each is read).
    pub fn new(config: BayesConfig, window: usize, features: usize) -> Result<BayesOnline> {
        let dim = features + config.intercept as usize;
        let posterior = Posterior::prior(&config, dim);
        BayesOnline::from_state(BayesState { config, window, features, posterior })
    }

    /// Rebuilds a model from its stored state, checking it.
    pub fn from_state(s: BayesState) -> Result<BayesOnline> {
        s.config.validate().map_err(ContractError::Invalid)?;
        let dim = s.features + s.config.intercept as usize;
        if s.window == 0 || dim == 0 {
            return Err(ContractError::Invalid(format!(
                "{NAME}: needs window ≥ 1 and at least one weight (window {}, {dim} weights)",
                s.window
            )));
        }
        if s.posterior.dim() != dim {
            return Err(ContractError::Invalid(format!(
                "{NAME}: posterior has {} weights, {} features{} need {dim}",
                s.posterior.dim(),
                s.features,
                if s.config.intercept { " and the intercept" } else { "" }
            )));
        }
        s.posterior.check(s.config.form).map_err(ContractError::Invalid)?;
        let info = PredictorInfo {
            name: NAME.into(),
            classes: DIRECTION_CLASSES.iter().map(|c| c.to_string()).collect(),
            window: s.window,
            features: s.features,
            regression: true,
            uncertainty: true,
            needs_window_ofi: false,
        };
        Ok(BayesOnline { config: s.config, posterior: s.posterior, info, xs: vec![0.0; dim], gain: vec![0.0; dim] })
    }

    /// The state to store (a copy).
    pub fn state(&self) -> BayesState {
        self.clone().into()
    }

    pub fn config(&self) -> &BayesConfig {
        &self.config
    }

    /// Extra forgetting on top of the discount, once: P ← P/φ (capped as the discount is), a ←
    /// φa, b ← φb for φ ∈ (0, 1] — the response to a detected changepoint
    /// ([`crate::bayes_changepoint`]).
    pub fn forget(&mut self, phi: f64) {
        let cap = if self.config.cap_at_prior { self.config.prior_var } else { f64::INFINITY };
        let p = &mut self.posterior;
        p.d.iter_mut().for_each(|d| *d = (*d / phi).min(cap));
        p.a *= phi;
        p.b *= phi;
    }

    /// Back to the prior (the weights' mean and covariance; σ²'s point estimate b/a is kept with
    /// the prior's degrees of freedom).
    pub fn reset(&mut self) {
        let s2 = self.posterior.b / self.posterior.a;
        let updates = self.posterior.updates;
        self.posterior = Posterior::prior(&self.config, self.dim());
        self.posterior.b = s2 * self.posterior.a;
        self.posterior.updates = updates;
    }

    /// Writes the state as JSON (`bayes_state.json` of a card; f64 round-trips exactly).
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let s = serde_json::to_string(&self.state()).expect("state serialises");
        std::fs::write(path, s + "\n").map_err(|e| ContractError::io(path, e))
    }

    /// Reads and checks a state written by [`BayesOnline::write`]; errors name the file and line.
    pub fn read(path: &std::path::Path) -> Result<BayesOnline> {
        let s = std::fs::read_to_string(path).map_err(|e| ContractError::io(path, e))?;
        let st: BayesState =
            serde_json::from_str(&s).map_err(|e| ContractError::card(path, &format!("line {}", e.line()), e.to_string()))?;
        BayesOnline::from_state(st).map_err(|e| ContractError::card(path, "state", e.to_string()))
    }

    pub fn posterior(&self) -> &Posterior {
        &self.posterior
    }

    /// Weights: features (+ 1 with the intercept).
    pub fn dim(&self) -> usize {
        self.posterior.dim()
    }

    /// The covariance factor P (`dim × dim`, row-major; the weights' covariance is σ²P, and
    /// b/(a − 1)·P marginally over σ²). Allocates: for inspection, not the hot path.
    pub fn covariance(&self) -> Vec<f64> {
        let n = self.dim();
        let p = &self.posterior;
        let mut c = vec![0.0; n * n];
        match self.config.form {
            Form::Diagonal => (0..n).for_each(|j| c[j * n + j] = p.d[j]),
            Form::Full => {
                // U as a dense matrix, then P = U D Uᵀ.
                let mut u = vec![0.0; n * n];
                for j in 0..n {
                    u[j * n + j] = 1.0;
                    for i in 0..j {
                        u[i * n + j] = p.u[j * (j - 1) / 2 + i];
                    }
                }
                for r in 0..n {
                    for s in r..n {
                        let v: f64 = (s..n).map(|k| u[r * n + k] * p.d[k] * u[s * n + k]).sum();
                        c[r * n + s] = v;
                        c[s * n + r] = v;
                    }
                }
            }
        }
        c
    }

    /// xⱼ of the weight vector's input (the intercept's 1 after the features).
    #[inline]
    fn input(row: &[f32], j: usize) -> f64 {
        if j < row.len() {
            row[j] as f64
        } else {
            1.0
        }
    }

    /// The predictive distribution for one feature row (`features` values). Allocates nothing.
    pub fn predict_row(&self, row: &[f32]) -> Result<Prediction> {
        self.predict_with(&StudentT::new(2.0 * self.posterior.a), row)
    }

    fn predict_with(&self, t: &StudentT, row: &[f32]) -> Result<Prediction> {
        let f = self.info.features;
        if row.len() != f {
            return Err(ContractError::input("x", format!("{NAME} expects rows of {f} features, got {}", row.len())));
        }
        let p = &self.posterior;
        let n = p.dim();
        let mut mean = dot_mixed(&p.mean[..f], row);
        if n > f {
            mean += p.mean[f];
        }
        // xᵀPx: Σⱼ Dⱼ (Uᵀx)ⱼ² (full) or Σⱼ Pⱼⱼ xⱼ² (diagonal).
        let mut s = 0.0;
        match self.config.form {
            Form::Full => {
                let mut off = 0;
                for j in 0..n {
                    let fj = Self::input(row, j) + dot_mixed(&p.u[off..off + j], &row[..j]);
                    s += p.d[j] * fj * fj;
                    off += j;
                }
            }
            Form::Diagonal => {
                for j in 0..n {
                    let x = Self::input(row, j);
                    s += p.d[j] * x * x;
                }
            }
        }
        let scale = ((p.b / p.a) * (1.0 + s)).sqrt();
        if !(mean.is_finite() && scale.is_finite()) {
            return Err(ContractError::input("x", format!("{NAME}: the row gives a non-finite prediction (mean {mean}, scale {scale})")));
        }
        let nu = t.nu;
        let std = if nu > 2.0 { scale * (nu / (nu - 2.0)).sqrt() } else { f64::INFINITY };
        let alpha = self.config.alpha_bps;
        // P(up) = 1 − F((α − μ)/s) = F((μ − α)/s) by symmetry (no cancellation in the tail).
        let down = t.cdf((-alpha - mean) / scale);
        let up = t.cdf((mean - alpha) / scale);
        let stat = (1.0 - down - up).max(0.0);
        Ok(Prediction { mean, scale, dof: nu, std, probs: [down, stat, up] })
    }

    /// Absorbs one observation: feature row `row` (`features` values) with target value `y`
    /// (bps), then discounts. O(dim²) (full) or O(dim) (diagonal); allocates nothing. A
    /// non-finite `row` or `y` is rejected before the state is touched.
    ///
    /// Returns the standardised one-step-ahead residual z = e/√((b/a)q) under the state before
    /// the update (t-distributed with 2a degrees of freedom while the model holds; the input of
    /// [`Changepoints`]).
    pub fn update_row(&mut self, row: &[f32], y: f64) -> Result<f64> {
        let f = self.info.features;
        if row.len() != f {
            return Err(ContractError::input("x", format!("{NAME} expects rows of {f} features, got {}", row.len())));
        }
        if !y.is_finite() {
            return Err(ContractError::input("values", format!("{NAME}: target value {y} is not finite")));
        }
        let n = self.dim();
        for (j, x) in self.xs.iter_mut().enumerate() {
            *x = Self::input(row, j);
        }
        if let Some(j) = self.xs.iter().position(|v| !v.is_finite()) {
            return Err(ContractError::input("x", format!("{NAME}: feature {j} = {} is not finite", self.xs[j])));
        }
        let lambda = self.config.discount;
        let inv_lambda = 1.0 / lambda;
        let cap = if self.config.cap_at_prior { self.config.prior_var } else { f64::INFINITY };
        let p = &mut self.posterior;
        let xs = &self.xs;
        let e = y - dot(&p.mean, xs);
        let q = match self.config.form {
            Form::Full => {
                // Bierman's UD update with measurement variance 1 (P is in units of σ²). Column j
                // of U is read (f = Uᵀx) and then rewritten in step j; g accumulates P x.
                let g = &mut self.gain;
                let mut alpha = 1.0;
                let mut off = 0;
                for j in 0..n {
                    let col = &mut p.u[off..off + j];
                    let fj = xs[j] + dot(col, &xs[..j]);
                    let vj = p.d[j] * fj;
                    let prev = alpha;
                    alpha += fj * vj;
                    let lam = -fj / prev;
                    p.d[j] = (p.d[j] * (prev / alpha) * inv_lambda).min(cap);
                    for (u, gi) in col.iter_mut().zip(&mut g[..j]) {
                        let old = *u;
                        *u = old + *gi * lam;
                        *gi += vj * old;
                    }
                    g[j] = vj;
                    off += j;
                }
                // alpha = 1 + xᵀPx; the gain is g / alpha.
                let k = e / alpha;
                for (m, gi) in p.mean.iter_mut().zip(g.iter()) {
                    *m += gi * k;
                }
                alpha
            }
            Form::Diagonal => {
                let q = 1.0 + p.d.iter().zip(xs).map(|(d, x)| d * x * x).sum::<f64>();
                let k = e / q;
                let shrink = 1.0 / (q * lambda);
                for ((m, d), x) in p.mean.iter_mut().zip(&mut p.d).zip(xs) {
                    let dx = *d * x;
                    *m += dx * k;
                    // Pⱼⱼ(1 − Pⱼⱼxⱼ²/q)/λ with q − Pⱼⱼxⱼ² = 1 + Σᵢ≠ⱼ Pᵢᵢxᵢ² ≥ 1 taken as such.
                    let rest = (q - dx * x).max(1.0);
                    *d = (*d * rest * shrink).min(cap);
                }
                q
            }
        };
        let z = e / (q * p.b / p.a).sqrt();
        p.a = (p.a + 0.5) * lambda;
        p.b = (p.b + 0.5 * e * e / q) * lambda;
        p.updates += 1;
        Ok(z)
    }

    /// [`PredictorInfo::check`] plus the buffer's length (a `Batch` built field by field).
    fn check(&self, batch: &Batch<'_>) -> Result<()> {
        self.info.check(batch)?;
        if batch.x.len() != batch.batch * batch.window * batch.features {
            return Err(ContractError::input(
                "x",
                format!("{} values is not {}×{}×{}", batch.x.len(), batch.batch, batch.window, batch.features),
            ));
        }
        Ok(())
    }

    /// The row of window `i` of `batch` that the model reads: its last.
    fn row<'b>(&self, batch: &Batch<'b>, i: usize) -> &'b [f32] {
        let f = batch.features;
        let start = (i * batch.window + batch.window - 1) * f;
        &batch.x[start..start + f]
    }
}

impl Predictor for BayesOnline {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }

    /// Appends, per window, the class probabilities (down, stationary, up), the predictive mean
    /// (`regression`, bps) and standard deviation (`std`, bps; +∞ while 2a ≤ 2) of the window's
    /// last row. Allocates nothing beyond growing `out`; on an error (a row giving a non-finite
    /// prediction) `out` is left as it was.
    fn predict(&self, batch: &Batch<'_>, out: &mut Outputs) -> Result<()> {
        self.check(batch)?;
        if out.classes != DIRECTION_CLASSES.len() {
            return Err(ContractError::input(
                "outputs",
                format!("{NAME} gives {} classes, outputs hold {}", DIRECTION_CLASSES.len(), out.classes),
            ));
        }
        let t = StudentT::new(2.0 * self.posterior.a);
        let held = (out.probs.len(), out.regression.len(), out.std.len());
        for i in 0..batch.batch {
            match self.predict_with(&t, self.row(batch, i)) {
                Ok(p) => {
                    out.probs.extend(p.probs.iter().map(|&v| v as f32));
                    out.regression.push(p.mean as f32);
                    out.std.push(p.std as f32);
                }
                Err(e) => {
                    // All or nothing: drop this batch's windows.
                    out.probs.truncate(held.0);
                    out.regression.truncate(held.1);
                    out.std.truncate(held.2);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl OnlinePredictor for BayesOnline {
    /// Absorbs window by window (in batch order) the last row of each window with its target
    /// value `labels.values` (bps); `labels.classes` is not read. The caller must hand only
    /// matured labels — whose horizon has passed at the time of the update — so that the
    /// predictions made before it stay out-of-sample (prequential: predict at t, update at
    /// t + h). Each window is one time step: one update, then one discount. The values are all
    /// checked first; a non-finite input row stops the batch there (the windows before it are
    /// kept).
    fn update(&mut self, batch: &Batch<'_>, labels: &Matured<'_>) -> Result<()> {
        self.check(batch)?;
        if labels.values.len() != batch.batch {
            return Err(ContractError::input(
                "values",
                format!("{NAME} needs one target value per window: {} for {}", labels.values.len(), batch.batch),
            ));
        }
        if let Some(i) = labels.values.iter().position(|v| !v.is_finite()) {
            return Err(ContractError::input("values", format!("{NAME}: target value {} of window {i} is not finite", labels.values[i])));
        }
        for (i, &y) in labels.values.iter().enumerate() {
            self.update_row(self.row(batch, i), y as f64)?;
        }
        Ok(())
    }
}

fn default_hazard() -> f64 {
    1e-3
}
fn default_max_run() -> usize {
    1000
}

/// Hyperparameters of [`Changepoints`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangepointConfig {
    /// Constant hazard H: the prior probability of a changepoint before each observation (the
    /// expected run length is 1/H).
    #[serde(default = "default_hazard")]
    pub hazard: f64,
    /// Run lengths tracked (0 … max_run − 1); runs longer than that share the last, whose
    /// statistics keep accumulating. O(max_run) per observation.
    #[serde(default = "default_max_run")]
    pub max_run: usize,
    /// Normal–Gamma prior of each run's mean μ and precision τ: μ | τ ~ N(μ₀, 1/(κ₀τ)),
    /// τ ~ Gamma(α₀, β₀) (rate β₀). The defaults suit standardised residuals (E τ = 1).
    #[serde(default)]
    pub prior_mean: f64,
    #[serde(default = "default_one")]
    pub prior_kappa: f64,
    #[serde(default = "default_one")]
    pub prior_alpha: f64,
    #[serde(default = "default_one")]
    pub prior_beta: f64,
}

impl Default for ChangepointConfig {
    fn default() -> Self {
        ChangepointConfig { hazard: 1e-3, max_run: 1000, prior_mean: 0.0, prior_kappa: 1.0, prior_alpha: 1.0, prior_beta: 1.0 }
    }
}

impl ChangepointConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.hazard > 0.0 && self.hazard < 1.0) {
            return Err(format!("changepoints: hazard must be in (0, 1), got {}", self.hazard));
        }
        if self.max_run < 2 {
            return Err(format!("changepoints: max_run must be ≥ 2, got {}", self.max_run));
        }
        if !self.prior_mean.is_finite() {
            return Err(format!("changepoints: prior_mean must be finite, got {}", self.prior_mean));
        }
        for (name, v) in [("prior_kappa", self.prior_kappa), ("prior_alpha", self.prior_alpha), ("prior_beta", self.prior_beta)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("changepoints: {name} must be finite and > 0, got {v}"));
            }
        }
        Ok(())
    }
}

/// The serialised form of [`Changepoints`]: per run length r (observations since the last
/// changepoint), its posterior probability and its Normal–Gamma statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangepointState {
    pub config: ChangepointConfig,
    /// P(rₜ = r | x₁…ₜ).
    pub prob: Vec<f64>,
    pub mean: Vec<f64>,
    pub kappa: Vec<f64>,
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    pub observed: u64,
}

/// Bayesian online changepoint detection (Adams & MacKay 2007, "Bayesian Online Changepoint
/// Detection", arXiv:0710.3742, Algorithm 1) on a scalar stream — meant for the standardised
/// residuals of [`BayesOnline::update_row`]: a Gaussian with unknown mean and variance per run
/// (conjugate Normal–Gamma), constant hazard H, run lengths truncated at `max_run`.
///
/// Per observation x, with πᵣ = the Student-t predictive of run r (2αᵣ degrees of freedom,
/// location μᵣ, scale² = βᵣ(κᵣ + 1)/(αᵣκᵣ)): growth P(rₜ = r + 1) ∝ P(rₜ₋₁ = r)·πᵣ·(1 − H),
/// changepoint P(rₜ = 0) ∝ Σᵣ P(rₜ₋₁ = r)·πᵣ·H, normalised; run r's statistics absorb x
/// (μ ← (κμ + x)/(κ + 1), κ ← κ + 1, α ← α + ½, β ← β + κ(x − μ)²/(2(κ + 1))) and run 0
/// restarts from the prior. With a constant hazard P(rₜ = 0 | x₁…ₜ) is always H; the evidence
/// of a change is the mass at short runs ([`Changepoints::prob_run_below`]) or a drop of the
/// most probable run length. The predictive densities are combined in log space, so an extreme
/// x does not underflow them all. Allocates nothing per observation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(into = "ChangepointState", try_from = "ChangepointState")]
pub struct Changepoints {
    s: ChangepointState,
    /// ln P(rₜ₋₁ = r) + ln πᵣ of the current observation (scratch, `max_run` values).
    ln_pred: Vec<f64>,
}

impl From<Changepoints> for ChangepointState {
    fn from(c: Changepoints) -> ChangepointState {
        c.s
    }
}

impl TryFrom<ChangepointState> for Changepoints {
    type Error = ContractError;
    fn try_from(s: ChangepointState) -> Result<Changepoints> {
        Changepoints::from_state(s)
    }
}

impl Changepoints {
    /// Before any observation: run length 0 with probability 1.
    pub fn new(config: ChangepointConfig) -> Result<Changepoints> {
        let c = &config;
        let (m, k, a, b) = (c.prior_mean, c.prior_kappa, c.prior_alpha, c.prior_beta);
        Changepoints::from_state(ChangepointState {
            config,
            prob: vec![1.0],
            mean: vec![m],
            kappa: vec![k],
            alpha: vec![a],
            beta: vec![b],
            observed: 0,
        })
    }

    /// Rebuilds a detector from its stored state, checking it.
    pub fn from_state(mut s: ChangepointState) -> Result<Changepoints> {
        s.config.validate().map_err(ContractError::Invalid)?;
        let n = s.prob.len();
        if n == 0 || n > s.config.max_run || [s.mean.len(), s.kappa.len(), s.alpha.len(), s.beta.len()].iter().any(|&l| l != n) {
            return Err(ContractError::Invalid(format!(
                "changepoints: {n} run lengths (max_run {}) with statistics of other lengths",
                s.config.max_run
            )));
        }
        let positive = |v: &[f64]| v.iter().all(|x| x.is_finite() && *x > 0.0);
        let finite = s.prob.iter().all(|p| p.is_finite() && *p >= 0.0) && s.mean.iter().all(|v| v.is_finite());
        if !(finite && positive(&s.kappa) && positive(&s.alpha) && positive(&s.beta)) {
            return Err(ContractError::Invalid("changepoints: probabilities must be ≥ 0 and κ, α, β > 0, all finite".into()));
        }
        let max = s.config.max_run;
        for v in [&mut s.prob, &mut s.mean, &mut s.kappa, &mut s.alpha, &mut s.beta] {
            v.reserve_exact(max - n);
        }
        Ok(Changepoints { s, ln_pred: vec![0.0; max] })
    }

    /// The state to store (a copy).
    pub fn state(&self) -> ChangepointState {
        self.s.clone()
    }

    /// P(rₜ = r | x₁…ₜ) for r = 0, 1, …
    pub fn run_length_probs(&self) -> &[f64] {
        &self.s.prob
    }

    /// The most probable run length (the first on ties).
    pub fn map_run_length(&self) -> usize {
        let p = &self.s.prob;
        (0..p.len()).fold(0, |b, r| if p[r] > p[b] { r } else { b })
    }

    /// P(rₜ < k): the probability of a changepoint among the last k observations.
    pub fn prob_run_below(&self, k: usize) -> f64 {
        self.s.prob.iter().take(k).sum()
    }

    /// Observations absorbed.
    pub fn observed(&self) -> u64 {
        self.s.observed
    }

    /// ln of the Student-t predictive density at x of a run with statistics (μ, κ, α, β).
    fn ln_predictive(x: f64, mean: f64, kappa: f64, alpha: f64, beta: f64) -> f64 {
        let nu = 2.0 * alpha;
        let scale2 = beta * (kappa + 1.0) / (alpha * kappa);
        let z2 = (x - mean) * (x - mean) / scale2;
        // ln Γ((ν + 1)/2) − ln Γ(ν/2) = ln Γ(½) − ln B(α, ½).
        let ln_ratio = 0.5 * std::f64::consts::PI.ln() - ln_beta_half(alpha);
        ln_ratio - 0.5 * (nu * std::f64::consts::PI * scale2).ln() - 0.5 * (nu + 1.0) * (z2 / nu).ln_1p()
    }

    /// Absorbs one observation x (finite). O(run lengths held).
    pub fn update(&mut self, x: f64) -> Result<()> {
        if !x.is_finite() {
            return Err(ContractError::input("x", format!("changepoints: observation {x} is not finite")));
        }
        let h = self.s.config.hazard;
        let max = self.s.config.max_run;
        let s = &mut self.s;
        let n = s.prob.len();
        let lp = &mut self.ln_pred[..n];
        let mut top = f64::NEG_INFINITY;
        for (r, l) in lp.iter_mut().enumerate() {
            *l = s.prob[r].ln() + Self::ln_predictive(x, s.mean[r], s.kappa[r], s.alpha[r], s.beta[r]);
            top = top.max(*l);
        }
        if n < max {
            // A new longest run (its values are written below).
            s.prob.push(0.0);
            s.mean.push(0.0);
            s.kappa.push(0.0);
            s.alpha.push(0.0);
            s.beta.push(0.0);
        }
        let mut change = 0.0;
        let mut total = 0.0;
        for r in (0..n).rev() {
            let w = (lp[r] - top).exp();
            change += w * h;
            let grown = w * (1.0 - h);
            total += w;
            // Run r absorbs x.
            let (m, k, a, b) = (s.mean[r], s.kappa[r], s.alpha[r], s.beta[r]);
            let (m2, k2, a2, b2) = ((k * m + x) / (k + 1.0), k + 1.0, a + 0.5, b + k * (x - m) * (x - m) / (2.0 * (k + 1.0)));
            let to = (r + 1).min(max - 1);
            if to == r {
                // The last run length: runs this long or longer share it (and its statistics).
                s.prob[r] = grown;
                (s.mean[r], s.kappa[r], s.alpha[r], s.beta[r]) = (m2, k2, a2, b2);
            } else if to == max - 1 && n == max {
                // Merges into the last run length, whose statistics are kept.
                s.prob[to] += grown;
            } else {
                s.prob[to] = grown;
                (s.mean[to], s.kappa[to], s.alpha[to], s.beta[to]) = (m2, k2, a2, b2);
            }
        }
        let c = &s.config;
        s.prob[0] = change;
        (s.mean[0], s.kappa[0], s.alpha[0], s.beta[0]) = (c.prior_mean, c.prior_kappa, c.prior_alpha, c.prior_beta);
        // total = Σᵣ P(rₜ₋₁ = r)·πᵣ / e^top ≥ 1: its largest term is 1.
        let inv = 1.0 / total;
        s.prob.iter_mut().for_each(|p| *p *= inv);
        s.observed += 1;
        Ok(())
    }
}

/// Σ aᵢbᵢ with four accumulators (lets the compiler vectorise; the order differs from a plain
/// left-to-right sum only by rounding).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        t += x * y;
    }
    t
}

/// [`dot`] of f64 weights with f32 inputs.
#[inline]
fn dot_mixed(a: &[f64], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..4 {
            s[k] += x[k] * y[k] as f64;
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ra.iter().zip(rb) {
        t += x * *y as f64;
    }
    t
}

/// ln Γ(x) for x > 0: Lanczos' approximation with g = 7 and the widely used 9 coefficients
/// (Godfrey's; relative error ~1e-15), x < ½ by the reflection formula.
pub fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    use std::f64::consts::PI;
    if x < 0.5 {
        return (PI / (PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let mut s = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        s += c / (x + i as f64);
    }
    0.5 * (2.0 * PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// ln B(a, ½) = ln Γ(a) + ln Γ(½) − ln Γ(a + ½). For a ≥ 25 the ratio Γ(a + ½)/Γ(a) is taken
/// from its asymptotic series, ln Γ(a + ½) − ln Γ(a) = ½ ln a − 1/(8a) + 1/(192a³) −
/// 1/(640a⁵) + 17/(14336a⁷) + O(a⁻⁹) (the coefficients checked against mpmath),
/// which avoids the cancellation of two large ln Γ (the t's ν = 2a reaches 10⁶ and more).
fn ln_beta_half(a: f64) -> f64 {
    let ln_gamma_half = 0.5 * std::f64::consts::PI.ln();
    if a >= 25.0 {
        let r = 1.0 / (a * a);
        ln_gamma_half - (0.5 * a.ln() - (1.0 / 8.0 - r * (1.0 / 192.0 - r * (1.0 / 640.0 - r * 17.0 / 14336.0))) / a)
    } else {
        ln_gamma(a) + ln_gamma_half - ln_gamma(a + 0.5)
    }
}

/// Continued fraction of the incomplete beta function (Numerical Recipes 3rd ed. §6.4 `betacf`,
/// modified Lentz's method); converges fast for x < (a + 1)/(a + b + 2).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    const MAX_ITER: usize = 10_000;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let clamp = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / clamp(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=MAX_ITER {
        let m = m as f64;
        let m2 = 2.0 * m;
        // Even step d₂ₘ, then odd step d₂ₘ₊₁.
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / clamp(1.0 + aa * d);
        c = clamp(1.0 + aa / c);
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / clamp(1.0 + aa * d);
        c = clamp(1.0 + aa / c);
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// The Student-t distribution with ν degrees of freedom (standard: location 0, scale 1), with
/// ln B(ν/2, ½) computed once for many CDF evaluations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StudentT {
    pub nu: f64,
    ln_beta: f64,
}

impl StudentT {
    /// ν must be finite and > 0.
    pub fn new(nu: f64) -> StudentT {
        StudentT { nu, ln_beta: ln_beta_half(0.5 * nu) }
    }

    /// F(t) = 1 − ½ I_x(ν/2, ½) for t > 0 and ½ I_x(ν/2, ½) for t ≤ 0, with x = ν/(ν + t²)
    /// (Abramowitz & Stegun §26.7); I by its continued fraction, on
    /// I_x(a, b) = 1 − I_{1−x}(b, a) where x ≥ (a + 1)/(a + b + 2). 1 − x = t²/(ν + t²) is
    /// computed as such. Relative accuracy (of the smaller of F and 1 − F, against mpmath):
    /// ~1e-15 for ν ≤ 25, ~1e-13 at ν = 10³, ~1e-12 at 10⁵, ~1e-10 at 10⁷ (the fraction's terms
    /// tend to −1 as ν grows). At most a few dozen iterations of the fraction.
    pub fn cdf(&self, t: f64) -> f64 {
        if t.is_nan() {
            return f64::NAN;
        }
        let (a, b) = (0.5 * self.nu, 0.5);
        let t2 = t * t;
        let (x, y) = if t2.is_infinite() { (0.0, 1.0) } else { (self.nu / (self.nu + t2), t2 / (self.nu + t2)) };
        // I_x(a, ½): the two-sided tail P(|T| > |t|).
        let two_tail = if x <= 0.0 {
            0.0
        } else if y <= 0.0 {
            1.0
        } else {
            // ln x = −ln(1 + t²/ν) exactly enough for a = ν/2 up to 10⁷.
            let front = (-a * (t2 / self.nu).ln_1p() + b * y.ln() - self.ln_beta).exp();
            if x < (a + 1.0) / (a + b + 2.0) {
                front * beta_cf(a, b, x) / a
            } else {
                1.0 - front * beta_cf(b, a, y) / b
            }
        };
        let tail = 0.5 * two_tail;
        if t > 0.0 {
            1.0 - tail
        } else {
            tail
        }
    }
}

/// The CDF of the Student-t with ν degrees of freedom at t ([`StudentT::cdf`]).
pub fn student_t_cdf(t: f64, nu: f64) -> f64 {
    StudentT::new(nu).cdf(t)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Counts heap allocations per thread, so a test can assert that a hot path makes none.
    pub(crate) mod alloc_count {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static COUNT: Cell<u64> = const { Cell::new(0) };
        }

        pub fn count() -> u64 {
            COUNT.with(|c| c.get())
        }

        fn bump() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }

        pub struct Counting;

        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, l: Layout) -> *mut u8 {
                bump();
                unsafe { System.alloc(l) }
            }
            unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
                bump();
                unsafe { System.alloc_zeroed(l) }
            }
            unsafe fn realloc(&self, p: *mut u8, l: Layout, size: usize) -> *mut u8 {
                bump();
                unsafe { System.realloc(p, l, size) }
            }
            unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
                unsafe { System.dealloc(p, l) }
            }
        }

        #[global_allocator]
        static A: Counting = Counting;
    }

    /// SplitMix64 (Steele, Lea & Flood 2014): a seeded generator with no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn uniform(&mut self) -> f64 {
            (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
        }
        /// Mean 0, variance 1 (Irwin–Hall with four uniforms: cheap, Gaussian enough here).
        fn noise(&mut self) -> f64 {
            (self.uniform() + self.uniform() + self.uniform() + self.uniform() - 2.0) * 3f64.sqrt()
        }
    }

    fn config(form: Form) -> BayesConfig {
        BayesConfig { form, alpha_bps: 1.0, ..Default::default() }
    }

    fn close(got: f64, want: f64, tol: f64, what: &str) {
        assert!((got - want).abs() <= tol, "{what}: {got} vs {want} (|Δ| = {:e} > {tol:e})", (got - want).abs());
    }

    /// Cholesky pivots of a symmetric `n × n` matrix (row-major); `None` at the first pivot ≤ 0.
    fn cholesky_pivots(c: &[f64], n: usize) -> Option<Vec<f64>> {
        let mut l = vec![0.0; n * n];
        let mut piv = Vec::with_capacity(n);
        for j in 0..n {
            let s = c[j * n + j] - (0..j).map(|k| l[j * n + k] * l[j * n + k]).sum::<f64>();
            if s.is_nan() || s <= 0.0 {
                return None;
            }
            piv.push(s);
            l[j * n + j] = s.sqrt();
            for i in j + 1..n {
                let v = c[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
                l[i * n + j] = v / l[j * n + j];
            }
        }
        Some(piv)
    }

    /// Inverse of a symmetric positive definite matrix (Gauss–Jordan; small test matrices).
    fn inverse(a: &[f64], n: usize) -> Vec<f64> {
        let mut m = a.to_vec();
        let mut inv = vec![0.0; n * n];
        (0..n).for_each(|i| inv[i * n + i] = 1.0);
        for c in 0..n {
            let p = (c..n).max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs())).unwrap();
            for k in 0..n {
                m.swap(c * n + k, p * n + k);
                inv.swap(c * n + k, p * n + k);
            }
            let d = m[c * n + c];
            for k in 0..n {
                m[c * n + k] /= d;
                inv[c * n + k] /= d;
            }
            for r in 0..n {
                if r != c {
                    let f = m[r * n + c];
                    for k in 0..n {
                        m[r * n + k] -= f * m[c * n + k];
                        inv[r * n + k] -= f * inv[c * n + k];
                    }
                }
            }
        }
        inv
    }

    // --- Student-t CDF -------------------------------------------------------------------------

    #[test]
    fn ln_gamma_known_values() {
        close(ln_gamma(0.5), 0.5 * std::f64::consts::PI.ln(), 1e-14, "ln Γ(½) = ln √π");
        close(ln_gamma(1.0), 0.0, 1e-14, "ln Γ(1)");
        close(ln_gamma(5.0), 24f64.ln(), 1e-13, "ln Γ(5) = ln 24");
        close(ln_gamma(0.1), 9.513_507_698_668_732f64.ln(), 1e-13, "ln Γ(0.1)");
        // ln Γ(100) = ln 99! = 359.1342053695754 (A&S 6.1; log-factorial tables).
        close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-11, "ln Γ(100)");
        // The asymptotic ln B(a, ½) joins the Lanczos one at a = 50.
        // ln B(a, ½) on both sides of the switch to the asymptotic series at a = 25 (mpmath,
        // 40 digits).
        let table: [(f64, f64); 10] = [
            (1.5, 0.4515827052894549),
            (10.0, -0.5664327963975939),
            (24.5, -1.0218699290183537),
            (25.0, -1.0320733026829274),
            (49.5, -1.3760961822742033),
            (50.0, -1.3811466014510412),
            (64.5, -1.5090297038883758),
            (100.0, -1.7289701552775227),
            (500.0, -2.5346891063280625),
            (5e5, -5.988816495777464),
        ];
        for (a, want) in table {
            // Lanczos' ln Γ(a) − ln Γ(a + ½) cancels ~2 digits below a = 25, the series none.
            let tol = if a < 25.0 { 3e-14 } else { 2e-15 * want.abs() };
            close(ln_beta_half(a), want, tol, &format!("ln B({a}, ½)"));
        }
    }

    #[test]
    fn student_t_cdf_closed_forms() {
        use std::f64::consts::PI;
        // ν = 1 is the Cauchy distribution, ν = 2 and ν = 4 have closed forms too.
        let cauchy = |t: f64| 0.5 + t.atan() / PI;
        let nu2 = |t: f64| 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
        let nu4 = |t: f64| 0.5 + t * (t * t + 6.0) / (2.0 * (t * t + 4.0).powf(1.5));
        close(student_t_cdf(1.0, 1.0), 0.75, 1e-15, "Cauchy F(1)");
        close(student_t_cdf(-1.0, 1.0), 0.25, 1e-15, "Cauchy F(−1)");
        assert_eq!(student_t_cdf(0.0, 7.0), 0.5);
        for i in -200..=200 {
            let t = i as f64 * 0.25;
            for (nu, exact) in [(1.0, &cauchy as &dyn Fn(f64) -> f64), (2.0, &nu2), (4.0, &nu4)] {
                close(student_t_cdf(t, nu), exact(t), 1e-14, &format!("F_{nu}({t})"));
            }
        }
        assert_eq!(student_t_cdf(f64::INFINITY, 3.0), 1.0);
        assert_eq!(student_t_cdf(f64::NEG_INFINITY, 3.0), 0.0);
        assert!(student_t_cdf(f64::NAN, 3.0).is_nan());
    }

    #[test]
    fn student_t_cdf_matches_high_precision_values() {
        // (ν, t, F(t)) from mpmath (40 digits: ½·betainc(ν/2, ½, 0, ν/(ν + t²)), regularised);
        // checked relative to the smaller of F and 1 − F, so the tails count digit by digit.
        let table = [
            (0.5, -40.0, 0.050704899964747176),
            (0.5, -2.5, 0.20048526452664658),
            (0.5, 1.7, 0.7599324350421152),
            (1.0, -40.0, 0.007956089912025814),
            (1.0, 0.3, 0.5927735790777423),
            (3.7, -40.0, 2.569312491070749e-06),
            (3.7, -6.0, 0.0024822856503695146),
            (3.7, -1.0, 0.18907069988022623),
            (3.7, 4.0, 0.9906055449906094),
            (4.0, -40.0, 1.1670081613006343e-06),
            (25.0, -40.0, 1.734990138879579e-24),
            (25.0, -6.0, 1.44266382944943e-06),
            (25.0, -0.1, 0.46057096830762817),
            (25.0, 4.0, 0.999752278164734),
            (999.0, -40.0, 6.213210598135712e-210),
            (999.0, -6.0, 1.3781345344522072e-09),
            (999.0, -2.5, 0.00628936379225461),
            (999.0, -1.0, 0.15877633008820619),
            (999.0, 0.3, 0.6178802167150942),
            (999.0, 1.7, 0.9552789008900343),
            (999.0, 4.0, 0.999965992645081),
            (1e5, -6.0, 9.899647278008813e-10),
            (1e5, -1.0, 0.158656463782055),
            (1e5, 1.7, 0.9554329823756685),
            (1e7, -6.0, 9.866213666838918e-10),
            (1e7, -2.5, 0.006209673268289235),
            (1e7, -0.1, 0.4601721637252762),
            (1e7, 4.0, 0.9999683285306549),
        ];
        for (nu, t, want) in table {
            let got = student_t_cdf(t, nu);
            let rel = (got - want).abs() / want.min(1.0 - want);
            // The fraction's terms tend to −1 as ν grows, so rounding grows with ν.
            let tol = if nu <= 1e3 {
                1e-13
            } else if nu <= 1e5 {
                1e-12
            } else {
                1e-9
            };
            assert!(rel < tol, "F_{nu}({t}) = {got:e} vs {want:e} (relative {rel:e})");
        }
    }

    #[test]
    fn student_t_cdf_tabulated_quantiles() {
        // Critical values as printed in t tables (3 decimals): (ν, t, F(t)).
        let table = [
            (1.0, 12.706, 0.975),
            (2.0, 4.303, 0.975),
            (5.0, 2.571, 0.975),
            (10.0, 2.228, 0.975),
            (30.0, 2.042, 0.975),
            (120.0, 1.980, 0.975),
            (10.0, 1.812, 0.95),
            (10.0, 3.169, 0.995),
            (3.0, 5.841, 0.995),
            (20.0, 1.325, 0.90),
        ];
        for (nu, t, p) in table {
            close(student_t_cdf(t, nu), p, 1e-4, &format!("F_{nu}({t})"));
            close(student_t_cdf(-t, nu), 1.0 - p, 1e-4, &format!("F_{nu}(−{t})"));
        }
        // Non-integer ν interpolates (ν = 2a with a = 2.75 after some updates).
        let (a, b, c) = (student_t_cdf(1.5, 5.0), student_t_cdf(1.5, 5.5), student_t_cdf(1.5, 6.0));
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn student_t_cdf_approaches_the_normal() {
        // Φ(1) = 0.8413447460685429, Φ(1.96) = 0.9750021048517795, Φ(−3) = 0.0013498980316301.
        let normal = [(1.0, 0.841_344_746_068_542_9), (1.96, 0.975_002_104_851_779_5), (-3.0, 0.001_349_898_031_630_1)];
        for (t, phi) in normal {
            let mut prev = f64::INFINITY;
            for nu in [10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7] {
                let d = (student_t_cdf(t, nu) - phi).abs();
                assert!(d < prev, "ν = {nu}, t = {t}: |F − Φ| = {d:e} did not shrink from {prev:e}");
                prev = d;
            }
            // F_ν − Φ = O(1/ν): under 1e-7 (relative 1e-5 in the tail) at ν = 10⁷.
            assert!(prev < 1e-7 && prev < 1e-5 * phi, "t = {t}: {prev:e}");
        }
    }

    // --- update and discount -------------------------------------------------------------------

    #[test]
    fn one_update_by_hand() {
        // m = 0, P = 1, a = b = 2; x = 2, y = 3: e = 3, q = 1 + 4 = 5, m = 2·3/5 = 1.2,
        // P = 1 − 4/5 = 0.2, a = 2.5, b = 2 + 9/10 = 2.9; then λ = ½ (uncapped): P = 0.4,
        // a = 1.25, b = 1.45.
        for form in [Form::Full, Form::Diagonal] {
            for (discount, p, a, b) in [(1.0, 0.2, 2.5, 2.9), (0.5, 0.4, 1.25, 1.45)] {
                let c = BayesConfig { form, discount, intercept: false, cap_at_prior: false, ..config(form) };
                let mut m = BayesOnline::new(c, 1, 1).unwrap();
                m.update_row(&[2.0], 3.0).unwrap();
                let s = m.posterior();
                close(s.mean[0], 1.2, 1e-15, "m");
                close(s.d[0], p, 1e-15, "P");
                close(s.a, a, 1e-15, "a");
                close(s.b, b, 1e-15, "b");
                assert_eq!(s.updates, 1);
            }
        }
    }

    /// The textbook update (dense P) for comparison: m += Px e/q, P −= PxxᵀP/q, then discount.
    fn textbook(m: &mut [f64], p: &mut [f64], ab: &mut (f64, f64), x: &[f64], y: f64, lambda: f64) {
        let n = m.len();
        let px: Vec<f64> = (0..n).map(|i| (0..n).map(|j| p[i * n + j] * x[j]).sum()).collect();
        let q = 1.0 + (0..n).map(|i| x[i] * px[i]).sum::<f64>();
        let e = y - (0..n).map(|i| m[i] * x[i]).sum::<f64>();
        for i in 0..n {
            m[i] += px[i] * e / q;
            for j in 0..n {
                p[i * n + j] = (p[i * n + j] - px[i] * px[j] / q) / lambda;
            }
        }
        ab.0 = (ab.0 + 0.5) * lambda;
        ab.1 = (ab.1 + 0.5 * e * e / q) * lambda;
    }

    #[test]
    fn bierman_update_matches_the_textbook_update() {
        let mut rng = Rng(7);
        let c = BayesConfig { discount: 0.97, prior_var: 3.0, prior_mean: 0.5, cap_at_prior: false, ..config(Form::Full) };
        let f = 4;
        let mut model = BayesOnline::new(c.clone(), 1, f).unwrap();
        let n = f + 1;
        let mut m = vec![0.5; n];
        let mut p = vec![0.0; n * n];
        (0..n).for_each(|i| p[i * n + i] = 3.0);
        let mut ab = (c.prior_a, c.prior_b);
        for step in 0..50 {
            let row: Vec<f32> = (0..f).map(|_| rng.noise() as f32).collect();
            let x: Vec<f64> = row.iter().map(|&v| v as f64).chain([1.0]).collect();
            let y = 2.0 * x[0] - x[2] + 0.3 * rng.noise();
            model.update_row(&row, y).unwrap();
            textbook(&mut m, &mut p, &mut ab, &x, y, c.discount);
            let s = model.posterior();
            let cov = model.covariance();
            for i in 0..n {
                close(s.mean[i], m[i], 1e-10, &format!("step {step}: m[{i}]"));
                for j in 0..n {
                    close(cov[i * n + j], p[i * n + j], 1e-10 * p[i * n + i].max(1.0), &format!("step {step}: P[{i},{j}]"));
                }
            }
            close(s.a, ab.0, 1e-12, "a");
            close(s.b, ab.1, 1e-10, "b");
        }
    }

    #[test]
    fn discounted_posterior_is_weighted_least_squares() {
        // After n observations (each followed by a discount, uncapped), the state is the
        // weighted ridge regression with weights wₖ = λⁿ⁻ᵏ⁺¹ and prior weight λⁿ:
        // Λ = λⁿ P₀⁻¹ + Σ wₖ xₖxₖᵀ, m = Λ⁻¹(λⁿ P₀⁻¹ m₀ + Σ wₖ xₖ yₖ), a = λⁿ a₀ + ½ Σ wₖ,
        // b = ½[λⁿ(2b₀ + m₀ᵀP₀⁻¹m₀) + Σ wₖ yₖ² − mᵀΛm].
        for (form, f, intercept) in [(Form::Full, 3, true), (Form::Full, 2, false), (Form::Diagonal, 1, false)] {
            for lambda in [1.0, 0.95] {
                let c =
                    BayesConfig { form, discount: lambda, intercept, prior_var: 2.0, prior_mean: 0.1, cap_at_prior: false, ..config(form) };
                let mut model = BayesOnline::new(c.clone(), 1, f).unwrap();
                let n = model.dim();
                let mut rng = Rng(11);
                let steps = 120;
                let mut lam = vec![0.0; n * n];
                let mut rhs = vec![0.0; n];
                let (mut sw, mut swy2) = (0.0, 0.0);
                for k in 1..=steps {
                    let row: Vec<f32> = (0..f).map(|_| rng.noise() as f32).collect();
                    let x: Vec<f64> = row.iter().map(|&v| v as f64).chain(if intercept { Some(1.0) } else { None }).collect();
                    let y = 1.5 * x[0] + 0.7 + rng.noise();
                    model.update_row(&row, y).unwrap();
                    let w = lambda.powi(steps - k + 1);
                    for i in 0..n {
                        rhs[i] += w * x[i] * y;
                        for j in 0..n {
                            lam[i * n + j] += w * x[i] * x[j];
                        }
                    }
                    sw += w;
                    swy2 += w * y * y;
                }
                let ln = lambda.powi(steps);
                for i in 0..n {
                    lam[i * n + i] += ln / 2.0;
                    rhs[i] += ln * 0.1 / 2.0;
                }
                let cov = inverse(&lam, n);
                let m: Vec<f64> = (0..n).map(|i| (0..n).map(|j| cov[i * n + j] * rhs[j]).sum()).collect();
                let mlm: f64 = (0..n).map(|i| (0..n).map(|j| m[i] * lam[i * n + j] * m[j]).sum::<f64>()).sum();
                let a = ln * c.prior_a + 0.5 * sw;
                let b = 0.5 * (ln * (2.0 * c.prior_b + n as f64 * 0.1 * 0.1 / 2.0) + swy2 - mlm);
                let s = model.posterior();
                let got = model.covariance();
                let what = format!("{form:?}, {f} features, λ = {lambda}");
                for i in 0..n {
                    close(s.mean[i], m[i], 1e-9, &format!("{what}: m[{i}]"));
                    for j in 0..n {
                        close(got[i * n + j], cov[i * n + j], 1e-9, &format!("{what}: P[{i},{j}]"));
                    }
                }
                close(s.a, a, 1e-9, &format!("{what}: a"));
                close(s.b, b, 1e-8 * b, &format!("{what}: b"));
            }
        }
    }

    #[test]
    fn diagonal_form_keeps_the_diagonal_of_the_exact_update() {
        let c = BayesConfig { discount: 1.0, ..config(Form::Diagonal) };
        let mut d = BayesOnline::new(c.clone(), 1, 3).unwrap();
        let mut f = BayesOnline::new(BayesConfig { form: Form::Full, ..c }, 1, 3).unwrap();
        d.update_row(&[1.0, -2.0, 0.5], 0.7).unwrap();
        f.update_row(&[1.0, -2.0, 0.5], 0.7).unwrap();
        let cov = f.covariance();
        let n = 4;
        for j in 0..n {
            close(d.posterior().d[j], cov[j * n + j], 1e-15, &format!("P[{j},{j}]"));
            // From a diagonal prior the first mean update is the exact one too.
            close(d.posterior().mean[j], f.posterior().mean[j], 1e-15, &format!("m[{j}]"));
        }
        assert_eq!((d.posterior().a, d.posterior().b), (f.posterior().a, f.posterior().b));
        assert!(d.posterior().u.is_empty());
    }

    #[test]
    fn unexcited_direction_returns_to_the_prior_instead_of_winding_up() {
        // Feature 1 is always 0: with the cap its variance factor stays at p₀ = 1 (the prior's,
        // as without forgetting); without it, it grows as λ⁻ᵗ.
        for form in [Form::Full, Form::Diagonal] {
            for cap in [true, false] {
                let c = BayesConfig { discount: 0.99, cap_at_prior: cap, intercept: false, ..config(form) };
                let mut m = BayesOnline::new(c, 1, 2).unwrap();
                let mut rng = Rng(3);
                for _ in 0..2000 {
                    let x = rng.noise();
                    m.update_row(&[x as f32, 0.0], 0.5 * x + rng.noise()).unwrap();
                }
                let p = m.covariance();
                let want = if cap { 1.0 } else { 0.99f64.powi(-2000) };
                close(p[3], want, 1e-9 * want, &format!("{form:?}, cap {cap}: P[1,1]"));
                // Feature 0 is informed: its variance is ≈ (1 − λ)/E[x²].
                assert!(p[0] < 0.03, "{form:?}: P[0,0] = {}", p[0]);
                close(m.posterior().mean[1], 0.0, 1e-12, "m[1] stays at the prior mean");
            }
        }
    }

    /// Data of the long runs: 8 features, one scaled ×100 and one ×0.01, x₇ = x₆ + 0.01·z
    /// (nearly collinear); in the last 10% of every 10⁶ rows x₅ = 0 and x₇ = x₆ exactly.
    const TRUE_W: [f64; 9] = [1.0, -0.5, 0.25, 0.02, 0.3, -1.5, 0.7, 0.3, 0.2];
    const NOISE: f64 = 0.5;

    fn long_row(rng: &mut Rng, t: u64, row: &mut [f32; 8]) -> (f64, bool) {
        let degenerate = t % 1_000_000 >= 900_000;
        let z: [f64; 8] = std::array::from_fn(|_| rng.noise());
        row[0] = z[0] as f32;
        row[1] = z[1] as f32;
        row[2] = (0.6 * z[0] + 0.8 * z[2]) as f32;
        row[3] = (100.0 * z[3]) as f32;
        row[4] = (0.01 * z[4]) as f32;
        row[5] = if degenerate { 0.0 } else { z[5] as f32 };
        row[6] = z[6] as f32;
        row[7] = if degenerate { row[6] } else { (z[6] + 0.01 * z[7]) as f32 };
        let y = TRUE_W[8] + row.iter().zip(&TRUE_W).map(|(&x, w)| x as f64 * w).sum::<f64>() + NOISE * rng.noise();
        (y, degenerate)
    }

    /// Runs `n` updates of `form` at λ = 0.999 and checks, every 10⁴: D > 0 and finite, P
    /// positive definite (Cholesky of U D Uᵀ), the estimates within 6 posterior standard
    /// deviations of the truth and the well-determined ones within 0.1, b/a within 20% of σ².
    fn long_run(form: Form, n: u64) {
        let c = BayesConfig { discount: 0.999, ..config(form) };
        let mut m = BayesOnline::new(c, 1, 8).unwrap();
        let mut rng = Rng(20_240_601);
        let mut row = [0.0f32; 8];
        let mut min_pivot = f64::INFINITY;
        for t in 0..n {
            let (y, degenerate) = long_row(&mut rng, t, &mut row);
            m.update_row(&row, y).unwrap();
            if (t + 1) % 10_000 != 0 {
                continue;
            }
            let s = m.posterior();
            assert!(s.d.iter().all(|d| d.is_finite() && *d > 0.0), "t = {t}: D = {:?}", s.d);
            assert!(s.mean.iter().all(|v| v.is_finite()), "t = {t}: m = {:?}", s.mean);
            let p = m.covariance();
            let piv = cholesky_pivots(&p, 9).unwrap_or_else(|| panic!("t = {t}: P is not positive definite: {p:?}"));
            min_pivot = piv.iter().copied().fold(min_pivot, f64::min);
            let s2 = s.b / s.a;
            assert!((s2 / (NOISE * NOISE) - 1.0).abs() < 0.2, "t = {t}: b/a = {s2}");
            if form == Form::Full {
                for j in 0..9 {
                    let sd = (s2 * p[j * 9 + j]).sqrt();
                    assert!((s.mean[j] - TRUE_W[j]).abs() < 6.0 * sd, "t = {t}: m[{j}] = {} vs {} (sd {sd})", s.mean[j], TRUE_W[j]);
                }
            }
            let mut determined = vec![0, 1, 2, 3, 8];
            if !degenerate {
                determined.push(5);
            }
            for j in determined {
                assert!((s.mean[j] - TRUE_W[j]).abs() < 0.1, "t = {t}: m[{j}] = {} vs {}", s.mean[j], TRUE_W[j]);
            }
            if form == Form::Full {
                // Only the sum of the collinear pair's weights is well determined.
                let sum = s.mean[6] + s.mean[7];
                assert!((sum - 1.0).abs() < 0.1, "t = {t}: m₆ + m₇ = {sum}");
            }
        }
        assert!(min_pivot > 0.0 && m.posterior().updates == n);
    }

    #[test]
    fn full_form_stays_positive_definite_over_ten_million_updates() {
        long_run(Form::Full, 10_000_000);
    }

    #[test]
    fn diagonal_form_stays_positive_over_a_million_updates() {
        long_run(Form::Diagonal, 1_000_000);
    }

    // --- predictor -----------------------------------------------------------------------------

    #[test]
    fn predictive_from_the_prior_by_hand() {
        // m = 0, P = 1, a = b = 2, x = 1: location 0, scale² = (b/a)(1 + 1) = 2, ν = 4,
        // std = √2·√(4/2) = 2; P(down) = P(up) = F₄(−1/√2) at α = 1.
        let c = BayesConfig { intercept: false, ..config(Form::Full) };
        let m = BayesOnline::new(c, 1, 1).unwrap();
        let p = m.predict_row(&[1.0]).unwrap();
        assert_eq!((p.mean, p.dof), (0.0, 4.0));
        close(p.scale, 2f64.sqrt(), 1e-15, "scale");
        close(p.std, 2.0, 1e-15, "std");
        let t = -1.0 / 2f64.sqrt();
        let f4 = 0.5 + t * (t * t + 6.0) / (2.0 * (t * t + 4.0f64).powf(1.5));
        close(p.probs[0], f4, 1e-14, "P(down)");
        close(p.probs[2], f4, 1e-14, "P(up)");
        close(p.probs.iter().sum(), 1.0, 1e-15, "Σ p");
        // At α = 0 nothing is stationary.
        let c0 = BayesConfig { alpha_bps: 0.0, intercept: false, ..config(Form::Full) };
        let p0 = BayesOnline::new(c0, 1, 1).unwrap().predict_row(&[1.0]).unwrap();
        assert_eq!(p0.probs[1], 0.0);
        close(p0.probs[0], 0.5, 1e-15, "P(down) at α = 0");
        // ν ≤ 2: the variance is infinite.
        let c1 = BayesConfig { prior_a: 1.0, intercept: false, ..config(Form::Full) };
        assert_eq!(BayesOnline::new(c1, 1, 1).unwrap().predict_row(&[1.0]).unwrap().std, f64::INFINITY);
    }

    #[test]
    fn predict_fills_every_output_and_reads_the_last_row_of_a_window() {
        for form in [Form::Full, Form::Diagonal] {
            let mut m = BayesOnline::new(config(form), 3, 2).unwrap();
            let info = m.info().clone();
            assert_eq!((info.name.as_str(), info.window, info.features, info.regression, info.uncertainty), (NAME, 3, 2, true, true));
            assert_eq!(info.classes, ["down", "stationary", "up"]);
            let mut rng = Rng(5);
            for _ in 0..500 {
                let x: Vec<f32> = (0..12).map(|_| rng.noise() as f32).collect();
                // y depends on the last row of each window only.
                let y: Vec<f32> = x.chunks(6).map(|w| 3.0 * w[4] - 2.0 * w[5] + 1.0 + 0.1 * rng.noise() as f32).collect();
                let b = Batch::new(&x, 2, 3, 2).unwrap();
                m.update(&b, &Matured { classes: &[0, 0], values: &y }).unwrap();
            }
            let x = [9.0, 9.0, -9.0, 9.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0];
            let mut out = Outputs::new(3);
            m.predict(&Batch::new(&x, 2, 3, 2).unwrap(), &mut out).unwrap();
            assert_eq!((out.len(), out.probs.len(), out.regression.len(), out.std.len()), (2, 6, 2, 2));
            close(out.regression[0] as f64, 3.0, 0.05, "E[y | (1, ½)]");
            close(out.regression[1] as f64, -2.0, 0.05, "E[y | (−1, 0)]");
            for (k, row) in out.probs.chunks(3).enumerate() {
                close(row.iter().map(|&v| v as f64).sum(), 1.0, 1e-6, "Σ p");
                let p = m.predict_row(&x[6 * k + 4..6 * k + 6]).unwrap();
                assert_eq!(out.regression[k], p.mean as f32);
                assert_eq!(out.std[k], p.std as f32);
                assert!(p.std > 0.09 && p.std < 0.2, "{form:?}: std {}", p.std);
            }
            assert!(out.probs[2] > 0.99 && out.probs[3] > 0.99, "{:?}", out.probs);
        }
    }

    #[test]
    fn bad_inputs_are_rejected_and_leave_the_state_alone() {
        let mut m = BayesOnline::new(config(Form::Full), 1, 2).unwrap();
        m.update_row(&[1.0, 2.0], 0.5).unwrap();
        let before = m.state();
        let x = [1.0f32, 2.0, 3.0, 4.0];
        let b = Batch::new(&x, 2, 1, 2).unwrap();
        let e = m.update(&b, &Matured { classes: &[0, 1], values: &[1.0] }).unwrap_err().to_string();
        assert!(e.contains("values") && e.contains("1 for 2"), "{e}");
        let e = m.update(&b, &Matured { classes: &[0, 1], values: &[1.0, f32::NAN] }).unwrap_err().to_string();
        assert!(e.contains("window 1"), "{e}");
        let nan = [f32::NAN, 0.0];
        let raw = Batch { x: &nan, batch: 1, window: 1, features: 2, window_ofi: None };
        assert!(m.update(&raw, &Matured { classes: &[0], values: &[1.0] }).is_err());
        let two = [0.0, 0.0, f32::NAN, 0.0];
        let mut out = Outputs::new(3);
        m.predict(&Batch::new(&x[..2], 1, 1, 2).unwrap(), &mut out).unwrap();
        let held = out.clone();
        assert!(m.predict(&Batch { x: &two, batch: 2, window: 1, features: 2, window_ofi: None }, &mut out).is_err());
        assert_eq!(out, held, "a failed batch leaves the outputs alone");
        let short = Batch { x: &x[..3], batch: 2, window: 1, features: 2, window_ofi: None };
        assert!(m.predict(&short, &mut out).is_err() && m.update(&short, &Matured { classes: &[0, 0], values: &[0.0, 0.0] }).is_err());
        assert!(m.update_row(&[1.0], 0.0).is_err());
        assert!(m.update_row(&[1.0, f32::INFINITY], 0.0).is_err());
        assert_eq!(m.state(), before);
        assert!(m.predict(&Batch::new(&x, 1, 2, 2).unwrap(), &mut Outputs::new(3)).is_err(), "window 2 for a row model");
        assert!(m.predict(&b, &mut Outputs::new(2)).is_err(), "two-class outputs");
        for bad in [
            BayesConfig { discount: 0.0, ..config(Form::Full) },
            BayesConfig { discount: 1.5, ..config(Form::Full) },
            BayesConfig { prior_var: 0.0, ..config(Form::Full) },
            BayesConfig { prior_a: -1.0, ..config(Form::Full) },
            BayesConfig { alpha_bps: f64::NAN, ..config(Form::Full) },
        ] {
            assert!(BayesOnline::new(bad, 1, 2).is_err());
        }
        assert!(BayesOnline::new(BayesConfig { intercept: false, ..config(Form::Full) }, 1, 0).is_err());
    }

    #[test]
    fn state_round_trips_through_serde() {
        for form in [Form::Full, Form::Diagonal] {
            let mut m = BayesOnline::new(config(form), 1, 3).unwrap();
            let mut rng = Rng(9);
            for _ in 0..100 {
                let row = [rng.noise() as f32, rng.noise() as f32, rng.noise() as f32];
                m.update_row(&row, row[0] as f64 + rng.noise()).unwrap();
            }
            let json = serde_json::to_string(&m).unwrap();
            let back: BayesOnline = serde_json::from_str(&json).unwrap();
            assert_eq!(back.state(), m.state());
            assert_eq!(back.predict_row(&[0.3, -0.2, 1.0]).unwrap(), m.predict_row(&[0.3, -0.2, 1.0]).unwrap());
            // A state that does not fit its shape or form is refused.
            let mut s = m.state();
            s.features = 4;
            assert!(serde_json::from_str::<BayesOnline>(&serde_json::to_string(&s).unwrap()).is_err());
            let mut s = m.state();
            s.posterior.d[0] = -1.0;
            assert!(BayesOnline::from_state(s).is_err());
            let mut s = m.state();
            s.config.form = if form == Form::Full { Form::Diagonal } else { Form::Full };
            assert!(BayesOnline::from_state(s).is_err());
        }
        // The config's defaults and field names.
        let c: BayesConfig = serde_json::from_str(r#"{"alpha_bps": 0.8, "form": "diagonal"}"#).unwrap();
        assert_eq!(c, BayesConfig { alpha_bps: 0.8, form: Form::Diagonal, ..Default::default() });
        assert!(serde_json::from_str::<BayesConfig>(r#"{"alpha_bps": 0.8, "lambda": 0.9}"#).is_err());
    }

    #[test]
    fn predict_and_update_allocate_nothing() {
        for form in [Form::Full, Form::Diagonal] {
            let mut m = BayesOnline::new(config(form), 1, 90).unwrap();
            let mut rng = Rng(1);
            let x: Vec<f32> = (0..90 * 16).map(|_| rng.noise() as f32).collect();
            let y: Vec<f32> = (0..16).map(|_| rng.noise() as f32).collect();
            let mut out = Outputs::new(3);
            out.probs.reserve(3 * 16 * 10);
            out.regression.reserve(16 * 10);
            out.std.reserve(16 * 10);
            let before = alloc_count::count();
            for i in 0..10 {
                let b = Batch::new(&x, 16, 1, 90).unwrap();
                m.predict(&b, &mut out).unwrap();
                m.update(&b, &Matured { classes: &[], values: &y }).unwrap();
                m.update_row(&x[90 * i..90 * (i + 1)], 0.1).unwrap();
                m.predict_row(&x[..90]).unwrap();
            }
            assert_eq!(alloc_count::count() - before, 0, "{form:?}");
            assert_eq!(out.len(), 160);
        }
    }

    // --- changepoints --------------------------------------------------------------------------

    #[test]
    fn changepoint_predictive_is_the_student_t_density() {
        // From the prior μ₀ = 0, κ₀ = α₀ = β₀ = 1: ν = 2, scale² = β(κ + 1)/(ακ) = 2, and the
        // t₂ density is (1 + t²/2)^(−3/2) / (2√2) per unit of t.
        for x in [0.0, 0.7, -3.0, 25.0] {
            let t = x / 2f64.sqrt();
            let want = (1.0 + t * t / 2.0).powf(-1.5) / (2.0 * 2f64.sqrt()) / 2f64.sqrt();
            close(Changepoints::ln_predictive(x, 0.0, 1.0, 1.0, 1.0), want.ln(), 1e-13, &format!("ln π({x})"));
        }
        // One observation x = 2 updates the Normal–Gamma statistics by hand: μ = 1, κ = 2,
        // α = 1.5, β = 1 + 1·4/(2·2) = 2 (run length 1), and run 0 is the prior again.
        let mut c = Changepoints::new(ChangepointConfig::default()).unwrap();
        c.update(2.0).unwrap();
        let s = c.state();
        assert_eq!((s.mean[1], s.kappa[1], s.alpha[1], s.beta[1]), (1.0, 2.0, 1.5, 2.0));
        assert_eq!((s.mean[0], s.kappa[0], s.alpha[0], s.beta[0]), (0.0, 1.0, 1.0, 1.0));
        close(s.prob[0], 1e-3, 1e-15, "P(r = 0) = H");
        close(s.prob[1], 1.0 - 1e-3, 1e-15, "P(r = 1)");
    }

    #[test]
    fn changepoints_find_a_shift_in_mean_and_in_variance() {
        for (shift, scale) in [(3.0, 1.0), (0.0, 4.0)] {
            let mut c = Changepoints::new(ChangepointConfig { hazard: 1.0 / 500.0, ..Default::default() }).unwrap();
            let mut rng = Rng(17);
            for t in 0..800 {
                let x = if t < 600 { rng.noise() } else { shift + scale * rng.noise() };
                c.update(x).unwrap();
                close(c.run_length_probs().iter().sum(), 1.0, 1e-12, "Σ P(r)");
                if t == 599 {
                    assert!(c.prob_run_below(50) < 0.05, "before the change: P(r < 50) = {}", c.prob_run_below(50));
                    assert!(c.map_run_length() > 400, "before the change: MAP run {}", c.map_run_length());
                }
            }
            // 200 observations after the change: the run starts near t = 600.
            let map = c.map_run_length();
            assert!((190..=205).contains(&map), "shift {shift}, scale {scale}: MAP run length {map}");
            assert!(c.prob_run_below(230) > 0.99, "P(r < 230) = {}", c.prob_run_below(230));
        }
    }

    #[test]
    fn changepoint_runs_are_truncated_and_extremes_do_not_underflow() {
        let mut c = Changepoints::new(ChangepointConfig { max_run: 50, ..Default::default() }).unwrap();
        let mut rng = Rng(23);
        for _ in 0..1000 {
            c.update(rng.noise()).unwrap();
        }
        assert_eq!(c.run_length_probs().len(), 50);
        assert_eq!(c.map_run_length(), 49, "{:?}", c.run_length_probs());
        // An observation no run explains still leaves a distribution (log-space weights).
        c.update(1e150).unwrap();
        let p = c.run_length_probs();
        assert!(p.iter().all(|v| v.is_finite()) && (p.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{p:?}");
        assert!(c.update(f64::NAN).is_err());
        assert!(Changepoints::new(ChangepointConfig { hazard: 0.0, ..Default::default() }).is_err());
        assert!(Changepoints::new(ChangepointConfig { max_run: 1, ..Default::default() }).is_err());
        // Serde round trip; a mis-shaped state is refused.
        let back: Changepoints = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back.state(), c.state());
        let mut s = c.state();
        s.beta.pop();
        assert!(Changepoints::from_state(s).is_err());
        // No allocation per observation, also after deserialising (capacity reserved).
        let mut back = back;
        let mut fresh = Changepoints::new(ChangepointConfig { max_run: 64, ..Default::default() }).unwrap();
        let before = alloc_count::count();
        for _ in 0..200 {
            back.update(rng.noise()).unwrap();
            fresh.update(rng.noise()).unwrap();
        }
        assert_eq!(alloc_count::count() - before, 0);
    }

    #[test]
    fn residuals_of_the_regression_feed_the_detector() {
        // The regression's standardised residuals are ~N(0, 1) while the weights hold; when the
        // weights jump at t = 2500, the residuals burst until the regression (λ = 0.99) adapts,
        // and the detector sees the burst begin.
        let mut m = BayesOnline::new(BayesConfig { discount: 0.99, ..config(Form::Full) }, 1, 2).unwrap();
        let mut c = Changepoints::new(ChangepointConfig { hazard: 1.0 / 1000.0, ..Default::default() }).unwrap();
        let mut rng = Rng(31);
        let (mut z2, mut min_map, mut detected) = (0.0, usize::MAX, None);
        for t in 0..2600 {
            let x = [rng.noise() as f32, rng.noise() as f32];
            let w = if t < 2500 { [1.0, -1.0] } else { [-1.0, 2.0] };
            let y = w[0] * x[0] as f64 + w[1] * x[1] as f64 + 0.5 * rng.noise();
            let z = m.update_row(&x, y).unwrap();
            c.update(z).unwrap();
            if (1000..2500).contains(&t) {
                z2 += z * z / 1500.0;
                min_map = min_map.min(c.map_run_length());
            }
            if t >= 2500 && detected.is_none() && c.prob_run_below(50) > 0.9 {
                detected = Some(t);
            }
        }
        assert!((z2 - 1.0).abs() < 0.1, "E z² = {z2}");
        assert_eq!(min_map, 999, "no changepoint before the jump: the longest run stays most probable");
        let t = detected.expect("the jump is detected");
        assert!(t < 2520, "detected at {t}");
    }
}
