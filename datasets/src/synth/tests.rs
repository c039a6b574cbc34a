//! Generator tests. The checks here rebuild what the generator claims from its output alone
//! (messages and rows), never from its own bookkeeping.

use super::*;
use crate::book::NO_PRICE;
use crate::event::Side;
use std::collections::{BTreeMap, HashMap, VecDeque};

fn small(levels: usize, events: usize, seed: u64) -> SynthConfig {
    SynthConfig::new(levels, events, seed)
}

/// Non-empty levels of one side of a row, touch first.
fn side_levels(row: &[i64], side: Side) -> Vec<(i64, i64)> {
    let off = if side == Side::Ask { 0 } else { 2 };
    row.chunks(4).map(|c| (c[off], c[off + 1])).take_while(|&(p, _)| p != NO_PRICE).collect()
}

fn msg_side(m: &Message) -> Side {
    if m.direction == 1 {
        Side::Bid
    } else {
        Side::Ask
    }
}

/// Independent check of a level-N LOBSTER pair: every message's implied change to its side's
/// levels (± size at its price; nothing for hidden executions) must turn row i−1 into row i,
/// allowing only the depth-window effects (a level entering from below N, or falling out).
/// The other side must not change; executions happen at the touch; hidden executions inside
/// the quotes; every written non-hidden message changes the row (LOBSTER's filter).
fn check_rows(out: &SynthOutput) -> Result<(), String> {
    let n = out.levels();
    let mut empty = vec![0i64; 4 * n];
    for l in 0..n {
        empty[4 * l] = NO_PRICE;
        empty[4 * l + 2] = NO_PRICE;
    }
    let mut prev: &[i64] = &empty;
    let mut last_t = i64::MIN;
    for (i, m) in out.messages.iter().enumerate() {
        let row = out.row(i);
        let err = |s: String| Err(format!("message {} {:?}: {s}", i + 1, m));
        if m.time_ns < last_t {
            return err("time goes backwards".into());
        }
        last_t = m.time_ns;
        let side = msg_side(m);
        let other = side.opposite();
        if side_levels(prev, other) != side_levels(row, other) {
            return err("other side changed".into());
        }
        let before = side_levels(prev, side);
        let after = side_levels(row, side);
        let (b, a) = (prev[2], prev[0]);
        if m.kind == MsgType::Hidden {
            let inside = match side {
                Side::Bid => b != NO_PRICE && b <= m.price && m.price < a,
                Side::Ask => a != NO_PRICE && b < m.price && m.price <= a,
            };
            if !inside || row != prev || m.order_id != 0 {
                return err("hidden execution not inside the quotes, changed the book, or has an id".into());
            }
            prev = row;
            continue;
        }
        if row == prev {
            return err("a written non-hidden message must change the visible book".into());
        }
        if m.kind == MsgType::Execute && before.first().map(|l| l.0) != Some(m.price) {
            return err("execution away from the touch".into());
        }
        let delta = if m.kind == MsgType::Submit { m.size } else { -m.size };
        let full = before.len() == n;
        let worse = |p: i64, q: i64| if side == Side::Bid { p < q } else { p > q };
        let mut exp = before.clone();
        match exp.iter().position(|&(p, _)| p == m.price) {
            Some(j) => {
                exp[j].1 += delta;
                if exp[j].1 < 0 {
                    return err("size goes negative".into());
                }
                if exp[j].1 == 0 {
                    exp.remove(j);
                }
            }
            None if delta > 0 => {
                if full && worse(m.price, before[n - 1].0) {
                    return err("submission below the visible window was written".into());
                }
                let j = exp.iter().position(|&(p, _)| worse(p, m.price)).unwrap_or(exp.len());
                exp.insert(j, (m.price, delta));
            }
            None => return err("removal at a price with no visible level".into()),
        }
        let k = exp.len().min(n);
        let ok = if full {
            after.len() >= k && after[..k] == exp[..k] && after[k..].iter().all(|&(p, _)| exp.last().is_none_or(|&(q, _)| worse(p, q)))
        } else {
            after == exp[..k]
        };
        if !ok {
            return err(format!("levels {before:?} → {after:?}, expected {exp:?}"));
        }
        prev = row;
    }
    Ok(())
}

