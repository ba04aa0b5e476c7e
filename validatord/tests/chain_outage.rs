//! A Subtensor node that takes connections and never answers must not stop
//! judging: the validator (in process, over a local-directory bucket) keeps
//! writing verdicts while its weight push hangs, retries the push after a
//! timeout, and stops promptly on shutdown. The "node" is a loopback TCP
//! listener that accepts and holds every socket without a byte in reply.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locus_chain::{Mode, ValidatorSigner};
use locus_daemon::Shutdown;
use locus_protocol::pb;
use locus_protocol::{Bucket, Expect, Hotkey, Keypair};
use locus_workloads::Device;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use validatord::driver::{Settings, Validator};
use validatord::weights::{ChainTarget, PushPolicy};

mod common;

use common::Job;

/// Generous bound on one `tick()`: a pass over two one-receipt runs takes
/// milliseconds; a pass that waited for the node would never end.
const TICK_LIMIT: Duration = Duration::from_secs(30);

/// A node that accepts connections and never answers.
struct SilentNode {
    endpoint: String,
    accepted: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

async fn silent_node() -> SilentNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("ws://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let held = Arc::new(Mutex::new(Vec::new()));
    let (count, sockets) = (accepted.clone(), held.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            sockets.lock().unwrap().push(socket);
        }
    });
    SilentNode {
        endpoint,
        accepted,
        held,
    }
}

