//! A loopback Binance: replays recordings (the `../shared/data/binance` format) over the
//! combined-stream WebSocket endpoint and serves the REST depth snapshot of the book it keeps,
//! with injectable faults. For tests of the collectors and `flowcast collect mock`.
//!
//! The book is the recording's snapshot with every recorded diff applied, so a snapshot served at
//! any time is exact at its `lastUpdateId` (the u of the last diff replayed), and the recorded
//! bookTickers agree with it. Replay starts at the first diff that bridges the recording's
//! snapshot, when the first WebSocket client connects, at `speed` × recorded time.
//!
//! Faults ([`Faults`]): dropped diffs (never sent: a gap), swapped diffs (out-of-order),
//! disconnects (every connection closed after the N-th replayed message;
//! what is replayed while a client is away is lost to it, as on the real exchange), stale
//! snapshots (the previous response served again), and HTTP errors with `Retry-After`.

use crate::error::{LiveError, Result};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flowcast_datasets::loaders::binance::Market;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// Injected faults. Diff numbers count one symbol's replayed depth diffs from 0; request numbers
/// count one symbol's REST depth requests from 1 (failed ones included).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// `(symbol, n)`: diff n is never sent.
    pub drop_diffs: Vec<(String, usize)>,
    /// `(symbol, n)`: diff n is sent after diff n+1.
    pub swap_diffs: Vec<(String, usize)>,
    /// Close every WebSocket after this many replayed messages (all symbols).
    pub disconnect_after: Vec<usize>,
    /// `(symbol, request)`: answer with the previous response (the recording's snapshot if none).
    pub stale_snapshots: Vec<(String, u32)>,
    /// `(symbol, request, status, retry_after_s)`.
    pub http_errors: Vec<(String, u32, u16, u64)>,
}

/// What the mock replays and how.
#[derive(Clone, Debug)]
pub struct MockConfig {
    /// One recording per symbol, all of one market.
    pub recordings: Vec<PathBuf>,
    pub market: Market,
    /// Replay speed (× recorded time).
    pub speed: f64,
    /// Recorded time to replay (from the start point); `None`: all.
    pub replay: Option<Duration>,
    pub faults: Faults,
    /// Server pings on every connection (Binance pings every 20 s spot, 3 min futures).
    pub ping_interval: Option<Duration>,
    pub bind: SocketAddr,
    /// Start the replay at once instead of at the first WebSocket connection (REST-only clients
    /// such as the polling monitor).
    pub start_immediately: bool,
}

impl MockConfig {
    /// Loopback on a free port, 10× speed, no faults, no server pings.
    pub fn new(market: Market, recordings: Vec<PathBuf>) -> MockConfig {
        MockConfig {
            recordings,
            market,
            speed: 10.0,
            replay: None,
            faults: Faults::default(),
            ping_interval: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            start_immediately: false,
        }
    }
}

/// One REST depth request.
#[derive(Clone, Debug, Serialize)]
pub struct SnapshotRequest {
    pub symbol: String,
    pub n: u32,
    pub status: u16,
    /// `lastUpdateId` served (200 only).
    pub last_update_id: Option<u64>,
    pub stale: bool,
    /// ms since the mock started.
    pub at_ms: u64,
}

/// A diff as sent (or not).
#[derive(Clone, Debug, Serialize)]
pub struct DiffIds {
    pub symbol: String,
    pub n: usize,
    #[serde(rename = "U")]
    pub first_id: u64,
    pub u: u64,
    pub pu: Option<u64>,
}

/// What the mock did, for tests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MockLog {
    pub connections: u64,
    pub messages_replayed: usize,
    pub dropped: Vec<DiffIds>,
    pub swapped: Vec<DiffIds>,
    /// Per disconnect: the last diff sent before it, per symbol.
    pub disconnects: Vec<Vec<DiffIds>>,
    pub snapshot_requests: Vec<SnapshotRequest>,
    pub pongs: u64,
    /// Messages a slow connection missed (broadcast lag).
    pub lagged: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Depth,
    Trade,
    BookTicker,
}

/// A diff's `(U, u, pu, E, T)`.
type Ids = (u64, u64, Option<u64>, u64, Option<u64>);
/// `[price, qty]` decimal strings.
type Levels = Vec<(String, String)>;

struct Line {
    ts: i64,
    sym: usize,
    kind: Kind,
    data: Box<serde_json::value::RawValue>,
    ids: Option<Ids>,
    /// Bids and asks of a diff.
    levels: Option<(Levels, Levels)>,
}

