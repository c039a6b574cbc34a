//! One hand-computed scenario per fill rule, queue rule, fee and risk limit, driven through the
//! real replay loop with a scripted strategy.

use flowcast_backtest::engine::{run, Outcome, Setup};
use flowcast_backtest::exchange::{Exchange, FillRule};
use flowcast_backtest::models::{FeeSpec, ImpactSpec, LatencySpec, QueueSpec};
use flowcast_backtest::order::{Action, OrderKind, Reason, Status};
use flowcast_backtest::risk::{Limit, RiskSpec};
use flowcast_backtest::strategy::{AccountView, MarketView, Strategy};
use flowcast_datasets::{flags, Dataset, DatasetMeta, Event, EventKind, Instrument, Side};

const MS: i64 = 1_000_000;

fn inst() -> Instrument {
    Instrument::new("test", "X", "0.01", 0).unwrap()
}

/// A tiny event tape; every event is its own batch (a consistent book after each).
struct Tape(Vec<Event>);

impl Tape {
    /// Book bid 100 × 10, ask 101 × 10 at t = 0.
    fn new() -> Tape {
        let mut t = Tape(vec![]);
        t.level(0, Side::Bid, 100, 10);
        t.level(0, Side::Ask, 101, 10);
        t
    }
    fn level(&mut self, ms: i64, side: Side, price: i64, size: i64) -> &mut Tape {
        self.0.push(Event::level(side, price, size, ms * MS).with_flags(flags::BATCH_END));
        self
    }
    /// A trade print; `aggressor` is the side that initiated it.
    fn trade(&mut self, ms: i64, aggressor: Side, price: i64, size: i64) -> &mut Tape {
        self.0.push(Event::new(EventKind::Trade, aggressor, price, size, ms * MS).with_flags(flags::BATCH_END));
        self
    }
    fn l3(&mut self, ms: i64, kind: EventKind, side: Side, price: i64, size: i64, id: u64) -> &mut Tape {
        self.0.push(Event::new(kind, side, price, size, ms * MS).with_order(id).with_flags(flags::BATCH_END));
        self
    }
    fn dataset(&self) -> Dataset {
        Dataset { meta: DatasetMeta::new("test", inst(), 5, true), events: self.0.clone() }
    }
}

/// Sends `actions[k]` at the k-th sample point (after the first `skip`).
struct Script {
    at: Vec<(usize, Action)>,
    sample: usize,
}

impl Strategy for Script {
    fn name(&self) -> &'static str {
        "script"
    }
    fn on_sample(&mut self, _m: &MarketView<'_>, _a: &AccountView<'_>, out: &mut Vec<Action>) {
        for (k, a) in &self.at {
            if *k == self.sample {
                out.push(*a);
            }
        }
        self.sample += 1;
    }
}

struct Opts {
    rule: FillRule,
    queue: QueueSpec,
    latency_ms: i64,
    fees: FeeSpec,
    risk: RiskSpec,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { rule: FillRule::NoPartial, queue: QueueSpec::RiskAverse, latency_ms: 0, fees: FeeSpec::default(), risk: RiskSpec::default() }
    }
}

fn go(tape: &Tape, script: Vec<(usize, Action)>, o: Opts) -> Outcome {
    let ds = tape.dataset();
    let exchange = Exchange::new(o.rule, o.queue.build(), ImpactSpec::None.build(), o.fees.build(), inst());
    let setup = Setup {
        exchange,
        latency: LatencySpec::constant(o.latency_ms * MS, 0).build(&[], 0).unwrap(),
        strategy: Box::new(Script { at: script, sample: 0 }),
        limits: o.risk.resolve(&inst()).unwrap(),
        feed_latency_ns: 0,
        mark_interval_ns: 1_000 * MS,
        signals: vec![],
        model_latency_ns: 0,
        trade_from_event: 0,
    };
    run(&ds, setup).unwrap()
}

fn post(side: Side, price: i64, qty: i64) -> Action {
    Action::Submit { side, kind: OrderKind::PostOnly, price, qty, tag: 1 }
}

fn filled(o: &Outcome) -> Vec<(i64, i64, bool)> {
    o.fills.iter().map(|f| (f.price, f.qty, f.maker)).collect()
}

