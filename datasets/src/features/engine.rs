//! The streaming feature engine. One engine serves batch and live use: [`compute`] is nothing but
//! the canonical replay loop feeding [`Engine::on_event`], so batch and streaming cannot disagree.
//!
//! Per event the engine does O(1) work and allocates nothing (all rings are sized in
//! [`Engine::new`]). Book-derived quantities are read only at *sample points*: batch ends of a
//! synced book (the book is consistent only there, see `event.rs`). Trades and L3 order events
//! are accumulated as they arrive and attributed to the sample that closes their batch.
//! A `Gap` resets every feature (values go back to warm-up): nothing is carried across a hole in
//! the data.

use super::bank::Bank;
use super::ctx::{class_index, Ctx, Flow, TouchFlow, TradeTick};
use super::node::Node;
use super::registry::DEFAULT_MAX_RATE_HZ;
use super::set::FeatureSet;
use super::spec::FeatureSpec;
use super::table::FeatureTable;
use super::window::Span;
use super::{depth, imbalance, ofi, prices, queue, timefeat, toxicity, trades, volatility};
use crate::book::{BookLayout, OrderBook, NO_PRICE};
use crate::error::{DataError, Result};
use crate::event::{flags, Event, EventKind, Side};
use crate::store::{Dataset, DatasetMeta};
use crate::time::parse_duration;
use serde::Serialize;

/// What the engine detected while running (all counts since `new`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics {
    /// Sample points (rows).
    pub samples: u64,
    /// Samples where best bid ≥ best ask (values are still computed; the source should not cross).
    pub crossed_samples: u64,
    /// Samples with an empty side (mid and spread features NaN).
    pub one_sided_samples: u64,
    /// `Gap` events: every feature was reset.
    pub resets: u64,
    /// Clock-window entries dropped because a window held more than `max_rate_hz × W` samples
    /// (the affected values are NaN, not wrong).
    pub window_overflows: u64,
    /// L3 order-tracker capacity overflows (order-count features NaN until the next reset).
    pub order_tracker_overflows: u64,
}

/// The streaming engine: build once, then call [`Engine::on_event`] after `book.apply(ev)`.
pub struct Engine {
    ctx: Ctx,
    /// Shared rolling sums, updated at each sample before the nodes run.
    bank: Bank,
    nodes: Vec<Box<dyn Node>>,
    trade_nodes: Vec<usize>,
    values: Vec<f64>,
    names: Vec<String>,
    diag: Diagnostics,
}

/// The [`Span`] of a resolved spec's window parameters (`None` when it has none).
pub(crate) fn span_of(s: &FeatureSpec) -> Result<Option<Span>> {
    if let Some(n) = s.window_events {
        return Ok(Some(Span::Events(n)));
    }
    if let Some(w) = &s.window {
        let ns = parse_duration(w).map_err(DataError::Invalid)?;
        let rate = s.max_rate_hz.unwrap_or(DEFAULT_MAX_RATE_HZ);
        let cap = ((ns as f64 / 1e9) * rate).ceil() as usize + 1;
        return Ok(Some(Span::Clock { ns, cap: cap.max(16) }));
    }
    Ok(None)
}

pub(crate) fn side_of(s: &FeatureSpec) -> Side {
    if s.side.as_deref() == Some("ask") {
        Side::Ask
    } else {
        Side::Bid
    }
}

