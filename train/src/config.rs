//! The experiment file (TOML): data → columns → label → splits → normalisation → models →
//! training → device. Every key is documented in docs/training.md. Unknown keys are errors
//! (a misspelt key silently ignored would train a different experiment than the one written).

use crate::error::{Result, TrainError};
pub use flowcast_contract::preprocessing::{ColumnKind, ColumnsSpec, NormSpec, SplitSpec};
pub use flowcast_contract::target::{AlphaSpec, LabelKind, OutputKind, TargetSpec};
pub use flowcast_datasets::source::{DataSpec, ImportSpec, SynthSpec};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Run name: the run directory is `<runs_dir>/<name>-<UTC timestamp>`.
    pub name: String,
    /// Seed of model initialisation and batch order (and of synthetic data unless it sets its own).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `cpu`, `vulkan` or `vulkan:N` (the GPU ones need the `gpu` cargo feature).
    #[serde(default = "default_device")]
    pub device: String,
    /// Where run directories go, relative to the experiment file's directory's parent when
    /// relative (so `experiments/x.toml` writes to `runs/`).
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    pub data: DataSpec,
    #[serde(default)]
    pub columns: ColumnsSpec,
    /// The targets: one `[label]` table or several `[[label]]` tables (each model is trained
    /// once per target it names, all of them by default).
    #[serde(default = "default_targets", rename = "label", deserialize_with = "one_or_many")]
    pub targets: Vec<TargetSpec>,
    /// Baselines fitted and reported beside every model (registry names).
    #[serde(default = "default_baselines")]
    pub baselines: Vec<String>,
    /// Decision thresholds stored in every exported card (`[signal]`; served and backtested).
    #[serde(default)]
    pub signal: flowcast_contract::signal::SignalConfig,
    #[serde(default)]
    pub splits: SplitSpec,
    #[serde(default)]
    pub normalization: NormSpec,
    /// One or more models, trained and evaluated on the same windows.
    #[serde(rename = "model")]
    pub models: Vec<ModelSpec>,
    #[serde(default)]
    pub training: TrainingSpec,
}

/// TOML text of a config given as JSON (its `null`s dropped: TOML has none): what a generated
/// experiment or backtest (a sweep trial, a walk-forward fold) writes into its run directory.
pub fn toml_of_json(mut v: serde_json::Value) -> std::result::Result<String, String> {
    fn strip_nulls(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(strip_nulls);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
    strip_nulls(&mut v);
    let tv = toml::Value::try_from(&v).map_err(|e| e.to_string())?;
    toml::to_string(&tv).map_err(|e| e.to_string())
}

fn default_targets() -> Vec<TargetSpec> {
    vec![TargetSpec::default()]
}

fn default_baselines() -> Vec<String> {
    flowcast_contract::baselines::BASELINES.iter().map(|s| s.to_string()).collect()
}

/// `[label]` (one table) or `[[label]]` (an array of tables).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<TargetSpec>, D::Error> {
    // Not an untagged enum: that would hide the inner error (e.g. the misspelt key) behind
    // "did not match any variant".
    let v = toml::Value::deserialize(d)?;
    match v {
        toml::Value::Array(_) => Vec::<TargetSpec>::deserialize(v).map_err(serde::de::Error::custom),
        _ => TargetSpec::deserialize(v).map(|t| vec![t]).map_err(serde::de::Error::custom),
    }
}

fn default_seed() -> u64 {
    7
}
fn default_device() -> String {
    "cpu".into()
}
fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// A model of the registry by name; every other key is a hyperparameter for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    /// Sub-directory of the run (default: the name); needed when one experiment trains the
    /// same architecture twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Target ids this model is trained for (default: every target of the experiment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Vec<String>>,
    #[serde(flatten)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

impl ModelSpec {
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }

    /// Whether this model is, or (an ensemble) has a member that is, registry model `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.name == name
            || (self.name == ENSEMBLE
                && self.params.get("members").and_then(|m| m.as_array()).is_some_and(|ms| ms.iter().any(|m| m["name"] == name)))
    }
}

/// Registry name of the stacked ensemble (`[[model]] name = "ensemble"`, crate::ensemble).
pub const ENSEMBLE: &str = "ensemble";

