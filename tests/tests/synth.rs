//! End to end: synthetic LOBSTER files → LOBSTER loader → canonical events → replayed book.
//! The generator knows every message's effect, so the imported book must equal its orderbook
//! rows exactly and the LOBSTER checker must explain every message.

use flowcast_datasets::synth::{self, generate, SynthConfig};
use flowcast_datasets::{EventKind, TopN, NO_PRICE};

/// LOBSTER price units (USD × 10,000) per unit of the dataset's price ticks.
fn lobster_units_per_tick(inst: &flowcast_datasets::Instrument) -> i64 {
    assert!(inst.price_scale <= 4, "{inst}");
    inst.tick * 10i64.pow(4 - inst.price_scale)
}

#[test]
fn synth_dataset_imports_and_replays_to_the_generators_rows() {
    let (levels, events, seed) = (10, 20_000, 1);
    let ds = synth::synth_dataset(levels, events, seed).expect("synthetic data imports through LOBSTER");
    let gen = generate(&SynthConfig::new(levels, events, seed));
    assert_eq!(ds.meta.levels, levels);
    assert!(ds.meta.starts_synced);
    let l3 = ds
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::OrderAdd | EventKind::OrderCancel | EventKind::OrderDelete | EventKind::OrderExecute | EventKind::HiddenExecute
            )
        })
        .count();
    assert_eq!(l3, gen.messages.len(), "one L3 event per message row");

    // Replay through the canonical book; after each message the top N must equal the row.
    let f = lobster_units_per_tick(&ds.meta.instrument);
    let tick_price = gen.config.tick_price;
    let size_unit = 10i64.pow(ds.meta.instrument.size_scale);
    let mut top = TopN::new(levels);
    let mut k = 0usize;
    let mut first_bad: Option<String> = None;
    ds.replay(|_, book| {
        assert!(!book.is_crossed(), "crossed book after message {}", k + 1);
        book.top_n(&mut top);
        if k < gen.messages.len() && first_bad.is_none() {
            let row = gen.row(k);
            for l in 0..levels {
                let px = |p: i64, scale: i64| if p == NO_PRICE { NO_PRICE } else { p * scale };
                let got = (px(top.ask_px[l], f), top.ask_sz[l], px(top.bid_px[l], f), top.bid_sz[l]);
                let want =
                    (px(row[4 * l], tick_price), row[4 * l + 1] * size_unit, px(row[4 * l + 2], tick_price), row[4 * l + 3] * size_unit);
                if got != want {
                    first_bad = Some(format!("message {} level {}: book {got:?} != row {want:?}", k + 1, l + 1));
                }
            }
        }
        k += 1;
    });
    assert_eq!(first_bad, None);
    assert_eq!(k, gen.messages.len(), "one consistent batch per message");
}

#[test]
fn run_cli_writes_checks_and_reports() {
    for (levels, events, seed) in [(10, 20_000, 1), (1, 5_000, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let r = synth::run_cli(levels, events, seed, dir.path()).expect("flowcast data synth");
        let j: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let check = &j["check"];
        assert_eq!(check["unexplained"], 0, "levels {levels}: {check}");
        assert_eq!(check["consistency_rate"].as_f64(), Some(1.0), "levels {levels}: {check}");
        assert!(r.ok, "levels {levels}: {}", r.table());
        assert_eq!(j["events"], events as u64);
        assert_eq!(j["levels"], levels);
        assert_eq!(j["seed"], seed);
        assert_eq!(check["messages"], j["messages"]);
        let spread = j["mean_spread_ticks"].as_f64().unwrap();
        assert!((1.0..=3.0).contains(&spread), "mean spread {spread}");
        assert!(j["mean_depth_top"].as_f64().unwrap() > 0.0);
        assert!(j["trades"].as_u64().unwrap() > 0);
        for f in j["lobster_files"].as_array().unwrap() {
            assert!(std::path::Path::new(f.as_str().unwrap()).is_file());
        }
        let ds = flowcast_datasets::read_dataset(dir.path()).expect("stored dataset reads back");
        assert_eq!(ds.events.len() as u64, j["dataset_events"].as_u64().unwrap());
        assert!(ds.meta.import_report["synth"]["config"]["seed"] == seed);
    }
}
