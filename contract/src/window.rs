//! Windows → tensors without per-window copies.
//!
//! All inputs of a dataset live in ONE contiguous row-major `f32` matrix ([`Matrix`]: rows ×
//! columns, a row per sample row of the book). A window of T rows ending at row e is the slice
//! `values[(e+1−T)·F .. (e+1)·F]`: a [`WindowSet`] stores only each window's end row (u32),
//! class (u8) and target value (f32, bps), and its items ([`WindowItem`]) hold a shared handle to
//! the matrix plus the start row, so a data loader never copies. [`WindowBatcher::fill`] copies
//! the B views once into the `[B, T, F]` buffer, the single copy any batch needs (burn's batcher
//! in flowcast-train and every `Predictor` use it).

use std::sync::Arc;

/// Row-major `f32` inputs: `rows × names.len()`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Matrix {
    pub names: Vec<String>,
    pub values: Vec<f32>,
}

impl Matrix {
    pub fn cols(&self) -> usize {
        self.names.len()
    }
    pub fn rows(&self) -> usize {
        if self.names.is_empty() {
            0
        } else {
            self.values.len() / self.names.len()
        }
    }
    pub fn row(&self, r: usize) -> &[f32] {
        let c = self.cols();
        &self.values[r * c..(r + 1) * c]
    }
    /// Heap bytes of the values.
    pub fn bytes(&self) -> usize {
        self.values.len() * std::mem::size_of::<f32>()
    }
}

/// The windows of one split: views into a shared [`Matrix`].
#[derive(Clone, Debug)]
pub struct WindowSet {
    pub data: Arc<Matrix>,
    /// Rows per window (T).
    pub window: usize,
    /// Last row (inclusive) of each window; the window is rows `end+1−T ..= end`.
    pub ends: Vec<u32>,
    /// Class of each window (the label of its end row).
    pub labels: Vec<u8>,
    /// Target value of each window's end row in bps: regression targets only (empty otherwise).
    pub values: Vec<f32>,
}

impl WindowSet {
    /// Windows of `window` rows ending at each row of `ends` (checked to fit the matrix).
    pub fn new(data: Arc<Matrix>, window: usize, ends: Vec<u32>, labels: Vec<u8>) -> WindowSet {
        assert!(window >= 1, "window must be at least 1 row");
        assert_eq!(ends.len(), labels.len(), "one label per window");
        let rows = data.rows();
        assert!(ends.iter().all(|&e| (e as usize) + 1 >= window && (e as usize) < rows), "window outside the matrix");
        WindowSet { data, window, ends, labels, values: Vec::new() }
    }

    /// The same windows with each end row's target value (bps) attached.
    pub fn with_values(mut self, values: Vec<f32>) -> WindowSet {
        assert_eq!(values.len(), self.ends.len(), "one value per window");
        self.values = values;
        self
    }

    /// Labels as class indices.
    pub fn targets(&self) -> Vec<usize> {
        self.labels.iter().map(|&c| c as usize).collect()
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// First row of window `i`.
    #[inline]
    pub fn start(&self, i: usize) -> usize {
        self.ends[i] as usize + 1 - self.window
    }

    /// The `T × F` values of window `i`: a borrowed slice of the shared matrix.
    #[inline]
    pub fn view(&self, i: usize) -> &[f32] {
        let f = self.data.cols();
        let s = self.start(i);
        &self.data.values[s * f..(s + self.window) * f]
    }

    pub fn n_classes_seen(&self) -> usize {
        self.labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0)
    }

    /// Count of windows per class `0..k`.
    pub fn class_counts(&self, k: usize) -> Vec<u64> {
        let mut c = vec![0u64; k];
        for &l in &self.labels {
            c[l as usize] += 1;
        }
        c
    }

    /// Bytes this set adds on top of the shared matrix (its index: end row + class per window).
    pub fn index_bytes(&self) -> usize {
        self.ends.len() * (std::mem::size_of::<u32>() + std::mem::size_of::<u8>()) + self.values.len() * std::mem::size_of::<f32>()
    }

    /// Items `idx` (cheap handles) for a batch.
    pub fn items(&self, idx: &[usize]) -> Vec<WindowItem> {
        idx.iter().map(|&i| self.item(i)).collect()
    }

