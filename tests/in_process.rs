//! The three daemon loops in one process over an in-memory bucket.
//!
//! What needs no process boundary (no kill -9, no signals, no real S3) is
//! tested here: the real orchestrator, validator and miner workers, each on
//! its own task, talking only through the bucket, in seconds rather than the
//! minute a process-level run takes.

use std::sync::Arc;
use std::time::Duration;

use locus_daemon::Shutdown;
use locus_protocol::{Bucket, Expect, Hotkey, Keypair, Verified, pb};
use locus_workloads::{Device, mlp};
use object_store::memory::InMemory;
use tokio::task::JoinHandle;

const RUN: &str = "in-process";
const NETUID: u16 = 7;

/// A whole system in one process.
struct System {
    bucket: Bucket,
    owner: Keypair,
    validator: Keypair,
    miners: Vec<Hotkey>,
    shutdown: Shutdown,
    settings: orchestratord::driver::Settings,
    orchestrator: JoinHandle<anyhow::Result<()>>,
    judge: JoinHandle<anyhow::Result<()>>,
    workers: Vec<JoinHandle<anyhow::Result<()>>>,
}

/// Writes to the bucket before the daemons start: (bucket, owner, miners).
type Prepare = Box<dyn FnOnce(&Bucket, &Keypair, &[Keypair])>;

/// What a test can change about a run before it starts.
struct Setup {
    steps: u32,
    miners: usize,
    sample_rate: f64,
    /// Runs against the bucket before any daemon starts.
    before: Option<Prepare>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            steps: 2,
            miners: 3,
            sample_rate: 0.25,
            before: None,
        }
    }
}

async fn spawn_orchestrator(
    bucket: &Bucket,
    owner: &Keypair,
    settings: &orchestratord::driver::Settings,
    shutdown: &Shutdown,
) -> JoinHandle<anyhow::Result<()>> {
    let mut orchestrator =
        orchestratord::driver::Orchestrator::start(bucket.clone(), copy(owner), settings.clone())
            .await
            .expect("orchestrator starts");
    let stop = shutdown.clone();
    tokio::spawn(async move { orchestrator.run(&stop).await })
}

/// Each daemon owns its key; the test keeps its own copy.
fn copy(key: &Keypair) -> Keypair {
    Keypair::from_seed(&key.seed())
}

fn mlp_config() -> pb::MlpConfig {
    let mut cfg = mlp::default_config(1);
    cfg.micro_batches = 3;
    cfg.replicas = 2;
    cfg
}

impl System {
    async fn start(setup: Setup) -> System {
        let bucket = Bucket::from_store(Arc::new(InMemory::new()), "memory://", NETUID);
        let owner = Keypair::generate();
        let validator = Keypair::generate();
        let miner_keys: Vec<Keypair> = (0..setup.miners).map(|_| Keypair::generate()).collect();
        if let Some(before) = setup.before {
            before(&bucket, &owner, &miner_keys);
        }
        let shutdown = Shutdown::default();
        let poll = Duration::from_millis(20);
        let settings = orchestratord::driver::Settings {
            netuid: NETUID,
            run_id: RUN.into(),
            steps: setup.steps,
            mlp: mlp_config(),
            validators: vec![validator.hotkey()],
            lease: Duration::from_secs(20),
            heartbeat_ttl: Duration::from_secs(10),
            poll_min: poll,
            poll_max: poll * 4,
            max_inflight_per_worker: 2,
            exit_when_done: true,
            miners: Vec::new(),
            max_workers_per_miner: 1,
            min_workers: setup.miners,
        };
        let orchestrator = spawn_orchestrator(&bucket, &owner, &settings, &shutdown).await;
        let mut judge = validatord::driver::Validator::new(
            bucket.clone(),
            owner.hotkey(),
            copy(&validator),
            validatord::driver::Settings {
                sample_rate: setup.sample_rate,
                probation_replays: 0,
                poll_min: poll,
                poll_max: poll * 4,
                device: Device::Cpu,
                exit_after_run: Some(RUN.into()),
                chain: None,
            },
        );
        let stop = shutdown.clone();
        let judge = tokio::spawn(async move { judge.run(&stop).await });
        let mut miners = Vec::new();
        let mut workers = Vec::new();
        for key in miner_keys {
            miners.push(key.hotkey());
            let cfg = minerd::worker::WorkerConfig {
                index: 0,
                device: Device::Cpu,
                owner: owner.hotkey(),
                poll_min: poll,
                poll_max: poll * 4,
                heartbeat_every: Duration::from_secs(1),
            };
            let mut worker = minerd::worker::Worker::new(bucket.clone(), key, cfg);
            let stop = shutdown.clone();
            workers.push(tokio::spawn(async move { worker.run(&stop).await }));
        }
        System {
            bucket,
            owner,
            validator,
            miners,
            shutdown,
            settings,
            orchestrator,
            judge,
            workers,
        }
    }

    /// Kills the orchestrator where it stands (its task is dropped between
    /// two awaits, as a crash would leave it) and starts a fresh one on the
    /// same bucket, which resumes the run from what it finds there.
    async fn restart_orchestrator(&mut self) {
        self.orchestrator.abort();
        let _ = (&mut self.orchestrator).await;
        self.orchestrator =
            spawn_orchestrator(&self.bucket, &self.owner, &self.settings, &self.shutdown).await;
    }

