//! One realistic sample of every record type (the seed corpus is built from
//! these) and, for each, the further decoders a reader applies to the fields
//! of a record it opened: hotkeys, digests, sealed grants, tensors and keys.
//!
//! Samples end in `..Default::default()` so that a field added to the
//! protocol does not break the fuzz build; seeds lack the new field until it
//! is added here.
#![allow(clippy::needless_update)]

use std::fmt::Debug;

use locus_protocol::grant;
use locus_protocol::paths::validate_id;
use locus_protocol::tensor::F32Tensor;
use locus_protocol::{Digest, Hotkey, Layout, Record, pb};

use crate::{KEYS, NETUID, RUN, Role, keep};

/// A record type the targets know how to sample and inspect.
pub trait Fixture: Record + Debug {
    /// Who signs this type in a real run.
    const ROLE: Role;
    /// A record as a daemon would write it.
    fn sample() -> Self;
    /// Runs the decoders a reader applies to this record's fields.
    fn inspect(&self);
}

const T0: u64 = 1_767_225_600_000;
const JOB: &str = "s00001-inner-m00-r01";

fn layout() -> Layout {
    Layout::new(NETUID)
}

fn bytes(hotkey: Hotkey) -> Vec<u8> {
    hotkey.to_bytes().to_vec()
}

fn miner() -> Vec<u8> {
    bytes(KEYS.miner.hotkey())
}

fn digest(seed: &str) -> Vec<u8> {
    Digest::of(seed.as_bytes()).to_vec()
}

/// A grant as the owner seals it into an assignment for the miner.
pub fn sample_grant(to: Hotkey) -> pb::Grant {
    let layout = layout();
    pb::Grant {
        run_id: RUN.into(),
        job_id: JOB.into(),
        attempt: 1,
        hotkey: bytes(to),
        expires_unix_ms: T0 + 60_000,
        urls: vec![
            pb::UrlGrant {
                method: "GET".into(),
                key: layout.artifact(RUN, "init", 0),
                url: "https://bucket.example/v1/a000.pb?X-Amz-Signature=00ff".into(),
                size: 0,
            },
            pb::UrlGrant {
                method: "PUT".into(),
                key: layout.receipt(RUN, 1, JOB, 1),
                url: "https://bucket.example/v1/r001.pb?X-Amz-Signature=ff00".into(),
                size: locus_protocol::grant::RECEIPT_SIZE,
            },
        ],
    }
}

fn sealed_grant_for_miner() -> Vec<u8> {
    let hotkey = KEYS.miner.hotkey();
    grant::seal(&sample_grant(hotkey), &hotkey).expect("sealing a grant")
}

fn check_hotkey(raw: &[u8]) {
    if let Ok(hotkey) = Hotkey::from_bytes(raw) {
        keep(hotkey.short());
    }
}

fn check_digest(raw: &[u8]) {
    keep(Digest::from_slice(raw).map(|d| d.short()));
}

fn check_id(id: &str) {
    keep(validate_id("id", id));
}

/// Opens a sealed grant as the miner does when it picks up an assignment.
pub fn check_sealed_grant(sealed: &[u8]) {
    if sealed.is_empty() {
        return;
    }
    match grant::open(sealed, &KEYS.miner) {
        Ok(grant) => {
            for url in &grant.urls {
                assert!(grant.url(&url.method, &url.key).is_ok());
            }
        }
        Err(e) => keep(e.to_string()),
    }
}

impl Fixture for pb::RunManifest {
    const ROLE: Role = Role::Owner;
    fn sample() -> Self {
        pb::RunManifest {
            run_id: RUN.into(),
            netuid: NETUID.into(),
            workload: "mlp".into(),
            steps: 4,
            mlp: Some(pb::MlpConfig {
                width: 16,
                micro_batches: 2,
                replicas: 2,
                batch_size: 8,
                inner_steps: 2,
                inner_lr: 0.05,
                outer_lr: 0.7,
                outer_momentum: 0.9,
                eval_batch: 32,
                seed: 7,
            }),
            created_unix_ms: T0,
            validators: vec![bytes(KEYS.validator.hotkey())],
            lease_ms: 60_000,
            ..Default::default()
        }
    }
    fn inspect(&self) {
        check_id(&self.run_id);
        self.validators.iter().for_each(|v| check_hotkey(v));
    }
}

