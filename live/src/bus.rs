//! Canonical events on NATS JetStream: one stream per instrument, replay from a stream sequence,
//! and durable consumers that resume where they stopped (docs/live.md, "Stream bus").
//!
//! Kafka (the seed's bus) is not installable here; JetStream gives the same replayable,
//! acknowledged log with a single Debian package (`nats-server -js`).
//!
//! Encoding (`ev1`): one NATS message per source message (a book diff, a snapshot, a trade),
//! payload = version byte `1`, then per [`Event`] 51 bytes little-endian: `ts_exchange` i64,
//! `ts_local` i64, `seq` u64, `order_id` u64, `price` i64 (ticks), `size` i64 (lots), `kind` u8,
//! `side` u8, `flags` u8. The stream's description holds the instrument as JSON (tick, scales),
//! so a consumer converts ticks and lots without another source.

use crate::error::{LiveError, Result};
use async_nats::jetstream::{self, consumer, stream, AckKind};
use bytes::Bytes;
use flowcast_datasets::{Event, EventKind, Instrument, Side};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::time::Duration;

/// The NATS client crate, for consumers of [`Bus::client`] (subscribers of the predictions subject).
pub use async_nats;

pub const ENCODING_VERSION: u8 = 1;
pub const EVENT_BYTES: usize = 51;

/// Append the `ev1` payload of `events` to `out`.
pub fn encode_into(events: &[Event], out: &mut Vec<u8>) {
    out.reserve(1 + events.len() * EVENT_BYTES);
    out.push(ENCODING_VERSION);
    for e in events {
        out.extend_from_slice(&e.ts_exchange.to_le_bytes());
        out.extend_from_slice(&e.ts_local.to_le_bytes());
        out.extend_from_slice(&e.seq.to_le_bytes());
        out.extend_from_slice(&e.order_id.to_le_bytes());
        out.extend_from_slice(&e.price.to_le_bytes());
        out.extend_from_slice(&e.size.to_le_bytes());
        out.extend_from_slice(&[e.kind as u8, e.side as u8, e.flags]);
    }
}

/// Decode an `ev1` payload, appending to `out`.
pub fn decode_into(payload: &[u8], out: &mut Vec<Event>) -> Result<()> {
    let bad = |reason: String| LiveError::Parse { what: "ev1 payload".into(), reason };
    let (&v, body) = payload.split_first().ok_or_else(|| bad("empty".into()))?;
    if v != ENCODING_VERSION {
        return Err(bad(format!("version {v}, expected {ENCODING_VERSION}")));
    }
    if body.len() % EVENT_BYTES != 0 {
        return Err(bad(format!("{} bytes is not a multiple of {EVENT_BYTES}", body.len())));
    }
    for (i, r) in body.chunks_exact(EVENT_BYTES).enumerate() {
        let w = |k: usize| <[u8; 8]>::try_from(&r[k * 8..k * 8 + 8]).unwrap_or_default();
        let kind = EventKind::from_u8(r[48]).ok_or_else(|| bad(format!("event {i}: kind {}", r[48])))?;
        let side = Side::from_u8(r[49]).ok_or_else(|| bad(format!("event {i}: side {}", r[49])))?;
        out.push(Event {
            ts_exchange: i64::from_le_bytes(w(0)),
            ts_local: i64::from_le_bytes(w(1)),
            seq: u64::from_le_bytes(w(2)),
            order_id: u64::from_le_bytes(w(3)),
            price: i64::from_le_bytes(w(4)),
            size: i64::from_le_bytes(w(5)),
            kind,
            side,
            flags: r[50],
        });
    }
    Ok(())
}

