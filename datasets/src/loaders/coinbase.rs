//! Coinbase (Pro) websocket recordings made by cryptofeed: `level2` (`snapshot` + `l2update`)
//! builds the book, `matches` (`match`, `last_match`) become trades, and `ticker` is the reference
//! the check compares the rebuilt best bid/ask against. Mapping and report keys: docs/data.md,
//! section "Loaders: Coinbase and Kraken".
//!
//! Coinbase's `level2` channel has no sequence numbers, so a lost message cannot be detected from
//! the stream itself; the ticker comparison and the crossed-book count are the safety net.

use super::cfline::CfLine;
use super::options::ImportOptions;
use super::venue::{self, Feeds, Inline, Loc};
use crate::error::{BadLines, Result};
use crate::event::{flags, Event, EventKind, Side};
use crate::instrument::{format_fixed, written_decimals, Instrument};
use crate::report::Report;
use crate::time::{civil_from_days, days_from_civil, parse_date, NS_PER_DAY, NS_PER_SEC};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const VENUE: &str = "coinbase";
const FORMAT: &str = "cryptofeed-coinbase";

/// The check passes when at least this fraction of the *current* ticker messages (those not older
/// than the book they are compared with) agree with the rebuilt best bid and ask. A ticker is
/// published on the ticker channel and the fill's book change on the level2 channel; nothing
/// orders the two, so a ticker may arrive just before the l2update it already reflects. Such races
/// are rare (none in the sample: 97 of 97 current tickers agree); a wrong book (a side swapped, a
/// delete missed) disagrees with most tickers, far below this bound. See docs/data.md.
pub const BBO_MIN_AGREEMENT: f64 = 0.95;

/// One websocket message; only the fields the loader reads (the rest are skipped by serde).
/// Strings borrow from the line; arrays of up to a few entries deserialize without allocating.
#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    product_id: Option<&'a str>,
    #[serde(borrow)]
    time: Option<&'a str>,
    /// l2update: `[side ("buy"|"sell"), price, new size]`.
    #[serde(default, borrow)]
    changes: Inline<[&'a str; 3], 4>,
    /// snapshot: `[price, size]`.
    #[serde(default, borrow)]
    bids: Inline<[&'a str; 2], 1>,
    #[serde(default, borrow)]
    asks: Inline<[&'a str; 2], 1>,
    #[serde(borrow)]
    best_bid: Option<&'a str>,
    #[serde(borrow)]
    best_ask: Option<&'a str>,
    trade_id: Option<u64>,
    /// match: the **maker** order's side.
    #[serde(borrow)]
    side: Option<&'a str>,
    #[serde(borrow)]
    size: Option<&'a str>,
    #[serde(borrow)]
    price: Option<&'a str>,
    sequence: Option<u64>,
    message: Option<String>,
}

/// Per-product counts (report key `products.<product>`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProductStats {
    pub snapshots: u64,
    /// `l2update` messages applied.
    pub updates: u64,
    pub level_events: u64,
    /// `match` + `last_match` messages.
    pub trades: u64,
    pub crossed_batches: u64,
    pub gaps: u64,
    /// l2updates received while the book was not synced (before the snapshot, after a gap).
    pub skipped_unsynced: u64,
    /// Trades skipped because no instrument was known yet (before the first snapshot).
    pub trades_before_snapshot: u64,
    /// Ticker messages compared with the book / agreeing on both best bid and best ask.
    pub bbo_checks: u64,
    pub bbo_agree: u64,
    /// Compared tickers whose `time` is older than the book's latest change (see docs).
    pub bbo_stale: u64,
    pub bbo_current_checks: u64,
    pub bbo_current_agree: u64,
    /// Tickers received while the book was not synced.
    pub bbo_unsynced: u64,
}

pub(crate) struct Loader<'o> {
    opts: &'o ImportOptions,
    feeds: Feeds<ProductStats>,
    /// `ts_exchange` of each feed's latest book batch (a snapshot: its receive time).
    book_ts: Vec<i64>,
    levels: Vec<(Side, i64, i64)>,
    received_any: bool,
    reconnects: u64,
    other_messages: u64,
    venue_errors: Vec<String>,
    first_bbo_mismatches: Vec<String>,
    first_crossed_batches: Vec<String>,
}

