//! The one interface between a trained model and whatever consumes it (`eval`, `predict`, the
//! inference server, the backtest, the ensemble): prepared inputs in, per-window outputs out.
//! Every model family implements [`Predictor`]: burn models (flowcast-train), their candle twins
//! (flowcast-serve), the baselines (here); online models add [`OnlinePredictor`].

use crate::error::{ContractError, Result};
use crate::window::{WindowBatcher, WindowSet};

/// The prepared inputs of `batch` windows: exactly the normalised columns of the card's
/// preprocessing, row-major `[batch, window, features]`.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub x: &'a [f32],
    pub batch: usize,
    pub window: usize,
    pub features: usize,
    /// Per window: the best-level OFI (Cont, Kukanov & Stoikov 2014) summed over its rows, un-
    /// normalised — the input of the OFI baseline. `None` where the caller has not computed it.
    pub window_ofi: Option<&'a [f64]>,
}

impl<'a> Batch<'a> {
    /// Checks the buffer against its stated shape and that every value is finite.
    pub fn new(x: &'a [f32], batch: usize, window: usize, features: usize) -> Result<Batch<'a>> {
        let want = batch.checked_mul(window).and_then(|v| v.checked_mul(features));
        if want != Some(x.len()) {
            return Err(ContractError::input("x", format!("{} values is not {batch}×{window}×{features}", x.len())));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            let f = features.max(1);
            let w = window.max(1);
            return Err(ContractError::input(
                "x",
                format!("value {} at [window {}, step {}, feature {}] is not finite", x[i], i / (w * f), i / f % w, i % f),
            ));
        }
        Ok(Batch { x, batch, window, features, window_ofi: None })
    }

    pub fn with_ofi(mut self, ofi: &'a [f64]) -> Result<Batch<'a>> {
        if ofi.len() != self.batch {
            return Err(ContractError::input("window_ofi", format!("{} values for {} windows", ofi.len(), self.batch)));
        }
        self.window_ofi = Some(ofi);
        Ok(self)
    }
}

/// What a predictor returns for a batch: class probabilities in the card's class order and,
/// where the model has them, a regression estimate (bps) and its predictive standard deviation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    /// Classes per window (k).
    pub classes: usize,
    /// `[windows × k]`, each row summing to 1; empty for a pure regression model.
    pub probs: Vec<f32>,
    /// `[windows]` expected move in bps; empty where the model has none.
    pub regression: Vec<f32>,
    /// `[windows]` predictive standard deviation of `regression` (bps); empty where none.
    pub std: Vec<f32>,
}

impl Outputs {
    pub fn new(classes: usize) -> Outputs {
        Outputs { classes, ..Default::default() }
    }
    /// Windows held.
    pub fn len(&self) -> usize {
        if self.classes > 0 && !self.probs.is_empty() {
            self.probs.len() / self.classes
        } else {
            self.regression.len()
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn clear(&mut self) {
        self.probs.clear();
        self.regression.clear();
        self.std.clear();
    }
    /// Appends softmax(logits) row by row (`[n × k]`).
    pub fn push_logits(&mut self, logits: &[f32]) {
        let k = self.classes;
        for row in logits.chunks(k) {
            let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = row.iter().map(|v| (v - mx).exp()).sum();
            self.probs.extend(row.iter().map(|v| (v - mx).exp() / s));
        }
    }
}

/// What a predictor is: enough for a consumer to validate requests and to describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictorInfo {
    /// Registry name of the family or architecture (`lstm`, `deeplob`, `majority`, ...).
    pub name: String,
    /// Class names in output order (the card's).
    pub classes: Vec<String>,
    /// Rows per window (1 for row models).
    pub window: usize,
    /// Input columns per row.
    pub features: usize,
    /// Whether [`Outputs::regression`] / [`Outputs::std`] are filled.
    pub regression: bool,
    pub uncertainty: bool,
    /// Whether the predictor reads [`Batch::window_ofi`].
    pub needs_window_ofi: bool,
}

impl PredictorInfo {
    /// A window classifier over `window × features` inputs.
    pub fn classifier(name: &str, classes: &[String], window: usize, features: usize) -> PredictorInfo {
        PredictorInfo {
            name: name.into(),
            classes: classes.to_vec(),
            window,
            features,
            regression: false,
            uncertainty: false,
            needs_window_ofi: false,
        }
    }

