//! A pure-Rust evaluator of LightGBM's text model format (`model.txt`, what `save_model` writes),
//! so serving, `eval` and the backtest run LightGBM models without its C++ library (which only
//! training links, behind the `lightgbm` cargo feature of flowcast-train).
//!
//! What is evaluated, as LightGBM 4.x's `Tree::Decision` / `GBDT::Predict` define it (formulas
//! and sources: docs/models.md, "LightGBM"):
//! - numerical splits `x ≤ threshold` with the missing-value rules of `decision_type` (bit 1:
//!   default left; bits 2–3: missing type None / Zero / NaN);
//! - categorical splits (bit 0): left iff the integer category is in the node's bitset;
//! - the raw score of class k: the sum of tree `i·K + k` over the iterations, in LightGBM's order;
//! - objectives: `multiclass` (softmax), `binary` (sigmoid), the identity regressions
//!   (`regression`, `regression_l1`, `huber`, `fair`, `quantile`, `mape`; `sqrt` squares back).
//!
//! Linear trees and other objectives are refused at load, naming the line.

use crate::error::{ContractError, Result};
use crate::predictor::{Batch, Outputs, Predictor, PredictorInfo};
use crate::target::{OutputKind, TargetDef};
use std::path::Path;

const CATEGORICAL: i8 = 1;
const DEFAULT_LEFT: i8 = 2;
/// LightGBM's `kZeroThreshold`: |x| ≤ this counts as zero for `missing_type = Zero`.
const ZERO_THRESHOLD: f64 = 1e-35;

/// How raw scores become outputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Softmax over `num_class` raw scores.
    Multiclass { classes: usize },
    /// 1 / (1 + exp(−σ·s)).
    Binary { sigmoid: f64 },
    /// The raw score itself (`sqrt`: sign(s)·s², undoing LightGBM's √-transformed label).
    Regression { sqrt: bool },
}

/// Missing-value handling of a numerical split (`decision_type` bits 2–3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    None,
    Zero,
    NaN,
}

/// One tree, arrays indexed by internal node; a child `< 0` is leaf `!child`.
#[derive(Clone, Debug, PartialEq)]
struct Tree {
    split_feature: Vec<u32>,
    threshold: Vec<f64>,
    decision_type: Vec<i8>,
    left: Vec<i32>,
    right: Vec<i32>,
    leaf_value: Vec<f64>,
    cat_boundaries: Vec<u32>,
    cat_threshold: Vec<u32>,
}

impl Tree {
    #[inline]
    fn leaf<F: Fn(usize) -> f64>(&self, x: &F) -> usize {
        if self.left.is_empty() {
            return 0;
        }
        let mut node = 0i32;
        while node >= 0 {
            let n = node as usize;
            let v = x(self.split_feature[n] as usize);
            let dt = self.decision_type[n];
            node = if dt & CATEGORICAL != 0 { self.categorical(v, n) } else { self.numerical(v, n, dt) };
        }
        !node as usize
    }

    #[inline]
    fn numerical(&self, mut v: f64, n: usize, dt: i8) -> i32 {
        let missing = match (dt >> 2) & 3 {
            1 => Missing::Zero,
            2 => Missing::NaN,
            _ => Missing::None,
        };
        if v.is_nan() && missing != Missing::NaN {
            v = 0.0;
        }
        if (missing == Missing::Zero && (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&v)) || (missing == Missing::NaN && v.is_nan()) {
            return if dt & DEFAULT_LEFT != 0 { self.left[n] } else { self.right[n] };
        }
        if v <= self.threshold[n] {
            self.left[n]
        } else {
            self.right[n]
        }
    }

    #[inline]
    fn categorical(&self, v: f64, n: usize) -> i32 {
        if v.is_nan() || v < 0.0 {
            return self.right[n];
        }
        // LightGBM truncates toward zero (`static_cast<int>`); a negative result went right above.
        let cat = v as i64 as usize;
        let i = self.threshold[n] as usize;
        let (lo, hi) = (self.cat_boundaries[i] as usize, self.cat_boundaries[i + 1] as usize);
        let word = cat / 32;
        if word < hi - lo && (self.cat_threshold[lo + word] >> (cat % 32)) & 1 == 1 {
            self.left[n]
        } else {
            self.right[n]
        }
    }
}