/// Rebuild the whole L3 book from an unfiltered message stream (independent of the generator's
/// data structures): checks FIFO execution at the touch, exact delete sizes, and that every row
/// equals the rebuilt book's top N. Returns the number of messages checked.
fn check_l3(out: &SynthOutput) -> Result<usize, String> {
    let n = out.levels();
    let mut orders: HashMap<u64, (Side, i64, i64)> = HashMap::new();
    let mut queues: [BTreeMap<i64, VecDeque<u64>>; 2] = [BTreeMap::new(), BTreeMap::new()];
    for (i, m) in out.messages.iter().enumerate() {
        let err = |s: &str| Err(format!("message {} {:?}: {s}", i + 1, m));
        let side = msg_side(m);
        let q = &mut queues[side as usize];
        match m.kind {
            MsgType::Submit => {
                if orders.insert(m.order_id, (side, m.price, m.size)).is_some() {
                    return err("order id reused");
                }
                q.entry(m.price).or_default().push_back(m.order_id);
            }
            MsgType::Hidden => {}
            kind => {
                let Some(o) = orders.get_mut(&m.order_id) else { return err("unknown order") };
                if o.0 != side || o.1 != m.price {
                    return err("side/price differ from the submission");
                }
                if kind == MsgType::Execute {
                    let best = if side == Side::Bid { q.keys().next_back() } else { q.keys().next() };
                    if best != Some(&m.price) || q[&m.price].front() != Some(&m.order_id) {
                        return err("execution is not the oldest order at the touch");
                    }
                }
                if kind == MsgType::Delete && m.size != o.2 {
                    return err("delete size differs from the remaining size");
                }
                if m.size <= 0 || m.size > o.2 || (kind == MsgType::Cancel && m.size == o.2) {
                    return err("bad size for a partial cancel/execution");
                }
                o.2 -= m.size;
                if o.2 == 0 {
                    orders.remove(&m.order_id);
                    let level = q.get_mut(&m.price).unwrap();
                    level.retain(|&id| id != m.order_id);
                    if level.is_empty() {
                        q.remove(&m.price);
                    }
                }
            }
        }
        // Top N of the rebuilt book vs the row.
        let row = out.row(i);
        for side in [Side::Bid, Side::Ask] {
            let q = &queues[side as usize];
            let agg = |(p, ids): (&i64, &VecDeque<u64>)| (*p, ids.iter().map(|id| orders[id].2).sum::<i64>());
            let top: Vec<(i64, i64)> =
                if side == Side::Bid { q.iter().rev().take(n).map(agg).collect() } else { q.iter().take(n).map(agg).collect() };
            if top != side_levels(row, side) {
                return err(&format!("{side:?} row {:?} != rebuilt {top:?}", side_levels(row, side)));
            }
        }
    }
    Ok(out.messages.len())
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let files = |seed: u64, sub: &str| {
        let out = generate(&small(5, 3_000, seed));
        let (m, b) = write_lobster(&dir.path().join(sub), &out, SYMBOL, DATE).unwrap();
        assert!(m.file_name().unwrap().to_str().unwrap().ends_with("SYNTH_2020-01-02_34200000_57600000_message_5.csv"));
        assert!(b.file_name().unwrap().to_str().unwrap().ends_with("SYNTH_2020-01-02_34200000_57600000_orderbook_5.csv"));
        (std::fs::read(m).unwrap(), std::fs::read(b).unwrap())
    };
    let a = files(1, "a");
    let b = files(1, "b");
    let c = files(2, "c");
    assert!(!a.0.is_empty() && !a.1.is_empty());
    assert_eq!(a, b, "same seed must give byte-identical files");
    assert_ne!(a.0, c.0, "different seeds must differ");
    assert_ne!(a.1, c.1);
}

#[test]
fn lobster_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let out = generate(&small(3, 2_000, 5));
    let (m, b) = write_lobster(dir.path(), &out, SYMBOL, DATE).unwrap();
    let msgs = std::fs::read_to_string(m).unwrap();
    let book = std::fs::read_to_string(b).unwrap();
    assert_eq!(msgs.lines().count(), out.messages.len());
    assert_eq!(book.lines().count(), out.messages.len());
    for (line, (ml, bl)) in msgs.lines().zip(book.lines()).enumerate() {
        let f: Vec<&str> = ml.split(',').collect();
        assert_eq!(f.len(), 6, "line {}", line + 1);
        let (secs, frac) = f[0].split_once('.').unwrap();
        assert!(secs.parse::<i64>().unwrap() >= 34_200 && (1..=9).contains(&frac.len()), "{ml}");
        assert!(["1", "2", "3", "4", "5"].contains(&f[1]), "{ml}");
        assert_eq!(f[4].parse::<i64>().unwrap() % 100, 0, "price on the cent grid: {ml}");
        assert!(["1", "-1"].contains(&f[5]));
        let v: Vec<i64> = bl.split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(v.len(), 12);
        for l in 0..3 {
            let (ap, asz, bp, bsz) = (v[4 * l], v[4 * l + 1], v[4 * l + 2], v[4 * l + 3]);
            assert!(ap == 9_999_999_999 && asz == 0 || ap > 0 && asz > 0, "{bl}");
            assert!(bp == -9_999_999_999 && bsz == 0 || bp > 0 && bsz > 0, "{bl}");
        }
    }
    // The first rows are the opening book being built at exactly 09:30:00.
    assert!(msgs.starts_with("34200.0,1,1,"), "{}", &msgs[..40]);
}

