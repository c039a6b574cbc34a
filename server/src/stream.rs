//! Stream mode, the part both transports share (gRPC `ModelStreamInfer`: grpc_stream.rs;
//! WebSocket: ws.rs). A client sends raw canonical events for a named stream; the server keeps
//! per-stream state — `flowcast_contract::stream::InputStream`: the book, the streaming feature
//! engine built from the card's fitted feature set, the card's normaliser and a T-row window
//! ring — and answers each message with a prediction and a signal at every sample point that
//! ends a full window. Instead of level events a client may send top-N book snapshots
//! (`SNAPSHOTS`, each with the `EVENTS` rows that caused it): the stream turns them into
//! canonical events with `flowcast_datasets::snapshot::SnapshotDiffer`, the differ the LOBSTER
//! loader uses, so snapshot input builds the same events, rows and windows as offline. The rows are built by the code `prepare_with` (so `flowcast predict`)
//! replays, so serve-time inputs are the training inputs (tests/cli/stream.rs).
//!
//! Streams belong to the connection that opened them (dropped with it); the whole server holds
//! at most [`StreamLimits::max_streams`] at a time and each book at most
//! [`StreamLimits::max_book_levels`] levels per side, so memory stays bounded. Message formats:
//! docs/serve.md, "Stream mode".

use crate::error::ApiError;
use crate::online::{OnlineLimits, OnlineSlot};
use crate::repo::Model;
use crate::signal::{self, Tensor};
use crate::App;
use flowcast_contract::stream::{InputStream, StreamError};
use flowcast_contract::{Batch, ContractError, Outputs};
use flowcast_datasets::snapshot::{level_column, SnapshotDiffer, SnapshotError, Stamp};
use flowcast_datasets::store::DatasetMeta;
use flowcast_datasets::{Event, EventKind, Instrument, Side, TopN, NO_PRICE, NO_TS};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Columns of the `EVENTS` tensor (INT64 `[N, 9]`), the canonical event's fields.
pub const EVENT_COLUMNS: [&str; 9] = ["ts_exchange", "ts_local", "seq", "order_id", "price", "size", "kind", "side", "flags"];
/// The input tensor of stream mode.
pub const EVENTS: &str = "EVENTS";
/// The snapshot input tensor (INT64 `[N, 4 + 4·L]`): [`SNAPSHOT_HEADER`], then per level (1..=L)
/// ask price, ask size, bid price, bid size (ticks, lots; size 0 = no level, its price unread).
pub const SNAPSHOTS: &str = "SNAPSHOTS";
/// The leading columns of a `SNAPSHOTS` row; `events`: how many of the message's `EVENTS` rows
/// (the next ones, in order) caused this snapshot and come before its level events.
pub const SNAPSHOT_HEADER: [&str; 4] = ["ts_exchange", "ts_local", "seq", "events"];
/// Windows per predictor call inside one message (bounds the batch buffer).
const CHUNK: usize = 256;

/// Bounds of stream mode (`[stream]` of serve.toml / `--max-streams`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamLimits {
    /// Streams open at once over all connections.
    pub max_streams: usize,
    /// Book levels per side a stream may hold (beyond it the event is refused and the stream closed).
    pub max_book_levels: usize,
    /// Events in one message (and snapshot rows in one message).
    pub max_events_per_message: usize,
    /// Levels per side of a `SNAPSHOTS` row (bounds the differ's state: 2 × 4 × L integers).
    pub max_snapshot_levels: usize,
    /// Models whose family learns online (online.rs) learn in each stream; false: all frozen.
    pub online: bool,
    /// Models (by name) served frozen although their family learns online.
    pub frozen: Vec<String>,
    /// Clock-horizon labels a stream keeps waiting, at most (online learning).
    pub online_max_pending: usize,
    /// Bytes of online state per stream (waiting windows' rows, labeller, model state).
    pub online_max_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_streams: 1024,
            max_book_levels: 20_000,
            max_events_per_message: 65_536,
            max_snapshot_levels: 1000,
            online: true,
            frozen: Vec::new(),
            online_max_pending: 65_536,
            online_max_bytes: 64 << 20,
        }
    }
}

