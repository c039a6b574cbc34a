//! Writers (and a reader, for checks and notebooks' sake) of the feature + label table produced by
//! `flowcast features compute`.
//!
//! Columns, in order: `event_index` (uint64: row of the sample's batch-end event in
//! events.parquet), `ts` (timestamp[ns, UTC]; in CSV integer ns since epoch), `split`
//! (`train`/`validation`/`test`/`gap`), every feature (float64, NaN during warm-up), then every
//! label ([`Labels::column_names`]): value and ticks columns float64 (NaN = unlabelled), class
//! columns int8 −1/0/+1 (null = unlabelled). In CSV, NaN and null are empty fields.

use crate::error::{DataError, Result};
use crate::features::FeatureTable;
use crate::labels::Labels;
use crate::splits::Split;
use arrow_array::{Array, ArrayRef, Float64Array, Int8Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

const CHUNK: usize = 1 << 16;

/// The table to write: feature rows, the split of each row and the labels of each row.
pub struct OutputTable<'a> {
    pub features: &'a FeatureTable,
    pub split: &'a [Split],
    pub labels: &'a Labels,
}

/// A label column, borrowed from [`Labels`].
enum LabelCol<'a> {
    F64(&'a [f64]),
    Class(&'a [Option<i8>]),
}

impl<'a> OutputTable<'a> {
    fn check(&self) -> Result<()> {
        let n = self.features.rows();
        if self.split.len() != n || self.labels.n != n || self.features.values.len() != n * self.features.cols() {
            return Err(DataError::Invalid(format!(
                "output table: {n} feature rows, {} split rows, {} label rows, {} values",
                self.split.len(),
                self.labels.n,
                self.features.values.len()
            )));
        }
        Ok(())
    }

    fn label_cols(&self) -> Vec<(String, LabelCol<'a>)> {
        let mut v = Vec::new();
        for t in &self.labels.targets {
            v.push((t.target.value_column(), LabelCol::F64(&t.value)));
            if let Some(name) = t.target.ticks_column() {
                v.push((name, LabelCol::F64(&t.ticks)));
            }
            v.push((t.target.class_column(), LabelCol::Class(&t.class)));
        }
        v
    }

    /// Every column name, in file order.
    pub fn column_names(&self) -> Vec<String> {
        let mut v: Vec<String> = ["event_index", "ts", "split"].iter().map(|s| s.to_string()).collect();
        v.extend(self.features.names.iter().cloned());
        v.extend(self.label_cols().into_iter().map(|(n, _)| n));
        v
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Store { path: path.to_path_buf(), msg: e.to_string() }
}

fn schema(out: &OutputTable) -> Arc<Schema> {
    let mut f = vec![
        Field::new("event_index", DataType::UInt64, false),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false),
        Field::new("split", DataType::Utf8, false),
    ];
    f.extend(out.features.names.iter().map(|n| Field::new(n, DataType::Float64, false)));
    for (n, c) in out.label_cols() {
        f.push(match c {
            LabelCol::F64(_) => Field::new(n, DataType::Float64, false),
            LabelCol::Class(_) => Field::new(n, DataType::Int8, true),
        });
    }
    Arc::new(Schema::new(f))
}

/// Write `features.parquet` (Snappy; one row group per 2^20 rows).
pub fn write_parquet(path: &Path, out: &OutputTable) -> Result<()> {
    out.check()?;
    let schema = schema(out);
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(1 << 20)).build();
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| io_err(path, e))?;
    let t = out.features;
    let (n, c) = (t.rows(), t.cols());
    let labels = out.label_cols();
    let mut a = 0;
    while a < n || (n == 0 && a == 0) {
        let b = (a + CHUNK).min(n);
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(t.event_index[a..b].to_vec())),
            Arc::new(TimestampNanosecondArray::from(t.ts[a..b].to_vec()).with_timezone("UTC")),
            Arc::new(StringArray::from_iter_values(out.split[a..b].iter().map(|s| s.name()))),
        ];
        for j in 0..c {
            cols.push(Arc::new(Float64Array::from_iter_values((a..b).map(|r| t.values[r * c + j]))));
        }
        for (_, col) in &labels {
            cols.push(match col {
                LabelCol::F64(v) => Arc::new(Float64Array::from(v[a..b].to_vec())) as ArrayRef,
                LabelCol::Class(v) => Arc::new(Int8Array::from(v[a..b].to_vec())) as ArrayRef,
            });
        }
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| io_err(path, e))?;
        w.write(&batch).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        a = b;
    }
    w.close().map_err(|e| io_err(path, e))?;
    Ok(())
}

