//! Locus workloads: what a job computes, what it costs, and how a replay is
//! compared with a miner's output.
//!
//! A workload is one module implementing [`Workload`]: it plans a step's
//! job DAG, prices each job statically, executes a job and names the
//! outputs a job must write. The run manifest names the workload, and
//! [`for_run`] is the one place that maps the name to its implementation:
//! the daemons hold a `dyn Workload` and never branch on which it is.

pub mod compare;
pub mod cost;
pub mod device;
pub mod gpt;
pub mod mlp;
pub mod plan;
pub mod rng;
pub mod trainer;

use std::sync::Arc;

use locus_protocol::pb::{self, JobKind};
use locus_protocol::tensor::TensorError;

pub use device::Device;
pub use plan::{JobSpec, Source};

/// The round-style teacher/student MLP workload.
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
    #[error("owner artifact {0:?} is not one this workload writes")]
    UnknownOwnerArtifact(String),
}

/// Names and shapes of the tensors of an artifact, in order.
pub type OutputSpec = Vec<(String, Vec<usize>)>;

/// One workload: everything the daemons need to know about what a run
/// computes. Implementations are pure (no I/O) and deterministic on CPU.
///
/// Conventions every implementation keeps, which the daemons rely on:
/// - each step ends with exactly one [`JobKind::Eval`] job; the step is done
///   when its result is accepted;
/// - an output tensor named `train_loss` or `eval_loss` (one element) is the
///   step's training or held-out loss, shown in the run state.
pub trait Workload: Send + Sync {
    /// The name the run manifest carries.
    fn name(&self) -> &'static str;

    /// Writes the workload's name and configuration into a run manifest
    /// the owner is about to sign (or compares with the one it signed).
    fn configure(&self, run: &mut pb::RunManifest);

    /// The jobs of `step` in rewind generation `generation`, reading what
    /// the previous step's generation `prev_generation` produced, in
    /// dependency order.
    fn step_jobs(&self, step: u32, generation: u32, prev_generation: u32) -> Vec<JobSpec>;

    /// The jobs whose accepted outputs are the model's parameters after
    /// `step` (in generation `generation`), in the workload's order.
    fn param_jobs(&self, step: u32, generation: u32) -> Vec<String>;

    /// The tensors of owner-written artifact `id` (initial parameters,
    /// data), which jobs read as [`Source::Owner`]. Deterministic: the owner
    /// can always write it again.
    fn owner_artifact(&self, id: &str) -> Result<Vec<pb::Tensor>, WorkloadError>;

    /// Training examples one step consumes (tokens for a language model,
    /// rows for the MLP): the unit of throughput figures.
    fn step_examples(&self) -> u64;

    /// The static cost of a job, written into its manifest.
    fn cost(&self, kind: JobKind, stage: u32) -> pb::StaticCost;

    /// Names and shapes of the tensors a job writes: every reader checks an
    /// artifact's structure against it before using or crediting it.
    fn output_spec(&self, kind: JobKind, stage: u32) -> OutputSpec;

    /// The trained model in `parts` (the artifacts of [`param_jobs`], in
    /// order) under its export names, without optimizer state: what
    /// `locus export` writes.
    ///
    /// [`param_jobs`]: Workload::param_jobs
    fn export(&self, parts: &[pb::TensorArtifact]) -> Result<ExportedModel, WorkloadError>;

    /// Runs `job` on `device`. `inputs` are the artifacts the manifest
    /// lists, in manifest order.
    fn execute(
        &self,
        job: &pb::JobManifest,
        inputs: &[&pb::TensorArtifact],
        device: &Device,
    ) -> Result<Vec<pb::Tensor>, WorkloadError>;
}

/// A trained model as `locus export` writes it.
#[derive(Clone, Debug, Default)]
pub struct ExportedModel {
    /// f32 parameters under their export names, without optimizer state.
    pub tensors: Vec<pb::Tensor>,
    /// Integer tables a user needs beside them, by name (a compacted
    /// vocabulary's GPT-2 ids).
    pub ids: Vec<(String, Vec<u32>)>,
}

