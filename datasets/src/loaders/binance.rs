//! Binance market-data recordings → canonical events, synchronised with Binance's documented
//! procedure, and `data check` of the rebuilt book against the bookTicker stream.
//!
//! Input (hftbacktest-style recordings): gzip or plain text, one message per line,
//! `<local_receive_ts_ns> <json>`. The JSON is a combined-stream message `{"stream", "data"}`
//! (`depthUpdate`, `bookTicker`, `trade`, `aggTrade`; anything else is counted and skipped) or a
//! REST depth snapshot `{"lastUpdateId", "bids", "asks"}` (futures also `E`, `T`).
//!
//! The synchronisation ([`BookSync`]) and the message handling ([`Feed`]) are shared with the
//! cryptofeed recordings of Binance (`cryptofeed_binance.rs`), which differ only in line format.
//! Mapping, units, sync rules and report keys: docs/data.md, "Loader: Binance".
//!
//! Hot path: a line is parsed once into borrowed structs ([`Msg`], [`Val`]); prices and sizes
//! are converted from the borrowed decimal strings straight to integers; the only per-message
//! allocations are the two level arrays of a depth message. Wrong types never fail inside serde:
//! [`Val`] records what it saw, and the loader reports it with the JSON key path
//! (`file:line: data.b[3].price: ...`).

use super::options::{ImportOptions, Imported};
use super::text::{for_each_line, open_text};
use crate::error::{BadLines, DataError, Result};
use crate::event::{close_batch, flags, Event, EventKind, Side};
use crate::instrument::{format_fixed, significant_decimals, Instrument};
use crate::report::Report;
use crate::store::{Dataset, DatasetMeta, SourceFile};
use serde::Serialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

mod json;
pub mod live;
pub(crate) use json::{Data, DataField, Msg, Val};

/// How many entries the `first_*` report lists keep.
const KEEP: usize = 10;

// ---------------------------------------------------------------------------------------------
// Markets and instruments
// ---------------------------------------------------------------------------------------------

/// Binance market. Spot and futures differ in the synchronisation rule (see [`BookSync`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Market {
    Spot,
    /// USD-M futures (`fapi`/`fstream`).
    Usdm,
    /// COIN-M futures (`dapi`/`dstream`).
    Coinm,
}

impl Market {
    /// From its [`Market::name`] (`spot`, `usdm`, `coinm`).
    pub fn parse(s: &str) -> Option<Market> {
        [Market::Spot, Market::Usdm, Market::Coinm].into_iter().find(|m| m.name() == s)
    }
    pub fn name(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::Usdm => "usdm",
            Market::Coinm => "coinm",
        }
    }
    /// Venue name recorded in the instrument.
    pub fn venue(self) -> &'static str {
        match self {
            Market::Spot => "binance-spot",
            Market::Usdm => "binance-usdm",
            Market::Coinm => "binance-coinm",
        }
    }
    /// Futures diffs carry `pu` and follow the futures procedure.
    pub fn is_futures(self) -> bool {
        self != Market::Spot
    }
    /// From a recording's file-name prefix: `spot-…`, `usdm-…`/`um-…`, `coinm-…`/`cm-…`
    /// (case-insensitive; `um`/`cm` as in data.binance.vision).
    pub fn from_file_name(path: &Path) -> Option<Market> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let prefix = name.split(['-', '_', '.']).next()?;
        match prefix {
            "spot" => Some(Market::Spot),
            "usdm" | "um" => Some(Market::Usdm),
            "coinm" | "cm" => Some(Market::Coinm),
            _ => None,
        }
    }
    /// From a REST or websocket URL: `fapi.`/`fstream.` → USD-M, `dapi.`/`dstream.` → COIN-M,
    /// other `binance.com` hosts (`api.`, `stream.`) → spot.
    pub fn from_url(url: &str) -> Option<Market> {
        let host = url.split("://").nth(1).unwrap_or(url).split(['/', ':', '?']).next()?;
        if !host.contains("binance") {
            return None;
        }
        if host.starts_with("fapi.") || host.starts_with("fstream.") {
            Some(Market::Usdm)
        } else if host.starts_with("dapi.") || host.starts_with("dstream.") {
            Some(Market::Coinm)
        } else {
            Some(Market::Spot)
        }
    }
    /// Fallback when neither name nor URL tells: a diff with `pu` is futures (COIN-M symbols
    /// contain `_`, e.g. `BTCUSD_PERP`), one without is spot.
    pub fn from_diff(has_pu: bool, symbol: &str) -> Market {
        match (has_pu, symbol.contains('_')) {
            (false, _) => Market::Spot,
            (true, false) => Market::Usdm,
            (true, true) => Market::Coinm,
        }
    }
}

/// Built-in instruments: (market, symbol, tick size, size decimals). Ticks are the exchange's
/// PRICE_FILTER tick sizes. Sizes: futures use their LOT_SIZE step (0.001); spot uses 8 decimals,
/// the precision the spot API prints quantities with, because resting levels placed under older,
/// finer step sizes carry more decimals than today's step (1e-5 BTC, 1e-4 ETH): the 2024-08-08
/// recordings hold "25.42618900" (BTCUSDT) and "2292.22972000" (ETHUSDT). Verified against those
/// recordings: every price is on the grid and every size exact (docs/data.md).
const BUILTIN: &[(Market, &str, &str, u32)] = &[
    (Market::Spot, "BTCUSDT", "0.01", 8),
    (Market::Spot, "ETHUSDT", "0.01", 8),
    (Market::Usdm, "BTCUSDT", "0.10", 3),
    (Market::Usdm, "ETHUSDT", "0.01", 3),
];

/// (price decimals, size decimals) present in a snapshot's levels; `None` if it has no level.
/// Binance pads every value to 8 decimals, so these are the significant decimals
/// ([`significant_decimals`]: "61837.63000000" → 2).
pub(crate) fn snapshot_scales(bids: Option<&Val>, asks: Option<&Val>) -> Option<(u32, u32)> {
    let mut out: Option<(u32, u32)> = None;
    for v in [bids, asks].into_iter().flatten() {
        if let Val::Levels(levels) = v {
            for p in levels {
                if let (Val::Str(px), Val::Str(q)) = (&p.price, &p.qty) {
                    let (a, b) = out.unwrap_or((0, 0));
                    out = Some((a.max(significant_decimals(px)), b.max(significant_decimals(q))));
                }
            }
        }
    }
    out
}

/// Whether `symbol` on `market` has no complete instrument without looking at a snapshot.
pub(crate) fn needs_inference(market: Market, symbol: &str, opts: &ImportOptions) -> bool {
    let builtin = BUILTIN.iter().any(|(m, s, _, _)| *m == market && s.eq_ignore_ascii_case(symbol));
    !builtin && (opts.tick_size.is_none() || opts.size_scale.is_none())
}

