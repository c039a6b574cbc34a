//! One feature instance ([`FeatureSpec`]: a registry kind and its parameters), the parameters
//! fitted on training data ([`Fitted`]), and the column name a spec produces. Plain data (TOML
//! in, JSON out); validation against the registry is [`super::set::FeatureSet::new`].

use crate::time::{format_duration, parse_duration};
use serde::{Deserialize, Serialize};

/// One feature instance: a registry kind (`name`) and its parameters. After
/// [`super::set::FeatureSet::new`] every parameter the kind uses is filled in (defaults made explicit).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Registry name (`features list`), e.g. "ofi".
    pub name: String,
    /// Output column name; derived from name and parameters when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Number of book levels from the touch (L).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<usize>,
    /// One book level, 1 = touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<usize>,
    /// "bid" or "ask".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// Window over the last N samples (source messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_events: Option<usize>,
    /// Clock window, e.g. "500ms", "10s", "1min", "5min" (grammar: [`crate::time::parse_duration`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// EWMA half-life in samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halflife_events: Option<f64>,
    /// Trade sign: "aggressor" (the source's), "tick", "lee_ready"; VPIN also "bvc".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// Large-trade threshold k: a trade is large if size > k × rolling mean trade size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Number of past trades in the rolling mean trade size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trades: Option<usize>,
    /// VPIN bucket size in lots; fitted from training volume when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_volume: Option<f64>,
    /// VPIN bucket size when fitted: the volume traded on average in this many seconds of the
    /// training data (ELO's "daily volume / 50" is `bucket_seconds` = day length / 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_seconds: Option<f64>,
    /// VPIN: number of buckets n in the rolling sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_buckets: Option<usize>,
    /// Time bar for bulk-volume classification and Kyle's lambda, e.g. "1s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bar: Option<String>,
    /// Number of bars in a rolling regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_bars: Option<usize>,
    /// Number of past bars for the std of bar price changes (BVC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_bars: Option<usize>,
    /// Micro-price: number of imbalance buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imbalance_buckets: Option<usize>,
    /// Micro-price: spreads 1..=n ticks modelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_buckets: Option<usize>,
    /// Clock windows: sizing rate of the ring (samples per second); above it the window reports
    /// NaN and counts an overflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_hz: Option<f64>,
    /// Parameters fitted on training data by [`super::fit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<Fitted>,
}

/// Parameters estimated on the training split only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Fitted {
    /// Integrated OFI: first principal component of normalised multi-level OFI, ‖w‖₁ = 1.
    IntegratedOfi {
        weights: Vec<f64>,
        /// Share of variance the first component explains.
        explained_variance: f64,
        /// Training rows used (with all levels defined).
        rows: usize,
    },
    /// Stoikov (2018) micro-price adjustment g(spread, imbalance bucket) in ticks.
    Microprice {
        /// Interior imbalance bucket edges (ascending, `imbalance_buckets − 1` of them); bucket =
        /// number of edges strictly below I.
        imbalance_edges: Vec<f64>,
        /// g for state (spread s ticks, bucket b) at index `(s − 1) × buckets + b`; null where the
        /// training data never visited the state.
        adjustment: Vec<Option<f64>>,
        /// Quote transitions used (before symmetrisation).
        transitions: usize,
        /// Whether Σ Bⁱ G₁ converged.
        converged: bool,
    },
    /// VPIN bucket size from training volume.
    Vpin { bucket_volume: f64, train_volume: f64, train_seconds: f64 },
}

/// Whether this spec's kind has parameters estimated by `fit`.
pub fn needs_fit(s: &FeatureSpec) -> bool {
    match s.name.as_str() {
        "ofi_integrated" | "microprice" | "microprice_offset" => true,
        "vpin" => s.bucket_volume.is_none(),
        _ => false,
    }
}

/// The column name of a resolved spec.
pub fn column_name(s: &FeatureSpec) -> String {
    if let Some(c) = &s.column {
        return c.clone();
    }
    let mut n = s.name.clone();
    if let Some(side) = &s.side {
        n.push('_');
        n.push_str(side);
    }
    match s.classification.as_deref() {
        None | Some("aggressor") => {}
        Some("lee_ready") => n.push_str("_lr"),
        Some(c) => {
            n.push('_');
            n.push_str(c);
        }
    }
    if let Some(l) = s.level {
        n.push_str(&format!("_l{l}"));
    }
    if let Some(l) = s.levels {
        n.push_str(&format!("_top{l}"));
    }
    if let Some(h) = s.halflife_events {
        n.push_str(&format!("_hl{h}"));
    }
    match (&s.window_events, &s.window) {
        (Some(1), _) | (None, None) => {}
        (Some(k), _) => n.push_str(&format!("_ev{k}")),
        (None, Some(w)) => {
            n.push('_');
            n.push_str(&parse_duration(w).map(format_duration).unwrap_or_else(|_| w.clone()));
        }
    }
    n
}
