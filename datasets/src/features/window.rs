//! Rolling windows for the streaming engine: O(1) per update, all storage allocated in `new`.
//!
//! A window is either the last N *samples* ([`Span::Events`]; a sample is a batch end of a synced
//! book, i.e. one source message) or the samples of the last W ns ([`Span::Clock`]): at time t the
//! clock window holds exactly the entries with `t − W < ts ≤ t` (left-open, right-closed; the entry
//! of the current sample is included).
//!
//! A clock window lives in a ring of fixed capacity `cap` (from the feature's `max_rate_hz` × W,
//! see docs/features.md). If more than `cap` entries fall inside W the oldest in-window entry is
//! dropped and the window is marked *incomplete* until that entry would have left it anyway
//! (`ts ≥ dropped.ts + W`): the feature reads NaN meanwhile and the overflow is counted, so a
//! burst above the sizing rate is reported, never silently summed wrong.

/// Window length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// The last N samples (N ≥ 1).
    Events(usize),
    /// The samples with `t − ns < ts ≤ t`, held in a ring of `cap` entries.
    Clock { ns: i64, cap: usize },
}

impl Span {
    /// Ring capacity the span needs.
    pub fn capacity(&self) -> usize {
        match *self {
            Span::Events(n) => n.max(1),
            Span::Clock { cap, .. } => cap.max(2),
        }
    }
}

/// Fixed-capacity FIFO ring (no allocation after `new`).
#[derive(Clone, Debug)]
pub struct Ring<T: Copy + Default> {
    buf: Vec<T>,
    head: usize,
    len: usize,
}

impl<T: Copy + Default> Ring<T> {
    pub fn new(cap: usize) -> Self {
        Ring { buf: vec![T::default(); cap.max(1)], head: 0, len: 0 }
    }
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
    /// Element `i` counted from the oldest.
    #[inline]
    pub fn get(&self, i: usize) -> T {
        let c = self.buf.len();
        let j = self.head + i;
        self.buf[if j >= c { j - c } else { j }]
    }
    #[inline]
    pub fn front(&self) -> Option<T> {
        (self.len > 0).then(|| self.buf[self.head])
    }
    #[inline]
    pub fn back(&self) -> Option<T> {
        (self.len > 0).then(|| self.get(self.len - 1))
    }
    /// Append; if full, the oldest element is overwritten and returned.
    #[inline]
    pub fn push(&mut self, v: T) -> Option<T> {
        let c = self.buf.len();
        if self.len == c {
            let old = self.buf[self.head];
            self.buf[self.head] = v;
            self.head = if self.head + 1 == c { 0 } else { self.head + 1 };
            Some(old)
        } else {
            let j = self.head + self.len;
            self.buf[if j >= c { j - c } else { j }] = v;
            self.len += 1;
            None
        }
    }
    #[inline]
    pub fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let v = self.buf[self.head];
        self.head = if self.head + 1 == self.buf.len() { 0 } else { self.head + 1 };
        self.len -= 1;
        Some(v)
    }
    #[inline]
    pub fn pop_back(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        Some(self.get(self.len))
    }
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// Rolling sums of `K` quantities over a [`Span`]. Sums are kept incrementally and recomputed
/// from the ring after every max(capacity, 1024) evictions (amortised O(1)) so float drift stays
/// bounded; integer-valued quantities (lots, counts) are exact either way below 2^53.
#[derive(Clone, Debug)]
pub struct RollingSums<const K: usize> {
    span: Span,
    ts: Ring<i64>,
    /// Values, slot-aligned with `ts` (slot = ring position).
    vals: Vec<[f64; K]>,
    sum: [f64; K],
    evictions: usize,
    /// Samples pushed since reset (event windows: warm-up).
    pushed: u64,
    incomplete_until: i64,
    overflows: u64,
}

impl<const K: usize> RollingSums<K> {
    pub fn new(span: Span) -> Self {
        let cap = span.capacity();
        RollingSums {
            span,
            ts: Ring::new(cap),
            vals: vec![[0.0; K]; cap],
            sum: [0.0; K],
            evictions: 0,
            pushed: 0,
            incomplete_until: i64::MIN,
            overflows: 0,
        }
    }

