#![allow(dead_code)] // each test file uses part of this helper
//! Runs the Bittensor SDK's own timelock implementation (PyPI `bittensor-drand`,
//! installed by `scripts/test-deps.sh`) on what this crate seals, and the other way.

use std::path::PathBuf;
use std::process::Command;

use codec::Encode;

/// Quicknet's published signature of round 1000 (`locus_chain::timelock` checks it
/// against the beacon's public key).
pub const ROUND_1000_SIGNATURE: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

/// Where the test set-up installs `bittensor-drand` 1.2.0, the SDK release for runtimes
/// with the legacy epoch schedule (the one the bundled metadata describes).
pub fn legacy_sdk_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pydeps/bittensor-drand-1.2.0")
}

/// Runs a Python script with `args` and returns its stdout, trimmed.
pub fn python(script: &str, args: &[&str], python_path: Option<&PathBuf>) -> String {
    let mut command = Command::new("python3");
    command.arg("-c").arg(script).args(args);
    if let Some(path) = python_path {
        command.env("PYTHONPATH", path);
    }
    let output = command
        .output()
        .expect("python3 (scripts/test-deps.sh installs bittensor-drand)");
    assert!(
        output.status.success(),
        "python failed (run scripts/test-deps.sh to install bittensor-drand):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Opens `commit`, sealed to `round`, with the SDK's `decrypt_with_signature` and
/// quicknet's signature of round 1000.
pub fn sdk_decrypt(commit: &[u8], round: u64) -> Vec<u8> {
    // The SDK's envelope: SCALE `(encrypted_data: Vec<u8>, reveal_round: u64)`.
    let envelope = (commit.to_vec(), round).encode();
    let script = "import sys, bittensor_drand as d\n\
                  print(d.decrypt_with_signature(bytes.fromhex(sys.argv[1]), sys.argv[2]).hex())";
    let out = python(
        script,
        &[&hex::encode(envelope), ROUND_1000_SIGNATURE],
        None,
    );
    hex::decode(out).expect("hex from python")
}
