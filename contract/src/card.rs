//! The model card `model.json`: everything needed to reproduce a model's inputs and judge its
//! outputs, beside `model.safetensors` (weights) and `model_config.json` (architecture, the
//! schema of `spec`). Loading validates every field: a card that disagrees with its weights, its
//! own inputs or itself is rejected naming the field. Fields: docs/training.md.

use crate::baselines::Baseline;
use crate::error::{ContractError, Result};
use crate::files::{
    BAYES_DOC_FORMAT, BAYES_DOC_VERSION, CARD_FILE, CARD_FORMAT, CARD_VERSION, CONFIG_FILE, LIGHTGBM_DOC_FORMAT, LIGHTGBM_DOC_VERSION,
};
use crate::gbdt::{GbdtModel, Objective};
use crate::preprocessing::{book_names, ColumnKind, DataInfo, Preprocessing};
use crate::spec::ModelSpec;
use crate::target::OutputKind;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// One tensor of the weights file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsEntry {
    pub file: String,
    pub sha256: String,
    pub tensors: Vec<TensorEntry>,
}

/// What training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingEntry {
    pub seed: u64,
    /// The experiment's `[training]` table, resolved.
    pub spec: serde_json::Value,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub class_weights: Option<Vec<f32>>,
    pub train_windows: usize,
    pub validation_windows: usize,
    pub device: String,
}

/// Model family: what the weights file is and which predictor reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// A `spec::ModelSpec` architecture: `model.safetensors` + `model_config.json` (burn/candle).
    Deep,
    /// Gradient-boosted trees in LightGBM's text format (`model.txt`), read by `gbdt`.
    Lightgbm,
    /// Bayesian online linear regression (`bayes_state.json`), read by `bayes`.
    #[serde(rename = "bayes_online")]
    BayesOnline,
    /// A stacked ensemble: `ensemble.json` (members + meta-learner), its members' directories
    /// inside its own (`crate::ensemble`).
    Ensemble,
}

