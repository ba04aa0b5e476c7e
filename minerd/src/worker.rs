//! One worker process: poll this worker's assignment prefix, verify, compute,
//! upload, sign a receipt. Bucket requests per job stay constant however
//! large the run grows: the worker lists only its own prefix, starting after
//! the last key it saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locus_daemon::{Backoff, Shutdown};
use locus_protocol::pb;
use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, BucketError, Expect, Hotkey, Keypair, Verified};
use locus_workloads::{Device, mlp};
use tracing::{info, warn};

use crate::access::{Access, AccessError};
use crate::faults::FaultMode;
use crate::{attacks, hostile};

pub struct WorkerConfig {
    pub index: u32,
    pub device: Device,
    pub owner: Hotkey,
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub heartbeat_every: Duration,
    pub fault: Option<FaultMode>,
}

/// Why an assignment was not executed.
#[derive(Debug, thiserror::Error)]
pub enum Skip {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("{0}")]
    Invalid(String),
    #[error("lease expired before the job started")]
    Expired,
    #[error("already done (receipt exists)")]
    AlreadyDone,
    #[error("compute failed: {0}")]
    Compute(String),
    /// A deliberate misbehaviour (test-only fault modes).
    #[error("{0}")]
    Attack(String),
}

impl Skip {
    /// Failures of the storage rather than of the assignment.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Skip::Bucket(BucketError::Storage { .. })
                | Skip::Access(AccessError::Bucket(BucketError::Storage { .. }))
                | Skip::Access(AccessError::Http { .. })
        )
    }
}

#[derive(Default)]
struct Status {
    current_job: String,
    jobs_done: u64,
}

pub struct Worker {
    bucket: Bucket,
    key: Arc<Keypair>,
    cfg: WorkerConfig,
    runs: HashMap<String, pb::RunManifest>,
    status: Arc<Mutex<Status>>,
    cpu_features: String,
    http: reqwest::Client,
    executed: locus_observe::Counter,
    refused: locus_observe::Counter,
    /// `replay_old`: the first output of each job kind, resubmitted later.
    replay_store: HashMap<i32, Vec<pb::Tensor>>,
}

impl Worker {
    pub fn new(bucket: Bucket, key: Keypair, cfg: WorkerConfig) -> Self {
        Worker {
            bucket,
            key: Arc::new(key),
            cfg,
            runs: HashMap::new(),
            status: Arc::default(),
            cpu_features: cpu_features(),
            http: reqwest::Client::new(),
            executed: Default::default(),
            refused: Default::default(),
            replay_store: HashMap::new(),
        }
    }

    /// Reports this worker's counters in `metrics`.
    pub fn set_metrics(&mut self, metrics: &locus_observe::Metrics) {
        self.executed = metrics.counter("jobs_executed_total", "Jobs executed and receipted");
        self.refused = metrics.counter(
            "assignments_refused_total",
            "Assignments refused or not executed",
        );
    }

    pub fn jobs_done(&self) -> u64 {
        self.status.lock().map(|s| s.jobs_done).unwrap_or(0)
    }

