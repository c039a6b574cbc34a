//! Shared rolling sums. Many features sum the same per-sample quantity over different windows
//! (OFI over 10 and 100 events and 1 s … 5 min; buy and sell volume and trade imbalance over the
//! same windows; the normalised level OFIs and the integrated OFI). The bank computes each
//! quantity once per sample and stores it once per window type (events / clock) as prefix sums:
//! a window's sum is `total − total before its oldest entry`, so a push is one write however many
//! windows share the ring, and a clock window only moves its tail pointer.
//!
//! Window semantics are those of [`super::window`]: event windows hold the last N samples; clock
//! windows the samples with `t − W < ts ≤ t`. A clock ring holds at least every window's
//! `ceil(W × max_rate_hz) + 1` entries (all-zero entries are not stored); an entry dropped while
//! still inside a window makes that window NaN until it would have left anyway (`overflows`).
//!
//! Rounding: a window sum is a difference of running totals, so its error is ≤ ε × |running total
//! since the last reset|; integer-valued quantities (lots, counts, OFI) stay exact below 2^53.

use super::ctx::{Ctx, TouchFlow};
use super::window::Span;
use crate::event::Side;

/// A per-sample quantity (1 to 3 columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Src {
    /// e^m at level index m; no entry at the first sample after a reset (no previous book).
    Ofi(usize),
    /// The sample's mean depth per level over levels 1..M, (1/2M) Σ_{i≤M} (q^b_i + q^a_i)
    /// (Cont, Cucuringu & Zhang 2023 normalisation); no entry without a previous book.
    DepthAvg(usize),
    /// 1 per sample that has a previous book (counts the samples of the OFI windows).
    OfiSamples,
    /// Buy and sell size of one trade classification.
    Flow(usize),
    /// Σ price × size and Σ size of the sample's trades.
    Vwap,
    /// Number of trades.
    Trades,
    /// Adds, cancels, executions at one side's touch.
    Touch(Side),
    /// Squared log mid return since the previous sample (0 when a mid is missing); no entry at the
    /// first sample after a reset.
    RetSq,
}

impl Src {
    fn width(&self) -> usize {
        match *self {
            Src::Ofi(_) | Src::DepthAvg(_) | Src::OfiSamples | Src::Trades | Src::RetSq => 1,
            Src::Flow(_) | Src::Vwap => 2,
            Src::Touch(_) => 3,
        }
    }
    /// Fill `out` for this sample; false when the sample has no entry.
    #[inline]
    fn fill(&self, ctx: &Ctx, out: &mut [f64; 3]) -> bool {
        match *self {
            Src::Ofi(m) => {
                out[0] = ctx.ofi[m];
                ctx.has_prev
            }
            Src::DepthAvg(m) => {
                out[0] = (ctx.cum_depth(Side::Bid, m) + ctx.cum_depth(Side::Ask, m)) / (2 * m) as f64;
                ctx.has_prev
            }
            Src::OfiSamples => {
                out[0] = 1.0;
                ctx.has_prev
            }
            Src::Flow(c) => {
                out[0] = ctx.flow.buy[c];
                out[1] = ctx.flow.sell[c];
                true
            }
            Src::Vwap => {
                out[0] = ctx.flow.notional;
                out[1] = ctx.flow.volume;
                true
            }
            Src::Trades => {
                out[0] = ctx.flow.trades;
                true
            }
            Src::Touch(side) => {
                let TouchFlow { adds, cancels, execs } = ctx.touch[side as usize];
                *out = [adds, cancels, execs];
                true
            }
            Src::RetSq => {
                let r = ctx.ln_mid - ctx.prev_ln_mid;
                out[0] = if r.is_nan() { 0.0 } else { r * r };
                ctx.samples > 1
            }
        }
    }
}

/// One window over a shared ring.
#[derive(Clone, Debug)]
struct Win {
    /// Events: N; clock: W in ns.
    len: i64,
    /// Clock windows: absolute index of the oldest entry inside the window.
    tail: u64,
    /// Offset of the window's sums in [`Bank::sums`]; `id` its index in [`Bank::ready`].
    off: usize,
    id: usize,
    incomplete_until: i64,
}

