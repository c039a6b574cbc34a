//! The L2 order book: a small layout trait with interchangeable implementations, and
//! [`OrderBook`], which gives the canonical event semantics on top of any layout.
//!
//! Layouts (see `flowcast data bench` for their measured rates):
//! - [`VecBook`]: per side a price-sorted `Vec` with the touch at the end. Updates near the touch
//!   move a few elements; no allocation once capacity is reserved.
//! - [`DenseBook`]: per side a dense array of sizes indexed by ticks from a window edge kept near
//!   the touch, with a `BTreeMap` for the rare levels far from it. The default: fastest on the
//!   benchmark (`flowcast data bench`: ≈2.5× the BTreeMap, ≈1.7× the Vec on synthetic data).
//! - [`BTreeBook`]: `BTreeMap` per side: the simple reference that the others are tested against.
//!
//! Prices are ticks, sizes lots (see [`crate::event`]). A size of 0 deletes a level.

use crate::event::{Event, EventKind, Side};
use std::collections::BTreeMap;

/// Price of an absent level in [`TopN`] (its size is 0).
pub const NO_PRICE: i64 = i64::MIN;

/// The data-structure side of a book. Implementations must not allocate per update once warm.
pub trait BookLayout: Default {
    /// Layout name for benchmarks and logs.
    const NAME: &'static str;
    fn clear(&mut self);
    /// Set the aggregate size at `price` on `side`; `size == 0` removes the level.
    fn set_level(&mut self, side: Side, price: i64, size: i64);
    /// Size resting at `price` (0 if none).
    fn size_at(&self, side: Side, price: i64) -> i64;
    /// Best level `(price, size)` of `side`.
    fn best(&self, side: Side) -> Option<(i64, i64)>;
    /// Number of levels on `side`.
    fn depth(&self, side: Side) -> usize;
    /// Copy up to `px.len()` levels of `side`, from the touch outwards, into `px`/`sz`;
    /// returns how many were written. The rest of the slices is left untouched.
    fn top(&self, side: Side, px: &mut [i64], sz: &mut [i64]) -> usize;
}

/// Per side, a Vec sorted so that the best level is last: bids ascending, asks descending.
#[derive(Clone, Debug)]
pub struct VecBook {
    sides: [Vec<(i64, i64)>; 2],
}

impl Default for VecBook {
    fn default() -> Self {
        VecBook { sides: [Vec::with_capacity(8192), Vec::with_capacity(8192)] }
    }
}

impl VecBook {
    /// Index of `price` in `v` (Ok) or where it would be inserted (Err). Scans the few levels
    /// nearest the touch linearly (where most updates land), then binary-searches.
    #[inline]
    fn find(v: &[(i64, i64)], side: Side, price: i64) -> Result<usize, usize> {
        // "further from the touch" ordering key: bids ascending, asks descending ⇒ key = ±price ascending.
        let key = |p: i64| if side == Side::Bid { p } else { -p };
        let k = key(price);
        let n = v.len();
        let lin = n.min(8);
        for j in 0..lin {
            let i = n - 1 - j;
            let ki = key(v[i].0);
            if ki == k {
                return Ok(i);
            }
            if ki < k {
                return Err(i + 1);
            }
        }
        if lin == n {
            return Err(0);
        }
        v[..n - lin].binary_search_by(|&(p, _)| key(p).cmp(&k))
    }
}

