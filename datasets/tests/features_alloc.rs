//! The feature engine allocates nothing per event: a counting global allocator observes the
//! `on_event` loop of the full default set (fitted) over a mixed L2 + trades + L3 stream.

use flowcast_datasets::features::{fit, Engine, FeatureSet};
use flowcast_datasets::{Dataset, DatasetMeta, Event, EventKind, Instrument, Side};
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNT: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNT.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Random book diffs around a drifting mid, trade prints, and L3 adds/cancels/executions.
fn stream(n: usize) -> Dataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let mut evs = Vec::new();
    let mut t = 1_700_000_000_000_000_000i64;
    let mut mid = 10_000i64;
    let mut id = 0u64;
    for _ in 0..n {
        t += rng.random_range(0..50_000_000);
        mid += rng.random_range(-1..=1);
        let start = evs.len();
        match rng.random_range(0..4) {
            0 => {
                let side = if rng.random_bool(0.5) { Side::Bid } else { Side::Ask };
                let px = if side == Side::Bid { mid - 1 } else { mid + 1 };
                evs.push(Event::new(EventKind::Trade, side.opposite(), px, rng.random_range(1..400), t));
            }
            1 => {
                id += 1;
                let side = if rng.random_bool(0.5) { Side::Bid } else { Side::Ask };
                let px = if side == Side::Bid { mid - rng.random_range(1..4) } else { mid + rng.random_range(1..4) };
                let kind =
                    [EventKind::OrderAdd, EventKind::OrderCancel, EventKind::OrderDelete, EventKind::OrderExecute][rng.random_range(0..4)];
                evs.push(Event::new(kind, side, px, rng.random_range(1..50), t).with_order(id / 2 + 1));
            }
            _ => {}
        }
        for k in 1..=10 {
            if rng.random_bool(0.3) {
                evs.push(Event::level(Side::Bid, mid - k, rng.random_range(0..100), t));
                evs.push(Event::level(Side::Ask, mid + k, rng.random_range(0..100), t));
            }
        }
        // Keep both touches present and uncrossed.
        evs.push(Event::level(Side::Bid, mid - 1, rng.random_range(1..100), t));
        evs.push(Event::level(Side::Ask, mid + 1, rng.random_range(1..100), t));
        for k in 0..3 {
            evs.push(Event::level(Side::Bid, mid + k, 0, t));
            evs.push(Event::level(Side::Ask, mid - k, 0, t));
        }
        flowcast_datasets::event::close_batch(&mut evs, start);
    }
    let meta = DatasetMeta {
        store_format: flowcast_datasets::store::STORE_FORMAT_VERSION,
        loader_version: "test".into(),
        source_format: "synthetic".into(),
        instrument: Instrument::new("test", "ALLOC", "0.01", 0).unwrap(),
        levels: 10,
        starts_synced: true,
        source_files: vec![],
        import_report: serde_json::Value::Null,
    };
    Dataset { meta, events: evs }
}

#[test]
fn engine_allocates_nothing_per_event() {
    let ds = stream(20_000);
    let set0 = FeatureSet::default_set();
    let set = fit(&ds, &set0, 0..5_000).expect("fit");
    assert!(set.unfitted().is_empty(), "{:?}", set.unfitted());
    let mut engine = Engine::new(&set, &ds.meta).unwrap();
    let mut book = ds.new_book();
    // Warm the book's own buffers (the book is the data layer's; it reserves capacity up front).
    let mut rows = 0u64;
    let mut finite = 0u64;
    COUNT.with(|c| c.set(true));
    for ev in &ds.events {
        book.apply(ev);
        if engine.on_event(ev, &book) {
            rows += 1;
            finite += engine.values().iter().filter(|v| v.is_finite()).count() as u64;
        }
    }
    COUNT.with(|c| c.set(false));
    let n = ALLOCS.load(Ordering::Relaxed);
    assert!(rows > 19_000 && finite > rows * 40, "rows {rows}, finite values {finite}");
    assert_eq!(n, 0, "{n} allocations in the event loop");
}