impl Family {
    pub const ALL: [Family; 4] = [Family::Deep, Family::Lightgbm, Family::BayesOnline, Family::Ensemble];
    pub fn name(self) -> &'static str {
        match self {
            Family::Deep => "deep",
            Family::Lightgbm => "lightgbm",
            Family::BayesOnline => "bayes_online",
            Family::Ensemble => "ensemble",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub format: String,
    pub version: u32,
    pub flowcast_version: String,
    /// Experiment name and model id within it (the run's model directory).
    pub experiment: String,
    pub model_id: String,
    /// Model family: `deep` or `lightgbm`.
    pub family: Family,
    /// deep: `model_config.json`'s document `{format, version, architecture, config}`;
    /// lightgbm: `{format: "flowcast-lightgbm", version, objective, trees, iterations, params}`.
    pub model: serde_json::Value,
    /// Trainable parameters (lightgbm: leaves over all trees).
    pub params: usize,
    pub weights: WeightsEntry,
    /// Input columns (with the fitted feature set), window length, normalisation statistics
    /// and the target with its α.
    pub preprocessing: Preprocessing,
    /// Class names in output order (= `preprocessing.target.classes`).
    pub classes: Vec<String>,
    pub training_data: DataInfo,
    pub training: TrainingEntry,
    /// Fitted baselines (registry names, applied unchanged by `eval`).
    pub baselines: Vec<Baseline>,
    /// Test metrics of the model and the baselines on the training run's test split.
    pub metrics: serde_json::Value,
    /// Decision thresholds the server returns and the backtest trades (defaults when absent).
    #[serde(default)]
    pub signal: crate::signal::SignalConfig,
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let b = std::fs::read(path).map_err(|e| ContractError::io(path, e))?;
    Ok(Sha256::digest(&b).iter().map(|x| format!("{x:02x}")).collect())
}

/// Reads a safetensors file and hands its parsed view to `f` (the `safetensors` crate's parser:
/// header bounds, offsets and dtypes are checked there).
fn with_safetensors<T>(path: &Path, f: impl FnOnce(&SafeTensors<'_>) -> T) -> Result<T> {
    let b = std::fs::read(path).map_err(|e| ContractError::io(path, e))?;
    let st = SafeTensors::deserialize(&b).map_err(|e| ContractError::card(path, "header", e.to_string()))?;
    Ok(f(&st))
}

/// Tensor names, dtypes and shapes of a safetensors file, in name order.
pub fn safetensors_header(path: &Path) -> Result<Vec<TensorEntry>> {
    with_safetensors(path, |st| {
        let mut out: Vec<TensorEntry> = st
            .tensors()
            .into_iter()
            .map(|(name, t)| TensorEntry { name, dtype: t.dtype().to_string(), shape: t.shape().to_vec() })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    })
}

/// SHA-256 over the tensors of a safetensors file — for each tensor in name order: name, dtype,
/// shape and data bytes — ignoring the header's key order and metadata, which are not
/// byte-stable across writes. Equal digests mean bit-identical weights.
pub fn tensors_sha256(path: &Path) -> Result<String> {
    with_safetensors(path, |st| {
        let mut ts = st.tensors();
        ts.sort_by(|a, b| a.0.cmp(&b.0));
        let mut d = Sha256::new();
        for (name, t) in ts {
            d.update(name.as_bytes());
            d.update(format!("\"{}\"", t.dtype()).as_bytes());
            d.update(serde_json::to_string(t.shape()).expect("shape").as_bytes());
            d.update(t.data());
        }
        d.finalize().iter().map(|x| format!("{x:02x}")).collect()
    })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

impl ModelCard {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CARD_FILE);
        std::fs::write(&p, serde_json::to_string_pretty(self).expect("card serialises") + "\n").map_err(|e| ContractError::io(&p, e))
    }

    /// Load `dir/model.json` and validate it against itself and the weights beside it.
    pub fn load(dir: &Path) -> Result<ModelCard> {
        let p = dir.join(CARD_FILE);
        let s = std::fs::read_to_string(&p).map_err(|e| ContractError::io(&p, e))?;
        // Format and version first, so an old card says so instead of failing on a field.
        let head: serde_json::Value =
            serde_json::from_str(&s).map_err(|e| ContractError::card(&p, &format!("line {}", e.line()), e.to_string()))?;
        if head["format"] != CARD_FORMAT {
            return Err(ContractError::card(&p, "format", format!("{}, expected {CARD_FORMAT:?}", head["format"])));
        }
        if head["version"] != CARD_VERSION {
            return Err(ContractError::card(
                &p,
                "version",
                format!("{}, expected {CARD_VERSION} (re-export the model with this flowcast)", head["version"]),
            ));
        }
        // The family by name, so an unknown one says which field and which families exist.
        if !Family::ALL.iter().any(|f| head["family"] == f.name()) {
            let known: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
            return Err(ContractError::card(&p, "family", format!("{}: this flowcast serves the families {known:?}", head["family"])));
        }
        let mut card: ModelCard =
            serde_json::from_str(&s).map_err(|e| ContractError::card(&p, &format!("line {}", e.line()), e.to_string()))?;
        // The normaliser's per-column (shift, scale) is derived state: rebuild it from the stats.
        card.preprocessing.inputs.normalizer = flowcast_datasets::normalize::Normalizer::from_json(
            &card.preprocessing.inputs.normalizer.to_json(),
            &format!("{}: preprocessing.inputs.normalizer", p.display()),
        )?;
        card.validate(dir)?;
        Ok(card)
    }

    /// The architecture document as the schema both twins implement.
    pub fn spec(&self, dir: &Path) -> Result<ModelSpec> {
        ModelSpec::from_document(&self.model, &dir.join(CARD_FILE))
    }

    /// Every check `load` makes; errors name the field.
    pub fn validate(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CARD_FILE);
        let err = |field: &str, r: String| Err(ContractError::card(&p, field, r));
        if self.format != CARD_FORMAT {
            return err("format", format!("{:?}, expected {CARD_FORMAT:?}", self.format));
        }
        if self.version != CARD_VERSION {
            return err("version", format!("{}, expected {CARD_VERSION}", self.version));
        }
        if self.flowcast_version.is_empty() {
            return err("flowcast_version", "empty".into());
        }
        if let Err(r) = self.signal.validate() {
            return err("signal", r);
        }
        let inp = &self.preprocessing.inputs;
        let target = &self.preprocessing.target;
        let f = inp.names.len();
        match self.family {
            Family::Deep => self.validate_deep_model(dir)?,
            Family::Lightgbm => self.validate_lightgbm(dir)?,
            Family::BayesOnline => self.validate_bayes(dir)?,
            Family::Ensemble => validate_ensemble(self, dir)?,
        }
        if self.classes != target.classes {
            return err("classes", format!("{:?} differ from preprocessing.target.classes {:?}", self.classes, target.classes));
        }
        if inp.window == 0 {
            return err("preprocessing.inputs.window", "0".into());
        }
        let book = if inp.columns == ColumnKind::Features { 0 } else { 4 * inp.levels };
        if book > f || inp.names[..book] != book_names(inp.levels)[..book] {
            return err(
                "preprocessing.inputs.names",
                format!("do not start with the {} book-level columns of {} levels", book, inp.levels),
            );
        }
        if inp.normalizer.check_names(&inp.names).is_err() {
            return err("preprocessing.inputs.normalizer", "its columns differ from preprocessing.inputs.names".into());
        }
        let has_features = inp.columns != ColumnKind::Book;
        if has_features == inp.feature_set.is_null() {
            return err(
                "preprocessing.inputs.feature_set",
                format!("must be {} for columns = {:?}", if has_features { "a feature set" } else { "null" }, inp.columns),
            );
        }
        if has_features {
            let set = flowcast_datasets::features::FeatureSet::from_json(&inp.feature_set.to_string())
                .map_err(|e| ContractError::card(&p, "preprocessing.inputs.feature_set", e.to_string()))?;
            if inp.names[book..] != set.names()[..] {
                return err("preprocessing.inputs.feature_set", "its columns differ from preprocessing.inputs.names".into());
            }
        }
        if !(target.alpha.is_finite() && target.alpha >= 0.0) {
            return err("preprocessing.target.alpha", format!("{} is not a finite threshold", target.alpha));
        }
        if !is_hex64(&self.training_data.events_sha256) {
            return err("training_data.events_sha256", "not a SHA-256 hex digest".into());
        }
        if let Some(b) = self.baselines.iter().find(|b| b.n_classes() != self.classes.len()) {
            return err("baselines", format!("{} is fitted for {} classes, the model has {}", b.name(), b.n_classes(), self.classes.len()));
        }
        for key in ["accuracy", "macro_f1", "mcc"] {
            if !self.metrics["test"][key].is_number() {
                return err(&format!("metrics.test.{key}"), "missing".into());
            }
        }
        match self.family {
            Family::Deep => self.validate_deep_files(dir),
            Family::Lightgbm | Family::BayesOnline | Family::Ensemble => Ok(()),
        }
    }

