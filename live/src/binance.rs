//! The Binance collector: combined WebSocket streams (`<symbol>@depth@100ms`, `@trade`,
//! `@bookTicker`) plus the REST depth snapshot, recorded per symbol as the gzip
//! `<local_ts_ns> <json>` files of `../shared/data/binance` and synchronised while recording by
//! the Binance loader's own procedure ([`LiveFeed`]).
//!
//! Recovery rules (docs/live.md): every accepted line goes to the file and to the symbol's
//! [`LiveFeed`]; whenever that feed needs a snapshot (start, new file, a `U`/`pu` gap, a
//! snapshot no diff bridged) one REST snapshot is fetched (429/418/5xx retried after `Retry-After`
//! or backoff) and recorded when it arrives, so the loader later replays exactly the decisions
//! made live. Lost connections are re-opened with capped exponential backoff and jitter; a
//! connection is renewed before Binance's 24-hour limit; the client pings and answers pings.
//! Only the feed's verified events (snapshot batches, bridged diffs, trades, `Gap` markers) are
//! published to the bus.

use crate::backoff::Backoff;
use crate::bus::{encode_into, subject, Bus, Publisher};
use crate::error::{LiveError, Result};
use crate::http::{Rest, RetryPolicy};
use crate::now_ns;
use crate::recorder::Recorder;
use bytes::Bytes;
use flowcast_datasets::loaders::binance::live::{LiveFeed, Phase};
use flowcast_datasets::loaders::binance::Market;
use flowcast_datasets::loaders::ImportOptions;
use flowcast_datasets::EventKind;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Binance's public endpoints of a market: (WebSocket base, REST base, depth path).
pub fn endpoints(market: Market) -> (&'static str, &'static str, &'static str) {
    match market {
        Market::Spot => ("wss://stream.binance.com:9443", "https://api.binance.com", "/api/v3/depth"),
        Market::Usdm => ("wss://fstream.binance.com", "https://fapi.binance.com", "/fapi/v1/depth"),
        Market::Coinm => ("wss://dstream.binance.com", "https://dapi.binance.com", "/dapi/v1/depth"),
    }
}

/// What to collect and how.
#[derive(Clone, Debug)]
pub struct BinanceConfig {
    pub market: Market,
    pub symbols: Vec<String>,
    pub out: PathBuf,
    /// Stop after this long; `None`: until the shutdown signal.
    pub duration: Option<Duration>,
    pub ws_url: String,
    pub rest_url: String,
    /// Depth stream suffix (`depth@100ms`; futures also `depth@0ms`, `depth@250ms`).
    pub depth_stream: String,
    /// REST snapshot `limit` (Binance: up to 5000 spot, 1000 futures).
    pub depth_limit: u32,
    /// File rotation period (1 h).
    pub rotate: Duration,
    /// Renew the connection after this long (Binance closes it at 24 h).
    pub max_connection_age: Duration,
    /// Client ping period; no frame for `idle_timeout` means a dead connection.
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    pub rest: RetryPolicy,
    /// Tick / size-scale overrides for symbols the loader does not know.
    pub import: ImportOptions,
    /// Publish verified events to this NATS server (JetStream), one stream per symbol.
    pub nats: Option<String>,
}

impl BinanceConfig {
    pub fn new(market: Market, symbols: Vec<String>, out: PathBuf) -> BinanceConfig {
        let (ws, rest, _) = endpoints(market);
        BinanceConfig {
            market,
            symbols,
            out,
            duration: None,
            ws_url: ws.into(),
            rest_url: rest.into(),
            depth_stream: "depth@100ms".into(),
            depth_limit: 1000,
            rotate: Duration::from_secs(3600),
            max_connection_age: Duration::from_secs(23 * 3600 + 50 * 60),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            reconnect_base: Duration::from_millis(250),
            reconnect_cap: Duration::from_secs(30),
            rest: RetryPolicy::default(),
            import: ImportOptions::default(),
            nats: None,
        }
    }
}

