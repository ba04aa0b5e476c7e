//! The size a grant signs for each job's output artifact against the real
//! outputs of every job kind, sealed with the real ids.

use std::collections::HashMap;

use locus_protocol::envelope::seal;
use locus_protocol::tensor::F32Tensor;
use locus_protocol::{Keypair, pb};
use locus_workloads::plan::{self, Source};
use locus_workloads::{Device, WORKLOAD_MLP, execute, mlp};

fn check(cfg: pb::MlpConfig, run_id: &str, steps: u32) {
    let run = pb::RunManifest {
        run_id: run_id.into(),
        workload: WORKLOAD_MLP.into(),
        steps,
        mlp: Some(cfg),
        ..Default::default()
    };
    let key = Keypair::generate();
    let layout = locus_protocol::Layout::new(1);
    let initial = pb::TensorArtifact {
        tensors: mlp::initial_artifact(&cfg),
        ..Default::default()
    };
    let mut outputs: HashMap<String, pb::TensorArtifact> = HashMap::new();
    let mut kinds = Vec::new();
    for step in 0..steps {
        for spec in plan::step_jobs(&cfg, step) {
            let inputs: Vec<pb::TensorArtifact> = spec
                .inputs
                .iter()
                .map(|s| match s {
                    Source::Initial => initial.clone(),
                    Source::Job(id) => outputs[id].clone(),
                })
                .collect();
            let job = pb::JobManifest {
                run_id: run_id.into(),
                job_id: spec.job_id.clone(),
                step,
                kind: spec.kind as i32,
                micro_batch: spec.micro_batch,
                replica: spec.replica,
                ..Default::default()
            };
            let tensors = execute(&run, &job, &inputs, &Device::Cpu).unwrap();
            // Attempts across the one- and two-byte varint widths.
            for attempt in [1, 127, 128, 70_000] {
                let artifact = pb::TensorArtifact {
                    run_id: run_id.into(),
                    job_id: spec.job_id.clone(),
                    attempt,
                    tensors: tensors.clone(),
                };
                let key_name = layout.artifact(run_id, &spec.job_id, attempt);
                let real = seal(&artifact, &key_name, &key).bytes.len() as u64;
                let bound =
                    mlp::sealed_output_bound(&cfg, spec.kind, run_id, &spec.job_id, attempt);
                assert_eq!(real + mlp::OUTPUT_SLACK, bound, "{}", spec.job_id);
                // Zero-valued tensors of the same shapes seal to the same size.
                let zeros = pb::TensorArtifact {
                    tensors: mlp::output_spec(&cfg, spec.kind)
                        .iter()
                        .map(|(n, shape)| {
                            F32Tensor::new(shape.clone(), vec![0.0; shape.iter().product()])
                                .to_pb(n)
                        })
                        .collect(),
                    ..artifact
                };
                assert_eq!(seal(&zeros, &key_name, &key).bytes.len() as u64, real);
                if attempt == 1 && step == 0 {
                    println!(
                        "width {}, {}: sealed output {real} bytes",
                        cfg.width, spec.job_id
                    );
                }
            }
            kinds.push(spec.kind);
            outputs.insert(
                spec.job_id.clone(),
                pb::TensorArtifact {
                    tensors,
                    ..Default::default()
                },
            );
        }
    }
    for kind in [
        pb::JobKind::Forward,
        pb::JobKind::Inner,
        pb::JobKind::Reduce,
        pb::JobKind::Outer,
        pb::JobKind::Eval,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} not covered");
    }
}

#[test]
fn output_bound_matches_real_outputs_of_every_kind() {
    check(mlp::default_config(7), "r", 2);
    // Wider, with forward outputs whose lengths take three-byte varints, and
    // a run id at its length limit.
    let cfg = pb::MlpConfig {
        width: 40,
        batch_size: 150,
        ..mlp::default_config(3)
    };
    check(cfg, &"r".repeat(64), 1);
}
