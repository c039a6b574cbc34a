//! cryptofeed Coinbase level2 and Kraken book loaders: hand-written fixtures with exact expected
//! events and independently computed Kraken checksums, bad-input errors, `--lenient`, and the real
//! recordings in ../shared/data/cryptofeed (skipped when absent).

use flowcast_datasets::book::{BookLayout, OrderBook, TopN, VecBook};
use flowcast_datasets::loaders::{coinbase, cryptofeed, kraken, ImportOptions, Imported};
use flowcast_datasets::store::{read_book, read_dataset, write_dataset, Dataset};
use flowcast_datasets::{flags, Event, EventKind, Report, Side, NO_TS};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/cryptofeed").join(name)
}

fn real(name: &str) -> Option<PathBuf> {
    Some(flowcast_tests::shared_data()?.join("cryptofeed").join(name))
}

fn opts() -> ImportOptions {
    ImportOptions::default()
}

fn num(r: &Report, k: &str) -> u64 {
    r.get(k).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("report key {k}: {:?}", r.get(k)))
}

fn pair_num(r: &Report, group: &str, sym: &str, k: &str) -> u64 {
    r.get(group)
        .and_then(|g| g.get(sym))
        .and_then(|p| p.get(k))
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("report key {group}.{sym}.{k} missing: {}", r.to_json()))
}

fn strs(r: &Report, k: &str) -> Vec<String> {
    r.get(k).and_then(|v| v.as_array()).unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// Write `lines` to a temp file.
fn temp_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn dataset<'a>(imp: &'a Imported, sym: &str) -> &'a Dataset {
    imp.datasets.iter().find(|d| d.meta.instrument.symbol == sym).unwrap_or_else(|| panic!("no dataset {sym}"))
}

// ---------------------------------------------------------------------------------------------
// Kraken checksum by the spec, from the message strings: independent of the loader's integer
// book and formatter, and of crc32fast (bitwise CRC-32/IEEE here).