/// A continuity break or an unbridged snapshot, as the loader will report it for the file.
#[derive(Clone, Debug, Serialize)]
pub struct GapRecord {
    pub symbol: String,
    pub file: String,
    /// Line (1-based) of the diff that broke continuity, or of the diff that failed to bridge.
    pub line: u64,
    /// `gap` (the loader's `first_gaps`) or `no_bridge` (its `sync_failures`).
    pub kind: &'static str,
    /// Id expected / received (the `Gap` event's `seq` / `order_id`).
    pub expected: u64,
    pub received: u64,
    pub ts_local: i64,
}

/// Per-symbol counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SymbolReport {
    pub symbol: String,
    pub files: Vec<String>,
    pub lines: u64,
    pub diffs_applied: u64,
    pub gaps: Vec<GapRecord>,
    pub snapshots_requested: u64,
    pub snapshots_failed: u64,
    /// HTTP statuses (0: transport error) of retried snapshot attempts.
    pub snapshot_retries: Vec<u16>,
    pub snapshot_wait_ms: u64,
    /// Messages the loader's parser rejected (not written).
    pub rejected_lines: u64,
    pub synced_at_end: bool,
    pub events_published: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Disconnect {
    pub at_ns: i64,
    pub reason: String,
}

/// What a collection did (also written to `<out>/collect-report.json`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CollectReport {
    pub market: String,
    pub connections: u64,
    pub disconnects: Vec<Disconnect>,
    pub symbols: Vec<SymbolReport>,
    pub nats_acked: Option<u64>,
}

struct Sym {
    symbol: String,
    prefix: String,
    rec: Option<Recorder>,
    period: i64,
    feed: LiveFeed,
    in_flight: bool,
    report: SymbolReport,
    subject: Option<String>,
}

struct SnapResult {
    sym: usize,
    body: Result<String>,
    attempts: crate::http::Attempts,
}

struct Collector {
    cfg: BinanceConfig,
    rest: Rest,
    syms: Vec<Sym>,
    snap_tx: mpsc::UnboundedSender<SnapResult>,
    gaps_log: std::fs::File,
    publisher: Option<Publisher>,
    /// The publisher after it failed (kept to report its error at the end).
    bus_failed_publisher: Option<Publisher>,
    bus_failed: bool,
    buf: Vec<u8>,
}

impl Collector {
    fn new_feed(&self, i: usize, file: &str) -> Result<LiveFeed> {
        Ok(LiveFeed::new(self.cfg.market, &self.syms[i].symbol, &self.cfg.import, file)?)
    }

    /// The recorder for a line at `ts`, rotating at period boundaries (a new file starts a new
    /// feed, which asks for its own snapshot).
    fn ensure_file(&mut self, i: usize, ts: i64) -> Result<()> {
        let rot = self.cfg.rotate.as_nanos().max(1) as i64;
        let period = ts.div_euclid(rot);
        if self.syms[i].rec.is_some() && self.syms[i].period == period {
            return Ok(());
        }
        if let Some(r) = self.syms[i].rec.take() {
            r.finish()?;
        }
        let rec = Recorder::create(&self.cfg.out, &self.syms[i].prefix, period * rot)?;
        let file = rec.path().display().to_string();
        tracing::info!(symbol = %self.syms[i].symbol, %file, "new recording file");
        let feed = self.new_feed(i, &file)?;
        let s = &mut self.syms[i];
        s.report.files.push(file);
        s.report.diffs_applied += s.feed.diffs_applied();
        s.feed = feed;
        s.rec = Some(rec);
        s.period = period;
        Ok(())
    }

