//! Hostile writes: the fault modes that attack the run rather than the
//! miner's own pay. They overwrite, delete, plant or bloat objects others
//! depend on, with no more than a miner holds (its own grant on S3; on a
//! local bucket, write access to the directory like any stranger on the
//! host). Every one of them must leave the run finishing with the honest
//! parameters (`tests/hostile.rs`); each returns what it did, for the log.

use std::collections::HashSet;
use std::time::Duration;

use locus_daemon::Shutdown;
use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, Expect, Hotkey, Keypair, pb};
use object_store::PutMode;
use tracing::warn;

use crate::access::Access;
use crate::faults::FaultMode;

/// Size of the garbage objects of `bloat`.
const BLOAT_BYTES: usize = 100 << 20;
/// Objects of other miners `tamper` replaces, and accepted outputs it deletes.
const TAMPERED: usize = 3;
const DELETED: usize = 2;
/// Receipts `delete_receipts` deletes.
const DELETED_RECEIPTS: u64 = 4;

/// `overwrite_own`: once the validator has written the verdict for this
/// result, replaces the artifact with a different one this hotkey signs.
pub async fn overwrite_own(
    bucket: &Bucket,
    key: &Keypair,
    http: &reqwest::Client,
    access: &Access,
    artifact_key: &str,
    artifact: &pb::TensorArtifact,
    verdict_key: &str,
) -> String {
    let give_up = unix_ms() + 5_000;
    while unix_ms() < give_up {
        if exists(bucket, verdict_key).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut other = artifact.clone();
    FaultMode::PartialCorrupt.corrupt(&mut other.tensors, 0);
    let sealed = locus_protocol::envelope::seal(&other, artifact_key, key);
    let outcome = match access {
        Access::Direct => bucket
            .put_bytes(artifact_key, sealed.bytes, PutMode::Overwrite)
            .await
            .map(|()| "overwritten".to_string())
            .unwrap_or_else(|e| format!("refused: {e}")),
        Access::Granted(grant) => match grant.url("PUT", artifact_key) {
            // The request a create-only grant must not allow: no condition.
            Ok(url) => http
                .put(url)
                .body(sealed.bytes)
                .send()
                .await
                .map(|r| format!("PUT without If-None-Match: {}", r.status()))
                .unwrap_or_else(|e| e.to_string()),
            Err(e) => format!("no URL: {e}"),
        },
    };
    format!("attack overwrite_own: {artifact_key}: {outcome}")
}

/// `delete_receipts`: deletes one of this worker's first receipts right
/// after writing it, at once or a moment later, before any verdict (the
/// background part deletes other miners' first receipts the same way).
pub async fn delete_receipt(bucket: &Bucket, receipt_key: &str, jobs_done: u64) -> Option<String> {
    if jobs_done >= DELETED_RECEIPTS {
        return None;
    }
    if jobs_done % 2 == 1 {
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let outcome = match bucket.delete(receipt_key).await {
        Ok(()) => "deleted".to_string(),
        Err(e) => e.to_string(),
    };
    Some(format!("attack delete_receipts: {receipt_key}: {outcome}"))
}

/// `bloat`: 100 MB of zeros at `key`.
pub async fn bloat(bucket: &Bucket, key: &str) -> String {
    let outcome = match bucket
        .put_bytes(key, vec![0u8; BLOAT_BYTES], PutMode::Overwrite)
        .await
    {
        Ok(()) => "written".to_string(),
        Err(e) => e.to_string(),
    };
    format!("attack bloat: {BLOAT_BYTES} bytes at {key}: {outcome}")
}

/// The part of `tamper`, `plant` and `bloat` that does not wait for an
/// assignment: runs beside worker 0 until shutdown.
pub async fn background(
    bucket: Bucket,
    key: std::sync::Arc<Keypair>,
    mode: FaultMode,
    shutdown: Shutdown,
) {
    let me = key.hotkey();
    let layout = bucket.layout().clone();
    match mode {
        FaultMode::Bloat => {
            for at in [layout.heartbeat(&me, 99), layout.run_manifest("bloated")] {
                warn!("{}", bloat(&bucket, &at).await);
            }
        }
        FaultMode::Plant => {
            let Some(run) = wait_for_run(&bucket, &shutdown).await else {
                return;
            };
            warn!("{}", plant(&bucket, &key, &run).await);
        }
        FaultMode::DeleteReceipts => {
            let Some(run) = wait_for_run(&bucket, &shutdown).await else {
                return;
            };
            delete_others_receipts(&bucket, &me, &run, &shutdown).await;
        }
        FaultMode::Tamper => {
            let Some(run) = wait_for_run(&bucket, &shutdown).await else {
                return;
            };
            tamper(&bucket, &key, &run, &shutdown).await;
        }
        _ => {}
    }
}

async fn exists(bucket: &Bucket, key: &str) -> bool {
    bucket.get_bytes(key).await.is_ok()
}

async fn wait_for_run(bucket: &Bucket, shutdown: &Shutdown) -> Option<pb::RunManifest> {
    let layout = bucket.layout();
    while !shutdown.requested() {
        for run in bucket.list_dirs(&layout.runs()).await.unwrap_or_default() {
            if let Ok(m) = bucket
                .get::<pb::RunManifest>(&layout.run_manifest(&run), Expect::AnySigner)
                .await
            {
                return Some(m.into_inner());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// `plant`: manifests this hotkey signs at the keys of every job of steps 1
/// and 2, and foreign objects at the next assignment keys of every other
/// worker (and one whose sequence number would overflow).
async fn plant(bucket: &Bucket, key: &Keypair, run: &pb::RunManifest) -> String {
    let layout = bucket.layout();
    let mut manifests = 0;
    let workload = locus_workloads::for_run(run).ok();
    for step in 1..run.steps.min(3) {
        let specs = workload.as_ref().map(|w| w.step_jobs(step, 0, 0));
        for spec in specs.into_iter().flatten() {
            let fake = pb::JobManifest {
                run_id: run.run_id.clone(),
                job_id: spec.job_id.clone(),
                step,
                ..Default::default()
            };
            let at = layout.job_manifest(&run.run_id, &spec.job_id);
            if bucket.create(&at, &fake, key).await.is_ok() {
                manifests += 1;
            }
        }
    }
    let me = key.hotkey();
    let mut assignments = 0;
    let workers: Vec<(Hotkey, u32)> = bucket
        .list(&layout.heartbeats(), None)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|k| layout.parse_heartbeat(k))
        .filter(|(h, _)| *h != me)
        .collect();
    for (hotkey, worker) in &workers {
        let prefix = layout.assignments_of(hotkey, *worker);
        let last = bucket
            .list(&prefix, None)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|k| layout.parse_assignment_seq(k))
            .max()
            .unwrap_or(0);
        for seq in (last + 1..last + 4).chain([u64::MAX / 2]) {
            let at = layout.assignment(hotkey, *worker, seq);
            if bucket
                .put_bytes(&at, b"planted".to_vec(), PutMode::Create)
                .await
                .is_ok()
            {
                assignments += 1;
            }
        }
        let overflow = format!("{prefix}{}.pb", u64::MAX);
        let _ = bucket
            .put_bytes(&overflow, b"planted".to_vec(), PutMode::Create)
            .await;
    }
    format!(
        "attack plant: {manifests} manifests of future jobs, {assignments} assignment keys of {} workers",
        workers.len()
    )
}

/// Deletes the first receipts of other miners as soon as they appear.
async fn delete_others_receipts(
    bucket: &Bucket,
    me: &Hotkey,
    run: &pb::RunManifest,
    shutdown: &Shutdown,
) {
    let layout = bucket.layout();
    let mut deleted = 0;
    let mut seen = HashSet::new();
    while !shutdown.requested() && deleted < DELETED_RECEIPTS {
        for object in bucket
            .list_meta(&layout.receipts(&run.run_id), None)
            .await
            .unwrap_or_default()
        {
            if !seen.insert(object.key.clone()) {
                continue;
            }
            let Ok(receipt) = bucket
                .get::<pb::Receipt>(&object.key, Expect::AnySigner)
                .await
            else {
                continue;
            };
            if receipt.signer() == me || deleted >= DELETED_RECEIPTS {
                continue;
            }
            if let Some(outcome) = delete_receipt(bucket, &object.key, deleted).await {
                warn!("{outcome} (another miner's)");
            }
            deleted += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `tamper`: replaces the artifacts of the first other miners' receipts it
/// sees with objects it signs itself, and deletes the first accepted
/// forward outputs (read by the step's inner jobs) once judged.
async fn tamper(bucket: &Bucket, key: &Keypair, run: &pb::RunManifest, shutdown: &Shutdown) {
    let layout = bucket.layout();
    let me = key.hotkey();
    let mut seen = HashSet::new();
    let (mut replaced, mut deleted) = (0, 0);
    while !shutdown.requested() && (replaced < TAMPERED || deleted < DELETED) {
        let receipts = bucket
            .list(&layout.receipts(&run.run_id), None)
            .await
            .unwrap_or_default();
        for receipt_key in receipts {
            if seen.contains(&receipt_key) {
                continue;
            }
            let Ok(receipt) = bucket
                .get::<pb::Receipt>(&receipt_key, Expect::AnySigner)
                .await
            else {
                continue;
            };
            if *receipt.signer() == me {
                seen.insert(receipt_key);
                continue;
            }
            let output = receipt.output.clone().unwrap_or_default();
            if replaced < TAMPERED && !receipt.job_id.ends_with("forward") {
                seen.insert(receipt_key);
                let Ok(artifact) = bucket
                    .get::<pb::TensorArtifact>(&output.key, Expect::AnySigner)
                    .await
                else {
                    continue;
                };
                let result = bucket.put(&output.key, &artifact.into_inner(), key).await;
                replaced += 1;
                warn!(key = %output.key, ok = result.is_ok(), "attack tamper: replaced another miner's artifact with one signed by this hotkey");
                continue;
            }
            if deleted < DELETED && receipt.job_id.ends_with("forward") {
                let verdict =
                    layout.verdict(&run.run_id, receipt.step, &receipt.job_id, receipt.attempt);
                if !exists(bucket, &verdict).await {
                    continue;
                }
                seen.insert(receipt_key);
                let result = bucket.delete(&output.key).await;
                deleted += 1;
                warn!(key = %output.key, ok = result.is_ok(), "attack tamper: deleted an accepted output");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