impl SilentNode {
    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until the node has taken `n` connections, or `limit` passes.
    async fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.connections() < n {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// A bucket with runs whose one forward job is assigned to `miner`.
struct World {
    _dir: tempfile::TempDir,
    bucket: Bucket,
    owner: Keypair,
    miner: Keypair,
    runs: u64,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
        World {
            _dir: dir,
            bucket,
            owner: Keypair::generate(),
            miner: Keypair::generate(),
            runs: 0,
        }
    }

    /// Publishes a one-step run and assigns its forward job; with `done`
    /// the owner has marked the run finished.
    async fn publish_run(&mut self, run_id: &str, done: bool) -> Job {
        let seq = self.runs;
        self.runs += 1;
        let job =
            common::publish_run(&self.bucket, &self.owner, &self.miner.hotkey(), run_id, seq).await;
        if done {
            let state = pb::RunState {
                run_id: run_id.into(),
                completed_steps: 1,
                done: true,
                ..Default::default()
            };
            self.bucket
                .put(&self.bucket.layout().run_state(run_id), &state, &self.owner)
                .await
                .unwrap();
        }
        job
    }

    /// The miner computes the job honestly and writes artifact and receipt.
    async fn write_receipt(&self, job: &Job) {
        common::write_receipt(&self.bucket, &self.miner, job).await;
    }

    /// The verdict on `job`'s receipt, signed by `validator`.
    async fn verdict(&self, job: &Job, validator: &Hotkey) -> Option<pb::Verdict> {
        let key = self
            .bucket
            .layout()
            .verdict(&job.run.run_id, 0, &job.manifest.job_id, 1);
        self.bucket
            .get_opt::<pb::Verdict>(&key, Expect::Signer(validator))
            .await
            .unwrap()
            .map(|v| v.into_inner())
    }

    fn validator(&self, key: Keypair, node: &SilentNode, policy: PushPolicy) -> Validator {
        self.validator_until(key, node, policy, None)
    }

    fn validator_until(
        &self,
        key: Keypair,
        node: &SilentNode,
        policy: PushPolicy,
        exit_after_run: Option<String>,
    ) -> Validator {
        let settings = Settings {
            // No replays: judging is attribution and commitments only.
            sample_rate: 0.0,
            probation_replays: 0,
            poll_min: Duration::from_millis(10),
            poll_max: Duration::from_millis(50),
            device: Device::Cpu,
            exit_after_run,
            audit: Default::default(),
            clock: locus_protocol::time::Clock::system(),
            checkpoint_every: validatord::driver::CHECKPOINT_EVERY,
            chain: Some(ChainTarget {
                endpoint: node.endpoint.clone(),
                netuid: 3,
                signer: ValidatorSigner::ed25519_from_seed([7; 32]),
                mode: Mode::DryRun,
                policy,
            }),
        };
        Validator::new(self.bucket.clone(), self.owner.hotkey(), key, settings)
    }
}

async fn tick(validator: &mut Validator) {
    tokio::time::timeout(TICK_LIMIT, validator.tick())
        .await
        .expect("a validator pass waited for the chain node")
        .expect("validator pass");
}

/// Judges the finished run (its window completes and goes to the node),
/// then, once the node holds the push's connection, a receipt of the live
/// run written after that. Checks both verdicts are in the bucket.
async fn judge_both_runs(
    world: &mut World,
    validator: &mut Validator,
    me: &Hotkey,
    node: &SilentNode,
) {
    let done = world.publish_run("done-run", true).await;
    world.write_receipt(&done).await;
    let live = world.publish_run("live-run", false).await;
    tick(validator).await;
    assert_eq!(validator.receipts_judged, 1);
    assert!(world.verdict(&done, me).await.is_some());
    assert!(
        node.wait_for(1, Duration::from_secs(10)).await,
        "the complete window was not pushed to the node"
    );
    world.write_receipt(&live).await;
    tick(validator).await;
    assert_eq!(
        validator.receipts_judged, 2,
        "the live run's receipt was not judged while the push hung"
    );
    assert!(world.verdict(&live, me).await.is_some());
}

#[tokio::test]
async fn verdicts_flow_while_the_node_hangs_and_the_push_is_retried() {
    let node = silent_node().await;
    let mut world = World::new();
    let key = Keypair::generate();
    let me = key.hotkey();
    let policy = PushPolicy {
        connect_timeout: Duration::from_millis(300),
        call_timeout: Duration::from_millis(300),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_millis(200),
    };
    let mut validator = world.validator(key, &node, policy);
    judge_both_runs(&mut world, &mut validator, &me, &node).await;
    // Each attempt times out connecting and is tried again on a new
    // connection, while the validator goes on judging.
    let retried = tokio::time::timeout(Duration::from_secs(15), async {
        while node.connections() < 3 {
            tick(&mut validator).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        retried.is_ok(),
        "the push was not retried (connections: {})",
        node.connections()
    );
    // Nothing reached the chain, so nothing claims it did: no record.
    let record = world
        .bucket
        .get_opt::<pb::ChainWeights>(
            &world.bucket.layout().chain_weights("done-run"),
            Expect::Signer(&me),
        )
        .await
        .unwrap();
    assert!(record.is_none());
}

#[tokio::test]
async fn a_push_that_would_hang_for_an_hour_neither_blocks_judging_nor_shutdown() {
    let node = silent_node().await;
    let mut world = World::new();
    let key = Keypair::generate();
    let me = key.hotkey();
    let hour = Duration::from_secs(3600);
    let policy = PushPolicy {
        connect_timeout: hour,
        call_timeout: hour,
        retry_min: hour,
        retry_max: hour,
    };
    let mut validator = world.validator(key, &node, policy);
    judge_both_runs(&mut world, &mut validator, &me, &node).await;
    assert_eq!(node.connections(), 1, "one attempt, still in flight");
    // A stop request ends the daemon's loop and the push in flight at once.
    let shutdown = Shutdown::default();
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), validator.run(&shutdown))
        .await
        .expect("shutdown waited for the chain node")
        .unwrap();
    // The push's connection was dropped: the node reads end of stream.
    let mut socket = node.held.lock().unwrap().remove(0);
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // The client's WebSocket handshake request; read on.
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the push's connection is still open");
}

#[tokio::test]
async fn exit_after_run_waits_for_one_bounded_attempt_only() {
    let node = silent_node().await;
    let mut world = World::new();
    let done = world.publish_run("done-run", true).await;
    world.write_receipt(&done).await;
    let policy = PushPolicy {
        connect_timeout: Duration::from_millis(500),
        call_timeout: Duration::from_millis(500),
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(10),
    };
    let mut validator =
        world.validator_until(Keypair::generate(), &node, policy, Some("done-run".into()));
    // The run is scored in the first pass; the daemon then gives the push
    // its attempt (which times out) and exits without retrying.
    tokio::time::timeout(Duration::from_secs(20), validator.run(&Shutdown::default()))
        .await
        .expect("exit waited past the push's timeouts")
        .unwrap();
    assert_eq!(validator.receipts_judged, 1);
    assert_eq!(node.connections(), 1, "one attempt, no retries");
}