    /// Runs until shutdown; the current job always finishes first.
    pub async fn run(&mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let hotkey = self.key.hotkey();
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.bucket.clone(),
            self.key.clone(),
            self.cfg.index,
            self.cfg.device.clone(),
            self.cfg.heartbeat_every,
            self.status.clone(),
            shutdown.clone(),
            self.cfg.owner,
            self.http.clone(),
        ));
        if let Some(mode) = self.cfg.fault
            && self.cfg.index == 0
        {
            tokio::spawn(hostile::background(
                self.bucket.clone(),
                self.key.clone(),
                mode,
                shutdown.clone(),
            ));
        }
        let prefix = self.bucket.layout().assignments_of(&hotkey, self.cfg.index);
        let mut cursor: Option<String> = None;
        let mut first_pass = true;
        let mut refused = std::collections::HashSet::new();
        let mut backoff = Backoff::new(self.cfg.poll_min, self.cfg.poll_max);
        info!(hotkey = %hotkey, worker = self.cfg.index, device = %self.cfg.device, "worker ready");
        while !shutdown.requested() {
            let keys = match self.bucket.list(&prefix, cursor.as_deref()).await {
                Ok(keys) => keys,
                Err(e) => {
                    warn!(error = %e, "cannot list assignments");
                    Vec::new()
                }
            };
            let mut found = false;
            for key in keys {
                if shutdown.requested() {
                    break;
                }
                if refused.contains(&key) {
                    continue;
                }
                found = true;
                match self.handle(&key, first_pass).await {
                    Ok(job) => {
                        self.executed.inc();
                        info!(job = %job, "job done");
                    }
                    Err(Skip::AlreadyDone) => {}
                    Err(reason @ (Skip::Bucket(BucketError::Rejected(_)) | Skip::Invalid(_))) => {
                        // Not the owner's: remember it, but do not move the
                        // cursor past it, so a planted key that sorts high
                        // cannot hide the owner's later assignments.
                        warn!(assignment = %key, %reason, "assignment not executed");
                        self.refused.inc();
                        refused.insert(key);
                        continue;
                    }
                    Err(reason) if reason.is_transient() => {
                        // Storage trouble: keep the cursor here and try this
                        // assignment again on the next poll.
                        warn!(assignment = %key, %reason, "assignment deferred");
                        break;
                    }
                    Err(reason) => {
                        self.refused.inc();
                        warn!(assignment = %key, %reason, "assignment not executed");
                    }
                }
                cursor = Some(key);
            }
            first_pass = false;
            if found {
                backoff.reset();
            } else if !shutdown.sleep(backoff.next_delay()).await {
                break;
            }
        }
        heartbeat.abort();
        Ok(())
    }

    /// Verifies and executes one assignment. Returns the job id.
    async fn handle(&mut self, key: &str, check_done: bool) -> Result<String, Skip> {
        let hotkey = self.key.hotkey();
        let layout = self.bucket.layout().clone();
        let owner = self.cfg.owner;
        let assignment: Verified<pb::Assignment> =
            self.bucket.get(key, Expect::Signer(&owner)).await?;
        if assignment.hotkey != hotkey.to_bytes() || assignment.worker != self.cfg.index {
            return Err(Skip::Invalid(format!("{key} assigns another worker")));
        }
        for (what, id) in [("run", &assignment.run_id), ("job", &assignment.job_id)] {
            locus_protocol::paths::validate_id(what, id).map_err(Skip::Invalid)?;
        }
        let (run_id, job_id, attempt, step) = (
            assignment.run_id.clone(),
            assignment.job_id.clone(),
            assignment.attempt,
            assignment.step,
        );
        let receipt_key = layout.receipt(&run_id, step, &job_id, attempt);
        if check_done
            && self
                .bucket
                .get_opt::<pb::Receipt>(&receipt_key, Expect::Signer(&hotkey))
                .await?
                .is_some()
        {
            return Err(Skip::AlreadyDone);
        }
        if assignment.deadline_unix_ms <= unix_ms() {
            return Err(Skip::Expired);
        }
        if attacks::abandons_assignments(self.cfg.fault) {
            let tried = match self.cfg.fault {
                Some(FaultMode::ForgeManifest) => {
                    attacks::forge_manifest(&self.bucket, &self.key, self.cfg.index, &assignment)
                        .await
                }
                _ => attacks::leaked_grant(&self.bucket, &self.key, &self.http, &assignment).await,
            };
            return Err(Skip::Attack(tried));
        }
        let started = unix_ms();
        if layout
            .parse_job_manifest(&run_id, &assignment.manifest_key)
            .is_none_or(|(job, _)| job != job_id)
        {
            return Err(Skip::Invalid(format!(
                "assignment {key} names {}, not a manifest of job {job_id}",
                assignment.manifest_key
            )));
        }
        let manifest: Verified<pb::JobManifest> = self
            .bucket
            .get(&assignment.manifest_key, Expect::Signer(&owner))
            .await?;
        if manifest.digest().as_bytes().as_slice() != assignment.manifest_digest.as_slice()
            || manifest.job_id != job_id
            || manifest.run_id != run_id
            || manifest.step != step
        {
            return Err(Skip::Invalid(format!(
                "manifest {} does not match assignment {key}",
                manifest.key()
            )));
        }
        let run = self.run_manifest(&run_id).await?;
        let access = Access::for_assignment(&self.bucket, &assignment.sealed_grant, &self.key)?;
        let mut inputs = Vec::with_capacity(manifest.inputs.len());
        for input in &manifest.inputs {
            let writer =
                Hotkey::from_bytes(&input.writer).map_err(|e| Skip::Invalid(e.to_string()))?;
            let artifact: Verified<pb::TensorArtifact> = access
                .get(
                    &self.http,
                    &self.bucket,
                    &input.key,
                    Expect::Signer(&writer),
                )
                .await?;
            if artifact.digest().as_bytes().as_slice() != input.digest.as_slice() {
                return Err(Skip::Invalid(format!(
                    "input {} does not match the digest in manifest {}",
                    input.key,
                    manifest.key()
                )));
            }
            inputs.push(artifact.into_inner());
        }
        self.set_current(&job_id);
        let kind = manifest.kind;
        let tensors = if self.cfg.fault == Some(FaultMode::Copy) {
            attacks::copy_other_attempt(
                &self.bucket,
                &run_id,
                &job_id,
                attempt,
                assignment.deadline_unix_ms,
            )
            .await
            .ok_or_else(|| Skip::Attack("copy: nothing to copy".into()))
        } else {
            let corrupt = match self.cfg.fault {
                Some(FaultMode::Stealth) => !FaultMode::guess_sampled(&receipt_key),
                Some(FaultMode::Taint) => FaultMode::taints(kind, step),
                _ => true,
            };
            self.compute(&run, manifest.into_inner(), inputs, corrupt)
                .await
        };
        self.set_current("");
        let mut tensors = tensors?;
        if self.cfg.fault == Some(FaultMode::ReplayOld) {
            match self.replay_store.get(&kind) {
                Some(old) => tensors = old.clone(),
                None => {
                    self.replay_store.insert(kind, tensors.clone());
                }
            }
        }
        if self.cfg.fault == Some(FaultMode::Late) {
            attacks::wait_past(assignment.deadline_unix_ms).await;
        }
        let artifact = pb::TensorArtifact {
            run_id: run_id.clone(),
            job_id: job_id.clone(),
            attempt,
            tensors,
        };
        let artifact_key = layout.artifact(&run_id, &job_id, attempt);
        let digest = access
            .create(
                &self.http,
                &self.bucket,
                &artifact_key,
                &artifact,
                &self.key,
            )
            .await?;
        let size = prost::Message::encoded_len(&artifact) as u64;
        let claimed = match self.cfg.fault {
            Some(FaultMode::ForeignReceipt) => attacks::someone_else(&self.bucket, &hotkey).await,
            _ => hotkey,
        };
        let receipt = pb::Receipt {
            run_id: run_id.clone(),
            job_id: job_id.clone(),
            attempt,
            hotkey: claimed.to_bytes().to_vec(),
            worker: self.cfg.index,
            assignment_key: key.to_string(),
            manifest_digest: assignment.manifest_digest.clone(),
            output: Some(pb::OutputCommitment {
                key: artifact_key.clone(),
                digest: digest.to_vec(),
                size,
            }),
            backend: self.cfg.device.backend().into(),
            device: self.cfg.device.to_string(),
            cpu_features: self.cpu_features.clone(),
            started_unix_ms: started,
            finished_unix_ms: unix_ms(),
            claimed_cost: (self.cfg.fault == Some(FaultMode::InflateCost))
                .then(attacks::inflated_cost),
            step,
        };
        let jobs_done = self.jobs_done();
        if self.cfg.fault == Some(FaultMode::Bloat) && jobs_done < 2 {
            // The first result's receipt is garbage; the second's verdict
            // key is taken before the validator can write it.
            let at = if jobs_done == 0 {
                receipt_key.clone()
            } else {
                layout.verdict(&run_id, step, &job_id, attempt)
            };
            warn!("{}", hostile::bloat(&self.bucket, &at).await);
            if jobs_done == 0 {
                if let Ok(mut status) = self.status.lock() {
                    status.jobs_done += 1;
                }
                return Err(Skip::Attack("bloat: garbage receipt".into()));
            }
        }
        access
            .create(&self.http, &self.bucket, &receipt_key, &receipt, &self.key)
            .await?;
        if let Ok(mut status) = self.status.lock() {
            status.jobs_done += 1;
        }
        match self.cfg.fault {
            Some(FaultMode::OverwriteOwn) => {
                let verdict_key = layout.verdict(&run_id, step, &job_id, attempt);
                let outcome = hostile::overwrite_own(
                    &self.bucket,
                    &self.key,
                    &self.http,
                    &access,
                    &artifact_key,
                    &artifact,
                    &verdict_key,
                )
                .await;
                warn!("{outcome}");
            }
            Some(FaultMode::DeleteReceipts) => {
                if let Some(outcome) =
                    hostile::delete_receipt(&self.bucket, &receipt_key, jobs_done).await
                {
                    warn!("{outcome}");
                }
            }
            _ => {}
        }
        Ok(job_id)
    }

    async fn compute(
        &self,
        run: &pb::RunManifest,
        manifest: pb::JobManifest,
        inputs: Vec<pb::TensorArtifact>,
        corrupt: bool,
    ) -> Result<Vec<pb::Tensor>, Skip> {
        if self.cfg.fault == Some(FaultMode::SkipCompute) {
            let cfg = run.mlp.unwrap_or_default();
            let kind = pb::JobKind::try_from(manifest.kind).unwrap_or_default();
            return Ok(FaultMode::zeros(&mlp::output_spec(&cfg, kind)));
        }
        let run = run.clone();
        let device = self.cfg.device.clone();
        let salt = manifest.step as u64 ^ ((manifest.micro_batch as u64) << 16);
        let mut tensors = tokio::task::spawn_blocking(move || {
            locus_workloads::execute(&run, &manifest, &inputs, &device)
        })
        .await
        .map_err(|e| Skip::Compute(e.to_string()))?
        .map_err(|e| Skip::Compute(e.to_string()))?;
        if let Some(fault) = self.cfg.fault
            && corrupt
        {
            fault.corrupt(&mut tensors, salt);
        }
        Ok(tensors)
    }

    async fn run_manifest(&mut self, run_id: &str) -> Result<pb::RunManifest, Skip> {
        if let Some(run) = self.runs.get(run_id) {
            return Ok(run.clone());
        }
        let key = self.bucket.layout().run_manifest(run_id);
        let run: Verified<pb::RunManifest> = self
            .bucket
            .get(&key, Expect::Signer(&self.cfg.owner))
            .await?;
        let run = run.into_inner();
        self.runs.insert(run_id.to_string(), run.clone());
        Ok(run)
    }

    fn set_current(&self, job: &str) {
        if let Ok(mut status) = self.status.lock() {
            status.current_job = job.to_string();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn heartbeat_loop(
    bucket: Bucket,
    key: Arc<Keypair>,
    index: u32,
    device: Device,
    every: Duration,
    status: Arc<Mutex<Status>>,
    shutdown: Shutdown,
    owner: Hotkey,
    http: reqwest::Client,
) {
    let hotkey = key.hotkey();
    let hb_key = bucket.layout().heartbeat(&hotkey, index);
    let mut grant: Option<pb::Grant> = None;
    loop {
        let (current_job, jobs_done) = status
            .lock()
            .map(|s| (s.current_job.clone(), s.jobs_done))
            .unwrap_or_default();
        let heartbeat = pb::WorkerHeartbeat {
            hotkey: hotkey.to_bytes().to_vec(),
            worker: index,
            device: device.to_string(),
            backend: device.backend().into(),
            unix_ms: unix_ms(),
            current_job,
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            jobs_done,
        };
        let sent = if bucket.is_remote() {
            send_granted_heartbeat(
                &bucket, &key, &owner, &http, &hb_key, &heartbeat, &mut grant,
            )
            .await
        } else {
            bucket
                .put(&hb_key, &heartbeat, &key)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        if let Err(e) = sent {
            warn!(error = %e, "heartbeat failed");
        }
        if !shutdown.sleep(every).await {
            return;
        }
    }
}

/// Heartbeats on S3 go through the owner's standing heartbeat grant, re-read
/// when it nears expiry or a write is refused.
async fn send_granted_heartbeat(
    bucket: &Bucket,
    key: &Keypair,
    owner: &Hotkey,
    http: &reqwest::Client,
    hb_key: &str,
    heartbeat: &pb::WorkerHeartbeat,
    grant: &mut Option<pb::Grant>,
) -> Result<(), String> {
    let stale = grant
        .as_ref()
        .is_none_or(|g| g.expires_unix_ms <= unix_ms() + 60_000);
    if stale {
        let grant_key = bucket.layout().heartbeat_grant(&key.hotkey());
        let signed: Verified<pb::HeartbeatGrant> = bucket
            .get(&grant_key, Expect::Signer(owner))
            .await
            .map_err(|e| {
                format!(
                    "no usable heartbeat grant yet ({e}); is this hotkey registered with the owner?"
                )
            })?;
        *grant = Some(
            locus_protocol::grant::open(&signed.sealed_grant, key).map_err(|e| e.to_string())?,
        );
    }
    let url = grant
        .as_ref()
        .ok_or("no heartbeat grant")?
        .entry("PUT", hb_key)
        .map_err(|e| e.to_string())?
        .clone();
    let sealed = locus_protocol::envelope::seal(heartbeat, hb_key, key);
    crate::access::count(&bucket.counts().puts);
    // Heartbeats are overwritten, so no create-only header here; the URL
    // still signs the heartbeat size class, so the envelope is padded to it.
    match crate::access::put_granted(http, &url, sealed.bytes, false).await {
        Ok(()) => Ok(()),
        Err(e @ AccessError::Http { .. }) => {
            *grant = None;
            Err(format!("heartbeat PUT refused: {e}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// CPU features that can change floating-point rounding, recorded in receipts
/// so a replay knows whether bitwise agreement is expected.
fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut features = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") {
            features.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            features.push("fma");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            features.push("avx512f");
        }
        features.join(",")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}
