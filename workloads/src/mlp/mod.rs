//! The round-style teacher/student MLP workload.
//!
//! A student `relu(x·W1 + b1)·W2 + b2` (width `D`) learns to imitate a fixed
//! random teacher of the same shape under MSE. One step of training is a
//! small DiLoCo-style round of jobs:
//!
//! ```text
//! forward(s)              draw the step's batch, label it with the teacher, student loss
//!   └ inner(s, m, r)      K local SGD steps on micro-batch m, replica r → parameter delta
//!       └ reduce(s)       mean of all deltas (fixed order)
//!           └ outer(s)    momentum update of the parameters → parameters of step s+1
//!               └ eval(s) student loss on a fixed held-out set
//! ```
//!
//! All tensor math runs on Burn; data and initial weights come from
//! [`SplitMix64`](crate::rng::SplitMix64) so that every replay sees identical inputs.

mod dag;
mod kernels;

use locus_protocol::pb::{self, JobKind, MlpConfig, StaticCost};

pub use dag::{INITIAL, job_id, job_id_in, step_jobs, step_jobs_in};
pub use kernels::{PARAMS, initial_artifact, output_spec, step_rows};

use crate::device::OnBackend;
use crate::plan::JobSpec;
use crate::{Device, ExportedModel, OutputSpec, WORKLOAD_MLP, Workload, WorkloadError};

/// Defaults for a small run that trains visibly in a few steps on a laptop.
pub fn default_config(seed: u64) -> MlpConfig {
    MlpConfig {
        width: 16,
        micro_batches: 2,
        replicas: 2,
        batch_size: 32,
        inner_steps: 4,
        inner_lr: 0.05,
        outer_lr: 0.8,
        outer_momentum: 0.5,
        eval_batch: 256,
        seed,
    }
}

/// Checks a configuration from the bucket before any allocation depends on it.
pub fn validate_config(cfg: &MlpConfig) -> Result<(), WorkloadError> {
    let bad = |what: &str| Err(WorkloadError::Config(what.to_string()));
    if !(1..=1024).contains(&cfg.width) {
        return bad("width must be 1..=1024");
    }
    if !(1..=64).contains(&cfg.micro_batches) || !(1..=64).contains(&cfg.replicas) {
        return bad("micro_batches and replicas must be 1..=64");
    }
    if !(1..=4096).contains(&cfg.batch_size) || !(1..=65536).contains(&cfg.eval_batch) {
        return bad("batch_size must be 1..=4096 and eval_batch 1..=65536");
    }
    if !(1..=1000).contains(&cfg.inner_steps) {
        return bad("inner_steps must be 1..=1000");
    }
    if ![cfg.inner_lr, cfg.outer_lr, cfg.outer_momentum]
        .iter()
        .all(|v| v.is_finite())
    {
        return bad("learning rates and momentum must be finite");
    }
    Ok(())
}

/// The MLP workload of one run, its configuration checked.
pub struct MlpRound {
    cfg: MlpConfig,
}

impl MlpRound {
    pub fn new(cfg: MlpConfig) -> Result<Self, WorkloadError> {
        validate_config(&cfg)?;
        Ok(MlpRound { cfg })
    }
}

