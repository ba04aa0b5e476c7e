//! Runs the MLP workload's DAG in process, without a bucket: the loss falls
//! step by step and every job is bitwise reproducible.

use std::collections::HashMap;

use locus_protocol::pb;
use locus_workloads::plan::{self, Source};
use locus_workloads::{Device, WORKLOAD_MLP, cost, execute, mlp};

fn run_manifest() -> pb::RunManifest {
    pb::RunManifest {
        run_id: "t".into(),
        workload: WORKLOAD_MLP.into(),
        steps: 5,
        mlp: Some(mlp::default_config(7)),
        ..Default::default()
    }
}

fn artifact(tensors: Vec<pb::Tensor>) -> pb::TensorArtifact {
    pb::TensorArtifact {
        tensors,
        ..Default::default()
    }
}

#[test]
fn eval_loss_falls_every_step_and_replays_match() {
    let run = run_manifest();
    let cfg = run.mlp.unwrap();
    let mut outputs: HashMap<String, pb::TensorArtifact> = HashMap::new();
    let initial = artifact(mlp::initial_artifact(&cfg));
    let mut losses = Vec::new();
    for step in 0..run.steps {
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
                job_id: spec.job_id.clone(),
                step,
                kind: spec.kind as i32,
                micro_batch: spec.micro_batch,
                replica: spec.replica,
                cost: Some(cost::mlp_cost(&cfg, spec.kind)),
                ..Default::default()
            };
            let out = execute(&run, &job, &inputs, &Device::Cpu).unwrap();
            let again = execute(&run, &job, &inputs, &Device::Cpu).unwrap();
            let spec_shapes: Vec<(String, Vec<usize>)> = out
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.shape.iter().map(|&d| d as usize).collect(),
                    )
                })
                .collect();
            assert_eq!(
                spec_shapes,
                mlp::output_spec(&cfg, spec.kind),
                "{}",
                spec.job_id
            );
            assert_eq!(out, again, "{} is not reproducible", spec.job_id);
            outputs.insert(spec.job_id.clone(), artifact(out));
        }
        let eval = &outputs[&plan::job_id(step, pb::JobKind::Eval, 0, 0)];
        losses.push(eval.tensor("eval_loss").unwrap().values[0]);
    }
    println!("eval losses: {losses:?}");
    for pair in losses.windows(2) {
        assert!(pair[1] < pair[0], "eval loss did not fall: {losses:?}");
    }
}
