//! Event-by-event input rows and windows: the one code path that turns a stream of canonical
//! events into a model's normalised input windows. [`prepare`](crate::prepare) drives it over a
//! stored dataset ([`RowBuilder`]); the inference server and a live consumer drive it event by
//! event ([`InputStream`]). Same code, same arithmetic: serve-time inputs are the training
//! inputs bit for bit (tested end to end in tests/cli/stream.rs).
//!
//! A row is built at every *sample point* (a batch-end event of a synced book, see
//! `flowcast_datasets::event`): the book columns (per level ask − mid, ask size, bid − mid, bid
//! size; an absent level one tick beyond the previous one with size 0) then the feature engine's
//! values, normalised with the card's training statistics, cast to f32. A window is T
//! consecutive rows of one gap-free segment, all finite (docs/serve.md, "Stream mode").
//!
//! Once built, nothing here allocates per event.

use crate::error::{ContractError, Result};
use crate::preprocessing::{ColumnKind, InputDef};
use flowcast_datasets::features::{Engine, FeatureSet};
use flowcast_datasets::normalize::Normalizer;
use flowcast_datasets::store::DatasetMeta;
use flowcast_datasets::{BookLayout, Event, EventKind, OrderBook, TopN, NO_PRICE, NO_TS};

/// Raw (unnormalised) input columns at each sample point: book levels, then features.
pub struct RowBuilder {
    levels: usize,
    top: TopN,
    engine: Option<Engine>,
    row: Vec<f64>,
}

impl RowBuilder {
    /// Columns of `kind` with `levels` book levels (0 for feature-only inputs) and, unless
    /// `kind` is `Book`, the engine for the fitted feature set `set` on the instrument `meta`.
    pub fn new(kind: ColumnKind, levels: usize, set: Option<&FeatureSet>, meta: &DatasetMeta) -> Result<RowBuilder> {
        let levels = if kind == ColumnKind::Features { 0 } else { levels };
        let engine = match (kind, set) {
            (ColumnKind::Book, _) => None,
            (_, Some(s)) => Some(Engine::new(s, meta)?),
            (_, None) => return Err(ContractError::Invalid("feature columns without a fitted feature set".into())),
        };
        let cols = 4 * levels + engine.as_ref().map_or(0, |e| e.names().len());
        if cols == 0 {
            return Err(ContractError::Invalid("the inputs select no column".into()));
        }
        Ok(RowBuilder { levels, top: TopN::new(levels.max(1)), engine, row: vec![f64::NAN; cols] })
    }

    /// The builder of a card's inputs (`inputs.feature_set` parsed and re-validated).
    pub fn of_inputs(inputs: &InputDef, meta: &DatasetMeta) -> Result<RowBuilder> {
        let set = if inputs.feature_set.is_null() { None } else { Some(FeatureSet::from_json(&inputs.feature_set.to_string())?) };
        let b = RowBuilder::new(inputs.columns, inputs.levels, set.as_ref(), meta)?;
        if b.names() != inputs.names {
            return Err(ContractError::Invalid(format!("input columns differ from the model's: {:?} vs {:?}", b.names(), inputs.names)));
        }
        Ok(b)
    }

    /// Column names, in row order.
    pub fn names(&self) -> Vec<String> {
        let mut n = crate::preprocessing::book_names(self.levels);
        if let Some(e) = &self.engine {
            n.extend(e.names().iter().cloned());
        }
        n
    }

    pub fn columns(&self) -> usize {
        self.row.len()
    }

    /// Call after `book.apply(ev)` for every event; true at a sample point, and then
    /// [`RowBuilder::row`] holds its columns.
    #[inline]
    pub fn on_event<L: BookLayout>(&mut self, ev: &Event, book: &OrderBook<L>) -> bool {
        let sample = match &mut self.engine {
            Some(e) => e.on_event(ev, book),
            None => ev.kind != EventKind::Gap && ev.is_batch_end() && book.is_synced(),
        };
        if sample {
            self.fill(book);
        }
        sample
    }