fn crc32_ieee(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A side of a book held as the venue's strings, keyed by the price's digits (all prices of the
/// fixture pair carry the same decimals, so the digits order like the prices).
type StrSide = BTreeMap<u128, (String, String)>;

fn strip(s: &str) -> String {
    s.replace('.', "").trim_start_matches('0').to_string()
}

fn spec_checksum(asks: &StrSide, bids: &StrSide) -> u32 {
    let mut s = String::new();
    for (p, v) in asks.values().take(10).chain(bids.values().rev().take(10)) {
        s.push_str(&strip(p));
        s.push_str(&strip(v));
    }
    crc32_ieee(s.as_bytes())
}

fn apply_str(side: &mut StrSide, levels: &serde_json::Value) {
    for l in levels.as_array().unwrap() {
        let (p, v) = (l[0].as_str().unwrap(), l[1].as_str().unwrap());
        let k: u128 = p.replace('.', "").parse().unwrap();
        if v.bytes().all(|b| b == b'0' || b == b'.') {
            side.remove(&k);
        } else {
            side.insert(k, (p.to_string(), v.to_string()));
        }
    }
}

fn truncate_str(asks: &mut StrSide, bids: &mut StrSide, depth: usize) {
    while asks.len() > depth {
        asks.pop_last();
    }
    while bids.len() > depth {
        bids.pop_first();
    }
}

/// For every update line of a Kraken recording: (line, "c", checksum by the spec with depth
/// truncation, checksum by the spec without truncation).
fn spec_checksums(path: &Path, depth: usize) -> Vec<(u64, u32, u32, u32)> {
    let text = std::fs::read_to_string(path).unwrap();
    // Per pair: asks, bids (truncated to `depth`), and the same without truncation.
    let mut books: BTreeMap<String, [StrSide; 4]> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some((_, json)) = line.split_once(": ").filter(|_| line.starts_with(|c: char| c.is_ascii_digit())) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let Some(a) = v.as_array() else { continue };
        let [asks, bids, asks_full, bids_full] = books.entry(a[a.len() - 1].as_str().unwrap().to_string()).or_default();
        let mut c = None;
        for d in &a[1..a.len() - 2] {
            if let Some(x) = d.get("as") {
                asks.clear();
                bids.clear();
                apply_str(asks, x);
                apply_str(bids, &d["bs"]);
                (*asks_full, *bids_full) = (asks.clone(), bids.clone());
            }
            for (k, side, full) in [("a", &mut *asks, &mut *asks_full), ("b", &mut *bids, &mut *bids_full)] {
                if let Some(x) = d.get(k) {
                    apply_str(side, x);
                    apply_str(full, x);
                }
            }
            if let Some(x) = d.get("c") {
                c = Some(x.as_str().unwrap().parse::<u32>().unwrap());
            }
        }
        truncate_str(asks, bids, depth);
        if let Some(c) = c {
            out.push((n as u64 + 1, c, spec_checksum(asks, bids), spec_checksum(asks_full, bids_full)));
        }
    }
    out
}

#[test]
fn crc32_reference_value() {
    assert_eq!(crc32_ieee(b"123456789"), 0xCBF4_3926);
}

#[test]
fn kraken_fixture_checksums_match_spec_and_loader() {
    let path = fixture("kraken_book10.txt");
    let spec = spec_checksums(&path, 10);
    assert_eq!(spec.len(), 5);
    for &(line, c, by_spec, _) in &spec {
        assert_eq!(c, by_spec, "fixture line {line}: c disagrees with the spec");
    }
    // Truncation matters for this fixture: without it, the checksums from the first refill
    // message (line 9) on would differ from Kraken's.
    let untruncated_fail: Vec<u64> = spec.iter().filter(|s| s.1 != s.3).map(|s| s.0).collect();
    assert_eq!(untruncated_fail, vec![9, 10, 11]);

    let r = cryptofeed::check_kraken(std::slice::from_ref(&path), &opts()).unwrap();
    assert!(r.ok, "{}", r.to_json());
    assert_eq!(num(&r, "checksums_checked"), 5);
    assert_eq!(num(&r, "checksum_failures"), 0);
    assert_eq!(num(&r, "updates"), 5);
    assert_eq!(num(&r, "depth_drops"), 2);
    assert_eq!(num(&r, "heartbeats"), 2);
    assert_eq!(pair_num(&r, "pairs", "XBT/CHF", "depth"), 10);
    assert_eq!(num(&r, "bad_lines"), 0);
}

#[test]
fn kraken_fixture_events_and_depth_truncation() {
    let imp = cryptofeed::import_kraken(&[fixture("kraken_book10.txt")], &opts()).unwrap();
    assert_eq!(imp.datasets.len(), 1);
    let ds = &imp.datasets[0];
    let inst = &ds.meta.instrument;
    assert_eq!((inst.venue.as_str(), inst.symbol.as_str()), ("kraken", "XBT/CHF"));
    assert_eq!((inst.price_scale, inst.tick, inst.size_scale), (5, 1, 8));
    assert_eq!(ds.meta.source_format, "cryptofeed-kraken");
    assert!(!ds.meta.starts_synced);
    let ev = &ds.events;
    // Snapshot: Snapshot + 10 asks + 10 bids, ts = latest level timestamp, last flagged BATCH_END.
    assert_eq!(ev[0].kind, EventKind::Snapshot);
    assert_eq!(ev[0].ts_exchange, 1_618_678_119_654_312_000);
    assert_eq!(ev[0].ts_local, 1_618_678_133_626_511_000);
    assert!(ev[1..21].iter().all(|e| e.kind == EventKind::LevelSet && e.flags & flags::SNAPSHOT != 0));
    assert_eq!(
        ev[1],
        Event::level(Side::Ask, 5_100_000_000, 50_000_000, ev[0].ts_exchange).with_local(ev[0].ts_local).with_flags(flags::SNAPSHOT)
    );
    assert!(ev[20].is_batch_end() && ev[1..20].iter().all(|e| !e.is_batch_end()));
    // Update A (line 7): the better ask, then the 11th ask leaves the depth-10 window.
    let a = &ev[21..23];
    assert_eq!(a[0], Event::level(Side::Ask, 5_099_995_000, 10_000_000, 1_618_678_134_050_001_000).with_local(1_618_678_134_100_000_000));
    assert_eq!((a[1].kind, a[1].side, a[1].price, a[1].size), (EventKind::LevelDelete, Side::Ask, 5_100_090_000, 0));
    assert_eq!(a[1].flags, flags::DEPTH_WINDOW | flags::BATCH_END);
    // Every DEPTH_WINDOW delete: the worst ask of the snapshot and the worst bid (after line 9).
    let drops: Vec<(Side, i64)> = ev.iter().filter(|e| e.flags & flags::DEPTH_WINDOW != 0).map(|e| (e.side, e.price)).collect();
    assert_eq!(drops, vec![(Side::Ask, 5_100_090_000), (Side::Bid, 5_099_900_000)]);
    // The republished bid ("r") is an ordinary level set.
    assert!(ev.iter().any(|e| e.side == Side::Bid && e.price == 5_099_990_000 && e.size == 125_000_000));
    // Batches: snapshot + 5 updates; the book stays within 10 levels per side.
    assert_eq!(ev.iter().filter(|e| e.is_batch_end()).count(), 6);
    let mut n = 0;
    ds.replay(|_, b| {
        n += 1;
        assert!(b.layout.depth(Side::Ask) <= 10 && b.layout.depth(Side::Bid) <= 10);
        assert!(!b.is_crossed());
    });
    assert_eq!(n, 6);
}

#[test]
fn kraken_corrupted_checksum_gaps_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("kraken_book10.txt")).unwrap();
    assert!(text.contains("\"c\":\"1580324103\""));
    let path = temp_file(dir.path(), "kraken_bad_c.txt", &text.replace("\"c\":\"1580324103\"", "\"c\":\"1580324104\""));
    let r = cryptofeed::check_kraken(std::slice::from_ref(&path), &opts()).unwrap();
    assert!(!r.ok);
    assert_eq!(num(&r, "checksum_failures"), 1);
    assert_eq!(num(&r, "checksums_checked"), 2, "checks stop at the failure until a new snapshot");
    assert_eq!(num(&r, "skipped_unsynced"), 3);
    assert_eq!(pair_num(&r, "pairs", "XBT/CHF", "checksum_failures"), 1);
    let first = strs(&r, "first_checksum_failures");
    // The real checksum of the book after line 8 is the fixture's original value.
    assert_eq!(first, vec![format!("{}:8: XBT/CHF: checksum expected 1580324104, computed 1580324103", path.display())]);

    let imp = cryptofeed::import_kraken(&[path], &opts()).unwrap();
    let ev = &imp.datasets[0].events;
    let gaps: Vec<&Event> = ev.iter().filter(|e| e.kind == EventKind::Gap).collect();
    assert_eq!(gaps.len(), 1);
    assert_eq!((gaps[0].seq, gaps[0].order_id), (1_580_324_104, 1_580_324_103));
    assert!(gaps[0].is_batch_end());
    assert_eq!(ev.last().unwrap().kind, EventKind::Gap, "no events after the gap: never patched");
    // The failing update's level event is there but is not a batch end (the book was not valid).
    let before = ev[ev.len() - 2];
    assert_eq!((before.side, before.price, before.is_batch_end()), (Side::Bid, 5_099_990_000, false));
}

