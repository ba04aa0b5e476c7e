//! A miner that hangs (SIGSTOP) holding assignments: its leases expire, its
//! jobs go to other miners, the run finishes, every job is credited exactly
//! once, and when it wakes up it does not execute the expired assignments.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::Proc;
use locus_protocol::{Bucket, Expect, Keypair, pb};

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
    let work = tempfile::tempdir().expect("tempdir");
    let (bucket_dir, logs) = (work.path().join("bucket"), work.path().join("logs"));
    std::fs::create_dir_all(&logs).expect("logs");
    let key = |name: &str| {
        let path = work.path().join(format!("{name}.json"));
        let k = Keypair::generate();
        k.write_key_file(&path).expect("key");
        (path.display().to_string(), k)
    };
    let (owner_file, owner) = key("owner");
    let (validator_file, validator) = key("validator");
    let bucket_arg = bucket_dir.display().to_string();
    let base = |extra: Vec<String>| -> Vec<String> {
        let mut v = vec![format!("--bucket={bucket_arg}"), "--netuid=3".into()];
        v.extend(extra);
        v
    };
    let owner_ss58 = owner.hotkey().ss58();
    let mut validatord = Proc::start(
        "validatord",
        "validatord",
        &base(vec![
            format!("--key={validator_file}"),
            format!("--owner={owner_ss58}"),
            "--sample-rate=1.0".into(),
            format!("--exit-after-run={RUN}"),
        ]),
        &logs,
    );
    let mut miners: Vec<(Proc, Keypair)> = (0..3)
        .map(|i| {
            let (file, k) = key(&format!("miner{i}"));
            let p = Proc::start(
                "minerd",
                &format!("miner{i}"),
                &base(vec![
                    format!("--hotkey-file={file}"),
                    format!("--owner={owner_ss58}"),
                    "--heartbeat-secs=1".into(),
                ]),
                &logs,
            );
            (p, k)
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let bucket = Bucket::open(&bucket_arg, 3).expect("bucket");
    let layout = bucket.layout().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let hung_hotkey = miners[0].1.hotkey();
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
    let supervisor_pid = miners[0].0.child.id();
    signal(worker_pid, libc::SIGSTOP);
    signal(supervisor_pid, libc::SIGSTOP);
    let mut orchestratord = Proc::start(
        "orchestratord",
        "orchestratord",
        &base(vec![
            format!("--owner-key={owner_file}"),
            format!("--run-id={RUN}"),
            format!("--steps={STEPS}"),
            format!("--validator={}", validator.hotkey()),
            "--lease-secs=3".into(),
            "--heartbeat-ttl-secs=4".into(),
        ]),
        &logs,
    );
    assert!(
        orchestratord.wait(180).success(),
        "run must finish without the hung miner"
    );
    assert!(validatord.wait(120).success());
    // Wake the hung miner: it must not run what it was assigned long ago.
    signal(supervisor_pid, libc::SIGCONT);
    signal(worker_pid, libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(3));
    for (m, _) in miners.iter_mut() {
        m.terminate();
        assert!(m.wait(60).success(), "{} must stop cleanly", m.name);
    }

    let orchestrator_log = orchestratord.log_text();
    assert!(
        orchestrator_log.contains("lease expired; reassigning"),
        "{orchestrator_log}"
    );
    let hung_log = miners[0].0.log_text();
    assert!(
        hung_log.contains("lease expired before the job started") && !hung_log.contains("job done"),
        "the hung miner must skip its expired assignments:\n{hung_log}"
    );
    // Every job credited exactly once, never to the hung miner.
    let me = validator.hotkey();
    let mut credited: HashMap<String, u32> = HashMap::new();
    for key in rt
        .block_on(bucket.list(&layout.verdicts(RUN), None))
        .expect("list")
    {
        let v = rt
            .block_on(bucket.get::<pb::Verdict>(&key, Expect::Signer(&me)))
            .expect("verdict");
        let outcome = pb::VerdictOutcome::try_from(v.outcome).expect("outcome");
        // A redo of a credited job passes with no units: it earns nothing.
        if matches!(
            outcome,
            pb::VerdictOutcome::Verified | pb::VerdictOutcome::Unsampled
        ) && v.compute_units > 0
        {
            assert_ne!(
                v.hotkey,
                hung_hotkey.to_bytes().to_vec(),
                "hung miner credited for {}",
                v.job_id
            );
            *credited.entry(v.job_id.clone()).or_default() += 1;
        }
    }
    let jobs_per_step = 1 + 4 + 3;
    assert_eq!(
        credited.len(),
        (STEPS * jobs_per_step) as usize,
        "{credited:?}"
    );
    assert!(credited.values().all(|n| *n == 1), "{credited:?}");
}