/// Decimal string → integer at 10^-12 (recordings print ≤ 8 decimals).
fn dec_key(s: &str) -> Option<i128> {
    let (i, f) = s.split_once('.').unwrap_or((s, ""));
    if f.len() > 12 || i.is_empty() {
        return None;
    }
    let ip: i128 = i.parse().ok()?;
    let fp: i128 = if f.is_empty() { 0 } else { format!("{f:0<12}").parse().ok()? };
    Some(ip * 1_000_000_000_000 + fp)
}

#[derive(Default)]
struct Book {
    bids: BTreeMap<i128, (String, String)>,
    asks: BTreeMap<i128, (String, String)>,
    last_u: u64,
    e: u64,
    t: Option<u64>,
}

impl Book {
    fn apply(side: &mut BTreeMap<i128, (String, String)>, levels: &[(String, String)]) {
        for (p, q) in levels {
            let Some(k) = dec_key(p) else { continue };
            if dec_key(q) == Some(0) {
                side.remove(&k);
            } else {
                side.insert(k, (p.clone(), q.clone()));
            }
        }
    }
    fn render(&self, limit: usize, futures: bool) -> String {
        let lv = |it: &mut dyn Iterator<Item = &(String, String)>| {
            it.take(limit).map(|(p, q)| format!("[\"{p}\",\"{q}\"]")).collect::<Vec<_>>().join(",")
        };
        let bids = lv(&mut self.bids.values().rev());
        let asks = lv(&mut self.asks.values());
        if futures {
            let t = self.t.unwrap_or(self.e);
            format!("{{\"lastUpdateId\":{},\"E\":{},\"T\":{t},\"bids\":[{bids}],\"asks\":[{asks}]}}", self.last_u, self.e)
        } else {
            format!("{{\"lastUpdateId\":{},\"bids\":[{bids}],\"asks\":[{asks}]}}", self.last_u)
        }
    }
}

#[derive(Clone)]
enum Out {
    Msg { sym: usize, kind: Kind, data: Arc<str> },
    Kill,
}

struct Shared {
    symbols: Vec<String>,
    futures: bool,
    faults: Faults,
    books: Mutex<Vec<Book>>,
    initial: Vec<String>,
    last_served: Mutex<Vec<Option<String>>>,
    requests: Mutex<Vec<u32>>,
    log: Mutex<MockLog>,
    tx: broadcast::Sender<Out>,
    start: watch::Sender<bool>,
    done: watch::Sender<bool>,
    t0: Instant,
    ping: Option<Duration>,
}

/// A running mock exchange.
pub struct MockExchange {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
    replay: tokio::task::JoinHandle<()>,
}

fn parse_levels(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| a.iter().filter_map(|p| Some((p.get(0)?.as_str()?.to_string(), p.get(1)?.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

struct Loaded {
    symbol: String,
    snapshot: Book,
    lines: Vec<Line>,
}

fn load(path: &PathBuf, sym: usize) -> Result<Loaded> {
    let name = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| LiveError::io(path, e))?;
    let r = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(f));
    let mut symbol = None;
    let mut snapshot = None;
    let mut lines = Vec::new();
    for (i, l) in r.lines().enumerate() {
        let l = l.map_err(|e| LiveError::io(path, e))?;
        let bad = |reason: String| LiveError::Parse { what: format!("{name}:{}", i + 1), reason };
        let Some((ts, json)) = l.split_once(' ') else { continue };
        let ts: i64 = ts.parse().map_err(|e| bad(format!("local_ts: {e}")))?;
        #[derive(Deserialize)]
        struct Wrap<'a> {
            #[serde(borrow)]
            stream: Option<&'a str>,
            data: Option<Box<serde_json::value::RawValue>>,
        }
        let w: Wrap = serde_json::from_str(json).map_err(|e| bad(format!("json: {e}")))?;
        let (Some(stream), Some(data)) = (w.stream, w.data) else {
            let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(format!("json: {e}")))?;
            if let Some(l) = v.get("lastUpdateId").and_then(|x| x.as_u64()) {
                let mut b = Book {
                    last_u: l,
                    e: v.get("E").and_then(|x| x.as_u64()).unwrap_or(0),
                    t: v.get("T").and_then(|x| x.as_u64()),
                    ..Default::default()
                };
                Book::apply(&mut b.bids, &parse_levels(&v["bids"]));
                Book::apply(&mut b.asks, &parse_levels(&v["asks"]));
                snapshot.get_or_insert(b);
            }
            continue;
        };
        let (s, k) = stream.split_once('@').ok_or_else(|| bad(format!("stream {stream:?}")))?;
        symbol.get_or_insert_with(|| s.to_ascii_uppercase());
        let kind = if k.starts_with("depth") {
            Kind::Depth
        } else if k == "trade" {
            Kind::Trade
        } else if k == "bookTicker" {
            Kind::BookTicker
        } else {
            continue;
        };
        let (ids, levels) = if kind == Kind::Depth {
            let v: serde_json::Value = serde_json::from_str(data.get()).map_err(|e| bad(format!("data: {e}")))?;
            let g = |f: &str| v.get(f).and_then(|x| x.as_u64());
            let ids = (
                g("U").ok_or_else(|| bad("data.U".into()))?,
                g("u").ok_or_else(|| bad("data.u".into()))?,
                g("pu"),
                g("E").unwrap_or(0),
                g("T"),
            );
            (Some(ids), Some((parse_levels(&v["b"]), parse_levels(&v["a"]))))
        } else {
            (None, None)
        };
        lines.push(Line { ts, sym, kind, data, ids, levels });
    }
    let symbol = symbol.ok_or_else(|| LiveError::Config(format!("{name}: no stream message")))?;
    let snapshot = snapshot.ok_or_else(|| LiveError::Config(format!("{name}: no REST snapshot line to start the book from")))?;
    Ok(Loaded { symbol, snapshot, lines })
}

