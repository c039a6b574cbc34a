//! Synthetic L3 order book: the Cont–Stoikov–Talreja (2010) continuous-time Markov chain,
//! simulated exactly (Gillespie) and extended to order-level (LOBSTER-style) output.
//!
//! Why a model from the literature rather than ad-hoc noise: flowcast's no-data default feeds the
//! same loaders, features and models as real data, so its statistics (queue sizes, spread, order
//! flow mix) must come from a documented, calibrated model. The model, its equations, parameters
//! and every extension are in `docs/synth.md`.
//!
//! Output goes through the real LOBSTER path: [`generate`] → [`write_lobster`] (exact LOBSTER
//! message/orderbook CSV) → `loaders::lobster::import`. Nothing downstream knows the data is
//! synthetic.
//!
//! Units: prices in ticks of $0.01 (LOBSTER price = ticks × [`SynthConfig::tick_price`]), sizes in
//! shares (lot = 1 share), times in ns after New York midnight of the session date.

mod model;
mod write;

pub use model::{Class, Sim, Step};
pub use write::write_lobster;

use crate::error::{DataError, Result};
use crate::loaders::{lobster, ImportOptions};
use crate::report::Report;
use crate::store::{self, Dataset};
use crate::time::NS_PER_SEC;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Cont, Stoikov & Talreja (2010) fit λ(i) = k / i^α to limit-order arrival rates (per second);
/// k = 1.92.
pub const CST_K: f64 = 1.92;
/// Exponent α of the power-law fit (CST 2010).
pub const CST_ALPHA: f64 = 0.52;
/// Market-order arrival rate μ per side (1/s), CST 2010.
pub const CST_MU: f64 = 0.94;
/// Per-order cancellation rate θ(i) (1/s) at distance i = 1..10 ticks, CST 2010 (as given in the
/// project brief; see docs/synth.md on the values for i ≥ 7).
pub const CST_THETA: [f64; 10] = [0.71, 0.81, 0.68, 0.56, 0.47, 0.47, 0.44, 0.41, 0.38, 0.35];

/// Symbol and date of the generated LOBSTER files.
pub const SYMBOL: &str = "SYNTH";
pub const DATE: &str = "2020-01-02";

/// λ(i) = k / i^α for i = 1..=d.
pub fn cst_lambda(d: usize) -> Vec<f64> {
    (1..=d).map(|i| CST_K / (i as f64).powf(CST_ALPHA)).collect()
}

/// Generator parameters. Rates are per second; prices in ticks; sizes in shares.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SynthConfig {
    /// Depth N of the orderbook file (LOBSTER level N).
    pub levels: usize,
    /// Number of Markov-chain events to simulate after the opening book (fewer if the session
    /// closes first; see [`SynthStats::truncated_at_close`]).
    pub events: usize,
    pub seed: u64,
    /// λ(i), i = 1..=D: arrival rate of limit orders of one side at distance i ticks from the
    /// opposite best quote. D = `lambda.len()` is the model's price window.
    pub lambda: Vec<f64>,
    /// θ(i), i = 1..=D: cancellation rate of each resting order at distance i from the opposite
    /// best quote; orders further than D cancel at θ(D). Same length as `lambda`.
    pub theta: Vec<f64>,
    /// μ: market-order arrival rate per side.
    pub mu: f64,
    /// Executions against hidden orders (LOBSTER type 5), per side.
    pub hidden_rate: f64,
    /// Probability that a cancellation is partial (type 2) rather than full (type 3).
    pub partial_cancel_prob: f64,
    /// Order sizes: with probability `round_lot_prob` `round_lot × m`, m − 1 ~ Geometric
    /// (`lot_multiplier_p`); otherwise an odd lot uniform on 1..round_lot−1.
    pub round_lot: i64,
    pub round_lot_prob: f64,
    pub lot_multiplier_p: f64,
    /// Opening best bid / ask in ticks (9,999 / 10,000 = $99.99 / $100.00).
    pub start_bid: i64,
    pub start_ask: i64,
    /// LOBSTER price units (USD × 10,000) per tick: 100 ⇔ tick $0.01.
    pub tick_price: i64,
    /// Session window in ns after midnight (09:30 and 16:00).
    pub session_start_ns: i64,
    pub session_end_ns: i64,
    /// Write only the messages LOBSTER would for a level-N file: those that change the visible
    /// top-N rows, plus hidden executions. Off: every message, visible or not.
    pub lobster_window: bool,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            levels: 10,
            events: 200_000,
            seed: 1,
            lambda: cst_lambda(CST_THETA.len()),
            theta: CST_THETA.to_vec(),
            mu: CST_MU,
            hidden_rate: 0.45,
            partial_cancel_prob: 0.03,
            round_lot: 100,
            round_lot_prob: 0.6,
            lot_multiplier_p: 0.75,
            start_bid: 9_999,
            start_ask: 10_000,
            tick_price: 100,
            session_start_ns: 34_200 * NS_PER_SEC,
            session_end_ns: 57_600 * NS_PER_SEC,
            lobster_window: true,
        }
    }
}