/// A parsed LightGBM text model.
#[derive(Clone, Debug, PartialEq)]
pub struct GbdtModel {
    pub objective: Objective,
    /// `objective=` line as written.
    pub objective_line: String,
    /// Trees per iteration (the class count of a multiclass model, else 1).
    pub trees_per_iteration: usize,
    /// Input columns the model reads (`max_feature_idx + 1`).
    pub features: usize,
    pub feature_names: Vec<String>,
    /// Random-forest mode: the raw score is the mean over iterations, not the sum.
    pub average_output: bool,
    trees: Vec<Tree>,
}

/// The parse error of line `line` (1-based) of `file`.
fn bad(file: &Path, line: usize, reason: impl Into<String>) -> ContractError {
    ContractError::card(file, &format!("line {line}"), reason)
}

fn parse_list<T: std::str::FromStr>(file: &Path, line: usize, key: &str, v: &str, want: usize) -> Result<Vec<T>> {
    let out: Vec<T> = v
        .split_whitespace()
        .map(|s| s.parse::<T>().map_err(|_| bad(file, line, format!("{key}: {s:?} is not a number"))))
        .collect::<Result<_>>()?;
    if out.len() != want {
        return Err(bad(file, line, format!("{key}: {} values, expected {want}", out.len())));
    }
    Ok(out)
}

impl GbdtModel {
    pub fn load(path: &Path) -> Result<GbdtModel> {
        let s = std::fs::read_to_string(path).map_err(|e| ContractError::io(path, e))?;
        GbdtModel::parse(&s, path)
    }

    /// Parses the text format; `file` names the source in errors (with the line).
    pub fn parse(s: &str, file: &Path) -> Result<GbdtModel> {
        let lines: Vec<&str> = s.lines().collect();
        let mut i = 0;
        let mut head = std::collections::HashMap::new();
        while i < lines.len() && !lines[i].starts_with("Tree=") && lines[i].trim() != "end of trees" {
            if let Some((k, v)) = lines[i].split_once('=') {
                head.insert(k.trim(), (i + 1, v.trim()));
            } else if i == 0 && lines[i].trim() != "tree" {
                return Err(bad(file, 1, format!("{:?}: not a LightGBM text model (expected \"tree\")", lines[i])));
            }
            i += 1;
        }
        let get = |k: &str| head.get(k).copied().ok_or_else(|| bad(file, 1, format!("header has no {k}=")));
        let num = |k: &str| -> Result<usize> {
            let (l, v) = get(k)?;
            v.parse().map_err(|_| bad(file, l, format!("{k}: {v:?} is not a count")))
        };
        let classes = num("num_class")?;
        let per_iter = num("num_tree_per_iteration")?;
        let features = num("max_feature_idx")? + 1;
        let feature_names = head.get("feature_names").map(|(_, v)| v.split_whitespace().map(String::from).collect()).unwrap_or_default();
        let (ol, objective_line) = get("objective")?;
        let mut words = objective_line.split_whitespace();
        let name = words.next().unwrap_or("");
        let opts: Vec<&str> = words.collect();
        let opt = |k: &str| opts.iter().find_map(|o| o.strip_prefix(&format!("{k}:")));
        let objective = match name {
            "multiclass" | "softmax" => {
                if classes < 2 || per_iter != classes {
                    return Err(bad(file, ol, format!("multiclass with num_class {classes}, {per_iter} trees per iteration")));
                }
                Objective::Multiclass { classes }
            }
            "binary" => {
                let sigmoid = opt("sigmoid").map(|v| v.parse::<f64>()).transpose().map_err(|_| bad(file, ol, "sigmoid: not a number"))?;
                Objective::Binary { sigmoid: sigmoid.unwrap_or(1.0) }
            }
            "regression" | "regression_l1" | "huber" | "fair" | "quantile" | "mape" => {
                Objective::Regression { sqrt: opts.contains(&"sqrt") }
            }
            other => {
                return Err(bad(file, ol, format!("objective {other:?} is not evaluated here (multiclass, binary, regression kinds are)")))
            }
        };
        if !matches!(objective, Objective::Multiclass { .. }) && per_iter != 1 {
            return Err(bad(file, ol, format!("{name} with {per_iter} trees per iteration")));
        }
        let average_output = head.contains_key("average_output") || lines.iter().any(|l| l.trim() == "average_output");
        let mut trees = Vec::new();
        while i < lines.len() && lines[i].starts_with("Tree=") {
            let start = i + 1;
            let want = trees.len().to_string();
            if lines[i][5..].trim() != want {
                return Err(bad(file, start, format!("{:?}: expected Tree={want}", lines[i])));
            }
            i += 1;
            let mut kv = std::collections::HashMap::new();
            while i < lines.len() && !lines[i].trim().is_empty() && !lines[i].starts_with("Tree=") {
                if let Some((k, v)) = lines[i].split_once('=') {
                    kv.insert(k.trim(), (i + 1, v.trim()));
                }
                i += 1;
            }
            while i < lines.len() && lines[i].trim().is_empty() {
                i += 1;
            }
            trees.push(Self::parse_tree(file, start, &kv, features)?);
        }
        if i >= lines.len() || lines[i].trim() != "end of trees" {
            return Err(bad(file, i + 1, "expected \"end of trees\" after the last tree"));
        }
        if trees.is_empty() || trees.len() % per_iter != 0 {
            return Err(bad(file, i + 1, format!("{} trees is not a whole number of iterations of {per_iter}", trees.len())));
        }
        Ok(GbdtModel {
            objective,
            objective_line: objective_line.into(),
            trees_per_iteration: per_iter,
            features,
            feature_names,
            average_output,
            trees,
        })
    }

