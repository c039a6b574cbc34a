//! Feature attributions of tree models: TreeSHAP contributions (Lundberg, Erion & Lee 2018,
//! "Consistent individualized feature attribution for tree ensembles"; LightGBM's `pred_contrib`)
//! as LightGBM lays them out — per row, per output, one value per feature then the bias (the
//! expected raw score) — written as `shap.parquet` and summarised as mean |SHAP| per feature.
//!
//! Permutation importance of any [`Predictor`] (Breiman 2001, "Random Forests", §10; Fisher,
//! Rudin & Dominici 2019, "model reliance"): per input column j, the column is permuted across
//! the scored windows (window i gets window π(i)'s column j in all its rows, π a seeded
//! Fisher–Yates shuffle), and the importance is the increase in log loss, Δⱼ = LL(permuted j) −
//! LL(intact). The scored windows are the test windows lightgbm explains: at most
//! [`IMPORTANCE_ROWS`] of them, evenly spaced ([`spaced`]).

use crate::error::{Result, TrainError};
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use flowcast_contract::predictor::{Batch, Outputs, Predictor};
use flowcast_contract::window::{WindowBatcher, WindowSet};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// `rows × outputs × (features + 1)` contributions, row-major.
pub struct Shap<'a> {
    values: &'a [f64],
    rows: usize,
    outputs: usize,
    features: usize,
}

impl<'a> Shap<'a> {
    pub fn new(values: &'a [f64], rows: usize, outputs: usize, features: usize) -> Result<Shap<'a>> {
        if values.len() != rows * outputs * (features + 1) {
            return Err(TrainError::Invalid(format!(
                "TreeSHAP: {} values for {rows} rows × {outputs} outputs × ({features} features + bias)",
                values.len()
            )));
        }
        Ok(Shap { values, rows, outputs, features })
    }

    fn at(&self, r: usize, o: usize) -> &[f64] {
        let w = self.features + 1;
        let s = (r * self.outputs + o) * w;
        &self.values[s..s + w]
    }

    /// Σ contributions + bias of row `r`, output `o`: the model's raw score there.
    pub fn total(&self, r: usize, o: usize) -> f64 {
        self.at(r, o).iter().sum()
    }

    /// Mean over rows of Σ_outputs |φ_j|, per feature j.
    pub fn mean_abs(&self) -> Vec<f64> {
        let mut m = vec![0.0; self.features];
        for r in 0..self.rows {
            for o in 0..self.outputs {
                for (acc, v) in m.iter_mut().zip(self.at(r, o)) {
                    *acc += v.abs();
                }
            }
        }
        m.iter_mut().for_each(|v| *v /= self.rows.max(1) as f64);
        m
    }

    /// One Parquet row per (window, output): `row` (the window's end row), `output` (class name
    /// or "value"), a Float32 column per feature, then `bias`.
    pub fn write_parquet(&self, path: &Path, ends: &[u32], outputs: &[String], names: &[String]) -> Result<()> {
        assert_eq!((ends.len(), outputs.len(), names.len()), (self.rows, self.outputs, self.features), "shap shape");
        let n = self.rows * self.outputs;
        let mut fields = vec![Field::new("row", DataType::UInt64, false), Field::new("output", DataType::Utf8, false)];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values((0..n).map(|i| ends[i / self.outputs] as u64))),
            Arc::new(StringArray::from_iter_values((0..n).map(|i| outputs[i % self.outputs].as_str()))),
        ];
        for (j, name) in names.iter().chain(std::iter::once(&"bias".to_string())).enumerate() {
            fields.push(Field::new(name, DataType::Float32, false));
            cols.push(Arc::new(Float32Array::from_iter_values((0..n).map(|i| self.at(i / self.outputs, i % self.outputs)[j] as f32))));
        }
        let schema = Arc::new(Schema::new(fields));
        let perr = |e: &dyn std::fmt::Display| TrainError::Invalid(format!("{}: {e}", path.display()));
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| perr(&e))?;
        let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).map_err(|e| perr(&e))?;
        w.write(&batch).map_err(|e| perr(&e))?;
        w.close().map_err(|e| perr(&e))?;
        Ok(())
    }
}

