//! Preprocessing as data: what an experiment asks for (`ColumnsSpec`, `SplitSpec`, `NormSpec`,
//! `target::TargetSpec`) and what training fitted (`InputDef` + `TargetDef` = `Preprocessing`,
//! stored in every card), so any consumer rebuilds exactly the inputs the model was trained on.

use crate::target::TargetDef;
use flowcast_datasets::normalize::Normalizer;
use flowcast_datasets::store::SourceFile;
use serde::{Deserialize, Serialize};

/// Which columns a window holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Raw book levels: per level, ask price − mid, ask size, bid price − mid, bid size.
    Book,
    /// Engineered features of the feature engine.
    Features,
    /// Book levels then features.
    Both,
}

/// `[columns]` of an experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnsSpec {
    pub kind: ColumnKind,
    /// Book levels used (≤ the dataset's stored depth); default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<usize>,
    /// Rows per window T.
    pub window: usize,
    /// Feature specs (`[[columns.feature]]`, the feature engine's keys); empty = its default set.
    #[serde(default, rename = "feature", skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<serde_json::Value>,
    /// Keep every n-th window of the training split (1 = all). Overlapping windows of a long
    /// day are highly redundant; a stride trades samples for speed. Validation/test use all.
    #[serde(default = "one")]
    pub train_stride: usize,
}

fn one() -> usize {
    1
}

impl Default for ColumnsSpec {
    fn default() -> Self {
        ColumnsSpec { kind: ColumnKind::Book, levels: None, window: 100, features: Vec::new(), train_stride: 1 }
    }
}

/// `[splits]`: fractions of the sample rows, chronological; test gets the rest (of the rows
/// before `end`). `start` and `end` (fractions of all rows, default 0 and 1) cut out one
/// walk-forward fold: rows outside `start..end` belong to no split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub train: f64,
    pub validation: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start: f64,
    #[serde(default = "one_f64", skip_serializing_if = "is_one")]
    pub end: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
fn is_one(x: &f64) -> bool {
    *x == 1.0
}
fn one_f64() -> f64 {
    1.0
}

impl SplitSpec {
    pub fn config(&self) -> flowcast_datasets::splits::SplitConfig {
        flowcast_datasets::splits::SplitConfig { train: self.train, validation: self.validation, start: self.start, end: self.end }
    }
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec { train: 0.7, validation: 0.15, start: 0.0, end: 1.0 }
    }
}

/// `[normalization]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormSpec {
    /// zscore | minmax | decimal (fitted on the training rows only).
    pub method: String,
}

impl Default for NormSpec {
    fn default() -> Self {
        NormSpec { method: "zscore".into() }
    }
}

/// The fitted input pipeline, shared by every target of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDef {
    pub columns: ColumnKind,
    /// Book levels used (0 when the columns hold no book levels).
    pub levels: usize,
    pub window: usize,
    /// Input column names, in order.
    pub names: Vec<String>,
    /// The fitted feature set (feature engine JSON), `null` without engineered features.
    pub feature_set: serde_json::Value,
    pub normalizer: Normalizer,
}

/// Everything needed to turn another dataset into the same inputs and labels: in the card.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    pub inputs: InputDef,
    pub target: TargetDef,
}

/// Where the data came from and its hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataInfo {
    pub source_format: String,
    pub instrument: String,
    pub events: usize,
    pub rows: usize,
    pub source_files: Vec<SourceFile>,
    /// SHA-256 over the canonical event stream (every field of every event, little-endian):
    /// identifies the data exactly, also for synthetic data that has no source file.
    pub events_sha256: String,
}

/// Book-level column names for `levels` levels: per level ask price − mid, ask size, bid price −
/// mid, bid size (DeepLOB's column order).
pub fn book_names(levels: usize) -> Vec<String> {
    let mut v = Vec::with_capacity(4 * levels);
    for l in 1..=levels {
        v.push(format!("ask_px_rel_{l}"));
        v.push(format!("ask_sz_{l}"));
        v.push(format!("bid_px_rel_{l}"));
        v.push(format!("bid_sz_{l}"));
    }
    v
}
