//! The sweep file (TOML) and the resolved sweep every worker reads from the journal's first
//! line; a trial's experiment is the base with the trial's parameters written in.

use super::asha::AshaConfig;
use super::sampler::{GridSampler, RandomSampler, Sampler, Space, TpeConfig, TpeSampler};
use super::space::{self, Distribution, Params};
use crate::config::Experiment;
use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Grid,
    Random,
    Tpe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Maximize,
    Minimize,
}

/// The per-epoch validation metric a trial is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ValMacroF1,
    ValAccuracy,
    ValLoss,
}

impl Metric {
    pub fn of(self, r: &crate::trainer::EpochRecord) -> Option<f64> {
        match self {
            Metric::ValMacroF1 => r.val_macro_f1,
            Metric::ValAccuracy => r.val_accuracy,
            Metric::ValLoss => r.val_loss,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::ValMacroF1 => "val_macro_f1",
            Metric::ValAccuracy => "val_accuracy",
            Metric::ValLoss => "val_loss",
        }
    }
    fn default_direction(self) -> Direction {
        match self {
            Metric::ValLoss => Direction::Minimize,
            _ => Direction::Maximize,
        }
    }
}

/// `[slurm]` of a sweep file: what goes into the batch script.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--time` of each array task, e.g. "01:00:00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `--mem` of each array task, e.g. "4G".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// Further `#SBATCH` options, verbatim (e.g. "--gres=gpu:1").
    #[serde(default)]
    pub options: Vec<String>,
    /// Array tasks (default: the number of trials); `--workers` is the concurrency K of `%K`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<usize>,
    /// Seconds between `squeue` polls.
    #[serde(default = "two")]
    pub poll_seconds: f64,
}

fn two() -> f64 {
    2.0
}

/// A sweep file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: String,
    /// The base experiment: a path (relative to the sweep file) or an inline `[base]` table.
    base: toml::Value,
    #[serde(default = "random")]
    strategy: Strategy,
    /// Trials to run (grid: default and maximum the grid's size).
    #[serde(default)]
    trials: Option<usize>,
    #[serde(default)]
    seed: u64,
    #[serde(default = "macro_f1")]
    metric: Metric,
    #[serde(default)]
    direction: Option<Direction>,
    /// The run model id the metric is read from (default: the experiment's first).
    #[serde(default)]
    model: Option<String>,
    #[serde(default = "one")]
    workers: usize,
    /// Threads per trial (RAYON_NUM_THREADS of each worker; Slurm's --cpus-per-task).
    #[serde(default = "one")]
    threads: usize,
    #[serde(default = "heartbeat")]
    heartbeat_seconds: f64,
    /// A running trial whose worker has been silent this long is re-queued.
    #[serde(default = "lease")]
    lease_seconds: f64,
    /// Times a trial is started at most (the first run and its re-queues).
    #[serde(default = "attempts")]
    max_attempts: usize,
    /// Where the sweep directory goes (default: `sweeps/` beside `runs/`).
    #[serde(default)]
    out_dir: Option<PathBuf>,
    #[serde(default)]
    tpe: TpeConfig,
    #[serde(default)]
    asha: Option<AshaConfig>,
    #[serde(default)]
    slurm: SlurmConfig,
    params: std::collections::BTreeMap<String, Distribution>,
}

fn random() -> Strategy {
    Strategy::Random
}
fn macro_f1() -> Metric {
    Metric::ValMacroF1
}
fn one() -> usize {
    1
}
fn heartbeat() -> f64 {
    10.0
}
fn lease() -> f64 {
    120.0
}
fn attempts() -> usize {
    3
}

/// A resolved sweep: the journal's first line holds it, so a worker needs only the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    pub name: String,
    /// The base experiment, resolved (absolute paths, every default).
    pub base: Experiment,
    pub strategy: Strategy,
    pub trials: usize,
    pub seed: u64,
    pub metric: Metric,
    pub direction: Direction,
    /// Run model id the metric is read from.
    pub model: String,
    pub workers: usize,
    pub threads: usize,
    pub heartbeat_seconds: f64,
    pub lease_seconds: f64,
    pub max_attempts: usize,
    pub dir: PathBuf,
    pub tpe: TpeConfig,
    pub asha: Option<AshaConfig>,
    pub slurm: SlurmConfig,
    pub params: Space,
}