/// Test windows scored by permutation importance (lightgbm's `shap_rows` default).
pub const IMPORTANCE_ROWS: usize = 2000;

/// Evenly spaced indices: at most `n` of `0..len` (the rows lightgbm's SHAP explains).
pub fn spaced(len: usize, n: usize) -> Vec<usize> {
    if len <= n {
        return (0..len).collect();
    }
    (0..n).map(|i| i * len / n).collect()
}

/// Permutation importance of every input column.
#[derive(Clone, Debug, PartialEq)]
pub struct Importance {
    /// Windows scored.
    pub rows: usize,
    pub seed: u64,
    /// Log loss of the intact windows.
    pub base_log_loss: f64,
    /// Per column: log loss with that column permuted minus `base_log_loss`.
    pub delta_log_loss: Vec<f64>,
}

/// Mean −ln p(true class) (clamped at 1e-12) of `probs` (`y.len() × k`).
fn log_loss(y: &[u8], probs: &[f32], k: usize) -> f64 {
    let s: f64 = y.iter().enumerate().map(|(i, &c)| -(probs[i * k + c as usize] as f64).clamp(1e-12, 1.0).ln()).sum();
    s / y.len().max(1) as f64
}

fn predict_all(p: &dyn Predictor, x: &[f32], ofi: &[f64], n: usize, t: usize, f: usize, k: usize) -> Result<Vec<f32>> {
    let mut out = Outputs::new(k);
    let chunk = 256;
    for s in (0..n).step_by(chunk) {
        let e = (s + chunk).min(n);
        let b = Batch { x: &x[s * t * f..e * t * f], batch: e - s, window: t, features: f, window_ofi: Some(&ofi[s..e]) };
        p.predict(&b, &mut out)?;
    }
    Ok(out.probs)
}

/// Permutation importance of `p` on at most `max_rows` evenly spaced windows of `set` (one
/// seeded permutation per column, seeded from (`seed`, column)). Costs columns + 1 passes.
pub fn permutation_importance(
    p: &dyn Predictor,
    set: &WindowSet,
    window_ofi: &[f64],
    k: usize,
    seed: u64,
    max_rows: usize,
) -> Result<Importance> {
    let idx = spaced(set.len(), max_rows);
    let (n, t, f) = (idx.len(), set.window, set.data.cols());
    let mut x = Vec::new();
    WindowBatcher { window: t, features: f }.fill(&set.items(&idx), &mut x);
    let ofi: Vec<f64> = idx.iter().map(|&i| window_ofi.get(set.ends[i] as usize).copied().unwrap_or(0.0)).collect();
    let y: Vec<u8> = idx.iter().map(|&i| set.labels[i]).collect();
    let base = log_loss(&y, &predict_all(p, &x, &ofi, n, t, f, k)?, k);
    let mut xp = x.clone();
    let mut perm: Vec<usize> = (0..n).collect();
    let mut delta = Vec::with_capacity(f);
    for j in 0..f {
        perm.iter_mut().enumerate().for_each(|(i, v)| *v = i);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        perm.shuffle(&mut rng);
        for (i, &src) in perm.iter().enumerate() {
            for r in 0..t {
                xp[(i * t + r) * f + j] = x[(src * t + r) * f + j];
            }
        }
        delta.push(log_loss(&y, &predict_all(p, &xp, &ofi, n, t, f, k)?, k) - base);
        for i in 0..n {
            for r in 0..t {
                xp[(i * t + r) * f + j] = x[(i * t + r) * f + j];
            }
        }
    }
    Ok(Importance { rows: n, seed, base_log_loss: base, delta_log_loss: delta })
}

