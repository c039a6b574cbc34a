//! The model repository: which models the server knows, their versions and states. Every model
//! is loaded once (validated by its loader) and then shared behind an `Arc`; requests take a
//! read lock only long enough to clone that `Arc`, so load/unload never waits on inference.

use crate::error::ApiError;
use flowcast_contract::files::CARD_FILE;
use flowcast_contract::signal::SignalRule;
use flowcast_contract::{ModelCard, Predictor, PredictorInfo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A loaded model, shareable across the runtime's threads.
pub type SharedPredictor = Arc<dyn Predictor + Send + Sync>;

/// What a loader returns: the predictor, string metadata for `GET /v2/models/{name}` and, for
/// exported models, the card (stream mode needs its preprocessing; signals its thresholds).
pub struct Loaded {
    pub predictor: SharedPredictor,
    pub parameters: Vec<(String, String)>,
    pub card: Option<Arc<ModelCard>>,
    /// The learned state each stream starts from, where the family learns online (online.rs).
    pub online: Option<crate::online::OnlineModel>,
}

/// Loads (and so validates) the model in a directory; the error is the reason it is skipped.
pub type Loader = Arc<dyn Fn(&Path) -> Result<Loaded, String> + Send + Sync>;

/// The loader of exported models (card and weights validated, no burn, no C++): every family
/// through `flowcast_serve::load_predictor` (serving kernels, model.txt evaluator, frozen
/// posterior, ensembles).
pub fn candle_loader() -> Loader {
    Arc::new(|dir: &Path| {
        let card = flowcast_contract::ModelCard::load(dir).map_err(|e| e.to_string())?;
        let (online, p): (_, SharedPredictor) = match crate::online::load_online(dir, &card)? {
            Some((proto, p)) => (Some(proto), p),
            None => (None, Arc::from(flowcast_serve::load_predictor(dir, &card).map_err(|e| e.to_string())?)),
        };
        let parameters = vec![
            ("architecture".to_string(), p.info().name.clone()),
            ("experiment".to_string(), card.experiment.clone()),
            ("model_id".to_string(), card.model_id.clone()),
            ("target".to_string(), card.preprocessing.target.id.clone()),
            ("classes".to_string(), card.classes.join(",")),
        ];
        Ok(Loaded { predictor: p, parameters, card: Some(Arc::new(card)), online })
    })
}

/// One ready model version.
pub struct Model {
    pub name: String,
    pub version: String,
    pub predictor: SharedPredictor,
    pub parameters: Vec<(String, String)>,
    /// `None` for a model without a card (no stream mode; default signal thresholds).
    pub card: Option<Arc<ModelCard>>,
    /// The decision rule of the card (`SignalRule::of_card`), else the defaults on its classes.
    pub signal: SignalRule,
    /// The exported online state each stream copies (online.rs); `None`: served frozen.
    pub online: Option<crate::online::OnlineModel>,
}

impl Model {
    pub fn info(&self) -> &PredictorInfo {
        self.predictor.info()
    }
}

#[derive(Clone)]
pub enum State {
    Ready(Arc<Model>),
    /// Failed to load: the reason.
    Unavailable(String),
    Unloaded,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Ready(_) => "READY",
            State::Unavailable(_) => "UNAVAILABLE",
            State::Unloaded => "UNLOADED",
        }
    }
}

struct Entry {
    dir: PathBuf,
    state: State,
}

/// One row of the repository index.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    pub state: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Versions sort numerically ("10" after "9"), non-numeric ones after all numeric ones.
fn version_key(v: &str) -> (u64, String) {
    (v.parse().unwrap_or(u64::MAX), v.to_string())
}

fn is_visible_dir(p: &Path) -> bool {
    p.is_dir() && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn sorted_subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_visible_dir(p)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn dir_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
}

