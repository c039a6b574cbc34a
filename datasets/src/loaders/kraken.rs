//! Kraken websocket v1 `book` recordings made by cryptofeed, validated message by message with
//! Kraken's CRC32 book checksum. Mapping, checksum algorithm and report keys: docs/data.md,
//! section "Loaders: Coinbase and Kraken".
//!
//! Message shapes (learnt from the recording): snapshot `[chanID, {"as": [...], "bs": [...]},
//! "book-N", pair]`; update `[chanID, {"a": [...]} (, {"b": [...]}), "book-N", pair]` where the
//! last dict carries `"c": "<crc32>"`; a level is `[price, volume, timestamp]`, with a 4th element
//! `"r"` when Kraken republishes a level (applied like any other update).

use super::cfline::CfLine;
use super::options::ImportOptions;
use super::venue::{self, Feeds, Inline, Loc};
use crate::book::{BookLayout, OrderBook};
use crate::error::{BadLines, Result};
use crate::event::{flags, Event, EventKind, Side};
use crate::instrument::{parse_fixed, written_decimals, Instrument};
use crate::report::Report;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

const VENUE: &str = "kraken";
const FORMAT: &str = "cryptofeed-kraken";
/// Levels per side that enter Kraken's checksum.
pub const CHECKSUM_LEVELS: usize = 10;

/// The decimals Kraken writes for a pair's prices and volumes. Kraken sends fixed decimals per
/// pair, and its checksum is computed on those strings, so they are kept apart from the
/// instrument's scales (which `--tick-size`/`--size-scale` may change).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Wire {
    pub price_decimals: u32,
    pub size_decimals: u32,
}

/// `v` fixed-point at `scale` decimals → the integer Kraken's string denotes at `wire` decimals.
/// Exact: every stored value came from a wire string.
#[inline]
fn to_wire(v: i64, scale: u32, wire: u32) -> u64 {
    let v = v.unsigned_abs();
    if wire >= scale {
        v * 10u64.pow(wire - scale)
    } else {
        v / 10u64.pow(scale - wire)
    }
}

/// Longest checksum input: 2 sides × 10 levels × 2 numbers × at most 20 digits.
const CHECKSUM_BUF: usize = 2 * CHECKSUM_LEVELS * 2 * 20;

/// Append the decimal digits of `v` to `buf[n..]`, as Kraken's string with '.' and leading zeros
/// removed: for a fixed-decimal string that is exactly the integer at the wire scale (and the
/// empty string for zero). Returns the new length.
#[inline]
fn push_digits(buf: &mut [u8; CHECKSUM_BUF], n: usize, mut v: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    while v > 0 {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let len = tmp.len() - i;
    buf[n..n + len].copy_from_slice(&tmp[i..]);
    n + len
}

/// Kraken's book checksum (websocket v1, "book checksum"): for the top 10 asks (price ascending)
/// then the top 10 bids (price descending), the price string then the volume string, each with
/// '.' and leading zeros removed, concatenated; CRC32 (IEEE) of that, as an unsigned integer.
/// The strings are rebuilt from the stored integers with the pair's wire decimals into a stack
/// buffer, hashed in one call; nothing is allocated.
pub fn book_checksum<L: BookLayout>(book: &OrderBook<L>, inst: &Instrument, wire: Wire) -> u32 {
    let mut buf = [0u8; CHECKSUM_BUF];
    let mut n = 0;
    let (mut px, mut sz) = ([0i64; CHECKSUM_LEVELS], [0i64; CHECKSUM_LEVELS]);
    for side in [Side::Ask, Side::Bid] {
        let levels = book.layout.top(side, &mut px, &mut sz);
        for k in 0..levels {
            n = push_digits(&mut buf, n, to_wire(px[k] * inst.tick, inst.price_scale, wire.price_decimals));
            n = push_digits(&mut buf, n, to_wire(sz[k], inst.size_scale, wire.size_decimals));
        }
    }
    crc32fast::hash(&buf[..n])
}

/// `[price, volume, timestamp(, "r")]`.
#[derive(Clone, Copy, Debug, Default)]
struct Level<'a> {
    price: &'a str,
    volume: &'a str,
    ts: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for Level<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Level<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a level [price, volume, timestamp] or [price, volume, timestamp, \"r\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> std::result::Result<Level<'a>, A::Error> {
                let mut next = |i| s.next_element::<&'a str>()?.ok_or_else(|| de::Error::invalid_length(i, &self));
                let (price, volume, ts) = (next(0)?, next(1)?, next(2)?);
                match s.next_element::<&'a str>()? {
                    None | Some("r") => {}
                    Some(other) => return Err(de::Error::invalid_value(Unexpected::Str(other), &"\"r\"")),
                }
                if s.next_element::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(5, &self));
                }
                Ok(Level { price, volume, ts })
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// One dict of a book message.
#[derive(Default, serde::Deserialize)]
struct Part<'a> {
    #[serde(rename = "as", borrow)]
    snap_asks: Option<Inline<Level<'a>, 1>>,
    #[serde(rename = "bs", borrow)]
    snap_bids: Option<Inline<Level<'a>, 1>>,
    #[serde(rename = "a", default, borrow)]
    asks: Inline<Level<'a>, 4>,
    #[serde(rename = "b", default, borrow)]
    bids: Inline<Level<'a>, 4>,
    #[serde(rename = "c", borrow)]
    checksum: Option<&'a str>,
}

