//! The [`Adversary`] of the test builds: each [`FaultMode`] mapped to the
//! hooks where it acts. The attacks themselves live in [`crate::attacks`]
//! (cheating for pay) and [`crate::hostile`] (hostile writes); this module
//! only decides which one runs where, so the worker's job path stays the
//! honest one.

use std::collections::HashMap;

use locus_daemon::Shutdown;
use locus_protocol::pb;
use tracing::warn;

use crate::adversary::{Adversary, Job, Published, Tools};
use crate::faults::FaultMode;
use crate::worker::Skip;
use crate::{attacks, hostile};

/// A worker that misbehaves in one [`FaultMode`].
pub struct Attacker {
    mode: FaultMode,
    /// `replay_old`: the first output of each job kind, resubmitted later.
    replay_store: HashMap<i32, Vec<pb::Tensor>>,
    /// Receipts this worker wrote (or, for `bloat`, wrote garbage in place
    /// of): `bloat` and `delete_receipts` attack only the first few.
    receipts: u64,
}

impl Attacker {
    pub fn new(mode: FaultMode) -> Self {
        Attacker {
            mode,
            replay_store: HashMap::new(),
            receipts: 0,
        }
    }
}

impl Adversary for Attacker {
    /// `tamper`, `plant`, `bloat` and `delete_receipts` also attack beside
    /// worker 0, without waiting for an assignment.
    fn background(&self, tools: &Tools<'_>, shutdown: &Shutdown) {
        if tools.worker == 0 {
            tokio::spawn(hostile::background(
                tools.bucket.clone(),
                tools.key.clone(),
                self.mode,
                shutdown.clone(),
            ));
        }
    }

    /// `forge_manifest` and `leaked_grant` do no real work: they attack
    /// instead of executing the assignment.
    async fn after_verify(
        &mut self,
        tools: &Tools<'_>,
        assignment: &pb::Assignment,
    ) -> Result<(), Skip> {
        let tried = match self.mode {
            FaultMode::ForgeManifest => {
                attacks::forge_manifest(tools.bucket, tools.key, tools.worker, assignment).await
            }
            FaultMode::LeakedGrant => {
                attacks::leaked_grant(tools.bucket, tools.key, tools.http.client(), assignment)
                    .await
            }
            _ => return Ok(()),
        };
        Err(Skip::Attack(tried))
    }

    /// `copy` submits another attempt's output; `skip_compute` zeros.
    async fn instead_of_compute(
        &mut self,
        tools: &Tools<'_>,
        job: &Job<'_>,
    ) -> Option<Result<Vec<pb::Tensor>, Skip>> {
        let a = job.assignment;
        match self.mode {
            FaultMode::Copy => Some(
                attacks::copy_other_attempt(
                    tools.bucket,
                    &a.run_id,
                    &a.job_id,
                    a.attempt,
                    a.deadline_unix_ms,
                )
                .await
                .ok_or_else(|| Skip::Attack("copy: nothing to copy".into())),
            ),
            FaultMode::SkipCompute => {
                let kind = pb::JobKind::try_from(job.kind).unwrap_or_default();
                let spec =
                    locus_workloads::for_run(job.run).map(|w| w.output_spec(kind, job.stage));
                Some(
                    spec.map(|spec| FaultMode::zeros(&spec))
                        .map_err(|e| Skip::Attack(format!("skip-compute: {e}"))),
                )
            }
            _ => None,
        }
    }

    /// The corrupting modes change the honest outputs (`stealth` only where
    /// it guesses no replay, `taint` only some kinds); `replay_old` swaps in
    /// the first output of the same kind.
    async fn after_compute(&mut self, job: &Job<'_>, tensors: &mut Vec<pb::Tensor>) {
        let step = job.assignment.step;
        let corrupt = match self.mode {
            FaultMode::Stealth => !FaultMode::guess_sampled(job.receipt_key),
            FaultMode::Taint => FaultMode::taints(job.kind, step),
            _ => true,
        };
        if corrupt {
            let salt = step as u64 ^ ((job.micro_batch as u64) << 16);
            self.mode.corrupt(tensors, salt);
        }
        if self.mode == FaultMode::ReplayOld {
            match self.replay_store.get(&job.kind) {
                Some(old) => *tensors = old.clone(),
                None => {
                    self.replay_store.insert(job.kind, tensors.clone());
                }
            }
        }
    }

    /// `late` holds the result until the lease has run out.
    async fn before_publish(&mut self, job: &Job<'_>) {
        if self.mode == FaultMode::Late {
            attacks::wait_past(job.assignment.deadline_unix_ms).await;
        }
    }

