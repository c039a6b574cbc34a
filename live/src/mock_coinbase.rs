//! A loopback Coinbase Exchange WebSocket feed: replays a cryptofeed recording of Coinbase
//! (`../shared/data/cryptofeed/COINBASE.ws.*`) to clients that subscribe, answering each
//! `subscribe` with `subscriptions` and, for the level2 channels, a `snapshot` of the book it keeps
//! (the recording's snapshot plus every l2update replayed), so a resubscribing client resyncs.
//! Faults: dropped `match` messages (a trade-id gap) and disconnects.

use crate::error::{LiveError, Result};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Faults: `drop_matches` `(product, n)`: the n-th replayed `match` of the product (from 0) is
/// never sent; `disconnect_after`: close every connection after that many replayed messages.
#[derive(Clone, Debug, Default)]
pub struct CoinbaseFaults {
    pub drop_matches: Vec<(String, usize)>,
    pub disconnect_after: Vec<usize>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct CoinbaseMockLog {
    pub connections: u64,
    pub subscriptions: u64,
    /// `(product, trade_id)` of dropped matches.
    pub dropped: Vec<(String, u64)>,
    pub disconnects: u64,
    pub messages_replayed: usize,
}

#[derive(Default)]
struct Book {
    bids: BTreeMap<i128, (String, String)>,
    asks: BTreeMap<i128, (String, String)>,
}

fn key(s: &str) -> i128 {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    let fp: i128 = format!("{:0<12}", &f[..f.len().min(12)]).parse().unwrap_or(0);
    i.parse::<i128>().unwrap_or(0) * 1_000_000_000_000 + fp
}

fn is_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0' || b == b'.')
}

impl Book {
    fn set(&mut self, side: &str, p: &str, q: &str) {
        let m = if side == "buy" || side == "bids" { &mut self.bids } else { &mut self.asks };
        if is_zero(q) {
            m.remove(&key(p));
        } else {
            m.insert(key(p), (p.to_string(), q.to_string()));
        }
    }
    fn snapshot(&self, product: &str) -> String {
        let lv =
            |it: &mut dyn Iterator<Item = &(String, String)>| it.map(|(p, q)| format!("[\"{p}\",\"{q}\"]")).collect::<Vec<_>>().join(",");
        format!(
            "{{\"type\":\"snapshot\",\"product_id\":\"{product}\",\"bids\":[{}],\"asks\":[{}]}}",
            lv(&mut self.bids.values().rev()),
            lv(&mut self.asks.values())
        )
    }
}