#[test]
fn kraken_bad_fields_name_file_line_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("kraken_book10.txt")).unwrap();
    let cases = [
        ("\"0.01000000\",\"1618678134.350006\"", "\"0.0x000000\",\"1618678134.350006\"", ":10: a[0].volume:"),
        ("\"c\":\"78427804\"", "\"c\":\"-7\"", ":10: c:"),
        ("\"51000.30000\",\"0.01000000\"", "\"51000.300001\",\"0.01000000\"", ":10: a[0].price:"),
        ("\"1618678134.350006\"]", "\"16186781x4.350006\"]", ":10: a[0].timestamp:"),
        ("\"book-10\",\"XBT/CHF\"]\n1618678134.5", "\"book-x\",\"XBT/CHF\"]\n1618678134.5", ":10: channelName:"),
    ];
    for (i, (from, to, want)) in cases.iter().enumerate() {
        assert!(text.contains(from), "case {i}");
        let p = temp_file(dir.path(), &format!("k{i}.txt"), &text.replacen(from, to, 1));
        let e = cryptofeed::check_kraken(std::slice::from_ref(&p), &opts()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}{want}", p.display())), "case {i}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Coinbase fixture.

#[test]
fn coinbase_fixture_exact_events() {
    let path = fixture("coinbase_l2.txt");
    let imp = cryptofeed::import_coinbase(&[path], &opts()).unwrap();
    assert_eq!(imp.datasets.len(), 2);
    let ds = dataset(&imp, "BTC-USD");
    let inst = &ds.meta.instrument;
    assert_eq!((inst.venue.as_str(), inst.price_scale, inst.tick, inst.size_scale), ("coinbase", 2, 1, 8));
    let snap_ts = 1_618_677_817_077_736_000; // no exchange time in snapshots: receive time
    let t1 = 1_618_677_817_075_687_000; // 2021-04-17T16:43:37.075687Z
    let t2 = 1_618_677_817_089_723_000;
    let t3 = 1_618_677_817_240_001_000;
    let s = flags::SNAPSHOT;
    let b = flags::BATCH_END;
    let lvl = |side, px, sz, ts, local| Event::level(side, px, sz, ts).with_local(local);
    let expected = vec![
        Event::new(EventKind::Snapshot, Side::Bid, 0, 0, snap_ts).with_local(snap_ts),
        lvl(Side::Bid, 6_099_999, 25_000_000, snap_ts, snap_ts).with_flags(s),
        lvl(Side::Bid, 6_099_800, 200_000_000, snap_ts, snap_ts).with_flags(s),
        lvl(Side::Ask, 6_100_001, 50_000_000, snap_ts, snap_ts).with_flags(s),
        lvl(Side::Ask, 6_100_050, 120_000_000, snap_ts, snap_ts).with_flags(s | b),
        // last_match: maker sold, so the aggressor bought.
        Event::new(EventKind::Trade, Side::Bid, 6_100_000, 1_000_000, 1_618_677_810_244_075_000)
            .with_order(5)
            .with_seq(100)
            .with_local(1_618_677_817_079_762_000)
            .with_flags(b),
        lvl(Side::Bid, 6_100_000, 10_000_000, t1, 1_618_677_817_118_783_000).with_flags(b),
        Event::new(EventKind::Trade, Side::Bid, 6_100_001, 30_000_000, t2)
            .with_order(7)
            .with_seq(101)
            .with_local(1_618_677_817_129_516_100)
            .with_flags(b),
        lvl(Side::Ask, 6_100_001, 20_000_000, t2, 1_618_677_817_130_100_000),
        lvl(Side::Ask, 6_100_100, 300_000_000, t2, 1_618_677_817_130_100_000).with_flags(b),
        lvl(Side::Bid, 6_099_800, 0, t3, 1_618_677_817_250_100_000).with_flags(b),
    ];
    assert_eq!(ds.events, expected);
    assert_eq!(ds.events[10].kind, EventKind::LevelDelete);

    let eth = dataset(&imp, "ETH-EUR");
    assert_eq!((eth.meta.instrument.price_scale, eth.meta.instrument.size_scale), (1, 3));
    assert_eq!(eth.events.len(), 4);
    assert_eq!(eth.events[3], lvl(Side::Ask, 20_010, 250, 1_618_677_817_076_000_000, 1_618_677_817_119_000_000).with_flags(b));
}

#[test]
fn coinbase_fixture_bbo_check_and_symbol_selection() {
    let path = fixture("coinbase_l2.txt");
    let r = cryptofeed::check_coinbase(std::slice::from_ref(&path), &opts()).unwrap();
    assert!(r.ok, "{}", r.to_json());
    // Two tickers: the subscription-time one (16:43:30, older than the snapshot) disagrees and is
    // stale; the one after the match agrees.
    assert_eq!(num(&r, "bbo_checks"), 2);
    assert_eq!(num(&r, "bbo_stale"), 1);
    assert_eq!(num(&r, "bbo_current_checks"), 1);
    assert_eq!(r.get("bbo_current_agreement").unwrap().as_f64(), Some(1.0));
    assert_eq!(r.get("bbo_agreement").unwrap().as_f64(), Some(0.5));
    let mism = strs(&r, "first_bbo_mismatches");
    assert_eq!(mism.len(), 1);
    assert!(mism[0].starts_with(&format!("{}:6: BTC-USD: ticker 60999.50/61000.01", path.display())), "{}", mism[0]);
    assert!(mism[0].contains("book 60999.99/61000.01") && mism[0].contains("stale"), "{}", mism[0]);
    assert_eq!(num(&r, "updates"), 4);
    assert_eq!(num(&r, "trades"), 2);
    assert_eq!(num(&r, "crossed_batches"), 0);
    assert_eq!(pair_num(&r, "products", "ETH-EUR", "updates"), 1);

    let one = ImportOptions { symbol: Some("ETH-EUR".into()), ..opts() };
    let imp = cryptofeed::import_coinbase(std::slice::from_ref(&path), &one).unwrap();
    assert_eq!(imp.datasets.len(), 1);
    assert_eq!(imp.datasets[0].meta.instrument.symbol, "ETH-EUR");
    let none = ImportOptions { symbol: Some("XRP-USD".into()), ..opts() };
    let e = cryptofeed::import_coinbase(std::slice::from_ref(&path), &none).unwrap_err().to_string();
    assert!(e.contains("XRP-USD") && e.contains("BTC-USD, ETH-EUR"), "{e}");
    // Overrides: a coarser tick on which every price still lies; an off-grid one is rejected.
    let coarse = ImportOptions { symbol: Some("ETH-EUR".into()), tick_size: Some("0.5".into()), ..opts() };
    let imp = cryptofeed::import_coinbase(std::slice::from_ref(&path), &coarse).unwrap();
    assert_eq!(imp.datasets[0].events[1].price, 4000); // 2000.0 / 0.5
    let off = ImportOptions { symbol: Some("BTC-USD".into()), tick_size: Some("0.05".into()), ..opts() };
    let e = cryptofeed::import_coinbase(&[path], &off).unwrap_err().to_string();
    assert!(e.contains(":4: bids[0].price: price 60999.99 is not a multiple of tick 0.05"), "{e}");
}

#[test]
fn coinbase_crossed_batch_is_counted_not_patched() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("coinbase_l2.txt")).unwrap();
    // A bid above the best ask: crossed at its batch end.
    let text = text.replace("[[\"buy\",\"61000.00\",\"0.10000000\"]]", "[[\"buy\",\"61000.40\",\"0.10000000\"]]");
    let p = temp_file(dir.path(), "crossed.txt", &text);
    let r = cryptofeed::check_coinbase(std::slice::from_ref(&p), &opts()).unwrap();
    assert!(!r.ok);
    assert!(num(&r, "crossed_batches") >= 1);
    assert!(strs(&r, "first_crossed_batches")[0].starts_with(&format!("{}:8: BTC-USD:", p.display())));
}

