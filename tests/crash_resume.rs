//! `kill -9` of the orchestrator, the validator and a miner's worker in the
//! middle of a run: after restarts the run finishes with parameters bitwise
//! equal to an undisturbed run of the same seed, and every job is credited
//! exactly once.

mod common;

use common::System;
use locus_protocol::{Expect, pb};
use locus_workloads::plan;

const STEPS: u32 = 3;
const SEED: &str = "--seed=77";

fn kill9(pid: u32) {
    // SAFETY: signal delivery to a process this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// The final parameters: the last step's outer artifact, tensors only.
fn final_params(sys: &System, run: &str) -> Vec<pb::Tensor> {
    let layout = sys.bucket.layout();
    let job = plan::job_id(STEPS - 1, pb::JobKind::Outer, 0, 0);
    let prefix = format!("{}/runs/{run}/artifacts/{job}/", layout.root());
    let keys = sys
        .rt
        .block_on(sys.bucket.list(&prefix, None))
        .expect("list");
    // The accepted attempt is the one the run state's last step consumed; with
    // one attempt per job in these runs there is exactly one artifact.
    assert!(!keys.is_empty(), "no final artifact");
    let artifact = sys
        .rt
        .block_on(
            sys.bucket
                .get::<pb::TensorArtifact>(&keys[0], Expect::AnySigner),
        )
        .expect("final artifact");
    artifact.into_inner().tensors
}

fn check_credited_once(sys: &System, run: &str) {
    let credited = sys.credited(run);
    assert_eq!(
        credited.len(),
        (STEPS * (1 + 4 + 3)) as usize,
        "every job credited: {credited:?}"
    );
    assert!(
        credited.values().all(|who| who.len() == 1),
        "never twice: {credited:?}"
    );
}

fn undisturbed() -> Vec<pb::Tensor> {
    let sys = System::new(2);
    let mut validator = sys.start_validator("validatord", "calm", &["--sample-rate=1.0"]);
    let mut miners: Vec<_> = (0..2).map(|i| sys.start_miner(i, &[])).collect();
    sys.wait_heartbeats(2);
    let mut orchestrator = sys.start_orchestrator(
        "orchestratord",
        "calm",
        &[&format!("--steps={STEPS}"), SEED],
    );
    assert!(orchestrator.wait(180).success());
    assert!(validator.wait(120).success());
    for m in miners.iter_mut() {
        m.terminate();
        m.wait(60);
    }
    check_credited_once(&sys, "calm");
    final_params(&sys, "calm")
}

#[test]
fn killed_daemons_resume_to_the_same_parameters() {
    let expected = undisturbed();

    let sys = System::new(2);
    let run = "storm";
    let steps = format!("--steps={STEPS}");
    let mut validator = sys.start_validator("validatord-1", run, &["--sample-rate=1.0"]);
    let mut miners: Vec<_> = (0..2).map(|i| sys.start_miner(i, &[])).collect();
    sys.wait_heartbeats(2);
    let mut orchestrator = sys.start_orchestrator("orchestratord-1", run, &[&steps, SEED]);

    // Step 0 done: kill -9 the orchestrator and the validator.
    sys.wait_until("step 0", 120, || {
        sys.run_state(run).is_some_and(|s| s.completed_steps >= 1)
    });
    kill9(orchestrator.child.id());
    kill9(validator.child.id());
    orchestrator.wait(10);
    validator.wait(10);
    // And kill -9 miner 0's worker process: its supervisor must restart it.
    let hotkey = sys.miners[0].1.hotkey();
    let heartbeat = sys
        .rt
        .block_on(sys.bucket.get::<pb::WorkerHeartbeat>(
            &sys.bucket.layout().heartbeat(&hotkey, 0),
            Expect::Signer(&hotkey),
        ))
        .expect("heartbeat");
    kill9(heartbeat.pid);

    let mut validator = sys.start_validator("validatord-2", run, &["--sample-rate=1.0"]);
    let mut orchestrator = sys.start_orchestrator("orchestratord-2", run, &[&steps, SEED]);
    assert!(
        orchestrator.wait(180).success(),
        "resumed orchestrator must finish the run"
    );
    assert!(
        validator.wait(120).success(),
        "resumed validator must finish scoring"
    );
    for m in miners.iter_mut() {
        m.terminate();
        assert!(m.wait(60).success());
    }
    assert!(
        miners[0].log_text().contains("worker exited; restarting"),
        "the supervisor must restart the killed worker"
    );
    assert!(
        orchestrator
            .log_text()
            .contains("resuming run from the bucket")
    );
    check_credited_once(&sys, run);
    let got = final_params(&sys, run);
    assert_eq!(
        got, expected,
        "parameters after crashes must equal the undisturbed run bit for bit"
    );
}
