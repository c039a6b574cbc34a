//! flowcast-contract: the model contract every model family and every consumer shares, with no
//! burn (and no candle) in it — so the inference server and the backtest can depend on it.
//!
//! - [`files`]: file names and format versions of an exported model directory;
//! - [`spec`]: the model-config schema both deep-model twins implement (burn in flowcast-models,
//!   candle in flowcast-serve);
//! - [`target`], [`preprocessing`]: targets and preprocessing as data, unfitted (experiment) and
//!   fitted (card);
//! - [`window`], [`prepare`]: dataset → normalised matrix → windows, fitted or with stored
//!   preprocessing (so evaluation/serving inputs are the training inputs);
//! - [`predictor`]: the `Predictor` trait (and `OnlinePredictor`);
//! - [`baselines`]: majority and OFI-logistic as ordinary predictors in a registry;
//! - [`bayes`]: Bayesian online regression (`bayes_online`), an `OnlinePredictor` (cards of family
//!   `bayes_online`); [`bayes_changepoint`]: its optional changepoint-driven forgetting;
//! - [`prequential`]: online evaluation that hands labels over only once they have matured;
//!   [`labeller`]: the same labels computed row by row as they mature (stream mode learns on them);
//! - [`ensemble`]: stacked ensembles of exported members and their meta-learners (`ensemble` cards);
//! - [`gbdt`]: a pure-Rust evaluator of LightGBM's text model format (`lightgbm` cards);
//! - [`metrics`], [`predictions`]: scoring and the predictions file;
//! - [`card`]: the model card and its validation;
//! - [`signal`]: the trading decision from one prediction (served and backtested alike);
//! - [`stream`]: events → rows → windows one event at a time (what `prepare` replays and stream
//!   mode serves).
//!
//! Layers: docs/architecture.md.

pub mod baselines;
pub mod bayes;
pub mod bayes_changepoint;
pub mod card;
pub mod ensemble;
pub mod error;
pub mod eval;
pub mod files;
pub mod gbdt;
pub mod labeller;
pub mod metrics;
pub mod predictions;
pub mod predictor;
pub mod prepare;
pub mod preprocessing;
pub mod prequential;
pub mod signal;
pub mod spec;
pub mod stream;
pub mod target;
pub mod window;

pub use card::ModelCard;
pub use error::{ContractError, Result};
pub use predictor::{Batch, OnlinePredictor, Outputs, Predictor, PredictorInfo};
pub use spec::ModelSpec;
