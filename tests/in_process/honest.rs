//! The three daemon loops in one process over an in-memory bucket
//! (`tests/kit`): honest runs, planted keys, and restarts of the owner.

use crate::kit;

use std::time::Duration;

use kit::{RUN, Setup, System};
use locus_protocol::{Keypair, pb};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_honest_run_finishes_and_pays_every_miner() {
    let setup = Setup {
        // No lease may run out, however loaded the machine: no job is redone.
        lease: Duration::from_secs(120),
        ..Setup::default()
    };
    let finished = kit::run(setup, Duration::from_secs(120)).await;
    finished.assert_complete_and_fair(2);
    finished.assert_no_redo();
}

/// Objects a stranger planted at the owner's assignment keys before the run
/// (the largest sequence number there is, and the first keys the owner will
/// use) neither move its sequence numbers nor stop it assigning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn planted_assignment_keys_do_not_stop_a_run() {
    let setup = Setup {
        before: Some(Box::new(|bucket, miners| {
            Box::pin(async move {
                let stranger = Keypair::generate();
                let layout = bucket.layout();
                for miner in &miners {
                    let prefix = layout.assignments_of(miner, 0);
                    let mut keys = vec![
                        format!("{prefix}18446744073709551615.pb"),
                        format!("{prefix}999999999999.pb"),
                    ];
                    keys.extend((0..4).map(|seq| layout.assignment(miner, 0, seq)));
                    for key in keys {
                        let junk = pb::Assignment {
                            run_id: RUN.into(),
                            job_id: "s00000-forward-m00".into(),
                            hotkey: stranger.hotkey().to_bytes().to_vec(),
                            ..Default::default()
                        };
                        bucket
                            .put(&key, &junk, &stranger)
                            .await
                            .expect("planting works");
                    }
                }
            })
        })),
        lease: Duration::from_secs(120),
        ..Setup::default()
    };
    let finished = kit::run(setup, Duration::from_secs(120)).await;
    finished.assert_complete_and_fair(2);
    finished.assert_no_redo();
}

/// A stranger's object at the run state key (on a local bucket anyone can
/// write) neither stops the owner starting nor survives its first write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_at_the_run_state_key_does_not_stop_a_run() {
    let setup = Setup {
        before: Some(Box::new(|bucket, _| {
            Box::pin(async move {
                let stranger = Keypair::generate();
                let forged = pb::RunState {
                    run_id: RUN.into(),
                    completed_steps: 99,
                    done: true,
                    ..Default::default()
                };
                let key = bucket.layout().run_state(RUN);
                bucket
                    .put(&key, &forged, &stranger)
                    .await
                    .expect("planting works");
            })
        })),
        ..Setup::default()
    };
    let finished = kit::run(setup, Duration::from_secs(120)).await;
    finished.assert_complete_and_fair(2);
}

/// Every first attempt to write the run state fails, the last one (the
/// run is done) included: the orchestrator retries it and does not stop
/// before the bucket says the run is complete.
#[cfg(feature = "fault-injection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_run_state_write_is_retried_before_the_run_counts_as_done() {
    let setup = Setup {
        owner_store: Some(|store| {
            std::sync::Arc::new(
                locus_protocol::faults::FaultyStore::failing_every_other_put(store, "/state.pb"),
            )
        }),
        // Without a retry the third write (the last) would be lost.
        steps: 3,
        ..Setup::default()
    };
    let finished = kit::run(setup, Duration::from_secs(120)).await;
    finished.assert_complete_and_fair(3);
}

/// With a validator in the run the owner uses results on its word: the
/// orchestrator reads each verdict, not the receipt and the artifact the
/// validator has already checked (three reads per job before).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_orchestrator_reads_verdicts_not_results() {
    let setup = Setup {
        steps: 2,
        // A lease that runs out sends the owner to the receipts (a redo):
        // none may, however loaded the machine.
        lease: Duration::from_secs(120),
        ..Setup::default()
    };
    let finished = kit::run(setup, Duration::from_secs(120)).await;
    finished.assert_complete_and_fair(2);
    finished.assert_no_redo();
    let jobs = finished.verdicts.len() as u64;
    // One verdict per job, and the owner's own objects (the run state at
    // start, initial parameters and data as jobs first need them, the final
    // parameters before the run is declared done): 29 for 20 jobs here. It
    // read a receipt and an artifact more per job when it checked them
    // itself.
    assert!(
        finished.orchestrator_gets < 2 * jobs,
        "the orchestrator read {} objects for {jobs} jobs",
        finished.orchestrator_gets
    );
}