/// The instrument of `symbol`: `--tick-size`/`--size-scale` first, then the built-in table, then
/// (unknown symbols) the decimals present in the snapshot (`scales`). Returns whether anything
/// was inferred.
pub(crate) fn resolve_instrument(
    market: Market,
    symbol: &str,
    opts: &ImportOptions,
    scales: Option<(u32, u32)>,
) -> Result<(Instrument, bool)> {
    let builtin = BUILTIN.iter().find(|(m, s, _, _)| *m == market && s.eq_ignore_ascii_case(symbol));
    let no_scales = || {
        DataError::Invalid(format!(
            "{}:{symbol}: unknown instrument and no depth snapshot to infer its scales from; \
             pass --tick-size and --size-scale",
            market.venue()
        ))
    };
    let mut inferred = false;
    let tick = match (&opts.tick_size, builtin) {
        (Some(t), _) => t.clone(),
        (None, Some((_, _, t, _))) => t.to_string(),
        (None, None) => {
            inferred = true;
            format_fixed(1, scales.ok_or_else(no_scales)?.0)
        }
    };
    let size_scale = match (opts.size_scale, builtin) {
        (Some(s), _) => s,
        (None, Some((_, _, _, s))) => *s,
        (None, None) => {
            inferred = true;
            scales.ok_or_else(no_scales)?.1
        }
    };
    let inst = Instrument::new(market.venue(), &symbol.to_ascii_uppercase(), &tick, size_scale)
        .map_err(|e| DataError::Invalid(format!("tick size {tick:?}: {e}")))?;
    Ok((inst, inferred))
}

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MsgKind {
    Depth,
    Snapshot,
    BookTicker,
    Trade,
    AggTrade,
    /// Subscription replies and streams this loader does not map (kline, partial depth, ...).
    Other,
}

/// Where a message is: file and 1-based line, for errors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'f> {
    pub file: &'f str,
    pub line: u64,
}

impl Ctx<'_> {
    pub fn err(&self, field: &str, reason: impl Into<String>) -> DataError {
        DataError::parse(self.file, self.line, field, reason)
    }
    fn missing(&self, field: &str) -> DataError {
        self.err(field, "missing")
    }
    fn u64(&self, v: &Option<Val>, field: &str) -> Result<u64> {
        match v {
            Some(Val::U64(x)) => Ok(*x),
            None => Err(self.missing(field)),
            Some(o) => Err(self.err(field, format!("expected a non-negative integer, got {}", o.kind()))),
        }
    }
    /// Milliseconds since epoch → ns (exact: ×10^6).
    fn ms(&self, v: &Option<Val>, field: &str) -> Result<i64> {
        let ms = self.u64(v, field)?;
        i64::try_from(ms)
            .ok()
            .and_then(|m| m.checked_mul(1_000_000))
            .ok_or_else(|| self.err(field, format!("time {ms} ms overflows i64 ns")))
    }
    fn str<'a>(&self, v: &Option<Val<'a>>, field: &str) -> Result<&'a str> {
        match v {
            Some(Val::Str(s)) => Ok(s),
            None => Err(self.missing(field)),
            Some(o) => Err(self.err(field, format!("expected a string, got {}", o.kind()))),
        }
    }
    fn bool(&self, v: &Option<Val>, field: &str) -> Result<bool> {
        match v {
            Some(Val::Bool(b)) => Ok(*b),
            None => Err(self.missing(field)),
            Some(o) => Err(self.err(field, format!("expected a boolean, got {}", o.kind()))),
        }
    }
    fn price(&self, inst: &Instrument, s: &str, field: &str) -> Result<i64> {
        let p = inst.price_to_ticks(s).map_err(|e| self.err(field, format!("{e} (tick {})", inst.tick_size())))?;
        if p <= 0 {
            return Err(self.err(field, format!("price {s} is not positive")));
        }
        Ok(p)
    }
    fn qty(&self, inst: &Instrument, s: &str, field: &str) -> Result<i64> {
        let q = inst.size_to_lots(s).map_err(|e| self.err(field, e))?;
        if q < 0 {
            return Err(self.err(field, format!("quantity {s} is negative")));
        }
        Ok(q)
    }
}

/// Parse one message's JSON. Syntax errors (bad JSON, truncated line) name the field `json`.
pub(crate) fn parse_msg<'a>(ctx: &Ctx, json: &'a str) -> Result<Msg<'a>> {
    serde_json::from_str(json).map_err(|e| ctx.err("json", e.to_string()))
}

/// Classify a message; stream messages also give their symbol (the stream-name prefix, in the
/// stream's own case) and their `data` object.
pub(crate) fn classify<'m, 'a>(ctx: &Ctx, msg: &'m Msg<'a>) -> Result<(MsgKind, Option<&'a str>, Option<&'m Data<'a>>)> {
    if let Some(stream) = &msg.stream {
        let s = match stream {
            Val::Str(s) => *s,
            o => return Err(ctx.err("stream", format!("expected a string, got {}", o.kind()))),
        };
        let (sym, kind) = s.split_once('@').ok_or_else(|| ctx.err("stream", format!("expected '<symbol>@<stream>', got {s:?}")))?;
        let data = match &msg.data {
            Some(DataField::Obj(d)) => d,
            Some(DataField::Not(k)) => return Err(ctx.err("data", format!("expected an object, got {k}"))),
            None => return Err(ctx.missing("data")),
        };
        if let Some(Val::Str(ds)) = &data.s {
            if !ds.eq_ignore_ascii_case(sym) {
                return Err(ctx.err("data.s", format!("symbol {ds} does not match stream {s}")));
            }
        }
        let k = if kind == "depth" || kind.starts_with("depth@") {
            MsgKind::Depth
        } else {
            match kind {
                "bookTicker" => MsgKind::BookTicker,
                "trade" => MsgKind::Trade,
                "aggTrade" => MsgKind::AggTrade,
                _ => MsgKind::Other,
            }
        };
        return Ok((k, Some(sym), Some(data)));
    }
    if msg.last_update_id.is_some() || msg.bids.is_some() || msg.asks.is_some() {
        return Ok((MsgKind::Snapshot, None, None));
    }
    if msg.id.is_some() || msg.result.is_some() {
        return Ok((MsgKind::Other, None, None));
    }
    Err(ctx.err(
        "stream",
        "missing: expected a combined-stream message {\"stream\", \"data\"} or a depth snapshot {\"lastUpdateId\", \"bids\", \"asks\"}",
    ))
}

/// Convert the level array at `path` into level events (copies of `tmpl` with side, price and
/// size set); snapshot levels (`tmpl` flagged SNAPSHOT) must have a positive size.
fn push_levels(ctx: &Ctx, inst: &Instrument, v: &Option<Val>, path: &str, side: Side, tmpl: Event, out: &mut Vec<Event>) -> Result<()> {
    let snapshot = tmpl.flags & flags::SNAPSHOT != 0;
    let levels = match v {
        Some(Val::Levels(l)) => l,
        None => return Err(ctx.missing(path)),
        Some(o) => return Err(ctx.err(path, format!("expected an array of [price, qty], got {}", o.kind()))),
    };
    for (i, p) in levels.iter().enumerate() {
        if p.len != Some(2) {
            let what = match p.len {
                None => "not an array".to_string(),
                Some(n) => format!("{n} elements"),
            };
            return Err(ctx.err(&format!("{path}[{i}]"), format!("expected a [price, qty] pair, got {what}")));
        }
        let field = |name: &str| format!("{path}[{i}].{name}");
        let px = match &p.price {
            Val::Str(s) => ctx.price(inst, s, &field("price"))?,
            o => return Err(ctx.err(&field("price"), format!("expected a decimal string, got {}", o.kind()))),
        };
        let (q, qs) = match &p.qty {
            Val::Str(s) => (ctx.qty(inst, s, &field("qty"))?, *s),
            o => return Err(ctx.err(&field("qty"), format!("expected a decimal string, got {}", o.kind()))),
        };
        if snapshot && q == 0 {
            return Err(ctx.err(&field("qty"), format!("snapshot level with quantity {qs}")));
        }
        let kind = if q == 0 { EventKind::LevelDelete } else { EventKind::LevelSet };
        out.push(Event { kind, side, price: px, size: q, ..tmpl });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Synchronisation
// ---------------------------------------------------------------------------------------------

/// The ids and times of one depth diff.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DiffHdr {
    /// `U`: first update id in the diff.
    pub first_id: u64,
    /// `u`: final update id in the diff.
    pub last_id: u64,
    /// `pu` (futures): final update id of the previous diff.
    pub prev_id: Option<u64>,
    pub line: u64,
    pub ts_exchange: i64,
    pub ts_local: i64,
}

/// The id and times of one REST depth snapshot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SnapHdr {
    pub last_update_id: u64,
    pub line: u64,
    pub ts_exchange: i64,
    pub ts_local: i64,
}

