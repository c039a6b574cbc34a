//! The shared half of the cryptofeed book loaders (Coinbase `coinbase.rs`, Kraken `kraken.rs`):
//! the line driver with `--lenient` handling, the [`VenueLoader`] interface with its generic
//! [`run`] / [`import_venue`], instrument inference from the venue's decimal strings, product
//! selection, dataset assembly, and an array type that deserializes small JSON arrays without
//! allocating. The public entry points are in `cryptofeed.rs`, above the venue loaders.
use super::cfline::{parse_cf_line, CfLine};
use super::options::{ImportOptions, Imported};
use super::text;
use crate::book::OrderBook;
use crate::error::{BadLines, DataError, Result};
use crate::event::{close_batch, flags, Event, EventKind, Side};
use crate::instrument::Instrument;
use crate::report::Report;
use crate::store::{Dataset, DatasetMeta, SourceFile};
use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use std::collections::{BTreeSet, HashMap};
use std::marker::PhantomData;
use std::path::PathBuf;

/// Feed every non-blank line of every input (in the order given: the parts of one recording) to
/// `f` as a parsed [`CfLine`]. `f` must be transactional (commit nothing before it can no longer
/// fail) so that `--lenient` can skip a bad line without losing or half-applying anything.
pub(crate) fn for_each_message(
    inputs: &[PathBuf],
    bad: &mut BadLines,
    mut f: impl FnMut(&str, u64, CfLine<'_>) -> Result<()>,
) -> Result<()> {
    if inputs.is_empty() {
        return Err(DataError::Invalid("no input files given".into()));
    }
    for path in inputs {
        let file = path.display().to_string();
        text::for_each_line(path, |n, s| {
            if s.trim().is_empty() {
                return Ok(()); // recordings end with blank lines
            }
            match parse_cf_line(&file, n, s).and_then(|l| f(&file, n, l)) {
                Ok(()) => Ok(()),
                Err(e) => bad.handle(e),
            }
        })?;
    }
    Ok(())
}

/// The venue-specific half of a cryptofeed book loader (Coinbase, Kraken): [`run`] and
/// [`import_venue`] are the shared half.
pub(crate) trait VenueLoader<'o>: Sized {
    type Stats: serde::Serialize + Default;
    /// `meta.json`'s `source_format`.
    const FORMAT: &'static str;
    fn start(opts: &'o ImportOptions) -> Self;
    /// One parsed line; transactional (see [`for_each_message`]).
    fn message(&mut self, loc: Loc, line: CfLine) -> Result<()>;
    fn feeds(&self) -> &Feeds<Self::Stats>;
    fn into_feeds(self) -> Feeds<Self::Stats>;
    /// The import/check report after the last line.
    fn report(&self, bad: &BadLines) -> Report;
}

/// Read every line into a venue loader; the report is the check's report.
pub(crate) fn run<'o, L: VenueLoader<'o>>(inputs: &[PathBuf], opts: &'o ImportOptions) -> Result<(L, Report)> {
    let mut loader = L::start(opts);
    let mut bad = BadLines::new(opts.lenient);
    for_each_message(inputs, &mut bad, |file, line, l| loader.message(Loc { file, line }, l))?;
    loader.feeds().check_symbol(opts)?;
    let report = loader.report(&bad);
    Ok((loader, report))
}

/// One dataset per product that got an instrument (or only `opts.symbol`).
pub(crate) fn import_venue<'o, L: VenueLoader<'o>>(inputs: &[PathBuf], opts: &'o ImportOptions) -> Result<Imported> {
    let (loader, report) = run::<L>(inputs, opts)?;
    let files = source_files(inputs)?;
    let datasets = loader
        .into_feeds()
        .list
        .into_iter()
        .filter_map(|f| {
            let stats = serde_json::to_value(&f.stats).unwrap_or_default();
            Some(dataset(L::FORMAT, f.inst?, opts, files.clone(), f.events, stats))
        })
        .collect();
    Ok(Imported { datasets, report })
}

/// Where a message is, for errors: `file:line`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Loc<'f> {
    pub file: &'f str,
    pub line: u64,
}

impl Loc<'_> {
    pub(crate) fn err(&self, field: &str, reason: impl Into<String>) -> DataError {
        DataError::parse(self.file, self.line, field, reason)
    }
}