    /// The shape checks every implementation makes before computing (errors name the field).
    pub fn check(&self, b: &Batch<'_>) -> Result<()> {
        if b.features != self.features {
            return Err(ContractError::input(
                "x",
                format!("{} expects {} features per step, got {}", self.name, self.features, b.features),
            ));
        }
        if b.window != self.window {
            return Err(ContractError::input("x", format!("{} expects windows of {} steps, got {}", self.name, self.window, b.window)));
        }
        if self.needs_window_ofi && b.window_ofi.is_none() {
            return Err(ContractError::input("window_ofi", format!("{} needs each window's OFI sum", self.name)));
        }
        Ok(())
    }
}

/// A trained model, any family.
pub trait Predictor {
    fn info(&self) -> &PredictorInfo;
    /// Appends the outputs of every window of `batch` to `out` (which has `classes` set).
    fn predict(&self, batch: &Batch<'_>, out: &mut Outputs) -> Result<()>;
}

/// A label that has matured (its horizon has passed), for an online update.
#[derive(Clone, Copy, Debug)]
pub struct Matured<'a> {
    /// Class index per window.
    pub classes: &'a [u8],
    /// Target value per window in bps (empty when the target records none).
    pub values: &'a [f32],
}

/// A model that learns while it predicts. Callers must hand `update` only labels whose horizon
/// has passed at the time of the update (prequential protocol: predict at t, update at t + h).
pub trait OnlinePredictor: Predictor {
    fn update(&mut self, batch: &Batch<'_>, labels: &Matured<'_>) -> Result<()>;
}

/// Outputs for every window of `set`, `chunk` windows per call (the OFI sums are taken from
/// `window_ofi`, indexed by each window's end row).
pub fn predict_set(p: &dyn Predictor, set: &WindowSet, window_ofi: &[f64], chunk: usize) -> Result<Outputs> {
    let info = p.info();
    let mut out = Outputs::new(info.classes.len());
    let f = set.data.cols();
    let b = WindowBatcher { window: set.window, features: f };
    let (mut buf, mut ofi) = (Vec::new(), Vec::new());
    let idx: Vec<usize> = (0..set.len()).collect();
    for c in idx.chunks(chunk.max(1)) {
        b.fill(&set.items(c), &mut buf);
        ofi.clear();
        ofi.extend(c.iter().map(|&i| window_ofi.get(set.ends[i] as usize).copied().unwrap_or(0.0)));
        let batch = Batch { x: &buf, batch: c.len(), window: set.window, features: f, window_ofi: Some(&ofi) };
        info.check(&batch)?;
        p.predict(&batch, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_checks_shape_and_finiteness_naming_the_position() {
        let x = vec![0.0f32; 2 * 3 * 4];
        assert!(Batch::new(&x, 2, 3, 4).is_ok());
        let e = Batch::new(&x, 2, 3, 5).unwrap_err().to_string();
        assert!(e.contains("input: x") && e.contains("2×3×5"), "{e}");
        let mut y = x.clone();
        y[12 + 2 * 4 + 3] = f32::NAN; // window 1 (12 values each), step 2, feature 3
        let e = Batch::new(&y, 2, 3, 4).unwrap_err().to_string();
        assert!(e.contains("window 1, step 2, feature 3"), "{e}");
    }

    #[test]
    fn logits_become_probabilities() {
        let mut o = Outputs::new(3);
        o.push_logits(&[0.0, 0.0, 0.0, 1000.0, 0.0, -1000.0]);
        assert_eq!(o.len(), 2);
        assert!((o.probs[0] - 1.0 / 3.0).abs() < 1e-6);
        assert!((o.probs[3] - 1.0).abs() < 1e-6 && o.probs[5] == 0.0);
    }
}