/// The `(name, version, directory)` of every model under `root`: a model directory itself
/// (name = its directory name, version "1"), a flowcast run directory (each sub-directory with
/// a `model.json`, version "1"), or a Triton-style repository `<root>/<name>/<version>/model.json`
/// (numeric versions).
pub fn discover(root: &Path) -> Vec<(String, String, PathBuf)> {
    if root.join(CARD_FILE).is_file() {
        let abs = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        return vec![(dir_name(&abs), "1".into(), root.to_path_buf())];
    }
    let mut out = Vec::new();
    for d in sorted_subdirs(root) {
        let name = dir_name(&d);
        if d.join(CARD_FILE).is_file() {
            out.push((name, "1".into(), d));
            continue;
        }
        for v in sorted_subdirs(&d) {
            let ver = dir_name(&v);
            if !ver.is_empty() && ver.bytes().all(|c| c.is_ascii_digit()) && v.join(CARD_FILE).is_file() {
                out.push((name.clone(), ver, v));
            }
        }
    }
    out
}

pub struct Registry {
    root: PathBuf,
    loader: Loader,
    models: RwLock<BTreeMap<String, BTreeMap<String, Entry>>>,
}

impl Registry {
    /// Discovers and loads every model under `root` (blocking: call it off the async runtime).
    /// A model that fails to load is kept as UNAVAILABLE with its reason (logged here).
    pub fn open(root: &Path, loader: Loader) -> Result<Registry, String> {
        if !root.is_dir() {
            return Err(format!("--models {}: not a directory", root.display()));
        }
        let r = Registry { root: root.to_path_buf(), loader, models: RwLock::new(BTreeMap::new()) };
        let found = discover(root);
        if found.is_empty() {
            return Err(format!(
                "--models {}: no {CARD_FILE} in it, in its sub-directories, or in <name>/<version>/ sub-directories",
                root.display()
            ));
        }
        let mut m = BTreeMap::new();
        for (name, version, dir) in found {
            let state = r.load_dir(&name, &version, &dir);
            m.entry(name).or_insert_with(BTreeMap::new).insert(version, Entry { dir, state });
        }
        *r.models.write().expect("registry lock") = m;
        Ok(r)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn load_dir(&self, name: &str, version: &str, dir: &Path) -> State {
        match (self.loader)(dir) {
            Ok(l) => {
                tracing::info!(model = name, version, dir = %dir.display(), "loaded");
                let signal = match &l.card {
                    Some(c) => SignalRule::of_card(c),
                    None => SignalRule::new(Default::default(), &l.predictor.info().classes, 0.0),
                };
                State::Ready(Arc::new(Model {
                    name: name.into(),
                    version: version.into(),
                    predictor: l.predictor,
                    parameters: l.parameters,
                    card: l.card,
                    signal,
                    online: l.online,
                }))
            }
            Err(e) => {
                tracing::warn!(model = name, version, dir = %dir.display(), reason = %e, "skipped: failed to load");
                State::Unavailable(e)
            }
        }
    }

    /// Every known model version with its state, by name then version.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let m = self.models.read().expect("registry lock");
        let mut out = Vec::new();
        for (name, versions) in m.iter() {
            let mut vs: Vec<(&String, &Entry)> = versions.iter().collect();
            vs.sort_by_key(|(v, _)| version_key(v));
            for (v, e) in vs {
                if ready_only && !matches!(e.state, State::Ready(_)) {
                    continue;
                }
                let reason = if let State::Unavailable(r) = &e.state { r.clone() } else { String::new() };
                out.push(IndexEntry { name: name.clone(), version: v.clone(), state: e.state.name().into(), reason });
            }
        }
        out
    }

    /// Whether at least one model is ready.
    pub fn any_ready(&self) -> bool {
        self.models.read().expect("registry lock").values().any(|vs| vs.values().any(|e| matches!(e.state, State::Ready(_))))
    }

