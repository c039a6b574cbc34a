//! Information coefficient (IC): the Spearman rank correlation between a feature at row t and the
//! forward mid log return from t over a horizon (a label column), computed separately on each
//! split over the rows where both are finite. Spearman rather than Pearson because features and
//! returns are heavy-tailed and only the ordering matters for a signal (Grinold & Kahn 2000).

use crate::analysis::stats::Spearman;
use crate::features::FeatureTable;
use crate::splits::{Split, Splits};
use serde_json::{json, Map, Value};

/// A forward-return column and its name (e.g. `clock_10s`).
pub struct Horizon<'a> {
    pub name: String,
    pub forward_return: &'a [f64],
}

/// Splits the IC is reported on.
pub const IC_SPLITS: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

/// Per feature (in table order): `{horizon: {train, validation, test, n_train, n_validation, n_test}}`
/// with IC values (null when undefined: fewer than 2 pairs or no variance).
pub fn information_coefficients(table: &FeatureTable, horizons: &[Horizon], splits: &Splits) -> Vec<Value> {
    let c = table.cols();
    let mut sp = Spearman::default();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    (0..c)
        .map(|j| {
            let mut per_h = Map::new();
            for h in horizons {
                let mut o = Map::new();
                for s in IC_SPLITS {
                    x.clear();
                    y.clear();
                    for r in splits.rows(s) {
                        x.push(table.values[r * c + j]);
                        y.push(h.forward_return[r]);
                    }
                    let (ic, n) = sp.corr(&x, &y);
                    o.insert(s.name().into(), if ic.is_finite() { json!(ic) } else { Value::Null });
                    o.insert(format!("n_{}", s.name()), json!(n));
                }
                per_h.insert(h.name.clone(), Value::Object(o));
            }
            Value::Object(per_h)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ic_per_split() {
        // Feature 0 predicts the return perfectly in rank on train, inversely on test; feature 1 is NaN.
        let n = 10;
        let ret: Vec<f64> = (0..n).map(|i| (i as f64).powi(3)).collect();
        let mut values = Vec::new();
        for i in 0..n {
            values.push(if i < 6 { i as f64 } else { -(i as f64) });
            values.push(f64::NAN);
        }
        let table = FeatureTable {
            names: vec!["a".into(), "b".into()],
            event_index: (0..n as u64).collect(),
            ts: (0..n as i64).collect(),
            mid: vec![1.0; n],
            values,
        };
        let splits = Splits { n, train: 0..6, validation: 6..6, test: 7..10 };
        let ic = information_coefficients(&table, &[Horizon { name: "h".into(), forward_return: &ret }], &splits);
        assert_eq!(ic[0]["h"]["train"], json!(1.0));
        assert_eq!(ic[0]["h"]["test"], json!(-1.0));
        assert_eq!(ic[0]["h"]["validation"], Value::Null);
        assert_eq!(ic[0]["h"]["n_train"], json!(6));
        assert_eq!(ic[1]["h"]["train"], Value::Null);
        assert_eq!(ic[1]["h"]["n_train"], json!(0));
    }
}
