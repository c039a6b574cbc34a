//! Small, exact-as-possible statistics shared by the analyses, labels and summaries: OLS with an
//! intercept, quantiles, ranks, Pearson and Spearman correlation. Formulas: docs/labels.md.

/// Ordinary least squares of `y = a + b·x + ε` (with intercept).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Ols {
    /// Intercept a.
    pub intercept: f64,
    /// Slope b.
    pub slope: f64,
    /// Coefficient of determination 1 − SSR/SST.
    pub r2: f64,
    /// Number of observations.
    pub n: usize,
    /// Standard error of the slope, √(SSR/(n−2) / Sxx) (NaN for n ≤ 2).
    pub slope_se: f64,
}

/// OLS of `y` on `x` with an intercept. `None` when fewer than 2 points, or when `x` or `y` has no
/// variance (the slope or R² is then undefined). Centred sums (two passes) for accuracy.
pub fn ols(x: &[f64], y: &[f64]) -> Option<Ols> {
    let n = x.len().min(y.len());
    if n < 2 {
        return None;
    }
    let (mx, my) = (mean(&x[..n]), mean(&y[..n]));
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    // SSR = Syy − b·Sxy; clamp tiny negative round-off.
    let ssr = (syy - slope * sxy).max(0.0);
    let r2 = 1.0 - ssr / syy;
    let slope_se = if n > 2 { (ssr / (n - 2) as f64 / sxx).sqrt() } else { f64::NAN };
    Some(Ols { intercept, slope, r2, n, slope_se })
}

/// Arithmetic mean (NaN for an empty slice).
pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Quantile `p ∈ [0, 1]` of an ascending-sorted slice by linear interpolation between order
/// statistics (Hyndman & Fan type 7, numpy's default): h = (n−1)p, x[⌊h⌋] + (h−⌊h⌋)(x[⌊h⌋+1] − x[⌊h⌋]).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Ranks 1..n of `v` into `out` (resized), ties getting their average rank (as Spearman needs).
/// `idx` is a reusable scratch buffer.
pub fn average_ranks(v: &[f64], idx: &mut Vec<usize>, out: &mut Vec<f64>) {
    let n = v.len();
    idx.clear();
    idx.extend(0..n);
    idx.sort_unstable_by(|&a, &b| v[a].total_cmp(&v[b]));
    out.clear();
    out.resize(n, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && v[idx[j]] == v[idx[i]] {
            j += 1;
        }
        // Positions i..j (0-based) share ranks i+1..=j: average (i+1+j)/2.
        let r = (i + 1 + j) as f64 / 2.0;
        for &k in &idx[i..j] {
            out[k] = r;
        }
        i = j;
    }
}

/// Pearson correlation; NaN when fewer than 2 points or a side has no variance.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return f64::NAN;
    }
    let (mx, my) = (mean(&x[..n]), mean(&y[..n]));
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Reusable buffers for [`Spearman::corr`], so that computing many correlations allocates once.
#[derive(Default)]
pub struct Spearman {
    x: Vec<f64>,
    y: Vec<f64>,
    rx: Vec<f64>,
    ry: Vec<f64>,
    idx: Vec<usize>,
}

impl Spearman {
    /// Spearman rank correlation of the pairs where both values are finite (Pearson correlation
    /// of average ranks); also returns the number of pairs used.
    pub fn corr(&mut self, x: &[f64], y: &[f64]) -> (f64, usize) {
        self.x.clear();
        self.y.clear();
        for (&a, &b) in x.iter().zip(y) {
            if a.is_finite() && b.is_finite() {
                self.x.push(a);
                self.y.push(b);
            }
        }
        let n = self.x.len();
        average_ranks(&self.x, &mut self.idx, &mut self.rx);
        average_ranks(&self.y, &mut self.idx, &mut self.ry);
        (pearson(&self.rx, &self.ry), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ols_exact_line_and_noise() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let y: Vec<f64> = x.iter().map(|v| 3.0 - 0.5 * v).collect();
        let f = ols(&x, &y).unwrap();
        assert!((f.slope + 0.5).abs() < 1e-15 && (f.intercept - 3.0).abs() < 1e-15);
        assert!((f.r2 - 1.0).abs() < 1e-15);
        // y = 1, 3, 2, 4 on x = 1..4: b = 0.8, a = 0.5, R² = 0.64 (hand-computed).
        let f = ols(&x, &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((f.slope - 0.8).abs() < 1e-12 && (f.intercept - 0.5).abs() < 1e-12);
        assert!((f.r2 - 0.64).abs() < 1e-12);
        assert!(ols(&[1.0, 1.0], &[1.0, 2.0]).is_none());
        assert!(ols(&[1.0], &[1.0]).is_none());
    }

    #[test]
    fn quantiles_type7() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
        assert_eq!(quantile_sorted(&v, 0.25), 2.0);
        assert_eq!(quantile_sorted(&v, 0.1), 1.4);
        assert_eq!(quantile_sorted(&v, 1.0), 5.0);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn ranks_and_spearman() {
        let mut idx = Vec::new();
        let mut r = Vec::new();
        average_ranks(&[10.0, 30.0, 20.0, 20.0], &mut idx, &mut r);
        assert_eq!(r, vec![1.0, 4.0, 2.5, 2.5]);
        let mut s = Spearman::default();
        // Monotone but non-linear: Spearman 1, NaN pairs dropped.
        let (c, n) = s.corr(&[1.0, 2.0, f64::NAN, 3.0, 4.0], &[1.0, 8.0, 5.0, 27.0, 64.0]);
        assert_eq!(n, 4);
        assert!((c - 1.0).abs() < 1e-15);
        let (c, _) = s.corr(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]);
        assert!((c + 1.0).abs() < 1e-15);
        assert!((pearson(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]) - 0.981_980_506_061_965_7).abs() < 1e-12);
    }
}
