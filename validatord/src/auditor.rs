//! One auditor worker: replays the receipts its validator sends it and
//! signs what it found.
//!
//! An auditor holds its own ED25519 key and no write credential: it reads
//! the bucket (read-only credentials on S3) and writes its one answer per
//! audit job through the grant the validator sealed to it, or directly on a
//! local bucket. It takes audit jobs only from the validator it serves, in
//! order, listing after the last one it took; the replay is the validator's
//! own code ([`Judge::audit`]), so an honest auditor finds what the
//! validator would.

use std::sync::Arc;
use std::time::Duration;

use locus_daemon::access::{Access, AccessError};
use locus_daemon::{Backoff, Shutdown, Wake};
use locus_protocol::pb::{self, AuditOutcome};
use locus_protocol::runs::RunManifests;
use locus_protocol::time::Clock;
use locus_protocol::{Bucket, BucketError, Expect, Hotkey, Keypair, Verified};
use locus_workloads::Device;
use tracing::{info, warn};

use crate::audit::outcome_of;
use crate::input_cache::InputCache;
use crate::replay::{Checked, Judge, JudgeError, Replayed};

/// What an auditor worker is told at start.
pub struct AuditorConfig {
    /// The validator whose audit jobs it takes.
    pub validator: Hotkey,
    /// The subnet owner: run manifests must be its.
    pub owner: Hotkey,
    pub device: Device,
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// This worker takes the jobs whose number is `shard.0` modulo
    /// `shard.1`: the workers of one auditor split its jobs.
    pub shard: (u64, u64),
    /// Test builds only: answer the opposite of what the replay found.
    pub lie: bool,
    /// The time job deadlines and results are dated by.
    pub clock: Clock,
}

/// Bytes of verified replay inputs an auditor keeps.
const INPUT_CACHE_BYTES: usize = 32 << 20;

pub struct Auditor {
    bucket: Bucket,
    key: Arc<Keypair>,
    cfg: AuditorConfig,
    /// Used only for grants (S3 buckets).
    http: locus_protocol::tls::LazyHttpClient,
    inputs: InputCache,
    runs: RunManifests,
    /// The last audit job key taken; listing resumes after it.
    cursor: Option<String>,
    pub audits_done: u64,
}

impl Auditor {
    pub fn new(bucket: Bucket, key: Keypair, cfg: AuditorConfig) -> Self {
        Auditor {
            bucket,
            key: Arc::new(key),
            runs: locus_protocol::runs::RunManifests::new(cfg.owner),
            cfg,
            http: Default::default(),
            inputs: InputCache::new(INPUT_CACHE_BYTES),
            cursor: None,
            audits_done: 0,
        }
    }

    /// Takes audit jobs until shutdown.
    pub async fn run(&mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let layout = self.bucket.layout().clone();
        let me = self.key.hotkey();
        info!(auditor = %me, validator = %self.cfg.validator, device = %self.cfg.device, "auditor starting");
        self.cursor = self.resume_cursor().await?;
        let wake = Wake::on(&self.bucket, &[layout.audit_jobs(&me)]);
        let mut backoff = Backoff::new(self.cfg.poll_min, self.cfg.poll_max);
        loop {
            match self.tick().await {
                Ok(true) => backoff.reset(),
                Ok(false) => {}
                Err(e) => warn!(error = %e, "audit pass failed; retrying"),
            }
            if !shutdown.sleep_or_wake(backoff.next_delay(), &wake).await {
                info!(audits = self.audits_done, "auditor stopped");
                return Ok(());
            }
        }
    }

    /// Where a restarted auditor resumes: after the job of its newest
    /// answer (audit jobs and their answers share numbers).
    async fn resume_cursor(&self) -> anyhow::Result<Option<String>> {
        let layout = self.bucket.layout();
        let me = self.key.hotkey();
        let answered = self.bucket.list(&layout.audit_results(&me), None).await?;
        Ok(answered
            .iter()
            .filter_map(|k| layout.parse_audit_result(&me, k))
            .max()
            .map(|seq| layout.audit_job(&me, seq)))
    }

    /// Answers every audit job listed after the cursor. Returns whether it
    /// answered any.
    pub async fn tick(&mut self) -> anyhow::Result<bool> {
        let layout = self.bucket.layout().clone();
        let me = self.key.hotkey();
        let listed = self
            .bucket
            .list(&layout.audit_jobs(&me), self.cursor.as_deref())
            .await?;
        let mut answered = false;
        let (shard, shards) = self.cfg.shard;
        for key in listed {
            let Some(seq) = layout.parse_audit_job(&me, &key) else {
                continue;
            };
            if shard_of(seq, shards) != shard {
                continue;
            }
            match self.answer(&key, seq).await {
                Ok(done) => answered |= done,
                Err(e) if e.is_transient() => {
                    // Stop here: this job is taken again on the next pass.
                    warn!(audit = %key, error = %e, "cannot answer the audit yet; will retry");
                    return Ok(answered);
                }
                // Not the validator's: a stranger's key (on a bucket anyone
                // can write) must not move the cursor past real jobs.
                Err(AuditorError::Bucket(e)) if matches!(e, BucketError::Rejected(_)) => {
                    if !e.is_repeat_rejection() {
                        warn!(audit = %key, error = %e, "ignoring an audit job the validator did not sign");
                    }
                    continue;
                }
                Err(e) => warn!(audit = %key, error = %e, "skipping audit job"),
            }
            self.cursor = Some(key);
        }
        Ok(answered)
    }