impl BookLayout for VecBook {
    const NAME: &'static str = "vec";
    fn clear(&mut self) {
        self.sides[0].clear();
        self.sides[1].clear();
    }
    #[inline]
    fn set_level(&mut self, side: Side, price: i64, size: i64) {
        let v = &mut self.sides[side as usize];
        match (Self::find(v, side, price), size) {
            (Ok(i), 0) => {
                v.remove(i);
            }
            (Ok(i), s) => v[i].1 = s,
            (Err(_), 0) => {}
            (Err(i), s) => v.insert(i, (price, s)),
        }
    }
    fn size_at(&self, side: Side, price: i64) -> i64 {
        let v = &self.sides[side as usize];
        Self::find(v, side, price).map(|i| v[i].1).unwrap_or(0)
    }
    #[inline]
    fn best(&self, side: Side) -> Option<(i64, i64)> {
        self.sides[side as usize].last().copied()
    }
    fn depth(&self, side: Side) -> usize {
        self.sides[side as usize].len()
    }
    #[inline]
    fn top(&self, side: Side, px: &mut [i64], sz: &mut [i64]) -> usize {
        let v = &self.sides[side as usize];
        let n = px.len().min(sz.len()).min(v.len());
        for (j, &(p, s)) in v.iter().rev().take(n).enumerate() {
            px[j] = p;
            sz[j] = s;
        }
        n
    }
}

/// `BTreeMap` per side: simple, obviously correct, allocates on new levels.
#[derive(Clone, Debug, Default)]
pub struct BTreeBook {
    sides: [BTreeMap<i64, i64>; 2],
}

impl BookLayout for BTreeBook {
    const NAME: &'static str = "btree";
    fn clear(&mut self) {
        self.sides[0].clear();
        self.sides[1].clear();
    }
    fn set_level(&mut self, side: Side, price: i64, size: i64) {
        let m = &mut self.sides[side as usize];
        if size == 0 {
            m.remove(&price);
        } else {
            m.insert(price, size);
        }
    }
    fn size_at(&self, side: Side, price: i64) -> i64 {
        self.sides[side as usize].get(&price).copied().unwrap_or(0)
    }
    fn best(&self, side: Side) -> Option<(i64, i64)> {
        let m = &self.sides[side as usize];
        match side {
            Side::Bid => m.iter().next_back(),
            Side::Ask => m.iter().next(),
        }
        .map(|(&p, &s)| (p, s))
    }
    fn depth(&self, side: Side) -> usize {
        self.sides[side as usize].len()
    }
    fn top(&self, side: Side, px: &mut [i64], sz: &mut [i64]) -> usize {
        let m = &self.sides[side as usize];
        let n = px.len().min(sz.len());
        let mut w = 0;
        let mut put = |(p, s): (&i64, &i64)| {
            px[w] = *p;
            sz[w] = *s;
            w += 1;
        };
        match side {
            Side::Bid => m.iter().rev().take(n).for_each(&mut put),
            Side::Ask => m.iter().take(n).for_each(&mut put),
        }
        w
    }
}

/// Slots of a [`DenseBook`] window per side (ticks). 4096 × 8 bytes = 32 KiB: stays in cache.
const DENSE_CAP: usize = 4096;
const DENSE_WORDS: usize = DENSE_CAP / 64;

/// One side of a [`DenseBook`], in "distance keys": `k = -price` for bids, `price` for asks, so a
/// smaller key is always a better price. Invariant: every level in `far` has a key ≥ `lo + CAP`
/// (worse than the whole window), so the best level is in the window whenever the window is non-empty.
#[derive(Clone, Debug)]
struct DenseSide {
    bid: bool,
    lo: i64,
    sizes: Box<[i64]>,
    /// Occupancy bitmap of `sizes` (bit i set ⇔ slot i non-empty): finding the next level scans
    /// 64 slots per word, so sparse books (spot BTCUSDT: tick 0.01, levels dollars apart) cost
    /// what dense ones do.
    occ: [u64; DENSE_WORDS],
    /// Best key in the window, valid when `n_in > 0`.
    best: i64,
    n_in: usize,
    far: BTreeMap<i64, i64>,
}

