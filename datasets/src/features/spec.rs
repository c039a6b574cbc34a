//! Feature sets: which registry features, with which parameters, plus parameters fitted on
//! training data. A set is plain data (TOML in, JSON out) so a run directory and the inference
//! server can reload exactly what a model was trained with.

use super::registry::{self, Kind};
use crate::error::{DataError, Result};
use crate::time::{format_duration, parse_duration};
use serde::{Deserialize, Serialize};

/// One feature instance: a registry kind (`name`) and its parameters. After
/// [`FeatureSet::new`] every parameter the kind uses is filled in (defaults made explicit).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Registry name (`features list`), e.g. "ofi".
    pub name: String,
    /// Output column name; derived from name and parameters when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Number of book levels from the touch (L).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub levels: Option<usize>,
    /// One book level, 1 = touch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<usize>,
    /// "bid" or "ask".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// Window over the last N samples (source messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_events: Option<usize>,
    /// Clock window, e.g. "500ms", "10s", "1min", "5min" (grammar: [`crate::time::parse_duration`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// EWMA half-life in samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halflife_events: Option<f64>,
    /// Trade sign: "aggressor" (the source's), "tick", "lee_ready"; VPIN also "bvc".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// Large-trade threshold k: a trade is large if size > k × rolling mean trade size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Number of past trades in the rolling mean trade size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trades: Option<usize>,
    /// VPIN bucket size in lots; fitted from training volume when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_volume: Option<f64>,
    /// VPIN bucket size when fitted: the volume traded on average in this many seconds of the
    /// training data (ELO's "daily volume / 50" is `bucket_seconds` = day length / 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_seconds: Option<f64>,
    /// VPIN: number of buckets n in the rolling sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_buckets: Option<usize>,
    /// Time bar for bulk-volume classification and Kyle's lambda, e.g. "1s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bar: Option<String>,
    /// Number of bars in a rolling regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_bars: Option<usize>,
    /// Number of past bars for the std of bar price changes (BVC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_bars: Option<usize>,
    /// Micro-price: number of imbalance buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imbalance_buckets: Option<usize>,
    /// Micro-price: spreads 1..=n ticks modelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_buckets: Option<usize>,
    /// Clock windows: sizing rate of the ring (samples per second); above it the window reports
    /// NaN and counts an overflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_hz: Option<f64>,
    /// Parameters fitted on training data by [`super::fit`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<Fitted>,
}

/// Parameters estimated on the training split only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Fitted {
    /// Integrated OFI: first principal component of normalised multi-level OFI, ‖w‖₁ = 1.
    IntegratedOfi {
        weights: Vec<f64>,
        /// Share of variance the first component explains.
        explained_variance: f64,
        /// Training rows used (with all levels defined).
        rows: usize,
    },
    /// Stoikov (2018) micro-price adjustment g(spread, imbalance bucket) in ticks.
    Microprice {
        /// Interior imbalance bucket edges (ascending, `imbalance_buckets − 1` of them); bucket =
        /// number of edges strictly below I.
        imbalance_edges: Vec<f64>,
        /// g for state (spread s ticks, bucket b) at index `(s − 1) × buckets + b`; null where the
        /// training data never visited the state.
        adjustment: Vec<Option<f64>>,
        /// Quote transitions used (before symmetrisation).
        transitions: usize,
        /// Whether Σ Bⁱ G₁ converged.
        converged: bool,
    },
    /// VPIN bucket size from training volume.
    Vpin { bucket_volume: f64, train_volume: f64, train_seconds: f64 },
}

/// Which features, with which parameters (+ fitted parameters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSet {
    pub features: Vec<FeatureSpec>,
    /// Training rows the fitted parameters were estimated on, `[start, end)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_on: Option<(usize, usize)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    feature: Vec<FeatureSpec>,
}

impl FeatureSet {
    /// Validate the specs, fill in every default, and check column names are unique.
    pub fn new(specs: Vec<FeatureSpec>) -> Result<FeatureSet> {
        let mut features = Vec::with_capacity(specs.len());
        for (i, s) in specs.into_iter().enumerate() {
            features.push(resolve(s).map_err(|e| DataError::Invalid(format!("feature set: [[feature]] #{}: {e}", i + 1)))?);
        }
        let set = FeatureSet { features, fitted_on: None };
        let names = set.names();
        for (i, n) in names.iter().enumerate() {
            if let Some(j) = names[..i].iter().position(|m| m == n) {
                return Err(DataError::Invalid(format!(
                    "feature set: [[feature]] #{} and #{} both produce column {n:?}; set `column` on one of them",
                    j + 1,
                    i + 1
                )));
            }
        }
        Ok(set)
    }

    /// The full registry with default parameters.
    pub fn default_set() -> FeatureSet {
        FeatureSet::new(registry::default_specs()).expect("the default feature set is valid")
    }