    /// Replays the receipt audit job `key` names and writes the answer.
    /// `Ok(false)`: nothing to do (stale, or answered before a restart).
    async fn answer(&mut self, key: &str, seq: u64) -> Result<bool, AuditorError> {
        let me = self.key.hotkey();
        let job: Verified<pb::AuditJob> = self
            .bucket
            .get(key, Expect::Signer(&self.cfg.validator))
            .await?;
        if job.auditor != me.to_bytes() {
            return Err(AuditorError::Invalid(format!(
                "audit job {key} names another auditor"
            )));
        }
        if job.deadline_unix_ms < self.cfg.clock.now_ms() {
            info!(audit = %key, "audit job expired before it was taken; the validator replays it");
            return Ok(false);
        }
        let result_key = self.bucket.layout().audit_result(&me, seq);
        let run = self.runs.get(&self.bucket, &job.run_id).await?;
        let judge = Judge {
            bucket: &self.bucket,
            owner: &self.cfg.owner,
            // Signs nothing here: an audit replays whatever the draw.
            validator: &self.key,
            run: &run,
            sample_rate: 1.0,
            device: &self.cfg.device,
            on_probation: &|_| true,
            inputs: &self.inputs,
            clock: &self.cfg.clock,
        };
        let replayed = match self.receipt_unchanged(&job).await? {
            Some(changed) => Replayed {
                checked: Checked::Void(changed),
                digest: None,
                ms: 0,
            },
            None => judge.audit(&job.receipt_key).await?,
        };
        let mut outcome = outcome_of(&replayed.checked);
        if self.cfg.lie {
            outcome = match outcome {
                AuditOutcome::Passed => AuditOutcome::Failed,
                _ => AuditOutcome::Passed,
            };
        }
        let reason = match &replayed.checked {
            Checked::Passed => String::new(),
            Checked::Failed(why) | Checked::Void(why) => why.clone(),
        };
        let result = pb::AuditResult {
            audit_key: key.to_string(),
            audit_digest: job.digest().to_vec(),
            receipt_key: job.receipt_key.clone(),
            receipt_digest: job.receipt_digest.clone(),
            outcome: outcome as i32,
            reason,
            replayed_digest: replayed.digest.map(|d| d.to_vec()).unwrap_or_default(),
            backend: self.cfg.device.backend().to_string(),
            device: self.cfg.device.to_string(),
            replay_ms: replayed.ms,
            unix_ms: self.cfg.clock.now_ms(),
        };
        let access = Access::for_assignment(&self.bucket, &job.sealed_grant, &self.key)
            .map_err(|e| AuditorError::Invalid(e.to_string()))?;
        match access
            .create(&self.http, &self.bucket, &result_key, &result, &self.key)
            .await
        {
            Ok(_) => {}
            // Answered before a restart.
            Err(AccessError::Bucket(BucketError::AlreadyExists { .. })) => return Ok(false),
            Err(AccessError::Bucket(e)) => return Err(e.into()),
            Err(other) => return Err(AuditorError::Write(other.to_string())),
        }
        self.audits_done += 1;
        info!(run = %job.run_id, job = %job.job_id, attempt = job.attempt, outcome = ?outcome, replay_ms = replayed.ms, audit = %key, "audit answered");
        Ok(true)
    }

    /// Why the receipt is not the one the validator sent, if it is not.
    async fn receipt_unchanged(&self, job: &pb::AuditJob) -> Result<Option<String>, AuditorError> {
        match self
            .bucket
            .get::<pb::Receipt>(&job.receipt_key, Expect::AnySigner)
            .await
        {
            Ok(receipt) if receipt.digest().to_vec() == job.receipt_digest => Ok(None),
            Ok(_) => Ok(Some(format!(
                "receipt {} changed since the audit job",
                job.receipt_key
            ))),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => Ok(Some(format!("receipt unreadable: {e}"))),
        }
    }
}

/// Which of `shards` workers takes audit job `seq`. Job numbers are
/// microseconds, mostly whole milliseconds: mixed first, so the workers get
/// even shares.
pub fn shard_of(seq: u64, shards: u64) -> u64 {
    let mixed = (seq ^ (seq >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) % shards.max(1)
}

/// Why an audit job was not answered.
#[derive(Debug, thiserror::Error)]
pub enum AuditorError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write the answer: {0}")]
    Write(String),
    #[error("replay task failed: {0}")]
    Replay(String),
}

impl From<JudgeError> for AuditorError {
    fn from(e: JudgeError) -> Self {
        match e {
            JudgeError::Bucket(e) => AuditorError::Bucket(e),
            JudgeError::Rejected(r) => AuditorError::Invalid(r.to_string()),
            JudgeError::Replay(why) => AuditorError::Replay(why),
        }
    }
}

impl AuditorError {
    /// Worth trying the same job again.
    pub fn is_transient(&self) -> bool {
        match self {
            AuditorError::Bucket(e) => e.is_transient(),
            AuditorError::Write(_) | AuditorError::Replay(_) => true,
            AuditorError::Invalid(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millisecond_job_numbers_spread_over_the_workers() {
        let mut counts = [0u32; 3];
        for ms in 0..3000u64 {
            counts[shard_of(1_796_235_117_335_000 + ms * 1000, 3) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(shard_of(12345, 1), 0);
        assert_eq!(shard_of(12345, 0), 0);
    }
}
