//! Every built-in strategy on synthetic, LOBSTER AMZN and Binance USD-M BTCUSDT data, with the
//! accounting identities a backtest must keep (real data skipped with a message when
//! ../shared/data is absent), and the HTML report rendered in headless Chromium.

use flowcast_backtest::config::BacktestConfig;
use flowcast_backtest::engine::Outcome;
use flowcast_backtest::run::{replay, run_backtest};
use flowcast_backtest::signals::Signals;
use flowcast_datasets::source::DataSpec;
use flowcast_datasets::Dataset;
use std::path::PathBuf;

fn shared() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!("skipping: {} not found (real recordings)", d.display());
        None
    }
}

const STRATEGIES: [&str; 4] = [
    "name = \"ofi_rule\"\nqty = \"QTY\"\nrequire_signal = false\nhold = \"20s\"\nstop_loss_ticks = 3",
    "name = \"imbalance_scalper\"\nqty = \"QTY\"\nlevels = [1]\nweights = [1.0]\nweak = 0.3\nstrong = 0.7",
    "name = \"micro_maker\"\nqty = \"QTY\"",
    "name = \"market_schedule\"\nqty = \"QTY\"\nevery = \"5s\"",
];

fn config(strategy: &str, qty: &str, queue: &str) -> BacktestConfig {
    let t = format!(
        "name = \"t\"\nlatency_sweep = [\"0\", \"1ms\"]\n[data]\ndataset = \"unused\"\n[strategy]\n{}\n[exchange]\nqueue = {queue}\nfill = \"partial\"\n\
         [latency]\nmodel = \"constant\"\nentry = \"100us\"\nresponse = \"100us\"\n[fees]\nmaker_bps = -0.2\ntaker_bps = 2.0\nper_unit = 0.0001\n\
         [risk]\nmax_position = \"{}\"\nflat_before_end = \"10s\"\n[report]\nbar = \"1s\"\nhtml = false\n",
        strategy.replace("QTY", qty),
        qty.parse::<f64>().unwrap() * 3.0
    );
    BacktestConfig::from_toml(&t, "test").unwrap()
}

/// Identities: position = Σ signed fills; net = gross − fees; gross = −Σ signed notional +
/// position × last mid; every fill inside the order's limit; nothing after the data ends.
fn check(o: &Outcome, name: &str) {
    let value = o.tick_value * o.lot_units;
    let pos: i64 = o.fills.iter().map(|f| f.side.sign() * f.qty).sum();
    assert_eq!(pos, o.final_position, "{name}: position");
    let last = o.marks.last().expect("marks");
    assert_eq!(last.position, o.final_position, "{name}");
    let cash: f64 = o.fills.iter().map(|f| -(f.side.sign() * f.qty) as f64 * f.effective_price * value).sum();
    let gross = cash + o.final_position as f64 * last.mid * value;
    assert!((gross - last.gross).abs() < 1e-6 * (1.0 + gross.abs()), "{name}: gross {gross} vs {}", last.gross);
    let fees: f64 = o.fills.iter().map(|f| f.fee).sum();
    assert!((last.gross - fees - last.net).abs() < 1e-6 * (1.0 + last.net.abs()), "{name}: net = gross − fees");
    for f in &o.fills {
        let ord = o.orders.iter().find(|x| x.id == f.order_id);
        if let Some(ord) = ord.filter(|x| x.kind != flowcast_backtest::order::OrderKind::Market) {
            let ok = if f.side == flowcast_datasets::Side::Bid { f.price <= ord.price } else { f.price >= ord.price };
            assert!(ok, "{name}: fill {f:?} outside the limit of {ord:?}");
        }
    }
    for x in &o.orders {
        assert!(x.filled <= x.qty && x.filled >= 0, "{name}: {x:?}");
    }
}

fn run_all(ds: &Dataset, qty: &str, queue: &str, label: &str) {
    for s in STRATEGIES {
        let cfg = config(s, qty, queue);
        let sig = Signals::none();
        let o = replay(&cfg, ds, &sig, &cfg.latency).unwrap_or_else(|e| panic!("{label} {}: {e}", cfg.strategy.name()));
        let name = format!("{label}/{}", cfg.strategy.name());
        check(&o, &name);
        assert!(!o.fills.is_empty(), "{name}: no fills at all");
        assert_eq!(o.final_position, 0, "{name}: flat before the end (risk.flat_before_end)");
        eprintln!("{name}: {} fills, {} trips, net {:.4}", o.fills.len(), o.trips.len(), o.marks.last().unwrap().net);
    }
}

#[test]
fn synthetic_every_strategy() {
    let ds = flowcast_datasets::synth::synth_dataset(5, 20_000, 3).unwrap();
    run_all(&ds, "100", "\"risk_averse\"", "synthetic");
}