    /// The architecture document against the inputs and target (deep cards).
    fn validate_deep_model(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CARD_FILE);
        let err = |field: &str, r: String| Err(ContractError::card(&p, field, r));
        if self.model["format"] == LIGHTGBM_DOC_FORMAT {
            return err("family", "\"deep\", but the model document is a LightGBM one".into());
        }
        let config = self.spec(dir)?;
        let inp = &self.preprocessing.inputs;
        let f = inp.names.len();
        if config.n_features() != f {
            return err("model.config", format!("{} input features, but preprocessing.inputs.names has {f}", config.n_features()));
        }
        if self.preprocessing.target.output != OutputKind::Direction {
            return err("preprocessing.target.output", "deep models predict direction classes".into());
        }
        if config.n_classes() != self.classes.len() {
            return err("classes", format!("{} names for a model with {} classes", self.classes.len(), config.n_classes()));
        }
        if inp.window == 0 {
            return err("preprocessing.inputs.window", "0".into());
        }
        config.check_window(inp.window).map_err(|e| ContractError::card(&p, "preprocessing.inputs.window", e))
    }

    /// Weights and config files beside a deep card.
    fn validate_deep_files(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CARD_FILE);
        let err = |field: &str, r: String| Err(ContractError::card(&p, field, r));
        // The weights: file present, hash as recorded, tensors exactly as recorded.
        let w = dir.join(&self.weights.file);
        let sha = sha256_file(&w)?;
        if sha != self.weights.sha256 {
            return err("weights.sha256", format!("{} does not match {} ({sha})", self.weights.sha256, w.display()));
        }
        let mut want = self.weights.tensors.clone();
        want.sort_by(|a, b| a.name.cmp(&b.name));
        let got = safetensors_header(&w)?;
        if got != want {
            let first = got.iter().zip(&want).find(|(a, b)| a != b).map(|(a, b)| format!("{} vs {}", a.name, b.name));
            return err(
                "weights.tensors",
                format!("differ from the file ({} vs {} tensors; first difference {first:?})", got.len(), want.len()),
            );
        }
        // model_config.json beside it must be the same document.
        let cfg_path = dir.join(CONFIG_FILE);
        let cfg_doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).map_err(|e| ContractError::io(&cfg_path, e))?)
                .map_err(|e| ContractError::card(&cfg_path, "json", e.to_string()))?;
        if cfg_doc != self.model {
            return err("model", format!("differs from {}", cfg_path.display()));
        }
        Ok(())
    }

    /// The model document and `model.txt` of a lightgbm card: the hash as recorded, a model the
    /// evaluator parses, reading the card's columns and giving the target's output.
    fn validate_lightgbm(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CARD_FILE);
        let err = |field: &str, r: String| Err(ContractError::card(&p, field, r));
        if self.model["format"] != LIGHTGBM_DOC_FORMAT {
            return err("family", format!("\"lightgbm\", but the model document's format is {}", self.model["format"]));
        }
        if self.model["version"] != LIGHTGBM_DOC_VERSION {
            return err("model.version", format!("{}, expected {LIGHTGBM_DOC_VERSION}", self.model["version"]));
        }
        if !self.weights.tensors.is_empty() {
            return err("weights.tensors", "a LightGBM model has no tensors".into());
        }
        let w = dir.join(&self.weights.file);
        let sha = sha256_file(&w)?;
        if sha != self.weights.sha256 {
            return err("weights.sha256", format!("{} does not match {} ({sha})", self.weights.sha256, w.display()));
        }
        let m = GbdtModel::load(&w)?;
        let f = self.preprocessing.inputs.names.len();
        if m.features != f {
            return err("model.features", format!("{} reads {} features, but preprocessing.inputs.names has {f}", w.display(), m.features));
        }
        if self.model["objective"] != m.objective_line.as_str() {
            return err("model.objective", format!("{}, but {} has {:?}", self.model["objective"], w.display(), m.objective_line));
        }
        let k = self.classes.len();
        match (self.preprocessing.target.output, m.objective) {
            (OutputKind::Direction, Objective::Multiclass { classes }) if classes == k => Ok(()),
            (OutputKind::Regression, Objective::Regression { .. }) => Ok(()),
            (o, _) => err("model.objective", format!("{:?} does not predict a {o:?} target over {k} classes", m.objective_line)),
        }
    }
}

