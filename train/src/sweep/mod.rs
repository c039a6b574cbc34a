//! Hyperparameter sweeps (`flowcast sweep`): a base experiment, a search space over any of its
//! keys, a sampler (grid, random, TPE), ASHA early stopping, and trials run by workers that
//! coordinate through one journal file, locally or as a Slurm job array. Every trial is an
//! ordinary run directory. Formats and formulas: docs/sweeps.md.
//!
//! ```text
//! <out_dir>/<sweep name>/
//!   journal.jsonl           the shared append-only journal (the sweep's only state)
//!   runs/<name>-tNNNN-<ts>/ one run directory per trial (`flowcast reproduce` accepts it)
//!   cache/                  events shared by the trials, keyed by the data fingerprint
//!   logs/ slurm/            worker logs; the batch script and the array tasks' output
//!   results.csv results.md  the table;  best.toml  the best trial's experiment
//!   plots/<param>.svg       the metric against each parameter
//! ```

pub mod asha;
pub mod backend;
pub mod journal;
pub mod report;
pub mod sampler;
pub mod space;
pub mod spec;
pub mod worker;

pub use spec::{trial_name, Direction, Metric, SlurmConfig, Strategy, SweepSpec};