impl StreamLimits {
    /// Every bound ≥ 1, snapshots no deeper than books (`what` names the source in errors).
    pub fn validate(&self, what: &str) -> Result<(), String> {
        for (k, v) in [
            ("max_streams", self.max_streams),
            ("max_book_levels", self.max_book_levels),
            ("max_events_per_message", self.max_events_per_message),
            ("max_snapshot_levels", self.max_snapshot_levels),
        ] {
            if v == 0 {
                return Err(format!("{what}.{k}: must be ≥ 1"));
            }
        }
        if self.max_snapshot_levels > self.max_book_levels {
            return Err(format!(
                "{what}.max_snapshot_levels {} exceeds max_book_levels {} (a snapshot's levels are book levels)",
                self.max_snapshot_levels, self.max_book_levels
            ));
        }
        Ok(())
    }
}

/// The server-wide count of open streams.
#[derive(Debug, Default)]
pub struct StreamTable {
    pub limits: StreamLimits,
    open: AtomicUsize,
}

impl StreamTable {
    pub fn new(limits: StreamLimits) -> StreamTable {
        StreamTable { limits, open: AtomicUsize::new(0) }
    }
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
    fn acquire(&self) -> bool {
        let max = self.limits.max_streams;
        self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).is_ok()
    }
    fn release(&self, n: usize) {
        self.open.fetch_sub(n, Ordering::AcqRel);
    }
}

/// How to start a stream (first message of a `stream_id`, or a reset).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenOptions {
    /// The data's source format (`lobster`, `binance`, ...): time features use it. Default: the
    /// card's training data.
    pub source_format: Option<String>,
    /// The venue (`NASDAQ`, `binance-usdm`, ...). Default: the card's training data.
    pub venue: Option<String>,
    /// Whether the book is valid before a first `Snapshot` (LOBSTER-like sources). Default:
    /// true for `lobster`, else false.
    pub starts_synced: Option<bool>,
    /// Learn online in this stream (models whose family does, online.rs). Default: the
    /// server's `[stream] online`; true for a frozen-only model is refused.
    pub online: Option<bool>,
}

/// The rows of a `SNAPSHOTS` tensor, shape-checked: `rows × (4 + 4·levels)` values, row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshots {
    pub levels: usize,
    pub values: Vec<i64>,
}

impl Snapshots {
    pub fn width(&self) -> usize {
        SNAPSHOT_HEADER.len() + 4 * self.levels
    }
    pub fn rows(&self) -> usize {
        self.values.len() / self.width()
    }

    /// Checks the shape `[N, 4 + 4·L]` (L ≥ 1) of `values` (`field`: the tensor in errors).
    pub fn from_i64(values: Vec<i64>, shape: &[i64], field: &str) -> Result<Snapshots, ApiError> {
        let expect = || {
            format!(
                "{shape:?}: expected [N, 4 + 4·L] (columns {}, then per level ask_price, ask_size, bid_price, bid_size)",
                SNAPSHOT_HEADER.join(", ")
            )
        };
        if shape.len() != 2 || shape[0] < 0 || shape[1] < 8 || (shape[1] - 4) % 4 != 0 {
            return Err(ApiError::bad(&format!("{field}.shape"), expect()));
        }
        let (n, w) = (shape[0] as usize, shape[1] as usize);
        if values.len() != n.saturating_mul(w) {
            return Err(ApiError::bad(&format!("{field}.contents"), format!("{} values for shape [{n}, {w}]", values.len())));
        }
        Ok(Snapshots { levels: (w - 4) / 4, values })
    }
}

/// One stream-mode message, parsed.
#[derive(Clone, Debug, Default)]
pub struct StreamRequest {
    pub model: String,
    pub version: Option<String>,
    pub id: String,
    pub stream_id: String,
    pub events: Vec<Event>,
    /// Top-N snapshots; with them, `events` are their causing events (see [`SNAPSHOT_HEADER`]).
    pub snapshots: Option<Snapshots>,
    pub open: OpenOptions,
    /// Start the stream afresh before these events.
    pub reset: bool,
    /// Close the stream after these events.
    pub close: bool,
}