    /// Waits until the owner has recorded `steps` completed steps.
    async fn wait_for_steps(&self, steps: u32) {
        let key = self.bucket.layout().run_state(RUN);
        for _ in 0..2_000 {
            let state = self
                .bucket
                .get_opt::<pb::RunState>(&key, Expect::Signer(&self.owner.hotkey()))
                .await
                .expect("reading the run state");
            if state.is_some_and(|s| s.completed_steps >= steps) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{steps} steps not completed in time");
    }

    /// Waits for the orchestrator to finish the run and the validator to
    /// score it; stops the workers.
    async fn finish(self, within: Duration) -> Finished {
        let System {
            bucket,
            owner,
            validator,
            miners,
            shutdown,
            orchestrator,
            judge,
            workers,
            ..
        } = self;
        let both = async {
            orchestrator.await.expect("orchestrator task")?;
            judge.await.expect("validator task")
        };
        let ended = tokio::time::timeout(within, both).await;
        shutdown.trigger();
        for worker in workers {
            worker
                .await
                .expect("worker task")
                .expect("worker stops cleanly");
        }
        ended
            .unwrap_or_else(|_| panic!("run not finished and scored within {within:?}"))
            .expect("daemons end without error");
        let layout = bucket.layout();
        let state: Verified<pb::RunState> = bucket
            .get(&layout.run_state(RUN), Expect::Signer(&owner.hotkey()))
            .await
            .expect("run state");
        let window: Verified<pb::ScoreWindow> = bucket
            .get(
                &layout.score_window(RUN),
                Expect::Signer(&validator.hotkey()),
            )
            .await
            .expect("score window");
        let attempts = bucket
            .list(&layout.receipts(RUN), None)
            .await
            .expect("listing receipts")
            .iter()
            .filter_map(|key| layout.parse_receipt(RUN, key).map(|(_, _, a)| a))
            .collect();
        let params = state.params.clone().expect("final parameters");
        let params: Verified<pb::TensorArtifact> = bucket
            .get(&params.key, Expect::AnySigner)
            .await
            .expect("final parameters readable");
        Finished {
            params: params.into_inner().tensors,
            attempts,
            state: state.into_inner(),
            window: window.into_inner(),
            miners,
        }
    }
}

struct Finished {
    state: pb::RunState,
    window: pb::ScoreWindow,
    miners: Vec<Hotkey>,
    /// Attempt of every receipt in the run.
    attempts: Vec<u32>,
    /// The model after the last step.
    params: Vec<pb::Tensor>,
}

impl Finished {
    fn weight(&self, miner: &Hotkey) -> f64 {
        self.window
            .scores
            .iter()
            .find(|s| s.hotkey == miner.to_bytes())
            .map_or(0.0, |s| s.weight)
    }

    /// The run is done, every step evaluated, every miner paid.
    fn assert_complete_and_fair(&self, steps: u32) {
        assert!(self.state.done, "run not done: {:?}", self.state);
        assert_eq!(self.state.completed_steps, steps);
        assert_eq!(self.state.eval_loss.len(), steps as usize);
        assert!(self.window.complete, "score window incomplete");
        for miner in &self.miners {
            assert!(self.weight(miner) > 0.0, "miner {miner} not paid");
        }
        let total: f64 = self.window.scores.iter().map(|s| s.weight).sum();
        assert!((total - 1.0).abs() < 1e-6, "weights sum to {total}");
    }

    /// Every job was done by its first attempt: nothing was refused or
    /// waited out.
    fn assert_no_redo(&self) {
        let first = self.attempts.iter().min().copied().unwrap_or_default();
        assert!(
            self.attempts.iter().all(|a| *a == first),
            "some job was redone: attempts {:?}",
            self.attempts
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_honest_run_finishes_and_pays_every_miner() {
    let finished = System::start(Setup::default())
        .await
        .finish(Duration::from_secs(120))
        .await;
    finished.assert_complete_and_fair(2);
    finished.assert_no_redo();
}

/// Objects a stranger planted at the owner's assignment keys before the run
/// (the largest sequence number there is, and the first keys the owner will
/// use) neither move its sequence numbers nor stop it assigning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn planted_assignment_keys_do_not_stop_a_run() {
    let setup = Setup {
        before: Some(Box::new(|bucket, _owner, miners| {
            let stranger = Keypair::generate();
            let layout = bucket.layout().clone();
            let mut keys = Vec::new();
            for miner in miners {
                let prefix = layout.assignments_of(&miner.hotkey(), 0);
                keys.push(format!("{prefix}18446744073709551615.pb"));
                keys.push(format!("{prefix}999999999999.pb"));
                keys.extend((0..4).map(|seq| layout.assignment(&miner.hotkey(), 0, seq)));
            }
            let bucket = bucket.clone();
            futures::executor::block_on(async move {
                for key in keys {
                    let junk = pb::Assignment {
                        run_id: RUN.into(),
                        job_id: "s00000-forward-m00".into(),
                        hotkey: stranger.hotkey().to_bytes().to_vec(),
                        ..Default::default()
                    };
                    bucket
                        .put(&key, &junk, &stranger)
                        .await
                        .expect("planting works");
                }
            });
        })),
        ..Setup::default()
    };
    let finished = System::start(setup)
        .await
        .finish(Duration::from_secs(120))
        .await;
    finished.assert_complete_and_fair(2);
    finished.assert_no_redo();
}

/// An orchestrator that dies mid-run and is started again resumes from the
/// bucket and ends with the same model as a run that never stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_orchestrator_resumes_to_the_same_model() {
    let setup = || Setup {
        steps: 3,
        ..Setup::default()
    };
    let reference = System::start(setup())
        .await
        .finish(Duration::from_secs(120))
        .await;
    let mut system = System::start(setup()).await;
    system.wait_for_steps(1).await;
    system.restart_orchestrator().await;
    system.wait_for_steps(2).await;
    system.restart_orchestrator().await;
    let resumed = system.finish(Duration::from_secs(120)).await;
    resumed.assert_complete_and_fair(3);
    assert_eq!(
        resumed.params, reference.params,
        "resumed run ends elsewhere"
    );
}