    fn fill<L: BookLayout>(&mut self, book: &OrderBook<L>) {
        let bc = 4 * self.levels;
        if bc > 0 {
            book.top_n(&mut self.top);
            let mid = book.mid().unwrap_or(f64::NAN);
            let (mut last_ask, mut last_bid) = (f64::NAN, f64::NAN);
            let t = &self.top;
            for l in 0..self.levels {
                let ask = if t.ask_px[l] != NO_PRICE { t.ask_px[l] as f64 - mid } else { last_ask + 1.0 };
                let bid = if t.bid_px[l] != NO_PRICE { t.bid_px[l] as f64 - mid } else { last_bid - 1.0 };
                self.row[4 * l..4 * l + 4].copy_from_slice(&[ask, t.ask_sz[l] as f64, bid, t.bid_sz[l] as f64]);
                last_ask = ask;
                last_bid = bid;
            }
        }
        if let Some(e) = &self.engine {
            self.row[bc..].copy_from_slice(e.values());
        }
    }

    /// The raw columns of the last sample point.
    #[inline]
    pub fn row(&self) -> &[f64] {
        &self.row
    }

    /// What the feature engine detected so far (crossed samples, resets, overflows).
    pub fn diagnostics(&self) -> Option<flowcast_datasets::features::Diagnostics> {
        self.engine.as_ref().map(|e| e.diagnostics())
    }
}

/// Normalises one raw row (in place) and writes it as f32 into `out`; true when every value is
/// finite (the row may be part of a window). The arithmetic of `prepare`'s matrix.
#[inline]
pub fn normalise_row(norm: &Normalizer, raw: &mut [f64], out: &mut [f32]) -> bool {
    norm.apply_row(raw);
    let mut ok = true;
    for (o, &v) in out.iter_mut().zip(raw.iter()) {
        *o = v as f32;
        ok &= o.is_finite();
    }
    ok
}

/// Why an event was refused (the stream's state is unchanged).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StreamError {
    #[error("event {index}: {clock} {ts} is before the previous event's {last} (events must be in time order)")]
    OutOfOrder { index: u64, clock: &'static str, ts: i64, last: i64 },
    #[error("event {index}: the book holds {levels} levels on one side, above this stream's limit of {limit}")]
    BookTooDeep { index: u64, levels: usize, limit: usize },
}

/// The order check of one event `(ts_exchange, ts_local)` against the last clocks seen.
#[inline]
fn order(index: u64, (ts, local): (i64, i64), (last_ts, last_local): (i64, i64)) -> Result<(), StreamError> {
    if local != NO_TS {
        if local < last_local {
            return Err(StreamError::OutOfOrder { index, clock: "ts_local", ts: local, last: last_local });
        }
    } else if ts < last_ts {
        return Err(StreamError::OutOfOrder { index, clock: "ts_exchange", ts, last: last_ts });
    }
    Ok(())
}

/// What one event did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The event was a sample point (a row was built).
    pub sample: bool,
    /// A full window ends at this row: [`InputStream::window`] holds it.
    pub window: bool,
    /// The event was a `Gap`: book, features and window were reset.
    pub gap: bool,
    /// The book is crossed at this sample point (values are still computed, as offline).
    pub crossed: bool,
}

/// Per-stream state of stream mode: the canonical book, the row builder (with the streaming
/// feature engine) and a ring of the last T normalised rows. Allocation-free per event.
pub struct InputStream {
    book: OrderBook,
    rows: RowBuilder,
    norm: Normalizer,
    t: usize,
    f: usize,
    /// Two copies of a T-row ring (row r at slots r mod T and r mod T + T), so the last T rows
    /// are always one contiguous slice.
    ring: Vec<f32>,
    slot: usize,
    /// Consecutive finite rows since the last reset (gap or non-finite row).
    run: usize,
    /// Last `ts_local` and `ts_exchange` seen (the order check, see [`InputStream::push`]).
    last_local: i64,
    last_ts: i64,
    events: u64,
    samples: u64,
    max_levels: usize,
}

impl InputStream {
    /// A stream for the card's `inputs` on an instrument described by `meta` (its venue and
    /// source format matter to time features; `meta.starts_synced` says whether the book is
    /// valid before a first `Snapshot`). `max_levels` bounds the book's levels per side.
    pub fn new(inputs: &InputDef, meta: &DatasetMeta, max_levels: usize) -> Result<InputStream> {
        let rows = RowBuilder::of_inputs(inputs, meta)?;
        inputs.normalizer.check_names(&inputs.names)?;
        let (t, f) = (inputs.window, rows.columns());
        if t == 0 {
            return Err(ContractError::Invalid("window length 0".into()));
        }
        let book = if meta.starts_synced { OrderBook::new_synced() } else { OrderBook::new_unsynced() };
        Ok(InputStream {
            book,
            rows,
            norm: inputs.normalizer.clone(),
            t,
            f,
            ring: vec![0.0; 2 * t * f],
            slot: 0,
            run: 0,
            last_local: i64::MIN,
            last_ts: i64::MIN,
            events: 0,
            samples: 0,
            max_levels,
        })
    }