impl Fixture for pb::RunState {
    const ROLE: Role = Role::Owner;
    fn sample() -> Self {
        pb::RunState {
            run_id: RUN.into(),
            completed_steps: 2,
            done: false,
            eval_loss: vec![0.52, 0.41],
            train_loss: vec![0.61, 0.47],
            unix_ms: T0 + 5_000,
            params: Some(pb::InputRef {
                key: format!("v1/netuid=3/runs/{RUN}/artifacts/s00001-outer/a001.pb"),
                digest: vec![7; 32],
                writer: vec![9; 32],
            }),
            rewinds: vec![pb::Rewind {
                from_step: 1,
                hotkey: "5C4hrfjw9DjXZTzV3MwzrrAr9P1MJhSrvWGWqi1eSuyUpnhM".into(),
                reason: "s00001-reduce attempt 1 failed: replay mismatch".into(),
                unix_ms: T0 + 4_000,
            }],
            banned: vec![vec![9; 32]],
            unverified: vec![pb::Unverified {
                hotkey: vec![8; 32],
                earliest_step: 1,
            }],
            param_parts: vec![pb::InputRef {
                key: format!("v1/netuid=3/runs/{RUN}/artifacts/s00001-outer/a001.pb"),
                digest: vec![7; 32],
                writer: vec![9; 32],
            }],
            next_assignment_seq: Some(42),
            assignment_seq_floor: Some(37),
        }
    }
    fn inspect(&self) {
        check_id(&self.run_id);
    }
}

impl Fixture for pb::JobManifest {
    const ROLE: Role = Role::Owner;
    fn sample() -> Self {
        pb::JobManifest {
            run_id: RUN.into(),
            job_id: JOB.into(),
            step: 1,
            kind: pb::JobKind::Inner as i32,
            micro_batch: 0,
            replica: 1,
            inputs: vec![pb::InputRef {
                key: layout().artifact(RUN, "init", 0),
                digest: digest("init"),
                writer: bytes(KEYS.owner.hotkey()),
            }],
            cost: Some(pb::StaticCost {
                flops: 1 << 20,
                bytes_moved: 1 << 16,
            }),
            cross_backend_tolerance: 1e-5,
            ..Default::default()
        }
    }
    fn inspect(&self) {
        check_id(&self.job_id);
        for input in &self.inputs {
            check_digest(&input.digest);
            check_hotkey(&input.writer);
        }
    }
}

impl Fixture for pb::Assignment {
    const ROLE: Role = Role::Owner;
    fn sample() -> Self {
        pb::Assignment {
            run_id: RUN.into(),
            job_id: JOB.into(),
            attempt: 1,
            hotkey: miner(),
            worker: 0,
            manifest_key: layout().job_manifest(RUN, JOB),
            manifest_digest: digest("manifest"),
            issued_unix_ms: T0,
            deadline_unix_ms: T0 + 60_000,
            step: 1,
            sealed_grant: sealed_grant_for_miner(),
            ..Default::default()
        }
    }
    fn inspect(&self) {
        check_hotkey(&self.hotkey);
        check_digest(&self.manifest_digest);
        check_sealed_grant(&self.sealed_grant);
    }
}

impl Fixture for pb::WorkerHeartbeat {
    const ROLE: Role = Role::Miner;
    fn sample() -> Self {
        pb::WorkerHeartbeat {
            hotkey: miner(),
            worker: 0,
            device: "cpu".into(),
            backend: "ndarray".into(),
            unix_ms: T0 + 1_000,
            current_job: JOB.into(),
            pid: 4242,
            version: "0.1.0".into(),
            jobs_done: 3,
            ..Default::default()
        }
    }
    fn inspect(&self) {
        check_hotkey(&self.hotkey);
    }
}

