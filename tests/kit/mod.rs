//! A whole system in one process: the real orchestrator, validator and
//! miner workers, each on its own task with its own handle on one in-memory
//! bucket, talking only through it. What needs no process boundary (no
//! kill -9, no signals, no real S3) is tested with this, in seconds rather
//! than the minute a process-level run takes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use locus_daemon::Shutdown;
use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::time::Clock;
use locus_protocol::{Bucket, Expect, Hotkey, Keypair, Verified};
use locus_workloads::{Device, mlp};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use tokio::task::JoinHandle;

pub const RUN: &str = "in-process";
pub const NETUID: u16 = 7;

type Task = JoinHandle<anyhow::Result<()>>;

/// Writes to the bucket before the daemons start, given the miners' hotkeys.
pub type Prepare = Box<dyn FnOnce(Bucket, Vec<Hotkey>) -> BoxFuture<'static, ()>>;

/// Wraps a store in another (e.g. one whose requests fail).
pub type WrapStore = fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>;

/// What a test can change about a run before it starts.
pub struct Setup {
    pub steps: u32,
    pub miners: usize,
    pub micro_batches: u32,
    pub sample_rate: f64,
    pub probation_replays: u32,
    pub lease: Duration,
    pub heartbeat_ttl: Duration,
    /// Workers that send heartbeats and never work (after the real ones).
    pub silent: usize,
    /// Runs against the bucket before any daemon starts.
    pub before: Option<Prepare>,
    /// Miner 0 misbehaves in this way.
    #[cfg(feature = "fault-injection")]
    pub attack: Option<minerd::faults::FaultMode>,
    /// What the run trains (default: the MLP with `micro_batches`).
    pub workload: Option<Arc<dyn locus_workloads::Workload>>,
    /// Wraps the store the orchestrator sees (to make its requests fail).
    pub owner_store: Option<WrapStore>,
    /// Auditor workers replaying for the validator.
    pub auditors: usize,
    /// Auditors the validator sends replays to that never answer (after
    /// the working ones).
    pub absent_auditors: usize,
    /// How long an auditor has to answer.
    pub audit_timeout: Duration,
    /// Auditor 0 answers the opposite of what it finds.
    pub lying_auditor: bool,
    /// Fraction of auditors' passing results the validator replays again.
    pub audit_recheck_rate: f64,
    /// How often the validator rewrites its checkpoint (none by default:
    /// every closed step).
    pub checkpoint_every: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            steps: 2,
            miners: 3,
            micro_batches: 3,
            sample_rate: 0.25,
            probation_replays: 0,
            lease: Duration::from_secs(20),
            heartbeat_ttl: Duration::from_secs(10),
            silent: 0,
            before: None,
            #[cfg(feature = "fault-injection")]
            attack: None,
            workload: None,
            owner_store: None,
            auditors: 0,
            absent_auditors: 0,
            audit_timeout: Duration::from_secs(20),
            lying_auditor: false,
            audit_recheck_rate: 0.1,
            checkpoint_every: Duration::ZERO,
        }
    }
}

/// A whole system in one process.
pub struct System {
    store: Arc<dyn ObjectStore>,
    /// The test's own handle on the bucket.
    pub bucket: Bucket,
    pub owner: Keypair,
    pub validator: Keypair,
    pub miners: Vec<Hotkey>,
    /// Workers that only send heartbeats.
    pub silent: Vec<Hotkey>,
    /// Auditors' hotkeys; the liar, if any, first.
    pub auditors: Vec<Hotkey>,
    /// The clock every daemon of the system decides by: a test moves it
    /// forward to run leases and audit deadlines out.
    pub clock: Clock,
    shutdown: Shutdown,
    settings: orchestratord::driver::Settings,
    /// The validator's settings, made again for a restart.
    judge_settings: Arc<dyn Fn() -> validatord::driver::Settings + Send + Sync>,
    /// The handles the orchestrator and the validator read through (their
    /// request counts are theirs alone).
    owner_buckets: Vec<Bucket>,
    orchestrator: Task,
    judge: Task,
    workers: Vec<Task>,
}

