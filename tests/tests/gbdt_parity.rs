//! The pure-Rust LightGBM evaluator (`flowcast_contract::gbdt`) against LightGBM itself: Python's
//! `lightgbm` (the same C++ library) trains models on (a) synthetic rows with NaNs, exact zeros,
//! negative and out-of-range categories, under every missing-value mode and a categorical column,
//! and (b) real feature rows (LOBSTER AMZN, the default feature set), saves `model.txt` and its
//! own predictions; the Rust evaluator must agree within 1e-6 on every row. Skipped with a
//! message without Python's `lightgbm` (CI installs it) or, for (b), without ../shared/data.

use flowcast_contract::gbdt::GbdtModel;
use std::path::Path;
use std::process::Command;

const SCRIPT: &str = r#"
import json, sys
import numpy as np, lightgbm as lgb
d = sys.argv[1]
cfg = json.load(open(f"{d}/config.json"))
X = np.loadtxt(f"{d}/x.csv", delimiter=",", dtype=np.float64, ndmin=2)
Y = np.loadtxt(f"{d}/y.csv", delimiter=",", dtype=np.float64, ndmin=2)
for m in cfg["models"]:
    p = dict(num_leaves=31, max_depth=6, learning_rate=0.05, num_threads=1, deterministic=True, seed=7, verbose=-1, min_data_in_leaf=5)
    p.update(m["params"])
    y = {"class": Y[:, 0], "value": Y[:, 1], "up": (Y[:, 0] == 2).astype(np.float64)}[m["label"]]
    ds = lgb.Dataset(X, label=y, categorical_feature=cfg["categorical"] or "auto", params={"max_cat_to_onehot": 4})
    b = lgb.train(p, ds, num_boost_round=m["rounds"])
    b.save_model(f"{d}/{m['name']}.txt")
    # Predict through a Booster reloaded from the file: the file is what flowcast serves.
    pred = lgb.Booster(model_file=f"{d}/{m['name']}.txt").predict(X).reshape(len(X), -1)
    np.savetxt(f"{d}/{m['name']}.pred.csv", pred, delimiter=",", fmt="%.17g")
print("lightgbm", lgb.__version__)
"#;

fn have_python_lightgbm() -> bool {
    let ok = Command::new("python3").args(["-c", "import lightgbm, numpy"]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIP: Python's lightgbm (and numpy) not installed: pip install lightgbm numpy");
    }
    ok
}

fn fmt(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else {
        format!("{v}")
    }
}

/// Writes rows (f32, the evaluator's input type) and labels, has Python train and predict every
/// model of `models`, and returns the largest |Rust − LightGBM| per model.
fn parity(dir: &Path, x: &[f32], f: usize, y: &[(f64, f64)], categorical: &[usize], models: serde_json::Value) -> Vec<(String, f64)> {
    let n = x.len() / f;
    let mut xs = String::new();
    for r in 0..n {
        xs.push_str(&x[r * f..(r + 1) * f].iter().map(|&v| fmt(v as f64)).collect::<Vec<_>>().join(","));
        xs.push('\n');
    }
    std::fs::write(dir.join("x.csv"), xs).unwrap();
    std::fs::write(dir.join("y.csv"), y.iter().map(|(c, v)| format!("{c},{v}\n")).collect::<String>()).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::json!({"models": models, "categorical": categorical}).to_string()).unwrap();
    let o = Command::new("python3").args(["-c", SCRIPT, dir.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "python: {}", String::from_utf8_lossy(&o.stderr));
    eprintln!("{}", String::from_utf8_lossy(&o.stdout).trim());
    let mut out = Vec::new();
    for m in models.as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let model = GbdtModel::load(&dir.join(format!("{name}.txt"))).unwrap();
        assert_eq!(model.features, f, "{name}");
        let k = model.outputs();
        let want: Vec<f64> = std::fs::read_to_string(dir.join(format!("{name}.pred.csv")))
            .unwrap()
            .split([',', '\n'])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(want.len(), n * k, "{name}");
        let (mut row, mut got) = (vec![0.0f64; f], vec![0.0f64; k]);
        let mut max = 0.0f64;
        for r in 0..n {
            row.iter_mut().zip(&x[r * f..(r + 1) * f]).for_each(|(d, &s)| *d = s as f64);
            model.predict_row(&row, &mut got);
            for c in 0..k {
                let d = (got[c] - want[r * k + c]).abs();
                assert!(d <= 1e-6, "{name}: row {r} output {c}: rust {} vs lightgbm {}", got[c], want[r * k + c]);
                max = max.max(d);
            }
        }
        eprintln!("{name}: {} trees, {n} rows, max |Δ| = {max:.3e}", model.trees());
        out.push((name.to_string(), max));
    }
    out
}

