//! The Parquet store: one dataset = one directory.
//!
//! ```text
//! <dir>/meta.json        DatasetMeta: instrument, units, source files + SHA-256, loader version, report
//! <dir>/events.parquet   every canonical Event, in order (columns below)
//! <dir>/book.parquet     top-N book after every batch-end event while the book is synced
//! ```
//! `events.parquet`: `ts_exchange`, `ts_local` (timestamp[ns, UTC]; `ts_local` null when unknown),
//! `seq`, `order_id` (uint64), `price` (int64 ticks), `size` (int64 lots), `kind`, `side`, `flags`
//! (uint8; codes in `event.rs`). `book.parquet`: `event_index` (uint64, row of the batch-end event
//! in events.parquet), `ts_exchange`, then `bid_px_1..N`, `bid_sz_1..N`, `ask_px_1..N`,
//! `ask_sz_1..N` (int64; an absent level has null price and size 0).

use crate::book::{OrderBook, TopN, NO_PRICE};
use crate::error::{DataError, Result};
use crate::event::{Event, EventKind, Side, NO_TS};
use crate::instrument::Instrument;
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, TimestampNanosecondArray, UInt64Array, UInt8Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bumped whenever the on-disk layout changes.
pub const STORE_FORMAT_VERSION: u32 = 1;
/// Version of the loaders, recorded in every dataset.
pub const LOADER_VERSION: &str = env!("CARGO_PKG_VERSION");
const ROW_GROUP: usize = 1 << 20;

/// A source file a dataset was built from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

impl SourceFile {
    pub fn hash(path: &Path) -> Result<SourceFile> {
        let data = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let digest = Sha256::digest(&data);
        Ok(SourceFile {
            path: path.display().to_string(),
            bytes: data.len() as u64,
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// `meta.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    pub store_format: u32,
    pub loader_version: String,
    /// Loader / format name ("lobster", "binance", "synth", ...).
    pub source_format: String,
    pub instrument: Instrument,
    /// Depth of the stored top-N snapshots.
    pub levels: usize,
    /// True if the book is valid from the first event (LOBSTER, synthetic); false if it becomes
    /// valid at the first `Snapshot` event (exchange feeds).
    pub starts_synced: bool,
    pub source_files: Vec<SourceFile>,
    /// The loader's import report (sync failures, gaps, bad lines, ...), as JSON.
    #[serde(default)]
    pub import_report: serde_json::Value,
}

impl DatasetMeta {
    /// Metadata of a dataset written by this flowcast version (current store format and loader
    /// version), with no source files and an empty import report; loaders fill those in.
    pub fn new(source_format: &str, instrument: Instrument, levels: usize, starts_synced: bool) -> DatasetMeta {
        DatasetMeta {
            store_format: STORE_FORMAT_VERSION,
            loader_version: LOADER_VERSION.into(),
            source_format: source_format.into(),
            instrument,
            levels,
            starts_synced,
            source_files: vec![],
            import_report: serde_json::Value::Null,
        }
    }
}

/// A loaded dataset: metadata plus the canonical event stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub meta: DatasetMeta,
    pub events: Vec<Event>,
}

impl Dataset {
    /// A fresh book in the right initial state for this dataset.
    pub fn new_book(&self) -> OrderBook {
        if self.meta.starts_synced {
            OrderBook::new_synced()
        } else {
            OrderBook::new_unsynced()
        }
    }

    /// Replay the events through a book, calling `f(event_index, book)` after every batch-end
    /// event while the book is synced. The single replay loop every consumer shares.
    pub fn replay(&self, mut f: impl FnMut(usize, &OrderBook)) {
        let mut book = self.new_book();
        for (i, ev) in self.events.iter().enumerate() {
            book.apply(ev);
            if ev.is_batch_end() && book.is_synced() {
                f(i, &book);
            }
        }
    }
}

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), nullable)
}

fn events_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        ts_field("ts_exchange", false),
        ts_field("ts_local", true),
        Field::new("seq", DataType::UInt64, false),
        Field::new("order_id", DataType::UInt64, false),
        Field::new("price", DataType::Int64, false),
        Field::new("size", DataType::Int64, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("side", DataType::UInt8, false),
        Field::new("flags", DataType::UInt8, false),
    ]))
}

