//! The simulated matching engine for our own orders against the replayed canonical book. The
//! replayed market cannot see our orders (no self-impact on the book; docs/backtest.md): resting
//! orders fill by the fill rule and the queue model, liquidity-taking orders walk the visible
//! levels (slippage) plus an optional impact surcharge.

use crate::models::fee::FeeInput;
use crate::models::impact::ImpactModel;
use crate::models::queue::QueueModel;
use crate::models::Fees;
use crate::order::{Action, Fill, Order, OrderKind, Reason, Status};
use flowcast_datasets::{flags, BookLayout, Event, EventKind, Instrument, OrderBook, Side};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// When a resting order executes (hftbacktest's two exchange models, written down):
/// - both: a buy fills completely when the best ask reaches its price (the book moved through
///   it) or a sell-aggressor trade prints **below** its price (the trade went through our level);
///   sells symmetric;
/// - `NoPartial`: a trade **at** our price fills the order completely as soon as the queue ahead
///   is exhausted (`front < 0` after the trade);
/// - `Partial`: a trade at our price fills `min(leaves, −front)` lots (the part of the trade that
///   reached us), and the order stays at the head (`front = 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillRule {
    #[default]
    NoPartial,
    Partial,
}

/// An exchange message about one of our orders.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Report {
    /// The order reached the exchange (resting or executed at once).
    Accepted(Order),
    Fill(Fill),
    /// The order's final state.
    Done(Order),
}

/// Levels a liquidity-taking order may walk (beyond them the remainder is cancelled).
const MAX_WALK: usize = 256;

pub struct Exchange {
    pub rule: FillRule,
    queue: Box<dyn QueueModel>,
    impact: Box<dyn ImpactModel>,
    fees: Fees,
    inst: Instrument,
    /// Our resting orders (few: a linear scan beats a map).
    pub resting: Vec<Order>,
    /// L3 queue tracking: order id → (event index it was added, lots remaining).
    l3: HashMap<u64, (u64, i64)>,
    walk_px: Vec<i64>,
    walk_sz: Vec<i64>,
    /// Reports produced since the engine last drained them.
    pub reports: Vec<Report>,
    /// `queue.uses_l3()`, cached (asked once per event).
    l3_mode: bool,
}

impl Exchange {
    pub fn new(rule: FillRule, queue: Box<dyn QueueModel>, impact: Box<dyn ImpactModel>, fees: Fees, inst: Instrument) -> Exchange {
        let l3_mode = queue.uses_l3();
        Exchange {
            rule,
            queue,
            impact,
            fees,
            inst,
            resting: Vec::with_capacity(64),
            l3: HashMap::with_capacity(1 << 16),
            walk_px: vec![0; MAX_WALK],
            walk_sz: vec![0; MAX_WALK],
            reports: Vec::with_capacity(256),
            l3_mode,
        }
    }