/// A synchronisation failure: no snapshot, no bridging diff, or no snapshot after a gap.
#[derive(Clone, Debug, Serialize)]
pub struct SyncFailure {
    /// File (recordings) or symbol (cryptofeed) it belongs to.
    pub source: String,
    /// `no_snapshot`, `no_bridge`, `no_snapshot_after_gap` or `not_bridged_at_end`.
    pub reason: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_last_update_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_line: Option<u64>,
    #[serde(rename = "diff_U", skip_serializing_if = "Option::is_none")]
    pub diff_first_id: Option<u64>,
    #[serde(rename = "diff_u", skip_serializing_if = "Option::is_none")]
    pub diff_last_id: Option<u64>,
    #[serde(rename = "diff_pu", skip_serializing_if = "Option::is_none")]
    pub diff_prev_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff_line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_diff_line: Option<u64>,
    /// Diffs affected (not applied).
    pub diffs: u64,
}

/// A continuity break while synced.
#[derive(Clone, Debug, Serialize)]
pub struct GapInfo {
    pub source: String,
    /// Line of the diff that broke the chain.
    pub line: u64,
    /// Id expected: previous `u` + 1 (spot `U`) or previous `u` (futures `pu`).
    pub expected: u64,
    /// Id received instead (`U` spot, `pu` futures).
    pub received: u64,
    #[serde(rename = "diff_U")]
    pub diff_first_id: u64,
    #[serde(rename = "diff_u")]
    pub diff_last_id: u64,
    #[serde(rename = "diff_pu", skip_serializing_if = "Option::is_none")]
    pub diff_prev_id: Option<u64>,
    pub previous_line: u64,
}

/// Counters of the synchronisation.
#[derive(Clone, Debug, Default)]
pub(crate) struct SyncStats {
    pub synced: bool,
    pub diffs: u64,
    pub diffs_applied: u64,
    pub diffs_dropped_before_snapshot: u64,
    pub diffs_unapplied: u64,
    pub snapshots: u64,
    pub snapshots_unused: u64,
    pub gaps: u64,
    pub first_gaps: Vec<GapInfo>,
    pub sync_failures: Vec<SyncFailure>,
}

/// Where the synchronisation of one symbol stands (collectors: when to fetch a snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No valid book (start, or after a gap / an unbridged snapshot): a REST snapshot is needed.
    AwaitSnapshot,
    /// A snapshot was applied; waiting for the diff that bridges it.
    AwaitBridge,
    /// The book is valid.
    Synced,
}

#[derive(Clone, Copy, Debug)]
enum SyncState {
    /// No usable book: buffer diffs until a snapshot arrives.
    AwaitSnapshot,
    /// Snapshot applied; waiting for the diff that bridges it.
    AwaitBridge { last_update_id: u64, line: u64 },
    /// Book valid at update id `prev` (the `u` of the diff applied last, at `line`).
    Synced { prev: u64, line: u64 },
}

struct Pending {
    hdr: DiffHdr,
    start: usize,
    end: usize,
    /// Position in the output stream when it was received (where a `no_snapshot` Gap goes).
    event_pos: usize,
}

/// Binance's documented local-order-book procedure, for one symbol.
///
/// Spot (<https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams>, "How to
/// manage a local order book correctly"): buffer diffs received before the snapshot; drop every
/// diff with `u <= lastUpdateId`; the first applied diff must have `U <= lastUpdateId+1 <= u`;
/// afterwards each diff's `U` must equal the previous `u + 1`.
///
/// USD-M / COIN-M futures (developers.binance.com, `derivatives/…/websocket-market-streams/
/// How-to-manage-a-local-order-book-correctly`): drop diffs with `u < lastUpdateId`; the first
/// applied must have `U <= lastUpdateId <= u`; afterwards each diff's `pu` must equal the previous
/// `u`.
///
/// Failures are never patched: a `Gap` event is emitted (`seq` = id expected, `order_id` = id
/// received), the failure is recorded, and diffs are buffered again until the next snapshot.
pub(crate) struct BookSync {
    futures: bool,
    state: SyncState,
    had_snapshot: bool,
    pending: Vec<Pending>,
    pending_events: Vec<Event>,
    pub stats: SyncStats,
}

impl BookSync {
    pub fn new(market: Market) -> BookSync {
        BookSync {
            futures: market.is_futures(),
            state: SyncState::AwaitSnapshot,
            had_snapshot: false,
            pending: Vec::new(),
            pending_events: Vec::new(),
            stats: SyncStats::default(),
        }
    }

    /// Where the procedure stands (for collectors: when to fetch a snapshot).
    pub fn phase(&self) -> Phase {
        match self.state {
            SyncState::AwaitSnapshot => Phase::AwaitSnapshot,
            SyncState::AwaitBridge { .. } => Phase::AwaitBridge,
            SyncState::Synced { .. } => Phase::Synced,
        }
    }

    /// A diff whose level events (seq, times set; no flags) are `levels`.
    pub fn on_diff(&mut self, hdr: DiffHdr, levels: &[Event], out: &mut Vec<Event>) {
        self.stats.diffs += 1;
        self.step(hdr, levels, out);
    }

    fn buffer(&mut self, hdr: DiffHdr, levels: &[Event], event_pos: usize) {
        let start = self.pending_events.len();
        self.pending_events.extend_from_slice(levels);
        self.pending.push(Pending { hdr, start, end: self.pending_events.len(), event_pos });
    }

    fn apply(&mut self, hdr: DiffHdr, levels: &[Event], out: &mut Vec<Event>) {
        let start = out.len();
        out.extend_from_slice(levels);
        close_batch(out, start);
        self.stats.diffs_applied += 1;
        self.state = SyncState::Synced { prev: hdr.last_id, line: hdr.line };
    }

    fn gap_event(hdr: &DiffHdr, expected: u64, received: u64) -> Event {
        Event::new(EventKind::Gap, Side::Bid, 0, 0, hdr.ts_exchange)
            .with_seq(expected)
            .with_order(received)
            .with_local(hdr.ts_local)
            .with_flags(flags::BATCH_END)
    }