    /// Parse `[[feature]] name = "ofi" window_events = 100 ...` tables.
    pub fn from_toml(s: &str) -> Result<FeatureSet> {
        let f: TomlFile = toml::from_str(s).map_err(|e| {
            let line = e.span().map(|r| s[..r.start.min(s.len())].lines().count().max(1) as u64).unwrap_or(0);
            DataError::parse("feature set (toml)", line, "feature", e.message().to_string())
        })?;
        if f.feature.is_empty() {
            return Err(DataError::Invalid("feature set: no [[feature]] tables".into()));
        }
        FeatureSet::new(f.feature)
    }

    /// Reload a set written by [`FeatureSet::to_json`] (fitted parameters included).
    pub fn from_json(s: &str) -> Result<FeatureSet> {
        #[derive(Deserialize)]
        struct J {
            features: Vec<FeatureSpec>,
            #[serde(default)]
            fitted_on: Option<(usize, usize)>,
        }
        let j: J = serde_json::from_str(s)
            .map_err(|e| DataError::parse("feature set (json)", e.line() as u64, "features", e.to_string()))?;
        let mut set = FeatureSet::new(j.features)?;
        set.fitted_on = j.fitted_on;
        Ok(set)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("feature sets serialise")
    }

    /// Output column names, in order (stable: derived from name + parameters, or `column`).
    pub fn names(&self) -> Vec<String> {
        self.features.iter().map(column_name).collect()
    }

    pub fn len(&self) -> usize {
        self.features.len()
    }
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Features that need [`super::fit`] and have not been fitted yet (their columns are NaN).
    pub fn unfitted(&self) -> Vec<String> {
        self.features
            .iter()
            .filter(|s| needs_fit(s) && s.fitted.is_none())
            .map(column_name)
            .collect()
    }
}

/// Whether this spec's kind has parameters estimated by `fit`.
pub fn needs_fit(s: &FeatureSpec) -> bool {
    match s.name.as_str() {
        "ofi_integrated" | "microprice" | "microprice_offset" => true,
        "vpin" => s.bucket_volume.is_none(),
        _ => false,
    }
}

/// The column name of a resolved spec.
pub fn column_name(s: &FeatureSpec) -> String {
    if let Some(c) = &s.column {
        return c.clone();
    }
    let mut n = s.name.clone();
    if let Some(side) = &s.side {
        n.push('_');
        n.push_str(side);
    }
    match s.classification.as_deref() {
        None | Some("aggressor") => {}
        Some("lee_ready") => n.push_str("_lr"),
        Some(c) => {
            n.push('_');
            n.push_str(c);
        }
    }
    if let Some(l) = s.level {
        n.push_str(&format!("_l{l}"));
    }
    if let Some(l) = s.levels {
        n.push_str(&format!("_top{l}"));
    }
    if let Some(h) = s.halflife_events {
        n.push_str(&format!("_hl{h}"));
    }
    match (&s.window_events, &s.window) {
        (Some(1), _) | (None, None) => {}
        (Some(k), _) => n.push_str(&format!("_ev{k}")),
        (None, Some(w)) => {
            n.push('_');
            n.push_str(&parse_duration(w).map(format_duration).unwrap_or_else(|_| w.clone()));
        }
    }
    n
}

/// The parameter names set on a spec.
fn set_params(s: &FeatureSpec) -> Vec<&'static str> {
    let mut v = Vec::new();
    macro_rules! chk {
        ($($f:ident),*) => { $( if s.$f.is_some() { v.push(stringify!($f)); } )* };
    }
    chk!(
        levels,
        level,
        side,
        window_events,
        window,
        halflife_events,
        classification,
        threshold,
        trades,
        bucket_volume,
        bucket_seconds,
        window_buckets,
        bar,
        window_bars,
        sigma_bars,
        imbalance_buckets,
        spread_buckets,
        max_rate_hz
    );
    v
}

