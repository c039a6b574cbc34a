//! Binance loaders: documented synchronisation (spot U/u, futures pu), gaps, resync, errors, and
//! the rebuilt book against Binance's own bookTicker stream on real recordings.

use flowcast_datasets::loaders::{binance, cryptofeed_binance, ImportOptions};
use flowcast_datasets::{flags, read_dataset, write_dataset, Dataset, Event, EventKind, Report, Side};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/binance").join(name)
}

fn opts() -> ImportOptions {
    ImportOptions::default()
}

fn lenient() -> ImportOptions {
    ImportOptions { lenient: true, ..ImportOptions::default() }
}

fn u(r: &Report, k: &str) -> u64 {
    r.get(k).and_then(Value::as_u64).unwrap_or_else(|| panic!("{k} missing in {}", r.to_json()))
}

fn b(r: &Report, k: &str) -> bool {
    r.get(k).and_then(Value::as_bool).unwrap_or_else(|| panic!("{k} missing in {}", r.to_json()))
}

fn f(r: &Report, k: &str) -> f64 {
    r.get(k).and_then(Value::as_f64).unwrap_or_else(|| panic!("{k} missing in {}", r.to_json()))
}

fn list<'a>(r: &'a Report, k: &str) -> &'a Vec<Value> {
    r.get(k).and_then(Value::as_array).unwrap_or_else(|| panic!("{k} missing in {}", r.to_json()))
}

fn import_ds(path: &Path, o: &ImportOptions) -> (Dataset, Report) {
    let mut imp = binance::import(&[path.to_path_buf()], o).unwrap();
    assert_eq!(imp.datasets.len(), 1);
    (imp.datasets.remove(0), imp.report)
}

fn import_one(path: &Path, o: &ImportOptions) -> (Vec<Event>, Report) {
    let (ds, r) = import_ds(path, o);
    (ds.events, r)
}

fn kinds(evs: &[Event]) -> Vec<EventKind> {
    evs.iter().map(|e| e.kind).collect()
}

#[test]
fn spot_buffers_drops_and_bridges() {
    let p = fixture("spot-btcusdt_sync.txt");
    let (evs, r) = import_one(&p, &opts());
    assert!(r.ok, "{}", r.to_json());
    assert!(b(&r, "synced"));
    assert_eq!(u(&r, "diffs"), 3);
    // u=100 ≤ lastUpdateId=100: covered by the snapshot.
    assert_eq!(u(&r, "diffs_dropped_before_snapshot"), 1);
    // U=98 ≤ 101 ≤ u=103 bridges, although it arrived before the snapshot.
    assert_eq!(u(&r, "diffs_applied"), 2);
    assert_eq!(u(&r, "trades"), 1);
    use EventKind::*;
    assert_eq!(
        kinds(&evs),
        vec![Trade, Snapshot, LevelSet, LevelSet, LevelSet, LevelSet, LevelSet, LevelSet, LevelDelete, LevelSet, LevelDelete]
    );
    // Trade: m = true ⇒ seller aggressed; ts_exchange = T ms; order_id = trade id.
    assert_eq!((evs[0].side, evs[0].price, evs[0].size, evs[0].order_id), (Side::Ask, 6_100_001, 50_000_000, 7));
    assert_eq!(evs[0].ts_exchange, 1_723_161_250_999_000_000);
    assert!(evs[0].is_batch_end());
    // Snapshot: seq = lastUpdateId; levels flagged SNAPSHOT, the last one BATCH_END.
    assert_eq!(evs[1].seq, 100);
    assert!(evs[2..7].iter().all(|e| e.flags & flags::SNAPSHOT != 0 && e.seq == 100));
    assert_eq!(evs.iter().filter(|e| e.is_batch_end()).count(), 4);
    assert!(evs[6].is_batch_end() && !evs[5].is_batch_end());
    // The buffered diff: seq = u, ts_exchange = E ms, ts_local = its own receive time.
    let d = &evs[7..10];
    assert!(d.iter().all(|e| e.seq == 103 && e.ts_exchange == 1_723_161_251_200_000_000));
    assert!(d.iter().all(|e| e.ts_local == 1_723_161_250_000_004_000));
    assert_eq!((d[1].kind, d[1].side, d[1].price, d[1].size), (LevelDelete, Side::Bid, 6_099_900, 0));
    assert!(d[2].is_batch_end() && !d[1].is_batch_end());

    let c = binance::check(&[p], &opts()).unwrap();
    assert!(c.ok, "{}", c.to_json());
    // bookTickers u=103 (arrived before its diff) and u=105 match; u=104 is inside a diff.
    assert_eq!(u(&c, "book_tickers"), 3);
    assert_eq!(u(&c, "bbo_checks"), 2);
    assert_eq!(f(&c, "bbo_agreement"), 1.0);
}