    /// Validate `json` with the feed, write it, publish the verified events, and ask for a
    /// snapshot when the feed needs one.
    async fn on_line(&mut self, i: usize, json: &str) -> Result<()> {
        let now = now_ns();
        self.ensure_file(i, now)?;
        let s = &mut self.syms[i];
        let rec = s.rec.as_mut().ok_or_else(|| LiveError::Config("no open file".into()))?;
        let ts = now.max(rec.last_ts());
        let gaps_before = s.feed.gaps();
        let fails_before = s.feed.sync_failures().len();
        if let Err(e) = s.feed.on_line(ts, json) {
            s.report.rejected_lines += 1;
            tracing::warn!(symbol = %s.symbol, "message rejected (not recorded): {e}");
            return Ok(());
        }
        rec.write(ts, json)?;
        s.report.lines += 1;
        let new_gaps = new_gap_records(s, gaps_before, fails_before);
        if let (Some(p), false) = (&self.publisher, s.feed.events().is_empty()) {
            self.buf.clear();
            encode_into(s.feed.events(), &mut self.buf);
            let subj = s.subject.clone().unwrap_or_default();
            s.report.events_published += s.feed.events().len() as u64;
            if p.tx.send((subj, Bytes::copy_from_slice(&self.buf))).await.is_err() {
                // The publisher task ended on a NATS error: keep recording, stop publishing
                // (the error itself is returned by `Publisher::finish`).
                tracing::error!("NATS publisher stopped; recording continues without the bus");
                self.bus_failed = true;
            }
        }
        if self.bus_failed && self.publisher.is_some() {
            self.bus_failed_publisher = self.publisher.take();
        }
        s.feed.clear_events();
        for g in new_gaps {
            tracing::warn!(symbol = %g.symbol, line = g.line, kind = g.kind, expected = g.expected, received = g.received, "gap: resynchronising");
            let _ = writeln!(self.gaps_log, "{}", serde_json::to_string(&g).unwrap_or_default());
            self.syms[i].report.gaps.push(g);
        }
        self.maybe_snapshot(i);
        Ok(())
    }

    fn maybe_snapshot(&mut self, i: usize) {
        let s = &mut self.syms[i];
        if s.in_flight || s.feed.phase() != Phase::AwaitSnapshot {
            return;
        }
        s.in_flight = true;
        s.report.snapshots_requested += 1;
        let (_, _, path) = endpoints(self.cfg.market);
        let url = format!("{}{path}?symbol={}&limit={}", self.cfg.rest_url.trim_end_matches('/'), s.symbol, self.cfg.depth_limit);
        let rest = self.rest.clone();
        let tx = self.snap_tx.clone();
        tokio::spawn(async move {
            let (body, attempts) = rest.get_text(&url).await;
            let _ = tx.send(SnapResult { sym: i, body, attempts });
        });
    }

    async fn on_snapshot(&mut self, r: SnapResult) -> Result<()> {
        let i = r.sym;
        {
            let s = &mut self.syms[i];
            s.in_flight = false;
            s.report.snapshot_retries.extend(r.attempts.failures.iter().copied());
            s.report.snapshot_wait_ms += r.attempts.waited_ms;
        }
        match r.body {
            Ok(body) => {
                // One line per message: re-serialise a pretty-printed body.
                let line = if body.contains('\n') {
                    serde_json::from_str::<serde_json::Value>(&body).map(|v| v.to_string()).unwrap_or_else(|_| body.replace('\n', ""))
                } else {
                    body
                };
                self.on_line(i, line.trim()).await
            }
            Err(e) => {
                let s = &mut self.syms[i];
                s.report.snapshots_failed += 1;
                tracing::error!(symbol = %s.symbol, "snapshot failed after retries: {e}");
                // Asked again at the next diff (the feed still needs one).
                Ok(())
            }
        }
    }

    fn finish(mut self, mut report: CollectReport) -> Result<(CollectReport, Option<Publisher>)> {
        for s in &mut self.syms {
            s.report.diffs_applied += s.feed.diffs_applied();
            s.report.synced_at_end = s.feed.phase() == Phase::Synced;
            if let Some(r) = s.rec.take() {
                r.finish()?;
            }
            report.symbols.push(std::mem::take(&mut s.report));
        }
        Ok((report, self.publisher.take().or(self.bus_failed_publisher.take())))
    }
}

