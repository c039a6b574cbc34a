//! The search space: one distribution per experiment key (a dotted path), and how a sampled
//! value is written into the experiment. Samplers work in an internal real coordinate per
//! parameter (the log for log-scaled ones, the index for categorical ones); see docs/sweeps.md.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The sampled value of every parameter of one trial, by dotted path.
pub type Params = BTreeMap<String, Value>;

/// One parameter's distribution (`[params."training.lr"] dist = "log_uniform" ...`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// Real in [low, high], uniform.
    Uniform {
        low: f64,
        high: f64,
        /// Points of a grid search (evenly spaced, both ends included).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grid_points: Option<usize>,
    },
    /// Real in [low, high] (low > 0), uniform in ln x.
    LogUniform {
        low: f64,
        high: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grid_points: Option<usize>,
    },
    /// Integer in {low, low + step, …} up to high; `log`: uniform in ln x (low ≥ 1).
    Int {
        low: i64,
        high: i64,
        #[serde(default = "one")]
        step: i64,
        #[serde(default)]
        log: bool,
    },
    /// One of the listed values (any TOML value: numbers, strings, tables).
    Categorical { values: Vec<Value> },
}

fn one() -> i64 {
    1
}

impl Distribution {
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let bad = |r: String| Err(format!("params.{name:?}: {r}"));
        match self {
            Distribution::Uniform { low, high, grid_points } | Distribution::LogUniform { low, high, grid_points } => {
                if !(low.is_finite() && high.is_finite() && low < high) {
                    return bad(format!("need finite low < high, got low = {low}, high = {high}"));
                }
                if matches!(self, Distribution::LogUniform { .. }) && *low <= 0.0 {
                    return bad(format!("log_uniform needs low > 0, got {low}"));
                }
                if grid_points.is_some_and(|g| g < 2) {
                    return bad("grid_points must be at least 2".into());
                }
            }
            Distribution::Int { low, high, step, log } => {
                if low > high || *step < 1 {
                    return bad(format!("need low ≤ high and step ≥ 1, got low = {low}, high = {high}, step = {step}"));
                }
                if *log && *low < 1 {
                    return bad(format!("a log int needs low ≥ 1, got {low}"));
                }
                if *log && *step != 1 {
                    return bad("a log int needs step = 1".into());
                }
            }
            Distribution::Categorical { values } => {
                if values.is_empty() {
                    return bad("categorical needs at least one value".into());
                }
            }
        }
        Ok(())
    }

    /// Bounds of the internal coordinate (ints: half a step beyond each end, so rounding gives
    /// every value the same width).
    pub fn internal_bounds(&self) -> (f64, f64) {
        match self {
            Distribution::Uniform { low, high, .. } => (*low, *high),
            Distribution::LogUniform { low, high, .. } => (low.ln(), high.ln()),
            Distribution::Int { low, high, step, log: false } => (*low as f64 - 0.5 * *step as f64, *high as f64 + 0.5 * *step as f64),
            Distribution::Int { low, high, log: true, .. } => ((*low as f64 - 0.5).max(0.5).ln(), (*high as f64 + 0.5).ln()),
            Distribution::Categorical { values } => (0.0, values.len() as f64),
        }
    }

    pub fn is_categorical(&self) -> bool {
        matches!(self, Distribution::Categorical { .. })
    }

    /// Whether plots use a log axis.
    pub fn is_log(&self) -> bool {
        matches!(self, Distribution::LogUniform { .. } | Distribution::Int { log: true, .. })
    }

    /// The value at internal coordinate `u` (clamped into the range).
    pub fn from_internal(&self, u: f64) -> Value {
        let (a, b) = self.internal_bounds();
        let u = u.clamp(a, b);
        match self {
            Distribution::Uniform { .. } => json_f64(u),
            Distribution::LogUniform { low, high, .. } => json_f64(u.exp().clamp(*low, *high)),
            Distribution::Int { low, high, step, log: false } => {
                let k = ((u - *low as f64) / *step as f64).round() as i64;
                Value::from((low + k * step).clamp(*low, low + (high - low) / step * step))
            }
            Distribution::Int { low, high, log: true, .. } => Value::from((u.exp().round() as i64).clamp(*low, *high)),
            Distribution::Categorical { values } => values[(u.floor() as usize).min(values.len() - 1)].clone(),
        }
    }

    /// The internal coordinate of a value (categorical: the index + 0.5, the middle of its cell).
    pub fn to_internal(&self, v: &Value) -> Option<f64> {
        match self {
            Distribution::Uniform { .. } | Distribution::Int { log: false, .. } => v.as_f64(),
            Distribution::LogUniform { .. } | Distribution::Int { log: true, .. } => v.as_f64().filter(|x| *x > 0.0).map(f64::ln),
            Distribution::Categorical { values } => values.iter().position(|c| c == v).map(|i| i as f64 + 0.5),
        }
    }

    /// Index of a categorical value.
    pub fn category(&self, v: &Value) -> Option<usize> {
        match self {
            Distribution::Categorical { values } => values.iter().position(|c| c == v),
            _ => None,
        }
    }

    /// Grid values: the categories, every integer step, or `grid_points` evenly spaced (in ln x
    /// for log ones).
    pub fn grid(&self, name: &str) -> Result<Vec<Value>, String> {
        Ok(match self {
            Distribution::Categorical { values } => values.clone(),
            Distribution::Int { low, high, step, .. } => (0..=(high - low) / step).map(|k| Value::from(low + k * step)).collect(),
            Distribution::Uniform { grid_points, .. } | Distribution::LogUniform { grid_points, .. } => {
                let n = grid_points.ok_or_else(|| format!("params.{name:?}: a grid search over a real parameter needs grid_points"))?;
                let (a, b) = self.internal_bounds();
                (0..n).map(|i| self.from_internal(a + (b - a) * i as f64 / (n - 1) as f64)).collect()
            }
        })
    }
}

