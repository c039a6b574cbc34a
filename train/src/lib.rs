//! flowcast-train: experiments (TOML) → window datasets (flowcast-contract's preprocessing) →
//! burn training → evaluation against baselines through the contract's `Predictor` → an
//! exported, reloadable run directory. See docs/training.md and docs/metrics.md.

pub mod batch;
pub mod bayes;
pub mod bench;
pub mod config;
pub mod ensemble;
pub mod error;
pub mod explain;
pub mod lightgbm;
pub mod model;
pub mod progress;
pub mod reliability;
pub mod reproduce;
pub mod run;
pub mod serve_bench;
pub mod sweep;
pub mod tensorboard;
pub mod trainer;

pub use config::Experiment;
pub use error::{Result, TrainError};
