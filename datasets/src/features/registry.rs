//! The feature registry: every feature kind with its group, parameters, defaults, warm-up,
//! one-line definition and reference. `docs/features.md` has the formulas; a test keeps the two
//! in step.

use super::spec::FeatureSpec;
use crate::time::{format_duration, parse_duration};

/// Default sizing rate of clock-window rings (samples per second); see docs/features.md.
pub const DEFAULT_MAX_RATE_HZ: f64 = 2000.0;

/// One registry entry.
pub struct Kind {
    pub name: &'static str,
    pub group: &'static str,
    /// Parameters the kind accepts (FeatureSpec field names).
    pub params: &'static [&'static str],
    /// Fill unset parameters with their defaults.
    pub defaults: fn(&mut FeatureSpec),
    /// Only a clock `window` makes sense (rates per second).
    pub clock_only: bool,
    /// Needs an L3 (order-by-order) source; NaN on L2-only data.
    pub l3: bool,
    pub definition: &'static str,
    pub reference: &'static str,
}

fn span(s: &mut FeatureSpec, events: usize) {
    if s.window.is_none() && s.window_events.is_none() {
        s.window_events = Some(events);
    }
    if s.window.is_some() && s.max_rate_hz.is_none() {
        s.max_rate_hz = Some(DEFAULT_MAX_RATE_HZ);
    }
}

const CKS: &str = "Cont, Kukanov & Stoikov (2014), The price impact of order book events, J. Financial Econometrics 12(1), 47-88";
const XGH: &str =
    "Xu, Gould & Howison (2019), Multi-level order-flow imbalance in a limit order book, Market Microstructure and Liquidity 4(3-4)";
const CCZ: &str =
    "Cont, Cucuringu & Zhang (2023), Cross-impact of order flow imbalance in equity markets, Quantitative Finance 23(10), 1373-1393";
const STOIKOV: &str =
    "Stoikov (2018), The micro-price: a high-frequency estimator of future prices, Quantitative Finance 18(12), 1959-1966";
const GB: &str = "Gould & Bonart (2016), Queue imbalance as a one-tick-ahead price predictor in a limit order book, Market Microstructure and Liquidity 2(2)";
const CHW: &str = "Cao, Hansch & Wang (2009), The information content of an open limit-order book, J. Futures Markets 29(1), 16-41";
const NS: &str =
    "Naes & Skjeltorp (2006), Order book characteristics and the volume-volatility relation, J. Financial Markets 9(4), 408-432";
const LARGE: &str = "Large (2007), Measuring the resiliency of an electronic limit order book, J. Financial Markets 10(1), 1-25";
const LR: &str = "Lee & Ready (1991), Inferring trade direction from intraday data, J. Finance 46(2), 733-746";
const CRS: &str =
    "Chordia, Roll & Subrahmanyam (2002), Order imbalance, liquidity, and market returns, J. Financial Economics 65(1), 111-130";
const ER: &str = "Engle & Russell (1998), Autoregressive conditional duration, Econometrica 66(5), 1127-1162";
const ELO: &str = "Easley, Lopez de Prado & O'Hara (2012), Flow toxicity and liquidity in a high-frequency world, Review of Financial Studies 25(5), 1457-1493";
const KYLE: &str = "Kyle (1985), Continuous auctions and insider trading, Econometrica 53(6), 1315-1335; rolling OLS as in Hasbrouck (2009), J. Finance 64(3)";
const ABDL: &str =
    "Andersen, Bollerslev, Diebold & Labys (2003), Modeling and forecasting realized volatility, Econometrica 71(2), 579-625";
const PARK: &str = "Parkinson (1980), The extreme value method for estimating the variance of the rate of return, J. Business 53(1), 61-65";
const CST: &str = "Cont, Stoikov & Talreja (2010), A stochastic model for order book dynamics, Operations Research 58(3), 549-563";
const DE: &str = "Dufour & Engle (2000), Time and the price impact of a trade, J. Finance 55(6), 2467-2498";
const AP: &str = "Admati & Pfleiderer (1988), A theory of intraday patterns, Review of Financial Studies 1(1), 3-40";
const BLN: &str = "Berkowitz, Logue & Noser (1988), The total cost of transactions on the NYSE, J. Finance 43(1), 97-112";

