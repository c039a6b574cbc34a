//! The `flowcast` command groups, one module each, and the small helpers several of them share.

pub mod analyze;
pub mod backtest;
pub mod bench;
pub mod collect;
pub mod data;
pub mod features;
pub mod models;
pub mod serve;
pub mod sweep;
pub mod train;
pub mod walkforward;

use anyhow::{bail, Result};
use flowcast_datasets::Report;

/// A report as one JSON object (`--json`) or as its table.
fn emit(report: &Report, json: bool) {
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
}

/// `KEY=VALUE` pairs as a hyperparameter table; VALUE is read as JSON (numbers, booleans) and
/// falls back to a string.
fn parse_overrides(set: &[String]) -> Result<flowcast_models::Params> {
    let mut params = flowcast_models::Params::new();
    for kv in set {
        let Some((k, v)) = kv.split_once('=') else { bail!("--set {kv:?}: expected KEY=VALUE") };
        let value = serde_json::from_str(v.trim()).unwrap_or_else(|_| serde_json::Value::String(v.trim().to_string()));
        params.insert(k.trim().to_string(), value);
    }
    Ok(params)
}