fn book_schema(levels: usize) -> Arc<Schema> {
    let mut fields = vec![Field::new("event_index", DataType::UInt64, false), ts_field("ts_exchange", false)];
    for (prefix, nullable) in [("bid_px", true), ("bid_sz", false), ("ask_px", true), ("ask_sz", false)] {
        for l in 1..=levels {
            fields.push(Field::new(format!("{prefix}_{l}"), DataType::Int64, nullable));
        }
    }
    Arc::new(Schema::new(fields))
}

fn writer(path: &Path, schema: Arc<Schema>) -> Result<ArrowWriter<File>> {
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(ROW_GROUP)).build();
    ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| store_err(path, e))
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Store { path: path.to_path_buf(), msg: e.to_string() }
}

fn events_batch(schema: &Arc<Schema>, evs: &[Event]) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(TimestampNanosecondArray::from_iter_values(evs.iter().map(|e| e.ts_exchange)).with_timezone("UTC")),
        Arc::new(TimestampNanosecondArray::from_iter(evs.iter().map(|e| (e.ts_local != NO_TS).then_some(e.ts_local))).with_timezone("UTC")),
        Arc::new(UInt64Array::from_iter_values(evs.iter().map(|e| e.seq))),
        Arc::new(UInt64Array::from_iter_values(evs.iter().map(|e| e.order_id))),
        Arc::new(Int64Array::from_iter_values(evs.iter().map(|e| e.price))),
        Arc::new(Int64Array::from_iter_values(evs.iter().map(|e| e.size))),
        Arc::new(UInt8Array::from_iter_values(evs.iter().map(|e| e.kind as u8))),
        Arc::new(UInt8Array::from_iter_values(evs.iter().map(|e| e.side as u8))),
        Arc::new(UInt8Array::from_iter_values(evs.iter().map(|e| e.flags))),
    ];
    RecordBatch::try_new(schema.clone(), cols)
}

/// Columns of book.parquet accumulated in memory for one row group.
struct BookCols {
    idx: Vec<u64>,
    ts: Vec<i64>,
    /// [bid_px, bid_sz, ask_px, ask_sz] × level, each a column.
    cols: Vec<Vec<i64>>,
    levels: usize,
}

impl BookCols {
    fn new(levels: usize) -> BookCols {
        BookCols { idx: Vec::new(), ts: Vec::new(), cols: vec![Vec::new(); 4 * levels], levels }
    }
    fn push(&mut self, i: usize, ts: i64, t: &TopN) {
        self.idx.push(i as u64);
        self.ts.push(ts);
        let n = self.levels;
        for l in 0..n {
            self.cols[l].push(t.bid_px[l]);
            self.cols[n + l].push(t.bid_sz[l]);
            self.cols[2 * n + l].push(t.ask_px[l]);
            self.cols[3 * n + l].push(t.ask_sz[l]);
        }
    }
    fn take_batch(&mut self, schema: &Arc<Schema>) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
        let n = self.levels;
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(std::mem::take(&mut self.idx))),
            Arc::new(TimestampNanosecondArray::from(std::mem::take(&mut self.ts)).with_timezone("UTC")),
        ];
        for (c, col) in self.cols.iter_mut().enumerate() {
            let v = std::mem::take(col);
            let is_px = c < n || (2 * n..3 * n).contains(&c);
            if is_px {
                cols.push(Arc::new(Int64Array::from_iter(v.into_iter().map(|p| (p != NO_PRICE).then_some(p)))));
            } else {
                cols.push(Arc::new(Int64Array::from(v)));
            }
        }
        RecordBatch::try_new(schema.clone(), cols)
    }
}

