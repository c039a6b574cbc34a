//! cryptofeed raw recordings of Binance: REST depth snapshots (`BINANCE.http.*`, lines
//! `<url> -> <ts>: <json>`, symbol in the URL query) and the websocket's combined streams of
//! several symbols (`BINANCE.ws.*`, lines `<ts>: <json>`; depth, bookTicker, aggTrade, kline).
//! Lines are split by [`parse_cf_line`]; the messages are the same as in the Binance recordings,
//! so every symbol goes through the shared [`Feed`]/`BookSync` of `binance.rs`.
//!
//! One dataset per symbol (`--symbol` selects one). The REST snapshots are read first (they are
//! few) and merged into the websocket stream at their receive time; the update-id rules make the
//! result independent of that placement. Mapping and report keys: docs/data.md.

use super::binance::{
    classify, display_name, failed_source, finish_source, needs_inference, parse_msg, resolve_instrument, snapshot_scales, summary, Ctx,
    Feed, Market, Msg, MsgKind, SourceInfo, SourceReport,
};
use super::cfline::{parse_cf_line, CfLine};
use super::options::{ImportOptions, Imported};
use super::text::for_each_line;
use crate::error::{BadLines, DataError, Result};
use crate::report::Report;
use crate::store::{Dataset, SourceFile};
use std::collections::HashMap;
use std::path::PathBuf;

/// A REST depth snapshot, kept as text until it is merged into the stream.
struct RestSnap {
    symbol: String,
    market: Option<Market>,
    file: usize,
    line: u64,
    ts_ns: i64,
    json: String,
}

enum Slot {
    Live {
        feed: Box<Feed>,
        lines: u64,
        bad: BadLines,
    },
    /// The instrument could not be resolved: the symbol's lines are counted, not converted.
    Dead {
        market: Market,
        reason: String,
        lines: u64,
    },
}

/// `symbol=` of a REST URL's query.
fn symbol_from_url(url: &str) -> Option<&str> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| kv.strip_prefix("symbol=")).filter(|s| !s.is_empty())
}

struct State<'o> {
    opts: &'o ImportOptions,
    check: bool,
    names: Vec<String>,
    snaps: Vec<RestSnap>,
    ws_market: Option<Market>,
    slots: Vec<(String, Slot)>,
    index: HashMap<String, usize>,
    /// Bad lines that cannot be attributed to a symbol (bad timestamps, bad JSON, ...).
    bad: BadLines,
    other_messages: u64,
    other_symbol_lines: u64,
}

