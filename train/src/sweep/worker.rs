//! `flowcast sweep worker --journal <file>`: take trials from the journal and run them until
//! none is left. Each step is one journal transaction: re-queue running trials whose lease
//! expired, then claim a waiting trial (it resumes from its run's checkpoints) or create the
//! next one with the sampler; when every trial is created and others still run, wait (and take
//! theirs over should their workers die); stop when all are finished.

use super::journal::{now, Journal, Op, State, Trial, TrialState};
use super::sampler::Observation;
use super::space::Params;
use super::spec::SweepSpec;
use crate::config::Experiment;
use crate::error::{Result, TrainError};
use crate::progress::Mode;
use crate::run::{load_data, prepare_experiment, run_prepared, RunOptions};
use crate::trainer::{EpochControl, EpochObserver, EpochRecord};
use flowcast_contract::prepare::PreparedData;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub struct WorkerOptions {
    /// Unique among the sweep's workers (the journal records who holds a trial).
    pub worker_id: String,
    /// Stop after running this many trials (0 = until the sweep is done).
    pub max_trials: usize,
    pub progress: Mode,
}

/// The sweep spec from the journal's first line.
pub fn read_spec(journal: &Journal) -> Result<SweepSpec> {
    let st = journal.replay()?;
    let Some((_, spec)) = st.spec else {
        return Err(TrainError::card(&journal.path, "create_sweep", "the journal has no sweep header (first line)"));
    };
    serde_json::from_value(spec).map_err(|e| TrainError::card(&journal.path, "create_sweep.spec", e.to_string()))
}

/// The finished trials as the sampler sees them.
pub fn observations(spec: &SweepSpec, st: &State) -> Vec<Observation> {
    st.trials
        .values()
        .filter_map(|t| match t.state {
            TrialState::Complete => t.value.map(|v| Observation { params: t.params.clone(), loss: spec.loss(v), pruned: false }),
            TrialState::Pruned => Some(Observation { params: t.params.clone(), loss: f64::INFINITY, pruned: true }),
            _ => None,
        })
        .collect()
}

enum Step {
    Run { trial: usize, params: Params, run_dir: PathBuf },
    Wait,
    Done,
}

/// Runs trials until the sweep is done; returns the numbers of the trials this worker finished.
pub fn run_worker(journal: &Journal, opts: &WorkerOptions) -> Result<Vec<usize>> {
    let spec = read_spec(journal)?;
    let sampler = spec.sampler()?;
    let mut cache = DataCache::new(spec.dir.join("cache"));
    let mut ran = Vec::new();
    let poll = Duration::from_secs_f64((spec.heartbeat_seconds / 2.0).clamp(0.2, 5.0));
    loop {
        if opts.max_trials > 0 && ran.len() >= opts.max_trials {
            break;
        }
        let step = journal.transaction(|st| {
            let t = now();
            let mut ops = Vec::new();
            let mut waiting: Vec<&Trial> = Vec::new();
            for tr in st.trials.values() {
                match tr.state {
                    TrialState::Running if t - tr.last_seen > spec.lease_seconds => {
                        let reason = format!("worker {} silent for {:.0} s (lease {} s)", tr.worker, t - tr.last_seen, spec.lease_seconds);
                        if tr.attempts >= spec.max_attempts {
                            ops.push(Op::Finish {
                                trial: tr.number,
                                worker: tr.worker.clone(),
                                state: TrialState::Failed,
                                value: None,
                                epochs: tr.reports.len(),
                                seconds: 0.0,
                                test: Value::Null,
                                error: Some(format!("{reason}; gave up after {} attempts", tr.attempts)),
                                time: t,
                            });
                        } else {
                            tracing::warn!("sweep {}: re-queueing trial {}: {reason}", spec.name, tr.number);
                            ops.push(Op::Requeue { trial: tr.number, reason, time: t });
                            waiting.push(tr);
                        }
                    }
                    TrialState::Waiting => waiting.push(tr),
                    _ => {}
                }
            }
            if let Some(tr) = waiting.first() {
                ops.push(Op::Claim { trial: tr.number, worker: opts.worker_id.clone(), time: t });
                return Ok((ops, Step::Run { trial: tr.number, params: tr.params.clone(), run_dir: PathBuf::from(&tr.run_dir) }));
            }
            let n = st.trials.len();
            if n < spec.trials {
                let params = sampler.sample(n, &observations(&spec, st));
                let run_dir = spec.dir.join("runs").join(format!("{}-{}", super::spec::trial_name(&spec.name, n), crate::run::timestamp()));
                ops.push(Op::CreateTrial {
                    trial: n,
                    params: params.clone(),
                    run_dir: run_dir.display().to_string(),
                    worker: opts.worker_id.clone(),
                    time: t,
                });
                return Ok((ops, Step::Run { trial: n, params, run_dir }));
            }
            let busy = st.trials.values().any(|t| !t.state.finished());
            Ok((ops, if busy { Step::Wait } else { Step::Done }))
        })?;
        match step {
            Step::Done => break,
            Step::Wait => std::thread::sleep(poll),
            Step::Run { trial, params, run_dir } => {
                run_trial(&spec, journal, opts, &mut cache, trial, &params, &run_dir)?;
                ran.push(trial);
            }
        }
    }
    Ok(ran)
}