#[test]
fn coinbase_bad_input_names_file_line_field() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("coinbase_l2.txt")).unwrap();
    let upd = "[[\"buy\",\"61000.00\",\"0.10000000\"]],\"time\":\"2021-04-17T16:43:37.075687Z\"}";
    let cases = [
        // Bad JSON (an unterminated object), a line cut inside its JSON, a line cut before it.
        (upd.to_string(), "[[\"buy\",\"61000.00\",\"0.10000000\"]],\"time\":\"2021-04-17T16:43:37.075687Z\"".to_string(), ":8: json:"),
        (upd.to_string(), "[[\"buy\",\"61000.0".to_string(), ":8: json:"),
        ("1618677817.118783: {\"type\":\"l2update\"".to_string(), "1618677817.118783".to_string(), ":8: line:"),
        (upd.to_string(), upd.replace("0.10000000", "abc"), ":8: changes[0].size: not a number"),
        (upd.to_string(), upd.replace("0.10000000", "-1"), ":8: changes[0].size: size -1 is negative"),
        (upd.to_string(), upd.replace("\"buy\"", "\"bid\""), ":8: changes[0].side:"),
        (upd.to_string(), upd.replace("61000.00", "61000.005"), ":8: changes[0].price:"),
        (upd.to_string(), upd.replace("T16:43:37", "T16:63:37"), ":8: time:"),
        ("\"size\":\"0.30000000\"".to_string(), "\"size\":\"0.3x\"".to_string(), ":10: size:"),
        ("\"best_bid\":\"61000.00\"".to_string(), "\"best_bid\":\"\"".to_string(), ":11: best_bid:"),
    ];
    for (i, (from, to, want)) in cases.iter().enumerate() {
        assert!(text.contains(from.as_str()), "case {i}");
        let p = temp_file(dir.path(), &format!("c{i}.txt"), &text.replacen(from.as_str(), to, 1));
        let e = cryptofeed::import_coinbase(std::slice::from_ref(&p), &opts()).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}{want}", p.display())), "case {i}: {e}");
    }
}

