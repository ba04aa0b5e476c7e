//! A restarted worker takes up its prefix after the assignments whose
//! leases ran out long ago, instead of reading every assignment it was
//! ever given.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use locus_daemon::Shutdown;
use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, Keypair, pb};
use locus_workloads::Device;
use minerd::worker::{RESUME_MARGIN, Worker, WorkerConfig};
use object_store::memory::InMemory;

#[tokio::test]
async fn a_restarted_worker_reads_its_recent_assignments_not_its_history() {
    let store = Arc::new(InMemory::new());
    let owner_bucket = Bucket::from_store(store.clone(), "memory://", 1);
    let owner = Keypair::generate();
    let miner = Keypair::generate();
    let layout = owner_bucket.layout().clone();
    let long_ago = unix_ms() - 2 * RESUME_MARGIN.as_millis() as u64;
    let history = 200;
    for seq in 0..history {
        let assignment = pb::Assignment {
            run_id: "old-run".into(),
            job_id: format!("s{seq:05}-forward"),
            hotkey: miner.hotkey().to_bytes().to_vec(),
            worker: 0,
            issued_unix_ms: long_ago,
            deadline_unix_ms: long_ago + 60_000,
            ..Default::default()
        };
        owner_bucket
            .put(
                &layout.assignment(&miner.hotkey(), 0, seq),
                &assignment,
                &owner,
            )
            .await
            .expect("writing an assignment");
    }
    // A stranger's object above them is skipped, not taken as a stop.
    owner_bucket
        .put(
            &layout.assignment(&miner.hotkey(), 0, history),
            &pb::Assignment::default(),
            &Keypair::generate(),
        )
        .await
        .expect("planting");

    let bucket = Bucket::from_store(store, "memory://", 1);
    let cfg = WorkerConfig {
        index: 0,
        device: Device::Cpu,
        owner: owner.hotkey(),
        poll_min: Duration::from_millis(20),
        poll_max: Duration::from_millis(40),
        heartbeat_every: Duration::from_secs(60),
        clock: locus_protocol::time::Clock::system(),
    };
    let mut worker = Worker::new(bucket.clone(), miner, cfg);
    let shutdown = Shutdown::default();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.trigger();
    });
    worker.run(&shutdown).await.expect("the worker runs");
    let gets = bucket.counts().gets.load(Relaxed);
    assert!(
        gets <= 6,
        "a restarted worker read {gets} objects for {history} stale assignments"
    );
    assert_eq!(worker.jobs_done(), 0);
}
