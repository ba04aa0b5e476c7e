//! The single-process trainer: runs a workload's job DAG in one process,
//! without a bucket, miners or validators.
//!
//! It executes exactly the jobs the orchestrator plans, with the same
//! inputs in the same order, so a distributed run's final parameters must
//! equal its result bit for bit on CPU; tests and benchmarks use it as the
//! reference.

use std::collections::HashMap;

use locus_protocol::pb;

use crate::plan::{JobSpec, Source};
use crate::{Device, Workload, WorkloadError};

/// Losses of one step, from the outputs named by the workload conventions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepLosses {
    pub train_loss: Option<f32>,
    pub eval_loss: Option<f32>,
}

pub struct Trainer<'a> {
    workload: &'a dyn Workload,
    device: Device,
    outputs: HashMap<String, pb::TensorArtifact>,
    owner: HashMap<String, pb::TensorArtifact>,
    /// Jobs executed so far.
    pub jobs: u64,
}

impl<'a> Trainer<'a> {
    pub fn new(workload: &'a dyn Workload, device: Device) -> Self {
        Trainer {
            workload,
            device,
            outputs: HashMap::new(),
            owner: HashMap::new(),
            jobs: 0,
        }
    }

    /// Runs every job of `step` (generation 0) in dependency order.
    pub fn step(&mut self, step: u32) -> Result<StepLosses, WorkloadError> {
        let mut losses = StepLosses::default();
        for spec in self.workload.step_jobs(step, 0, 0) {
            let out = self.execute(&spec)?;
            for t in &out {
                let value = || {
                    locus_protocol::tensor::F32Tensor::from_pb(t)
                        .ok()
                        .and_then(|t| t.values.first().copied())
                };
                match t.name.as_str() {
                    "train_loss" => losses.train_loss = value(),
                    "eval_loss" => losses.eval_loss = value(),
                    _ => {}
                }
            }
            self.record(&spec, out);
        }
        Ok(losses)
    }

    /// Keeps `tensors` as the output of `spec`, for the jobs that read it.
    pub fn record(&mut self, spec: &JobSpec, tensors: Vec<pb::Tensor>) {
        let artifact = pb::TensorArtifact {
            job_id: spec.job_id.clone(),
            tensors,
            ..Default::default()
        };
        self.outputs.insert(spec.job_id.clone(), artifact);
    }

    /// Executes one job whose inputs are all present.
    pub fn execute(&mut self, spec: &JobSpec) -> Result<Vec<pb::Tensor>, WorkloadError> {
        let device = self.device.clone();
        self.execute_on(spec, &device)
    }

    /// Executes one job whose inputs are all present on `device`, which may
    /// differ from the trainer's: the same job from the same inputs on two
    /// backends.
    pub fn execute_on(
        &mut self,
        spec: &JobSpec,
        device: &Device,
    ) -> Result<Vec<pb::Tensor>, WorkloadError> {
        for source in &spec.inputs {
            if let Source::Owner(id) = source
                && !self.owner.contains_key(id)
            {
                let tensors = self.workload.owner_artifact(id)?;
                let artifact = pb::TensorArtifact {
                    job_id: id.clone(),
                    tensors,
                    ..Default::default()
                };
                self.owner.insert(id.clone(), artifact);
            }
        }
        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for source in &spec.inputs {
            inputs.push(match source {
                Source::Owner(id) => &self.owner[id],
                Source::Job(id) => self.outputs.get(id).ok_or_else(|| {
                    WorkloadError::Config(format!("{} reads {id}, which has not run", spec.job_id))
                })?,
            });
        }
        let job = crate::job_manifest(self.workload, spec);
        self.jobs += 1;
        self.workload.execute(&job, &inputs, device)
    }

    /// The output of job `id`, if it ran.
    pub fn output(&self, id: &str) -> Option<&pb::TensorArtifact> {
        self.outputs.get(id)
    }

    /// The parameter artifacts after `step`, in the workload's order.
    pub fn params_after(&self, step: u32) -> Vec<&pb::TensorArtifact> {
        self.workload
            .param_jobs(step, 0)
            .iter()
            .filter_map(|id| self.outputs.get(id))
            .collect()
    }
}
