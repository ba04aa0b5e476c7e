//! Checks of a finished run that read only signed objects from the bucket,
//! independently of the validator's own arithmetic: what each hotkey's
//! weight should be, and which parameters the run produced.

use std::collections::{BTreeMap, BTreeSet};

use std::future::Future;
use std::time::Duration;

use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::{Bucket, BucketError, Expect, Hotkey, attribution};
use locus_workloads::cost;

/// Each paid hotkey's share of the credited compute units: the CU of every
/// job it was credited for (verified or unsampled), priced from the
/// owner-signed manifest, never from anything a miner wrote. A hotkey with a
/// failed verdict is owed nothing.
pub async fn cu_shares(
    bucket: &Bucket,
    run: &str,
    owner: &Hotkey,
    validator: &Hotkey,
) -> anyhow::Result<BTreeMap<Hotkey, f64>> {
    let layout = bucket.layout();
    let mut units: BTreeMap<Hotkey, u64> = BTreeMap::new();
    let mut failed = BTreeSet::new();
    let mut manifests = OwnerManifests::new(bucket, run, owner);
    let prefix = layout.verdicts(run);
    for key in retry(|| bucket.list(&prefix, None)).await? {
        let verdict =
            match retry(|| bucket.get::<pb::Verdict>(&key, Expect::Signer(validator))).await {
                Ok(verdict) => verdict,
                // Not the validator's: whatever sits there is no verdict.
                Err(BucketError::Rejected(_)) => continue,
                Err(e) => return Err(e.into()),
            };
        let hotkey = Hotkey::from_bytes(&verdict.hotkey)?;
        match VerdictOutcome::try_from(verdict.outcome).unwrap_or_default() {
            // A redo of a job already credited to another attempt passes
            // with no units: it is used, not paid.
            VerdictOutcome::Verified | VerdictOutcome::Unsampled if verdict.compute_units > 0 => {
                let manifest = manifests.of(&verdict).await?;
                let cu = cost::compute_units(&manifest.cost.unwrap_or_default());
                *units.entry(hotkey).or_default() += cu;
            }
            VerdictOutcome::Failed => {
                failed.insert(hotkey);
            }
            _ => {}
        }
    }
    for hotkey in &failed {
        units.remove(hotkey);
    }
    let total: u64 = units.values().sum();
    Ok(units
        .into_iter()
        .map(|(h, cu)| {
            (
                h,
                if total > 0 {
                    cu as f64 / total as f64
                } else {
                    0.0
                },
            )
        })
        .collect())
}

/// The owner's manifest of each credited job (every attempt and revision
/// of a job prices it the same), read where it costs least: from the
/// owner-signed copy of its assignment that the judged receipt carries.
/// Anyone with write access to a local bucket can delete a receipt or an
/// assignment, so where the copy is gone the manifests the run's
/// assignments carry are read (once, on first need: every run's
/// assignments share one prefix), and then manifests stored by owners that
/// stored them.
struct OwnerManifests<'a> {
    bucket: &'a Bucket,
    run: &'a str,
    owner: &'a Hotkey,
    known: BTreeMap<String, pb::JobManifest>,
    assignments_read: bool,
}

impl<'a> OwnerManifests<'a> {
    fn new(bucket: &'a Bucket, run: &'a str, owner: &'a Hotkey) -> Self {
        OwnerManifests {
            bucket,
            run,
            owner,
            known: BTreeMap::new(),
            assignments_read: false,
        }
    }

    /// The manifest of the job `verdict` judged.
    async fn of(&mut self, verdict: &pb::Verdict) -> anyhow::Result<pb::JobManifest> {
        let job = &verdict.job_id;
        if let Some(manifest) = self.known.get(job) {
            return Ok(manifest.clone());
        }
        let manifest = match self.carried(verdict).await {
            Some(manifest) => manifest,
            None => {
                if !self.assignments_read {
                    self.assignments_read = true;
                    self.read_assignments().await?;
                }
                match self.known.get(job) {
                    Some(manifest) => manifest.clone(),
                    None => stored_manifest(self.bucket, self.run, job, self.owner).await?,
                }
            }
        };
        self.known.insert(job.clone(), manifest.clone());
        Ok(manifest)
    }

    /// From the assignment copy in the receipt `verdict` names.
    async fn carried(&self, verdict: &pb::Verdict) -> Option<pb::JobManifest> {
        let receipt = retry(|| {
            self.bucket
                .get::<pb::Receipt>(&verdict.receipt_key, Expect::AnySigner)
        })
        .await
        .ok()?;
        let assignment = attribution::carried_assignment(&receipt, self.owner)
            .filter(|a| a.run_id == self.run && a.job_id == verdict.job_id)?;
        Some(
            attribution::embedded_manifest(&assignment)?
                .ok()?
                .into_inner(),
        )
    }