    fn step(&mut self, hdr: DiffHdr, levels: &[Event], out: &mut Vec<Event>) {
        match self.state {
            SyncState::AwaitSnapshot => self.buffer(hdr, levels, out.len()),
            SyncState::AwaitBridge { last_update_id: l, line } => {
                let covered = if self.futures { hdr.last_id < l } else { hdr.last_id <= l };
                if covered {
                    self.stats.diffs_dropped_before_snapshot += 1;
                    return;
                }
                // Not covered, so u ≥ L (futures) / u ≥ L+1 (spot): the bridge only needs U.
                let target = if self.futures { l } else { l + 1 };
                if hdr.first_id <= target {
                    self.stats.synced = true;
                    self.apply(hdr, levels, out);
                    return;
                }
                let rule = if self.futures { "U <= lastUpdateId <= u" } else { "U <= lastUpdateId+1 <= u" };
                self.stats.sync_failures.push(SyncFailure {
                    source: String::new(),
                    reason: "no_bridge",
                    detail: format!(
                        "snapshot lastUpdateId {l} (line {line}) needs a first diff with {rule}; the first \
                         diff not covered by it (line {}) has U={} u={}: updates {target}..{} were never received",
                        hdr.line,
                        hdr.first_id,
                        hdr.last_id,
                        hdr.first_id - 1
                    ),
                    snapshot_last_update_id: Some(l),
                    snapshot_line: Some(line),
                    diff_first_id: Some(hdr.first_id),
                    diff_last_id: Some(hdr.last_id),
                    diff_prev_id: hdr.prev_id,
                    diff_line: Some(hdr.line),
                    last_diff_line: None,
                    diffs: 1,
                });
                out.push(Self::gap_event(&hdr, target, hdr.first_id));
                self.state = SyncState::AwaitSnapshot;
                self.buffer(hdr, levels, out.len());
            }
            SyncState::Synced { prev, line } => {
                let (expected, received) = if self.futures {
                    // A futures diff without pu is rejected by the parser; 0 never equals a u.
                    (prev, hdr.prev_id.unwrap_or(0))
                } else {
                    (prev + 1, hdr.first_id)
                };
                if expected == received {
                    self.apply(hdr, levels, out);
                    return;
                }
                self.stats.gaps += 1;
                if self.stats.first_gaps.len() < KEEP {
                    self.stats.first_gaps.push(GapInfo {
                        source: String::new(),
                        line: hdr.line,
                        expected,
                        received,
                        diff_first_id: hdr.first_id,
                        diff_last_id: hdr.last_id,
                        diff_prev_id: hdr.prev_id,
                        previous_line: line,
                    });
                }
                out.push(Self::gap_event(&hdr, expected, received));
                self.state = SyncState::AwaitSnapshot;
                self.buffer(hdr, levels, out.len());
            }
        }
    }

    /// A REST snapshot whose level events (flags SNAPSHOT; times set) are `levels`.
    pub fn on_snapshot(&mut self, hdr: SnapHdr, levels: &[Event], out: &mut Vec<Event>) {
        self.stats.snapshots += 1;
        match self.state {
            // The diff chain already gives the book exactly; a later snapshot adds nothing.
            SyncState::Synced { .. } => {
                self.stats.snapshots_unused += 1;
                return;
            }
            SyncState::AwaitBridge { last_update_id, .. } if hdr.last_update_id < last_update_id => {
                self.stats.snapshots_unused += 1;
                return;
            }
            _ => {}
        }
        let start = out.len();
        out.push(Event::new(EventKind::Snapshot, Side::Bid, 0, 0, hdr.ts_exchange).with_seq(hdr.last_update_id).with_local(hdr.ts_local));
        out.extend_from_slice(levels);
        close_batch(out, start);
        self.had_snapshot = true;
        self.state = SyncState::AwaitBridge { last_update_id: hdr.last_update_id, line: hdr.line };
        // Replay the buffered diffs through the procedure, in arrival order.
        let pending = std::mem::take(&mut self.pending);
        let pending_events = std::mem::take(&mut self.pending_events);
        for p in &pending {
            self.step(p.hdr, &pending_events[p.start..p.end], out);
        }
        if self.pending.is_empty() {
            self.pending = pending;
            self.pending.clear();
            self.pending_events = pending_events;
            self.pending_events.clear();
        }
    }

    /// End of input: record what could not be synchronised.
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        match self.state {
            SyncState::AwaitSnapshot => {
                let n = self.pending.len() as u64;
                let (first, last) = (self.pending.first().map(|p| p.hdr), self.pending.last().map(|p| p.hdr));
                let reason = if self.had_snapshot { "no_snapshot_after_gap" } else { "no_snapshot" };
                if self.had_snapshot && n == 0 {
                    return;
                }
                let detail = match (first, last) {
                    (Some(f), Some(l)) if self.had_snapshot => format!(
                        "no snapshot after the break at line {}: {n} diffs (lines {}-{}, U={} .. u={}) were not applied",
                        f.line, f.line, l.line, f.first_id, l.last_id
                    ),
                    (Some(f), Some(l)) => format!(
                        "no depth snapshot in the input: {n} diffs (lines {}-{}, U={} .. u={}) cannot be applied",
                        f.line, l.line, f.first_id, l.last_id
                    ),
                    _ => "no depth snapshot and no depth diff in the input".to_string(),
                };
                if !self.had_snapshot {
                    if let Some(p) = self.pending.first() {
                        // The book is never valid: mark where continuity would have started.
                        out.insert(p.event_pos, Self::gap_event(&p.hdr, 0, p.hdr.first_id));
                    }
                }
                self.stats.diffs_unapplied += n;
                self.stats.sync_failures.push(SyncFailure {
                    source: String::new(),
                    reason,
                    detail,
                    snapshot_last_update_id: None,
                    snapshot_line: None,
                    diff_first_id: first.map(|h| h.first_id),
                    diff_last_id: first.map(|h| h.last_id),
                    diff_prev_id: first.and_then(|h| h.prev_id),
                    diff_line: first.map(|h| h.line),
                    last_diff_line: last.map(|h| h.line),
                    diffs: n,
                });
                self.pending.clear();
                self.pending_events.clear();
            }
            SyncState::AwaitBridge { last_update_id, line } => {
                self.stats.sync_failures.push(SyncFailure {
                    source: String::new(),
                    reason: "not_bridged_at_end",
                    detail: format!(
                        "snapshot lastUpdateId {last_update_id} (line {line}): the input ended before a diff \
                         continued it"
                    ),
                    snapshot_last_update_id: Some(last_update_id),
                    snapshot_line: Some(line),
                    diff_first_id: None,
                    diff_last_id: None,
                    diff_prev_id: None,
                    diff_line: None,
                    last_diff_line: None,
                    diffs: 0,
                });
            }
            SyncState::Synced { .. } => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One symbol's stream → events
// ---------------------------------------------------------------------------------------------

/// A bookTicker, converted (kept only by `check`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tick {
    pub u: u64,
    pub line: u64,
    pub bid: (i64, i64),
    pub ask: (i64, i64),
}

/// One symbol's messages → canonical events, through [`BookSync`].
pub(crate) struct Feed {
    pub market: Market,
    pub inst: Instrument,
    pub inferred: bool,
    pub events: Vec<Event>,
    sync: BookSync,
    scratch: Vec<Event>,
    /// bookTickers, when collected (check).
    pub tickers: Option<Vec<Tick>>,
    pub trades: u64,
    pub book_tickers: u64,
    pub other_messages: u64,
}

impl Feed {
    pub fn new(market: Market, inst: Instrument, inferred: bool, collect_tickers: bool) -> Feed {
        Feed {
            market,
            inst,
            inferred,
            events: Vec::new(),
            sync: BookSync::new(market),
            scratch: Vec::with_capacity(4096),
            tickers: collect_tickers.then(Vec::new),
            trades: 0,
            book_tickers: 0,
            other_messages: 0,
        }
    }

