//! Engineered feature columns from the feature engine (`flowcast_datasets::features`).

use crate::data::FeatureSource;
use crate::error::{Result, TrainError};
use flowcast_datasets::labels::SampleRows;
use flowcast_datasets::store::Dataset;

/// Feature names, row-major values on `rows`, and the fitted set's JSON.
pub fn compute(
    _ds: &Dataset,
    _rows: &SampleRows,
    _src: &FeatureSource,
    _train: std::ops::Range<usize>,
) -> Result<(Vec<String>, Vec<f64>, serde_json::Value)> {
    Err(TrainError::Invalid(
        "engineered feature columns need the feature engine (features branch), not merged into this build yet; use [columns] kind = \"book\"".into(),
    ))
}