fn build_node(s: &FeatureSpec, meta: &DatasetMeta, bank: &mut Bank) -> Result<Box<dyn Node>> {
    let span = span_of(s)?;
    let sp = || span.ok_or_else(|| DataError::Invalid(format!("{}: missing window", s.name)));
    let levels = s.levels.unwrap_or(1);
    Ok(match s.name.as_str() {
        "ofi" => Box::new(ofi::WindowOfi::new(1, sp()?, bank)),
        "mlofi" => Box::new(ofi::WindowOfi::new(s.level.unwrap_or(1), sp()?, bank)),
        "mlofi_norm" => Box::new(ofi::NormOfi::new(s.level.unwrap_or(1), levels, sp()?, bank)),
        "ofi_integrated" => Box::new(ofi::IntegratedOfi::new(levels, sp()?, s.fitted.as_ref(), bank)),
        "imbalance" => Box::new(imbalance::Imbalance::new(imbalance::Weighting::Volume, levels)),
        "imbalance_price_weighted" => Box::new(imbalance::Imbalance::new(imbalance::Weighting::Notional, levels)),
        "imbalance_inv_distance" => Box::new(imbalance::Imbalance::new(imbalance::Weighting::InvDistance, levels)),
        "order_count_imbalance" => Box::new(imbalance::OrderCount::new(levels)),
        "imbalance_ewma" => Box::new(imbalance::ImbalanceEwma::new(levels, s.halflife_events.unwrap_or(10.0))),
        "imbalance_zscore" => Box::new(imbalance::ImbalanceZ::new(levels, sp()?)),
        "mid" => Box::new(prices::Mid),
        "weighted_mid" => Box::new(prices::WeightedMid { offset: false }),
        "weighted_mid_offset" => Box::new(prices::WeightedMid { offset: true }),
        "microprice" | "microprice_offset" => Box::new(prices::Microprice::new(s, s.name == "microprice_offset")),
        "spread_ticks" => Box::new(prices::Spread { bps: false }),
        "spread_bps" => Box::new(prices::Spread { bps: true }),
        "spread_zscore" => Box::new(prices::SpreadZ::new(sp()?)),
        "vwap_distance" => Box::new(prices::VwapDistance::new(sp()?, bank)),
        "depth_total" => Box::new(depth::Depth::new(depth::DepthKind::Total, levels)),
        "depth" => Box::new(depth::Depth::new(depth::DepthKind::Side(side_of(s)), levels)),
        "depth_ratio" => Box::new(depth::Depth::new(depth::DepthKind::Ratio, levels)),
        "slope_impact" => Box::new(depth::SlopeImpact { side: side_of(s), levels }),
        "slope_log" => Box::new(depth::SlopeLog { side: side_of(s), levels }),
        "resilience" => Box::new(depth::Resilience::new(levels, s.threshold.unwrap_or(4.0), s.trades.unwrap_or(100))),
        "buy_volume" => Box::new(trades::Volume::new(class_index(s.classification.as_deref()), true, sp()?, bank)),
        "sell_volume" => Box::new(trades::Volume::new(class_index(s.classification.as_deref()), false, sp()?, bank)),
        "trade_imbalance" => Box::new(trades::TradeImbalance::new(class_index(s.classification.as_deref()), sp()?, bank)),
        "large_trade" => Box::new(trades::LargeTrade::new(s.threshold.unwrap_or(4.0), s.trades.unwrap_or(100))),
        "trade_intensity" => Box::new(trades::Intensity::new(sp()?, bank)),
        "vpin" => Box::new(toxicity::Vpin::new(s)?),
        "kyle_lambda" => Box::new(toxicity::KyleLambda::new(s)?),
        "log_return" => Box::new(volatility::LogReturn::new(sp()?)),
        "realized_vol" => Box::new(volatility::RealizedVol::new(sp()?, bank)),
        "parkinson" => Box::new(volatility::Parkinson::new(sp()?)),
        "queue_arrival_rate" => Box::new(queue::QueueRate::new(queue::QueueEvent::Add, side_of(s), sp()?, bank)),
        "queue_cancel_rate" => Box::new(queue::QueueRate::new(queue::QueueEvent::Cancel, side_of(s), sp()?, bank)),
        "queue_execution_rate" => Box::new(queue::QueueRate::new(queue::QueueEvent::Execute, side_of(s), sp()?, bank)),
        "queue_cancel_ratio" => Box::new(queue::CancelRatio::new(side_of(s), sp()?, bank)),
        "time_of_day" => Box::new(timefeat::TimeOfDay::new(meta)),
        "time_since_trade" => Box::new(timefeat::SinceTrade),
        "time_since_mid_change" => Box::new(timefeat::SinceMidChange),
        other => return Err(DataError::Invalid(format!("feature {other:?} has no engine node"))),
    })
}

impl Engine {
    /// Build the engine for `set` (re-validated) on an instrument described by `meta`. All
    /// storage is allocated here.
    pub fn new(set: &FeatureSet, meta: &DatasetMeta) -> Result<Engine> {
        let set = FeatureSet::new(set.features.clone())?;
        let mut levels = 1;
        let mut ofi_levels = 1;
        let mut orders = false;
        let mut nodes = Vec::with_capacity(set.len());
        let mut bank = Bank::default();
        for s in &set.features {
            let l = s.levels.unwrap_or(1).max(s.level.unwrap_or(1));
            levels = levels.max(l);
            if matches!(s.name.as_str(), "ofi" | "mlofi" | "mlofi_norm" | "ofi_integrated") {
                ofi_levels = ofi_levels.max(l);
            }
            orders |= s.name == "order_count_imbalance";
            nodes.push(build_node(s, meta, &mut bank)?);
        }
        bank.allocate();
        let trade_nodes = nodes.iter().enumerate().filter(|(_, n)| n.wants_trades()).map(|(i, _)| i).collect();
        Ok(Engine {
            ctx: Ctx::new(levels, ofi_levels, orders),
            bank,
            values: vec![f64::NAN; nodes.len()],
            names: set.names(),
            nodes,
            trade_nodes,
            diag: Diagnostics::default(),
        })
    }

