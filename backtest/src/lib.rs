//! flowcast-backtest: an execution-aware, event-driven backtest on the canonical events and the
//! canonical book (flowcast-datasets), judging model signals (flowcast-contract) by money after
//! costs. No burn: models run through the contract's `Predictor` (candle twins for deep models).
//!
//! - [`models`]: latency, queue, fee and impact models (small traits, named implementations);
//! - [`exchange`]: our orders against the replayed book — fill rules, queue, slippage;
//! - [`strategy`], [`strategies`]: what a strategy sees and the built-in ones;
//! - [`risk`]: risk limits between the strategy and the exchange;
//! - [`engine`]: the replay loop;
//! - [`metrics`]: P&L, risk and signal statistics of an outcome;
//! - [`config`], [`signals`], [`run`], [`report`]: the backtest file, model outputs, the run
//!   directory and its HTML report (`flowcast backtest`).
//!
//! Formulas and sources: docs/backtest.md.

pub mod config;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod metrics;
pub mod models;
pub mod order;
pub mod report;
pub mod risk;
pub mod run;
pub mod signals;
pub mod strategies;
pub mod strategy;

pub use error::{BacktestError, Result};
