//! Hostile writes that need processes: an overwrite through an S3 grant
//! (the loopback S3 server must refuse it), and a receipt deleted while the
//! validator process is down. The local-bucket attacks (overwrite, plant,
//! delete, tamper, bloat) run in one process (`tests/in_process/attacks.rs`).
//! Each test checks, from outside:
//! - the run finishes, with the parameters of an all-honest run, bit for bit;
//! - no job is credited twice (every weight is its share of the credited
//!   compute units: `local-smoke` checks that itself);
//! - only a hotkey whose own signed objects prove a cheat is zeroed.

mod common;
mod kit;

use common::{Attacked, System, attack, weight};
use locus_protocol::pb;
use locus_protocol::{Bucket, Expect};

/// What the hostile-write tests read from an attacked run.
trait Outcome {
    fn verdicts(&self) -> Vec<pb::Verdict>;
    /// No job earns twice, and every job of the three steps earned once.
    fn assert_credited_once(&self) {
        // forward, 3 × 2 inner, reduce, outer, eval per step.
        kit::assert_credited_once(&self.verdicts(), 30);
    }
}

impl Outcome for Attacked {
    /// The validator's verdicts of the run.
    fn verdicts(&self) -> Vec<pb::Verdict> {
        // The loopback S3 server keeps bucket `locus` in a sub-directory.
        let root = self.work.path().join("bucket");
        let s3 = root.join("locus");
        let dir = if s3.join("v1").is_dir() { s3 } else { root };
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let bucket = Bucket::open(dir.to_str().expect("path"), 3).expect("bucket");
        let layout = bucket.layout().clone();
        let window = rt
            .block_on(
                bucket.get::<pb::ScoreWindow>(&layout.score_window("smoke"), Expect::AnySigner),
            )
            .expect("score window");
        let validator = *window.signer();
        let keys = rt
            .block_on(bucket.list(&layout.verdicts("smoke"), None))
            .expect("verdicts");
        keys.iter()
            .filter_map(|key| {
                rt.block_on(bucket.get::<pb::Verdict>(key, Expect::Signer(&validator)))
                    .ok()
                    .map(|v| v.into_inner())
            })
            .collect()
    }
}

fn assert_logged(log: &str, what: &str, whose: &str) {
    assert!(log.contains(what), "{whose} never logged {what:?}:\n{log}");
}

/// The same attack over S3: the grant's PUT URL signs `If-None-Match: *`
/// and the exact length, so the store refuses the overwrite (403) and
/// nothing changes; the attacker proved nothing against itself and is paid
/// for its honest work.
#[test]
fn overwriting_an_own_result_through_the_grant_is_refused_by_the_store() {
    let run = attack("overwrite_own", "s3-local");
    let attacker = run.log("miner0");
    assert_logged(&attacker, "PUT without If-None-Match: 403", "the attacker");
    assert!(
        !attacker.contains("PUT without If-None-Match: 200"),
        "the store let an overwrite through:\n{attacker}"
    );
    assert!(weight(&run.stdout, 0) > 0.0, "honest work unpaid");
    run.assert_credited_once();
}

/// The held-result path without a race: the validator is down, so the
/// first result's lease runs out without a verdict; the owner finds its
/// receipt, checks it and holds the result for the verdict. Then the receipt
/// is deleted. The owner notices within a lease period (it does not wait for
/// a verdict that can never come), redoes the job, and the run finishes once
/// the validator is back, each job credited once.
#[test]
fn a_receipt_deleted_while_awaiting_its_verdict_is_redone() {
    let sys = System::new(2);
    let run = "held";
    let mut miners: Vec<_> = (0..2).map(|i| sys.start_miner(i, &[])).collect();
    sys.wait_heartbeats(2);
    let mut orchestrator =
        sys.start_orchestrator("orchestratord", run, &["--steps=1", "--lease-secs=3"]);
    let receipts = sys.bucket.layout().receipts(run);
    let mut first = Vec::new();
    sys.wait_until("the first receipt", 60, || {
        first = sys
            .rt
            .block_on(sys.bucket.list(&receipts, None))
            .unwrap_or_default();
        !first.is_empty()
    });
    sys.wait_until("the owner holding the result past its lease", 30, || {
        orchestrator
            .log_text()
            .contains("lease out with a receipt but no verdict yet")
    });
    sys.rt
        .block_on(sys.bucket.delete(&first[0]))
        .expect("delete the receipt");
    sys.wait_until("the owner noticing the deleted receipt", 30, || {
        orchestrator.log_text().contains(
            "the receipt of a result awaiting its verdict is gone, changed or does not hold; redoing the job",
        )
    });
    let mut validator = sys.start_validator("validatord", run, &["--sample-rate=1.0"]);
    assert!(orchestrator.wait(180).success(), "the run did not finish");
    assert!(validator.wait(120).success());
    for m in miners.iter_mut() {
        m.terminate();
        assert!(m.wait(60).success());
    }
    let credited = sys.credited(run);
    // forward, 2 × 2 inner (the defaults), reduce, outer, eval.
    assert_eq!(credited.len(), 8, "{credited:?}");
    assert!(credited.values().all(|who| who.len() == 1), "{credited:?}");
}