    /// Handle one classified message of this feed's symbol.
    pub fn on_message(&mut self, ctx: &Ctx, kind: MsgKind, msg: &Msg, data: Option<&Data>, ts_local: i64) -> Result<()> {
        let need = || data.ok_or_else(|| ctx.missing("data"));
        match kind {
            MsgKind::Depth => self.on_depth(ctx, need()?, ts_local),
            MsgKind::Snapshot => self.on_snapshot(ctx, msg, ts_local),
            MsgKind::BookTicker => self.on_book_ticker(ctx, need()?),
            MsgKind::Trade | MsgKind::AggTrade => self.on_trade(ctx, kind, need()?, ts_local),
            MsgKind::Other => {
                self.other_messages += 1;
                Ok(())
            }
        }
    }

    fn check_e(ctx: &Ctx, d: &Data, want: &str) -> Result<()> {
        match &d.e {
            None => Ok(()),
            Some(Val::Str(e)) if *e == want => Ok(()),
            Some(Val::Str(e)) => Err(ctx.err("data.e", format!("expected {want:?}, got {e:?}"))),
            Some(o) => Err(ctx.err("data.e", format!("expected {want:?}, got {}", o.kind()))),
        }
    }

    fn on_depth(&mut self, ctx: &Ctx, d: &Data, ts_local: i64) -> Result<()> {
        Self::check_e(ctx, d, "depthUpdate")?;
        let first_id = ctx.u64(&d.first_id, "data.U")?;
        let last_id = ctx.u64(&d.u, "data.u")?;
        if first_id > last_id {
            return Err(ctx.err("data.U", format!("first update id {first_id} > final update id {last_id}")));
        }
        // Futures: T (matching-engine time of the last update, the trades' clock); spot: E.
        let (prev_id, ts_exchange) = if self.market.is_futures() {
            (Some(ctx.u64(&d.pu, "data.pu")?), ctx.ms(&d.transact_time, "data.T")?)
        } else {
            (None, ctx.ms(&d.event_time, "data.E")?)
        };
        let tmpl = Event::new(EventKind::LevelSet, Side::Bid, 0, 0, ts_exchange).with_seq(last_id).with_local(ts_local);
        self.scratch.clear();
        push_levels(ctx, &self.inst, &d.b, "data.b", Side::Bid, tmpl, &mut self.scratch)?;
        push_levels(ctx, &self.inst, &d.a, "data.a", Side::Ask, tmpl, &mut self.scratch)?;
        let hdr = DiffHdr { first_id, last_id, prev_id, line: ctx.line, ts_exchange, ts_local };
        self.sync.on_diff(hdr, &self.scratch, &mut self.events);
        Ok(())
    }

    /// A REST snapshot (`msg` is the snapshot object itself).
    pub fn on_snapshot(&mut self, ctx: &Ctx, msg: &Msg, ts_local: i64) -> Result<()> {
        let l = ctx.u64(&msg.last_update_id, "lastUpdateId")?;
        // Futures snapshots carry T (engine time of lastUpdateId); spot ones no time at all,
        // so their exchange time is the receive time.
        let ts_exchange = match (&msg.transact_time, &msg.event_time) {
            (Some(_), _) => ctx.ms(&msg.transact_time, "T")?,
            (None, Some(_)) => ctx.ms(&msg.event_time, "E")?,
            (None, None) => ts_local,
        };
        let tmpl =
            Event::new(EventKind::LevelSet, Side::Bid, 0, 0, ts_exchange).with_seq(l).with_local(ts_local).with_flags(flags::SNAPSHOT);
        self.scratch.clear();
        push_levels(ctx, &self.inst, &msg.bids, "bids", Side::Bid, tmpl, &mut self.scratch)?;
        push_levels(ctx, &self.inst, &msg.asks, "asks", Side::Ask, tmpl, &mut self.scratch)?;
        let hdr = SnapHdr { last_update_id: l, line: ctx.line, ts_exchange, ts_local };
        self.sync.on_snapshot(hdr, &self.scratch, &mut self.events);
        Ok(())
    }

    fn on_book_ticker(&mut self, ctx: &Ctx, d: &Data) -> Result<()> {
        let u = ctx.u64(&d.u, "data.u")?;
        let bid =
            (ctx.price(&self.inst, ctx.str(&d.b, "data.b")?, "data.b")?, ctx.qty(&self.inst, ctx.str(&d.bid_qty, "data.B")?, "data.B")?);
        let ask =
            (ctx.price(&self.inst, ctx.str(&d.a, "data.a")?, "data.a")?, ctx.qty(&self.inst, ctx.str(&d.ask_qty, "data.A")?, "data.A")?);
        self.book_tickers += 1;
        if let Some(t) = &mut self.tickers {
            t.push(Tick { u, line: ctx.line, bid, ask });
        }
        Ok(())
    }

    fn on_trade(&mut self, ctx: &Ctx, kind: MsgKind, d: &Data, ts_local: i64) -> Result<()> {
        let (e, id, id_field) = match kind {
            MsgKind::AggTrade => ("aggTrade", &d.a, "data.a"),
            _ => ("trade", &d.t, "data.t"),
        };
        Self::check_e(ctx, d, e)?;
        let id = ctx.u64(id, id_field)?;
        let price = ctx.price(&self.inst, ctx.str(&d.p, "data.p")?, "data.p")?;
        let qty = ctx.qty(&self.inst, ctx.str(&d.q, "data.q")?, "data.q")?;
        let ts = ctx.ms(&d.transact_time, "data.T")?;
        // m = "buyer is the maker": the seller hit the bid, so the aggressor is the ask side.
        let side = if ctx.bool(&d.m, "data.m")? { Side::Ask } else { Side::Bid };
        self.events
            .push(Event::new(EventKind::Trade, side, price, qty, ts).with_order(id).with_local(ts_local).with_flags(flags::BATCH_END));
        self.trades += 1;
        Ok(())
    }

    /// End of input.
    pub fn finish(&mut self) {
        self.sync.finish(&mut self.events);
    }

    pub(crate) fn sync_stats(&self) -> &SyncStats {
        &self.sync.stats
    }

    pub(crate) fn phase(&self) -> Phase {
        self.sync.phase()
    }
}

// ---------------------------------------------------------------------------------------------
// Reports, datasets, check
// ---------------------------------------------------------------------------------------------

/// One rebuilt-vs-bookTicker disagreement.
#[derive(Clone, Debug, Serialize)]
pub struct BboMismatch {
    pub source: String,
    /// Line of the bookTicker.
    pub line: u64,
    pub u: u64,
    /// `price` if a best price differs, else `qty`.
    pub kind: &'static str,
    /// `[bid, bid_qty, ask, ask_qty]` as decimal strings.
    pub book_ticker: [String; 4],
    pub rebuilt: [String; 4],
}

/// The bookTicker comparison.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BboStats {
    pub bbo_checks: u64,
    /// Fraction of checks that agree; null when there was nothing to check.
    pub bbo_agreement: Option<f64>,
    pub bbo_mismatches: u64,
    pub bbo_price_mismatches: u64,
    pub bbo_qty_mismatches: u64,
    pub first_bbo_mismatches: Vec<BboMismatch>,
}

/// Report of one source (file, or symbol of a cryptofeed recording). Keys: docs/data.md.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceReport {
    pub ok: bool,
    /// Why `ok` is what it is, in words.
    pub verdict: String,
    pub source: String,
    pub file: String,
    pub symbol: String,
    pub market: String,
    pub instrument: Option<Instrument>,
    pub instrument_inferred: bool,
    pub lines: u64,
    pub events: u64,
    pub synced: bool,
    pub sync_failures: Vec<SyncFailure>,
    pub gaps: u64,
    pub first_gaps: Vec<GapInfo>,
    pub diffs: u64,
    pub diffs_applied: u64,
    pub diffs_dropped_before_snapshot: u64,
    pub diffs_unapplied: u64,
    pub snapshots: u64,
    pub snapshots_unused: u64,
    pub trades: u64,
    pub book_tickers: u64,
    pub other_messages: u64,
    pub crossed_batches: u64,
    pub bad_lines: u64,
    pub first_bad_lines: Vec<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub bbo: Option<BboStats>,
}