/// Renews the trial's lease every heartbeat until dropped.
struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(journal: Journal, trial: usize, worker: String, every: f64) -> Heartbeat {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs_f64(every)) {
                if let Err(e) = journal.append(vec![Op::Heartbeat { trial, worker: worker.clone(), time: now() }]) {
                    tracing::warn!("trial {trial}: heartbeat not written: {e}");
                }
            }
        });
        Heartbeat { stop: Some(tx), thread: Some(thread) }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reports the objective model's per-epoch metric to the journal and applies ASHA.
struct SweepObserver<'a> {
    spec: &'a SweepSpec,
    journal: &'a Journal,
    trial: usize,
    worker: &'a str,
    epochs: usize,
    lost: AtomicBool,
    error: std::sync::Mutex<Option<TrainError>>,
}

impl EpochObserver for SweepObserver<'_> {
    fn epoch_end(&self, model_id: &str, record: &EpochRecord) -> EpochControl {
        if model_id != self.spec.model {
            return EpochControl::Continue;
        }
        let Some(value) = self.spec.metric.of(record) else { return EpochControl::Continue };
        let epoch = record.epoch;
        let r = self.journal.transaction(|st| {
            let mine = st.trials.get(&self.trial).is_some_and(|t| t.state == TrialState::Running && t.worker == self.worker);
            if !mine {
                return Ok((vec![], EpochControl::Abort));
            }
            let op = Op::Report { trial: self.trial, worker: self.worker.to_string(), epoch, value, time: now() };
            let control = match &self.spec.asha {
                Some(a) if a.is_rung(epoch) && epoch < self.epochs => {
                    let others: Vec<f64> =
                        st.trials.values().filter(|t| t.number != self.trial).filter_map(|t| t.reports.get(&epoch).copied()).collect();
                    if a.promote(value, &others, self.spec.maximize()) {
                        EpochControl::Continue
                    } else {
                        EpochControl::Stop
                    }
                }
                _ => EpochControl::Continue,
            };
            Ok((vec![op], control))
        });
        match r {
            Ok(EpochControl::Abort) => {
                self.lost.store(true, Ordering::SeqCst);
                EpochControl::Abort
            }
            Ok(c) => c,
            Err(e) => {
                *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                EpochControl::Abort
            }
        }
    }
}

/// The trial's value: the best per-epoch objective of its run's history, its epochs and test
/// headline.
fn outcome(spec: &SweepSpec, run_dir: &Path, summary: &Value) -> Result<(Option<f64>, usize, Value, bool)> {
    let p = run_dir.join("metrics.json");
    let s = std::fs::read_to_string(&p).map_err(|e| TrainError::io(&p, e))?;
    let m: Value = serde_json::from_str(&s).map_err(|e| TrainError::card(&p, "json", e.to_string()))?;
    let hist: Vec<EpochRecord> = serde_json::from_value(m["models"][&spec.model]["history"].clone())
        .map_err(|e| TrainError::card(&p, &format!("models.{}.history", spec.model), e.to_string()))?;
    let vals = hist.iter().filter_map(|r| spec.metric.of(r)).filter(|v| v.is_finite());
    let value = if spec.maximize() { vals.reduce(f64::max) } else { vals.reduce(f64::min) };
    let h = &summary["models"][&spec.model];
    let test = json!({"accuracy": h["accuracy"], "macro_f1": h["macro_f1"], "mcc": h["mcc"]});
    Ok((value, hist.len(), test, h["pruned"] == true))
}

