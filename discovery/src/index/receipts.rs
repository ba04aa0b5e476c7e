//! Receipts: signed by the hotkey they name, for the run, step, job and
//! attempt their key names, and attributed to the owner-signed assignment
//! they point to ([`locus_protocol::attribution`], the rule the
//! orchestrator and the validator apply); each assignment is read once.

use locus_protocol::attribution;
use locus_protocol::{Digest, Expect, Hotkey, Layout, Verified, pb};

use super::{DiscoveryIndex, RefreshReport, WriteOnce, answer, check, settled};
use crate::views::{ReceiptRow, VERIFIED};

#[derive(Debug)]
pub(super) struct ReceiptEntry {
    pub(super) row: ReceiptRow,
    pub(super) digest: Digest,
    pub(super) hotkey: [u8; 32],
}

/// Where a receipt's key says it belongs: (step, job, attempt).
type ReceiptAt = (u32, String, u32);

/// What a receipt must satisfy before its assignment is worth reading: it is
/// signed by the hotkey it claims and names one of that hotkey's
/// assignment keys. Everything else is
/// the protocol's attribution rule, applied once the assignment is read.
fn check_receipt_fields(
    layout: &Layout,
    _run: &str,
    _at: &ReceiptAt,
    r: Verified<pb::Receipt>,
) -> Result<Verified<pb::Receipt>, String> {
    let hotkey = Hotkey::from_bytes(&r.hotkey).map_err(|e| format!("receipt hotkey: {e}"))?;
    check(*r.signer() == hotkey, || {
        format!(
            "signed by {}, but the receipt names hotkey {hotkey}",
            r.signer()
        )
    })?;
    check(
        layout
            .parse_assignment(&r.assignment_key)
            .is_some_and(|(under, _, _)| under == hotkey),
        || {
            format!(
                "assignment key {:?} is not one of the hotkey's own assignments",
                r.assignment_key
            )
        },
    )?;
    Ok(r)
}

fn row_of(key: &str, digest: Digest, r: pb::Receipt) -> ReceiptRow {
    let output = r.output.unwrap_or_default();
    ReceiptRow {
        digest: digest.to_string(),
        manifest_digest: hex::encode(&r.manifest_digest),
        output_key: output.key,
        output_digest: hex::encode(&output.digest),
        output_size: output.size,
        key: key.to_string(),
        hotkey: Hotkey::ss58_of(&r.hotkey),
        run_id: r.run_id,
        step: r.step,
        job_id: r.job_id,
        attempt: r.attempt,
        worker: r.worker,
        backend: r.backend,
        device: r.device,
        started_unix_ms: r.started_unix_ms,
        finished_unix_ms: r.finished_unix_ms,
        assignment_key: r.assignment_key,
        signature: VERIFIED,
        verdict: None,
    }
}

impl DiscoveryIndex {
    pub(super) async fn refresh_receipts(
        &mut self,
        run: &str,
        full: bool,
        report: &mut RefreshReport,
    ) -> Result<(), crate::Error> {
        let layout = self.bucket.layout().clone();
        let read = self
            .read_new::<pb::Receipt, _>(
                run,
                WriteOnce::Receipts,
                full,
                |key| layout.parse_receipt(run, key),
                Expect::AnySigner,
                report,
            )
            .await?;
        // First pass: signature and the receipt's own fields.
        let mut candidates = Vec::new();
        for (key, at, got) in read {
            match answer(got).and_then(|r| check_receipt_fields(&layout, run, &at, r)) {
                Ok(r) => candidates.push(r),
                Err(reason) => self.reject_seen(run, WriteOnce::Receipts, &key, reason, report),
            }
        }
        // Second pass: the assignments they point to, each read once.
        let mut wanted: Vec<String> = candidates
            .iter()
            .map(|r| r.assignment_key.clone())
            .filter(|k| !self.assignments.contains_key(k))
            .collect();
        wanted.sort();
        wanted.dedup();
        self.read_assignments(wanted, report).await;
        for receipt in candidates {
            let Some(assignment) = self.assignments.get(&receipt.assignment_key) else {
                continue; // transient: retried next refresh
            };
            let checked = match assignment {
                Ok(a) => attribution::attribute(&layout, run, receipt.key(), &receipt, a)
                    .map(|_| ())
                    .map_err(|m| m.to_string()),
                Err(reason) => Err(format!("assignment {}: {reason}", receipt.assignment_key)),
            };
            let key = receipt.key().to_string();
            match checked {
                Ok(()) => {
                    // Owners no longer store job manifests: the job is
                    // learnt of from the manifest its assignment carries.
                    let manifest = assignment.as_ref().ok().and_then(|a| a.manifest.clone());
                    if let (Some(entry), Some(manifest)) = (self.runs.get_mut(run), manifest)
                        && manifest.run_id == run
                    {
                        entry.note_job(&manifest);
                    }
                    let hotkey = Hotkey::from_bytes(&receipt.hotkey)
                        .map(|h| h.to_bytes())
                        .unwrap_or_default();
                    let digest = receipt.digest();
                    let row = row_of(&key, digest, receipt.into_inner());
                    self.rejected.remove(&key);
                    self.seen(run, WriteOnce::Receipts, &key);
                    if let Some(entry) = self.runs.get_mut(run) {
                        let receipt = ReceiptEntry {
                            row,
                            digest,
                            hotkey,
                        };
                        entry.receipts.insert(key, receipt);
                    }
                }
                Err(reason) => self.reject_seen(run, WriteOnce::Receipts, &key, reason, report),
            }
        }
        Ok(())
    }

    /// Reads the owner-signed assignments at `keys` into the cache; a
    /// missing or rejected one is cached as its reason, a transient failure
    /// is not cached (read again next time).
    async fn read_assignments(&mut self, keys: Vec<String>, report: &mut RefreshReport) {
        report.fetched += keys.len() as u64;
        let owner = self.owner;
        for (key, result) in self
            .fetch_all::<pb::Assignment>(keys, Expect::Signer(&owner))
            .await
        {
            let Some(got) = settled("assignment", &key, result) else {
                continue;
            };
            let missing = got.as_ref().is_err_and(|e| e.is_not_found());
            let got = answer(got).map(Verified::into_inner);
            if let Err(reason) = &got
                && !missing
            {
                report.rejected += u64::from(self.reject(&key, "assignment", reason.clone()));
            }
            self.assignments.insert(key, got);
        }
    }
}
