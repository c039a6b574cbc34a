//! The sweep journal: one append-only file of JSON operations, one per line (the model is
//! Optuna's `JournalFileBackend`): every worker and the controller append to it and replay it to
//! learn the sweep's state. Safe for concurrent writers on one machine or a shared file system
//! with working `flock`: each change is a read–decide–append under an exclusive advisory lock
//! (`flock(2)`), written with `O_APPEND` as one whole line in one `write`. A torn last line (a
//! writer killed mid-write) is fenced off by a newline before the next append and skipped on
//! replay with a warning.

use super::space::Params;
use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Version of the journal's operations.
pub const JOURNAL_FORMAT: u32 = 1;

/// Seconds since the Unix epoch (UTC), the journal's clock.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    /// Created or re-queued, no worker holds it.
    Waiting,
    Running,
    Complete,
    /// Stopped by ASHA.
    Pruned,
    Failed,
}

impl TrialState {
    pub fn finished(self) -> bool {
        matches!(self, TrialState::Complete | TrialState::Pruned | TrialState::Failed)
    }
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Waiting => "waiting",
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
        }
    }
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// First line: the resolved sweep (everything a worker needs) and its hash.
    CreateSweep { format: u32, spec_sha256: String, spec: Value, time: f64 },
    /// A new trial, claimed by `worker` at once; `run_dir` is its run directory.
    CreateTrial { trial: usize, params: Params, run_dir: String, worker: String, time: f64 },
    /// A waiting (re-queued) trial taken by `worker`; it resumes from the run's checkpoints.
    Claim { trial: usize, worker: String, time: f64 },
    /// `worker` still runs the trial (its lease is renewed).
    Heartbeat { trial: usize, worker: String, time: f64 },
    /// The objective after `epoch` (the per-epoch validation metric).
    Report { trial: usize, worker: String, epoch: usize, value: f64, time: f64 },
    /// The trial's lease expired (its worker died): back to waiting.
    Requeue { trial: usize, reason: String, time: f64 },
    Finish {
        trial: usize,
        worker: String,
        state: TrialState,
        #[serde(default)]
        value: Option<f64>,
        epochs: usize,
        seconds: f64,
        #[serde(default)]
        test: Value,
        #[serde(default)]
        error: Option<String>,
        time: f64,
    },
}

/// A trial as replayed from the journal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trial {
    pub number: usize,
    pub params: Params,
    pub run_dir: String,
    pub state: TrialState,
    pub worker: String,
    /// Time of the last claim, heartbeat or report: the lease runs from here.
    pub last_seen: f64,
    pub started: f64,
    /// Epoch → objective.
    pub reports: BTreeMap<usize, f64>,
    pub value: Option<f64>,
    pub epochs: usize,
    pub seconds: f64,
    pub test: Value,
    pub error: Option<String>,
    /// Claims so far (1 + re-queues taken).
    pub attempts: usize,
}

/// The sweep's state: what the journal's operations add up to.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub spec: Option<(String, Value)>,
    pub trials: BTreeMap<usize, Trial>,
    /// Lines that did not parse (torn or foreign), as (line number, reason).
    pub skipped: Vec<(usize, String)>,
}

impl State {
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::CreateSweep { spec_sha256, spec, .. } => {
                if self.spec.is_none() {
                    self.spec = Some((spec_sha256.clone(), spec.clone()));
                }
            }
            Op::CreateTrial { trial, params, run_dir, worker, time } => {
                self.trials.entry(*trial).or_insert_with(|| Trial {
                    number: *trial,
                    params: params.clone(),
                    run_dir: run_dir.clone(),
                    state: TrialState::Running,
                    worker: worker.clone(),
                    last_seen: *time,
                    started: *time,
                    reports: BTreeMap::new(),
                    value: None,
                    epochs: 0,
                    seconds: 0.0,
                    test: Value::Null,
                    error: None,
                    attempts: 1,
                });
            }
            Op::Claim { trial, worker, time } => {
                if let Some(t) = self.trials.get_mut(trial).filter(|t| t.state == TrialState::Waiting) {
                    t.state = TrialState::Running;
                    t.worker = worker.clone();
                    t.last_seen = *time;
                    t.attempts += 1;
                }
            }
            Op::Heartbeat { trial, worker, time } => {
                if let Some(t) = self.trials.get_mut(trial).filter(|t| t.state == TrialState::Running && &t.worker == worker) {
                    t.last_seen = t.last_seen.max(*time);
                }
            }
            Op::Report { trial, worker, epoch, value, time } => {
                if let Some(t) = self.trials.get_mut(trial).filter(|t| &t.worker == worker) {
                    t.reports.insert(*epoch, *value);
                    t.last_seen = t.last_seen.max(*time);
                }
            }
            Op::Requeue { trial, .. } => {
                if let Some(t) = self.trials.get_mut(trial).filter(|t| t.state == TrialState::Running) {
                    t.state = TrialState::Waiting;
                }
            }
            Op::Finish { trial, worker, state, value, epochs, seconds, test, error, .. } => {
                if let Some(t) = self.trials.get_mut(trial).filter(|t| t.state == TrialState::Running && &t.worker == worker) {
                    t.state = *state;
                    t.value = *value;
                    t.epochs = *epochs;
                    t.seconds = *seconds;
                    t.test = test.clone();
                    t.error = error.clone();
                }
            }
        }
    }
}

