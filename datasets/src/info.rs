//! `flowcast data info`: a summary of a stored dataset.

use crate::error::Result;
use crate::event::EventKind;
use crate::report::Report;
use crate::store::read_dataset;
use crate::time::format_utc;
use serde_json::{json, Map};
use std::path::Path;

/// Summarise the dataset in `dir`. Keys: `events`, `start_ns`, `end_ns`, `start`, `end`,
/// `levels`, `instrument`, `by_kind`, `batches`, `book_rows`, `snapshots`, `gaps`,
/// `first_gaps`, `crossed_batches`, `unsynced_events`, `source_files`.
pub fn info(dir: &Path) -> Result<Report> {
    let ds = read_dataset(dir)?;
    let mut by_kind = Map::new();
    let mut counts = [0u64; EventKind::ALL.len()];
    for e in &ds.events {
        counts[e.kind as usize] += 1;
    }
    for k in EventKind::ALL {
        by_kind.insert(k.name().into(), json!(counts[k as usize]));
    }
    let batches = ds.events.iter().filter(|e| e.is_batch_end()).count();
    let mut book_rows = 0u64;
    let mut crossed = 0u64;
    ds.replay(|_, b| {
        book_rows += 1;
        if b.is_crossed() {
            crossed += 1;
        }
    });
    let mut unsynced = 0u64;
    let mut book = ds.new_book();
    for e in &ds.events {
        book.apply(e);
        if !book.is_synced() {
            unsynced += 1;
        }
    }
    let gaps: Vec<_> = ds
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == EventKind::Gap)
        .map(|(i, e)| json!({"event_index": i, "ts": format_utc(e.ts_exchange), "expected_seq": e.seq, "got_seq": e.order_id}))
        .collect();
    let start = ds.events.first().map(|e| e.ts_exchange).unwrap_or(0);
    let end = ds.events.last().map(|e| e.ts_exchange).unwrap_or(0);
    let mut r = Report::new(true);
    r.set("dir", dir.display().to_string())
        .set("instrument", &ds.meta.instrument)
        .set("source_format", &ds.meta.source_format)
        .set("events", ds.events.len())
        .set("start_ns", start)
        .set("end_ns", end)
        .set("start", format_utc(start))
        .set("end", format_utc(end))
        .set("duration_s", (end - start) as f64 / 1e9)
        .set("levels", ds.meta.levels)
        .set("by_kind", by_kind)
        .set("batches", batches)
        .set("book_rows", book_rows)
        .set("snapshots", counts[EventKind::Snapshot as usize])
        .set("gaps", gaps.len())
        .set("first_gaps", gaps.into_iter().take(10).collect::<Vec<_>>())
        .set("crossed_batches", crossed)
        .set("unsynced_events", unsynced)
        .set("source_files", &ds.meta.source_files);
    Ok(r)
}
