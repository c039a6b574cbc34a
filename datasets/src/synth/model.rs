//! The simulator: an L3 book (FIFO queues of sized orders on a tick grid) driven by the
//! Cont–Stoikov–Talreja event rates, one Gillespie step at a time. Equations: docs/synth.md.

use super::{Message, MsgType, SynthConfig, SynthOutput, SynthStats};
use crate::book::NO_PRICE;
use crate::event::Side;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp1, Geometric, Poisson};
use std::collections::VecDeque;

/// LOBSTER marks an empty ask level with price 9999999999, so real prices stay below it.
pub(crate) fn max_ticks(tick_price: i64) -> i64 {
    (9_999_999_999 - 1) / tick_price
}

/// One price level: FIFO queue of `(order_id, remaining shares)` and their sum.
#[derive(Clone, Debug, Default)]
struct Level {
    orders: VecDeque<(u64, i64)>,
    total: i64,
}

/// One side of the book on a dense tick grid indexed by price (prices are small positive
/// integers, so a `Vec` beats a tree: O(1) access, no allocation once the queues are warm).
#[derive(Clone, Debug)]
struct BookSide {
    side: Side,
    levels: Vec<Level>,
    best: Option<i64>,
    n_orders: usize,
    n_levels: usize,
    /// Best price when the side was last non-empty: the reference quote while it is empty.
    last_best: i64,
    /// Lowest and highest price that ever held an order (bounds the grid scans of [`Sim::orders`]).
    touched: (i64, i64),
}

impl BookSide {
    fn new(side: Side, reference: i64) -> BookSide {
        BookSide { side, levels: Vec::new(), best: None, n_orders: 0, n_levels: 0, last_best: reference, touched: (i64::MAX, i64::MIN) }
    }
    #[inline]
    fn level(&self, p: i64) -> Option<&Level> {
        usize::try_from(p).ok().and_then(|i| self.levels.get(i))
    }
    #[inline]
    fn count(&self, p: i64) -> usize {
        self.level(p).map_or(0, |l| l.orders.len())
    }
    /// The price `i` ticks away from `from`, away from the other side (bids down, asks up).
    #[inline]
    fn away(&self, from: i64, i: i64) -> i64 {
        match self.side {
            Side::Bid => from - i,
            Side::Ask => from + i,
        }
    }
    #[inline]
    fn better(&self, a: i64, b: i64) -> bool {
        match self.side {
            Side::Bid => a > b,
            Side::Ask => a < b,
        }
    }
    /// Best quote, or the last one while the side is empty.
    #[inline]
    fn reference(&self) -> i64 {
        self.best.unwrap_or(self.last_best)
    }

    fn add(&mut self, p: i64, id: u64, size: i64) {
        let i = p as usize;
        if i >= self.levels.len() {
            self.levels.resize_with(i + 1024, Level::default);
        }
        let l = &mut self.levels[i];
        if l.orders.is_empty() {
            self.n_levels += 1;
        }
        l.orders.push_back((id, size));
        l.total += size;
        self.n_orders += 1;
        self.touched = (self.touched.0.min(p), self.touched.1.max(p));
        if self.best.is_none_or(|b| self.better(p, b)) {
            self.best = Some(p);
        }
    }

    /// Take `by` shares off the `k`-th order at `p` (removing it when none are left).
    /// Returns `(order_id, remaining)`.
    fn reduce(&mut self, p: i64, k: usize, by: i64) -> (u64, i64) {
        let l = &mut self.levels[p as usize];
        let o = &mut l.orders[k];
        debug_assert!(by > 0 && by <= o.1);
        o.1 -= by;
        l.total -= by;
        let (id, rem) = *o;
        if rem == 0 {
            l.orders.remove(k);
            self.n_orders -= 1;
            if l.orders.is_empty() {
                self.n_levels -= 1;
                if self.best == Some(p) {
                    self.rescan_best(p);
                }
            }
        }
        (id, rem)
    }

