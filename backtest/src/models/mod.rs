//! The swappable behaviours of the simulated exchange, each a small trait with named
//! implementations (formulas and sources in docs/backtest.md):
//! - [`latency`]: order entry and response latency;
//! - [`queue`]: where a resting order stands in its price level's queue;
//! - [`fee`]: what a fill costs;
//! - [`impact`]: how far a liquidity-taking order moves its own fill price.

pub mod fee;
pub mod impact;
pub mod latency;
pub mod queue;

pub use fee::{FeeModel, FeeSpec, Fees};
pub use impact::{ImpactModel, ImpactSpec};
pub use latency::{LatencyModel, LatencySpec};
pub use queue::{QueueModel, QueuePos, QueueSpec};
