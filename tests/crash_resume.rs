//! Crash safety: `kill -9` of the orchestrator, the validator, a miner's
//! supervisor or one of its workers at random points of a run. After each
//! daemon is restarted (the supervisor restarts its own workers; the test
//! restarts the others, as systemd would) the run finishes with parameters
//! and eval losses bitwise equal to an undisturbed run of the same seed,
//! every job is credited to exactly one miner, and no job is handed out
//! again unless its earlier lease had run out.
//!
//! Each scenario is drawn from a seed (SplitMix64): the number of steps
//! (3 or 4), 2 to 4 kills, each with its target, its trigger (a delay after
//! the previous kill, or a count of new receipts plus a delay) and the pause
//! before the restart. The schedule, and what was actually done when, is
//! printed, so a failing seed can be run again on its own:
//!
//! ```text
//! LOCUS_KILL_SEED=7 cargo test --test crash_resume -- --nocapture
//! LOCUS_KILL_SEED=1,2,3,4,5,6,7,8,9,10 cargo test --test crash_resume -- --nocapture
//! ```
//!
//! Without `LOCUS_KILL_SEED` the fixed set [`DEFAULT_SEEDS`] runs, after a
//! fixed scenario that kills the orchestrator, the validator and a worker at
//! once right after step 0. A failing scenario prints the end of every
//! daemon's log; `LOCUS_KEEP_LOGS=DIR` keeps the whole logs of each scenario
//! under `DIR`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Proc, System};
use locus_protocol::{Expect, pb};
use locus_workloads::mlp;

/// `--seed` of every run: the reference and all scenarios train the same model.
const SEED: &str = "--seed=77";
/// Steps of the reference run; scenarios run 3 or 4 of them.
const MAX_STEPS: u32 = 10;
/// What a run trains: its `orchestratord` flags and the jobs of one step.
struct Case {
    name: &'static str,
    flags: &'static [&'static str],
    jobs_per_step: usize,
}

/// The MLP: forward, 2×2 inner, reduce, outer, eval.
const MLP: Case = Case {
    name: "mlp_round",
    flags: &[],
    jobs_per_step: 1 + 4 + 3,
};

/// A 3-stage gpt_pipe with 2 micro-batches: 2×2 forward, 3×2 backward,
/// 3 outer, eval.
const GPT: Case = Case {
    name: "gpt_pipe",
    flags: &common::TINY_GPT,
    jobs_per_step: 4 + 6 + 3 + 1,
};
/// Short enough that a lease run out costs a scenario seconds, not a minute.
const LEASE_SECS: u64 = 10;
/// Seeds run when `LOCUS_KILL_SEED` is not set.
/// Between them they kill every kind of daemon, a supervisor both beside
/// and after its exiting workers, and one long enough for a lease to run out.
const DEFAULT_SEEDS: &[u64] = &[2, 3, 6];
/// Longest a scenario may take before it counts as hung.
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);

/// SplitMix64: a tiny, well-mixed generator; the schedule depends on the seed only.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Orchestrator,
    Validator,
    /// A miner's supervisor; its workers get SIGTERM from the kernel
    /// (PR_SET_PDEATHSIG), finish their current job and exit.
    Supervisor(usize),
    /// A miner's worker process (pid from its heartbeat); the supervisor
    /// restarts it.
    Worker(usize),
}

#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// This long after the previous kill (or the orchestrator's start).
    Gap(Duration),
    /// Once `more` receipts were written since the previous kill, plus a delay.
    Receipts { more: usize, then: Duration },
    /// Once the run state shows this many completed steps.
    Step(u32),
}

#[derive(Clone, Copy, Debug)]
struct Kill {
    trigger: Trigger,
    target: Target,
    /// Pause between the kill and the restart (the supervisor restarts
    /// workers on its own schedule).
    restart_after: Duration,
    /// Supervisor only: restart once its orphaned workers have exited, as
    /// systemd does (control-group kill mode), rather than beside them.
    wait_for_workers: bool,
}

struct Scenario {
    name: String,
    steps: u32,
    kills: Vec<Kill>,
}

