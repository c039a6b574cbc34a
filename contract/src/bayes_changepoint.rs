//! `bayes_online` with changepoint-driven forgetting (`[[model]] changepoint = {...}`): the
//! standardised one-step residuals z of [`BayesOnline::update_row`] feed Bayesian online
//! changepoint detection ([`Changepoints`], Adams & MacKay 2007); when the posterior probability
//! of a change within the last `within` observations exceeds `threshold`, the model forgets
//! faster once (`forget`: P ← P/φ, a ← φa, b ← φb) or restarts from its prior (`reset`), then
//! waits `within` observations before it may fire again (the short-run mass stays high for that
//! long after one change). Formulas: docs/models.md, "Changepoints".

use crate::bayes::{BayesOnline, ChangepointConfig, Changepoints};
use crate::error::{ContractError, Result};
use crate::predictor::{Batch, Matured, OnlinePredictor, Outputs, Predictor, PredictorInfo};
use serde::{Deserialize, Serialize};

/// What a detected changepoint does to the regression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// One extra discount by `forget`.
    #[default]
    Forget,
    /// Back to the prior.
    Reset,
}

fn d_hazard() -> f64 {
    1e-3
}
fn d_max_run() -> usize {
    200
}
fn d_within() -> usize {
    10
}
fn d_threshold() -> f64 {
    0.5
}
fn d_forget() -> f64 {
    0.5
}

/// The `changepoint` table of a `bayes_online` model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeResponse {
    /// Constant hazard H of the detector (expected run 1/H observations).
    #[serde(default = "d_hazard")]
    pub hazard: f64,
    /// Run lengths the detector tracks.
    #[serde(default = "d_max_run")]
    pub max_run: usize,
    /// Fire when P(run length < within) > threshold; also the refractory period.
    #[serde(default = "d_within")]
    pub within: usize,
    #[serde(default = "d_threshold")]
    pub threshold: f64,
    #[serde(default)]
    pub action: ChangeAction,
    /// φ of the `forget` action, in (0, 1].
    #[serde(default = "d_forget")]
    pub forget: f64,
}

impl ChangeResponse {
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.detector().validate()?;
        if self.within == 0 || self.within >= self.max_run {
            return Err(format!("changepoint: within must be in 1..max_run ({}), got {}", self.max_run, self.within));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!("changepoint: threshold must be in (0, 1), got {}", self.threshold));
        }
        if !(self.forget > 0.0 && self.forget <= 1.0) {
            return Err(format!("changepoint: forget must be in (0, 1], got {}", self.forget));
        }
        Ok(())
    }

    fn detector(&self) -> ChangepointConfig {
        ChangepointConfig { hazard: self.hazard, max_run: self.max_run, ..ChangepointConfig::default() }
    }
}

/// A [`BayesOnline`] whose updates also run the detector and respond to what it finds.
#[derive(Clone, Debug)]
pub struct AdaptiveBayes {
    pub model: BayesOnline,
    detector: Changepoints,
    response: ChangeResponse,
    since: usize,
    /// Times the response fired.
    pub fired: u64,
}

impl AdaptiveBayes {
    pub fn new(model: BayesOnline, response: ChangeResponse) -> Result<AdaptiveBayes> {
        response.validate().map_err(ContractError::Invalid)?;
        let detector = Changepoints::new(response.detector())?;
        Ok(AdaptiveBayes { model, detector, response, since: 0, fired: 0 })
    }

    /// [`BayesOnline::update_row`], then the detector and, when it fires, the response.
    pub fn update_row(&mut self, row: &[f32], y: f64) -> Result<()> {
        let z = self.model.update_row(row, y)?;
        self.detector.update(z)?;
        self.since += 1;
        let r = &self.response;
        if self.since >= r.within && self.detector.prob_run_below(r.within) > r.threshold {
            match r.action {
                crate::bayes_changepoint::ChangeAction::Forget => self.model.forget(r.forget),
                crate::bayes_changepoint::ChangeAction::Reset => self.model.reset(),
            }
            self.fired += 1;
            self.since = 0;
        }
        Ok(())
    }
}

impl Predictor for AdaptiveBayes {
    fn info(&self) -> &PredictorInfo {
        self.model.info()
    }
    fn predict(&self, batch: &Batch<'_>, out: &mut Outputs) -> Result<()> {
        self.model.predict(batch, out)
    }
}

impl OnlinePredictor for AdaptiveBayes {
    /// As [`BayesOnline`]'s: the last row of each window with its matured value, in order.
    fn update(&mut self, batch: &Batch<'_>, labels: &Matured<'_>) -> Result<()> {
        self.model.info().check(batch)?;
        if labels.values.len() != batch.batch {
            return Err(ContractError::input("values", format!("{} values for {} windows", labels.values.len(), batch.batch)));
        }
        let f = batch.features;
        for (i, &y) in labels.values.iter().enumerate() {
            let s = (i * batch.window + batch.window - 1) * f;
            self.update_row(&batch.x[s..s + f], y as f64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bayes::BayesConfig;

    /// y = w·x + noise with w jumping from +2 to −2 at step 3000.
    fn stream(n: usize) -> Vec<(f32, f64)> {
        let mut s = 1u64;
        let mut u = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        (0..n)
            .map(|i| {
                let x = 2.0 * u();
                let w = if i < 3000 { 2.0 } else { -2.0 };
                (x as f32, w * x + 0.1 * u())
            })
            .collect()
    }

    #[test]
    fn a_weight_jump_fires_the_detector_and_the_response_recovers_faster() {
        let cfg = BayesConfig { discount: 1.0, ..Default::default() };
        let data = stream(3200);
        let mut plain = BayesOnline::new(cfg.clone(), 1, 1).unwrap();
        let mut adapt = AdaptiveBayes::new(
            BayesOnline::new(cfg, 1, 1).unwrap(),
            ChangeResponse { action: ChangeAction::Reset, ..serde_json::from_str("{}").unwrap() },
        )
        .unwrap();
        for &(x, y) in &data[..3000] {
            plain.update_row(&[x], y).unwrap();
            adapt.update_row(&[x], y).unwrap();
        }
        assert_eq!(adapt.fired, 0, "no change before the jump");
        for &(x, y) in &data[3000..3100] {
            plain.update_row(&[x], y).unwrap();
            adapt.update_row(&[x], y).unwrap();
        }
        assert!(adapt.fired >= 1, "the jump was not detected");
        // Without forgetting the plain model's weight is still ~ the average; the reset one is near −2.
        let w = |m: &BayesOnline| m.posterior().mean[0];
        assert!((w(&adapt.model) + 2.0).abs() < 0.2, "adaptive weight {}", w(&adapt.model));
        assert!(w(&plain) > 1.0, "plain weight {}", w(&plain));
        let bad = ChangeResponse { within: 0, ..serde_json::from_str("{}").unwrap() };
        assert!(bad.validate().unwrap_err().contains("within"));
    }
}