#[test]
fn futures_bridge_uses_pu_and_keeps_u_equal_last_update_id() {
    let p = fixture("usdm-btcusdt_sync.txt");
    let (evs, r) = import_one(&p, &opts());
    assert!(r.ok, "{}", r.to_json());
    assert_eq!(r.get("market").unwrap(), "usdm");
    // u=99 < 100 dropped; u=100 = lastUpdateId is kept (spot would drop it) and bridges.
    assert_eq!(u(&r, "diffs_dropped_before_snapshot"), 1);
    assert_eq!(u(&r, "diffs_applied"), 3);
    // Futures: tick 0.10 ⇒ 60000.10 = 600001 ticks; sizes in 0.001 lots; ts_exchange = T.
    let snap = &evs[0];
    assert_eq!((snap.kind, snap.seq, snap.ts_exchange), (EventKind::Snapshot, 100, 1_723_161_251_015_000_000));
    assert_eq!((evs[1].price, evs[1].size), (600_001, 1000));
    let bridge = &evs[4];
    assert_eq!((bridge.seq, bridge.ts_exchange, bridge.is_batch_end()), (100, 1_723_161_251_010_000_000, true));
    let trade = evs.last().unwrap();
    assert_eq!((trade.kind, trade.side, trade.order_id, trade.size), (EventKind::Trade, Side::Bid, 5_266_583_935, 6));

    let c = binance::check(&[p], &opts()).unwrap();
    assert!(c.ok, "{}", c.to_json());
    assert_eq!(u(&c, "bbo_checks"), 2);
}

#[test]
fn gap_emits_gap_event_and_resyncs_at_the_next_snapshot() {
    let p = fixture("spot-btcusdt_gap.txt");
    let (ds, r) = import_ds(&p, &opts());
    let evs = &ds.events;
    assert!(b(&r, "synced"));
    assert_eq!(u(&r, "gaps"), 1);
    assert!(list(&r, "sync_failures").is_empty());
    let g = &list(&r, "first_gaps")[0];
    assert_eq!((g["line"].as_u64(), g["expected"].as_u64(), g["received"].as_u64()), (Some(4), Some(103), Some(105)));
    assert_eq!(g["previous_line"].as_u64(), Some(2));
    let gap: Vec<&Event> = evs.iter().filter(|e| e.kind == EventKind::Gap).collect();
    assert_eq!(gap.len(), 1);
    assert_eq!((gap[0].seq, gap[0].order_id), (103, 105));
    // Resync: second snapshot (107) drops the buffered 105..106 and bridges with 107..108.
    assert_eq!(u(&r, "snapshots"), 2);
    assert_eq!(u(&r, "diffs_dropped_before_snapshot"), 1);
    assert_eq!(u(&r, "diffs_applied"), 3);
    // Between the gap and the second snapshot the book is unsynced: no rows there.
    let mut rows = Vec::new();
    ds.replay(|i, book| rows.push((i, book.best_bid(), book.best_ask())));
    let gap_at = evs.iter().position(|e| e.kind == EventKind::Gap).unwrap();
    let snap2 = evs.iter().rposition(|e| e.kind == EventKind::Snapshot).unwrap();
    assert!(rows.iter().all(|(i, _, _)| *i < gap_at || *i > snap2));

    // The check fails on the deliberately wrong bookTicker quantity and says so.
    let c = binance::check(&[p], &opts()).unwrap();
    assert!(!c.ok);
    assert_eq!((u(&c, "bbo_checks"), u(&c, "bbo_mismatches"), u(&c, "bbo_qty_mismatches")), (4, 1, 1));
    let m = &list(&c, "first_bbo_mismatches")[0];
    assert_eq!((m["line"].as_u64(), m["u"].as_u64(), m["kind"].as_str()), (Some(12), Some(110), Some("qty")));
    assert_eq!(m["rebuilt"][1], "1.0");
    assert_eq!(m["book_ticker"][1], "1.5");
}

