//! `flowcast sweep <sweep.toml>` (run or resume a sweep, then write its results) and
//! `flowcast sweep worker --journal <file>` (what the local processes and Slurm's array tasks
//! run). Formats: docs/sweeps.md.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use flowcast_train::sweep::backend::{self, Backend};
use flowcast_train::sweep::journal::Journal;
use flowcast_train::sweep::worker::{run_worker, WorkerOptions};
use flowcast_train::sweep::{report, SweepSpec};
use std::path::PathBuf;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    cmd: Option<SweepCmd>,
    /// Sweep file (TOML, see experiments/sweep_quickstart.toml and docs/sweeps.md).
    spec: Option<PathBuf>,
    /// Where the workers run: `local` processes or a Slurm job array.
    #[arg(long, default_value = "local")]
    backend: String,
    /// Parallel workers (local processes; Slurm: the array's concurrency %K). Default: the file's.
    #[arg(long)]
    workers: Option<usize>,
    /// Write the results from the journal without starting any worker.
    #[arg(long)]
    report_only: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SweepCmd {
    /// Take trials from a sweep's journal and run them until the sweep is done.
    Worker(WorkerArgs),
}

#[derive(Args)]
struct WorkerArgs {
    /// The sweep's journal (`<sweep dir>/journal.jsonl`).
    #[arg(long)]
    journal: PathBuf,
    /// This worker's name in the journal (default: host and process id).
    #[arg(long)]
    worker_id: Option<String>,
    /// Stop after this many trials (0: until none is left).
    #[arg(long, default_value_t = 0)]
    max_trials: usize,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into())
}

pub fn run(a: SweepArgs) -> Result<bool> {
    if let Some(SweepCmd::Worker(w)) = a.cmd {
        let opts = WorkerOptions {
            worker_id: w.worker_id.unwrap_or_else(|| format!("{}-{}", host(), std::process::id())),
            max_trials: w.max_trials,
            progress: if w.quiet { flowcast_train::progress::Mode::Quiet } else { flowcast_train::progress::Mode::Lines },
        };
        let ran = run_worker(&Journal::new(&w.journal), &opts)?;
        eprintln!("worker {}: ran trials {ran:?}", opts.worker_id);
        return Ok(true);
    }
    let Some(path) = a.spec else { bail!("flowcast sweep: give a sweep file (or `flowcast sweep worker --journal <file>`)") };
    let mut spec = SweepSpec::load(&path)?;
    if let Some(w) = a.workers {
        if w == 0 {
            bail!("--workers must be at least 1");
        }
        spec.workers = w;
    }
    let b = Backend::parse(&a.backend)?;
    let journal = backend::open_journal(&spec)?;
    let exe = std::env::current_exe()?;
    let rep = if a.report_only {
        backend::BackendReport { backend: "none".into(), workers: 0, ..Default::default() }
    } else {
        match b {
            Backend::Local => backend::run_local(&spec, &exe, spec.workers)?,
            Backend::Slurm => backend::run_slurm(&spec, &exe, spec.workers)?,
        }
    };
    let st = journal.replay()?;
    let v = report::write_all(&spec, &st, &rep)?;
    if a.json {
        println!("{v}");
    } else {
        print!("{}", report::markdown(&spec, &st));
        match &v["best"] {
            serde_json::Value::Null => println!("\nno trial completed"),
            best => println!(
                "\nbest: trial {} {} = {} {}\nbest experiment: {}",
                best["trial"],
                spec.metric.name(),
                best["value"],
                best["params"],
                v["files"]["best_experiment"].as_str().unwrap_or("-")
            ),
        }
        println!(
            "results: {} · {} · plots in {}",
            v["files"]["csv"].as_str().unwrap_or("-"),
            v["files"]["markdown"].as_str().unwrap_or("-"),
            spec.dir.join("plots").display()
        );
    }
    let c = &v["counts"];
    let done = c["complete"].as_u64().unwrap_or(0) + c["pruned"].as_u64().unwrap_or(0) + c["failed"].as_u64().unwrap_or(0);
    Ok(c["complete"].as_u64().unwrap_or(0) > 0 && done == spec.trials as u64)
}