#[test]
fn lenient_skips_and_counts_losing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Coinbase: three bad lines inserted among the good ones.
    let good = std::fs::read_to_string(fixture("coinbase_l2.txt")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines.insert(7, "1618677817.1187: {\"type\":\"l2update\",\"product_id\":\"BTC-USD\",\"changes\":[[\"buy\",\"1\",\"x\"]],\"time\":\"2021-04-17T16:43:37.075687Z\"}");
    lines.insert(9, "1618677817.1188: {\"type\":\"l2upd");
    lines.insert(11, "garbage");
    let p = temp_file(dir.path(), "cb_lenient.txt", &(lines.join("\n") + "\n"));
    let strict = cryptofeed::import_coinbase(std::slice::from_ref(&p), &opts()).unwrap_err().to_string();
    assert!(strict.starts_with(&format!("{}:8: changes[0].size:", p.display())), "{strict}");
    let lenient = ImportOptions { lenient: true, ..opts() };
    let imp = cryptofeed::import_coinbase(std::slice::from_ref(&p), &lenient).unwrap();
    let clean = cryptofeed::import_coinbase(&[fixture("coinbase_l2.txt")], &opts()).unwrap();
    assert_eq!(num(&imp.report, "bad_lines"), 3);
    let first = strs(&imp.report, "first_bad_lines");
    assert_eq!(first.len(), 3);
    assert!(first[0].starts_with(&format!("{}:8: changes[0].size", p.display())), "{first:?}");
    assert!(first[1].starts_with(&format!("{}:10: json", p.display())), "{first:?}");
    assert!(first[2].starts_with(&format!("{}:12: line", p.display())), "{first:?}");
    for sym in ["BTC-USD", "ETH-EUR"] {
        assert_eq!(dataset(&imp, sym).events, dataset(&clean, sym).events, "{sym}: nothing good lost");
    }

    // Kraken: a bad status line and a bad volume in a line that is then skipped entirely; the
    // following checksums then fail (the skipped update is missing), which is reported, not hidden.
    let good = std::fs::read_to_string(fixture("kraken_book10.txt")).unwrap();
    let b_vol = "\"50999.90000\",\"1.25000000\",\"1618678134.150002\"";
    assert!(good.contains(b_vol));
    let bad = good.replace("{\"event\":\"heartbeat\"}", "{\"event\":").replace(b_vol, "\"50999.90000\",\"1.2.5\",\"1618678134.150002\"");
    let p = temp_file(dir.path(), "kr_lenient.txt", &bad);
    let r = cryptofeed::check_kraken(&[p], &lenient).unwrap();
    assert_eq!(num(&r, "bad_lines"), 3);
    assert_eq!(num(&r, "checksum_failures"), 1);
    assert_eq!(num(&r, "checksums_checked"), 2);
    assert!(!r.ok);
}