    /// The versions known for `name` (numeric order), or NOT_FOUND.
    pub fn versions(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let m = self.models.read().expect("registry lock");
        let vs = m.get(name).ok_or_else(|| unknown_model(name))?;
        let mut v: Vec<String> = vs.keys().cloned().collect();
        v.sort_by_key(|v| version_key(v));
        Ok(v)
    }

    /// The state of `name` at `version` (None: the highest ready version, else the highest).
    pub fn state(&self, name: &str, version: Option<&str>) -> Result<(String, State), ApiError> {
        let m = self.models.read().expect("registry lock");
        let vs = m.get(name).ok_or_else(|| unknown_model(name))?;
        match version {
            Some(v) => {
                let e = vs.get(v).ok_or_else(|| {
                    let mut known: Vec<&String> = vs.keys().collect();
                    known.sort_by_key(|v| version_key(v));
                    ApiError::not_found(format!("model {name:?} has no version {v:?} (versions: {known:?})"))
                })?;
                Ok((v.to_string(), e.state.clone()))
            }
            None => {
                let best = vs
                    .iter()
                    .filter(|(_, e)| matches!(e.state, State::Ready(_)))
                    .max_by_key(|(v, _)| version_key(v))
                    .or_else(|| vs.iter().max_by_key(|(v, _)| version_key(v)))
                    .expect("a known model has a version");
                Ok((best.0.clone(), best.1.state.clone()))
            }
        }
    }

    /// The ready model `name` at `version`: NOT_FOUND when unknown, UNAVAILABLE when not ready.
    pub fn get(&self, name: &str, version: Option<&str>) -> Result<Arc<Model>, ApiError> {
        match self.state(name, version)? {
            (_, State::Ready(m)) => Ok(m),
            (v, State::Unavailable(r)) => Err(ApiError::unavailable(format!("model {name:?} version {v:?} is not ready: {r}"))),
            (v, State::Unloaded) => Err(ApiError::unavailable(format!("model {name:?} version {v:?} is unloaded"))),
        }
    }

    /// (Re)loads every version of `name` from disk, discovering its directories again (blocking).
    /// NOT_FOUND when no directory under the root holds it; UNAVAILABLE when none loads.
    pub fn load(&self, name: &str) -> Result<(), ApiError> {
        let found: Vec<(String, String, PathBuf)> = discover(&self.root).into_iter().filter(|(n, _, _)| n == name).collect();
        if found.is_empty() {
            return Err(ApiError::not_found(format!("no model {name:?} under {}", self.root.display())));
        }
        let mut fresh = BTreeMap::new();
        for (_, version, dir) in found {
            let state = self.load_dir(name, &version, &dir);
            fresh.insert(version, Entry { dir, state });
        }
        let failed: Vec<String> = fresh
            .iter()
            .filter_map(|(v, e)| if let State::Unavailable(r) = &e.state { Some(format!("version {v}: {r}")) } else { None })
            .collect();
        let any_ready = fresh.values().any(|e| matches!(e.state, State::Ready(_)));
        self.models.write().expect("registry lock").insert(name.to_string(), fresh);
        if any_ready {
            Ok(())
        } else {
            Err(ApiError::unavailable(format!("model {name:?} failed to load: {}", failed.join("; "))))
        }
    }

    /// Marks every version of `name` unloaded (requests in flight finish on their `Arc`).
    pub fn unload(&self, name: &str) -> Result<(), ApiError> {
        let mut m = self.models.write().expect("registry lock");
        let vs = m.get_mut(name).ok_or_else(|| unknown_model(name))?;
        for e in vs.values_mut() {
            e.state = State::Unloaded;
        }
        tracing::info!(model = name, "unloaded");
        Ok(())
    }

    /// The directory a version was found in.
    pub fn dir(&self, name: &str, version: &str) -> Option<PathBuf> {
        self.models.read().expect("registry lock").get(name).and_then(|vs| vs.get(version)).map(|e| e.dir.clone())
    }
}

fn unknown_model(name: &str) -> ApiError {
    ApiError::not_found(format!("model {name:?} is not in the repository"))
}