impl SynthConfig {
    pub fn new(levels: usize, events: usize, seed: u64) -> SynthConfig {
        SynthConfig { levels, events, seed, ..Default::default() }
    }

    /// Reject parameters the model is not defined for.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::Invalid(format!("synth config: {m}")));
        let pos = |v: f64| v.is_finite() && v > 0.0;
        let prob = |v: f64| (0.0..=1.0).contains(&v);
        if self.levels == 0 {
            return bad("levels must be at least 1".into());
        }
        if self.lambda.is_empty() || self.lambda.len() != self.theta.len() {
            return bad(format!("lambda ({}) and theta ({}) need the same non-zero length", self.lambda.len(), self.theta.len()));
        }
        if !self.lambda.iter().chain(&self.theta).all(|&v| pos(v)) {
            return bad("every lambda(i) and theta(i) must be positive".into());
        }
        let rate = |v: f64| v.is_finite() && v >= 0.0;
        if !(rate(self.mu) && rate(self.hidden_rate)) {
            return bad("mu and hidden_rate must be finite and non-negative".into());
        }
        if !(prob(self.partial_cancel_prob) && prob(self.round_lot_prob) && self.lot_multiplier_p > 0.0 && self.lot_multiplier_p <= 1.0) {
            return bad("probabilities must lie in [0, 1] (lot_multiplier_p in (0, 1])".into());
        }
        if self.round_lot < 2 {
            return bad("round_lot must be at least 2".into());
        }
        if self.tick_price <= 0 || self.start_bid < 1 || self.start_ask <= self.start_bid {
            return bad("need tick_price > 0 and 1 <= start_bid < start_ask".into());
        }
        if self.start_ask + self.lambda.len() as i64 > model::max_ticks(self.tick_price) || self.start_bid <= self.lambda.len() as i64 {
            return bad("opening book does not fit on the positive LOBSTER price grid".into());
        }
        if !(0..self.session_end_ns).contains(&self.session_start_ns) {
            return bad("session_start_ns must be non-negative and before session_end_ns".into());
        }
        Ok(())
    }
}

/// LOBSTER message type (column 2 of the message file).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum MsgType {
    Submit = 1,
    Cancel = 2,
    Delete = 3,
    Execute = 4,
    Hidden = 5,
}

/// One row of the message file, in generator units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// ns after midnight of the session date.
    pub time_ns: i64,
    pub kind: MsgType,
    /// 0 for hidden executions (as in LOBSTER).
    pub order_id: u64,
    /// Shares submitted / cancelled / deleted / executed.
    pub size: i64,
    /// Ticks.
    pub price: i64,
    /// +1 buy limit order, −1 sell limit order (the resting order's side for executions).
    pub direction: i8,
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SynthStats {
    /// Markov-chain events simulated (excluding the opening book).
    pub events: u64,
    /// Limit orders submitted to build the opening book (at the session start).
    pub opening_orders: u64,
    /// Messages not written because they left the top-N rows unchanged (`lobster_window`).
    pub filtered_messages: u64,
    /// Seconds from the session start to the last event.
    pub seconds_simulated: f64,
    /// The session end came before `events` events.
    pub truncated_at_close: bool,
    /// Event counts by class, `[bid, ask]` (market orders by resting side hit: `[sells, buys]`).
    pub limit_orders: [u64; 2],
    pub market_orders: [u64; 2],
    pub cancellations: [u64; 2],
    pub partial_cancellations: [u64; 2],
    pub hidden_executions: [u64; 2],
    /// Rows whose book had an empty side.
    pub empty_side_rows: u64,
}

/// The generated LOBSTER message rows and matching top-`levels` orderbook rows.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthOutput {
    pub config: SynthConfig,
    pub messages: Vec<Message>,
    /// Orderbook rows, `4 × levels` per message in LOBSTER column order (ask px, ask size, bid px,
    /// bid size per level); prices in ticks, an absent level is [`crate::NO_PRICE`] with size 0.
    pub book: Vec<i64>,
    pub stats: SynthStats,
}

impl SynthOutput {
    pub fn levels(&self) -> usize {
        self.config.levels
    }
    /// Orderbook row `i` (the book after message `i`).
    pub fn row(&self, i: usize) -> &[i64] {
        let w = 4 * self.config.levels;
        &self.book[i * w..(i + 1) * w]
    }
}

/// Run the model. Panics if `cfg` fails [`SynthConfig::validate`] (the public entry points
/// below validate first and return the error).
pub fn generate(cfg: &SynthConfig) -> SynthOutput {
    if let Err(e) = cfg.validate() {
        panic!("{e}");
    }
    let mut sim = Sim::new(cfg.clone());
    for _ in 0..cfg.events {
        if sim.step().is_none() {
            break;
        }
    }
    sim.finish()
}