impl Importance {
    /// The `importance.json` document: columns by decreasing Δ log loss.
    pub fn to_json(&self, model: &str, target: &str, names: &[String]) -> Value {
        let mut v: Vec<(usize, f64)> = self.delta_log_loss.iter().copied().enumerate().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        json!({
            "model": model, "target": target,
            "method": "permutation: Δ log loss with one column permuted across the scored test windows (seeded Fisher–Yates)",
            "rows": self.rows, "seed": self.seed, "base_log_loss": self.base_log_loss,
            "importance": v.iter().map(|&(j, d)| json!({"feature": names[j], "delta_log_loss": d})).collect::<Vec<_>>(),
        })
    }

    /// The `n` most important columns.
    pub fn top(&self, names: &[String], n: usize) -> Vec<Value> {
        let mut v: Vec<(usize, f64)> = self.delta_log_loss.iter().copied().enumerate().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.iter().take(n).map(|&(j, d)| json!({"feature": names[j], "delta_log_loss": d})).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Class = sign of column 0 (column 1 is noise): only column 0 matters.
    struct SignOfFirst(flowcast_contract::PredictorInfo);
    impl Predictor for SignOfFirst {
        fn info(&self) -> &flowcast_contract::PredictorInfo {
            &self.0
        }
        fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> flowcast_contract::Result<()> {
            for w in 0..b.batch {
                let v = b.x[(w * b.window + b.window - 1) * b.features];
                out.probs.extend(if v > 0.0 { [0.1, 0.9] } else { [0.9, 0.1] });
            }
            Ok(())
        }
    }

    #[test]
    fn permuting_the_informative_column_costs_log_loss_and_the_noise_column_none() {
        let n = 400;
        let vals: Vec<f32> = (0..n).flat_map(|i| [if i % 3 == 0 { 1.0 } else { -1.0 }, (i % 7) as f32]).collect();
        let m = std::sync::Arc::new(flowcast_contract::window::Matrix { names: vec!["a".into(), "b".into()], values: vals });
        let labels: Vec<u8> = (0..n).map(|i| (i % 3 == 0) as u8).collect();
        let set = WindowSet::new(m, 2, (1..n as u32).collect(), labels[1..].to_vec());
        let p = SignOfFirst(flowcast_contract::PredictorInfo::classifier("s", &["0".into(), "1".into()], 2, 2));
        let imp = permutation_importance(&p, &set, &[], 2, 7, 1000).unwrap();
        // Intact: every window right with p = .9 → −ln .9.
        assert!((imp.base_log_loss - -(0.9f32 as f64).ln()).abs() < 1e-9, "{}", imp.base_log_loss);
        assert_eq!(imp.delta_log_loss[1], 0.0);
        // Permuted: about 1/3·2/3·2 of the windows flip to p = .1: Δ ≈ 0.44·ln 9 ≈ 0.98.
        assert!(imp.delta_log_loss[0] > 0.5, "{:?}", imp.delta_log_loss);
        assert_eq!(imp, permutation_importance(&p, &set, &[], 2, 7, 1000).unwrap(), "seeded");
        assert_eq!(spaced(10, 4), [0, 2, 5, 7]);
    }

    #[test]
    fn totals_and_mean_abs_follow_lightgbms_layout() {
        // 2 rows × 2 outputs × (2 features + bias).
        let v = [1.0, -2.0, 0.5, 0.0, 1.0, 0.25, -1.0, 0.0, 0.5, 3.0, 3.0, 0.25];
        let s = Shap::new(&v, 2, 2, 2).unwrap();
        assert_eq!(s.total(0, 1), 1.25);
        assert_eq!(s.total(1, 0), -0.5);
        assert_eq!(s.mean_abs(), vec![(1.0 + 0.0 + 1.0 + 3.0) / 2.0, (2.0 + 1.0 + 0.0 + 3.0) / 2.0]);
        assert!(Shap::new(&v[..11], 2, 2, 2).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.parquet");
        s.write_parquet(&p, &[10, 20], &["a".into(), "b".into()], &["x".into(), "y".into()]).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&p).unwrap()).unwrap();
        assert_eq!(r.schema().fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["row", "output", "x", "y", "bias"]);
    }
}
