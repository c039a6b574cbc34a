//! The one replay loop of the backtest: canonical events → canonical book → (our simulated
//! orders at the exchange, the streaming feature engine) → at each sample point, the strategy at
//! its local time. Time is the data's: exchange time drives matching, local time (receive time, or
//! exchange time + feed latency) drives the strategy; requests reach the exchange after the entry
//! latency and answers come back after the response latency. Nothing in a sample's decision can
//! depend on a later event: the loop only ever looks backwards.
//!
//! Per event the loop allocates nothing once warm (orders, requests, responses and reports live in
//! reused vectors); per sample it records one (time, mid) pair for the signal analysis.

use crate::error::{BacktestError, Result};
use crate::exchange::{Exchange, Report};
use crate::models::LatencyModel;
use crate::order::{Action, Fill, Order, Status};
use crate::risk::{Limit, Limits, RateWindow, RiskHit};
use crate::strategy::{flatten, tags, AccountView, MarketView, SignalPoint, Strategy};
use flowcast_datasets::features::engine::Engine as FeatureEngine;
use flowcast_datasets::features::set::FeatureSet;
use flowcast_datasets::{BookLayout, Dataset, Instrument, NO_TS};

/// Everything one replay needs.
pub struct Setup {
    pub exchange: Exchange,
    pub latency: Box<dyn LatencyModel>,
    pub strategy: Box<dyn Strategy>,
    pub limits: Limits,
    /// Added to the exchange time when the data has no local time.
    pub feed_latency_ns: i64,
    /// Equity is marked at the first sample of every interval (exchange time).
    pub mark_interval_ns: i64,
    /// Model outputs by event index (sorted); `available_at` is set during the replay.
    pub signals: Vec<SignalPoint>,
    /// Time from a window's last event to its prediction being usable (local clock).
    pub model_latency_ns: i64,
    /// The strategy acts, and equity is marked, from this event on (earlier events only warm
    /// the book and the features: a walk-forward fold's training segment).
    pub trade_from_event: usize,
}

/// One mark of the account (exchange time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mark {
    pub ts: i64,
    /// Mid in ticks.
    pub mid: f64,
    /// Lots.
    pub position: i64,
    /// Quote currency: cash + position at mid, before fees; and after fees.
    pub gross: f64,
    pub net: f64,
}

/// A round trip: from flat to flat (a flip closes one and opens the next).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundTrip {
    pub entry_ts: i64,
    pub exit_ts: i64,
    /// +1 long, −1 short.
    pub side: i8,
    /// Largest |position| in lots.
    pub max_qty: i64,
    pub gross: f64,
    pub fees: f64,
    /// Strength of the latest model signal when the trip opened (NaN without a model).
    pub entry_strength: f32,
}

/// What a replay produced.
pub struct Outcome {
    pub strategy: &'static str,
    pub queue_model: &'static str,
    pub latency_model: &'static str,
    pub orders: Vec<Order>,
    pub fills: Vec<Fill>,
    pub marks: Vec<Mark>,
    pub trips: Vec<RoundTrip>,
    pub risk_hits: Vec<RiskHit>,
    /// (exchange time, mid ticks) at every sample point (signal IC and hit rate).
    pub samples: Vec<(i64, f64)>,
    pub signals: Vec<SignalPoint>,
    /// Exchange time of each signal's window end (parallel to `signals`).
    pub signal_ts: Vec<i64>,
    pub events: usize,
    /// Position left at the end (marked at the last mid in the P&L).
    pub final_position: i64,
    pub tick_value: f64,
    pub lot_units: f64,
    /// Actions the risk layer dropped (the hits say which limit).
    pub dropped: u64,
    /// Local-clock correction applied ([`clock_offset`]).
    pub clock_offset_ns: i64,
}

/// The exchange-side books of record.
struct Ledger {
    position: i64,
    cash: f64,
    fees: f64,
    trip_open: Option<(i64, i8, i64, f64, f64, f32)>,
    trips: Vec<RoundTrip>,
}

