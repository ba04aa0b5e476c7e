//! Runs the MLP workload's DAG in process, without a bucket: the loss falls
//! step by step and every job is bitwise reproducible.

use locus_protocol::pb;
use locus_workloads::trainer::Trainer;
use locus_workloads::{Device, WORKLOAD_MLP, for_run, mlp};

#[test]
fn mlp_eval_loss_falls_every_step_and_runs_repeat_bitwise() {
    let run = pb::RunManifest {
        run_id: "t".into(),
        workload: WORKLOAD_MLP.into(),
        steps: 5,
        mlp: Some(mlp::default_config(7)),
        ..Default::default()
    };
    let workload = for_run(&run).unwrap();
    let train = || {
        let mut trainer = Trainer::new(workload.as_ref(), Device::Cpu);
        let losses: Vec<f32> = (0..run.steps)
            .map(|step| trainer.step(step).unwrap().eval_loss.unwrap())
            .collect();
        let params: Vec<pb::TensorArtifact> = trainer
            .params_after(run.steps - 1)
            .into_iter()
            .cloned()
            .collect();
        (losses, params)
    };
    let (losses, params) = train();
    println!("eval losses: {losses:?}");
    for pair in losses.windows(2) {
        assert!(pair[1] < pair[0], "eval loss did not fall: {losses:?}");
    }
    assert_eq!(params.len(), 1);
    assert_eq!(train(), (losses, params), "a second run differs");
}
