//! The validator loop: find runs, judge new receipts, write verdicts and the
//! window's scores.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locus_daemon::{Backoff, Shutdown, Wake};
use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, BucketError, Expect, Hotkey, Keypair};
use locus_workloads::Device;
use tracing::{info, warn};

use crate::input_cache::InputCache;
use crate::replay::{Judge, JudgeError};
use crate::scoring::{self, Judged};
use crate::weights::{ChainTarget, WeightPusher};

/// How often the bucket is listed for new runs: one LIST, and the owner
/// waits for this validator's first verdicts of a new run.
const RUN_DISCOVERY_EVERY: Duration = Duration::from_secs(1);

/// Signers of rejected receipts listed per run, at most.
const MAX_REJECTED_SIGNERS: usize = 256;

pub struct Settings {
    pub sample_rate: f64,
    /// Replays a hotkey must pass in a run before sampling applies to it.
    pub probation_replays: u32,
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub device: Device,
    /// Exit once this run is complete and fully scored.
    pub exit_after_run: Option<String>,
    /// Set weights on chain when a window completes (none: bucket only).
    /// Taken by the weight-push task when the first window completes.
    pub chain: Option<ChainTarget>,
}

/// What the validator knows about one run.
struct RunTrack {
    manifest: pb::RunManifest,
    judged: HashSet<String>,
    rejected: HashSet<String>,
    verdicts: Vec<Judged>,
    /// The verdict each job was credited by: a job earns once.
    credited: std::collections::HashMap<String, pb::Verdict>,
    /// Signers of rejected receipts shown in the score table.
    rejected_signers: HashSet<Hotkey>,
    /// Replays passed per hotkey, for probation.
    replays_passed: std::collections::HashMap<Hotkey, u32>,
    /// Steps below this are closed: no new receipts are expected there.
    open_from: u32,
    complete: bool,
}

pub struct Validator {
    bucket: Bucket,
    owner: Hotkey,
    key: Arc<Keypair>,
    settings: Settings,
    runs: BTreeMap<String, RunTrack>,
    last_discovery: Option<Instant>,
    pub receipts_judged: u64,
    counters: Counters,
    /// Sets weights on chain, off the judging path (started with the first
    /// complete window when `settings.chain` is set).
    weights: Option<WeightPusher>,
    /// Replay inputs verified once, for the replays that share them.
    inputs: InputCache,
}

/// Bytes of verified replay inputs kept: a few stages' parameters, within
/// the validator's memory budget.
const INPUT_CACHE_BYTES: usize = 32 << 20;

/// What the validator reports on `/metrics`.
struct Counters {
    verdicts: locus_observe::Metrics,
    rejected: locus_observe::Counter,
    replay: locus_observe::DurationMetric,
}

impl Counters {
    fn new(metrics: &locus_observe::Metrics) -> Self {
        Counters {
            verdicts: metrics.clone(),
            rejected: metrics.counter(
                "receipts_rejected_total",
                "Receipts not attributable to the assigned hotkey",
            ),
            replay: metrics.duration(
                "replay_seconds",
                "Time spent judging receipts, replays included",
            ),
        }
    }

    fn verdict(&self, outcome: VerdictOutcome) {
        let name = match outcome {
            VerdictOutcome::Verified => "jobs_verified_total",
            VerdictOutcome::Failed => "jobs_failed_total",
            VerdictOutcome::Unsampled => "jobs_unsampled_total",
            VerdictOutcome::Late | VerdictOutcome::Unspecified => "jobs_late_total",
        };
        self.verdicts
            .counter(name, "Verdicts written, by outcome")
            .inc();
    }
}

impl Validator {
    pub fn new(bucket: Bucket, owner: Hotkey, key: Keypair, settings: Settings) -> Self {
        Validator {
            bucket,
            owner,
            key: Arc::new(key),
            settings,
            runs: BTreeMap::new(),
            last_discovery: None,
            receipts_judged: 0,
            counters: Counters::new(&locus_observe::Metrics::new()),
            weights: None,
            inputs: InputCache::new(INPUT_CACHE_BYTES),
        }
    }

    /// Reports this validator's counters in `metrics`.
    pub fn set_metrics(&mut self, metrics: &locus_observe::Metrics) {
        self.counters = Counters::new(metrics);
    }