impl System {
    pub async fn start(setup: Setup) -> System {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let handle = || Bucket::from_store(store.clone(), "memory://", NETUID);
        let bucket = handle();
        let owner = Keypair::generate();
        let validator = Keypair::generate();
        let miner_keys: Vec<Keypair> = (0..setup.miners).map(|_| Keypair::generate()).collect();
        if let Some(before) = setup.before {
            before(
                bucket.clone(),
                miner_keys.iter().map(Keypair::hotkey).collect(),
            )
            .await;
        }
        let shutdown = Shutdown::default();
        let clock = Clock::system();
        let poll = Duration::from_millis(20);
        let workload = setup.workload.clone().unwrap_or_else(|| {
            let mut mlp = mlp::default_config(1);
            mlp.micro_batches = setup.micro_batches;
            mlp.replicas = 2;
            Arc::new(mlp::MlpRound::new(mlp).expect("mlp configuration"))
        });
        let settings = orchestratord::driver::Settings {
            netuid: NETUID,
            run_id: RUN.into(),
            steps: setup.steps,
            workload,
            validators: vec![validator.hotkey()],
            lease: setup.lease,
            heartbeat_ttl: setup.heartbeat_ttl,
            poll_min: poll,
            poll_max: poll * 4,
            max_inflight_per_worker: 2,
            exit_when_done: true,
            miners: Vec::new(),
            max_workers_per_miner: 1,
            min_workers: setup.miners + setup.silent,
            clock: clock.clone(),
        };
        let owner_bucket = match setup.owner_store {
            Some(wrap) => Bucket::from_store(wrap(store.clone()), "memory://", NETUID),
            None => handle(),
        };
        let orchestrator = spawn_orchestrator(&owner_bucket, &owner, &settings, &shutdown).await;
        let judge_bucket = handle();
        let auditor_keys: Vec<Keypair> = (0..setup.auditors).map(|_| Keypair::generate()).collect();
        let absent: Vec<Hotkey> = (0..setup.absent_auditors)
            .map(|_| Keypair::generate().hotkey())
            .collect();
        let judge_settings: Arc<dyn Fn() -> validatord::driver::Settings + Send + Sync> = {
            let auditors: Vec<Hotkey> = auditor_keys
                .iter()
                .map(Keypair::hotkey)
                .chain(absent.iter().copied())
                .collect();
            let clock = clock.clone();
            let (sample_rate, probation_replays) = (setup.sample_rate, setup.probation_replays);
            let (recheck_rate, audit_timeout) = (setup.audit_recheck_rate, setup.audit_timeout);
            let checkpoint_every = setup.checkpoint_every;
            Arc::new(move || validatord::driver::Settings {
                sample_rate,
                probation_replays,
                poll_min: poll,
                poll_max: poll * 4,
                device: Device::Cpu,
                exit_after_run: Some(RUN.into()),
                chain: None,
                audit: validatord::audit::AuditSettings {
                    auditors: auditors.clone(),
                    recheck_rate,
                    timeout: audit_timeout,
                },
                clock: clock.clone(),
                checkpoint_every,
            })
        };
        let mut judge = validatord::driver::Validator::new(
            judge_bucket.clone(),
            owner.hotkey(),
            copy(&validator),
            judge_settings(),
        );
        let stop = shutdown.clone();
        let judge = tokio::spawn(async move { judge.run(&stop).await });
        let mut miners = Vec::new();
        let mut workers = Vec::new();
        for (index, key) in miner_keys.into_iter().enumerate() {
            miners.push(key.hotkey());
            let cfg = minerd::worker::WorkerConfig {
                index: 0,
                device: Device::Cpu,
                owner: owner.hotkey(),
                poll_min: poll,
                poll_max: poll * 4,
                heartbeat_every: Duration::from_secs(1),
                clock: clock.clone(),
            };
            let stop = shutdown.clone();
            #[cfg(feature = "fault-injection")]
            if let Some(mode) = setup.attack.filter(|_| index == 0) {
                let attacker = minerd::attacker::Attacker::new(mode);
                let mut worker =
                    minerd::worker::Worker::with_adversary(handle(), key, cfg, attacker);
                workers.push(tokio::spawn(async move { worker.run(&stop).await }));
                continue;
            }
            let _ = index;
            let mut worker = minerd::worker::Worker::new(handle(), key, cfg);
            workers.push(tokio::spawn(async move { worker.run(&stop).await }));
        }
        let mut auditors = Vec::new();
        for (index, key) in auditor_keys.into_iter().enumerate() {
            auditors.push(key.hotkey());
            let cfg = validatord::auditor::AuditorConfig {
                validator: validator.hotkey(),
                owner: owner.hotkey(),
                device: Device::Cpu,
                poll_min: poll,
                poll_max: poll * 4,
                shard: (0, 1),
                lie: setup.lying_auditor && index == 0,
                clock: clock.clone(),
            };
            let mut auditor = validatord::auditor::Auditor::new(handle(), key, cfg);
            let stop = shutdown.clone();
            workers.push(tokio::spawn(async move { auditor.run(&stop).await }));
        }
        auditors.extend(absent);
        let mut silent = Vec::new();
        for _ in 0..setup.silent {
            let key = Keypair::generate();
            silent.push(key.hotkey());
            workers.push(tokio::spawn(heartbeats_only(
                handle(),
                key,
                shutdown.clone(),
            )));
        }
        System {
            store,
            bucket,
            owner,
            validator,
            miners,
            silent,
            auditors,
            clock,
            shutdown,
            settings,
            judge_settings,
            owner_buckets: vec![owner_bucket, judge_bucket],
            orchestrator,
            judge,
            workers,
        }
    }