// ---------------------------------------------------------------------------------------------
// Real recordings.

#[test]
fn kraken_real_checksums_all_validate() {
    let Some(path) = real("KRAKEN.ws.50.0") else { return };
    let r = cryptofeed::check_kraken(std::slice::from_ref(&path), &opts()).unwrap();
    eprintln!("{}", r.to_json());
    assert!(r.ok);
    assert_eq!(num(&r, "checksum_failures"), 0);
    assert_eq!(num(&r, "checksums_checked"), 4269);
    assert_eq!(num(&r, "updates"), 4269);
    assert_eq!(num(&r, "updates_without_checksum"), 0);
    assert_eq!(num(&r, "snapshots"), 10);
    assert_eq!(num(&r, "bad_lines"), 0);
    let pairs = r.get("pairs").unwrap().as_object().unwrap();
    assert_eq!(pairs.len(), 10);
    for (pair, s) in pairs {
        assert!(s["checksums_checked"].as_u64().unwrap() > 0, "{pair}");
        assert_eq!(s["checksum_failures"].as_u64(), Some(0), "{pair}");
        assert_eq!(s["depth"].as_u64(), Some(1000), "{pair}");
    }
    assert_eq!(pair_num(&r, "pairs", "XMR/USD", "checksums_checked"), 846);
    assert_eq!(pair_num(&r, "pairs", "GRT/ETH", "checksums_checked"), 20);

    // The loader's checksums agree with the spec computed from the strings, line by line.
    let spec = spec_checksums(&path, 1000);
    assert!(spec.iter().all(|&(l, c, s, _)| c == s || panic!("line {l}")));
}

