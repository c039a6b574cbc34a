//! Fitting the features that have estimated parameters, on training rows only:
//! - `ofi_integrated`: first principal component of the normalised multi-level OFI vector
//!   (Cont, Cucuringu & Zhang 2023), weights L1-normalised with a positive sum;
//! - `microprice` / `microprice_offset`: Stoikov's (2018) g* table (`microprice.rs`);
//! - `vpin` without an explicit `bucket_volume`: V = the volume traded on average in
//!   `bucket_seconds` of the training rows (ELO 2012 use daily volume / 50, i.e. bucket_seconds =
//!   trading-day length / 50; the default 5 s suits intraday features).
//!
//! Rows are the sample points of [`super::compute`] (batch ends of a synced book), so
//! `train_rows` indexes the same table part B splits. Only data up to the last training row is
//! read, so the fitted set cannot depend on later rows.

use super::engine::drive;
use super::microprice::{estimate, imbalance_bucket, symmetric_edges, Transition};
use super::set::FeatureSet;
use super::spec::{FeatureSpec, Fitted};
use crate::error::{DataError, Result};
use crate::store::Dataset;
use crate::time::NS_PER_SEC;
use std::ops::Range;

/// Touch of one row: event index, ts, and (bid, bid size, ask, ask size) when both sides exist.
type Row = (usize, i64, Option<(i64, i64, i64, i64)>);

fn rows_until(ds: &Dataset, end: usize) -> Vec<Row> {
    let mut rows = Vec::with_capacity(end.min(ds.events.len()));
    let mut book = ds.new_book();
    for (i, ev) in ds.events.iter().enumerate() {
        if rows.len() >= end {
            break;
        }
        book.apply(ev);
        if ev.is_batch_end() && book.is_synced() {
            let touch = match (book.best_bid(), book.best_ask()) {
                (Some((b, qb)), Some((a, qa))) => Some((b, qb, a, qa)),
                _ => None,
            };
            rows.push((i, ev.ts_exchange, touch));
        }
    }
    rows
}

/// Return `set` with every fittable feature's parameters estimated on `train_rows` (rows of
/// [`super::compute`]'s table). Serialise the result with [`FeatureSet::to_json`].
pub fn fit(ds: &Dataset, set: &FeatureSet, train_rows: Range<usize>) -> Result<FeatureSet> {
    if train_rows.is_empty() {
        return Err(DataError::Invalid("fit: empty training range".into()));
    }
    let rows = rows_until(ds, train_rows.end);
    if rows.len() < train_rows.end {
        return Err(DataError::Invalid(format!(
            "fit: training rows {}..{} but the dataset has only {} rows",
            train_rows.start,
            train_rows.end,
            rows.len()
        )));
    }
    let train = &rows[train_rows.clone()];
    let mut out = FeatureSet::new(set.features.clone())?;
    for spec in out.features.iter_mut() {
        let fitted = match spec.name.as_str() {
            "ofi_integrated" => Some(fit_integrated(ds, spec, &train_rows)?),
            "microprice" | "microprice_offset" => Some(fit_microprice(spec, train)?),
            "vpin" if spec.bucket_volume.is_none() => Some(fit_vpin(ds, spec, &rows, &train_rows)?),
            _ => None,
        };
        if fitted.is_some() {
            spec.fitted = fitted;
        }
    }
    out.fitted_on = Some((train_rows.start, train_rows.end));
    Ok(out)
}

fn fit_integrated(ds: &Dataset, spec: &FeatureSpec, train: &Range<usize>) -> Result<Fitted> {
    let l = spec.levels.unwrap_or(5);
    let comps: Vec<FeatureSpec> = (1..=l)
        .map(|m| FeatureSpec {
            name: "mlofi_norm".into(),
            column: Some(format!("x{m}")),
            level: Some(m),
            levels: Some(l),
            window_events: spec.window_events,
            window: spec.window.clone(),
            max_rate_hz: spec.max_rate_hz,
            ..Default::default()
        })
        .collect();
    let (table, _) = drive(ds, &FeatureSet::new(comps)?, train.end)?;
    let xs: Vec<&[f64]> = train.clone().map(|r| table.row(r)).filter(|x| x.iter().all(|v| v.is_finite())).collect();
    if xs.len() < 2 {
        return Err(DataError::Invalid(format!("fit ofi_integrated: {} training rows with a full window; need at least 2", xs.len())));
    }
    let n = xs.len() as f64;
    let mean: Vec<f64> = (0..l).map(|j| xs.iter().map(|x| x[j]).sum::<f64>() / n).collect();
    let mut cov = vec![vec![0.0; l]; l];
    for x in &xs {
        for i in 0..l {
            for j in 0..l {
                cov[i][j] += (x[i] - mean[i]) * (x[j] - mean[j]) / (n - 1.0);
            }
        }
    }
    let (vals, vecs) = jacobi_eigen(cov);
    let k = (0..l).max_by(|&a, &b| vals[a].total_cmp(&vals[b])).unwrap_or(0);
    let mut w: Vec<f64> = (0..l).map(|i| vecs[i][k]).collect();
    let norm: f64 = w.iter().map(|v| v.abs()).sum();
    if norm.is_nan() || norm <= 0.0 {
        return Err(DataError::Invalid("fit ofi_integrated: degenerate covariance".into()));
    }
    let sign = if w.iter().sum::<f64>() < 0.0 { -1.0 } else { 1.0 };
    w.iter_mut().for_each(|v| *v *= sign / norm);
    let trace: f64 = vals.iter().map(|v| v.max(0.0)).sum();
    Ok(Fitted::IntegratedOfi { weights: w, explained_variance: if trace > 0.0 { vals[k] / trace } else { f64::NAN }, rows: xs.len() })
}

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: (eigenvalues,
/// eigenvectors as columns).
#[allow(clippy::needless_range_loop)] // rotations update rows p and q of `a` together
pub(crate) fn jacobi_eigen(mut a: Vec<Vec<f64>>) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = a.len();
    let mut v = vec![vec![0.0; n]; n];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i][j] * a[i][j]).sum();
        let scale: f64 = (0..n).map(|i| a[i][i] * a[i][i]).sum::<f64>().max(1e-300);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