fn token(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// `flowcast.events.<venue>.<SYMBOL>` (e.g. `flowcast.events.binance-spot.BTCUSDT`).
pub fn subject(inst: &Instrument) -> String {
    let clean = |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect::<String>();
    format!("flowcast.events.{}.{}", clean(&inst.venue), clean(&inst.symbol))
}

/// `FLOWCAST_<VENUE>_<SYMBOL>` (JetStream names allow no `.`).
pub fn stream_name(inst: &Instrument) -> String {
    format!("FLOWCAST_{}_{}", token(&inst.venue), token(&inst.symbol))
}

/// A connection to NATS with JetStream.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

/// One delivered message: its stream sequence and its events.
pub struct Batch {
    pub stream_seq: u64,
    pub events: Vec<Event>,
}

impl Bus {
    pub async fn connect(url: &str) -> Result<Bus> {
        let client = async_nats::connect(url).await.map_err(|e| LiveError::Nats(format!("connect {url}: {e}")))?;
        Ok(Bus { js: jetstream::new(client.clone()), client })
    }

    /// Create (or reuse) the instrument's stream: file storage, subject [`subject`], the
    /// instrument as its description. Returns the stream name.
    pub async fn ensure_stream(&self, inst: &Instrument) -> Result<String> {
        let name = stream_name(inst);
        let cfg = stream::Config {
            name: name.clone(),
            subjects: vec![subject(inst)],
            description: Some(serde_json::to_string(inst).unwrap_or_default()),
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        self.js.get_or_create_stream(cfg).await.map_err(|e| LiveError::Nats(format!("stream {name}: {e}")))?;
        Ok(name)
    }

    /// The instrument a stream was created for.
    pub async fn instrument(&self, stream: &str) -> Result<Instrument> {
        let mut s = self.js.get_stream(stream).await.map_err(|e| LiveError::Nats(format!("stream {stream}: {e}")))?;
        let info = s.info().await.map_err(|e| LiveError::Nats(format!("stream {stream}: {e}")))?;
        let d = info.config.description.clone().unwrap_or_default();
        serde_json::from_str(&d).map_err(|e| LiveError::Parse { what: format!("stream {stream} description"), reason: e.to_string() })
    }

    /// Publish one batch and wait for the stream's acknowledgement; `msg_id` (`Nats-Msg-Id`)
    /// makes a retried publish a no-op within the duplicate window. Returns the stream sequence.
    pub async fn publish(&self, subject: &str, events: &[Event], msg_id: Option<&str>) -> Result<u64> {
        let mut buf = Vec::new();
        encode_into(events, &mut buf);
        let ack = self.publish_bytes(subject, Bytes::from(buf), msg_id).await?;
        let a = ack.await.map_err(|e| LiveError::Nats(format!("publish {subject}: {e}")))?;
        Ok(a.sequence)
    }

    async fn publish_bytes(&self, subject: &str, payload: Bytes, msg_id: Option<&str>) -> Result<jetstream::context::PublishAckFuture> {
        let r = match msg_id {
            Some(id) => {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", id);
                self.js.publish_with_headers(subject.to_string(), h, payload).await
            }
            None => self.js.publish(subject.to_string(), payload).await,
        };
        r.map_err(|e| LiveError::Nats(format!("publish {subject}: {e}")))
    }

    /// Every message of `stream` from stream sequence `from_seq` (1 = the beginning), in order,
    /// through an ordered ephemeral consumer (nothing to acknowledge, nothing left on the server).
    pub async fn replay(&self, stream: &str, from_seq: u64) -> Result<Replay> {
        let s = self.js.get_stream(stream).await.map_err(|e| LiveError::Nats(format!("stream {stream}: {e}")))?;
        let c = s
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from_seq.max(1) },
                ..Default::default()
            })
            .await
            .map_err(|e| LiveError::Nats(format!("replay consumer on {stream}: {e}")))?;
        let msgs = c.messages().await.map_err(|e| LiveError::Nats(format!("replay {stream}: {e}")))?;
        Ok(Replay { msgs })
    }

    /// A durable pull consumer `name` on `stream` (explicit acks): after a restart it delivers the
    /// first message not acknowledged, so a reader that acks each batch once it has handled it
    /// neither loses nor repeats one.
    pub async fn durable(&self, stream: &str, name: &str) -> Result<Durable> {
        let s = self.js.get_stream(stream).await.map_err(|e| LiveError::Nats(format!("stream {stream}: {e}")))?;
        let c: consumer::Consumer<consumer::pull::Config> = s
            .get_or_create_consumer(
                name,
                consumer::pull::Config {
                    durable_name: Some(name.to_string()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| LiveError::Nats(format!("durable {name} on {stream}: {e}")))?;
        Ok(Durable { consumer: c, last_seq: 0 })
    }
}

/// An ordered replay ([`Bus::replay`]).
pub struct Replay {
    msgs: consumer::pull::Ordered,
}

impl Replay {
    /// The next message, or `None` when none arrives within `wait` (the end of what is stored).
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Batch>> {
        match tokio::time::timeout(wait, self.msgs.next()).await {
            Err(_) | Ok(None) => Ok(None),
            Ok(Some(Err(e))) => Err(LiveError::Nats(format!("replay: {e}"))),
            Ok(Some(Ok(m))) => {
                let seq = m.info().map_err(|e| LiveError::Nats(format!("message info: {e}")))?.stream_sequence;
                let mut events = Vec::new();
                decode_into(&m.payload, &mut events)?;
                Ok(Some(Batch { stream_seq: seq, events }))
            }
        }
    }
}

/// A durable consumer ([`Bus::durable`]).
pub struct Durable {
    consumer: consumer::Consumer<consumer::pull::Config>,
    /// Stream sequence of the last batch handed out (redeliveries at or below it are skipped).
    last_seq: u64,
}

impl Durable {
    /// Take up to `max` messages (waiting at most `wait` for them), hand each to `f`, and
    /// acknowledge it (confirmed by the server) once `f` returns. When `f` fails, that message and
    /// the rest of the batch are negatively acknowledged (redelivered at once, also to a restarted
    /// reader) and the error is returned. Returns how many were handled.
    pub async fn handle<F: FnMut(Batch) -> Result<()>>(&mut self, max: usize, wait: Duration, mut f: F) -> Result<usize> {
        let mut msgs =
            self.consumer.batch().max_messages(max).expires(wait).messages().await.map_err(|e| LiveError::Nats(format!("fetch: {e}")))?;
        let mut n = 0;
        while let Some(m) = msgs.next().await {
            let m = m.map_err(|e| LiveError::Nats(format!("fetch: {e}")))?;
            let seq = m.info().map_err(|e| LiveError::Nats(format!("message info: {e}")))?.stream_sequence;
            if seq > self.last_seq {
                let mut events = Vec::new();
                decode_into(&m.payload, &mut events)?;
                if let Err(e) = f(Batch { stream_seq: seq, events }) {
                    let _ = m.ack_with(AckKind::Nak(None)).await;
                    while let Some(Ok(rest)) = msgs.next().await {
                        let _ = rest.ack_with(AckKind::Nak(None)).await;
                    }
                    return Err(e);
                }
                self.last_seq = seq;
                n += 1;
            }
            m.double_ack().await.map_err(|e| LiveError::Nats(format!("ack {seq}: {e}")))?;
        }
        Ok(n)
    }
}

/// Publishes a collector's batches in order with a bounded window of unacknowledged publishes,
/// off the collector's task. Dropping the sender and awaiting [`Publisher::finish`] drains it.
pub struct Publisher {
    pub tx: tokio::sync::mpsc::Sender<(String, Bytes)>,
    task: tokio::task::JoinHandle<Result<u64>>,
}

impl Publisher {
    pub fn spawn(bus: Bus, window: usize) -> Publisher {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Bytes)>(4096);
        let task = tokio::spawn(async move {
            let mut pending: VecDeque<jetstream::context::PublishAckFuture> = VecDeque::new();
            let mut acked = 0u64;
            while let Some((subject, payload)) = rx.recv().await {
                pending.push_back(bus.publish_bytes(&subject, payload, None).await?);
                while pending.len() > window.max(1) {
                    if let Some(a) = pending.pop_front() {
                        a.await.map_err(|e| LiveError::Nats(format!("publish ack: {e}")))?;
                        acked += 1;
                    }
                }
            }
            for a in pending {
                a.await.map_err(|e| LiveError::Nats(format!("publish ack: {e}")))?;
                acked += 1;
            }
            Ok(acked)
        });
        Publisher { tx, task }
    }
    /// Close and wait for every acknowledgement; returns how many were acknowledged.
    pub async fn finish(self) -> Result<u64> {
        drop(self.tx);
        self.task.await.map_err(|e| LiveError::Nats(format!("publisher task: {e}")))?
    }
}