#[test]
fn no_partial_fill_waits_for_the_queue_then_fills_all() {
    // Buy 2 @ 100 behind 10. Sell trade 6 → front 4; the level shows 4 → front 4; trade 5 → front
    // −1 < 0 → the whole order fills at 100 (NoPartial).
    let mut t = Tape::new();
    t.trade(1, Side::Ask, 100, 6).level(1, Side::Bid, 100, 4).trade(2, Side::Ask, 100, 4).trade(3, Side::Ask, 100, 1).level(
        3,
        Side::Bid,
        100,
        0,
    );
    let o = go(&t, vec![(0, post(Side::Bid, 100, 2))], Opts::default());
    assert_eq!(filled(&o), vec![(100, 2, true)], "exactly at the trade that took the queue past us");
    assert_eq!(o.fills[0].ts_exchange, 3 * MS);
    assert_eq!(o.final_position, 2);
}

#[test]
fn partial_fill_takes_only_what_reached_us() {
    // Same queue, but the trade of 5 leaves 1 for us (front −1), then a trade of 3 fills the other lot.
    let mut t = Tape::new();
    t.trade(1, Side::Ask, 100, 6).level(1, Side::Bid, 100, 4).trade(2, Side::Ask, 100, 5).trade(3, Side::Ask, 100, 3);
    let o = go(&t, vec![(0, post(Side::Bid, 100, 2))], Opts { rule: FillRule::Partial, ..Default::default() });
    assert_eq!(filled(&o), vec![(100, 1, true), (100, 1, true)]);
    assert_eq!((o.fills[0].ts_exchange, o.fills[1].ts_exchange), (2 * MS, 3 * MS));
}

#[test]
fn trade_through_and_book_through_fill_completely() {
    // A sell trade below our bid fills it whatever the queue.
    let mut t = Tape::new();
    t.trade(1, Side::Ask, 99, 1);
    let o = go(&t, vec![(0, post(Side::Bid, 100, 3))], Opts::default());
    assert_eq!(filled(&o), vec![(100, 3, true)]);
    // The ask falling to our bid's price fills it at our price.
    let mut t = Tape::new();
    t.level(1, Side::Ask, 100, 5);
    let o = go(&t, vec![(0, post(Side::Bid, 100, 3))], Opts::default());
    assert_eq!(filled(&o), vec![(100, 3, true)]);
}

#[test]
fn cancels_happen_behind_us_under_the_risk_averse_model() {
    // Buy 1 @ 100 behind 10; cancels bring the level to 3 (front 3); a trade of 3 does not reach
    // us (front 0, not < 0); a trade of 1 does.
    let mut t = Tape::new();
    t.level(1, Side::Bid, 100, 3).trade(2, Side::Ask, 100, 3).trade(3, Side::Ask, 100, 1);
    let o = go(&t, vec![(0, post(Side::Bid, 100, 1))], Opts::default());
    assert_eq!(filled(&o), vec![(100, 1, true)]);
    assert_eq!(o.fills[0].ts_exchange, 3 * MS);
}

#[test]
fn probabilistic_queue_advances_on_cancels() {
    // Power(1): front 10, back 0 at placement → a cancel of 4 is all ahead (front 6); a new order
    // of 5 joins behind (level 11); cancel of 5 from 11 with front 6, back 5: p = 5/11,
    // front = 6 − (6/11)·5 = 3.2727…; a trade of 4 then fills us (front < 0).
    let mut t = Tape::new();
    t.level(1, Side::Bid, 100, 6).level(2, Side::Bid, 100, 11).level(3, Side::Bid, 100, 6).trade(4, Side::Ask, 100, 3).trade(
        5,
        Side::Ask,
        100,
        1,
    );
    let q = QueueSpec::Probabilistic(flowcast_backtest::models::queue::ProbFn::Power(1.0));
    let o = go(&t, vec![(0, post(Side::Bid, 100, 1))], Opts { queue: q, ..Default::default() });
    assert_eq!(filled(&o), vec![(100, 1, true)]);
    assert_eq!(o.fills[0].ts_exchange, 5 * MS, "front 3.27 − 3 = 0.27 ≥ 0 after the first trade, < 0 after the second");
    // Under the risk-averse model the same tape never reaches us (front = 6 then 6 − 4 = 2).
    let o = go(&t, vec![(0, post(Side::Bid, 100, 1))], Opts::default());
    assert!(o.fills.is_empty());
}