impl MockExchange {
    /// Load the recordings, bind, and serve (replay waits for the first WebSocket client).
    pub async fn start(cfg: MockConfig) -> Result<MockExchange> {
        let futures = cfg.market.is_futures();
        let mut symbols = Vec::new();
        let mut books = Vec::new();
        let mut initial = Vec::new();
        let mut timeline: Vec<Line> = Vec::new();
        let mut t0 = i64::MIN;
        for (i, p) in cfg.recordings.iter().enumerate() {
            let l = load(p, i)?;
            let snap_l = l.snapshot.last_update_id();
            // The first diff the snapshot does not cover must bridge it.
            let start = l
                .lines
                .iter()
                .position(|x| x.ids.is_some_and(|(_, u, ..)| if futures { u >= snap_l } else { u > snap_l }))
                .ok_or_else(|| LiveError::Config(format!("{}: no diff after the snapshot", p.display())))?;
            let (first, ..) = l.lines[start].ids.unwrap_or_default();
            if first > if futures { snap_l } else { snap_l + 1 } {
                return Err(LiveError::Config(format!("{}: the recording's snapshot is not bridged by its diffs", p.display())));
            }
            t0 = t0.max(l.lines[start].ts);
            initial.push(l.snapshot.render(1000, futures));
            symbols.push(l.symbol);
            books.push(l.snapshot);
            timeline.extend(l.lines.into_iter().skip(start));
        }
        timeline.sort_by_key(|l| l.ts);
        let (tx, _) = broadcast::channel(1 << 16);
        let n = symbols.len();
        let shared = Arc::new(Shared {
            symbols,
            futures,
            faults: cfg.faults.clone(),
            books: Mutex::new(books),
            initial,
            last_served: Mutex::new(vec![None; n]),
            requests: Mutex::new(vec![0; n]),
            log: Mutex::new(MockLog::default()),
            tx,
            start: watch::channel(false).0,
            done: watch::channel(false).0,
            t0: Instant::now(),
            ping: cfg.ping_interval,
        });
        // Diffs recorded before the common start only move the book.
        let mut rest = Vec::new();
        {
            let mut books = shared.books.lock().unwrap();
            for l in timeline {
                if l.ts < t0 {
                    if let (Some(ids), Some(lv)) = (l.ids, &l.levels) {
                        apply(&mut books[l.sym], ids, lv);
                    }
                } else {
                    rest.push(l);
                }
            }
        }
        // Each symbol's book starts at its first replayed diff (applied again when replayed,
        // which changes nothing: levels are absolute). A snapshot served before that diff is
        // sent then has lastUpdateId = its u, which it bridges (futures) or covers (spot); the
        // state before it would be a diff boundary no sent diff bridges.
        {
            let mut books = shared.books.lock().unwrap();
            let mut seen = vec![false; books.len()];
            for l in &rest {
                if let (Some(ids), Some(lv), false) = (l.ids, &l.levels, seen[l.sym]) {
                    apply(&mut books[l.sym], ids, lv);
                    seen[l.sym] = true;
                }
            }
        }
        let listener = tokio::net::TcpListener::bind(cfg.bind).await.map_err(|e| LiveError::io(cfg.bind.to_string(), e))?;
        let addr = listener.local_addr().map_err(|e| LiveError::io(cfg.bind.to_string(), e))?;
        let app = Router::new()
            .route("/stream", get(ws_handler))
            .route("/api/v3/depth", get(depth_handler))
            .route("/fapi/v1/depth", get(depth_handler))
            .route("/dapi/v1/depth", get(depth_handler))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        if cfg.start_immediately {
            let _ = shared.start.send_replace(true);
        }
        let replay = tokio::spawn(replay_task(shared.clone(), rest, t0, cfg.speed.max(1e-3), cfg.replay));
        Ok(MockExchange { addr, shared, server, replay })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Base WebSocket URL (the collector appends `/stream?streams=…`).
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }
    /// Base REST URL (the collector appends `/api/v3/depth?…` etc.).
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn symbols(&self) -> &[String] {
        &self.shared.symbols
    }
    /// Wait until the replay has sent its last message.
    pub async fn wait_done(&self) {
        let mut rx = self.shared.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
    pub fn log(&self) -> MockLog {
        self.shared.log.lock().unwrap().clone()
    }
    /// Wait until the replay is done or `stop` turns true.
    pub async fn wait_done_or_stop(&self, mut stop: watch::Receiver<bool>) {
        tokio::select! {
            _ = self.wait_done() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

impl Drop for MockExchange {
    fn drop(&mut self) {
        self.server.abort();
        self.replay.abort();
    }
}

impl Book {
    fn last_update_id(&self) -> u64 {
        self.last_u
    }
}

fn apply(book: &mut Book, ids: Ids, lv: &(Levels, Levels)) {
    Book::apply(&mut book.bids, &lv.0);
    Book::apply(&mut book.asks, &lv.1);
    book.last_u = ids.1;
    book.e = ids.3;
    book.t = ids.4;
}

async fn replay_task(sh: Arc<Shared>, lines: Vec<Line>, t0: i64, speed: f64, limit: Option<Duration>) {
    let mut started = sh.start.subscribe();
    let _ = started.wait_for(|s| *s).await;
    let wall0 = tokio::time::Instant::now();
    let mut counts = vec![0usize; sh.symbols.len()];
    let mut held: Vec<Option<(Arc<str>, DiffIds)>> = vec![None; sh.symbols.len()];
    let mut last_sent: Vec<Option<DiffIds>> = vec![None; sh.symbols.len()];
    let mut sent = 0usize;
    let has = |v: &[(String, usize)], s: &str, n: usize| v.iter().any(|(x, k)| x.eq_ignore_ascii_case(s) && *k == n);
    for l in lines {
        let rec = Duration::from_nanos((l.ts - t0).max(0) as u64);
        if limit.is_some_and(|lim| rec > lim) {
            break;
        }
        tokio::time::sleep_until(wall0 + rec.div_f64(speed)).await;
        let data: Arc<str> = Arc::from(l.data.get());
        let sym = &sh.symbols[l.sym];
        if let (Some(ids), Some(lv)) = (l.ids, &l.levels) {
            apply(&mut sh.books.lock().unwrap()[l.sym], ids, lv);
            let n = counts[l.sym];
            counts[l.sym] += 1;
            let d = DiffIds { symbol: sym.clone(), n, first_id: ids.0, u: ids.1, pu: ids.2 };
            if has(&sh.faults.drop_diffs, sym, n) {
                sh.log.lock().unwrap().dropped.push(d);
                continue;
            }
            if has(&sh.faults.swap_diffs, sym, n) {
                sh.log.lock().unwrap().swapped.push(d.clone());
                held[l.sym] = Some((data, d));
                continue;
            }
            let _ = sh.tx.send(Out::Msg { sym: l.sym, kind: l.kind, data });
            last_sent[l.sym] = Some(d);
            if let Some((h, hd)) = held[l.sym].take() {
                let _ = sh.tx.send(Out::Msg { sym: l.sym, kind: Kind::Depth, data: h });
                last_sent[l.sym] = Some(hd);
            }
        } else {
            let _ = sh.tx.send(Out::Msg { sym: l.sym, kind: l.kind, data });
        }
        sent += 1;
        if sh.faults.disconnect_after.contains(&sent) {
            sh.log.lock().unwrap().disconnects.push(last_sent.iter().flatten().cloned().collect());
            let _ = sh.tx.send(Out::Kill);
        }
    }
    sh.log.lock().unwrap().messages_replayed = sent;
    let _ = sh.done.send_replace(true);
}

#[derive(Deserialize)]
struct StreamsQuery {
    streams: String,
}

async fn ws_handler(ws: WebSocketUpgrade, Query(q): Query<StreamsQuery>, State(sh): State<Arc<Shared>>) -> Response {
    // (symbol index, kind) → the stream name the client subscribed to.
    let mut subs: HashMap<(usize, u8), String> = HashMap::new();
    for name in q.streams.split('/') {
        let Some((s, k)) = name.split_once('@') else { continue };
        let Some(i) = sh.symbols.iter().position(|x| x.eq_ignore_ascii_case(s)) else { continue };
        let kind = if k.starts_with("depth") {
            Kind::Depth
        } else if k == "trade" {
            Kind::Trade
        } else if k == "bookTicker" {
            Kind::BookTicker
        } else {
            continue;
        };
        subs.insert((i, kind as u8), name.to_string());
    }
    ws.on_upgrade(move |socket| ws_conn(socket, subs, sh))
}

async fn ws_conn(mut socket: WebSocket, subs: HashMap<(usize, u8), String>, sh: Arc<Shared>) {
    let mut rx = sh.tx.subscribe();
    sh.log.lock().unwrap().connections += 1;
    let _ = sh.start.send_replace(true);
    let mut ping = tokio::time::interval(sh.ping.unwrap_or(Duration::from_secs(3600)));
    ping.tick().await;
    loop {
        tokio::select! {
            biased;
            m = rx.recv() => match m {
                Ok(Out::Msg { sym, kind, data }) => {
                    let Some(name) = subs.get(&(sym, kind as u8)) else { continue };
                    let text = format!("{{\"stream\":\"{name}\",\"data\":{data}}}");
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // A close frame after everything sent so far, then drain until the client's
                // reply (dropping a socket with unread input would reset it, losing in-flight data).
                Ok(Out::Kill) => {
                    let _ = socket.send(Message::Close(None)).await;
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Some(Ok(m)) = socket.recv().await {
                            if matches!(m, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                    return;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => sh.log.lock().unwrap().lagged += n,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ping.tick(), if sh.ping.is_some() => {
                if socket.send(Message::Ping(b"mock".to_vec().into())).await.is_err() {
                    return;
                }
            }
            m = socket.recv() => match m {
                Some(Ok(Message::Pong(_))) => sh.log.lock().unwrap().pongs += 1,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[derive(Deserialize)]
struct DepthQuery {
    symbol: Option<String>,
    limit: Option<usize>,
}

async fn depth_handler(Query(q): Query<DepthQuery>, State(sh): State<Arc<Shared>>) -> Response {
    let json = |status: StatusCode, body: String| (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    let Some(i) = q.symbol.as_deref().and_then(|s| sh.symbols.iter().position(|x| x.eq_ignore_ascii_case(s))) else {
        return json(StatusCode::BAD_REQUEST, r#"{"code":-1121,"msg":"Invalid symbol."}"#.into());
    };
    let sym = sh.symbols[i].clone();
    let n = {
        let mut r = sh.requests.lock().unwrap();
        r[i] += 1;
        r[i]
    };
    let at_ms = sh.t0.elapsed().as_millis() as u64;
    let log = |status: u16, last_update_id: Option<u64>, stale: bool| {
        sh.log.lock().unwrap().snapshot_requests.push(SnapshotRequest { symbol: sym.clone(), n, status, last_update_id, stale, at_ms })
    };
    if let Some((_, _, status, after)) = sh.faults.http_errors.iter().find(|(s, k, ..)| s.eq_ignore_ascii_case(&sym) && *k == n) {
        log(*status, None, false);
        let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = format!(r#"{{"code":-1003,"msg":"mock fault: HTTP {status}"}}"#);
        return (code, [(header::RETRY_AFTER, after.to_string()), (header::CONTENT_TYPE, "application/json".to_string())], body)
            .into_response();
    }
    let stale = sh.faults.stale_snapshots.iter().any(|(s, k)| s.eq_ignore_ascii_case(&sym) && *k == n);
    let limit = q.limit.unwrap_or(100).clamp(1, 5000);
    let body = if stale {
        sh.last_served.lock().unwrap()[i].clone().unwrap_or_else(|| sh.initial[i].clone())
    } else {
        let b = sh.books.lock().unwrap()[i].render(limit, sh.futures);
        sh.last_served.lock().unwrap()[i] = Some(b.clone());
        b
    };
    let l = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v.get("lastUpdateId").and_then(|x| x.as_u64()));
    log(200, l, stale);
    json(StatusCode::OK, body)
}