fn run_trial(
    spec: &SweepSpec,
    journal: &Journal,
    opts: &WorkerOptions,
    cache: &mut DataCache,
    trial: usize,
    params: &Params,
    run_dir: &Path,
) -> Result<()> {
    let t0 = Instant::now();
    let _hb = Heartbeat::start(journal.clone(), trial, opts.worker_id.clone(), spec.heartbeat_seconds);
    let finish = |state: TrialState, value: Option<f64>, epochs: usize, test: Value, error: Option<String>| {
        journal.append(vec![Op::Finish {
            trial,
            worker: opts.worker_id.clone(),
            state,
            value,
            epochs,
            seconds: t0.elapsed().as_secs_f64(),
            test,
            error,
            time: now(),
        }])
    };
    let (exp, text) = match spec.experiment(trial, params) {
        Ok(e) => e,
        Err(e) => return finish(TrialState::Failed, None, 0, Value::Null, Some(e.to_string())),
    };
    let observer = SweepObserver {
        spec,
        journal,
        trial,
        worker: &opts.worker_id,
        epochs: exp.training.epochs,
        lost: AtomicBool::new(false),
        error: std::sync::Mutex::new(None),
    };
    let result = cache.get(&exp).and_then(|(data, prep_s)| {
        let ro = RunOptions {
            resume: Some(run_dir.to_path_buf()),
            progress: opts.progress,
            stop_after: 0,
            device: None,
            runs_dir: None,
            verify_export: false,
            expect_events_sha256: None,
        };
        run_prepared(&exp, &text, &ro, &data, prep_s, Some(&observer as &dyn EpochObserver))
    });
    if observer.lost.load(Ordering::SeqCst) {
        tracing::warn!("trial {trial}: another worker holds it now (this worker's lease expired); leaving it");
        return Ok(());
    }
    if let Some(e) = observer.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
        // The journal itself failed: nothing can be recorded, stop the worker.
        return Err(e);
    }
    match result.and_then(|s| outcome(spec, run_dir, &s.json)) {
        Ok((value, epochs, test, pruned)) => {
            let state = if pruned { TrialState::Pruned } else { TrialState::Complete };
            finish(state, value, epochs, test, None)
        }
        Err(e) => {
            tracing::warn!("trial {trial} failed: {e}");
            finish(TrialState::Failed, None, 0, Value::Null, Some(e.to_string()))
        }
    }
}

/// Fingerprint of what the events depend on (the `[data]` table, and the seed when synthetic
/// data takes the experiment's).
pub fn data_fingerprint(exp: &Experiment) -> String {
    let seed = exp.data.synthetic.as_ref().map(|s| s.seed.unwrap_or(exp.seed));
    sha(&json!({"data": exp.data, "seed": seed}))
}

/// Fingerprint of the prepared windows: the events and every preprocessing table.
pub fn preprocessing_fingerprint(exp: &Experiment) -> String {
    sha(&json!({"data": data_fingerprint(exp), "columns": exp.columns, "label": exp.targets, "splits": exp.splits,
                "normalization": exp.normalization}))
}

fn sha(v: &Value) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(v.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Prepared data shared by the trials: the events on disk (`cache/events-<data fingerprint>/`,
/// a flowcast dataset, written once by whichever worker gets there first), the prepared
/// windows in memory per worker, keyed by the preprocessing fingerprint.
pub struct DataCache {
    dir: PathBuf,
    prepared: HashMap<String, Arc<PreparedData>>,
}

/// Prepared variants a worker keeps in memory.
const KEEP_PREPARED: usize = 4;

impl DataCache {
    pub fn new(dir: PathBuf) -> DataCache {
        DataCache { dir, prepared: HashMap::new() }
    }

    /// The experiment's prepared data and the seconds it took to get it (0 when cached).
    pub fn get(&mut self, exp: &Experiment) -> Result<(Arc<PreparedData>, f64)> {
        let key = preprocessing_fingerprint(exp);
        if let Some(d) = self.prepared.get(&key) {
            return Ok((d.clone(), 0.0));
        }
        let t0 = Instant::now();
        let ds = self.events(exp)?;
        let data = Arc::new(prepare_experiment(exp, &ds)?);
        if self.prepared.len() >= KEEP_PREPARED {
            self.prepared.clear();
        }
        self.prepared.insert(key, data.clone());
        Ok((data, t0.elapsed().as_secs_f64()))
    }

    fn events(&self, exp: &Experiment) -> Result<flowcast_datasets::store::Dataset> {
        if exp.data.dataset.is_some() {
            return load_data(exp); // already a stored dataset
        }
        let fp = data_fingerprint(exp);
        let dir = self.dir.join(format!("events-{}", &fp[..16]));
        if !dir.join("meta.json").exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
            // One worker builds it; the others wait on the lock and then read it.
            let lock_path = self.dir.join(format!("events-{}.lock", &fp[..16]));
            let lock = Journal::new(&lock_path);
            lock.transaction(|_| {
                if !dir.join("meta.json").exists() {
                    let ds = load_data(exp)?;
                    let tmp = self.dir.join(format!("events-{}.tmp-{}", &fp[..16], std::process::id()));
                    let _ = std::fs::remove_dir_all(&tmp);
                    flowcast_datasets::store::write_dataset(&tmp, &ds)?;
                    std::fs::rename(&tmp, &dir).map_err(|e| TrainError::io(&dir, e))?;
                }
                Ok((vec![], ()))
            })?;
        }
        Ok(flowcast_datasets::store::read_dataset(&dir)?)
    }
}
