//! The attacks of docs/security.md that need processes: one through the
//! `--fault-mode` command line, and leaked grants over a loopback S3 server.
//! The rest of the matrix runs in one process (`tests/in_process/attacks.rs`).
//! Each is a multi-step `locus local-smoke` with three honest miners and one
//! attacker (miner 0); the smoke itself checks that the attacker's weight is
//! 0 and that every weight equals the hotkey's share of the credited compute
//! units within 1 %; here we also check that the training result is the one
//! an all-honest run produces, bit for bit, and what the logs say.

mod common;

use common::{Attacked, attack, weight};

fn caught(mode: &str, why: &str) -> Attacked {
    let run = attack(mode, "local");
    assert_eq!(weight(&run.stdout, 0), 0.0, "{mode}: the attacker was paid");
    let reason = run.why();
    assert!(
        reason.contains(why),
        "{mode}: reason {reason:?} lacks {why:?}"
    );
    run
}

/// The attack path through the command line: `local-smoke --fault-mode`
/// starts a real `minerd --fault-mode` process, and `local-smoke` checks the
/// weights itself.
#[test]
fn partial_corrupt_earns_nothing() {
    caught("partial_corrupt", "failed verdict: replay mismatch");
}

#[test]
fn leaked_grants_are_refused() {
    let run = attack("leaked_grant", "s3-local");
    assert_eq!(weight(&run.stdout, 0), 0.0);
    let log = run.log("miner0");
    assert!(
        log.contains("refused: "),
        "no leaked grant was tried:\n{log}"
    );
    assert!(
        log.contains("PUT through a re-pathed URL: 403"),
        "the storage must refuse a re-pathed presigned URL:\n{log}"
    );
    assert!(!log.contains("must never happen"), "{log}");
}