#[test]
fn coinbase_real_imports_per_product() {
    let Some(path) = real("COINBASE.ws.28.0") else { return };
    let imp = cryptofeed::import_coinbase(&[path], &opts()).unwrap();
    let r = &imp.report;
    assert_eq!(imp.datasets.len(), 10);
    assert_eq!(num(r, "updates"), 9719);
    assert_eq!(num(r, "trades"), 107); // 97 match + 10 last_match
    assert_eq!(num(r, "snapshots"), 10);
    assert_eq!(num(r, "crossed_batches"), 0);
    assert_eq!(num(r, "skipped_unsynced"), 0);
    assert_eq!(num(r, "bad_lines"), 0);
    let want = [("SKL-USD", 2592, 4, 1), ("DASH-BTC", 1925, 8, 8), ("YFI-BTC", 487, 5, 6), ("NU-GBP", 76, 4, 6)];
    for (sym, updates, pd, sd) in want {
        assert_eq!(pair_num(r, "products", sym, "updates"), updates, "{sym}");
        let ds = dataset(&imp, sym);
        assert_eq!((ds.meta.instrument.price_scale, ds.meta.instrument.size_scale), (pd, sd), "{sym}");
    }
    for ds in &imp.datasets {
        let sym = &ds.meta.instrument.symbol;
        let snap = ds.events.iter().position(|e| e.kind == EventKind::Snapshot).unwrap();
        assert!(ds.events[..snap].iter().all(|e| e.kind == EventKind::Trade), "{sym}");
        let batches = ds.events.iter().filter(|e| e.is_batch_end()).count() as u64;
        let (u, t) = (pair_num(r, "products", sym, "updates"), pair_num(r, "products", sym, "trades"));
        assert_eq!(batches, 1 + u + t, "{sym}: one batch per snapshot, update and trade");
        assert!(ds.events.iter().all(|e| e.ts_local != NO_TS));
        let mut rows = 0;
        ds.replay(|_, b| {
            rows += 1;
            assert!(!b.is_crossed(), "{sym}");
        });
        assert_eq!(rows, batches as usize, "{sym}: the book stays synced");
    }
}

#[test]
fn coinbase_real_bbo_agreement() {
    let Some(path) = real("COINBASE.ws.28.0") else { return };
    let r = cryptofeed::check_coinbase(&[path], &opts()).unwrap();
    eprintln!("{}", r.to_json());
    assert!(r.ok);
    assert_eq!(num(&r, "bbo_checks"), 107);
    assert_eq!(num(&r, "bbo_stale"), 10);
    assert_eq!(num(&r, "bbo_current_checks"), 97);
    let current = r.get("bbo_current_agreement").unwrap().as_f64().unwrap();
    assert!(current >= coinbase::BBO_MIN_AGREEMENT, "{current}");
    assert_eq!(current, 1.0);
    // Every disagreement is a stale ticker: the one each product gets on subscribing describes its
    // last trade, older than the snapshot (10 stale, 7 of them disagree; the other 3 products'
    // BBO had not moved since).
    let all = r.get("bbo_agreement").unwrap().as_f64().unwrap();
    assert!((all - 100.0 / 107.0).abs() < 1e-12, "{all}");
    let mism = strs(&r, "first_bbo_mismatches");
    assert_eq!(mism.len(), 7);
    assert!(mism.iter().all(|m| m.contains("stale")), "{mism:?}");
}

