//! The gpt_pipe workload run by the three daemon loops in one process over
//! an in-memory bucket (`tests/kit`): the pipelined, bucket-streamed run
//! ends with exactly the parameters of the single-process trainer.

use crate::kit;

use std::sync::Arc;
use std::time::Duration;

use kit::Setup;
use locus_protocol::pb;
use locus_workloads::gpt::{self, GptPipe, TokenData, tokens::Tokens};
use locus_workloads::trainer::Trainer;
use locus_workloads::{Device, Workload};

/// A tiny GPT (3 stages) on a synthetic token stream: small enough for a
/// debug build, with every job kind and stage boundary of the real one.
fn tiny_pipe() -> GptPipe {
    let cfg = pb::GptConfig {
        vocab: 211,
        d_model: 8,
        heads: 2,
        d_ff: 16,
        seq_len: 8,
        batch: 2,
        stages: 3,
        micro_batches: 3,
        eval_sequences: 4,
        ..gpt::default_config(5)
    };
    let ids = (0..6000u32).map(|i| (i * 7919 + i / 7) % 211).collect();
    let tokens = Tokens::from_ids(ids, cfg.vocab).expect("synthetic tokens");
    let data = TokenData::new(tokens, &cfg).expect("split");
    GptPipe::for_owner(cfg, data).expect("configuration")
}

/// The tiny workload, and what the single-process trainer makes of it in
/// `steps` steps: the parameters it ends with (all stages, in order) and
/// its held-out loss per step.
fn trained(steps: u32) -> (Arc<dyn Workload>, Vec<pb::Tensor>, Vec<f32>) {
    let pipe = tiny_pipe();
    let mut trainer = Trainer::new(&pipe, Device::Cpu);
    let eval = (0..steps)
        .map(|step| {
            let losses = trainer.step(step).expect("trainer step");
            losses.eval_loss.expect("eval loss")
        })
        .collect();
    let params = trainer
        .params_after(steps - 1)
        .into_iter()
        .flat_map(|a| a.tensors.clone())
        .collect();
    (Arc::new(pipe), params, eval)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipelined_run_equals_the_single_process_trainer_bitwise() {
    let steps = 2;
    let (workload, reference, eval) = trained(steps);
    let finished = kit::run(
        Setup {
            steps,
            miners: 3,
            workload: Some(workload),
            ..Setup::default()
        },
        Duration::from_secs(240),
    )
    .await;
    finished.assert_complete_and_fair(steps);
    assert_eq!(
        finished.state.param_parts.len(),
        3,
        "one artifact per stage"
    );
    assert!(
        finished.params == reference,
        "the distributed run's parameters differ from the trainer's"
    );
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&finished.state.eval_loss), bits(&eval));
    assert_eq!(finished.state.train_loss.len(), steps as usize);
}

/// An owner that dies twice mid-run resumes from the bucket (its run
/// state, its owner artifacts, the stages' parameter and optimizer
/// artifacts) and ends with exactly the trainer's parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_owner_resumes_a_pipelined_run_bitwise() {
    let steps = 3;
    let (workload, reference, _) = trained(steps);
    let mut system = kit::System::start(Setup {
        steps,
        workload: Some(workload),
        ..Setup::default()
    })
    .await;
    system.wait_for_steps(1).await;
    system.restart_orchestrator().await;
    system.wait_for_steps(2).await;
    system.restart_orchestrator().await;
    let resumed = system.finish(Duration::from_secs(240)).await;
    resumed.assert_complete_and_fair(steps);
    assert!(
        resumed.params == reference,
        "the resumed run ends elsewhere"
    );
}

/// A stranger with write access to a local bucket planted objects at the
/// owner's artifact keys (a stage's initial parameters, a micro-batch's
/// windows, the held-out windows) before the run: the owner replaces them
/// and the run ends with the trainer's parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_planted_at_owner_artifact_keys_do_not_stop_a_run() {
    let steps = 2;
    let (workload, reference, _) = trained(steps);
    let finished = kit::run(
        Setup {
            steps,
            workload: Some(workload),
            before: Some(Box::new(|bucket, _miners| {
                Box::pin(async move {
                    let stranger = locus_protocol::Keypair::generate();
                    let ids = [gpt::init_id(1), gpt::batch_id(1, 0), gpt::HELDOUT.into()];
                    for id in ids {
                        let key = bucket.layout().artifact(kit::RUN, &id, 0);
                        let junk = pb::TensorArtifact {
                            run_id: kit::RUN.into(),
                            job_id: id,
                            ..Default::default()
                        };
                        bucket.create(&key, &junk, &stranger).await.expect("plant");
                    }
                })
            })),
            ..Setup::default()
        },
        Duration::from_secs(240),
    )
    .await;
    finished.assert_complete_and_fair(steps);
    assert!(finished.params == reference, "the run ends elsewhere");
}

/// A stage miner that corrupts what it sends down the pipeline (one
/// element of its activations or gradients), or skips the compute, at the
/// default sample rate over several steps: it is caught and paid nothing,
/// and the run still ends with exactly the honest parameters.
#[cfg(feature = "fault-injection")]
mod attacks {
    use super::*;

    async fn caught(mode: &str, why: &str) {
        let steps = 3;
        let (workload, honest, _) = trained(steps);
        let attacked = kit::run(
            Setup {
                steps,
                miners: 4,
                sample_rate: 0.25,
                probation_replays: 3,
                lease: Duration::from_secs(4),
                attack: Some(mode.parse().expect("a fault mode")),
                workload: Some(workload),
                ..Setup::default()
            },
            Duration::from_secs(300),
        )
        .await;
        attacked.assert_complete(steps, Some(0));
        assert!(
            attacked.params == honest,
            "{mode}: the attacked run trained another model"
        );
        let score = attacked.score(0);
        assert_eq!(score.weight, 0.0, "{mode}: the attacker was paid");
        assert!(
            score.reason.contains(why),
            "{mode}: reason {:?} lacks {why:?}",
            score.reason
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn corrupt_activations_or_gradients_earn_nothing() {
        caught("partial_corrupt", "failed verdict: replay mismatch").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn skipped_compute_earns_nothing() {
        caught("skip_compute", "failed verdict: replay mismatch").await;
    }
}