impl Scenario {
    fn from_seed(seed: u64) -> Scenario {
        let mut rng = SplitMix64(seed);
        let steps = rng.range(5, MAX_STEPS as u64) as u32;
        let n = rng.range(2, 4);
        let kills = (0..n)
            .map(|_| {
                let miner = rng.range(0, 1) as usize;
                let target = match rng.range(0, 3) {
                    0 => Target::Orchestrator,
                    1 => Target::Validator,
                    2 => Target::Supervisor(miner),
                    _ => Target::Worker(miner),
                };
                let trigger = if rng.range(0, 1) == 0 {
                    // Hops cost a write, not a poll interval: whole runs
                    // take a second or two, so kills come early.
                    Trigger::Gap(Duration::from_millis(rng.range(10, 300)))
                } else {
                    Trigger::Receipts {
                        more: rng.range(1, 6) as usize,
                        then: Duration::from_millis(rng.range(0, 60)),
                    }
                };
                // Now and then a miner stays down past its leases, so its
                // jobs go to the other miner.
                let outage = matches!(target, Target::Supervisor(_)) && rng.range(0, 3) == 0;
                let restart_ms = if outage {
                    rng.range(LEASE_SECS * 1000 + 1000, LEASE_SECS * 1000 + 4000)
                } else {
                    rng.range(100, 2000)
                };
                Kill {
                    trigger,
                    target,
                    restart_after: Duration::from_millis(restart_ms),
                    wait_for_workers: rng.range(0, 1) == 0,
                }
            })
            .collect();
        Scenario {
            name: format!("seed {seed}"),
            steps,
            kills,
        }
    }

    /// The scenario this test started with: orchestrator, validator and
    /// miner 0's worker killed together as soon as step 0 is done.
    fn after_step_zero() -> Scenario {
        let kill = |trigger, target| Kill {
            trigger,
            target,
            restart_after: Duration::from_millis(300),
            wait_for_workers: false,
        };
        Scenario {
            name: "fixed: all at once after step 0".into(),
            steps: 3,
            kills: vec![
                kill(Trigger::Step(1), Target::Orchestrator),
                kill(Trigger::Gap(Duration::ZERO), Target::Validator),
                kill(Trigger::Gap(Duration::ZERO), Target::Worker(0)),
            ],
        }
    }

    fn describe(&self) -> String {
        let mut out = format!(
            "{}: {} steps, {} kills\n",
            self.name,
            self.steps,
            self.kills.len()
        );
        for (i, k) in self.kills.iter().enumerate() {
            let when = match k.trigger {
                Trigger::Gap(d) if i == 0 => format!("{} ms after the start", d.as_millis()),
                Trigger::Gap(d) => format!("{} ms after the previous kill", d.as_millis()),
                Trigger::Receipts { more, then } if i == 0 => {
                    format!("{} ms after {more} receipts", then.as_millis())
                }
                Trigger::Receipts { more, then } => {
                    format!("{} ms after {more} more receipts", then.as_millis())
                }
                Trigger::Step(s) => format!("once {s} steps are complete"),
            };
            let restart = match k.target {
                Target::Worker(_) => "its supervisor restarts it".to_string(),
                Target::Supervisor(_) => format!(
                    "restart {} ms later{}{}",
                    k.restart_after.as_millis(),
                    if k.restart_after > Duration::from_secs(LEASE_SECS) {
                        " (past its leases)"
                    } else {
                        ""
                    },
                    if k.wait_for_workers {
                        ", once its workers exited"
                    } else {
                        ", beside its exiting workers"
                    }
                ),
                _ => format!("restart {} ms later", k.restart_after.as_millis()),
            };
            out += &format!("  #{}: {when}: kill -9 {:?}; {restart}\n", i + 1, k.target);
        }
        out
    }
}

fn orchestrator_args(case: &Case, steps: u32) -> Vec<String> {
    let mut args = vec![
        format!("--steps={steps}"),
        SEED.into(),
        format!("--lease-secs={LEASE_SECS}"),
    ];
    args.extend(case.flags.iter().map(|f| f.to_string()));
    args
}

fn kill9(pid: u32) {
    // SAFETY: signal delivery to a process this test started (directly, or
    // a worker its supervisor forked).
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// `(parent pid, state, start time)` of a process, from `/proc/{pid}/stat`.
fn proc_stat(pid: u32) -> Option<(u32, char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything: parse after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, state, start))
}

/// Live (not zombie) children of `parent`, with their start times.
fn children(parent: u32) -> Vec<(u32, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| match proc_stat(pid) {
            Some((ppid, state, start)) if ppid == parent && state != 'Z' => Some((pid, start)),
            _ => None,
        })
        .collect()
}