fn cfg_err(file: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Config { file: file.display().to_string(), line: 0, reason: reason.into() }
}

impl SweepSpec {
    /// Read a sweep file; every parameter is tried on the base experiment (its first grid
    /// point or its lower end), so a bad path or value fails here, naming the parameter.
    pub fn load(path: &Path) -> Result<SweepSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let f: SweepFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|r| text[..r.start.min(text.len())].lines().count().max(1) as u64).unwrap_or(0);
            TrainError::Config { file: path.display().to_string(), line, reason: e.message().to_string() }
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let base = match &f.base {
            toml::Value::String(p) => Experiment::load(&dir.join(p))?,
            toml::Value::Table(t) => {
                // An inline experiment: resolved as if it were a file beside the sweep file.
                let tmp = dir.join(format!(".{}-base-{}.toml", f.name, std::process::id()));
                let s = toml::to_string(t).map_err(|e| cfg_err(path, format!("base: {e}")))?;
                std::fs::write(&tmp, s).map_err(|e| TrainError::io(&tmp, e))?;
                let r = Experiment::load(&tmp);
                let _ = std::fs::remove_file(&tmp);
                r?
            }
            _ => return Err(cfg_err(path, "base must be an experiment file's path or a [base] table")),
        };
        if f.name.is_empty() || f.name.contains(['/', '\\']) {
            return Err(cfg_err(path, format!("name {:?} must be non-empty and contain no path separator", f.name)));
        }
        if f.params.is_empty() {
            return Err(cfg_err(path, "a sweep needs at least one [params.\"<dotted key>\"] table"));
        }
        for (k, d) in &f.params {
            d.validate(k).map_err(|r| cfg_err(path, r))?;
        }
        f.tpe.validate().map_err(|r| cfg_err(path, r))?;
        if let Some(a) = &f.asha {
            a.validate().map_err(|r| cfg_err(path, r))?;
        }
        if f.workers == 0 || f.threads == 0 || f.max_attempts == 0 {
            return Err(cfg_err(path, "workers, threads and max_attempts must be at least 1"));
        }
        if !(f.heartbeat_seconds > 0.0 && f.lease_seconds > f.heartbeat_seconds) {
            return Err(cfg_err(
                path,
                format!("need 0 < heartbeat_seconds < lease_seconds, got {} and {}", f.heartbeat_seconds, f.lease_seconds),
            ));
        }
        let grid = match f.strategy {
            Strategy::Grid => Some(GridSampler::new(&f.params).map_err(|r| cfg_err(path, r))?),
            _ => None,
        };
        let trials = match (&grid, f.trials) {
            (Some(g), None) => g.points.len(),
            (Some(g), Some(n)) if n > g.points.len() => {
                return Err(cfg_err(path, format!("trials = {n}, but the grid has only {} points", g.points.len())))
            }
            (_, Some(0)) | (None, None) => return Err(cfg_err(path, "trials must be given (at least 1)")),
            (_, Some(n)) => n,
        };
        let root = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let out = match &f.out_dir {
            Some(o) if o.is_absolute() => o.clone(),
            Some(o) => root.join(o),
            None => base.runs_dir.parent().map(|p| p.join("sweeps")).unwrap_or_else(|| root.join("sweeps")),
        };
        let out = std::path::absolute(&out).unwrap_or(out);
        let model = match &f.model {
            Some(m) => m.clone(),
            None => {
                let t = base.targets[0].resolved_id().map_err(|r| cfg_err(path, r))?;
                crate::run::run_model_id(&base, &base.models[0], &t)
            }
        };
        let spec = SweepSpec {
            dir: out.join(&f.name),
            name: f.name,
            base,
            strategy: f.strategy,
            trials,
            seed: f.seed,
            metric: f.metric,
            direction: f.direction.unwrap_or(f.metric.default_direction()),
            model,
            workers: f.workers,
            threads: f.threads,
            heartbeat_seconds: f.heartbeat_seconds,
            lease_seconds: f.lease_seconds,
            max_attempts: f.max_attempts,
            tpe: f.tpe,
            asha: f.asha,
            slurm: f.slurm,
            params: f.params,
        };
        // Each parameter's ends (or the grid's first point) must make a valid experiment.
        let probes: Vec<Params> = match &grid {
            Some(g) => vec![g.points[0].clone()],
            None => {
                let lo: Params = spec.params.iter().map(|(k, d)| (k.clone(), d.from_internal(d.internal_bounds().0))).collect();
                let hi: Params = spec.params.iter().map(|(k, d)| (k.clone(), d.from_internal(d.internal_bounds().1))).collect();
                vec![lo, hi]
            }
        };
        for p in &probes {
            let (exp, _) =
                spec.experiment(0, p).map_err(|e| cfg_err(path, format!("the search space does not fit the base experiment: {e}")))?;
            let ids: Vec<String> = exp
                .targets
                .iter()
                .filter_map(|t| t.resolved_id().ok())
                .flat_map(|t| exp.models.iter().map(move |m| (m.clone(), t.clone())))
                .map(|(m, t)| crate::run::run_model_id(&exp, &m, &t))
                .collect();
            if !ids.contains(&spec.model) {
                return Err(cfg_err(
                    path,
                    format!("model = {:?} is not a model of the experiment (its run ids: {})", spec.model, ids.join(", ")),
                ));
            }
        }
        Ok(spec)
    }

    pub fn maximize(&self) -> bool {
        self.direction == Direction::Maximize
    }

    /// The objective as a loss (lower is better).
    pub fn loss(&self, value: f64) -> f64 {
        if self.maximize() {
            -value
        } else {
            value
        }
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.join("journal.jsonl")
    }

    pub fn sampler(&self) -> Result<Box<dyn Sampler>> {
        Ok(match self.strategy {
            Strategy::Grid => Box::new(GridSampler::new(&self.params).map_err(TrainError::Invalid)?),
            Strategy::Random => Box::new(RandomSampler { space: self.params.clone(), seed: self.seed }),
            Strategy::Tpe => Box::new(TpeSampler { space: self.params.clone(), seed: self.seed, config: self.tpe.clone() }),
        })
    }

    /// Trial `n`'s experiment with `params` applied, and its TOML text (the run's
    /// experiment.toml). The name becomes `<sweep>-tNNNN`.
    pub fn experiment(&self, n: usize, params: &Params) -> Result<(Experiment, String)> {
        self.experiment_named(n, params, &trial_name(&self.name, n))
    }

    pub fn experiment_named(&self, n: usize, params: &Params, name: &str) -> Result<(Experiment, String)> {
        let mut v = serde_json::to_value(&self.base).expect("experiments serialise");
        v["name"] = serde_json::Value::String(name.to_string());
        for (k, val) in params {
            space::apply(&mut v, k, val).map_err(TrainError::Invalid)?;
        }
        let text = format!(
            "# Trial {n} of sweep {:?}: the base experiment with {}\n{}",
            self.name,
            params.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "),
            crate::config::toml_of_json(v).map_err(|e| TrainError::Invalid(format!("trial {n}: {e}")))?
        );
        let exp = Experiment::from_toml(&text, &format!("{} trial {n}", self.name))?;
        Ok((exp, text))
    }

    /// SHA-256 of the resolved spec (the journal refuses another sweep's spec); the worker
    /// count and the Slurm settings may change between resumes and are left out.
    pub fn sha256(&self) -> String {
        use sha2::Digest;
        let mut c = self.clone();
        c.workers = 0;
        c.slurm = SlurmConfig::default();
        let s = serde_json::to_string(&c).expect("spec serialises");
        sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// TOML has no null: absent optional keys are dropped.
pub fn trial_name(sweep: &str, n: usize) -> String {
    format!("{sweep}-t{n:04}")
}
