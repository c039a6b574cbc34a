//! The batch output of the engine: feature rows at the sample points of a dataset.

/// Features (and labels) sampled at every batch end of a synced book: row-major `values`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureTable {
    /// Column names, in order.
    pub names: Vec<String>,
    /// Index into `Dataset::events` of the batch-end event of each row.
    pub event_index: Vec<u64>,
    /// `ts_exchange` of each row (ns UTC).
    pub ts: Vec<i64>,
    /// Mid price in ticks at each row (NaN if a side is empty).
    pub mid: Vec<f64>,
    /// `rows × names.len()` values, row-major; NaN during warm-up.
    pub values: Vec<f64>,
}

impl FeatureTable {
    pub fn rows(&self) -> usize {
        self.event_index.len()
    }
    pub fn cols(&self) -> usize {
        self.names.len()
    }
    pub fn row(&self, r: usize) -> &[f64] {
        let c = self.cols();
        &self.values[r * c..(r + 1) * c]
    }
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let j = self.names.iter().position(|n| n == name)?;
        Some((0..self.rows()).map(|r| self.values[r * self.cols() + j]).collect())
    }
}