/// The registry, in documentation order.
pub static KINDS: &[Kind] = &[
    // --- order flow imbalance
    Kind {
        name: "ofi",
        group: "ofi",
        params: &["window_events", "window", "max_rate_hz"],
        defaults: |s| span(s, 1),
        clock_only: false,
        l3: false,
        definition: "best-level order flow imbalance e_n summed over the window (lots)",
        reference: CKS,
    },
    Kind {
        name: "mlofi",
        group: "ofi",
        params: &["level", "window_events", "window", "max_rate_hz"],
        defaults: |s| {
            s.level.get_or_insert(1);
            span(s, 100)
        },
        clock_only: false,
        l3: false,
        definition: "order flow imbalance at book level m (CKS formula applied to level m), summed over the window (lots)",
        reference: XGH,
    },
    Kind {
        name: "mlofi_norm",
        group: "ofi",
        params: &["level", "levels", "window_events", "window", "max_rate_hz"],
        defaults: |s| {
            s.level.get_or_insert(1);
            s.levels.get_or_insert(5);
            span(s, 100)
        },
        clock_only: false,
        l3: false,
        definition: "level-m OFI over the window divided by the window's mean depth per level over levels 1..M",
        reference: CCZ,
    },
    Kind {
        name: "ofi_integrated",
        group: "ofi",
        params: &["levels", "window_events", "window", "max_rate_hz"],
        defaults: |s| {
            s.levels.get_or_insert(5);
            span(s, 100)
        },
        clock_only: false,
        l3: false,
        definition: "normalised multi-level OFI projected on its first principal component (fitted on training rows, L1-normalised)",
        reference: CCZ,
    },
    // --- book imbalance
    Kind {
        name: "imbalance",
        group: "imbalance",
        params: &["levels"],
        defaults: |s| {
            s.levels.get_or_insert(1);
        },
        clock_only: false,
        l3: false,
        definition: "volume imbalance (Qb - Qa)/(Qb + Qa) over the top L levels",
        reference: GB,
    },
    Kind {
        name: "imbalance_price_weighted",
        group: "imbalance",
        params: &["levels"],
        defaults: |s| {
            s.levels.get_or_insert(5);
        },
        clock_only: false,
        l3: false,
        definition: "imbalance of notional (price x size) over the top L levels",
        reference: CHW,
    },
    Kind {
        name: "imbalance_inv_distance",
        group: "imbalance",
        params: &["levels"],
        defaults: |s| {
            s.levels.get_or_insert(5);
        },
        clock_only: false,
        l3: false,
        definition: "imbalance with each level weighted by 1/(distance from mid in ticks) over the top L levels",
        reference: CHW,
    },
    Kind {
        name: "order_count_imbalance",
        group: "imbalance",
        params: &["levels"],
        defaults: |s| {
            s.levels.get_or_insert(1);
        },
        clock_only: false,
        l3: true,
        definition: "(Nb - Na)/(Nb + Na), N = number of resting orders in the top L levels, from the L3 stream",
        reference: GB,
    },
    Kind {
        name: "imbalance_ewma",
        group: "imbalance",
        params: &["levels", "halflife_events"],
        defaults: |s| {
            s.levels.get_or_insert(1);
            s.halflife_events.get_or_insert(10.0);
        },
        clock_only: false,
        l3: false,
        definition: "exponentially weighted moving average of the top-L imbalance (half-life in samples)",
        reference: GB,
    },
    Kind {
        name: "imbalance_zscore",
        group: "imbalance",
        params: &["levels", "window_events", "window", "max_rate_hz"],
        defaults: |s| {
            s.levels.get_or_insert(1);
            span(s, 100)
        },
        clock_only: false,
        l3: false,
        definition: "rolling z-score of the top-L imbalance over the window",
        reference: GB,
    },
    // --- prices
    Kind {
        name: "mid",
        group: "price",
        params: &[],
        defaults: |_| {},
        clock_only: false,
        l3: false,
        definition: "mid price (Pb + Pa)/2 in ticks",
        reference: STOIKOV,
    },
    Kind {
        name: "weighted_mid",
        group: "price",
        params: &[],
        defaults: |_| {},
        clock_only: false,
        l3: false,
        definition: "weighted mid I*Pa + (1 - I)*Pb, I = Qb/(Qb + Qa) at the touch (ticks)",
        reference: STOIKOV,
    },
    Kind {
        name: "weighted_mid_offset",
        group: "price",
        params: &[],
        defaults: |_| {},
        clock_only: false,
        l3: false,
        definition: "weighted mid minus mid (ticks) = spread*(I - 1/2), the first-order micro-price",
        reference: STOIKOV,
    },
    Kind {
        name: "microprice",
        group: "price",
        params: &["imbalance_buckets", "spread_buckets"],
        defaults: |s| {
            s.imbalance_buckets.get_or_insert(10);
            s.spread_buckets.get_or_insert(2);
        },
        clock_only: false,
        l3: false,
        definition: "Stoikov micro-price mid + g*(spread, imbalance bucket), g* estimated on training quotes (ticks)",
        reference: STOIKOV,
    },
    Kind {
        name: "microprice_offset",
        group: "price",
        params: &["imbalance_buckets", "spread_buckets"],
        defaults: |s| {
            s.imbalance_buckets.get_or_insert(10);
            s.spread_buckets.get_or_insert(2);
        },
        clock_only: false,
        l3: false,
        definition: "micro-price minus mid, g*(spread, imbalance bucket) (ticks)",
        reference: STOIKOV,
    },
    Kind {
        name: "spread_ticks",
        group: "price",
        params: &[],
        defaults: |_| {},
        clock_only: false,
        l3: false,
        definition: "bid-ask spread Pa - Pb in ticks",
        reference: STOIKOV,
    },
    Kind {
        name: "spread_bps",
        group: "price",
        params: &[],
        defaults: |_| {},
        clock_only: false,
        l3: false,
        definition: "relative spread (Pa - Pb)/mid in basis points",
        reference: STOIKOV,
    },
    Kind {
        name: "spread_zscore",
        group: "price",
        params: &["window_events", "window", "max_rate_hz"],
        defaults: |s| span(s, 100),
        clock_only: false,
        l3: false,
        definition: "rolling z-score of the spread in ticks over the window",
        reference: STOIKOV,
    },
    Kind {
        name: "vwap_distance",
        group: "price",
        params: &["window_events", "window", "max_rate_hz"],
        defaults: |s| span(s, 100),
        clock_only: false,
        l3: false,
        definition: "mid minus the volume-weighted average trade price over the window (ticks)",
        reference: BLN,
    },
    // --- depth and shape
    Kind {
        name: "depth_total",
        group: "depth",
        params: &["levels"],
        defaults: |s| {
            s.levels.get_or_insert(5);
        },
        clock_only: false,
        l3: false,
        definition: "total resting size Qb + Qa over the top L levels (lots)",
        reference: NS,
    },
    Kind {
        name: "depth",
        group: "depth",
        params: &["side", "levels"],
        defaults: |s| {
            s.side.get_or_insert_with(|| "bid".into());
            s.levels.get_or_insert(5);
        },
        clock_only: false,
        l3: false,
        definition: "cumulative resting size of one side over the top L levels (lots)",
        reference: NS,
    },
    Kind {
        name: "depth_ratio",
        group: "depth",
        params: &["levels"],
        defaults: |s| {
            s.levels.get_or_insert(5);
        },
        clock_only: false,
        l3: false,
        definition: "bid depth / ask depth over the top L levels",
        reference: NS,
    },
    Kind {
        name: "slope_impact",
        group: "depth",
        params: &["side", "levels"],
        defaults: |s| {
            s.side.get_or_insert_with(|| "bid".into());
            s.levels.get_or_insert(5);
        },
        clock_only: false,
        l3: false,
        definition: "price impact per unit size: |P_L - mid| / cumulative size to level L (ticks per lot)",
        reference: NS,
    },
    Kind {
        name: "slope_log",
        group: "depth",
        params: &["side", "levels"],
        defaults: |s| {
            s.side.get_or_insert_with(|| "bid".into());
            s.levels.get_or_insert(5);
        },
        clock_only: false,
        l3: false,
        definition: "OLS slope of ln(cumulative size to level i) on distance from mid (ticks), i = 1..L",
        reference: NS,
    },
    Kind {
        name: "resilience",
        group: "depth",
        params: &["levels", "threshold", "trades"],
        defaults: |s| {
            s.levels.get_or_insert(5);
            s.threshold.get_or_insert(4.0);
            s.trades.get_or_insert(100);
        },
        clock_only: false,
        l3: false,
        definition: "share of the depth removed by the last large trade that has been replenished since",
        reference: LARGE,
    },
    // --- trade flow
    Kind {
        name: "buy_volume",
        group: "trade_flow",
        params: &["classification", "window_events", "window", "max_rate_hz"],
        defaults: |s| {
            s.classification.get_or_insert_with(|| "aggressor".into());
            span(s, 100)
        },
        clock_only: false,
        l3: false,
        definition: "buyer-initiated traded size over the window (lots)",
        reference: LR,
    },
    Kind {
        name: "sell_volume",
        group: "trade_flow",
        params: &["classification", "window_events", "window", "max_rate_hz"],
        defaults: |s| {
            s.classification.get_or_insert_with(|| "aggressor".into());
            span(s, 100)
        },
        clock_only: false,
        l3: false,
        definition: "seller-initiated traded size over the window (lots)",
        reference: LR,
    },
    Kind {
        name: "trade_imbalance",
        group: "trade_flow",
        params: &["classification", "window_events", "window", "max_rate_hz"],
        defaults: |s| {
            s.classification.get_or_insert_with(|| "aggressor".into());
            span(s, 100)
        },
        clock_only: false,
        l3: false,
        definition: "(buy - sell)/(buy + sell) traded size over the window; 0 when nothing traded",
        reference: CRS,
    },
    Kind {
        name: "large_trade",
        group: "trade_flow",
        params: &["threshold", "trades"],
        defaults: |s| {
            s.threshold.get_or_insert(4.0);
            s.trades.get_or_insert(100);
        },
        clock_only: false,
        l3: false,
        definition: "1 if a trade in this message exceeds threshold x the mean size of the previous N trades, else 0",
        reference: CRS,
    },
    Kind {
        name: "trade_intensity",
        group: "trade_flow",
        params: &["window", "max_rate_hz"],
        defaults: |s| {
            s.window.get_or_insert_with(|| "10s".into());
            span(s, 1)
        },
        clock_only: true,
        l3: false,
        definition: "number of trades per second over the clock window",
        reference: ER,
    },
    // --- toxicity and impact
    Kind {
        name: "vpin",
        group: "toxicity",
        params: &["classification", "bucket_volume", "bucket_seconds", "window_buckets", "bar", "sigma_bars"],
        defaults: |s| {
            let c = s.classification.get_or_insert_with(|| "aggressor".into()).clone();
            if s.bucket_volume.is_none() {
                s.bucket_seconds.get_or_insert(5.0);
            }
            s.window_buckets.get_or_insert(50);
            if c == "bvc" {
                s.bar.get_or_insert_with(|| "1s".into());
                s.sigma_bars.get_or_insert(100);
            }
        },
        clock_only: false,
        l3: false,
        definition: "volume-synchronised probability of informed trading: sum |Vs - Vb| / (n V) over the last n volume buckets",
        reference: ELO,
    },
    Kind {
        name: "kyle_lambda",
        group: "toxicity",
        params: &["bar", "window_bars"],
        defaults: |s| {
            s.bar.get_or_insert_with(|| "1s".into());
            s.window_bars.get_or_insert(300);
        },
        clock_only: false,
        l3: false,
        definition: "OLS slope of mid change (ticks) on signed traded size (lots) over the last n time bars",
        reference: KYLE,
    },
    // --- volatility and momentum
    Kind {
        name: "log_return",
        group: "volatility",
        params: &["window_events", "window", "max_rate_hz"],
        defaults: |s| span(s, 100),
        clock_only: false,
        l3: false,
        definition: "ln(mid_t / mid one window ago)",
        reference: ABDL,
    },
    Kind {
        name: "realized_vol",
        group: "volatility",
        params: &["window_events", "window", "max_rate_hz"],
        defaults: |s| span(s, 100),
        clock_only: false,
        l3: false,
        definition: "sqrt of the sum of squared sample-to-sample log mid returns over the window",
        reference: ABDL,
    },
    Kind {
        name: "parkinson",
        group: "volatility",
        params: &["window_events", "window", "max_rate_hz"],
        defaults: |s| span(s, 100),
        clock_only: false,
        l3: false,
        definition: "Parkinson high-low volatility sqrt(ln(H/L)^2 / (4 ln 2)) of the mid over the window",
        reference: PARK,
    },
    // --- queue dynamics (L3)
    Kind {
        name: "queue_arrival_rate",
        group: "queue",
        params: &["side", "window", "max_rate_hz"],
        defaults: |s| {
            s.side.get_or_insert_with(|| "bid".into());
            s.window.get_or_insert_with(|| "10s".into());
            span(s, 1)
        },
        clock_only: true,
        l3: true,
        definition: "limit orders added at or inside the touch per second",
        reference: CST,
    },
    Kind {
        name: "queue_cancel_rate",
        group: "queue",
        params: &["side", "window", "max_rate_hz"],
        defaults: |s| {
            s.side.get_or_insert_with(|| "bid".into());
            s.window.get_or_insert_with(|| "10s".into());
            span(s, 1)
        },
        clock_only: true,
        l3: true,
        definition: "cancellations (partial or full) at the touch per second",
        reference: CST,
    },
    Kind {
        name: "queue_execution_rate",
        group: "queue",
        params: &["side", "window", "max_rate_hz"],
        defaults: |s| {
            s.side.get_or_insert_with(|| "bid".into());
            s.window.get_or_insert_with(|| "10s".into());
            span(s, 1)
        },
        clock_only: true,
        l3: true,
        definition: "executions of visible orders resting at the touch per second",
        reference: CST,
    },
    Kind {
        name: "queue_cancel_ratio",
        group: "queue",
        params: &["side", "window_events", "window", "max_rate_hz"],
        defaults: |s| {
            s.side.get_or_insert_with(|| "bid".into());
            if s.window_events.is_none() {
                s.window.get_or_insert_with(|| "10s".into());
            }
            span(s, 1)
        },
        clock_only: false,
        l3: true,
        definition: "cancellations / arrivals at the touch over the window",
        reference: CST,
    },
    // --- time
    Kind {
        name: "time_of_day",
        group: "time",
        params: &[],
        defaults: |_| {},
        clock_only: false,
        l3: false,
        definition: "fraction of the day elapsed in the venue's local time (New York for NASDAQ, else UTC)",
        reference: AP,
    },
    Kind {
        name: "time_since_trade",
        group: "time",
        params: &[],
        defaults: |_| {},
        clock_only: false,
        l3: false,
        definition: "seconds since the last trade",
        reference: DE,
    },
    Kind {
        name: "time_since_mid_change",
        group: "time",
        params: &[],
        defaults: |_| {},
        clock_only: false,
        l3: false,
        definition: "seconds since the mid price last changed",
        reference: DE,
    },
];

