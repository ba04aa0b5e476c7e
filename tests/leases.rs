//! A miner that hangs (SIGSTOP) holding assignments: its leases expire, its
//! jobs go to other miners, the run finishes, every job is credited exactly
//! once, and when it wakes up it does not execute the expired assignments.

mod common;

use std::time::{Duration, Instant};

use common::{Proc, System};
use locus_protocol::{Expect, pb};

const RUN: &str = "leases";
const STEPS: u32 = 2;

fn signal(pid: u32, sig: i32) {
    // SAFETY: signal delivery to processes this test started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[test]
fn hung_miner_loses_its_leases_and_jobs_are_credited_once() {
    let sys = System::new(3);
    let mut validatord = sys.start_validator("validatord", RUN, &["--sample-rate=1.0"]);
    let mut miners: Vec<Proc> = (0..3).map(|i| sys.start_miner(i, &[])).collect();
    let (rt, bucket) = (&sys.rt, &sys.bucket);
    let layout = bucket.layout().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let hung_hotkey = sys.miners[0].hotkey();
    // Wait for all heartbeats, and learn the hung miner's worker pid from its own.
    let worker_pid = loop {
        assert!(Instant::now() < deadline, "no heartbeats");
        let n = rt
            .block_on(bucket.list(&layout.heartbeats(), None))
            .map(|k| k.len())
            .unwrap_or(0);
        let hb = rt
            .block_on(bucket.get_opt::<pb::WorkerHeartbeat>(
                &layout.heartbeat(&hung_hotkey, 0),
                Expect::Signer(&hung_hotkey),
            ))
            .ok()
            .flatten();
        if let (3, Some(hb)) = (n, hb) {
            break hb.pid;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let supervisor_pid = miners[0].child.id();
    signal(worker_pid, libc::SIGSTOP);
    signal(supervisor_pid, libc::SIGSTOP);
    let steps = format!("--steps={STEPS}");
    let mut orchestratord = sys.start_orchestrator(
        "orchestratord",
        RUN,
        &[&steps, "--lease-secs=3", "--heartbeat-ttl-secs=4"],
    );
    assert!(
        orchestratord.wait(180).success(),
        "run must finish without the hung miner"
    );
    assert!(validatord.wait(120).success());
    // Wake the hung miner: it must not run what it was assigned long ago.
    signal(supervisor_pid, libc::SIGCONT);
    signal(worker_pid, libc::SIGCONT);
    // On a loaded machine the woken worker may take seconds to get going;
    // once it has skipped an assignment, give it time to (wrongly) run one.
    let woken = Instant::now();
    while !miners[0]
        .log_text()
        .contains("lease expired before the job started")
        && woken.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    for m in miners.iter_mut() {
        m.terminate();
        assert!(m.wait(60).success(), "{} must stop cleanly", m.name);
    }

    let orchestrator_log = orchestratord.log_text();
    assert!(
        orchestrator_log.contains("lease expired; reassigning"),
        "{orchestrator_log}"
    );
    let hung_log = miners[0].log_text();
    assert!(
        hung_log.contains("lease expired before the job started") && !hung_log.contains("job done"),
        "the hung miner must skip its expired assignments:\n{hung_log}"
    );
    // Every job credited exactly once, never to the hung miner.
    let credited = sys.credited(RUN);
    for (job, hotkeys) in &credited {
        assert_eq!(hotkeys.len(), 1, "{job} credited {} times", hotkeys.len());
        assert_ne!(
            hotkeys[0],
            hung_hotkey.to_bytes().to_vec(),
            "hung miner credited for {job}"
        );
    }
    let jobs_per_step = 1 + 4 + 3;
    assert_eq!(credited.len(), (STEPS * jobs_per_step) as usize);
}
