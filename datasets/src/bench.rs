//! `flowcast data bench`: replay rates of the book layouts on one dataset, measured in the same
//! process so that the ratios (layout vs the BTreeMap baseline) are meaningful on any machine.

use crate::book::{BTreeBook, BookLayout, DenseBook, OrderBook, TopN, VecBook};
use crate::error::{DataError, Result};
use crate::event::Event;
use crate::loaders::{self, Format, ImportOptions};
use crate::report::Report;
use crate::store::{read_dataset, Dataset};
use serde_json::json;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Replay `events` through a book of layout `L`, refreshing a top-`levels` view at every batch
/// end (what feature computation does). Returns seconds per pass (best of `passes`).
pub fn replay_seconds<L: BookLayout>(events: &[Event], starts_synced: bool, levels: usize, passes: usize) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..passes.max(1) {
        let mut book: OrderBook<L> = if starts_synced { OrderBook::new_synced() } else { OrderBook::new_unsynced() };
        let mut top = TopN::new(levels);
        let mut acc = 0i64;
        let t = Instant::now();
        for ev in events {
            book.apply(ev);
            if ev.is_batch_end() {
                book.top_n(&mut top);
                acc = acc.wrapping_add(top.bid_px[0] ^ top.ask_sz[0]);
            }
        }
        black_box(acc);
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn layout_row<L: BookLayout>(ds: &Dataset, passes: usize, l2: usize) -> (String, f64, serde_json::Value) {
    let s = replay_seconds::<L>(&ds.events, ds.meta.starts_synced, ds.meta.levels.max(1), passes);
    let n = ds.events.len() as f64;
    (L::NAME.to_string(), s, json!({"seconds": s, "events_per_s": n / s, "l2_updates_per_s": l2 as f64 / s}))
}

/// Run the benchmark. `data`: a stored dataset (default: synthetic, generated in memory);
/// `lobster`: optional message + orderbook files to time the CSV import on.
/// Keys: `events`, `l2_updates`, `load_seconds`, `layouts.{vec,dense,btree}.{events_per_s,l2_updates_per_s}`,
/// `speedup_vs_btree`, `lobster_import` (`rows_per_s`).
pub fn run(data: Option<&Path>, lobster: &[PathBuf], passes: usize) -> Result<Report> {
    let t = Instant::now();
    let ds = match data {
        Some(d) => read_dataset(d)?,
        None => crate::synth::synth_dataset(10, 500_000, 1)?,
    };
    let load = t.elapsed().as_secs_f64();
    let l2 = ds.events.iter().filter(|e| e.kind.is_level_update()).count();
    let rows = [layout_row::<VecBook>(&ds, passes, l2), layout_row::<DenseBook>(&ds, passes, l2), layout_row::<BTreeBook>(&ds, passes, l2)];
    let base = rows.iter().find(|r| r.0 == BTreeBook::NAME).map(|r| r.1).unwrap_or(f64::NAN);
    let mut layouts = serde_json::Map::new();
    let mut speedups = serde_json::Map::new();
    for (name, s, v) in rows {
        layouts.insert(name.clone(), v);
        speedups.insert(name, json!(base / s));
    }
    let mut r = Report::new(true);
    r.set("dataset", data.map(|d| d.display().to_string()).unwrap_or_else(|| "synthetic (in memory)".into()))
        .set("events", ds.events.len())
        .set("l2_updates", l2)
        .set("load_seconds", load)
        .set("passes", passes)
        .set("layouts", layouts)
        .set("speedup_vs_btree", speedups);
    if !lobster.is_empty() {
        let t = Instant::now();
        let imp = loaders::import(Format::Lobster, lobster, &ImportOptions::default())?;
        let s = t.elapsed().as_secs_f64();
        let n: usize = imp.datasets.iter().map(|d| d.events.len()).sum();
        let msgs = imp.report.get("messages").and_then(|v| v.as_u64()).unwrap_or(0);
        if n == 0 {
            return Err(DataError::Invalid("LOBSTER import produced no events".into()));
        }
        r.set("lobster_import", json!({"seconds": s, "messages": msgs, "rows_per_s": msgs as f64 / s, "events_per_s": n as f64 / s}));
    }
    Ok(r)
}