impl Ledger {
    fn apply(&mut self, f: &Fill, value: f64, strength: f32) {
        let sign = f.side.sign();
        let mut left = f.qty;
        while left > 0 {
            // Split a flipping fill at zero.
            let closing = self.position != 0 && self.position.signum() != sign;
            let q = if closing { left.min(self.position.abs()) } else { left };
            if self.position == 0 {
                self.trip_open = Some((f.ts_exchange, sign as i8, 0, self.cash, self.fees, strength));
            }
            let part = q as f64 / f.qty as f64;
            self.cash -= (sign * q) as f64 * f.effective_price * value;
            self.fees += f.fee * part;
            self.position += sign * q;
            if let Some(t) = &mut self.trip_open {
                t.2 = t.2.max(self.position.abs());
            }
            if self.position == 0 {
                if let Some((entry_ts, side, max_qty, cash0, fees0, s)) = self.trip_open.take() {
                    self.trips.push(RoundTrip {
                        entry_ts,
                        exit_ts: f.ts_exchange,
                        side,
                        max_qty,
                        gross: self.cash - cash0,
                        fees: self.fees - fees0,
                        entry_strength: s,
                    });
                }
            }
            left -= q;
        }
    }
}

/// The strategy's own view of its account (from the responses it has received).
struct View {
    position: i64,
    entry_price: f64,
    entry_ts: i64,
    open: Vec<Order>,
    cash: f64,
    fees: f64,
    day: i64,
    day_start: f64,
    halted_day: Option<i64>,
}

impl View {
    fn apply_fill(&mut self, f: &Fill, value: f64, now: i64) {
        let q = f.side.sign() * f.qty;
        let (old, new) = (self.position, self.position + q);
        if old == 0 || old.signum() != new.signum() && new != 0 {
            self.entry_price = f.effective_price;
            self.entry_ts = now;
        } else if new.abs() > old.abs() {
            self.entry_price = (self.entry_price * old.abs() as f64 + f.effective_price * q.abs() as f64) / new.abs() as f64;
        }
        if new == 0 {
            self.entry_price = f64::NAN;
            self.entry_ts = 0;
        }
        self.position = new;
        self.cash -= q as f64 * f.effective_price * value;
        self.fees += f.fee;
        if let Some(o) = self.open.iter_mut().find(|o| o.id == f.order_id) {
            o.leaves -= f.qty;
            o.filled += f.qty;
        }
    }
    fn pnl(&self, mid: f64, value: f64) -> f64 {
        if self.position == 0 {
            return self.cash - self.fees;
        }
        self.cash + self.position as f64 * mid * value - self.fees
    }
}

const DAY_NS: i64 = 86_400_000_000_000;

/// Last exchange time of each UTC day in the data (the session ends `flat_before_end` acts on).
fn day_ends(ds: &Dataset) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for e in &ds.events {
        let d = e.ts_exchange.div_euclid(DAY_NS);
        match out.last_mut() {
            Some(l) if l.0 == d => l.1 = l.1.max(e.ts_exchange),
            _ => out.push((d, e.ts_exchange)),
        }
    }
    out
}

/// Clock alignment of a recording: receive clocks drift from the exchange's (the Binance USD-M
/// 2024-08-08 recording's local clock is ≈1.27 s behind), so a negative `ts_local − ts_exchange`
/// is an offset, not a latency. The offset is the smallest observed difference when that is
/// negative (the fastest message is taken to have arrived instantly) and 0 otherwise; local times
/// are shifted by it.
pub fn clock_offset(ds: &Dataset) -> i64 {
    let min = ds.events.iter().filter(|e| e.ts_local != NO_TS).map(|e| e.ts_local - e.ts_exchange).min();
    min.filter(|&m| m < 0).unwrap_or(0)
}

/// Feed latencies `ts_local − offset − ts_exchange` (ns, after [`clock_offset`]) of a dataset's
/// batch ends: the input of a fitted latency model.
pub fn feed_latencies(ds: &Dataset) -> Vec<i64> {
    let off = clock_offset(ds);
    ds.events
        .iter()
        .filter(|e| e.is_batch_end() && e.ts_local != NO_TS)
        .map(|e| e.ts_local - off - e.ts_exchange)
        .step_by(7)
        .take(200_000)
        .collect()
}

