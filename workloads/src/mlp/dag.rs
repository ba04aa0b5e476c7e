//! The job DAG of one step of the MLP workload.

use locus_protocol::pb::{JobKind, MlpConfig};

use crate::plan::{JobSpec, Source, in_generation};

/// The artifact id of the owner-written initial parameters.
pub const INITIAL: &str = "init";

pub fn job_id(step: u32, kind: JobKind, micro_batch: u32, replica: u32) -> String {
    match kind {
        JobKind::Inner => format!("s{step:05}-inner-m{micro_batch:02}-r{replica:02}"),
        JobKind::Forward => format!("s{step:05}-forward"),
        JobKind::Reduce => format!("s{step:05}-reduce"),
        JobKind::Outer => format!("s{step:05}-outer"),
        JobKind::Eval => format!("s{step:05}-eval"),
        JobKind::Unspecified | JobKind::Backward => format!("s{step:05}-unspecified"),
    }
}

/// The id of a job in generation `generation` of its step.
pub fn job_id_in(
    generation: u32,
    step: u32,
    kind: JobKind,
    micro_batch: u32,
    replica: u32,
) -> String {
    in_generation(job_id(step, kind, micro_batch, replica), generation)
}

/// Parameters (and outer momentum) in force at the start of `step`.
fn params_source_in(step: u32, prev_generation: u32) -> Source {
    if step == 0 {
        Source::Owner(INITIAL.into())
    } else {
        Source::Job(job_id_in(prev_generation, step - 1, JobKind::Outer, 0, 0))
    }
}

fn spec(
    generation: u32,
    step: u32,
    kind: JobKind,
    micro_batch: u32,
    replica: u32,
    inputs: Vec<Source>,
) -> JobSpec {
    JobSpec {
        job_id: job_id_in(generation, step, kind, micro_batch, replica),
        step,
        kind,
        micro_batch,
        replica,
        stage: 0,
        inputs,
    }
}

/// All jobs of `step`, in dependency order.
pub fn step_jobs(cfg: &MlpConfig, step: u32) -> Vec<JobSpec> {
    step_jobs_in(cfg, step, 0, 0)
}

/// The jobs of `step` in generation `generation`, reading the parameters
/// the previous step's generation `prev_generation` produced.
pub fn step_jobs_in(
    cfg: &MlpConfig,
    step: u32,
    generation: u32,
    prev_generation: u32,
) -> Vec<JobSpec> {
    let g = generation;
    let params = params_source_in(step, prev_generation);
    let forward = spec(g, step, JobKind::Forward, 0, 0, vec![params.clone()]);
    let forward_out = Source::Job(forward.job_id.clone());
    let mut jobs = vec![forward];
    let mut deltas = Vec::new();
    for m in 0..cfg.micro_batches {
        for r in 0..cfg.replicas {
            let inner = spec(
                g,
                step,
                JobKind::Inner,
                m,
                r,
                vec![params.clone(), forward_out.clone()],
            );
            deltas.push(Source::Job(inner.job_id.clone()));
            jobs.push(inner);
        }
    }
    let reduce = spec(g, step, JobKind::Reduce, 0, 0, deltas);
    let outer = spec(
        g,
        step,
        JobKind::Outer,
        0,
        0,
        vec![params, Source::Job(reduce.job_id.clone())],
    );
    let eval = spec(
        g,
        step,
        JobKind::Eval,
        0,
        0,
        vec![Source::Job(outer.job_id.clone())],
    );
    jobs.extend([reduce, outer, eval]);
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mlp::default_config;

    #[test]
    fn dag_shape_and_order() {
        let cfg = default_config(1);
        let jobs = step_jobs(&cfg, 3);
        assert_eq!(jobs.len(), 1 + 4 + 3);
        assert_eq!(jobs[0].inputs, vec![Source::Job("s00002-outer".into())]);
        let reduce = jobs.iter().find(|j| j.kind == JobKind::Reduce).unwrap();
        assert_eq!(reduce.inputs.len(), 4);
        // Every input is produced by an earlier job of the step or a previous step.
        for (i, job) in jobs.iter().enumerate() {
            for input in &job.inputs {
                if let Source::Job(id) = input
                    && id.starts_with("s00003")
                {
                    assert!(
                        jobs[..i].iter().any(|j| &j.job_id == id),
                        "{id} before {}",
                        job.job_id
                    );
                }
            }
        }
        assert_eq!(
            step_jobs(&cfg, 0)[0].inputs,
            vec![Source::Owner(INITIAL.into())]
        );
    }

    #[test]
    fn a_rewound_step_gets_new_ids_and_reads_its_own_generation() {
        let cfg = default_config(1);
        let jobs = step_jobs_in(&cfg, 3, 2, 1);
        assert!(jobs.iter().all(|j| j.job_id.ends_with("-g2")));
        assert_eq!(jobs[0].inputs, vec![Source::Job("s00002-outer-g1".into())]);
        assert_eq!(step_jobs_in(&cfg, 3, 0, 0), step_jobs(&cfg, 3));
    }
}
