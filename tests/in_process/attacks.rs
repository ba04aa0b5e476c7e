//! The attack matrix of docs/security.md, in one process (`tests/kit`):
//! for each attack a 3-step run at the default sample rate with three honest
//! miners and one attacker (miner 0). Every run must finish with the model
//! an all-honest run trains, bit for bit, pay every honest miner, credit no
//! job twice, and pay the attacker only for honest work. What the attack
//! left is read from the bucket: the validator's verdicts and score window,
//! the owner's run state (its bans and rewinds).
//!
//! `tests/attacks.rs` and `tests/hostile.rs` keep the cases that need
//! processes: the `--fault-mode` command line and the S3 grant attacks.

use crate::kit;

use std::time::Duration;

use kit::{Finished, Setup};
use locus_protocol::pb::VerdictOutcome;
use minerd::faults::FaultMode;
use tokio::sync::OnceCell;

const STEPS: u32 = 3;
/// forward, 3 × 2 inner, reduce, outer, eval per step.
const JOBS: usize = 10 * STEPS as usize;

fn setup(attack: Option<FaultMode>) -> Setup {
    Setup {
        steps: STEPS,
        miners: 4,
        micro_batches: 3,
        sample_rate: 0.25,
        probation_replays: 3,
        lease: Duration::from_secs(4),
        attack,
        ..Setup::default()
    }
}

async fn run(setup: Setup) -> Finished {
    kit::run(setup, Duration::from_secs(300)).await
}

/// The model an all-honest run of [`setup`] trains (once per test binary).
async fn honest_params() -> &'static Vec<locus_protocol::pb::Tensor> {
    static PARAMS: OnceCell<Vec<locus_protocol::pb::Tensor>> = OnceCell::const_new();
    PARAMS
        .get_or_init(|| async { run(setup(None)).await.params })
        .await
}

/// Runs `mode` on miner 0 and checks what holds for every attack.
async fn attack(mode: &str) -> Finished {
    let attacked = destructive_attack(mode).await;
    attacked.assert_complete(STEPS, Some(0));
    attacked
}

/// [`attack`], but a victim may go unpaid: where the attacker destroys
/// others' outputs, a victim whose every result was destroyed before its
/// verdict earns nothing (void: no credit, no penalty), and how many that
/// are depends on timing alone.
async fn destructive_attack(mode: &str) -> Finished {
    let mode: FaultMode = mode.parse().expect("a fault mode");
    let attacked = run(setup(Some(mode))).await;
    attacked.assert_complete_paying(STEPS, &[]);
    assert!(
        attacked.params == *honest_params().await,
        "{mode}: the attacked run trained another model"
    );
    attacked.assert_credited_once(JOBS);
    attacked
}