    /// Judges until `shutdown`, or until the `exit_after_run` run is
    /// scored. Then the weight-push task is stopped: on shutdown at once; at
    /// the end of the run after one attempt at its window (bounded by the
    /// chain timeouts, cut short by shutdown).
    pub async fn run(&mut self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let run_done = self.judge_until(shutdown).await;
        if let Some(weights) = self.weights.take() {
            if run_done {
                weights.finish(shutdown).await;
            } else {
                weights.close().await;
            }
        }
        Ok(())
    }

    /// The judging loop. Returns whether it stopped because the
    /// `exit_after_run` run is complete (else shutdown came).
    async fn judge_until(&mut self, shutdown: &Shutdown) -> bool {
        let mut backoff = Backoff::new(self.settings.poll_min, self.settings.poll_max);
        // New runs, and the receipts of the runs found so far (added as
        // runs appear).
        let wake = Wake::on(&self.bucket, &[]);
        wake.add_shallow(&self.bucket.layout().runs());
        loop {
            let progressed = match self.tick().await {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "validator pass failed; retrying");
                    false
                }
            };
            if let Some(run) = &self.settings.exit_after_run
                && self.runs.get(run).is_some_and(|t| t.complete)
            {
                info!(run = %run, "run complete and scored; exiting");
                return true;
            }
            if progressed {
                backoff.reset();
            } else if self.runs.values().any(|t| !t.complete) {
                // The owner waits for verdicts before it goes on: while a
                // run is live, keep the delay to a new receipt short.
                backoff.cap(self.settings.poll_min * 4);
            }
            for run in self.runs.keys() {
                wake.add(&self.bucket.layout().receipts(run));
            }
            if !shutdown.sleep_or_wake(backoff.next_delay(), &wake).await {
                return false;
            }
        }
    }

    /// One pass over every run that is not yet complete.
    pub async fn tick(&mut self) -> anyhow::Result<bool> {
        self.discover_runs().await?;
        let mut progressed = false;
        let run_ids: Vec<String> = self.runs.keys().cloned().collect();
        for run_id in run_ids {
            progressed |= self.scan_run(&run_id).await?;
        }
        Ok(progressed)
    }

    async fn discover_runs(&mut self) -> anyhow::Result<()> {
        // While no run is live there is nothing else to do: look every
        // pass (the back-off bounds the rate), so a new run is judged at once.
        let judging = self.runs.values().any(|t| !t.complete);
        if judging
            && self
                .last_discovery
                .is_some_and(|t| t.elapsed() < RUN_DISCOVERY_EVERY)
        {
            return Ok(());
        }
        self.last_discovery = Some(Instant::now());
        let layout = self.bucket.layout().clone();
        let mut scored = Vec::new();
        for run_id in self.bucket.list_dirs(&layout.runs()).await? {
            if self.runs.contains_key(&run_id)
                || locus_protocol::paths::validate_id("run", &run_id).is_err()
            {
                continue;
            }
            let key = layout.run_manifest(&run_id);
            let manifest = match self
                .bucket
                .get::<pb::RunManifest>(&key, Expect::Signer(&self.owner))
                .await
            {
                Ok(m) if m.run_id == run_id => m.into_inner(),
                Ok(_) => {
                    warn!(key = %key, "run manifest names another run; ignoring");
                    continue;
                }
                Err(BucketError::NotFound { .. }) => continue,
                Err(e) if e.is_repeat_rejection() => continue,
                Err(e) => {
                    warn!(error = %e, "rejected run manifest");
                    continue;
                }
            };
            let me = self.key.hotkey().to_bytes();
            if !manifest.validators.iter().any(|v| v.as_slice() == me) {
                warn!(run = %run_id, validator = %self.key.hotkey(), "this validator is not listed in the run manifest; its verdicts will not count for the run");
            }
            let mut track = RunTrack {
                manifest,
                judged: HashSet::new(),
                rejected: HashSet::new(),
                verdicts: Vec::new(),
                credited: Default::default(),
                replays_passed: Default::default(),
                rejected_signers: HashSet::new(),
                open_from: 0,
                complete: false,
            };
            if let Some(window) = self.final_window(&run_id).await? {
                // Scored to the end before a restart: nothing in it changes
                // any more, so neither its verdicts nor its receipts are
                // read again.
                info!(run = %run_id, receipts = window.receipts, "run already scored to the end");
                track.complete = true;
                scored.push(window);
                self.runs.insert(run_id, track);
                continue;
            }
            self.recover_verdicts(&run_id, &mut track).await?;
            info!(run = %run_id, verdicts = track.verdicts.len(), "tracking run");
            self.runs.insert(run_id, track);
        }
        // The chain gets the newest of the windows finished before a
        // restart again, as it had it; not every old one in turn.
        if let Some(newest) = scored.into_iter().max_by_key(|w| w.unix_ms) {
            self.push_weights(newest);
        }
        Ok(())
    }

    /// This validator's complete score window of `run_id`, if it wrote one.
    async fn final_window(&self, run_id: &str) -> anyhow::Result<Option<pb::ScoreWindow>> {
        let key = self.bucket.layout().score_window(run_id);
        let me = self.key.hotkey();
        match self
            .bucket
            .get_opt::<pb::ScoreWindow>(&key, Expect::Signer(&me))
            .await
        {
            Ok(Some(window)) if window.complete && window.window_id == run_id => {
                Ok(Some(window.into_inner()))
            }
            Ok(_) => Ok(None),
            Err(e) if e.is_transient() => Err(e.into()),
            // Not this validator's: the run is judged again and its window
            // written over.
            Err(e) => {
                warn!(run = %run_id, key = %key, error = %e, "ignoring a score window this validator did not write");
                Ok(None)
            }
        }
    }

    /// Verdicts this validator already wrote (before a restart) count again.
    async fn recover_verdicts(&self, run_id: &str, track: &mut RunTrack) -> anyhow::Result<()> {
        let me = self.key.hotkey();
        for key in self
            .bucket
            .list(&self.bucket.layout().verdicts(run_id), None)
            .await?
        {
            match self
                .bucket
                .get::<pb::Verdict>(&key, Expect::Signer(&me))
                .await
            {
                Ok(v) => {
                    if let Ok(hotkey) = Hotkey::from_bytes(&v.hotkey) {
                        track.judged.insert(v.receipt_key.clone());
                        let outcome = VerdictOutcome::try_from(v.outcome).unwrap_or_default();
                        if credits(&v) {
                            track
                                .credited
                                .insert(v.job_id.clone(), v.clone().into_inner());
                        }
                        if outcome == VerdictOutcome::Verified {
                            *track.replays_passed.entry(hotkey).or_default() += 1;
                        }
                        track.verdicts.push(judged_from(&v, hotkey));
                    }
                }
                Err(e) => warn!(error = %e, "ignoring unreadable verdict"),
            }
        }
        Ok(())
    }

    async fn scan_run(&mut self, run_id: &str) -> anyhow::Result<bool> {
        let Some(track) = self.runs.get(run_id) else {
            return Ok(false);
        };
        if track.complete {
            return Ok(false);
        }
        let layout = self.bucket.layout().clone();
        let (state, state_read) = match self
            .bucket
            .get_opt::<pb::RunState>(&layout.run_state(run_id), Expect::Signer(&self.owner))
            .await
        {
            Ok(s) => (s.map(|s| s.into_inner()).unwrap_or_default(), true),
            Err(e) => {
                warn!(error = %e, "rejected run state");
                (pb::RunState::default(), false)
            }
        };
        // The owner plans one step ahead and waits for verdicts before it
        // uses a result, so the next step's receipts are judged right away.
        let last_step = if state.done {
            state.completed_steps.saturating_sub(1)
        } else {
            (state.completed_steps + 1).min(track.manifest.steps.saturating_sub(1))
        };
        let mut progressed = false;
        let mut all_settled = true;
        // Steps well behind the run are normally skipped; once the run is
        // done, one last pass covers every step so nothing is left unjudged.
        let open_from = if state.done { 0 } else { track.open_from };
        for step in open_from..=last_step {
            let listed = self
                .bucket
                .list_meta(&layout.receipts_of_step(run_id, step), None)
                .await?;
            for object in listed {
                let key = object.key;
                let track = self.runs.get(run_id).expect("run tracked");
                if track.judged.contains(&key) || track.rejected.contains(&key) {
                    continue;
                }
                let settled = self.judge_one(run_id, &key, object.modified_unix_ms).await;
                progressed |= settled;
                all_settled &= settled;
            }
        }
        let track = self.runs.get_mut(run_id).expect("run tracked");
        if state_read {
            // Follows the run back too: a rewind recomputes earlier steps.
            track.open_from = state.completed_steps.saturating_sub(1);
        }
        let now_complete = state.done && all_settled;
        if progressed || now_complete {
            track.complete = now_complete;
            if let Err(e) = self.write_scores(run_id).await {
                // Not complete until the complete window is in the bucket.
                if let Some(track) = self.runs.get_mut(run_id) {
                    track.complete = false;
                }
                return Err(e);
            }
        }
        Ok(progressed)
    }

    /// Judges one receipt and writes its verdict. Returns whether the
    /// receipt was settled (verdict written or rejected for good).
    async fn judge_one(&mut self, run_id: &str, key: &str, written_ms: u64) -> bool {
        let job = self
            .bucket
            .layout()
            .parse_receipt(run_id, key)
            .map(|(_, job, attempt)| (job, attempt));
        if let Some((job, attempt)) = &job
            && let Err(e) = self.recheck_credit(run_id, job, *attempt).await
        {
            warn!(run = %run_id, job = %job, error = %e, "cannot recheck the credited result yet; will retry");
            return false;
        }
        let track = self.runs.get(run_id).expect("run tracked");
        let credited = job
            .and_then(|(job, _)| track.credited.get(&job))
            .map(|v| v.attempt);
        let needed = self.settings.probation_replays;
        let on_probation = |h: &Hotkey| track.replays_passed.get(h).copied().unwrap_or(0) < needed;
        let judge = self.judge(track, &on_probation);
        let result = judge.judge(key, written_ms, credited).await;
        let track = self.runs.get_mut(run_id).expect("run tracked");
        match result {
            Ok(verdict) => {
                let layout = self.bucket.layout();
                let verdict_key =
                    layout.verdict(run_id, verdict.step, &verdict.job_id, verdict.attempt);
                match self.bucket.create(&verdict_key, &verdict, &self.key).await {
                    Ok(_) => {}
                    Err(BucketError::AlreadyExists { .. }) => {
                        // Ours from before a restart, or a foreign object on
                        // the key: then the owner redoes the job (a new
                        // attempt, a new key) and this receipt earns nothing.
                        let me = self.key.hotkey();
                        if let Err(e) = self
                            .bucket
                            .get::<pb::Verdict>(&verdict_key, Expect::Signer(&me))
                            .await
                        {
                            if e.is_transient() {
                                warn!(error = %e, "cannot read back the verdict; will retry");
                                return false;
                            }
                            warn!(run = %run_id, receipt = %key, verdict = %verdict_key, error = %e, "a foreign object sits at the verdict key; the owner redoes the job");
                            track.judged.insert(key.to_string());
                            return true;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot write verdict; will retry");
                        return false;
                    }
                }
                let Ok(hotkey) = Hotkey::from_bytes(&verdict.hotkey) else {
                    return false;
                };
                let outcome = VerdictOutcome::try_from(verdict.outcome).unwrap_or_default();
                let line = format!("{outcome:?}").to_lowercase();
                if outcome == VerdictOutcome::Failed {
                    warn!(run = %run_id, job = %verdict.job_id, attempt = verdict.attempt, hotkey = %hotkey, reason = %verdict.reason, "verdict: failed");
                } else {
                    info!(run = %run_id, job = %verdict.job_id, attempt = verdict.attempt, hotkey = %hotkey, cu = verdict.compute_units, replay_ms = verdict.replay_ms, "verdict: {line}");
                }
                track.judged.insert(key.to_string());
                if credits(&verdict) {
                    track
                        .credited
                        .insert(verdict.job_id.clone(), verdict.clone());
                }
                if outcome == VerdictOutcome::Verified {
                    *track.replays_passed.entry(hotkey).or_default() += 1;
                }
                track.verdicts.push(judged_from(&verdict, hotkey));
                self.receipts_judged += 1;
                self.counters.verdict(outcome);
                self.counters
                    .replay
                    .observe(std::time::Duration::from_millis(verdict.replay_ms));
                true
            }
            Err(JudgeError::Rejected(rejection)) => {
                warn!(run = %run_id, %rejection, "receipt rejected; it earns nothing");
                self.counters.rejected.inc();
                track.rejected.insert(key.to_string());
                // Whoever signed it sees the rejection in the score table
                // (a bounded number of signers: keys cost nothing to make).
                if let Ok(receipt) = self.bucket.get::<pb::Receipt>(key, Expect::AnySigner).await {
                    let signer = *receipt.signer();
                    let room = track.rejected_signers.len() < MAX_REJECTED_SIGNERS;
                    if room || track.rejected_signers.contains(&signer) {
                        track.rejected_signers.insert(signer);
                        track.verdicts.push(Judged {
                            hotkey: signer,
                            outcome: VerdictOutcome::Unspecified,
                            compute_units: 0,
                            reason: rejection.to_string(),
                        });
                    }
                }
                true
            }
            Err(e) => {
                warn!(run = %run_id, receipt = %key, error = %e, "cannot judge receipt yet; will retry");
                false
            }
        }
    }

    /// This validator's judge for the receipts of one run.
    fn judge<'a>(
        &'a self,
        track: &'a RunTrack,
        on_probation: &'a (dyn Fn(&Hotkey) -> bool + Sync),
    ) -> Judge<'a> {
        Judge {
            bucket: &self.bucket,
            owner: &self.owner,
            validator: &self.key,
            run: &track.manifest,
            sample_rate: self.settings.sample_rate,
            device: &self.settings.device,
            on_probation,
            inputs: &self.inputs,
        }
    }

    /// Before another attempt of a credited job is judged (the owner redoes
    /// a job whose accepted result it could no longer use), checks whether
    /// the credited result was contradicted by its own writer since. If so,
    /// its verdict is revised to failed, which zeroes that hotkey and frees
    /// the job's credit for the redo.
    async fn recheck_credit(
        &mut self,
        run_id: &str,
        job: &str,
        attempt: u32,
    ) -> Result<(), JudgeError> {
        let Some(track) = self.runs.get(run_id) else {
            return Ok(());
        };
        let Some(credit) = track.credited.get(job).filter(|v| v.attempt != attempt) else {
            return Ok(());
        };
        let mut revised = credit.clone();
        let Ok(hotkey) = Hotkey::from_bytes(&credit.hotkey) else {
            return Ok(());
        };
        let judge = self.judge(track, &|_| false);
        let Some(reason) = judge.equivocation(&credit.receipt_key, &hotkey).await? else {
            return Ok(());
        };
        revised.outcome = VerdictOutcome::Failed as i32;
        revised.reason = reason;
        revised.unix_ms = unix_ms();
        let key =
            self.bucket
                .layout()
                .verdict(run_id, revised.step, &revised.job_id, revised.attempt);
        // The one verdict a validator rewrites: a passing verdict it gave
        // becomes failed when the miner's own signed objects turn on it.
        self.bucket.put(&key, &revised, &self.key).await?;
        warn!(run = %run_id, job = %job, attempt = revised.attempt, hotkey = %hotkey, reason = %revised.reason, "credited result revised to failed");
        self.counters.verdict(VerdictOutcome::Failed);
        let track = self.runs.get_mut(run_id).expect("run tracked");
        track.credited.remove(job);
        track.verdicts.push(judged_from(&revised, hotkey));
        Ok(())
    }

    async fn write_scores(&mut self, run_id: &str) -> anyhow::Result<()> {
        let Some(track) = self.runs.get(run_id) else {
            return Ok(());
        };
        let window = pb::ScoreWindow {
            window_id: run_id.to_string(),
            run_ids: vec![run_id.to_string()],
            unix_ms: unix_ms(),
            scores: scoring::score(&track.verdicts),
            complete: track.complete,
            receipts: track
                .verdicts
                .iter()
                .filter(|v| v.outcome != VerdictOutcome::Unspecified)
                .count() as u64,
        };
        let key = self.bucket.layout().score_window(run_id);
        self.bucket.put(&key, &window, &self.key).await?;
        if track.complete {
            info!(run = %run_id, receipts = window.receipts, rejected = track.rejected.len(), "final scores written");
            for s in &window.scores {
                info!(hotkey = %s.ss58, score = s.score, weight = s.weight, "{}", s.reason);
            }
            self.push_weights(window);
        }
        Ok(())
    }

    /// Hands a complete window to the weight-push task, which starts with
    /// the first one. Never waits for the chain: a chain outage, or a node
    /// that never answers, must not stop judging.
    fn push_weights(&mut self, window: pb::ScoreWindow) {
        if self.weights.is_none()
            && let Some(target) = self.settings.chain.take()
        {
            self.weights = Some(WeightPusher::spawn(
                target,
                self.bucket.clone(),
                Arc::clone(&self.key),
            ));
        }
        if let Some(weights) = &self.weights {
            weights.submit(window);
        }
    }
}

/// Whether a verdict credits its job: passed, with units (a redo of a job
/// already credited passes with none).
fn credits(v: &pb::Verdict) -> bool {
    let outcome = VerdictOutcome::try_from(v.outcome).unwrap_or_default();
    matches!(
        outcome,
        VerdictOutcome::Verified | VerdictOutcome::Unsampled
    ) && v.compute_units > 0
}

fn judged_from(v: &pb::Verdict, hotkey: Hotkey) -> Judged {
    Judged {
        hotkey,
        outcome: VerdictOutcome::try_from(v.outcome).unwrap_or_default(),
        compute_units: v.compute_units,
        reason: v.reason.clone(),
    }
}
