//! Feature sets: which registry features, with which parameters, plus parameters fitted on
//! training data. A set is plain data (TOML in, JSON out) so a run directory and the inference
//! server can reload exactly what a model was trained with. [`FeatureSet::new`] validates every
//! spec against its registry kind and fills in the defaults.

use super::registry::{self, Kind};
use super::spec::{column_name, needs_fit, FeatureSpec, Fitted};
use crate::error::{DataError, Result};
use crate::time::parse_duration;
use serde::{Deserialize, Serialize};

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
        let j: J =
            serde_json::from_str(s).map_err(|e| DataError::parse("feature set (json)", e.line() as u64, "features", e.to_string()))?;
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
        self.features.iter().filter(|s| needs_fit(s) && s.fitted.is_none()).map(column_name).collect()
    }
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
    let kind: &Kind =
        registry::kind(&s.name).ok_or_else(|| format!("unknown feature {:?}; `flowcast features list` shows the registry", s.name))?;
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