/// Registry name of the gradient-boosted-trees family (`[[model]] name = "lightgbm"`).
pub const LIGHTGBM: &str = "lightgbm";

/// Hyperparameters of a `lightgbm` model (the other keys of its `[[model]]` table; LightGBM's
/// own names). Defaults: the seed's max_depth 6, num_leaves 31, learning rate 0.05.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightgbmParams {
    #[serde(default = "lgb_leaves")]
    pub num_leaves: u32,
    /// −1: unlimited.
    #[serde(default = "lgb_depth")]
    pub max_depth: i32,
    #[serde(default = "lgb_lr")]
    pub learning_rate: f64,
    /// Boosting rounds at most (early stopping usually ends sooner).
    #[serde(default = "lgb_rounds")]
    pub num_iterations: u32,
    /// Stop after this many rounds without a better validation loss (multi_logloss / l2) and
    /// keep the best round; 0 = off. Needs validation windows.
    #[serde(default = "lgb_es")]
    pub early_stopping_rounds: u32,
    #[serde(default = "lgb_min_leaf")]
    pub min_data_in_leaf: u32,
    #[serde(default = "one_f")]
    pub feature_fraction: f64,
    #[serde(default = "one_f")]
    pub bagging_fraction: f64,
    #[serde(default)]
    pub bagging_freq: u32,
    #[serde(default)]
    pub lambda_l2: f64,
    #[serde(default = "lgb_bins")]
    pub max_bin: u32,
    /// LightGBM threads (results are deterministic for a fixed count: `deterministic = true`).
    #[serde(default = "lgb_threads")]
    pub num_threads: u32,
    /// Test rows whose TreeSHAP contributions are written (`shap.parquet`), evenly spaced.
    #[serde(default = "lgb_shap")]
    pub shap_rows: usize,
}

fn lgb_leaves() -> u32 {
    31
}
fn lgb_depth() -> i32 {
    6
}
fn lgb_lr() -> f64 {
    0.05
}
fn lgb_rounds() -> u32 {
    500
}
fn lgb_es() -> u32 {
    30
}
fn lgb_min_leaf() -> u32 {
    20
}
fn one_f() -> f64 {
    1.0
}
fn lgb_bins() -> u32 {
    255
}
fn lgb_threads() -> u32 {
    1
}
fn lgb_shap() -> usize {
    2000
}

impl LightgbmParams {
    /// The `[[model]]` table's hyperparameters, checked.
    pub fn from_spec(m: &ModelSpec) -> std::result::Result<LightgbmParams, String> {
        let p: LightgbmParams = serde_json::from_value(serde_json::Value::Object(m.params.clone()))
            .map_err(|e| format!("[[model]] {} (lightgbm): {e}", m.id()))?;
        let bad = |k: &str, v: String| Err(format!("[[model]] {} (lightgbm): {k} = {v}", m.id()));
        if p.num_leaves < 2 {
            return bad("num_leaves", format!("{} (need ≥ 2)", p.num_leaves));
        }
        if !(p.learning_rate > 0.0 && p.learning_rate.is_finite()) {
            return bad("learning_rate", format!("{} (need > 0)", p.learning_rate));
        }
        if p.num_iterations == 0 || p.num_threads == 0 {
            return bad("num_iterations/num_threads", "0 (need ≥ 1)".into());
        }
        for (k, v) in [("feature_fraction", p.feature_fraction), ("bagging_fraction", p.bagging_fraction)] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(k, format!("{v} (need 0 < v ≤ 1)"));
            }
        }
        if !(p.lambda_l2 >= 0.0 && p.lambda_l2.is_finite()) || p.max_bin < 2 {
            return bad("lambda_l2/max_bin", format!("{} / {}", p.lambda_l2, p.max_bin));
        }
        Ok(p)
    }
}

/// Registry name of the Bayesian online regression family (`[[model]] name = "bayes_online"`).
pub const BAYES_ONLINE: &str = flowcast_contract::bayes::NAME;

