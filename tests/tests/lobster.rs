//! LOBSTER loader and `data check`: a hand-written level-2 fixture with its exact events, bad
//! input named by file, line and field, and the real AMZN level-1 sample (skipped without data).

use flowcast_datasets::book::TopN;
use flowcast_datasets::loaders::lobster::{self, Exception, Shift, Verdict};
use flowcast_datasets::loaders::{self, Format, ImportOptions};
use flowcast_datasets::store::{read_book, read_dataset, write_dataset};
use flowcast_datasets::{flags, Event, EventKind, Side, NO_TS};
use std::path::{Path, PathBuf};

const MSG: &str = "TEST_2012-06-21_34200000_57600000_message_2.csv";
const BOOK: &str = "TEST_2012-06-21_34200000_57600000_orderbook_2.csv";
/// 2012-06-21 00:00 New York (EDT, UTC−4) in ns since epoch.
const MIDNIGHT: i64 = 1_340_251_200_000_000_000;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/lobster")
}

fn fixture() -> Vec<PathBuf> {
    // Orderbook first: the loader tells the files apart by name, not position.
    vec![fixture_dir().join(BOOK), fixture_dir().join(MSG)]
}

fn read_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(fixture_dir().join(name)).unwrap().lines().map(String::from).collect()
}

/// Write the fixture pair into a temp dir after `edit` changed its lines; returns the inputs.
fn mutated(dir: &Path, edit: impl FnOnce(&mut Vec<String>, &mut Vec<String>)) -> Vec<PathBuf> {
    let (mut m, mut b) = (read_lines(MSG), read_lines(BOOK));
    edit(&mut m, &mut b);
    let (mp, bp) = (dir.join(MSG), dir.join(BOOK));
    std::fs::write(&mp, m.join("\n") + "\n").unwrap();
    std::fs::write(&bp, b.join("\n") + "\n").unwrap();
    vec![mp, bp]
}

fn import_err(inputs: &[PathBuf]) -> String {
    lobster::import(inputs, &ImportOptions::default()).unwrap_err().to_string()
}

fn ts(secs: &str) -> i64 {
    MIDNIGHT + flowcast_datasets::instrument::parse_fixed(secs, 9).unwrap()
}

#[allow(clippy::too_many_arguments)]
fn ev(kind: EventKind, side: Side, price: i64, size: i64, t: &str, seq: u64, order_id: u64, fl: u8) -> Event {
    Event { ts_exchange: ts(t), ts_local: NO_TS, seq, order_id, price, size, kind, side, flags: fl }
}

