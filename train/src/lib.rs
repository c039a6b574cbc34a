//! flowcast-train: experiments (TOML) → window datasets → burn training → evaluation against
//! baselines → an exported, reloadable run directory. See docs/training.md and docs/metrics.md.

pub mod metrics;