#[test]
fn exact_fifo_from_order_ids() {
    // L3: orders 1 (4 lots) and 2 (6 lots) rest at 100 before us; order 3 (5) joins after us.
    // Cancelling order 3 (behind) does not move us; executing order 1 (4) and cancelling 2
    // leaves nobody ahead; the next execution (of order 3's remainder... here order 4 added
    // after us) must hit us first → filled.
    let mut t = Tape(vec![]);
    t.l3(0, EventKind::OrderAdd, Side::Bid, 100, 4, 1).level(0, Side::Bid, 100, 4);
    t.l3(0, EventKind::OrderAdd, Side::Bid, 100, 6, 2).level(0, Side::Bid, 100, 10);
    t.level(0, Side::Ask, 101, 10);
    // our order is sent at sample 2 (after the ask exists) and arrives before the next event
    t.l3(1, EventKind::OrderAdd, Side::Bid, 100, 5, 3).level(1, Side::Bid, 100, 15);
    t.l3(2, EventKind::OrderDelete, Side::Bid, 100, 5, 3).level(2, Side::Bid, 100, 10);
    t.l3(3, EventKind::OrderExecute, Side::Bid, 100, 4, 1).level(3, Side::Bid, 100, 6);
    t.l3(4, EventKind::OrderDelete, Side::Bid, 100, 6, 2).level(4, Side::Bid, 100, 0);
    t.l3(5, EventKind::OrderAdd, Side::Bid, 100, 7, 4).level(5, Side::Bid, 100, 7);
    t.l3(6, EventKind::OrderExecute, Side::Bid, 100, 2, 4);
    let o = go(&t, vec![(4, post(Side::Bid, 100, 2))], Opts { queue: QueueSpec::ExactFifo, ..Default::default() });
    assert_eq!(filled(&o), vec![(100, 2, true)]);
    assert_eq!(o.fills[0].ts_exchange, 6 * MS);
    // While order 1 still rests ahead, an execution of it does not fill us.
    let mut t2 = Tape(t.0[..9].to_vec());
    t2.l3(3, EventKind::OrderExecute, Side::Bid, 100, 2, 1);
    let o = go(&t2, vec![(4, post(Side::Bid, 100, 2))], Opts { queue: QueueSpec::ExactFifo, ..Default::default() });
    assert!(o.fills.is_empty());
}

#[test]
fn market_orders_walk_the_book_and_pay_taker_fees() {
    // Asks 101 × 3 and 102 × 5; buy 6 at market → 3 @ 101 + 3 @ 102. Taker 4 bps on notional
    // (tick 0.01, lot 1): 3 × 1.01 + 3 × 1.02 = 6.09 → fee 0.002436.
    let mut t = Tape::new();
    t.level(0, Side::Ask, 101, 3).level(0, Side::Ask, 102, 5).level(1, Side::Bid, 100, 10);
    let buy = Action::Submit { side: Side::Bid, kind: OrderKind::Market, price: 0, qty: 6, tag: 1 };
    let fees = FeeSpec { taker_bps: 4.0, maker_bps: -1.0, ..Default::default() };
    let o = go(&t, vec![(3, buy)], Opts { fees, ..Default::default() });
    assert_eq!(filled(&o), vec![(101, 3, false), (102, 3, false)]);
    let fee: f64 = o.fills.iter().map(|f| f.fee).sum();
    assert!((fee - 6.09 * 4e-4).abs() < 1e-12, "{fee}");
    // Slippage vs the arrival mid 100.5: (3 × 0.5 + 3 × 1.5)/6 ticks = 1 tick = 1/100.5 → 99.5 bps.
    let m = flowcast_backtest::metrics::compute(&o, 1_000 * MS, Default::default(), &[]);
    assert!((m.slippage_bps - 1e4 / 100.5).abs() < 1e-9, "{}", m.slippage_bps);
}

#[test]
fn ioc_remainder_is_cancelled_and_post_only_never_takes() {
    let mut t = Tape::new();
    t.level(0, Side::Ask, 102, 5).level(1, Side::Bid, 100, 10);
    let ioc = Action::Submit { side: Side::Bid, kind: OrderKind::Ioc, price: 101, qty: 15, tag: 1 };
    let po = post(Side::Bid, 101, 1);
    let o = go(&t, vec![(2, ioc), (2, po)], Opts::default());
    assert_eq!(filled(&o), vec![(101, 10, false)], "only the 101 level is within the IOC's limit");
    let ioc_o = o.orders.iter().find(|x| x.kind == OrderKind::Ioc).unwrap();
    assert_eq!((ioc_o.status, ioc_o.reason, ioc_o.filled), (Status::Cancelled, Reason::NoLiquidity, 10));
    let po_o = o.orders.iter().find(|x| x.kind == OrderKind::PostOnly).unwrap();
    assert_eq!((po_o.status, po_o.reason), (Status::Rejected, Reason::WouldTake));
}

