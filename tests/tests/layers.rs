//! The modules of each crate form layers: no two modules (files) depend on each other, directly
//! or through others. A module's dependencies are the `crate::…` and `super::…` paths in its
//! non-test, non-comment code, resolved to the module files of the same crate; index files (`lib.rs`,
//! `mod.rs`: declarations and re-exports) are not nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module as its path segments (`["features", "ofi"]`).
type Module = Vec<String>;
/// Module → the modules it names.
type Graph = BTreeMap<Module, BTreeSet<Module>>;

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Module path of a file relative to `src` (`features/ofi.rs` → ["features", "ofi"]).
fn module_of(src: &Path, f: &Path) -> Module {
    let rel = f.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// Edges module → modules it names, within one crate.
fn graph(src: &Path) -> (Graph, BTreeSet<Module>) {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let leaves: BTreeSet<Vec<String>> = files
        .iter()
        .filter(|f| !matches!(f.file_name().and_then(|n| n.to_str()), Some("mod.rs" | "lib.rs" | "main.rs")))
        .map(|f| module_of(src, f))
        .collect();
    let all: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut g = BTreeMap::new();
    for f in &files {
        let m = module_of(src, f);
        if !leaves.contains(&m) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        // Code only: no test module (test-only items above it, such as a counter, are read),
        // no comments (doc links name modules without using them).
        let code: String = text
            .split("#[cfg(test)]\nmod ")
            .next()
            .unwrap()
            .lines()
            .map(|l| if l.trim_start().starts_with("//") { "" } else { l.split(" // ").next().unwrap() })
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.as_str();
        let mut deps = BTreeSet::new();
        for (prefix, base) in [("crate::", vec![]), ("super::", m[..m.len() - 1].to_vec())] {
            for (i, _) in code.match_indices(prefix) {
                let before = code[..i].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let rest = &code[i + prefix.len()..];
                let mut path = base.clone();
                let mut best = None;
                for seg in rest.split("::").map(|s| s.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("")) {
                    if seg.is_empty() {
                        break;
                    }
                    path.push(seg.to_string());
                    if all.contains(&path) {
                        best = Some(path.clone());
                    } else {
                        break;
                    }
                }
                if let Some(b) = best.filter(|b| leaves.contains(b) && *b != m) {
                    deps.insert(b);
                }
            }
        }
        g.insert(m, deps);
    }
    (g, leaves)
}

/// A cycle in `g`, if any (depth-first search).
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(n: &Module, g: &Graph, state: &mut BTreeMap<Module, u8>, stack: &mut Vec<Module>) -> Option<Vec<String>> {
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == d).unwrap();
                    return Some(stack[from..].iter().chain([d]).map(|p| p.join("::")).collect());
                }
                0 => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn modules_form_layers_in_every_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["datasets", "contract", "models", "train", "serve", "server", "backtest", "live", "src"] {
        let src = if krate == "src" { root.join("src") } else { root.join(krate).join("src") };
        let (g, leaves) = graph(&src);
        assert!(leaves.len() > 2, "{krate}: found only {} modules", leaves.len());
        if krate == "contract" {
            // The parser sees real edges: the card uses the baselines and the schema.
            let card = &g[&vec!["card".to_string()]];
            assert!(card.contains(&vec!["baselines".to_string()]) && card.contains(&vec!["spec".to_string()]), "{card:?}");
        }
        if let Some(c) = find_cycle(&g) {
            panic!("{krate}: module cycle {}", c.join(" → "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let m = |s: &str| vec![s.to_string()];
    let mut g = BTreeMap::new();
    g.insert(m("a"), BTreeSet::from([m("b")]));
    g.insert(m("b"), BTreeSet::from([m("c")]));
    g.insert(m("c"), BTreeSet::from([m("a")]));
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.insert(m("c"), BTreeSet::new());
    assert!(find_cycle(&g).is_none());
}