    fn parse_tree(file: &Path, start: usize, kv: &std::collections::HashMap<&str, (usize, &str)>, features: usize) -> Result<Tree> {
        let get = |k: &str| kv.get(k).copied().ok_or_else(|| bad(file, start, format!("tree has no {k}=")));
        let (l, v) = get("num_leaves")?;
        let leaves: usize = v.parse().map_err(|_| bad(file, l, "num_leaves: not a count"))?;
        if leaves == 0 {
            return Err(bad(file, l, "num_leaves = 0"));
        }
        if let Some((l, v)) = kv.get("is_linear") {
            if *v != "0" {
                return Err(bad(file, *l, "linear trees (linear_tree = true) are not evaluated here"));
            }
        }
        let (l, v) = get("leaf_value")?;
        let leaf_value = parse_list::<f64>(file, l, "leaf_value", v, leaves)?;
        let n = leaves - 1;
        // A one-leaf tree may leave its split arrays out (or empty).
        let list = |k: &str| if n == 0 { Ok(kv.get(k).copied().unwrap_or((start, ""))) } else { get(k) };
        let (l, v) = list("split_feature")?;
        let split_feature = parse_list::<u32>(file, l, "split_feature", v, n)?;
        if let Some(f) = split_feature.iter().find(|&&f| f as usize >= features) {
            return Err(bad(file, l, format!("split_feature {f} ≥ {features} features")));
        }
        let (l, v) = list("threshold")?;
        let threshold = parse_list::<f64>(file, l, "threshold", v, n)?;
        let (l, v) = list("decision_type")?;
        let decision_type = parse_list::<i8>(file, l, "decision_type", v, n)?;
        let child = |k: &str| -> Result<Vec<i32>> {
            let (l, v) = list(k)?;
            let c = parse_list::<i32>(file, l, k, v, n)?;
            if let Some(x) = c.iter().find(|&&c| (c >= 0 && c as usize >= n) || (c < 0 && (!c) as usize >= leaves)) {
                return Err(bad(file, l, format!("{k}: child {x} outside {n} nodes / {leaves} leaves")));
            }
            Ok(c)
        };
        let left = child("left_child")?;
        let right = child("right_child")?;
        let (l, v) = get("num_cat").unwrap_or((start, "0"));
        let num_cat: usize = v.parse().map_err(|_| bad(file, l, "num_cat: not a count"))?;
        let (mut cat_boundaries, mut cat_threshold) = (Vec::new(), Vec::new());
        if num_cat > 0 {
            let (l, v) = get("cat_boundaries")?;
            cat_boundaries = parse_list::<u32>(file, l, "cat_boundaries", v, num_cat + 1)?;
            let words = *cat_boundaries.last().expect("num_cat + 1 ≥ 2") as usize;
            if cat_boundaries.windows(2).any(|w| w[0] > w[1]) {
                return Err(bad(file, l, "cat_boundaries: not increasing"));
            }
            let (l, v) = get("cat_threshold")?;
            cat_threshold = parse_list::<u32>(file, l, "cat_threshold", v, words)?;
        }
        for (j, &dt) in decision_type.iter().enumerate() {
            if dt & CATEGORICAL != 0 && !(threshold[j] >= 0.0 && (threshold[j] as usize) < num_cat) {
                return Err(bad(file, start, format!("node {j}: categorical split {} outside {num_cat} category sets", threshold[j])));
            }
        }
        Ok(Tree { split_feature, threshold, decision_type, left, right, leaf_value, cat_boundaries, cat_threshold })
    }

