//! `flowcast features list`: the default feature set with each column's kind, group,
//! parameters, warm-up, definition and reference.

use super::registry::{kind, warmup, KINDS};
use super::set::FeatureSet;
use super::spec::needs_fit;
use crate::report::Report;
use serde_json::json;

/// `flowcast features list`: one row per feature of the default set (name, group, parameters,
/// warm-up, definition, reference), plus the registry kinds.
/// Keys: `count`, `kinds`, `groups` (count per group), `features` (rows).
pub fn list_report() -> Report {
    let set = FeatureSet::default_set();
    let mut rows = Vec::new();
    let mut groups = serde_json::Map::new();
    for (s, col) in set.features.iter().zip(set.names()) {
        let k = kind(&s.name).expect("resolved specs have a kind");
        let mut params = serde_json::to_value(s).unwrap_or_default();
        if let Some(m) = params.as_object_mut() {
            m.remove("name");
        }
        *groups.entry(k.group.to_string()).or_insert(json!(0)) = json!(groups.get(k.group).and_then(|v| v.as_u64()).unwrap_or(0) + 1);
        rows.push(json!({
            "name": col,
            "feature": s.name,
            "group": k.group,
            "params": params,
            "warmup": warmup(s),
            "needs_fit": needs_fit(s),
            "l3_only": k.l3,
            "definition": k.definition,
            "reference": k.reference,
        }));
    }
    let kinds: Vec<_> = KINDS
        .iter()
        .map(|k| json!({"feature": k.name, "group": k.group, "params": k.params, "definition": k.definition, "reference": k.reference}))
        .collect();
    let mut r = Report::new(true);
    r.set("count", rows.len()).set("kinds", kinds).set("groups", groups).set("features", rows);
    r
}

/// Plain-text rendering of [`list_report`] for the terminal: one line per feature.
pub fn list_table() -> String {
    let set = FeatureSet::default_set();
    let names = set.names();
    let w = names.iter().map(|n| n.len()).max().unwrap_or(4);
    let mut out = format!("{:w$}  {:10}  {:28}  {}\n", "name", "group", "warm-up", "definition [reference]");
    for (s, n) in set.features.iter().zip(&names) {
        let k = kind(&s.name).expect("resolved specs have a kind");
        // "Author, Author & Author (year)" without the title.
        let short_ref = k.reference.find(')').map(|i| &k.reference[..=i]).unwrap_or(k.reference);
        out.push_str(&format!("{n:w$}  {:10}  {:28}  {} [{short_ref}]\n", k.group, warmup(s), k.definition));
    }
    out.push_str(&format!("{} features ({} kinds); `--json` adds parameters and full references\n", names.len(), KINDS.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_is_large_and_unique() {
        let set = FeatureSet::default_set();
        let names = set.names();
        assert!(names.len() >= 50, "{}", names.len());
        for k in KINDS {
            assert!(set.features.iter().any(|s| s.name == k.name), "{} missing from the default set", k.name);
        }
        let r = list_report();
        assert_eq!(r.get("count").and_then(|v| v.as_u64()), Some(names.len() as u64));
        assert!(list_table().lines().count() > names.len());
    }
}