/// Write a dataset directory (creating it). The top-N snapshots are produced by replaying the
/// events through the canonical book, so they can never disagree with the events.
pub fn write_dataset(dir: &Path, ds: &Dataset) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let meta_path = dir.join("meta.json");
    let meta_json = serde_json::to_string_pretty(&ds.meta).map_err(|e| DataError::Invalid(e.to_string()))?;
    std::fs::write(&meta_path, meta_json).map_err(|e| DataError::io(&meta_path, e))?;

    let ev_path = dir.join("events.parquet");
    let schema = events_schema();
    let mut w = writer(&ev_path, schema.clone())?;
    for chunk in ds.events.chunks(ROW_GROUP) {
        let batch = events_batch(&schema, chunk).map_err(|e| store_err(&ev_path, e))?;
        w.write(&batch).map_err(|e| store_err(&ev_path, e))?;
    }
    w.close().map_err(|e| store_err(&ev_path, e))?;

    let book_path = dir.join("book.parquet");
    let levels = ds.meta.levels;
    let bschema = book_schema(levels);
    let mut bw = writer(&book_path, bschema.clone())?;
    let mut cols = BookCols::new(levels);
    let mut top = TopN::new(levels);
    let mut err: Option<DataError> = None;
    ds.replay(|i, book| {
        if err.is_some() {
            return;
        }
        book.top_n(&mut top);
        cols.push(i, ds.events[i].ts_exchange, &top);
        if cols.idx.len() >= ROW_GROUP {
            let r = cols
                .take_batch(&bschema)
                .map_err(|e| store_err(&book_path, e))
                .and_then(|b| bw.write(&b).map_err(|e| store_err(&book_path, e)));
            if let Err(e) = r {
                err = Some(e);
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    let b = cols.take_batch(&bschema).map_err(|e| store_err(&book_path, e))?;
    bw.write(&b).map_err(|e| store_err(&book_path, e))?;
    bw.close().map_err(|e| store_err(&book_path, e))?;
    Ok(())
}

pub fn read_meta(dir: &Path) -> Result<DatasetMeta> {
    let p = dir.join("meta.json");
    let s = std::fs::read_to_string(&p).map_err(|e| DataError::io(&p, e))?;
    let meta: DatasetMeta =
        serde_json::from_str(&s).map_err(|e| DataError::parse(&p.display().to_string(), e.line() as u64, "meta", e.to_string()))?;
    if meta.store_format != STORE_FORMAT_VERSION {
        return Err(DataError::Invalid(format!(
            "{}: store format {} is not supported (expected {STORE_FORMAT_VERSION})",
            p.display(),
            meta.store_format
        )));
    }
    Ok(meta)
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| store_err(path, format!("column {name} missing or of the wrong type")))
}

/// Read `events.parquet` + `meta.json`.
pub fn read_dataset(dir: &Path) -> Result<Dataset> {
    let meta = read_meta(dir)?;
    let path = dir.join("events.parquet");
    let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| store_err(&path, e))?;
    let total = builder.metadata().file_metadata().num_rows() as usize;
    let reader = builder.with_batch_size(65536).build().map_err(|e| store_err(&path, e))?;
    let mut events = Vec::with_capacity(total);
    let mut row = 0u64;
    for batch in reader {
        let b = batch.map_err(|e| store_err(&path, e))?;
        let ts = col::<TimestampNanosecondArray>(&b, "ts_exchange", &path)?;
        let tl = col::<TimestampNanosecondArray>(&b, "ts_local", &path)?;
        let seq = col::<UInt64Array>(&b, "seq", &path)?;
        let oid = col::<UInt64Array>(&b, "order_id", &path)?;
        let px = col::<Int64Array>(&b, "price", &path)?;
        let sz = col::<Int64Array>(&b, "size", &path)?;
        let kind = col::<UInt8Array>(&b, "kind", &path)?;
        let side = col::<UInt8Array>(&b, "side", &path)?;
        let fl = col::<UInt8Array>(&b, "flags", &path)?;
        for i in 0..b.num_rows() {
            row += 1;
            let bad = |field: &str, v: u8| DataError::parse(&path.display().to_string(), row, field, format!("invalid code {v}"));
            events.push(Event {
                ts_exchange: ts.value(i),
                ts_local: if tl.is_null(i) { NO_TS } else { tl.value(i) },
                seq: seq.value(i),
                order_id: oid.value(i),
                price: px.value(i),
                size: sz.value(i),
                kind: EventKind::from_u8(kind.value(i)).ok_or_else(|| bad("kind", kind.value(i)))?,
                side: Side::from_u8(side.value(i)).ok_or_else(|| bad("side", side.value(i)))?,
                flags: fl.value(i),
            });
        }
    }
    Ok(Dataset { meta, events })
}

/// One stored top-N row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookRow {
    pub event_index: u64,
    pub ts_exchange: i64,
    pub top: TopN,
}

