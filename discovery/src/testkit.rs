//! Test helpers for the UI in a real browser, behind the `testkit` feature.
//! The crate's own browser test and the workspace's process-level UI test
//! (`tests/discovery_ui.rs`) both find Chromium here, so a machine that runs
//! one runs the other.

use std::path::PathBuf;

/// Where to install Chromium from, for skip and failure messages.
pub const INSTALL_HINT: &str =
    "run scripts/test-deps.sh (discovery/tests/install-chromium.sh) or set $LOCUS_CHROMIUM";

/// Flags for a headless run that touches nothing outside its profile.
pub const HEADLESS_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A Chromium binary: `$LOCUS_CHROMIUM`, else the first of `chromium`,
/// `chromium-browser`, `google-chrome`, `google-chrome-stable` on `PATH` or
/// in `/usr/bin`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LOCUS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}