fn side_of(s: &str) -> std::result::Result<Side, String> {
    match s {
        "buy" => Ok(Side::Bid),
        "sell" => Ok(Side::Ask),
        other => Err(format!("expected \"buy\" or \"sell\", got {other:?}")),
    }
}

impl<'o> Loader<'o> {
    fn new(opts: &'o ImportOptions) -> Self {
        Loader {
            opts,
            feeds: Feeds::new(),
            book_ts: Vec::new(),
            levels: Vec::new(),
            received_any: false,
            reconnects: 0,
            other_messages: 0,
            venue_errors: Vec::new(),
            first_bbo_mismatches: Vec::new(),
            first_crossed_batches: Vec::new(),
        }
    }

    fn line(&mut self, loc: Loc, line: CfLine) -> Result<()> {
        match line {
            CfLine::Connect { ts_ns, .. } => {
                if self.received_any {
                    self.reconnect(ts_ns);
                }
                Ok(())
            }
            CfLine::Sent { .. } | CfLine::Rest { .. } => Ok(()),
            CfLine::Received { ts_ns, json } => self.message(loc, ts_ns, json),
        }
    }

    /// A new connection: whatever happened while disconnected is lost, so every synced book
    /// becomes invalid until the snapshot the new subscription brings.
    fn reconnect(&mut self, ts: i64) {
        self.reconnects += 1;
        self.feeds.gap_all_synced(ts, |s| s.gaps += 1);
    }

    fn message(&mut self, loc: Loc, recv: i64, json: &str) -> Result<()> {
        self.received_any = true;
        let m: Msg = serde_json::from_str(json).map_err(|e| loc.err("json", e.to_string()))?;
        match m.kind {
            "snapshot" | "l2update" | "match" | "last_match" | "ticker" => {}
            "error" => {
                let msg = m.message.as_deref().unwrap_or("");
                tracing::warn!(file = loc.file, line = loc.line, "coinbase error message: {msg}");
                venue::keep_first(&mut self.venue_errors, || format!("{}:{}: {msg}", loc.file, loc.line));
                return Ok(());
            }
            _ => {
                self.other_messages += 1; // subscriptions, heartbeat, ...
                return Ok(());
            }
        }
        let sym = m.product_id.ok_or_else(|| loc.err("product_id", "missing"))?;
        let Some(i) = self.feeds.get(sym, self.opts) else { return Ok(()) };
        if self.book_ts.len() < self.feeds.list.len() {
            self.book_ts.push(i64::MIN);
        }
        match m.kind {
            "snapshot" => self.snapshot(i, &m, loc, recv),
            "l2update" => self.update(i, &m, loc, recv),
            "ticker" => self.ticker(i, &m, loc),
            _ => self.trade(i, &m, loc, recv),
        }
    }

    fn snapshot(&mut self, i: usize, m: &Msg, loc: Loc, recv: i64) -> Result<()> {
        let feed = &mut self.feeds.list[i];
        // The instrument comes from the first snapshot's decimals as written (Coinbase writes a
        // product's full precision, trailing zeros included), or from the overrides.
        let new_inst = match feed.inst {
            Some(_) => None,
            None => {
                let all = || m.bids.iter().chain(m.asks.iter());
                let pd = all().map(|l| written_decimals(l[0])).max().unwrap_or(0);
                let sd = all().map(|l| written_decimals(l[1])).max().unwrap_or(0);
                Some(venue::instrument(VENUE, &feed.symbol, pd, sd, self.opts).map_err(|e| loc.err("tick_size", e))?)
            }
        };
        let inst = feed.inst.as_ref().or(new_inst.as_ref()).expect("instrument known or inferred");
        self.levels.clear();
        for (name, side, levels) in [("bids", Side::Bid, &m.bids), ("asks", Side::Ask, &m.asks)] {
            for (k, l) in levels.iter().enumerate() {
                let px = venue::price(inst, l[0]).map_err(|e| loc.err(&format!("{name}[{k}].price"), e))?;
                let q = venue::size(inst, l[1]).map_err(|e| loc.err(&format!("{name}[{k}].size"), e))?;
                self.levels.push((side, px, q));
            }
        }
        // Commit: nothing above touched the feed.
        if new_inst.is_some() {
            feed.inst = new_inst;
        }
        // No exchange time in Coinbase snapshots: the receive time stands in (an upper bound).
        let start = feed.events.len();
        feed.push(Event::new(EventKind::Snapshot, Side::Bid, 0, 0, recv).with_local(recv));
        for &(side, px, q) in &self.levels {
            feed.push(Event::level(side, px, q, recv).with_local(recv).with_flags(flags::SNAPSHOT));
        }
        feed.stats.snapshots += 1;
        feed.stats.level_events += self.levels.len() as u64;
        self.book_ts[i] = recv;
        self.end_batch(i, start, loc);
        Ok(())
    }