    /// Kills the orchestrator where it stands (its task is dropped between
    /// two awaits, as a crash would leave it) and starts a fresh one on the
    /// same bucket, which resumes the run from what it finds there.
    /// Returns the new orchestrator's bucket handle, whose request counts
    /// are its alone, and the objects its start-up read: counted before its
    /// loop runs, so the figure is the same however busy the machine is.
    pub async fn restart_orchestrator(&mut self) -> (Bucket, u64) {
        self.orchestrator.abort();
        let _ = (&mut self.orchestrator).await;
        let bucket = Bucket::from_store(self.store.clone(), "memory://", NETUID);
        let started = orchestratord::driver::Orchestrator::start(
            bucket.clone(),
            copy(&self.owner),
            self.settings.clone(),
        )
        .await
        .expect("orchestrator starts again");
        let start_gets = bucket
            .counts()
            .gets
            .load(std::sync::atomic::Ordering::Relaxed);
        self.orchestrator = run_orchestrator(started, &self.shutdown);
        self.owner_buckets.push(bucket.clone());
        (bucket, start_gets)
    }

    /// Kills the validator where it stands, runs `while_down` on the
    /// bucket (to lose or tamper with what it left), and starts a fresh one
    /// on the same bucket. Returns the new validator's bucket handle and the
    /// objects it read to take up the run, counted before it judges
    /// anything.
    pub async fn restart_validator(
        &mut self,
        while_down: impl AsyncFnOnce(&Bucket),
    ) -> (Bucket, u64) {
        self.judge.abort();
        let _ = (&mut self.judge).await;
        while_down(&self.bucket).await;
        let bucket = Bucket::from_store(self.store.clone(), "memory://", NETUID);
        let mut judge = validatord::driver::Validator::new(
            bucket.clone(),
            self.owner.hotkey(),
            copy(&self.validator),
            (self.judge_settings)(),
        );
        judge
            .discover_runs()
            .await
            .expect("the validator takes up the run");
        let take_up_gets = bucket
            .counts()
            .gets
            .load(std::sync::atomic::Ordering::Relaxed);
        let stop = self.shutdown.clone();
        self.judge = tokio::spawn(async move { judge.run(&stop).await });
        self.owner_buckets.push(bucket.clone());
        (bucket, take_up_gets)
    }

    /// How many jobs one step of the run has.
    pub fn jobs_per_step(&self) -> usize {
        self.settings.workload.step_jobs(0, 0, 0).len()
    }

