//! `locus train`: a workload trained in this one process, without a
//! bucket, miners or validators.
//!
//! It runs exactly the jobs the orchestrator would plan, in dependency
//! order, so its final parameters are what a distributed run of the same
//! flags must end with, bit for bit on CPU (compare the fingerprints the two
//! print); its tokens per second are the baseline a distributed run's
//! throughput is measured against.

use std::time::Instant;

use clap::Args;
use locus_daemon::limits;
use locus_workloads::Device;
use locus_workloads::trainer::Trainer;
use orchestratord::workload::WorkloadArgs;

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training steps; at least 1.
    #[arg(long, env = "LOCUS_STEPS", default_value_t = 3, value_parser = limits::steps())]
    pub steps: u32,
    /// Where to compute: `cpu` or `cuda:N` (a `--features cuda` build).
    #[arg(long, env = "LOCUS_DEVICE", default_value = "cpu")]
    pub device: Device,
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    args.device.check_available().map_err(anyhow::Error::msg)?;
    let workload = args.workload.build()?;
    let mut trainer = Trainer::new(workload.as_ref(), args.device.clone());
    let per_step = workload.step_examples();
    println!(
        "training {} for {} steps on {} in one process ({per_step} examples per step)",
        workload.name(),
        args.steps,
        args.device
    );
    let started = Instant::now();
    let mut last_eval = None;
    for step in 0..args.steps {
        let t = Instant::now();
        let losses = trainer.step(step)?;
        let secs = t.elapsed().as_secs_f64();
        last_eval = losses.eval_loss.or(last_eval);
        let show = |l: Option<f32>| l.map_or("-".to_string(), |l| format!("{l:.5}"));
        println!(
            "step {}/{}: train loss {}, eval loss {}, {secs:.2} s ({:.0} examples/s)",
            step + 1,
            args.steps,
            show(losses.train_loss),
            show(losses.eval_loss),
            per_step as f64 / secs
        );
    }
    let total = started.elapsed().as_secs_f64();
    println!(
        "{} jobs in {total:.2} s: {:.0} examples/s",
        trainer.jobs,
        per_step as f64 * args.steps as f64 / total
    );
    if let Some(bars) = args.workload.loss_bars()? {
        println!("{}", bars.report(last_eval));
    }
    let params = trainer.params_after(args.steps - 1);
    println!(
        "final parameters: {}",
        crate::audit::fingerprint(params.iter().flat_map(|a| &a.tensors))
    );
    Ok(())
}