#[test]
fn no_snapshot_builds_no_book_but_keeps_trades() {
    let p = fixture("spot-btcusdt_nosnap.txt");
    let (evs, r) = import_one(&p, &opts());
    assert!(!r.ok);
    assert!(!b(&r, "synced"));
    let fl = &list(&r, "sync_failures")[0];
    assert_eq!(fl["reason"], "no_snapshot");
    assert_eq!((fl["diff_U"].as_u64(), fl["diff_line"].as_u64(), fl["last_diff_line"].as_u64()), (Some(10), Some(2), Some(3)));
    assert_eq!(u(&r, "diffs_unapplied"), 2);
    use EventKind::*;
    assert_eq!(kinds(&evs), vec![Trade, Gap, Trade]);
    assert_eq!((evs[1].seq, evs[1].order_id), (0, 10));
    let c = binance::check(&[p], &opts()).unwrap();
    assert!(!c.ok);
}

#[test]
fn spot_without_bridging_diff_is_reported_not_invented() {
    let p = fixture("spot-btcusdt_nobridge.txt");
    let (evs, r) = import_one(&p, &opts());
    assert!(!b(&r, "synced"));
    let fl = list(&r, "sync_failures");
    assert_eq!(fl[0]["reason"], "no_bridge");
    assert_eq!(
        (fl[0]["snapshot_last_update_id"].as_u64(), fl[0]["snapshot_line"].as_u64(), fl[0]["diff_U"].as_u64(), fl[0]["diff_line"].as_u64()),
        (Some(100), Some(1), Some(105), Some(2))
    );
    assert!(fl[0]["detail"].as_str().unwrap().contains("updates 101..104 were never received"));
    assert_eq!(fl[1]["reason"], "no_snapshot_after_gap");
    assert_eq!(u(&r, "diffs_unapplied"), 2);
    assert_eq!(u(&r, "diffs_applied"), 0);
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    assert_eq!((gap.seq, gap.order_id), (101, 105));
    assert!(!evs.iter().any(|e| e.kind == EventKind::LevelSet && e.flags & flags::SNAPSHOT == 0));
}

#[test]
fn futures_pu_gap() {
    let (evs, r) = import_one(&fixture("usdm-btcusdt_pugap.txt"), &opts());
    assert!(b(&r, "synced"));
    assert_eq!(u(&r, "gaps"), 1);
    let g = &list(&r, "first_gaps")[0];
    assert_eq!((g["expected"].as_u64(), g["received"].as_u64(), g["diff_pu"].as_u64()), (Some(108), Some(110), Some(110)));
    assert_eq!(list(&r, "sync_failures")[0]["reason"], "no_snapshot_after_gap");
    let gap = evs.iter().find(|e| e.kind == EventKind::Gap).unwrap();
    assert_eq!((gap.seq, gap.order_id), (108, 110));
    assert_eq!(evs.last().unwrap().kind, EventKind::Trade);
}

/// Write `lines` as a spot recording and return the strict import error.
fn strict_error(dir: &Path, lines: &[&str]) -> String {
    let p = dir.join("spot-btcusdt_case.txt");
    std::fs::write(&p, lines.join("\n")).unwrap();
    let e = binance::import(std::slice::from_ref(&p), &opts()).unwrap_err().to_string();
    let prefix = format!("{}:", p.display());
    assert!(e.starts_with(&prefix), "{e}");
    e[prefix.len()..].to_string()
}

