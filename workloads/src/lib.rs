//! Locus workloads: what a job computes, what it costs, and how a replay is
//! compared with a miner's output.
//!
//! Miners call [`execute`] to run a job; validators call the same function to
//! replay it, then [`compare::compare_outputs`]. The orchestrator uses
//! [`plan`] to lay out each step's job DAG and [`cost`] to put a static cost
//! into every manifest.

pub mod compare;
pub mod cost;
pub mod device;
pub mod mlp;
pub mod plan;
pub mod rng;

use locus_protocol::pb;
use locus_protocol::tensor::TensorError;

pub use device::Device;

/// The only workload this build runs; the run manifest names it.
pub const WORKLOAD_MLP: &str = "mlp_round";

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("unknown job kind {0}")]
    UnknownKind(i32),
    #[error("unsupported workload {0:?}")]
    UnknownWorkload(String),
    #[error("bad workload configuration: {0}")]
    Config(String),
    #[error("bad input: {0}")]
    Input(#[from] TensorError),
    #[error("backend error: {0}")]
    Backend(String),
    #[error("device {0:?} is not available in this build: {1}")]
    Device(String, String),
}

/// Runs `job` of `run` on `device` and returns its output tensors.
pub fn execute(
    run: &pb::RunManifest,
    job: &pb::JobManifest,
    inputs: &[pb::TensorArtifact],
    device: &Device,
) -> Result<Vec<pb::Tensor>, WorkloadError> {
    if run.workload != WORKLOAD_MLP {
        return Err(WorkloadError::UnknownWorkload(run.workload.clone()));
    }
    let cfg = run
        .mlp
        .as_ref()
        .ok_or_else(|| WorkloadError::Config("run has no mlp configuration".into()))?;
    device.run_mlp(cfg, job, inputs)
}