fn fit_microprice(spec: &FeatureSpec, train: &[Row]) -> Result<Fitted> {
    let nb = spec.imbalance_buckets.unwrap_or(10);
    let ns = spec.spread_buckets.unwrap_or(2);
    // Quote updates: consecutive distinct touches (rows where nothing at the touch changed are
    // not quote events).
    let mut quotes: Vec<Option<(i64, i64, i64, i64)>> = Vec::new();
    for &(_, _, t) in train {
        if quotes.last() != Some(&t) {
            quotes.push(t);
        }
    }
    let in_range = |q: &(i64, i64, i64, i64)| {
        let s = q.2 - q.0;
        s >= 1 && s as usize <= ns && q.1 + q.3 > 0 && q.1 >= 0 && q.3 >= 0
    };
    let imb = |q: &(i64, i64, i64, i64)| q.1 as f64 / (q.1 + q.3) as f64;
    let is: Vec<f64> = quotes.iter().flatten().filter(|q| in_range(q)).map(imb).collect();
    let edges = symmetric_edges(&is, nb);
    let state = |q: &Option<(i64, i64, i64, i64)>| {
        q.as_ref().filter(|q| in_range(q)).map(|q| (q.2 - q.0 - 1) as usize * nb + imbalance_bucket(&edges, imb(q)))
    };
    let mut trans = Vec::new();
    for w in quotes.windows(2) {
        if let (Some(x), Some(y), Some(a), Some(b)) = (state(&w[0]), state(&w[1]), w[0], w[1]) {
            let dm_half = (b.0 + b.2) - (a.0 + a.2);
            if dm_half.abs() <= 2 {
                trans.push(Transition { from: x, to: y, dm_half });
            }
        }
    }
    if trans.is_empty() {
        return Err(DataError::Invalid(format!(
            "fit {}: no quote transitions with spreads of 1..={ns} ticks in the training rows",
            spec.name
        )));
    }
    let (adjustment, converged) = estimate(&trans, nb, ns)?;
    if !converged {
        tracing::warn!(feature = %spec.name, "micro-price: sum of B^i G1 did not converge; g* is a partial sum");
    }
    Ok(Fitted::Microprice { imbalance_edges: edges, adjustment, transitions: trans.len(), converged })
}

fn fit_vpin(ds: &Dataset, spec: &FeatureSpec, rows: &[Row], train: &Range<usize>) -> Result<Fitted> {
    let first = if train.start == 0 { 0 } else { rows[train.start - 1].0 + 1 };
    let last = rows[train.end - 1].0;
    let volume: f64 = ds.events[first..=last].iter().filter_map(|e| e.trade()).map(|(_, q, _)| q as f64).sum();
    let secs = (rows[train.end - 1].1 - rows[train.start].1) as f64 / NS_PER_SEC as f64;
    if !(volume > 0.0 && secs > 0.0) {
        return Err(DataError::Invalid(format!(
            "fit vpin: training rows hold {volume} lots traded over {secs} s; cannot size buckets (set bucket_volume)"
        )));
    }
    let bucket_seconds = spec.bucket_seconds.unwrap_or(5.0);
    Ok(Fitted::Vpin { bucket_volume: volume / secs * bucket_seconds, train_volume: volume, train_seconds: secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_principal_axis() {
        let (vals, vecs) = jacobi_eigen(vec![vec![2.0, 1.0], vec![1.0, 2.0]]);
        let k = if vals[0] > vals[1] { 0 } else { 1 };
        assert!((vals[k] - 3.0).abs() < 1e-12 && (vals[1 - k] - 1.0).abs() < 1e-12);
        assert!((vecs[0][k].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        assert!((vecs[0][k] - vecs[1][k]).abs() < 1e-12);
        let (vals, _) = jacobi_eigen(vec![vec![4.0, 1.0, 0.0], vec![1.0, 3.0, 1.0], vec![0.0, 1.0, 2.0]]);
        let tr: f64 = vals.iter().sum();
        assert!((tr - 9.0).abs() < 1e-10);
        // det = 4(6−1) − 1(2−0) = 18
        assert!((vals.iter().product::<f64>() - 18.0).abs() < 1e-9);
    }
}