impl Workload for MlpRound {
    fn name(&self) -> &'static str {
        WORKLOAD_MLP
    }

    fn configure(&self, run: &mut pb::RunManifest) {
        run.workload = WORKLOAD_MLP.into();
        run.mlp = Some(self.cfg);
    }

    fn step_jobs(&self, step: u32, generation: u32, prev_generation: u32) -> Vec<JobSpec> {
        step_jobs_in(&self.cfg, step, generation, prev_generation)
    }

    fn param_jobs(&self, step: u32, generation: u32) -> Vec<String> {
        vec![job_id_in(generation, step, JobKind::Outer, 0, 0)]
    }

    fn owner_artifact(&self, id: &str) -> Result<Vec<pb::Tensor>, WorkloadError> {
        if id == INITIAL {
            Ok(initial_artifact(&self.cfg))
        } else {
            Err(WorkloadError::UnknownOwnerArtifact(id.to_string()))
        }
    }

    fn step_examples(&self) -> u64 {
        step_rows(&self.cfg) as u64
    }

    fn cost(&self, kind: JobKind, _stage: u32) -> pb::StaticCost {
        mlp_cost(&self.cfg, kind)
    }

    fn output_spec(&self, kind: JobKind, _stage: u32) -> OutputSpec {
        output_spec(&self.cfg, kind)
    }

    fn export(&self, parts: &[pb::TensorArtifact]) -> Result<ExportedModel, WorkloadError> {
        let [params] = parts else {
            return Err(WorkloadError::Config(format!(
                "{} parameter artifacts, the MLP has one",
                parts.len()
            )));
        };
        let tensors = PARAMS
            .iter()
            .map(|name| {
                params
                    .tensors
                    .iter()
                    .find(|t| t.name == *name)
                    .cloned()
                    .ok_or_else(|| {
                        WorkloadError::Input(locus_protocol::tensor::TensorError::Missing(
                            (*name).into(),
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(ExportedModel {
            tensors,
            ids: Vec::new(),
        })
    }

    fn execute(
        &self,
        job: &pb::JobManifest,
        inputs: &[&pb::TensorArtifact],
        device: &Device,
    ) -> Result<Vec<pb::Tensor>, WorkloadError> {
        device.run(Job {
            cfg: &self.cfg,
            job,
            inputs,
        })
    }
}

struct Job<'a> {
    cfg: &'a MlpConfig,
    job: &'a pb::JobManifest,
    inputs: &'a [&'a pb::TensorArtifact],
}

impl OnBackend for Job<'_> {
    type Output = Vec<pb::Tensor>;
    fn run<B: burn::tensor::backend::AutodiffBackend>(
        self,
        device: &B::Device,
    ) -> Result<Self::Output, WorkloadError> {
        kernels::execute::<B>(self.cfg, self.job, self.inputs, device)
    }
}

/// The static cost of one job of the MLP workload.
pub fn mlp_cost(cfg: &MlpConfig, kind: JobKind) -> StaticCost {
    let d = cfg.width as u64;
    let params = 2 * d * d + 2 * d;
    let param_bytes = params * 4;
    // A dense [rows, d] x [d, d] product and the rest of a 2-layer forward pass.
    let forward_flops = |rows: u64| rows * (4 * d * d + 4 * d);
    let step_rows = step_rows(cfg) as u64;
    let batch = cfg.batch_size as u64;
    let data_bytes = 2 * step_rows * d * 4;
    let deltas = (cfg.micro_batches * cfg.replicas) as u64;
    let (flops, bytes_moved) = match kind {
        // Student and teacher forward passes over the step batch.
        JobKind::Forward => (2 * forward_flops(step_rows), 2 * param_bytes + data_bytes),
        // Each local step: forward, backward (twice the forward) and the update.
        JobKind::Inner => (
            cfg.inner_steps as u64 * (3 * forward_flops(batch) + 2 * params),
            2 * param_bytes + data_bytes + param_bytes,
        ),
        JobKind::Reduce => (deltas * params, (deltas + 1) * param_bytes),
        JobKind::Outer => (4 * params, 5 * param_bytes),
        JobKind::Eval => (2 * forward_flops(cfg.eval_batch as u64), 2 * param_bytes),
        JobKind::Unspecified | JobKind::Backward => (0, 0),
    };
    StaticCost { flops, bytes_moved }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::compute_units;

    #[test]
    fn costs_are_positive_and_inner_dominates_reduce() {
        let cfg = default_config(1);
        for kind in [
            JobKind::Forward,
            JobKind::Inner,
            JobKind::Reduce,
            JobKind::Outer,
            JobKind::Eval,
        ] {
            assert!(compute_units(&mlp_cost(&cfg, kind)) > 0, "{kind:?}");
        }
        assert!(mlp_cost(&cfg, JobKind::Inner).flops > mlp_cost(&cfg, JobKind::Reduce).flops);
    }
}
