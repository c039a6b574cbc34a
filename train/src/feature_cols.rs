//! Engineered feature columns: the feature engine (`flowcast_datasets::features`) fitted on the
//! training rows and computed on every sample row (the same rows as the labels).

use crate::data::FeatureSource;
use crate::error::{Result, TrainError};
use flowcast_datasets::features::{self, FeatureSet, FeatureSpec};
use flowcast_datasets::labels::SampleRows;
use flowcast_datasets::store::Dataset;

/// Feature names, row-major values on `rows`, and the fitted set's JSON.
pub fn compute(
    ds: &Dataset,
    rows: &SampleRows,
    src: &FeatureSource,
    train: std::ops::Range<usize>,
) -> Result<(Vec<String>, Vec<f64>, serde_json::Value)> {
    let set = match src {
        FeatureSource::Specs(specs) if specs.is_empty() => features::fit(ds, &FeatureSet::default_set(), train)?,
        FeatureSource::Specs(specs) => {
            let specs: Vec<FeatureSpec> = specs
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    serde_json::from_value(v.clone())
                        .map_err(|e| TrainError::Invalid(format!("[[columns.feature]] #{}: {e}", i + 1)))
                })
                .collect::<Result<_>>()?;
            features::fit(ds, &FeatureSet::new(specs)?, train)?
        }
        FeatureSource::Fitted(json) => FeatureSet::from_json(&json.to_string())?,
    };
    let table = features::compute(ds, &set)?;
    if table.event_index != rows.event_index {
        return Err(TrainError::Invalid(format!(
            "feature rows ({}) differ from the label rows ({})",
            table.rows(),
            rows.len()
        )));
    }
    let json: serde_json::Value = serde_json::from_str(&set.to_json()).expect("feature set JSON");
    Ok((table.names, table.values, json))
}