impl Part<'_> {
    fn is_snapshot(&self) -> bool {
        self.snap_asks.is_some() || self.snap_bids.is_some()
    }
}

/// `[channelID, dict (, dict), channelName, pair]`; other channels' payloads (arrays) are skipped.
#[derive(Default)]
struct BookMsg<'a> {
    parts: [Part<'a>; 2],
    nparts: usize,
    channel_name: &'a str,
    pair: &'a str,
}

impl<'de: 'a, 'a> Deserialize<'de> for BookMsg<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        /// One element after the channel id. Transient and on the stack: boxing the large
        /// variant would allocate per message.
        #[allow(clippy::large_enum_variant)]
        enum Elem<'a> {
            Part(Part<'a>),
            Str(&'a str),
            Other,
        }
        impl<'de: 'a, 'a> Deserialize<'de> for Elem<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                struct V<'a>(PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = Elem<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a book dict, a string or a channel payload")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, m: A) -> std::result::Result<Elem<'a>, A::Error> {
                        Part::deserialize(de::value::MapAccessDeserializer::new(m)).map(Elem::Part)
                    }
                    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> std::result::Result<Elem<'a>, E> {
                        Ok(Elem::Str(s))
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> std::result::Result<Elem<'a>, A::Error> {
                        while s.next_element::<IgnoredAny>()?.is_some() {}
                        Ok(Elem::Other)
                    }
                }
                d.deserialize_any(V(PhantomData))
            }
        }
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = BookMsg<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[channelID, payload..., channelName, pair]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> std::result::Result<BookMsg<'a>, A::Error> {
                s.next_element::<u64>()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let mut m = BookMsg::default();
                let mut strs: [&'a str; 2] = [""; 2];
                let mut nstr = 0;
                while let Some(e) = s.next_element::<Elem<'a>>()? {
                    match e {
                        Elem::Part(p) if m.nparts < 2 && nstr == 0 => {
                            m.parts[m.nparts] = p;
                            m.nparts += 1;
                        }
                        Elem::Str(x) if nstr < 2 => {
                            strs[nstr] = x;
                            nstr += 1;
                        }
                        Elem::Other if nstr == 0 => {}
                        _ => return Err(de::Error::custom("unexpected element in a channel message")),
                    }
                }
                if nstr != 2 {
                    return Err(de::Error::custom("channel message without channelName and pair"));
                }
                [m.channel_name, m.pair] = strs;
                Ok(m)
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// Status messages (`heartbeat`, `systemStatus`, `subscriptionStatus`).
#[derive(serde::Deserialize)]
struct StatusMsg<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(rename = "errorMessage", borrow)]
    error_message: Option<Cow<'a, str>>,
}