    fn update(&mut self, i: usize, m: &Msg, loc: Loc, recv: i64) -> Result<()> {
        let feed = &mut self.feeds.list[i];
        let Some(inst) = feed.inst.as_ref().filter(|_| feed.book.is_synced()) else {
            feed.stats.skipped_unsynced += 1;
            return Ok(());
        };
        let ts = time_field(m.time, loc)?;
        self.levels.clear();
        for (k, c) in m.changes.iter().enumerate() {
            let side = side_of(c[0]).map_err(|e| loc.err(&format!("changes[{k}].side"), e))?;
            let px = venue::price(inst, c[1]).map_err(|e| loc.err(&format!("changes[{k}].price"), e))?;
            let q = venue::size(inst, c[2]).map_err(|e| loc.err(&format!("changes[{k}].size"), e))?;
            self.levels.push((side, px, q));
        }
        let start = feed.events.len();
        for &(side, px, q) in &self.levels {
            feed.push(Event::level(side, px, q, ts).with_local(recv));
        }
        feed.stats.updates += 1;
        feed.stats.level_events += self.levels.len() as u64;
        self.book_ts[i] = ts;
        self.end_batch(i, start, loc);
        Ok(())
    }

    fn end_batch(&mut self, i: usize, start: usize, loc: Loc) {
        let feed = &mut self.feeds.list[i];
        if feed.end_batch(start) {
            feed.stats.crossed_batches += 1;
            let (b, a) = (feed.book.best_bid(), feed.book.best_ask());
            venue::keep_first(&mut self.first_crossed_batches, || {
                format!("{}:{}: {}: bid {:?} >= ask {:?} (ticks)", loc.file, loc.line, feed.symbol, b, a)
            });
        }
    }

    /// `match`/`last_match` → `Trade`; the message's `side` is the maker's, so the aggressor is
    /// its opposite. `last_match` (the latest trade, sent once on subscribing) is a real trade too.
    fn trade(&mut self, i: usize, m: &Msg, loc: Loc, recv: i64) -> Result<()> {
        let feed = &mut self.feeds.list[i];
        let Some(inst) = &feed.inst else {
            feed.stats.trades_before_snapshot += 1;
            return Ok(());
        };
        let trade_id = m.trade_id.ok_or_else(|| loc.err("trade_id", "missing"))?;
        let maker = side_of(m.side.ok_or_else(|| loc.err("side", "missing"))?).map_err(|e| loc.err("side", e))?;
        let px = venue::price(inst, m.price.ok_or_else(|| loc.err("price", "missing"))?).map_err(|e| loc.err("price", e))?;
        let q = venue::size(inst, m.size.ok_or_else(|| loc.err("size", "missing"))?).map_err(|e| loc.err("size", e))?;
        let ts = time_field(m.time, loc)?;
        let ev = Event::new(EventKind::Trade, maker.opposite(), px, q, ts)
            .with_order(trade_id)
            .with_seq(m.sequence.unwrap_or(0))
            .with_local(recv)
            .with_flags(flags::BATCH_END);
        feed.push(ev);
        feed.stats.trades += 1;
        Ok(())
    }