    /// Every manifest the run's assignments carry, signed by the owner
    /// with the assignment.
    async fn read_assignments(&mut self) -> anyhow::Result<()> {
        let prefix = self.bucket.layout().assignments();
        let listed = retry(|| self.bucket.list(&prefix, None)).await?;
        for key in listed {
            let assignment = match retry(|| {
                self.bucket
                    .get::<pb::Assignment>(&key, Expect::Signer(self.owner))
            })
            .await
            {
                Ok(assignment) if assignment.run_id == self.run => assignment,
                Ok(_) | Err(BucketError::Rejected(_) | BucketError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            if let Some(Ok(manifest)) = attribution::embedded_manifest(&assignment) {
                self.known
                    .entry(manifest.job_id.clone())
                    .or_insert_with(|| manifest.into_inner());
            }
        }
        Ok(())
    }
}

/// The manifest of `job` stored at its key, by owners that stored them:
/// the first revision the owner signed.
async fn stored_manifest(
    bucket: &Bucket,
    run: &str,
    job: &str,
    owner: &Hotkey,
) -> anyhow::Result<pb::JobManifest> {
    let layout = bucket.layout();
    for revision in 0..locus_protocol::paths::MAX_MANIFEST_REVISIONS {
        let key = layout.job_manifest_revision(run, job, revision);
        match retry(|| bucket.get::<pb::JobManifest>(&key, Expect::Signer(owner))).await {
            Ok(m) if m.job_id == job => return Ok(m.into_inner()),
            Ok(_) | Err(BucketError::Rejected(_) | BucketError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("no manifest of job {job} signed by the owner")
}

/// A short fingerprint of the run's final parameters (the tensors of the
/// artifact the run state names), equal across runs that trained the same
/// model whoever computed it.
pub async fn params_fingerprint(bucket: &Bucket, state: &pb::RunState) -> anyhow::Result<String> {
    // Every part (one per pipeline stage for gpt_pipe); states written
    // before `param_parts` name the MLP's one artifact in `params` only.
    let parts = if state.param_parts.is_empty() {
        state.params.iter().cloned().collect()
    } else {
        state.param_parts.clone()
    };
    anyhow::ensure!(!parts.is_empty(), "the run state names no parameters");
    let mut tensors = Vec::new();
    for params in &parts {
        let writer = Hotkey::from_bytes(&params.writer)?;
        let artifact =
            retry(|| bucket.get::<pb::TensorArtifact>(&params.key, Expect::Signer(&writer)))
                .await?;
        anyhow::ensure!(
            artifact.digest().as_bytes().as_slice() == params.digest.as_slice(),
            "artifact {} does not match the run state's digest",
            params.key
        );
        tensors.extend(artifact.into_inner().tensors);
    }
    Ok(fingerprint(&tensors))
}

/// A short digest of a model's parameter tensors, in order: equal
/// fingerprints mean bitwise-equal parameters.
pub fn fingerprint<'a>(tensors: impl IntoIterator<Item = &'a pb::Tensor>) -> String {
    let mut hasher = blake3::Hasher::new();
    for tensor in tensors {
        hasher.update(&prost::Message::encode_to_vec(tensor));
    }
    hasher.finalize().to_hex()[..16].to_string()
}

/// Retries a bucket call through passing storage errors (a flaky network,
/// or the fault injection of the storage-fault tests).
pub async fn retry<T, F, Fut>(mut call: F) -> Result<T, BucketError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BucketError>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if e.is_transient() && tries < 8 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// When one job of a step moved: assignment issued, work started and
/// finished (the receipt's own times: fetch, compute, upload), verdict
/// written. Milliseconds since the epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct JobTimes {
    pub kind: pb::JobKind,
    pub issued: u64,
    pub started: u64,
    pub finished: u64,
    pub verdict: u64,
}

/// One level of a step's DAG (the jobs of one kind), in milliseconds from
/// the step's first assignment: when its first job was issued, when its
/// last job started, finished and was judged, and the longest job.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    pub kind: pb::JobKind,
    pub jobs: usize,
    pub issued: u64,
    pub last_started: u64,
    pub last_finished: u64,
    pub last_verdict: u64,
    pub longest_job: u64,
}

/// A step's critical path by DAG level, levels in the order they were
/// issued. A level's work is its longest job; everything else on the way
/// is waiting (for a pick-up, a verdict or the next assignment).
pub fn critical_path(jobs: &[JobTimes]) -> Vec<Level> {
    let Some(origin) = jobs.iter().map(|j| j.issued).min() else {
        return Vec::new();
    };
    let mut by_kind: BTreeMap<i32, Vec<&JobTimes>> = BTreeMap::new();
    for job in jobs {
        by_kind.entry(job.kind as i32).or_default().push(job);
    }
    let since = |t: u64| t.saturating_sub(origin);
    let mut levels: Vec<Level> = by_kind
        .into_values()
        .map(|level| Level {
            kind: level[0].kind,
            jobs: level.len(),
            issued: since(level.iter().map(|j| j.issued).min().unwrap_or(origin)),
            last_started: since(level.iter().map(|j| j.started).max().unwrap_or(origin)),
            last_finished: since(level.iter().map(|j| j.finished).max().unwrap_or(origin)),
            last_verdict: since(level.iter().map(|j| j.verdict).max().unwrap_or(origin)),
            longest_job: level
                .iter()
                .map(|j| j.finished.saturating_sub(j.started))
                .max()
                .unwrap_or(0),
        })
        .collect();
    levels.sort_by_key(|l| (l.issued, l.kind as i32));
    levels
}

/// The times of every job of `step` whose receipt, assignment and verdict
/// are all in the bucket (informational: receipts of any signer, the
/// owner's assignments, the validator's verdicts).
pub async fn step_times(
    bucket: &Bucket,
    run: &str,
    step: u32,
    owner: &Hotkey,
    validator: &Hotkey,
) -> anyhow::Result<Vec<JobTimes>> {
    let layout = bucket.layout();
    let mut jobs = Vec::new();
    let prefix = layout.receipts_of_step(run, step);
    for key in retry(|| bucket.list(&prefix, None)).await? {
        let Ok(receipt) = retry(|| bucket.get::<pb::Receipt>(&key, Expect::AnySigner)).await else {
            continue;
        };
        let Ok(assignment) =
            retry(|| bucket.get::<pb::Assignment>(&receipt.assignment_key, Expect::Signer(owner)))
                .await
        else {
            continue;
        };
        let verdict_key = layout.verdict(run, step, &receipt.job_id, receipt.attempt);
        let Ok(verdict) =
            retry(|| bucket.get::<pb::Verdict>(&verdict_key, Expect::Signer(validator))).await
        else {
            continue;
        };
        let kind = assignment
            .manifest
            .as_ref()
            .and_then(|m| pb::JobKind::try_from(m.kind).ok())
            .unwrap_or_default();
        jobs.push(JobTimes {
            kind,
            issued: assignment.issued_unix_ms,
            started: receipt.started_unix_ms,
            finished: receipt.finished_unix_ms,
            verdict: verdict.unix_ms,
        });
    }
    Ok(jobs)
}

/// How a run's receipts spread over time: the job time workers report
/// (each receipt's start to finish: fetch, compute and upload) and the span
/// from the first start to the last finish.
pub struct Busy {
    pub receipts: usize,
    pub job_ms: u64,
    pub span_ms: u64,
}

/// Reads every receipt of `run` (informational: any signer).
pub async fn worker_busy(bucket: &Bucket, run: &str) -> anyhow::Result<Busy> {
    let prefix = bucket.layout().receipts(run);
    let (mut job_ms, mut first, mut last, mut receipts) = (0u64, u64::MAX, 0u64, 0usize);
    for key in retry(|| bucket.list(&prefix, None)).await? {
        let Ok(receipt) = retry(|| bucket.get::<pb::Receipt>(&key, Expect::AnySigner)).await else {
            continue;
        };
        receipts += 1;
        job_ms += receipt
            .finished_unix_ms
            .saturating_sub(receipt.started_unix_ms);
        first = first.min(receipt.started_unix_ms);
        last = last.max(receipt.finished_unix_ms);
    }
    Ok(Busy {
        receipts,
        job_ms,
        span_ms: last.saturating_sub(first.min(last)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(kind: pb::JobKind, issued: u64, started: u64, finished: u64, verdict: u64) -> JobTimes {
        JobTimes {
            kind,
            issued,
            started,
            finished,
            verdict,
        }
    }

    #[test]
    fn the_critical_path_has_a_level_per_kind_in_issue_order() {
        use pb::JobKind::{Forward, Inner, Reduce};
        let levels = critical_path(&[
            job(Inner, 1_050, 1_060, 1_070, 1_090),
            job(Forward, 1_000, 1_010, 1_020, 1_040),
            job(Inner, 1_050, 1_055, 1_080, 1_085),
            job(Reduce, 1_100, 1_101, 1_103, 1_120),
        ]);
        let kinds: Vec<pb::JobKind> = levels.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [Forward, Inner, Reduce]);
        let inner = &levels[1];
        assert_eq!(inner.jobs, 2);
        assert_eq!(inner.issued, 50);
        assert_eq!(inner.last_started, 60);
        assert_eq!(inner.last_finished, 80);
        assert_eq!(inner.last_verdict, 90);
        // The longest job, not the sum: the level's jobs run side by side.
        assert_eq!(inner.longest_job, 25);
        assert!(critical_path(&[]).is_empty());
    }
}
