//! Validator replay throughput against plain Burn running the same jobs.
//!
//! A run is trained in process (`tests/kit`) over an in-memory bucket; then
//! every receipt is judged with the sample rate at 1, so each judgement
//! goes the whole replay path (read and verify the receipt, its assignment,
//! manifest and inputs, execute, compare outputs) as the validator goes it
//! (a replay runs on a task of its own while the next receipt is read and
//! checked, one replay at a time), and the same jobs are
//! executed again with their inputs already decoded in memory: plain Burn.
//! The ratio is what the replay path leaves of plain Burn's throughput. Each
//! pass judges with a fresh `InputCache` of the validator's size (32 MiB),
//! as one validator meeting the run's receipts once: inputs that a step's
//! jobs share are read once per pass.
//!
//! `cargo bench --bench replay` (release profile) prints one line per size.

#[path = "../tests/kit/mod.rs"]
mod kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::{Bucket, Expect, Hotkey, Keypair};
use locus_workloads::{Device, Workload, mlp};
use validatord::input_cache::InputCache;
use validatord::replay::{Judge, Judgement, ReplayTask};

/// Passes over every receipt (the first one warms caches and allocators).
const ROUNDS: u32 = 3;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "replay throughput against plain Burn (MLP jobs, CPU, {ROUNDS} rounds after a warm-up)"
    );
    for (name, width, batch) in [("smoke size", 16, 32), ("width 256", 256, 256)] {
        runtime.block_on(bench(name, width, batch));
    }
}

async fn bench(name: &str, width: u32, batch_size: u32) {
    let mut cfg = mlp::default_config(1);
    cfg.width = width;
    cfg.batch_size = batch_size;
    cfg.micro_batches = 3;
    let workload: Arc<dyn Workload> = Arc::new(mlp::MlpRound::new(cfg).expect("mlp"));
    let setup = kit::Setup {
        steps: 2,
        miners: 3,
        sample_rate: 0.0,
        workload: Some(workload.clone()),
        ..kit::Setup::default()
    };
    let system = kit::System::start(setup).await;
    let bucket = system.bucket.clone();
    let owner = system.owner.hotkey();
    system.finish(Duration::from_secs(600)).await;

    let layout = bucket.layout();
    let run = std::sync::Arc::new(
        bucket
            .get::<pb::RunManifest>(&layout.run_manifest(kit::RUN), Expect::Signer(&owner))
            .await
            .expect("run manifest")
            .into_inner(),
    );
    let keys = bucket
        .list(&layout.receipts(kit::RUN), None)
        .await
        .expect("receipts");
    let jobs = load_jobs(&bucket, &owner, &keys).await;

    let validator = Keypair::generate();
    let never = |_: &Hotkey| false;
    let mut replay = Duration::ZERO;
    let mut plain = Duration::ZERO;
    for round in 0..=ROUNDS {
        let cache = InputCache::new(32 << 20);
        let judge = Judge {
            bucket: &bucket,
            owner: &owner,
            validator: &validator,
            run: &run,
            sample_rate: 1.0,
            device: &Device::Cpu,
            on_probation: &never,
            inputs: &cache,
            clock: &locus_protocol::time::Clock::system(),
        };
        let started = Instant::now();
        // As the validator judges: a sampled receipt replays on a task of
        // its own while the next one is read and checked.
        let replayer = judge.replayer();
        let mut replaying = None;
        for (key, written_ms, _, _) in &jobs {
            match judge.judge(key, *written_ms, None).await.expect("judged") {
                Judgement::Done(verdict) => panic!("{key}: not replayed: {}", verdict.reason),
                Judgement::Replay(pending) => {
                    if let Some(task) = replaying.take() {
                        land(task).await;
                    }
                    replaying = Some(replayer.start(pending));
                }
            }
        }
        if let Some(task) = replaying {
            land(task).await;
        }
        let replayed = started.elapsed();
        let started = Instant::now();
        for (key, _, manifest, inputs) in &jobs {
            let inputs: Vec<&pb::TensorArtifact> = inputs.iter().collect();
            workload
                .execute(manifest, &inputs, &Device::Cpu)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        let executed = started.elapsed();
        if round > 0 {
            replay += replayed;
            plain += executed;
        }
    }
    let n = (jobs.len() as u32 * ROUNDS).max(1);
    let (replay_each, plain_each) = (replay / n, plain / n);
    println!(
        "{name:>11}: {} jobs; replay path {:.3} ms/job, plain Burn {:.3} ms/job: replay runs at {:.1} % of plain Burn's throughput",
        jobs.len(),
        replay_each.as_secs_f64() * 1e3,
        plain_each.as_secs_f64() * 1e3,
        100.0 * plain.as_secs_f64() / replay.as_secs_f64().max(f64::MIN_POSITIVE)
    );
}

/// Waits for a replay and checks that it verified the receipt.
async fn land(task: ReplayTask) {
    let (pending, replayed) = task.finish().await.expect("replayed");
    let verdict = pending.conclude(&replayed, None);
    assert_eq!(
        verdict.outcome,
        VerdictOutcome::Verified as i32,
        "{}: {}",
        verdict.receipt_key,
        verdict.reason
    );
}

/// Each receipt's key and write time, with its job manifest and decoded
/// inputs (read once, outside any timing).
async fn load_jobs(
    bucket: &Bucket,
    owner: &Hotkey,
    keys: &[String],
) -> Vec<(String, u64, pb::JobManifest, Vec<pb::TensorArtifact>)> {
    let mut jobs = Vec::new();
    for key in keys {
        let receipt = bucket
            .get::<pb::Receipt>(key, Expect::AnySigner)
            .await
            .expect("receipt");
        let assignment = bucket
            .get::<pb::Assignment>(&receipt.assignment_key, Expect::Signer(owner))
            .await
            .expect("assignment");
        let manifest = assignment
            .manifest
            .clone()
            .expect("the assignment's manifest");
        let mut inputs = Vec::new();
        for input in &manifest.inputs {
            let artifact = bucket
                .get::<pb::TensorArtifact>(&input.key, Expect::AnySigner)
                .await
                .expect("input");
            inputs.push(artifact.into_inner());
        }
        jobs.push((key.clone(), receipt.finished_unix_ms, manifest, inputs));
    }
    jobs
}