    /// Compare the ticker's best bid/ask with the book built from the l2updates received so far.
    fn ticker(&mut self, i: usize, m: &Msg, loc: Loc) -> Result<()> {
        let feed = &mut self.feeds.list[i];
        let Some(inst) = feed.inst.as_ref().filter(|_| feed.book.is_synced()) else {
            feed.stats.bbo_unsynced += 1;
            return Ok(());
        };
        let (Some(tb), Some(ta)) = (m.best_bid, m.best_ask) else { return Ok(()) };
        let bid = venue::price(inst, tb).map_err(|e| loc.err("best_bid", e))?;
        let ask = venue::price(inst, ta).map_err(|e| loc.err("best_ask", e))?;
        let ts = time_field(m.time, loc)?;
        let book = (feed.book.best_bid().map(|l| l.0), feed.book.best_ask().map(|l| l.0));
        let agree = book == (Some(bid), Some(ask));
        let stale = ts < self.book_ts[i];
        let s = &mut feed.stats;
        s.bbo_checks += 1;
        s.bbo_agree += agree as u64;
        if stale {
            s.bbo_stale += 1;
        } else {
            s.bbo_current_checks += 1;
            s.bbo_current_agree += agree as u64;
        }
        if !agree {
            let show = |p: Option<i64>| p.map_or("none".into(), |p| fmt_price(inst, p));
            let t = m.time.unwrap_or("");
            venue::keep_first(&mut self.first_bbo_mismatches, || {
                format!(
                    "{}:{}: {}: ticker {tb}/{ta} at {t}, book {}/{}{}",
                    loc.file,
                    loc.line,
                    feed.symbol,
                    show(book.0),
                    show(book.1),
                    if stale { " (stale: ticker older than the book's last change)" } else { "" }
                )
            });
        }
        Ok(())
    }

    fn summary(&self, bad: &BadLines) -> Report {
        let list = &self.feeds.list;
        let sum = |f: fn(&ProductStats) -> u64| list.iter().map(|p| f(&p.stats)).sum::<u64>();
        let ratio = |a: u64, n: u64| (n > 0).then(|| a as f64 / n as f64);
        let (checks, current) = (sum(|s| s.bbo_checks), sum(|s| s.bbo_current_checks));
        let current_agreement = ratio(sum(|s| s.bbo_current_agree), current);
        let crossed = sum(|s| s.crossed_batches);
        let ok = current_agreement.is_some_and(|a| a >= BBO_MIN_AGREEMENT) && crossed == 0;
        let mut r = Report::new(ok);
        r.set("products", list.iter().map(|p| (p.symbol.as_str(), &p.stats)).collect::<BTreeMap<_, _>>())
            .set("events", list.iter().map(|p| p.events.len()).sum::<usize>())
            .set("snapshots", sum(|s| s.snapshots))
            .set("updates", sum(|s| s.updates))
            .set("level_events", sum(|s| s.level_events))
            .set("trades", sum(|s| s.trades))
            .set("trades_before_snapshot", sum(|s| s.trades_before_snapshot))
            .set("crossed_batches", crossed)
            .set("first_crossed_batches", &self.first_crossed_batches)
            .set("skipped_unsynced", sum(|s| s.skipped_unsynced))
            .set("gaps", sum(|s| s.gaps))
            .set("reconnects", self.reconnects)
            .set("bbo_checks", checks)
            .set("bbo_agreement", ratio(sum(|s| s.bbo_agree), checks))
            .set("bbo_stale", sum(|s| s.bbo_stale))
            .set("bbo_current_checks", current)
            .set("bbo_current_agreement", current_agreement)
            .set("bbo_min_agreement", BBO_MIN_AGREEMENT)
            .set("bbo_unsynced", sum(|s| s.bbo_unsynced))
            .set("first_bbo_mismatches", &self.first_bbo_mismatches)
            .set("other_messages", self.other_messages)
            .set("venue_errors", &self.venue_errors)
            .set("bad_lines", bad.count)
            .set("first_bad_lines", &bad.first);
        r
    }
}

fn fmt_price(inst: &Instrument, ticks: i64) -> String {
    format_fixed(ticks * inst.tick, inst.price_scale)
}