#[test]
fn entry_latency_delays_arrival_past_market_events() {
    // With 0 latency the buy joins behind 10 and the trade of 12 at t=2 fills it; with 3 ms it
    // arrives after that trade (the level now shows 10 again) and is not filled.
    let mut t = Tape::new();
    t.trade(2, Side::Ask, 100, 12).level(2, Side::Bid, 100, 10).level(5, Side::Ask, 101, 9).level(6, Side::Ask, 101, 8);
    let o = go(&t, vec![(1, post(Side::Bid, 100, 1))], Opts::default());
    assert_eq!(o.fills.len(), 1);
    let o = go(&t, vec![(1, post(Side::Bid, 100, 1))], Opts { latency_ms: 3, ..Default::default() });
    assert!(o.fills.is_empty());
    let ord = o.orders.iter().find(|x| x.kind == OrderKind::PostOnly).unwrap();
    assert_eq!(ord.ts_arrived, 3 * MS, "sent at the sample at t=0, arrives 3 ms later (after the trade at 2 ms)");
}

#[test]
fn risk_limits_drop_orders_and_are_recorded() {
    let mut t = Tape::new();
    for ms in 1..6 {
        t.level(ms, Side::Ask, 101, 10 + ms);
    }
    let buy = |q| Action::Submit { side: Side::Bid, kind: OrderKind::Market, price: 0, qty: q, tag: 1 };
    // max_position 5: the second buy of 4 would make 8 → dropped.
    let risk = RiskSpec { max_position: Some("5".into()), ..Default::default() };
    let o = go(&t, vec![(1, buy(4)), (3, buy(4))], Opts { risk, ..Default::default() });
    assert_eq!(o.final_position, 4);
    assert_eq!(o.risk_hits.iter().filter(|h| h.limit == Limit::MaxPosition).count(), 1);
    // max 2 orders per minute: the third is dropped.
    let risk = RiskSpec { max_trades_per_minute: Some(2), ..Default::default() };
    let o = go(&t, vec![(1, buy(1)), (2, buy(1)), (3, buy(1))], Opts { risk, ..Default::default() });
    assert_eq!(o.final_position, 2);
    assert_eq!(o.risk_hits.iter().filter(|h| h.limit == Limit::MaxTradesPerMinute).count(), 1);
    // max spread 1 tick: the spread is 1 → allowed; widen to 3 → dropped.
    let mut w = Tape::new();
    w.level(1, Side::Ask, 103, 5).level(1, Side::Ask, 101, 0).level(2, Side::Ask, 103, 6);
    let risk = RiskSpec { max_spread_ticks: Some(1), ..Default::default() };
    let o = go(&w, vec![(3, buy(1))], Opts { risk, ..Default::default() });
    assert_eq!(o.final_position, 0);
    assert_eq!(o.risk_hits[0].limit, Limit::MaxSpread);
    // flat before the end: bought at t=1, flattened once t ≥ end (5 ms) − 2 ms.
    let risk = RiskSpec { flat_before_end: Some("2ms".into()), ..Default::default() };
    let o = go(&t, vec![(1, buy(3))], Opts { risk, ..Default::default() });
    assert_eq!(o.final_position, 0);
    assert!(o.risk_hits.iter().any(|h| h.limit == Limit::SessionEnd));
    assert_eq!(o.trips.len(), 1);
    // max loss: long 10 at 101, bid falls to 90 → marked loss 10 × (101 − 95.5)... crosses −0.3.
    let mut l = Tape::new();
    l.level(1, Side::Ask, 101, 20)
        .level(2, Side::Bid, 95, 5)
        .level(2, Side::Bid, 100, 0)
        .level(3, Side::Ask, 96, 5)
        .level(4, Side::Ask, 97, 5)
        .level(5, Side::Ask, 98, 1);
    let risk = RiskSpec { max_loss: Some(0.3), ..Default::default() };
    let o = go(&l, vec![(1, buy(10)), (6, buy(1))], Opts { risk, ..Default::default() });
    assert!(o.risk_hits.iter().any(|h| h.limit == Limit::MaxLoss));
    assert_eq!(o.final_position, 0, "flattened, and the later buy was not sent (halted for the day)");
}