#[test]
fn rows_match_the_books_orders_and_never_cross() {
    let mut sim = Sim::new(small(10, 0, 3));
    let n = sim.config().levels;
    for step in 0..15_000 {
        if sim.step().is_none() {
            break;
        }
        let (b, a) = (sim.best(Side::Bid), sim.best(Side::Ask));
        if let (Some(b), Some(a)) = (b, a) {
            assert!(b < a, "crossed at step {step}: {b} >= {a}");
        }
        // Top N recomputed from the individual orders, and FIFO (ids increase along a queue).
        let mut want = Vec::new();
        for side in [Side::Ask, Side::Bid] {
            let mut levels: Vec<(i64, i64)> = Vec::new();
            let mut last_id: Option<(i64, u64)> = None;
            for (p, id, q) in sim.orders(side) {
                assert!(p >= 1 && q > 0);
                if let Some((lp, lid)) = last_id {
                    assert!(lp != p || lid < id, "queue at {p} not in arrival order");
                }
                last_id = Some((p, id));
                match levels.last_mut() {
                    Some(l) if l.0 == p => l.1 += q,
                    _ => levels.push((p, q)),
                }
            }
            assert_eq!(levels.first().map(|l| l.0), sim.best(side));
            levels.resize(n, (NO_PRICE, 0));
            want.push(levels);
        }
        let row = sim.last_row();
        for l in 0..n {
            assert_eq!((row[4 * l], row[4 * l + 1]), want[0][l], "ask level {l} at step {step}");
            assert_eq!((row[4 * l + 2], row[4 * l + 3]), want[1][l], "bid level {l} at step {step}");
        }
    }
}

#[test]
fn every_message_explains_its_row_change() {
    for (levels, seed) in [(10, 11), (3, 12), (1, 13)] {
        let out = generate(&small(levels, 20_000, seed));
        check_rows(&out).unwrap_or_else(|e| panic!("levels {levels}: {e}"));
        assert!(out.stats.filtered_messages > 0 || levels == 10);
    }
}

#[test]
fn unfiltered_messages_rebuild_every_row() {
    let cfg = SynthConfig { lobster_window: false, ..small(10, 20_000, 21) };
    let out = generate(&cfg);
    assert_eq!(out.stats.filtered_messages, 0);
    let n = check_l3(&out).unwrap();
    assert!(n > 20_000);
    // The checker itself must catch a corrupted stream.
    let mut bad = out.clone();
    let k = bad.messages.iter().position(|m| m.kind == MsgType::Execute).unwrap();
    bad.messages[k].size += 1;
    assert!(check_l3(&bad).is_err());
    let mut bad = out;
    let w = 4 * bad.levels();
    bad.book[500 * w + 1] += 1;
    assert!(check_l3(&bad).is_err() && check_rows(&bad).is_err());
}