    #[inline]
    fn item(&self, i: usize) -> WindowItem {
        WindowItem { data: Arc::clone(&self.data), start: self.start(i), window: self.window, label: self.labels[i] }
    }
}

/// One window: a handle to the shared matrix and the window's first row. Cloning it copies a
/// pointer, never the values.
#[derive(Clone, Debug)]
pub struct WindowItem {
    data: Arc<Matrix>,
    start: usize,
    window: usize,
    pub label: u8,
}

impl WindowItem {
    /// The window's `T × F` values, borrowed from the shared matrix.
    #[inline]
    pub fn view(&self) -> &[f32] {
        let f = self.data.cols();
        &self.data.values[self.start * f..(self.start + self.window) * f]
    }
    pub fn start(&self) -> usize {
        self.start
    }
    /// True if this item borrows from `m` (no copy was made).
    pub fn shares(&self, m: &Arc<Matrix>) -> bool {
        Arc::ptr_eq(&self.data, m)
    }
}

/// Copies window views into one `[B, T, F]` buffer.
#[derive(Clone, Copy, Debug)]
pub struct WindowBatcher {
    pub window: usize,
    pub features: usize,
}

impl WindowBatcher {
    /// `[B·T·F]` buffer of the items' views, in order (the one copy per batch).
    pub fn fill(&self, items: &[WindowItem], buf: &mut Vec<f32>) {
        buf.clear();
        buf.reserve(items.len() * self.window * self.features);
        for it in items {
            let v = it.view();
            debug_assert_eq!(v.len(), self.window * self.features);
            buf.extend_from_slice(v);
        }
    }
}

/// Memory of a window dataset against its raw columns (the issue's ≤ ~2× budget).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemoryReport {
    pub rows: usize,
    pub columns: usize,
    pub windows: usize,
    pub window: usize,
    /// rows × columns × 4 bytes: the input columns themselves as f32.
    pub raw_column_bytes: usize,
    /// The shared matrix plus every split's window index.
    pub dataset_bytes: usize,
    /// dataset_bytes / raw_column_bytes.
    pub ratio: f64,
    /// What per-window copies would take: windows × T × columns × 4 bytes.
    pub copied_windows_bytes: usize,
}

impl MemoryReport {
    pub fn of(data: &Matrix, sets: &[&WindowSet]) -> MemoryReport {
        let windows: usize = sets.iter().map(|s| s.len()).sum();
        let window = sets.first().map(|s| s.window).unwrap_or(0);
        let raw = data.rows() * data.cols() * std::mem::size_of::<f32>();
        let dataset = data.bytes() + sets.iter().map(|s| s.index_bytes()).sum::<usize>();
        MemoryReport {
            rows: data.rows(),
            columns: data.cols(),
            windows,
            window,
            raw_column_bytes: raw,
            dataset_bytes: dataset,
            ratio: if raw > 0 { dataset as f64 / raw as f64 } else { 0.0 },
            copied_windows_bytes: windows * window * data.cols() * std::mem::size_of::<f32>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize, cols: usize) -> Arc<Matrix> {
        Arc::new(Matrix { names: (0..cols).map(|c| format!("c{c}")).collect(), values: (0..rows * cols).map(|v| v as f32).collect() })
    }

    #[test]
    fn items_are_views_into_one_array() {
        let m = matrix(10, 3);
        let ws = WindowSet::new(m.clone(), 4, vec![3, 7, 9], vec![0, 2, 1]);
        let it = ws.items(&[1]).remove(0);
        assert!(it.shares(&m));
        // Same memory, not an equal copy.
        assert_eq!(it.view().as_ptr(), m.values[4 * 3..].as_ptr());
        assert_eq!(it.view(), &m.values[12..24]);
        assert_eq!(ws.view(2), &m.values[18..30]);
        assert_eq!(ws.len(), 3);
        assert_eq!(ws.class_counts(3), vec![1, 1, 1]);
    }

    #[test]
    fn memory_is_the_matrix_plus_a_small_index() {
        let m = matrix(1000, 40);
        let ends: Vec<u32> = (99..1000).collect();
        let ws = WindowSet::new(m.clone(), 100, ends.clone(), vec![0; ends.len()]);
        let r = MemoryReport::of(&m, &[&ws]);
        assert!(r.ratio < 1.05, "{r:?}");
        assert_eq!(r.copied_windows_bytes, 901 * 100 * 40 * 4);
    }
}