/// Hyperparameters of a `bayes_online` model: the keys of [`flowcast_contract::bayes::BayesConfig`]
/// except `alpha_bps`, which is the target's fitted α. Without `prior_b` it is set from the
/// training data: prior_a × the variance of the training targets (bps²), so that the prior point
/// estimate b₀/a₀ of σ² is the unconditional variance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BayesParams {
    pub config: flowcast_contract::bayes::BayesConfig,
    /// `prior_b` was not given: fit it on the training targets.
    pub prior_b_from_data: bool,
    /// `changepoint = {...}`: forget faster or reset on detected changepoints, in training and
    /// in the prequential pass (`flowcast_contract::bayes_changepoint`).
    pub changepoint: Option<flowcast_contract::bayes_changepoint::ChangeResponse>,
}

impl BayesParams {
    /// The `[[model]]` table's hyperparameters, checked (α = 0 until the target sets it).
    pub fn from_spec(m: &ModelSpec) -> std::result::Result<BayesParams, String> {
        let mut map = m.params.clone();
        if map.contains_key("alpha_bps") {
            return Err(format!("[[model]] {} (bayes_online): alpha_bps is the target's α (set [label] alpha instead)", m.id()));
        }
        let prior_b_from_data = !map.contains_key("prior_b");
        let changepoint = match map.remove("changepoint") {
            None => None,
            Some(v) => {
                let c: flowcast_contract::bayes_changepoint::ChangeResponse =
                    serde_json::from_value(v).map_err(|e| format!("[[model]] {} (bayes_online): changepoint: {e}", m.id()))?;
                c.validate().map_err(|e| format!("[[model]] {}: {e}", m.id()))?;
                Some(c)
            }
        };
        map.insert("alpha_bps".into(), serde_json::json!(0.0));
        let config: flowcast_contract::bayes::BayesConfig =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| format!("[[model]] {} (bayes_online): {e}", m.id()))?;
        config.validate().map_err(|e| format!("[[model]] {}: {e}", m.id()))?;
        Ok(BayesParams { config, prior_b_from_data, changepoint })
    }
}

/// The meta-learner of an `ensemble` model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaKind {
    WeightedAverage,
    Logistic,
    Lightgbm,
    Hedge,
}

/// One member: a registry model (`lstm`, `deeplob`, `lightgbm`, ...) or a baseline
/// (`majority`, `ofi_logistic`), with its hyperparameters; `target` = its label (default: the
/// ensemble's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(flatten)]
    pub params: serde_json::Map<String, Value>,
}

impl MemberSpec {
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }
    pub fn is_baseline(&self) -> bool {
        flowcast_contract::baselines::BASELINES.contains(&self.name.as_str())
    }
    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec { name: self.name.clone(), id: Some(self.id().to_string()), targets: None, params: self.params.clone() }
    }
}

/// The other keys of an `ensemble` `[[model]]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleParams {
    pub members: Vec<MemberSpec>,
    #[serde(default = "logistic")]
    pub meta: MetaKind,
    /// Purged chronological folds of the out-of-fold predictions (≥ 2).
    #[serde(default = "three")]
    pub folds: usize,
    /// Rows after a held-out block that no fold model trains on (default: longest horizon + window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embargo: Option<usize>,
    /// L2 penalty of the logistic meta-learner.
    #[serde(default = "l2")]
    pub l2: f64,
    /// Hedge's learning rate η (default: the best of 0.1, 0.3, 1, 3, 10 on the out-of-fold rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<f64>,
    /// Hedge's loss discount γ per matured label (1 = plain Hedge).
    #[serde(default = "discount")]
    pub discount: f64,
    /// The LightGBM meta-learner's hyperparameters (a `lightgbm` model's keys), over the
    /// meta-learner defaults of [`EnsembleParams::meta_lightgbm_params`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_lightgbm: Option<serde_json::Map<String, Value>>,
    /// The latest fraction of the out-of-fold rows held out (purged) for the LightGBM
    /// meta-learner's early stopping.
    #[serde(default = "meta_holdout")]
    pub meta_holdout: f64,
}

fn logistic() -> MetaKind {
    MetaKind::Logistic
}
fn three() -> usize {
    3
}
fn l2() -> f64 {
    1e-3
}
fn discount() -> f64 {
    0.999
}
fn meta_holdout() -> f64 {
    0.2
}

