//! Top-N book snapshots → canonical events: the one place that turns "the visible book is now
//! this" into `LevelSet`/`LevelDelete` events. The LOBSTER loader (orderbook row i−1 → row i)
//! and the inference server's stream mode (a client's snapshot rows) both call it, so a book
//! rebuilt from a snapshot feed is rebuilt one way only (docs/data.md, "Snapshot diffing").
//!
//! A snapshot is a [`TopN`] in ticks and lots: per side the occupied levels first, moving away
//! from the touch, then [`NO_PRICE`]/0 padding. The events of one snapshot are its causing events
//! (the message or trade that moved the book, if known), then per side (ask, then bid) a
//! `LevelDelete` for every level of the previous snapshot absent from this one and a `LevelSet`
//! for every level new or with a changed size; a level event at none of the causing events'
//! levels carries `DEPTH_WINDOW` (the level entered or left the depth window, or no cause is
//! known); the last event carries `BATCH_END`. A level that drops below the snapshot's depth is
//! deleted, so the book holds exactly the latest snapshot's levels — what a depth-N feed knows.
//!
//! Allocation-free: events are appended to the caller's (reused) vector and the previous
//! snapshot is overwritten in place.

use crate::book::{TopN, NO_PRICE};
use crate::event::{close_batch, flags, Event, EventKind, Side};

/// Name of column `col` of a snapshot's level block, LOBSTER's order: per level `ask_price_L`,
/// `ask_size_L`, `bid_price_L`, `bid_size_L` (L from 1).
pub fn level_column(col: usize) -> String {
    let name = ["ask_price", "ask_size", "bid_price", "bid_size"][col % 4];
    format!("{name}_{}", col / 4 + 1)
}

/// Column (0-based, in [`level_column`]'s order) of a side's price at level `l` (0-based).
fn price_col(side: Side, l: usize) -> usize {
    4 * l + if side == Side::Ask { 0 } else { 2 }
}

/// Why a snapshot (or its causing events) was refused; the differ's state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// A level value is invalid; `col` in [`level_column`]'s order.
    #[error("{}: {reason}", level_column(*col))]
    Level { col: usize, reason: String },
    /// The snapshot has another depth than the differ tracks.
    #[error("{got} levels per side, but this stream's snapshots have {want}")]
    Depth { got: usize, want: usize },
    /// A causing event is itself a book event (the book would no longer equal the snapshots).
    #[error(
        "causing event {index}: a {kind} event changes the book itself; a snapshot's causing events are order events, trades or halts"
    )]
    BookCause { index: usize, kind: &'static str },
}

/// Distance-from-touch ordering key: ascending for asks as they are, for bids negated.
#[inline]
pub fn touch_key(side: Side, p: i64) -> i64 {
    if side == Side::Bid {
        -p
    } else {
        p
    }
}

/// Number of occupied levels in a top-N price column (they come first; `NO_PRICE` pads).
#[inline]
pub fn present(px: &[i64]) -> usize {
    px.iter().position(|&p| p == NO_PRICE).unwrap_or(px.len())
}

#[inline]
fn side_of(t: &TopN, side: Side) -> (&[i64], &[i64]) {
    match side {
        Side::Bid => (&t.bid_px, &t.bid_sz),
        Side::Ask => (&t.ask_px, &t.ask_sz),
    }
}

/// Checks a snapshot: padding only after occupied levels (and with size 0), occupied levels with
/// size > 0 and prices strictly moving away from the touch, best bid < best ask.
pub fn validate(t: &TopN) -> Result<(), SnapshotError> {
    let bad = |col: usize, reason: String| Err(SnapshotError::Level { col, reason });
    for side in [Side::Ask, Side::Bid] {
        let (px, sz) = side_of(t, side);
        let mut ended = false;
        for l in 0..px.len() {
            let c = price_col(side, l);
            if px[l] == NO_PRICE {
                if sz[l] != 0 {
                    return bad(c + 1, format!("size {} at an empty level", sz[l]));
                }
                ended = true;
                continue;
            }
            if ended {
                return bad(c, format!("occupied level {} after an empty level", px[l]));
            }
            if sz[l] <= 0 {
                return bad(c + 1, format!("size must be positive at an occupied level, got {}", sz[l]));
            }
            if l > 0 && touch_key(side, px[l]) <= touch_key(side, px[l - 1]) {
                return bad(c, format!("{} is not further from the touch than level {l} ({})", px[l], px[l - 1]));
            }
        }
    }
    if t.ask_px[0] != NO_PRICE && t.bid_px[0] != NO_PRICE && t.bid_px[0] >= t.ask_px[0] {
        return bad(2, format!("crossed snapshot: best bid {} ≥ best ask {}", t.bid_px[0], t.ask_px[0]));
    }
    Ok(())
}