/// One ring (event or clock) of a K-column quantity and the windows that read it.
#[derive(Clone, Debug)]
struct Multi<const K: usize> {
    clock: bool,
    /// Entries; a power of two so that a slot is `index & mask`.
    cap: usize,
    mask: u64,
    /// Entry timestamps (clock rings only).
    ts: Vec<i64>,
    /// Running totals after each entry.
    cum: Vec<[f64; K]>,
    total: [f64; K],
    /// Absolute index of the next entry.
    head: u64,
    /// Samples pushed since reset (event-window warm-up).
    pushed: u64,
    wins: Vec<Win>,
    overflows: u64,
}

impl<const K: usize> Multi<K> {
    fn new(clock: bool) -> Self {
        Multi {
            clock,
            cap: 0,
            mask: 0,
            ts: Vec::new(),
            cum: Vec::new(),
            total: [0.0; K],
            head: 0,
            pushed: 0,
            wins: Vec::new(),
            overflows: 0,
        }
    }

    /// Allocate (and touch, so no page fault happens mid-stream) the ring: the largest window's
    /// entries + 2 (the entry before the oldest is the base of the difference), rounded up to a
    /// power of two.
    fn allocate(&mut self) {
        self.cap = (self.cap + 2).next_power_of_two();
        self.mask = self.cap as u64 - 1;
        if self.clock {
            self.ts = vec![0; self.cap];
            self.ts.fill(i64::MIN);
        }
        self.cum = vec![[0.0; K]; self.cap];
        self.cum.fill([0.0; K]);
    }

    fn reset(&mut self) {
        self.head = 0;
        self.pushed = 0;
        self.total = [0.0; K];
        for w in &mut self.wins {
            w.tail = 0;
            w.incomplete_until = i64::MIN;
        }
    }

    /// Clock rings: move each window's tail past the entries with `ts ≤ t − W`.
    #[inline]
    fn advance(&mut self, ts: i64) {
        for w in &mut self.wins {
            let cut = ts.saturating_sub(w.len);
            while w.tail < self.head && self.ts[(w.tail & self.mask) as usize] <= cut {
                w.tail += 1;
            }
        }
    }

    #[inline]
    fn push(&mut self, ts: i64, v: &[f64; 3]) {
        self.pushed += 1;
        if self.clock {
            self.advance(ts);
            if v[..K].iter().all(|&x| x == 0.0) {
                return;
            }
            // Retained: the base entry (oldest − 1) through the new head.
            let oldest = self.wins.iter().map(|w| w.tail).min().unwrap_or(self.head);
            if self.head + 2 - oldest > self.cap as u64 {
                let t_old = self.ts[(oldest & self.mask) as usize];
                self.overflows += 1;
                for w in &mut self.wins {
                    if w.tail == oldest {
                        w.incomplete_until = w.incomplete_until.max(t_old.saturating_add(w.len));
                        w.tail += 1;
                    }
                }
            }
            self.ts[(self.head & self.mask) as usize] = ts;
        }
        for (t, x) in self.total.iter_mut().zip(v) {
            *t += x;
        }
        self.cum[(self.head & self.mask) as usize] = self.total;
        self.head += 1;
    }

    /// Write each window's sums and readiness at `ts` (observation started at `t0`).
    #[inline]
    fn publish(&self, ts: i64, t0: i64, sums: &mut [f64], ready: &mut [bool]) {
        for w in &self.wins {
            let tail = if self.clock { w.tail } else { self.head.saturating_sub(w.len as u64) };
            let base = if tail == 0 { [0.0; K] } else { self.cum[((tail - 1) & self.mask) as usize] };
            for j in 0..K {
                sums[w.off + j] = self.total[j] - base[j];
            }
            ready[w.id] = if self.clock { ts.saturating_sub(t0) >= w.len && ts >= w.incomplete_until } else { self.pushed >= w.len as u64 };
        }
    }
}

/// The rings of one quantity, by column count.
#[derive(Clone, Debug)]
enum Rings {
    K1(Multi<1>, Multi<1>),
    K2(Multi<2>, Multi<2>),
    K3(Multi<3>, Multi<3>),
}

macro_rules! each_ring {
    ($rings:expr, |$ev:ident, $clk:ident| $body:expr) => {
        match $rings {
            Rings::K1($ev, $clk) => $body,
            Rings::K2($ev, $clk) => $body,
            Rings::K3($ev, $clk) => $body,
        }
    };
}

/// A quantity and its rings.
#[derive(Clone, Debug)]
struct Series {
    src: Src,
    buf: [f64; 3],
    rings: Rings,
}