impl State<'_> {
    /// The slot of `symbol` (upper case), created on first sight. `has_pu`: whether the
    /// message creating it is a futures diff (market fallback when no URL says).
    fn slot(&mut self, symbol: &str, has_pu: Option<bool>) -> &mut Slot {
        if let Some(&i) = self.index.get(symbol) {
            return &mut self.slots[i].1;
        }
        let snap = self.snaps.iter().find(|s| s.symbol == symbol);
        let market =
            snap.and_then(|s| s.market).or(self.ws_market).or(has_pu.map(|p| Market::from_diff(p, symbol))).unwrap_or(Market::Spot);
        let scales = match snap {
            Some(s) if needs_inference(market, symbol, self.opts) => {
                let ctx = Ctx { file: &self.names[s.file], line: s.line };
                parse_msg(&ctx, &s.json).ok().and_then(|m| snapshot_scales(m.bids.as_ref(), m.asks.as_ref()))
            }
            _ => None,
        };
        let slot = match resolve_instrument(market, symbol, self.opts, scales) {
            Ok((inst, inferred)) => Slot::Live {
                feed: Box::new(Feed::new(market, inst, inferred, self.check)),
                lines: 0,
                bad: BadLines::new(self.opts.lenient),
            },
            Err(e) => Slot::Dead { market, reason: e.to_string(), lines: 0 },
        };
        self.index.insert(symbol.to_string(), self.slots.len());
        self.slots.push((symbol.to_string(), slot));
        &mut self.slots.last_mut().expect("just pushed").1
    }

    fn wanted(&self, symbol: &str) -> bool {
        self.opts.symbol.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(symbol))
    }

    /// Feed REST snapshot `i` to its symbol.
    fn inject(&mut self, i: usize) -> Result<()> {
        let (symbol, file, line, ts) = {
            let s = &self.snaps[i];
            (s.symbol.clone(), s.file, s.line, s.ts_ns)
        };
        if !self.wanted(&symbol) {
            self.other_symbol_lines += 1;
            return Ok(());
        }
        let json = std::mem::take(&mut self.snaps[i].json);
        let name = self.names[file].clone();
        let ctx = Ctx { file: &name, line };
        match self.slot(&symbol, None) {
            Slot::Live { feed, lines, bad } => {
                *lines += 1;
                let r = parse_msg(&ctx, &json).and_then(|m| feed.on_snapshot(&ctx, &m, ts));
                r.or_else(|e| bad.handle(e))
            }
            Slot::Dead { lines, .. } => {
                *lines += 1;
                Ok(())
            }
        }
    }

    /// One websocket message.
    fn on_ws(&mut self, ctx: &Ctx, ts: i64, msg: &Msg) -> Result<()> {
        let (kind, sym, data) = match classify(ctx, msg) {
            Ok(x) => x,
            Err(e) => return self.bad.handle(e),
        };
        let Some(sym) = sym else {
            if kind == MsgKind::Other {
                self.other_messages += 1;
                return Ok(());
            }
            return self.bad.handle(ctx.err("lastUpdateId", "a depth snapshot on the websocket names no symbol"));
        };
        let symbol = sym.to_ascii_uppercase();
        if !self.wanted(&symbol) {
            self.other_symbol_lines += 1;
            return Ok(());
        }
        let has_pu = (kind == MsgKind::Depth).then(|| data.is_some_and(|d| d.pu.is_some()));
        match self.slot(&symbol, has_pu) {
            Slot::Live { feed, lines, bad } => {
                *lines += 1;
                feed.on_message(ctx, kind, msg, data, ts).or_else(|e| bad.handle(e))
            }
            Slot::Dead { lines, .. } => {
                *lines += 1;
                Ok(())
            }
        }
    }
}

/// Receive time and message of a websocket line; `None` for lines of other kinds.
fn parse_ws<'l>(ctx: &Ctx, line: &'l str, last_ts: i64) -> Result<Option<(i64, Msg<'l>)>> {
    match parse_cf_line(ctx.file, ctx.line, line)? {
        CfLine::Received { ts_ns, json } => {
            if ts_ns < last_ts {
                return Err(ctx.err("timestamp", format!("receive time {ts_ns} ns is earlier than the previous line's {last_ts}")));
            }
            Ok(Some((ts_ns, parse_msg(ctx, json)?)))
        }
        _ => Ok(None),
    }
}