/// A price string → ticks on the instrument's grid; must be positive.
pub(crate) fn price(inst: &Instrument, s: &str) -> std::result::Result<i64, String> {
    let p = inst.price_to_ticks(s)?;
    if p <= 0 {
        return Err(format!("price {s} is not positive"));
    }
    Ok(p)
}

/// A size string → lots; must not be negative (0 deletes a level).
pub(crate) fn size(inst: &Instrument, s: &str) -> std::result::Result<i64, String> {
    let q = inst.size_to_lots(s)?;
    if q < 0 {
        return Err(format!("size {s} is negative"));
    }
    Ok(q)
}

/// Push `s()` onto a "first few" list unless it already holds [`BadLines::KEEP`] entries.
pub(crate) fn keep_first(v: &mut Vec<String>, s: impl FnOnce() -> String) {
    if v.len() < BadLines::KEEP {
        v.push(s());
    }
}

/// One product's output: its instrument (set by its first snapshot, from the snapshot's decimals
/// and the overrides), the canonical book and the events. The book is rebuilt by applying exactly the
/// events emitted, so every check (BBO, checksum, crossed) tests what gets stored.
pub(crate) struct Feed<S> {
    pub symbol: String,
    pub inst: Option<Instrument>,
    pub book: OrderBook,
    pub events: Vec<Event>,
    pub stats: S,
}

impl<S> Feed<S> {
    /// Append an event and apply it to the book.
    #[inline]
    pub(crate) fn push(&mut self, ev: Event) {
        self.book.apply(&ev);
        self.events.push(ev);
    }
    /// Mark the last event pushed since `start` as the batch end; true if the book is synced and
    /// crossed there (counted and reported by the caller, never repaired).
    pub(crate) fn end_batch(&mut self, start: usize) -> bool {
        close_batch(&mut self.events, start);
        self.events.len() > start && self.book.is_synced() && self.book.is_crossed()
    }
    /// Continuity lost: the book is invalid until the next snapshot.
    pub(crate) fn gap(&mut self, ts: i64, ts_local: i64, seq: u64, order_id: u64) {
        let ev = Event::new(EventKind::Gap, Side::Bid, 0, 0, ts)
            .with_local(ts_local)
            .with_seq(seq)
            .with_order(order_id)
            .with_flags(flags::BATCH_END);
        self.push(ev);
    }
}

/// The products of a recording: the selected ones as [`Feed`]s, and the names of all seen (to
/// name the alternatives when `--symbol` matches none).
pub(crate) struct Feeds<S> {
    pub list: Vec<Feed<S>>,
    index: HashMap<String, usize>,
    seen: BTreeSet<String>,
}