    pub fn reset(&mut self) {
        self.ts.clear();
        self.sum = [0.0; K];
        self.evictions = 0;
        self.pushed = 0;
        self.incomplete_until = i64::MIN;
    }

    #[inline]
    fn slot(&self, i: usize) -> usize {
        let c = self.ts.capacity();
        let j = self.ts.head + i;
        if j >= c {
            j - c
        } else {
            j
        }
    }

    #[inline]
    fn evict_front(&mut self) {
        let s = self.ts.head;
        self.ts.pop_front();
        for j in 0..K {
            self.sum[j] -= self.vals[s][j];
        }
        self.evictions += 1;
        if self.evictions >= self.ts.capacity().max(1024) {
            self.recompute();
        }
    }

    #[cold]
    fn recompute(&mut self) {
        self.evictions = 0;
        self.sum = [0.0; K];
        for i in 0..self.ts.len() {
            let v = self.vals[self.slot(i)];
            for (s, x) in self.sum.iter_mut().zip(v) {
                *s += x;
            }
        }
    }

    /// Drop clock entries that left the window at time `ts` (no-op for event windows).
    #[inline]
    pub fn advance(&mut self, ts: i64) {
        if let Span::Clock { ns, .. } = self.span {
            let cut = ts.saturating_sub(ns);
            while let Some(t) = self.ts.front() {
                if t > cut {
                    break;
                }
                self.evict_front();
            }
        }
    }

    /// Add one sample's values at time `ts` (after evicting what left the window). Clock windows
    /// skip all-zero entries: they do not change a sum.
    #[inline]
    pub fn push(&mut self, ts: i64, v: &[f64; K]) {
        self.pushed += 1;
        match self.span {
            Span::Events(_) => {
                if self.ts.is_full() {
                    self.evict_front();
                }
            }
            Span::Clock { ns, .. } => {
                self.advance(ts);
                if v.iter().all(|&x| x == 0.0) {
                    return;
                }
                if self.ts.is_full() {
                    // Capacity exceeded inside the window: drop the oldest, mark incomplete.
                    let t_old = self.ts.front().unwrap_or(ts);
                    self.incomplete_until = self.incomplete_until.max(t_old.saturating_add(ns));
                    self.overflows += 1;
                    self.evict_front();
                }
            }
        }
        let s = self.slot(self.ts.len());
        self.ts.push(ts);
        self.vals[s] = *v;
        for (s, x) in self.sum.iter_mut().zip(v) {
            *s += x;
        }
    }

    #[inline]
    pub fn sum(&self, j: usize) -> f64 {
        self.sum[j]
    }