/// The journal file.
#[derive(Clone, Debug)]
pub struct Journal {
    pub path: PathBuf,
}

/// An open journal with the exclusive lock held (released on drop, with the file).
struct Locked {
    file: File,
}

impl Locked {
    fn open(path: &Path) -> Result<Locked> {
        let file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(|e| TrainError::io(path, e))?;
        lock_exclusive(&file).map_err(|e| TrainError::io(path, e))?;
        Ok(Locked { file })
    }
}

#[cfg(unix)]
fn lock_exclusive(f: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(not(unix))]
fn lock_exclusive(_: &File) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "the sweep journal needs flock (Unix)"))
}

impl Journal {
    pub fn new(path: impl Into<PathBuf>) -> Journal {
        Journal { path: path.into() }
    }

    fn read_all(&self, f: &mut File) -> Result<(State, bool)> {
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(0)).map_err(|e| TrainError::io(&self.path, e))?;
        f.read_to_end(&mut buf).map_err(|e| TrainError::io(&self.path, e))?;
        let ends_clean = buf.last().is_none_or(|&b| b == b'\n');
        let mut st = State::default();
        for (i, line) in buf.split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Op>(line) {
                Ok(op) => st.apply(&op),
                Err(e) => {
                    tracing::warn!("{}:{}: skipping an unreadable journal line: {e}", self.path.display(), i + 1);
                    st.skipped.push((i + 1, e.to_string()));
                }
            }
        }
        Ok((st, ends_clean))
    }

    /// The current state (a shared read under the same lock, so no half-written line is seen
    /// except a writer's torn last line).
    pub fn replay(&self) -> Result<State> {
        let mut l = Locked::open(&self.path)?;
        Ok(self.read_all(&mut l.file)?.0)
    }

    /// Read–decide–append atomically: `decide` sees the state and returns the operations to
    /// append (and a result); nobody else appends in between.
    pub fn transaction<T>(&self, decide: impl FnOnce(&State) -> Result<(Vec<Op>, T)>) -> Result<T> {
        let mut l = Locked::open(&self.path)?;
        let (st, ends_clean) = self.read_all(&mut l.file)?;
        let (ops, out) = decide(&st)?;
        if !ops.is_empty() {
            let mut text = String::new();
            if !ends_clean {
                text.push('\n');
            }
            for op in &ops {
                text.push_str(&serde_json::to_string(op).expect("ops serialise"));
                text.push('\n');
            }
            // One write of whole lines (O_APPEND: at the end, whoever else holds the file).
            l.file.write_all(text.as_bytes()).map_err(|e| TrainError::io(&self.path, e))?;
            l.file.flush().map_err(|e| TrainError::io(&self.path, e))?;
        }
        Ok(out)
    }

    /// Append operations that need no decision (heartbeats, reports).
    pub fn append(&self, ops: Vec<Op>) -> Result<()> {
        self.transaction(|_| Ok((ops, ())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(trial: usize, worker: &str) -> Op {
        Op::Heartbeat { trial, worker: worker.into(), time: now() }
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("journal.jsonl"));
        let threads: Vec<_> = (0..8)
            .map(|w| {
                let j = j.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        if i % 2 == 0 {
                            j.append(vec![hb(i, &format!("w{w}"))]).unwrap();
                        } else {
                            // A transaction: count what is there, then add a line.
                            j.transaction(|st| Ok((vec![hb(st.trials.len() + i, &format!("w{w}"))], ()))).unwrap();
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let text = std::fs::read_to_string(&j.path).unwrap();
        let ops: Vec<Op> = text.lines().map(|l| serde_json::from_str(l).expect("every line is whole JSON")).collect();
        assert_eq!(ops.len(), 8 * 200);
        for w in 0..8 {
            let n = ops.iter().filter(|o| matches!(o, Op::Heartbeat { worker, .. } if worker == &format!("w{w}"))).count();
            assert_eq!(n, 200, "worker {w}");
        }
    }

    /// Body of the child processes of `processes_lose_nothing` (a no-op when run on its own).
    #[test]
    fn journal_child_writer() {
        let (Ok(path), Ok(name)) = (std::env::var("FLOWCAST_JOURNAL_CHILD"), std::env::var("FLOWCAST_JOURNAL_WORKER")) else { return };
        let j = Journal::new(path);
        for i in 0..300 {
            if i % 2 == 0 {
                j.append(vec![hb(i, &name)]).unwrap();
            } else {
                j.transaction(|st| {
                    let op = Op::CreateTrial {
                        trial: st.trials.len(),
                        params: Params::new(),
                        run_dir: String::new(),
                        worker: name.clone(),
                        time: now(),
                    };
                    Ok((vec![op], ()))
                })
                .unwrap();
            }
        }
    }

    #[test]
    fn processes_lose_nothing() {
        // Four processes (this test binary again, running `journal_child_writer`) append at once.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..4)
            .map(|w| {
                std::process::Command::new(&exe)
                    .args(["--exact", "sweep::journal::tests::journal_child_writer", "--test-threads", "1"])
                    .env("FLOWCAST_JOURNAL_CHILD", &path)
                    .env("FLOWCAST_JOURNAL_WORKER", format!("p{w}"))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let ops: Vec<Op> = text.lines().map(|l| serde_json::from_str(l).expect("every line is whole JSON")).collect();
        assert_eq!(ops.len(), 4 * 300);
        for w in 0..4 {
            let n = ops.iter().filter(|o| matches!(o, Op::Heartbeat { worker, .. } if worker == &format!("p{w}"))).count();
            assert_eq!(n, 150, "process {w}");
        }
        // Read–decide–append was atomic across processes: trial numbers 0..600, none twice.
        let mut nums: Vec<usize> =
            ops.iter().filter_map(|o| if let Op::CreateTrial { trial, .. } = o { Some(*trial) } else { None }).collect();
        nums.sort_unstable();
        assert_eq!(nums, (0..600).collect::<Vec<_>>());
    }

    #[test]
    fn trials_are_claimed_once_under_contention() {
        // Many threads race to create "the next trial": numbers must come out 0..n without a
        // duplicate, which only holds if read–decide–append is atomic.
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("journal.jsonl"));
        let threads: Vec<_> = (0..6)
            .map(|w| {
                let j = j.clone();
                std::thread::spawn(move || {
                    for _ in 0..30 {
                        j.transaction(|st| {
                            let n = st.trials.len();
                            let op = Op::CreateTrial {
                                trial: n,
                                params: Params::new(),
                                run_dir: String::new(),
                                worker: format!("w{w}"),
                                time: now(),
                            };
                            Ok((vec![op], ()))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let text = std::fs::read_to_string(&j.path).unwrap();
        let mut nums: Vec<usize> = text
            .lines()
            .map(|l| match serde_json::from_str::<Op>(l).unwrap() {
                Op::CreateTrial { trial, .. } => trial,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(nums.len(), 180);
        nums.sort_unstable();
        assert_eq!(nums, (0..180).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_last_line_is_fenced_off_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path().join("journal.jsonl"));
        j.append(vec![Op::CreateTrial { trial: 0, params: Params::new(), run_dir: "r".into(), worker: "a".into(), time: 1.0 }]).unwrap();
        std::fs::OpenOptions::new().append(true).open(&j.path).unwrap().write_all(b"{\"op\":\"heartb").unwrap();
        j.append(vec![Op::Requeue { trial: 0, reason: "test".into(), time: 2.0 }]).unwrap();
        let st = j.replay().unwrap();
        assert_eq!(st.skipped.len(), 1, "{:?}", st.skipped);
        assert_eq!(st.trials[&0].state, TrialState::Waiting, "the op after the torn line still counts");
    }

    #[test]
    fn replay_follows_the_trial_life_cycle() {
        let mut st = State::default();
        let t = |time| time;
        st.apply(&Op::CreateTrial { trial: 0, params: Params::new(), run_dir: "r".into(), worker: "a".into(), time: t(1.0) });
        st.apply(&Op::Report { trial: 0, worker: "a".into(), epoch: 1, value: 0.4, time: t(2.0) });
        st.apply(&Op::Requeue { trial: 0, reason: "lease".into(), time: t(9.0) });
        // The dead worker's late finish does not count once another worker holds the trial.
        st.apply(&Op::Claim { trial: 0, worker: "b".into(), time: t(10.0) });
        st.apply(&Op::Finish {
            trial: 0,
            worker: "a".into(),
            state: TrialState::Complete,
            value: Some(0.1),
            epochs: 1,
            seconds: 1.0,
            test: Value::Null,
            error: None,
            time: t(11.0),
        });
        assert_eq!(st.trials[&0].state, TrialState::Running);
        st.apply(&Op::Finish {
            trial: 0,
            worker: "b".into(),
            state: TrialState::Complete,
            value: Some(0.5),
            epochs: 2,
            seconds: 3.0,
            test: Value::Null,
            error: None,
            time: t(12.0),
        });
        let tr = &st.trials[&0];
        assert_eq!((tr.state, tr.value, tr.attempts, tr.reports[&1]), (TrialState::Complete, Some(0.5), 2, 0.4));
    }
}