    /// Column names, in the order of [`Engine::values`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Call after `book.apply(ev)` for EVERY event; returns true when this event is a sample
    /// point (batch end while the book is synced); then [`Engine::values`] holds its row.
    #[inline]
    pub fn on_event<L: BookLayout>(&mut self, ev: &Event, book: &OrderBook<L>) -> bool {
        if ev.kind == EventKind::Gap {
            self.reset();
            self.diag.resets += 1;
            return false;
        }
        if !book.is_synced() {
            return false;
        }
        if let Some((price, size, aggressor)) = ev.trade() {
            // Half-tick executions: the true price is price + ½ (see `flags::HALF_TICK`).
            let px2 = 2 * price + i64::from(ev.flags & flags::HALF_TICK != 0);
            self.on_trade(ev.ts_exchange, px2, size, aggressor);
        }
        if matches!(ev.kind, EventKind::OrderAdd | EventKind::OrderCancel | EventKind::OrderDelete | EventKind::OrderExecute) {
            self.on_l3(ev);
        }
        if !ev.is_batch_end() {
            return false;
        }
        self.on_sample(ev.ts_exchange, book);
        true
    }

    /// Feature row of the last sample point (NaN while a feature warms up).
    #[inline]
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Mid (ticks) at the last sample point.
    pub fn mid(&self) -> f64 {
        self.ctx.mid
    }

    pub fn diagnostics(&self) -> Diagnostics {
        let mut d = self.diag.clone();
        d.window_overflows = self.nodes.iter().map(|n| n.overflows()).sum::<u64>() + self.bank.overflows();
        d.order_tracker_overflows = self.ctx.orders.as_ref().map(|o| o.overflows()).unwrap_or(0);
        d
    }

    /// Distinct shared rings (tests of the sharing).
    #[cfg(test)]
    pub(crate) fn bank_rings(&self) -> usize {
        self.bank.rings()
    }

    /// Forget all state (as at a `Gap`).
    pub fn reset(&mut self) {
        self.ctx.reset();
        self.bank.reset();
        for n in &mut self.nodes {
            n.reset();
        }
        self.values.fill(f64::NAN);
    }

    /// A trade at `px2` half ticks.
    fn on_trade(&mut self, ts: i64, px2: i64, size: i64, aggressor: Side) {
        let c = &mut self.ctx;
        let price = px2 as f64 / 2.0;
        // Tick rule: sign of the price change from the previous trade, carried over zero ticks.
        if c.last_trade_px2 != NO_PRICE && px2 != c.last_trade_px2 {
            c.tick_sign = if px2 > c.last_trade_px2 { 1 } else { -1 };
        }
        // Lee-Ready: above the prevailing mid (last sample, i.e. before this message) buys, below
        // sells, at the mid the tick rule decides.
        let lr = if c.mid.is_nan() || price == c.mid {
            c.tick_sign
        } else if price > c.mid {
            1
        } else {
            -1
        };
        let sign = [aggressor.sign() as i8, c.tick_sign, lr];
        let q = size as f64;
        for (k, &s) in sign.iter().enumerate() {
            if s > 0 {
                c.flow.buy[k] += q;
            } else if s < 0 {
                c.flow.sell[k] += q;
            }
        }
        c.flow.trades += 1.0;
        c.flow.volume += q;
        c.flow.notional += price * q;
        c.last_trade_ts = ts;
        c.last_trade_px2 = px2;
        let t = TradeTick { ts, price, size, sign };
        for &i in &self.trade_nodes {
            self.nodes[i].on_trade(&self.ctx, &t);
        }
    }

    fn on_l3(&mut self, ev: &Event) {
        let c = &mut self.ctx;
        c.l3_seen = true;
        // "At the touch" is judged against the book before this message (the previous sample):
        // at or better than the best price of the order's side; any add to an empty side counts.
        let best = match ev.side {
            Side::Bid => c.top.bid_px[0],
            Side::Ask => c.top.ask_px[0],
        };
        let at_touch = best == NO_PRICE
            || match ev.side {
                Side::Bid => ev.price >= best,
                Side::Ask => ev.price <= best,
            };
        let t = &mut c.touch[ev.side as usize];
        match ev.kind {
            EventKind::OrderAdd if at_touch => t.adds += 1.0,
            EventKind::OrderCancel | EventKind::OrderDelete if at_touch => t.cancels += 1.0,
            EventKind::OrderExecute => t.execs += 1.0,
            _ => {}
        }
        if let Some(o) = &mut c.orders {
            o.apply(ev);
        }
    }

