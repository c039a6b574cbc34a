//! Microstructure features. The streaming engine is the only implementation; a batch run is the
//! streaming engine driven over a stored dataset, so the two cannot disagree.
//!
//! - [`FeatureSpec`] (spec.rs): one feature and its parameters; [`FeatureSet`] (set.rs): which
//!   features with which parameters, validated against the registry, TOML in / JSON out;
//! - [`registry`]: every feature kind, its group, parameters, warm-up and reference
//!   (formulas in docs/features.md); [`list_report`] (list.rs): `flowcast features list`;
//! - [`Engine`] (engine.rs): O(1) per event, no allocation after `new`; it keeps the per-sample
//!   state every node reads (ctx.rs) and drives one node (node.rs) per column; windows over the
//!   same quantity share prefix-sum rings (bank.rs), other rolling state lives in window.rs;
//! - [`compute`]: batch over a [`crate::Dataset`] into a [`FeatureTable`]; [`fit`]: parameters
//!   from training rows only;
//! - [`bench()`]: features per second against the raw book replay.
//!
//! Module layers, bottom to top; each module imports only from layers below it (and from
//! crate-level modules such as `book`, `event`, `time`), never from its own layer or above:
//! 1. `window`, `microprice`, `orders`, `spec`, `table`
//! 2. `registry` (spec), `ctx` (orders)
//! 3. `set` (registry, spec), `bank` (ctx, window)
//! 4. `node` (ctx, bank)
//! 5. the node kinds `trades`, `ofi`, `imbalance`, `prices`, `queue`, `timefeat`, `toxicity`,
//!    `volatility`
//! 6. `depth` (also trades)
//! 7. `engine` (every node kind, set)
//! 8. `fit`, `bench` (engine), `list` (set, registry)
//! 9. this module: declarations and re-exports only.

mod bank;
pub mod bench;
mod ctx;
mod depth;
pub mod engine;
pub mod fit;
mod imbalance;
mod list;
pub mod microprice;
mod node;
pub mod ofi;
mod orders;
mod prices;
mod queue;
pub mod registry;
pub mod set;
pub mod spec;
mod table;
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
pub use list::{list_report, list_table};
pub use set::FeatureSet;
pub use spec::{FeatureSpec, Fitted};
pub use table::FeatureTable;
