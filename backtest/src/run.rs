//! `flowcast backtest`: config + dataset → replay (and the latency sweep) → run directory:
//! `backtest.toml` (as given), `config.json` (resolved), `orders.parquet`, `fills.parquet`,
//! `positions.parquet` (the equity marks), `trips.parquet`, `metrics.json`, `report.html`.

use crate::config::BacktestConfig;
use crate::engine::{self, Outcome, Setup};
use crate::error::{BacktestError, Result};
use crate::exchange::Exchange;
use crate::metrics::{self, Metrics, SweepPoint};
use crate::models::latency::duration_ns;
use crate::models::LatencySpec;
use crate::signals::Signals;
use crate::strategy::tags;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, Int8Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use flowcast_datasets::Dataset;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct BacktestResult {
    pub run_dir: PathBuf,
    pub metrics: Metrics,
    pub sweep: Vec<SweepPoint>,
    pub summary: Value,
}

/// Replays `ds` once with `latency` as the order latency.
pub fn replay(cfg: &BacktestConfig, ds: &Dataset, signals: &Signals, latency: &LatencySpec) -> Result<Outcome> {
    let inst = ds.meta.instrument.clone();
    let exchange = Exchange::new(cfg.exchange.fill, cfg.exchange.queue.build(), cfg.impact.build(), cfg.fees.build(), inst.clone());
    // The dataset's feed latencies only matter to a log-normal fitted on them.
    let feed = if matches!(latency, LatencySpec::Lognormal { mu: None, .. }) { engine::feed_latencies(ds) } else { Vec::new() };
    let model_latency_ns = match cfg.signal.as_ref().map(|s| s.model_latency.as_str()) {
        Some("measured") => signals.compute_ns_per_window.map(|x| x.round() as i64).unwrap_or(0),
        Some(s) => duration_ns(s, "signal.model_latency")?,
        None => 0,
    };
    let setup = Setup {
        exchange,
        latency: latency.build(&feed, cfg.seed)?,
        strategy: cfg.strategy.build(&inst)?,
        limits: cfg.risk.resolve(&inst)?,
        feed_latency_ns: cfg.exchange.feed_latency.as_deref().map(|s| duration_ns(s, "exchange.feed_latency")).transpose()?.unwrap_or(0),
        mark_interval_ns: duration_ns(&cfg.report.bar, "report.bar")?.max(1),
        signals: signals.points.clone(),
        model_latency_ns,
        trade_from_event: cfg.segment.as_ref().map_or(0, |g| g.from_event as usize),
    };
    engine::run(ds, setup)
}

fn horizons(cfg: &BacktestConfig) -> Result<Vec<(String, i64)>> {
    cfg.report.horizons.iter().map(|h| Ok((h.clone(), duration_ns(h, "report.horizons")?))).collect()
}

pub fn metrics_of(cfg: &BacktestConfig, o: &Outcome) -> Result<Metrics> {
    Ok(metrics::compute(o, duration_ns(&cfg.report.bar, "report.bar")?.max(1), cfg.report.calendar, &horizons(cfg)?))
}

