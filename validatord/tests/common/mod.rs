//! A one-step run in a bucket, its forward job assigned to a miner and
//! (when asked) honestly executed: what the validator's tests judge.

#![allow(dead_code)]

use locus_protocol::pb;
use locus_protocol::{Bucket, Hotkey, Keypair};
use locus_workloads::plan::Source;
use locus_workloads::{Device, WORKLOAD_MLP, mlp};

/// The forward job of step 0 of a one-step run, as the owner published it.
pub struct Job {
    pub run: pb::RunManifest,
    pub manifest: pb::JobManifest,
    pub init: pb::TensorArtifact,
    pub assignment_key: String,
    pub manifest_digest: Vec<u8>,
}

/// What the miner wrote for a [`Job`].
pub struct Written {
    pub receipt_key: String,
    pub receipt: pb::Receipt,
    pub artifact: pb::TensorArtifact,
}

/// Publishes a one-step run and assigns its forward job (attempt 1, no
/// deadline) to `miner` at assignment sequence number `seq`.
pub async fn publish_run(
    bucket: &Bucket,
    owner: &Keypair,
    miner: &Hotkey,
    run_id: &str,
    seq: u64,
) -> Job {
    let layout = bucket.layout().clone();
    let cfg = mlp::default_config(5);
    let run = pb::RunManifest {
        run_id: run_id.into(),
        workload: WORKLOAD_MLP.into(),
        steps: 1,
        mlp: Some(cfg),
        ..Default::default()
    };
    bucket
        .create(&layout.run_manifest(run_id), &run, owner)
        .await
        .unwrap();
    let init_key = layout.artifact(run_id, mlp::INITIAL, 0);
    let init = pb::TensorArtifact {
        run_id: run_id.into(),
        job_id: mlp::INITIAL.into(),
        attempt: 0,
        tensors: mlp::initial_artifact(&cfg),
    };
    let init_digest = bucket.create(&init_key, &init, owner).await.unwrap();
    let spec = mlp::step_jobs(&cfg, 0).remove(0);
    assert_eq!(spec.inputs, vec![Source::Owner(mlp::INITIAL.into())]);
    let manifest = pb::JobManifest {
        run_id: run_id.into(),
        job_id: spec.job_id.clone(),
        step: 0,
        kind: spec.kind as i32,
        inputs: vec![pb::InputRef {
            key: init_key,
            digest: init_digest.to_vec(),
            writer: owner.hotkey().to_bytes().to_vec(),
        }],
        cost: Some(mlp::mlp_cost(&cfg, spec.kind)),
        ..Default::default()
    };
    let manifest_key = layout.job_manifest(run_id, &spec.job_id);
    let manifest_digest = bucket
        .create(&manifest_key, &manifest, owner)
        .await
        .unwrap()
        .to_vec();
    let assignment_key = layout.assignment(miner, 0, seq);
    let assignment = pb::Assignment {
        run_id: run_id.into(),
        job_id: spec.job_id.clone(),
        attempt: 1,
        hotkey: miner.to_bytes().to_vec(),
        manifest_key,
        manifest_digest: manifest_digest.clone(),
        deadline_unix_ms: u64::MAX,
        ..Default::default()
    };
    bucket
        .create(&assignment_key, &assignment, owner)
        .await
        .unwrap();
    Job {
        run,
        manifest,
        init,
        assignment_key,
        manifest_digest,
    }
}

/// The miner computes `job` honestly and writes its artifact and receipt.
pub async fn write_receipt(bucket: &Bucket, miner: &Keypair, job: &Job) -> Written {
    let layout = bucket.layout();
    let run_id = &job.run.run_id;
    let job_id = &job.manifest.job_id;
    let tensors =
        locus_workloads::execute(&job.run, &job.manifest, &[&job.init], &Device::Cpu).unwrap();
    let artifact = pb::TensorArtifact {
        run_id: run_id.clone(),
        job_id: job_id.clone(),
        attempt: 1,
        tensors,
    };
    let artifact_key = layout.artifact(run_id, job_id, 1);
    let digest = bucket
        .create(&artifact_key, &artifact, miner)
        .await
        .unwrap();
    let receipt = pb::Receipt {
        run_id: run_id.clone(),
        job_id: job_id.clone(),
        attempt: 1,
        hotkey: miner.hotkey().to_bytes().to_vec(),
        assignment_key: job.assignment_key.clone(),
        manifest_digest: job.manifest_digest.clone(),
        output: Some(pb::OutputCommitment {
            key: artifact_key,
            digest: digest.to_vec(),
            size: 0,
        }),
        backend: Device::Cpu.backend().into(),
        ..Default::default()
    };
    let receipt_key = layout.receipt(run_id, 0, job_id, 1);
    bucket.create(&receipt_key, &receipt, miner).await.unwrap();
    Written {
        receipt_key,
        receipt,
        artifact,
    }
}