    pub fn queue_model(&self) -> &'static str {
        self.queue.name()
    }

    fn fee(&self, price: f64, lots: i64, maker: bool) -> f64 {
        let qty = self.inst.lots_to_f64(lots);
        let notional = (self.inst.ticks_to_f64(1) * price * qty).abs();
        self.fees.fee(&FeeInput { notional, qty, maker })
    }

    fn maker_fill(&mut self, k: usize, lots: i64, ts: i64) {
        let o = &mut self.resting[k];
        let lots = lots.min(o.leaves);
        if lots <= 0 {
            return;
        }
        o.leaves -= lots;
        o.filled += lots;
        let (id, side, price, mid, tag, kind) = (o.id, o.side, o.price, o.arrival_mid, o.tag, o.kind);
        let fee = self.fee(price as f64, lots, true);
        self.reports.push(Report::Fill(Fill {
            order_id: id,
            side,
            ts_exchange: ts,
            ts_local: 0,
            price,
            effective_price: price as f64,
            qty: lots,
            maker: true,
            fee,
            arrival_mid: mid,
            tag,
            kind,
        }));
    }

    /// Removes filled orders from the book, reporting them done.
    fn sweep_filled(&mut self, ts: i64) {
        let mut k = 0;
        while k < self.resting.len() {
            if self.resting[k].leaves <= 0 {
                let mut o = self.resting.swap_remove(k);
                o.status = Status::Filled;
                o.ts_done = ts;
                self.reports.push(Report::Done(o));
            } else {
                k += 1;
            }
        }
    }

    /// Takes liquidity for `o` up to its limit (market: any price) from the visible book; returns
    /// lots filled. Fills at each level's price, at most that level's size (our order does not
    /// consume the replayed book, so two orders in a row see the same levels).
    fn take<L: BookLayout>(&mut self, o: &mut Order, book: &OrderBook<L>, ts: i64) -> i64 {
        let opp = o.side.opposite();
        let n = book.layout.top(opp, &mut self.walk_px, &mut self.walk_sz);
        let mut remaining = o.leaves;
        let mut lots_done = 0i64;
        let start = self.reports.len();
        for j in 0..n {
            let (px, sz) = (self.walk_px[j], self.walk_sz[j]);
            let acceptable = match (o.kind, o.side) {
                (OrderKind::Market, _) => true,
                (_, Side::Bid) => px <= o.price,
                (_, Side::Ask) => px >= o.price,
            };
            if !acceptable || remaining == 0 {
                break;
            }
            let q = remaining.min(sz);
            remaining -= q;
            lots_done += q;
            // Each level is one fill (as the venue would print it); fee set below.
            let fee = 0.0;
            self.reports.push(Report::Fill(Fill {
                order_id: o.id,
                side: o.side,
                ts_exchange: ts,
                ts_local: 0,
                price: px,
                effective_price: px as f64,
                qty: q,
                maker: false,
                fee,
                arrival_mid: o.arrival_mid,
                tag: o.tag,
                kind: o.kind,
            }));
        }
        if lots_done > 0 {
            // Impact on the whole taken quantity, then fees on the impacted notional, spread over
            // this order's fills pro rata.
            let imp = self.impact.impact_bps(self.inst.lots_to_f64(lots_done)) / 1e4;
            let sign = o.side.sign() as f64;
            for r in start..self.reports.len() {
                if let Report::Fill(f) = &mut self.reports[r] {
                    f.effective_price = f.price as f64 * (1.0 + sign * imp);
                    let qty = self.inst.lots_to_f64(f.qty);
                    let notional = (self.inst.ticks_to_f64(1) * f.effective_price * qty).abs();
                    f.fee = self.fees.fee(&FeeInput { notional, qty, maker: false });
                }
            }
        }
        o.leaves -= lots_done;
        o.filled += lots_done;
        lots_done
    }

    /// Ends `o` with `status` and `reason` at exchange time `ts` and reports it.
    fn finish(&mut self, mut o: Order, status: Status, reason: Reason, ts: i64) {
        o.status = status;
        o.reason = reason;
        o.ts_done = ts;
        self.reports.push(Report::Done(o));
    }

    /// An order request reaching the matching engine at exchange time `ts` (event index `at`).
    pub fn arrive<L: BookLayout>(&mut self, action: Action, mut o: Order, book: &OrderBook<L>, ts: i64, at: u64) {
        match action {
            Action::Submit { .. } => {}
            Action::Cancel { id } => {
                match self.resting.iter().position(|r| r.id == id) {
                    Some(k) => {
                        let r = self.resting.swap_remove(k);
                        self.finish(r, Status::Cancelled, Reason::UserCancel, ts);
                    }
                    // Already filled or unknown: the cancel is rejected (reported as a done
                    // rejected pseudo-order carrying the id).
                    None => self.finish(Order { id, ..o }, Status::Rejected, Reason::UnknownOrder, ts),
                }
                return;
            }
            Action::Modify { id, price, qty } => {
                let Some(k) = self.resting.iter().position(|r| r.id == id) else {
                    return self.finish(Order { id, ..o }, Status::Rejected, Reason::UnknownOrder, ts);
                };
                let r = &mut self.resting[k];
                if price == r.price && qty <= r.leaves && qty > 0 {
                    // Size down in place: the queue position is kept.
                    r.qty -= r.leaves - qty;
                    r.leaves = qty;
                    return;
                }
                // Cancel-replace: a new queue position at the new price.
                let mut old = self.resting.swap_remove(k);
                o = Order::new(old.id, old.side, old.kind, price, qty, old.tag);
                o.ts_sent = old.ts_sent;
                o.arrival_mid = old.arrival_mid;
                o.filled = 0;
                old.status = Status::Cancelled;
                old.reason = Reason::UserCancel;
                old.ts_done = ts;
                // The replaced order keeps its id; report the old one done only if it had fills.
                if old.filled > 0 {
                    self.reports.push(Report::Done(old));
                }
            }
        }
        o.ts_arrived = ts;
        if o.qty <= 0 || (o.kind != OrderKind::Market && o.price <= 0) {
            return self.finish(o, Status::Rejected, Reason::Invalid, ts);
        }
        if !book.is_synced() {
            return self.finish(o, Status::Rejected, Reason::Unsynced, ts);
        }
        let marketable = match (o.kind, o.side) {
            (OrderKind::Market, _) => true,
            (_, Side::Bid) => book.best_ask().is_some_and(|(a, _)| o.price >= a),
            (_, Side::Ask) => book.best_bid().is_some_and(|(b, _)| o.price <= b),
        };
        if marketable && o.kind == OrderKind::PostOnly {
            return self.finish(o, Status::Rejected, Reason::WouldTake, ts);
        }
        self.reports.push(Report::Accepted(o));
        if marketable {
            self.take(&mut o, book, ts);
        }
        let done = o.leaves == 0 || matches!(o.kind, OrderKind::Ioc | OrderKind::Market);
        if done {
            o.status = if o.leaves == 0 { Status::Filled } else { Status::Cancelled };
            if o.leaves > 0 {
                o.reason = Reason::NoLiquidity;
            }
            o.ts_done = ts;
            self.reports.push(Report::Done(o));
            return;
        }
        o.status = Status::Resting;
        o.queue.placed_at = at;
        let level = book.layout.size_at(o.side, o.price);
        self.queue.on_new(&mut o.queue, level);
        self.resting.push(o);
    }

    /// Whether we rest an order at (side, price) — the engine then passes the level's size before
    /// the event to [`Exchange::on_event`].
    #[inline]
    pub fn rests_at(&self, side: Side, price: i64) -> bool {
        self.resting.iter().any(|o| o.side == side && o.price == price)
    }

    #[inline]
    pub fn tracks_l3(&self) -> bool {
        self.l3_mode
    }

    /// One replayed event, after the book applied it. `prev` is the size at the event's level
    /// before it (only when [`Exchange::rests_at`] said so). Allocation-free unless an L3 order
    /// is added (its id map grows amortised).
    pub fn on_event<L: BookLayout>(&mut self, ev: &Event, prev: Option<i64>, book: &OrderBook<L>, at: u64) {
        let l3 = self.l3_mode;
        if l3 {
            self.track_l3(ev, at);
        }
        if self.resting.is_empty() {
            return;
        }
        if ev.kind == EventKind::Gap {
            // Our orders' queue positions are unknowable across a gap: keep them, at the back.
            for o in &mut self.resting {
                o.queue.front = f64::INFINITY;
            }
            return;
        }
        if let (Some(prev), true) = (prev, ev.kind.is_level_update()) {
            let new = ev.size.max(0);
            for o in self.resting.iter_mut().filter(|o| o.side == ev.side && o.price == ev.price) {
                if o.queue.front.is_infinite() {
                    o.queue.front = new as f64;
                } else {
                    self.queue.on_depth(&mut o.queue, prev, new);
                }
            }
        }
        if let Some((p, qty, aggressor)) = ev.trade() {
            // Trade price ×2 so LOBSTER's half-tick prints compare exactly.
            let p2 = 2 * p + (ev.flags & flags::HALF_TICK != 0) as i64;
            let hit = aggressor.opposite();
            for k in 0..self.resting.len() {
                let o = self.resting[k];
                if o.side != hit {
                    continue;
                }
                let through = match hit {
                    Side::Bid => 2 * o.price > p2,
                    Side::Ask => 2 * o.price < p2,
                };
                if through {
                    self.maker_fill(k, o.leaves, ev.ts_exchange);
                    continue;
                }
                if 2 * o.price != p2 {
                    continue;
                }
                if l3 {
                    if ev.kind == EventKind::OrderExecute {
                        let ahead = self.l3_ahead(ev.order_id, o.queue.placed_at);
                        if ahead {
                            self.queue.on_ahead_removed(&mut self.resting[k].queue, qty);
                        } else {
                            // An order behind us executed: the queue ahead was empty.
                            self.resting[k].queue.front = -(qty as f64);
                        }
                    }
                } else {
                    self.queue.on_trade(&mut self.resting[k].queue, qty);
                }
                let front = self.resting[k].queue.front;
                if front < 0.0 {
                    let lots = match self.rule {
                        FillRule::NoPartial => o.leaves,
                        FillRule::Partial => ((-front).floor() as i64).min(o.leaves),
                    };
                    self.maker_fill(k, lots, ev.ts_exchange);
                    self.resting[k].queue.front = 0.0;
                }
            }
        }
        if l3 && matches!(ev.kind, EventKind::OrderCancel | EventKind::OrderDelete) {
            for k in 0..self.resting.len() {
                let o = self.resting[k];
                if o.side == ev.side && o.price == ev.price && self.l3_ahead(ev.order_id, o.queue.placed_at) {
                    self.queue.on_ahead_removed(&mut self.resting[k].queue, ev.size);
                    let q = &mut self.resting[k].queue;
                    q.front = q.front.max(0.0);
                }
            }
        }
        if ev.is_batch_end() {
            // The book moved through a resting order: filled at its limit.
            let (bb, ba) = (book.best_bid().map(|x| x.0), book.best_ask().map(|x| x.0));
            for k in 0..self.resting.len() {
                let o = self.resting[k];
                let crossed = match o.side {
                    Side::Bid => ba.is_some_and(|a| a <= o.price),
                    Side::Ask => bb.is_some_and(|b| b >= o.price),
                };
                if crossed {
                    self.maker_fill(k, o.leaves, ev.ts_exchange);
                }
            }
        }
        self.sweep_filled(ev.ts_exchange);
    }

    /// Whether L3 order `id` joined the queue before event `placed_at` (unknown ids predate the data).
    fn l3_ahead(&self, id: u64, placed_at: u64) -> bool {
        self.l3.get(&id).is_none_or(|&(added, _)| added < placed_at)
    }

    /// Keeps the id → (added at, remaining) map; entries leave when their order is gone. The
    /// lookup for the current event happens after this update, so an order's `added` stays
    /// available for the event that removes it.
    fn track_l3(&mut self, ev: &Event, at: u64) {
        match ev.kind {
            EventKind::OrderAdd => {
                self.l3.insert(ev.order_id, (at, ev.size));
            }
            EventKind::OrderCancel | EventKind::OrderExecute => {
                if let Some(e) = self.l3.get_mut(&ev.order_id) {
                    e.1 -= ev.size;
                }
            }
            _ => {}
        }
    }

    /// Drops finished L3 orders from the id map (called by the engine after `on_event`).
    pub fn retire_l3(&mut self, ev: &Event) {
        if !self.l3_mode {
            return;
        }
        let gone = match ev.kind {
            EventKind::OrderDelete => true,
            EventKind::OrderCancel | EventKind::OrderExecute => self.l3.get(&ev.order_id).is_some_and(|e| e.1 <= 0),
            _ => false,
        };
        if gone {
            self.l3.remove(&ev.order_id);
        }
    }
}
