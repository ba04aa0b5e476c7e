//! Checks of a finished run that read only signed objects from the bucket,
//! independently of the validator's own arithmetic: what each hotkey's
//! weight should be, and which parameters the run produced.

use std::collections::{BTreeMap, BTreeSet};

use std::future::Future;
use std::time::Duration;

use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::{Bucket, BucketError, Expect, Hotkey};
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
                let manifest = owner_manifest(bucket, run, &verdict.job_id, owner).await?;
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

/// The owner's manifest of `job`: the first revision the owner signed (an
/// object planted at a manifest key moves the owner to the next one; every
/// revision of a job prices it the same).
async fn owner_manifest(
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
