//! The Coinbase Exchange collector: `level2_batch` (snapshot + l2update), `matches` and `ticker`
//! over one WebSocket, recorded in the cryptofeed raw format the Coinbase loader reads
//! (`<url> <-> <ts>` per connection, `<url> <- <ts>: <json>` per subscription sent,
//! `<ts>: <json>` per message received; ts = seconds since epoch with 9 decimals).
//!
//! Coinbase's level2 messages carry no sequence numbers, so losses are detected on the channels
//! that do, per product: `matches` trade ids must be consecutive and each channel's `sequence` must
//! increase. A break (or any disconnect) reconnects and resubscribes: the recording gets a new
//! connection line (the loader then marks every synced book as a gap) and a fresh level2 snapshot
//! (which resynchronises it). Files rotate by reconnecting into the new file.

use crate::backoff::Backoff;
use crate::binance::Disconnect;
use crate::error::{LiveError, Result};
use crate::now_ns;
use crate::recorder::utc_stamp;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub const COINBASE_WS: &str = "wss://ws-feed.exchange.coinbase.com";

#[derive(Clone, Debug)]
pub struct CoinbaseConfig {
    pub products: Vec<String>,
    pub out: PathBuf,
    pub duration: Option<Duration>,
    pub ws_url: String,
    /// `level2_batch` (public) or `level2` (authenticated on today's feed).
    pub level2_channel: String,
    pub rotate: Duration,
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    pub idle_timeout: Duration,
}

