//! One worker process: poll this worker's assignment prefix, verify, compute,
//! upload, sign a receipt. Bucket requests per job stay constant however
//! large the run grows: the worker lists only its own prefix, starting after
//! the last key it saw.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_daemon::input_cache::InputCache;
use locus_daemon::{Backoff, Shutdown, Wake};
use locus_protocol::pb;
use locus_protocol::time::Clock;
use locus_protocol::{Bucket, BucketError, Expect, Hotkey, Keypair, Verified};
use locus_workloads::Device;
use tracing::{info, warn};

use crate::access::{Access, AccessError};
use crate::adversary::{Adversary, Honest, Job, Published, Tools};
use crate::next_assignment::{NextAssignment, Told};

/// How long after its lease ran out an assignment is certainly stale for
/// a restarted worker (see [`Worker::resume_cursor`]).
pub const RESUME_MARGIN: Duration = Duration::from_secs(600);

/// The job manifest an assignment carries, vouched for by its signature
/// (none: an assignment written before it carried one).
type Carried = Option<Verified<pb::JobManifest>>;

#[derive(Clone)]
pub struct WorkerConfig {
    pub index: u32,
    pub device: Device,
    pub owner: Hotkey,
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub heartbeat_every: Duration,
    /// The time leases, grants and heartbeats are dated by (the owner's, in tests).
    pub clock: Clock,
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
    /// A deliberate misbehaviour (an [`Adversary`] other than [`Honest`],
    /// in test builds).
    #[error("{0}")]
    Attack(String),
}

impl Skip {
    /// Failures of the storage rather than of the assignment.
    fn is_transient(&self) -> bool {
        match self {
            Skip::Bucket(e) | Skip::Access(AccessError::Bucket(e)) => e.is_transient(),
            Skip::Access(AccessError::Http { .. }) => true,
            _ => false,
        }
    }
}

#[derive(Default)]
struct Status {
    current_job: String,
    jobs_done: u64,
}

/// What [`Worker::fetch`] read for a job, each part checked.
struct Fetched {
    manifest: pb::JobManifest,
    run: Arc<pb::RunManifest>,
    access: Access,
    inputs: Vec<Arc<pb::TensorArtifact>>,
}

/// Bytes of verified inputs a worker keeps for its next jobs: the inner
/// jobs of a step given to one worker start from the same parameters, read
/// once instead of once per job.
const INPUT_CACHE_BYTES: usize = 32 << 20;

/// While a worker knows where its next assignment goes it reads that key
/// alone, and lists its prefix only this often: an owner that restarted
/// without knowing what it had told this worker, or that found the key
/// taken, puts the assignment elsewhere, and the worker finds it this late.
pub const LIST_WHILE_EXPECTING: Duration = Duration::from_secs(10);

/// Without events, the expected key of a live run is read at least every
/// this many `poll_min` (see [`NextAssignment::is_due`]).
pub const DUE_POLL_FACTOR: u32 = 2;

/// One worker process. `A` is its [`Adversary`]: [`Honest`] in production.
pub struct Worker<A: Adversary = Honest> {
    bucket: Bucket,
    key: Arc<Keypair>,
    cfg: WorkerConfig,
    runs: locus_protocol::runs::RunManifests,
    status: Arc<Mutex<Status>>,
    cpu_features: String,
    /// Used only for grants (S3 buckets).
    http: locus_protocol::tls::LazyHttpClient,
    executed: locus_observe::Counter,
    refused: locus_observe::Counter,
    inputs: InputCache,
    /// What the last assignment read said about the next one.
    told: Option<Told>,
    adversary: A,
}

impl Worker<Honest> {
    /// An honest worker.
    pub fn new(bucket: Bucket, key: Keypair, cfg: WorkerConfig) -> Self {
        Worker::with_adversary(bucket, key, cfg, Honest)
    }
}