/// The gaps and failed bridges the line just fed produced, with the lines the loader names.
fn new_gap_records(s: &Sym, gaps_before: u64, fails_before: usize) -> Vec<GapRecord> {
    let mut new_gaps = Vec::new();
    if !s.feed.events().iter().any(|e| e.kind == EventKind::Gap) {
        return new_gaps; // the common case: no allocation
    }
    let file = s.rec.as_ref().map(|r| r.path().display().to_string()).unwrap_or_default();
    let mut kinds = std::iter::repeat_n("gap", (s.feed.gaps() - gaps_before) as usize)
        .chain(std::iter::repeat_n("no_bridge", s.feed.sync_failures().len() - fails_before));
    for e in s.feed.events().iter().filter(|e| e.kind == EventKind::Gap) {
        new_gaps.push(GapRecord {
            symbol: s.symbol.clone(),
            file: file.clone(),
            line: s.feed.lines(),
            kind: kinds.next().unwrap_or("gap"),
            expected: e.seq,
            received: e.order_id,
            ts_local: e.ts_local,
        });
    }
    // Found while replaying buffered diffs (on a snapshot line), a gap or a failed bridge
    // belongs to the diff's own line, as the loader reports it.
    let (n_gaps, gaps_now) = ((s.feed.gaps() - gaps_before) as usize, s.feed.gaps() as usize);
    let first = s.feed.first_gaps();
    let mut gap_lines = (first.len() == gaps_now).then(|| first[first.len() - n_gaps..].iter().map(|g| g.line)).into_iter().flatten();
    let mut fail_lines = s.feed.sync_failures()[fails_before..].iter().map(|f| f.diff_line);
    for g in &mut new_gaps {
        let line = if g.kind == "gap" { gap_lines.next() } else { fail_lines.next().flatten() };
        g.line = line.unwrap_or(g.line);
    }
    new_gaps
}

/// The symbol a combined-stream message belongs to (`"stream": "<symbol>@..."`).
fn symbol_index(syms: &[Sym], json: &str) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        stream: Option<&'a str>,
    }
    let h: Head = serde_json::from_str(json).ok()?;
    let sym = h.stream?.split('@').next()?;
    syms.iter().position(|x| x.symbol.eq_ignore_ascii_case(sym))
}

async fn wait_stop(stop: &mut watch::Receiver<bool>, deadline: Option<Instant>) {
    let d = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = d => {}
    }
}

