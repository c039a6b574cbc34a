//! File names and format versions of an exported model directory (docs/architecture.md):
//!
//! ```text
//! <model dir>/model.json          the card (ModelCard): preprocessing, target, baselines, metrics
//!             model_config.json   the architecture document (spec::ModelSpec), read by every twin
//!             model.safetensors   the weights (deep models)
//!             model.txt           LightGBM's text model (`lightgbm` models; no model_config.json)
//! ```
//! Every reader checks `format` and `version` and refuses anything else by name.

/// The model card.
pub const CARD_FILE: &str = "model.json";
pub const CARD_FORMAT: &str = "flowcast-model-card";
/// 2: targets as data (`target`), baselines as a list of named predictors.
pub const CARD_VERSION: u32 = 2;

/// The architecture document: `{"format", "version", "architecture", "config"}`.
pub const CONFIG_FILE: &str = "model_config.json";
pub const CONFIG_FORMAT: &str = "flowcast-model-config";
pub const CONFIG_VERSION: u64 = 1;

/// The weights of a deep model (burn-store layout, tensor names in docs/models.md).
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Per-window predictions of a run or an evaluation.
pub const PREDICTIONS_FILE: &str = "predictions.parquet";

/// A `lightgbm` model: LightGBM's own text format (`save_model`), evaluated by `gbdt`.
pub const LIGHTGBM_MODEL_FILE: &str = "model.txt";
/// The card's `model` document of a `lightgbm` model: `{"format", "version", "objective", ...}`.
pub const LIGHTGBM_DOC_FORMAT: &str = "flowcast-lightgbm";
pub const LIGHTGBM_DOC_VERSION: u64 = 1;

/// A `bayes_online` model: its [`crate::bayes::BayesState`] (config, window, features, posterior)
/// as JSON — a few thousand numbers, human-readable, exact (serde_json round-trips f64).
pub const BAYES_STATE_FILE: &str = "bayes_state.json";
/// The card's `model` document of a `bayes_online` model: `{"format", "version", "file", ...}`.
pub const BAYES_DOC_FORMAT: &str = "flowcast-bayes-online";
pub const BAYES_DOC_VERSION: u64 = 1;
