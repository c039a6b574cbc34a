//! The L3 order tracker behind order-count imbalance: live orders seen in the order-by-order
//! stream and, per (side, price), their count and total size, in fixed-capacity maps (no
//! allocation after `new`).

use crate::event::{Event, EventKind, Side};

/// Fixed-capacity open-addressing map (linear probing, backward-shift deletion): no allocation
/// after `new`.
#[derive(Clone, Debug)]
struct FixedMap<V: Copy + Default> {
    keys: Vec<u64>,
    vals: Vec<V>,
    used: Vec<bool>,
    len: usize,
    mask: usize,
    bits: u32,
}

impl<V: Copy + Default> FixedMap<V> {
    fn new(bits: u32) -> Self {
        let n = 1usize << bits;
        FixedMap { keys: vec![0; n], vals: vec![V::default(); n], used: vec![false; n], len: 0, mask: n - 1, bits }
    }
    #[inline]
    fn home(&self, k: u64) -> usize {
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - self.bits)) as usize
    }
    #[inline]
    fn find(&self, k: u64) -> Option<usize> {
        let mut i = self.home(k);
        while self.used[i] {
            if self.keys[i] == k {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }
    /// Half full counts as full: probe sequences stay short.
    fn full(&self) -> bool {
        self.len * 2 >= self.keys.len()
    }
    fn get(&self, k: u64) -> Option<V> {
        self.find(k).map(|i| self.vals[i])
    }
    fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        self.find(k).map(move |i| &mut self.vals[i])
    }
    /// Insert or replace; false if the map is full.
    fn insert(&mut self, k: u64, v: V) -> bool {
        if let Some(i) = self.find(k) {
            self.vals[i] = v;
            return true;
        }
        if self.full() {
            return false;
        }
        let mut i = self.home(k);
        while self.used[i] {
            i = (i + 1) & self.mask;
        }
        self.keys[i] = k;
        self.vals[i] = v;
        self.used[i] = true;
        self.len += 1;
        true
    }
    fn remove(&mut self, k: u64) -> Option<V> {
        let mut i = self.find(k)?;
        let v = self.vals[i];
        self.used[i] = false;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            if !self.used[j] {
                break;
            }
            let h = self.home(self.keys[j]);
            let stays = if i <= j { i < h && h <= j } else { i < h || h <= j };
            if !stays {
                self.keys[i] = self.keys[j];
                self.vals[i] = self.vals[j];
                self.used[i] = true;
                self.used[j] = false;
                i = j;
            }
        }
        Some(v)
    }
    fn clear(&mut self) {
        self.used.fill(false);
        self.len = 0;
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Order {
    side: u8,
    price: i64,
    remaining: i64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Level {
    count: u32,
    /// Σ remaining size of the tracked orders at this level.
    known: i64,
}

/// Live orders seen in the L3 stream and, per (side, price), their count and total size.
#[derive(Clone, Debug)]
pub(crate) struct OrderTracker {
    orders: FixedMap<Order>,
    levels: FixedMap<Level>,
    overflow: bool,
    overflows: u64,
}

/// Live-order capacity 2^17 (half of 2^18 slots) and 2^13 price levels: far above what a single
/// book holds (the LOBSTER AMZN day peaks at a few thousand live orders).
const ORDER_BITS: u32 = 18;
const LEVEL_BITS: u32 = 14;

#[inline]
fn level_key(side: u8, price: i64) -> u64 {
    (price as u64).wrapping_shl(1) | side as u64
}

impl OrderTracker {
    pub fn new() -> Self {
        OrderTracker { orders: FixedMap::new(ORDER_BITS), levels: FixedMap::new(LEVEL_BITS), overflow: false, overflows: 0 }
    }
    pub fn reset(&mut self) {
        self.orders.clear();
        self.levels.clear();
        self.overflow = false;
    }
    pub fn valid(&self) -> bool {
        !self.overflow
    }
    pub fn overflows(&self) -> u64 {
        self.overflows
    }
    fn fail(&mut self) {
        self.overflow = true;
        self.overflows += 1;
    }
    /// Remove `q` lots from a tracked order (cancel / execution / delete when `q` ≥ remaining).
    fn reduce(&mut self, id: u64, q: Option<i64>) {
        let Some(o) = self.orders.get(id) else { return };
        let take = q.unwrap_or(o.remaining).min(o.remaining).max(0);
        let key = level_key(o.side, o.price);
        let gone = take >= o.remaining;
        if gone {
            self.orders.remove(id);
        } else if let Some(m) = self.orders.get_mut(id) {
            m.remaining -= take;
        }
        if let Some(l) = self.levels.get_mut(key) {
            l.known -= take;
            if gone {
                l.count = l.count.saturating_sub(1);
            }
            if l.count == 0 {
                self.levels.remove(key);
            }
        }
    }
    pub fn apply(&mut self, ev: &Event) {
        if self.overflow {
            return;
        }
        match ev.kind {
            EventKind::OrderAdd => {
                if self.orders.get(ev.order_id).is_some() {
                    self.reduce(ev.order_id, None);
                }
                let side = ev.side as u8;
                let o = Order { side, price: ev.price, remaining: ev.size };
                let key = level_key(side, ev.price);
                let l = self.levels.get(key).unwrap_or_default();
                if !self.orders.insert(ev.order_id, o) || !self.levels.insert(key, Level { count: l.count + 1, known: l.known + ev.size }) {
                    self.fail();
                }
            }
            EventKind::OrderCancel | EventKind::OrderExecute => self.reduce(ev.order_id, Some(ev.size)),
            EventKind::OrderDelete => self.reduce(ev.order_id, None),
            _ => {}
        }
    }
    /// Number of orders at (side, price) if the tracked orders explain the book's `size` there
    /// exactly (otherwise orders whose submission was not in the stream rest there: unknown).
    pub fn exact_count(&self, side: Side, price: i64, size: i64) -> Option<u32> {
        match self.levels.get(level_key(side as u8, price)) {
            Some(l) if l.known == size => Some(l.count),
            None if size == 0 => Some(0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn fixed_map_matches_hashmap() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut m = FixedMap::<i64>::new(8);
        let mut h = HashMap::new();
        for _ in 0..20_000 {
            let k = rng.random_range(0..300u64);
            if rng.random_bool(0.5) {
                let v = rng.random_range(0..1000i64);
                if m.insert(k, v) {
                    h.insert(k, v);
                } else {
                    assert!(!h.contains_key(&k) && h.len() * 2 >= 256);
                }
            } else {
                assert_eq!(m.remove(k), h.remove(&k));
            }
            assert_eq!(m.len, h.len());
        }
        for k in 0..300 {
            assert_eq!(m.get(k), h.get(&k).copied());
        }
    }

    #[test]
    fn tracker_counts_orders_and_knows_when_it_cannot() {
        let mut t = OrderTracker::new();
        let add = |id, side, p, q| Event::new(EventKind::OrderAdd, side, p, q, 0).with_order(id);
        t.apply(&add(1, Side::Bid, 100, 5));
        t.apply(&add(2, Side::Bid, 100, 3));
        t.apply(&add(3, Side::Ask, 101, 4));
        assert_eq!(t.exact_count(Side::Bid, 100, 8), Some(2));
        // Partial cancel keeps the order; execution of the rest removes it.
        t.apply(&Event::new(EventKind::OrderCancel, Side::Bid, 100, 2, 0).with_order(1));
        assert_eq!(t.exact_count(Side::Bid, 100, 6), Some(2));
        t.apply(&Event::new(EventKind::OrderExecute, Side::Bid, 100, 3, 0).with_order(1));
        assert_eq!(t.exact_count(Side::Bid, 100, 3), Some(1));
        t.apply(&Event::new(EventKind::OrderDelete, Side::Bid, 100, 3, 0).with_order(2));
        assert_eq!(t.exact_count(Side::Bid, 100, 0), Some(0));
        // A book size the tracked orders do not explain (pre-existing orders): unknown.
        assert_eq!(t.exact_count(Side::Ask, 101, 10), None);
        assert_eq!(t.exact_count(Side::Ask, 101, 4), Some(1));
        // Unknown ids are ignored.
        t.apply(&Event::new(EventKind::OrderDelete, Side::Ask, 101, 9, 0).with_order(77));
        assert_eq!(t.exact_count(Side::Ask, 101, 4), Some(1));
    }
}