impl ModelCard {
    /// The model document and `bayes_state.json` of a `bayes_online` card: the hash as
    /// recorded, a state that parses and checks, over the card's columns, window and α.
    fn validate_bayes(&self, dir: &Path) -> Result<()> {
        let p = dir.join(CARD_FILE);
        let err = |field: &str, r: String| Err(ContractError::card(&p, field, r));
        if self.model["format"] != BAYES_DOC_FORMAT {
            return err("family", format!("\"bayes_online\", but the model document's format is {}", self.model["format"]));
        }
        if self.model["version"] != BAYES_DOC_VERSION {
            return err("model.version", format!("{}, expected {BAYES_DOC_VERSION}", self.model["version"]));
        }
        if !self.weights.tensors.is_empty() {
            return err("weights.tensors", "a bayes_online model has no tensors".into());
        }
        let w = dir.join(&self.weights.file);
        let sha = sha256_file(&w)?;
        if sha != self.weights.sha256 {
            return err("weights.sha256", format!("{} does not match {} ({sha})", self.weights.sha256, w.display()));
        }
        let m = crate::bayes::BayesOnline::read(&w)?;
        let inp = &self.preprocessing.inputs;
        let info = crate::predictor::Predictor::info(&m);
        if info.features != inp.names.len() {
            return err(
                "model.features",
                format!("{} reads {} features, preprocessing.inputs.names has {}", w.display(), info.features, inp.names.len()),
            );
        }
        if info.window != inp.window {
            return err("preprocessing.inputs.window", format!("{}, but {} serves windows of {}", inp.window, w.display(), info.window));
        }
        if self.classes != info.classes {
            return err("classes", format!("{:?}, but bayes_online predicts {:?}", self.classes, info.classes));
        }
        let want = self.preprocessing.target.alpha * crate::target::BPS;
        let got = m.config().alpha_bps;
        if (got - want).abs() > 1e-9 * want.abs().max(1.0) {
            return err("preprocessing.target.alpha", format!("{want} bps, but {} classifies at ±{got} bps", w.display()));
        }
        Ok(())
    }
}