fn load(inputs: &[PathBuf], opts: &ImportOptions, check: bool) -> Result<(Vec<Dataset>, Report)> {
    let mut st = State {
        opts,
        check,
        names: inputs.iter().map(|p| display_name(p)).collect(),
        snaps: Vec::new(),
        ws_market: None,
        slots: Vec::new(),
        index: HashMap::new(),
        bad: BadLines::new(opts.lenient),
        other_messages: 0,
        other_symbol_lines: 0,
    };
    // Pass 1: REST snapshots and connection URLs (lines that do not start with a timestamp).
    for (fi, path) in inputs.iter().enumerate() {
        let mut last_ts = i64::MIN;
        for_each_line(path, |n, line| {
            if line.trim().is_empty() || line.as_bytes()[0].is_ascii_digit() {
                return Ok(());
            }
            let ctx = Ctx { file: &st.names[fi], line: n };
            let r = parse_cf_line(ctx.file, n, line).and_then(|l| match l {
                CfLine::Rest { url, ts_ns, json } => {
                    if ts_ns < last_ts {
                        return Err(ctx.err("timestamp", format!("receive time {ts_ns} ns is earlier than the previous line's {last_ts}")));
                    }
                    last_ts = ts_ns;
                    if !url.contains("/depth") {
                        st.other_messages += 1;
                        return Ok(());
                    }
                    let symbol = symbol_from_url(url)
                        .ok_or_else(|| ctx.err("url", format!("no symbol= in the REST URL {url}")))?
                        .to_ascii_uppercase();
                    st.snaps.push(RestSnap { symbol, market: Market::from_url(url), file: fi, line: n, ts_ns, json: json.to_string() });
                    Ok(())
                }
                CfLine::Connect { url, .. } | CfLine::Sent { url, .. } => {
                    st.ws_market = st.ws_market.or(Market::from_url(url));
                    Ok(())
                }
                CfLine::Received { .. } => Ok(()),
            });
            r.or_else(|e| st.bad.handle(e))
        })?;
    }
    st.snaps.sort_by_key(|s| s.ts_ns);
    // Pass 2: the websocket lines, with each snapshot merged in at its receive time.
    let mut next = 0usize;
    let mut lines = 0u64;
    for (fi, path) in inputs.iter().enumerate() {
        let mut last_ts = i64::MIN;
        let name = st.names[fi].clone();
        for_each_line(path, |n, line| {
            lines += 1;
            if !line.as_bytes().first().is_some_and(|b| b.is_ascii_digit()) {
                return Ok(());
            }
            let ctx = Ctx { file: &name, line: n };
            let (ts, msg) = match parse_ws(&ctx, line, last_ts) {
                Ok(Some(x)) => x,
                Ok(None) => return Ok(()),
                Err(e) => return st.bad.handle(e),
            };
            last_ts = ts;
            while next < st.snaps.len() && st.snaps[next].ts_ns <= ts {
                st.inject(next)?;
                next += 1;
            }
            st.on_ws(&ctx, ts, &msg)
        })?;
    }
    while next < st.snaps.len() {
        st.inject(next)?;
        next += 1;
    }
    if let Some(want) = &opts.symbol {
        if st.slots.is_empty() {
            return Err(DataError::Invalid(format!("symbol {want} is not in the recording")));
        }
    }
    let sources = inputs.iter().map(|p| SourceFile::hash(p)).collect::<Result<Vec<_>>>()?;
    let file = st.names.join(", ");
    let mut datasets = Vec::new();
    let mut parts: Vec<SourceReport> = Vec::new();
    for (symbol, slot) in std::mem::take(&mut st.slots) {
        match slot {
            Slot::Live { feed, lines, bad } => {
                let info = SourceInfo { source: &symbol, file: &file, symbol: &symbol, lines, format: "cryptofeed-binance" };
                let (mut ds, r) = finish_source(*feed, &info, &bad, sources.clone(), opts, check);
                ds.meta.import_report = serde_json::to_value(&r).unwrap_or(serde_json::Value::Null);
                if !ds.events.is_empty() {
                    datasets.push(ds);
                }
                parts.push(r);
            }
            Slot::Dead { market, reason, lines } => parts.push(failed_source(&symbol, &file, &symbol, Some(market), reason, lines)),
        }
    }
    let mut report = summary(&parts, "symbols", check);
    let total_bad = st.bad.count + parts.iter().map(|p| p.bad_lines).sum::<u64>();
    let first_bad: Vec<String> =
        st.bad.first.iter().chain(parts.iter().flat_map(|p| p.first_bad_lines.iter())).take(BadLines::KEEP).cloned().collect();
    report
        .set("lines", lines)
        .set("bad_lines", total_bad)
        .set("first_bad_lines", first_bad)
        .set("unattributed_bad_lines", st.bad.count)
        .set("unattributed_other_messages", st.other_messages)
        .set("other_symbol_lines", st.other_symbol_lines);
    Ok((datasets, report))
}

/// Import a cryptofeed Binance recording: one dataset per symbol (or the `--symbol` one).
pub fn import(inputs: &[PathBuf], opts: &ImportOptions) -> Result<Imported> {
    let (datasets, report) = load(inputs, opts, false)?;
    Ok(Imported { datasets, report })
}

/// Check a cryptofeed Binance recording per symbol against its bookTicker stream.
pub fn check(inputs: &[PathBuf], opts: &ImportOptions) -> Result<Report> {
    Ok(load(inputs, opts, true)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_in_rest_url() {
        assert_eq!(symbol_from_url("https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000"), Some("NKNUSDT"));
        assert_eq!(symbol_from_url("https://api.binance.com/api/v3/depth?limit=5&symbol=X"), Some("X"));
        assert_eq!(symbol_from_url("https://api.binance.com/api/v3/depth"), None);
    }
}