/// An orchestrator that dies mid-run and is started again resumes from the
/// bucket and ends with the same model as a run that never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_orchestrator_resumes_to_the_same_model() {
    let setup = || Setup {
        steps: 3,
        ..Setup::default()
    };
    let reference = kit::run(setup(), Duration::from_secs(120)).await;
    let mut system = System::start(setup()).await;
    system.wait_for_steps(1).await;
    system.restart_orchestrator().await;
    system.wait_for_steps(2).await;
    system.restart_orchestrator().await;
    let resumed = system.finish(Duration::from_secs(120)).await;
    resumed.assert_complete_and_fair(3);
    assert_eq!(
        resumed.params, reference.params,
        "resumed run ends elsewhere"
    );
}

/// A restart late in a run reads what is in flight, not the run's history:
/// the assignments and receipts of steps the run state records as done are
/// not read again, so a restart costs no more at step 5 than at step 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_reads_the_steps_in_flight_not_the_whole_run() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut system = System::start(Setup {
        steps: 6,
        ..Setup::default()
    })
    .await;
    let jobs = system.jobs_per_step() as u64;
    system.wait_for_steps(1).await;
    let (_, early_start) = system.restart_orchestrator().await;
    system.wait_for_steps(5).await;
    let (late, late_start) = system.restart_orchestrator().await;
    let finished = system.finish(Duration::from_secs(120)).await;
    finished.assert_complete_and_fair(6);
    let late_total = late.counts().gets.load(Relaxed);
    // The steps in flight and the jobs of the step before whose assignments
    // came after the floor: a few steps' worth, whatever the run's length
    // (reading the history, it was 74 to 99 here).
    assert!(
        late_start <= 3 * jobs,
        "a restart after 5 steps read {late_start} objects at start-up, one after 1 step {early_start}"
    );
    // Finishing the last step reads each of its jobs' receipt, artifact,
    // verdict and a few more; reading five steps again would be far more.
    assert!(
        late_total <= 10 * jobs,
        "a restart before the last of 6 steps read {late_total} objects for {jobs} jobs a step"
    );
}

/// What happens to the validator's checkpoint while it is down.
#[derive(Clone, Copy, Debug)]
enum WhileDown {
    Nothing,
    /// Deleted.
    Lost,
    /// Replaced by a stranger's, whose tallies pay miner 0 a fortune.
    Forged,
}

/// A validator restarted late in a live run takes up its checkpoint (the
/// closed steps' verdicts, counted) and reads only the open steps'
/// verdicts. With the checkpoint lost or forged by a stranger, the same
/// restart reads the run's history. Every time the final scores are those
/// of every verdict in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_validator_reads_its_checkpoint_not_the_runs_verdicts() {
    async fn restart_after_six_of_eight_steps(while_down: WhileDown) -> (u64, u64) {
        let mut system = System::start(Setup {
            steps: 8,
            ..Setup::default()
        })
        .await;
        let jobs = system.jobs_per_step() as u64;
        system.wait_for_steps(6).await;
        let key = system.bucket.layout().validator_checkpoint(RUN);
        let miner = system.miners[0];
        let (_, take_up) = system
            .restart_validator(async |bucket: &locus_protocol::Bucket| match while_down {
                WhileDown::Nothing => {}
                WhileDown::Lost => bucket.delete(&key).await.expect("deleting the checkpoint"),
                WhileDown::Forged => {
                    let forged = pb::ValidatorCheckpoint {
                        run_id: RUN.into(),
                        floor: 7,
                        tallies: vec![pb::HotkeyTally {
                            hotkey: miner.to_bytes().to_vec(),
                            receipts: 1,
                            verified: 1,
                            verified_cu: 1_000_000_000,
                            ..Default::default()
                        }],
                        ..Default::default()
                    };
                    bucket
                        .put(&key, &forged, &Keypair::generate())
                        .await
                        .expect("planting a checkpoint");
                }
            })
            .await;
        let finished = system.finish(Duration::from_secs(120)).await;
        finished.assert_complete_and_fair(8);
        let all: Vec<validatord::scoring::Judged> = finished
            .verdicts
            .iter()
            .map(|v| validatord::scoring::Judged {
                hotkey: locus_protocol::Hotkey::from_bytes(&v.hotkey).expect("hotkey"),
                step: v.step,
                outcome: pb::VerdictOutcome::try_from(v.outcome).expect("outcome"),
                compute_units: v.compute_units,
                reason: v.reason.clone(),
            })
            .collect();
        let mut expected = validatord::scoring::score(&all);
        let mut scored = finished.window.scores.clone();
        for s in expected.iter_mut().chain(scored.iter_mut()) {
            s.reason.clear();
        }
        assert_eq!(
            scored, expected,
            "the scores after a restart (checkpoint {while_down:?}) are not those of the verdicts"
        );
        (take_up, jobs)
    }
    let (with_checkpoint, jobs_per_step) =
        restart_after_six_of_eight_steps(WhileDown::Nothing).await;
    let (without, _) = restart_after_six_of_eight_steps(WhileDown::Lost).await;
    let (forged, _) = restart_after_six_of_eight_steps(WhileDown::Forged).await;
    // The verdicts of the open steps (two or three) and a few records.
    assert!(
        with_checkpoint <= 4 * jobs_per_step,
        "a restart after 6 of 8 steps read {with_checkpoint} objects to take up the run ({jobs_per_step} jobs a step)"
    );
    for (what, read) in [("lost", without), ("forged", forged)] {
        assert!(
            read >= 6 * jobs_per_step && read > with_checkpoint,
            "with its checkpoint {what} the restart should read the history: {read} objects, with it {with_checkpoint}"
        );
    }
}