/// Per-pair counts (report key `pairs.<pair>`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PairStats {
    /// Subscribed depth (from the channel name `book-N`) and the wire decimals the checksum uses.
    pub depth: usize,
    pub wire: Wire,
    pub snapshots: u64,
    /// Update messages applied.
    pub updates: u64,
    pub level_events: u64,
    /// Levels dropped because the book exceeded the subscribed depth (`DEPTH_WINDOW` deletes).
    pub depth_drops: u64,
    pub checksums_checked: u64,
    pub checksum_failures: u64,
    pub updates_without_checksum: u64,
    /// Updates received while the book was invalid (before a snapshot, after a failure).
    pub skipped_unsynced: u64,
    pub crossed_batches: u64,
    pub gaps: u64,
}

pub(crate) struct Loader<'o> {
    opts: &'o ImportOptions,
    feeds: Feeds<PairStats>,
    levels: Vec<(Side, i64, i64)>,
    /// Reused buffers for depth truncation.
    px: Vec<i64>,
    sz: Vec<i64>,
    received_any: bool,
    reconnects: u64,
    heartbeats: u64,
    other_messages: u64,
    subscription_errors: Vec<String>,
    first_checksum_failures: Vec<String>,
    first_crossed_batches: Vec<String>,
}

/// `book-1000` → 1000.
fn depth_of(channel: &str) -> std::result::Result<usize, String> {
    channel
        .strip_prefix("book-")
        .and_then(|d| d.parse::<usize>().ok())
        .filter(|&d| d > 0)
        .ok_or_else(|| format!("expected \"book-<depth>\", got {channel:?}"))
}

fn level_ts(l: &Level, loc: Loc, field: impl Fn() -> String) -> Result<i64> {
    parse_fixed(l.ts, 9).map_err(|e| loc.err(&field(), e))
}

impl<'o> Loader<'o> {
    fn new(opts: &'o ImportOptions) -> Self {
        Loader {
            opts,
            feeds: Feeds::new(),
            levels: Vec::new(),
            px: Vec::new(),
            sz: Vec::new(),
            received_any: false,
            reconnects: 0,
            heartbeats: 0,
            other_messages: 0,
            subscription_errors: Vec::new(),
            first_checksum_failures: Vec::new(),
            first_crossed_batches: Vec::new(),
        }
    }

    fn line(&mut self, loc: Loc, line: CfLine) -> Result<()> {
        match line {
            CfLine::Connect { ts_ns, .. } => {
                if self.received_any {
                    // A new connection: messages were lost in between; books are invalid until
                    // the new subscription's snapshots.
                    self.reconnects += 1;
                    self.feeds.gap_all_synced(ts_ns, |s| s.gaps += 1);
                }
                Ok(())
            }
            CfLine::Sent { .. } | CfLine::Rest { .. } => Ok(()),
            CfLine::Received { ts_ns, json } => {
                self.received_any = true;
                match json.trim_start().as_bytes().first() {
                    Some(b'{') => self.status(loc, json),
                    Some(b'[') => self.book(loc, ts_ns, json),
                    _ => Err(loc.err("json", "expected a JSON object or array")),
                }
            }
        }
    }

    fn status(&mut self, loc: Loc, json: &str) -> Result<()> {
        let m: StatusMsg = serde_json::from_str(json).map_err(|e| loc.err("json", e.to_string()))?;
        match (m.event.as_deref(), m.status.as_deref()) {
            (Some("heartbeat"), _) => self.heartbeats += 1,
            (Some("subscriptionStatus"), Some("error")) | (Some("error"), _) => {
                let msg = m.error_message.as_deref().unwrap_or("");
                tracing::warn!(file = loc.file, line = loc.line, "kraken subscription error: {msg}");
                venue::keep_first(&mut self.subscription_errors, || format!("{}:{}: {msg}", loc.file, loc.line));
            }
            _ => self.other_messages += 1,
        }
        Ok(())
    }