impl DenseSide {
    fn new(bid: bool) -> DenseSide {
        DenseSide {
            bid,
            lo: 0,
            sizes: vec![0; DENSE_CAP].into_boxed_slice(),
            occ: [0; DENSE_WORDS],
            best: 0,
            n_in: 0,
            far: BTreeMap::new(),
        }
    }
    #[inline]
    fn mark(&mut self, i: usize, on: bool) {
        if on {
            self.occ[i >> 6] |= 1 << (i & 63);
        } else {
            self.occ[i >> 6] &= !(1 << (i & 63));
        }
    }
    /// First occupied slot at or after `i` (None past the window).
    #[inline]
    fn next_occupied(&self, i: usize) -> Option<usize> {
        let mut w = i >> 6;
        if w >= DENSE_WORDS {
            return None;
        }
        let mut bits = self.occ[w] & (u64::MAX << (i & 63));
        loop {
            if bits != 0 {
                return Some((w << 6) + bits.trailing_zeros() as usize);
            }
            w += 1;
            if w >= DENSE_WORDS {
                return None;
            }
            bits = self.occ[w];
        }
    }
    /// Rebuilds the bitmap from `sizes` (after a window shift; shifts are rare).
    fn rebuild_occ(&mut self) {
        self.occ = [0; DENSE_WORDS];
        for i in 0..DENSE_CAP {
            if self.sizes[i] != 0 {
                self.occ[i >> 6] |= 1 << (i & 63);
            }
        }
    }
    #[inline]
    fn key(&self, price: i64) -> i64 {
        if self.bid {
            -price
        } else {
            price
        }
    }
    #[inline]
    fn price(&self, key: i64) -> i64 {
        if self.bid {
            -key
        } else {
            key
        }
    }
    fn clear(&mut self) {
        self.sizes.fill(0);
        self.occ = [0; DENSE_WORDS];
        self.n_in = 0;
        self.far.clear();
    }
    /// Move the window so that it starts at `new_lo`, keeping the invariant on `far`. Callers
    /// guarantee no level has a key below `new_lo`. Levels that stay inside are shifted in place;
    /// only those crossing the window edge go through the far map.
    fn recentre(&mut self, new_lo: i64) {
        let cap = DENSE_CAP as i64;
        let shift = new_lo - self.lo;
        if self.n_in > 0 {
            if shift.abs() >= cap {
                for i in 0..DENSE_CAP {
                    let s = self.sizes[i];
                    if s != 0 {
                        self.far.insert(self.lo + i as i64, s);
                        self.sizes[i] = 0;
                    }
                }
                self.n_in = 0;
            } else if shift > 0 {
                // Toward worse keys: slots below `shift` are empty (the best is at or above new_lo).
                let sh = shift as usize;
                debug_assert!(self.sizes[..sh].iter().all(|&x| x == 0));
                self.sizes.copy_within(sh.., 0);
                self.sizes[DENSE_CAP - sh..].fill(0);
            } else if shift < 0 {
                // Toward better keys: the worst `-shift` slots leave the window for the far map.
                let sh = (-shift) as usize;
                for i in DENSE_CAP - sh..DENSE_CAP {
                    let s = self.sizes[i];
                    if s != 0 {
                        self.far.insert(self.lo + i as i64, s);
                        self.n_in -= 1;
                    }
                }
                self.sizes.copy_within(..DENSE_CAP - sh, sh);
                self.sizes[..sh].fill(0);
            }
            self.rebuild_occ();
        }
        self.lo = new_lo;
        // Pull every far level that now falls inside the window (all keys are ≥ new_lo).
        while let Some((&k, &s)) = self.far.first_key_value() {
            if k >= new_lo + cap {
                break;
            }
            self.far.pop_first();
            debug_assert!(k >= new_lo);
            self.sizes[(k - new_lo) as usize] = s;
            self.mark((k - new_lo) as usize, true);
            if self.n_in == 0 || k < self.best {
                self.best = k;
            }
            self.n_in += 1;
        }
    }
    #[inline]
    fn set(&mut self, price: i64, size: i64) {
        let cap = DENSE_CAP as i64;
        let k = self.key(price);
        if self.n_in == 0 && size != 0 && (self.far.is_empty() || k < self.lo) {
            // Empty window: place it around the new level (a quarter of the window better than it).
            let first_far = self.far.first_key_value().map(|(&fk, _)| fk);
            if first_far.is_none_or(|fk| k < fk) {
                self.recentre(k - cap / 4);
            }
        }
        if k < self.lo {
            if size == 0 {
                return; // nothing rests there (better than every level we hold)
            }
            self.recentre(k - cap / 4);
        }
        if k >= self.lo + cap {
            if size == 0 {
                self.far.remove(&k);
            } else {
                self.far.insert(k, size);
            }
            return;
        }
        let i = (k - self.lo) as usize;
        let old = self.sizes[i];
        self.sizes[i] = size;
        if (old != 0) != (size != 0) {
            self.mark(i, size != 0);
        }
        match (old != 0, size != 0) {
            (false, true) => {
                if self.n_in == 0 || k < self.best {
                    self.best = k;
                }
                self.n_in += 1;
            }
            (true, false) => {
                self.n_in -= 1;
                if self.n_in == 0 {
                    if let Some((&fk, _)) = self.far.first_key_value() {
                        self.recentre(fk - cap / 4);
                    }
                } else if k == self.best {
                    let j = self.next_occupied(i + 1).expect("n_in > 0: an occupied slot follows the old best");
                    self.best = self.lo + j as i64;
                    // The touch drifted toward the window's far edge: move the window along so
                    // updates near the touch stay array stores (one shift per cap/2 ticks moved).
                    if j > 3 * DENSE_CAP / 4 {
                        self.recentre(self.best - cap / 4);
                    }
                }
            }
            _ => {}
        }
    }
    #[inline]
    fn best(&self) -> Option<(i64, i64)> {
        (self.n_in > 0).then(|| (self.price(self.best), self.sizes[(self.best - self.lo) as usize]))
    }
    fn top(&self, px: &mut [i64], sz: &mut [i64]) -> usize {
        let n = px.len().min(sz.len());
        let mut w = 0;
        if self.n_in > 0 {
            let mut i = (self.best - self.lo) as usize;
            let mut seen = 0;
            while w < n {
                px[w] = self.price(self.lo + i as i64);
                sz[w] = self.sizes[i];
                w += 1;
                seen += 1;
                if seen == self.n_in {
                    break; // the window's last level: no scan to its end
                }
                i = self.next_occupied(i + 1).expect("n_in counts the occupied slots");
            }
        }
        for (&k, &s) in self.far.iter() {
            if w >= n {
                break;
            }
            px[w] = self.price(k);
            sz[w] = s;
            w += 1;
        }
        w
    }
    fn size_at(&self, price: i64) -> i64 {
        let k = self.key(price);
        if k >= self.lo && k < self.lo + DENSE_CAP as i64 {
            self.sizes[(k - self.lo) as usize]
        } else {
            self.far.get(&k).copied().unwrap_or(0)
        }
    }
}