/// Loading a bayes predictor from a card lives here, beside the card (as for gbdt).
impl crate::bayes::BayesOnline {
    /// Loads `dir/bayes_state.json` for a validated card.
    pub fn load(dir: &Path, card: &ModelCard) -> Result<crate::bayes::BayesOnline> {
        crate::bayes::BayesOnline::read(&dir.join(&card.weights.file))
    }
}

/// Model directories of a run (or the directory itself when it holds a model card), sorted by
/// name; callers that know the experiment's order re-sort.
pub fn model_dirs(run: &Path) -> Result<Vec<std::path::PathBuf>> {
    if run.join(CARD_FILE).exists() {
        return Ok(vec![run.to_path_buf()]);
    }
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(run)
        .map_err(|e| ContractError::io(run, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(CARD_FILE).exists())
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(ContractError::Invalid(format!("{}: no {CARD_FILE} in it or its sub-directories", run.display())));
    }
    Ok(v)
}

/// Loading a gbdt predictor from a card lives here, beside the card, so that `gbdt` does not
/// depend on `card` (the card validates gbdt models: one direction only).
impl crate::gbdt::GbdtPredictor {
    /// Loads `dir/model.txt` for a validated card.
    pub fn load(dir: &Path, card: &ModelCard) -> Result<crate::gbdt::GbdtPredictor> {
        let path: std::path::PathBuf = dir.join(&card.weights.file);
        let model = GbdtModel::load(&path)?;
        crate::gbdt::GbdtPredictor::new(model, card, &path)
    }

    /// Wraps a parsed model with the card's classes and input shape, checking they agree.
    pub fn new(model: GbdtModel, card: &ModelCard, path: &Path) -> Result<crate::gbdt::GbdtPredictor> {
        let inp = &card.preprocessing.inputs;
        let target = &card.preprocessing.target;
        if model.features != inp.names.len() {
            return Err(ContractError::card(
                path,
                "max_feature_idx",
                format!("{} features, the card's preprocessing.inputs.names has {}", model.features, inp.names.len()),
            ));
        }
        match (target.output, model.objective) {
            (OutputKind::Direction, Objective::Multiclass { classes }) if classes == card.classes.len() => {}
            (OutputKind::Regression, Objective::Regression { .. }) => {}
            (o, _) => {
                return Err(ContractError::card(
                    path,
                    "objective",
                    format!("{:?} does not give a {o:?} output over {} classes", model.objective_line, card.classes.len()),
                ))
            }
        }
        Ok(crate::gbdt::GbdtPredictor::from_parts(model, target, inp.window, inp.names.len()))
    }
}

// The ensemble family's card side (beside the card, as gbdt's: `ensemble` does not depend on `card`).
use crate::ensemble::{is_plain_file_name, EnsembleDoc, EnsemblePredictor, Member, MetaLearner, ENSEMBLE_DOC_FORMAT, ENSEMBLE_DOC_VERSION};

impl EnsembleDoc {
    /// The card's `model` document as an ensemble document (a LightGBM meta model not loaded:
    /// [`EnsembleDoc::load_meta`]).
    pub fn from_card(card: &ModelCard, path: &Path) -> Result<EnsembleDoc> {
        serde_json::from_value(card.model.clone()).map_err(|e| ContractError::card(path, "model", e.to_string()))
    }

    /// Reads the meta-learner's model file of ensemble directory `dir`, if it has one (the
    /// `lightgbm` meta): its SHA-256 as the document records, then LightGBM's text format.
    pub fn load_meta(&mut self, dir: &Path) -> Result<()> {
        if let MetaLearner::Lightgbm { file, sha256, model, .. } = &mut self.meta {
            let p = dir.join(crate::ensemble::ENSEMBLE_FILE);
            if !is_plain_file_name(file) {
                return Err(ContractError::card(&p, "model.meta.file", format!("{file:?}: need a plain file name beside the document")));
            }
            let f = dir.join(&*file);
            let got = sha256_file(&f)?;
            if &got != sha256 {
                return Err(ContractError::card(&p, "model.meta.sha256", format!("{sha256} does not match {} ({got})", f.display())));
            }
            *model = Some(std::sync::Arc::new(GbdtModel::load(&f)?));
        }
        Ok(())
    }
}