/// Validate a spec against its registry kind and fill in defaults.
fn resolve(mut s: FeatureSpec) -> std::result::Result<FeatureSpec, String> {
    let kind: &Kind = registry::kind(&s.name).ok_or_else(|| {
        format!("unknown feature {:?}; `flowcast features list` shows the registry", s.name)
    })?;
    let who = s.name.clone();
    for p in set_params(&s) {
        if !kind.params.contains(&p) {
            return Err(format!("{who}: parameter `{p}` is not used by this feature (it takes: {})", kind.params.join(", ")));
        }
    }
    if s.window_events.is_some() && s.window.is_some() {
        return Err(format!("{who}: give either `window_events` or `window`, not both"));
    }
    (kind.defaults)(&mut s);
    // Value checks.
    let pos = |name: &str, v: Option<usize>| match v {
        Some(0) => Err(format!("{who}: `{name}` must be ≥ 1")),
        _ => Ok(()),
    };
    pos("levels", s.levels)?;
    pos("level", s.level)?;
    pos("window_events", s.window_events)?;
    pos("trades", s.trades)?;
    pos("window_buckets", s.window_buckets)?;
    pos("window_bars", s.window_bars)?;
    pos("sigma_bars", s.sigma_bars)?;
    pos("spread_buckets", s.spread_buckets)?;
    if let Some(n) = s.imbalance_buckets {
        if n < 2 {
            return Err(format!("{who}: `imbalance_buckets` must be ≥ 2"));
        }
    }
    if let (Some(l), Some(m)) = (s.level, s.levels) {
        if l > m {
            return Err(format!("{who}: `level` {l} exceeds `levels` {m}"));
        }
    }
    for (name, v) in [("window", &s.window), ("bar", &s.bar)] {
        if let Some(w) = v {
            parse_duration(w).map_err(|e| format!("{who}: `{name}`: {e}"))?;
        }
    }
    if let Some(side) = &s.side {
        if side != "bid" && side != "ask" {
            return Err(format!("{who}: `side` must be \"bid\" or \"ask\", got {side:?}"));
        }
    }
    if let Some(c) = &s.classification {
        let ok: &[&str] = if s.name == "vpin" { &["aggressor", "tick", "bvc"] } else { &["aggressor", "tick", "lee_ready"] };
        if !ok.contains(&c.as_str()) {
            return Err(format!("{who}: `classification` must be one of {ok:?}, got {c:?}"));
        }
        if s.name == "vpin" && c != "bvc" && (s.bar.is_some() || s.sigma_bars.is_some()) {
            return Err(format!("{who}: `bar`/`sigma_bars` only apply to classification = \"bvc\""));
        }
    }
    for (name, v) in [
        ("halflife_events", s.halflife_events),
        ("threshold", s.threshold),
        ("bucket_volume", s.bucket_volume),
        ("bucket_seconds", s.bucket_seconds),
        ("max_rate_hz", s.max_rate_hz),
    ] {
        if let Some(x) = v {
            if !(x.is_finite() && x > 0.0) {
                return Err(format!("{who}: `{name}` must be a positive number, got {x}"));
            }
        }
    }
    if kind.clock_only && s.window.is_none() {
        return Err(format!("{who}: needs a clock `window` (e.g. \"10s\")"));
    }
    if let Some(f) = &s.fitted {
        let ok = matches!(
            (s.name.as_str(), f),
            ("ofi_integrated", Fitted::IntegratedOfi { .. })
                | ("microprice" | "microprice_offset", Fitted::Microprice { .. })
                | ("vpin", Fitted::Vpin { .. })
        );
        if !ok {
            return Err(format!("{who}: fitted parameters of the wrong model"));
        }
        if let (Fitted::IntegratedOfi { weights, .. }, Some(l)) = (f, s.levels) {
            if weights.len() != l {
                return Err(format!("{who}: {} fitted weights for {l} levels", weights.len()));
            }
        }
        if let Fitted::Microprice { imbalance_edges, adjustment, .. } = f {
            let (nb, ns) = (s.imbalance_buckets.unwrap_or(0), s.spread_buckets.unwrap_or(0));
            if imbalance_edges.len() + 1 != nb || adjustment.len() != nb * ns {
                return Err(format!("{who}: fitted micro-price table does not match {nb} buckets × {ns} spreads"));
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_roundtrip_and_names() {
        let set = FeatureSet::from_toml(
            r#"
            [[feature]]
            name = "ofi"
            window_events = 100
            [[feature]]
            name = "ofi"
            window = "10s"
            [[feature]]
            name = "ofi"
            [[feature]]
            name = "imbalance"
            levels = 5
            [[feature]]
            name = "vpin"
            classification = "bvc"
            bucket_volume = 50
            "#,
        )
        .unwrap();
        assert_eq!(set.names(), vec!["ofi_ev100", "ofi_10s", "ofi", "imbalance_top5", "vpin_bvc"]);
        // Defaults are explicit after resolution.
        assert_eq!(set.features[2].window_events, Some(1));
        assert_eq!(set.features[4].bar.as_deref(), Some("1s"));
        let back = FeatureSet::from_json(&set.to_json()).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn bad_specs_are_named() {
        let e = FeatureSet::from_toml("[[feature]]\nname = \"ofi\"\nlevels = 3\n").unwrap_err().to_string();
        assert!(e.contains("#1") && e.contains("levels"), "{e}");
        let e = FeatureSet::from_toml("[[feature]]\nname = \"nope\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown feature"), "{e}");
        let e = FeatureSet::from_toml("[[feature]]\nname = \"ofi\"\nwindow = \"10 parsecs\"\n").unwrap_err().to_string();
        assert!(e.contains("window"), "{e}");
        let e = FeatureSet::from_toml("[[feature]]\nname = \"ofi\"\nwindw = 3\n").unwrap_err().to_string();
        assert!(e.contains("windw"), "{e}");
        let e = FeatureSet::from_toml("[[feature]]\nname = \"ofi\"\n[[feature]]\nname = \"ofi\"\n").unwrap_err().to_string();
        assert!(e.contains("both produce column"), "{e}");
        let e = FeatureSet::from_toml("[[feature]]\nname = \"trade_intensity\"\nwindow_events = 5\n").unwrap_err().to_string();
        assert!(e.contains("trade_intensity"), "{e}");
    }
}