impl<A: Adversary> Worker<A> {
    /// A worker that calls `adversary` at the fixed points of each job.
    pub fn with_adversary(bucket: Bucket, key: Keypair, cfg: WorkerConfig, adversary: A) -> Self {
        Worker {
            bucket,
            key: Arc::new(key),
            runs: locus_protocol::runs::RunManifests::new(cfg.owner),
            cfg,
            status: Arc::default(),
            cpu_features: cpu_features(),
            http: Default::default(),
            executed: Default::default(),
            refused: Default::default(),
            inputs: InputCache::new(INPUT_CACHE_BYTES),
            told: None,
            adversary,
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
            self.cfg.clone(),
            self.status.clone(),
            shutdown.clone(),
            self.http.clone(),
        ));
        let (adversary, tools) = self.adversary();
        adversary.background(&tools, shutdown);
        let prefix = self.bucket.layout().assignments_of(&hotkey, self.cfg.index);
        // A pass may read only the expected key: an assignment written
        // while the wake waited must wake it again. The watch starts before
        // the resume listing, which the first pass reuses: an assignment
        // written after that listing (however long this process was held
        // up in between) raises an event that wakes the loop.
        let wake = Wake::on(&self.bucket, std::slice::from_ref(&prefix)).keep_every_wake();
        let (mut cursor, mut resumed) = self.resume_cursor(&prefix).await;
        // Where the owner said this worker's next assignment goes, and
        // when the prefix was last listed.
        let mut next = NextAssignment::default();
        let mut listed_at: Option<Instant> = None;
        let mut first_pass = true;
        let mut refused = std::collections::HashSet::new();
        // Nothing but a new assignment gives this loop work: where the
        // prefix is watched, the event wakes it, and an idle worker need
        // not poll its way back up from the minimum after every job (on a
        // local bucket that was most of a miner's requests).
        let mut backoff = if wake.is_watching() {
            let idle = locus_daemon::wake::WATCHED_POLL.max(self.cfg.poll_max);
            Backoff::new(idle, idle)
        } else {
            Backoff::new(self.cfg.poll_min, self.cfg.poll_max)
        };
        info!(hotkey = %hotkey, worker = self.cfg.index, device = %self.cfg.device, "worker ready");
        while !shutdown.requested() {
            // One GET at the expected key tells whether the next assignment
            // came, where a listing and then a GET would. The prefix is
            // still listed now and then, for work put elsewhere (by an owner
            // that restarted, or past a key someone else took).
            next.prune(self.cfg.clock.now_ms());
            let expected = next.key().map(str::to_string);
            let listing = expected.is_none()
                || listed_at.is_none_or(|at| at.elapsed() >= LIST_WHILE_EXPECTING);
            let keys = if let Some(keys) = resumed.take() {
                // The listing the cursor was found in, from the cursor on.
                listed_at = Some(Instant::now());
                keys
            } else if listing {
                listed_at = Some(Instant::now());
                match self.bucket.list(&prefix, cursor.as_deref()).await {
                    Ok(keys) => keys,
                    Err(e) => {
                        warn!(error = %e, "cannot list assignments");
                        Vec::new()
                    }
                }
            } else {
                expected.iter().cloned().collect()
            };
            let mut found = false;
            let mut deferred = false;
            for key in keys {
                if shutdown.requested() {
                    break;
                }
                if refused.contains(&key) {
                    continue;
                }
                self.told = None;
                let outcome = self.handle(&key, first_pass).await;
                let missing = matches!(&outcome, Err(Skip::Bucket(BucketError::NotFound { key: gone })) if *gone == key);
                if missing && !listing {
                    // The expected assignment is not written yet.
                    break;
                }
                found = true;
                match outcome {
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
                        next.forget(&key);
                        refused.insert(key);
                        continue;
                    }
                    Err(reason) if reason.is_transient() => {
                        // Storage trouble: keep the cursor here and try this
                        // assignment again on the next poll.
                        warn!(assignment = %key, %reason, "assignment deferred");
                        deferred = true;
                        break;
                    }
                    Err(reason) => {
                        self.refused.inc();
                        warn!(assignment = %key, %reason, "assignment not executed");
                    }
                }
                if let Some(told) = self.told.take() {
                    next.learn(&key, told);
                }
                cursor = Some(key);
            }
            first_pass = false;
            if found && !deferred {
                backoff.reset();
                // What came during the job is found by listing again at
                // once; on a watched prefix its event says so (the wake
                // resolves at once then), and an empty listing after every
                // job was half of a worker's requests.
                if !wake.is_watching() {
                    continue;
                }
            }
            // Without events (S3), the key the owner named is read briskly
            // for a while after the run that named it gave this worker work:
            // its next job usually follows within a step, and the pick-up
            // delay is on the run's critical path. One GET per read; the
            // back-off grows again after (see `NextAssignment::is_due`).
            if !wake.is_watching() && next.is_due(self.cfg.clock.now_ms()) {
                backoff.cap(self.cfg.poll_min * DUE_POLL_FACTOR);
            }
            // A deferred assignment is retried after the back-off, not in a
            // tight loop against a failing store.
            if !shutdown.sleep_or_wake(backoff.next_delay(), &wake).await {
                break;
            }
        }
        heartbeat.abort();
        Ok(())
    }

    /// Where a (re)started worker takes up its prefix: after the newest of
    /// its assignments whose lease ran out at least [`RESUME_MARGIN`] ago.
    /// The owner numbers assignments in the order it issues them, so every
    /// earlier one ran out too, and a restart reads the last few
    /// assignments rather than every one this worker was ever given. The
    /// margin covers runs of one owner whose numbers interleave; a job of
    /// such a run missed here only waits for its lease to run out and goes
    /// to another worker. None (read everything) when nothing ran out yet
    /// or the bucket cannot say. With it, the keys of that listing after
    /// the cursor: the worker's first pass need not list again.
    async fn resume_cursor(&self, prefix: &str) -> (Option<String>, Option<Vec<String>>) {
        let keys = match self.bucket.list(prefix, None).await {
            Ok(keys) => keys,
            Err(e) => {
                warn!(error = %e, "cannot list assignments");
                return (None, None);
            }
        };
        let cursor = self.resume_point(&keys).await;
        let after: Vec<String> = keys
            .into_iter()
            .filter(|k| cursor.as_ref().is_none_or(|c| k > c))
            .collect();
        (cursor, Some(after))
    }

    /// The newest of `keys` (ascending) whose lease ran out at least
    /// [`RESUME_MARGIN`] ago; see [`Worker::resume_cursor`].
    async fn resume_point(&self, keys: &[String]) -> Option<String> {
        let expired_before = self
            .cfg
            .clock
            .now_ms()
            .saturating_sub(RESUME_MARGIN.as_millis() as u64);
        for key in keys.iter().rev() {
            match self
                .bucket
                .get::<pb::Assignment>(key, Expect::Signer(&self.cfg.owner))
                .await
            {
                Ok(a) if a.deadline_unix_ms < expired_before => {
                    info!(after = %key, "resuming after the last assignment whose lease ran out");
                    return Some(key.clone());
                }
                Err(e) if e.is_transient() => return None,
                // Still live, or not the owner's (skipped like any planted
                // key).
                _ => {}
            }
        }
        None
    }

    /// Verifies and executes one assignment: [`verify`](Self::verify),
    /// [`fetch`](Self::fetch), [`compute`](Self::compute),
    /// [`publish`](Self::publish). Returns the job id.
    async fn handle(&mut self, key: &str, check_done: bool) -> Result<String, Skip> {
        let (assignment, carried) = self.verify(key, check_done).await?;
        let (adversary, tools) = self.adversary();
        adversary.after_verify(&tools, &assignment).await?;
        let started = self.cfg.clock.now_ms();
        let Fetched {
            manifest,
            run,
            access,
            inputs,
        } = self.fetch(key, &assignment, carried).await?;
        let receipt_key = self.bucket.layout().receipt(
            &assignment.run_id,
            assignment.step,
            &assignment.job_id,
            assignment.attempt,
        );
        let job = Job {
            assignment: &assignment,
            run: &run,
            kind: manifest.kind,
            micro_batch: manifest.micro_batch,
            stage: manifest.stage,
            receipt_key: &receipt_key,
        };
        let tensors = self.compute(&job, manifest, inputs).await?;
        self.publish(key, &job, &access, tensors, started).await?;
        Ok(assignment.job_id.clone())
    }

    /// The adversary, and what it may use of this worker.
    fn adversary(&mut self) -> (&mut A, Tools<'_>) {
        let tools = Tools {
            bucket: &self.bucket,
            key: &self.key,
            http: &self.http,
            worker: self.cfg.index,
        };
        (&mut self.adversary, tools)
    }

    /// Checks the assignment at `key`: signed by the owner, for this worker,
    /// well-formed ids, not done yet (on the first pass after a restart) and
    /// its lease still running. Returns it with the job manifest it
    /// carries, if it carries one.
    async fn verify(
        &mut self,
        key: &str,
        check_done: bool,
    ) -> Result<(pb::Assignment, Carried), Skip> {
        let hotkey = self.key.hotkey();
        let assignment: Verified<pb::Assignment> = self
            .bucket
            .get(key, Expect::Signer(&self.cfg.owner))
            .await?;
        if assignment.hotkey != hotkey.to_bytes() || assignment.worker != self.cfg.index {
            return Err(Skip::Invalid(format!("{key} assigns another worker")));
        }
        self.told = Some(Told {
            run: assignment.run_id.clone(),
            next_key: assignment.next_seq.map(|seq| {
                self.bucket
                    .layout()
                    .assignment(&hotkey, self.cfg.index, seq)
            }),
            deadline_ms: assignment.deadline_unix_ms,
            read_ms: self.cfg.clock.now_ms(),
        });
        for (what, id) in [("run", &assignment.run_id), ("job", &assignment.job_id)] {
            locus_protocol::paths::validate_id(what, id).map_err(Skip::Invalid)?;
        }
        let receipt_key = self.bucket.layout().receipt(
            &assignment.run_id,
            assignment.step,
            &assignment.job_id,
            assignment.attempt,
        );
        if check_done
            && self
                .bucket
                .get_opt::<pb::Receipt>(&receipt_key, Expect::Signer(&hotkey))
                .await?
                .is_some()
        {
            return Err(Skip::AlreadyDone);
        }
        if assignment.deadline_unix_ms <= self.cfg.clock.now_ms() {
            return Err(Skip::Expired);
        }
        let carried = locus_protocol::attribution::embedded_manifest(&assignment)
            .transpose()
            .map_err(|e| Skip::Invalid(format!("assignment {key}: {e}")))?;
        Ok((assignment.into_inner(), carried))
    }

    /// Reads what the job needs, each checked before use: the owner-signed
    /// manifest the assignment carries or names (and its digest), the run manifest,
    /// the grant sealed to this hotkey, and every input against the digest
    /// in the manifest.
    async fn fetch(
        &mut self,
        key: &str,
        assignment: &pb::Assignment,
        carried: Carried,
    ) -> Result<Fetched, Skip> {
        let owner = self.cfg.owner;
        let (run_id, job_id) = (&assignment.run_id, &assignment.job_id);
        if self
            .bucket
            .layout()
            .parse_job_manifest(run_id, &assignment.manifest_key)
            .is_none_or(|(job, _)| job != *job_id)
        {
            return Err(Skip::Invalid(format!(
                "assignment {key} names {}, not a manifest of job {job_id}",
                assignment.manifest_key
            )));
        }
        let manifest: Verified<pb::JobManifest> = match carried {
            Some(manifest) => manifest,
            None => {
                self.bucket
                    .get(&assignment.manifest_key, Expect::Signer(&owner))
                    .await?
            }
        };
        if manifest.digest().as_bytes().as_slice() != assignment.manifest_digest.as_slice()
            || manifest.job_id != *job_id
            || manifest.run_id != *run_id
            || manifest.step != assignment.step
        {
            return Err(Skip::Invalid(format!(
                "manifest {} does not match assignment {key}",
                manifest.key()
            )));
        }
        let run = self.runs.get(&self.bucket, run_id).await?;
        let access = Access::for_assignment(&self.bucket, &assignment.sealed_grant, &self.key)?;
        let mut inputs = Vec::with_capacity(manifest.inputs.len());
        for input in &manifest.inputs {
            if let Some(known) = self.inputs.get(input) {
                inputs.push(known);
                continue;
            }
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
            let Some(artifact) = self.inputs.keep(input, artifact) else {
                return Err(Skip::Invalid(format!(
                    "input {} does not match the digest in manifest {}",
                    input.key,
                    manifest.key()
                )));
            };
            inputs.push(artifact);
        }
        Ok(Fetched {
            manifest: manifest.into_inner(),
            run,
            access,
            inputs,
        })
    }

    /// Runs the job on Burn (off the async runtime) and returns its output
    /// tensors; the heartbeat names the job meanwhile.
    async fn compute(
        &mut self,
        job: &Job<'_>,
        manifest: pb::JobManifest,
        inputs: Vec<Arc<pb::TensorArtifact>>,
    ) -> Result<Vec<pb::Tensor>, Skip> {
        self.set_current(&job.assignment.job_id);
        let (adversary, tools) = self.adversary();
        let tensors = match adversary.instead_of_compute(&tools, job).await {
            Some(tensors) => tensors,
            None => {
                let run = Arc::clone(job.run);
                let device = self.cfg.device.clone();
                tokio::task::spawn_blocking(move || {
                    let inputs: Vec<&pb::TensorArtifact> = inputs.iter().map(Arc::as_ref).collect();
                    locus_workloads::execute(&run, &manifest, &inputs, &device)
                })
                .await
                .map_err(|e| Skip::Compute(e.to_string()))
                .and_then(|r| r.map_err(|e| Skip::Compute(e.to_string())))
            }
        };
        self.set_current("");
        let mut tensors = tensors?;
        self.adversary.after_compute(job, &mut tensors).await;
        Ok(tensors)
    }

    /// Writes the output artifact, then a receipt that commits to it, both
    /// signed by this hotkey and written once (through the grant on S3).
    async fn publish(
        &mut self,
        key: &str,
        job: &Job<'_>,
        access: &Access,
        tensors: Vec<pb::Tensor>,
        started: u64,
    ) -> Result<(), Skip> {
        let assignment = job.assignment;
        let (run_id, job_id, attempt) =
            (&assignment.run_id, &assignment.job_id, assignment.attempt);
        self.adversary.before_publish(job).await;
        let artifact = pb::TensorArtifact {
            run_id: run_id.clone(),
            job_id: job_id.clone(),
            attempt,
            tensors,
        };
        let artifact_key = self.bucket.layout().artifact(run_id, job_id, attempt);
        let digest = access
            .create(
                &self.http,
                &self.bucket,
                &artifact_key,
                &artifact,
                &self.key,
            )
            .await?;
        let payload_len = prost::Message::encoded_len(&artifact);
        let mut receipt = pb::Receipt {
            run_id: run_id.clone(),
            job_id: job_id.clone(),
            attempt,
            hotkey: self.key.hotkey().to_bytes().to_vec(),
            worker: self.cfg.index,
            assignment_key: key.to_string(),
            manifest_digest: assignment.manifest_digest.clone(),
            output: Some(pb::OutputCommitment {
                key: artifact_key.clone(),
                digest: digest.to_vec(),
                size: payload_len as u64,
            }),
            backend: self.cfg.device.backend().into(),
            device: self.cfg.device.to_string(),
            cpu_features: self.cpu_features.clone(),
            started_unix_ms: started,
            finished_unix_ms: self.cfg.clock.now_ms(),
            claimed_cost: None,
            step: assignment.step,
            assignment: locus_protocol::attribution::carry_assignment(assignment, &self.cfg.owner),
        };
        let (adversary, tools) = self.adversary();
        adversary.before_receipt(&tools, job, &mut receipt).await?;
        access
            .create(
                &self.http,
                &self.bucket,
                job.receipt_key,
                &receipt,
                &self.key,
            )
            .await?;
        if let Ok(mut status) = self.status.lock() {
            status.jobs_done += 1;
        }
        // The next job of this worker often reads this output (a reduce of
        // its own inner job, an eval of its outer): it is found here by the
        // key, signer and digest the owner's manifest will name, and a
        // manifest that names another digest reads the bucket as before.
        let produced = pb::InputRef {
            key: artifact_key.clone(),
            digest: digest.to_vec(),
            writer: self.key.hotkey().to_bytes().to_vec(),
        };
        let artifact = Arc::new(artifact);
        self.inputs.insert(
            &produced,
            artifact.clone(),
            locus_protocol::envelope::sealed_len::<pb::TensorArtifact>(payload_len),
        );
        let published = Published {
            access,
            artifact_key: &artifact_key,
            artifact: &artifact,
        };
        let (adversary, tools) = self.adversary();
        adversary.after_publish(&tools, job, &published).await;
        Ok(())
    }

    fn set_current(&self, job: &str) {
        if let Ok(mut status) = self.status.lock() {
            status.current_job = job.to_string();
        }
    }
}