/// The checks of an ensemble card: its document file and hash, the meta-learner's shapes, and
/// every member — a valid card (hash as recorded) of a non-ensemble family reading the
/// ensemble's inputs with its classes.
fn validate_ensemble(card: &ModelCard, dir: &Path) -> Result<()> {
    let p = dir.join(CARD_FILE);
    let err = |field: &str, r: String| Err(ContractError::card(&p, field, r));
    if card.model["format"] != ENSEMBLE_DOC_FORMAT {
        return err("family", format!("\"ensemble\", but the model document's format is {}", card.model["format"]));
    }
    if card.model["version"] != ENSEMBLE_DOC_VERSION {
        return err("model.version", format!("{}, expected {ENSEMBLE_DOC_VERSION}", card.model["version"]));
    }
    let mut doc = EnsembleDoc::from_card(card, &p)?;
    let w = dir.join(&card.weights.file);
    let sha = sha256_file(&w)?;
    if sha != card.weights.sha256 {
        return err("weights.sha256", format!("{} does not match {} ({sha})", card.weights.sha256, w.display()));
    }
    let file_doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&w).map_err(|e| ContractError::io(&w, e))?)
        .map_err(|e| ContractError::card(&w, "json", e.to_string()))?;
    if file_doc != card.model {
        return err("model", format!("differs from {}", w.display()));
    }
    let k = card.classes.len();
    if doc.members.is_empty() {
        return err("model.members", "empty".into());
    }
    doc.load_meta(dir)?;
    if let Err(r) = doc.meta.check(doc.members.len(), k) {
        return err("model.meta", r);
    }
    for (i, m) in doc.members.iter().enumerate() {
        let field = format!("model.members[{i}] ({})", m.id);
        match (&m.dir, &m.card_sha256, &m.baseline) {
            (Some(d), Some(h), None) => {
                if Path::new(d).is_absolute() || d.split(['/', '\\']).any(|c| c == "..") {
                    return err(&field, format!("dir {d:?} must be relative, inside the ensemble"));
                }
                let md = dir.join(d);
                let got = sha256_file(&md.join(CARD_FILE))?;
                if &got != h {
                    return err(&field, format!("card_sha256 {h} does not match {} ({got})", md.join(CARD_FILE).display()));
                }
                let mc = ModelCard::load(&md)?;
                if mc.family == Family::Ensemble {
                    return err(&field, "a member cannot itself be an ensemble".into());
                }
                if mc.preprocessing.inputs != card.preprocessing.inputs {
                    return err(&field, "its preprocessing.inputs differ from the ensemble's".into());
                }
                if mc.classes != card.classes {
                    return err(&field, format!("classes {:?} differ from the ensemble's {:?}", mc.classes, card.classes));
                }
                if mc.preprocessing.target.id != m.target {
                    return err(&field, format!("target {:?}, but its card predicts {:?}", m.target, mc.preprocessing.target.id));
                }
            }
            (None, None, Some(b)) => {
                if b.n_classes() != k {
                    return err(&field, format!("baseline fitted for {} classes, the ensemble has {k}", b.n_classes()));
                }
            }
            _ => return err(&field, "needs either dir + card_sha256 (a model) or baseline".into()),
        }
    }
    Ok(())
}

impl<M: ?Sized + crate::Predictor> EnsemblePredictor<M> {
    /// Loads a validated ensemble card's members (`load_member` builds each model member from
    /// its directory and card; it decides the engine) and meta-learner.
    pub fn load(dir: &Path, card: &ModelCard, load_member: &dyn Fn(&Path, &ModelCard) -> Result<Box<M>>) -> Result<Self> {
        let mut doc = EnsembleDoc::from_card(card, &dir.join(CARD_FILE))?;
        doc.load_meta(dir)?;
        let inp = &card.preprocessing.inputs;
        let mut members = Vec::with_capacity(doc.members.len());
        for m in &doc.members {
            members.push(match (&m.dir, &m.baseline) {
                (Some(d), _) => {
                    let md = dir.join(d);
                    let mc = ModelCard::load(&md)?;
                    Member::Model(load_member(&md, &mc)?)
                }
                (None, Some(b)) => Member::Baseline(b.predictor(&card.classes, inp.window, inp.names.len())),
                (None, None) => return Err(ContractError::card(&dir.join(CARD_FILE), "model.members", format!("{}: no dir", m.id))),
            });
        }
        EnsemblePredictor::new(members, doc.meta, &card.classes, inp.window, inp.names.len())
    }
}
