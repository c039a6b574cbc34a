//! Helpers for flowcast's cross-crate tests.

use std::path::PathBuf;

/// `../shared/data` beside the checkout, if present. Tests that need real data call this and
/// return early (printing why) when it is absent, e.g. in a user's fresh clone.
pub fn shared_data() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = std::env::var_os("FLOWCAST_SHARED_DATA").map(PathBuf::from).unwrap_or_else(|| root.join("../shared/data"));
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIP: real-data test: {} not found (set FLOWCAST_SHARED_DATA to run it)", p.display());
        None
    }
}

/// Path of the `flowcast` binary built by cargo for integration tests.
pub fn flowcast_bin() -> PathBuf {
    let mut p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        p = PathBuf::from(t);
    }
    p.join(profile).join("flowcast")
}