    /// Outputs per row: classes for multiclass, else 1.
    pub fn outputs(&self) -> usize {
        match self.objective {
            Objective::Multiclass { classes } => classes,
            _ => 1,
        }
    }

    pub fn trees(&self) -> usize {
        self.trees.len()
    }

    pub fn iterations(&self) -> usize {
        self.trees.len() / self.trees_per_iteration
    }

    /// Total leaves over all trees.
    pub fn leaves(&self) -> usize {
        self.trees.iter().map(|t| t.leaf_value.len()).sum()
    }

    /// Raw scores of one row (`get(j)` = feature j) into `raw` (`outputs()` long).
    #[inline]
    pub fn raw_into<F: Fn(usize) -> f64>(&self, get: F, raw: &mut [f64]) {
        let k = self.trees_per_iteration;
        raw[..k].fill(0.0);
        for (i, t) in self.trees.iter().enumerate() {
            raw[i % k] += t.leaf_value[t.leaf(&get)];
        }
        if self.average_output {
            let it = self.iterations() as f64;
            raw[..k].iter_mut().for_each(|v| *v /= it);
        }
    }

    /// Turns raw scores into the objective's outputs in place (probabilities or the value).
    #[inline]
    pub fn transform(&self, raw: &mut [f64]) {
        match self.objective {
            Objective::Multiclass { classes } => {
                let r = &mut raw[..classes];
                let mx = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut s = 0.0;
                for v in r.iter_mut() {
                    *v = (*v - mx).exp();
                    s += *v;
                }
                r.iter_mut().for_each(|v| *v /= s);
            }
            Objective::Binary { sigmoid } => raw[0] = 1.0 / (1.0 + (-sigmoid * raw[0]).exp()),
            Objective::Regression { sqrt: true } => raw[0] = raw[0].signum() * raw[0] * raw[0],
            Objective::Regression { sqrt: false } => {}
        }
    }

    /// The transformed prediction of one row of `features` values (f64).
    pub fn predict_row(&self, row: &[f64], out: &mut [f64]) {
        self.raw_into(|j| row[j], out);
        self.transform(out);
    }
}

/// A `lightgbm` card's model as a [`Predictor`]: the last row of each window is the feature
/// vector (the model is tabular: the row at the window's end is the current state).
pub struct GbdtPredictor {
    model: GbdtModel,
    info: PredictorInfo,
    output: OutputKind,
    alpha_bps: f64,
}

impl GbdtPredictor {
    /// A predictor for `target` over windows of `window × features` (the caller has checked
    /// that the model reads `features` columns and gives the target's output).
    pub fn from_parts(model: GbdtModel, target: &TargetDef, window: usize, features: usize) -> GbdtPredictor {
        let mut info = PredictorInfo::classifier("lightgbm", &target.classes, window, features);
        info.regression = target.output == OutputKind::Regression;
        GbdtPredictor { model, info, output: target.output, alpha_bps: target.alpha * crate::target::BPS }
    }

    pub fn model(&self) -> &GbdtModel {
        &self.model
    }
}