/// Read `book.parquet` (all rows; datasets here are small enough to hold).
pub fn read_book(dir: &Path, levels: usize) -> Result<Vec<BookRow>> {
    let path = dir.join("book.parquet");
    let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| store_err(&path, e))?
        .with_batch_size(65536)
        .build()
        .map_err(|e| store_err(&path, e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let b = batch.map_err(|e| store_err(&path, e))?;
        let idx = col::<UInt64Array>(&b, "event_index", &path)?;
        let ts = col::<TimestampNanosecondArray>(&b, "ts_exchange", &path)?;
        let mut cs: Vec<&Int64Array> = Vec::with_capacity(4 * levels);
        for prefix in ["bid_px", "bid_sz", "ask_px", "ask_sz"] {
            for l in 1..=levels {
                cs.push(col::<Int64Array>(&b, &format!("{prefix}_{l}"), &path)?);
            }
        }
        let get = |c: &Int64Array, i: usize| if c.is_null(i) { NO_PRICE } else { c.value(i) };
        for i in 0..b.num_rows() {
            let mut t = TopN::new(levels);
            for l in 0..levels {
                t.bid_px[l] = get(cs[l], i);
                t.bid_sz[l] = cs[levels + l].value(i);
                t.ask_px[l] = get(cs[2 * levels + l], i);
                t.ask_sz[l] = cs[3 * levels + l].value(i);
            }
            rows.push(BookRow { event_index: idx.value(i), ts_exchange: ts.value(i), top: t });
        }
    }
    Ok(rows)
}

/// Default dataset directory name for an instrument.
pub fn default_dir(base: &Path, inst: &Instrument) -> PathBuf {
    base.join(format!("{}_{}", inst.venue, inst.symbol).replace(['/', ' '], "-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::flags;

    fn sample() -> Dataset {
        let inst = Instrument::new("test", "XYZ", "0.01", 0).unwrap();
        let mut events = vec![
            Event::new(EventKind::Snapshot, Side::Bid, 0, 0, 1).with_seq(10),
            Event::level(Side::Bid, 100, 5, 1).with_flags(flags::SNAPSHOT),
            Event::level(Side::Ask, 102, 7, 1).with_flags(flags::SNAPSHOT | flags::BATCH_END),
            Event::new(EventKind::OrderAdd, Side::Bid, 101, 3, 2).with_order(42).with_local(5),
            Event::level(Side::Bid, 101, 3, 2).with_flags(flags::BATCH_END),
            Event::new(EventKind::Trade, Side::Ask, 101, 1, 3).with_flags(flags::BATCH_END),
            Event::new(EventKind::Gap, Side::Bid, 0, 0, 4).with_seq(u64::MAX).with_flags(flags::BATCH_END),
            Event::level(Side::Bid, -5, i64::MAX, i64::MAX).with_flags(flags::BATCH_END),
        ];
        events[3].ts_local = -1;
        Dataset { meta: DatasetMeta { import_report: serde_json::json!({"k": 1}), ..DatasetMeta::new("test", inst, 3, false) }, events }
    }

    #[test]
    fn parquet_roundtrip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let ds = sample();
        write_dataset(dir.path(), &ds).unwrap();
        let back = read_dataset(dir.path()).unwrap();
        assert_eq!(back, ds);
        let rows = read_book(dir.path(), 3).unwrap();
        // Book rows: after snapshot end (2), after add (4), after trade (5); the gap unsyncs (6, 7 skipped).
        assert_eq!(rows.iter().map(|r| r.event_index).collect::<Vec<_>>(), vec![2, 4, 5]);
        assert_eq!(rows[1].top.bid_px, vec![101, 100, NO_PRICE]);
        assert_eq!(rows[1].top.bid_sz, vec![3, 5, 0]);
        assert_eq!(rows[1].top.ask_px, vec![102, NO_PRICE, NO_PRICE]);
    }

    #[test]
    fn missing_dataset_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_dataset(dir.path()).unwrap_err().to_string();
        assert!(err.contains("meta.json"), "{err}");
    }
}