/// The answer to one message: one row per window that ended in it.
#[derive(Clone, Debug, Default)]
pub struct StreamReply {
    pub model_name: String,
    pub model_version: String,
    pub id: String,
    pub stream_id: String,
    /// Per window: the stream's index of the event that ended it (0-based since the stream opened)
    /// and its `ts_exchange`.
    pub event_index: Vec<i64>,
    pub ts: Vec<i64>,
    /// probs / regression / std / signals of those windows (`signal::tensors`).
    pub outputs: Vec<Tensor>,
    /// Stream indices of `Gap` events in this message (book, features and window were reset).
    pub gaps: Vec<i64>,
    /// Stream indices of sample points with a crossed book.
    pub crossed: Vec<i64>,
    /// Events of this message applied (all of them unless `error`).
    pub accepted: usize,
    /// Snapshot rows of this message applied (all of them unless `error`).
    pub accepted_snapshots: usize,
    /// The message carried snapshots.
    pub snapshots: bool,
    /// Events and sample points since the stream opened.
    pub stream_events: u64,
    pub stream_samples: u64,
    pub queue_us: u64,
    pub compute_us: u64,
    /// An event was refused (out of order, book too deep): what and which; the events before
    /// it were applied and are answered above.
    pub error: Option<String>,
    pub closed: bool,
    /// Whether the stream learns online; labels absorbed in this message and since it opened.
    pub online: bool,
    pub updates: u64,
    pub stream_updates: u64,
}

struct Slot {
    model: Arc<Model>,
    input: InputStream,
    starts_synced: bool,
    /// Windows waiting for the predictor, `[n × T × F]`, reused.
    buf: Vec<f32>,
    out: Outputs,
    /// Snapshot input: the differ (the book as the last snapshot left it), the snapshot being
    /// parsed and the events of one snapshot, all reused. Created by the first snapshot message.
    snap: Option<SnapshotState>,
    /// Canonical book events (level, snapshot, gap) were applied since the stream opened or was
    /// reset: snapshots would no longer describe the book.
    book_events: bool,
    /// The stream's own online learner (online.rs), where the model learns online.
    online: Option<OnlineSlot>,
}

struct SnapshotState {
    differ: SnapshotDiffer,
    next: TopN,
    group: Vec<Event>,
    /// `(ts_exchange, ts_local)` of the last accepted snapshot: snapshots are in time order even
    /// when an unchanged one emitted no event.
    last: (i64, i64),
}

/// A canonical event that changes the book itself (refused on a snapshot-fed stream).
fn is_book_event(e: &Event) -> bool {
    e.kind.is_level_update() || e.kind == EventKind::Gap
}

/// The streams of one connection (released from the server's count when dropped).
pub struct Session {
    app: Arc<App>,
    streams: HashMap<String, Slot>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.app.streams.release(self.streams.len());
    }
}

/// The instrument description the engine needs (venue, source format), from the card's
/// training data unless the client names its own.
fn stream_meta(model: &Model, o: &OpenOptions, levels: usize) -> Result<DatasetMeta, ApiError> {
    let card = model.card.as_ref().ok_or_else(|| ApiError::bad("model", format!("model {:?} has no card: no stream mode", model.name)))?;
    let td = &card.training_data;
    let source = o.source_format.clone().unwrap_or_else(|| td.source_format.clone());
    // `DataInfo::instrument` is the instrument's display form, `venue:symbol (tick …, size …)`.
    let (venue, symbol) = td.instrument.split_once(':').unwrap_or((td.instrument.as_str(), "?"));
    let venue = o.venue.clone().unwrap_or_else(|| venue.to_string());
    let symbol = symbol.split(' ').next().unwrap_or("?");
    let inst =
        Instrument::new(&venue, if symbol.is_empty() { "?" } else { symbol }, "1", 0).map_err(|e| ApiError::bad("parameters.venue", e))?;
    let synced = o.starts_synced.unwrap_or(source == "lobster");
    Ok(DatasetMeta::new(&source, inst, levels, synced))
}