/// The workload a run manifest names, with its configuration checked
/// before anything is allocated from it.
pub fn for_run(run: &pb::RunManifest) -> Result<Arc<dyn Workload>, WorkloadError> {
    match run.workload.as_str() {
        WORKLOAD_MLP => {
            let cfg = run
                .mlp
                .ok_or_else(|| WorkloadError::Config("run has no mlp configuration".into()))?;
            Ok(Arc::new(mlp::MlpRound::new(cfg)?))
        }
        gpt::WORKLOAD_GPT => {
            let cfg = run
                .gpt
                .clone()
                .ok_or_else(|| WorkloadError::Config("run has no gpt configuration".into()))?;
            Ok(Arc::new(gpt::GptPipe::new(cfg)?))
        }
        other => Err(WorkloadError::UnknownWorkload(other.to_string())),
    }
}

/// Runs `job` of `run` on `device` and returns its output tensors.
pub fn execute(
    run: &pb::RunManifest,
    job: &pb::JobManifest,
    inputs: &[&pb::TensorArtifact],
    device: &Device,
) -> Result<Vec<pb::Tensor>, WorkloadError> {
    for_run(run)?.execute(job, inputs, device)
}

/// The kind of a manifest's job, or an error naming the unknown value.
pub fn job_kind(job: &pb::JobManifest) -> Result<JobKind, WorkloadError> {
    JobKind::try_from(job.kind).map_err(|_| WorkloadError::UnknownKind(job.kind))
}

/// Checks that `tensors` have exactly the names and shapes `expected`
/// lists: the structural check every reader applies before using or
/// crediting a result.
pub fn check_outputs(expected: &OutputSpec, tensors: &[pb::Tensor]) -> Result<(), String> {
    let got: OutputSpec = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.shape.iter().map(|&d| d as usize).collect(),
            )
        })
        .collect();
    if &got == expected {
        return Ok(());
    }
    let names = |v: &OutputSpec| {
        let mut shown: Vec<String> = v.iter().take(8).map(|(n, s)| format!("{n}{s:?}")).collect();
        if v.len() > 8 {
            shown.push(format!("… {} more", v.len() - 8));
        }
        shown.join(", ")
    };
    Err(format!(
        "outputs are [{}], the job writes [{}]",
        names(&got),
        names(expected)
    ))
}

/// Room a grant leaves above the exact sealed size of an output artifact.
pub const OUTPUT_SLACK: u64 = 64;

/// The size a grant signs for the output artifact of attempt `attempt` of
/// job `job_id` of run `run_id` whose tensors are `spec`: the sealed
/// envelope of a [`pb::TensorArtifact`] with these ids, plus
/// [`OUTPUT_SLACK`]. Elements are fixed-width, so the size does not depend
/// on the values; a miner's real output seals to exactly the size without
/// the slack.
pub fn sealed_output_bound(spec: &OutputSpec, run_id: &str, job_id: &str, attempt: u32) -> u64 {
    locus_protocol::tensor::sealed_artifact_len(run_id, job_id, attempt, spec) as u64 + OUTPUT_SLACK
}

/// Relative tolerance a manifest allows when miner and replayer run
/// different backends (same-backend replays must match bitwise).
pub const CROSS_BACKEND_TOLERANCE: f32 = 1e-4;

/// The manifest of `spec` without the bucket's part (run id and inputs,
/// which the orchestrator fills in): ids, kind, position in the DAG and the
/// static cost.
pub fn job_manifest(workload: &dyn Workload, spec: &JobSpec) -> pb::JobManifest {
    pb::JobManifest {
        job_id: spec.job_id.clone(),
        step: spec.step,
        kind: spec.kind as i32,
        micro_batch: spec.micro_batch,
        replica: spec.replica,
        stage: spec.stage,
        cost: Some(workload.cost(spec.kind, spec.stage)),
        cross_backend_tolerance: CROSS_BACKEND_TOLERANCE,
        ..Default::default()
    }
}
