//! The orchestrator loop: read the bucket, let [`Schedule`] decide, write the
//! decisions. Every write that must never change is create-only.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use locus_daemon::{Backoff, Shutdown, Wake};
use locus_protocol::attribution;
use locus_protocol::pb;
use locus_protocol::time::Clock;
use locus_protocol::{Bucket, BucketError, Digest, Expect, Hotkey, Keypair, Verified};
use locus_workloads::plan::{JobSpec, Source};
use locus_workloads::{Workload, check_outputs, sealed_output_bound};
use tracing::{debug, info, warn};

use crate::gate::{Conviction, Decision, Gate};
use crate::schedule::{JobState, Output, Schedule, WorkerId};

/// Everything the loop needs to know about the run and its pacing.
#[derive(Clone)]
pub struct Settings {
    pub netuid: u16,
    pub run_id: String,
    pub steps: u32,
    /// What the run trains, with the owner's data: the run manifest names
    /// it and carries its configuration.
    pub workload: std::sync::Arc<dyn Workload>,
    pub validators: Vec<Hotkey>,
    pub lease: Duration,
    pub heartbeat_ttl: Duration,
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub max_inflight_per_worker: usize,
    pub exit_when_done: bool,
    /// Registered miner hotkeys that get standing heartbeat grants (S3 only).
    pub miners: Vec<Hotkey>,
    /// Heartbeat URLs per miner (worker indices 0..N).
    pub max_workers_per_miner: u32,
    /// Live workers to wait for before the first assignment, so the first
    /// jobs spread over the fleet instead of going to the first miner up.
    pub min_workers: usize,
    /// What leases, heartbeats and held results are timed by.
    pub clock: Clock,
}

/// Heartbeat grants last this long and are renewed when this much is left.
const HEARTBEAT_GRANT_LIFETIME: Duration = Duration::from_secs(2 * 3600);
const HEARTBEAT_GRANT_RENEW: Duration = Duration::from_secs(3600);
const LEASE_GRACE: Duration = Duration::from_secs(5);
/// Keys in a row the owner skips when it finds them taken by objects it did
/// not write, before it reports the prefix as blocked.
const MAX_TAKEN_KEYS: u32 = 16;

pub struct Orchestrator {
    bucket: Bucket,
    owner: Keypair,
    settings: Settings,
    run: pb::RunManifest,
    /// Owner-written artifacts (initial parameters, data) by id, written
    /// when a job first needs them.
    owner_outputs: HashMap<String, Output>,
    schedule: Schedule,
    /// The first step the schedule tracks: a restart resumes after the
    /// last completed step the run state records (see
    /// [`Orchestrator::resume_after`]).
    base: u32,
    /// Next assignment sequence number (shared by all worker prefixes).
    next_seq: u64,
    /// The sequence number each worker was told its next assignment gets
    /// (`Assignment.next_seq`): it reads that key, not a listing.
    reserved: HashMap<WorkerId, u64>,
    /// Receipt keys already handled. Receipts of one step are written
    /// concurrently and can appear out of key order, so steps in flight are
    /// listed whole (a bounded number of keys) rather than after a cursor.
    seen_receipts: std::collections::HashSet<String>,
    /// Verdict keys already handled.
    seen_verdicts: std::collections::HashSet<String>,
    /// The receipt of each result held for judgement.
    judging: HashMap<String, Held>,
    /// Each job's current assignment and its bucket key: a receipt must
    /// answer it.
    assignments: HashMap<String, (String, pb::Assignment)>,
    /// Banned hotkeys and where each hotkey's results used without a replay
    /// begin (persisted in the run state).
    gate: Gate,
    live: Vec<WorkerId>,
    last_worker_refresh: Option<std::time::Instant>,
    state: pb::RunState,
    /// `state` has changed since it was last written: the write is retried
    /// first thing on every pass, and the run does not count as done (nor is
    /// anything published) until it lands.
    state_unsaved: bool,
    /// The manifest each job was published with in this process: its key
    /// (see [`locus_protocol::Layout::job_manifest_revision`]), its digest
    /// and the inputs it names.
    published: HashMap<String, Published>,
    pub jobs_accepted: u64,
    heartbeat_grants_until: u64,
    counters: Counters,
}

/// Which of the owner's assignments a start reads.
#[derive(Clone, Copy, Debug)]
enum Floor {
    /// A new run: only the newest, for the sequence number to go on from.
    Fresh,
    /// Those with a sequence number from here on.
    From(u64),
}

/// A result waiting for its verdict: which receipt it came with, and when
/// the orchestrator last made sure that receipt is still there (and what it
/// found then: a receipt replaced since is refused).
struct Held {
    receipt_key: String,
    receipt_digest: Option<Digest>,
    checked_ms: u64,
}

/// A job manifest this orchestrator wrote (or found of its own).
#[derive(Clone)]
struct Published {
    key: String,
    digest: Digest,
    inputs: Vec<pb::InputRef>,
    /// Carried by every assignment of the job, so that neither its miner
    /// nor the validator reads it from `key`.
    manifest: pb::JobManifest,
}

/// What the orchestrator reports on `/metrics`.
struct Counters {
    published: locus_observe::Counter,
    accepted: locus_observe::Counter,
    expired: locus_observe::Counter,
    refused: locus_observe::Counter,
    live_workers: locus_observe::Gauge,
}

impl Counters {
    fn new(metrics: &locus_observe::Metrics) -> Self {
        Counters {
            published: metrics.counter("jobs_published_total", "Job attempts assigned to miners"),
            accepted: metrics.counter(
                "jobs_accepted_total",
                "Results accepted for downstream jobs",
            ),
            expired: metrics.counter("leases_expired_total", "Assignments whose lease ran out"),
            refused: metrics.counter(
                "results_refused_total",
                "Receipts or artifacts refused by the orchestrator",
            ),
            live_workers: metrics.gauge("live_workers", "Workers with a fresh heartbeat"),
        }
    }
}

impl Orchestrator {
    /// Creates the run in the bucket, or resumes it if it already exists.
    pub async fn start(bucket: Bucket, owner: Keypair, settings: Settings) -> anyhow::Result<Self> {
        let layout = bucket.layout().clone();
        let run_id = settings.run_id.clone();
        let owner_key = owner.hotkey();
        let run_key = layout.run_manifest(&run_id);
        let mut wanted = pb::RunManifest {
            run_id: run_id.clone(),
            netuid: settings.netuid as u32,
            steps: settings.steps,
            created_unix_ms: settings.clock.now_ms(),
            validators: settings
                .validators
                .iter()
                .map(|v| v.to_bytes().to_vec())
                .collect(),
            lease_ms: settings.lease.as_millis() as u64,
            ..Default::default()
        };
        settings.workload.configure(&mut wanted);
        let existing = bucket
            .get_opt::<pb::RunManifest>(&run_key, Expect::Signer(&owner_key))
            .await?;
        let created = existing.is_none();
        let run = match existing {
            Some(existing) => {
                let same = existing.steps == wanted.steps
                    && existing.mlp == wanted.mlp
                    && existing.gpt == wanted.gpt
                    && existing.workload == wanted.workload
                    && existing.validators == wanted.validators;
                if !same {
                    bail!(
                        "run {run_id} already exists in the bucket with a different configuration; \
                         use a new --run-id or the original settings"
                    );
                }
                info!(run = %run_id, "resuming run from the bucket");
                existing.into_inner()
            }
            None => {
                bucket.create(&run_key, &wanted, &owner).await?;
                info!(run = %run_id, steps = settings.steps, "created run");
                wanted
            }
        };
        // Rewinds decide the ids of the jobs still to run, and bans and
        // unverified results what a verdict can still undo: keep them.
        let state_key = layout.run_state(&run_id);
        let mut saved = match bucket
            .get_opt::<pb::RunState>(&state_key, Expect::Signer(&owner_key))
            .await
        {
            Ok(saved) => saved.map(Verified::into_inner).unwrap_or_default(),
            Err(e) if e.is_transient() => return Err(e.into()),
            // Not the owner's: nothing in it is worth keeping. The run is
            // rebuilt from its other objects, and the next state written
            // replaces this one.
            Err(e) => {
                warn!(run = %run_id, key = %state_key, error = %e, "a foreign object sits at the run state key; resuming from the run's other objects");
                pb::RunState::default()
            }
        };
        let gate = Gate::from_state(&saved);
        let saved_rewinds = std::mem::take(&mut saved.rewinds);
        let mut orchestrator = Orchestrator {
            state: pb::RunState {
                run_id: run_id.clone(),
                rewinds: saved_rewinds,
                ..Default::default()
            },
            base: 0,
            bucket,
            owner,
            settings,
            run,
            owner_outputs: HashMap::new(),
            schedule: Schedule::default(),
            next_seq: saved.next_assignment_seq.unwrap_or(0),
            reserved: HashMap::new(),
            seen_receipts: Default::default(),
            seen_verdicts: Default::default(),
            judging: Default::default(),
            assignments: Default::default(),
            gate,
            live: Vec::new(),
            last_worker_refresh: None,
            published: Default::default(),
            jobs_accepted: 0,
            heartbeat_grants_until: 0,
            state_unsaved: false,
            counters: Counters::new(&locus_observe::Metrics::new()),
        };
        // What a restart reads: a state that says where the run stands needs
        // only the steps in flight; anything else the whole run's history.
        let floor = if created {
            Floor::Fresh
        } else if orchestrator.resume_after(&saved) {
            Floor::From(saved.assignment_seq_floor.unwrap_or(0))
        } else {
            Floor::From(0)
        };
        orchestrator.plan_ahead();
        let last_assigned = orchestrator.recover(floor).await?;
        let unsaved_steps = last_assigned.map(|last| saved.completed_steps..=last);
        orchestrator
            .recover_bans(unsaved_steps.into_iter().flatten())
            .await?;
        if orchestrator.state.done && !orchestrator.final_params_intact().await? {
            // The final parameters were lost after the run finished: the
            // last step is done again.
            orchestrator.state.done = false;
            orchestrator.state.completed_steps = orchestrator.settings.steps.saturating_sub(1);
        }
        Ok(orchestrator)
    }

