//! Statistics of one backtest outcome, under stable keys (`flowcast backtest --json`; the list
//! and every formula are in docs/backtest.md, "Metrics").

use crate::engine::Outcome;
use crate::order::{OrderKind, Reason};
use crate::risk::Limit;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How per-bar statistics are annualised: `sqrt(P)` with P the bars in a year — crypto trades
/// 365 × 24 h, equities 252 sessions of 6.5 h (NASDAQ 9:30–16:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Calendar {
    #[default]
    Crypto,
    Equity,
}

impl Calendar {
    pub fn seconds_per_year(self) -> f64 {
        match self {
            Calendar::Crypto => 365.0 * 86_400.0,
            Calendar::Equity => 252.0 * 23_400.0,
        }
    }
}

/// Information coefficient and hit rate of the signal at one horizon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalStat {
    pub horizon: String,
    /// Signal points with a forward return inside the data.
    pub n: usize,
    /// Pearson correlation of strength with the forward mid log return.
    pub ic: f64,
    /// Spearman rank correlation of the same.
    pub rank_ic: f64,
    /// Of the points with a decision (not `none`) and a non-zero return: sign agreement.
    pub hit_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub gross_pnl: f64,
    pub net_pnl: f64,
    pub fees: f64,
    /// Net P&L per round trip.
    pub pnl_per_trade: f64,
    pub sharpe: f64,
    pub sortino: f64,
    /// Largest fall of net equity from its running peak (quote currency, ≥ 0).
    pub max_drawdown: f64,
    /// 95% one-bar value at risk of net equity (quote currency, a loss ≥ 0).
    pub var_95: f64,
    pub win_rate: f64,
    pub profit_factor: f64,
    pub avg_holding_s: f64,
    /// Σ filled / Σ ordered lots over accepted orders.
    pub fill_rate: f64,
    /// The same over limit and post-only orders only.
    pub passive_fill_rate: f64,
    /// Qty-weighted `side · (fill − arrival mid)/arrival mid` in bps (cost > 0).
    pub slippage_bps: f64,
    /// Σ |price × qty| of fills (quote currency).
    pub turnover: f64,
    /// Round trips.
    pub trades: usize,
    pub fills: usize,
    pub orders: usize,
    pub rejected: usize,
    pub maker_share: f64,
    pub final_position: f64,
    pub risk_hits: BTreeMap<String, u64>,
    pub signal: Vec<SignalStat>,
    pub bar_seconds: f64,
    pub calendar: Calendar,
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        f64::NAN
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

