//! Auditors in one process (`tests/kit`): the validator sends sampled
//! replays of non-critical jobs to auditor workers, takes their passing
//! results on their word unless its secret draw rechecks them, and replays
//! every failing result itself. Honest auditors change no verdict; a lying
//! one is caught, dropped and recorded, harms no honest miner, and covers
//! for no cheater.

use crate::kit;

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
    let manifest = std::sync::Arc::new(
        bucket
            .get::<pb::RunManifest>(
                &bucket.layout().run_manifest(kit::RUN),
                Expect::Signer(&run.owner),
            )
            .await
            .expect("run manifest")
            .into_inner(),
    );
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
        clock: &locus_protocol::time::Clock::system(),
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

/// The audit deadline is the validator's clock, the one every daemon of the
/// system shares: with a minute to answer and the clock moved past it, the
/// validator replays what a silent auditor holds at once, without waiting
/// out a real minute (the run would miss its deadline if it did).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replays_an_auditor_never_answers_are_run_by_the_validator() {
    let mut absent = setup(0);
    absent.absent_auditors = 1;
    absent.audit_timeout = Duration::from_secs(60);
    // Leases and heartbeats outlast every move of the clock below.
    absent.lease = Duration::from_secs(86_400);
    absent.heartbeat_ttl = Duration::from_secs(86_400);
    let system = kit::System::start(absent).await;
    let clock = system.clock.clone();
    let mover = tokio::spawn(async move {
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            clock.advance(Duration::from_secs(61));
        }
    });
    let run = system.finish(Duration::from_secs(60)).await;
    mover.abort();
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

/// A stranger with write access to a local bucket works against the audit
/// prefixes while the run is live: it answers every audit job first with
/// a bloated object of its own, deletes every other job, plants a job far
/// ahead of the validator's numbers, and writes a dropped-auditor record
/// for each auditor. Nothing it writes is an auditor's or the validator's:
/// the validator replays what went unanswered itself, drops nobody, and
/// the run ends with the honest model, paid and fair.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_writing_the_audit_prefixes_do_not_stop_a_run() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use locus_protocol::Keypair;
    use object_store::PutMode;

    let honest = run(setup(0)).await.params;
    let mut hostile = setup(2);
    hostile.audit_timeout = Duration::from_secs(1);
    let system = kit::System::start(hostile).await;
    let (bucket, auditors) = (system.bucket.clone(), system.auditors.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let stranger = Keypair::generate();
    let attacker = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let layout = bucket.layout().clone();
            let mut planted = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for auditor in &auditors {
                    let jobs = bucket
                        .list(&layout.audit_jobs(auditor), None)
                        .await
                        .unwrap_or_default();
                    for (i, job) in jobs.iter().enumerate() {
                        let Some(seq) = layout.parse_audit_job(auditor, job) else {
                            continue;
                        };
                        let result = layout.audit_result(auditor, seq);
                        let bloat = vec![0x5a; 1 << 20];
                        if bucket
                            .put_bytes(&result, bloat, PutMode::Create)
                            .await
                            .is_ok()
                        {
                            planted += 1;
                        }
                        if i % 2 == 1 {
                            let _ = bucket.delete(job).await;
                        }
                    }
                    let ahead = pb::AuditJob {
                        auditor: auditor.to_bytes().to_vec(),
                        receipt_key: "nowhere".into(),
                        ..Default::default()
                    };
                    let _ = bucket
                        .put(&layout.audit_job(auditor, u64::MAX / 2), &ahead, &stranger)
                        .await;
                    let dropped = pb::AuditorDropped {
                        auditor: auditor.to_bytes().to_vec(),
                        reason: "forged".into(),
                        unix_ms: 0,
                    };
                    let _ = bucket
                        .put(&layout.auditor_dropped(auditor), &dropped, &stranger)
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            planted
        })
    };
    let run = system.finish(Duration::from_secs(300)).await;
    stop.store(true, Ordering::Relaxed);
    let planted = attacker.await.expect("attacker task");
    assert!(planted > 0, "the stranger never got an answer in first");
    run.assert_complete_and_fair(STEPS);
    run.assert_credited_once(JOBS);
    assert!(
        run.params == honest,
        "the attacked run trained another model"
    );
    for (auditor, dropped) in &run.auditors {
        assert_eq!(dropped, &None, "{auditor} dropped on a stranger's word");
    }
}
