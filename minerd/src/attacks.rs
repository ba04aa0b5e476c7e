//! The attacks of [`FaultMode`] that need more than a changed output: they
//! read other miners' objects, forge the owner's, or wait for someone
//! else's work. Each returns what it tried, for the log; none of it may earn
//! anything (see `tests/attacks.rs`).

use std::time::Duration;

use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, Expect, Hotkey, Keypair, pb};
use tracing::warn;

use crate::faults::FaultMode;

/// Another live miner's hotkey (from the heartbeats), to claim its identity.
pub async fn someone_else(bucket: &Bucket, me: &Hotkey) -> Hotkey {
    let layout = bucket.layout();
    if let Ok(keys) = bucket.list(&layout.heartbeats(), None).await {
        for key in keys {
            if let Some((hotkey, _)) = layout.parse_heartbeat(&key)
                && hotkey != *me
            {
                return hotkey;
            }
        }
    }
    Keypair::generate().hotkey()
}

/// `copy`: waits for another attempt of the same job to write its output and
/// returns those tensors, to be submitted as this attempt's own. The copy
/// can only exist once this lease has lapsed and the job went to someone
/// else, so it always arrives late.
pub async fn copy_other_attempt(
    bucket: &Bucket,
    run_id: &str,
    job_id: &str,
    attempt: u32,
    deadline_ms: u64,
) -> Option<Vec<pb::Tensor>> {
    let layout = bucket.layout();
    let own = layout.artifact(run_id, job_id, attempt);
    let prefix = own.rsplit_once('/').map(|(dir, _)| format!("{dir}/"))?;
    let give_up = deadline_ms + 60_000;
    while unix_ms() < give_up {
        for key in bucket.list(&prefix, None).await.unwrap_or_default() {
            if key == own {
                continue;
            }
            if let Ok(artifact) = bucket
                .get::<pb::TensorArtifact>(&key, Expect::AnySigner)
                .await
            {
                warn!(job = %job_id, from = %key, "attack copy: submitting another attempt's output");
                return Some(artifact.into_inner().tensors);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// `forge_manifest`: signs a manifest and assignments as if it were the
/// owner — one for itself, one planted in every other live worker's
/// assignment prefix (sorting after the owner's) — then executes its own and
/// writes a receipt for it. Everyone checks the owner's signature, so no
/// miner runs the forgery and the receipt earns nothing.
pub async fn forge_manifest(
    bucket: &Bucket,
    key: &Keypair,
    worker: u32,
    assignment: &pb::Assignment,
) -> String {
    let layout = bucket.layout();
    let run_id = &assignment.run_id;
    let job_id = format!("{}-forged", assignment.job_id);
    let Some(mut manifest) = assignment.manifest.clone() else {
        return "forge_manifest: the assignment carries no manifest".into();
    };
    manifest.job_id = job_id.clone();
    let manifest_key = layout.job_manifest(run_id, &job_id);
    let digest = match bucket.put(&manifest_key, &manifest, key).await {
        Ok(d) => d,
        Err(e) => return format!("forge_manifest: cannot plant the manifest: {e}"),
    };
    let me = key.hotkey();
    let mut victims = vec![(me, worker)];
    if let Ok(keys) = bucket.list(&layout.heartbeats(), None).await {
        victims.extend(keys.iter().filter_map(|k| layout.parse_heartbeat(k)));
    }
    victims.dedup();
    let mut own_assignment_key = String::new();
    for (n, (hotkey, w)) in victims.iter().enumerate() {
        let forged = pb::Assignment {
            job_id: job_id.clone(),
            hotkey: hotkey.to_bytes().to_vec(),
            worker: *w,
            manifest_key: manifest_key.clone(),
            manifest_digest: digest.to_vec(),
            sealed_grant: Vec::new(),
            ..assignment.clone()
        };
        let at = layout.assignment(hotkey, *w, 999_999_000_000 + n as u64);
        if bucket.put(&at, &forged, key).await.is_ok() && *hotkey == me && *w == worker {
            own_assignment_key = at;
        }
    }
    let receipt_key = layout.receipt(run_id, assignment.step, &job_id, assignment.attempt);
    let artifact_key = layout.artifact(run_id, &job_id, assignment.attempt);
    let artifact = pb::TensorArtifact {
        run_id: run_id.clone(),
        job_id: job_id.clone(),
        attempt: assignment.attempt,
        tensors: Vec::new(),
    };
    let Ok(artifact_digest) = bucket.put(&artifact_key, &artifact, key).await else {
        return "forge_manifest: cannot write the artifact".into();
    };
    let receipt = pb::Receipt {
        run_id: run_id.clone(),
        job_id: job_id.clone(),
        attempt: assignment.attempt,
        hotkey: me.to_bytes().to_vec(),
        worker,
        assignment_key: own_assignment_key,
        manifest_digest: digest.to_vec(),
        output: Some(pb::OutputCommitment {
            key: artifact_key,
            digest: artifact_digest.to_vec(),
            size: 0,
        }),
        step: assignment.step,
        ..Default::default()
    };
    match bucket.put(&receipt_key, &receipt, key).await {
        Ok(_) => format!(
            "forge_manifest: planted {job_id} for {} workers and receipted it",
            victims.len()
        ),
        Err(e) => format!("forge_manifest: cannot write the receipt: {e}"),
    }
}

/// `leaked_grant`: takes the sealed grants of other miners' assignments
/// (anyone may read them) and tries to open them with this key, then tries
/// to stretch its own grant to another miner's receipt key.
pub async fn leaked_grant(
    bucket: &Bucket,
    key: &Keypair,
    http: &reqwest::Client,
    own: &pb::Assignment,
) -> String {
    let layout = bucket.layout();
    let me = key.hotkey();
    let mut outcomes = Vec::new();
    let prefix = layout.assignments();
    let mut victim_receipt = None;
    // This miner may hold the run's first assignment: wait a while for
    // another miner's.
    for _ in 0..50 {
        let keys = bucket.list(&prefix, None).await.unwrap_or_default();
        for k in keys.iter().rev().take(64) {
            let Ok(other) = bucket.get::<pb::Assignment>(k, Expect::AnySigner).await else {
                continue;
            };
            if other.hotkey == me.to_bytes() || other.sealed_grant.is_empty() {
                continue;
            }
            match locus_protocol::grant::open(&other.sealed_grant, key) {
                Ok(_) => outcomes.push(format!("opened {k} (this must never happen)")),
                Err(e) => outcomes.push(format!("grant in {k} refused: {e}")),
            }
            victim_receipt =
                Some(layout.receipt(&other.run_id, other.step, &other.job_id, other.attempt));
            break;
        }
        if victim_receipt.is_some() || own.sealed_grant.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    if own.sealed_grant.is_empty() {
        outcomes.push("no grants on this bucket (local directory)".into());
        return format!("leaked_grant: {}", outcomes.join("; "));
    }
    let Ok(mine) = locus_protocol::grant::open(&own.sealed_grant, key) else {
        return "leaked_grant: own grant unreadable".into();
    };
    if let Some(victim) = victim_receipt {
        match mine.url("PUT", &victim) {
            Ok(_) => outcomes.push(format!(
                "own grant covers {victim} (this must never happen)"
            )),
            Err(e) => outcomes.push(format!("own grant for {victim}: {e}")),
        }
        // Rewrite the path of a URL it does hold to the victim's key.
        if let Some(url) = mine.urls.iter().find(|u| u.method == "PUT") {
            // The key sits in the URL path, with `=` percent-encoded.
            let encoded = |k: &str| k.replace('=', "%3D");
            let forged = url
                .url
                .replacen(&encoded(&url.key), &encoded(&victim), 1)
                .replacen(&url.key, &victim, 1);
            if forged == url.url {
                outcomes.push("could not re-path the URL".into());
            }
            let status = http
                .put(&forged)
                .body(b"forged".to_vec())
                .send()
                .await
                .map(|r| r.status().to_string())
                .unwrap_or_else(|e| e.to_string());
            outcomes.push(format!("PUT through a re-pathed URL: {status}"));
        }
    }
    format!("leaked_grant: {}", outcomes.join("; "))
}

/// `late`: holds a finished result until just after the lease ran out.
pub async fn wait_past(deadline_ms: u64) {
    let now = unix_ms();
    if deadline_ms + 300 > now {
        tokio::time::sleep(Duration::from_millis(deadline_ms + 300 - now)).await;
    }
}

/// `inflate_cost`: the cost a cheater would like to be paid for.
pub fn inflated_cost() -> pb::StaticCost {
    pb::StaticCost {
        flops: u64::MAX / 4,
        bytes_moved: u64::MAX / 4,
    }
}

/// Whether this mode replaces real work with an attack that writes nothing
/// for the assignment itself.
pub fn abandons_assignments(fault: Option<FaultMode>) -> bool {
    matches!(
        fault,
        Some(FaultMode::ForgeManifest | FaultMode::LeakedGrant)
    )
}