impl EnsembleParams {
    /// The `[[model]]` table's ensemble keys, checked against the experiment's target ids.
    pub fn from_spec(m: &ModelSpec, tids: &[String]) -> std::result::Result<EnsembleParams, String> {
        let p: EnsembleParams =
            serde_json::from_value(Value::Object(m.params.clone())).map_err(|e| format!("[[model]] {} (ensemble): {e}", m.id()))?;
        let bad = |r: String| Err(format!("[[model]] {} (ensemble): {r}", m.id()));
        if p.members.is_empty() {
            return bad("members is empty".into());
        }
        if p.folds < 2 {
            return bad(format!("folds = {} (need ≥ 2)", p.folds));
        }
        if p.meta_lightgbm.is_some() && p.meta != MetaKind::Lightgbm {
            return bad(format!("meta_lightgbm is for meta = \"lightgbm\", but meta = {:?}", p.meta));
        }
        if !(p.meta_holdout > 0.0 && p.meta_holdout < 1.0) {
            return bad(format!("meta_holdout = {} (need 0 < v < 1)", p.meta_holdout));
        }
        if p.meta == MetaKind::Lightgbm {
            p.meta_lightgbm_params(m.id())?;
        }
        let eta_ok = p.eta.is_none_or(|e| e >= 0.0 && e.is_finite());
        if !(p.l2 >= 0.0 && p.l2.is_finite() && p.discount > 0.0 && p.discount <= 1.0 && eta_ok) {
            return bad(format!("l2 = {}, discount = {}, eta = {:?}: need l2 ≥ 0, 0 < discount ≤ 1, eta ≥ 0", p.l2, p.discount, p.eta));
        }
        let mut ids: Vec<&str> = p.members.iter().map(|x| x.id()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("two members share the id {:?}: set `id` on one", w[0]));
        }
        for x in &p.members {
            if x.name == ENSEMBLE {
                return bad(format!("member {}: an ensemble cannot be a member", x.id()));
            }
            if x.id().contains(['/', '\\']) || x.id().is_empty() || x.id() == "." || x.id() == ".." {
                return bad(format!("member id {:?} must be a plain directory name", x.id()));
            }
            if let Some(t) = &x.target {
                if !tids.contains(t) {
                    return bad(format!("member {}: target {t:?}, but the targets are {tids:?}", x.id()));
                }
            }
            if x.is_baseline() && !x.params.is_empty() {
                return bad(format!("member {}: baselines take no parameters", x.id()));
            }
            if x.name == LIGHTGBM {
                LightgbmParams::from_spec(&x.model_spec())?;
            }
        }
        Ok(p)
    }
}

impl EnsembleParams {
    /// The LightGBM meta-learner's parameters: `meta_lightgbm` over defaults for a meta-learner —
    /// shallow trees (max_depth 3, num_leaves 7), learning rate 0.05, ≤ 300 rounds with early
    /// stopping after 30, min_data_in_leaf 50, lambda_l2 1: its M·K inputs are few and strongly
    /// informative, its rows noisy, so small trees and shrinkage keep it from fitting the noise
    /// of the out-of-fold probabilities (docs/models.md, "Ensemble").
    pub fn meta_lightgbm_params(&self, id: &str) -> std::result::Result<LightgbmParams, String> {
        let mut map: serde_json::Map<String, Value> = serde_json::json!({
            "num_leaves": 7, "max_depth": 3, "learning_rate": 0.05, "num_iterations": 300,
            "early_stopping_rounds": 30, "min_data_in_leaf": 50, "lambda_l2": 1.0, "shap_rows": 0,
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        for (k, v) in self.meta_lightgbm.iter().flatten() {
            map.insert(k.clone(), v.clone());
        }
        let spec = ModelSpec { name: LIGHTGBM.into(), id: Some(format!("{id} meta_lightgbm")), targets: None, params: map };
        LightgbmParams::from_spec(&spec)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Adamw,
}

/// Learning-rate schedule, evaluated once per epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    Constant,
    /// lr · gamma^⌊epoch / every⌋.
    Step {
        every: usize,
        gamma: f64,
    },
    /// min_lr + (lr − min_lr)·(1 + cos(π·epoch/epochs))/2.
    Cosine {
        #[serde(default)]
        min_lr: f64,
    },
    /// Multiply by `factor` after `patience` epochs without a validation macro-F1 improvement.
    Plateau {
        #[serde(default = "half")]
        factor: f64,
        #[serde(default = "two")]
        patience: usize,
        #[serde(default)]
        min_lr: f64,
    },
}

fn half() -> f64 {
    0.5
}
fn two() -> usize {
    2
}

/// Gradient clipping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClipSpec {
    /// Global L2 norm over every parameter's gradient, PyTorch's `clip_grad_norm_`: when
    /// ‖g‖ = sqrt(Σ_p ‖g_p‖²) exceeds the bound, every gradient is scaled by bound / (‖g‖ + 1e-6).
    Norm(f32),
    /// burn's norm clipping, applied to each parameter tensor on its own.
    TensorNorm(f32),
    /// burn's value clipping: every gradient element into [−v, v].
    Value(f32),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    /// `"none"` or `"balanced"` (n / (k · count_c) on the training windows, as scikit-learn).
    Rule(String),
    Explicit(Vec<f32>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// Stop after this many epochs without a validation macro-F1 gain above `min_delta`.
    pub patience: usize,
    #[serde(default)]
    pub min_delta: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    #[serde(default = "adam")]
    pub optimizer: OptimizerKind,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "constant")]
    pub schedule: Schedule,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<ClipSpec>,
    #[serde(default = "no_weights")]
    pub class_weights: ClassWeights,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
    /// Cap on training batches per epoch (0 = all): for smoke runs and benchmarks.
    #[serde(default)]
    pub max_batches: usize,
    /// Test windows scored by the permutation importance of each deep and bayes_online model
    /// (`importance.json`; evenly spaced, the rows lightgbm's SHAP explains); 0 = off. Costs
    /// (columns + 1) forward passes over them.
    #[serde(default = "importance_rows")]
    pub importance_rows: usize,
}