/// A `nats-server -js` on a free loopback port with a store in a fresh temporary directory
/// (removed on drop): for tests and local runs. `None`, with a message, when the binary (`$NATS_SERVER`,
/// default `nats-server`) is missing.
pub struct LocalNats {
    pub url: String,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl LocalNats {
    pub fn start() -> Option<LocalNats> {
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        if std::process::Command::new(&bin).arg("--version").output().is_err() {
            eprintln!("SKIP: {bin} not found (apt-get install nats-server; .ci/run installs it)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let dir = std::env::temp_dir().join(format!("flowcast-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let mut child = std::process::Command::new(&bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("SKIP: starting {bin}: {e}"))
            .ok()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(LocalNats { url: format!("nats://127.0.0.1:{port}"), child, dir });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nats-server did not listen on {port}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowcast_datasets::flags;

    #[test]
    fn ev1_round_trip_and_errors() {
        let evs = [
            Event::new(EventKind::Snapshot, Side::Bid, 0, 0, 5).with_seq(9).with_local(6),
            Event::level(Side::Ask, 6_183_764, 154_698_000, 7).with_seq(10).with_flags(flags::BATCH_END | flags::SNAPSHOT),
            Event::new(EventKind::Trade, Side::Bid, -3, i64::MAX, i64::MIN).with_order(u64::MAX),
        ];
        let mut buf = Vec::new();
        encode_into(&evs, &mut buf);
        assert_eq!(buf.len(), 1 + 3 * EVENT_BYTES);
        let mut out = Vec::new();
        decode_into(&buf, &mut out).unwrap();
        assert_eq!(out, evs);
        assert!(decode_into(&buf[..buf.len() - 1], &mut out).unwrap_err().to_string().contains("not a multiple of 51"));
        buf[0] = 2;
        assert!(decode_into(&buf, &mut out).unwrap_err().to_string().contains("version 2"));
        let inst = Instrument::new("binance-spot", "BTCUSDT", "0.01", 8).unwrap();
        assert_eq!(subject(&inst), "flowcast.events.binance-spot.BTCUSDT");
        assert_eq!(stream_name(&inst), "FLOWCAST_BINANCE_SPOT_BTCUSDT");
    }
}