#[test]
fn fixture_maps_to_exact_events() {
    use EventKind::*;
    use Side::*;
    const BE: u8 = flags::BATCH_END;
    const DW: u8 = flags::DEPTH_WINDOW;
    let imp = lobster::import(&fixture(), &ImportOptions::default()).unwrap();
    assert_eq!(imp.datasets.len(), 1);
    let ds = &imp.datasets[0];
    let lv = |side, price, size, t, seq, fl| ev(if size == 0 { LevelDelete } else { LevelSet }, side, price, size, t, seq, 0, fl);
    let expected = vec![
        // 1: buy 100 @ 100.00 into an empty book.
        ev(OrderAdd, Bid, 10000, 100, "34200.000000001", 1, 1, 0),
        lv(Bid, 10000, 100, "34200.000000001", 1, BE),
        // 2: sell 50 @ 100.05.
        ev(OrderAdd, Ask, 10005, 50, "34200.5", 2, 2, 0),
        lv(Ask, 10005, 50, "34200.5", 2, BE),
        // 3: buy 30 @ 99.99: the second bid level (same timestamp as row 2).
        ev(OrderAdd, Bid, 9999, 30, "34200.5", 3, 3, 0),
        lv(Bid, 9999, 30, "34200.5", 3, BE),
        // 4: buy 20 @ 99.98, beyond the two visible levels: no level event.
        ev(OrderAdd, Bid, 9998, 20, "34201.25", 4, 4, BE),
        // 5: buy 10 @ 100.01, a new best bid: 99.99 leaves the depth window.
        ev(OrderAdd, Bid, 10001, 10, "34202", 5, 5, 0),
        lv(Bid, 9999, 0, "34202", 5, DW),
        lv(Bid, 10001, 10, "34202", 5, BE),
        // 6: partial cancel of 40 of order 1.
        ev(OrderCancel, Bid, 10000, 40, "34203.1", 6, 1, 0),
        lv(Bid, 10000, 60, "34203.1", 6, BE),
        // 7: order 5 executed: 100.01 vanishes and 99.99 enters the window again.
        ev(OrderExecute, Bid, 10001, 10, "34204.123456789", 7, 5, 0),
        lv(Bid, 10001, 0, "34204.123456789", 7, 0),
        lv(Bid, 9999, 30, "34204.123456789", 7, DW | BE),
        // 8: hidden execution at the half-cent 100.025: price 10002 + ½ tick.
        ev(HiddenExecute, Ask, 10002, 25, "34205", 8, 0, flags::HALF_TICK | BE),
        // 9-11: halt, quoting resumes, trading resumes (LOBSTER codes kept as price).
        ev(Halt, Ask, -1, 0, "34206", 9, 0, BE),
        ev(Halt, Ask, 0, 0, "34300", 10, 0, BE),
        ev(Halt, Ask, 1, 0, "34400", 11, 0, BE),
        // 12: delete order 2: the ask side is empty.
        ev(OrderDelete, Ask, 10005, 50, "34401.5", 12, 2, 0),
        lv(Ask, 10005, 0, "34401.5", 12, BE),
        // 13: sell 70 @ 100.03.
        ev(OrderAdd, Ask, 10003, 70, "34402", 13, 6, 0),
        lv(Ask, 10003, 70, "34402", 13, BE),
        // 14: partial execution of order 3.
        ev(OrderExecute, Bid, 9999, 10, "34403", 14, 3, 0),
        lv(Bid, 9999, 20, "34403", 14, BE),
        // 15: sell 5 @ 100.04: second ask level.
        ev(OrderAdd, Ask, 10004, 5, "34404", 15, 7, 0),
        lv(Ask, 10004, 5, "34404", 15, BE),
    ];
    assert_eq!(ds.events.len(), expected.len());
    for (i, (got, want)) in ds.events.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "event {i}");
    }
    let m = &ds.meta;
    assert_eq!((m.instrument.venue.as_str(), m.instrument.symbol.as_str()), ("NASDAQ", "TEST"));
    assert_eq!((m.instrument.tick_size(), m.instrument.size_scale), ("0.01".to_string(), 0));
    assert!(m.starts_synced);
    assert_eq!(m.levels, 10);
    assert_eq!(m.source_files.len(), 2);
    let r = &imp.report;
    assert_eq!(r.get("messages").unwrap(), 15);
    assert_eq!(r.get("events").unwrap(), 27);
    assert_eq!(r.get("levels").unwrap(), 2);
    assert_eq!(r.get("bad_lines").unwrap(), 0);
    assert_eq!(r.get("by_type").unwrap(), &serde_json::json!({"1": 7, "2": 1, "3": 1, "4": 2, "5": 1, "7": 3}));
    assert_eq!(r.get("start").unwrap(), "2012-06-21T13:30:00.000000001Z");
}

#[test]
fn fixture_check_names_every_exception() {
    let r = loaders::check(Format::Lobster, &fixture(), &ImportOptions::default()).unwrap();
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.get("messages").unwrap(), 15);
    assert_eq!(r.get("consistent").unwrap(), 14);
    assert_eq!(r.get("exceptions").unwrap(), &serde_json::json!({"initial_book": 0, "outside_tracked_depth": 1}));
    assert_eq!(r.get("depth_window").unwrap(), &serde_json::json!({"level_entered_depth": 1, "level_left_depth": 1}));
    assert_eq!(r.get("unexplained").unwrap(), 0);
    assert_eq!(r.get("book_rows_checked").unwrap(), 15);
    assert_eq!(r.get("book_rows_equal").unwrap(), 15);
}