fn std(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    if saa <= 0.0 || sbb <= 0.0 {
        f64::NAN
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// Average ranks (ties share their mean rank).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// The 5% empirical quantile (linear interpolation).
fn quantile(x: &[f64], q: f64) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Mid at the last sample at or before `ts`.
fn mid_at(samples: &[(i64, f64)], ts: i64) -> Option<f64> {
    let k = samples.partition_point(|s| s.0 <= ts);
    (k > 0).then(|| samples[k - 1].1)
}

pub fn compute(o: &Outcome, bar_ns: i64, calendar: Calendar, horizons: &[(String, i64)]) -> Metrics {
    let value = o.tick_value * o.lot_units;
    let last = o.marks.last();
    let gross_pnl = last.map_or(0.0, |m| m.gross);
    let net_pnl = last.map_or(0.0, |m| m.net);
    let fees: f64 = o.fills.iter().map(|f| f.fee).sum();
    let bars: Vec<f64> = o.marks.windows(2).map(|w| w[1].net - w[0].net).collect();
    let bar_s = bar_ns as f64 / 1e9;
    let ann = (calendar.seconds_per_year() / bar_s).sqrt();
    let sd = std(&bars);
    let sharpe = if sd > 0.0 { mean(&bars) / sd * ann } else { f64::NAN };
    let dd = if bars.is_empty() { f64::NAN } else { (bars.iter().map(|b| b.min(0.0).powi(2)).sum::<f64>() / bars.len() as f64).sqrt() };
    let sortino = if dd > 0.0 { mean(&bars) / dd * ann } else { f64::NAN };
    let (mut peak, mut max_dd) = (f64::NEG_INFINITY, 0.0f64);
    for m in &o.marks {
        peak = peak.max(m.net);
        max_dd = max_dd.max(peak - m.net);
    }
    let var_95 = (-quantile(&bars, 0.05)).max(0.0);
    let nets: Vec<f64> = o.trips.iter().map(|t| t.gross - t.fees).collect();
    let wins: f64 = nets.iter().filter(|&&x| x > 0.0).sum();
    let losses: f64 = nets.iter().filter(|&&x| x < 0.0).sum();
    let accepted: Vec<_> = o
        .orders
        .iter()
        .filter(|x| !matches!(x.reason, Reason::UnknownOrder | Reason::Invalid | Reason::WouldTake | Reason::Unsynced))
        .collect();
    let ratio = |it: &mut dyn Iterator<Item = (i64, i64)>| {
        let (f, q) = it.fold((0i64, 0i64), |a, b| (a.0 + b.0, a.1 + b.1));
        if q > 0 {
            f as f64 / q as f64
        } else {
            f64::NAN
        }
    };
    let fill_rate = ratio(&mut accepted.iter().map(|x| (x.filled, x.qty)));
    let passive_fill_rate =
        ratio(&mut accepted.iter().filter(|x| matches!(x.kind, OrderKind::Limit | OrderKind::PostOnly)).map(|x| (x.filled, x.qty)));
    let (mut sw, mut sq) = (0.0, 0.0);
    for f in o.fills.iter().filter(|f| f.arrival_mid.is_finite() && f.arrival_mid > 0.0) {
        sw += f.side.sign() as f64 * (f.effective_price - f.arrival_mid) / f.arrival_mid * 1e4 * f.qty as f64;
        sq += f.qty as f64;
    }
    let turnover: f64 = o.fills.iter().map(|f| (f.effective_price * f.qty as f64 * value).abs()).sum();
    let maker = o.fills.iter().filter(|f| f.maker).map(|f| f.qty).sum::<i64>() as f64;
    let all = o.fills.iter().map(|f| f.qty).sum::<i64>() as f64;
    let mut risk_hits: BTreeMap<String, u64> = Limit::ALL.iter().map(|l| (l.as_str().to_string(), 0)).collect();
    for h in &o.risk_hits {
        *risk_hits.entry(h.limit.as_str().into()).or_default() += 1;
    }
    let signal = horizons
        .iter()
        .map(|(name, h)| {
            let (mut s, mut r, mut hits, mut decided) = (Vec::new(), Vec::new(), 0usize, 0usize);
            for (p, &ts) in o.signals.iter().zip(&o.signal_ts) {
                let (Some(m0), Some(m1)) = (mid_at(&o.samples, ts), mid_at(&o.samples, ts + h)) else { continue };
                if o.samples.last().is_none_or(|l| l.0 < ts + h) || m0 <= 0.0 || m1 <= 0.0 {
                    continue;
                }
                let ret = (m1 / m0).ln();
                s.push(p.signal.strength as f64);
                r.push(ret);
                let d = p.signal.direction.sign();
                if d != 0 && ret != 0.0 {
                    decided += 1;
                    hits += ((d > 0) == (ret > 0.0)) as usize;
                }
            }
            SignalStat {
                horizon: name.clone(),
                n: s.len(),
                ic: pearson(&s, &r),
                rank_ic: pearson(&ranks(&s), &ranks(&r)),
                hit_rate: if decided > 0 { hits as f64 / decided as f64 } else { f64::NAN },
            }
        })
        .collect();
    Metrics {
        gross_pnl,
        net_pnl,
        fees,
        pnl_per_trade: if nets.is_empty() { f64::NAN } else { nets.iter().sum::<f64>() / nets.len() as f64 },
        sharpe,
        sortino,
        max_drawdown: max_dd,
        var_95,
        win_rate: if nets.is_empty() { f64::NAN } else { nets.iter().filter(|&&x| x > 0.0).count() as f64 / nets.len() as f64 },
        profit_factor: if losses < 0.0 { wins / losses.abs() } else { f64::NAN },
        avg_holding_s: mean(&o.trips.iter().map(|t| (t.exit_ts - t.entry_ts) as f64 / 1e9).collect::<Vec<_>>()),
        fill_rate,
        passive_fill_rate,
        slippage_bps: if sq > 0.0 { sw / sq } else { f64::NAN },
        turnover,
        trades: o.trips.len(),
        fills: o.fills.len(),
        orders: o.orders.len(),
        rejected: o.orders.iter().filter(|x| x.status == crate::order::Status::Rejected).count(),
        maker_share: if all > 0.0 { maker / all } else { f64::NAN },
        final_position: o.final_position as f64 * o.lot_units,
        risk_hits,
        signal,
        bar_seconds: bar_s,
        calendar,
    }
}

/// One point of the latency sweep.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SweepPoint {
    pub latency: String,
    pub latency_ns: i64,
    pub net_pnl: f64,
    pub gross_pnl: f64,
    pub fill_rate: f64,
    pub trades: usize,
    pub sharpe: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_by_hand() {
        assert_eq!(ranks(&[3.0, 1.0, 2.0, 2.0]), vec![4.0, 1.0, 2.5, 2.5]);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.25) - 2.0).abs() < 1e-12);
        assert!((std(&[1.0, 3.0]) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(mid_at(&[(10, 1.0), (20, 2.0)], 15), Some(1.0));
        assert_eq!(mid_at(&[(10, 1.0)], 5), None);
    }
}