/// The registry entry for `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// Human-readable warm-up of a resolved spec: how long its column stays NaN after the start
/// (or a reset at a gap).
pub fn warmup(s: &FeatureSpec) -> String {
    // OFI needs the previous book: an event window of N is full after N + 1 samples.
    let extra = usize::from(matches!(s.name.as_str(), "ofi" | "mlofi" | "mlofi_norm" | "ofi_integrated"));
    let win = || match (&s.window_events, &s.window) {
        (Some(n), _) => format!("{} events", n + extra),
        (None, Some(w)) => parse_duration(w).map(format_duration).unwrap_or_else(|_| w.clone()),
        _ => "0".into(),
    };
    match s.name.as_str() {
        "ofi"
        | "mlofi"
        | "mlofi_norm"
        | "buy_volume"
        | "sell_volume"
        | "trade_imbalance"
        | "log_return"
        | "realized_vol"
        | "parkinson"
        | "vwap_distance"
        | "spread_zscore"
        | "imbalance_zscore"
        | "trade_intensity"
        | "queue_arrival_rate"
        | "queue_cancel_rate"
        | "queue_execution_rate"
        | "queue_cancel_ratio" => win(),
        "ofi_integrated" => format!("{}, fitted", win()),
        "imbalance_ewma" => format!("{} events", s.halflife_events.unwrap_or(0.0)),
        "microprice" | "microprice_offset" => "fitted".into(),
        "large_trade" | "resilience" => format!("{} trades", s.trades.unwrap_or(0)),
        "vpin" => {
            let n = s.window_buckets.unwrap_or(0);
            let fit = if s.bucket_volume.is_none() { " (bucket size fitted)" } else { "" };
            match s.classification.as_deref() {
                Some("bvc") => format!("{} bars + {n} buckets{fit}", s.sigma_bars.unwrap_or(0)),
                _ => format!("{n} buckets{fit}"),
            }
        }
        "kyle_lambda" => format!("{} bars of {}", s.window_bars.unwrap_or(0), s.bar.clone().unwrap_or_default()),
        "time_since_trade" => "first trade".into(),
        "time_since_mid_change" => "first mid change".into(),
        _ => "0".into(),
    }
}

