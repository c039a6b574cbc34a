//! Feature-engine throughput against the raw book replay of the data layer, measured in the same
//! process (best of a few passes) so the ratios are meaningful on any machine. Not a test: the
//! CLI's `flowcast bench features` calls it.

use super::engine::Engine;
use super::set::FeatureSet;
use super::spec::FeatureSpec;
use crate::bench::replay_seconds;
use crate::book::DenseBook;
use crate::error::Result;
use crate::report::Report;
use crate::store::Dataset;
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

/// Seconds per pass (best of `passes`) of book replay + engine over the dataset, and rows.
fn engine_seconds(ds: &Dataset, set: &FeatureSet, passes: usize) -> Result<(f64, u64)> {
    let mut best = f64::INFINITY;
    let mut rows = 0;
    for _ in 0..passes.max(1) {
        let mut engine = Engine::new(set, &ds.meta)?;
        let mut book = ds.new_book();
        let mut acc = 0.0f64;
        rows = 0;
        let t = Instant::now();
        for ev in &ds.events {
            book.apply(ev);
            if engine.on_event(ev, &book) {
                rows += 1;
                acc += engine.values()[0];
            }
        }
        black_box(acc);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, rows))
}

/// Benchmark the full `set` and best-level OFI alone against `crate::bench::replay_seconds` with
/// the canonical book's default layout (the one `Dataset::new_book` and the engine loop use).
/// Keys: `events`, `rows`, `passes`, `replay.{seconds, events_per_s}`,
/// `full.{features, seconds, events_per_s, rows_per_s, values_per_s, cost_vs_replay}`,
/// `ofi.{…same…}` (cost_vs_replay = engine-loop seconds / replay seconds; both include the book).
pub fn bench(ds: &Dataset, set: &FeatureSet) -> Result<Report> {
    let passes = 3;
    let n = ds.events.len() as f64;
    let replay = replay_seconds::<DenseBook>(&ds.events, ds.meta.starts_synced, ds.meta.levels.max(1), passes);
    let ofi = FeatureSet::new(vec![FeatureSpec { name: "ofi".into(), ..Default::default() }])?;
    let mut r = Report::new(true);
    r.set("events", ds.events.len()).set("passes", passes).set("replay", json!({"seconds": replay, "events_per_s": n / replay}));
    for (key, s) in [("full", set), ("ofi", &ofi)] {
        let (secs, rows) = engine_seconds(ds, s, passes)?;
        r.set("rows", rows);
        r.set(
            key,
            json!({
                "features": s.len(),
                "seconds": secs,
                "events_per_s": n / secs,
                "rows_per_s": rows as f64 / secs,
                "values_per_s": (rows as f64 * s.len() as f64) / secs,
                "cost_vs_replay": secs / replay,
            }),
        );
    }
    Ok(r)
}

/// Per-feature cost: each feature of `set` alone through the engine loop, as a multiple of the
/// book replay. Keys: `replay_seconds`, `features` (rows `{name, seconds, cost_vs_replay}`,
/// most expensive first). Finds the feature that dominates a slow set.
pub fn bench_per_feature(ds: &Dataset, set: &FeatureSet) -> Result<Report> {
    let passes = 3;
    let replay = replay_seconds::<DenseBook>(&ds.events, ds.meta.starts_synced, ds.meta.levels.max(1), passes);
    let mut rows = Vec::new();
    for (spec, name) in set.features.iter().zip(set.names()) {
        let one = FeatureSet::new(vec![spec.clone()])?;
        let (secs, _) = engine_seconds(ds, &one, passes)?;
        rows.push((name, secs));
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut r = Report::new(true);
    r.set("replay_seconds", replay)
        .set("features", rows.iter().map(|(n, s)| json!({"name": n, "seconds": s, "cost_vs_replay": s / replay})).collect::<Vec<_>>());
    Ok(r)
}