#[derive(Clone)]
enum Out {
    Msg { product: Arc<str>, channel: &'static str, json: Arc<str> },
    Kill,
}

struct Shared {
    books: Mutex<HashMap<String, Book>>,
    log: Mutex<CoinbaseMockLog>,
    tx: broadcast::Sender<Out>,
    start: watch::Sender<bool>,
    done: watch::Sender<bool>,
}

/// A running Coinbase mock (WebSocket at `/`).
pub struct CoinbaseMock {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct Rec {
    ts: i64,
    product: String,
    kind: String,
    json: String,
    v: serde_json::Value,
}

fn channel_of(kind: &str) -> Option<&'static str> {
    match kind {
        "l2update" => Some("level2"),
        "match" | "last_match" => Some("matches"),
        "ticker" => Some("ticker"),
        "heartbeat" => Some("heartbeat"),
        _ => None,
    }
}

impl CoinbaseMock {
    /// Replay the received messages of `recording` at `speed` × recorded time (from the last
    /// product snapshot), starting at the first subscription; `replay` limits the recorded time.
    pub async fn start(recording: PathBuf, speed: f64, replay: Option<Duration>, faults: CoinbaseFaults) -> Result<CoinbaseMock> {
        let f = std::fs::File::open(&recording).map_err(|e| LiveError::io(&recording, e))?;
        let mut recs = Vec::new();
        for (i, l) in std::io::BufReader::new(f).lines().enumerate() {
            let l = l.map_err(|e| LiveError::io(&recording, e))?;
            if !l.as_bytes().first().is_some_and(|b| b.is_ascii_digit()) {
                continue;
            }
            let bad = |r: String| LiveError::Parse { what: format!("{}:{}", recording.display(), i + 1), reason: r };
            let (t, json) = l.split_once(": ").ok_or_else(|| bad("expected '<ts>: <json>'".into()))?;
            let ts = flowcast_datasets::instrument::parse_fixed(t, 9).map_err(bad)?;
            let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
            let (Some(kind), Some(product)) = (v["type"].as_str(), v["product_id"].as_str()) else { continue };
            recs.push(Rec { ts, product: product.to_string(), kind: kind.to_string(), json: json.to_string(), v: v.clone() });
        }
        let t0 = recs
            .iter()
            .filter(|r| r.kind == "snapshot")
            .map(|r| r.ts)
            .max()
            .ok_or_else(|| LiveError::Config("no snapshot in the recording".into()))?;
        let mut books: HashMap<String, Book> = HashMap::new();
        let mut timeline = Vec::new();
        for r in recs {
            match r.kind.as_str() {
                "snapshot" => {
                    let b = books.entry(r.product.clone()).or_default();
                    for side in ["bids", "asks"] {
                        for l in r.v[side].as_array().into_iter().flatten() {
                            b.set(side, l[0].as_str().unwrap_or("0"), l[1].as_str().unwrap_or("0"));
                        }
                    }
                }
                "l2update" if r.ts < t0 => apply(&mut books, &r),
                _ if r.ts < t0 => {}
                _ => timeline.push(r),
            }
        }
        let (tx, _) = broadcast::channel(1 << 16);
        let shared = Arc::new(Shared {
            books: Mutex::new(books),
            log: Mutex::new(CoinbaseMockLog::default()),
            tx,
            start: watch::channel(false).0,
            done: watch::channel(false).0,
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| LiveError::io("127.0.0.1:0", e))?;
        let addr = listener.local_addr().map_err(|e| LiveError::io("127.0.0.1:0", e))?;
        let app = Router::new().route("/", get(ws_handler)).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let sh = shared.clone();
        let replay_task = tokio::spawn(async move {
            let _ = sh.start.subscribe().wait_for(|s| *s).await;
            let wall0 = tokio::time::Instant::now();
            let mut matches: HashMap<String, usize> = HashMap::new();
            let mut sent = 0usize;
            for r in timeline {
                let rec = Duration::from_nanos((r.ts - t0).max(0) as u64);
                if replay.is_some_and(|l| rec > l) {
                    break;
                }
                tokio::time::sleep_until(wall0 + rec.div_f64(speed.max(1e-3))).await;
                let Some(channel) = channel_of(&r.kind) else { continue };
                if r.kind == "match" {
                    let n = matches.entry(r.product.clone()).or_default();
                    let k = *n;
                    *n += 1;
                    if faults.drop_matches.iter().any(|(p, m)| *p == r.product && *m == k) {
                        sh.log.lock().unwrap().dropped.push((r.product.clone(), r.v["trade_id"].as_u64().unwrap_or(0)));
                        continue;
                    }
                }
                {
                    // Book and broadcast under one lock: a subscriber's snapshot is exact
                    // relative to the updates it receives after it.
                    let mut books = sh.books.lock().unwrap();
                    if r.kind == "l2update" {
                        apply(&mut books, &r);
                    }
                    let _ = sh.tx.send(Out::Msg { product: Arc::from(r.product.as_str()), channel, json: Arc::from(r.json.as_str()) });
                }
                sent += 1;
                if faults.disconnect_after.contains(&sent) {
                    sh.log.lock().unwrap().disconnects += 1;
                    let _ = sh.tx.send(Out::Kill);
                }
            }
            sh.log.lock().unwrap().messages_replayed = sent;
            sh.done.send_replace(true);
        });
        Ok(CoinbaseMock { addr, shared, tasks: vec![server, replay_task] })
    }
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }
    pub async fn wait_done(&self) {
        let _ = self.shared.done.subscribe().wait_for(|d| *d).await;
    }
    pub fn log(&self) -> CoinbaseMockLog {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for CoinbaseMock {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn apply(books: &mut HashMap<String, Book>, r: &Rec) {
    let b = books.entry(r.product.clone()).or_default();
    for c in r.v["changes"].as_array().into_iter().flatten() {
        b.set(c[0].as_str().unwrap_or(""), c[1].as_str().unwrap_or("0"), c[2].as_str().unwrap_or("0"));
    }
}

async fn ws_handler(ws: WebSocketUpgrade, State(sh): State<Arc<Shared>>) -> Response {
    ws.on_upgrade(move |s| conn(s, sh))
}

async fn conn(mut socket: WebSocket, sh: Arc<Shared>) {
    sh.log.lock().unwrap().connections += 1;
    let mut rx: Option<broadcast::Receiver<Out>> = None;
    let mut subs: Vec<(String, &'static str)> = Vec::new();
    loop {
        tokio::select! {
            biased;
            m = async { rx.as_mut().unwrap().recv().await }, if rx.is_some() => match m {
                Ok(Out::Msg { product, channel, json }) => {
                    if subs.iter().any(|(p, c)| **p == *product && *c == channel) && socket.send(Message::Text(json.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Ok(Out::Kill) => {
                    let _ = socket.send(Message::Close(None)).await;
                    let _ = tokio::time::timeout(Duration::from_secs(1), async { while let Some(Ok(m)) = socket.recv().await { if matches!(m, Message::Close(_)) { break; } } }).await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = match serde_json::from_str(t.as_str()) { Ok(v) => v, Err(_) => continue };
                    if v["type"] != "subscribe" {
                        continue;
                    }
                    let products: Vec<String> = v["product_ids"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect();
                    let channels: Vec<String> = v["channels"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(String::from)).collect();
                    let mut replies = vec![serde_json::json!({"type": "subscriptions", "channels": channels.iter().map(|c| serde_json::json!({"name": c, "product_ids": products})).collect::<Vec<_>>()}).to_string()];
                    {
                        let books = sh.books.lock().unwrap();
                        rx.get_or_insert_with(|| sh.tx.subscribe());
                        for c in &channels {
                            let ch = match c.as_str() { "level2" | "level2_batch" => "level2", "matches" => "matches", "ticker" => "ticker", "heartbeat" => "heartbeat", _ => continue };
                            for p in &products {
                                subs.push((p.clone(), ch));
                                if ch == "level2" {
                                    replies.push(books.get(p).map(|b| b.snapshot(p)).unwrap_or_else(|| format!("{{\"type\":\"error\",\"message\":\"unknown product {p}\"}}")));
                                }
                            }
                        }
                    }
                    sh.log.lock().unwrap().subscriptions += 1;
                    for r in replies {
                        if socket.send(Message::Text(r.into())).await.is_err() {
                            return;
                        }
                    }
                    let _ = sh.start.send_replace(true);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