fn spec(name: &str) -> FeatureSpec {
    FeatureSpec { name: name.into(), ..Default::default() }
}

/// The default set: every kind at least once, windows in events and in clock time.
pub fn default_specs() -> Vec<FeatureSpec> {
    let mut v = Vec::new();
    let ev = |name: &str, n: usize| FeatureSpec { window_events: Some(n), ..spec(name) };
    let clk = |name: &str, w: &str| FeatureSpec { window: Some(w.into()), ..spec(name) };
    let lv = |name: &str, l: usize| FeatureSpec { levels: Some(l), ..spec(name) };
    let sd = |name: &str, side: &str| FeatureSpec { side: Some(side.into()), ..spec(name) };
    // OFI: per event, event windows, clock windows.
    for n in [1, 10, 100] {
        v.push(ev("ofi", n));
    }
    for w in ["1s", "10s", "1min", "5min"] {
        v.push(clk("ofi", w));
    }
    for m in 1..=5 {
        v.push(FeatureSpec { level: Some(m), ..spec("mlofi") });
    }
    for m in 1..=5 {
        v.push(FeatureSpec { level: Some(m), ..spec("mlofi_norm") });
    }
    v.push(spec("ofi_integrated"));
    // Imbalance.
    for l in [1, 5, 10] {
        v.push(lv("imbalance", l));
    }
    v.push(spec("imbalance_price_weighted"));
    v.push(spec("imbalance_inv_distance"));
    v.push(spec("order_count_imbalance"));
    for h in [10.0, 100.0] {
        v.push(FeatureSpec { halflife_events: Some(h), ..spec("imbalance_ewma") });
    }
    v.push(spec("imbalance_zscore"));
    // Prices.
    for n in
        ["mid", "weighted_mid", "weighted_mid_offset", "microprice", "microprice_offset", "spread_ticks", "spread_bps", "spread_zscore"]
    {
        v.push(spec(n));
    }
    v.push(ev("vwap_distance", 100));
    v.push(clk("vwap_distance", "1min"));
    // Depth and shape.
    for l in [1, 5, 10] {
        v.push(lv("depth_total", l));
    }
    for side in ["bid", "ask"] {
        for l in [1, 5, 10] {
            v.push(FeatureSpec { side: Some(side.into()), levels: Some(l), ..spec("depth") });
        }
    }
    v.push(spec("depth_ratio"));
    for side in ["bid", "ask"] {
        v.push(sd("slope_impact", side));
    }
    for side in ["bid", "ask"] {
        v.push(sd("slope_log", side));
    }
    v.push(spec("resilience"));
    // Trade flow.
    for name in ["buy_volume", "sell_volume", "trade_imbalance"] {
        v.push(ev(name, 100));
        v.push(clk(name, "10s"));
        v.push(clk(name, "1min"));
    }
    for c in ["tick", "lee_ready"] {
        v.push(FeatureSpec { classification: Some(c.into()), ..clk("trade_imbalance", "1min") });
    }
    v.push(spec("large_trade"));
    v.push(clk("trade_intensity", "10s"));
    v.push(clk("trade_intensity", "1min"));
    // Toxicity and impact.
    for c in ["aggressor", "tick", "bvc"] {
        v.push(FeatureSpec { classification: Some(c.into()), ..spec("vpin") });
    }
    v.push(spec("kyle_lambda"));
    // Volatility and momentum.
    v.push(ev("log_return", 10));
    v.push(ev("log_return", 100));
    for w in ["1s", "10s", "1min"] {
        v.push(clk("log_return", w));
    }
    for name in ["realized_vol", "parkinson"] {
        v.push(ev(name, 100));
        v.push(clk(name, "1min"));
    }
    // Queue dynamics at the touch (L3).
    for name in ["queue_arrival_rate", "queue_cancel_rate", "queue_execution_rate", "queue_cancel_ratio"] {
        for side in ["bid", "ask"] {
            v.push(sd(name, side));
        }
    }
    // Time.
    for n in ["time_of_day", "time_since_trade", "time_since_mid_change"] {
        v.push(spec(n));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_cover_every_feature() {
        let doc = include_str!("../../../docs/features.md");
        for k in KINDS {
            assert!(doc.contains(&format!("`{}`", k.name)), "docs/features.md lacks `{}`", k.name);
        }
    }
}
