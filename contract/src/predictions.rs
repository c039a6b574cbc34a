//! `predictions.parquet`: one row per window — its row, event index, exchange time, label,
//! arg-max prediction and one probability column per class (`p_<class>`), plus `regression` and
//! `std` (bps) where the predictor has them.

use crate::error::{ContractError, Result};
use crate::metrics::argmax;
use crate::predictor::Outputs;
use crate::window::WindowSet;
use arrow_array::{ArrayRef, Float32Array, RecordBatch, TimestampNanosecondArray, UInt64Array, UInt8Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use flowcast_datasets::labels::SampleRows;
use std::path::Path;
use std::sync::Arc;

/// Writes the predictions `out` of the windows of `set` (rows from `rows`).
pub fn write_predictions(path: &Path, set: &WindowSet, rows: &SampleRows, classes: &[String], out: &Outputs) -> Result<()> {
    let k = classes.len();
    if out.len() != set.len() {
        return Err(ContractError::Invalid(format!("{}: {} predictions for {} windows", path.display(), out.len(), set.len())));
    }
    let mut fields = vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("event_index", DataType::UInt64, false),
        Field::new("ts_exchange", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("label", DataType::UInt8, false),
    ];
    let ends = &set.ends;
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(ends.iter().map(|&e| e as u64))),
        Arc::new(UInt64Array::from_iter_values(ends.iter().map(|&e| rows.event_index[e as usize]))),
        Arc::new(TimestampNanosecondArray::from_iter_values(ends.iter().map(|&e| rows.ts[e as usize])).with_timezone("UTC")),
        Arc::new(UInt8Array::from(set.labels.clone())),
    ];
    if !out.probs.is_empty() {
        fields.push(Field::new("pred", DataType::UInt8, false));
        cols.push(Arc::new(UInt8Array::from_iter_values(out.probs.chunks(k).map(|r| argmax(r) as u8))));
        for (c, name) in classes.iter().enumerate() {
            fields.push(Field::new(format!("p_{name}"), DataType::Float32, false));
            cols.push(Arc::new(Float32Array::from_iter_values(out.probs.chunks(k).map(|r| r[c]))));
        }
    }
    for (name, v) in [("regression", &out.regression), ("std", &out.std)] {
        if !v.is_empty() {
            fields.push(Field::new(name, DataType::Float32, false));
            cols.push(Arc::new(Float32Array::from(v.clone())));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let perr = |e: &dyn std::fmt::Display| ContractError::card(path, "parquet", e.to_string());
    let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| perr(&e))?;
    let file = std::fs::File::create(path).map_err(|e| ContractError::io(path, e))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, None).map_err(|e| perr(&e))?;
    w.write(&batch).map_err(|e| perr(&e))?;
    w.close().map_err(|e| perr(&e))?;
    Ok(())
}