fn importance_rows() -> usize {
    crate::explain::IMPORTANCE_ROWS
}

fn adam() -> OptimizerKind {
    OptimizerKind::Adam
}
fn default_lr() -> f64 {
    1e-3
}
fn constant() -> Schedule {
    Schedule::Constant
}
fn default_epochs() -> usize {
    10
}
fn default_batch() -> usize {
    64
}
fn no_weights() -> ClassWeights {
    ClassWeights::Rule("none".into())
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            optimizer: adam(),
            lr: default_lr(),
            weight_decay: 0.0,
            schedule: constant(),
            epochs: default_epochs(),
            batch: default_batch(),
            grad_clip: None,
            class_weights: no_weights(),
            early_stopping: None,
            max_batches: 0,
            importance_rows: importance_rows(),
        }
    }
}

impl Experiment {
    /// Parse an experiment; `origin` names the file in errors (with the line of the bad key).
    pub fn from_toml(s: &str, origin: &str) -> Result<Experiment> {
        let e: Experiment = toml::from_str(s).map_err(|e| {
            let line = e.span().map(|r| s[..r.start.min(s.len())].lines().count().max(1) as u64).unwrap_or(0);
            TrainError::Config { file: origin.into(), line, reason: e.message().to_string() }
        })?;
        e.validate().map_err(|reason| TrainError::Config { file: origin.into(), line: 0, reason })?;
        Ok(e)
    }

