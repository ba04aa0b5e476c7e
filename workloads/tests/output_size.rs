//! The size a grant signs for each job's output artifact against the real
//! outputs of every job kind, sealed with the real ids.

use locus_protocol::envelope::seal;
use locus_protocol::tensor::F32Tensor;
use locus_protocol::{Keypair, pb};
use locus_workloads::trainer::Trainer;
use locus_workloads::{
    Device, OUTPUT_SLACK, WORKLOAD_MLP, Workload, for_run, mlp, sealed_output_bound,
};

fn check(run: pb::RunManifest, steps: u32) -> Vec<pb::JobKind> {
    let workload = for_run(&run).unwrap();
    check_with(workload.as_ref(), run, steps)
}

fn check_with(workload: &dyn Workload, run: pb::RunManifest, steps: u32) -> Vec<pb::JobKind> {
    let run_id = run.run_id.as_str();
    let key = Keypair::generate();
    let layout = locus_protocol::Layout::new(1);
    let mut trainer = Trainer::new(workload, Device::Cpu);
    let mut kinds = Vec::new();
    for step in 0..steps {
        for spec in workload.step_jobs(step, 0, 0) {
            let tensors = trainer.execute(&spec).unwrap();
            let expected = workload.output_spec(spec.kind, spec.stage);
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
                let bound = sealed_output_bound(&expected, run_id, &spec.job_id, attempt);
                assert_eq!(real + OUTPUT_SLACK, bound, "{}", spec.job_id);
                // Zero-valued tensors of the same shapes seal to the same size.
                let zeros = pb::TensorArtifact {
                    tensors: expected
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
                    println!("{}: sealed output {real} bytes", spec.job_id);
                }
            }
            kinds.push(spec.kind);
            trainer.record(&spec, tensors);
        }
    }
    kinds
}

fn mlp_run(run_id: &str, cfg: pb::MlpConfig) -> pb::RunManifest {
    pb::RunManifest {
        run_id: run_id.into(),
        workload: WORKLOAD_MLP.into(),
        mlp: Some(cfg),
        ..Default::default()
    }
}

#[test]
fn mlp_output_bound_matches_real_outputs_of_every_kind() {
    let kinds = check(mlp_run("r", mlp::default_config(7)), 2);
    for kind in [
        pb::JobKind::Forward,
        pb::JobKind::Inner,
        pb::JobKind::Reduce,
        pb::JobKind::Outer,
        pb::JobKind::Eval,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} not covered");
    }
    // Wider, with forward outputs whose lengths take three-byte varints, and
    // a run id at its length limit.
    let cfg = pb::MlpConfig {
        width: 40,
        batch_size: 150,
        ..mlp::default_config(3)
    };
    check(mlp_run(&"r".repeat(64), cfg), 1);
}

#[test]
fn gpt_output_bound_matches_real_outputs_of_every_kind() {
    use locus_workloads::gpt::{self, GptPipe, TokenData, tokens::Tokens};
    let cfg = pb::GptConfig {
        vocab: 211,
        d_model: 8,
        heads: 2,
        d_ff: 12,
        seq_len: 6,
        batch: 2,
        stages: 3,
        micro_batches: 2,
        eval_sequences: 3,
        ..gpt::default_config(1)
    };
    let ids = (0..4000u32).map(|i| (i * 7919) % 211).collect();
    let data = TokenData::new(Tokens::from_ids(ids, 211).unwrap(), &cfg).unwrap();
    let pipe = GptPipe::for_owner(cfg, data).unwrap();
    let mut run = pb::RunManifest {
        run_id: "g".into(),
        ..Default::default()
    };
    locus_workloads::Workload::configure(&pipe, &mut run);
    // The owner's side has the data; execution only needs the manifest.
    let kinds = check_with(&pipe, run, 2);
    for kind in [
        pb::JobKind::Forward,
        pb::JobKind::Backward,
        pb::JobKind::Outer,
        pb::JobKind::Eval,
    ] {
        assert!(kinds.contains(&kind), "{kind:?} not covered");
    }
}