/// Dense array of sizes around the touch per side (see [`DenseSide`]); levels further than 4096
/// ticks from the window edge live in a `BTreeMap`. Updates near the touch are one indexed store;
/// deleting the best scans forward to the next non-empty slot.
#[derive(Clone, Debug)]
pub struct DenseBook {
    sides: [DenseSide; 2],
}

impl Default for DenseBook {
    fn default() -> Self {
        DenseBook { sides: [DenseSide::new(true), DenseSide::new(false)] }
    }
}

impl BookLayout for DenseBook {
    const NAME: &'static str = "dense";
    fn clear(&mut self) {
        self.sides[0].clear();
        self.sides[1].clear();
    }
    #[inline]
    fn set_level(&mut self, side: Side, price: i64, size: i64) {
        self.sides[side as usize].set(price, size)
    }
    fn size_at(&self, side: Side, price: i64) -> i64 {
        self.sides[side as usize].size_at(price)
    }
    #[inline]
    fn best(&self, side: Side) -> Option<(i64, i64)> {
        self.sides[side as usize].best()
    }
    fn depth(&self, side: Side) -> usize {
        let s = &self.sides[side as usize];
        s.n_in + s.far.len()
    }
    #[inline]
    fn top(&self, side: Side, px: &mut [i64], sz: &mut [i64]) -> usize {
        self.sides[side as usize].top(px, sz)
    }
}