    /// Entries currently in the ring (event windows: samples; clock windows: non-zero samples).
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Whether the window is fully observed at time `ts`, observation having started at `t0`:
    /// event windows once N samples were pushed; clock windows once `ts − t0 ≥ W` and no
    /// overflow entry is still inside W.
    #[inline]
    pub fn ready(&self, ts: i64, t0: i64) -> bool {
        match self.span {
            Span::Events(n) => self.pushed >= n as u64,
            Span::Clock { ns, .. } => ts.saturating_sub(t0) >= ns && ts >= self.incomplete_until,
        }
    }

    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

/// Rolling maximum and minimum over a [`Span`] with monotone deques: amortised O(1).
#[derive(Clone, Debug)]
pub struct RollingExtrema {
    span: Span,
    /// (sample number, ts, value), values decreasing from the front.
    maxq: Ring<(u64, i64, f64)>,
    /// values increasing from the front.
    minq: Ring<(u64, i64, f64)>,
    n: u64,
    incomplete_until: i64,
    overflows: u64,
}

impl RollingExtrema {
    pub fn new(span: Span) -> Self {
        let cap = span.capacity();
        RollingExtrema { span, maxq: Ring::new(cap), minq: Ring::new(cap), n: 0, incomplete_until: i64::MIN, overflows: 0 }
    }
    pub fn reset(&mut self) {
        self.maxq.clear();
        self.minq.clear();
        self.n = 0;
        self.incomplete_until = i64::MIN;
    }
    fn expire(q: &mut Ring<(u64, i64, f64)>, span: Span, n: u64, ts: i64) {
        while let Some((k, t, _)) = q.front() {
            let out = match span {
                Span::Events(w) => k + (w as u64) <= n,
                Span::Clock { ns, .. } => t <= ts.saturating_sub(ns),
            };
            if !out {
                break;
            }
            q.pop_front();
        }
    }
    /// Add the sample value `v` at `ts` (NaN values are skipped but count as samples).
    pub fn push(&mut self, ts: i64, v: f64) {
        self.n += 1;
        Self::expire(&mut self.maxq, self.span, self.n, ts);
        Self::expire(&mut self.minq, self.span, self.n, ts);
        if v.is_nan() {
            return;
        }
        while matches!(self.maxq.back(), Some((_, _, x)) if x <= v) {
            self.maxq.pop_back();
        }
        while matches!(self.minq.back(), Some((_, _, x)) if x >= v) {
            self.minq.pop_back();
        }
        let ns = match self.span {
            Span::Clock { ns, .. } => ns,
            Span::Events(_) => 0,
        };
        for q in [&mut self.maxq, &mut self.minq] {
            if q.is_full() {
                // Only reachable for clock windows above the sizing rate.
                let (_, t_old, _) = q.front().unwrap_or((0, ts, 0.0));
                self.incomplete_until = self.incomplete_until.max(t_old.saturating_add(ns));
                self.overflows += 1;
                q.pop_front();
            }
            q.push((self.n, ts, v));
        }
    }
    pub fn max(&self) -> f64 {
        self.maxq.front().map(|x| x.2).unwrap_or(f64::NAN)
    }
    pub fn min(&self) -> f64 {
        self.minq.front().map(|x| x.2).unwrap_or(f64::NAN)
    }
    pub fn ready(&self, ts: i64, t0: i64) -> bool {
        match self.span {
            Span::Events(w) => self.n >= w as u64,
            Span::Clock { ns, .. } => ts.saturating_sub(t0) >= ns && ts >= self.incomplete_until,
        }
    }
    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

/// The value a series had one window ago: for `Events(N)` the value N samples back; for
/// `Clock{W}` the value at the latest sample with `ts ≤ t − W`. Only changes are stored (a
/// repeated value does not take a slot).
#[derive(Clone, Debug)]
pub struct Lagged {
    span: Span,
    ring: Ring<(i64, f64)>,
    n: u64,
    incomplete_until: i64,
    overflows: u64,
}

impl Lagged {
    pub fn new(span: Span) -> Self {
        let cap = match span {
            Span::Events(n) => n + 1,
            Span::Clock { cap, .. } => cap.max(2),
        };
        Lagged { span, ring: Ring::new(cap), n: 0, incomplete_until: i64::MIN, overflows: 0 }
    }
    pub fn reset(&mut self) {
        self.ring.clear();
        self.n = 0;
        self.incomplete_until = i64::MIN;
    }
    /// Record the current value and return the value one window ago (NaN if not observed).
    pub fn push(&mut self, ts: i64, v: f64) -> f64 {
        self.n += 1;
        match self.span {
            Span::Events(_) => {
                self.ring.push((ts, v));
                if self.ring.is_full() {
                    self.ring.front().map(|x| x.1).unwrap_or(f64::NAN)
                } else {
                    f64::NAN
                }
            }
            Span::Clock { ns, .. } => {
                let cut = ts.saturating_sub(ns);
                if self.ring.back().map(|x| x.1.to_bits()) != Some(v.to_bits()) {
                    if self.ring.is_full() {
                        let (t_old, _) = self.ring.front().unwrap_or((ts, 0.0));
                        // The dropped value was the reference for times up to the next entry's
                        // ts + W; without it the lag is unknown until then.
                        let t_next = if self.ring.len() > 1 { self.ring.get(1).0 } else { t_old };
                        self.incomplete_until = self.incomplete_until.max(t_next.saturating_add(ns));
                        self.overflows += 1;
                        self.ring.pop_front();
                    }
                    self.ring.push((ts, v));
                }
                // Keep exactly one entry at or before the cut (the reference).
                while self.ring.len() >= 2 && self.ring.get(1).0 <= cut {
                    self.ring.pop_front();
                }
                match self.ring.front() {
                    Some((t, x)) if t <= cut && ts >= self.incomplete_until => x,
                    _ => f64::NAN,
                }
            }
        }
    }
    pub fn overflows(&self) -> u64 {
        self.overflows
    }
}

/// Exponentially weighted moving average with half-life `h` samples: α = 1 − 2^(−1/h).
#[derive(Clone, Copy, Debug)]
pub struct Ewma {
    alpha: f64,
    value: f64,
    n: u64,
}

impl Ewma {
    pub fn new(halflife: f64) -> Self {
        Ewma { alpha: 1.0 - (-std::f64::consts::LN_2 / halflife.max(1e-9)).exp(), value: f64::NAN, n: 0 }
    }
    pub fn reset(&mut self) {
        self.value = f64::NAN;
        self.n = 0;
    }
    /// Update with `x` (NaN skipped); returns the average.
    #[inline]
    pub fn push(&mut self, x: f64) -> f64 {
        if x.is_nan() {
            return self.value;
        }
        self.n += 1;
        self.value = if self.value.is_nan() { x } else { self.value + self.alpha * (x - self.value) };
        self.value
    }
    pub fn count(&self) -> u64 {
        self.n
    }
}

/// Rolling z-score over a [`Span`]: (x − mean)/std of the window including x, population std.
/// Values are shifted by the first value seen (a constant) before squaring, so the variance does
/// not lose precision when the mean is large compared with the spread. std = 0 gives z = 0
/// (then x equals the mean).
#[derive(Clone, Debug)]
pub struct RollingZ {
    sums: RollingSums<3>,
    shift: f64,
    buf: [f64; 3],
}

impl RollingZ {
    pub fn new(span: Span) -> Self {
        RollingZ { sums: RollingSums::new(span), shift: f64::NAN, buf: [0.0; 3] }
    }
    pub fn reset(&mut self) {
        self.sums.reset();
        self.shift = f64::NAN;
    }
    /// Push x (NaN: the sample counts but adds nothing) and return the z-score (NaN in warm-up).
    pub fn push(&mut self, ts: i64, t0: i64, x: f64) -> f64 {
        if x.is_nan() {
            self.sums.advance(ts);
            if let Span::Events(_) = self.sums.span {
                self.sums.push(ts, &[0.0, 0.0, 0.0]);
            }
            return f64::NAN;
        }
        if self.shift.is_nan() {
            self.shift = x;
        }
        let y = x - self.shift;
        self.buf = [y, y * y, 1.0];
        self.sums.push(ts, &self.buf);
        if !self.sums.ready(ts, t0) {
            return f64::NAN;
        }
        let n = self.sums.sum(2);
        if n < 1.0 {
            return f64::NAN;
        }
        let mean = self.sums.sum(0) / n;
        let var = (self.sums.sum(1) / n - mean * mean).max(0.0);
        let sd = var.sqrt();
        if sd <= 1e-12 * (1.0 + mean.abs()) {
            0.0
        } else {
            (y - mean) / sd
        }
    }
    pub fn overflows(&self) -> u64 {
        self.sums.overflows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn ring_wraps() {
        let mut r = Ring::<i64>::new(3);
        assert_eq!(r.push(1), None);
        r.push(2);
        r.push(3);
        assert_eq!(r.push(4), Some(1));
        assert_eq!((r.get(0), r.get(1), r.get(2)), (2, 3, 4));
        assert_eq!(r.pop_back(), Some(4));
        assert_eq!(r.pop_front(), Some(2));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn event_window_sums_last_n() {
        let mut w = RollingSums::<1>::new(Span::Events(3));
        let mut got = vec![];
        for (i, x) in [1.0, 2.0, 3.0, 4.0, 5.0].into_iter().enumerate() {
            w.push(i as i64, &[x]);
            got.push(if w.ready(i as i64, 0) { w.sum(0) } else { f64::NAN });
        }
        assert!(got[0].is_nan() && got[1].is_nan());
        assert_eq!(&got[2..], &[6.0, 9.0, 12.0]);
    }

    #[test]
    fn clock_window_is_left_open_right_closed() {
        // W = 1 s; entries at 0, 0.5, 1.0, 1.5 s. At t = 1.0 s the window (0, 1.0] excludes t = 0.
        let mut w = RollingSums::<1>::new(Span::Clock { ns: S, cap: 16 });
        w.push(0, &[1.0]);
        w.push(S / 2, &[10.0]);
        assert!(!w.ready(S / 2, 0));
        w.push(S, &[100.0]);
        assert!(w.ready(S, 0));
        assert_eq!(w.sum(0), 110.0);
        w.push(3 * S / 2, &[1000.0]);
        assert_eq!(w.sum(0), 1100.0);
        // Nothing new for 5 s: advancing empties the window.
        w.advance(7 * S);
        assert_eq!(w.sum(0), 0.0);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn clock_overflow_is_reported_not_summed_wrong() {
        let mut w = RollingSums::<1>::new(Span::Clock { ns: 10 * S, cap: 4 });
        for i in 0..6 {
            w.push(i * S, &[1.0]);
        }
        assert_eq!(w.overflows(), 2);
        // The second dropped entry (t = 1 s) would have left the window at 11 s.
        assert!(!w.ready(10 * S, 0));
        // At 12 s the window (2, 12] holds 3, 4, 5 and 12 s: complete again, and exact.
        w.push(12 * S, &[1.0]);
        assert!(w.ready(12 * S, 0));
        assert_eq!(w.sum(0), 4.0);
        assert_eq!(w.overflows(), 2);
    }

    #[test]
    fn extrema_match_naive() {
        let xs = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0];
        let mut e = RollingExtrema::new(Span::Events(3));
        for (i, &x) in xs.iter().enumerate() {
            e.push(i as i64, x);
            let lo = i.saturating_sub(2);
            let w = &xs[lo..=i];
            assert_eq!(e.max(), w.iter().cloned().fold(f64::MIN, f64::max));
            assert_eq!(e.min(), w.iter().cloned().fold(f64::MAX, f64::min));
        }
        let mut c = RollingExtrema::new(Span::Clock { ns: 2 * S, cap: 8 });
        for (i, &x) in xs.iter().enumerate() {
            c.push(i as i64 * S, x);
            // (t − 2 s, t] holds samples i−1 and i.
            let w = &xs[i.saturating_sub(1)..=i];
            assert_eq!(c.max(), w.iter().cloned().fold(f64::MIN, f64::max));
        }
    }

    #[test]
    fn lagged_values() {
        let mut l = Lagged::new(Span::Events(2));
        assert!(l.push(0, 1.0).is_nan());
        assert!(l.push(1, 2.0).is_nan());
        assert_eq!(l.push(2, 3.0), 1.0);
        assert_eq!(l.push(3, 4.0), 2.0);
        let mut c = Lagged::new(Span::Clock { ns: 10, cap: 8 });
        assert!(c.push(0, 1.0).is_nan());
        assert!(c.push(5, 2.0).is_nan());
        assert_eq!(c.push(10, 3.0), 1.0); // latest at or before 0
        assert_eq!(c.push(14, 3.0), 1.0); // cut 4: still t=0's value
        assert_eq!(c.push(15, 4.0), 2.0); // cut 5
        assert_eq!(c.push(100, 4.0), 4.0); // cut 90: value set at 15
    }

    #[test]
    fn ewma_and_z() {
        let mut e = Ewma::new(1.0);
        assert_eq!(e.push(1.0), 1.0);
        assert_eq!(e.push(3.0), 2.0); // α = 1/2
        let mut z = RollingZ::new(Span::Events(3));
        assert!(z.push(0, 0, 1.0).is_nan());
        assert!(z.push(1, 0, 2.0).is_nan());
        // window {1,2,3}: mean 2, population sd sqrt(2/3)
        let v = z.push(2, 0, 3.0);
        assert!((v - 1.0 / (2.0f64 / 3.0).sqrt()).abs() < 1e-12, "{v}");
        let mut k = RollingZ::new(Span::Events(2));
        k.push(0, 0, 5.0);
        assert_eq!(k.push(1, 0, 5.0), 0.0);
    }
}