impl Fixture for pb::Receipt {
    const ROLE: Role = Role::Miner;
    fn sample() -> Self {
        let layout = layout();
        pb::Receipt {
            run_id: RUN.into(),
            job_id: JOB.into(),
            attempt: 1,
            hotkey: miner(),
            worker: 0,
            assignment_key: layout.assignment(&KEYS.miner.hotkey(), 0, 12),
            manifest_digest: digest("manifest"),
            output: Some(pb::OutputCommitment {
                key: layout.artifact(RUN, JOB, 1),
                digest: digest("output"),
                size: 4_096,
            }),
            backend: "ndarray".into(),
            device: "cpu".into(),
            cpu_features: "avx2,fma".into(),
            started_unix_ms: T0 + 1_000,
            finished_unix_ms: T0 + 2_000,
            claimed_cost: Some(pb::StaticCost {
                flops: 1 << 20,
                bytes_moved: 1 << 16,
            }),
            step: 1,
            ..Default::default()
        }
    }
    fn inspect(&self) {
        check_hotkey(&self.hotkey);
        check_digest(&self.manifest_digest);
        if let Some(output) = &self.output {
            check_digest(&output.digest);
        }
    }
}

impl Fixture for pb::Verdict {
    const ROLE: Role = Role::Validator;
    fn sample() -> Self {
        pb::Verdict {
            run_id: RUN.into(),
            job_id: JOB.into(),
            attempt: 1,
            hotkey: miner(),
            receipt_key: layout().receipt(RUN, 1, JOB, 1),
            receipt_digest: digest("receipt"),
            outcome: pb::VerdictOutcome::Verified as i32,
            reason: String::new(),
            sample_proof: KEYS.validator.sign(b"sample").to_vec(),
            sample_rate: 0.25,
            compute_units: 1_000,
            unix_ms: T0 + 3_000,
            replay_ms: 12,
            step: 1,
            ..Default::default()
        }
    }
    fn inspect(&self) {
        check_hotkey(&self.hotkey);
        check_digest(&self.receipt_digest);
        keep(layout().parse_receipt(&self.run_id, &self.receipt_key));
    }
}

impl Fixture for pb::ScoreWindow {
    const ROLE: Role = Role::Validator;
    fn sample() -> Self {
        let hotkey = KEYS.miner.hotkey();
        pb::ScoreWindow {
            window_id: "w000001".into(),
            run_ids: vec![RUN.into()],
            unix_ms: T0 + 4_000,
            scores: vec![pb::HotkeyScore {
                hotkey: bytes(hotkey),
                ss58: hotkey.ss58(),
                receipts: 4,
                verified: 1,
                unsampled: 3,
                verified_cu: 1_000,
                unsampled_cu: 3_000,
                score: 4_000.0,
                weight: 1.0,
                rejected: 1,
                reason: "1 verified (1000 CU) + 3 unsampled (3000 CU)".into(),
                ..Default::default()
            }],
            complete: true,
            receipts: 4,
            ..Default::default()
        }
    }
    fn inspect(&self) {
        for score in &self.scores {
            check_hotkey(&score.hotkey);
            keep(score.ss58.parse::<Hotkey>());
        }
    }
}

impl Fixture for pb::TensorArtifact {
    const ROLE: Role = Role::Miner;
    fn sample() -> Self {
        pb::TensorArtifact {
            run_id: RUN.into(),
            job_id: JOB.into(),
            attempt: 1,
            tensors: vec![
                F32Tensor::new(vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, f32::MIN, 7.0]).to_pb("w1"),
                F32Tensor::new(vec![3], vec![0.1, 0.2, 0.3]).to_pb("b1"),
                F32Tensor::new(vec![], vec![0.42]).to_pb("eval_loss"),
            ],
            ..Default::default()
        }
    }
    fn inspect(&self) {
        for tensor in &self.tensors {
            crate::tensor::check(tensor);
            keep(self.tensor(&tensor.name));
        }
    }
}