/// Whether the process that started at `start` is still running.
fn alive(pid: u32, start: u64) -> bool {
    proc_stat(pid).is_some_and(|(_, state, s)| s == start && state != 'Z')
}

/// A daemon that is down, waiting to be started again.
struct Pending {
    target: Target,
    at: Instant,
    /// Orphaned workers that must exit first.
    wait_for: Vec<(u32, u64)>,
}

/// One scenario's daemons, and everything the test did to them.
struct Storm<'a> {
    sys: &'a System,
    case: &'a Case,
    run: String,
    steps: u32,
    orchestrator: Proc,
    validator: Proc,
    miners: Vec<Proc>,
    pending: Vec<Pending>,
    starts: usize,
    t0: Instant,
    journal: Vec<String>,
    /// Supervisor logs that must show a worker restart: the miner, the
    /// log, when its worker was killed.
    expect_worker_restart: Vec<(usize, PathBuf, Instant)>,
    /// Workers left behind by a killed supervisor.
    orphans: Vec<(u32, u64)>,
    kills_done: usize,
}

impl<'a> Storm<'a> {
    fn orchestrator_args(&self) -> Vec<String> {
        orchestrator_args(self.case, self.steps)
    }

    fn note(&mut self, what: String) {
        let line = format!("  t={:6.2}s {what}", self.t0.elapsed().as_secs_f64());
        println!("{line}");
        self.journal.push(line);
    }

    fn is_down(&self, target: Target) -> bool {
        self.pending.iter().any(|p| p.target == target)
    }

    fn receipts(&self) -> usize {
        let prefix = self.sys.bucket.layout().receipts(&self.run);
        self.sys
            .rt
            .block_on(self.sys.bucket.list(&prefix, None))
            .map(|k| k.len())
            .unwrap_or(0)
    }

    /// The pid of miner `i`'s worker 0 from its heartbeat, if that process is
    /// a live child of the miner's current supervisor.
    fn worker_pid(&mut self, i: usize) -> Option<u32> {
        let hotkey = self.sys.miners[i].hotkey();
        let heartbeat = self
            .sys
            .rt
            .block_on(self.sys.bucket.get_opt::<pb::WorkerHeartbeat>(
                &self.sys.bucket.layout().heartbeat(&hotkey, 0),
                Expect::Signer(&hotkey),
            ))
            .ok()
            .flatten()?;
        let supervisor = self.miners[i].child.id();
        match proc_stat(heartbeat.pid) {
            Some((ppid, state, _)) if ppid == supervisor && state != 'Z' => Some(heartbeat.pid),
            _ => None,
        }
    }

    /// Carries out a kill; `false` while it cannot be done yet (the target
    /// is down, or a worker's heartbeat does not show a live pid).
    fn kill(&mut self, n: usize, k: &Kill) -> bool {
        let down = self.is_down(k.target)
            || matches!(k.target, Target::Worker(i) if self.is_down(Target::Supervisor(i)));
        if down {
            // Killed again as soon as it is back: a crash during recovery.
            return false;
        }
        let restart_at = Instant::now() + k.restart_after;
        match k.target {
            Target::Orchestrator | Target::Validator => {
                let proc = if k.target == Target::Orchestrator {
                    &mut self.orchestrator
                } else {
                    &mut self.validator
                };
                if !proc.is_running() {
                    let name = proc.name.clone();
                    self.note(format!("#{n} skipped: {name} has exited"));
                    return true;
                }
                let pid = proc.child.id();
                kill9(pid);
                let status = proc.wait(10);
                let name = proc.name.clone();
                self.note(format!("#{n} kill -9 {name} (pid {pid}): {status}"));
                self.pending.push(Pending {
                    target: k.target,
                    at: restart_at,
                    wait_for: Vec::new(),
                });
            }
            Target::Supervisor(i) => {
                // A supervisor killed right after its worker may not have
                // noticed (and logged) the worker's death yet.
                self.expect_worker_restart
                    .retain(|(m, _, at)| *m != i || at.elapsed() > Duration::from_secs(1));
                let pid = self.miners[i].child.id();
                let workers = children(pid);
                kill9(pid);
                let status = self.miners[i].wait(10);
                self.note(format!(
                    "#{n} kill -9 supervisor of miner {i} (pid {pid}): {status}; orphaned workers {:?}",
                    workers.iter().map(|w| w.0).collect::<Vec<_>>()
                ));
                self.orphans.extend(&workers);
                self.pending.push(Pending {
                    target: k.target,
                    at: restart_at,
                    wait_for: if k.wait_for_workers {
                        workers
                    } else {
                        Vec::new()
                    },
                });
            }
            Target::Worker(i) => {
                let Some(pid) = self.worker_pid(i) else {
                    return false;
                };
                kill9(pid);
                self.note(format!("#{n} kill -9 worker of miner {i} (pid {pid})"));
                self.expect_worker_restart
                    .push((i, self.miners[i].log.clone(), Instant::now()));
            }
        }
        self.kills_done += 1;
        true
    }