/// Replays `ds` with `setup`. The feature columns the strategy asks for are computed by the
/// streaming engine on the same replay.
pub fn run(ds: &Dataset, mut s: Setup) -> Result<Outcome> {
    let inst: Instrument = ds.meta.instrument.clone();
    let value = inst.ticks_to_f64(1) * inst.lots_to_f64(1);
    let specs = s.strategy.features();
    let fset = if specs.is_empty() {
        None
    } else {
        Some(FeatureSet::new(specs).map_err(|e| BacktestError::Config(format!("strategy features: {e}")))?)
    };
    if let Some(f) = &fset {
        if !f.unfitted().is_empty() {
            return Err(BacktestError::Config(format!(
                "strategy features {:?} need fitting on training data; give their parameters",
                f.unfitted()
            )));
        }
    }
    let mut fe = match &fset {
        Some(f) => Some(FeatureEngine::new(f, &ds.meta)?),
        None => None,
    };
    let no_features: [f64; 0] = [];
    let ends = day_ends(ds);
    let mut day_i = 0usize;

    let mut book = ds.new_book();
    let mut ledger = Ledger { position: 0, cash: 0.0, fees: 0.0, trip_open: None, trips: Vec::new() };
    let mut view = View {
        position: 0,
        entry_price: f64::NAN,
        entry_ts: 0,
        open: Vec::with_capacity(64),
        cash: 0.0,
        fees: 0.0,
        day: i64::MIN,
        day_start: 0.0,
        halted_day: None,
    };
    // (arrival at the exchange, action, order) sorted by arrival; (local delivery time, report).
    let mut requests: Vec<(i64, Action, Order)> = Vec::with_capacity(256);
    let mut responses: Vec<(i64, Report)> = Vec::with_capacity(256);
    let mut actions: Vec<Action> = Vec::with_capacity(16);
    let mut out = Outcome {
        strategy: s.strategy.name(),
        queue_model: s.exchange.queue_model(),
        latency_model: s.latency.name(),
        orders: Vec::new(),
        fills: Vec::new(),
        marks: Vec::new(),
        trips: Vec::new(),
        risk_hits: Vec::new(),
        samples: Vec::with_capacity(ds.events.len() / 2),
        signals: Vec::new(),
        signal_ts: Vec::new(),
        events: ds.events.len(),
        final_position: 0,
        tick_value: inst.ticks_to_f64(1),
        lot_units: inst.lots_to_f64(1),
        dropped: 0,
        clock_offset_ns: 0,
    };
    let mut rate = RateWindow::new(s.limits.max_trades_per_minute.unwrap_or(1) as usize);
    let mut next_id = 1u64;
    let mut next_mark = i64::MIN;
    let mut sig_cursor = 0usize;
    let mut current_signal: Option<SignalPoint> = None;
    let mut waiting: std::collections::VecDeque<SignalPoint> = std::collections::VecDeque::with_capacity(64);
    let mut last_strength = f32::NAN;
    let mut prev_batch_end = true;
    let mut last_mid = f64::NAN;
    let offset = clock_offset(ds);
    out.clock_offset_ns = offset;

    for (i, ev) in ds.events.iter().enumerate() {
        // 1. Requests that reached the matching engine by now (only between source messages,
        //    where the book is consistent).
        if prev_batch_end && !requests.is_empty() {
            let n = requests.partition_point(|r| r.0 <= ev.ts_exchange);
            for (arr, action, order) in requests.drain(..n) {
                s.exchange.arrive(action, order, &book, arr, i as u64);
            }
        }
        prev_batch_end = ev.is_batch_end();
        // 2. The market event, then its effect on our resting orders.
        let prev = (!s.exchange.resting.is_empty() && ev.kind.is_level_update() && s.exchange.rests_at(ev.side, ev.price))
            .then(|| book.layout.size_at(ev.side, ev.price));
        book.apply(ev);
        s.exchange.on_event(ev, prev, &book, i as u64);
        s.exchange.retire_l3(ev);
        for r in s.exchange.reports.drain(..) {
            let ts = match &r {
                Report::Accepted(o) => o.ts_arrived,
                Report::Fill(f) => f.ts_exchange,
                Report::Done(o) => o.ts_done,
            };
            if let Report::Fill(f) = &r {
                ledger.apply(f, value, last_strength);
            }
            let at = ts + s.latency.response(ts);
            let k = responses.partition_point(|x| x.0 <= at);
            responses.insert(k, (at, r));
        }
        let sample = match &mut fe {
            Some(fe) => fe.on_event(ev, &book),
            None => ev.is_batch_end() && book.is_synced(),
        };
        if !sample {
            continue;
        }
        // 3. A sample point: the strategy's turn, at its local time.
        let tl = if ev.ts_local != NO_TS { ev.ts_local - offset } else { ev.ts_exchange + s.feed_latency_ns };
        let n = if responses.is_empty() { 0 } else { responses.partition_point(|x| x.0 <= tl) };
        for (_, r) in responses.drain(..n) {
            match r {
                Report::Accepted(o) => {
                    if let Some(v) = view.open.iter_mut().find(|v| v.id == o.id) {
                        v.status = if o.status == Status::Pending { Status::Resting } else { o.status };
                        v.ts_arrived = o.ts_arrived;
                    }
                }
                Report::Fill(mut f) => {
                    f.ts_local = tl;
                    view.apply_fill(&f, value, tl);
                    s.strategy.on_fill(&f);
                    out.fills.push(f);
                }
                Report::Done(o) => {
                    if let Some(k) = view.open.iter().position(|v| v.id == o.id) {
                        view.open.swap_remove(k);
                    }
                    out.orders.push(o);
                }
            }
        }
        while sig_cursor < s.signals.len() && s.signals[sig_cursor].event_index <= i as u64 {
            let mut p = s.signals[sig_cursor];
            p.available_at = tl + s.model_latency_ns;
            waiting.push_back(p);
            out.signals.push(p);
            out.signal_ts.push(ds.events.get(p.event_index as usize).map_or(ev.ts_exchange, |e| e.ts_exchange));
            sig_cursor += 1;
        }
        while waiting.front().is_some_and(|p| p.available_at <= tl) {
            current_signal = waiting.pop_front();
        }
        if let Some(p) = &current_signal {
            last_strength = p.signal.strength;
        }
        let mid = book.mid().unwrap_or(f64::NAN);
        if mid.is_finite() {
            last_mid = mid;
            out.samples.push((ev.ts_exchange, mid));
        }
        if ev.ts_exchange >= next_mark && last_mid.is_finite() && i >= s.trade_from_event {
            let gross = ledger.cash + ledger.position as f64 * last_mid * value;
            out.marks.push(Mark { ts: ev.ts_exchange, mid: last_mid, position: ledger.position, gross, net: gross - ledger.fees });
            next_mark = if next_mark == i64::MIN {
                ev.ts_exchange + s.mark_interval_ns
            } else {
                next_mark + s.mark_interval_ns * ((ev.ts_exchange - next_mark) / s.mark_interval_ns + 1)
            };
        }

        // Risk checks before the strategy acts (on its own view).
        actions.clear();
        let day = tl.div_euclid(DAY_NS);
        if day != view.day && view.pnl(last_mid, value).is_finite() {
            view.day = day;
            view.day_start = view.pnl(last_mid, value);
        }
        while day_i + 1 < ends.len() && ends[day_i].0 < ev.ts_exchange.div_euclid(DAY_NS) {
            day_i += 1;
        }
        let mut force_flat = None;
        if let Some(d) = s.limits.flat_before_end_ns {
            if ev.ts_exchange >= ends[day_i].1 - d && view.halted_day != Some(day) {
                force_flat = Some(Limit::SessionEnd);
            }
        }
        if let Some(ml) = s.limits.max_loss {
            if view.halted_day != Some(day) && last_mid.is_finite() && view.pnl(last_mid, value) - view.day_start < -ml {
                force_flat = Some(Limit::MaxLoss);
            }
        }
        if let Some(t) = s.limits.position_timeout_ns {
            if force_flat.is_none() && view.position != 0 && view.entry_ts != 0 && tl - view.entry_ts >= t && view.open.is_empty() {
                out.risk_hits.push(RiskHit { ts_local: tl, limit: Limit::PositionTimeout });
                actions.extend(flatten(view.position, tags::RISK));
            }
        }
        if let Some(limit) = force_flat {
            out.risk_hits.push(RiskHit { ts_local: tl, limit });
            view.halted_day = Some(day);
            for o in &view.open {
                actions.push(Action::Cancel { id: o.id });
            }
            let working: i64 = view.open.iter().map(|o| o.side.sign() * o.leaves).sum();
            if working == 0 {
                actions.extend(flatten(view.position, tags::RISK));
            }
        }
        let halted = view.halted_day == Some(day);
        if halted && force_flat.is_none() && view.open.is_empty() && view.position != 0 {
            actions.extend(flatten(view.position, tags::RISK)); // finish flattening after cancels
        }
        let risk_actions = actions.len();
        if !halted && actions.is_empty() && i >= s.trade_from_event {
            let features = match &fe {
                Some(fe) => fe.values(),
                None => &no_features,
            };
            let m = MarketView {
                book: &book,
                inst: &inst,
                event_index: i,
                ts_exchange: ev.ts_exchange,
                ts_local: tl,
                features,
                signal: current_signal.as_ref(),
            };
            let a =
                AccountView { position: view.position, entry_price: view.entry_price, entry_ts: view.entry_ts, open: &view.open, halted };
            s.strategy.on_sample(&m, &a, &mut actions);
        }
        // 4. Send: strategy actions through the risk filter; risk-layer actions as they are.
        for (j, action) in actions.drain(..).enumerate() {
            let from_strategy = j >= risk_actions;
            let mut order = match action {
                Action::Submit { side, kind, price, qty, tag } => Order::new(next_id, side, kind, price, qty, tag),
                Action::Cancel { id } | Action::Modify { id, .. } => match view.open.iter_mut().find(|o| o.id == id) {
                    // One cancel in flight per order: a strategy that asks again at every sample
                    // until the answer arrives sends nothing more.
                    Some(o) if o.cancel_pending => continue,
                    Some(o) => {
                        o.cancel_pending = matches!(action, Action::Cancel { .. });
                        *o
                    }
                    None => continue,
                },
            };
            if let (true, Action::Submit { side, qty, .. }) = (from_strategy, action) {
                let increases = view.position == 0 || view.position.signum() == side.sign() || qty > view.position.abs();
                if let Some(mp) = s.limits.max_position {
                    if increases && (view.position + side.sign() * (qty + crate::strategy::working(&view.open, side))).abs() > mp {
                        out.risk_hits.push(RiskHit { ts_local: tl, limit: Limit::MaxPosition });
                        out.dropped += 1;
                        continue;
                    }
                }
                if let (Some(ms), Some(sp)) = (s.limits.max_spread_ticks, book.best_ask().zip(book.best_bid()).map(|(a, b)| a.0 - b.0)) {
                    if increases && sp > ms {
                        out.risk_hits.push(RiskHit { ts_local: tl, limit: Limit::MaxSpread });
                        out.dropped += 1;
                        continue;
                    }
                }
                if s.limits.max_trades_per_minute.is_some() && !rate.admit(tl, 60_000_000_000) {
                    out.risk_hits.push(RiskHit { ts_local: tl, limit: Limit::MaxTradesPerMinute });
                    out.dropped += 1;
                    continue;
                }
            }
            if let Action::Submit { .. } = action {
                order.ts_sent = tl;
                order.arrival_mid = mid;
                next_id += 1;
                view.open.push(order);
            }
            let arrive = tl + s.latency.entry(tl);
            let k = requests.partition_point(|r| r.0 <= arrive);
            requests.insert(k, (arrive, action, order));
        }
    }
    // Requests still in flight at the end reach the final book; their answers are recorded.
    let last_ts = ds.events.last().map(|e| e.ts_exchange).unwrap_or(0);
    for (arr, action, order) in requests.drain(..) {
        s.exchange.arrive(action, order, &book, arr.max(last_ts), ds.events.len() as u64);
    }
    for r in s.exchange.reports.drain(..) {
        match r {
            Report::Fill(f) => {
                ledger.apply(&f, value, last_strength);
                out.fills.push(f);
            }
            Report::Done(o) => out.orders.push(o),
            Report::Accepted(_) => {}
        }
    }
    for (_, r) in responses.drain(..) {
        match r {
            Report::Fill(f) => out.fills.push(f),
            Report::Done(o) => out.orders.push(o),
            Report::Accepted(_) => {}
        }
    }
    // Orders still resting at the end.
    out.orders.extend(s.exchange.resting.iter().copied());
    if last_mid.is_finite() {
        let gross = ledger.cash + ledger.position as f64 * last_mid * value;
        out.marks.push(Mark { ts: last_ts, mid: last_mid, position: ledger.position, gross, net: gross - ledger.fees });
    }
    out.final_position = ledger.position;
    out.trips = std::mem::take(&mut ledger.trips);
    Ok(out)
}
