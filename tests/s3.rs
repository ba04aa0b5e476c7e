//! The local smoke over a real S3 server on loopback (SigV4, presigned-URL
//! expiry, read-only miner credentials): miners write only through the
//! grants sealed to their hotkeys.

mod common;

use common::{smoke, weight};

#[test]
fn honest_run_over_s3_with_grants() {
    let out = smoke(&["--steps", "2", "--miners", "4", "--bucket", "s3-local"]);
    assert!(out.status.success(), "S3 smoke failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("loopback S3 server"), "{stdout}");
    for i in 0..4 {
        assert!(weight(&stdout, i) > 0.0, "miner {i} must be paid");
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn cheating_miner_over_s3_scores_zero() {
    let out = smoke(&[
        "--steps",
        "1",
        "--miners",
        "4",
        "--bucket",
        "s3-local",
        "--bad-miner-index",
        "0",
        "--fault-mode",
        "partial_corrupt",
        "--sample-rate",
        "1.0",
    ]);
    assert!(
        out.status.success(),
        "adversarial S3 smoke did not end as expected"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(weight(&stdout, 0), 0.0);
}