/// A validator started again after it scored a run to the end reads that
/// run's score window, not its verdicts and receipts, and leaves the window
/// as it was: a restart costs a few requests per run, not the run's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_validator_does_not_judge_a_finished_run_again() {
    use std::sync::atomic::Ordering::Relaxed;
    let finished = kit::run(Setup::default(), Duration::from_secs(120)).await;
    let bucket =
        locus_protocol::Bucket::from_store(finished.store.clone(), "memory://", kit::NETUID);
    let mut validator = validatord::driver::Validator::new(
        bucket.clone(),
        finished.owner,
        Keypair::from_seed(&finished.validator.seed()),
        validatord::driver::Settings {
            sample_rate: 0.25,
            probation_replays: 3,
            poll_min: Duration::from_millis(20),
            poll_max: Duration::from_millis(80),
            device: locus_workloads::Device::Cpu,
            exit_after_run: Some(RUN.into()),
            chain: None,
            audit: Default::default(),
            clock: locus_protocol::time::Clock::system(),
            checkpoint_every: validatord::driver::CHECKPOINT_EVERY,
        },
    );
    let stop = locus_daemon::Shutdown::default();
    tokio::time::timeout(Duration::from_secs(30), validator.run(&stop))
        .await
        .expect("the validator sees the run is scored and exits")
        .expect("the validator runs");
    let (gets, lists) = (
        bucket.counts().gets.load(Relaxed),
        bucket.counts().lists.load(Relaxed),
    );
    assert!(
        gets <= 2 && lists <= 1,
        "a restarted validator read {gets} objects and listed {lists} prefixes for a finished run"
    );
    let window: locus_protocol::Verified<pb::ScoreWindow> = bucket
        .get(
            &bucket.layout().score_window(RUN),
            locus_protocol::Expect::Signer(&finished.validator.hotkey()),
        )
        .await
        .expect("score window");
    assert_eq!(window.into_inner(), finished.window);
}

/// A worker alive by its heartbeats that never finishes its jobs holds each
/// only until its lease runs out. Leases are a minute, far longer than the
/// test may take: the owner's clock is moved past a lease whenever the
/// silent worker holds one, and its jobs go to working miners.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lease_that_runs_out_moves_the_job_to_a_working_miner() {
    let setup = Setup {
        steps: 1,
        miners: 2,
        silent: 1,
        lease: Duration::from_secs(60),
        // Heartbeats count by the storage's real clock: keep them fresh
        // however far the owner's clock is moved.
        heartbeat_ttl: Duration::from_secs(86_400),
        ..Setup::default()
    };
    let system = System::start(setup).await;
    let held = system.bucket.layout().assignments_of(&system.silent[0], 0);
    let (bucket, clock) = (system.bucket.clone(), system.clock.clone());
    // Until the run is done: the owner gives the silent worker a job again
    // whenever one of its leases runs out, and a loaded machine fits many
    // such rounds in a run (a cap of 20 once stalled it for a whole lease).
    let expirer = tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let assigned = bucket.list(&held, None).await.map_or(0, |k| k.len());
            if assigned > seen {
                seen = assigned;
                // 60 s of lease and the owner's 5 s of grace.
                clock.advance(Duration::from_secs(66));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let silent = system.silent[0];
    let finished = system.finish(Duration::from_secs(120)).await;
    expirer.abort();
    finished.assert_complete(1, None);
    let paid = finished
        .window
        .scores
        .iter()
        .any(|s| s.hotkey == silent.to_bytes() && s.weight > 0.0);
    assert!(!paid, "a worker that did nothing was paid");
    let first = finished.attempts.iter().min().copied().unwrap_or_default();
    assert!(
        finished.attempts.iter().any(|a| *a > first),
        "no job was reassigned: attempts {:?}",
        finished.attempts
    );
}