/// Top-N view of a book, allocated once and refilled in place.
/// Absent levels have price [`NO_PRICE`] and size 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopN {
    pub bid_px: Vec<i64>,
    pub bid_sz: Vec<i64>,
    pub ask_px: Vec<i64>,
    pub ask_sz: Vec<i64>,
}

impl TopN {
    pub fn new(levels: usize) -> TopN {
        TopN { bid_px: vec![NO_PRICE; levels], bid_sz: vec![0; levels], ask_px: vec![NO_PRICE; levels], ask_sz: vec![0; levels] }
    }
    pub fn levels(&self) -> usize {
        self.bid_px.len()
    }
    /// Fill from a layout without allocating.
    #[inline]
    pub fn fill<L: BookLayout>(&mut self, book: &L) {
        let nb = book.top(Side::Bid, &mut self.bid_px, &mut self.bid_sz);
        self.bid_px[nb..].fill(NO_PRICE);
        self.bid_sz[nb..].fill(0);
        let na = book.top(Side::Ask, &mut self.ask_px, &mut self.ask_sz);
        self.ask_px[na..].fill(NO_PRICE);
        self.ask_sz[na..].fill(0);
    }
}

/// Why applying an event did not leave a usable book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookState {
    /// Book is valid.
    Valid,
    /// No snapshot seen yet, or a `Gap` invalidated the book until the next `Snapshot`.
    Unsynced,
}

/// The canonical book: applies [`Event`]s to a [`BookLayout`] with the semantics documented in
/// [`crate::event`]. Non-book events (L3 order events, trades, halts) leave the levels alone:
/// the L2 changes they cause arrive as their own `LevelSet`/`LevelDelete` events.
#[derive(Clone, Debug, Default)]
pub struct OrderBook<L: BookLayout = DenseBook> {
    pub layout: L,
    /// False before the first snapshot (for sources that start with one) and after a gap.
    synced: bool,
    /// Timestamp (exchange) of the last applied event.
    pub last_ts: i64,
    /// Sequence id of the last applied event that had one.
    pub last_seq: u64,
}

impl<L: BookLayout> OrderBook<L> {
    /// A book that is valid from the start (sources that start from an empty book, e.g. LOBSTER
    /// and synthetic data, whose first events build the book).
    pub fn new_synced() -> Self {
        OrderBook { layout: L::default(), synced: true, last_ts: 0, last_seq: 0 }
    }
    /// A book that becomes valid at its first `Snapshot` event.
    pub fn new_unsynced() -> Self {
        OrderBook { layout: L::default(), synced: false, last_ts: 0, last_seq: 0 }
    }
    pub fn state(&self) -> BookState {
        if self.synced {
            BookState::Valid
        } else {
            BookState::Unsynced
        }
    }
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Apply one event. Allocation-free for the default layout once warm.
    #[inline]
    pub fn apply(&mut self, ev: &Event) {
        self.last_ts = ev.ts_exchange;
        if ev.seq != 0 {
            self.last_seq = ev.seq;
        }
        match ev.kind {
            EventKind::LevelSet | EventKind::LevelDelete => self.layout.set_level(ev.side, ev.price, ev.size),
            EventKind::Snapshot => {
                self.layout.clear();
                self.synced = true;
            }
            EventKind::Gap => {
                self.layout.clear();
                self.synced = false;
            }
            _ => {}
        }
    }

