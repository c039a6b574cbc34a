//! The training commands: `flowcast train`, `run`, `reproduce`, `eval` and `predict`.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    /// Experiment file (TOML, see experiments/ and docs/training.md).
    experiment: PathBuf,
    /// Continue the run in this directory from its last checkpoints (same experiment file).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Device override: cpu, vulkan, vulkan:N (`gpu` feature), cuda, cuda:N (`cuda` feature, untested).
    #[arg(long)]
    device: Option<String>,
    /// Where run directories go (default: the experiment's runs_dir).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Stop every model after this many epochs in this call (resume later with --resume).
    #[arg(long, default_value_t = 0)]
    stop_after_epochs: usize,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ReproduceArgs {
    /// Run directory to reproduce (it holds config.json, run.json, metrics.json).
    #[arg(long)]
    run: PathBuf,
    /// Where the new run directory goes (default: beside the original).
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Device override (bit-identical results are expected on cpu only).
    #[arg(long)]
    device: Option<String>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Run directory (or one model directory inside it).
    #[arg(long)]
    run: PathBuf,
    /// Dataset directory (`flowcast data import` output).
    #[arg(long)]
    data: PathBuf,
    /// Device for the burn forward pass (`eval` only).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Write each model's predictions to <out>/<model id>.parquet.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

fn emit_summary(s: &flowcast_train::run::Summary, json: bool) {
    if json {
        println!("{}", s.json);
    } else {
        print!("{}", s.table());
    }
}

/// `train` (`verify_export: false`) and `run` (`verify_export: true`).
pub fn run_train(a: TrainArgs, verify_export: bool) -> Result<bool> {
    let text = std::fs::read_to_string(&a.experiment).with_context(|| format!("reading {}", a.experiment.display()))?;
    let exp = flowcast_train::Experiment::load(&a.experiment)?;
    let opts = flowcast_train::run::RunOptions {
        resume: a.resume,
        progress: if a.quiet { flowcast_train::progress::Mode::Quiet } else { flowcast_train::progress::Mode::auto() },
        stop_after: a.stop_after_epochs,
        device: a.device,
        runs_dir: a.runs_dir,
        verify_export,
        expect_events_sha256: None,
    };
    let s = flowcast_train::run::run_experiment(&exp, &text, &opts)?;
    emit_summary(&s, a.json);
    Ok(true)
}

pub fn run_reproduce(a: ReproduceArgs) -> Result<bool> {
    let opts = flowcast_train::run::RunOptions {
        progress: if a.quiet { flowcast_train::progress::Mode::Quiet } else { flowcast_train::progress::Mode::auto() },
        device: a.device,
        runs_dir: a.runs_dir,
        verify_export: true,
        ..Default::default()
    };
    let s = flowcast_train::reproduce::reproduce(&a.run, &opts)?;
    if a.json {
        println!("{}", s.json);
    } else {
        print!("{}", s.table());
        let r = &s.json["reproduction"];
        println!(
            "\nreproduction of {} (git {} → {}):",
            r["original"].as_str().unwrap_or("?"),
            r["git_revision"]["original"],
            r["git_revision"]["now"]
        );
        if let Some(ms) = r["models"].as_object() {
            for (id, m) in ms {
                println!(
                    "  {id:<12} weights {} · test metrics {} (max |Δ| {})",
                    if m["weights_identical"] == true { "identical" } else { "DIFFER" },
                    if m["metrics_identical"] == true { "identical" } else { "DIFFER" },
                    m["max_abs_diff"]
                );
            }
        }
        println!("  baselines    {}", if r["baselines"]["identical"] == true { "identical" } else { "DIFFER" });
    }
    Ok(s.json["ok"] == true)
}

/// `eval` (burn engine) and `predict` (candle engine).
pub fn run_eval(a: EvalArgs, engine: flowcast_train::run::Engine) -> Result<bool> {
    let device = flowcast_train::run::device_of(&a.device)?;
    let s = flowcast_train::run::evaluate(&a.run, &a.data, engine, &device, a.out.as_deref())?;
    emit_summary(&s, a.json);
    Ok(true)
}