/// A float as JSON, rounded to 12 significant digits so the TOML/JSON round trip and the
/// tables show the value the trial used.
fn json_f64(x: f64) -> Value {
    let r: f64 = format!("{x:.11e}").parse().unwrap_or(x);
    Value::from(r)
}

/// Writes `value` at the dotted `path` of an experiment (as the JSON of the resolved
/// `Experiment`). Array elements are addressed by index (`model.0.hidden`); `models` is read as
/// the file's `model`, `labels`/`targets` as `label`, and a one-element array may be skipped
/// (`label.horizon`). Missing tables on the way are created, so the experiment's own validation
/// names a misspelt key.
pub fn apply(exp: &mut Value, path: &str, value: &Value) -> Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(format!("params.{path:?}: empty segment in the dotted path"));
    }
    let mut node = exp;
    let mut i = 0;
    while i < segs.len() {
        let seg = match (i, segs[i]) {
            (0, "models") => "model",
            (0, "labels" | "targets") => "label",
            (_, s) => s,
        };
        let last = i + 1 == segs.len();
        node = match node {
            Value::Array(a) => match seg.parse::<usize>() {
                Ok(k) if k < a.len() => {
                    i += 1;
                    &mut a[k]
                }
                Ok(k) => return Err(format!("params.{path:?}: index {k} is out of range (the array has {} elements)", a.len())),
                Err(_) if a.len() == 1 => &mut a[0], // same segment again, inside the only element
                Err(_) => return Err(format!("params.{path:?}: {seg:?} needs an index: the array has {} elements", a.len())),
            },
            Value::Object(m) => {
                i += 1;
                if last {
                    m.insert(seg.to_string(), value.clone());
                    return Ok(());
                }
                m.entry(seg.to_string()).or_insert_with(|| Value::Object(Default::default()))
            }
            other => return Err(format!("params.{path:?}: {seg:?} is inside a {} value, not a table", kind(other))),
        };
        if last && i == segs.len() {
            *node = value.clone();
            return Ok(());
        }
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_reach_arrays_tables_and_aliases() {
        let mut e = json!({"model": [{"name": "lstm", "hidden": 8}], "label": [{"horizon": 5}], "training": {"lr": 0.1}});
        apply(&mut e, "models.0.hidden", &json!(32)).unwrap();
        apply(&mut e, "label.horizon", &json!(20)).unwrap();
        apply(&mut e, "training.lr", &json!(0.01)).unwrap();
        apply(&mut e, "training.early_stopping.patience", &json!(2)).unwrap();
        assert_eq!(e["model"][0]["hidden"], 32);
        assert_eq!(e["label"][0]["horizon"], 20);
        assert_eq!(e["training"]["lr"], 0.01);
        assert_eq!(e["training"]["early_stopping"]["patience"], 2);
        let err = apply(&mut e, "model.3.hidden", &json!(1)).unwrap_err();
        assert!(err.contains("index 3 is out of range"), "{err}");
        let err = apply(&mut e, "training.lr.x", &json!(1)).unwrap_err();
        assert!(err.contains("number"), "{err}");
    }

    #[test]
    fn internal_coordinates_round_trip_and_stay_in_bounds() {
        let d = Distribution::Int { low: 8, high: 64, step: 8, log: false };
        assert_eq!(d.from_internal(-100.0), json!(8));
        assert_eq!(d.from_internal(1e9), json!(64));
        assert_eq!(d.grid("h").unwrap().len(), 8);
        let l = Distribution::LogUniform { low: 1e-4, high: 1e-2, grid_points: Some(3) };
        let g = l.grid("lr").unwrap();
        assert!((g[1].as_f64().unwrap() - 1e-3).abs() < 1e-12, "{g:?}");
        assert!(Distribution::Uniform { low: 1.0, high: 2.0, grid_points: None }.grid("x").is_err());
        let c = Distribution::Categorical { values: vec![json!("adam"), json!("adamw")] };
        assert_eq!(c.from_internal(c.to_internal(&json!("adamw")).unwrap()), json!("adamw"));
    }
}
