//! Cross-backend replay, honest about floats: two Burn CPU backends
//! (ndarray and flex) run the same jobs from the same inputs. Their
//! results differ in the last bits, so a bitwise comparison would fail an
//! honest miner; the manifest's relative tolerance over every element passes
//! them, and one element corrupted beyond it fails.
//!
//! `cargo test -p locus-workloads --features flex --test cross_backend`

mod common;

use locus_protocol::pb;
use locus_protocol::tensor::F32Tensor;
use locus_workloads::compare::{Agreement, compare_outputs};
use locus_workloads::gpt::{self, GptPipe, TokenData, tokens::Tokens};
use locus_workloads::trainer::Trainer;
use locus_workloads::{CROSS_BACKEND_TOLERANCE, Device, Workload, mlp};

/// What two backends' outputs of every job of two steps came to.
#[derive(Default, Debug)]
struct Differences {
    jobs: usize,
    elements: usize,
    differing: usize,
    /// Largest |a - b| / max(|a|, |b|) of one element: large only where an
    /// element is small beside its tensor (the comparison measures those
    /// against the tensor's RMS).
    largest_relative: f32,
}

/// Runs two steps of `workload` on ndarray; every job is also run on flex
/// from the same inputs, and the two outputs are compared.
fn run_both(workload: &dyn Workload) -> Differences {
    let mut trainer = Trainer::new(workload, Device::Cpu);
    let mut found = Differences::default();
    for step in 0..2 {
        for spec in workload.step_jobs(step, 0, 0) {
            let ndarray = trainer.execute(&spec).expect("ndarray");
            let flex = trainer.execute_on(&spec, &Device::FlexCpu).expect("flex");
            // Each backend is deterministic on its own: a same-backend
            // replay can stay bitwise.
            let again = trainer.execute_on(&spec, &Device::FlexCpu).unwrap();
            assert_eq!(flex, again, "{}: flex differs from itself", spec.job_id);
            count(&ndarray, &flex, &mut found);
            // The validator's rule across backends: every element within
            // the manifest's relative tolerance.
            compare_outputs(
                &ndarray,
                &flex,
                Agreement::Relative(CROSS_BACKEND_TOLERANCE),
            )
            .unwrap_or_else(|e| panic!("{}: honest flex result refused: {e}", spec.job_id));
            corrupted_element_fails(&spec.job_id, &ndarray, &flex);
            // ndarray's result goes on, as a run on one backend would.
            trainer.record(&spec, ndarray);
        }
    }
    found
}

fn count(a: &[pb::Tensor], b: &[pb::Tensor], found: &mut Differences) {
    found.jobs += 1;
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (
            F32Tensor::from_pb(x).unwrap(),
            F32Tensor::from_pb(y).unwrap(),
        );
        for (p, q) in x.values.iter().zip(&y.values) {
            found.elements += 1;
            if p.to_bits() != q.to_bits() {
                found.differing += 1;
                let rel = (p - q).abs() / p.abs().max(q.abs()).max(1e-6);
                found.largest_relative = found.largest_relative.max(rel);
            }
        }
    }
}

/// One element of the claimed (flex) result moved beyond the tolerance:
/// the comparison fails and names it.
fn corrupted_element_fails(job: &str, replayed: &[pb::Tensor], claimed: &[pb::Tensor]) {
    let mut claimed = claimed.to_vec();
    let last = claimed.len() - 1;
    let mut t = F32Tensor::from_pb(&claimed[last]).unwrap();
    let i = t.values.len() / 2;
    t.values[i] = t.values[i] * (1.0 + 10.0 * CROSS_BACKEND_TOLERANCE) + 1e-3;
    let name = claimed[last].name.clone();
    claimed[last] = t.to_pb(&name);
    let err = compare_outputs(
        replayed,
        &claimed,
        Agreement::Relative(CROSS_BACKEND_TOLERANCE),
    )
    .expect_err(job);
    assert!(err.contains(&format!("element {i}")), "{job}: {err}");
}

#[test]
fn mlp_jobs_differ_across_cpu_backends_and_pass_the_tolerance() {
    let workload = mlp::MlpRound::new(mlp::default_config(11)).unwrap();
    let found = run_both(&workload);
    println!("mlp_round: {found:?}");
    assert!(
        found.differing > 0,
        "ndarray and flex agreed bitwise on all {} elements: the backends do not differ",
        found.elements
    );
}

#[test]
fn gpt_pipe_jobs_differ_across_cpu_backends_and_pass_the_tolerance() {
    // The compacted vocabulary: the shipped corpus's 14,325 ids.
    let tokens = Tokens::read(&common::corpus(), common::tiny().vocab).expect("the corpus");
    let cfg = gpt::with_compact_vocabulary(common::tiny(), &tokens);
    let data = TokenData::new(tokens, &cfg).unwrap();
    let workload = GptPipe::for_owner(cfg, data).unwrap();
    let found = run_both(&workload);
    println!("gpt_pipe: {found:?}");
    assert!(found.differing > 0, "{found:?}");
}