#[test]
fn check_flags_a_row_the_message_does_not_explain() {
    let dir = tempfile::tempdir().unwrap();
    // Row 6 cancels 40 but the book shows 100.00 going from 100 to 70.
    let inputs = mutated(dir.path(), |_, b| b[5] = "1000500,50,1000100,10,9999999999,0,1000000,70".into());
    let r = lobster::check(&inputs, &ImportOptions::default()).unwrap();
    assert!(!r.ok);
    assert_eq!(r.get("unexplained").unwrap(), 2, "{}", r.table()); // row 6, and row 7 that follows it
    let first = r.get("first_unexplained").unwrap()[0].as_str().unwrap().to_string();
    assert!(first.starts_with("row 6: type 2 bid 10000x40: expected a size change of -40"), "{first}");
    // The rebuilt book still equals every row: the events follow the book file.
    assert_eq!(r.get("book_rows_equal").unwrap(), 15);
}

#[test]
fn classify_levels_through_the_window() {
    let mut before = TopN::new(2);
    (before.bid_px[0], before.bid_sz[0], before.bid_px[1], before.bid_sz[1]) = (100, 5, 99, 3);
    let mut after = before.clone();
    (after.bid_px[0], after.bid_sz[0], after.bid_px[1], after.bid_sz[1]) = (101, 2, 100, 5);
    let msg = lobster::Message {
        row: 2,
        ts: 0,
        kind: lobster::MsgType::Submit,
        order_id: 9,
        size: 2,
        price: 101,
        half_tick: false,
        side: Side::Bid,
    };
    let row = lobster::Row { msg: &msg, before: &before, after: &after };
    assert_eq!(lobster::classify(&row, false), Verdict::Consistent(Shift::LevelLeftDepth));
    let row = lobster::Row { msg: &msg, before: &after, after: &before };
    assert!(matches!(lobster::classify(&row, false), Verdict::Unexplained(_)));
    let empty = TopN::new(2);
    let hidden = lobster::Message { kind: lobster::MsgType::Hidden, ..msg };
    let row = lobster::Row { msg: &hidden, before: &empty, after: &before };
    assert_eq!(lobster::classify(&row, true), Verdict::Exception(Exception::InitialBook));
}

// ---------------------------------------------------------------------------------------------
// Bad input: every error names the file, the line and the field.

fn assert_names(err: &str, file: &str, line: u64, field: &str) {
    let want = format!("{file}:{line}: {field}: ");
    assert!(err.contains(&want), "expected {want:?} in: {err}");
}

#[test]
fn truncated_line() {
    let dir = tempfile::tempdir().unwrap();
    let e = import_err(&mutated(dir.path(), |m, _| m[2] = "34200.5,1,3,30".into()));
    assert_names(&e, MSG, 3, "price");
    assert!(e.contains("truncated"), "{e}");
    let e = import_err(&mutated(dir.path(), |_, b| b[3] = "1000500,50,1000000,100,9999999999".into()));
    assert_names(&e, BOOK, 4, "ask_size_2");
}

#[test]
fn non_numeric_field() {
    let dir = tempfile::tempdir().unwrap();
    let e = import_err(&mutated(dir.path(), |m, _| m[4] = "34202,1,5,1O,1000100,1".into()));
    assert_names(&e, MSG, 5, "size");
    let e = import_err(&mutated(dir.path(), |m, _| m[4] = "34202.x,1,5,10,1000100,1".into()));
    assert_names(&e, MSG, 5, "time");
    let e = import_err(&mutated(dir.path(), |_, b| b[1] = "1000500,50,abc,100,9999999999,0,-9999999999,0".into()));
    assert_names(&e, BOOK, 2, "bid_price_1");
}

#[test]
fn unknown_message_type() {
    let dir = tempfile::tempdir().unwrap();
    let e = import_err(&mutated(dir.path(), |m, _| m[5] = "34203.1,9,1,40,1000000,1".into()));
    assert_names(&e, MSG, 6, "type");
    assert!(e.contains("unknown message type"), "{e}");
    let e = import_err(&mutated(dir.path(), |m, _| m[5] = "34203.1,2,1,40,1000000,0".into()));
    assert_names(&e, MSG, 6, "direction");
}