/// Class of a regression prediction (bps) against ±α (bps): the direction classes' rule.
pub fn class_of_value(v: f64, alpha_bps: f64) -> usize {
    if v > alpha_bps {
        2
    } else if v < -alpha_bps {
        0
    } else {
        1
    }
}

impl Predictor for GbdtPredictor {
    fn info(&self) -> &PredictorInfo {
        &self.info
    }

    /// Direction: class probabilities. Regression: the value (bps) and, as `probs`, a one-hot
    /// of its class against ±α (a point forecast has no distribution; the scores say so).
    fn predict(&self, b: &Batch<'_>, out: &mut Outputs) -> Result<()> {
        self.info.check(b)?;
        let (t, f) = (b.window, b.features);
        let k = self.model.outputs();
        // Scratch for the k raw scores: on the stack for every model flowcast trains.
        let (mut stack, mut heap) = ([0.0f64; 16], Vec::new());
        let raw: &mut [f64] = if k <= stack.len() {
            &mut stack[..k]
        } else {
            heap.resize(k, 0.0);
            &mut heap
        };
        for w in 0..b.batch {
            let row = &b.x[(w * t + t - 1) * f..(w * t + t) * f];
            self.model.raw_into(|j| row[j] as f64, raw);
            self.model.transform(raw);
            match self.output {
                OutputKind::Direction => out.probs.extend(raw.iter().map(|&p| p as f32)),
                OutputKind::Regression => {
                    out.regression.push(raw[0] as f32);
                    let c = class_of_value(raw[0], self.alpha_bps);
                    out.probs.extend((0..out.classes).map(|j| if j == c { 1.0 } else { 0.0 }));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written two-tree regression model: tree 0 splits feature 0 at 0.5 (NaN → left),
    /// then feature 1 at −1 (missing Zero, default right); tree 1 is categorical on feature 2
    /// with categories {1, 3, 33} going left.
    const MODEL: &str = "tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=2
objective=regression
feature_names=a b c
feature_infos=[0:1] [-2:2] 1:3:33
tree_sizes=1 1

Tree=0
num_leaves=3
num_cat=0
split_feature=0 1
split_gain=1 1
threshold=0.5 -1
decision_type=10 4
left_child=1 -1
right_child=-3 -2
leaf_value=1 2 3
leaf_weight=1 1 1
leaf_count=1 1 1
internal_value=0 0
internal_weight=0 0
internal_count=2 2
is_linear=0
shrinkage=1


Tree=1
num_leaves=2
num_cat=1
split_feature=2
split_gain=1
threshold=0
decision_type=1
left_child=-1
right_child=-2
leaf_value=10 20
leaf_weight=1 1
leaf_count=1 1
internal_value=0
internal_weight=0
internal_count=2
cat_boundaries=0 2
cat_threshold=10 2
is_linear=0
shrinkage=1


end of trees
";

    fn model() -> GbdtModel {
        GbdtModel::parse(MODEL, Path::new("m.txt")).unwrap()
    }

    fn pred(m: &GbdtModel, x: [f64; 3]) -> f64 {
        let mut o = [0.0];
        m.predict_row(&x, &mut o);
        o[0]
    }

    #[test]
    fn numerical_splits_follow_threshold_and_missing_rules() {
        let m = model();
        assert_eq!((m.features, m.trees(), m.outputs()), (3, 2, 1));
        // feature 0 ≤ 0.5 → node 1; feature 1 ≤ −1 → leaf 0 (1.0) else leaf 1 (2.0); > 0.5 → leaf 2.
        assert_eq!(pred(&m, [0.2, -1.5, 0.0]), 1.0 + 20.0);
        assert_eq!(pred(&m, [0.5, 0.5, 0.0]), 2.0 + 20.0);
        assert_eq!(pred(&m, [0.7, -1.5, 0.0]), 3.0 + 20.0);
        // decision_type 10 = NaN missing (8) | default left (2): NaN goes left.
        assert_eq!(pred(&m, [f64::NAN, -1.5, 0.0]), 1.0 + 20.0);
        // decision_type 4 = Zero missing, default right: 0 (and NaN, which becomes 0) go right
        // although 0 > −1 would go right anyway; −0.0 too. A tiny non-zero is compared normally.
        assert_eq!(pred(&m, [0.0, 0.0, 0.0]), 2.0 + 20.0);
        assert_eq!(pred(&m, [0.0, f64::NAN, 0.0]), 2.0 + 20.0);
    }

    #[test]
    fn zero_missing_default_left_sends_zero_left_even_above_the_threshold() {
        // Same model with node 1's decision type 6 = Zero missing | default left, threshold −1:
        // x = 0 > −1 would go right, but zero is "missing" → left (leaf 0 = 1.0).
        let m = GbdtModel::parse(&MODEL.replace("decision_type=10 4", "decision_type=10 6"), Path::new("m.txt")).unwrap();
        assert_eq!(pred(&m, [0.0, 0.0, 0.0]), 1.0 + 20.0);
        assert_eq!(pred(&m, [0.0, 1e-30, 0.0]), 2.0 + 20.0);
    }

    #[test]
    fn categorical_splits_read_the_bitset() {
        let m = model();
        // Bitset words [10, 2]: bits 1 and 3 of word 0, bit 1 of word 1 (= category 33).
        for (c, left) in [(1.0, true), (3.0, true), (33.0, true), (0.0, false), (2.0, false), (34.0, false), (64.0, false), (-1.0, false)] {
            assert_eq!(pred(&m, [0.7, 0.0, c]), 3.0 + if left { 10.0 } else { 20.0 }, "category {c}");
        }
        assert_eq!(pred(&m, [0.7, 0.0, 3.9]), 13.0, "truncated to 3");
        assert_eq!(pred(&m, [0.7, 0.0, f64::NAN]), 23.0, "NaN goes right");
    }

    #[test]
    fn malformed_models_name_the_line() {
        let e = GbdtModel::parse(&MODEL.replace("threshold=0.5 -1", "threshold=0.5"), Path::new("m.txt")).unwrap_err().to_string();
        assert!(e.contains("m.txt") && e.contains("line 17") && e.contains("threshold: 1 values, expected 2"), "{e}");
        let e =
            GbdtModel::parse(&MODEL.replace("objective=regression", "objective=lambdarank"), Path::new("m.txt")).unwrap_err().to_string();
        assert!(e.contains("line 7") && e.contains("lambdarank"), "{e}");
        let e = GbdtModel::parse(&MODEL.replace("end of trees\n", ""), Path::new("m.txt")).unwrap_err().to_string();
        assert!(e.contains("end of trees"), "{e}");
        let e = GbdtModel::parse(&MODEL.replace("split_feature=0 1", "split_feature=0 7"), Path::new("m.txt")).unwrap_err().to_string();
        assert!(e.contains("split_feature 7"), "{e}");
        let e = GbdtModel::parse(&MODEL.replacen("is_linear=0", "is_linear=1", 1), Path::new("m.txt")).unwrap_err().to_string();
        assert!(e.contains("linear trees"), "{e}");
    }

    #[test]
    fn multiclass_is_a_softmax_over_interleaved_trees() {
        // 2 iterations × 3 classes of single-leaf trees: class k's raw score = Σ of trees i·3 + k.
        let mut s = String::from(
            "tree\nversion=v4\nnum_class=3\nnum_tree_per_iteration=3\nlabel_index=0\nmax_feature_idx=0\nobjective=multiclass num_class:3\n\n",
        );
        for (i, v) in [0.1, 0.2, 0.3, 0.4, -0.2, 0.0].iter().enumerate() {
            s.push_str(&format!("Tree={i}\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nthreshold=\ndecision_type=\nleft_child=\nright_child=\nleaf_value={v}\nshrinkage=1\n\n\n"));
        }
        s.push_str("end of trees\n");
        let m = GbdtModel::parse(&s, Path::new("m.txt")).unwrap();
        let mut o = [0.0; 3];
        m.predict_row(&[0.0], &mut o);
        let raw = [0.5f64, 0.0, 0.3];
        let z: f64 = raw.iter().map(|v| v.exp()).sum();
        for k in 0..3 {
            assert!((o[k] - raw[k].exp() / z).abs() < 1e-15, "{o:?}");
        }
    }
}