#[test]
fn lobster_amzn_every_strategy_exact_fifo() {
    let Some(d) = shared() else { return };
    let l = d.join("lobster");
    let spec = DataSpec {
        synthetic: None,
        dataset: None,
        import: Some(flowcast_datasets::source::ImportSpec {
            format: "lobster".into(),
            inputs: vec![
                l.join("AMZN_2012-06-21_34200000_57600000_message_1.csv"),
                l.join("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv"),
            ],
            levels: 1,
            lenient: false,
            tick_size: None,
            size_scale: None,
            symbol: None,
            date: None,
        }),
    };
    let ds = spec.load(0).unwrap();
    run_all(&ds, "100", "\"exact_fifo\"", "lobster");
}

#[test]
fn binance_usdm_every_strategy() {
    let Some(d) = shared() else { return };
    let spec = DataSpec {
        synthetic: None,
        dataset: None,
        import: Some(flowcast_datasets::source::ImportSpec {
            format: "binance".into(),
            inputs: vec![d.join("binance/usdm-btcusdt_20240808.gz")],
            levels: 10,
            lenient: false,
            tick_size: None,
            size_scale: None,
            symbol: None,
            date: None,
        }),
    };
    let ds = spec.load(0).unwrap();
    run_all(&ds, "0.002", "{ probabilistic = \"log\" }", "binance");
}

/// The report's plots render: headless Chromium loads report.html and the DOM it serialises has
/// every figure with drawn SVG content (paths/rects and axis text).
#[test]
fn report_renders_in_headless_chromium() {
    let Some(chromium) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| std::path::Path::new(p).exists()) else {
        eprintln!("skipping: chromium not installed (Debian package `chromium`; .ci/run installs it)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(STRATEGIES[3], "100", "\"risk_averse\"");
    cfg.report.html = true;
    cfg.runs_dir = tmp.path().to_path_buf();
    let ds = flowcast_datasets::synth::synth_dataset(5, 20_000, 3).unwrap();
    let r = run_backtest(&cfg, &ds, None).unwrap();
    let html = r.run_dir.join("report.html");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", tmp.path().join("chrome").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    for id in ["pnl", "drawdown", "distribution", "holding", "strength", "hour", "latency", "latency_fill"] {
        let start = dom.find(&format!("id=\"plot-{id}\"")).unwrap_or_else(|| panic!("figure plot-{id} missing from the rendered DOM"));
        let fig = &dom[start..start + dom[start..].find("</figure>").unwrap()];
        assert!(fig.contains("<svg"), "plot-{id}: no svg");
        assert!(fig.matches("<text").count() >= 4, "plot-{id}: axis labels missing");
        assert!(
            fig.contains("<polyline") || fig.contains("<rect") || fig.contains("<circle") || fig.contains("<path"),
            "plot-{id}: nothing drawn"
        );
    }
    // The metrics table made it too, with the stable keys.
    for k in ["gross_pnl", "net_pnl", "sharpe", "max_drawdown", "fill_rate", "win_rate", "trades"] {
        assert!(dom.contains(&format!("<th>{k}</th>")), "metric {k} missing");
    }
}

/// No look-ahead: replaying only the first half of the events gives exactly the same orders and
/// fills up to the cut (minus the latency horizon) as replaying everything.
#[test]
fn truncating_the_future_changes_nothing_before_it() {
    let ds = flowcast_datasets::synth::synth_dataset(5, 30_000, 11).unwrap();
    let mut half = ds.clone();
    half.events.truncate(ds.events.len() / 2);
    let cut = half.events.last().unwrap().ts_exchange - 1_000_000; // 1 ms > entry + response latency
    for s in STRATEGIES {
        let mut cfg = config(s, "100", "{ probabilistic = { power = 2.0 } }");
        cfg.risk.flat_before_end = None; // the session end differs by construction
        let sig = Signals::none();
        let full = replay(&cfg, &ds, &sig, &cfg.latency).unwrap();
        let part = replay(&cfg, &half, &sig, &cfg.latency).unwrap();
        let early = |o: &Outcome| {
            o.fills.iter().filter(|f| f.ts_exchange < cut).map(|f| (f.order_id, f.ts_exchange, f.price, f.qty)).collect::<Vec<_>>()
        };
        let (a, b) = (early(&full), early(&part));
        assert!(!a.is_empty(), "{}: no fills before the cut", cfg.strategy.name());
        assert_eq!(a, b, "{}: fills before the cut depend on later events", cfg.strategy.name());
        let sent = |o: &Outcome| {
            let mut v: Vec<_> =
                o.orders.iter().filter(|x| x.ts_sent < cut && x.ts_sent > 0).map(|x| (x.id, x.ts_sent, x.price, x.qty)).collect();
            v.sort();
            v
        };
        assert_eq!(sent(&full), sent(&part), "{}: decisions before the cut depend on later events", cfg.strategy.name());
    }
}