fn fmt4(inst: &Instrument, bid: Option<(i64, i64)>, ask: Option<(i64, i64)>) -> [String; 4] {
    let px = |p: i64| format_fixed(p * inst.tick, inst.price_scale);
    let sz = |s: i64| format_fixed(s, inst.size_scale);
    let none = || "none".to_string();
    [
        bid.map(|b| px(b.0)).unwrap_or_else(none),
        bid.map(|b| sz(b.1)).unwrap_or_else(none),
        ask.map(|a| px(a.0)).unwrap_or_else(none),
        ask.map(|a| sz(a.1)).unwrap_or_else(none),
    ]
}

/// Best bid and best ask `(price, qty)` of a book.
type Bbo = (Option<(i64, i64)>, Option<(i64, i64)>);

/// Replay `ds` through the canonical book: count crossed batch ends and, with `tickers`, compare
/// the best levels after every applied diff with each bookTicker carrying that diff's `u`.
pub(crate) fn replay_checks(ds: &Dataset, tickers: Option<&[Tick]>, source: &str) -> (u64, Option<BboStats>) {
    let mut crossed = 0u64;
    let mut at: HashMap<u64, Bbo> = HashMap::new();
    let want = tickers.is_some();
    ds.replay(|i, book| {
        if book.is_crossed() {
            crossed += 1;
        }
        let e = &ds.events[i];
        // A batch-ending level event without SNAPSHOT is the end of an applied diff, seq = u.
        if want && e.kind.is_level_update() && e.kind != EventKind::Snapshot && e.flags & flags::SNAPSHOT == 0 {
            at.insert(e.seq, (book.best_bid(), book.best_ask()));
        }
    });
    let stats = tickers.map(|ts| {
        let inst = &ds.meta.instrument;
        let mut s = BboStats::default();
        for t in ts {
            let Some(&(bid, ask)) = at.get(&t.u) else { continue };
            s.bbo_checks += 1;
            if bid == Some(t.bid) && ask == Some(t.ask) {
                continue;
            }
            s.bbo_mismatches += 1;
            let price = bid.map(|b| b.0) != Some(t.bid.0) || ask.map(|a| a.0) != Some(t.ask.0);
            if price {
                s.bbo_price_mismatches += 1;
            } else {
                s.bbo_qty_mismatches += 1;
            }
            if s.first_bbo_mismatches.len() < KEEP {
                s.first_bbo_mismatches.push(BboMismatch {
                    source: source.to_string(),
                    line: t.line,
                    u: t.u,
                    kind: if price { "price" } else { "qty" },
                    book_ticker: fmt4(inst, Some(t.bid), Some(t.ask)),
                    rebuilt: fmt4(inst, bid, ask),
                });
            }
        }
        s.bbo_agreement = (s.bbo_checks > 0).then(|| (s.bbo_checks - s.bbo_mismatches) as f64 / s.bbo_checks as f64);
        s
    });
    (crossed, stats)
}

/// Minimum bookTicker agreement for `check` to pass.
pub const MIN_BBO_AGREEMENT: f64 = 0.99;

/// Identity of one source for its report and dataset.
pub(crate) struct SourceInfo<'a> {
    /// File name (recordings) or symbol (cryptofeed).
    pub source: &'a str,
    /// Input path(s).
    pub file: &'a str,
    pub symbol: &'a str,
    /// Lines read (recordings) or messages of this symbol (cryptofeed).
    pub lines: u64,
    /// `DatasetMeta::source_format`.
    pub format: &'a str,
}

/// Build the dataset and report of one finished feed. `check` adds the bookTicker comparison.
pub(crate) fn finish_source(
    mut feed: Feed,
    info: &SourceInfo,
    bad: &BadLines,
    source_files: Vec<SourceFile>,
    opts: &ImportOptions,
    check: bool,
) -> (Dataset, SourceReport) {
    let SourceInfo { source, file, symbol, lines, format: source_format } = *info;
    feed.finish();
    let st = feed.sync_stats().clone();
    let tickers = feed.tickers.take();
    let mut r = SourceReport {
        ok: false,
        verdict: String::new(),
        source: source.to_string(),
        file: file.to_string(),
        symbol: symbol.to_string(),
        market: feed.market.name().to_string(),
        instrument: Some(feed.inst.clone()),
        instrument_inferred: feed.inferred,
        lines,
        events: feed.events.len() as u64,
        synced: st.synced,
        sync_failures: st.sync_failures,
        gaps: st.gaps,
        first_gaps: st.first_gaps,
        diffs: st.diffs,
        diffs_applied: st.diffs_applied,
        diffs_dropped_before_snapshot: st.diffs_dropped_before_snapshot,
        diffs_unapplied: st.diffs_unapplied,
        snapshots: st.snapshots,
        snapshots_unused: st.snapshots_unused,
        trades: feed.trades,
        book_tickers: feed.book_tickers,
        other_messages: feed.other_messages,
        crossed_batches: 0,
        bad_lines: bad.count,
        first_bad_lines: bad.first.clone(),
        bbo: None,
    };
    for f in &mut r.sync_failures {
        f.source = source.to_string();
    }
    for g in &mut r.first_gaps {
        g.source = source.to_string();
    }
    let ds = Dataset {
        meta: DatasetMeta { source_files, ..DatasetMeta::new(source_format, feed.inst, opts.levels, false) },
        events: feed.events,
    };
    let (crossed, bbo) = replay_checks(&ds, if check { Some(tickers.as_deref().unwrap_or(&[])) } else { None }, source);
    r.crossed_batches = crossed;
    r.verdict = verdict(&r, bbo.as_ref());
    r.ok = r.verdict == "ok";
    r.bbo = bbo;
    (ds, r)
}

/// `ok`, or why not. Check: synced, something verified, agreement ≥ [`MIN_BBO_AGREEMENT`].
/// Import: synced without sync failures and no crossed batch end.
fn verdict(r: &SourceReport, bbo: Option<&BboStats>) -> String {
    if !r.synced {
        let why = r.sync_failures.first().map(|f| f.reason).unwrap_or("no snapshot bridged");
        return format!("not synced ({why})");
    }
    match bbo {
        Some(b) if b.bbo_checks == 0 => "nothing verified: no bookTicker carries the u of an applied diff".into(),
        Some(b) => match b.bbo_agreement {
            Some(a) if a >= MIN_BBO_AGREEMENT => "ok".into(),
            a => format!("bookTicker agreement {:.4} < {MIN_BBO_AGREEMENT}", a.unwrap_or(0.0)),
        },
        None if !r.sync_failures.is_empty() => format!("{} sync failure(s)", r.sync_failures.len()),
        None if r.crossed_batches > 0 => format!("crossed book at {} batch ends", r.crossed_batches),
        None => "ok".into(),
    }
}