/// One row of the `EVENTS` tensor as a canonical event (`field`: e.g. `EVENTS[3]`).
pub fn event_from_row(r: &[i64], field: &str) -> Result<Event, ApiError> {
    let u8_of = |c: usize| {
        u8::try_from(r[c]).map_err(|_| ApiError::bad(&format!("{field}.{}", EVENT_COLUMNS[c]), format!("{} is not 0..=255", r[c])))
    };
    let kind = EventKind::from_u8(u8_of(6)?)
        .ok_or_else(|| ApiError::bad(&format!("{field}.kind"), format!("{} is not an event kind (0..=10, docs/data.md)", r[6])))?;
    let side =
        Side::from_u8(u8_of(7)?).ok_or_else(|| ApiError::bad(&format!("{field}.side"), format!("{} is not 0 (bid) or 1 (ask)", r[7])))?;
    let flags = u8_of(8)?;
    let u64_of = |c: usize| {
        u64::try_from(r[c]).map_err(|_| ApiError::bad(&format!("{field}.{}", EVENT_COLUMNS[c]), format!("{} is negative", r[c])))
    };
    if r[5] < 0 {
        return Err(ApiError::bad(&format!("{field}.size"), format!("{} is negative", r[5])));
    }
    Ok(Event::new(kind, side, r[4], r[5], r[0]).with_local(r[1]).with_seq(u64_of(2)?).with_order(u64_of(3)?).with_flags(flags))
}

/// The rows of an INT64 `[N, 9]` tensor as events.
pub fn events_from_i64(v: &[i64], shape: &[i64], field: &str) -> Result<Vec<Event>, ApiError> {
    if shape.len() != 2 || shape[1] != 9 || shape[0] < 0 {
        return Err(ApiError::bad(&format!("{field}.shape"), format!("{shape:?}: expected [N, 9] (columns {})", EVENT_COLUMNS.join(", "))));
    }
    let n = shape[0] as usize;
    if v.len() != n * 9 {
        return Err(ApiError::bad(&format!("{field}.contents"), format!("{} values for shape [{n}, 9]", v.len())));
    }
    v.chunks_exact(9).enumerate().map(|(i, r)| event_from_row(r, &format!("{field}[{i}]"))).collect()
}

impl Session {
    pub fn new(app: Arc<App>) -> Session {
        Session { app, streams: HashMap::new() }
    }

    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    fn open(&mut self, req: &StreamRequest) -> Result<&mut Slot, ApiError> {
        if !self.streams.contains_key(&req.stream_id) {
            let model = self.app.registry.get(&req.model, req.version.as_deref())?;
            let card = model
                .card
                .clone()
                .ok_or_else(|| ApiError::bad("model_name", format!("model {:?} has no card: no stream mode", model.name)))?;
            if model.info().needs_window_ofi {
                return Err(ApiError::bad("model_name", format!("model {:?} reads window OFI sums: no stream mode", model.name)));
            }
            let inputs = &card.preprocessing.inputs;
            let meta = stream_meta(&model, &req.open, inputs.levels)?;
            let input = InputStream::new(inputs, &meta, self.app.streams.limits.max_book_levels)
                .map_err(|e| ApiError::internal(format!("model {:?}: stream state: {e}", model.name)))?;
            let limits = &self.app.streams.limits;
            let by_default = limits.online && !limits.frozen.contains(&model.name);
            let online = match (&model.online, req.open.online.unwrap_or(by_default)) {
                (Some(proto), true) => Some(OnlineSlot::new(proto.clone(), &card, &input, self.app.streams.limits.online_limits())?),
                (None, true) if req.open.online == Some(true) => {
                    return Err(ApiError::bad("parameters.online", format!("model {:?} does not learn online (docs/serve.md)", model.name)))
                }
                _ => None,
            };
            if !self.app.streams.acquire() {
                return Err(ApiError {
                    kind: crate::error::ErrorKind::Unavailable,
                    message: format!(
                        "stream_id {:?}: the server holds its limit of {} streams",
                        req.stream_id, self.app.streams.limits.max_streams
                    ),
                });
            }
            let k = model.info().classes.len();
            let slot = Slot {
                model,
                input,
                starts_synced: meta.starts_synced,
                buf: Vec::new(),
                out: Outputs::new(k),
                snap: None,
                book_events: false,
                online,
            };
            tracing::debug!(stream = %req.stream_id, model = %slot.model.name, "stream opened");
            self.streams.insert(req.stream_id.clone(), slot);
        }
        let slot = self.streams.get_mut(&req.stream_id).expect("inserted");
        if slot.model.name != req.model || req.version.as_deref().is_some_and(|v| v != slot.model.version) {
            return Err(ApiError::bad(
                "stream_id",
                format!("{:?} is a stream of model {:?} version {:?}", req.stream_id, slot.model.name, slot.model.version),
            ));
        }
        Ok(slot)
    }