#[test]
fn cryptofeed_real_parquet_roundtrip() {
    let (Some(k), Some(c)) = (real("KRAKEN.ws.50.0"), real("COINBASE.ws.28.0")) else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (cryptofeed::import_kraken(&[k], &ImportOptions { symbol: Some("XBT/CHF".into()), ..opts() }).unwrap(), "k"),
        (cryptofeed::import_coinbase(&[c], &ImportOptions { symbol: Some("SKL-USD".into()), ..opts() }).unwrap(), "c"),
    ];
    for (imp, name) in &cases {
        assert_eq!(imp.datasets.len(), 1);
        let ds = &imp.datasets[0];
        let out = dir.path().join(name);
        write_dataset(&out, ds).unwrap();
        let back = read_dataset(&out).unwrap();
        assert_eq!(&back, ds);
        // book.parquet: one row per synced batch end, the last equal to a fresh replay's final book.
        let rows = read_book(&out, ds.meta.levels).unwrap();
        let mut book = OrderBook::<VecBook>::new_unsynced();
        ds.events.iter().for_each(|e| book.apply(e));
        let mut top = TopN::new(ds.meta.levels);
        book.top_n(&mut top);
        assert_eq!(rows.last().unwrap().top, top);
        assert_eq!(rows.len(), ds.events.iter().filter(|e| e.is_batch_end()).count());
        assert_eq!(back.meta.import_report["checksum_failures"].as_u64().unwrap_or(0), 0);
    }
    // The Kraken book read back still satisfies Kraken's checksum at the end of the recording.
    let ds = &cases[0].0.datasets[0];
    let back = read_dataset(&dir.path().join("k")).unwrap();
    let mut book = OrderBook::<VecBook>::new_unsynced();
    back.events.iter().for_each(|e| book.apply(e));
    let wire = kraken::Wire { price_decimals: 5, size_decimals: 8 };
    let last_c = last_checksum(&real("KRAKEN.ws.50.0").unwrap(), "XBT/CHF");
    assert_eq!(kraken::book_checksum(&book, &ds.meta.instrument, wire), last_c);
}

/// The `c` of the last update of `pair` in a Kraken recording.
fn last_checksum(path: &Path, pair: &str) -> u32 {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().rev().find(|l| l.ends_with(&format!(",\"{pair}\"]")) && l.contains("\"c\":")).unwrap();
    let i = line.rfind("\"c\":\"").unwrap() + 5;
    line[i..].split('"').next().unwrap().parse().unwrap()
}

#[test]
fn reconnect_between_recording_parts_is_a_gap() {
    // Two parts of one recording: the second starts with a new connection, so the first part's
    // book is invalid (gap) until the second part's snapshot.
    let k = fixture("kraken_book10.txt");
    let imp = cryptofeed::import_kraken(&[k.clone(), k], &opts()).unwrap();
    let r = &imp.report;
    assert!(r.ok, "{}", r.to_json());
    assert_eq!((num(r, "reconnects"), num(r, "gaps"), num(r, "snapshots")), (1, 1, 2));
    assert_eq!(num(r, "checksums_checked"), 10);
    let ev = &imp.datasets[0].events;
    let gap = ev.iter().position(|e| e.kind == EventKind::Gap).unwrap();
    assert_eq!(ev[gap].ts_exchange, 1_618_678_132_385_815_100); // the connect line's time
    assert_eq!(ev[gap + 1].kind, EventKind::Snapshot);

    let c = fixture("coinbase_l2.txt");
    let r = cryptofeed::check_coinbase(&[c.clone(), c], &opts()).unwrap();
    assert_eq!((num(&r, "reconnects"), num(&r, "gaps"), num(&r, "snapshots")), (1, 2, 4));
}