impl<S: Default> Feeds<S> {
    pub(crate) fn new() -> Self {
        Feeds { list: Vec::new(), index: HashMap::new(), seen: BTreeSet::new() }
    }
    /// The feed of `symbol`, created on first sight; `None` if `opts.symbol` deselects it.
    /// Allocates only the first time a product appears.
    pub(crate) fn get(&mut self, symbol: &str, opts: &ImportOptions) -> Option<usize> {
        if !self.seen.contains(symbol) {
            self.seen.insert(symbol.to_string());
        }
        if !selected(opts, symbol) {
            return None;
        }
        if let Some(&i) = self.index.get(symbol) {
            return Some(i);
        }
        self.list.push(Feed {
            symbol: symbol.to_string(),
            inst: None,
            book: OrderBook::new_unsynced(),
            events: Vec::new(),
            stats: S::default(),
        });
        self.index.insert(symbol.to_string(), self.list.len() - 1);
        Some(self.list.len() - 1)
    }
    /// A reconnect: messages were lost in between, so every synced book gets a `gap` and stays
    /// invalid until the new subscription's snapshot; `count` updates the feed's stats.
    pub(crate) fn gap_all_synced(&mut self, ts: i64, count: impl Fn(&mut S)) {
        for f in self.list.iter_mut().filter(|f| f.book.is_synced()) {
            f.gap(ts, ts, 0, 0);
            count(&mut f.stats);
        }
    }
    /// Error if `opts.symbol` named a product the recording does not have.
    pub(crate) fn check_symbol(&self, opts: &ImportOptions) -> Result<()> {
        match &opts.symbol {
            Some(s) if !self.seen.contains(s) => Err(DataError::Invalid(format!(
                "symbol {s:?} not found in the recording; it has: {}",
                self.seen.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

/// The instrument of a product: tick = one unit of the last decimal the venue writes in prices
/// (`price_decimals`, from [`crate::instrument::written_decimals`]), lot = one unit of the last size decimal, unless `opts.tick_size` /
/// `opts.size_scale` override them. Every later price is then checked to lie on that grid.
pub(crate) fn instrument(
    venue: &str,
    symbol: &str,
    price_decimals: u32,
    size_decimals: u32,
    opts: &ImportOptions,
) -> std::result::Result<Instrument, String> {
    let tick = match &opts.tick_size {
        Some(t) => t.clone(),
        None if price_decimals == 0 => "1".to_string(),
        None => format!("0.{}1", "0".repeat(price_decimals as usize - 1)),
    };
    Instrument::new(venue, symbol, &tick, opts.size_scale.unwrap_or(size_decimals))
}

/// Whether `symbol` is selected by `opts.symbol` (all are when none is given).
pub(crate) fn selected(opts: &ImportOptions, symbol: &str) -> bool {
    opts.symbol.as_deref().is_none_or(|s| s == symbol)
}

/// One dataset of a cryptofeed recording. The book starts unsynced: it becomes valid at the
/// product's first snapshot.
pub(crate) fn dataset(
    source_format: &str,
    instrument: Instrument,
    opts: &ImportOptions,
    source_files: Vec<SourceFile>,
    events: Vec<Event>,
    import_report: serde_json::Value,
) -> Dataset {
    Dataset { meta: DatasetMeta { source_files, import_report, ..DatasetMeta::new(source_format, instrument, opts.levels, false) }, events }
}

pub(crate) fn source_files(inputs: &[PathBuf]) -> Result<Vec<SourceFile>> {
    inputs.iter().map(|p| SourceFile::hash(p)).collect()
}

/// A JSON array that deserializes without allocating when it has at most `N` elements (update
/// messages carry one to a few levels); longer arrays (snapshots) spill into a `Vec`.
#[derive(Clone, Debug)]
pub(crate) struct Inline<T, const N: usize> {
    len: usize,
    head: [T; N],
    rest: Vec<T>,
}

impl<T: Default, const N: usize> Default for Inline<T, N> {
    fn default() -> Self {
        Inline { len: 0, head: std::array::from_fn(|_| T::default()), rest: Vec::new() }
    }
}

impl<T, const N: usize> Inline<T, N> {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.head[..self.len.min(N)].iter().chain(self.rest.iter())
    }
}

impl<'de, T: Deserialize<'de> + Default, const N: usize> Deserialize<'de> for Inline<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Default, const N: usize> Visitor<'de> for V<T, N> {
            type Value = Inline<T, N>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Inline::<T, N>::default();
                while let Some(x) = seq.next_element::<T>()? {
                    if out.len < N {
                        out.head[out.len] = x;
                    } else {
                        out.rest.push(x);
                    }
                    out.len += 1;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V::<T, N>(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_keeps_order_across_spill() {
        let v: Inline<&str, 2> = serde_json::from_str(r#"["a","b","c","d"]"#).unwrap();
        assert_eq!(v.iter().copied().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        let e: Inline<u8, 2> = serde_json::from_str("[]").unwrap();
        assert!(e.is_empty());
        assert!(serde_json::from_str::<Inline<u8, 2>>("{}").is_err());
    }

    #[test]
    fn instrument_from_decimals_and_overrides() {
        let o = ImportOptions::default();
        let i = instrument("kraken", "XBT/USD", 9, 8, &o).unwrap();
        assert_eq!((i.price_scale, i.tick, i.size_scale), (9, 1, 8));
        assert_eq!(i.price_to_ticks("0.000022900"), Ok(22900));
        let i = instrument("coinbase", "X", 0, 0, &o).unwrap();
        assert_eq!((i.price_scale, i.tick), (0, 1));
        let o = ImportOptions { tick_size: Some("0.05".into()), size_scale: Some(3), ..Default::default() };
        let i = instrument("coinbase", "X", 4, 8, &o).unwrap();
        assert_eq!((i.price_scale, i.tick, i.size_scale), (2, 5, 3));
    }
}
