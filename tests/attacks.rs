//! The attack matrix of docs/security.md: for each attack a multi-step local
//! run at the default sample rate with three honest miners and one attacker
//! (miner 0). In every case `locus local-smoke` itself checks that the
//! attacker's weight is 0 (or, for inflated cost claims, its true CU share)
//! and that every weight equals the hotkey's share of the credited compute
//! units within 1 %; here we also check that the training result is the one
//! an all-honest run produces, bit for bit, and that the score table or the
//! logs say what happened.

mod common;

use std::path::Path;

use common::{Attacked, attack, fingerprint, run_attack, smoke, table_row, weight};

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

#[test]
fn partial_corrupt_earns_nothing() {
    caught("partial_corrupt", "failed verdict: replay mismatch");
}

#[test]
fn wrong_output_earns_nothing() {
    caught("wrong_output", "failed verdict: replay mismatch");
}

#[test]
fn skip_compute_earns_nothing() {
    caught("skip_compute", "failed verdict: replay mismatch");
}

#[test]
fn stealth_corruption_earns_nothing() {
    caught("stealth", "failed verdict: replay mismatch");
}

#[test]
fn replaying_old_outputs_earns_nothing() {
    caught("replay_old", "failed verdict");
}

#[test]
fn copied_outputs_earn_nothing() {
    let run = caught("copy", "late, no credit");
    assert!(
        run.log("miner0")
            .contains("attack copy: submitting another attempt's output"),
        "the attacker must have copied something"
    );
}

#[test]
fn late_results_earn_nothing() {
    caught("late", "late, no credit (first: written");
}

#[test]
fn receipts_claiming_another_hotkey_are_rejected() {
    caught("foreign_receipt", "rejected, no credit");
}

#[test]
fn forged_manifests_are_never_executed() {
    let run = caught("forge_manifest", "rejected, no credit");
    assert!(run.why().contains("expected"), "{}", run.why());
    for i in 1..4 {
        let log = run.log(&format!("miner{i}"));
        assert!(
            !log.lines()
                .any(|l| l.contains("-forged") && l.contains("job done")),
            "miner {i} executed a forged job"
        );
    }
    let refused = (1..4)
        .map(|i| run.log(&format!("miner{i}")))
        .filter(|log| {
            log.lines()
                .any(|l| l.contains("/99999900000") && l.contains("not executed"))
        })
        .count();
    assert!(refused > 0, "no honest miner saw and refused a forgery");
    assert_no_forged_work(run.work.path());
}

/// No artifact of a forged job was written by anyone but the forger.
fn assert_no_forged_work(work: &Path) {
    let artifacts = work.join("bucket/v1/netuid=3/runs/smoke/artifacts");
    let forged: Vec<_> = std::fs::read_dir(&artifacts)
        .expect("artifacts")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("-forged"))
        .collect();
    for dir in forged {
        let n = std::fs::read_dir(dir.path()).expect("dir").count();
        assert!(n <= 1, "{}: {n} artifacts", dir.path().display());
    }
}

#[test]
fn inflated_cost_claims_change_nothing() {
    let run = attack("inflate_cost", "local");
    let row = table_row(&run.stdout, 0);
    assert!(weight(&run.stdout, 0) > 0.0, "honest work is still paid");
    // CU column: the manifest's static cost, not the claim (u64::MAX / 4).
    let cu: u64 = row[row.len() - 3].parse().expect("CU");
    assert!(cu < 1_000_000, "CU {cu} follows the claim");
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

/// A cheater the sampler misses at first: with no sampling and no probation
/// its corrupt inner outputs are used for two steps, until a replay of one
/// of its reduce or outer jobs (always replayed) catches it. The run must
/// then go back, recompute everything built on its unverified output, and
/// end with the parameters of an all-honest run.
#[test]
fn a_caught_cheater_s_unverified_work_is_undone() {
    let run = [
        "--steps",
        "4",
        "--miners",
        "2",
        "--micro-batches",
        "3",
        "--replicas",
        "2",
        "--sample-rate",
        "0",
        "--probation-replays",
        "0",
    ];
    let honest = smoke(&run);
    assert!(honest.status.success(), "honest reference run failed");
    let expected = fingerprint(&String::from_utf8_lossy(&honest.stdout));
    let attacked = run_attack(&run, "taint", "local", &expected);
    assert_eq!(weight(&attacked.stdout, 0), 0.0);
    let log = attacked.log("orchestratord");
    assert!(
        log.contains("rewinding the run"),
        "the cheater's unverified work was never undone:\n{log}"
    );
}
