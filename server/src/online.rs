//! Online learning in stream mode: a model whose family learns online (`bayes_online`; an
//! `ensemble` whose meta-learner is Hedge) gets its own copy of the learned state in every
//! stream, predicts each window with the state as it is, and absorbs each window's label once it
//! has matured — in the prequential order of `flowcast_contract::prequential` (docs/serve.md,
//! "Online models in stream mode"):
//!
//! at each sample row r: (1) the streaming labeller ([`StreamLabeller`]) hands back the labels
//! that mature at r, in the order of the rows they label; each whose row ended a complete window
//! updates the state with that window; (2) if r ends a complete window it is predicted.
//!
//! Offline, `prequential` absorbs the labels with maturity ≤ e_j just before predicting window
//! j, in maturity order: the same updates in the same order before every prediction, so a
//! stream replaying a dataset serves the offline prequential outputs (tests/cli/online.rs).
//!
//! Bounded per stream: the windows still waiting for a label are kept as a ring of the last
//! T + H normalised rows (H = the horizon in rows; for a clock horizon the stream limit
//! `online_max_pending`), plus the labeller and the model state; the total is checked against
//! `online_max_bytes` when the stream opens. A stream reset clears the rows and pending labels
//! and keeps the learned state; across a feed gap labels mature unlabelled (no label spans a gap,
//! as offline) and the state is kept too.

use crate::error::ApiError;
use flowcast_contract::bayes::BayesOnline;
use flowcast_contract::card::Family;
use flowcast_contract::ensemble::{EnsemblePredictor, MetaLearner};
use flowcast_contract::labeller::StreamLabeller;
use flowcast_contract::predictor::{Batch, Matured, OnlinePredictor, Outputs, Predictor};
use flowcast_contract::stream::{InputStream, Step};
use flowcast_contract::ModelCard;
use flowcast_datasets::Event;
use std::sync::Arc;

/// The learned state of an online model, as loaded (the prototype each stream copies).
#[derive(Clone)]
pub enum OnlineModel {
    /// Bayesian online regression: the whole posterior is per stream.
    Bayes(Box<BayesOnline>),
    /// A Hedge ensemble: the members are shared and frozen, the meta-learner's losses per stream.
    Hedge { ensemble: Arc<EnsemblePredictor>, meta: MetaLearner },
}

impl OnlineModel {
    /// Whether a card's family learns online by default: `bayes_online` yes; `ensemble` when its
    /// meta-learner is Hedge; every other family and meta-learner is served frozen.
    pub fn default_for(card: &ModelCard) -> bool {
        match card.family {
            Family::BayesOnline => true,
            Family::Ensemble => card.model.get("meta").and_then(|m| m.get("kind")).and_then(|k| k.as_str()) == Some("hedge"),
            _ => false,
        }
    }

    /// Bytes of learned state.
    pub fn bytes(&self) -> usize {
        match self {
            OnlineModel::Bayes(b) => {
                let p = b.posterior();
                (p.mean.len() + p.u.len() + p.d.len() + 2 * b.dim()) * 8
            }
            OnlineModel::Hedge { meta: MetaLearner::Hedge { losses, .. }, .. } => losses.len() * 8,
            OnlineModel::Hedge { .. } => 0,
        }
    }

    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> flowcast_contract::Result<()> {
        match self {
            OnlineModel::Bayes(m) => m.predict(b, out),
            OnlineModel::Hedge { ensemble, meta } => ensemble.predict_with(meta, b, out),
        }
    }

    fn update(&mut self, b: &Batch<'_>, l: &Matured<'_>) -> flowcast_contract::Result<()> {
        match self {
            OnlineModel::Bayes(m) => m.update(b, l),
            OnlineModel::Hedge { ensemble, meta } => ensemble.update_meta(meta, b, l),
        }
    }
}

/// Bounds of online learning per stream (`[stream]` of serve.toml).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnlineLimits {
    /// Clock-horizon labels waiting at most (rows); the oldest beyond it is dropped unlabelled.
    pub max_pending: usize,
    /// Bytes of online state (rows ring, labeller, model) one stream may hold.
    pub max_bytes: usize,
}

/// One stream's online learner: its state, the labeller and the rows of the windows that wait.
pub struct OnlineSlot {
    model: OnlineModel,
    labeller: StreamLabeller,
    t: usize,
    f: usize,
    /// Ring of the last `cap` rows (row r at slots r mod cap and r mod cap + cap: any T
    /// consecutive rows are one slice) and, per row, whether a complete window ends there.
    cap: usize,
    rows: Vec<f32>,
    window_at: Vec<bool>,
    /// `Gap` events since the stream (re)started: the labeller's segment.
    segment: u32,
    updates: u64,
}