impl Fixture for pb::ChainWeights {
    const ROLE: Role = Role::Validator;
    fn sample() -> Self {
        pb::ChainWeights {
            window_id: "w000001".into(),
            netuid: NETUID.into(),
            hotkeys: vec![miner()],
            uids: vec![3],
            weights: vec![65_535],
            version_key: 1,
            dry_run: true,
            extrinsic: vec![0x45, 0x02, 0x84, 0x00],
            block_hash: String::new(),
            error: String::new(),
            unix_ms: T0 + 4_500,
            unregistered: vec![bytes(KEYS.stranger.hotkey())],
            ..Default::default()
        }
    }
    fn inspect(&self) {
        self.hotkeys.iter().for_each(|h| check_hotkey(h));
        self.unregistered.iter().for_each(|h| check_hotkey(h));
    }
}

impl Fixture for pb::HeartbeatGrant {
    const ROLE: Role = Role::Owner;
    fn sample() -> Self {
        pb::HeartbeatGrant {
            hotkey: miner(),
            expires_unix_ms: T0 + 600_000,
            sealed_grant: sealed_grant_for_miner(),
            ..Default::default()
        }
    }
    fn inspect(&self) {
        check_hotkey(&self.hotkey);
        check_sealed_grant(&self.sealed_grant);
    }
}

impl Fixture for pb::AuditJob {
    const ROLE: Role = Role::Validator;
    fn sample() -> Self {
        pb::AuditJob {
            run_id: RUN.into(),
            step: 1,
            job_id: JOB.into(),
            attempt: 1,
            receipt_key: layout().receipt(RUN, 1, JOB, 1),
            receipt_digest: digest("receipt"),
            auditor: miner(),
            deadline_unix_ms: T0 + 60_000,
            sealed_grant: sealed_grant_for_miner(),
            unix_ms: T0 + 2_000,
        }
    }
    fn inspect(&self) {
        check_hotkey(&self.auditor);
        check_digest(&self.receipt_digest);
        check_sealed_grant(&self.sealed_grant);
        keep(layout().parse_receipt(&self.run_id, &self.receipt_key));
    }
}

impl Fixture for pb::AuditResult {
    const ROLE: Role = Role::Miner;
    fn sample() -> Self {
        let auditor = KEYS.miner.hotkey();
        pb::AuditResult {
            audit_key: layout().audit_job(&auditor, 1),
            audit_digest: digest("audit"),
            receipt_key: layout().receipt(RUN, 1, JOB, 1),
            receipt_digest: digest("receipt"),
            outcome: pb::AuditOutcome::Passed as i32,
            reason: String::new(),
            replayed_digest: digest("replayed"),
            backend: "ndarray".into(),
            device: "cpu".into(),
            replay_ms: 12,
            unix_ms: T0 + 4_000,
        }
    }
    fn inspect(&self) {
        check_digest(&self.audit_digest);
        check_digest(&self.receipt_digest);
        check_digest(&self.replayed_digest);
        keep(layout().parse_audit_job(&KEYS.miner.hotkey(), &self.audit_key));
    }
}

impl Fixture for pb::AuditorDropped {
    const ROLE: Role = Role::Validator;
    fn sample() -> Self {
        pb::AuditorDropped {
            auditor: miner(),
            reason: "said passed, the validator's replay found failed".into(),
            unix_ms: T0 + 5_000,
        }
    }
    fn inspect(&self) {
        check_hotkey(&self.auditor);
    }
}

impl Fixture for pb::ValidatorCheckpoint {
    const ROLE: Role = Role::Validator;
    fn sample() -> Self {
        pb::ValidatorCheckpoint {
            run_id: RUN.into(),
            floor: 3,
            tallies: vec![pb::HotkeyTally {
                hotkey: miner(),
                receipts: 9,
                verified: 3,
                verified_cu: 3_000,
                unsampled: 5,
                unsampled_cu: 5_000,
                late: 1,
                late_reason: "job already credited".into(),
                ..Default::default()
            }],
            on_word: vec![pb::Verdict {
                auditor: miner(),
                ..pb::Verdict::sample()
            }],
            unix_ms: T0 + 6_000,
        }
    }
    fn inspect(&self) {
        for tally in &self.tallies {
            check_hotkey(&tally.hotkey);
        }
        for verdict in &self.on_word {
            verdict.inspect();
        }
    }
}