    #[inline]
    pub fn best_bid(&self) -> Option<(i64, i64)> {
        self.layout.best(Side::Bid)
    }
    #[inline]
    pub fn best_ask(&self) -> Option<(i64, i64)> {
        self.layout.best(Side::Ask)
    }
    /// Best bid ≥ best ask.
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some((b, _)), Some((a, _))) if b >= a)
    }
    /// Mid price in ticks (may be a half tick), if both sides exist.
    pub fn mid(&self) -> Option<f64> {
        match (self.best_bid(), self.best_ask()) {
            (Some((b, _)), Some((a, _))) => Some((b + a) as f64 / 2.0),
            _ => None,
        }
    }
    pub fn top_n(&self, out: &mut TopN) {
        out.fill(&self.layout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn run_random<L: BookLayout>(seed: u64, spread: i64, trend: i64) -> Vec<TopN> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut b = OrderBook::<L>::new_synced();
        let mut out = Vec::new();
        let mut top = TopN::new(5);
        let mut mid: i64 = 10_000;
        for i in 0..20_000 {
            if i % 5000 == 4999 {
                b.apply(&Event::new(EventKind::Snapshot, Side::Bid, 0, 0, i));
            }
            mid += rng.random_range(-2..=2) * (1 + spread / 400) + trend;
            let side = if rng.random_bool(0.5) { Side::Bid } else { Side::Ask };
            let off = rng.random_range(0..spread);
            let price = if side == Side::Bid { mid - 1 - off } else { mid + off };
            let size = if rng.random_bool(0.3) { 0 } else { rng.random_range(1..100) };
            b.apply(&Event::level(side, price, size, i));
            b.top_n(&mut top);
            let (bb, ba) = (b.best_bid(), b.best_ask());
            assert_eq!(bb.map(|x| x.0), (top.bid_sz[0] > 0).then_some(top.bid_px[0]));
            assert_eq!(ba.map(|x| x.0), (top.ask_sz[0] > 0).then_some(top.ask_px[0]));
            assert_eq!(b.layout.size_at(side, price), size);
            out.push(top.clone());
        }
        out
    }

    #[test]
    fn layouts_agree_on_random_updates() {
        for seed in 0..3 {
            let reference = run_random::<BTreeBook>(seed, 40, 0);
            assert_eq!(run_random::<VecBook>(seed, 40, 0), reference);
            assert_eq!(run_random::<DenseBook>(seed, 40, 0), reference);
        }
        // Levels spread far beyond the dense window exercise its recentring and far map.
        for seed in 3..6 {
            let reference = run_random::<BTreeBook>(seed, 9000, 0);
            assert_eq!(run_random::<DenseBook>(seed, 9000, 0), reference);
            assert_eq!(run_random::<VecBook>(seed, 9000, 0), reference);
        }
        // A trending price walks the touch across many dense windows, both ways.
        for (seed, trend) in [(6, 1), (7, -1), (8, 3)] {
            let reference = run_random::<BTreeBook>(seed, 300, trend);
            assert_eq!(run_random::<DenseBook>(seed, 300, trend), reference);
        }
    }

    #[test]
    fn top_n_orders_from_touch_and_pads() {
        let mut b = OrderBook::<VecBook>::new_synced();
        for (s, p, q) in [(Side::Bid, 99, 5), (Side::Bid, 97, 7), (Side::Bid, 98, 1), (Side::Ask, 101, 3), (Side::Ask, 100, 2)] {
            b.apply(&Event::level(s, p, q, 0));
        }
        let mut t = TopN::new(4);
        b.top_n(&mut t);
        assert_eq!(t.bid_px, vec![99, 98, 97, NO_PRICE]);
        assert_eq!(t.bid_sz, vec![5, 1, 7, 0]);
        assert_eq!(t.ask_px, vec![100, 101, NO_PRICE, NO_PRICE]);
        assert_eq!(b.mid(), Some(99.5));
        assert!(!b.is_crossed());
        b.apply(&Event::level(Side::Bid, 100, 1, 0));
        assert!(b.is_crossed());
        b.apply(&Event::level(Side::Bid, 100, 0, 0));
        assert_eq!(b.layout.size_at(Side::Bid, 100), 0);
        assert_eq!(b.layout.depth(Side::Bid), 3);
        // A gap clears and unsyncs; a snapshot re-syncs.
        b.apply(&Event::new(EventKind::Gap, Side::Bid, 0, 0, 1));
        assert!(!b.is_synced());
        assert_eq!(b.best_bid(), None);
        b.apply(&Event::new(EventKind::Snapshot, Side::Bid, 0, 0, 2));
        assert!(b.is_synced());
    }
}
