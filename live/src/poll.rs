//! The REST-polling order-book-imbalance monitor (the L2 imbalance seed): the depth snapshot at
//! a fixed cadence, top-L volumes, OBI and price-weighted OBI, an EWMA and a rolling z-score of
//! OBI, and the next-sample mid return; one CSV row per poll (NaN rows for failed polls) and a
//! JSON summary. Formulas: docs/live.md, "Polling imbalance monitor".

use crate::binance::endpoints;
use crate::error::{LiveError, Result};
use crate::http::{Rest, RetryPolicy};
use crate::now_ns;
use flowcast_datasets::loaders::binance::Market;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// Exponentially weighted moving average with span N: `α = 2/(N+1)`, `m ← m + α(x − m)`,
/// started at the first value. O(1) per update.
#[derive(Clone, Debug)]
pub struct Ewma {
    alpha: f64,
    value: Option<f64>,
}

impl Ewma {
    pub fn with_span(span: f64) -> Ewma {
        Ewma { alpha: 2.0 / (span.max(1.0) + 1.0), value: None }
    }
    pub fn update(&mut self, x: f64) -> f64 {
        let m = match self.value {
            Some(m) => m + self.alpha * (x - m),
            None => x,
        };
        self.value = Some(m);
        m
    }
}

/// z-score of the newest value against the last `n` values (itself included): running sum and
/// sum of squares over a ring, O(1) per update. NaN until two values, or when they are all equal.
#[derive(Clone, Debug)]
pub struct RollingZ {
    ring: Vec<f64>,
    head: usize,
    len: usize,
    sum: f64,
    sumsq: f64,
}

impl RollingZ {
    pub fn new(n: usize) -> RollingZ {
        RollingZ { ring: vec![0.0; n.max(2)], head: 0, len: 0, sum: 0.0, sumsq: 0.0 }
    }
    pub fn push(&mut self, x: f64) -> f64 {
        if self.len == self.ring.len() {
            let old = self.ring[self.head];
            self.sum -= old;
            self.sumsq -= old * old;
        } else {
            self.len += 1;
        }
        self.ring[self.head] = x;
        self.head = (self.head + 1) % self.ring.len();
        self.sum += x;
        self.sumsq += x * x;
        let n = self.len as f64;
        let mean = self.sum / n;
        let var = (self.sumsq / n - mean * mean).max(0.0);
        if self.len < 2 || var <= 1e-18 {
            f64::NAN
        } else {
            (x - mean) / var.sqrt()
        }
    }
}

/// The imbalance measures of one book.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Imbalance {
    pub best_bid: f64,
    pub best_ask: f64,
    pub mid: f64,
    pub spread: f64,
    pub bid_vol: f64,
    pub ask_vol: f64,
    /// `(B − A)/(B + A)` over the top L levels.
    pub obi: f64,
    /// The same with each level's size weighted by `1/(1 + d)`, `d` its distance from the mid in
    /// basis points.
    pub pw_obi: f64,
}

/// Imbalance of the top `levels` of `bids` (descending) and `asks` (ascending), `(price, size)`.
pub fn imbalance(bids: &[(f64, f64)], asks: &[(f64, f64)], levels: usize) -> Option<Imbalance> {
    let (bb, ba) = (bids.first()?.0, asks.first()?.0);
    let mid = (bb + ba) / 2.0;
    let (b, a) = (&bids[..bids.len().min(levels)], &asks[..asks.len().min(levels)]);
    let vol = |s: &[(f64, f64)]| s.iter().map(|l| l.1).sum::<f64>();
    let wvol = |s: &[(f64, f64)]| s.iter().map(|l| l.1 / (1.0 + 1e4 * (l.0 - mid).abs() / mid)).sum::<f64>();
    let ratio = |x: f64, y: f64| if x + y > 0.0 { (x - y) / (x + y) } else { f64::NAN };
    let (bv, av) = (vol(b), vol(a));
    Some(Imbalance {
        best_bid: bb,
        best_ask: ba,
        mid,
        spread: ba - bb,
        bid_vol: bv,
        ask_vol: av,
        obi: ratio(bv, av),
        pw_obi: ratio(wvol(b), wvol(a)),
    })
}

/// Retries that fit the cadence: up to 3 attempts, backoff from interval/8 to interval/2; a
/// `Retry-After` longer than the interval pauses polling (failed rows) instead of waiting.
pub fn retry_policy(interval: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: interval / 8,
        cap: interval / 2,
        max_retry_after: interval,
        timeout: interval.max(Duration::from_secs(2)),
    }
}