/// A unique scratch directory under the system temp dir.
fn scratch_dir(seed: u64) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("flowcast-synth-{}-{seed}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// Import a written message/orderbook pair through the LOBSTER loader and tag the dataset with
/// the generator's parameters (`provenance`, see [`synth_provenance`]).
fn import_pair(files: &(PathBuf, PathBuf), levels: usize, provenance: serde_json::Value) -> Result<Dataset> {
    let opts = ImportOptions { levels, ..Default::default() };
    let imported = lobster::import(&[files.0.clone(), files.1.clone()], &opts)?;
    let n = imported.datasets.len();
    let mut ds = imported
        .datasets
        .into_iter()
        .next()
        .filter(|_| n == 1)
        .ok_or_else(|| DataError::Invalid(format!("LOBSTER import of synthetic files gave {n} datasets, expected 1")))?;
    if let serde_json::Value::Object(m) = &mut ds.meta.import_report {
        m.insert("synth".into(), provenance);
    }
    Ok(ds)
}

fn synth_provenance(out: &SynthOutput) -> serde_json::Value {
    serde_json::json!({
        "model": "Cont-Stoikov-Talreja (2010) CTMC, L3 extension (docs/synth.md)",
        "config": out.config,
        "stats": out.stats,
    })
}

/// Generate, write the LOBSTER files to a scratch directory, import them through the LOBSTER
/// loader and return the dataset (the scratch directory is removed).
pub fn synth_dataset(levels: usize, events: usize, seed: u64) -> Result<Dataset> {
    let cfg = SynthConfig::new(levels, events, seed);
    cfg.validate()?;
    let out = generate(&cfg);
    let dir = scratch_dir(seed);
    let written = write_lobster(&dir, &out, SYMBOL, DATE);
    let provenance = synth_provenance(&out);
    drop(out); // the rows are on disk now; don't hold them during the import
    let result = written.and_then(|files| import_pair(&files, levels, provenance));
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove synthetic scratch directory");
    }
    result
}

/// Mean spread (ticks) and mean size at the touch (shares, mean of both sides) over the book
/// states after every message where both sides are quoted, via the canonical replay.
fn book_means(ds: &Dataset) -> (f64, f64, u64) {
    let (mut n, mut spread, mut depth) = (0u64, 0f64, 0f64);
    ds.replay(|_, book| {
        if let (Some((b, bs)), Some((a, as_))) = (book.best_bid(), book.best_ask()) {
            n += 1;
            spread += (a - b) as f64;
            depth += (bs + as_) as f64 / 2.0;
        }
    });
    let d = n.max(1) as f64;
    (spread / d, depth / d, n)
}

/// `flowcast data synth`: write `<out>/lobster/` (LOBSTER files), import them, store the
/// dataset in `<out>`, and check the files with the LOBSTER checker. `ok` = the check passed.
pub fn run_cli(levels: usize, events: usize, seed: u64, out: &Path) -> Result<Report> {
    let cfg = SynthConfig::new(levels, events, seed);
    cfg.validate()?;
    let t = std::time::Instant::now();
    let synth = generate(&cfg);
    let generate_s = t.elapsed().as_secs_f64();
    let files = write_lobster(&out.join("lobster"), &synth, SYMBOL, DATE)?;
    let mut by_type = serde_json::Map::new();
    for k in [MsgType::Submit, MsgType::Cancel, MsgType::Delete, MsgType::Execute, MsgType::Hidden] {
        let c = synth.messages.iter().filter(|m| m.kind == k).count();
        by_type.insert((k as u8).to_string(), c.into());
    }
    let trades = synth.messages.iter().filter(|m| matches!(m.kind, MsgType::Execute | MsgType::Hidden)).count();
    let messages = synth.messages.len();
    let provenance = synth_provenance(&synth);
    let s = synth.stats;
    drop(synth.book); // the rows are on disk now; don't hold them during the import

    let ds = import_pair(&files, levels, provenance)?;
    store::write_dataset(out, &ds)?;
    let opts = ImportOptions { levels, ..Default::default() };
    let check = lobster::check(&[files.0.clone(), files.1.clone()], &opts)?;
    let (mean_spread, mean_depth, quoted_rows) = book_means(&ds);
    let mut r = Report::new(check.ok);
    r.set("events", s.events)
        .set("messages", messages)
        .set("levels", levels)
        .set("seed", seed)
        .set("dataset", out.display().to_string())
        .set("lobster_files", [files.0.display().to_string(), files.1.display().to_string()])
        .set("check", &check)
        .set("mean_spread_ticks", mean_spread)
        .set("mean_depth_top", mean_depth)
        .set("quoted_rows", quoted_rows)
        .set("empty_side_rows", s.empty_side_rows)
        .set("trades", trades)
        .set("market_orders", s.market_orders[0] + s.market_orders[1])
        .set("messages_by_type", by_type)
        .set("opening_orders", s.opening_orders)
        .set("filtered_messages", s.filtered_messages)
        .set("seconds_simulated", s.seconds_simulated)
        .set("truncated_at_close", s.truncated_at_close)
        .set("generate_seconds", generate_s)
        .set("dataset_events", ds.events.len());
    Ok(r)
}

#[cfg(test)]
mod tests;