    /// Takes up the run where the saved state says it stands: steps before
    /// its last completed one are not tracked again (their outputs are not
    /// re-read), and the parameters it records stand in for that step's
    /// outputs. Returns false, leaving the run to be tracked from step 0,
    /// where the state cannot say that (written by an earlier version, or its
    /// parameters do not match what the workload's next step reads).
    fn resume_after(&mut self, saved: &pb::RunState) -> bool {
        if saved.assignment_seq_floor.is_none() || saved.run_id != self.run.run_id {
            return false;
        }
        let completed = saved.completed_steps.min(self.settings.steps);
        let mut seeds = Vec::new();
        if let Some(last) = completed.checked_sub(1) {
            let generation = self.generation(last);
            let param_jobs = self.workload().param_jobs(last, generation);
            if param_jobs.len() != saved.param_parts.len() {
                return false;
            }
            // The step resumed at may read nothing of the step before but
            // its parameters.
            if completed < self.settings.steps {
                let next = self.step_jobs(completed);
                let reads_more = next.iter().flat_map(|spec| &spec.inputs).any(|input| {
                    matches!(input, Source::Job(job)
                        if !next.iter().any(|s| &s.job_id == job) && !param_jobs.contains(job))
                });
                if reads_more {
                    return false;
                }
            }
            let specs = self.step_jobs(last);
            let layout = self.bucket.layout();
            for (job, part) in param_jobs.iter().zip(&saved.param_parts) {
                let spec = specs.iter().find(|s| &s.job_id == job);
                let attempt = layout
                    .parse_artifact(&self.run.run_id, &part.key)
                    .filter(|(of, _)| of == job)
                    .map(|(_, attempt)| attempt);
                let hotkey = Hotkey::from_bytes(&part.writer).ok();
                let digest = Digest::from_slice(&part.digest);
                let (Some(spec), Some(attempt), Some(hotkey), Some(digest)) =
                    (spec, attempt, hotkey, digest)
                else {
                    return false;
                };
                let output = Output {
                    attempt,
                    by: WorkerId { hotkey, worker: 0 },
                    key: part.key.clone(),
                    digest,
                };
                seeds.push((spec.clone(), output));
            }
        }
        for (spec, output) in seeds {
            self.schedule.seed(spec, output);
        }
        self.base = completed;
        self.state.completed_steps = completed;
        self.state.done = saved.done && completed >= self.settings.steps;
        self.state.eval_loss = saved.eval_loss.clone();
        self.state.train_loss = saved.train_loss.clone();
        self.set_params(completed);
        info!(run = %self.run.run_id, completed_steps = completed, "resuming after the last completed step");
        true
    }

    /// Goes back to tracking the run from step 0, as a restart without a
    /// usable state does: a rewind or a lost output reached below the step
    /// this process resumed after. Costs one pass over the owner's
    /// assignments; the steps' receipts and verdicts are read again by the
    /// normal polling.
    async fn track_from_start(&mut self) -> anyhow::Result<()> {
        if self.base == 0 {
            return Ok(());
        }
        warn!(run = %self.run.run_id, resumed_after = self.base, "the run reaches back before the step this process resumed after; reading its history again");
        self.base = 0;
        self.schedule = Schedule::default();
        self.assignments.clear();
        self.judging.clear();
        self.seen_receipts.clear();
        self.seen_verdicts.clear();
        let banned: Vec<Hotkey> = self.gate.banned().copied().collect();
        for hotkey in banned {
            self.ban(hotkey);
        }
        self.plan_ahead();
        self.recover(Floor::From(0)).await?;
        Ok(())
    }

    /// The owner-written artifact `id`: found in the bucket if this owner
    /// wrote it before, else computed by the workload and written now.
    async fn owner_output(&mut self, id: &str) -> anyhow::Result<Output> {
        if let Some(out) = self.owner_outputs.get(id) {
            return Ok(out.clone());
        }
        let key = self.bucket.layout().artifact(&self.run.run_id, id, 0);
        let owner_key = self.owner.hotkey();
        let tensors = self.settings.workload.owner_artifact(id)?;
        let artifact = pb::TensorArtifact {
            run_id: self.run.run_id.clone(),
            job_id: id.into(),
            attempt: 0,
            tensors,
        };
        let found = match self
            .bucket
            .get_opt::<pb::TensorArtifact>(&key, Expect::Signer(&owner_key))
            .await
        {
            Ok(found) => found,
            Err(e) if e.is_transient() => return Err(e.into()),
            // The key is the owner's alone (no job id looks like an owner
            // id): whatever else sits there is removed, not waited on.
            Err(e) => {
                warn!(run = %self.run.run_id, key = %key, error = %e, "a foreign object sits at an owner artifact key; replacing it");
                self.bucket.delete(&key).await?;
                None
            }
        };
        let digest = match found {
            Some(existing) if *existing == artifact => existing.digest(),
            Some(_) => bail!(
                "owner artifact {key} holds other tensors than this run's configuration and data \
                 make: was the run started with another token file?"
            ),
            None => self.bucket.create(&key, &artifact, &self.owner).await?,
        };
        let out = Output {
            attempt: 0,
            by: WorkerId {
                hotkey: owner_key,
                worker: 0,
            },
            key,
            digest,
        };
        self.owner_outputs.insert(id.to_string(), out.clone());
        Ok(out)
    }

