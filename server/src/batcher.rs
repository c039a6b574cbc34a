//! The inference queue: a bounded number of admitted requests (503 beyond, so memory stays
//! bounded by `queue_capacity × max_body_bytes`), per-request deadlines (504), and per model
//! `instances` workers that run the model on tokio's blocking pool — with dynamic batching, each
//! worker collects queued requests for its model until `max_batch` windows or until the first
//! has waited `max_queue_delay_us`, runs one model call, and splits the probabilities back (as
//! Triton's dynamic batcher). Every request's input is checked on its own before it joins a
//! batch, so one bad request never fails the others.

use crate::config::{Batching, Ops};
use crate::error::ApiError;
use crate::infer::Inference;
use crate::metrics::Metrics;
use crate::repo::Model;
use flowcast_contract::{Batch, ContractError, Outputs};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

struct Job {
    model: Arc<Model>,
    x: Vec<f32>,
    batch: usize,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Inference, ApiError>>,
    _permit: Permit,
}

/// One admitted request; dropping it frees its place in the queue.
struct Permit {
    queued: Arc<AtomicUsize>,
    depth: prometheus::IntGauge,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.depth.dec();
    }
}

struct Queue {
    /// The model the workers serve (a reload makes a new queue).
    model: Arc<Model>,
    tx: mpsc::UnboundedSender<Job>,
}

pub struct Scheduler {
    ops: Ops,
    metrics: Arc<Metrics>,
    queued: Arc<AtomicUsize>,
    queues: Mutex<HashMap<(String, String), Queue>>,
}

/// What a worker holds between model calls: the receiver and a job that did not fit the last batch.
struct Rx {
    rx: mpsc::UnboundedReceiver<Job>,
    carry: Option<Job>,
}

impl Scheduler {
    pub fn new(ops: Ops, metrics: Arc<Metrics>) -> Scheduler {
        metrics.queue_capacity.set(ops.queue_capacity as i64);
        Scheduler { ops, metrics, queued: Arc::new(AtomicUsize::new(0)), queues: Mutex::new(HashMap::new()) }
    }

    /// Runs `model` on `x` (`shape` from [`crate::infer::check_input`]) through the queue.
    /// Errors: bad data (400 naming `field`), queue full (503), deadline passed (504).
    pub async fn run(&self, model: Arc<Model>, x: Vec<f32>, shape: [usize; 3], field: String) -> Result<Inference, ApiError> {
        let [b, t, f] = shape;
        // Checked here, alone, so the batch a request joins cannot fail because of it.
        Batch::new(&x, b, t, f).and_then(|batch| model.info().check(&batch)).map_err(|e| ApiError::bad(&format!("{field}.data"), e))?;
        let permit = self.admit(&model)?;
        let now = Instant::now();
        let deadline = self.ops.timeout_for(&model.name).map(|d| now + d);
        let (reply, rx) = oneshot::channel();
        let job = Job { model: model.clone(), x, batch: b, enqueued: now, deadline, reply, _permit: permit };
        self.queue(&model).send(job).map_err(|_| ApiError::unavailable("inference queue closed (shutting down)"))?;
        let answer = async { rx.await.unwrap_or_else(|_| Err(ApiError::internal("inference worker stopped"))) };
        match deadline {
            None => answer.await,
            Some(d) => tokio::time::timeout_at(d.into(), answer).await.unwrap_or_else(|_| Err(timeout_error(&model, &self.ops))),
        }
    }

    fn admit(&self, model: &Model) -> Result<Permit, ApiError> {
        let cap = self.ops.queue_capacity;
        if self.queued.fetch_add(1, Ordering::AcqRel) >= cap {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.metrics.queue_rejected.inc();
            return Err(ApiError::unavailable(format!("inference queue full ({cap} requests): retry later")));
        }
        let depth = self.metrics.queue_depth.with_label_values(&[&model.name]);
        depth.inc();
        Ok(Permit { queued: self.queued.clone(), depth })
    }