    fn book(&mut self, loc: Loc, recv: i64, json: &str) -> Result<()> {
        let m: BookMsg = serde_json::from_str(json).map_err(|e| loc.err("json", e.to_string()))?;
        if !m.channel_name.starts_with("book") {
            self.other_messages += 1;
            return Ok(());
        }
        let depth = depth_of(m.channel_name).map_err(|e| loc.err("channelName", e))?;
        let Some(i) = self.feeds.get(m.pair, self.opts) else { return Ok(()) };
        let parts = &m.parts[..m.nparts];
        match parts {
            [p] if p.is_snapshot() => self.snapshot(i, p, depth, loc, recv),
            _ if parts.iter().any(Part::is_snapshot) => Err(loc.err("as", "snapshot dict mixed with other dicts")),
            _ => self.update(i, parts, depth, loc, recv),
        }
    }

    fn snapshot(&mut self, i: usize, p: &Part, depth: usize, loc: Loc, recv: i64) -> Result<()> {
        let empty = Inline::default();
        let (asks, bids) = (p.snap_asks.as_ref().unwrap_or(&empty), p.snap_bids.as_ref().unwrap_or(&empty));
        let all = || asks.iter().chain(bids.iter());
        let feed = &mut self.feeds.list[i];
        // Kraken writes fixed decimals per pair; a snapshot without levels keeps the old ones.
        let wire = if !(asks.is_empty() && bids.is_empty()) {
            Wire {
                price_decimals: all().map(|l| written_decimals(l.price)).max().unwrap_or(0),
                size_decimals: all().map(|l| written_decimals(l.volume)).max().unwrap_or(0),
            }
        } else {
            feed.stats.wire
        };
        let new_inst = match feed.inst {
            Some(_) => None,
            None => Some(
                venue::instrument(VENUE, &feed.symbol, wire.price_decimals, wire.size_decimals, self.opts)
                    .map_err(|e| loc.err("tick_size", e))?,
            ),
        };
        let inst = feed.inst.as_ref().or(new_inst.as_ref()).expect("instrument known or inferred");
        self.levels.clear();
        let mut ts = i64::MIN;
        for (name, side, levels) in [("as", Side::Ask, asks), ("bs", Side::Bid, bids)] {
            for (k, l) in levels.iter().enumerate() {
                let px = venue::price(inst, l.price).map_err(|e| loc.err(&format!("{name}[{k}].price"), e))?;
                let q = venue::size(inst, l.volume).map_err(|e| loc.err(&format!("{name}[{k}].volume"), e))?;
                ts = ts.max(level_ts(l, loc, || format!("{name}[{k}].timestamp"))?);
                self.levels.push((side, px, q));
            }
        }
        // Commit.
        if new_inst.is_some() {
            feed.inst = new_inst;
        }
        let ts = if ts == i64::MIN { recv } else { ts };
        let start = feed.events.len();
        feed.push(Event::new(EventKind::Snapshot, Side::Bid, 0, 0, ts).with_local(recv));
        for &(side, px, q) in &self.levels {
            feed.push(Event::level(side, px, q, ts).with_local(recv).with_flags(flags::SNAPSHOT));
        }
        feed.stats.depth = depth;
        feed.stats.wire = wire;
        feed.stats.snapshots += 1;
        feed.stats.level_events += self.levels.len() as u64;
        self.truncate(i, depth, ts, recv);
        self.end_batch(i, start, loc);
        Ok(())
    }

