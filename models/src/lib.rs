//! flowcast-models: the deep forecasting models in burn (LSTM, GRU, DeepLOB, TransLOB-style
//! transformer), a registry that builds them by name from a hyperparameter table, and export of
//! weights (safetensors) plus config (JSON) for the burn-free twins in `flowcast-serve`.
//!
//! Every model maps `[batch, seq, features]` to logits `[batch, classes]`. Shapes, parameter
//! counts and tensor names: docs/models.md.

pub mod conv_op;
pub mod deeplob;
pub mod device;
pub mod dropout;
pub mod error;
pub mod export;
pub mod gelu_op;
pub mod registry;
pub mod rnn;
pub mod rnn_op;
pub mod softmax_op;
pub mod translob;

/// The burn version these models are written against, re-exported so dependants agree.
pub use burn;
pub use error::{ModelError, Result};
pub use registry::{build, describe, list, trainable_params, trainable_params_of, Architecture, Model, ModelConfig, Params};