    /// The best level at `from` emptied: find the next one outwards.
    fn rescan_best(&mut self, from: i64) {
        if self.n_levels == 0 {
            self.best = None;
            self.last_best = from;
            return;
        }
        let mut p = from;
        loop {
            p = self.away(p, 1);
            if self.count(p) > 0 {
                self.best = Some(p);
                return;
            }
        }
    }

    /// Write up to `n` levels from the touch into `row` (LOBSTER layout, price at `4l + off`,
    /// size at `4l + off + 1`), padding with empty levels.
    fn top(&self, n: usize, row: &mut [i64], off: usize) {
        let mut l = 0;
        if let Some(mut p) = self.best {
            let want = n.min(self.n_levels);
            while l < want {
                let lv = &self.levels[p as usize];
                if !lv.orders.is_empty() {
                    row[4 * l + off] = p;
                    row[4 * l + off + 1] = lv.total;
                    l += 1;
                }
                p = self.away(p, 1);
            }
        }
        for l in l..n {
            row[4 * l + off] = NO_PRICE;
            row[4 * l + off + 1] = 0;
        }
    }

    /// Σ over resting orders of θ(distance from `opp`), distances beyond D at θ(D).
    fn cancel_rate(&self, opp: i64, theta: &[f64]) -> f64 {
        let d = theta.len();
        let mut near = 0usize;
        let mut rate = 0.0;
        for i in 1..d {
            let c = self.count(self.away(opp, i as i64));
            near += c;
            rate += theta[i - 1] * c as f64;
        }
        rate + theta[d - 1] * (self.n_orders - near) as f64
    }

    /// The order to cancel for `u` uniform on `[0, cancel_rate)`: `(price, queue index)`.
    /// Walks the same terms as [`BookSide::cancel_rate`], so each order is chosen with
    /// probability θ(its distance) / rate.
    fn pick_cancel(&self, opp: i64, theta: &[f64], u: f64) -> (i64, usize) {
        let d = theta.len();
        let mut acc = 0.0;
        let mut near = 0usize;
        let mut last = None;
        for i in 1..d {
            let p = self.away(opp, i as i64);
            let c = self.count(p);
            if c == 0 {
                continue;
            }
            let w = theta[i - 1] * c as f64;
            if u < acc + w {
                return (p, (((u - acc) / theta[i - 1]) as usize).min(c - 1));
            }
            acc += w;
            near += c;
            last = Some((p, c - 1));
        }
        let far = self.n_orders - near;
        if far == 0 {
            // Only reachable through float rounding at the top of the range.
            return last.expect("cancel picked on an empty side");
        }
        let mut j = (((u - acc) / theta[d - 1]) as usize).min(far - 1);
        let mut p = self.away(opp, d as i64);
        loop {
            let c = self.count(p);
            if j < c {
                return (p, j);
            }
            j -= c;
            p = self.away(p, 1);
        }
    }
}

/// What a Gillespie step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A limit order on `side`, `distance` ticks (1..=D) from the opposite reference quote.
    Limit { side: Side, distance: usize },
    /// A market order that hits the resting `side` (a buy hits `Ask`).
    Market { side: Side },
    /// A resting order on `side` is cancelled (`partial`: type 2, else type 3).
    Cancel { side: Side, partial: bool },
    /// A hidden order resting on `side` is executed (type 5).
    Hidden { side: Side },
}

/// One simulated event: its class, waiting time and the total rate it was drawn with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub class: Class,
    /// Waiting time before the event, seconds (exponential with rate `total_rate`).
    pub dt: f64,
    pub total_rate: f64,
}

/// The simulator. [`super::generate`] drives it; tests step it to inspect every state.
pub struct Sim {
    cfg: SynthConfig,
    rng: ChaCha8Rng,
    geo: Geometric,
    sides: [BookSide; 2],
    lambda_total: f64,
    max_ticks: i64,
    next_id: u64,
    /// ns after midnight.
    t_ns: i64,
    messages: Vec<Message>,
    book: Vec<i64>,
    /// Last written row and a scratch row.
    prev_row: Vec<i64>,
    row: Vec<i64>,
    stats: SynthStats,
}