    fn update(&mut self, i: usize, parts: &[Part], depth: usize, loc: Loc, recv: i64) -> Result<()> {
        let feed = &mut self.feeds.list[i];
        let Some(inst) = feed.inst.as_ref().filter(|_| feed.book.is_synced()) else {
            feed.stats.skipped_unsynced += 1;
            return Ok(());
        };
        self.levels.clear();
        let mut ts = i64::MIN;
        let mut expected: Option<u32> = None;
        for part in parts {
            for (name, side, levels) in [("a", Side::Ask, &part.asks), ("b", Side::Bid, &part.bids)] {
                for (k, l) in levels.iter().enumerate() {
                    let px = venue::price(inst, l.price).map_err(|e| loc.err(&format!("{name}[{k}].price"), e))?;
                    let q = venue::size(inst, l.volume).map_err(|e| loc.err(&format!("{name}[{k}].volume"), e))?;
                    ts = ts.max(level_ts(l, loc, || format!("{name}[{k}].timestamp"))?);
                    self.levels.push((side, px, q));
                }
            }
            if let Some(c) = part.checksum {
                if expected.is_some() {
                    return Err(loc.err("c", "two checksums in one message"));
                }
                expected = Some(c.parse::<u32>().map_err(|_| loc.err("c", format!("not a CRC32 value: {c:?}")))?);
            }
        }
        // Commit. The message's time is its latest level timestamp.
        let ts = if ts == i64::MIN { recv } else { ts };
        let start = feed.events.len();
        for &(side, px, q) in &self.levels {
            feed.push(Event::level(side, px, q, ts).with_local(recv));
        }
        feed.stats.updates += 1;
        feed.stats.level_events += self.levels.len() as u64;
        self.truncate(i, depth, ts, recv);
        let feed = &mut self.feeds.list[i];
        let Some(expected) = expected else {
            feed.stats.updates_without_checksum += 1;
            self.end_batch(i, start, loc);
            return Ok(());
        };
        feed.stats.checksums_checked += 1;
        let inst = feed.inst.as_ref().expect("synced feed has an instrument");
        let computed = book_checksum(&feed.book, inst, feed.stats.wire);
        if computed == expected {
            self.end_batch(i, start, loc);
        } else {
            // The book no longer matches Kraken's: invalid until a new snapshot, never patched.
            feed.stats.checksum_failures += 1;
            feed.stats.gaps += 1;
            feed.gap(ts, recv, expected as u64, computed as u64);
            tracing::warn!(file = loc.file, line = loc.line, pair = %feed.symbol, expected, computed, "kraken checksum failure");
            venue::keep_first(&mut self.first_checksum_failures, || {
                format!("{}:{}: {}: checksum expected {expected}, computed {computed}", loc.file, loc.line, feed.symbol)
            });
        }
        Ok(())
    }