/// The book level a causing event acts on: the (side, price) of an order event, the resting side
/// of a trade print (its `side` is the aggressor); none for halts and half-tick executions.
#[inline]
pub fn cause_level(e: &Event) -> Option<(Side, i64)> {
    if e.flags & flags::HALF_TICK != 0 {
        return None;
    }
    match e.kind {
        EventKind::OrderAdd | EventKind::OrderCancel | EventKind::OrderDelete | EventKind::OrderExecute | EventKind::HiddenExecute => {
            Some((e.side, e.price))
        }
        EventKind::Trade => Some((e.side.opposite(), e.price)),
        _ => None,
    }
}

/// Where and when the level events of one snapshot are stamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub ts_exchange: i64,
    pub ts_local: i64,
    pub seq: u64,
}

/// Appends the events that take the book from `before` to `after` (both validated, same depth):
/// `causes`, then per side (ask, then bid) the `LevelDelete`s in `before`'s order and the
/// `LevelSet`s in `after`'s order, `DEPTH_WINDOW` on level events at no cause's level, `BATCH_END`
/// on the last event. Nothing is appended for no causes and an unchanged book.
pub fn diff(before: &TopN, after: &TopN, causes: &[Event], at: Stamp, out: &mut Vec<Event>) {
    let start = out.len();
    out.extend_from_slice(causes);
    if before != after {
        for side in [Side::Ask, Side::Bid] {
            diff_side(side, side_of(before, side), side_of(after, side), causes, at, out);
        }
    }
    close_batch(out, start);
}

fn diff_side(side: Side, (bp, bs): (&[i64], &[i64]), (ap, asz): (&[i64], &[i64]), causes: &[Event], at: Stamp, out: &mut Vec<Event>) {
    if bp == ap && bs == asz {
        return;
    }
    let (nb, na) = (present(bp), present(ap));
    let ev = |price: i64, size: i64| {
        let e = Event::level(side, price, size, at.ts_exchange).with_seq(at.seq).with_local(at.ts_local);
        if causes.iter().any(|c| cause_level(c) == Some((side, price))) {
            e
        } else {
            e.with_flags(flags::DEPTH_WINDOW)
        }
    };
    // Both columns are sorted away from the touch: one merge pass each way.
    let mut j = 0;
    for &p in &bp[..nb] {
        while j < na && touch_key(side, ap[j]) < touch_key(side, p) {
            j += 1;
        }
        if !(j < na && ap[j] == p) {
            out.push(ev(p, 0));
        }
    }
    let mut j = 0;
    for i in 0..na {
        let p = ap[i];
        while j < nb && touch_key(side, bp[j]) < touch_key(side, p) {
            j += 1;
        }
        if !(j < nb && bp[j] == p && bs[j] == asz[i]) {
            out.push(ev(p, asz[i]));
        }
    }
}

/// A stream of top-N snapshots of one book turned into canonical events: holds the last
/// accepted snapshot (the book as the events left it) and diffs each new one against it.
#[derive(Clone, Debug)]
pub struct SnapshotDiffer {
    prev: TopN,
    /// The next snapshot starts a new book (a `Snapshot` event, then `SNAPSHOT`-flagged
    /// `LevelSet`s): the receiving book is unsynced or was rebuilt another way.
    full_next: bool,
}

impl SnapshotDiffer {
    /// A differ for `levels` levels per side, starting from the empty book (the first snapshot
    /// is diffed against it, as LOBSTER's first row).
    pub fn new(levels: usize) -> SnapshotDiffer {
        SnapshotDiffer { prev: TopN::new(levels), full_next: false }
    }

    pub fn levels(&self) -> usize {
        self.prev.levels()
    }

    /// The last accepted snapshot.
    pub fn previous(&self) -> &TopN {
        &self.prev
    }

    /// Makes the next snapshot a full one (`Snapshot` event + `LevelSet`s flagged `SNAPSHOT`),
    /// which clears and syncs the receiving book: for books that are unsynced (a source whose
    /// book is invalid before a snapshot) or that were reset.
    pub fn resync(&mut self) {
        self.full_next = true;
    }

    /// Forgets the previous snapshot (the empty book again), no full snapshot pending.
    pub fn reset(&mut self) {
        self.prev = TopN::new(self.prev.levels());
        self.full_next = false;
    }

