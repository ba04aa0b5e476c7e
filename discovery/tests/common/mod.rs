//! A realistic bucket for the discovery tests, written with the protocol
//! API, plus the HTTP helpers of `locus_observe::testkit`.

#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;

pub use locus_observe::testkit::{check_prometheus_text, http_get};
use locus_protocol::pb::{self, JobKind, VerdictOutcome};
use locus_protocol::{Bucket, Hotkey, Keypair};
use object_store::PutMode;

/// Serves the discovery UI over the fixture's bucket, refreshing every
/// `refresh`, and returns once it answers `/healthz`; sending on (or
/// dropping) the sender stops it. The UI gets its own bucket handle, so its
/// requests are counted apart from the fixture's writes.
pub async fn start_ui(
    f: &Fixture,
    refresh: std::time::Duration,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let bucket = Bucket::open(f.dir.path().to_str().expect("path"), NETUID).expect("bucket");
    let config = locus_discovery::UiConfig {
        refresh_every: refresh,
        ..locus_discovery::UiConfig::default()
    };
    let addr = locus_discovery::serve_ui_with(
        config,
        bucket,
        f.owner_hotkey(),
        "127.0.0.1:0".parse().expect("addr"),
        async {
            let _ = rx.await;
        },
    )
    .await
    .expect("serve_ui");
    // Wait for the first refresh.
    for _ in 0..100 {
        if http_get(addr, "/healthz").await.0 == 200 {
            return (addr, tx);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("discovery UI never became ready");
}

pub const NETUID: u16 = 7;
pub const RUN: &str = "run-1";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub bucket: Bucket,
    pub owner: Keypair,
    pub miners: Vec<Keypair>,
    pub validator: Keypair,
    pub outsider: Keypair,
    /// Keys of objects that must be rejected.
    pub garbage_key: String,
    pub forged_receipt_key: String,
    pub forged_heartbeat_key: String,
    pub forged_score_key: String,
    pub failed_receipt_key: String,
    pub receipts: usize,
    next_seq: u64,
}

pub fn now_ms() -> u64 {
    locus_protocol::time::unix_ms()
}

fn jobs_of_step(step: u32) -> Vec<(String, JobKind, u32)> {
    vec![
        (format!("s{step:05}-forward"), JobKind::Forward, 0),
        (format!("s{step:05}-inner-m00-r00"), JobKind::Inner, 0),
        (format!("s{step:05}-inner-m01-r00"), JobKind::Inner, 1),
        (format!("s{step:05}-reduce"), JobKind::Reduce, 0),
        (format!("s{step:05}-outer"), JobKind::Outer, 0),
    ]
}

impl Fixture {
    pub async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let bucket =
            Bucket::open(dir.path().to_str().expect("utf-8 path"), NETUID).expect("bucket");
        let owner = Keypair::generate();
        let miners = vec![Keypair::generate(), Keypair::generate()];
        let validator = Keypair::generate();
        let outsider = Keypair::generate();
        let layout = bucket.layout().clone();
        let mut f = Fixture {
            dir,
            garbage_key: layout.receipt(RUN, 1, "s00001-eval", 1),
            forged_receipt_key: layout.receipt(RUN, 1, "s00001-reduce", 2),
            forged_heartbeat_key: layout.heartbeat(&miners[1].hotkey(), 5),
            forged_score_key: layout.score_window("forged"),
            failed_receipt_key: String::new(),
            bucket,
            owner,
            miners,
            validator,
            outsider,
            receipts: 0,
            next_seq: 0,
        };
        f.write_all().await;
        f
    }

    pub fn owner_hotkey(&self) -> Hotkey {
        self.owner.hotkey()
    }

    pub fn miner(&self, i: usize) -> String {
        self.miners[i].hotkey().ss58()
    }

    async fn write_all(&mut self) {
        let b = self.bucket.clone();
        let layout = b.layout().clone();
        let state = pb::RunState {
            run_id: RUN.into(),
            completed_steps: 2,
            done: false,
            eval_loss: vec![2.31, 1.62, 1.18],
            train_loss: vec![2.4, 1.7, 1.2],
            unix_ms: now_ms(),
            ..Default::default()
        };
        self.write_run(RUN, now_ms() - 60_000, &state).await;

        for step in 0..2 {
            for (i, (job, _, _)) in jobs_of_step(step).into_iter().enumerate() {
                let miner = i % 2;
                let outcome = if step == 1 && job.ends_with("inner-m01-r00") {
                    VerdictOutcome::Failed
                } else if i % 3 == 0 {
                    VerdictOutcome::Verified
                } else {
                    VerdictOutcome::Unsampled
                };
                let key = self.add_job(step, &job, miner, 1, Some(outcome)).await;
                if outcome == VerdictOutcome::Failed {
                    self.failed_receipt_key = key;
                }
            }
        }

        // Heartbeats, one per worker; miner 1 runs two workers.
        for (miner, worker, job) in [
            (0usize, 0u32, "s00002-forward"),
            (1, 0, ""),
            (1, 1, "s00002-inner-m00-r00"),
        ] {
            self.heartbeat(miner, worker, job, 7).await;
        }

        // The validator's scores and dry-run weights for the run's window.
        let mut scores = Vec::new();
        for (i, m) in self.miners.iter().enumerate() {
            scores.push(pb::HotkeyScore {
                hotkey: m.hotkey().to_bytes().to_vec(),
                ss58: m.hotkey().ss58(),
                receipts: 5,
                verified: 2,
                failed: i as u64,
                unsampled: 3 - i as u64,
                verified_cu: 2000,
                unsampled_cu: 3000,
                score: if i == 0 { 5000.0 } else { 0.0 },
                weight: if i == 0 { 1.0 } else { 0.0 },
                reason: if i == 1 {
                    "failed verdict zeroes the window".into()
                } else {
                    String::new()
                },
                ..Default::default()
            });
        }
        let window = pb::ScoreWindow {
            window_id: RUN.into(),
            run_ids: vec![RUN.into()],
            unix_ms: now_ms(),
            scores,
            complete: false,
            receipts: 10,
        };
        b.put(&layout.score_window(RUN), &window, &self.validator)
            .await
            .expect("scores");
        let weights = pb::ChainWeights {
            window_id: RUN.into(),
            netuid: NETUID.into(),
            hotkeys: self
                .miners
                .iter()
                .map(|m| m.hotkey().to_bytes().to_vec())
                .collect(),
            uids: vec![3, 9],
            weights: vec![65535, 0],
            dry_run: true,
            unix_ms: now_ms(),
            ..Default::default()
        };
        b.put(&layout.chain_weights(RUN), &weights, &self.validator)
            .await
            .expect("weights");

        // Objects the UI must reject.
        b.put_bytes(
            &self.garbage_key,
            b"\xff\x00 definitely not an envelope".to_vec(),
            PutMode::Overwrite,
        )
        .await
        .expect("garbage");
        // A receipt naming miner 1, signed by miner 0.
        let (forged, _) = self.receipt_record(1, "s00001-reduce", 2, 1);
        b.put(&self.forged_receipt_key, &forged, &self.miners[0])
            .await
            .expect("forged receipt");
        // A heartbeat under miner 1's prefix signed by miner 0.
        let hb = pb::WorkerHeartbeat {
            hotkey: self.miners[1].hotkey().to_bytes().to_vec(),
            worker: 5,
            device: "cpu".into(),
            backend: "ndarray".into(),
            unix_ms: now_ms(),
            ..Default::default()
        };
        b.put(&self.forged_heartbeat_key, &hb, &self.miners[0])
            .await
            .expect("forged heartbeat");
        // Scores signed by someone who is not a validator of the run.
        let forged_window = pb::ScoreWindow {
            window_id: "forged".into(),
            run_ids: vec![RUN.into()],
            unix_ms: now_ms() + 1000,
            ..Default::default()
        };
        b.put(&self.forged_score_key, &forged_window, &self.outsider)
            .await
            .expect("forged scores");
    }

    fn receipt_record(
        &self,
        step: u32,
        job: &str,
        attempt: u32,
        miner: usize,
    ) -> (pb::Receipt, String) {
        let layout = self.bucket.layout();
        let hotkey = self.miners[miner].hotkey();
        let assignment_key = layout.assignment(&hotkey, 0, self.next_seq);
        let receipt = pb::Receipt {
            run_id: RUN.into(),
            job_id: job.into(),
            attempt,
            hotkey: hotkey.to_bytes().to_vec(),
            worker: 0,
            assignment_key: assignment_key.clone(),
            manifest_digest: vec![step as u8; 32],
            output: Some(pb::OutputCommitment {
                key: layout.artifact(RUN, job, attempt),
                digest: vec![1; 32],
                size: 1024,
            }),
            backend: "ndarray".into(),
            device: "cpu".into(),
            started_unix_ms: now_ms() - 5_000,
            finished_unix_ms: now_ms() - 4_000 + u64::from(step) * 100,
            step,
            ..Default::default()
        };
        (receipt, assignment_key)
    }

    /// Publishes a job, assigns it to `miner`, writes the receipt and (if
    /// given) the verdict. Returns the receipt key.
    pub async fn add_job(
        &mut self,
        step: u32,
        job: &str,
        miner: usize,
        attempt: u32,
        outcome: Option<VerdictOutcome>,
    ) -> String {
        let b = self.bucket.clone();
        let layout = b.layout().clone();
        let manifest_key = layout.job_manifest(RUN, job);
        let manifest = pb::JobManifest {
            run_id: RUN.into(),
            job_id: job.into(),
            step,
            kind: if job.ends_with("-eval") {
                JobKind::Eval
            } else {
                JobKind::Inner
            } as i32,
            cost: Some(pb::StaticCost {
                flops: 1000,
                bytes_moved: 64,
            }),
            ..Default::default()
        };
        if attempt == 1 {
            b.create(&manifest_key, &manifest, &self.owner)
                .await
                .expect("job");
        }
        let (receipt, assignment_key) = self.receipt_record(step, job, attempt, miner);
        self.next_seq += 1;
        let assignment = pb::Assignment {
            run_id: RUN.into(),
            job_id: job.into(),
            attempt,
            hotkey: receipt.hotkey.clone(),
            worker: 0,
            manifest_key,
            manifest_digest: receipt.manifest_digest.clone(),
            issued_unix_ms: now_ms() - 6_000,
            deadline_unix_ms: now_ms() + 30_000,
            step,
            ..Default::default()
        };
        b.create(&assignment_key, &assignment, &self.owner)
            .await
            .expect("assignment");
        let receipt_key = layout.receipt(RUN, step, job, attempt);
        let digest = b
            .create(&receipt_key, &receipt, &self.miners[miner])
            .await
            .expect("receipt");
        self.receipts += 1;
        if let Some(outcome) = outcome {
            let verdict = pb::Verdict {
                run_id: RUN.into(),
                job_id: job.into(),
                attempt,
                hotkey: receipt.hotkey.clone(),
                receipt_key: receipt_key.clone(),
                receipt_digest: digest.as_bytes().to_vec(),
                outcome: outcome as i32,
                reason: if outcome == VerdictOutcome::Failed {
                    "replayed output digest differs from the committed one".into()
                } else {
                    String::new()
                },
                sample_rate: 0.3,
                compute_units: 1000,
                unix_ms: now_ms(),
                step,
                ..Default::default()
            };
            b.create(
                &layout.verdict(RUN, step, job, attempt),
                &verdict,
                &self.validator,
            )
            .await
            .expect("verdict");
        }
        receipt_key
    }

    /// Writes run `run_id`'s owner-signed manifest (created at `created`)
    /// and `state`.
    async fn write_run(&self, run_id: &str, created: u64, state: &pb::RunState) {
        let b = &self.bucket;
        let layout = b.layout();
        let manifest = pb::RunManifest {
            run_id: run_id.into(),
            netuid: NETUID.into(),
            workload: "mlp-teacher-student".into(),
            steps: 4,
            created_unix_ms: created,
            validators: vec![self.validator.hotkey().to_bytes().to_vec()],
            lease_ms: 30_000,
            ..Default::default()
        };
        b.create(&layout.run_manifest(run_id), &manifest, &self.owner)
            .await
            .expect("manifest");
        b.put(&layout.run_state(run_id), state, &self.owner)
            .await
            .expect("state");
    }

    /// A second run, `run_id`, that went back to recompute from step 1
    /// after miner 1 was caught, and has written nothing for an hour.
    pub async fn add_stalled_rewound_run(&self, run_id: &str) {
        let hour_ago = now_ms() - 3_600_000;
        let state = pb::RunState {
            run_id: run_id.into(),
            completed_steps: 1,
            eval_loss: vec![2.3],
            train_loss: vec![2.4],
            unix_ms: hour_ago,
            rewinds: vec![pb::Rewind {
                from_step: 1,
                hotkey: self.miner(1),
                reason: "s00001-outer attempt 1: replay differs at element 3".into(),
                unix_ms: hour_ago,
            }],
            ..Default::default()
        };
        self.write_run(run_id, hour_ago - 60_000, &state).await;
    }

    /// An idle heartbeat of miner `miner` written `age_ms` ago.
    pub async fn old_heartbeat(&self, miner: usize, worker: u32, age_ms: u64) {
        self.heartbeat_at(miner, worker, "", 0, now_ms() - age_ms)
            .await;
    }

    pub async fn heartbeat(&self, miner: usize, worker: u32, job: &str, done: u64) {
        self.heartbeat_at(miner, worker, job, done, now_ms()).await;
    }

    async fn heartbeat_at(&self, miner: usize, worker: u32, job: &str, done: u64, unix_ms: u64) {
        let hotkey = self.miners[miner].hotkey();
        let hb = pb::WorkerHeartbeat {
            hotkey: hotkey.to_bytes().to_vec(),
            worker,
            device: if worker == 1 {
                "cuda:1".into()
            } else {
                "cpu".into()
            },
            backend: "ndarray".into(),
            unix_ms,
            current_job: job.into(),
            pid: 4242 + worker,
            version: "0.1.0".into(),
            jobs_done: done,
        };
        self.bucket
            .put(
                &self.bucket.layout().heartbeat(&hotkey, worker),
                &hb,
                &self.miners[miner],
            )
            .await
            .expect("heartbeat");
    }
}

pub async fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, _, body) = http_get(addr, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}