    /// Keep the book within the subscribed depth, as Kraken's docs require: Kraken does not send
    /// deletes for levels pushed beyond it, and its checksum assumes they are gone.
    fn truncate(&mut self, i: usize, depth: usize, ts: i64, recv: i64) {
        let feed = &mut self.feeds.list[i];
        for side in [Side::Ask, Side::Bid] {
            let n = feed.book.layout.depth(side);
            if n <= depth {
                continue;
            }
            self.px.resize(n, 0);
            self.sz.resize(n, 0);
            let got = feed.book.layout.top(side, &mut self.px, &mut self.sz);
            for &px in &self.px[depth..got] {
                feed.push(Event::level(side, px, 0, ts).with_local(recv).with_flags(flags::DEPTH_WINDOW));
                feed.stats.depth_drops += 1;
            }
        }
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

    fn summary(&self, bad: &BadLines) -> Report {
        let list = &self.feeds.list;
        let sum = |f: fn(&PairStats) -> u64| list.iter().map(|p| f(&p.stats)).sum::<u64>();
        let (checked, failures) = (sum(|s| s.checksums_checked), sum(|s| s.checksum_failures));
        let mut r = Report::new(checked > 0 && failures == 0);
        r.set("checksums_checked", checked)
            .set("checksum_failures", failures)
            .set("first_checksum_failures", &self.first_checksum_failures)
            .set("pairs", list.iter().map(|p| (p.symbol.as_str(), &p.stats)).collect::<BTreeMap<_, _>>())
            .set("events", list.iter().map(|p| p.events.len()).sum::<usize>())
            .set("snapshots", sum(|s| s.snapshots))
            .set("updates", sum(|s| s.updates))
            .set("level_events", sum(|s| s.level_events))
            .set("depth_drops", sum(|s| s.depth_drops))
            .set("updates_without_checksum", sum(|s| s.updates_without_checksum))
            .set("skipped_unsynced", sum(|s| s.skipped_unsynced))
            .set("crossed_batches", sum(|s| s.crossed_batches))
            .set("first_crossed_batches", &self.first_crossed_batches)
            .set("gaps", sum(|s| s.gaps))
            .set("reconnects", self.reconnects)
            .set("heartbeats", self.heartbeats)
            .set("other_messages", self.other_messages)
            .set("subscription_errors", &self.subscription_errors)
            .set("bad_lines", bad.count)
            .set("first_bad_lines", &bad.first);
        r
    }
}

impl<'o> venue::VenueLoader<'o> for Loader<'o> {
    type Stats = PairStats;
    const FORMAT: &'static str = FORMAT;
    fn start(opts: &'o ImportOptions) -> Self {
        Loader::new(opts)
    }
    fn message(&mut self, loc: Loc, line: CfLine) -> Result<()> {
        self.line(loc, line)
    }
    fn feeds(&self) -> &Feeds<PairStats> {
        &self.feeds
    }
    fn into_feeds(self) -> Feeds<PairStats> {
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
    fn parses_update_shapes() {
        let m: BookMsg = serde_json::from_str(
            r#"[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},{"b":[["0.042990","0.00000000","1618678145.920708","r"]],"c":"4105471083"},"book-1000","SC/EUR"]"#,
        )
        .unwrap();
        assert_eq!((m.nparts, m.channel_name, m.pair), (2, "book-1000", "SC/EUR"));
        assert_eq!(m.parts[0].asks.iter().count(), 1);
        assert_eq!(m.parts[1].bids.iter().next().unwrap().volume, "0.00000000");
        assert_eq!(m.parts[1].checksum, Some("4105471083"));
        // Other channels' payloads are arrays: skipped, not an error.
        let t: BookMsg = serde_json::from_str(r#"[5,[["1.0","2.0","3.0","s","l",""]],"trade","XBT/USD"]"#).unwrap();
        assert_eq!((t.nparts, t.channel_name), (0, "trade"));
        assert!(serde_json::from_str::<BookMsg>(r#"[1,{"a":[["1","2","3","x"]]},"book-10","P"]"#).is_err());
        assert!(serde_json::from_str::<BookMsg>(r#"[1,{"a":[]},"book-10"]"#).is_err());
        assert_eq!(depth_of("book-25"), Ok(25));
        assert!(depth_of("book-").is_err());
    }

    #[test]
    fn digits_rebuild_stripped_strings() {
        // to_wire/push_digits reproduce "strip '.' and leading zeros" on fixed-decimal strings:
        // "0.000022900" (9 decimals), "13355.87450757" (8), "0.00000000" → "".
        let mut buf = [0u8; CHECKSUM_BUF];
        let mut n = push_digits(&mut buf, 0, to_wire(22900, 9, 9));
        n = push_digits(&mut buf, n, to_wire(1_335_587_450_757, 8, 8));
        n = push_digits(&mut buf, n, 0);
        assert_eq!(&buf[..n], b"229001335587450757");
        assert_eq!(to_wire(35415, 2, 8), 35_415_000_000);
        assert_eq!(to_wire(354_150_000_000, 9, 8), 35_415_000_000);
    }
}