/// Write the same table as CSV with a header line.
pub fn write_csv(path: &Path, out: &OutputTable) -> Result<()> {
    out.check()?;
    let file = std::fs::File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let t = out.features;
    let c = t.cols();
    let labels = out.label_cols();
    let io = |e: std::io::Error| DataError::io(path, e);
    w.write_all(out.column_names().join(",").as_bytes()).map_err(io)?;
    w.write_all(b"\n").map_err(io)?;
    let num = |w: &mut std::io::BufWriter<std::fs::File>, v: f64| -> std::io::Result<()> {
        if v.is_finite() {
            write!(w, ",{v}")
        } else {
            w.write_all(b",")
        }
    };
    for r in 0..t.rows() {
        write!(w, "{},{},{}", t.event_index[r], t.ts[r], out.split[r].name()).map_err(io)?;
        for &v in t.row(r) {
            num(&mut w, v).map_err(io)?;
        }
        debug_assert_eq!(t.row(r).len(), c);
        for (_, col) in &labels {
            match col {
                LabelCol::F64(v) => num(&mut w, v[r]).map_err(io)?,
                LabelCol::Class(v) => match v[r] {
                    Some(k) => write!(w, ",{k}").map_err(io)?,
                    None => w.write_all(b",").map_err(io)?,
                },
            }
        }
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)
}

/// A column read back from `features.parquet`.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnValues {
    U64(Vec<u64>),
    /// Timestamp ns UTC.
    Ts(Vec<i64>),
    Str(Vec<String>),
    F64(Vec<f64>),
    /// Class labels; `None` = null.
    I8(Vec<Option<i8>>),
}