/// Deterministic pseudo-random numbers in [0, 1) (splitmix64).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn synthetic_rows_with_missing_values_and_categories_match_lightgbm() {
    if !have_python_lightgbm() {
        return;
    }
    let (n, f) = (3000, 6);
    let mut s = 11u64;
    let (mut x, mut y) = (Vec::with_capacity(n * f), Vec::with_capacity(n));
    for _ in 0..n {
        let a = uniform(&mut s) * 4.0 - 2.0;
        // b: 15% NaN; c: 30% exact zeros; d: a category 0..40 with some NaN and −1; e, g: noise.
        let b = if uniform(&mut s) < 0.15 { f64::NAN } else { uniform(&mut s) * 2.0 - 1.0 };
        let c = if uniform(&mut s) < 0.3 { 0.0 } else { uniform(&mut s) - 0.5 };
        let u = uniform(&mut s);
        let d = if u < 0.05 {
            f64::NAN
        } else if u < 0.08 {
            -1.0
        } else {
            (uniform(&mut s) * 40.0).floor()
        };
        let e = uniform(&mut s);
        let g = uniform(&mut s) * 100.0;
        let cat_effect = if d.is_finite() && (d as i64) % 3 == 0 { 0.8 } else { -0.3 };
        let v = a + if b.is_nan() { 0.7 } else { b } + 2.0 * c + cat_effect + 0.5 * (uniform(&mut s) - 0.5);
        let class = if v > 0.6 {
            2.0
        } else if v < -0.6 {
            0.0
        } else {
            1.0
        };
        x.extend([a, b, c, d, e, g].map(|v| v as f32));
        y.push((class, v * 10.0));
    }
    let dir = tempfile::tempdir().unwrap();
    let models = serde_json::json!([
        {"name": "multiclass", "label": "class", "rounds": 60, "params": {"objective": "multiclass", "num_class": 3}},
        {"name": "multiclass_zero_as_missing", "label": "class", "rounds": 40, "params": {"objective": "multiclass", "num_class": 3, "zero_as_missing": true}},
        {"name": "multiclass_no_missing", "label": "class", "rounds": 40, "params": {"objective": "multiclass", "num_class": 3, "use_missing": false}},
        {"name": "regression", "label": "value", "rounds": 80, "params": {"objective": "regression"}},
        {"name": "regression_l1", "label": "value", "rounds": 40, "params": {"objective": "regression_l1"}},
        {"name": "binary", "label": "up", "rounds": 50, "params": {"objective": "binary"}},
    ]);
    let r = parity(dir.path(), &x, f, &y, &[3], models);
    assert_eq!(r.len(), 6);
    // The models really use the categorical column through categorical splits.
    let txt = std::fs::read_to_string(dir.path().join("multiclass.txt")).unwrap();
    assert!(txt.lines().any(|l| l.starts_with("num_cat=") && l != "num_cat=0"), "no categorical split was learnt");
    let txt = std::fs::read_to_string(dir.path().join("multiclass_zero_as_missing.txt")).unwrap();
    let dts: Vec<i64> = txt
        .lines()
        .filter_map(|l| l.strip_prefix("decision_type="))
        .flat_map(|l| l.split_whitespace().map(|v| v.parse().unwrap()))
        .collect();
    assert!(dts.iter().any(|d| (d >> 2) & 3 == 1), "no missing-type Zero split in the zero_as_missing model");
}

