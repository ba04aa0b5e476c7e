//! Auditors in one process (`tests/kit`): the validator sends sampled
//! replays of non-critical jobs to auditor workers, takes their passing
//! results on their word unless its secret draw rechecks them, and replays
//! every failing result itself. Honest auditors change no verdict; a lying
//! one is caught, dropped and recorded, harms no honest miner, and covers
//! for no cheater.

mod kit;

use std::time::Duration;

use kit::{Finished, Setup};
use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::{Expect, Hotkey};
use locus_workloads::Device;
use minerd::faults::FaultMode;
use validatord::input_cache::InputCache;
use validatord::replay::Judge;

const STEPS: u32 = 3;
/// forward, 3 × 2 inner, reduce, outer, eval per step.
const JOBS: usize = 10 * STEPS as usize;

fn setup(auditors: usize) -> Setup {
    Setup {
        steps: STEPS,
        miners: 4,
        micro_batches: 3,
        sample_rate: 0.5,
        probation_replays: 3,
        auditors,
        ..Setup::default()
    }
}

async fn run(setup: Setup) -> Finished {
    kit::run(setup, Duration::from_secs(300)).await
}

/// Verdicts that rest on an auditor's replay, by auditor.
fn audited(run: &Finished) -> Vec<(Hotkey, &pb::Verdict)> {
    run.verdicts
        .iter()
        .filter_map(|v| Some((Hotkey::from_bytes(&v.auditor).ok()?, v)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_auditors_take_replays_and_change_no_verdict() {
    let run = run(setup(2)).await;
    run.assert_complete_and_fair(STEPS);
    run.assert_credited_once(JOBS);
    for (auditor, dropped) in &run.auditors {
        assert_eq!(dropped, &None, "honest auditor {auditor} was dropped");
    }
    let audited = audited(&run);
    assert!(
        !audited.is_empty(),
        "no verdict rests on an auditor: replays never left the validator"
    );
    let auditors: Vec<Hotkey> = run.auditors.iter().map(|(a, _)| *a).collect();
    for (auditor, _) in &audited {
        assert!(auditors.contains(auditor), "a verdict names a stranger");
    }
    // What an auditor passed, the validator's own replay passes with the
    // same units: the verdicts are those of a validator-only run.
    let bucket = locus_protocol::Bucket::from_store(run.store.clone(), "memory://", kit::NETUID);
    let manifest: pb::RunManifest = bucket
        .get::<pb::RunManifest>(
            &bucket.layout().run_manifest(kit::RUN),
            Expect::Signer(&run.owner),
        )
        .await
        .expect("run manifest")
        .into_inner();
    let cache = InputCache::new(32 << 20);
    let judge = Judge {
        bucket: &bucket,
        owner: &run.owner,
        validator: &run.validator,
        run: &manifest,
        sample_rate: 1.0,
        device: &Device::Cpu,
        on_probation: &|_| false,
        inputs: &cache,
    };
    for (auditor, verdict) in &audited {
        assert_eq!(
            verdict.outcome,
            VerdictOutcome::Verified as i32,
            "{auditor}: {}",
            verdict.reason
        );
        let mine = judge
            .judge_here(&verdict.receipt_key, 0, None)
            .await
            .expect("replaying an audited receipt");
        assert_eq!(
            (mine.outcome, mine.compute_units),
            (VerdictOutcome::Verified as i32, verdict.compute_units),
            "{}: {}",
            verdict.receipt_key,
            mine.reason
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_auditor_is_dropped_and_covers_for_no_cheater() {
    let honest = run(setup(0)).await.params;
    let mut attacked = setup(2);
    attacked.lying_auditor = true;
    attacked.attack = Some(FaultMode::PartialCorrupt);
    let run = run(attacked).await;
    run.assert_complete(STEPS, Some(0));
    assert!(
        run.params == honest,
        "the run with a lying auditor trained another model"
    );
    run.assert_credited_once(JOBS);
    assert_eq!(run.weight(0), 0.0, "the cheating miner was paid");
    let (liar, dropped) = &run.auditors[0];
    let reason = dropped
        .as_deref()
        .unwrap_or_else(|| panic!("the lying auditor {liar} was not dropped"));
    assert!(reason.starts_with("said "), "{reason}");
    assert_eq!(run.auditors[1].1, None, "the honest auditor was dropped");
    // No miner was failed on the liar's word.
    for v in &run.verdicts {
        if v.outcome == VerdictOutcome::Failed as i32 {
            assert!(v.auditor.is_empty(), "failed on an auditor's word: {v:?}");
            assert_eq!(
                v.hotkey,
                run.miners[0].to_bytes(),
                "an honest miner failed: {}",
                v.reason
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replays_an_auditor_never_answers_are_run_by_the_validator() {
    let mut absent = setup(0);
    absent.absent_auditors = 1;
    absent.audit_timeout = Duration::from_secs(1);
    let run = run(absent).await;
    run.assert_complete_and_fair(STEPS);
    run.assert_credited_once(JOBS);
    assert!(
        audited(&run).is_empty(),
        "a verdict rests on a silent auditor"
    );
    let verified = run
        .verdicts
        .iter()
        .filter(|v| v.outcome == VerdictOutcome::Verified as i32)
        .count();
    assert!(verified > 0, "nothing was replayed");
    // Slow is not lying: the silent auditor stays trusted.
    assert_eq!(run.auditors[0].1, None);
}
