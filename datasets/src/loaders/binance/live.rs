//! The loader, one line at a time: what a collector feeds while it records, so that the book it
//! publishes and the resynchronisations it triggers come from the same [`Feed`] and [`BookSync`]
//! that `flowcast data import/check` run over the finished file. A collector that passes every
//! line it writes, in order, sees exactly the gaps and sync failures the loader will report for
//! that file, at the same line numbers.

pub use super::Phase;
use super::{classify, parse_msg, resolve_instrument, Ctx, Feed, GapInfo, Market, MsgKind, SyncFailure};
use crate::error::Result;
use crate::event::Event;
use crate::instrument::Instrument;
use crate::loaders::options::ImportOptions;

/// What one line was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Depth,
    Snapshot,
    BookTicker,
    Trade,
    Other,
}

/// One symbol's recording, fed incrementally. Line numbers count the lines accepted by
/// [`LiveFeed::on_line`] (1-based): the lines a collector writes, as the loader counts them.
pub struct LiveFeed {
    feed: Feed,
    file: String,
    symbol: String,
    line: u64,
}

impl LiveFeed {
    /// A feed for `symbol` on `market` whose lines go to `file` (named in errors). The instrument
    /// is the loader's: `opts.tick_size`/`opts.size_scale`, else its built-in table; unknown
    /// symbols without both overrides are an error (a live feed has no snapshot to infer from yet).
    pub fn new(market: Market, symbol: &str, opts: &ImportOptions, file: &str) -> Result<LiveFeed> {
        let (inst, inferred) = resolve_instrument(market, symbol, opts, None)?;
        Ok(LiveFeed {
            feed: Feed::new(market, inst, inferred, false),
            file: file.to_string(),
            symbol: symbol.to_ascii_uppercase(),
            line: 0,
        })
    }

    /// Feed one line's JSON received at `ts_local` (ns). A line that fails (bad JSON, a wrong
    /// field) changes nothing and is not counted: the collector does not write it.
    pub fn on_line(&mut self, ts_local: i64, json: &str) -> Result<LineKind> {
        let ctx = Ctx { file: &self.file, line: self.line + 1 };
        let msg = parse_msg(&ctx, json)?;
        let (kind, sym, data) = classify(&ctx, &msg)?;
        if let Some(s) = sym {
            if !s.eq_ignore_ascii_case(&self.symbol) {
                return Err(ctx.err("stream", format!("symbol {s} in a feed of {} (one symbol per file)", self.symbol)));
            }
        }
        self.feed.on_message(&ctx, kind, &msg, data, ts_local)?;
        self.line += 1;
        Ok(match kind {
            MsgKind::Depth => LineKind::Depth,
            MsgKind::Snapshot => LineKind::Snapshot,
            MsgKind::BookTicker => LineKind::BookTicker,
            MsgKind::Trade | MsgKind::AggTrade => LineKind::Trade,
            MsgKind::Other => LineKind::Other,
        })
    }

    pub fn phase(&self) -> Phase {
        self.feed.phase()
    }
    /// Lines fed so far.
    pub fn lines(&self) -> u64 {
        self.line
    }
    pub fn instrument(&self) -> &Instrument {
        &self.feed.inst
    }
    pub fn market(&self) -> Market {
        self.feed.market
    }
    /// Canonical events produced since the last [`LiveFeed::clear_events`]: only verified book
    /// changes (snapshot batches, bridged diffs), trades, and `Gap` markers.
    pub fn events(&self) -> &[Event] {
        &self.feed.events
    }
    pub fn clear_events(&mut self) {
        self.feed.events.clear();
    }
    /// Continuity breaks while synced (the loader's `gaps`).
    pub fn gaps(&self) -> u64 {
        self.feed.sync_stats().gaps
    }
    /// The first few continuity breaks (the loader's `first_gaps`).
    pub fn first_gaps(&self) -> &[GapInfo] {
        &self.feed.sync_stats().first_gaps
    }
    /// Snapshots no diff bridged, so far (the loader's `sync_failures`, before end of input).
    pub fn sync_failures(&self) -> &[SyncFailure] {
        &self.feed.sync_stats().sync_failures
    }
    pub fn diffs_applied(&self) -> u64 {
        self.feed.sync_stats().diffs_applied
    }
}
