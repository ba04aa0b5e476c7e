//! Judging receipts against a real (local-directory) bucket, without
//! processes: attribution, commitments, replays and cost claims.

use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::time::Clock;
use locus_protocol::{Bucket, Keypair, envelope};
use locus_workloads::Device;
use locus_workloads::mlp;
use object_store::PutMode;
use validatord::input_cache::InputCache;
use validatord::replay::{Judge, JudgeError};

mod common;

const RUN: &str = "judge";

/// A bucket holding one run with its forward job of step 0 assigned to
/// `miner` and honestly executed.
struct Fixture {
    _dir: tempfile::TempDir,
    bucket: Bucket,
    owner: Keypair,
    miner: Keypair,
    validator: Keypair,
    run: std::sync::Arc<pb::RunManifest>,
    receipt_key: String,
    receipt: pb::Receipt,
    artifact: pb::TensorArtifact,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
    let (owner, miner, validator) = (
        Keypair::generate(),
        Keypair::generate(),
        Keypair::generate(),
    );
    let job = common::publish_run(&bucket, &owner, &miner.hotkey(), RUN, 0).await;
    let common::Written {
        receipt_key,
        receipt,
        artifact,
    } = common::write_receipt(&bucket, &miner, &job).await;
    let run = std::sync::Arc::new(job.run);
    Fixture {
        _dir: dir,
        bucket,
        owner,
        miner,
        validator,
        run,
        receipt_key,
        receipt,
        artifact,
    }
}

impl Fixture {
    async fn judge_at(&self, rate: f64) -> Result<pb::Verdict, JudgeError> {
        self.judge_with(rate, None).await
    }

    async fn judge_with(
        &self,
        rate: f64,
        credited: Option<u32>,
    ) -> Result<pb::Verdict, JudgeError> {
        let owner = self.owner.hotkey();
        let judge = Judge {
            bucket: &self.bucket,
            owner: &owner,
            validator: &self.validator,
            run: &self.run,
            sample_rate: rate,
            device: &Device::Cpu,
            on_probation: &|_| false,
            inputs: &InputCache::new(1 << 20),
            clock: &Clock::system(),
        };
        judge.judge_here(&self.receipt_key, 0, credited).await
    }

    /// Replaces the stored receipt with `receipt` signed by `signer`.
    async fn plant_receipt(&self, receipt: &pb::Receipt, signer: &Keypair) {
        let sealed = envelope::seal(receipt, &self.receipt_key, signer);
        self.bucket
            .put_bytes(&self.receipt_key, sealed.bytes, PutMode::Overwrite)
            .await
            .unwrap();
    }

    async fn plant_artifact(&self, artifact: &pb::TensorArtifact) -> Vec<u8> {
        let key = self.receipt.output.as_ref().unwrap().key.clone();
        let sealed = envelope::seal(artifact, &key, &self.miner);
        self.bucket
            .put_bytes(&key, sealed.bytes, PutMode::Overwrite)
            .await
            .unwrap();
        sealed.digest.to_vec()
    }
}

fn outcome(v: &pb::Verdict) -> VerdictOutcome {
    VerdictOutcome::try_from(v.outcome).unwrap()
}

#[tokio::test]
async fn honest_receipt_verifies_when_sampled_and_is_credited_when_not() {
    let f = fixture().await;
    let sampled = f.judge_at(1.0).await.unwrap();
    assert_eq!(
        outcome(&sampled),
        VerdictOutcome::Verified,
        "{}",
        sampled.reason
    );
    let unsampled = f.judge_at(0.0).await.unwrap();
    assert_eq!(outcome(&unsampled), VerdictOutcome::Unsampled);
    assert_eq!(sampled.compute_units, unsampled.compute_units);
    assert!(validatord::sampling::verify(
        &f.validator.hotkey(),
        &f.receipt_key,
        &locus_protocol::Digest::from_slice(&sampled.receipt_digest).unwrap(),
        &sampled.sample_proof,
        1.0,
        true
    ));
}

