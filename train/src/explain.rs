//! Feature attributions of tree models: TreeSHAP contributions (Lundberg, Erion & Lee 2018,
//! "Consistent individualized feature attribution for tree ensembles"; LightGBM's `pred_contrib`)
//! as LightGBM lays them out — per row, per output, one value per feature then the bias (the
//! expected raw score) — written as `shap.parquet` and summarised as mean |SHAP| per feature.

use crate::error::{Result, TrainError};
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
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

#[cfg(test)]
mod tests {
    use super::*;

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