async fn heartbeat_loop(
    bucket: Bucket,
    key: Arc<Keypair>,
    cfg: WorkerConfig,
    status: Arc<Mutex<Status>>,
    shutdown: Shutdown,
    http: locus_protocol::tls::LazyHttpClient,
) {
    let (index, every) = (cfg.index, cfg.heartbeat_every);
    let hotkey = key.hotkey();
    let hb_key = bucket.layout().heartbeat(&hotkey, index);
    let mut grant: Option<pb::Grant> = None;
    // Logged when heartbeats start landing, and again after failures: what
    // an operator watches for to know the owner can see this worker.
    let mut landing = false;
    // A failed heartbeat is tried again sooner than the next one is due
    // (a worker started before the owner granted its hotkey lands its
    // first one as soon as the grant is there), backing off to `every`.
    let mut retry = Backoff::new(cfg.poll_min.max(Duration::from_millis(100)), every);
    let mut warned: Option<Instant> = None;
    loop {
        let (current_job, jobs_done) = status
            .lock()
            .map(|s| (s.current_job.clone(), s.jobs_done))
            .unwrap_or_default();
        let heartbeat = pb::WorkerHeartbeat {
            hotkey: hotkey.to_bytes().to_vec(),
            worker: index,
            device: cfg.device.to_string(),
            backend: cfg.device.backend().into(),
            unix_ms: cfg.clock.now_ms(),
            current_job,
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            jobs_done,
        };
        let sent = if bucket.is_remote() {
            send_granted_heartbeat(
                &bucket,
                &key,
                &cfg,
                http.client(),
                &hb_key,
                &heartbeat,
                &mut grant,
            )
            .await
        } else {
            bucket
                .put(&hb_key, &heartbeat, &key)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let next = match sent {
            Ok(()) => {
                if !landing {
                    info!(worker = index, every_secs = every.as_secs(), key = %hb_key, "heartbeats landing: the owner can see this worker");
                    landing = true;
                }
                retry.reset();
                warned = None;
                every
            }
            Err(e) => {
                // Tries come faster than heartbeats: say so at most once
                // per heartbeat interval.
                if warned.is_none_or(|at: Instant| at.elapsed() >= every) {
                    warn!(error = %e, "heartbeat failed");
                    warned = Some(Instant::now());
                }
                landing = false;
                retry.next_delay()
            }
        };
        if !shutdown.sleep(next).await {
            return;
        }
    }
}

/// Heartbeats on S3 go through the owner's standing heartbeat grant, re-read
/// when it nears expiry or a write is refused.
async fn send_granted_heartbeat(
    bucket: &Bucket,
    key: &Keypair,
    cfg: &WorkerConfig,
    http: &reqwest::Client,
    hb_key: &str,
    heartbeat: &pb::WorkerHeartbeat,
    grant: &mut Option<pb::Grant>,
) -> Result<(), String> {
    let stale = grant
        .as_ref()
        .is_none_or(|g| g.expires_unix_ms <= cfg.clock.now_ms() + 60_000);
    if stale {
        let grant_key = bucket.layout().heartbeat_grant(&key.hotkey());
        let signed: Verified<pb::HeartbeatGrant> = bucket
            .get(&grant_key, Expect::Signer(&cfg.owner))
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
