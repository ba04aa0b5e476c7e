//! The job DAG of a step as plain data, shared by every workload.
//!
//! The orchestrator publishes a job as soon as every [`Source`] it reads has
//! a result; nothing here touches the bucket.

use locus_protocol::pb::JobKind;

/// Where one input of a job comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// An artifact the owner writes (initial parameters, data), computed by
    /// the workload's `owner_artifact` from the signed run manifest.
    Owner(String),
    /// The accepted output of another job.
    Job(String),
}

/// One job of the DAG before it has a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    pub job_id: String,
    pub step: u32,
    pub kind: JobKind,
    pub micro_batch: u32,
    pub replica: u32,
    /// Pipeline stage (0 for workloads without stages).
    pub stage: u32,
    pub inputs: Vec<Source>,
}

/// The id `id` takes in rewind generation `generation`: a rewound step is
/// planned again under new ids, so nothing of the thrown-away attempt
/// (manifests, receipts, verdicts) is mistaken for the new one.
pub fn in_generation(id: String, generation: u32) -> String {
    if generation == 0 {
        id
    } else {
        format!("{id}-g{generation}")
    }
}