#[tokio::test]
async fn receipt_signed_by_another_hotkey_is_rejected() {
    let f = fixture().await;
    let thief = Keypair::generate();
    let mut stolen = f.receipt.clone();
    stolen.hotkey = thief.hotkey().to_bytes().to_vec();
    f.plant_receipt(&stolen, &thief).await;
    match f.judge_at(1.0).await {
        Err(JudgeError::Rejected(r)) => assert!(r.to_string().contains("assigned to"), "{r}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Claiming the assigned hotkey does not help without its key.
    f.plant_receipt(&f.receipt, &thief).await;
    match f.judge_at(1.0).await {
        Err(JudgeError::Rejected(r)) => assert!(r.to_string().contains("expected"), "{r}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupted_output_fails_replay_and_names_the_element() {
    let f = fixture().await;
    let mut bad = f.artifact.clone();
    let mut t = locus_protocol::tensor::F32Tensor::from_pb(&bad.tensors[0]).unwrap();
    t.values[3] += 1.0;
    bad.tensors[0] = t.to_pb(&bad.tensors[0].name);
    let digest = f.plant_artifact(&bad).await;
    let mut receipt = f.receipt.clone();
    receipt.output.as_mut().unwrap().digest = digest;
    f.plant_receipt(&receipt, &f.miner).await;
    let v = f.judge_at(1.0).await.unwrap();
    assert_eq!(outcome(&v), VerdictOutcome::Failed);
    assert!(v.reason.contains("element 3"), "{}", v.reason);
    // Unsampled, the same corruption passes the structural checks: that is
    // what sampling is for.
    assert_eq!(
        outcome(&f.judge_at(0.0).await.unwrap()),
        VerdictOutcome::Unsampled
    );
}

#[tokio::test]
async fn artifact_not_matching_the_commitment_fails_even_unsampled() {
    let f = fixture().await;
    let mut other = f.artifact.clone();
    other.attempt = 9;
    f.plant_artifact(&other).await;
    let v = f.judge_at(0.0).await.unwrap();
    assert_eq!(outcome(&v), VerdictOutcome::Failed);
    assert!(v.reason.contains("committed digest"), "{}", v.reason);
}

#[tokio::test]
async fn inflated_cost_claims_change_nothing() {
    let f = fixture().await;
    let honest = f.judge_at(1.0).await.unwrap();
    let mut inflated = f.receipt.clone();
    inflated.claimed_cost = Some(pb::StaticCost {
        flops: u64::MAX,
        bytes_moved: u64::MAX,
    });
    f.plant_receipt(&inflated, &f.miner).await;
    let v = f.judge_at(1.0).await.unwrap();
    assert_eq!(outcome(&v), VerdictOutcome::Verified);
    assert_eq!(v.compute_units, honest.compute_units);
}

/// A redo of a job already credited to another attempt is judged like any
/// result (downstream jobs will read it) but earns nothing.
#[tokio::test]
async fn a_redo_of_a_credited_job_is_judged_but_not_paid() {
    let f = fixture().await;
    let v = f.judge_with(1.0, Some(2)).await.unwrap();
    assert_eq!(outcome(&v), VerdictOutcome::Verified, "{}", v.reason);
    assert_eq!(v.compute_units, 0);
    assert!(
        v.reason.contains("already credited to attempt 2"),
        "{}",
        v.reason
    );
    // A wrong redo still fails its miner.
    let mut bad = f.artifact.clone();
    bump_first_value(&mut bad);
    let digest = f.plant_artifact(&bad).await;
    let mut receipt = f.receipt.clone();
    receipt.output.as_mut().unwrap().digest = digest;
    f.plant_receipt(&receipt, &f.miner).await;
    let v = f.judge_with(1.0, Some(2)).await.unwrap();
    assert_eq!(outcome(&v), VerdictOutcome::Failed, "{}", v.reason);
}

/// Changes one value of an artifact: a different output for the same job.
fn bump_first_value(artifact: &mut pb::TensorArtifact) {
    let mut t = locus_protocol::tensor::F32Tensor::from_pb(&artifact.tensors[0]).unwrap();
    t.values[0] += 1.0;
    artifact.tensors[0] = t.to_pb(&artifact.tensors[0].name);
}

/// Only an object validly signed by a hotkey may count against it: an
/// artifact that is gone, or replaced by one someone else signed or by
/// garbage, voids the result (no credit, no penalty) instead of failing it.
#[tokio::test]
async fn an_artifact_the_miner_did_not_sign_voids_the_result_without_blame() {
    let f = fixture().await;
    let key = f.receipt.output.as_ref().unwrap().key.clone();
    let stranger = Keypair::generate();
    let planted: [Vec<u8>; 2] = [
        envelope::seal(&f.artifact, &key, &stranger).bytes,
        b"garbage".to_vec(),
    ];
    for bytes in planted {
        f.bucket
            .put_bytes(&key, bytes, PutMode::Overwrite)
            .await
            .unwrap();
        for rate in [0.0, 1.0] {
            let v = f.judge_at(rate).await.unwrap();
            assert_eq!(outcome(&v), VerdictOutcome::Late, "{}", v.reason);
            assert_eq!(v.compute_units, 0);
            assert!(v.reason.contains("redone"), "{}", v.reason);
        }
    }
    f.bucket.delete(&key).await.unwrap();
    let v = f.judge_at(1.0).await.unwrap();
    assert_eq!(outcome(&v), VerdictOutcome::Late, "{}", v.reason);
}

/// An input gone or changed since the manifest proves nothing against the
/// miner whose job read it.
#[tokio::test]
async fn a_lost_input_voids_a_replay_without_blame() {
    let f = fixture().await;
    let layout = f.bucket.layout();
    let init = layout.artifact(RUN, mlp::INITIAL, 0);
    f.bucket.delete(&init).await.unwrap();
    let v = f.judge_at(1.0).await.unwrap();
    assert_eq!(outcome(&v), VerdictOutcome::Late, "{}", v.reason);
    assert!(v.reason.contains(&init), "{}", v.reason);
}

/// The validator reads the manifest the assignment names (the owner moves
/// to a new revision when a stranger took the first key).
#[tokio::test]
async fn the_manifest_is_the_one_the_assignment_names() {
    let f = fixture().await;
    let layout = f.bucket.layout();
    let manifest_key = layout.job_manifest(RUN, &f.receipt.job_id);
    f.bucket
        .put_bytes(&manifest_key, b"planted".to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    let v = f.judge_at(1.0).await.unwrap();
    assert_eq!(outcome(&v), VerdictOutcome::Late, "{}", v.reason);
    assert!(v.reason.contains("manifest unusable"), "{}", v.reason);
}

/// A credited result whose writer later signed a different artifact for it
/// is an equivocation; one replaced by anyone else is not.
#[tokio::test]
async fn equivocation_needs_the_writer_s_own_signature() {
    let f = fixture().await;
    let owner = f.owner.hotkey();
    let judge = Judge {
        bucket: &f.bucket,
        owner: &owner,
        validator: &f.validator,
        run: &f.run,
        sample_rate: 0.0,
        device: &Device::Cpu,
        on_probation: &|_| false,
        inputs: &InputCache::new(1 << 20),
        clock: &Clock::system(),
    };
    let miner = f.miner.hotkey();
    assert_eq!(
        judge.equivocation(&f.receipt_key, &miner).await.unwrap(),
        None
    );
    let key = f.receipt.output.as_ref().unwrap().key.clone();
    let mut other = f.artifact.clone();
    bump_first_value(&mut other);
    let by_stranger = envelope::seal(&other, &key, &Keypair::generate()).bytes;
    f.bucket
        .put_bytes(&key, by_stranger, PutMode::Overwrite)
        .await
        .unwrap();
    assert_eq!(
        judge.equivocation(&f.receipt_key, &miner).await.unwrap(),
        None
    );
    f.plant_artifact(&other).await;
    let found = judge.equivocation(&f.receipt_key, &miner).await.unwrap();
    assert!(found.is_some_and(|r| r.contains("equivocation")));
}

/// A replay reads its inputs once: the next replay naming the same inputs
/// (a step's inner jobs share their parameters) takes them verified from
/// the cache, and reaches the same verdict.
#[tokio::test]
async fn a_second_replay_takes_its_verified_inputs_from_the_cache() {
    let f = fixture().await;
    let owner = f.owner.hotkey();
    let cache = InputCache::new(1 << 20);
    let judge = Judge {
        bucket: &f.bucket,
        owner: &owner,
        validator: &f.validator,
        run: &f.run,
        sample_rate: 1.0,
        device: &Device::Cpu,
        on_probation: &|_| false,
        inputs: &cache,
        clock: &Clock::system(),
    };
    let gets = || {
        f.bucket
            .counts()
            .gets
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut reads = Vec::new();
    for _ in 0..2 {
        let before = gets();
        let verdict = judge.judge_here(&f.receipt_key, 0, None).await.unwrap();
        assert_eq!(
            verdict.outcome,
            VerdictOutcome::Verified as i32,
            "{}",
            verdict.reason
        );
        reads.push(gets() - before);
    }
    assert!(reads[1] < reads[0], "reads per replay: {reads:?}");
}
