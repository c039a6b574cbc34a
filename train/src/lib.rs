//! flowcast-train: experiments (TOML) → window datasets → burn training → evaluation against
//! baselines → an exported, reloadable run directory. See docs/training.md and docs/metrics.md.

pub mod baselines;
pub mod bench;
pub mod card;
pub mod config;
pub mod data;
pub mod error;
pub mod feature_cols;
pub mod metrics;
pub mod progress;
pub mod reproduce;
pub mod run;
pub mod tensorboard;
pub mod trainer;
pub mod window;

pub use config::Experiment;
pub use error::{Result, TrainError};