/// Handle to one window: where its sums and readiness live.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WinRef {
    off: usize,
    id: usize,
}

/// All shared windows of an engine. Sums and readiness of every window are kept in two flat
/// arrays, so a feature reads its window with one indexed load.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bank {
    series: Vec<Series>,
    sums: Vec<f64>,
    ready: Vec<bool>,
}

impl Bank {
    /// Register (or find) the window `span` over `src`. Call [`Bank::allocate`] once all are in.
    pub fn window(&mut self, src: Src, span: Span) -> WinRef {
        let si = match self.series.iter().position(|s| s.src == src) {
            Some(i) => i,
            None => {
                let rings = match src.width() {
                    1 => Rings::K1(Multi::new(false), Multi::new(true)),
                    2 => Rings::K2(Multi::new(false), Multi::new(true)),
                    _ => Rings::K3(Multi::new(false), Multi::new(true)),
                };
                self.series.push(Series { src, buf: [0.0; 3], rings });
                self.series.len() - 1
            }
        };
        let (len, cap, clock) = match span {
            Span::Events(n) => (n as i64, n, false),
            Span::Clock { ns, cap } => (ns, cap, true),
        };
        let k = self.series[si].src.width();
        let (off, id) = (self.sums.len(), self.ready.len());
        let found = each_ring!(&mut self.series[si].rings, |ev, clk| {
            let m = if clock { &mut clk.wins } else { &mut ev.wins };
            let c = if clock { &mut clk.cap } else { &mut ev.cap };
            *c = (*c).max(cap);
            match m.iter().find(|w| w.len == len) {
                Some(w) => Some(WinRef { off: w.off, id: w.id }),
                None => {
                    m.push(Win { len, tail: 0, off, id, incomplete_until: i64::MIN });
                    None
                }
            }
        });
        if let Some(r) = found {
            return r;
        }
        self.sums.resize(off + k, 0.0);
        self.ready.push(false);
        WinRef { off, id }
    }

    pub fn allocate(&mut self) {
        for s in &mut self.series {
            each_ring!(&mut s.rings, |ev, clk| {
                if !ev.wins.is_empty() {
                    ev.allocate();
                }
                if !clk.wins.is_empty() {
                    clk.allocate();
                }
            });
        }
    }

    pub fn reset(&mut self) {
        for s in &mut self.series {
            each_ring!(&mut s.rings, |ev, clk| {
                ev.reset();
                clk.reset();
            });
        }
        self.sums.fill(0.0);
        self.ready.fill(false);
    }

    /// Push this sample's quantities and publish every window's sums and readiness (before the
    /// nodes read).
    #[inline]
    pub fn update(&mut self, ctx: &Ctx) {
        let (sums, ready) = (&mut self.sums, &mut self.ready);
        for s in &mut self.series {
            let has = s.src.fill(ctx, &mut s.buf);
            each_ring!(&mut s.rings, |ev, clk| {
                if !ev.wins.is_empty() {
                    if has {
                        ev.push(ctx.ts, &s.buf);
                    }
                    ev.publish(ctx.ts, ctx.t0, sums, ready);
                }
                if !clk.wins.is_empty() {
                    if has {
                        clk.push(ctx.ts, &s.buf);
                    } else {
                        clk.advance(ctx.ts);
                    }
                    clk.publish(ctx.ts, ctx.t0, sums, ready);
                }
            });
        }
    }

    /// Running sum of column `j` of the window.
    #[inline]
    pub fn sum(&self, r: WinRef, j: usize) -> f64 {
        self.sums[r.off + j]
    }

    /// Whether the window is fully observed at the current sample: N samples pushed (event
    /// windows) or `t − t₀ ≥ W` with no overflow inside W (clock windows).
    #[inline]
    pub fn ready(&self, r: WinRef) -> bool {
        self.ready[r.id]
    }

    pub fn overflows(&self) -> u64 {
        self.series.iter().map(|s| each_ring!(&s.rings, |_ev, clk| clk.overflows)).sum()
    }

    /// Number of distinct rings (for tests of the sharing).
    #[cfg(test)]
    pub fn rings(&self) -> usize {
        self.series
            .iter()
            .map(|s| each_ring!(&s.rings, |ev, clk| usize::from(!ev.wins.is_empty()) + usize::from(!clk.wins.is_empty())))
            .sum()
    }
}