    /// Waits until the owner has recorded `steps` completed steps.
    pub async fn wait_for_steps(&self, steps: u32) {
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
    /// score it; stops the workers; reads what the run left in the bucket.
    pub async fn finish(self, within: Duration) -> Finished {
        let System {
            store,
            bucket,
            owner,
            validator,
            miners,
            auditors,
            shutdown,
            orchestrator,
            judge,
            workers,
            owner_buckets,
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
        let owner_bytes_read = owner_buckets
            .iter()
            .map(|b| {
                b.counts()
                    .bytes_read
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum();
        let counts = owner_buckets[0].counts();
        let orchestrator_gets = counts.gets.load(std::sync::atomic::Ordering::Relaxed)
            - counts.get_misses.load(std::sync::atomic::Ordering::Relaxed);
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
        let mut verdicts = Vec::new();
        for key in bucket
            .list(&layout.verdicts(RUN), None)
            .await
            .expect("listing verdicts")
        {
            if let Ok(v) = bucket
                .get::<pb::Verdict>(&key, Expect::Signer(&validator.hotkey()))
                .await
            {
                verdicts.push(v.into_inner());
            }
        }
        let mut audited = Vec::new();
        for auditor in auditors {
            // Only the validator's record says it dropped the auditor; a
            // stranger's object at the key says nothing.
            let dropped = match bucket
                .get_opt::<pb::AuditorDropped>(
                    &layout.auditor_dropped(&auditor),
                    Expect::Signer(&validator.hotkey()),
                )
                .await
            {
                Ok(record) => record.map(|d| d.into_inner().reason),
                Err(locus_protocol::BucketError::Rejected(_)) => None,
                Err(e) => panic!("reading the dropped-auditor record: {e}"),
            };
            audited.push((auditor, dropped));
        }
        assert!(!state.param_parts.is_empty(), "final parameters");
        assert_eq!(state.params.as_ref(), state.param_parts.first());
        let mut params = Vec::new();
        for part in &state.param_parts {
            let artifact: Verified<pb::TensorArtifact> = bucket
                .get(&part.key, Expect::AnySigner)
                .await
                .expect("final parameters readable");
            params.extend(artifact.into_inner().tensors);
        }
        Finished {
            store,
            owner: owner.hotkey(),
            validator,
            params,
            attempts,
            verdicts,
            owner_bytes_read,
            orchestrator_gets,
            state: state.into_inner(),
            window: window.into_inner(),
            miners,
            auditors: audited,
        }
    }
}

/// Starts a system for `setup` and waits for its run to finish (see
/// [`System::finish`]).
pub async fn run(setup: Setup, within: Duration) -> Finished {
    System::start(setup).await.finish(within).await
}

async fn spawn_orchestrator(
    bucket: &Bucket,
    owner: &Keypair,
    settings: &orchestratord::driver::Settings,
    shutdown: &Shutdown,
) -> Task {
    let orchestrator =
        orchestratord::driver::Orchestrator::start(bucket.clone(), copy(owner), settings.clone())
            .await
            .expect("orchestrator starts");
    run_orchestrator(orchestrator, shutdown)
}

/// The loop of a started orchestrator, on its own task.
fn run_orchestrator(
    mut orchestrator: orchestratord::driver::Orchestrator,
    shutdown: &Shutdown,
) -> Task {
    let stop = shutdown.clone();
    tokio::spawn(async move { orchestrator.run(&stop).await })
}

/// A worker that is alive by its heartbeats and never does its work: what a
/// crashed job or a hung GPU looks like from the bucket.
async fn heartbeats_only(bucket: Bucket, key: Keypair, shutdown: Shutdown) -> anyhow::Result<()> {
    let at = bucket.layout().heartbeat(&key.hotkey(), 0);
    loop {
        let heartbeat = pb::WorkerHeartbeat {
            hotkey: key.hotkey().to_bytes().to_vec(),
            worker: 0,
            device: "cpu".into(),
            unix_ms: locus_protocol::time::unix_ms(),
            ..Default::default()
        };
        bucket.put(&at, &heartbeat, &key).await?;
        if !shutdown.sleep(Duration::from_millis(500)).await {
            return Ok(());
        }
    }
}

/// Each daemon owns its key; the test keeps its own copy.
fn copy(key: &Keypair) -> Keypair {
    Keypair::from_seed(&key.seed())
}

/// What a finished run left in the bucket.
pub struct Finished {
    /// The store the run wrote, for daemons started after it.
    pub store: Arc<dyn ObjectStore>,
    pub owner: Hotkey,
    pub validator: Keypair,
    pub state: pb::RunState,
    pub window: pb::ScoreWindow,
    pub miners: Vec<Hotkey>,
    /// Attempt of every receipt in the run.
    pub attempts: Vec<u32>,
    /// Every verdict of the run's validator.
    pub verdicts: Vec<pb::Verdict>,
    /// The model after the last step.
    pub params: Vec<pb::Tensor>,
    /// Bytes the orchestrator(s) and the validator read from the bucket.
    pub owner_bytes_read: u64,
    /// Objects the first orchestrator read (GETs of keys that held
    /// nothing yet, where it waits for a verdict, not counted).
    pub orchestrator_gets: u64,
    /// The auditors, and the validator's signed reason for each it dropped.
    pub auditors: Vec<(Hotkey, Option<String>)>,
}

impl Finished {
    pub fn score(&self, miner: usize) -> pb::HotkeyScore {
        let hotkey = self.miners[miner].to_bytes();
        self.window
            .scores
            .iter()
            .find(|s| s.hotkey == hotkey)
            .cloned()
            .unwrap_or_default()
    }

    pub fn weight(&self, miner: usize) -> f64 {
        self.score(miner).weight
    }

    pub fn is_banned(&self, miner: usize) -> bool {
        let hotkey = self.miners[miner].to_bytes();
        self.state.banned.iter().any(|b| *b == hotkey)
    }

    /// The run is done, every step evaluated, every miner but `except`
    /// paid, and the weights a distribution.
    pub fn assert_complete(&self, steps: u32, except: Option<usize>) {
        let paid: Vec<usize> = (0..self.miners.len())
            .filter(|m| Some(*m) != except)
            .collect();
        self.assert_complete_paying(steps, &paid);
    }

    /// The run is done, every step evaluated, the miners in `paid` paid,
    /// and the weights a distribution.
    pub fn assert_complete_paying(&self, steps: u32, paid: &[usize]) {
        assert!(self.state.done, "run not done: {:?}", self.state);
        assert_eq!(self.state.completed_steps, steps);
        assert_eq!(self.state.eval_loss.len(), steps as usize);
        assert!(self.window.complete, "score window incomplete");
        for &miner in paid {
            assert!(self.weight(miner) > 0.0, "miner {miner} not paid");
        }
        let total: f64 = self.window.scores.iter().map(|s| s.weight).sum();
        assert!((total - 1.0).abs() < 1e-6, "weights sum to {total}");
    }

    pub fn assert_complete_and_fair(&self, steps: u32) {
        self.assert_complete(steps, None);
    }

    /// Every job was done by its first attempt: nothing was refused or
    /// waited out.
    pub fn assert_no_redo(&self) {
        let first = self.attempts.iter().min().copied().unwrap_or_default();
        assert!(
            self.attempts.iter().all(|a| *a == first),
            "some job was redone: attempts {:?}",
            self.attempts
        );
    }

    /// No job earns twice, and every job of the run earned once.
    pub fn assert_credited_once(&self, jobs: usize) {
        assert_credited_once(&self.verdicts, jobs);
    }
}

/// Job id → hotkeys whose verdict credits it (passed, with units).
pub fn credits(verdicts: &[pb::Verdict]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut credits: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for v in verdicts {
        let outcome = VerdictOutcome::try_from(v.outcome).unwrap_or_default();
        let passed = matches!(
            outcome,
            VerdictOutcome::Verified | VerdictOutcome::Unsampled
        );
        if passed && v.compute_units > 0 {
            credits
                .entry(v.job_id.clone())
                .or_default()
                .push(v.hotkey.clone());
        }
    }
    credits
}

/// No job earns twice, and at least `jobs` jobs earned once.
pub fn assert_credited_once(verdicts: &[pb::Verdict], jobs: usize) {
    let credits = credits(verdicts);
    for (job, hotkeys) in &credits {
        assert_eq!(hotkeys.len(), 1, "{job} credited {} times", hotkeys.len());
    }
    assert!(
        credits.len() >= jobs,
        "only {} of {jobs} jobs credited",
        credits.len()
    );
}
