//! Where the workers run: `local` (N `flowcast sweep worker` processes on this machine, each
//! with RAYON_NUM_THREADS = the per-trial thread budget) or `slurm` (one `sbatch
//! --array=0-(T−1)%K` job whose tasks each run a worker; the controller polls `squeue` until
//! the job has left the queue and reads the tasks' final states from `sacct`, or from
//! `scontrol show job` where accounting is off). The sweep itself (which trial ran, its result)
//! is always read from the journal.

use super::journal::{now, Journal, Op};
use super::spec::SweepSpec;
use crate::error::{Result, TrainError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    Slurm,
}

impl Backend {
    pub fn parse(s: &str) -> Result<Backend> {
        match s {
            "local" => Ok(Backend::Local),
            "slurm" => Ok(Backend::Slurm),
            _ => Err(TrainError::Invalid(format!("--backend: unknown {s:?} (local or slurm)"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Slurm => "slurm",
        }
    }
}

/// Writes the journal's header, or checks that an existing journal belongs to this spec (a
/// resumed sweep).
pub fn open_journal(spec: &SweepSpec) -> Result<Journal> {
    std::fs::create_dir_all(&spec.dir).map_err(|e| TrainError::io(&spec.dir, e))?;
    let j = Journal::new(spec.journal_path());
    let sha = spec.sha256();
    j.transaction(|st| match &st.spec {
        None => Ok((
            vec![Op::CreateSweep {
                format: super::journal::JOURNAL_FORMAT,
                spec_sha256: sha.clone(),
                spec: serde_json::to_value(spec).expect("spec serialises"),
                time: now(),
            }],
            (),
        )),
        Some((old, _)) if old == &sha => Ok((vec![], ())),
        Some((old, _)) => Err(TrainError::card(
            &j.path,
            "create_sweep.spec_sha256",
            format!("the journal belongs to another sweep spec ({old}, this one is {sha}): rename the sweep or move its directory away"),
        )),
    })?;
    Ok(j)
}

/// What ran the workers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BackendReport {
    pub backend: String,
    pub workers: usize,
    /// Local: each worker process's exit code (None: killed by a signal).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exit_codes: Vec<Option<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmReport>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SlurmReport {
    pub job_id: String,
    pub script: String,
    pub array: String,
    /// Per array task: (task, state, exit code) as Slurm reports them.
    pub tasks: Vec<SlurmTask>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SlurmTask {
    pub task: String,
    pub state: String,
    pub exit_code: String,
}

fn worker_command(exe: &Path, journal: &Path, worker_id: &str) -> Vec<String> {
    vec![
        exe.display().to_string(),
        "sweep".into(),
        "worker".into(),
        "--journal".into(),
        journal.display().to_string(),
        "--worker-id".into(),
        worker_id.into(),
    ]
}

/// N worker processes of `exe` (the flowcast binary); waits for all of them.
pub fn run_local(spec: &SweepSpec, exe: &Path, workers: usize) -> Result<BackendReport> {
    let logs = spec.dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| TrainError::io(&logs, e))?;
    let mut children = Vec::new();
    for i in 0..workers {
        let id = format!("local-{}-{i}", std::process::id());
        let log_path = logs.join(format!("{id}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| TrainError::io(&log_path, e))?;
        let err = log.try_clone().map_err(|e| TrainError::io(&log_path, e))?;
        let argv = worker_command(exe, &spec.journal_path(), &id);
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("RAYON_NUM_THREADS", spec.threads.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| TrainError::io(exe, e))?;
        tracing::info!("sweep {}: worker {id} (pid {}) logs to {}", spec.name, child.id(), log_path.display());
        children.push(child);
    }
    let mut codes = Vec::new();
    for mut c in children {
        let s = c.wait().map_err(|e| TrainError::io(exe, e))?;
        codes.push(s.code());
    }
    Ok(BackendReport { backend: "local".into(), workers, exit_codes: codes, slurm: None })
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script of the sweep's job array.
pub fn slurm_script(spec: &SweepSpec, exe: &Path, workers: usize) -> (String, String) {
    let tasks = spec.slurm.tasks.unwrap_or(spec.trials).max(1);
    let array = format!("0-{}%{}", tasks - 1, workers.max(1));
    let out = spec.dir.join("slurm");
    let mut s = String::from("#!/bin/bash\n");
    s += &format!("# flowcast sweep {:?}: each array task runs one worker on the shared journal.\n", spec.name);
    s += &format!("#SBATCH --job-name=flowcast-{}\n", spec.name);
    s += &format!("#SBATCH --array={array}\n");
    s += "#SBATCH --ntasks=1\n";
    s += &format!("#SBATCH --cpus-per-task={}\n", spec.threads);
    s += &format!("#SBATCH --output={}/%A_%a.out\n", out.display());
    s += &format!("#SBATCH --chdir={}\n", spec.dir.display());
    if let Some(p) = &spec.slurm.partition {
        s += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &spec.slurm.time {
        s += &format!("#SBATCH --time={t}\n");
    }
    if let Some(m) = &spec.slurm.mem {
        s += &format!("#SBATCH --mem={m}\n");
    }
    for o in &spec.slurm.options {
        s += &format!("#SBATCH {o}\n");
    }
    s += "set -euo pipefail\n";
    s += &format!("export RAYON_NUM_THREADS={}\n", spec.threads);
    let argv = worker_command(exe, &spec.journal_path(), "WORKER");
    let cmd: Vec<String> = argv
        .iter()
        .map(|a| if a == "WORKER" { "\"slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"".to_string() } else { quote(a) })
        .collect();
    s += &format!("exec {}\n", cmd.join(" "));
    (s, array)
}

fn run_tool(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| TrainError::Invalid(format!("{what}: cannot run it ({e}); is Slurm installed and on PATH?")))?;
    if !out.status.success() {
        return Err(TrainError::Invalid(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Submits the array job and waits until it has left the queue.
pub fn run_slurm(spec: &SweepSpec, exe: &Path, workers: usize) -> Result<BackendReport> {
    let dir = spec.dir.join("slurm");
    std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
    let (script, array) = slurm_script(spec, exe, workers);
    let path: PathBuf = dir.join("sweep.sbatch");
    std::fs::write(&path, &script).map_err(|e| TrainError::io(&path, e))?;
    let t0 = std::time::Instant::now();
    let out = run_tool(Command::new("sbatch").arg("--parsable").arg(&path), "sbatch")?;
    let job_id = out.trim().split(';').next().unwrap_or("").to_string();
    if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(TrainError::Invalid(format!("sbatch printed {out:?}, not a job id")));
    }
    tracing::info!("sweep {}: submitted job array {job_id} ({array})", spec.name);
    eprintln!("sweep {}: Slurm job {job_id}, array {array}, script {}", spec.name, path.display());
    let poll = Duration::from_secs_f64(spec.slurm.poll_seconds.max(0.2));
    loop {
        let o = Command::new("squeue").args(["-h", "-j", &job_id, "-o", "%i %T"]).output();
        match o {
            Ok(o) if o.status.success() => {
                if String::from_utf8_lossy(&o.stdout).trim().is_empty() {
                    break;
                }
            }
            // Once the job has been purged squeue answers "Invalid job id specified".
            Ok(o) if String::from_utf8_lossy(&o.stderr).contains("Invalid job id") => break,
            Ok(o) => return Err(TrainError::Invalid(format!("squeue failed: {}", String::from_utf8_lossy(&o.stderr).trim()))),
            Err(e) => return Err(TrainError::Invalid(format!("squeue: cannot run it ({e})"))),
        }
        std::thread::sleep(poll);
    }
    let tasks = task_states(&job_id);
    Ok(BackendReport {
        backend: "slurm".into(),
        workers,
        exit_codes: vec![],
        slurm: Some(SlurmReport { job_id, script: path.display().to_string(), array, tasks, seconds: t0.elapsed().as_secs_f64() }),
    })
}

/// Final state of each array task: `sacct` when accounting is on, else `scontrol show job`.
fn task_states(job_id: &str) -> Vec<SlurmTask> {
    if let Ok(s) = run_tool(Command::new("sacct").args(["-j", job_id, "-n", "-P", "-X", "-o", "JobID,State,ExitCode"]), "sacct") {
        let t: Vec<SlurmTask> = s
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() == 3).then(|| SlurmTask { task: f[0].into(), state: f[1].into(), exit_code: f[2].into() })
            })
            .collect();
        if !t.is_empty() {
            return t;
        }
    }
    let Ok(s) = run_tool(Command::new("scontrol").args(["-o", "show", "job", job_id]), "scontrol") else { return vec![] };
    let mut tasks: Vec<SlurmTask> = s
        .lines()
        .map(|l| {
            let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap_or("?").to_string();
            SlurmTask {
                task: format!("{}_{}", field("ArrayJobId="), field("ArrayTaskId=")),
                state: field("JobState="),
                exit_code: field("ExitCode="),
            }
        })
        .collect();
    tasks.sort_by(|a, b| a.task.cmp(&b.task));
    tasks
}