/// Read every column of a `features.parquet` (for checks, tests and small tables).
pub fn read_parquet(path: &Path) -> Result<Vec<(String, ColumnValues)>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| io_err(path, e))?
        .with_batch_size(CHUNK)
        .build()
        .map_err(|e| io_err(path, e))?;
    let mut cols: Vec<(String, ColumnValues)> = Vec::new();
    for batch in reader {
        let b = batch.map_err(|e| io_err(path, e))?;
        if cols.is_empty() {
            for f in b.schema().fields() {
                let v = match f.data_type() {
                    DataType::UInt64 => ColumnValues::U64(Vec::new()),
                    DataType::Timestamp(..) => ColumnValues::Ts(Vec::new()),
                    DataType::Utf8 => ColumnValues::Str(Vec::new()),
                    DataType::Float64 => ColumnValues::F64(Vec::new()),
                    DataType::Int8 => ColumnValues::I8(Vec::new()),
                    other => return Err(io_err(path, format!("column {}: unexpected type {other}", f.name()))),
                };
                cols.push((f.name().clone(), v));
            }
        }
        for (i, (name, out)) in cols.iter_mut().enumerate() {
            let a = b.column(i);
            let bad = || io_err(path, format!("column {name}: type changed between row groups"));
            match out {
                ColumnValues::U64(v) => v.extend(a.as_any().downcast_ref::<UInt64Array>().ok_or_else(bad)?.values()),
                ColumnValues::Ts(v) => v.extend(a.as_any().downcast_ref::<TimestampNanosecondArray>().ok_or_else(bad)?.values()),
                ColumnValues::Str(v) => {
                    v.extend(a.as_any().downcast_ref::<StringArray>().ok_or_else(bad)?.iter().map(|s| s.unwrap_or("").to_string()))
                }
                ColumnValues::F64(v) => v.extend(a.as_any().downcast_ref::<Float64Array>().ok_or_else(bad)?.values()),
                ColumnValues::I8(v) => v.extend(a.as_any().downcast_ref::<Int8Array>().ok_or_else(bad)?.iter()),
            }
        }
    }
    Ok(cols)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{AlphaRule, LabelConfig, SampleRows};
    use crate::splits::{SplitConfig, Splits};

    fn sample() -> (FeatureTable, Labels, Splits) {
        let n = 50;
        let ts: Vec<i64> = (0..n as i64).map(|i| 1_700_000_000_000_000_000 + i * 1_000_000).collect();
        let mid: Vec<f64> = (0..n).map(|i| 1000.0 + ((i * 7) % 9) as f64 * 0.5).collect();
        let mut values = Vec::new();
        for i in 0..n {
            values.push(if i < 3 { f64::NAN } else { i as f64 * 0.1 });
            values.push(-1.0 / (i as f64 + 1.0));
        }
        let table = FeatureTable {
            names: vec!["f_a".into(), "f_b".into()],
            event_index: (0..n as u64).map(|i| i * 3 + 1).collect(),
            ts: ts.clone(),
            mid: mid.clone(),
            values,
        };
        let cfg = LabelConfig {
            smooth_k: vec![2],
            smooth_past: false,
            event_horizons: vec![3],
            clock_horizons_ns: vec![5_000_000],
            alpha: AlphaRule::BalancedOnTrain,
        };
        let mut labels = Labels::compute(&SampleRows::new(ts.clone(), mid), &cfg).unwrap();
        let splits = Splits::chronological(&labels.max_reach(), &ts, &SplitConfig::default()).unwrap();
        labels.fit_alpha(splits.train.clone());
        (table, labels, splits)
    }

    fn same(a: f64, b: f64) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn parquet_roundtrip_and_csv() {
        let (table, labels, splits) = sample();
        let split = splits.assignment();
        let out = OutputTable { features: &table, split: &split, labels: &labels };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("features.parquet");
        write_parquet(&p, &out).unwrap();
        let cols = read_parquet(&p).unwrap();
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, out.column_names().iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert_eq!(cols[0].1, ColumnValues::U64(table.event_index.clone()));
        assert_eq!(cols[1].1, ColumnValues::Ts(table.ts.clone()));
        assert_eq!(cols[2].1, ColumnValues::Str(split.iter().map(|s| s.name().to_string()).collect()));
        for (j, name) in table.names.iter().enumerate() {
            let ColumnValues::F64(v) = &cols[3 + j].1 else { panic!("{name}") };
            let want = table.column(name).unwrap();
            assert!(v.iter().zip(&want).all(|(a, b)| same(*a, *b)), "{name}");
        }
        let mut k = 3 + table.cols();
        for t in &labels.targets {
            let ColumnValues::F64(v) = &cols[k].1 else { panic!() };
            assert!(v.iter().zip(&t.value).all(|(a, b)| same(*a, *b)));
            k += 1;
            if t.target.ticks_column().is_some() {
                let ColumnValues::F64(v) = &cols[k].1 else { panic!() };
                assert!(v.iter().zip(&t.ticks).all(|(a, b)| same(*a, *b)));
                k += 1;
            }
            assert_eq!(cols[k].1, ColumnValues::I8(t.class.clone()));
            assert!(t.class.iter().any(|c| c.is_none()) && t.class.iter().any(|c| c.is_some()));
            k += 1;
        }
        assert_eq!(k, cols.len());

        let csv = dir.path().join("features.csv");
        write_csv(&csv, &out).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), table.rows() + 1);
        assert_eq!(lines[0].split(',').count(), out.column_names().len());
        // Row 0: warm-up NaN is an empty field; values parse back exactly.
        let f: Vec<&str> = lines[1].split(',').collect();
        assert_eq!((f[0], f[1], f[2], f[3]), ("1", "1700000000000000000", "train", ""));
        assert_eq!(f[4].parse::<f64>().unwrap(), -1.0);
        let f: Vec<&str> = lines[10].split(',').collect();
        assert_eq!(f[3].parse::<f64>().unwrap(), 9.0 * 0.1);
        assert_eq!(f[4].parse::<f64>().unwrap(), -1.0 / 10.0);
        // The last row's labels run past the end: empty.
        assert!(lines[table.rows()].split(',').skip(5).all(|x| x.is_empty()));
    }
}