/// Runs `mode` and checks the attacker was paid nothing, for `why`.
async fn caught(mode: &str, why: &str) -> Finished {
    let attacked = attack(mode).await;
    let score = attacked.score(0);
    assert_eq!(score.weight, 0.0, "{mode}: the attacker was paid");
    assert!(
        score.reason.contains(why),
        "{mode}: reason {:?} lacks {why:?}",
        score.reason
    );
    attacked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partial_corrupt_earns_nothing() {
    let run = caught("partial_corrupt", "failed verdict: replay mismatch").await;
    assert!(run.is_banned(0), "a failed replay bans the hotkey");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_output_earns_nothing() {
    caught("wrong_output", "failed verdict: replay mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skip_compute_earns_nothing() {
    caught("skip_compute", "failed verdict: replay mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stealth_corruption_earns_nothing() {
    caught("stealth", "failed verdict: replay mismatch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replaying_old_outputs_earns_nothing() {
    caught("replay_old", "failed verdict").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copied_outputs_earn_nothing() {
    caught("copy", "late, no credit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_results_earn_nothing() {
    caught("late", "late, no credit (first: written").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_claiming_another_hotkey_are_rejected() {
    caught("foreign_receipt", "rejected, no credit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_manifests_are_never_executed() {
    let run = caught("forge_manifest", "rejected, no credit").await;
    let forged: Vec<_> = run
        .verdicts
        .iter()
        .filter(|v| v.job_id.ends_with("-forged"))
        .map(|v| v.job_id.clone())
        .collect();
    assert!(forged.is_empty(), "forged jobs were judged: {forged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inflated_cost_claims_change_nothing() {
    let run = attack("inflate_cost").await;
    let score = run.score(0);
    assert!(score.weight > 0.0, "honest work is still paid");
    // The manifest's static cost, not the claim (u64::MAX / 4).
    let cu = score.verified_cu + score.unsampled_cu;
    assert!(cu < 1_000_000, "CU {cu} follows the claim");
}

/// A miner replaces its own artifact after the validator credited it. On a
/// local bucket the overwrite lands: the two artifacts it signed for one job
/// prove the cheat, so it is zeroed and banned, and everything that read the
/// replaced output is recomputed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwriting_an_own_result_after_its_verdict_is_caught() {
    let run = attack("overwrite_own").await;
    assert_eq!(run.weight(0), 0.0, "the equivocating miner was paid");
    assert!(run.is_banned(0), "the equivocating miner was not banned");
}

/// Objects planted at keys the owner must write (manifests of future jobs,
/// the next assignment keys of other workers) are worked around.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn planted_manifests_and_assignment_keys_are_worked_around() {
    let run = attack("plant").await;
    assert!(
        !run.is_banned(0),
        "planting proves nothing against the signer"
    );
}

/// Receipts deleted right after they were written (some at once, some
/// 150 ms later): a receipt the validator judged first keeps its verdict,
/// which stands on the artifact it checked; one deleted before that never
/// gets one, and its job is redone once its lease runs out (the owner finds
/// no receipt then). Either way the run does not stall and ends with the
/// honest model, each job credited once (`attack`). The held result whose
/// receipt vanishes is `hostile::a_receipt_deleted_while_awaiting_its_verdict_is_redone`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_receipts_do_not_stall_the_run() {
    let run = attack("delete_receipts").await;
    let judged: std::collections::BTreeSet<&str> =
        run.verdicts.iter().map(|v| v.job_id.as_str()).collect();
    assert_eq!(judged.len(), JOBS, "every job has a verdict");
}

/// A stranger replaces honest miners' artifacts with objects it signs and
/// deletes accepted outputs: the victims are never blamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampering_with_others_objects_frames_nobody() {
    let run = destructive_attack("tamper").await;
    for miner in 1..4 {
        assert!(!run.is_banned(miner), "victim {miner} was banned");
        let hotkey = run.miners[miner].to_bytes();
        let failed = run
            .verdicts
            .iter()
            .filter(|v| v.hotkey == hotkey && v.outcome == VerdictOutcome::Failed as i32)
            .count();
        assert_eq!(failed, 0, "victim {miner} got a failed verdict");
    }
}

/// 100 MB objects at a heartbeat, a run manifest, a receipt and a verdict
/// key: each is refused from its size alone and never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_objects_cost_one_bounded_request() {
    let run = attack("bloat").await;
    let read = run.owner_bytes_read;
    println!("bytes read by the orchestrator and the validator under bloat: {read}");
    assert!(read < 20 << 20, "the owner's daemons read {read} bytes");
}

/// Two miners, no sampling and no probation: a cheater's outputs go
/// unverified until a replay it cannot dodge catches it.
/// Steps of a [`taint`] run. The cheater is caught only by a replay of one
/// of its reduce or outer jobs from step 2 on; with two miners, four steps
/// left it none of the four such jobs about one run in sixteen, six steps
/// (eight jobs) about one in 256.
const TAINT_STEPS: u32 = 6;

fn taint(attack: Option<FaultMode>) -> Setup {
    Setup {
        steps: TAINT_STEPS,
        miners: 2,
        sample_rate: 0.0,
        probation_replays: 0,
        attack,
        ..setup(None)
    }
}

/// A cheater the sampler misses at first: with no sampling and no probation
/// its corrupt inner outputs are used from step 0, until a replay of one
/// of its reduce or outer jobs (always replayed) catches it. The run goes
/// back, recomputes everything built on its unverified output, and ends with
/// the model of an all-honest run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caught_cheater_s_unverified_work_is_undone() {
    let honest = run(taint(None)).await;
    let attacked = run(taint(Some(FaultMode::Taint))).await;
    attacked.assert_complete(TAINT_STEPS, Some(0));
    assert_eq!(attacked.weight(0), 0.0);
    assert!(attacked.is_banned(0));
    assert!(
        !attacked.state.rewinds.is_empty(),
        "the cheater's unverified work was never undone"
    );
    assert!(
        attacked.params == honest.params,
        "the rewound run ended elsewhere"
    );
}

/// The same cheater, caught only after the orchestrator restarted past the
/// step its unverified work begins at: the restart resumed after the last
/// completed step without reading the run's history, so the rewind reaches
/// below it, and the orchestrator reads the history then. The run still
/// ends with the model of an all-honest run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cheater_caught_after_a_restart_is_undone_from_before_it() {
    let honest = run(taint(None)).await;
    let mut system = kit::System::start(taint(Some(FaultMode::Taint))).await;
    system.wait_for_steps(1).await;
    let (resumed, _) = system.restart_orchestrator().await;
    let at_restart: locus_protocol::Verified<locus_protocol::pb::RunState> = resumed
        .get(
            &resumed.layout().run_state(kit::RUN),
            locus_protocol::Expect::Signer(&system.owner.hotkey()),
        )
        .await
        .expect("run state");
    let attacked = system.finish(Duration::from_secs(300)).await;
    attacked.assert_complete(TAINT_STEPS, Some(0));
    assert!(attacked.is_banned(0));
    assert!(
        at_restart.rewinds.is_empty() && at_restart.completed_steps >= 1,
        "the cheater was caught before the restart: nothing here reaches below it"
    );
    assert!(
        attacked.state.rewinds.iter().any(|r| r.from_step == 0),
        "the cheater's unverified work from step 0 was never undone"
    );
    assert!(
        attacked.params == honest.params,
        "the rewound run ended elsewhere"
    );
}