    /// Applies a message's events to its stream and predicts every window that ends in it
    /// (blocking: call off the async runtime). `queued`: when the message arrived.
    pub fn handle(&mut self, req: StreamRequest, queued: Instant) -> Result<StreamReply, ApiError> {
        let t0 = Instant::now();
        if req.stream_id.is_empty() {
            return Err(ApiError::bad("parameters.stream_id", "missing or empty"));
        }
        let max_ev = self.app.streams.limits.max_events_per_message;
        if req.events.len() > max_ev {
            return Err(ApiError::bad(EVENTS, format!("{} events in one message; the limit is {max_ev}", req.events.len())));
        }
        let limits = self.app.streams.limits.clone();
        if let Some(sn) = &req.snapshots {
            if sn.rows() > max_ev {
                return Err(ApiError::bad(SNAPSHOTS, format!("{} snapshot rows in one message; the limit is {max_ev}", sn.rows())));
            }
            check_snapshots(sn, req.events.len(), limits.max_snapshot_levels)?;
        }
        let slot = self.open(&req)?;
        if req.reset {
            slot.input.reset(slot.starts_synced);
            slot.snap = None;
            slot.book_events = false;
            if let Some(o) = &mut slot.online {
                o.reset();
            }
        }
        if let Some(sn) = &req.snapshots {
            if slot.book_events {
                return Err(ApiError::bad(
                    SNAPSHOTS,
                    format!("stream_id {:?} was fed canonical book events; send reset to feed it snapshots", req.stream_id),
                ));
            }
            if let Some(s) = &slot.snap {
                if s.differ.levels() != sn.levels {
                    return Err(ApiError::bad(
                        &format!("{SNAPSHOTS}.shape"),
                        format!(
                            "{} levels per side, but this stream's snapshots have {} (send reset to change)",
                            sn.levels,
                            s.differ.levels()
                        ),
                    ));
                }
            }
        } else if slot.snap.is_some() {
            if let Some(i) = req.events.iter().position(is_book_event) {
                return Err(ApiError::bad(
                    &format!("{EVENTS}[{i}].kind"),
                    format!(
                        "a {} event on stream_id {:?}, which is fed snapshots (send book changes as SNAPSHOTS, or reset)",
                        req.events[i].kind.name(),
                        req.stream_id
                    ),
                ));
            }
        }
        let (t, f) = slot.input.shape();
        let mut reply = StreamReply {
            model_name: slot.model.name.clone(),
            model_version: slot.model.version.clone(),
            id: req.id.clone(),
            stream_id: req.stream_id.clone(),
            queue_us: t0.duration_since(queued).as_micros() as u64,
            snapshots: req.snapshots.is_some(),
            ..Default::default()
        };
        slot.out.clear();
        slot.buf.clear();
        let mut fatal = false;
        match &req.snapshots {
            None => {
                for (i, ev) in req.events.iter().enumerate() {
                    if let Some(e) = step(slot, ev, &mut reply, t, f)? {
                        fatal = matches!(e, StreamError::BookTooDeep { .. });
                        reply.error = Some(format!("{EVENTS}[{i}]: {e}{}", keeps(fatal)));
                        break;
                    }
                    slot.book_events |= is_book_event(ev);
                    reply.accepted = i + 1;
                }
            }
            Some(sn) => fatal = apply_snapshots(slot, sn, &req.events, &mut reply, t, f)?,
        }
        predict(slot, t, f)?;
        let n = reply.event_index.len();
        let out = std::mem::replace(&mut slot.out, Outputs::new(slot.model.info().classes.len()));
        reply.outputs = signal::tensors(&slot.model, out.probs, out.regression, out.std, n);
        reply.stream_events = slot.input.events();
        reply.stream_samples = slot.input.samples();
        if let Some(o) = &slot.online {
            reply.online = true;
            reply.stream_updates = o.updates();
        }
        if reply.updates > 0 {
            self.app.metrics.online_updates.with_label_values(&[&reply.model_name]).inc_by(reply.updates);
        }
        if req.close || fatal {
            self.streams.remove(&req.stream_id);
            self.app.streams.release(1);
            reply.closed = true;
        }
        reply.compute_us = t0.elapsed().as_micros() as u64;
        Ok(reply)
    }
}

fn keeps(fatal: bool) -> &'static str {
    if fatal {
        "; the stream is closed"
    } else {
        "; the stream keeps its state"
    }
}