    fn restart(&mut self, target: Target) {
        self.starts += 1;
        let n = self.starts;
        match target {
            Target::Orchestrator => {
                let args = self.orchestrator_args();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.orchestrator =
                    self.sys
                        .start_orchestrator(&format!("orchestratord-{n}"), &self.run, &args);
            }
            Target::Validator => {
                self.validator = self.sys.start_validator(
                    &format!("validatord-{n}"),
                    &self.run,
                    &["--sample-rate=1.0"],
                );
            }
            Target::Supervisor(i) => {
                self.miners[i] = self.sys.start_miner_named(i, &format!("miner{i}-{n}"), &[]);
            }
            Target::Worker(_) => unreachable!("workers are restarted by their supervisor"),
        }
        self.note(format!("restarted {target:?}"));
    }

    /// Starts daemons whose pause is over (and whose orphans have exited).
    fn restart_due(&mut self, all_now: bool) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let due = all_now || Instant::now() >= p.at;
            if due && !p.wait_for.iter().any(|&(pid, start)| alive(pid, start)) {
                let p = self.pending.remove(i);
                self.restart(p.target);
            } else {
                i += 1;
            }
        }
    }

    /// Runs the kill schedule until the orchestrator finishes the run.
    fn ride_out(&mut self, kills: &[Kill]) {
        let mut next = 0;
        let mut last_kill = Instant::now();
        let mut receipts_then = 0;
        let mut reached: Option<Instant> = None;
        loop {
            assert!(
                self.t0.elapsed() < SCENARIO_LIMIT,
                "the run did not finish in {SCENARIO_LIMIT:?}"
            );
            self.restart_due(false);
            if !self.is_down(Target::Orchestrator) && !self.orchestrator.is_running() {
                let status = self.orchestrator.wait(1);
                assert!(
                    status.success(),
                    "{} failed: {status}",
                    self.orchestrator.name
                );
                self.note(format!("{} finished the run", self.orchestrator.name));
                break;
            }
            if let Some(k) = kills.get(next) {
                let due = match k.trigger {
                    Trigger::Gap(d) => last_kill.elapsed() >= d,
                    Trigger::Receipts { more, then } => {
                        if reached.is_none() && self.receipts() >= receipts_then + more {
                            reached = Some(Instant::now());
                        }
                        reached.is_some_and(|t| t.elapsed() >= then)
                    }
                    Trigger::Step(s) => self
                        .sys
                        .run_state(&self.run)
                        .is_some_and(|st| st.completed_steps >= s),
                };
                if due && self.kill(next + 1, k) {
                    next += 1;
                    last_kill = Instant::now();
                    receipts_then = self.receipts();
                    reached = None;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for (i, k) in kills.iter().enumerate().skip(next) {
            self.note(format!(
                "#{} not done, the run finished first: {:?}",
                i + 1,
                k.target
            ));
        }
        // Whatever is still down comes back to finish scoring and stop
        // cleanly (a supervisor once its orphaned workers have exited).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "orphaned workers did not exit in 60 s"
            );
            self.restart_due(true);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What the bucket says about a finished run.
struct Outcome {
    /// Parameters after each step: the outer artifact the orchestrator
    /// accepted, which the step's eval job names as its input.
    params: Vec<Vec<pb::Tensor>>,
    eval_loss: Vec<f32>,
    /// Jobs given out more than once (lease run out).
    reassigned: usize,
}

/// Checks the run's bookkeeping and reads its results.
fn audit(sys: &System, case: &Case, run: &str, steps: u32) -> Outcome {
    let layout = sys.bucket.layout().clone();
    let owner = sys.owner.hotkey();
    let rt = &sys.rt;

    // Every job credited to exactly one miner: never twice, never lost.
    let credited = sys.credited(run);
    assert_eq!(
        credited.len(),
        steps as usize * case.jobs_per_step,
        "every job credited: {credited:?}"
    );
    assert!(
        credited.values().all(|who| who.len() == 1),
        "no job credited twice: {credited:?}"
    );
    let me = sys.validator.hotkey();
    for key in rt
        .block_on(sys.bucket.list(&layout.verdicts(run), None))
        .expect("verdicts")
    {
        let v = rt
            .block_on(sys.bucket.get::<pb::Verdict>(&key, Expect::Signer(&me)))
            .expect("verdict");
        assert_ne!(
            v.outcome,
            pb::VerdictOutcome::Failed as i32,
            "an honest miner's result failed its replay: {key}: {}",
            v.reason
        );
    }

    // Attempts per job, from the owner's assignments.
    let mut attempts: BTreeMap<String, Vec<pb::Assignment>> = BTreeMap::new();
    let prefix = layout.assignments();
    for key in rt
        .block_on(sys.bucket.list(&prefix, None))
        .expect("assignments")
    {
        let a = rt
            .block_on(
                sys.bucket
                    .get::<pb::Assignment>(&key, Expect::Signer(&owner)),
            )
            .expect("assignment")
            .into_inner();
        if a.run_id == run {
            attempts.entry(a.job_id.clone()).or_default().push(a);
        }
    }
    // When each attempt's receipt was written.
    let mut receipted: HashMap<(String, u32), u64> = HashMap::new();
    for object in rt
        .block_on(sys.bucket.list_meta(&layout.receipts(run), None))
        .expect("receipts")
    {
        let (_, job, attempt) = layout.parse_receipt(run, &object.key).expect("receipt key");
        receipted.insert((job, attempt), object.modified_unix_ms);
    }
    assert_eq!(attempts.len(), steps as usize * case.jobs_per_step);
    let mut reassigned = 0;
    for (job, list) in attempts.iter_mut() {
        list.sort_by_key(|a| a.attempt);
        let numbers: Vec<u32> = list.iter().map(|a| a.attempt).collect();
        let expected: Vec<u32> = (1..=list.len() as u32).collect();
        assert_eq!(
            numbers, expected,
            "{job}: attempts are numbered 1, 2, ... without gaps or repeats"
        );
        if list.len() > 1 {
            reassigned += 1;
        }
        // No completed work is redone: a job goes out again only once the
        // earlier attempt's lease has run out, and never after a receipt
        // that was in on time.
        for pair in list.windows(2) {
            let (earlier, later) = (&pair[0], &pair[1]);
            assert!(
                later.issued_unix_ms >= earlier.deadline_unix_ms,
                "{job}: attempt {} assigned at {} while attempt {}'s lease ran until {}",
                later.attempt,
                later.issued_unix_ms,
                earlier.attempt,
                earlier.deadline_unix_ms
            );
            if let Some(&written) = receipted.get(&(job.clone(), earlier.attempt)) {
                assert!(
                    written > earlier.deadline_unix_ms,
                    "{job}: attempt {} redone although its receipt was in on time \
                     (written {written}, lease until {})",
                    earlier.attempt,
                    earlier.deadline_unix_ms
                );
            }
        }
    }
    for (j, a) in receipted.keys() {
        assert!(
            attempts
                .get(j)
                .is_some_and(|l| l.iter().any(|x| x.attempt == *a)),
            "receipt for {j} attempt {a}, which was never assigned"
        );
    }

    // Every attempt of a job computed the same tensors (workloads are deterministic).
    for job in attempts.keys() {
        let prefix = format!("{}/runs/{run}/artifacts/{job}/", layout.root());
        let keys = rt
            .block_on(sys.bucket.list(&prefix, None))
            .expect("artifacts");
        let mut first: Option<Vec<pb::Tensor>> = None;
        for key in keys {
            let tensors = rt
                .block_on(
                    sys.bucket
                        .get::<pb::TensorArtifact>(&key, Expect::AnySigner),
                )
                .expect("artifact")
                .into_inner()
                .tensors;
            match &first {
                None => first = Some(tensors),
                Some(t) => assert_eq!(*t, tensors, "{key} differs from the job's other attempts"),
            }
        }
    }

    // The parameters each step ended with: the eval job's input, as the owner signed it.
    let mut params = Vec::new();
    for step in 0..steps {
        let eval = mlp::job_id(step, pb::JobKind::Eval, 0, 0);
        // Its first attempt's manifest, as the owner's assignment carries it.
        let manifest = attempts
            .get(&eval)
            .and_then(|a| a.iter().min_by_key(|a| a.attempt))
            .and_then(|a| a.manifest.clone())
            .expect("eval manifest");
        // The eval reads the step's outer outputs (one per pipeline stage
        // for gpt_pipe), then any held-out data of the owner.
        let outer = mlp::job_id(step, pb::JobKind::Outer, 0, 0);
        let mut tensors = Vec::new();
        for input in manifest.inputs.iter().filter(|i| i.key.contains(&outer)) {
            let writer = locus_protocol::Hotkey::from_bytes(&input.writer).expect("writer");
            let artifact = rt
                .block_on(
                    sys.bucket
                        .get::<pb::TensorArtifact>(&input.key, Expect::Signer(&writer)),
                )
                .expect("accepted outer artifact");
            assert_eq!(artifact.digest().as_bytes().as_slice(), input.digest);
            tensors.extend(artifact.into_inner().tensors);
        }
        assert!(!tensors.is_empty(), "eval {step} reads no outer output");
        params.push(tensors);
    }
    let state = sys.run_state(run).expect("run state");
    assert!(state.done && state.completed_steps == steps, "{state:?}");
    Outcome {
        params,
        eval_loss: state.eval_loss,
        reassigned,
    }
}

/// An undisturbed run of [`MAX_STEPS`] steps: what every scenario must match.
fn reference(case: &Case) -> Outcome {
    let sys = System::new(2);
    let run = "calm";
    let started = Instant::now();
    let mut validator = sys.start_validator("validatord", run, &["--sample-rate=1.0"]);
    let mut miners: Vec<_> = (0..2).map(|i| sys.start_miner(i, &[])).collect();
    sys.wait_heartbeats(2);
    let args = orchestrator_args(case, MAX_STEPS);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut orchestrator = sys.start_orchestrator("orchestratord", run, &args);
    assert!(orchestrator.wait(240).success());
    assert!(validator.wait(120).success());
    for m in miners.iter_mut() {
        m.terminate();
        assert!(m.wait(60).success());
    }
    let outcome = audit(&sys, case, run, MAX_STEPS);
    println!(
        "reference: {MAX_STEPS} steps undisturbed in {:.1}s, eval losses {:?}",
        started.elapsed().as_secs_f64(),
        outcome.eval_loss
    );
    outcome
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Runs one scenario to the end and checks it against the reference.
fn storm(case: &Case, scenario: &Scenario, expected: &Outcome) -> String {
    println!("\n{}", scenario.describe());
    let sys = System::new(2);
    let run = "storm".to_string();
    let started = Instant::now();
    let validator = sys.start_validator("validatord-0", &run, &["--sample-rate=1.0"]);
    let miners: Vec<_> = (0..2).map(|i| sys.start_miner(i, &[])).collect();
    sys.wait_heartbeats(2);
    let args = orchestrator_args(case, scenario.steps);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let orchestrator = sys.start_orchestrator("orchestratord-0", &run, &args);
    let mut storm = Storm {
        sys: &sys,
        case,
        run: run.clone(),
        steps: scenario.steps,
        orchestrator,
        validator,
        miners,
        pending: Vec::new(),
        starts: 0,
        t0: Instant::now(),
        journal: Vec::new(),
        expect_worker_restart: Vec::new(),
        orphans: Vec::new(),
        kills_done: 0,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        storm.ride_out(&scenario.kills);
        assert!(
            storm.kills_done > 0,
            "no kill landed before the run finished"
        );
        let status = storm.validator.wait(120);
        assert!(status.success(), "validator: {status}");
        for m in storm.miners.iter_mut() {
            m.terminate();
            assert!(m.wait(60).success(), "{} must stop cleanly", m.name);
        }
        let orphans = storm.orphans.clone();
        sys.wait_until("orphaned workers to exit", 60, || {
            !orphans.iter().any(|&(pid, start)| alive(pid, start))
        });
        for (_, log, _) in &storm.expect_worker_restart {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                text.contains("worker exited; restarting"),
                "the supervisor must restart its killed worker ({})",
                log.display()
            );
        }
        let got = audit(&sys, case, &run, scenario.steps);
        let last = scenario.steps as usize - 1;
        assert!(
            got.params[last] == expected.params[last],
            "parameters after the crashes differ from the undisturbed run's"
        );
        assert_eq!(
            bits(&got.eval_loss),
            bits(&expected.eval_loss[..=last]),
            "eval losses differ from the undisturbed run's"
        );
        format!(
            "{}: ok in {:.1}s, {} steps, {} of {} kills landed, {} jobs reassigned after a lease ran out",
            scenario.name,
            started.elapsed().as_secs_f64(),
            scenario.steps,
            storm.kills_done,
            scenario.kills.len(),
            got.reassigned
        )
    }));
    keep_logs(&sys, &scenario.name);
    match result {
        Ok(summary) => {
            println!("{summary}");
            summary
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!(
                "\n==== {} FAILED: {message}\n{}what happened:\n{}",
                scenario.name,
                scenario.describe(),
                storm.journal.join("\n")
            );
            dump_logs(&sys);
            format!("{}: FAILED: {message}", scenario.name)
        }
    }
}

/// With `LOCUS_KEEP_LOGS=DIR`, copies the scenario's daemon logs to
/// `DIR/{scenario}/` (they are otherwise deleted with the scenario).
fn keep_logs(sys: &System, scenario: &str) {
    let Ok(dir) = std::env::var("LOCUS_KEEP_LOGS") else {
        return;
    };
    let name: String = scenario
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let to = PathBuf::from(dir).join(name);
    std::fs::create_dir_all(&to).expect("LOCUS_KEEP_LOGS directory");
    for entry in std::fs::read_dir(sys.logs()).expect("logs").flatten() {
        let _ = std::fs::copy(entry.path(), to.join(entry.file_name()));
    }
    println!("logs kept in {}", to.display());
}

/// The last lines of every daemon log of a scenario, for a failure report.
fn dump_logs(sys: &System) {
    let Ok(dir) = std::fs::read_dir(sys.logs()) else {
        return;
    };
    let mut paths: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        eprintln!(
            "---- {} (last {} lines)\n{}",
            path.display(),
            tail.len(),
            tail.join("\n")
        );
    }
}

