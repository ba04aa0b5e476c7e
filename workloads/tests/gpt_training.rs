//! Runs the gpt_pipe workload's DAG in one process on the shipped corpus:
//! the held-out loss falls, and two runs agree bit for bit.

use std::path::PathBuf;

use locus_protocol::pb;
use locus_workloads::gpt::tokens::Tokens;
use locus_workloads::gpt::{self, GptPipe, TokenData};
use locus_workloads::trainer::Trainer;
use locus_workloads::{Device, Workload, WorkloadError};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/corpus/shakespeare.tokens.bin")
}

fn tiny() -> pb::GptConfig {
    pb::GptConfig {
        d_model: 16,
        heads: 2,
        d_ff: 32,
        seq_len: 16,
        batch: 2,
        stages: 3,
        micro_batches: 2,
        eval_sequences: 4,
        lr: 1e-2,
        ..gpt::default_config(3)
    }
}

fn owner(cfg: pb::GptConfig) -> GptPipe {
    let tokens = Tokens::read(&corpus(), cfg.vocab).expect("the shipped corpus");
    let data = TokenData::new(tokens, &cfg).unwrap();
    GptPipe::for_owner(cfg, data).unwrap()
}

#[test]
fn gpt_pipe_trains_and_repeats_bitwise() {
    let pipe = owner(tiny());
    let train = || {
        let mut trainer = Trainer::new(&pipe, Device::Cpu);
        let losses: Vec<(f32, f32)> = (0..4)
            .map(|step| {
                let l = trainer.step(step).unwrap();
                (l.train_loss.unwrap(), l.eval_loss.unwrap())
            })
            .collect();
        let params: Vec<pb::TensorArtifact> =
            trainer.params_after(3).into_iter().cloned().collect();
        (losses, params)
    };
    let (losses, params) = train();
    println!("(train, eval) losses: {losses:?}");
    assert_eq!(params.len(), 3, "one parameter artifact per stage");
    let uniform = (pipe.config().vocab as f32).ln();
    assert!(losses[0].0 > uniform - 0.5, "{losses:?}");
    assert!(
        losses[3].1 < losses[0].1 - 0.2,
        "the held-out loss did not fall: {losses:?}"
    );
    assert_eq!(train(), (losses, params), "a second run differs");
}

#[test]
fn the_owner_writes_windows_only_with_the_token_file() {
    let cfg = pb::GptConfig {
        tokens_digest: vec![1; 32],
        ..tiny()
    };
    let miner = GptPipe::new(cfg).unwrap();
    assert!(matches!(
        miner.owner_artifact(&gpt::batch_id(0, 0)),
        Err(WorkloadError::Config(_))
    ));
    // Initial parameters need no data.
    assert!(miner.owner_artifact(&gpt::init_id(2)).is_ok());
    for bad in [
        "init-p3",
        "init-p01",
        "batch-s00000-m02",
        "batch-s0-m00",
        "x",
    ] {
        assert!(
            matches!(
                owner(tiny()).owner_artifact(bad),
                Err(WorkloadError::UnknownOwnerArtifact(_))
            ),
            "{bad}"
        );
    }
    let pipe = owner(tiny());
    let batch = pipe.owner_artifact(&gpt::batch_id(5, 1)).unwrap();
    assert_eq!(batch[0].shape, vec![2, 17]);
    assert_eq!(batch, pipe.owner_artifact(&gpt::batch_id(5, 1)).unwrap());
    assert_ne!(batch, pipe.owner_artifact(&gpt::batch_id(5, 0)).unwrap());
}

/// The default size's learning curve and speed (`--ignored`, release).
#[test]
#[ignore]
fn default_size_curve() {
    let steps: u32 = std::env::var("STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let lr: f32 = std::env::var("LR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3e-3);
    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let cfg = pb::GptConfig {
        lr,
        batch: env("BATCH", 8),
        seq_len: env("SEQ", 64),
        micro_batches: env("MB", 4),
        ..gpt::default_config(1)
    };
    let pipe = owner(cfg);
    let mut trainer = Trainer::new(&pipe, Device::Cpu);
    let start = std::time::Instant::now();
    for step in 0..steps {
        let l = trainer.step(step).unwrap();
        println!(
            "step {step}: train {:.4} eval {:.4} at {:.1} s",
            l.train_loss.unwrap(),
            l.eval_loss.unwrap(),
            start.elapsed().as_secs_f64()
        );
    }
}