    /// Rebuilds in-memory state from what is already in the bucket: the
    /// latest assignment of each job from `floor` on, and the sequence
    /// number to go on from. Receipts are then picked up by the normal
    /// polling, and manifests found again when their jobs are ready. Returns
    /// the last step with a recovered assignment.
    async fn recover(&mut self, floor: Floor) -> anyhow::Result<Option<u32>> {
        let layout = self.bucket.layout().clone();
        let run_id = self.run.run_id.clone();
        let owner = self.owner.hotkey();
        // Sequence numbers come from the owner's own assignments only: a
        // planted key must not move them (or wrap them around).
        let mut listed: Vec<(u64, locus_protocol::Listed)> = self
            .bucket
            .list_meta(&layout.assignments(), None)
            .await?
            .into_iter()
            .filter_map(|object| Some((layout.parse_assignment_seq(&object.key)?, object)))
            .collect();
        listed.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        let mut latest: HashMap<String, (String, Verified<pb::Assignment>)> = HashMap::new();
        // Newest first: the first assignment of this run seen for a worker
        // says which sequence number that worker expects next.
        let mut told: HashMap<WorkerId, Option<u64>> = HashMap::new();
        for (seq, object) in listed {
            let wanted = match floor {
                // A new run has nothing to recover but where the owner's
                // sequence numbers stand: the newest of its assignments.
                Floor::Fresh => seq >= self.next_seq,
                Floor::From(floor) => seq >= floor,
            };
            if !wanted {
                break;
            }
            let assignment = match self
                .bucket
                .get_listed::<pb::Assignment>(&object, Expect::Signer(&owner))
                .await
            {
                Ok(a) => a,
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    warn!(key = %object.key, error = %e, "ignoring unreadable assignment");
                    continue;
                }
            };
            self.next_seq = self.next_seq.max(seq.saturating_add(1));
            if assignment.run_id != run_id {
                continue;
            }
            if let Ok(hotkey) = Hotkey::from_bytes(&assignment.hotkey) {
                told.entry(WorkerId {
                    hotkey,
                    worker: assignment.worker,
                })
                .or_insert(assignment.next_seq);
            }
            let newer = latest
                .get(&assignment.job_id)
                .is_none_or(|(_, a)| a.attempt < assignment.attempt);
            if newer {
                latest.insert(assignment.job_id.clone(), (object.key, assignment));
            }
        }
        for (worker, next) in told {
            if let Some(next) = next {
                self.next_seq = self.next_seq.max(next.saturating_add(1));
                self.reserved.insert(worker, next);
            }
        }
        // Make sure every step with a recovered assignment is planned.
        let last_assigned = latest.values().map(|(_, a)| a.step).max();
        if let Some(max_step) = last_assigned {
            for step in self.base..=max_step.min(self.settings.steps.saturating_sub(1)) {
                self.plan_step(step);
            }
        }
        let recovered = latest.len();
        for (job, (key, a)) in latest {
            let Ok(hotkey) = Hotkey::from_bytes(&a.hotkey) else {
                continue;
            };
            // A job of a generation a rewind threw away, or of a step
            // before the one resumed at.
            if self
                .schedule
                .spec(&job)
                .is_none_or(|spec| spec.step < self.base)
            {
                continue;
            }
            let (attempt, worker, deadline) = (a.attempt, a.worker, a.deadline_unix_ms);
            self.assignments.insert(job.clone(), (key, a.into_inner()));
            self.schedule
                .assign(&job, attempt, WorkerId { hotkey, worker }, deadline);
        }
        if recovered > 0 {
            info!(run = %run_id, assignments = recovered, "recovered state from the bucket");
        }
        Ok(last_assigned)
    }

    /// Bans survive a restart in the run state; verdicts of `steps`, those
    /// the state does not cover yet (in flight when it was written), are
    /// read again. A hotkey caught before a restart may have unverified results
    /// the run used and no rewind on record (the crash came between): the
    /// run goes back for them now.
    async fn recover_bans(&mut self, steps: impl Iterator<Item = u32>) -> anyhow::Result<()> {
        let banned: Vec<Hotkey> = self.gate.banned().copied().collect();
        for hotkey in banned {
            self.ban(hotkey);
        }
        if !self.judged_before_use() {
            return Ok(());
        }
        let run_id = self.run.run_id.clone();
        let layout = self.bucket.layout().clone();
        for step in steps {
            let keys = self
                .bucket
                .list(&layout.verdicts_of_step(&run_id, step), None)
                .await?;
            for key in keys {
                let Ok(verdict) = self
                    .bucket
                    .get::<pb::Verdict>(&key, Expect::OneOf(&self.settings.validators))
                    .await
                else {
                    continue;
                };
                let Ok(hotkey) = Hotkey::from_bytes(&verdict.hotkey) else {
                    continue;
                };
                match pb::VerdictOutcome::try_from(verdict.outcome) {
                    Ok(pb::VerdictOutcome::Failed) => {
                        self.ban(hotkey);
                    }
                    Ok(pb::VerdictOutcome::Unsampled) => {
                        self.gate.used_unverified(hotkey, verdict.step)
                    }
                    _ => {}
                }
            }
        }
        let tainted = self
            .gate
            .banned()
            .filter_map(|hotkey| Some((self.gate.unverified_from(hotkey)?, *hotkey)))
            .min();
        if let Some((step, hotkey)) = tainted {
            self.rewind(step, hotkey, "caught before a restart".into())
                .await?;
        }
        Ok(())
    }

    fn workload(&self) -> &dyn Workload {
        self.settings.workload.as_ref()
    }

    /// Keeps the DAG planned two steps ahead of the last completed step.
    fn plan_ahead(&mut self) {
        let horizon = (self.state.completed_steps + 2).min(self.settings.steps);
        for step in self.base..horizon {
            self.plan_step(step);
        }
    }

    /// How many rewinds reached back to `step`: its jobs' generation.
    fn generation(&self, step: u32) -> u32 {
        self.state
            .rewinds
            .iter()
            .filter(|r| r.from_step <= step)
            .count() as u32
    }

    fn plan_step(&mut self, step: u32) {
        let jobs = self.step_jobs(step);
        self.schedule.add_jobs(jobs);
    }

    /// The jobs of `step` in its current generation, reading the previous
    /// step's current generation.
    fn step_jobs(&self, step: u32) -> Vec<JobSpec> {
        let prev = step.checked_sub(1).map_or(0, |p| self.generation(p));
        self.workload().step_jobs(step, self.generation(step), prev)
    }

    /// Goes back to recompute the run from `step`: everything from there on
    /// may have been built on `hotkey`'s unverified output. The rewind is
    /// recorded in the run state before anything is planned again, so a
    /// restart resumes with the new job ids.
    async fn rewind(&mut self, step: u32, hotkey: Hotkey, reason: String) -> anyhow::Result<()> {
        if step < self.base {
            self.track_from_start().await?;
        }
        let run_id = self.run.run_id.clone();
        warn!(run = %run_id, from_step = step, hotkey = %hotkey, %reason, "rewinding the run: recomputing everything built on unverified output of a banned hotkey");
        self.state.rewinds.push(pb::Rewind {
            from_step: step,
            hotkey: hotkey.ss58(),
            reason,
            unix_ms: self.settings.clock.now_ms(),
        });
        self.state.completed_steps = self.state.completed_steps.min(step);
        self.state.done = false;
        self.state.eval_loss.truncate(step as usize);
        self.state.train_loss.truncate(step as usize);
        self.set_params(step);
        self.gate.forget_from(step);
        for job in self.schedule.drop_steps_from(step) {
            self.judging.remove(&job);
            self.assignments.remove(&job);
            self.published.remove(&job);
        }
        self.plan_ahead();
        // Nothing planned here is published before this write lands: a
        // failed write fails the pass, and the next pass retries it first.
        self.save_state().await
    }

    /// The parameter artifacts after `completed` steps, in the workload's
    /// order (empty before the first step).
    fn params_after(&self, completed: u32) -> Vec<pb::InputRef> {
        let Some(last) = completed.checked_sub(1) else {
            return Vec::new();
        };
        self.workload()
            .param_jobs(last, self.generation(last))
            .iter()
            .filter_map(|job| self.schedule.output(job))
            .map(|out| pb::InputRef {
                key: out.key.clone(),
                digest: out.digest.to_vec(),
                writer: out.by.hotkey.to_bytes().to_vec(),
            })
            .collect()
    }

    /// Records the parameters after `completed` steps in the run state.
    fn set_params(&mut self, completed: u32) {
        let parts = self.params_after(completed);
        self.state.params = parts.first().cloned();
        self.state.param_parts = parts;
    }

    /// Writes the run state, with the gate's bans and unverified results,
    /// so a restart resumes from it. Until a write succeeds the state stays
    /// marked unsaved (see [`Orchestrator::tick`]).
    async fn save_state(&mut self) -> anyhow::Result<()> {
        self.state_unsaved = true;
        self.state.unix_ms = self.settings.clock.now_ms();
        self.gate.save(&mut self.state);
        self.state.next_assignment_seq = Some(self.next_seq);
        self.state.assignment_seq_floor = Some(self.assignment_seq_floor());
        let key = self.bucket.layout().run_state(&self.run.run_id);
        self.bucket.put(&key, &self.state, &self.owner).await?;
        self.state_unsaved = false;
        Ok(())
    }

    /// The lowest sequence number among the latest assignments of the jobs
    /// of steps not yet completed (every attempt number a restart must go on
    /// from is at or above it), or the next one if there are none.
    fn assignment_seq_floor(&self) -> u64 {
        let layout = self.bucket.layout();
        self.assignments
            .iter()
            .filter(|(job, _)| {
                self.schedule
                    .spec(job)
                    .is_some_and(|spec| spec.step >= self.state.completed_steps)
            })
            .filter_map(|(_, (key, _))| layout.parse_assignment_seq(key))
            .min()
            .unwrap_or(self.next_seq)
    }

    /// Reports this orchestrator's counters in `metrics`.
    pub fn set_metrics(&mut self, metrics: &locus_observe::Metrics) {
        self.counters = Counters::new(metrics);
    }

    /// Runs until the run is done (with `exit_when_done`) or shutdown.
    pub async fn run(&mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut backoff = Backoff::new(self.settings.poll_min, self.settings.poll_max);
        // What moves the run on: results, and verdicts on them.
        let layout = self.bucket.layout();
        let run = &self.run.run_id;
        let wake = if self.judged_before_use() {
            Wake::on(&self.bucket, &[layout.verdicts(run)])
        } else {
            Wake::on(&self.bucket, &[layout.receipts(run), layout.verdicts(run)])
        };
        let mut last_wait_log = std::time::Instant::now() - Duration::from_secs(60);
        loop {
            // Storage errors are transient as far as the loop is concerned:
            // everything is re-read from the bucket on the next pass.
            let progressed = match self.tick().await {
                Ok(progressed) => progressed,
                Err(e) => {
                    warn!(run = %self.run.run_id, error = %e, "pass failed; retrying");
                    false
                }
            };
            if self.state.done && !self.state_unsaved && self.settings.exit_when_done {
                info!(run = %self.run.run_id, eval_loss = ?self.state.eval_loss, "run complete");
                return Ok(());
            }
            let (_, in_flight, _) = self.schedule.counts();
            if progressed {
                backoff.reset();
            } else if self.warming_up() && !self.live.is_empty() {
                // Some workers are live and the rest are on their way:
                // heartbeats do not wake this loop, so look again soon. With
                // none live the back-off grows, so an owner waiting for
                // miners on S3 pays for one listing per `poll_max`.
                backoff.cap(self.settings.poll_min * 2);
            } else if in_flight > 0 {
                // Results are due soon: keep polling briskly.
                backoff.cap(self.settings.poll_min * 3);
            } else if self.live.is_empty() && last_wait_log.elapsed() > Duration::from_secs(10) {
                info!(run = %self.run.run_id, "waiting for live miners (heartbeats)");
                last_wait_log = std::time::Instant::now();
            }
            if !shutdown.sleep_or_wake(backoff.next_delay(), &wake).await {
                info!(run = %self.run.run_id, "stopping; the run resumes from the bucket on restart");
                return Ok(());
            }
        }
    }

    /// One pass: refresh workers, collect results, expire leases, publish and
    /// assign ready jobs. Returns whether anything changed.
    pub async fn tick(&mut self) -> anyhow::Result<bool> {
        if self.state_unsaved {
            self.save_state().await?;
        }
        self.renew_heartbeat_grants().await?;
        self.refresh_workers().await;
        // With validators, receipts are looked for only when a lease runs
        // out without a verdict (`hold_due_receipts`).
        let mut progressed = if self.judged_before_use() {
            false
        } else {
            self.collect_results().await?
        };
        progressed |= self.collect_verdicts().await?;
        // A short grace past the deadline: a receipt written just in time is
        // still accepted (the validator credits by the storage's write time).
        let now = self
            .settings
            .clock
            .now_ms()
            .saturating_sub(LEASE_GRACE.as_millis() as u64);
        if self.judged_before_use() {
            progressed |= self.hold_due_receipts(now).await?;
        }
        for (job, attempt, worker) in self.schedule.expire(now) {
            warn!(run = %self.run.run_id, job = %job, attempt, hotkey = %worker.hotkey, worker = worker.worker, "lease expired; reassigning");
            self.counters.expired.inc();
            progressed = true;
            // A worker cannot finish a job whose input is gone.
            self.check_inputs(&job).await?;
        }
        progressed |= self.check_held().await?;
        progressed |= self.publish_ready().await?;
        progressed |= self.advance_steps().await?;
        Ok(progressed)
    }

    /// Makes sure the accepted outputs `job` reads are still there as they
    /// were accepted (see [`Self::verify_output`]); the owner's initial
    /// parameters, deterministic, are simply written again.
    async fn check_inputs(&mut self, job: &str) -> anyhow::Result<()> {
        let Some(spec) = self.schedule.spec(job).cloned() else {
            return Ok(());
        };
        for source in &spec.inputs {
            match source {
                Source::Owner(id) => {
                    let Some(out) = self.owner_outputs.get(id).cloned() else {
                        continue;
                    };
                    let owner = self.owner.hotkey();
                    let found = self
                        .bucket
                        .get::<pb::TensorArtifact>(&out.key, Expect::Signer(&owner))
                        .await;
                    match found {
                        Ok(artifact) if artifact.digest() == out.digest => {}
                        Err(e) if e.is_transient() => return Err(e.into()),
                        Ok(_) | Err(_) => {
                            warn!(run = %self.run.run_id, key = %out.key, "an owner artifact is lost; writing it again");
                            self.bucket.delete(&out.key).await?;
                            self.owner_outputs.remove(id);
                            self.owner_output(id).await?;
                        }
                    }
                }
                Source::Job(input) => {
                    if !self.verify_output(input).await? {
                        // A rewind may have dropped `job` itself.
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes sure `job`'s accepted output is still there as it was accepted.
    /// A lost or replaced output is recomputed (a new attempt, and new
    /// manifest revisions for the jobs that read it); one its own writer
    /// replaced with another artifact it signed convicts that writer.
    /// Returns whether the output is intact.
    async fn verify_output(&mut self, job: &str) -> anyhow::Result<bool> {
        let Some(out) = self.schedule.output(job).cloned() else {
            return Ok(true);
        };
        let resumed_with = self
            .schedule
            .spec(job)
            .is_some_and(|spec| spec.step < self.base);
        let found = self
            .bucket
            .get::<pb::TensorArtifact>(&out.key, Expect::Signer(&out.by.hotkey))
            .await;
        let (reason, equivocated) = match found {
            Ok(artifact) if artifact.digest() == out.digest => return Ok(true),
            Ok(_) => (
                format!(
                    "{} was replaced by another artifact signed by its writer",
                    out.key
                ),
                true,
            ),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => (e.to_string(), false),
        };
        warn!(run = %self.run.run_id, job = %job, attempt = out.attempt, hotkey = %out.by.hotkey, %reason, "an accepted output is lost or changed; recomputing it");
        if resumed_with {
            // Recomputing it needs the step it came from, which this
            // process does not track: track the run from the start (the
            // job is then found again with its receipt, and its lost
            // artifact sends it out again).
            self.track_from_start().await?;
            if equivocated {
                self.convict(
                    out.by.hotkey,
                    format!("{job} attempt {}: {reason}", out.attempt),
                )
                .await?;
            }
            return Ok(false);
        }
        // The gate keeps only the earliest unverified step per hotkey, so a
        // recomputed job still counts there: a later conviction of its
        // writer may rewind further than needed, never less.
        self.schedule.requeue(job);
        for reader in self.schedule.waiting_on(job) {
            self.schedule.requeue(&reader);
        }
        if equivocated {
            self.convict(
                out.by.hotkey,
                format!("{job} attempt {}: {reason}", out.attempt),
            )
            .await?;
        }
        Ok(false)
    }

    /// A hotkey proved to cheat (a failed replay, or its own signed objects
    /// disagreeing) gets no more work, and whatever the run built on its
    /// unverified results is recomputed. Returns whether the run rewound.
    async fn convict(&mut self, hotkey: Hotkey, reason: String) -> anyhow::Result<bool> {
        let conviction = self.ban(hotkey);
        match conviction.rewind_from {
            Some(step) => {
                self.rewind(step, hotkey, reason).await?;
                Ok(true)
            }
            None => {
                if conviction.newly_banned {
                    self.save_state().await?;
                }
                Ok(false)
            }
        }
    }

    /// Results wait for a verdict only as long as their receipt stands: once
    /// a lease has passed without one, the receipt and its artifact are read
    /// and checked here (what the validator checks too). A result refused
    /// then, or whose receipt is gone or was replaced since the last look,
    /// is redone; one that holds waits another lease. So a receipt that no
    /// validator will judge (unattributable, deleted, overwritten) stalls
    /// its job for about a lease, like a worker that never answers.
    async fn check_held(&mut self) -> anyhow::Result<bool> {
        let now = self.settings.clock.now_ms();
        let every = self.settings.lease.as_millis() as u64;
        let due: Vec<String> = self
            .judging
            .iter()
            .filter(|(_, held)| now.saturating_sub(held.checked_ms) >= every)
            .map(|(job, _)| job.clone())
            .collect();
        let mut progressed = false;
        for job in due {
            let (Some((attempt, by)), Some(held)) =
                (self.schedule.judging(&job), self.judging.get(&job))
            else {
                self.judging.remove(&job);
                continue;
            };
            let (key, seen) = (held.receipt_key.clone(), held.receipt_digest);
            let refusal = match self.accept(&job, attempt, by, &key).await {
                Ok(accepted) if seen.is_none_or(|d| d == accepted.receipt_digest) => {
                    info!(run = %self.run.run_id, job = %job, receipt = %key, "still waiting for a validator's verdict");
                    if let Some(held) = self.judging.get_mut(&job) {
                        held.receipt_digest = Some(accepted.receipt_digest);
                        held.checked_ms = now;
                    }
                    continue;
                }
                Ok(_) => Refusal::Lost(format!("receipt {key} was replaced")),
                Err(Refusal::Retry(_)) => continue,
                Err(refusal) => refusal,
            };
            warn!(run = %self.run.run_id, job = %job, attempt, receipt = %key, "the receipt of a result awaiting its verdict is gone, changed or does not hold; redoing the job");
            progressed = true;
            if self.refuse(&job, attempt, by, refusal).await? {
                return Ok(true);
            }
        }
        Ok(progressed)
    }

    async fn refresh_workers(&mut self) {
        // Until the first assignment goes out every pass looks, so the run
        // starts the moment the expected workers are live.
        let fresh_enough = self
            .last_worker_refresh
            .is_some_and(|t| t.elapsed() < Duration::from_secs(2));
        if fresh_enough && !self.live.is_empty() && !self.warming_up() {
            return;
        }
        self.last_worker_refresh = Some(std::time::Instant::now());
        let layout = self.bucket.layout().clone();
        let objects = match self.bucket.list_meta(&layout.heartbeats(), None).await {
            Ok(objects) => objects,
            Err(e) => {
                warn!(error = %e, "cannot list heartbeats");
                return;
            }
        };
        let now = self.settings.clock.now_ms();
        let ttl = self.settings.heartbeat_ttl.as_millis() as u64;
        let mut live = Vec::new();
        for object in objects {
            let Some((hotkey, worker)) = layout.parse_heartbeat(&object.key) else {
                debug!(key = %object.key, "ignoring object with a malformed heartbeat key");
                continue;
            };
            match self
                .bucket
                .get_listed::<pb::WorkerHeartbeat>(&object, Expect::Signer(&hotkey))
                .await
            {
                Ok(hb) if hb.worker == worker && heartbeat_fresh(&object, ttl, now) => {
                    live.push(WorkerId { hotkey, worker })
                }
                Ok(_) => {}
                Err(e) if e.is_repeat_rejection() => debug!(error = %e, "rejected heartbeat"),
                Err(e) => warn!(error = %e, "rejected heartbeat"),
            }
        }
        live.sort();
        if live != self.live {
            info!(workers = live.len(), "live workers changed");
        }
        self.counters.live_workers.set(live.len() as f64);
        self.live = live;
    }

    /// Reads new receipts of steps with jobs in flight and accepts those for
    /// the current attempt whose artifact checks out: how a run without
    /// validators uses results (with validators, see `hold_due_receipts`).
    async fn collect_results(&mut self) -> anyhow::Result<bool> {
        let layout = self.bucket.layout().clone();
        let run_id = self.run.run_id.clone();
        let mut progressed = false;
        let listed = self
            .bucket
            .list_steps(
                &layout.receipts(&run_id),
                |step| layout.receipts_of_step(&run_id, step),
                &self.schedule.steps_in_flight(),
            )
            .await?;
        for key in listed.into_iter().map(|o| o.key) {
            if !self.seen_receipts.insert(key.clone()) {
                continue;
            }
            let Some((_, job, attempt)) = layout.parse_receipt(&run_id, &key) else {
                warn!(key = %key, "ignoring object with a malformed receipt key");
                continue;
            };
            let Some(JobState::Assigned {
                attempt: current,
                to,
                ..
            }) = self.schedule.state(&job).cloned()
            else {
                continue;
            };
            if attempt != current {
                info!(run = %run_id, job = %job, attempt, current, "ignoring receipt of a superseded attempt");
                continue;
            }
            match self.accept(&job, attempt, to, &key).await {
                Ok(accepted) => {
                    let step = self.schedule.spec(&job).map(|s| s.step);
                    if self.schedule.complete(&job, accepted.output) {
                        self.record_losses(step, &accepted.scalars);
                        self.jobs_accepted += 1;
                        self.counters.accepted.inc();
                        progressed = true;
                    }
                }
                Err(Refusal::Retry(e)) => {
                    // Storage trouble, not the miner's fault: read it again next pass.
                    warn!(run = %run_id, job = %job, attempt, error = %e, "cannot read result yet");
                    self.seen_receipts.remove(&key);
                }
                Err(refusal) => {
                    progressed = true;
                    if self.refuse(&job, attempt, to, refusal).await? {
                        // The listing being walked may name dropped jobs.
                        return Ok(true);
                    }
                }
            }
        }
        Ok(progressed)
    }

    /// Sends a job whose result `accept` refused back out (the worker's
    /// strike: even a result lost through no proven fault of its miner
    /// costs it priority, so a miner cannot void its own results over and
    /// over to stall the run), and convicts a writer whose own signed
    /// objects disagree. Storage trouble is the caller's to retry. Returns
    /// whether the run rewound.
    async fn refuse(
        &mut self,
        job: &str,
        attempt: u32,
        to: WorkerId,
        refusal: Refusal,
    ) -> anyhow::Result<bool> {
        let run_id = &self.run.run_id;
        let conviction = match refusal {
            Refusal::Retry(_) => return Ok(false),
            Refusal::Refused(reason) => {
                warn!(run = %run_id, job = %job, attempt, hotkey = %to.hotkey, %reason, "refused result; reassigning");
                None
            }
            Refusal::Lost(reason) => {
                warn!(run = %run_id, job = %job, attempt, hotkey = %to.hotkey, %reason, "result unusable through no proven fault of its miner; redoing the job");
                None
            }
            Refusal::Equivocated(reason) => {
                warn!(run = %run_id, job = %job, attempt, hotkey = %to.hotkey, %reason, "the miner's own signed objects disagree; banning the hotkey from the run and reassigning");
                Some(format!("{job} attempt {attempt}: {reason}"))
            }
        };
        self.take_back(job, attempt);
        self.counters.refused.inc();
        match conviction {
            Some(reason) => self.convict(to.hotkey, reason).await,
            None => Ok(false),
        }
    }

    /// Holds the result of `job`'s current attempt for its verdict (see
    /// [`JobState::Judging`]), answered by the receipt at `receipt_key`,
    /// which `check_held` first reads a lease after `checked_ms`. Returns
    /// whether it was held (not if the attempt is no longer out).
    fn hold(
        &mut self,
        job: &str,
        attempt: u32,
        by: WorkerId,
        receipt_key: String,
        checked_ms: u64,
    ) -> bool {
        if !self.schedule.hold(job, attempt, by) {
            return false;
        }
        let held = Held {
            receipt_key,
            receipt_digest: None,
            checked_ms,
        };
        self.judging.insert(job.to_string(), held);
        true
    }

    /// Sends a job back out from its worker, whether its result is held or
    /// not looked at yet (it counts against the worker either way).
    fn take_back(&mut self, job: &str, attempt: u32) {
        self.judging.remove(job);
        if !self.schedule.discard(job, attempt) {
            self.schedule.expire_now(job);
        }
    }

    /// With validators in the run, receipts are not collected as they come:
    /// the verdict on each says what to do (`collect_verdicts`). Only the
    /// jobs whose lease has run out without a verdict are looked for, so
    /// that a result written in time waits for its verdict (checked here at
    /// once, see `check_held`) instead of being redone.
    async fn hold_due_receipts(&mut self, now_ms: u64) -> anyhow::Result<bool> {
        let due = self.schedule.due(now_ms);
        if due.is_empty() {
            return Ok(false);
        }
        let layout = self.bucket.layout().clone();
        let run_id = self.run.run_id.clone();
        let mut steps: Vec<u32> = due
            .iter()
            .filter_map(|(job, _, _)| self.schedule.spec(job).map(|s| s.step))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        let listed = self
            .bucket
            .list_steps(
                &layout.receipts(&run_id),
                |step| layout.receipts_of_step(&run_id, step),
                &steps,
            )
            .await?;
        let mut progressed = false;
        for key in listed.into_iter().map(|o| o.key) {
            let Some((_, job, attempt)) = layout.parse_receipt(&run_id, &key) else {
                continue;
            };
            let Some((_, _, to)) = due.iter().find(|(j, a, _)| *j == job && *a == attempt) else {
                continue;
            };
            let to = *to;
            info!(run = %run_id, job = %job, attempt, receipt = %key, "lease out with a receipt but no verdict yet: checking the result");
            // Due for `check_held` at once: a lease has passed.
            progressed |= self.hold(&job, attempt, to, key, 0);
        }
        Ok(progressed)
    }

    /// Records a step's losses from an accepted output's one-value tensors
    /// (the workloads' convention: `eval_loss`, `train_loss`).
    fn record_losses(&mut self, step: Option<u32>, scalars: &[(String, f32)]) {
        let Some(step) = step else { return };
        for (name, value) in scalars {
            match name.as_str() {
                "eval_loss" => {
                    info!(run = %self.run.run_id, step, eval_loss = value, "step evaluated");
                    set_at(&mut self.state.eval_loss, step, *value);
                }
                "train_loss" => set_at(&mut self.state.train_loss, step, *value),
                _ => {}
            }
        }
    }

    /// Whether results wait for a validator's verdict before downstream
    /// jobs read them. A run names its validators in its manifest; without
    /// any, results are used as soon as they are well-formed.
    fn judged_before_use(&self) -> bool {
        !self.settings.validators.is_empty()
    }

    /// Reads the run validators' verdicts on held results: a passed result
    /// becomes an input downstream, anything else sends the job back out,
    /// and a failed replay bans the hotkey from the run.
    async fn collect_verdicts(&mut self) -> anyhow::Result<bool> {
        let layout = self.bucket.layout().clone();
        let run_id = self.run.run_id.clone();
        let mut progressed = false;
        // A step's single jobs (forward, reduce, outer, eval) are awaited
        // alone: one GET at the verdict's key says whether it came, where a
        // listing and then a GET would.
        let awaited = self.schedule.awaiting_verdict();
        let (keys, probing) = if let [(step, job, attempt)] = awaited.as_slice() {
            (vec![layout.verdict(&run_id, *step, job, *attempt)], true)
        } else {
            let listed = self
                .bucket
                .list_steps(
                    &layout.verdicts(&run_id),
                    |step| layout.verdicts_of_step(&run_id, step),
                    // Receipts are not collected as they come (see `tick`): a
                    // verdict may arrive for any job still out.
                    &self.schedule.steps_open(),
                )
                .await?;
            (listed.into_iter().map(|o| o.key).collect(), false)
        };
        for key in keys {
            if self.seen_verdicts.contains(&key) {
                continue;
            }
            let Some((step, job, attempt)) = layout.parse_verdict(&run_id, &key) else {
                self.seen_verdicts.insert(key);
                continue;
            };
            let Some((held_attempt, by)) =
                self.schedule
                    .judging(&job)
                    .or_else(|| match self.schedule.state(&job) {
                        Some(JobState::Assigned { attempt, to, .. }) => Some((*attempt, *to)),
                        _ => None,
                    })
            else {
                continue;
            };
            if held_attempt != attempt {
                continue;
            }
            let verdict = match self
                .bucket
                .get::<pb::Verdict>(&key, Expect::OneOf(&self.settings.validators))
                .await
            {
                Ok(v) => v,
                // Not written yet.
                Err(BucketError::NotFound { .. }) if probing => continue,
                Err(e) if e.is_transient() => {
                    warn!(run = %run_id, verdict = %key, error = %e, "cannot read verdict yet");
                    continue;
                }
                Err(e) => {
                    // Not a verdict of the run's validators: whoever put
                    // it there took the key this attempt's verdict needs,
                    // so the attempt can never be judged. Redo the job.
                    warn!(run = %run_id, job = %job, attempt, verdict = %key, error = %e, "a foreign object sits at the verdict key of a result; redoing the job");
                    self.seen_verdicts.insert(key);
                    self.take_back(&job, attempt);
                    progressed = true;
                    continue;
                }
            };
            self.seen_verdicts.insert(key.clone());
            let receipt_key = layout.receipt(&run_id, step, &job, attempt);
            if verdict.receipt_key != receipt_key || verdict.hotkey != by.hotkey.to_bytes() {
                warn!(run = %run_id, verdict = %key, "verdict names another receipt; ignoring");
                continue;
            }
            // Judged before its receipt was looked for.
            let now = self.settings.clock.now_ms();
            self.hold(&job, attempt, by, receipt_key.clone(), now);
            let outcome = pb::VerdictOutcome::try_from(verdict.outcome).unwrap_or_default();
            let audited = !verdict.auditor.is_empty();
            match self.gate.on_verdict(outcome, by.hotkey, step, audited) {
                Decision::Use { .. } => {
                    let used = match self.verdict_output(&job, attempt, by, &verdict) {
                        Some(used) => used,
                        // A verdict written before it named the output:
                        // read the result here.
                        None => match self.accept(&job, attempt, by, &receipt_key).await {
                            Ok(accepted) => (accepted.output, accepted.scalars),
                            Err(Refusal::Retry(e)) => {
                                warn!(run = %run_id, job = %job, attempt, error = %e, "cannot read result yet");
                                self.seen_verdicts.remove(&key);
                                continue;
                            }
                            Err(refusal) => {
                                progressed = true;
                                if self.refuse(&job, attempt, by, refusal).await? {
                                    return Ok(true);
                                }
                                continue;
                            }
                        },
                    };
                    progressed = true;
                    self.judging.remove(&job);
                    let (output, scalars) = used;
                    if self.schedule.confirm(&job, output) {
                        self.record_losses(Some(step), &scalars);
                        self.jobs_accepted += 1;
                        self.counters.accepted.inc();
                    }
                }
                Decision::Convict => {
                    progressed = true;
                    warn!(run = %run_id, job = %job, attempt, hotkey = %by.hotkey, reason = %verdict.reason, "validator failed the result; banning the hotkey from the run and reassigning");
                    self.take_back(&job, attempt);
                    self.counters.refused.inc();
                    let reason = format!("{job} attempt {attempt} failed: {}", verdict.reason);
                    if self.convict(by.hotkey, reason).await? {
                        // The listing being walked may name dropped jobs.
                        return Ok(true);
                    }
                }
                Decision::Redo => {
                    progressed = true;
                    warn!(run = %run_id, job = %job, attempt, hotkey = %by.hotkey, outcome = ?outcome, reason = %verdict.reason, "the result gets no credit (late, or unverified from a banned hotkey); reassigning");
                    self.take_back(&job, attempt);
                    self.counters.refused.inc();
                }
            }
        }
        Ok(progressed)
    }

    /// The output a passing verdict names, and its losses: the attempt's
    /// artifact key, with the digest the validator read there. `None` for a
    /// verdict that names no output, or not this attempt's.
    fn verdict_output(
        &self,
        job: &str,
        attempt: u32,
        by: WorkerId,
        verdict: &pb::Verdict,
    ) -> Option<(Output, Vec<(String, f32)>)> {
        let named = verdict.output.as_ref()?;
        let key = self
            .bucket
            .layout()
            .artifact(&self.run.run_id, job, attempt);
        if named.key != key {
            return None;
        }
        let output = Output {
            attempt,
            by,
            key,
            digest: Digest::from_slice(&named.digest)?,
        };
        Some((output, locus_protocol::tensor::scalars(&verdict.scalars)))
    }

    /// Bans `hotkey` from the run, the one place that does: the gate
    /// remembers it (and says where a rewind goes back to), the schedule
    /// takes its open jobs back and gives it no more.
    fn ban(&mut self, hotkey: Hotkey) -> Conviction {
        let conviction = self.gate.convict(hotkey);
        if !self.schedule.is_banned(&hotkey) {
            let taken = self.schedule.ban(hotkey);
            warn!(run = %self.run.run_id, hotkey = %hotkey, reassigned = taken.len(), "hotkey banned from the run: it gets no more work");
        }
        conviction
    }

    /// Checks a receipt and its artifact before downstream jobs may read it
    /// (what a validator's verdict vouches for when the run has one).
    async fn accept(
        &mut self,
        job: &str,
        attempt: u32,
        to: WorkerId,
        key: &str,
    ) -> Result<Accepted, Refusal> {
        let layout = self.bucket.layout().clone();
        let run_id = &self.run.run_id;
        let receipt = match self
            .bucket
            .get::<pb::Receipt>(key, Expect::Signer(&to.hotkey))
            .await
        {
            Ok(receipt) => receipt,
            Err(e) if e.is_transient() => return Err(Refusal::Retry(e)),
            Err(e) => return Err(Refusal::Lost(format!("no receipt of this hotkey: {e}"))),
        };
        // The same attribution the validator applies: a receipt it would
        // reject never gets a verdict, so it must not be held for one.
        let (assignment_key, assignment) = self
            .assignments
            .get(job)
            .ok_or_else(|| Refusal::Refused(format!("no assignment of {job} in this process")))?;
        if receipt.assignment_key != *assignment_key {
            return Err(Refusal::Refused(format!(
                "receipt {key} names assignment {}, not {assignment_key}",
                receipt.assignment_key
            )));
        }
        attribution::attribute(&layout, run_id, key, &receipt, assignment)
            .map_err(|m| Refusal::Refused(m.at(key).to_string()))?;
        attribution::check_commitments(&layout, &receipt, assignment)
            .map_err(|broken| Refusal::Refused(format!("receipt {key}: {broken}")))?;
        let expected_artifact = layout.artifact(run_id, job, attempt);
        let output = receipt.output.clone().unwrap_or_default();
        // Only an artifact this hotkey validly signed can count against it.
        let artifact = match self
            .bucket
            .get::<pb::TensorArtifact>(&expected_artifact, Expect::Signer(&to.hotkey))
            .await
        {
            Ok(artifact) => artifact,
            Err(e) if e.is_transient() => return Err(Refusal::Retry(e)),
            Err(e) => return Err(Refusal::Lost(format!("no artifact of this hotkey: {e}"))),
        };
        if artifact.digest().as_bytes().as_slice() != output.digest.as_slice() {
            return Err(Refusal::Equivocated(format!(
                "artifact {expected_artifact} is signed by the same hotkey as receipt {key} but does not match its digest"
            )));
        }
        let spec = self
            .schedule
            .spec(job)
            .ok_or_else(|| Refusal::Refused("unknown job".into()))?;
        let expected = self.workload().output_spec(spec.kind, spec.stage);
        if let Err(e) = check_outputs(&expected, &artifact.tensors) {
            return Err(Refusal::Refused(format!(
                "artifact {expected_artifact}: {e}"
            )));
        }
        Ok(Accepted {
            output: Output {
                attempt,
                by: to,
                key: expected_artifact,
                digest: artifact.digest(),
            },
            receipt_digest: receipt.digest(),
            scalars: locus_protocol::tensor::scalars(&artifact.tensors),
        })
    }

    /// Whether the run has not started and waits for `min_workers` live
    /// workers, so that the first step is spread over all of them.
    fn warming_up(&self) -> bool {
        // The cheap test first: once enough workers are live, no job scan.
        self.live.len() < self.settings.min_workers && {
            let (_, assigned, done) = self.schedule.counts();
            assigned == 0 && done == 0
        }
    }

    /// Publishes a manifest for every ready job and assigns it.
    async fn publish_ready(&mut self) -> anyhow::Result<bool> {
        let ready: Vec<_> = self.schedule.ready().into_iter().cloned().collect();
        let mut progressed = false;
        let warming_up = self.warming_up();
        for spec in ready {
            if self.live.is_empty() || warming_up {
                break;
            }
            let manifest = self.publish_manifest(&spec).await?;
            let Some(worker) = self.schedule.pick_worker(
                &spec.job_id,
                &self.live,
                self.settings.max_inflight_per_worker,
            ) else {
                break;
            };
            let attempt = self.schedule.next_attempt(&spec.job_id);
            let now = self.settings.clock.now_ms();
            let deadline = now.saturating_add(self.settings.lease.as_millis() as u64);
            let mut assignment = pb::Assignment {
                run_id: self.run.run_id.clone(),
                job_id: spec.job_id.clone(),
                attempt,
                hotkey: worker.hotkey.to_bytes().to_vec(),
                worker: worker.worker,
                manifest_key: manifest.key,
                manifest_digest: manifest.digest.to_vec(),
                issued_unix_ms: now,
                deadline_unix_ms: deadline,
                step: spec.step,
                sealed_grant: Vec::new(),
                manifest: Some(manifest.manifest),
                next_seq: None,
                copy_signature: Vec::new(),
            };
            let manifest_inputs: Vec<String> = self.input_keys(&spec)?;
            assignment.sealed_grant = self
                .job_grant(&spec, &assignment, worker.hotkey, &manifest_inputs)
                .await?;
            let key = self.write_assignment(&mut assignment, worker).await?;
            info!(run = %self.run.run_id, job = %spec.job_id, attempt, hotkey = %worker.hotkey, worker = worker.worker, "assigned");
            self.assignments
                .insert(spec.job_id.clone(), (key, assignment));
            self.schedule
                .assign(&spec.job_id, attempt, worker, deadline);
            self.counters.published.inc();
            progressed = true;
        }
        Ok(progressed)
    }

    /// Writes an assignment under the worker's prefix at the sequence number
    /// the worker was told to expect, or else the next one, and sets aside
    /// the one after for this worker (`next_seq`). A key that is already
    /// taken holds an object the owner did not write (its own sequence
    /// numbers only grow): skip past it.
    async fn write_assignment(
        &mut self,
        assignment: &mut pb::Assignment,
        worker: WorkerId,
    ) -> anyhow::Result<String> {
        let layout = self.bucket.layout().clone();
        let mut expected = self.reserved.remove(&worker);
        for _ in 0..MAX_TAKEN_KEYS {
            let seq = match expected.take() {
                Some(seq) => seq,
                None => self.take_seq()?,
            };
            let next = self.take_seq()?;
            assignment.next_seq = Some(next);
            let key = layout.assignment(&worker.hotkey, worker.worker, seq);
            assignment.copy_signature = if attribution::copy_fits(assignment) {
                attribution::sign_assignment_copy(assignment, &key, &self.owner)
            } else {
                Vec::new()
            };
            match self.bucket.create(&key, &*assignment, &self.owner).await {
                Ok(_) => {
                    self.reserved.insert(worker, next);
                    return Ok(key);
                }
                Err(BucketError::AlreadyExists { .. }) => {
                    warn!(run = %self.run.run_id, key = %key, "a foreign object sits at the next assignment key; skipping past it");
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!(
            "{MAX_TAKEN_KEYS} assignment keys in a row under {} are taken by foreign objects",
            layout.assignments_of(&worker.hotkey, worker.worker)
        )
    }

    /// A sequence number no assignment of this owner has used.
    fn take_seq(&mut self) -> anyhow::Result<u64> {
        let seq = self.next_seq;
        self.next_seq = seq
            .checked_add(1)
            .context("assignment sequence exhausted")?;
        Ok(seq)
    }

    /// Bucket keys of a job's inputs.
    fn input_keys(&self, spec: &JobSpec) -> anyhow::Result<Vec<String>> {
        spec.inputs
            .iter()
            .map(|source| match source {
                Source::Owner(id) => Ok(self
                    .owner_outputs
                    .get(id)
                    .context("owner artifact not written")?
                    .key
                    .clone()),
                Source::Job(id) => Ok(self
                    .schedule
                    .output(id)
                    .context("input not ready")?
                    .key
                    .clone()),
            })
            .collect()
    }

    /// Presigned URLs for exactly what this attempt needs, sealed to the
    /// miner's hotkey; empty on a bucket that cannot presign (local). The
    /// artifact and receipt PUTs are create-only and sized: the artifact at
    /// the workload's bound for this job's output, the receipt at its size
    /// class with the copy of `assignment` it carries.
    async fn job_grant(
        &self,
        spec: &JobSpec,
        assignment: &pb::Assignment,
        hotkey: Hotkey,
        inputs: &[String],
    ) -> anyhow::Result<Vec<u8>> {
        use locus_protocol::presign::Conditions;
        if !self.bucket.can_presign() {
            return Ok(Vec::new());
        }
        let (attempt, deadline_ms) = (assignment.attempt, assignment.deadline_unix_ms);
        let layout = self.bucket.layout();
        let run_id = &self.run.run_id;
        let mut wanted: Vec<(&str, String, Conditions)> = inputs
            .iter()
            .map(|k| ("GET", k.clone(), Conditions::NONE))
            .collect();
        let artifact_size = sealed_output_bound(
            &self.workload().output_spec(spec.kind, spec.stage),
            run_id,
            &spec.job_id,
            attempt,
        );
        wanted.push((
            "PUT",
            layout.artifact(run_id, &spec.job_id, attempt),
            Conditions::create_only(artifact_size),
        ));
        wanted.push((
            "PUT",
            layout.receipt(run_id, spec.step, &spec.job_id, attempt),
            Conditions::create_only(attribution::receipt_size(assignment)),
        ));
        let grant = self
            .grant(hotkey, run_id, &spec.job_id, attempt, wanted, deadline_ms)
            .await?;
        Ok(locus_protocol::grant::seal(&grant, &hotkey)?)
    }

    async fn grant(
        &self,
        hotkey: Hotkey,
        run_id: &str,
        job_id: &str,
        attempt: u32,
        wanted: Vec<(&str, String, locus_protocol::presign::Conditions)>,
        expires_ms: u64,
    ) -> anyhow::Result<pb::Grant> {
        let scope = locus_protocol::grant::Scope {
            hotkey,
            run_id,
            job_id,
            attempt,
            expires_ms,
        };
        Ok(locus_protocol::grant::presign(
            &self.bucket,
            &scope,
            wanted,
            self.settings.clock.now_ms(),
        )?)
    }

    /// Keeps a standing heartbeat grant for every registered miner, renewed
    /// well before it expires, so miners on S3 can announce themselves
    /// without any write credential.
    async fn renew_heartbeat_grants(&mut self) -> anyhow::Result<()> {
        if !self.bucket.can_presign() || self.settings.miners.is_empty() {
            return Ok(());
        }
        let now = self.settings.clock.now_ms();
        if self.heartbeat_grants_until > now + HEARTBEAT_GRANT_RENEW.as_millis() as u64 {
            return Ok(());
        }
        let expires = now + HEARTBEAT_GRANT_LIFETIME.as_millis() as u64;
        let layout = self.bucket.layout().clone();
        for hotkey in self.settings.miners.clone() {
            // Heartbeats are rewritten by design: sized, not create-only.
            let size = locus_protocol::presign::Conditions::exact_size(
                locus_protocol::grant::HEARTBEAT_SIZE,
            );
            let wanted = (0..self.settings.max_workers_per_miner)
                .map(|w| ("PUT", layout.heartbeat(&hotkey, w), size))
                .collect();
            let grant = self
                .grant(hotkey, "", "heartbeat", 0, wanted, expires)
                .await?;
            let record = pb::HeartbeatGrant {
                hotkey: hotkey.to_bytes().to_vec(),
                expires_unix_ms: expires,
                sealed_grant: locus_protocol::grant::seal(&grant, &hotkey)?,
            };
            self.bucket
                .put(&layout.heartbeat_grant(&hotkey), &record, &self.owner)
                .await?;
        }
        info!(
            miners = self.settings.miners.len(),
            "heartbeat grants issued"
        );
        self.heartbeat_grants_until = expires;
        Ok(())
    }

    /// The job's manifest for its current inputs, and the key and digest
    /// its assignments commit to. It is not stored: every assignment
    /// carries it (field 12), signed with it, and a receipt carries its
    /// assignment, so no reader needs an object of its own (one PUT per
    /// job). The key names the manifest; a manifest naming other inputs
    /// (an input lost and recomputed) takes the next revision's key.
    async fn publish_manifest(&mut self, spec: &JobSpec) -> anyhow::Result<Published> {
        for source in &spec.inputs {
            if let Source::Owner(id) = source {
                self.owner_output(id).await?;
            }
        }
        let inputs = spec
            .inputs
            .iter()
            .map(|source| {
                let out = match source {
                    Source::Owner(id) => self
                        .owner_outputs
                        .get(id)
                        .context("owner artifact not written")?,
                    Source::Job(id) => self.schedule.output(id).context("input not ready")?,
                };
                Ok(pb::InputRef {
                    key: out.key.clone(),
                    digest: out.digest.to_vec(),
                    writer: out.by.hotkey.to_bytes().to_vec(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let earlier = self.published.get(&spec.job_id);
        if let Some(published) = earlier.filter(|p| p.inputs == inputs) {
            return Ok(published.clone());
        }
        let layout = self.bucket.layout().clone();
        let run_id = self.run.run_id.clone();
        let revision = earlier
            .and_then(|p| layout.parse_job_manifest(&run_id, &p.key))
            .map_or(0, |(_, revision)| revision.saturating_add(1));
        let manifest = pb::JobManifest {
            run_id: run_id.clone(),
            inputs: inputs.clone(),
            ..locus_workloads::job_manifest(self.workload(), spec)
        };
        let published = Published {
            key: layout.job_manifest_revision(&run_id, &spec.job_id, revision),
            digest: Digest::of(&prost::Message::encode_to_vec(&manifest)),
            inputs,
            manifest,
        };
        self.published
            .insert(spec.job_id.clone(), published.clone());
        Ok(published)
    }

    /// Records finished steps in the run state and plans further ahead.
    async fn advance_steps(&mut self) -> anyhow::Result<bool> {
        let mut completed = self.state.completed_steps;
        while completed < self.settings.steps && self.schedule.step_done(completed) {
            completed += 1;
        }
        if completed == self.state.completed_steps {
            return Ok(false);
        }
        if completed >= self.settings.steps && !self.final_params_intact().await? {
            return Ok(false);
        }
        self.state.completed_steps = completed;
        self.state.done = completed >= self.settings.steps;
        self.set_params(completed);
        let (waiting, assigned, done) = self.schedule.counts();
        info!(run = %self.run.run_id, completed_steps = completed, of = self.settings.steps, waiting, assigned, done, "progress");
        self.plan_ahead();
        // A failed write fails this pass; the next pass retries it first.
        self.save_state().await?;
        Ok(true)
    }
}

impl Orchestrator {
    /// The run's result is the last step's parameter artifacts: before the
    /// run is declared done, make sure they are still what was accepted
    /// (they are recomputed first if not).
    async fn final_params_intact(&mut self) -> anyhow::Result<bool> {
        let Some(last) = self.settings.steps.checked_sub(1) else {
            return Ok(true);
        };
        for job in self.workload().param_jobs(last, self.generation(last)) {
            if self.schedule.output(&job).is_none() || !self.verify_output(&job).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// A result [`Orchestrator::accept`] found usable.
struct Accepted {
    output: Output,
    receipt_digest: Digest,
    /// The output's one-value tensors (see [`Orchestrator::record_losses`]).
    scalars: Vec<(String, f32)>,
}

/// Why a result was not accepted.
enum Refusal {
    /// The result is wrong: take the job back from its miner.
    Refused(String),
    /// The result is gone or was replaced by someone else, which proves
    /// nothing against its miner: redo the job, without a ban.
    Lost(String),
    /// The miner's own signed objects disagree (its receipt commits to one
    /// artifact, it signed another): ban it from the run and redo the job.
    Equivocated(String),
    /// The bucket could not be read: try again.
    Retry(BucketError),
}

impl From<BucketError> for Refusal {
    fn from(e: BucketError) -> Self {
        if e.is_transient() {
            Refusal::Retry(e)
        } else {
            Refusal::Refused(e.to_string())
        }
    }
}

/// Whether a heartbeat was stored within `ttl_ms` of `now_ms`. The storage's
/// write time counts, not the miner's claim: a heartbeat dated in the future
/// would otherwise keep a dead worker live and soak up work until leases
/// expire.
fn heartbeat_fresh(object: &locus_protocol::Listed, ttl_ms: u64, now_ms: u64) -> bool {
    object.modified_unix_ms.saturating_add(ttl_ms) >= now_ms
}

fn set_at(values: &mut Vec<f32>, index: u32, value: f32) {
    let index = index as usize;
    if values.len() <= index {
        values.resize(index + 1, f32::NAN);
    }
    values[index] = value;
}