fn seeds() -> Option<Vec<u64>> {
    let list = std::env::var("LOCUS_KILL_SEED").ok()?;
    Some(
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| panic!("LOCUS_KILL_SEED: {s:?} is not a number"))
            })
            .collect(),
    )
}

/// Runs the fixed scenario and `default_seeds` (or `LOCUS_KILL_SEED`) on
/// `case` against its undisturbed reference.
fn kill_matrix(case: &Case, default_seeds: &[u64]) {
    // One matrix at a time: their kills are timed, and two at once on a
    // small machine would time each other's.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Build the daemons first, so the timings below are the runs' own.
    common::bin_dir();
    let started = Instant::now();
    let expected = reference(case);
    let mut scenarios = Vec::new();
    let chosen = seeds();
    if chosen.is_none() {
        scenarios.push(Scenario::after_step_zero());
    }
    for seed in chosen.unwrap_or_else(|| default_seeds.to_vec()) {
        scenarios.push(Scenario::from_seed(seed));
    }
    let summaries: Vec<String> = scenarios
        .iter()
        .map(|s| storm(case, s, &expected))
        .collect();
    println!(
        "\ncrash-resume summary of {} ({:.1}s in all):\n  {}",
        case.name,
        started.elapsed().as_secs_f64(),
        summaries.join("\n  ")
    );
    let failed: Vec<&String> = summaries.iter().filter(|s| s.contains("FAILED")).collect();
    assert!(
        failed.is_empty(),
        "scenarios failed (rerun one with LOCUS_KILL_SEED=N):\n{failed:#?}"
    );
}

#[test]
fn killed_daemons_resume_to_the_same_parameters() {
    kill_matrix(&MLP, DEFAULT_SEEDS);
}

/// The same for a gpt_pipe run: the stages' parameters and AdamW state,
/// the owner's data artifacts and the streamed activations and gradients
/// all survive kill -9 of any daemon.
#[test]
fn killed_daemons_resume_a_gpt_pipe_run_to_the_same_parameters() {
    kill_matrix(&GPT, &[3]);
}