/// Collect until `cfg.duration` has passed or `stop` turns true; writes the recordings,
/// `gaps.jsonl` (one line per gap, as it happens) and `collect-report.json` under `cfg.out`.
pub async fn collect(cfg: BinanceConfig, mut stop: watch::Receiver<bool>) -> Result<CollectReport> {
    crate::init_tls();
    if cfg.symbols.is_empty() {
        return Err(LiveError::Config("--symbols: at least one symbol".into()));
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| LiveError::io(&cfg.out, e))?;
    let gaps_path = cfg.out.join("gaps.jsonl");
    let gaps_log = std::fs::OpenOptions::new().create(true).append(true).open(&gaps_path).map_err(|e| LiveError::io(&gaps_path, e))?;
    let deadline = cfg.duration.map(|d| Instant::now() + d);
    let (snap_tx, mut snap_rx) = mpsc::unbounded_channel();
    let bus = match &cfg.nats {
        Some(url) => Some(Bus::connect(url).await?),
        None => None,
    };
    let mut syms = Vec::new();
    for s in &cfg.symbols {
        let symbol = s.trim().to_ascii_uppercase();
        let feed = LiveFeed::new(cfg.market, &symbol, &cfg.import, "(not started)")?;
        let subject = match &bus {
            Some(b) => {
                b.ensure_stream(feed.instrument()).await?;
                Some(subject(feed.instrument()))
            }
            None => None,
        };
        syms.push(Sym {
            prefix: format!("{}-{}", cfg.market.name(), symbol.to_ascii_lowercase()),
            report: SymbolReport { symbol: symbol.clone(), ..Default::default() },
            symbol,
            rec: None,
            period: i64::MIN,
            feed,
            in_flight: false,
            subject,
        });
    }
    let streams: Vec<String> = syms
        .iter()
        .flat_map(|s| {
            let l = s.symbol.to_ascii_lowercase();
            [format!("{l}@{}", cfg.depth_stream), format!("{l}@trade"), format!("{l}@bookTicker")]
        })
        .collect();
    let url = format!("{}/stream?streams={}", cfg.ws_url.trim_end_matches('/'), streams.join("/"));
    let mut c = Collector {
        rest: Rest::new(cfg.rest.clone())?,
        publisher: bus.map(|b| Publisher::spawn(b, 256)),
        cfg,
        syms,
        snap_tx,
        gaps_log,
        bus_failed_publisher: None,
        bus_failed: false,
        buf: Vec::new(),
    };
    let mut report = CollectReport { market: c.cfg.market.name().into(), ..Default::default() };
    let mut backoff = Backoff::new(c.cfg.reconnect_base, c.cfg.reconnect_cap);
    'conn: loop {
        let conn = tokio::select! {
            r = tokio_tungstenite::connect_async(url.as_str()) => r,
            _ = wait_stop(&mut stop, deadline) => break 'conn,
        };
        let mut ws = match conn {
            Ok((ws, _)) => ws,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(%url, wait_ms = wait.as_millis() as u64, "connect failed: {e}");
                report.disconnects.push(Disconnect { at_ns: now_ns(), reason: format!("connect failed: {e}") });
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue 'conn,
                    _ = wait_stop(&mut stop, deadline) => break 'conn,
                }
            }
        };
        report.connections += 1;
        tracing::info!(%url, "connected");
        let opened = Instant::now();
        let mut last_rx = Instant::now();
        let mut ping = tokio::time::interval(c.cfg.ping_interval);
        ping.tick().await;
        let mut got_data = false;
        let reason: String = loop {
            tokio::select! {
                biased;
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => {
                        last_rx = Instant::now();
                        if !got_data {
                            got_data = true;
                            backoff.reset();
                        }
                        let idx = symbol_index(&c.syms, t.as_str());
                        match idx {
                            Some(i) => c.on_line(i, t.as_str()).await?,
                            None => tracing::debug!("message without a known stream: {}", &t.as_str()[..t.len().min(200)]),
                        }
                    }
                    // Pings are answered by tungstenite (the pong goes out with the next read/write).
                    Some(Ok(_)) => last_rx = Instant::now(),
                    Some(Err(e)) => break format!("read error: {e}"),
                    None => break "connection closed".into(),
                },
                Some(r) = snap_rx.recv() => c.on_snapshot(r).await?,
                _ = ping.tick() => {
                    if last_rx.elapsed() > c.cfg.idle_timeout {
                        break format!("no frame for {} ms", last_rx.elapsed().as_millis());
                    }
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        break format!("ping failed: {e}");
                    }
                }
                _ = tokio::time::sleep_until(opened + c.cfg.max_connection_age) => break "connection age limit (Binance closes at 24 h)".into(),
                _ = wait_stop(&mut stop, deadline) => {
                    let _ = ws.close(None).await;
                    break 'conn;
                }
            }
        };
        tracing::warn!(%reason, "disconnected; reconnecting");
        report.disconnects.push(Disconnect { at_ns: now_ns(), reason });
        let wait = backoff.next_delay();
        let until = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                Some(r) = snap_rx.recv() => c.on_snapshot(r).await?,
                _ = wait_stop(&mut stop, deadline) => break 'conn,
            }
        }
    }
    let out = c.cfg.out.clone();
    let (mut report, publisher) = c.finish(report)?;
    let bus = match publisher {
        Some(p) => p.finish().await.map(|n| report.nats_acked = Some(n)),
        None => Ok(()),
    };
    let path = out.join("collect-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default()).map_err(|e| LiveError::io(&path, e))?;
    // The recordings are finished; a bus failure is still an error of the run.
    bus.map(|_| report)
}