/// Arrival counts against their compensators. For a counting process with intensity r(t), the
/// count N(T) minus Λ(T) = ∫ r dt is a martingale with variance E Λ(T), so over a long path
/// |N − Λ| ≤ 4 √Λ (tolerance: 4 standard deviations per class). The intensities are recomputed
/// here from the resting orders and the model's parameters, not taken from the simulator.
#[test]
fn event_frequencies_match_model_rates() {
    let cfg = SynthConfig { lobster_window: false, ..small(10, 0, 31) };
    let (lambda, theta, mu, eta) = (cfg.lambda.clone(), cfg.theta.clone(), cfg.mu, cfg.hidden_rate);
    let d = lambda.len();
    let mut sim = Sim::new(cfg);
    // Classes: limit(side, i) for i in 1..=d, market(side), cancel(side, distance bucket), hidden(side).
    let mut limit = vec![[(0.0f64, 0u64); 2]; d];
    let mut market = [(0.0f64, 0u64); 2];
    let mut hidden = [(0.0f64, 0u64); 2];
    let mut cancel = vec![[(0.0f64, 0u64); 2]; d]; // bucket i-1 = distance i (last: ≥ d)
    let mut exp_sum = 0.0;
    // Queue position of cancelled orders: k/(c−1) for the k-th of c orders (mean ½ if uniform),
    // with the variance of that discrete uniform, (c+1)/(12(c−1)).
    let (mut pos_sum, mut pos_var, mut pos_n) = (0.0, 0.0, 0u64);
    let (mut partial, mut partial_eligible) = (0u64, 0u64);
    let steps = 30_000;
    for _ in 0..steps {
        let refs = [sim.reference(Side::Bid), sim.reference(Side::Ask)];
        let quoted = sim.best(Side::Bid).is_some() && sim.best(Side::Ask).is_some();
        // Intensities of the current state.
        let mut cancel_rates = vec![[0.0f64; 2]; d];
        let mut resting = [0usize; 2];
        let resting_orders = [sim.orders(Side::Bid), sim.orders(Side::Ask)];
        for side in [Side::Bid, Side::Ask] {
            let opp = refs[side.opposite() as usize];
            for &(p, _, _) in &resting_orders[side as usize] {
                let dist = (p - opp).unsigned_abs() as usize;
                assert!(dist >= 1);
                let b = dist.min(d) - 1;
                cancel_rates[b][side as usize] += theta[b];
                resting[side as usize] += 1;
            }
        }
        let mut total = 0.0;
        for side in [Side::Bid, Side::Ask] {
            let s = side as usize;
            total += lambda.iter().sum::<f64>() + if resting[s] > 0 { mu } else { 0.0 } + if quoted { eta } else { 0.0 };
            total += cancel_rates.iter().map(|r| r[s]).sum::<f64>();
        }
        let before = sim.messages().len();
        let Some(step) = sim.step() else { break };
        assert!((step.total_rate - total).abs() <= 1e-9 * total, "total rate {} vs independent {}", step.total_rate, total);
        let dt = step.dt;
        exp_sum += dt * total;
        for side in [Side::Bid, Side::Ask] {
            let s = side as usize;
            for i in 0..d {
                limit[i][s].0 += lambda[i] * dt;
                cancel[i][s].0 += cancel_rates[i][s] * dt;
            }
            market[s].0 += if resting[s] > 0 { mu * dt } else { 0.0 };
            hidden[s].0 += if quoted { eta * dt } else { 0.0 };
        }
        match step.class {
            Class::Limit { side, distance } => limit[distance - 1][side as usize].1 += 1,
            Class::Market { side } => market[side as usize].1 += 1,
            Class::Hidden { side } => hidden[side as usize].1 += 1,
            Class::Cancel { side, partial: is_partial } => {
                let m = sim.messages()[before];
                let dist = (m.price - refs[side.opposite() as usize]).unsigned_abs() as usize;
                cancel[dist.min(d) - 1][side as usize].1 += 1;
                let queue: Vec<_> = resting_orders[side as usize].iter().filter(|o| o.0 == m.price).collect();
                let k = queue.iter().position(|o| o.1 == m.order_id).expect("cancelled order was resting");
                let c = queue.len();
                if c >= 2 {
                    pos_sum += k as f64 / (c - 1) as f64;
                    pos_var += (c + 1) as f64 / (12.0 * (c - 1) as f64);
                    pos_n += 1;
                }
                if queue[k].2 >= 2 {
                    partial_eligible += 1;
                    partial += is_partial as u64;
                }
                assert_eq!(m.kind, if is_partial { MsgType::Cancel } else { MsgType::Delete });
            }
        }
    }
    // Waiting times: dt × R is Exp(1), so its mean is 1 ± 4/√n.
    let mean = exp_sum / steps as f64;
    assert!((mean - 1.0).abs() < 4.0 / (steps as f64).sqrt(), "mean of dt·R = {mean}");
    let mut checked = 0;
    let mut check = |name: String, (lam, n): (f64, u64)| {
        if lam < 30.0 {
            return; // too few expected events for the normal approximation
        }
        let z = (n as f64 - lam) / lam.sqrt();
        assert!(z.abs() < 4.0, "{name}: observed {n}, compensator {lam:.1}, z = {z:.2}");
        checked += 1;
    };
    for s in 0..2 {
        for i in 0..d {
            check(format!("limit side {s} distance {}", i + 1), limit[i][s]);
            check(format!("cancel side {s} distance {}", i + 1), cancel[i][s]);
        }
        check(format!("market hitting side {s}"), market[s]);
        check(format!("hidden side {s}"), hidden[s]);
    }
    assert!(checked >= 30, "only {checked} classes had enough events");
    // Which order of a queue is cancelled: uniform over the queue.
    let z = (pos_sum - 0.5 * pos_n as f64) / pos_var.sqrt();
    assert!(pos_n > 1000 && z.abs() < 4.0, "queue position of cancels: n {pos_n}, z {z:.2}");
    // Partial cancellations: Binomial(eligible, p).
    let p = SynthConfig::default().partial_cancel_prob;
    let (n, e) = (partial as f64, partial_eligible as f64);
    let z = (n - e * p) / (e * p * (1.0 - p)).sqrt();
    assert!(z.abs() < 4.0, "partial cancels {partial} of {partial_eligible}, z {z:.2}");
}

