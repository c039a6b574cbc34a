//! Stream mode from the bus: the server reads a NATS JetStream stream of canonical events (what
//! `flowcast collect ... --nats` publishes, `flowcast_live::bus`) through a durable consumer,
//! runs each message through the same per-stream state as the gRPC and WebSocket stream mode
//! ([`Session`]: book, feature engine, the card's normaliser, window ring), and publishes every
//! answer — the WebSocket reply JSON: predictions with signals, gaps, crossed books, errors — on
//! a NATS subject for the execution layer (docs/serve.md, "Stream mode from the bus").
//!
//! Delivery: a message is acknowledged once its answer is computed; the answers of one fetch are
//! published and flushed right after. A message whose events are refused as bad input is
//! answered with the error and acknowledged (it would fail again); a model that is not loaded
//! (unloaded, reloading) leaves the message unacknowledged: it is redelivered after a back-off.
//! A restarted server resumes at the first unacknowledged message, its stream state rebuilt from
//! there (a gap in what the features saw: the first windows after a restart need `window` rows).

use crate::error::ErrorKind;
use crate::stream::{OpenOptions, Session, StreamRequest};
use crate::App;
use flowcast_live::bus::Bus;
use flowcast_live::LiveError;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `[[subscribe]]` in serve.toml.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// NATS server URL, e.g. `nats://127.0.0.1:4222`.
    pub nats: String,
    /// JetStream stream name (`FLOWCAST_<VENUE>_<SYMBOL>`, as the collector creates it).
    pub stream: String,
    /// Model name in the repository (its newest ready version unless `version`).
    pub model: String,
    #[serde(default)]
    pub version: Option<String>,
    /// Durable consumer name (default `flowcast-serve-<model>`): restarts resume from it.
    #[serde(default)]
    pub durable: Option<String>,
    /// Subject the answers go to (default `flowcast.predictions.<model>.<stream>`).
    #[serde(default)]
    pub publish: Option<String>,
    /// Messages per fetch (default 256).
    #[serde(default)]
    pub batch: Option<usize>,
    /// As stream mode's open options: the data's source format and whether the book is valid
    /// before a first snapshot (defaults: the card's training data; true for `lobster`).
    #[serde(default)]
    pub source_format: Option<String>,
    #[serde(default)]
    pub starts_synced: Option<bool>,
}

fn token(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

impl Subscription {
    pub fn durable_name(&self) -> String {
        self.durable.clone().unwrap_or_else(|| format!("flowcast-serve-{}", token(&self.model)))
    }
    pub fn subject(&self) -> String {
        self.publish.clone().unwrap_or_else(|| format!("flowcast.predictions.{}.{}", token(&self.model), token(&self.stream)))
    }
    pub fn validate(&self, i: usize) -> Result<(), String> {
        let f = |k: &str| format!("subscribe[{i}].{k}");
        if self.stream.is_empty() || self.model.is_empty() || self.nats.is_empty() {
            return Err(format!("{}, {} and {} must be non-empty", f("nats"), f("stream"), f("model")));
        }
        if self.batch == Some(0) {
            return Err(format!("{}: must be ≥ 1", f("batch")));
        }
        Ok(())
    }
}

/// Runs one subscription until `stop` turns true; connection and fetch failures are logged and
/// retried with a doubling back-off (0.2 s … 5 s). Call on a blocking thread: model calls run
/// inline here.
pub fn run_blocking(app: Arc<App>, sub: Subscription, mut stop: tokio::sync::watch::Receiver<bool>, rt: tokio::runtime::Handle) {
    let mut backoff = Duration::from_millis(200);
    while !*stop.borrow() {
        match rt.block_on(session(&app, &sub, &mut stop)) {
            Ok(()) => return,
            Err(e) => {
                app.metrics.bus_errors.with_label_values(&[&sub.model, &sub.stream]).inc();
                tracing::warn!(stream = %sub.stream, model = %sub.model, "bus subscription: {e}; retrying in {backoff:?}");
                let mut s = stop.clone();
                rt.block_on(async {
                    let _ = tokio::time::timeout(backoff, s.wait_for(|v| *v)).await;
                });
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One connection's life: connect, then fetch, answer, acknowledge and publish until stopped.
async fn session(app: &Arc<App>, sub: &Subscription, stop: &mut tokio::sync::watch::Receiver<bool>) -> Result<(), LiveError> {
    let bus = Bus::connect(&sub.nats).await?;
    let inst = bus.instrument(&sub.stream).await?;
    let mut durable = bus.durable(&sub.stream, &sub.durable_name()).await?;
    let subject = sub.subject();
    let open = OpenOptions {
        source_format: sub.source_format.clone(),
        venue: Some(inst.venue.clone()),
        starts_synced: sub.starts_synced,
        online: None,
    };
    let max = sub.batch.unwrap_or(256);
    let mut streams = Session::new(app.clone());
    let mut replies: Vec<String> = Vec::with_capacity(max);
    tracing::info!(stream = %sub.stream, model = %sub.model, %subject, "bus subscription connected");
    let labels = [sub.model.as_str(), sub.stream.as_str()];
    while !*stop.borrow() {
        replies.clear();
        let fetched = durable
            .handle(max, Duration::from_millis(500), |b| {
                let req = StreamRequest {
                    model: sub.model.clone(),
                    version: sub.version.clone(),
                    id: b.stream_seq.to_string(),
                    stream_id: sub.stream.clone(),
                    events: b.events,
                    snapshots: None,
                    open: open.clone(),
                    reset: false,
                    close: false,
                };
                match streams.handle(req, Instant::now()) {
                    Ok(r) => {
                        app.metrics.bus_messages.with_label_values(&labels).inc();
                        app.metrics.bus_predictions.with_label_values(&labels).inc_by(r.event_index.len() as u64);
                        if !r.event_index.is_empty() || !r.gaps.is_empty() || !r.crossed.is_empty() || r.error.is_some() {
                            replies.push(crate::ws::reply_json(&r));
                        }
                        Ok(())
                    }
                    Err(e) if e.kind == ErrorKind::BadRequest || e.kind == ErrorKind::TooLarge => {
                        app.metrics.bus_messages.with_label_values(&labels).inc();
                        replies.push(
                            serde_json::json!({"id": b.stream_seq.to_string(), "stream_id": sub.stream, "model_name": sub.model, "error": e.message})
                                .to_string(),
                        );
                        Ok(())
                    }
                    Err(e) => Err(LiveError::Config(format!("message {}: {e}", b.stream_seq))),
                }
            })
            .await;
        for r in replies.drain(..) {
            bus.client.publish(subject.clone(), r.into()).await.map_err(|e| LiveError::Nats(format!("publish {subject}: {e}")))?;
        }
        bus.client.flush().await.map_err(|e| LiveError::Nats(format!("flush {subject}: {e}")))?;
        fetched?;
    }
    Ok(())
}