/// Monitor settings (also echoed in the summary).
#[derive(Clone, Debug, Serialize)]
pub struct PollConfig {
    pub market: String,
    pub symbol: String,
    pub levels: usize,
    pub interval_ms: u64,
    pub samples: u64,
    pub ema_span: f64,
    /// Rolling z-score window in samples (about one minute).
    pub z_window: usize,
    pub rest_url: String,
    pub csv: PathBuf,
    pub summary: PathBuf,
}

impl PollConfig {
    pub fn new(market: Market, symbol: &str, interval: Duration, samples: u64, out_dir: &std::path::Path) -> PollConfig {
        let z_window = (60_000 / interval.as_millis().max(1) as u64).max(2) as usize;
        PollConfig {
            market: market.name().into(),
            symbol: symbol.to_ascii_uppercase(),
            levels: 20,
            interval_ms: interval.as_millis() as u64,
            samples,
            ema_span: 30.0,
            z_window,
            rest_url: endpoints(market).1.into(),
            csv: out_dir.join(format!("obi_{}.csv", symbol.to_ascii_lowercase())),
            summary: out_dir.join(format!("obi_{}_summary.json", symbol.to_ascii_lowercase())),
        }
    }
}

/// One poll.
#[derive(Clone, Copy, Debug)]
struct Row {
    ts: i64,
    m: Option<Imbalance>,
    ema: f64,
    z: f64,
    attempts: u32,
}

#[derive(Deserialize)]
struct Depth {
    bids: Vec<(String, String)>,
    asks: Vec<(String, String)>,
}

fn levels_of(v: &[(String, String)], what: &str) -> Result<Vec<(f64, f64)>> {
    v.iter()
        .enumerate()
        .map(|(i, (p, q))| match (p.parse::<f64>(), q.parse::<f64>()) {
            (Ok(p), Ok(q)) => Ok((p, q)),
            _ => Err(LiveError::Parse {
                what: format!("depth {what}[{i}]"),
                reason: format!("not a [price, qty] pair of decimals: {p:?}, {q:?}"),
            }),
        })
        .collect()
}