/// Runs the whole backtest and writes its run directory under `cfg.runs_dir`.
pub fn run_backtest(cfg: &BacktestConfig, ds: &Dataset, toml_text: Option<&str>) -> Result<BacktestResult> {
    // Signals on the whole data (the model card's data hash, hence the in-sample guard, refers
    // to it), then the segment's cut.
    let until = cfg.segment.as_ref().and_then(|g| g.to_event).filter(|&to| (to as usize) < ds.events.len());
    let signals = Signals::of_until(cfg.signal.as_ref(), ds, until)?;
    let cut;
    let ds = match until {
        Some(to) => {
            cut = Dataset { meta: ds.meta.clone(), events: ds.events[..to as usize].to_vec() };
            &cut
        }
        None => ds,
    };
    let t0 = std::time::Instant::now();
    let outcome = replay(cfg, ds, &signals, &cfg.latency)?;
    let replay_s = t0.elapsed().as_secs_f64();
    let m = metrics_of(cfg, &outcome)?;
    let mut sweep = Vec::new();
    for l in &cfg.latency_sweep {
        let ns = duration_ns(l, "latency_sweep")?;
        let o = replay(cfg, ds, &signals, &LatencySpec::constant(ns, ns))?;
        let sm = metrics_of(cfg, &o)?;
        sweep.push(SweepPoint {
            latency: l.clone(),
            latency_ns: ns,
            net_pnl: sm.net_pnl,
            gross_pnl: sm.gross_pnl,
            fill_rate: sm.fill_rate,
            trades: sm.trades,
            sharpe: sm.sharpe,
        });
    }
    let dir = cfg.runs_dir.join(format!("{}-{}", cfg.name, flowcast_datasets::time::now_stamp()));
    let dir = unique_dir(&dir)?;
    if let Some(t) = toml_text {
        write(&dir.join("backtest.toml"), t.as_bytes())?;
    }
    write(&dir.join("config.json"), (serde_json::to_string_pretty(cfg).expect("json") + "\n").as_bytes())?;
    write_orders(&dir.join("orders.parquet"), &outcome)?;
    write_fills(&dir.join("fills.parquet"), &outcome)?;
    write_marks(&dir.join("positions.parquet"), &outcome)?;
    write_trips(&dir.join("trips.parquet"), &outcome)?;
    let summary = json!({
        "run_dir": dir.display().to_string(),
        "name": cfg.name,
        "strategy": outcome.strategy,
        "dataset": {
            "instrument": ds.meta.instrument.to_string(),
            "source_format": ds.meta.source_format,
            "events": ds.events.len(),
            "events_sha256": flowcast_contract::prepare::events_hash(ds),
        },
        "models": {
            "queue": outcome.queue_model,
            "fill": cfg.exchange.fill,
            "latency": outcome.latency_model,
            "fees": cfg.fees,
            "impact": cfg.impact,
        },
        "signal": {
            "source": signals.source,
            "points": signals.points.len(),
            "dropped_in_sample": signals.dropped_in_sample,
            "windows_predicted": signals.windows_predicted,
            "compute_ns_per_window": signals.compute_ns_per_window,
            "rule": signals.rule,
        },
        // What was traded: the first event the strategy could act on, and the first order sent
        // and last fill (local and exchange clocks).
        "activity": {
            "trade_from_event": cfg.segment.as_ref().map_or(0, |g| g.from_event),
            "trade_from_ns": ds.events.get(cfg.segment.as_ref().map_or(0, |g| g.from_event as usize)).map(|e| e.ts_exchange),
            "events_to": ds.events.len(),
            "last_event_ns": ds.events.last().map(|e| e.ts_exchange),
            "first_order_sent_ns": outcome.orders.iter().map(|o| o.ts_sent).min(),
            "last_fill_ns": outcome.fills.iter().map(|f| f.ts_exchange).max(),
        },
        "clock_offset_ns": outcome.clock_offset_ns,
        "replay_seconds": replay_s,
        "events_per_second": ds.events.len() as f64 / replay_s.max(1e-9),
        "metrics": m,
        "latency_sweep": sweep,
    });
    write(&dir.join("metrics.json"), (serde_json::to_string_pretty(&summary).expect("json") + "\n").as_bytes())?;
    if cfg.report.html {
        let html = crate::report::render(cfg, &outcome, &m, &sweep, &summary)?;
        write(&dir.join("report.html"), html.as_bytes())?;
    }
    Ok(BacktestResult { run_dir: dir, metrics: m, sweep, summary })
}

/// `dir`, or `dir-1`, `dir-2`, ... if it exists, created.
pub fn unique_dir(dir: &Path) -> Result<PathBuf> {
    let mut d = dir.to_path_buf();
    let mut k = 1;
    while d.exists() {
        d = PathBuf::from(format!("{}-{k}", dir.display()));
        k += 1;
    }
    std::fs::create_dir_all(&d).map_err(|e| BacktestError::io(&d, e))?;
    Ok(d)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| BacktestError::io(path, e))
}

fn ts(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
}

fn ts_field(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false)
}

fn write_parquet(path: &Path, fields: Vec<Field>, cols: Vec<ArrayRef>) -> Result<()> {
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| BacktestError::file(path, e))?;
    let file = std::fs::File::create(path).map_err(|e| BacktestError::io(path, e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).map_err(|e| BacktestError::file(path, e))?;
    w.write(&batch).map_err(|e| BacktestError::file(path, e))?;
    w.close().map_err(|e| BacktestError::file(path, e))?;
    Ok(())
}