/// Applies one event, recording what it did in `reply` (and predicting full batches); the
/// refusal, if it was refused.
fn step(slot: &mut Slot, ev: &Event, reply: &mut StreamReply, t: usize, f: usize) -> Result<Option<StreamError>, ApiError> {
    let index = slot.input.events() as i64;
    let step = match slot.input.push(ev) {
        Ok(s) => s,
        Err(e) => return Ok(Some(e)),
    };
    if step.gap {
        reply.gaps.push(index);
    }
    if step.crossed {
        reply.crossed.push(index);
    }
    if let Some(o) = &mut slot.online {
        // Learns, then predicts this event's window itself (one at a time: the next label may
        // change the state).
        reply.updates += o.on_step(&step, ev, &slot.input, &mut slot.out).map_err(|e| model_error(&slot.model, e))?;
    }
    if step.window {
        reply.event_index.push(index);
        reply.ts.push(ev.ts_exchange);
        if slot.online.is_none() {
            slot.buf.extend_from_slice(slot.input.window());
            if slot.buf.len() >= CHUNK * t * f {
                predict(slot, t, f)?;
            }
        }
    }
    Ok(None)
}

/// The checks of a snapshot message that need no stream state: depth within the limit, header
/// columns in range, the `events` counts adding up to the `EVENTS` rows. Nothing is applied
/// when they fail.
fn check_snapshots(sn: &Snapshots, events: usize, max_levels: usize) -> Result<(), ApiError> {
    if sn.levels > max_levels {
        return Err(ApiError::bad(
            &format!("{SNAPSHOTS}.shape"),
            format!("{} levels per side; the limit is {max_levels} (max_snapshot_levels)", sn.levels),
        ));
    }
    let mut claimed = 0usize;
    for (i, r) in sn.values.chunks_exact(sn.width()).enumerate() {
        if r[2] < 0 {
            return Err(ApiError::bad(&format!("{SNAPSHOTS}[{i}].seq"), format!("{} is negative", r[2])));
        }
        let k = usize::try_from(r[3]).map_err(|_| ApiError::bad(&format!("{SNAPSHOTS}[{i}].events"), format!("{} is negative", r[3])))?;
        claimed = claimed.saturating_add(k);
        if claimed > events {
            return Err(ApiError::bad(
                &format!("{SNAPSHOTS}[{i}].events"),
                format!("the rows up to this one claim {claimed} causing events; the message has {events} EVENTS rows"),
            ));
        }
    }
    if claimed != events {
        return Err(ApiError::bad(
            &format!("{SNAPSHOTS}.events"),
            format!(
                "the snapshots claim {claimed} causing events; the message has {events} EVENTS rows (each must belong to one snapshot)"
            ),
        ));
    }
    Ok(())
}

/// Feeds a message's snapshots (each after its causing events) through the stream's differ.
/// A snapshot refused (bad level, time going back) stops the message there: the snapshots before
/// it were applied, the stream keeps that state. Returns whether the stream must close.
fn apply_snapshots(
    slot: &mut Slot,
    sn: &Snapshots,
    events: &[Event],
    reply: &mut StreamReply,
    t: usize,
    f: usize,
) -> Result<bool, ApiError> {
    let levels = sn.levels;
    let mut state = slot.snap.take().unwrap_or_else(|| SnapshotState {
        differ: SnapshotDiffer::new(levels),
        next: TopN::new(levels),
        group: Vec::with_capacity(4 * levels + 16),
        last: (i64::MIN, i64::MIN),
    });
    let r = snapshot_rows(slot, &mut state, sn, events, reply, t, f);
    slot.snap = Some(state);
    r
}