#[test]
fn bad_input_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(fixture("spot-btcusdt_sync.txt")).unwrap();
    let g: Vec<&str> = good.lines().collect();
    let cases: [(&str, &str); 9] = [
        (r#"1723161250000009000 {"stream":"btcusdt@trade","data":{"e":"trade",,"t":8}}"#, "9: json: "),
        (r#"1723161250000009000 {"stream":"btcusdt@bookTicker","data":{"u":103,"s":"BTCUSDT","b":"61000.0"#, "9: json: EOF while parsing"),
        (
            r#"1723161250000009000 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"U":106,"u":106,"b":[["1.00","1"],["2.00","1"],["3.00","1"],["6100O.00","1"]],"a":[]}}"#,
            "9: data.b[3].price: not a number",
        ),
        (
            r#"1723161250000009000 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"U":106,"b":[],"a":[]}}"#,
            "9: data.u: missing",
        ),
        (
            r#"1723161250000009000 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"U":"106","u":106,"b":[],"a":[]}}"#,
            "9: data.U: expected a non-negative integer, got a string",
        ),
        (
            r#"1723161250000009000 {"stream":"btcusdt@trade","data":{"e":"trade","t":9,"p":"1.00","q":"x","T":1,"m":true}}"#,
            "9: data.q: not a number",
        ),
        (
            r#"1723161250000009000 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"U":106,"u":106,"b":[],"a":[["1.001","1"]]}}"#,
            "9: data.a[0].price: \"1.001\" has more than 2 decimals (tick 0.01)",
        ),
        (
            r#"1723161250000001500 {"stream":"btcusdt@trade","data":{"e":"trade","t":9,"p":"1.00","q":"1","T":1,"m":true}}"#,
            "9: local_ts: receive time",
        ),
        (r#"17231612500x0009000 {"stream":"btcusdt@trade"}"#, "9: local_ts: expected integer nanoseconds"),
    ];
    for (bad, want) in cases {
        let mut lines = g.clone();
        lines.push(bad);
        let e = strict_error(dir.path(), &lines);
        assert!(e.starts_with(want), "got {e:?}, want {want:?}");
    }
}

#[test]
fn lenient_skips_and_counts_losing_nothing_good() {
    let p = fixture("spot-btcusdt_bad.txt");
    let strict = binance::check(std::slice::from_ref(&p), &opts()).unwrap_err().to_string();
    assert!(strict.ends_with(":3: json: key must be a string at line 1 column 47"), "{strict}");
    let c = binance::check(&[p], &lenient()).unwrap();
    // bad JSON (3), truncated (6), non-numeric trade price (8), non-monotonic time (9), and the
    // last diff's data.b[1].price (12).
    assert_eq!(u(&c, "bad_lines"), 5, "{}", c.to_json());
    let first: Vec<&str> = list(&c, "first_bad_lines").iter().map(|v| v.as_str().unwrap()).collect();
    assert!(first[0].contains(":3: json:"), "{first:?}");
    assert!(first[1].contains(":6: json: EOF"), "{first:?}");
    assert!(first[2].contains(":8: data.p: not a number"), "{first:?}");
    assert!(first[3].contains(":9: local_ts:"), "{first:?}");
    assert!(first[4].contains(":12: data.b[1].price:"), "{first:?}");
    // Everything good is kept: the same sync and checks as the clean fixture.
    assert!(c.ok, "{}", c.to_json());
    assert_eq!((u(&c, "diffs_applied"), u(&c, "bbo_checks"), u(&c, "trades")), (2, 2, 1));
}

#[test]
fn unknown_symbol_scales_are_inferred_and_off_grid_prices_rejected() {
    let p = fixture("spot-foousdt_infer.txt");
    let e = binance::import(std::slice::from_ref(&p), &opts()).unwrap_err().to_string();
    assert!(e.contains(":3: data.b[0].price: \"0.35215000\" has more than 4 decimals (tick 0.0001)"), "{e}");
    // Lenient: the off-grid diff is skipped, so the next one cannot bridge: reported, not patched.
    let (_, r) = import_one(&p, &lenient());
    assert!(b(&r, "instrument_inferred"));
    assert_eq!(r.get("instrument").unwrap()["tick"], 1);
    assert_eq!(r.get("instrument").unwrap()["price_scale"], 4);
    assert_eq!(r.get("instrument").unwrap()["size_scale"], 1);
    // The off-grid diff (line 3) and the bookTicker quoting that level (line 5).
    assert_eq!(u(&r, "bad_lines"), 2);
    assert!(list(&r, "first_bad_lines")[1].as_str().unwrap().contains(":5: data.b: "));
    assert_eq!(list(&r, "sync_failures")[0]["reason"], "no_bridge");
    // With the true tick given, everything converts and the book matches the bookTicker.
    let o = ImportOptions { tick_size: Some("0.00001".into()), ..opts() };
    let c = binance::check(&[p], &o).unwrap();
    assert!(c.ok, "{}", c.to_json());
    assert_eq!(u(&c, "bbo_checks"), 1);
}

#[test]
fn several_files_report_per_file() {
    let files = vec![fixture("spot-btcusdt_sync.txt"), fixture("usdm-btcusdt_sync.txt"), fixture("spot-btcusdt_nosnap.txt")];
    let imp = binance::import(&files, &opts()).unwrap();
    assert_eq!(imp.datasets.len(), 3);
    assert_eq!(imp.datasets[1].meta.instrument.venue, "binance-usdm");
    let c = binance::check(&files, &opts()).unwrap();
    assert!(!c.ok);
    assert!(!b(&c, "synced"));
    let per = list(&c, "files");
    assert_eq!(per.len(), 3);
    assert_eq!(per.iter().map(|p| p["ok"].as_bool().unwrap()).collect::<Vec<_>>(), vec![true, true, false]);
    assert_eq!(u(&c, "bbo_checks"), 4);
    assert_eq!(list(&c, "sync_failures")[0]["source"], "spot-btcusdt_nosnap.txt");
}

#[test]
fn cryptofeed_fixture_merges_rest_snapshot_per_symbol() {
    let files = vec![fixture("cryptofeed/BINANCE.http.0.0"), fixture("cryptofeed/BINANCE.ws.1.0")];
    let c = cryptofeed_binance::check(&files, &opts()).unwrap();
    let per = list(&c, "symbols");
    let aaa = per.iter().find(|p| p["symbol"] == "AAABTC").unwrap();
    assert_eq!(aaa["ok"], true, "{}", c.to_json());
    assert_eq!((aaa["diffs_dropped_before_snapshot"].as_u64(), aaa["diffs_applied"].as_u64()), (Some(1), Some(1)));
    assert_eq!((aaa["bbo_checks"].as_u64(), aaa["trades"].as_u64(), aaa["other_messages"].as_u64()), (Some(1), Some(1), Some(1)));
    assert_eq!(aaa["instrument_inferred"], true);
    // BBBBTC: unknown symbol and no snapshot to infer its scales from.
    let bbb = per.iter().find(|p| p["symbol"] == "BBBBTC").unwrap();
    assert_eq!(bbb["sync_failures"][0]["reason"], "unknown_instrument");
    assert!(!c.ok);
    // --symbol selects one; the aggTrade id is the trade's order_id, aggressor = buyer (m=false).
    let o = ImportOptions { symbol: Some("aaabtc".into()), ..opts() };
    let imp = cryptofeed_binance::import(&files, &o).unwrap();
    assert!(imp.report.ok, "{}", imp.report.to_json());
    assert_eq!(imp.datasets.len(), 1);
    let evs = &imp.datasets[0].events;
    assert_eq!(evs[0].kind, EventKind::Snapshot);
    assert_eq!(evs[0].ts_local, 1_633_998_512_500_000_000);
    let t = evs.iter().find(|e| e.kind == EventKind::Trade).unwrap();
    assert_eq!((t.order_id, t.side, t.price, t.size), (77, Side::Bid, 1010, 2));
    // With explicit scales BBBBTC converts, and is reported as having no snapshot.
    let o = ImportOptions { symbol: Some("BBBBTC".into()), tick_size: Some("0.00000001".into()), size_scale: Some(8), ..opts() };
    let r = cryptofeed_binance::check(&files, &o).unwrap();
    assert_eq!(list(&r, "sync_failures")[0]["reason"], "no_snapshot");
}

// ------------------------------------------------------------------------------------------
// Real recordings (skip when ../shared/data is absent)
// ------------------------------------------------------------------------------------------

/// (file, bookTicker checks, diffs applied, diffs dropped) of an independent rebuild (Python,
/// `decimal`, same documented rules): all four bridge their snapshot and never gap.
const RECORDINGS: [(&str, u64, u64, u64); 4] = [
    ("spot-btcusdt_20240808.gz", 564, 3449, 2),
    ("spot-ethusdt_20240808.gz", 577, 3432, 2),
    ("usdm-btcusdt_20240808.gz", 629, 6547, 4),
    ("usdm-ethusdt_20240808.gz", 551, 6581, 5),
];

#[test]
fn real_recordings_sync_and_match_book_ticker() {
    let Some(data) = flowcast_tests::shared_data() else { return };
    for (name, checks, applied, dropped) in RECORDINGS {
        let c = binance::check(&[data.join("binance").join(name)], &opts()).unwrap();
        assert!(c.ok, "{name}: {}", c.table());
        assert!(b(&c, "synced"), "{name}");
        assert_eq!(u(&c, "gaps"), 0, "{name}");
        assert!(list(&c, "sync_failures").is_empty(), "{name}");
        assert_eq!(u(&c, "bad_lines"), 0, "{name}");
        assert_eq!(u(&c, "crossed_batches"), 0, "{name}");
        assert_eq!(u(&c, "snapshots"), 1, "{name}");
        assert_eq!(
            (u(&c, "bbo_checks"), u(&c, "diffs_applied"), u(&c, "diffs_dropped_before_snapshot")),
            (checks, applied, dropped),
            "{name}"
        );
        assert_eq!(f(&c, "bbo_agreement"), 1.0, "{name}: {}", c.table());
    }
}

#[test]
fn real_recording_import_roundtrips_through_the_store() {
    let Some(data) = flowcast_tests::shared_data() else { return };
    let imp = binance::import(&[data.join("binance/spot-ethusdt_20240808.gz")], &opts()).unwrap();
    let ds = &imp.datasets[0];
    assert_eq!(ds.meta.instrument.symbol, "ETHUSDT");
    assert_eq!(ds.meta.source_format, "binance");
    assert!(!ds.meta.starts_synced);
    assert_eq!(ds.events.iter().filter(|e| e.kind == EventKind::Trade).count(), 6106);
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path(), ds).unwrap();
    let back = read_dataset(dir.path()).unwrap();
    assert_eq!(back.events, ds.events);
    assert_eq!(back.meta.import_report["synced"], true);
}

#[test]
fn real_cryptofeed_pair_per_symbol() {
    let Some(data) = flowcast_tests::shared_data() else { return };
    let files = vec![data.join("cryptofeed/BINANCE.http.0.0"), data.join("cryptofeed/BINANCE.ws.1.0")];
    let c = cryptofeed_binance::check(&files, &opts()).unwrap();
    let per = list(&c, "symbols");
    assert_eq!(per.len(), 4, "{}", c.table());
    // (symbol, bookTicker checks, diffs applied, diffs dropped): all four bridge their snapshot.
    for (sym, checks, applied, dropped) in [("NKNUSDT", 19, 149, 1), ("BLZETH", 1, 9, 1), ("LRCBTC", 6, 13, 2), ("RUNEEUR", 0, 1, 1)] {
        let p = per.iter().find(|p| p["symbol"] == sym).unwrap_or_else(|| panic!("{sym}"));
        assert_eq!(p["synced"], true, "{sym}: {p}");
        assert_eq!(p["gaps"], 0, "{sym}");
        assert_eq!(p["instrument_inferred"], true, "{sym}");
        assert_eq!(
            (p["bbo_checks"].as_u64(), p["diffs_applied"].as_u64(), p["diffs_dropped_before_snapshot"].as_u64()),
            (Some(checks), Some(applied), Some(dropped)),
            "{sym}"
        );
        // RUNEEUR has no bookTicker at an applied id: nothing to verify, so not ok.
        assert_eq!(p["ok"], checks > 0, "{sym}");
        if checks > 0 {
            assert_eq!(p["bbo_agreement"], 1.0, "{sym}");
        }
    }
    assert!(!c.ok);
    let o = ImportOptions { symbol: Some("NKNUSDT".into()), ..opts() };
    let one = cryptofeed_binance::check(&files, &o).unwrap();
    assert!(one.ok, "{}", one.table());
}

/// Parse rate on the largest recording (run with `--release -- --ignored`).
#[test]
#[ignore]
fn speed_largest_recording() {
    let Some(data) = flowcast_tests::shared_data() else { return };
    let p = data.join("binance/usdm-btcusdt_20240808.gz");
    let t = std::time::Instant::now();
    let imp = binance::import(&[p], &opts()).unwrap();
    let s = t.elapsed().as_secs_f64();
    let lines = u(&imp.report, "lines");
    println!("{lines} lines, {} events in {s:.3} s: {:.0} lines/s", imp.datasets[0].events.len(), lines as f64 / s);
}
