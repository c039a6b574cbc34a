//! Descriptive statistics of every feature column (the `features` part of summary.json).

use crate::analysis::stats::quantile_sorted;
use crate::features::FeatureTable;
use serde::Serialize;

/// One feature's statistics over all rows. Quantiles are type 7 (numpy's default) over the finite
/// values; `nan` counts non-finite values anywhere, `warmup` the leading rows before the first
/// finite value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureStats {
    pub name: String,
    pub rows: usize,
    pub finite: usize,
    pub nan: usize,
    pub warmup: usize,
    pub mean: Option<f64>,
    /// Population standard deviation.
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub p01: Option<f64>,
    pub p25: Option<f64>,
    pub p50: Option<f64>,
    pub p75: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// Statistics of every column of `table`.
pub fn feature_stats(table: &FeatureTable) -> Vec<FeatureStats> {
    let (n, c) = (table.rows(), table.cols());
    let mut buf = Vec::with_capacity(n);
    (0..c)
        .map(|j| {
            buf.clear();
            let mut warmup = None;
            for r in 0..n {
                let v = table.values[r * c + j];
                if v.is_finite() {
                    warmup.get_or_insert(r);
                    buf.push(v);
                }
            }
            let k = buf.len();
            let some = |v: f64| (k > 0).then_some(v);
            let mean = buf.iter().sum::<f64>() / k as f64;
            let var = buf.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / k as f64;
            buf.sort_unstable_by(f64::total_cmp);
            let q = |p: f64| some(quantile_sorted(&buf, p));
            FeatureStats {
                name: table.names[j].clone(),
                rows: n,
                finite: k,
                nan: n - k,
                warmup: warmup.unwrap_or(n),
                mean: some(mean),
                std: some(var.sqrt()),
                min: buf.first().copied(),
                p01: q(0.01),
                p25: q(0.25),
                p50: q(0.5),
                p75: q(0.75),
                p99: q(0.99),
                max: buf.last().copied(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_with_warmup() {
        let values = vec![f64::NAN, 5.0, f64::NAN, 5.0, 1.0, 5.0, 2.0, 5.0, f64::NAN, 5.0, 3.0, 5.0];
        let t = FeatureTable {
            names: vec!["x".into(), "c".into()],
            event_index: (0..6).collect(),
            ts: (0..6).collect(),
            mid: vec![1.0; 6],
            values,
        };
        let s = feature_stats(&t);
        assert_eq!((s[0].finite, s[0].nan, s[0].warmup), (3, 3, 2));
        assert_eq!((s[0].mean, s[0].min, s[0].p50, s[0].max), (Some(2.0), Some(1.0), Some(2.0), Some(3.0)));
        assert_eq!(s[0].p25, Some(1.5));
        assert_eq!(s[0].std, Some((2.0f64 / 3.0).sqrt()));
        assert_eq!((s[1].warmup, s[1].std), (0, Some(0.0)));
    }
}