impl CoinbaseConfig {
    pub fn new(products: Vec<String>, out: PathBuf) -> CoinbaseConfig {
        CoinbaseConfig {
            products,
            out,
            duration: None,
            ws_url: COINBASE_WS.into(),
            level2_channel: "level2_batch".into(),
            rotate: Duration::from_secs(3600),
            reconnect_base: Duration::from_millis(250),
            reconnect_cap: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A sequence break that made the collector resubscribe.
#[derive(Clone, Debug, Serialize)]
pub struct SequenceBreak {
    pub product: String,
    /// `trade_id` or `sequence:<channel>`.
    pub field: String,
    pub expected: u64,
    pub received: u64,
    pub file: String,
    /// Line of the message that showed the break.
    pub line: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CoinbaseReport {
    pub connections: u64,
    pub disconnects: Vec<Disconnect>,
    pub breaks: Vec<SequenceBreak>,
    pub files: Vec<String>,
    pub lines: u64,
    pub snapshots: u64,
}

struct File {
    path: PathBuf,
    w: std::io::BufWriter<std::fs::File>,
    lines: u64,
    period: i64,
}

fn ts_str(ns: i64) -> String {
    format!("{}.{:09}", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

/// Per product and channel: what the next message must show.
#[derive(Default)]
struct Seq {
    trade_id: Option<u64>,
    sequence: HashMap<&'static str, u64>,
}

/// Check one message; `Some((field, expected, received))` on a break.
fn check(seqs: &mut HashMap<String, Seq>, json: &str) -> Option<(String, String, u64, u64)> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
        #[serde(borrow)]
        product_id: Option<&'a str>,
        sequence: Option<u64>,
        trade_id: Option<u64>,
    }
    let h: Head = serde_json::from_str(json).ok()?;
    let product = h.product_id?;
    let channel = match h.kind {
        "match" | "last_match" => "matches",
        "ticker" => "ticker",
        _ => return None,
    };
    let s = seqs.entry(product.to_string()).or_default();
    if let Some(q) = h.sequence {
        if let Some(&prev) = s.sequence.get(channel) {
            if q <= prev {
                return Some((product.into(), format!("sequence:{channel}"), prev + 1, q));
            }
        }
        s.sequence.insert(channel, q);
    }
    if let (Some(t), true) = (h.trade_id, channel == "matches") {
        if let (Some(prev), "match") = (s.trade_id, h.kind) {
            if t != prev + 1 {
                return Some((product.into(), "trade_id".into(), prev + 1, t));
            }
        }
        s.trade_id = Some(t);
    }
    None
}

/// Collect until `cfg.duration` or `stop`; files `<out>/COINBASE.ws.<YYYYMMDD-HHMMSS>` plus
/// `coinbase-report.json`.
pub async fn collect(cfg: CoinbaseConfig, mut stop: watch::Receiver<bool>) -> Result<CoinbaseReport> {
    crate::init_tls();
    std::fs::create_dir_all(&cfg.out).map_err(|e| LiveError::io(&cfg.out, e))?;
    let deadline = cfg.duration.map(|d| Instant::now() + d);
    let stopped = |stop: &watch::Receiver<bool>| *stop.borrow() || deadline.is_some_and(|d| Instant::now() >= d);
    let rot = cfg.rotate.as_nanos().max(1) as i64;
    let sub = serde_json::json!({"type": "subscribe", "product_ids": cfg.products, "channels": [cfg.level2_channel, "matches", "ticker"]})
        .to_string();
    let mut report = CoinbaseReport::default();
    let mut file: Option<File> = None;
    let mut backoff = Backoff::new(cfg.reconnect_base, cfg.reconnect_cap);
    let io = |p: &PathBuf, e| LiveError::io(p, e);
    while !stopped(&stop) {
        let now = now_ns();
        if file.as_ref().is_none_or(|f| f.period != now.div_euclid(rot)) {
            if let Some(mut f) = file.take() {
                f.w.flush().map_err(|e| io(&f.path, e))?;
            }
            let period = now.div_euclid(rot);
            let mut path = cfg.out.join(format!("COINBASE.ws.{}", utc_stamp(period * rot)));
            let mut n = 0;
            while path.exists() {
                n += 1;
                path = cfg.out.join(format!("COINBASE.ws.{}.{n}", utc_stamp(period * rot)));
            }
            let w = std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| io(&path, e))?);
            report.files.push(path.display().to_string());
            file = Some(File { path, w, lines: 0, period });
        }
        let f = file.as_mut().ok_or_else(|| LiveError::Config("no file".into()))?;
        let conn = tokio::select! {
            r = tokio_tungstenite::connect_async(cfg.ws_url.as_str()) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let mut ws = match conn {
            Ok((ws, _)) => ws,
            Err(e) => {
                let wait = backoff.next_delay();
                report.disconnects.push(Disconnect { at_ns: now_ns(), reason: format!("connect failed: {e}") });
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        report.connections += 1;
        let t = now_ns();
        writeln!(f.w, "{} <-> {}", cfg.ws_url, ts_str(t)).map_err(|e| io(&f.path, e))?;
        if let Err(e) = ws.send(Message::Text(sub.clone().into())).await {
            report.disconnects.push(Disconnect { at_ns: now_ns(), reason: format!("subscribe failed: {e}") });
            continue;
        }
        writeln!(f.w, "{} <- {}: {sub}", cfg.ws_url, ts_str(now_ns())).map_err(|e| io(&f.path, e))?;
        f.lines += 2;
        let mut seqs: HashMap<String, Seq> = HashMap::new();
        let mut last_rx = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let reason: String = loop {
            tokio::select! {
                biased;
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        last_rx = Instant::now();
                        backoff.reset();
                        let json = t.as_str();
                        writeln!(f.w, "{}: {json}", ts_str(now_ns())).map_err(|e| io(&f.path, e))?;
                        f.lines += 1;
                        report.lines += 1;
                        if json.contains("\"type\":\"snapshot\"") {
                            report.snapshots += 1;
                        }
                        if let Some((product, field, expected, received)) = check(&mut seqs, json) {
                            tracing::warn!(%product, %field, expected, received, "sequence break: resubscribing");
                            report.breaks.push(SequenceBreak { product, field: field.clone(), expected, received, file: f.path.display().to_string(), line: f.lines });
                            break format!("sequence break ({field})");
                        }
                    }
                    Some(Ok(_)) => last_rx = Instant::now(),
                    Some(Err(e)) => break format!("read error: {e}"),
                    None => break "connection closed".into(),
                },
                _ = tick.tick() => {
                    if last_rx.elapsed() > cfg.idle_timeout {
                        break "idle".into();
                    }
                    if stopped(&stop) {
                        let _ = ws.close(None).await;
                        break String::new();
                    }
                    if now_ns().div_euclid(rot) != f.period {
                        let _ = ws.close(None).await;
                        break "file rotation".into();
                    }
                }
            }
        };
        if reason.is_empty() {
            break;
        }
        report.disconnects.push(Disconnect { at_ns: now_ns(), reason: reason.clone() });
        if reason.starts_with("sequence") || reason == "file rotation" {
            continue;
        }
        let wait = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if let Some(mut f) = file.take() {
        f.w.flush().map_err(|e| io(&f.path, e))?;
    }
    let path = cfg.out.join("coinbase-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default()).map_err(|e| LiveError::io(&path, e))?;
    Ok(report)
}