impl OnlineSlot {
    /// The slot of a stream over `input` (shape T × F) for the card's target.
    pub fn new(model: OnlineModel, card: &ModelCard, input: &InputStream, limits: OnlineLimits) -> Result<OnlineSlot, ApiError> {
        let def = &card.preprocessing.target;
        let labeller = StreamLabeller::new(def, limits.max_pending).map_err(|e| ApiError::internal(format!("online labels: {e}")))?;
        let (t, f) = input.shape();
        let cap = t + labeller.max_waiting();
        let s =
            OnlineSlot { model, labeller, t, f, cap, rows: vec![0.0; 2 * cap * f], window_at: vec![false; cap], segment: 0, updates: 0 };
        if s.bytes() > limits.max_bytes {
            return Err(ApiError::bad(
                "model_name",
                format!(
                    "online learning for target {} needs {} bytes per stream (rows of {} windows waiting for labels), above the limit of {} (online_max_bytes)",
                    def.id,
                    s.bytes(),
                    s.labeller.max_waiting(),
                    limits.max_bytes
                ),
            ));
        }
        Ok(s)
    }

    /// Bytes this stream's online learning holds.
    pub fn bytes(&self) -> usize {
        self.rows.len() * 4 + self.window_at.len() + self.labeller.bytes() + self.model.bytes()
    }

    /// Updates absorbed since the stream opened.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Clock-horizon labels dropped because more than `online_max_pending` waited.
    pub fn dropped(&self) -> u64 {
        self.labeller.dropped()
    }

    /// After `input.push(ev)` gave `step`: absorbs the labels maturing at this sample row, then
    /// predicts the window ending at it (appending to `out`). Returns the updates made.
    pub fn on_step(&mut self, step: &Step, ev: &Event, input: &InputStream, out: &mut Outputs) -> flowcast_contract::Result<u64> {
        if step.gap {
            self.segment += 1;
        }
        if !step.sample {
            return Ok(0);
        }
        let (t, f, cap) = (self.t, self.f, self.cap);
        let r = self.labeller.rows();
        let slot = (r % cap as u64) as usize;
        let w = input.window();
        let row = &w[(t - 1) * f..t * f];
        self.rows[slot * f..(slot + 1) * f].copy_from_slice(row);
        self.rows[(slot + cap) * f..(slot + cap + 1) * f].copy_from_slice(row);
        self.window_at[slot] = step.window;
        let mid = input.book().mid().unwrap_or(f64::NAN);
        let mut n = 0;
        for l in self.labeller.push(ev.ts_exchange, mid, self.segment) {
            let Some(class) = l.class else { continue };
            let e = (l.row % cap as u64) as usize;
            if !self.window_at[e] || l.row + (cap as u64) <= r {
                continue; // no complete window ended there (or its rows are gone: never for row horizons)
            }
            let start = (e + cap + 1 - t) % cap;
            let x = &self.rows[start * f..(start + t) * f];
            let b = Batch { x, batch: 1, window: t, features: f, window_ofi: None };
            self.model.update(&b, &Matured { classes: &[class], values: &[l.value_bps()] })?;
            n += 1;
        }
        self.updates += n;
        if step.window {
            let b = Batch { x: w, batch: 1, window: t, features: f, window_ofi: None };
            self.model.predict(&b, out)?;
        }
        Ok(n)
    }

    /// A stream reset: rows and pending labels go, the learned state stays.
    pub fn reset(&mut self) {
        self.labeller.reset();
        self.window_at.iter_mut().for_each(|v| *v = false);
        self.segment = 0;
    }
}

/// A loaded predictor shared across threads (the repository's `SharedPredictor`).
pub type Shared = Arc<dyn Predictor + Send + Sync>;

/// The online prototype of an exported model, where its family learns online (`None`
/// otherwise): the state a fresh stream starts from is the exported one.
pub fn load_online(dir: &std::path::Path, card: &ModelCard) -> Result<Option<(OnlineModel, Shared)>, String> {
    if !OnlineModel::default_for(card) {
        return Ok(None);
    }
    Ok(Some(match card.family {
        Family::BayesOnline => {
            let m = BayesOnline::load(dir, card).map_err(|e| e.to_string())?;
            (OnlineModel::Bayes(Box::new(m.clone())), Arc::new(m))
        }
        _ => {
            let e = Arc::new(flowcast_serve::load_ensemble(dir, card).map_err(|e| e.to_string())?);
            let meta = e.meta().clone();
            (OnlineModel::Hedge { ensemble: e.clone(), meta }, e)
        }
    }))
}