/// A report for a source that produced no dataset (e.g. its instrument could not be resolved).
pub(crate) fn failed_source(source: &str, file: &str, symbol: &str, market: Option<Market>, reason: String, lines: u64) -> SourceReport {
    SourceReport {
        source: source.into(),
        file: file.into(),
        symbol: symbol.into(),
        market: market.map(|m| m.name().to_string()).unwrap_or_default(),
        lines,
        verdict: "not synced (unknown_instrument)".into(),
        sync_failures: vec![SyncFailure {
            source: source.into(),
            reason: "unknown_instrument",
            detail: reason,
            snapshot_last_update_id: None,
            snapshot_line: None,
            diff_first_id: None,
            diff_last_id: None,
            diff_prev_id: None,
            diff_line: None,
            last_diff_line: None,
            diffs: 0,
        }],
        ..Default::default()
    }
}

/// The top-level report: one source's keys directly, or totals over several plus `list_key`
/// (`files` / `symbols`) holding each source's report.
pub(crate) fn summary(parts: &[SourceReport], list_key: &str, check: bool) -> Report {
    let ok = !parts.is_empty() && parts.iter().all(|p| p.ok);
    if parts.len() == 1 {
        let mut r = Report::from_struct(ok, &parts[0]);
        r.fields.remove("ok");
        return r;
    }
    let sum = |f: fn(&SourceReport) -> u64| parts.iter().map(f).sum::<u64>();
    let mut r = Report::new(ok);
    r.set("sources", parts.len())
        .set("verdicts", parts.iter().map(|p| format!("{}: {}", p.source, p.verdict)).collect::<Vec<_>>())
        .set("synced", !parts.is_empty() && parts.iter().all(|p| p.synced))
        .set("sync_failures", parts.iter().flat_map(|p| p.sync_failures.iter().cloned()).collect::<Vec<_>>())
        .set("gaps", sum(|p| p.gaps))
        .set("first_gaps", parts.iter().flat_map(|p| p.first_gaps.iter().cloned()).take(KEEP).collect::<Vec<_>>())
        .set("lines", sum(|p| p.lines))
        .set("events", sum(|p| p.events))
        .set("diffs", sum(|p| p.diffs))
        .set("diffs_applied", sum(|p| p.diffs_applied))
        .set("diffs_dropped_before_snapshot", sum(|p| p.diffs_dropped_before_snapshot))
        .set("diffs_unapplied", sum(|p| p.diffs_unapplied))
        .set("snapshots", sum(|p| p.snapshots))
        .set("snapshots_unused", sum(|p| p.snapshots_unused))
        .set("trades", sum(|p| p.trades))
        .set("book_tickers", sum(|p| p.book_tickers))
        .set("other_messages", sum(|p| p.other_messages))
        .set("crossed_batches", sum(|p| p.crossed_batches))
        .set("bad_lines", sum(|p| p.bad_lines))
        .set("first_bad_lines", parts.iter().flat_map(|p| p.first_bad_lines.iter().cloned()).take(KEEP).collect::<Vec<_>>());
    if check {
        let b = |f: fn(&BboStats) -> u64| parts.iter().filter_map(|p| p.bbo.as_ref()).map(f).sum::<u64>();
        let (checks, mism) = (b(|s| s.bbo_checks), b(|s| s.bbo_mismatches));
        r.set("bbo_checks", checks)
            .set("bbo_agreement", (checks > 0).then(|| (checks - mism) as f64 / checks as f64))
            .set("bbo_mismatches", mism)
            .set("bbo_price_mismatches", b(|s| s.bbo_price_mismatches))
            .set("bbo_qty_mismatches", b(|s| s.bbo_qty_mismatches))
            .set(
                "first_bbo_mismatches",
                parts
                    .iter()
                    .filter_map(|p| p.bbo.as_ref())
                    .flat_map(|s| s.first_bbo_mismatches.iter().cloned())
                    .take(KEEP)
                    .collect::<Vec<_>>(),
            );
    }
    r.set(list_key, parts);
    r
}

/// Display name of an input in errors and reports (the path as given).
pub(crate) fn display_name(path: &Path) -> String {
    path.display().to_string()
}

/// Split `<local_ts_ns> <json>` and parse the timestamp.
fn split_line<'l>(ctx: &Ctx, line: &'l str) -> Result<(i64, &'l str)> {
    let (ts, json) = line.split_once(' ').ok_or_else(|| ctx.err("line", "expected '<local_receive_ts_ns> <json>' (no space found)"))?;
    if ts.is_empty() || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ctx.err("local_ts", format!("expected integer nanoseconds, got {:?}", ts)));
    }
    let t = ts.parse::<i64>().map_err(|e| ctx.err("local_ts", format!("{ts}: {e}")))?;
    Ok((t, json))
}

/// What the first lines of a recording say.
struct Probe {
    market: Market,
    symbol: String,
    /// (price, size) decimals of the first snapshot, when the instrument must be inferred.
    scales: Option<(u32, u32)>,
}

/// Read only as far as needed to know market, symbol and (unknown instruments) the snapshot's
/// decimals; unreadable lines are left to the main pass.
fn probe(path: &Path, opts: &ImportOptions) -> Result<Probe> {
    let file = display_name(path);
    let mut market = Market::from_file_name(path);
    let mut symbol: Option<String> = None;
    let mut scales = None;
    let mut r = open_text(path)?;
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        if let (Some(m), Some(s)) = (market, &symbol) {
            if scales.is_some() || !needs_inference(m, s, opts) {
                break;
            }
        }
        buf.clear();
        if r.read_until(b'\n', &mut buf).map_err(|e| DataError::io(path, e))? == 0 {
            break;
        }
        n += 1;
        let Ok(line) = std::str::from_utf8(&buf) else { continue };
        let ctx = Ctx { file: &file, line: n };
        let Ok((_, json)) = split_line(&ctx, line.trim_end()) else { continue };
        let Ok(msg) = parse_msg(&ctx, json) else { continue };
        let Ok((kind, sym, data)) = classify(&ctx, &msg) else { continue };
        if let (Some(s), None) = (sym, &symbol) {
            symbol = Some(s.to_ascii_uppercase());
        }
        if let (MsgKind::Depth, None, Some(d), Some(s)) = (kind, market, data, &symbol) {
            market = Some(Market::from_diff(d.pu.is_some(), s));
        }
        if kind == MsgKind::Snapshot && scales.is_none() {
            scales = snapshot_scales(msg.bids.as_ref(), msg.asks.as_ref());
        }
    }
    let symbol = symbol.ok_or_else(|| DataError::Invalid(format!("{file}: no stream message, so no symbol")))?;
    let market = market.ok_or_else(|| {
        DataError::Invalid(format!("{file}: cannot tell spot from futures (no spot-/usdm-/coinm- name prefix and no depth update)"))
    })?;
    Ok(Probe { market, symbol, scales })
}

struct Loaded {
    dataset: Dataset,
    report: SourceReport,
}

