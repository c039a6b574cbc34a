//! Microstructure features. The streaming engine is the only implementation; a batch run is the
//! streaming engine driven over a stored dataset, so the two cannot disagree.
//!
//! - [`FeatureSet`] (spec.rs): which features with which parameters, TOML in / JSON out;
//! - [`registry`]: every feature kind, its group, parameters, warm-up and reference
//!   (formulas in docs/features.md);
//! - [`Engine`] (engine.rs): O(1) per event, no allocation after `new`; windows over the same
//!   quantity share prefix-sum rings (bank.rs), other rolling state lives in window.rs;
//! - [`compute`]: batch over a [`crate::Dataset`]; [`fit`]: parameters from training rows only;
//! - [`bench()`]: features per second against the raw book replay.

mod bank;
pub mod bench;
mod depth;
pub mod engine;
pub mod fit;
mod imbalance;
pub mod microprice;
pub mod ofi;
mod prices;
mod queue;
pub mod registry;
pub mod spec;
mod timefeat;
pub mod toxicity;
mod trades;
mod volatility;
pub mod window;

#[cfg(test)]
mod tests;

pub use bench::{bench, bench_per_feature};
pub use engine::{compute, compute_with_diagnostics, Diagnostics, Engine};
pub use fit::fit;
pub use registry::{list_report, list_table};
pub use spec::{FeatureSet, FeatureSpec, Fitted};

/// Features (and labels) sampled at every batch end of a synced book: row-major `values`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureTable {
    /// Column names, in order.
    pub names: Vec<String>,
    /// Index into `Dataset::events` of the batch-end event of each row.
    pub event_index: Vec<u64>,
    /// `ts_exchange` of each row (ns UTC).
    pub ts: Vec<i64>,
    /// Mid price in ticks at each row (NaN if a side is empty).
    pub mid: Vec<f64>,
    /// `rows × names.len()` values, row-major; NaN during warm-up.
    pub values: Vec<f64>,
}

impl FeatureTable {
    pub fn rows(&self) -> usize {
        self.event_index.len()
    }
    pub fn cols(&self) -> usize {
        self.names.len()
    }
    pub fn row(&self, r: usize) -> &[f64] {
        let c = self.cols();
        &self.values[r * c..(r + 1) * c]
    }
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let j = self.names.iter().position(|n| n == name)?;
        Some((0..self.rows()).map(|r| self.values[r * self.cols() + j]).collect())
    }
}