fn snapshot_rows(
    slot: &mut Slot,
    state: &mut SnapshotState,
    sn: &Snapshots,
    events: &[Event],
    reply: &mut StreamReply,
    t: usize,
    f: usize,
) -> Result<bool, ApiError> {
    let levels = sn.levels;
    let mut cursor = 0usize;
    let mut fatal = false;
    for (i, r) in sn.values.chunks_exact(sn.width()).enumerate() {
        let (hdr, lv) = r.split_at(SNAPSHOT_HEADER.len());
        let at = Stamp { ts_exchange: hdr[0], ts_local: hdr[1], seq: hdr[2] as u64 };
        let causes = &events[cursor..cursor + hdr[3] as usize];
        // Time order first (nothing changes if it fails): after the last snapshot, then the
        // causes and the level events after the stream's last event.
        let (last_ts, last_local) = state.last;
        let back = if at.ts_local != NO_TS {
            (at.ts_local < last_local).then_some(("ts_local", at.ts_local, last_local))
        } else {
            (at.ts_exchange < last_ts).then_some(("ts_exchange", at.ts_exchange, last_ts))
        };
        if let Some((clock, ts, last)) = back {
            reply.error = Some(format!(
                "{SNAPSHOTS}[{i}].{clock}: {ts} is before the previous snapshot's {last} (snapshots must be in time order); the stream keeps its state"
            ));
            break;
        }
        let clocks = causes.iter().map(|e| (e.ts_exchange, e.ts_local)).chain(std::iter::once((at.ts_exchange, at.ts_local)));
        if let Err(e) = slot.input.check_order(clocks) {
            let field = match &e {
                StreamError::OutOfOrder { index, clock, .. } => {
                    let pos = index.saturating_sub(slot.input.events()) as usize;
                    if pos < causes.len() {
                        format!("{EVENTS}[{}].{clock}", cursor + pos)
                    } else {
                        format!("{SNAPSHOTS}[{i}].{clock}")
                    }
                }
                _ => format!("{SNAPSHOTS}[{i}]"),
            };
            reply.error = Some(format!("{field}: {e}; the stream keeps its state"));
            break;
        }
        let nx = &mut state.next;
        for l in 0..levels {
            let q = &lv[4 * l..4 * l + 4];
            (nx.ask_px[l], nx.ask_sz[l]) = if q[1] == 0 { (NO_PRICE, 0) } else { (q[0], q[1]) };
            (nx.bid_px[l], nx.bid_sz[l]) = if q[3] == 0 { (NO_PRICE, 0) } else { (q[2], q[3]) };
        }
        if !slot.input.book().is_synced() {
            state.differ.resync();
        }
        state.group.clear();
        if let Err(e) = state.differ.push(&state.next, causes, at, &mut state.group) {
            reply.error = Some(match e {
                SnapshotError::Level { col, reason } => {
                    format!("{SNAPSHOTS}[{i}].{}: {reason}; the stream keeps its state", level_column(col))
                }
                SnapshotError::BookCause { index, kind } => format!(
                    "{EVENTS}[{}].kind: {kind} is a book event; a snapshot's causing events are order events, trades or halts; the stream keeps its state",
                    cursor + index
                ),
                e => format!("{SNAPSHOTS}[{i}]: {e}; the stream keeps its state"),
            });
            break;
        }
        for ev in &state.group {
            if let Some(e) = step(slot, ev, reply, t, f)? {
                // Order was checked and the book holds at most `levels` ≤ max_book_levels per
                // side: only an inconsistent book gets here; the stream cannot go on.
                fatal = true;
                reply.error = Some(format!("{SNAPSHOTS}[{i}]: {e}{}", keeps(true)));
                break;
            }
        }
        if fatal {
            break;
        }
        state.last = (at.ts_exchange, if at.ts_local != NO_TS { at.ts_local } else { last_local });
        cursor += causes.len();
        reply.accepted = cursor;
        reply.accepted_snapshots = i + 1;
    }
    Ok(fatal)
}

/// Runs the windows waiting in `slot.buf` (appending to `slot.out`).
fn predict(slot: &mut Slot, t: usize, f: usize) -> Result<(), ApiError> {
    let n = slot.buf.len() / (t * f);
    if n == 0 {
        return Ok(());
    }
    let batch = Batch::new(&slot.buf, n, t, f).map_err(|e| ApiError::internal(format!("stream window: {e}")))?;
    slot.model.predictor.predict(&batch, &mut slot.out).map_err(|e| model_error(&slot.model, e))?;
    slot.buf.clear();
    Ok(())
}

fn model_error(model: &Model, e: ContractError) -> ApiError {
    match e {
        ContractError::Input { .. } => ApiError::bad(EVENTS, e),
        e => ApiError::internal(format!("model {:?}: {e}", model.name)),
    }
}

impl StreamLimits {
    pub fn online_limits(&self) -> OnlineLimits {
        OnlineLimits { max_pending: self.online_max_pending, max_bytes: self.online_max_bytes }
    }
}