#[test]
fn non_monotonic_time() {
    let dir = tempfile::tempdir().unwrap();
    let e = import_err(&mutated(dir.path(), |m, _| m[5] = "34201.9,2,1,40,1000000,1".into()));
    assert_names(&e, MSG, 6, "time");
    assert!(e.contains("earlier"), "{e}");
}

#[test]
fn crossed_row() {
    let dir = tempfile::tempdir().unwrap();
    let e = import_err(&mutated(dir.path(), |_, b| b[4] = "1000500,50,1000500,10,9999999999,0,1000000,100".into()));
    assert_names(&e, BOOK, 5, "bid_price_1");
    assert!(e.contains("crossed"), "{e}");
}

#[test]
fn price_off_the_tick_grid() {
    let dir = tempfile::tempdir().unwrap();
    let e = import_err(&mutated(dir.path(), |m, _| m[4] = "34202,1,5,10,1000150,1".into()));
    assert_names(&e, MSG, 5, "price");
    assert!(e.contains("tick grid"), "{e}");
    // Half a tick is accepted only for hidden executions (midpoint fills); a quarter never.
    let e = import_err(&mutated(dir.path(), |m, _| m[7] = "34205,5,0,25,1000225,-1".into()));
    assert_names(&e, MSG, 8, "price");
    let e = import_err(&mutated(dir.path(), |_, b| b[1] = "1000550,50,1000000,100,9999999999,0,-9999999999,0".into()));
    assert_names(&e, BOOK, 2, "ask_price_1");
    // A finer tick puts it on the grid (import does not compare messages with rows; check does).
    let inputs = mutated(dir.path(), |m, _| m[4] = "34202,1,5,10,1000150,1".into());
    let opts = ImportOptions { tick_size: Some("0.005".into()), ..Default::default() };
    let imp = lobster::import(&inputs, &opts).unwrap();
    assert_eq!(imp.datasets[0].events[0].price, 20000); // 100.00 / 0.005
}

#[test]
fn row_count_mismatch_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let e = import_err(&mutated(dir.path(), |_, b| {
        b.pop();
    }));
    assert!(e.contains(MSG) && e.contains(BOOK) && e.contains("15 rows") && e.contains("14"), "{e}");
    let e = import_err(&mutated(dir.path(), |m, _| {
        m.pop();
        m.pop();
    }));
    assert!(e.contains("13 rows") && e.contains("15"), "{e}");
}

#[test]
fn bad_file_sets_are_refused_clearly() {
    let f = fixture();
    let e = import_err(&f[..1]);
    assert!(e.contains("cannot be timestamped") && e.contains(BOOK), "{e}");
    let e = import_err(&f[1..]);
    assert!(e.contains("orderbook file"), "{e}");
    let e = import_err(&[f[1].clone(), f[1].clone()]);
    assert!(e.contains("2 message and 0 orderbook"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("TEST_2012-06-22_34200000_57600000_orderbook_2.csv");
    std::fs::copy(&f[0], &other).unwrap();
    let e = import_err(&[f[1].clone(), other]);
    assert!(e.contains("not a message/orderbook pair") && e.contains("date"), "{e}");
    let wrong_n = dir.path().join("TEST_2012-06-21_34200000_57600000_orderbook_3.csv");
    let wrong_m = dir.path().join("TEST_2012-06-21_34200000_57600000_message_3.csv");
    std::fs::copy(&f[0], &wrong_n).unwrap();
    std::fs::copy(&f[1], &wrong_m).unwrap();
    let e = import_err(&[wrong_m, wrong_n]);
    assert!(e.contains("says 3 levels") && e.contains("has 2"), "{e}");
    let e = import_err(&[PathBuf::from("a.csv"), PathBuf::from("b.csv")]);
    assert!(e.contains("a.csv: not a LOBSTER file name"), "{e}");
}

#[test]
fn lenient_skips_bad_rows_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = mutated(dir.path(), |m, b| {
        m[2] = "34200.5,1,3,30".into(); // truncated message line
        b[11] = "1000000,60,1000000,60,9999999999,0,999900,30".into(); // crossed row 12
    });
    let strict = import_err(&inputs);
    assert_names(&strict, MSG, 3, "price");
    let opts = ImportOptions { lenient: true, ..Default::default() };
    let imp = lobster::import(&inputs, &opts).unwrap();
    let r = &imp.report;
    assert_eq!(r.get("messages").unwrap(), 13);
    assert_eq!(r.get("bad_lines").unwrap(), 2);
    let first: Vec<String> =
        r.get("first_bad_lines").unwrap().as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_names(&first[0], MSG, 3, "price");
    assert_names(&first[1], BOOK, 12, "bid_price_1");
    // Nothing good is lost: the good rows keep their row numbers, and the book after each good
    // row is still exactly that row (row 4 diffs against row 2, row 13 against row 11).
    let seqs: Vec<u64> = imp.datasets[0].events.iter().filter(|e| e.is_batch_end()).map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15]);
    let c = lobster::check(&inputs, &opts).unwrap();
    assert!(!c.ok, "rejected input fails the check");
    assert_eq!(c.get("book_rows_checked").unwrap(), 13);
    assert_eq!(c.get("book_rows_equal").unwrap(), 13);
}