    /// Read an experiment file, resolving relative data paths against its directory. The paths
    /// are made absolute, so the resolved `config.json` of a run works from any directory
    /// (`flowcast reproduce`).
    pub fn load(path: &Path) -> Result<Experiment> {
        let s = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let mut e = Experiment::from_toml(&s, &path.display().to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        e.data.resolve_paths(base);
        if e.runs_dir.is_relative() {
            // experiments/x.toml → <checkout>/runs
            let root = base.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let r = root.join(&e.runs_dir);
            e.runs_dir = std::path::absolute(&r).unwrap_or(r);
        }
        Ok(e)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        self.data.validate()?;
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(format!("name {:?} must be non-empty and contain no path separator", self.name));
        }
        self.signal.validate()?;
        if self.columns.window == 0 {
            return Err("[columns] window must be at least 1".into());
        }
        if self.columns.train_stride == 0 {
            return Err("[columns] train_stride must be at least 1".into());
        }
        if self.models.is_empty() {
            return Err("at least one [[model]] is needed".into());
        }
        let mut ids: Vec<&str> = self.models.iter().map(|m| m.id()).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err("two [[model]] tables share an id: set `id` on one of them".into());
        }
        let t = &self.training;
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(format!("[training] lr must be positive, got {}", t.lr));
        }
        if t.epochs == 0 || t.batch == 0 {
            return Err("[training] epochs and batch must be at least 1".into());
        }
        if let ClassWeights::Rule(r) = &t.class_weights {
            if r != "none" && r != "balanced" {
                return Err(format!("[training] class_weights must be \"none\", \"balanced\" or a list, got {r:?}"));
            }
        }
        if self.targets.is_empty() {
            return Err("at least one [label] target is needed".into());
        }
        let mut tids = Vec::new();
        for t in &self.targets {
            t.validate()?;
            tids.push(t.resolved_id()?);
        }
        let mut sorted = tids.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("two [[label]] targets share the id {:?}: set `id` on one of them", w[0]));
        }
        for m in &self.models {
            for t in m.targets.iter().flatten() {
                if !tids.contains(t) {
                    return Err(format!("[[model]] {}: targets names {t:?}, but the targets are {tids:?}", m.id()));
                }
            }
            if m.targets.as_ref().is_some_and(|t| t.is_empty()) {
                return Err(format!("[[model]] {}: targets is empty", m.id()));
            }
            if m.name == LIGHTGBM {
                LightgbmParams::from_spec(m)?;
            }
            if m.name == BAYES_ONLINE {
                BayesParams::from_spec(m)?;
            }
            if m.name == ENSEMBLE {
                EnsembleParams::from_spec(m, &tids)?;
            }
        }
        for b in &self.baselines {
            if !flowcast_contract::baselines::BASELINES.contains(&b.as_str()) {
                return Err(format!("baselines: unknown {b:?} (known: {})", flowcast_contract::baselines::BASELINES.join(", ")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
name = "t"
[data]
synthetic = { levels = 2, events = 1000 }
[columns]
kind = "book"
window = 10
[[model]]
name = "lstm"
hidden = 8
"#;

    #[test]
    fn minimal_experiment_parses_with_defaults() {
        let e = Experiment::from_toml(MIN, "t.toml").unwrap();
        assert_eq!(e.models[0].params["hidden"], 8);
        assert_eq!(e.training.optimizer, OptimizerKind::Adam);
        assert_eq!(e.targets[0].kind, LabelKind::Smoothed);
        assert_eq!(e.device, "cpu");
    }

    #[test]
    fn bayes_online_params_are_checked_and_alpha_comes_from_the_target() {
        let with = |extra: &str| {
            Experiment::from_toml(&MIN.replace("name = \"lstm\"\nhidden = 8", &format!("name = \"bayes_online\"\n{extra}")), "t.toml")
        };
        let e = with("form = \"diagonal\"\nchangepoint = { action = \"reset\", within = 20 }").unwrap();
        let p = BayesParams::from_spec(&e.models[0]).unwrap();
        assert_eq!(p.config.form, flowcast_contract::bayes::Form::Diagonal);
        assert!(p.prior_b_from_data);
        assert_eq!(p.changepoint.unwrap().within, 20);
        for (bad, word) in [
            ("alpha_bps = 1.0", "alpha_bps"),
            ("discount = 1.5", "discount"),
            ("forms = \"full\"", "forms"),
            ("changepoint = { within = 0 }", "within"),
        ] {
            let msg = with(bad).unwrap_err().to_string();
            assert!(msg.contains(word), "{bad}: {msg}");
        }
        assert!(!BayesParams::from_spec(&with("prior_b = 3.0").unwrap().models[0]).unwrap().prior_b_from_data);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_problem() {
        let bad = MIN.replace("kind = \"book\"", "kind = \"book\"\nwindoww = 3");
        let e = Experiment::from_toml(&bad, "t.toml").unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("windoww"), "{e}");
        let bad =
            MIN.replace("[columns]", "[training]\nschedule = { kind = \"cosine\", min_lr = 0.0 }\nclass_weights = \"weird\"\n[columns]");
        let e = Experiment::from_toml(&bad, "t.toml").unwrap_err().to_string();
        assert!(e.contains("class_weights"), "{e}");
        let bad = MIN.replace("synthetic = { levels = 2, events = 1000 }", "dataset = \"x\"\nsynthetic = { events = 5 }");
        assert!(Experiment::from_toml(&bad, "t.toml").unwrap_err().to_string().contains("exactly one"));
    }
}