/// Binance's allowed depth limits; the smallest one covering `levels`.
fn depth_limit(levels: usize) -> usize {
    [5, 10, 20, 50, 100, 500, 1000, 5000].into_iter().find(|&l| l >= levels).unwrap_or(5000)
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

fn quantiles(xs: &[f64]) -> serde_json::Value {
    let mut s: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    let q = |p| quantile(&s, p);
    serde_json::json!({"p05": q(0.05), "p25": q(0.25), "p50": q(0.5), "p75": q(0.75), "p95": q(0.95)})
}

fn mean(xs: &[f64]) -> Option<f64> {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Pearson correlation over the pairs where both are finite; `None` under 3 pairs or no variance.
pub fn correlation(x: &[f64], y: &[f64]) -> (Option<f64>, usize) {
    let p: Vec<(f64, f64)> = x.iter().zip(y).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(a, b)| (*a, *b)).collect();
    let n = p.len();
    if n < 3 {
        return (None, n);
    }
    let (mx, my) = (p.iter().map(|v| v.0).sum::<f64>() / n as f64, p.iter().map(|v| v.1).sum::<f64>() / n as f64);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in &p {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return (None, n);
    }
    (Some(sxy / (sxx * syy).sqrt()), n)
}

const HEADER: &str = "ts_ns,ok,best_bid,best_ask,mid,spread,bid_vol,ask_vol,obi,pw_obi,obi_ema,obi_z,mid_ret_next,attempts";

fn write_row(w: &mut impl Write, r: &Row, ret_next: f64) -> std::io::Result<()> {
    let f = |x: f64| if x.is_finite() { format!("{x}") } else { "NaN".into() };
    let nan = f64::NAN;
    let m =
        r.m.unwrap_or(Imbalance { best_bid: nan, best_ask: nan, mid: nan, spread: nan, bid_vol: nan, ask_vol: nan, obi: nan, pw_obi: nan });
    writeln!(
        w,
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        r.ts,
        r.m.is_some() as u8,
        f(m.best_bid),
        f(m.best_ask),
        f(m.mid),
        f(m.spread),
        f(m.bid_vol),
        f(m.ask_vol),
        f(m.obi),
        f(m.pw_obi),
        f(r.ema),
        f(r.z),
        f(ret_next),
        r.attempts
    )
}

/// Poll `cfg.samples` times every `cfg.interval_ms` (tick k at start + k·interval; ticks missed
/// while a request was retried become failed rows), then write the summary. Returns it.
pub async fn poll(cfg: PollConfig, policy: RetryPolicy, mut stop: watch::Receiver<bool>) -> Result<serde_json::Value> {
    let rest = Rest::new(policy)?;
    let (_, _, path) = endpoints(Market::parse(&cfg.market).unwrap_or(Market::Spot));
    let url = format!("{}{path}?symbol={}&limit={}", cfg.rest_url.trim_end_matches('/'), cfg.symbol, depth_limit(cfg.levels));
    if let Some(d) = cfg.csv.parent() {
        std::fs::create_dir_all(d).map_err(|e| LiveError::io(d, e))?;
    }
    let file = std::fs::File::create(&cfg.csv).map_err(|e| LiveError::io(&cfg.csv, e))?;
    let mut w = std::io::BufWriter::new(file);
    let io = |e| LiveError::io(&cfg.csv, e);
    writeln!(w, "{HEADER}").map_err(io)?;
    let mut ema = Ewma::with_span(cfg.ema_span);
    let mut z = RollingZ::new(cfg.z_window);
    let interval = Duration::from_millis(cfg.interval_ms.max(1));
    let start = tokio::time::Instant::now();
    let mut rows: Vec<Row> = Vec::with_capacity(cfg.samples as usize);
    let mut pause_until: Option<tokio::time::Instant> = None;
    let mut failed_attempts = 0u64;
    let mut k = 0u64;
    while k < cfg.samples {
        tokio::select! {
            _ = tokio::time::sleep_until(start + interval * k as u32) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let ts = now_ns();
        let mut row = Row { ts, m: None, ema: f64::NAN, z: f64::NAN, attempts: 0 };
        if pause_until.is_none_or(|p| tokio::time::Instant::now() >= p) {
            let (body, a) = rest.get_text(&url).await;
            row.attempts = a.attempts;
            failed_attempts += a.failures.len() as u64;
            match body.and_then(|b| {
                let d: Depth = serde_json::from_str(&b).map_err(|e| LiveError::Parse { what: url.clone(), reason: e.to_string() })?;
                Ok(imbalance(&levels_of(&d.bids, "bids")?, &levels_of(&d.asks, "asks")?, cfg.levels))
            }) {
                Ok(m) => row.m = m,
                Err(e) => {
                    tracing::warn!(sample = k, "poll failed: {e}");
                    // Respect a long Retry-After: no request until it has passed.
                    if let Some(s) = a.last_retry_after_s {
                        pause_until = Some(tokio::time::Instant::now() + Duration::from_secs(s));
                    }
                }
            }
        }
        if let Some(m) = row.m {
            if m.obi.is_finite() {
                row.ema = ema.update(m.obi);
                row.z = z.push(m.obi);
            }
        }
        if let Some(prev) = rows.last() {
            write_row(&mut w, prev, log_ret(prev, &row)).map_err(io)?;
        }
        rows.push(row);
        k += 1;
        // Ticks that passed while this poll was retried are failed rows, not delays.
        while k < cfg.samples && tokio::time::Instant::now() >= start + interval * (k + 1) as u32 {
            let missed = Row { ts: now_ns(), m: None, ema: f64::NAN, z: f64::NAN, attempts: 0 };
            if let Some(prev) = rows.last() {
                write_row(&mut w, prev, log_ret(prev, &missed)).map_err(io)?;
            }
            rows.push(missed);
            k += 1;
        }
    }
    if let Some(last) = rows.last() {
        write_row(&mut w, last, f64::NAN).map_err(io)?;
    }
    w.flush().map_err(io)?;
    let summary = summarise(&cfg, &rows, failed_attempts);
    std::fs::write(&cfg.summary, serde_json::to_string_pretty(&summary).unwrap_or_default()).map_err(|e| LiveError::io(&cfg.summary, e))?;
    Ok(summary)
}

fn log_ret(a: &Row, b: &Row) -> f64 {
    match (a.m, b.m) {
        (Some(x), Some(y)) if x.mid > 0.0 && y.mid > 0.0 => (y.mid / x.mid).ln(),
        _ => f64::NAN,
    }
}

fn summarise(cfg: &PollConfig, rows: &[Row], failed_attempts: u64) -> serde_json::Value {
    let col = |f: fn(&Imbalance) -> f64| rows.iter().map(|r| r.m.as_ref().map(f).unwrap_or(f64::NAN)).collect::<Vec<f64>>();
    let (obi, pw, mid, spread, bv, av) =
        (col(|m| m.obi), col(|m| m.pw_obi), col(|m| m.mid), col(|m| m.spread), col(|m| m.bid_vol), col(|m| m.ask_vol));
    let zs: Vec<f64> = rows.iter().map(|r| r.z).collect();
    // ret_next[t] = ln(mid[t+1]/mid[t]); ret_prev[t] = ln(mid[t]/mid[t-1]).
    let ret_next: Vec<f64> = (0..rows.len()).map(|t| if t + 1 < rows.len() { log_ret(&rows[t], &rows[t + 1]) } else { f64::NAN }).collect();
    let ret_prev: Vec<f64> = (0..rows.len()).map(|t| if t > 0 { ret_next[t - 1] } else { f64::NAN }).collect();
    let abs: Vec<f64> = obi.iter().map(|x| x.abs()).collect();
    let mut sa: Vec<f64> = abs.iter().copied().filter(|x| x.is_finite()).collect();
    sa.sort_by(|a, b| a.total_cmp(b));
    let ok = rows.iter().filter(|r| r.m.is_some()).count();
    let (c_obi, n_c) = correlation(&obi, &ret_prev);
    let (l_obi, n_l) = correlation(&obi, &ret_next);
    let (c_pw, _) = correlation(&pw, &ret_prev);
    let (l_pw, _) = correlation(&pw, &ret_next);
    serde_json::json!({
        "samples": rows.len(),
        "ok_samples": ok,
        "failed_samples": rows.len() - ok,
        "failed_attempts": failed_attempts,
        "means": {"obi": mean(&obi), "pw_obi": mean(&pw), "mid": mean(&mid), "spread": mean(&spread), "bid_vol": mean(&bv), "ask_vol": mean(&av), "mid_ret_next": mean(&ret_next)},
        "quantiles": {"obi": quantiles(&obi), "pw_obi": quantiles(&pw), "obi_z": quantiles(&zs), "spread": quantiles(&spread)},
        "abs_obi_p90": quantile(&sa, 0.9),
        "correlation": {
            "obi_vs_ret_contemporaneous": c_obi, "obi_vs_ret_next": l_obi,
            "pw_obi_vs_ret_contemporaneous": c_pw, "pw_obi_vs_ret_next": l_pw,
            "pairs_contemporaneous": n_c, "pairs_next": n_l,
        },
        "config": cfg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_by_hand() {
        let bids = [(100.0, 3.0), (99.0, 1.0)];
        let asks = [(101.0, 1.0), (102.0, 1.0)];
        let m = imbalance(&bids, &asks, 1).unwrap();
        assert_eq!((m.mid, m.spread, m.obi), (100.5, 1.0, 0.5));
        // Two levels: B = 4, A = 2 → 1/3.
        assert!((imbalance(&bids, &asks, 2).unwrap().obi - 1.0 / 3.0).abs() < 1e-12);
        let mut e = Ewma::with_span(3.0); // α = 0.5
        assert_eq!((e.update(1.0), e.update(3.0), e.update(3.0)), (1.0, 2.0, 2.5));
        let mut z = RollingZ::new(3);
        assert!(z.push(1.0).is_nan());
        assert!((z.push(3.0) - 1.0).abs() < 1e-12); // [1, 3]: mean 2, sd 1
        z.push(5.0); // [1, 3, 5]
        let v = z.push(3.0); // 1 evicted: [3, 5, 3], mean 11/3, variance 8/9
        assert!((v - (3.0 - 11.0 / 3.0) / (8.0f64 / 9.0).sqrt()).abs() < 1e-9, "{v}");
        let (c, n) = correlation(&[1.0, 2.0, 3.0, f64::NAN], &[2.0, 4.0, 6.5, 1.0]);
        assert_eq!(n, 3);
        assert!(c.unwrap() > 0.99);
        assert_eq!(quantile(&[0.0, 10.0], 0.9), Some(9.0));
        assert_eq!(depth_limit(20), 20);
        assert_eq!(depth_limit(21), 50);
    }
}