    /// `foreign_receipt` claims another hotkey, `inflate_cost` a huge cost;
    /// `bloat` writes garbage at its first receipt key and at the second
    /// result's verdict key before the validator can.
    async fn before_receipt(
        &mut self,
        tools: &Tools<'_>,
        job: &Job<'_>,
        receipt: &mut pb::Receipt,
    ) -> Result<(), Skip> {
        match self.mode {
            FaultMode::ForeignReceipt => {
                let me = tools.key.hotkey();
                let other = attacks::someone_else(tools.bucket, &me).await;
                receipt.hotkey = other.to_bytes().to_vec();
            }
            FaultMode::InflateCost => receipt.claimed_cost = Some(attacks::inflated_cost()),
            FaultMode::Bloat if self.receipts < 2 => {
                let a = job.assignment;
                let at = if self.receipts == 0 {
                    job.receipt_key.to_string()
                } else {
                    tools
                        .bucket
                        .layout()
                        .verdict(&a.run_id, a.step, &a.job_id, a.attempt)
                };
                warn!("{}", hostile::bloat(tools.bucket, &at).await);
                if self.receipts == 0 {
                    self.receipts += 1;
                    return Err(Skip::Attack("bloat: garbage receipt".into()));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `overwrite_own` replaces its artifact once judged;
    /// `delete_receipts` deletes its first receipts.
    async fn after_publish(&mut self, tools: &Tools<'_>, job: &Job<'_>, published: &Published<'_>) {
        let a = job.assignment;
        match self.mode {
            FaultMode::OverwriteOwn => {
                let verdict_key = tools
                    .bucket
                    .layout()
                    .verdict(&a.run_id, a.step, &a.job_id, a.attempt);
                let outcome = hostile::overwrite_own(
                    tools.bucket,
                    tools.key,
                    tools.http.client(),
                    published.access,
                    published.artifact_key,
                    published.artifact,
                    &verdict_key,
                )
                .await;
                warn!("{outcome}");
            }
            FaultMode::DeleteReceipts => {
                if let Some(outcome) =
                    hostile::delete_receipt(tools.bucket, job.receipt_key, self.receipts).await
                {
                    warn!("{outcome}");
                }
            }
            _ => {}
        }
        self.receipts += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use locus_protocol::tensor::F32Tensor;

    /// The outputs of `kind` in `step` after `attacker`'s `after_compute`.
    fn after_compute(attacker: &mut Attacker, kind: pb::JobKind, step: u32, first: f32) -> f32 {
        let assignment = pb::Assignment {
            step,
            ..Default::default()
        };
        let run = std::sync::Arc::default();
        let job = Job {
            assignment: &assignment,
            run: &run,
            kind: kind as i32,
            micro_batch: 0,
            stage: 0,
            receipt_key: "receipt",
        };
        let mut tensors = vec![F32Tensor::new(vec![2], vec![first, 2.0]).to_pb("x")];
        block_on(attacker.after_compute(&job, &mut tensors));
        F32Tensor::from_pb(&tensors[0]).unwrap().values[0]
    }

    #[test]
    fn corrupting_modes_change_the_computed_outputs() {
        let mut partial = Attacker::new(FaultMode::PartialCorrupt);
        assert_eq!(after_compute(&mut partial, pb::JobKind::Inner, 0, 1.0), 2.0);
        let mut honest_looking = Attacker::new(FaultMode::InflateCost);
        assert_eq!(
            after_compute(&mut honest_looking, pb::JobKind::Inner, 0, 1.0),
            1.0
        );
    }

    #[test]
    fn taint_spares_reduce_and_outer_until_the_third_step() {
        let mut taint = Attacker::new(FaultMode::Taint);
        assert_eq!(after_compute(&mut taint, pb::JobKind::Inner, 0, 1.0), 2.0);
        assert_eq!(after_compute(&mut taint, pb::JobKind::Reduce, 1, 1.0), 1.0);
        assert_eq!(after_compute(&mut taint, pb::JobKind::Outer, 2, 1.0), 2.0);
    }

    #[test]
    fn replay_old_resubmits_the_first_output_of_a_kind() {
        let mut replay = Attacker::new(FaultMode::ReplayOld);
        assert_eq!(after_compute(&mut replay, pb::JobKind::Inner, 0, 1.0), 1.0);
        assert_eq!(after_compute(&mut replay, pb::JobKind::Inner, 1, 5.0), 1.0);
        assert_eq!(after_compute(&mut replay, pb::JobKind::Reduce, 1, 5.0), 5.0);
    }
}
