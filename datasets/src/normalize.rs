//! Feature normalisation fitted on the training split only and stored as `normalization.json`
//! beside the data, so that the server applies exactly the training statistics later.
//!
//! Methods (docs/labels.md): z-score (x − mean)/std with the population std; min-max
//! (x − min)/(max − min); FI-2010's decimal precision x/10^k with k the smallest integer such that
//! max|x| / 10^k < 1 (Ntakaris et al. 2018). A zero std or range scales by 1 (as scikit-learn
//! does), so a constant training column maps to 0. Non-finite values are ignored when fitting
//! and stay NaN when applied.

use crate::error::{DataError, Result};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::Path;

/// Version of the `normalization.json` layout.
pub const NORMALIZATION_FORMAT: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Zscore,
    MinMax,
    DecimalPrecision,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        match s {
            "zscore" | "z-score" => Ok(Method::Zscore),
            "minmax" | "min-max" => Ok(Method::MinMax),
            "decimal" | "decimal-precision" => Ok(Method::DecimalPrecision),
            _ => Err(DataError::Invalid(format!("unknown normalisation {s:?}; known: zscore, minmax, decimal"))),
        }
    }
}

/// Training statistics of one column (all methods' statistics are stored, so a consumer can
/// switch method without refitting).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub name: String,
    /// Finite training values the statistics are computed from.
    pub count: u64,
    #[serde(with = "nan_as_null")]
    pub mean: f64,
    /// Population standard deviation (ddof = 0).
    #[serde(with = "nan_as_null")]
    pub std: f64,
    #[serde(with = "nan_as_null")]
    pub min: f64,
    #[serde(with = "nan_as_null")]
    pub max: f64,
    /// Decimal-precision exponent k.
    pub decimal_exponent: i32,
}

impl ColumnStats {
    /// (shift, scale) with x' = (x − shift)/scale for `method`.
    fn affine(&self, method: Method) -> (f64, f64) {
        let nz = |s: f64| if s > 0.0 && s.is_finite() { s } else { 1.0 };
        match method {
            Method::Zscore => (self.mean, nz(self.std)),
            Method::MinMax => (self.min, nz(self.max - self.min)),
            Method::DecimalPrecision => (0.0, 10f64.powi(self.decimal_exponent)),
        }
    }
}

/// `normalization.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    pub format: u32,
    pub method: Method,
    /// Rows (of the feature table) the statistics were fitted on: the training split.
    pub fitted_on_rows: Range<usize>,
    pub columns: Vec<ColumnStats>,
    /// Precomputed (shift, scale) per column for `method`; rebuilt on load.
    #[serde(skip)]
    affine: Vec<(f64, f64)>,
}

/// JSON has no NaN: a column without finite training values stores `null` statistics.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Smallest integer k with m / 10^k < 1 (0 for m = 0).
fn decimal_exponent(m: f64) -> i32 {
    if !(m > 0.0 && m.is_finite()) {
        return 0;
    }
    let mut k = m.log10().floor() as i32 + 1;
    while m / 10f64.powi(k) >= 1.0 {
        k += 1;
    }
    while m / 10f64.powi(k - 1) < 1.0 {
        k -= 1;
    }
    k
}

impl Normalizer {
    /// Fit on rows `train` of a row-major `values` table with columns `names`. Only those rows are
    /// read.
    pub fn fit(names: &[String], values: &[f64], train: Range<usize>, method: Method) -> Result<Normalizer> {
        let c = names.len();
        if c == 0 || !values.len().is_multiple_of(c) || train.end * c > values.len() {
            return Err(DataError::Invalid(format!("normaliser: {} values do not hold rows {:?} of {c} columns", values.len(), train)));
        }
        let mut columns = Vec::with_capacity(c);
        for (j, name) in names.iter().enumerate() {
            // Welford's running mean/variance.
            let (mut n, mut mean, mut m2) = (0u64, 0.0f64, 0.0f64);
            let (mut lo, mut hi, mut amax) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
            for r in train.clone() {
                let x = values[r * c + j];
                if !x.is_finite() {
                    continue;
                }
                n += 1;
                let d = x - mean;
                mean += d / n as f64;
                m2 += d * (x - mean);
                lo = lo.min(x);
                hi = hi.max(x);
                amax = amax.max(x.abs());
            }
            let (mean, std, lo, hi) =
                if n == 0 { (f64::NAN, f64::NAN, f64::NAN, f64::NAN) } else { (mean, (m2 / n as f64).sqrt(), lo, hi) };
            columns.push(ColumnStats {
                name: name.clone(),
                count: n,
                mean,
                std,
                min: lo,
                max: hi,
                decimal_exponent: decimal_exponent(amax),
            });
        }
        Ok(Normalizer::with_columns(method, train, columns))
    }

    fn with_columns(method: Method, fitted_on_rows: Range<usize>, columns: Vec<ColumnStats>) -> Normalizer {
        let affine = columns.iter().map(|s| s.affine(method)).collect();
        Normalizer { format: NORMALIZATION_FORMAT, method, fitted_on_rows, columns, affine }
    }