fn write_orders(path: &Path, o: &Outcome) -> Result<()> {
    let r = &o.orders;
    let s =
        |f: &dyn Fn(&crate::order::Order) -> &'static str| -> ArrayRef { Arc::new(StringArray::from(r.iter().map(f).collect::<Vec<_>>())) };
    write_parquet(
        path,
        vec![
            Field::new("order_id", DataType::UInt64, false),
            Field::new("side", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("price", DataType::Int64, false),
            Field::new("qty", DataType::Int64, false),
            Field::new("filled", DataType::Int64, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("tag", DataType::Utf8, false),
            ts_field("ts_sent"),
            ts_field("ts_arrived"),
            ts_field("ts_done"),
            Field::new("arrival_mid", DataType::Float64, false),
        ],
        vec![
            Arc::new(UInt64Array::from_iter_values(r.iter().map(|x| x.id))),
            s(&|x| x.side.as_str()),
            s(&|x| x.kind.as_str()),
            Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.price))),
            Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.qty))),
            Arc::new(Int64Array::from_iter_values(r.iter().map(|x| x.filled))),
            s(&|x| x.status.as_str()),
            Arc::new(StringArray::from(
                r.iter()
                    .map(|x| serde_json::to_value(x.reason).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default())
                    .collect::<Vec<_>>(),
            )),
            s(&|x| tags::name(x.tag)),
            ts(r.iter().map(|x| x.ts_sent).collect()),
            ts(r.iter().map(|x| x.ts_arrived).collect()),
            ts(r.iter().map(|x| x.ts_done).collect()),
            Arc::new(Float64Array::from_iter_values(r.iter().map(|x| x.arrival_mid))),
        ],
    )
}

fn write_fills(path: &Path, o: &Outcome) -> Result<()> {
    let f = &o.fills;
    write_parquet(
        path,
        vec![
            Field::new("order_id", DataType::UInt64, false),
            Field::new("side", DataType::Utf8, false),
            ts_field("ts_exchange"),
            ts_field("ts_local"),
            Field::new("price", DataType::Int64, false),
            Field::new("effective_price", DataType::Float64, false),
            Field::new("qty", DataType::Int64, false),
            Field::new("maker", DataType::Boolean, false),
            Field::new("fee", DataType::Float64, false),
            Field::new("arrival_mid", DataType::Float64, false),
            Field::new("tag", DataType::Utf8, false),
        ],
        vec![
            Arc::new(UInt64Array::from_iter_values(f.iter().map(|x| x.order_id))),
            Arc::new(StringArray::from(f.iter().map(|x| x.side.as_str()).collect::<Vec<_>>())),
            ts(f.iter().map(|x| x.ts_exchange).collect()),
            ts(f.iter().map(|x| x.ts_local).collect()),
            Arc::new(Int64Array::from_iter_values(f.iter().map(|x| x.price))),
            Arc::new(Float64Array::from_iter_values(f.iter().map(|x| x.effective_price))),
            Arc::new(Int64Array::from_iter_values(f.iter().map(|x| x.qty))),
            Arc::new(BooleanArray::from(f.iter().map(|x| x.maker).collect::<Vec<_>>())),
            Arc::new(Float64Array::from_iter_values(f.iter().map(|x| x.fee))),
            Arc::new(Float64Array::from_iter_values(f.iter().map(|x| x.arrival_mid))),
            Arc::new(StringArray::from(f.iter().map(|x| tags::name(x.tag)).collect::<Vec<_>>())),
        ],
    )
}

fn write_marks(path: &Path, o: &Outcome) -> Result<()> {
    let m = &o.marks;
    write_parquet(
        path,
        vec![
            ts_field("ts"),
            Field::new("mid", DataType::Float64, false),
            Field::new("position", DataType::Int64, false),
            Field::new("gross", DataType::Float64, false),
            Field::new("net", DataType::Float64, false),
        ],
        vec![
            ts(m.iter().map(|x| x.ts).collect()),
            Arc::new(Float64Array::from_iter_values(m.iter().map(|x| x.mid))),
            Arc::new(Int64Array::from_iter_values(m.iter().map(|x| x.position))),
            Arc::new(Float64Array::from_iter_values(m.iter().map(|x| x.gross))),
            Arc::new(Float64Array::from_iter_values(m.iter().map(|x| x.net))),
        ],
    )
}

fn write_trips(path: &Path, o: &Outcome) -> Result<()> {
    let t = &o.trips;
    write_parquet(
        path,
        vec![
            ts_field("entry_ts"),
            ts_field("exit_ts"),
            Field::new("side", DataType::Int8, false),
            Field::new("max_qty", DataType::Int64, false),
            Field::new("gross", DataType::Float64, false),
            Field::new("fees", DataType::Float64, false),
            Field::new("entry_strength", DataType::Float64, false),
        ],
        vec![
            ts(t.iter().map(|x| x.entry_ts).collect()),
            ts(t.iter().map(|x| x.exit_ts).collect()),
            Arc::new(Int8Array::from_iter_values(t.iter().map(|x| x.side))),
            Arc::new(Int64Array::from_iter_values(t.iter().map(|x| x.max_qty))),
            Arc::new(Float64Array::from_iter_values(t.iter().map(|x| x.gross))),
            Arc::new(Float64Array::from_iter_values(t.iter().map(|x| x.fees))),
            Arc::new(Float64Array::from_iter_values(t.iter().map(|x| x.entry_strength as f64))),
        ],
    )
}
