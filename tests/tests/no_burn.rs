//! Nothing that serves or backtests may link burn: `cargo tree` of the contract and serve crates
//! (normal and build dependencies) holds no `burn*` package. The training crate is the positive
//! control — it must show burn, so the check can fail.

use std::process::Command;

fn deps(package: &str) -> Vec<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["tree", "-p", package, "-e", "normal,build", "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split_whitespace().next().unwrap_or("").to_string()).collect()
}

fn burn_crates(package: &str) -> Vec<String> {
    let mut b: Vec<String> =
        deps(package).into_iter().filter(|n| n == "burn" || n.starts_with("burn-") || n.starts_with("cubecl")).collect();
    b.sort();
    b.dedup();
    b
}

#[test]
fn nothing_that_serves_backtests_or_collects_depends_on_burn() {
    for p in ["flowcast-contract", "flowcast-serve", "flowcast-server", "flowcast-backtest", "flowcast-live"] {
        assert!(!deps(p).is_empty(), "{p}: cargo tree printed nothing");
        assert_eq!(burn_crates(p), Vec::<String>::new(), "{p} depends on burn");
    }
    assert!(burn_crates("flowcast-train").contains(&"burn".to_string()), "positive control: flowcast-train must show burn");
}