    /// Validates `snap` and `causes`, appends their events to `out` (see [`diff`]; a full snapshot
    /// after [`SnapshotDiffer::resync`]) and makes `snap` the previous snapshot. On error nothing
    /// is appended and the state is unchanged.
    pub fn push(&mut self, snap: &TopN, causes: &[Event], at: Stamp, out: &mut Vec<Event>) -> Result<(), SnapshotError> {
        if snap.levels() != self.prev.levels() {
            return Err(SnapshotError::Depth { got: snap.levels(), want: self.prev.levels() });
        }
        validate(snap)?;
        if let Some((index, c)) = causes.iter().enumerate().find(|(_, c)| c.kind.is_level_update() || c.kind == EventKind::Gap) {
            return Err(SnapshotError::BookCause { index, kind: c.kind.name() });
        }
        if self.full_next {
            let start = out.len();
            out.extend_from_slice(causes);
            out.push(Event::new(EventKind::Snapshot, Side::Bid, 0, 0, at.ts_exchange).with_seq(at.seq).with_local(at.ts_local));
            for side in [Side::Ask, Side::Bid] {
                let (px, sz) = side_of(snap, side);
                for l in 0..present(px) {
                    let e = Event::level(side, px[l], sz[l], at.ts_exchange).with_seq(at.seq).with_local(at.ts_local);
                    out.push(e.with_flags(flags::SNAPSHOT));
                }
            }
            close_batch(out, start);
            self.full_next = false;
        } else {
            diff(&self.prev, snap, causes, at, out);
        }
        for (d, s) in [
            (&mut self.prev.ask_px, &snap.ask_px),
            (&mut self.prev.ask_sz, &snap.ask_sz),
            (&mut self.prev.bid_px, &snap.bid_px),
            (&mut self.prev.bid_sz, &snap.bid_sz),
        ] {
            d.copy_from_slice(s);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::{BookLayout, OrderBook};
    use crate::event::NO_TS;
    use rand::{Rng, SeedableRng};

    fn topn(bids: &[(i64, i64)], asks: &[(i64, i64)], n: usize) -> TopN {
        let mut t = TopN::new(n);
        for (i, &(p, s)) in bids.iter().enumerate() {
            t.bid_px[i] = p;
            t.bid_sz[i] = s;
        }
        for (i, &(p, s)) in asks.iter().enumerate() {
            t.ask_px[i] = p;
            t.ask_sz[i] = s;
        }
        t
    }

    fn at(ts: i64) -> Stamp {
        Stamp { ts_exchange: ts, ts_local: NO_TS, seq: ts as u64 }
    }

    /// A random valid top-`n` snapshot around `mid`.
    fn random_snapshot(rng: &mut impl Rng, mid: i64, n: usize) -> TopN {
        let mut t = TopN::new(n);
        let (mut b, mut a) = (mid - rng.random_range(0..2), mid + 1 + rng.random_range(0..2));
        for l in 0..rng.random_range(0..=n) {
            t.bid_px[l] = b;
            t.bid_sz[l] = rng.random_range(1..20);
            b -= rng.random_range(1..4);
        }
        for l in 0..rng.random_range(0..=n) {
            t.ask_px[l] = a;
            t.ask_sz[l] = rng.random_range(1..20);
            a += rng.random_range(1..4);
        }
        t
    }

    /// The property: the canonical book rebuilt from the events equals every snapshot — its top
    /// N and nothing beyond (levels that leave the depth are deleted) — with and without causes,
    /// synced from the empty book or through a full snapshot.
    #[test]
    fn rebuilt_book_equals_every_snapshot() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for (n, unsynced) in [(1, false), (3, false), (5, true), (10, false)] {
            let mut d = SnapshotDiffer::new(n);
            let mut book: OrderBook = if unsynced { OrderBook::new_unsynced() } else { OrderBook::new_synced() };
            if unsynced {
                d.resync();
            }
            let (mut out, mut top) = (Vec::new(), TopN::new(n));
            let mut mid = 1000i64;
            for i in 0..5000 {
                mid += rng.random_range(-2..=2);
                let s = random_snapshot(&mut rng, mid, n);
                let cause = Event::new(EventKind::OrderAdd, Side::Bid, s.bid_px[0], 1, i);
                let causes: &[Event] = if rng.random_bool(0.5) { std::slice::from_ref(&cause) } else { &[] };
                out.clear();
                d.push(&s, causes, at(i), &mut out).unwrap();
                for e in &out {
                    book.apply(e);
                }
                assert!(book.is_synced());
                book.top_n(&mut top);
                assert_eq!(top, s, "snapshot {i}");
                assert_eq!(book.layout.depth(Side::Bid), present(&s.bid_px));
                assert_eq!(book.layout.depth(Side::Ask), present(&s.ask_px));
                assert_eq!(d.previous(), &s);
                if let Some(last) = out.last() {
                    assert!(last.is_batch_end());
                    assert_eq!(out.iter().filter(|e| e.is_batch_end()).count(), 1);
                }
            }
        }
    }

    #[test]
    fn depth_window_flags_and_order() {
        let mut d = SnapshotDiffer::new(2);
        let mut out = Vec::new();
        d.push(&topn(&[(100, 5), (99, 3)], &[(101, 1)], 2), &[], at(1), &mut out).unwrap();
        assert!(out.iter().all(|e| e.flags & flags::DEPTH_WINDOW != 0 && e.kind == EventKind::LevelSet));
        assert_eq!(out.iter().map(|e| (e.side, e.price)).collect::<Vec<_>>(), [(Side::Ask, 101), (Side::Bid, 100), (Side::Bid, 99)]);
        // The message's own level changes: no DEPTH_WINDOW.
        out.clear();
        let add = Event::new(EventKind::OrderAdd, Side::Bid, 100, 2, 2);
        d.push(&topn(&[(100, 7), (99, 3)], &[(101, 1)], 2), &[add], at(2), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], add);
        assert_eq!((out[1].kind, out[1].price, out[1].size, out[1].flags), (EventKind::LevelSet, 100, 7, flags::BATCH_END));
        // A half-tick execution has no level: every level event is a depth-window one.
        out.clear();
        let hidden = Event::new(EventKind::HiddenExecute, Side::Bid, 100, 1, 3).with_flags(flags::HALF_TICK);
        d.push(&topn(&[(100, 6), (99, 3)], &[(101, 1)], 2), &[hidden], at(3), &mut out).unwrap();
        assert_eq!(out[1].flags, flags::DEPTH_WINDOW | flags::BATCH_END);
        d.push(&topn(&[(100, 7), (99, 3)], &[(101, 1)], 2), &[], at(3), &mut out).unwrap();
        // A new level 98 inside the window (after 99 left it): the delete of 99 is a depth-window
        // event, the set of 98 the message's own.
        out.clear();
        let add = Event::new(EventKind::OrderAdd, Side::Bid, 98, 4, 3);
        d.push(&topn(&[(100, 7), (98, 4)], &[(101, 1)], 2), &[add], at(3), &mut out).unwrap();
        let got: Vec<_> = out[1..].iter().map(|e| (e.kind, e.price, e.flags & flags::DEPTH_WINDOW != 0)).collect();
        assert_eq!(got, [(EventKind::LevelDelete, 99, true), (EventKind::LevelSet, 98, false)]);
        // No cause and no change: nothing at all.
        out.clear();
        d.push(&topn(&[(100, 7), (98, 4)], &[(101, 1)], 2), &[], at(4), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn bad_snapshots_are_refused_naming_the_column_and_keep_the_state() {
        let mut d = SnapshotDiffer::new(2);
        let mut out = Vec::new();
        let good = topn(&[(100, 5), (99, 3)], &[(101, 1)], 2);
        d.push(&good, &[], at(1), &mut out).unwrap();
        let n = out.len();
        let cases: [(TopN, &str); 5] = [
            (topn(&[(99, 5), (100, 3)], &[(101, 1)], 2), "bid_price_2: 100 is not further from the touch"),
            (topn(&[(100, 5)], &[(101, 1), (101, 2)], 2), "ask_price_2: 101 is not further"),
            (topn(&[(101, 5)], &[(101, 1)], 2), "bid_price_1: crossed snapshot"),
            (topn(&[(100, -5)], &[(101, 1)], 2), "bid_size_1: size must be positive at an occupied level, got -5"),
            (topn(&[(100, 5)], &[(101, 1)], 3), "3 levels per side, but this stream's snapshots have 2"),
        ];
        for (s, want) in cases {
            let e = d.push(&s, &[], at(2), &mut out).unwrap_err().to_string();
            assert!(e.starts_with(want), "{e} vs {want}");
            assert_eq!(out.len(), n);
            assert_eq!(d.previous(), &good);
        }
        let mut s = topn(&[(100, 5)], &[(101, 1)], 2);
        s.ask_px[0] = NO_PRICE;
        s.ask_px[1] = 102;
        s.ask_sz[1] = 1;
        s.ask_sz[0] = 0;
        assert!(d.push(&s, &[], at(2), &mut out).unwrap_err().to_string().starts_with("ask_price_2: occupied level 102 after an empty"));
        let lvl = Event::level(Side::Bid, 100, 1, 2);
        let e = d.push(&good, &[Event::new(EventKind::Trade, Side::Ask, 100, 1, 2), lvl], at(2), &mut out).unwrap_err();
        assert_eq!(e, SnapshotError::BookCause { index: 1, kind: "level_set" });
        assert_eq!(d.previous(), &good);
    }
}