// ---------------------------------------------------------------------------------------------
// Real data: LOBSTER's AMZN level-1 sample.

fn amzn() -> Option<Vec<PathBuf>> {
    let d = flowcast_tests::shared_data()?.join("lobster");
    Some(vec![d.join("AMZN_2012-06-21_34200000_57600000_message_1.csv"), d.join("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv")])
}

#[test]
fn amzn_imports_checks_and_round_trips() {
    let Some(inputs) = amzn() else { return };
    let opts = ImportOptions::default();
    let imp = lobster::import(&inputs, &opts).unwrap();
    let ds = &imp.datasets[0];
    let r = &imp.report;
    assert_eq!(r.get("messages").unwrap(), 57_515);
    assert_eq!(r.get("levels").unwrap(), 1);
    assert_eq!(r.get("by_type").unwrap(), &serde_json::json!({"1": 27_845, "2": 16, "3": 18_235, "4": 8_974, "5": 2_445, "7": 0}));
    assert_eq!(r.get("start").unwrap(), "2012-06-21T13:30:00.017459617Z");
    assert_eq!(ds.events.iter().filter(|e| e.is_batch_end()).count(), 57_515);
    assert_eq!(r.get("half_tick_executions").unwrap(), 63);

    let c = lobster::check(&inputs, &opts).unwrap();
    println!("{}", c.table());
    assert!(c.ok, "{}", c.table());
    assert_eq!(c.get("unexplained").unwrap(), 0);
    assert!(c.get("consistency_rate").unwrap().as_f64().unwrap() >= 0.999);
    let ex = c.get("exceptions").unwrap().as_object().unwrap();
    let named: u64 = ex.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(c.get("consistent").unwrap().as_u64().unwrap() + named, 57_515, "every exception is named");
    assert_eq!(c.get("book_rows_checked").unwrap(), 57_515);
    assert_eq!(c.get("book_rows_equal").unwrap(), 57_515);

    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), ds).unwrap();
    let back = read_dataset(dir.path()).unwrap();
    assert!(back == *ds, "Parquet round trip differs");
    assert_eq!(read_book(dir.path(), ds.meta.levels).unwrap().len(), 57_515);
}

#[test]
fn aapl_orderbook_alone_cannot_be_timestamped() {
    let Some(d) = flowcast_tests::shared_data() else { return };
    let p = d.join("lobster/AAPL_2012-06-21_34200000_57600000_orderbook_1.csv");
    let e = import_err(&[p]);
    assert!(e.contains("AAPL_2012-06-21_34200000_57600000_orderbook_1.csv") && e.contains("cannot be timestamped"), "{e}");
}