    /// The queue of `model`, started (with its workers) on first use or after a reload.
    fn queue(&self, model: &Arc<Model>) -> mpsc::UnboundedSender<Job> {
        let mut qs = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let key = (model.name.clone(), model.version.clone());
        if let Some(q) = qs.get(&key) {
            if Arc::ptr_eq(&q.model, model) {
                return q.tx.clone();
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(Rx { rx, carry: None }));
        let b = self.ops.batching_for(&model.name);
        for _ in 0..b.instances {
            tokio::spawn(worker(rx.clone(), b, self.metrics.clone()));
        }
        // Replacing the old queue drops its sender: its workers finish what is queued and stop.
        qs.insert(key, Queue { model: model.clone(), tx: tx.clone() });
        tx
    }
}

fn timeout_error(model: &Model, ops: &Ops) -> ApiError {
    let ms = ops.timeout_for(&model.name).map(|d| d.as_millis()).unwrap_or(0);
    ApiError::timeout(format!("model {:?}: no answer within the request timeout ({ms} ms)", model.name))
}

/// Whether a job is still worth running (its client waits and its deadline has not passed).
fn live(j: &Job, now: Instant) -> bool {
    !j.reply.is_closed() && j.deadline.is_none_or(|d| now < d)
}

/// One worker of a model: takes a batch from the queue, runs it, answers; stops when the queue closes.
async fn worker(rx: Arc<tokio::sync::Mutex<Rx>>, b: Batching, metrics: Arc<Metrics>) {
    loop {
        let jobs = {
            let mut q = rx.lock().await;
            let first = match q.carry.take() {
                Some(j) => j,
                None => match q.rx.recv().await {
                    Some(j) => j,
                    None => return,
                },
            };
            let mut windows = first.batch;
            let until = first.enqueued + Duration::from_micros(b.max_queue_delay_us);
            let mut jobs = vec![first];
            while windows < b.max_batch {
                // Already queued requests join at once; then wait until the first's delay is over.
                let next = match q.rx.try_recv() {
                    Ok(j) => Some(j),
                    Err(_) if b.max_queue_delay_us == 0 => None,
                    Err(_) => tokio::time::timeout_at(until.into(), q.rx.recv()).await.ok().flatten(),
                };
                let Some(j) = next else { break };
                if windows + j.batch > b.max_batch || !Arc::ptr_eq(&j.model, &jobs[0].model) {
                    q.carry = Some(j);
                    break;
                }
                windows += j.batch;
                jobs.push(j);
            }
            jobs
        };
        let now = Instant::now();
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| live(j, now)).collect();
        if jobs.is_empty() {
            continue;
        }
        let model = jobs[0].model.clone();
        for j in &jobs {
            metrics.queue_seconds.with_label_values(&[&model.name]).observe(now.duration_since(j.enqueued).as_secs_f64());
        }
        let m = metrics.clone();
        let done = tokio::task::spawn_blocking(move || run_batch(jobs, &m)).await;
        if let Err(e) = done {
            tracing::error!(model = %model.name, "inference task failed: {e}");
        }
    }
}

/// One model call over the concatenated windows of `jobs`; each job gets its rows.
fn run_batch(mut jobs: Vec<Job>, metrics: &Metrics) {
    let model = jobs[0].model.clone();
    let info = model.info();
    let (t, f, k) = (info.window, info.features, info.classes.len());
    let total: usize = jobs.iter().map(|j| j.batch).sum();
    let x = if jobs.len() == 1 {
        std::mem::take(&mut jobs[0].x)
    } else {
        let mut x = Vec::with_capacity(total * t * f);
        for j in &mut jobs {
            x.append(&mut j.x);
        }
        x
    };
    let t0 = Instant::now();
    let result = Batch::new(&x, total, t, f).and_then(|batch| {
        let mut out = Outputs::new(k);
        model.predictor.predict(&batch, &mut out).map(|()| out)
    });
    let secs = t0.elapsed().as_secs_f64();
    let label = [model.name.as_str()];
    metrics.compute_seconds.with_label_values(&label).observe(secs);
    metrics.batch_windows.with_label_values(&label).observe(total as f64);
    metrics.batch_requests.with_label_values(&label).observe(jobs.len() as f64);
    let compute_us = (secs * 1e6) as u64;
    let out = match result {
        Ok(out) if out.probs.len() == total * k => out,
        Ok(out) => {
            let msg = format!("model {:?} returned {} probabilities for {total} windows × {k} classes", model.name, out.probs.len());
            return jobs.into_iter().for_each(|j| drop(j.reply.send(Err(ApiError::internal(msg.clone())))));
        }
        Err(e) => {
            let err = match e {
                ContractError::Input { .. } => ApiError::bad("inputs[0]", e),
                e => ApiError::internal(format!("model {:?}: {e}", model.name)),
            };
            return jobs.into_iter().for_each(|j| drop(j.reply.send(Err(err.clone()))));
        }
    };
    let mut row = 0;
    // Per-window outputs (regression, std) split like the probabilities, when the model has them.
    let rows = |v: &[f32], r: usize, n: usize| if v.len() == total { v[r..r + n].to_vec() } else { Vec::new() };
    for j in jobs {
        let probs = out.probs[row * k..(row + j.batch) * k].to_vec();
        let (regression, std) = (rows(&out.regression, row, j.batch), rows(&out.std, row, j.batch));
        row += j.batch;
        let queue_us = t0.duration_since(j.enqueued).as_micros() as u64;
        let _ =
            j.reply.send(Ok(Inference { probs, regression, std, batch: j.batch, classes: k, compute_us, queue_us, batch_windows: total }));
    }
}