    fn on_sample<L: BookLayout>(&mut self, ts: i64, book: &OrderBook<L>) {
        let c = &mut self.ctx;
        std::mem::swap(&mut c.top, &mut c.prev);
        book.top_n(&mut c.top);
        c.has_prev = c.samples > 0;
        c.samples += 1;
        if c.samples == 1 {
            c.t0 = ts;
        }
        c.ts = ts;
        let (b, a) = (c.top.bid_px[0], c.top.ask_px[0]);
        c.mid = if b != NO_PRICE && a != NO_PRICE { (b + a) as f64 / 2.0 } else { f64::NAN };
        c.ln_mid = c.mid.ln();
        if b == NO_PRICE || a == NO_PRICE {
            self.diag.one_sided_samples += 1;
        } else if b >= a {
            self.diag.crossed_samples += 1;
        }
        if !c.mid.is_nan() && !c.prev_mid.is_nan() && c.mid != c.prev_mid {
            c.last_mid_change_ts = ts;
        }
        if c.has_prev {
            for m in 0..c.ofi.len() {
                c.ofi[m] = ofi::level_ofi(&c.prev, &c.top, m) as f64;
            }
        }
        for (k, side) in [Side::Bid, Side::Ask].into_iter().enumerate() {
            let mut acc = 0i64;
            let sz = if side == Side::Bid { &c.top.bid_sz } else { &c.top.ask_sz };
            for (cum, &q) in c.cum[k].iter_mut().zip(sz) {
                acc += q;
                *cum = acc as f64;
            }
        }
        // Shared windows first, then every feature.
        self.bank.update(c);
        for (v, n) in self.values.iter_mut().zip(self.nodes.iter_mut()) {
            *v = n.on_sample(&self.ctx, &self.bank);
        }
        let c = &mut self.ctx;
        if !c.mid.is_nan() {
            c.prev_mid = c.mid;
            c.prev_ln_mid = c.ln_mid;
        }
        c.flow = Flow::default();
        c.touch = [TouchFlow::default(); 2];
        self.diag.samples += 1;
    }
}

/// Batch: the streaming engine driven over the stored dataset by the canonical replay loop
/// (the same loop as [`Dataset::replay`]: apply, then sample at synced batch ends).
pub fn compute(ds: &Dataset, set: &FeatureSet) -> Result<FeatureTable> {
    compute_with_diagnostics(ds, set).map(|(t, _)| t)
}

/// [`compute`] plus what the engine detected (crossed samples, resets, overflows); the
/// diagnostics are also logged as warnings when non-zero.
pub fn compute_with_diagnostics(ds: &Dataset, set: &FeatureSet) -> Result<(FeatureTable, Diagnostics)> {
    let t = drive(ds, set, usize::MAX)?;
    let d = &t.1;
    if d.crossed_samples + d.resets + d.window_overflows + d.order_tracker_overflows > 0 {
        tracing::warn!(
            crossed = d.crossed_samples,
            resets = d.resets,
            window_overflows = d.window_overflows,
            order_tracker_overflows = d.order_tracker_overflows,
            "feature computation: data issues detected"
        );
    }
    Ok(t)
}

/// Run the engine over `ds`, stopping after `max_rows` rows.
pub(crate) fn drive(ds: &Dataset, set: &FeatureSet, max_rows: usize) -> Result<(FeatureTable, Diagnostics)> {
    let mut engine = Engine::new(set, &ds.meta)?;
    let cols = engine.names().len();
    let mut table = FeatureTable { names: engine.names().to_vec(), ..Default::default() };
    let mut book = ds.new_book();
    for (i, ev) in ds.events.iter().enumerate() {
        if table.event_index.len() >= max_rows {
            break;
        }
        book.apply(ev);
        if engine.on_event(ev, &book) {
            table.event_index.push(i as u64);
            table.ts.push(ev.ts_exchange);
            table.mid.push(engine.mid());
            table.values.extend_from_slice(engine.values());
        }
    }
    debug_assert_eq!(table.values.len(), table.rows() * cols);
    Ok((table, engine.diagnostics()))
}
