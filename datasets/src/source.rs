//! Where a job's events come from — a synthetic book, a stored dataset, or raw files imported on
//! the fly — as the `[data]` table of experiment and backtest files, and the one loader of it.

use crate::error::{DataError, Result};
use crate::loaders::{import, Format, ImportOptions};
use crate::store::{read_dataset, Dataset};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the events come from: exactly one of the three.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Generate a synthetic L3 book in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic: Option<SynthSpec>,
    /// A stored dataset directory (`flowcast data import` output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<PathBuf>,
    /// Raw source files imported on the fly (same options as `flowcast data import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportSpec>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    #[serde(default = "default_levels")]
    pub levels: usize,
    pub events: usize,
    /// Defaults to the experiment seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_levels() -> usize {
    10
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSpec {
    /// lobster, binance, cryptofeed-binance, cryptofeed-coinbase, cryptofeed-kraken.
    pub format: String,
    /// Input files, relative to the experiment file's directory when relative.
    pub inputs: Vec<PathBuf>,
    #[serde(default = "default_levels")]
    pub levels: usize,
    #[serde(default)]
    pub lenient: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tick_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_scale: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

impl DataSpec {
    /// Exactly one source.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let sources = self.synthetic.is_some() as u8 + self.dataset.is_some() as u8 + self.import.is_some() as u8;
        if sources != 1 {
            return Err("[data] needs exactly one of `synthetic`, `dataset`, `import`".into());
        }
        Ok(())
    }

    /// Makes relative paths absolute against `base` (the directory of the file that named them),
    /// so a resolved copy of the spec works from any directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let abs = |p: &Path| {
            let j = if p.is_relative() { base.join(p) } else { p.to_path_buf() };
            std::path::absolute(&j).unwrap_or(j)
        };
        if let Some(d) = &self.dataset {
            self.dataset = Some(abs(d));
        }
        if let Some(imp) = &mut self.import {
            imp.inputs = imp.inputs.iter().map(|p| abs(p)).collect();
        }
    }

    /// Loads the events; `seed` is the synthetic generator's seed when the spec gives none.
    pub fn load(&self, seed: u64) -> Result<Dataset> {
        if let Some(s) = &self.synthetic {
            return crate::synth::synth_dataset(s.levels, s.events, s.seed.unwrap_or(seed));
        }
        if let Some(dir) = &self.dataset {
            return read_dataset(dir);
        }
        let imp = self
            .import
            .as_ref()
            .ok_or_else(|| DataError::Invalid("[data] needs exactly one of `synthetic`, `dataset`, `import`".into()))?;
        let opts = ImportOptions {
            lenient: imp.lenient,
            levels: imp.levels,
            tick_size: imp.tick_size.clone(),
            size_scale: imp.size_scale,
            symbol: imp.symbol.clone(),
            date: imp.date.clone(),
        };
        let mut imported = import(Format::parse(&imp.format)?, &imp.inputs, &opts)?;
        match imported.datasets.len() {
            1 => Ok(imported.datasets.remove(0)),
            0 => Err(DataError::Invalid(format!("[data.import] built no dataset from {:?}", imp.inputs))),
            n => Err(DataError::Invalid(format!("[data.import] built {n} datasets (several instruments): set `symbol`"))),
        }
    }
}