    /// Window length T and columns F.
    pub fn shape(&self) -> (usize, usize) {
        (self.t, self.f)
    }
    /// Events accepted so far (the index the next event gets).
    pub fn events(&self) -> u64 {
        self.events
    }
    /// Sample points (rows) so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }
    pub fn book(&self) -> &OrderBook {
        &self.book
    }
    /// Bytes this stream holds besides the book's far-level map (ring, row, dense book).
    pub fn fixed_bytes(&self) -> usize {
        self.ring.len() * 4 + self.rows.columns() * 8 + std::mem::size_of::<OrderBook>() + 2 * 4096 * 8
    }

    /// Applies one event. An event older than the previous one is refused (state unchanged).
    /// "Older" on the clock the canonical stream is ordered by: the local receive time where
    /// the source has one (exchange feeds merge streams whose exchange times interleave, e.g.
    /// Binance trades and depth updates), else the exchange time (LOBSTER).
    #[inline]
    pub fn push(&mut self, ev: &Event) -> Result<Step, StreamError> {
        let index = self.events;
        order(index, (ev.ts_exchange, ev.ts_local), (self.last_ts, self.last_local))?;
        self.book.apply(ev);
        if ev.ts_local != NO_TS {
            self.last_local = ev.ts_local;
        }
        self.last_ts = ev.ts_exchange;
        self.events += 1;
        if ev.kind.is_level_update() {
            let d = self.book.layout.depth(ev.side);
            if d > self.max_levels {
                return Err(StreamError::BookTooDeep { index, levels: d, limit: self.max_levels });
            }
        }
        let mut step = Step::default();
        if ev.kind == EventKind::Gap {
            self.run = 0;
            step.gap = true;
        }
        if !self.rows.on_event(ev, &self.book) {
            return Ok(step);
        }
        step.sample = true;
        step.crossed = self.book.is_crossed();
        self.samples += 1;
        let (t, f) = (self.t, self.f);
        self.slot = if self.slot + 1 >= t { 0 } else { self.slot + 1 };
        let s = self.slot;
        let raw = &mut self.rows.row;
        let (lo, hi) = self.ring.split_at_mut(t * f);
        let ok = normalise_row(&self.norm, raw, &mut lo[s * f..(s + 1) * f]);
        hi[s * f..(s + 1) * f].copy_from_slice(&lo[s * f..(s + 1) * f]);
        self.run = if ok { self.run + 1 } else { 0 };
        step.window = self.run >= t;
        Ok(step)
    }

    /// Whether events with these `(ts_exchange, ts_local)` clocks, pushed in order, would all pass
    /// [`InputStream::push`]'s order check; nothing changes. The error's index is the stream index
    /// the refused one would have had (so `index − events()` is its position in `clocks`).
    pub fn check_order(&self, clocks: impl IntoIterator<Item = (i64, i64)>) -> Result<(), StreamError> {
        let mut last = (self.last_ts, self.last_local);
        for (k, c) in clocks.into_iter().enumerate() {
            order(self.events + k as u64, c, last)?;
            last = (c.0, if c.1 != NO_TS { c.1 } else { last.1 });
        }
        Ok(())
    }

    /// The last T rows, oldest first, `[T × F]` row-major (meaningful when the last
    /// [`Step::window`] was true).
    #[inline]
    pub fn window(&self) -> &[f32] {
        let (t, f) = (self.t, self.f);
        let start = (self.slot + 1) % t;
        &self.ring[start * f..(start + t) * f]
    }

    /// Forget everything but the configuration (a fresh stream).
    pub fn reset(&mut self, starts_synced: bool) {
        self.book = if starts_synced { OrderBook::new_synced() } else { OrderBook::new_unsynced() };
        if let Some(e) = &mut self.rows.engine {
            e.reset();
        }
        self.run = 0;
        self.last_local = i64::MIN;
        self.last_ts = i64::MIN;
    }
}