#[test]
fn plausible_spread_depth_and_sizes() {
    let out = generate(&small(10, 60_000, 41));
    let rows = out.messages.len();
    let (mut quoted, mut spread, mut touch) = (0u64, 0i64, 0i64);
    for i in 0..rows {
        let r = out.row(i);
        if r[0] != NO_PRICE && r[2] != NO_PRICE {
            quoted += 1;
            spread += r[0] - r[2];
            touch += r[1] + r[3];
        }
    }
    let mean_spread = spread as f64 / quoted as f64;
    let mean_touch = touch as f64 / (2 * quoted) as f64;
    let execs = out.messages.iter().filter(|m| m.kind == MsgType::Execute).count();
    let mkts = out.stats.market_orders.iter().sum::<u64>();
    eprintln!(
        "rows {rows}, mean spread {mean_spread:.3} ticks, touch {mean_touch:.0} shares, {:.2} execution rows per market order, stats {:?}",
        execs as f64 / mkts as f64,
        out.stats
    );
    assert!((1.0..=3.0).contains(&mean_spread), "mean spread {mean_spread}");
    assert!(mean_touch >= 100.0, "mean touch size {mean_touch}");
    assert!((rows as u64 - quoted) * 100 <= rows as u64, "{} of {rows} rows with an empty side", rows as u64 - quoted);
    assert_eq!(out.stats.empty_side_rows, rows as u64 - quoted);
    // Sizes: mean near 100 shares (0.6 × 100/0.75 + 0.4 × 50), ~60% round lots.
    let subs: Vec<i64> = out.messages.iter().filter(|m| m.kind == MsgType::Submit).map(|m| m.size).collect();
    let mean_size = subs.iter().sum::<i64>() as f64 / subs.len() as f64;
    let round = subs.iter().filter(|&&s| s % 100 == 0).count() as f64 / subs.len() as f64;
    assert!((mean_size - 100.0).abs() < 5.0, "mean size {mean_size}");
    assert!((round - 0.6).abs() < 0.02, "round-lot share {round}");
    // Every message type occurs; prices stay near the start.
    for k in [MsgType::Submit, MsgType::Cancel, MsgType::Delete, MsgType::Execute, MsgType::Hidden] {
        assert!(out.messages.iter().any(|m| m.kind == k), "no {k:?}");
    }
    assert!(out.messages.iter().all(|m| m.price > 0));
    assert!(!out.stats.truncated_at_close && out.stats.seconds_simulated > 100.0);
}

#[test]
fn session_close_truncates() {
    let cfg = SynthConfig { session_end_ns: 34_210 * NS_PER_SEC, ..small(5, 100_000, 3) };
    let out = generate(&cfg);
    assert!(out.stats.truncated_at_close);
    assert!((out.stats.events as usize) < 100_000);
    assert!(out.messages.iter().all(|m| m.time_ns <= cfg.session_end_ns));
    check_rows(&out).unwrap();
}

#[test]
fn invalid_configs_are_rejected() {
    let ok = SynthConfig::default();
    assert!(ok.validate().is_ok());
    for bad in [
        SynthConfig { levels: 0, ..ok.clone() },
        SynthConfig { theta: vec![0.5; 3], ..ok.clone() },
        SynthConfig { mu: -1.0, ..ok.clone() },
        SynthConfig { start_bid: 10_000, ..ok.clone() },
        SynthConfig { start_bid: 5, start_ask: 6, ..ok.clone() },
        SynthConfig { round_lot_prob: 1.5, ..ok.clone() },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert!(synth_dataset(0, 10, 1).is_err());
}

/// Timing, not a property: `cargo test -p flowcast-datasets synth_speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn synth_speed() {
    let t = std::time::Instant::now();
    let out = generate(&small(10, 200_000, 1));
    let gen = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    write_lobster(dir.path(), &out, SYMBOL, DATE).unwrap();
    let write = t.elapsed().as_secs_f64();
    eprintln!("200k events: generate {gen:.3} s ({:.0} events/s, {} messages), write {write:.3} s", 200_000.0 / gen, out.messages.len());
}