#[test]
fn real_lobster_feature_rows_match_lightgbm() {
    let Some(data) = flowcast_tests::shared_data() else { return };
    if !have_python_lightgbm() {
        return;
    }
    use flowcast_contract::prepare::{prepare, PrepareSpec};
    use flowcast_contract::preprocessing::{ColumnKind, ColumnsSpec, NormSpec, SplitSpec};
    use flowcast_contract::target::{OutputKind, TargetSpec};
    let d = data.join("lobster");
    let inputs =
        vec![d.join("AMZN_2012-06-21_34200000_57600000_message_1.csv"), d.join("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv")];
    let opts = flowcast_datasets::loaders::ImportOptions { levels: 10, ..Default::default() };
    let ds = flowcast_datasets::loaders::import(flowcast_datasets::loaders::Format::Lobster, &inputs, &opts).unwrap().datasets.remove(0);
    // The default set's features that are finite on ≥ 95% of AMZN's rows (a window needs every
    // input finite; a few are undefined on this sample, e.g. before their clock window fills).
    let set = flowcast_datasets::features::FeatureSet::default_set();
    let table = flowcast_datasets::features::compute(&ds, &set).unwrap();
    let names = set.names();
    let specs: Vec<serde_json::Value> =
        serde_json::from_str::<serde_json::Value>(&set.to_json()).unwrap()["features"].as_array().unwrap().clone();
    assert_eq!(specs.len(), names.len());
    let features: Vec<serde_json::Value> = specs
        .into_iter()
        .zip(&names)
        .filter(|(_, n)| {
            let c = table.column(n).unwrap();
            c.iter().filter(|v| v.is_finite()).count() as f64 >= 0.95 * c.len() as f64
        })
        .map(|(mut s, _)| {
            s.as_object_mut().unwrap().remove("fitted");
            s
        })
        .collect();
    let columns = ColumnsSpec { kind: ColumnKind::Features, window: 1, features, ..Default::default() };
    let targets = [
        TargetSpec { id: Some("dir".into()), ..Default::default() },
        TargetSpec { id: Some("reg".into()), output: OutputKind::Regression, ..Default::default() },
    ];
    let spec = PrepareSpec { columns: &columns, targets: &targets, splits: &SplitSpec::default(), normalization: &NormSpec::default() };
    let p = prepare(&ds, spec).unwrap();
    let f = p.n_features();
    assert!(f >= 50, "{f} feature columns");
    let (dir_t, reg_t) = (&p.targets[0], &p.targets[1]);
    let take = dir_t.train.len().min(20_000);
    let mut x = Vec::with_capacity(take * f);
    let mut y = Vec::with_capacity(take);
    for i in 0..take {
        let e = dir_t.train.ends[i] as usize;
        x.extend_from_slice(p.matrix.row(e));
        let j = reg_t.train.ends.binary_search(&(e as u32)).expect("same windows for both targets");
        y.push((dir_t.train.labels[i] as f64, reg_t.train.values[j] as f64));
    }
    let dir = tempfile::tempdir().unwrap();
    let models = serde_json::json!([
        {"name": "amzn_multiclass", "label": "class", "rounds": 100, "params": {"objective": "multiclass", "num_class": 3}},
        {"name": "amzn_regression", "label": "value", "rounds": 100, "params": {"objective": "regression"}},
    ]);
    let r = parity(dir.path(), &x, f, &y, &[], models);
    eprintln!("AMZN: {take} rows × {f} features; {r:?}");
}
