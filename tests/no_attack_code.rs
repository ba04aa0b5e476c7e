//! A default build carries no attack code. The attack modes of `minerd`
//! (`--fault-mode`) and the storage fault injection (`LOCUS_FAULT_RATE`)
//! exist only with the `fault-injection` feature, which is off by default and
//! which only the test suite switches on (`scripts/test.sh`).
//!
//! - In every build, cheaply: with default features `cargo tree` resolves no
//!   `fault-injection` for `minerd`, `orchestratord`, `validatord`, `locus`
//!   or the protocol crate; with `locus/fault-injection` it resolves it for
//!   every one of them.
//! - On the `minerd` this test run built: without the feature it has no
//!   `--fault-mode` flag and none of the attack modules' strings; with it,
//!   it has both, which shows the strings searched for are still the attack
//!   code's. `scripts/test.sh` builds with the feature; `cargo test --test
//!   no_attack_code` (default features) checks a default `minerd`.

mod common;

use std::path::Path;
use std::process::Command;

/// Strings only the attack code holds: a log line of `hostile.rs`, one of
/// `attacks.rs`, the parse error of `faults.rs`, a skip of `attacker.rs`.
const ATTACK_STRINGS: [&str; 4] = [
    "attack tamper: replaced another miner's artifact",
    "attack copy: submitting another attempt's output",
    "unknown fault mode",
    "bloat: garbage receipt",
];

/// The packages among `packages` that `cargo tree` resolves with the
/// `fault-injection` feature, with `args` selecting what is built (each of
/// `packages` must be in that build).
fn resolved_fault_injection(args: &[&str], packages: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut tree = Command::new(cargo);
    tree.args([
        "tree",
        "--offline",
        "--edges",
        "features",
        "--prefix",
        "none",
    ])
    .args(args)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    for package in packages {
        tree.args(["--invert", package]);
    }
    let out = tree.output().expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("feature \"fault-injection\""))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn default_features_switch_on_no_fault_injection() {
    for package in ["minerd", "orchestratord", "validatord", "locus"] {
        let found = resolved_fault_injection(&["--package", package], &["locus-protocol", package]);
        assert!(
            found.is_empty(),
            "a default build of {package} has fault-injection in {found:?}"
        );
    }
    let all = [
        "locus",
        "locus-protocol",
        "minerd",
        "orchestratord",
        "validatord",
    ];
    let found = resolved_fault_injection(
        &["--workspace", "--features", "locus/fault-injection"],
        &all,
    );
    assert_eq!(
        found, all,
        "locus/fault-injection must switch it on everywhere"
    );
}

/// Whether the file at `path` holds `text` (grep reads binaries fast).
fn holds(path: &Path, text: &str) -> bool {
    let status = Command::new("grep")
        .args(["--binary-files=text", "--quiet", "--fixed-strings", "--"])
        .arg(text)
        .arg(path)
        .status()
        .expect("running grep");
    assert!(matches!(status.code(), Some(0 | 1)), "grep failed");
    status.success()
}

fn help(minerd: &Path) -> String {
    let out = Command::new(minerd).arg("--help").output().expect("--help");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(not(feature = "fault-injection"))]
#[test]
fn a_default_minerd_holds_no_attack_code() {
    let minerd = common::bin_dir().join("minerd");
    let help = help(&minerd);
    assert!(!help.contains("--fault-mode"), "{help}");
    for text in ATTACK_STRINGS {
        assert!(
            !holds(&minerd, text),
            "{} holds attack code: {text:?}",
            minerd.display()
        );
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_fault_injection_minerd_holds_the_attack_code() {
    let minerd = common::bin_dir().join("minerd");
    let help = help(&minerd);
    assert!(help.contains("--fault-mode"), "{help}");
    for text in ATTACK_STRINGS {
        assert!(
            holds(&minerd, text),
            "{} lacks {text:?}: update ATTACK_STRINGS to strings of the attack code",
            minerd.display()
        );
    }
}
