//! Verdicts: signed by a validator of the run, for the receipt whose key
//! mirrors theirs. Whether a verdict commits to the receipt actually indexed
//! (digest and hotkey) is checked when the views are built.

use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::{Expect, Hotkey, Verified};

use super::{DiscoveryIndex, RefreshReport, WriteOnce, answer, check};
use crate::views::{VERIFIED, VerdictView};

#[derive(Debug)]
pub(super) struct VerdictEntry {
    pub(super) view: VerdictView,
    pub(super) receipt_key: String,
    pub(super) receipt_digest: Vec<u8>,
    pub(super) hotkey: Vec<u8>,
}

fn outcome_name(outcome: i32) -> &'static str {
    match VerdictOutcome::try_from(outcome) {
        Ok(VerdictOutcome::Verified) => "verified",
        Ok(VerdictOutcome::Failed) => "failed",
        Ok(VerdictOutcome::Unsampled) => "unsampled",
        Ok(VerdictOutcome::Late) => "late",
        _ => "unspecified",
    }
}

fn entry_of(key: &str, v: Verified<pb::Verdict>) -> VerdictEntry {
    let validator = v.signer().ss58();
    let v = v.into_inner();
    VerdictEntry {
        view: VerdictView {
            key: key.to_string(),
            validator,
            outcome: outcome_name(v.outcome),
            reason: v.reason,
            compute_units: v.compute_units,
            sample_rate: v.sample_rate,
            replay_ms: v.replay_ms,
            unix_ms: v.unix_ms,
            signature: VERIFIED,
            sample_proof: hex::encode(&v.sample_proof),
            auditor: if v.auditor.is_empty() {
                String::new()
            } else {
                Hotkey::ss58_of(&v.auditor)
            },
            receipt_digest: hex::encode(&v.receipt_digest),
        },
        receipt_key: v.receipt_key,
        receipt_digest: v.receipt_digest,
        hotkey: v.hotkey,
    }
}

impl DiscoveryIndex {
    pub(super) async fn refresh_verdicts(
        &mut self,
        run: &str,
        full: bool,
        report: &mut RefreshReport,
    ) -> Result<(), crate::Error> {
        let Some(entry) = self.runs.get(run) else {
            return Ok(());
        };
        let validators = entry.validators.clone();
        let layout = self.bucket.layout().clone();
        let read = self
            .read_new::<pb::Verdict, _>(
                run,
                WriteOnce::Verdicts,
                full,
                |key| layout.parse_verdict(run, key),
                Expect::OneOf(&validators),
                report,
            )
            .await?;
        for (key, (step, job, attempt), got) in read {
            let receipt_key = layout.receipt(run, step, &job, attempt);
            let checked = answer(got).and_then(|v| {
                check(
                    v.run_id == run
                        && v.job_id == job
                        && v.attempt == attempt
                        && v.step == step
                        && v.receipt_key == receipt_key,
                    || {
                        format!(
                            "verdict on {:?} (job {:?} attempt {}) does not belong at this key",
                            v.receipt_key, v.job_id, v.attempt
                        )
                    },
                )
                .map(|()| v)
            });
            match checked {
                Ok(v) => {
                    let verdict = entry_of(&key, v);
                    self.rejected.remove(&key);
                    self.seen(run, WriteOnce::Verdicts, &key);
                    if let Some(entry) = self.runs.get_mut(run) {
                        entry.verdicts.insert(verdict.receipt_key.clone(), verdict);
                    }
                }
                Err(reason) => self.reject_seen(run, WriteOnce::Verdicts, &key, reason, report),
            }
        }
        Ok(())
    }
}