fn time_field(t: Option<&str>, loc: Loc) -> Result<i64> {
    parse_rfc3339_ns(t.ok_or_else(|| loc.err("time", "missing"))?).map_err(|e| loc.err("time", e))
}

/// Two ASCII digits.
fn two(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    (b.len() == 2 && b.iter().all(u8::is_ascii_digit)).then(|| ((b[0] - b'0') * 10 + (b[1] - b'0')) as i64)
}

/// RFC 3339 time as Coinbase writes it (`2021-04-17T16:43:37.075687Z`) → ns since the epoch,
/// exactly (up to 9 fractional digits). A numeric offset (`+01:00`) is applied; no leap seconds.
pub fn parse_rfc3339_ns(s: &str) -> std::result::Result<i64, String> {
    let bad = || format!("not an RFC 3339 UTC time: {s:?}");
    if !s.is_ascii() {
        return Err(bad());
    }
    let (date, rest) = s.split_once(['T', 't']).ok_or_else(bad)?;
    let (y, mo, d) = parse_date(date).ok_or_else(bad)?;
    let days = days_from_civil(y, mo, d);
    if civil_from_days(days) != (y, mo, d) {
        return Err(bad()); // 2021-02-30
    }
    let (clock, offset_s) = match rest.strip_suffix(['Z', 'z']) {
        Some(c) => (c, 0),
        None => {
            let i = rest.rfind(['+', '-']).ok_or_else(bad)?;
            let (c, off) = rest.split_at(i);
            let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
            let (oh, om) = (two(oh).ok_or_else(bad)?, two(om).ok_or_else(bad)?);
            (c, if off.starts_with('-') { -1 } else { 1 } * (oh * 3600 + om * 60))
        }
    };
    if clock.len() < 8 || &clock[2..3] != ":" || &clock[5..6] != ":" {
        return Err(bad());
    }
    let (h, m, sec) = (two(&clock[..2]), two(&clock[3..5]), two(&clock[6..8]));
    let (h, m, sec) = match (h, m, sec) {
        (Some(h), Some(m), Some(sec)) if h < 24 && m < 60 && sec < 60 => (h, m, sec),
        _ => return Err(bad()),
    };
    let frac = &clock[8..];
    let frac_ns = if frac.is_empty() {
        0
    } else {
        let digits = frac.strip_prefix('.').ok_or_else(bad)?;
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse::<i64>().map_err(|_| bad())? * 10i64.pow(9 - digits.len() as u32)
    };
    Ok(days * NS_PER_DAY + (h * 3600 + m * 60 + sec - offset_s) * NS_PER_SEC + frac_ns)
}

impl<'o> venue::VenueLoader<'o> for Loader<'o> {
    type Stats = ProductStats;
    const FORMAT: &'static str = FORMAT;
    fn start(opts: &'o ImportOptions) -> Self {
        Loader::new(opts)
    }
    fn message(&mut self, loc: Loc, line: CfLine) -> Result<()> {
        self.line(loc, line)
    }
    fn feeds(&self) -> &Feeds<ProductStats> {
        &self.feeds
    }
    fn into_feeds(self) -> Feeds<ProductStats> {
        self.feeds
    }
    fn report(&self, bad: &BadLines) -> Report {
        self.summary(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_exact() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339_ns("2021-04-17T16:43:37.075687Z"), Ok(1_618_677_817_075_687_000));
        assert_eq!(parse_rfc3339_ns("2021-04-17T18:43:37.075687001+02:00"), Ok(1_618_677_817_075_687_001));
        assert_eq!(parse_rfc3339_ns("2021-04-17T16:43:37.5Z"), Ok(1_618_677_817_500_000_000));
        for bad in [
            "2021-04-17 16:43:37Z",
            "2021-02-30T00:00:00Z",
            "2021-04-17T24:00:00Z",
            "2021-04-17T16:43:37.Z",
            "2021-04-17T16:43:37.0123456789Z",
            "2021-04-17T16:43Z",
            "x",
            "2021-04-17T16:43:37é",
        ] {
            assert!(parse_rfc3339_ns(bad).is_err(), "{bad}");
        }
    }
}