    /// Same statistics, another method.
    pub fn with_method(&self, method: Method) -> Normalizer {
        Normalizer::with_columns(method, self.fitted_on_rows.clone(), self.columns.clone())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// Error unless `names` are exactly the fitted columns, in order (what a server checks before
    /// applying the normaliser to its live feature rows).
    pub fn check_names(&self, names: &[String]) -> Result<()> {
        if names.len() != self.columns.len() || names.iter().zip(self.names()).any(|(a, b)| a != b) {
            let first = names.iter().zip(self.names()).position(|(a, b)| a != b);
            return Err(DataError::Invalid(format!(
                "normaliser columns differ from the feature columns ({} vs {}; first difference at column {:?})",
                self.columns.len(),
                names.len(),
                first
            )));
        }
        Ok(())
    }

    /// Normalise one feature row in place, from the stored statistics only. No allocation.
    #[inline]
    pub fn apply_row(&self, row: &mut [f64]) {
        debug_assert_eq!(row.len(), self.affine.len());
        for (x, &(shift, scale)) in row.iter_mut().zip(&self.affine) {
            *x = (*x - shift) / scale;
        }
    }

    /// Normalise a row-major table in place.
    pub fn apply(&self, values: &mut [f64]) {
        for row in values.chunks_exact_mut(self.affine.len()) {
            self.apply_row(row);
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("normaliser serialises")
    }

    pub fn from_json(s: &str, origin: &str) -> Result<Normalizer> {
        let n: Normalizer =
            serde_json::from_str(s).map_err(|e| DataError::parse(origin, e.line() as u64, "normalization", e.to_string()))?;
        if n.format != NORMALIZATION_FORMAT {
            return Err(DataError::Invalid(format!("{origin}: normalization format {} not supported", n.format)));
        }
        Ok(Normalizer::with_columns(n.method, n.fitted_on_rows, n.columns))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()).map_err(|e| DataError::io(path, e))
    }

    pub fn load(path: &Path) -> Result<Normalizer> {
        let s = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Normalizer::from_json(&s, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i}")).collect()
    }

    #[test]
    fn stats_come_from_train_rows_only() {
        // 2 columns × 6 rows; train = rows 0..4.
        let mut v = vec![1.0, 10.0, 2.0, f64::NAN, 3.0, 30.0, 4.0, 40.0, 100.0, -5.0, 200.0, 7.0];
        let n = Normalizer::fit(&names(2), &v, 0..4, Method::Zscore).unwrap();
        let c0 = &n.columns[0];
        assert_eq!((c0.count, c0.mean, c0.min, c0.max), (4, 2.5, 1.0, 4.0));
        assert!((c0.std - 1.25f64.sqrt()).abs() < 1e-15);
        let c1 = &n.columns[1];
        assert_eq!((c1.count, c1.min, c1.max, c1.decimal_exponent), (3, 10.0, 40.0, 2));
        assert!((c1.mean - 80.0 / 3.0).abs() < 1e-12);
        // Changing test rows leaves every statistic unchanged.
        v[8] = 1e9;
        v[11] = f64::NAN;
        assert_eq!(Normalizer::fit(&names(2), &v, 0..4, Method::Zscore).unwrap(), n);
        // Changing a train row does change them.
        v[0] = 0.0;
        assert_ne!(Normalizer::fit(&names(2), &v, 0..4, Method::Zscore).unwrap(), n);
    }

    #[test]
    fn methods_and_json_roundtrip() {
        let v = vec![-250.0, 0.5, 50.0, 0.5, 100.0, 0.5];
        let z = Normalizer::fit(&names(2), &v, 0..3, Method::Zscore).unwrap();
        let mut row = [50.0, 0.5];
        // mean of col 0 = −100/3; constant col 1 → scale 1 → 0.
        z.apply_row(&mut row);
        let m0 = -100.0 / 3.0;
        let s0 = (((-250.0 - m0) * (-250.0 - m0) + (50.0 - m0) * (50.0 - m0) + (100.0 - m0) * (100.0 - m0)) / 3.0f64).sqrt();
        assert!((row[0] - (50.0 - m0) / s0).abs() < 1e-12);
        assert_eq!(row[1], 0.0);
        let mm = z.with_method(Method::MinMax);
        let mut row = [100.0, f64::NAN];
        mm.apply_row(&mut row);
        assert_eq!(row[0], 1.0);
        assert!(row[1].is_nan());
        // Decimal precision: max |x| = 250 → k = 3 → x / 1000.
        let d = z.with_method(Method::DecimalPrecision);
        assert_eq!(d.columns[0].decimal_exponent, 3);
        assert_eq!(d.columns[1].decimal_exponent, 0);
        let mut row = [-250.0, 0.5];
        d.apply_row(&mut row);
        assert_eq!(row, [-0.25, 0.5]);
        // JSON round trip rebuilds the same transform.
        let back = Normalizer::from_json(&d.to_json(), "normalization.json").unwrap();
        assert_eq!(back, d);
        let mut row2 = [-250.0, 0.5];
        back.apply_row(&mut row2);
        assert_eq!(row2, [-0.25, 0.5]);
        assert!(back.check_names(&names(2)).is_ok());
        assert!(back.check_names(&names(3)).is_err());
        // A column with no finite training value stores null statistics and loads back as NaN.
        let e = Normalizer::fit(&names(1), &[f64::NAN, 1.0], 0..1, Method::Zscore).unwrap();
        let back = Normalizer::from_json(&e.to_json(), "n.json").unwrap();
        assert!(back.columns[0].mean.is_nan() && back.columns[0].count == 0);
        assert!(Normalizer::from_json("{", "n.json").unwrap_err().to_string().starts_with("n.json:"));
    }

    #[test]
    fn decimal_exponents() {
        assert_eq!(decimal_exponent(0.0), 0);
        assert_eq!(decimal_exponent(1.0), 1);
        assert_eq!(decimal_exponent(0.999), 0);
        assert_eq!(decimal_exponent(999.0), 3);
        assert_eq!(decimal_exponent(1000.0), 4);
        assert_eq!(decimal_exponent(0.05), -1);
    }
}