impl Sim {
    /// A simulator with the opening book already submitted (at the session start).
    /// `cfg` must pass [`SynthConfig::validate`].
    pub fn new(cfg: SynthConfig) -> Sim {
        let w = 4 * cfg.levels;
        let mut empty = vec![0i64; w];
        for l in 0..cfg.levels {
            empty[4 * l] = NO_PRICE;
            empty[4 * l + 2] = NO_PRICE;
        }
        let cap = cfg.events.saturating_mul(5) / 4 + 64;
        let mut sim = Sim {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            geo: Geometric::new(cfg.lot_multiplier_p).expect("validated lot_multiplier_p"),
            sides: [BookSide::new(Side::Bid, cfg.start_bid), BookSide::new(Side::Ask, cfg.start_ask)],
            lambda_total: cfg.lambda.iter().sum(),
            max_ticks: max_ticks(cfg.tick_price),
            next_id: 1,
            t_ns: cfg.session_start_ns,
            messages: Vec::with_capacity(cap),
            book: Vec::with_capacity(cap.saturating_mul(w)),
            prev_row: empty.clone(),
            row: empty,
            stats: SynthStats::default(),
            cfg,
        };
        sim.open();
        sim
    }

    /// Opening book: D levels per side from the opening quotes outwards, the level at distance i
    /// holding max(1, Poisson(λ(i)/θ(i))) orders — the M/M/∞ stationary queue of that level
    /// without market orders (docs/synth.md).
    fn open(&mut self) {
        let d = self.cfg.lambda.len();
        for j in 0..d {
            let mean = self.cfg.lambda[j] / self.cfg.theta[j];
            for side in [Side::Bid, Side::Ask] {
                let p = match side {
                    Side::Bid => self.cfg.start_bid - j as i64,
                    Side::Ask => self.cfg.start_ask + j as i64,
                };
                let n = (Poisson::new(mean).expect("positive mean").sample(&mut self.rng) as usize).max(1);
                for _ in 0..n {
                    self.submit(side, p);
                    self.stats.opening_orders += 1;
                }
            }
        }
    }

    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }
    /// Current time, ns after midnight.
    pub fn time_ns(&self) -> i64 {
        self.t_ns
    }
    pub fn best(&self, side: Side) -> Option<i64> {
        self.sides[side as usize].best
    }
    /// The quote distances of `side`'s orders are measured from: the best price, or the last
    /// best while the side is empty.
    pub fn reference(&self, side: Side) -> i64 {
        self.sides[side as usize].reference()
    }
    /// Every resting order of `side` as `(price, order_id, shares)`, best price first, FIFO
    /// within a level (for tests: an order-level view independent of the level totals).
    pub fn orders(&self, side: Side) -> Vec<(i64, u64, i64)> {
        let s = &self.sides[side as usize];
        let mut v = Vec::with_capacity(s.n_orders);
        for p in s.touched.0..=s.touched.1 {
            v.extend(s.levels[p as usize].orders.iter().map(|&(id, q)| (p, id, q)));
        }
        if side == Side::Bid {
            v.sort_by_key(|&(p, ..)| std::cmp::Reverse(p));
        }
        v
    }
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }
    /// The last written orderbook row (the current book's top N).
    pub fn last_row(&self) -> &[i64] {
        &self.prev_row
    }

    fn draw_size(&mut self) -> i64 {
        let lot = self.cfg.round_lot;
        if self.rng.random_bool(self.cfg.round_lot_prob) {
            lot * (1 + self.geo.sample(&mut self.rng) as i64)
        } else {
            self.rng.random_range(1..lot)
        }
    }

    /// Rate of limit orders on `side` given the opposite reference `opp`: Σ λ(i) over the
    /// distances whose price is on the grid (positive, below LOBSTER's empty-ask sentinel).
    fn limit_rate(&self, side: Side, opp: i64) -> f64 {
        let d = self.cfg.lambda.len() as i64;
        let ok = |i: i64| match side {
            Side::Bid => opp - i >= 1,
            Side::Ask => opp + i <= self.max_ticks,
        };
        if ok(d) {
            self.lambda_total
        } else {
            (1..=d).filter(|&i| ok(i)).map(|i| self.cfg.lambda[i as usize - 1]).sum()
        }
    }

    /// The eight class rates: limit bid/ask, market hitting bid/ask, cancel bid/ask, hidden
    /// bid/ask.
    fn rates(&self) -> [f64; 8] {
        let (bids, asks) = (&self.sides[0], &self.sides[1]);
        let (bid_ref, ask_ref) = (bids.reference(), asks.reference());
        let quoted = bids.best.is_some() && asks.best.is_some();
        let hidden = if quoted { self.cfg.hidden_rate } else { 0.0 };
        let mkt = |s: &BookSide| if s.n_orders > 0 { self.cfg.mu } else { 0.0 };
        [
            self.limit_rate(Side::Bid, ask_ref),
            self.limit_rate(Side::Ask, bid_ref),
            mkt(bids),
            mkt(asks),
            bids.cancel_rate(ask_ref, &self.cfg.theta),
            asks.cancel_rate(bid_ref, &self.cfg.theta),
            hidden,
            hidden,
        ]
    }

    /// One Gillespie step: wait Exp(R) with R the sum of all rates, then pick a class with
    /// probability rate/R and apply it. `None` (nothing applied) if the session would close
    /// first.
    pub fn step(&mut self) -> Option<Step> {
        let rates = self.rates();
        let total: f64 = rates.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let e: f64 = Exp1.sample(&mut self.rng);
        let dt = e / total;
        let t = self.t_ns + (dt * 1e9).round() as i64;
        if t > self.cfg.session_end_ns {
            self.stats.truncated_at_close = true;
            return None;
        }
        self.t_ns = t;
        let u = self.rng.random::<f64>() * total;
        let mut acc = 0.0;
        let mut k = rates.iter().rposition(|&r| r > 0.0).unwrap_or(0);
        for (i, &r) in rates.iter().enumerate() {
            if r > 0.0 && u < acc + r {
                k = i;
                break;
            }
            acc += r;
        }
        let side = if k % 2 == 0 { Side::Bid } else { Side::Ask };
        let class = match k / 2 {
            0 => self.limit(side),
            1 => self.market(side),
            2 => self.cancel(side, (u - acc).clamp(0.0, rates[k])),
            _ => self.hidden(side),
        };
        self.stats.events += 1;
        Some(Step { class, dt, total_rate: total })
    }

    fn limit(&mut self, side: Side) -> Class {
        let opp = self.sides[side.opposite() as usize].reference();
        let d = self.cfg.lambda.len();
        let total = self.limit_rate(side, opp);
        let u = self.rng.random::<f64>() * total;
        let mut acc = 0.0;
        let mut pick = None;
        for i in 1..=d {
            let p = self.sides[side as usize].away(opp, i as i64);
            if !(1..=self.max_ticks).contains(&p) {
                continue;
            }
            pick = Some((i, p));
            acc += self.cfg.lambda[i - 1];
            if u < acc {
                break;
            }
        }
        let (distance, p) = pick.expect("limit class drawn with positive rate");
        self.submit(side, p);
        self.stats.limit_orders[side as usize] += 1;
        Class::Limit { side, distance }
    }

    fn submit(&mut self, side: Side, p: i64) {
        let size = self.draw_size();
        let id = self.next_id;
        self.next_id += 1;
        self.sides[side as usize].add(p, id, size);
        self.emit(MsgType::Submit, id, size, p, side);
    }

    /// Market order of a drawn size against the resting `side`: executes the queue fronts in
    /// price-time priority, one type-4 message per resting order touched, until filled or the
    /// side is empty (the rest is dropped, like an IOC order).
    fn market(&mut self, side: Side) -> Class {
        let mut q = self.draw_size();
        while q > 0 {
            let s = &mut self.sides[side as usize];
            let Some(p) = s.best else { break };
            let front = s.levels[p as usize].orders[0].1;
            let fill = q.min(front);
            let (id, _) = s.reduce(p, 0, fill);
            q -= fill;
            self.emit(MsgType::Execute, id, fill, p, side);
        }
        self.stats.market_orders[side as usize] += 1;
        Class::Market { side }
    }

    /// Cancel the order chosen by `u` on `[0, cancel rate of side)`.
    fn cancel(&mut self, side: Side, u: f64) -> Class {
        let opp = self.sides[side.opposite() as usize].reference();
        let s = &self.sides[side as usize];
        let (p, k) = s.pick_cancel(opp, &self.cfg.theta, u);
        let size = s.levels[p as usize].orders[k].1;
        let partial = size >= 2 && self.rng.random_bool(self.cfg.partial_cancel_prob);
        let by = if !partial {
            size
        } else {
            // Round lots stay round lots; odd lots lose any smaller amount.
            let lot = self.cfg.round_lot;
            if size % lot == 0 && size >= 2 * lot {
                lot * self.rng.random_range(1..size / lot)
            } else {
                self.rng.random_range(1..size)
            }
        };
        let (id, _) = self.sides[side as usize].reduce(p, k, by);
        let kind = if partial { MsgType::Cancel } else { MsgType::Delete };
        self.emit(kind, id, by, p, side);
        self.stats.cancellations[side as usize] += 1;
        self.stats.partial_cancellations[side as usize] += partial as u64;
        Class::Cancel { side, partial }
    }

    /// Execution of a hidden order resting on `side` at a price inside the quotes where it could
    /// rest without executing: a hidden sell in (bid, ask], a hidden buy in [bid, ask).
    fn hidden(&mut self, side: Side) -> Class {
        let (b, a) = match (self.sides[0].best, self.sides[1].best) {
            (Some(b), Some(a)) => (b, a),
            _ => unreachable!("hidden executions need both quotes"),
        };
        let p = match side {
            Side::Bid => self.rng.random_range(b..a),
            Side::Ask => self.rng.random_range(b + 1..=a),
        };
        let size = self.draw_size();
        self.emit(MsgType::Hidden, 0, size, p, side);
        self.stats.hidden_executions[side as usize] += 1;
        Class::Hidden { side }
    }

    /// Record a message and the book after it, unless the LOBSTER window filter drops it.
    fn emit(&mut self, kind: MsgType, order_id: u64, size: i64, price: i64, side: Side) {
        let mut row = std::mem::take(&mut self.row);
        let n = self.cfg.levels;
        self.sides[1].top(n, &mut row, 0);
        self.sides[0].top(n, &mut row, 2);
        let visible = kind == MsgType::Hidden || row != self.prev_row;
        if visible || !self.cfg.lobster_window {
            self.messages.push(Message { time_ns: self.t_ns, kind, order_id, size, price, direction: side.sign() as i8 });
            self.book.extend_from_slice(&row);
            if row[0] == NO_PRICE || row[2] == NO_PRICE {
                self.stats.empty_side_rows += 1;
            }
            std::mem::swap(&mut self.prev_row, &mut row);
        } else {
            self.stats.filtered_messages += 1;
        }
        self.row = row;
    }

    pub fn finish(mut self) -> SynthOutput {
        self.stats.seconds_simulated = (self.t_ns - self.cfg.session_start_ns) as f64 / 1e9;
        SynthOutput { config: self.cfg, messages: self.messages, book: self.book, stats: self.stats }
    }
}