/// Load one recording.
fn load_recording(path: &Path, opts: &ImportOptions, check: bool) -> Result<Loaded> {
    let file = display_name(path);
    let source = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| file.clone());
    let Probe { market, symbol, scales } = probe(path, opts)?;
    if let Some(want) = &opts.symbol {
        if !want.eq_ignore_ascii_case(&symbol) {
            return Err(DataError::Invalid(format!("{file}: holds {symbol}, not the requested --symbol {want}")));
        }
    }
    let (inst, inferred) = resolve_instrument(market, &symbol, opts, scales).map_err(|e| DataError::Invalid(format!("{file}: {e}")))?;
    let mut feed = Feed::new(market, inst, inferred, check);
    let mut bad = BadLines::new(opts.lenient);
    let mut last_local = i64::MIN;
    let mut lines = 0u64;
    for_each_line(path, |n, line| {
        lines = n;
        if line.trim().is_empty() {
            return Ok(());
        }
        let ctx = Ctx { file: &file, line: n };
        let r = (|| {
            let (ts, json) = split_line(&ctx, line)?;
            if ts < last_local {
                return Err(ctx.err("local_ts", format!("receive time {ts} is earlier than the previous line's {last_local}")));
            }
            let msg = parse_msg(&ctx, json)?;
            let (kind, sym, data) = classify(&ctx, &msg)?;
            if let Some(s) = sym {
                if !s.eq_ignore_ascii_case(&symbol) {
                    return Err(ctx.err("stream", format!("symbol {s} in a recording of {symbol} (one symbol per file)")));
                }
            }
            feed.on_message(&ctx, kind, &msg, data, ts)?;
            Ok(ts)
        })();
        match r {
            Ok(ts) => {
                last_local = ts;
                Ok(())
            }
            Err(e) => bad.handle(e),
        }
    })?;
    let sources = vec![SourceFile::hash(path)?];
    let (mut dataset, report) = finish_source(
        feed,
        &SourceInfo { source: &source, file: &file, symbol: &symbol, lines, format: "binance" },
        &bad,
        sources,
        opts,
        check,
    );
    dataset.meta.import_report = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
    Ok(Loaded { dataset, report })
}

/// Import Binance recordings: one dataset per input file.
pub fn import(inputs: &[PathBuf], opts: &ImportOptions) -> Result<Imported> {
    let mut datasets = Vec::new();
    let mut parts = Vec::new();
    for p in inputs {
        let l = load_recording(p, opts, false)?;
        if !l.dataset.events.is_empty() {
            datasets.push(l.dataset);
        }
        parts.push(l.report);
    }
    Ok(Imported { datasets, report: summary(&parts, "files", false) })
}

/// Check Binance recordings: rebuilt best bid/ask vs the bookTicker stream, matched by update id.
pub fn check(inputs: &[PathBuf], opts: &ImportOptions) -> Result<Report> {
    let mut parts = Vec::new();
    for p in inputs {
        parts.push(load_recording(p, opts, true)?.report);
    }
    Ok(summary(&parts, "files", true))
}

#[cfg(test)]
mod tests {
    use super::json::Pair;
    use super::*;

    fn ctx() -> Ctx<'static> {
        Ctx { file: "f", line: 3 }
    }

    #[test]
    fn val_keeps_shapes_and_borrows() {
        let m = parse_msg(&ctx(), r#"{"stream":"x@depth","data":{"U":1,"u":2,"b":[["1.5","2"],["3"],4],"a":"7","E":-1}}"#).unwrap();
        let Some(DataField::Obj(d)) = &m.data else { panic!() };
        let Some(Val::Levels(b)) = &d.b else { panic!() };
        assert_eq!(b[0], Pair { price: Val::Str("1.5"), qty: Val::Str("2"), len: Some(2) });
        assert_eq!(b[1].len, Some(1));
        assert_eq!(b[2].len, None);
        assert_eq!(d.a, Some(Val::Str("7")));
        assert_eq!(d.event_time, Some(Val::I64(-1)));
        let e = parse_msg(&ctx(), r#"{"stream":"x@depth","data":{"U":1,"#).unwrap_err().to_string();
        assert!(e.starts_with("f:3: json: EOF"), "{e}");
    }

    #[test]
    fn field_errors_name_the_path() {
        let inst = Instrument::new("t", "X", "0.01", 3).unwrap();
        let m = parse_msg(&ctx(), r#"{"bids":[["1.00","1"],["1.0x","2"]]}"#).unwrap();
        let mut out = Vec::new();
        let tmpl = Event::new(EventKind::LevelSet, Side::Bid, 0, 0, 0).with_flags(flags::SNAPSHOT);
        let e = push_levels(&ctx(), &inst, &m.bids, "bids", Side::Bid, tmpl, &mut out).unwrap_err().to_string();
        assert!(e.starts_with("f:3: bids[1].price: not a number"), "{e}");
        let m = parse_msg(&ctx(), r#"{"bids":[["1.00",1]]}"#).unwrap();
        let e = push_levels(&ctx(), &inst, &m.bids, "bids", Side::Bid, tmpl, &mut out).unwrap_err().to_string();
        assert_eq!(e, "f:3: bids[0].qty: expected a decimal string, got an integer");
        let m = parse_msg(&ctx(), r#"{"bids":[["1.001","1"]]}"#).unwrap();
        let e = push_levels(&ctx(), &inst, &m.bids, "bids", Side::Bid, tmpl, &mut out).unwrap_err().to_string();
        assert!(e.starts_with("f:3: bids[0].price:"), "{e}");
    }

    #[test]
    fn market_from_names_and_urls() {
        assert_eq!(Market::from_file_name(Path::new("/d/spot-btcusdt_20240808.gz")), Some(Market::Spot));
        assert_eq!(Market::from_file_name(Path::new("usdm-ethusdt.gz")), Some(Market::Usdm));
        assert_eq!(Market::from_file_name(Path::new("btcusdt.gz")), None);
        assert_eq!(Market::from_url("https://api.binance.com/api/v3/depth?symbol=X"), Some(Market::Spot));
        assert_eq!(Market::from_url("https://fapi.binance.com/fapi/v1/depth?symbol=X"), Some(Market::Usdm));
        assert_eq!(Market::from_url("wss://dstream.binance.com/stream?streams=a"), Some(Market::Coinm));
        assert_eq!(Market::from_url("wss://ws-feed.exchange.coinbase.com"), None);
        assert_eq!(Market::from_diff(true, "BTCUSD_PERP"), Market::Coinm);
    }

    fn diff(first_id: u64, last_id: u64, prev_id: Option<u64>, line: u64) -> DiffHdr {
        DiffHdr { first_id, last_id, prev_id, line, ts_exchange: 0, ts_local: 0 }
    }

    #[test]
    fn spot_and_futures_bridge_rules() {
        let lv = [Event::level(Side::Bid, 1, 1, 0)];
        let snap = |l| SnapHdr { last_update_id: l, line: 1, ts_exchange: 0, ts_local: 0 };
        // Spot: u = L is covered; U ≤ L+1 ≤ u bridges.
        let mut s = BookSync::new(Market::Spot);
        let mut out = Vec::new();
        s.on_diff(diff(5, 10, None, 2), &lv, &mut out);
        s.on_snapshot(snap(10), &[], &mut out);
        assert_eq!(s.stats.diffs_dropped_before_snapshot, 1);
        s.on_diff(diff(11, 12, None, 3), &lv, &mut out);
        assert!(s.stats.synced);
        // Futures: u = L is the bridge (U ≤ L ≤ u), then pu chains.
        let mut f = BookSync::new(Market::Usdm);
        let mut out = Vec::new();
        f.on_diff(diff(5, 10, Some(4), 2), &lv, &mut out);
        f.on_snapshot(snap(10), &[], &mut out);
        assert_eq!(f.stats.diffs_dropped_before_snapshot, 0);
        assert_eq!(f.stats.diffs_applied, 1);
        f.on_diff(diff(13, 20, Some(10), 3), &lv, &mut out);
        f.on_diff(diff(21, 22, Some(19), 4), &lv, &mut out);
        assert_eq!(f.stats.gaps, 1);
        let g = out.last().unwrap();
        assert_eq!((g.kind, g.seq, g.order_id), (EventKind::Gap, 20, 19));
    }
}
