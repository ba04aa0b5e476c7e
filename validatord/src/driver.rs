//! The validator loop: find runs, judge new receipts, write verdicts and the
//! window's scores.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locus_daemon::{Backoff, Shutdown, Wake};
use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::time::Clock;
use locus_protocol::{Bucket, BucketError, Expect, Hotkey, Keypair, Verified};
use locus_workloads::Device;
use tracing::{info, warn};

use crate::audit::{self, AuditSettings, Pool};
use crate::input_cache::InputCache;
use crate::replay::{Judge, JudgeError, Judgement, PendingReplay, ReplayTask, Replayed};
use crate::scoring::{Judged, Tally};
use crate::weights::{ChainTarget, WeightPusher};

/// How often the bucket is listed for new runs: one LIST, and the owner
/// waits for this validator's first verdicts of a new run.
const RUN_DISCOVERY_EVERY: Duration = Duration::from_secs(1);
/// How often a live run's provisional score window is rewritten. It is for
/// readers (the UI, `locus ledger`); nothing waits on it, and rewriting it
/// after every verdict cost a PUT per receipt. The final window is written
/// as soon as the run is complete.
const PROVISIONAL_SCORES_EVERY: Duration = Duration::from_secs(2);

/// How often a live run's checkpoint is rewritten by default: one PUT per
/// this long, and a restart re-reads at most this long of verdicts.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

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
    /// Auditors that replay for this validator (none: it replays alone).
    pub audit: AuditSettings,
    /// The time audit deadlines, grants and records are dated by.
    pub clock: Clock,
    /// How often a live run's checkpoint is rewritten once steps closed
    /// since the last one: a restart re-reads the verdicts of at most this
    /// long (plus the open steps), whatever the run's length.
    pub checkpoint_every: Duration,
}

/// What the validator knows about one run.
struct RunTrack {
    manifest: Arc<pb::RunManifest>,
    judged: HashSet<String>,
    rejected: HashSet<String>,
    verdicts: Vec<Judged>,
    /// The verdict each job was credited by: a job earns once.
    credited: std::collections::HashMap<String, pb::Verdict>,
    /// Signers of rejected receipts shown in the score table.
    rejected_signers: HashSet<Hotkey>,
    /// Replays passed per hotkey, for probation.
    replays_passed: std::collections::HashMap<Hotkey, u32>,
    /// Receipts out with an auditor: not judged yet, not to be sent again.
    auditing: HashSet<String>,
    /// Steps below this are closed: no new receipts are expected there.
    open_from: u32,
    /// Steps below this are folded into `folded`: their receipts are not
    /// listed again and their keys are not kept (`floor <= open_from`; a
    /// rewind below it unfolds the steps it reaches).
    floor: u32,
    /// The verdicts of the steps below `floor`, counted.
    folded: Tally,
    /// The floor of the checkpoint last written (or read at start).
    checkpointed: u32,
    /// When the checkpoint was last written.
    checkpoint_written: Option<Instant>,
    complete: bool,
    /// Verdicts came in since the score window was last written.
    unscored: bool,
    /// When the score window was last written.
    scores_written: Option<Instant>,
    /// The owner's run state as last read, and whether it verified (see
    /// [`Validator::scan_run`]: it is read again only when a pass finds
    /// nothing new under the steps it bounds).
    state: Option<(pb::RunState, bool)>,
}

/// What judging one receipt came to in a pass.
enum Judging {
    /// Whether the receipt was settled (verdict written or rejected).
    Settled(bool),
    /// Sampled: its replay runs here, on a task of its own.
    Replaying(ReplayTask),
}

/// A replay running on a task of its own in a pass, with the key and step
/// of the receipt its verdict is for.
struct Landing {
    key: String,
    step: Option<u32>,
    task: ReplayTask,
}

/// A receipt out with an auditor; its run and key are the pending
/// verdict's.
struct Outstanding {
    pending: Box<PendingReplay>,
    job_key: String,
    job_digest: locus_protocol::Digest,
    deadline_ms: u64,
}

impl RunTrack {
    /// Takes up a checkpoint read at start: its steps stay folded.
    fn restore(&mut self, checkpoint: &pb::ValidatorCheckpoint) {
        self.folded = Tally::from_pb(&checkpoint.tallies);
        for (hotkey, passed) in self.folded.replays_passed() {
            self.replays_passed
                .insert(hotkey, u32::try_from(passed).unwrap_or(u32::MAX));
        }
        self.floor = checkpoint.floor;
        self.open_from = checkpoint.floor;
        self.checkpointed = checkpoint.floor;
    }

    /// The tally of every verdict of the run: folded and open.
    fn tally(&self) -> Tally {
        let mut tally = self.folded.clone();
        for judged in &self.verdicts {
            tally.add(judged);
        }
        tally
    }
}

impl Outstanding {
    fn run_id(&self) -> &str {
        &self.pending.verdict().run_id
    }

    fn receipt_key(&self) -> &str {
        &self.pending.verdict().receipt_key
    }
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
    /// Auditors trusted so far.
    auditors: Pool,
    /// Receipts out with auditors, by auditor and audit job number.
    out: BTreeMap<(Hotkey, u64), Outstanding>,
    /// Verdicts on an auditor's word alone (the auditor is the verdict's
    /// field): replayed again here if that auditor is ever caught lying.
    on_word: Vec<pb::Verdict>,
    /// Verdicts to replay again here: their auditor was dropped.
    reaudit: std::collections::VecDeque<pb::Verdict>,
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
            runs: BTreeMap::new(),
            last_discovery: None,
            receipts_judged: 0,
            counters: Counters::new(&locus_observe::Metrics::new()),
            weights: None,
            inputs: InputCache::new(INPUT_CACHE_BYTES),
            auditors: Pool::new(&settings.audit.auditors),
            out: BTreeMap::new(),
            on_word: Vec::new(),
            reaudit: Default::default(),
            settings,
        }
    }

    /// Auditors this validator dropped from its trusted set, and why.
    pub fn dropped_auditors(&self) -> &BTreeMap<Hotkey, String> {
        self.auditors.dropped()
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
        self.recover_dropped_auditors().await;
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
            } else if !self.out.is_empty()
                || (!wake.is_watching() && self.runs.values().any(|t| !t.complete))
            {
                // The owner waits for verdicts before it goes on: while a
                // run is live, keep the delay to a new receipt short. Where
                // receipts and the run state are watched, their events bring
                // the loop back at once, and polling faster only re-lists
                // (on a local bucket that was a third of its requests).
                backoff.cap(self.settings.poll_min * 4);
            }
            for run in self.runs.keys() {
                wake.add(&self.bucket.layout().receipts(run));
                // The run state (a step completed, the run done) sits
                // directly in the run's directory.
                wake.add_shallow(&self.bucket.layout().run_dir(run));
            }
            for auditor in &self.settings.audit.auditors {
                wake.add(&self.bucket.layout().audit_results(auditor));
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
        progressed |= self.collect_audits().await?;
        progressed |= self.reaudit_pass().await;
        // Verdicts settled outside a run's own scan (auditors' answers,
        // replays again after a drop) and live runs: a provisional window at
        // most every PROVISIONAL_SCORES_EVERY.
        let unscored: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, t)| {
                t.unscored
                    && t.scores_written
                        .is_none_or(|at| at.elapsed() >= PROVISIONAL_SCORES_EVERY)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for run_id in unscored {
            self.write_scores(&run_id).await?;
        }
        Ok(progressed)
    }

    /// Finds the runs not tracked yet and takes each up: from its final
    /// score window if it was scored to the end, else from its checkpoint
    /// and the verdicts of its steps from the checkpoint's floor on.
    pub async fn discover_runs(&mut self) -> anyhow::Result<()> {
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
                manifest: Arc::new(manifest),
                judged: HashSet::new(),
                rejected: HashSet::new(),
                verdicts: Vec::new(),
                credited: Default::default(),
                replays_passed: Default::default(),
                rejected_signers: HashSet::new(),
                auditing: HashSet::new(),
                open_from: 0,
                floor: 0,
                folded: Tally::default(),
                checkpointed: 0,
                checkpoint_written: None,
                complete: false,
                unscored: false,
                scores_written: None,
                state: None,
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
            if let Some(checkpoint) = self.checkpoint(&run_id).await? {
                track.restore(&checkpoint);
                self.on_word.extend(checkpoint.on_word);
            }
            self.recover_verdicts(&run_id, &mut track).await?;
            info!(run = %run_id, folded_steps = track.floor, folded_verdicts = track.folded.verdicts(), verdicts = track.verdicts.len(), "tracking run");
            self.runs.insert(run_id, track);
        }
        self.reaudit_dropped_on_word();
        // The chain gets the newest of the windows finished before a
        // restart again, as it had it; not every old one in turn.
        if let Some(newest) = scored.into_iter().max_by_key(|w| w.unix_ms) {
            self.push_weights(newest);
        }
        Ok(())
    }

    /// Auditors this validator dropped before a restart stay dropped.
    async fn recover_dropped_auditors(&mut self) {
        let me = self.key.hotkey();
        for auditor in self.settings.audit.auditors.clone() {
            let key = self.bucket.layout().auditor_dropped(&auditor);
            match self
                .bucket
                .get_opt::<pb::AuditorDropped>(&key, Expect::Signer(&me))
                .await
            {
                Ok(Some(dropped)) if dropped.auditor == auditor.to_bytes() => {
                    warn!(auditor = %auditor, reason = %dropped.reason, "auditor stays dropped: this validator caught it before");
                    self.auditors.drop_auditor(auditor, dropped.reason.clone());
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(auditor = %auditor, error = %e, "ignoring an unusable dropped-auditor record")
                }
            }
        }
    }

    /// This validator's complete score window of `run_id`, if it wrote one.
    async fn final_window(&self, run_id: &str) -> anyhow::Result<Option<pb::ScoreWindow>> {
        let key = self.bucket.layout().score_window(run_id);
        let window: Option<pb::ScoreWindow> = self.own_record(run_id, &key, "score window").await?;
        // Not complete: the run is judged on and its window written over.
        Ok(window.filter(|w| w.complete && w.window_id == run_id))
    }

    /// This validator's checkpoint of `run_id`, if it wrote one; without
    /// it the run's verdicts are read from the start.
    async fn checkpoint(&self, run_id: &str) -> anyhow::Result<Option<pb::ValidatorCheckpoint>> {
        let key = self.bucket.layout().validator_checkpoint(run_id);
        let checkpoint: Option<pb::ValidatorCheckpoint> =
            self.own_record(run_id, &key, "checkpoint").await?;
        Ok(checkpoint.filter(|c| {
            let ours = c.run_id == run_id;
            if !ours {
                warn!(run = %run_id, key = %key, "the checkpoint names another run; ignoring it");
            }
            ours
        }))
    }

    /// The record at `key` if this validator signed it. One it did not
    /// sign is logged (as a `what` of `run_id`) and ignored: the run is then
    /// taken up without it.
    async fn own_record<T: locus_protocol::Record>(
        &self,
        run_id: &str,
        key: &str,
        what: &str,
    ) -> anyhow::Result<Option<T>> {
        let me = self.key.hotkey();
        match self.bucket.get_opt::<T>(key, Expect::Signer(&me)).await {
            Ok(record) => Ok(record.map(Verified::into_inner)),
            Err(e) if e.is_transient() => Err(e.into()),
            Err(e) => {
                warn!(run = %run_id, key = %key, error = %e, "ignoring a {what} this validator did not write");
                Ok(None)
            }
        }
    }

    /// Verdicts this validator already wrote (before a restart) count
    /// again: those of the steps from the run's floor on (the checkpoint
    /// holds the rest).
    async fn recover_verdicts(&mut self, run_id: &str, track: &mut RunTrack) -> anyhow::Result<()> {
        let steps: Vec<u32> = (track.floor..track.manifest.steps).collect();
        for v in self.own_verdicts(run_id, &steps).await? {
            let Ok(hotkey) = Hotkey::from_bytes(&v.hotkey) else {
                continue;
            };
            track.judged.insert(v.receipt_key.clone());
            if credits(&v) {
                track
                    .credited
                    .insert(v.job_id.clone(), v.clone().into_inner());
            }
            if VerdictOutcome::try_from(v.outcome) == Ok(VerdictOutcome::Verified) {
                *track.replays_passed.entry(hotkey).or_default() += 1;
            }
            track.verdicts.push(judged_from(&v, hotkey));
            if !v.auditor.is_empty() {
                self.on_word.push(v.into_inner());
            }
        }
        Ok(())
    }

    /// This validator's verdicts of `run_id` at `steps` (sorted), in one
    /// listing. An object it did not sign is logged and skipped; a storage
    /// error fails the whole read, to be made again on a later pass (a
    /// verdict skipped for it would be missing from the scores).
    async fn own_verdicts(
        &self,
        run_id: &str,
        steps: &[u32],
    ) -> anyhow::Result<Vec<Verified<pb::Verdict>>> {
        let layout = self.bucket.layout();
        let me = self.key.hotkey();
        let listed = self
            .bucket
            .list_steps(
                &layout.verdicts(run_id),
                |step| layout.verdicts_of_step(run_id, step),
                steps,
            )
            .await?;
        let mut verdicts = Vec::with_capacity(listed.len());
        for object in listed {
            match self
                .bucket
                .get::<pb::Verdict>(&object.key, Expect::Signer(&me))
                .await
            {
                Ok(v) => verdicts.push(v),
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => warn!(run = %run_id, error = %e, "ignoring unreadable verdict"),
            }
        }
        Ok(verdicts)
    }

    /// The owner's run state; a default one, and `false`, when the object
    /// there is not the owner's.
    async fn read_run_state(&self, run_id: &str) -> (pb::RunState, bool) {
        let key = self.bucket.layout().run_state(run_id);
        match self
            .bucket
            .get_opt::<pb::RunState>(&key, Expect::Signer(&self.owner))
            .await
        {
            Ok(s) => (s.map(|s| s.into_inner()).unwrap_or_default(), true),
            Err(e) => {
                warn!(error = %e, "rejected run state");
                (pb::RunState::default(), false)
            }
        }
    }

    async fn scan_run(&mut self, run_id: &str) -> anyhow::Result<bool> {
        let Some(track) = self.runs.get(run_id) else {
            return Ok(false);
        };
        if track.complete {
            return Ok(false);
        }
        let layout = self.bucket.layout().clone();
        // The run state bounds the steps listed. It changes when a step
        // completes, and new receipts come under the old bound until then:
        // it is read again only when a pass finds nothing new there.
        let (mut state, mut state_read, mut fresh) = match track.state.clone() {
            Some((state, read)) => (state, read, false),
            None => {
                let (state, read) = self.read_run_state(run_id).await;
                (state, read, true)
            }
        };
        let listed = loop {
            let Some(track) = self.runs.get(run_id) else {
                return Ok(false);
            };
            // The owner plans one step ahead and waits for verdicts before
            // it uses a result, so the next step's receipts are judged
            // right away. One step more: the state read here may be one
            // step old when the first receipt planned after it comes (both
            // writes wake one pass), and a listing of it costs no more.
            let last_step = if state.done {
                state.completed_steps.saturating_sub(1)
            } else {
                (state.completed_steps + 2).min(track.manifest.steps.saturating_sub(1))
            };
            // Steps well behind the run are normally skipped; once the run
            // is done, one last pass covers every step not folded, so
            // nothing is left unjudged (a folded step had every receipt
            // judged when it was folded, and its jobs credited: a receipt
            // written there later would earn nothing).
            let open_from = if state.done {
                track.floor
            } else {
                track.open_from
            };
            if open_from < track.floor {
                // A rewind reached back into folded steps: their receipts
                // are judged again, knowing what was credited there.
                self.unfold(run_id, open_from).await?;
            }
            let steps: Vec<u32> = (open_from..=last_step).collect();
            let listed = self
                .bucket
                .list_steps(
                    &layout.receipts(run_id),
                    |step| layout.receipts_of_step(run_id, step),
                    &steps,
                )
                .await?;
            let track = self.runs.get(run_id).expect("run tracked");
            let new = listed.iter().any(|o| {
                !track.judged.contains(&o.key)
                    && !track.rejected.contains(&o.key)
                    && !track.auditing.contains(&o.key)
            });
            if new || fresh {
                break listed;
            }
            let (latest, read) = self.read_run_state(run_id).await;
            fresh = true;
            let moved = latest.completed_steps != state.completed_steps
                || latest.done != state.done
                || read != state_read;
            (state, state_read) = (latest, read);
            if !moved {
                break listed;
            }
        };
        if let Some(track) = self.runs.get_mut(run_id) {
            track.state = Some((state.clone(), state_read));
        }
        let mut progressed = false;
        let mut all_settled = true;
        // One replay runs on a task of its own while the next receipts are
        // read and checked; it lands before the next one starts, and before
        // anything of its own job is judged (its credit decides theirs).
        let mut replaying: Option<Landing> = None;
        for object in listed {
            let key = object.key;
            let track = self.runs.get(run_id).expect("run tracked");
            if track.judged.contains(&key) || track.rejected.contains(&key) {
                continue;
            }
            if track.auditing.contains(&key) {
                all_settled = false;
                continue;
            }
            let parsed = layout.parse_receipt(run_id, &key);
            let step = parsed.as_ref().map(|(step, _, _)| *step);
            if let Some(landing) = &replaying
                && parsed.as_ref().map(|(_, job, _)| job.as_str()) == Some(landing.task.job_id())
                && let Some(landing) = replaying.take()
            {
                let settled = self.land(run_id, landing).await;
                progressed |= settled;
                all_settled &= settled;
            }
            let judged = self
                .judge_one(run_id, &key, parsed, object.modified_unix_ms)
                .await;
            let settled = match judged {
                Judging::Settled(settled) => settled,
                Judging::Replaying(task) => {
                    let landed = match replaying.take() {
                        Some(earlier) => self.land(run_id, earlier).await,
                        None => true,
                    };
                    replaying = Some(Landing { key, step, task });
                    landed
                }
            };
            progressed |= settled;
            all_settled &= settled;
        }
        if let Some(landing) = replaying {
            let settled = self.land(run_id, landing).await;
            progressed |= settled;
            all_settled &= settled;
        }
        let track = self.runs.get_mut(run_id).expect("run tracked");
        if state_read {
            // Follows the run back too: a rewind recomputes earlier steps.
            track.open_from = state.completed_steps.saturating_sub(1);
        }
        let now_complete = state.done && all_settled;
        if !state.done {
            self.fold(run_id);
            self.write_checkpoint_when_due(run_id).await;
        }
        // A live run's window waits for the pass's throttled write (`tick`).
        if now_complete {
            if let Some(track) = self.runs.get_mut(run_id) {
                track.complete = true;
            }
            if let Err(e) = self.write_scores(run_id).await {
                // Not complete until the complete window is in the bucket.
                if let Some(track) = self.runs.get_mut(run_id) {
                    track.complete = false;
                }
                return Err(e);
            }
            if now_complete {
                // Its final scores are out: what an auditor vouched for in
                // it is no longer replayed again, and no longer kept.
                self.on_word.retain(|v| v.run_id != run_id);
            }
        }
        Ok(progressed)
    }

    /// Folds the steps of `run_id` that no receipt will be judged in any
    /// more (below the open steps and below every receipt out with an
    /// auditor) into the run's tally, forgetting their keys: the validator's
    /// memory and its restart stay the size of the open steps.
    fn fold(&mut self, run_id: &str) {
        let layout = self.bucket.layout().clone();
        let Some(track) = self.runs.get_mut(run_id) else {
            return;
        };
        let auditing = track
            .auditing
            .iter()
            .filter_map(|key| layout.parse_receipt(run_id, key))
            .map(|(step, _, _)| step)
            .min();
        let floor = auditing
            .map_or(track.open_from, |s| s.min(track.open_from))
            .max(track.floor);
        // Verdicts below the floor arrive after it moved too: a revision of
        // a passing verdict (to failed) keeps its receipt's step.
        let (closed, open): (Vec<Judged>, Vec<Judged>) = std::mem::take(&mut track.verdicts)
            .into_iter()
            .partition(|j| j.step < floor);
        for judged in &closed {
            track.folded.add(judged);
        }
        track.verdicts = open;
        if floor == track.floor {
            return;
        }
        let still_open = |key: &String| {
            layout
                .parse_receipt(run_id, key)
                .is_some_and(|(step, _, _)| step >= floor)
        };
        track.judged.retain(still_open);
        track.rejected.retain(still_open);
        track.credited.retain(|_, v| v.step >= floor);
        track.floor = floor;
    }

    /// Writes the run's checkpoint when steps were folded since the last
    /// one and `checkpoint_every` has passed. A failed write is retried on
    /// a later pass; until then a restart reads a few more verdicts.
    async fn write_checkpoint_when_due(&mut self, run_id: &str) {
        let every = self.settings.checkpoint_every;
        let Some(track) = self.runs.get(run_id) else {
            return;
        };
        if track.floor <= track.checkpointed
            || track
                .checkpoint_written
                .is_some_and(|at| at.elapsed() < every)
        {
            return;
        }
        let checkpoint = pb::ValidatorCheckpoint {
            run_id: run_id.to_string(),
            floor: track.floor,
            tallies: track.folded.to_pb(),
            on_word: self
                .on_word
                .iter()
                .filter(|v| v.run_id == run_id && v.step < track.floor)
                .cloned()
                .collect(),
            unix_ms: self.settings.clock.now_ms(),
        };
        let key = self.bucket.layout().validator_checkpoint(run_id);
        if let Err(e) = self.bucket.put(&key, &checkpoint, &self.key).await {
            warn!(run = %run_id, error = %e, "cannot write the checkpoint; will retry");
            return;
        }
        info!(run = %run_id, floor = checkpoint.floor, "checkpoint written");
        if let Some(track) = self.runs.get_mut(run_id) {
            track.checkpointed = checkpoint.floor;
            track.checkpoint_written = Some(Instant::now());
        }
    }

    /// A rewind reached back to `from`, below the folded steps: reads what
    /// this validator judged and credited there (not counted again: the
    /// tally has it), so the redone jobs are judged knowing it. The
    /// checkpoint is removed until the next fold: the redo's verdicts sit
    /// below its floor, where a restart would not look for them.
    async fn unfold(&mut self, run_id: &str, from: u32) -> anyhow::Result<()> {
        let Some(floor) = self.runs.get(run_id).map(|t| t.floor) else {
            return Ok(());
        };
        warn!(run = %run_id, from, floor, "the run went back into folded steps; reading their verdicts again");
        let layout = self.bucket.layout();
        self.bucket
            .delete(&layout.validator_checkpoint(run_id))
            .await?;
        let steps: Vec<u32> = (from..floor).collect();
        let verdicts = self.own_verdicts(run_id, &steps).await?;
        let Some(track) = self.runs.get_mut(run_id) else {
            return Ok(());
        };
        for v in verdicts {
            track.judged.insert(v.receipt_key.clone());
            if credits(&v) {
                track.credited.insert(v.job_id.clone(), v.into_inner());
            }
        }
        track.floor = from;
        track.checkpointed = from;
        Ok(())
    }

    /// Verdicts on the word of an auditor this validator dropped (before a
    /// restart, its replays again unfinished) are replayed again here.
    fn reaudit_dropped_on_word(&mut self) {
        let dropped = self.auditors.dropped();
        let (theirs, others): (Vec<pb::Verdict>, Vec<pb::Verdict>) =
            std::mem::take(&mut self.on_word)
                .into_iter()
                .partition(|v| {
                    Hotkey::from_bytes(&v.auditor).is_ok_and(|a| dropped.contains_key(&a))
                });
        self.on_word = others;
        self.reaudit.extend(theirs);
    }

    /// Judges the receipt at `key` (`parsed`: its step, job and attempt,
    /// [`locus_protocol::Layout::parse_receipt`]) and writes its verdict,
    /// or starts its replay here (the verdict is written when the replay
    /// lands, [`Self::land`]).
    async fn judge_one(
        &mut self,
        run_id: &str,
        key: &str,
        parsed: Option<(u32, String, u32)>,
        written_ms: u64,
    ) -> Judging {
        let step = parsed.as_ref().map(|(step, _, _)| *step);
        let job = parsed.map(|(_, job, attempt)| (job, attempt));
        if let Some((job, attempt)) = &job
            && let Err(e) = self.recheck_credit(run_id, job, *attempt).await
        {
            warn!(run = %run_id, job = %job, error = %e, "cannot recheck the credited result yet; will retry");
            return Judging::Settled(false);
        }
        let track = self.runs.get(run_id).expect("run tracked");
        let credited = job
            .and_then(|(job, _)| track.credited.get(&job))
            .map(|v| v.attempt);
        let needed = self.settings.probation_replays;
        let on_probation = |h: &Hotkey| track.replays_passed.get(h).copied().unwrap_or(0) < needed;
        let judged = {
            let judge = self.judge(track, &on_probation);
            judge.judge(key, written_ms, credited).await
        };
        let result = match judged {
            Ok(Judgement::Done(verdict)) => Ok(*verdict),
            Ok(Judgement::Replay(pending)) => match self.auditor_for(&pending) {
                Some(auditor) => {
                    return Judging::Settled(self.send_audit(run_id, key, pending, auditor).await);
                }
                None => {
                    let track = self.runs.get(run_id).expect("run tracked");
                    let replayer = self.judge(track, &|_| false).replayer();
                    return Judging::Replaying(replayer.start(pending));
                }
            },
            Err(e) => Err(e),
        };
        Judging::Settled(self.settle(run_id, key, step, result).await)
    }

    /// Waits for a replay started by [`Self::judge_one`] and writes its
    /// verdict. Returns whether its receipt was settled.
    async fn land(&mut self, run_id: &str, landing: Landing) -> bool {
        let result = landing
            .task
            .finish()
            .await
            .map(|(pending, replayed)| pending.conclude(&replayed, None));
        self.settle(run_id, &landing.key, landing.step, result)
            .await
    }

    /// Writes the verdict judging the receipt at `key` came to, or keeps its
    /// rejection. Returns whether the receipt was settled (verdict written
    /// or rejected for good).
    async fn settle(
        &mut self,
        run_id: &str,
        key: &str,
        step: Option<u32>,
        result: Result<pb::Verdict, JudgeError>,
    ) -> bool {
        match result {
            Ok(verdict) => self.record(run_id, key, verdict).await,
            Err(JudgeError::Rejected(rejection)) => {
                let track = self.runs.get_mut(run_id).expect("run tracked");
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
                            step: step.unwrap_or(track.open_from),
                            outcome: VerdictOutcome::Unspecified,
                            compute_units: 0,
                            reason: rejection.to_string(),
                        });
                        track.unscored = true;
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

    /// Writes the verdict on the receipt at `key` and counts it. Returns
    /// whether the receipt is settled.
    async fn record(&mut self, run_id: &str, key: &str, verdict: pb::Verdict) -> bool {
        let layout = self.bucket.layout();
        let verdict_key = layout.verdict(run_id, verdict.step, &verdict.job_id, verdict.attempt);
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
                    if let Some(track) = self.runs.get_mut(run_id) {
                        track.judged.insert(key.to_string());
                    }
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
        let Some(track) = self.runs.get_mut(run_id) else {
            return false;
        };
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
        track.unscored = true;
        self.receipts_judged += 1;
        self.counters.verdict(outcome);
        self.counters
            .replay
            .observe(std::time::Duration::from_millis(verdict.replay_ms));
        true
    }

    /// The auditor a sampled receipt goes to, if any: none for critical
    /// jobs, whose results the run consumes at once (the validator replays
    /// them itself), or when no auditor is trusted.
    fn auditor_for(&mut self, pending: &PendingReplay) -> Option<Hotkey> {
        if crate::sampling::must_replay(pending.kind(), false).is_some() {
            return None;
        }
        self.auditors.pick()
    }

    /// Replays a pending receipt on this validator's own device.
    async fn replay_here(
        &self,
        run_id: &str,
        pending: &PendingReplay,
    ) -> Result<Replayed, JudgeError> {
        let Some(track) = self.runs.get(run_id) else {
            return Err(JudgeError::Replay(format!("run {run_id} is not tracked")));
        };
        self.judge(track, &|_| false).replay(pending).await
    }

    /// Writes an audit job for `auditor` and keeps the receipt out with it.
    /// Returns false: the receipt is settled only once its verdict is.
    async fn send_audit(
        &mut self,
        run_id: &str,
        key: &str,
        pending: Box<PendingReplay>,
        auditor: Hotkey,
    ) -> bool {
        let now = self.settings.clock.now_ms();
        let seq = self.auditors.next_seq(now);
        let layout = self.bucket.layout();
        let job_key = layout.audit_job(&auditor, seq);
        let deadline_ms = now.saturating_add(self.settings.audit.timeout.as_millis() as u64);
        let verdict = pending.verdict();
        let sealed_grant = match self.audit_grant(&auditor, seq, verdict, deadline_ms) {
            Ok(sealed) => sealed,
            Err(e) => {
                warn!(run = %run_id, receipt = %key, auditor = %auditor, error = %e, "cannot grant the audit; will retry");
                return false;
            }
        };
        let job = pb::AuditJob {
            run_id: run_id.to_string(),
            step: verdict.step,
            job_id: verdict.job_id.clone(),
            attempt: verdict.attempt,
            receipt_key: key.to_string(),
            receipt_digest: verdict.receipt_digest.clone(),
            auditor: auditor.to_bytes().to_vec(),
            deadline_unix_ms: deadline_ms,
            sealed_grant,
            unix_ms: now,
        };
        let job_digest = match self.bucket.create(&job_key, &job, &self.key).await {
            Ok(digest) => digest,
            Err(e) => {
                warn!(run = %run_id, receipt = %key, auditor = %auditor, error = %e, "cannot write the audit job; will retry");
                return false;
            }
        };
        info!(run = %run_id, job = %job.job_id, attempt = job.attempt, auditor = %auditor, audit = %job_key, "replay sent to an auditor");
        if let Some(track) = self.runs.get_mut(run_id) {
            track.auditing.insert(key.to_string());
        }
        self.out.insert(
            (auditor, seq),
            Outstanding {
                pending,
                job_key,
                job_digest,
                deadline_ms,
            },
        );
        false
    }

    /// On S3: the auditor's one write, the result of audit `seq`, presigned
    /// (create-only, sized) and sealed to it. Empty on a local bucket.
    fn audit_grant(
        &self,
        auditor: &Hotkey,
        seq: u64,
        verdict: &pb::Verdict,
        deadline_ms: u64,
    ) -> Result<Vec<u8>, locus_protocol::grant::GrantError> {
        use locus_protocol::grant;
        if !self.bucket.can_presign() {
            return Ok(Vec::new());
        }
        let scope = grant::Scope {
            hotkey: *auditor,
            run_id: &verdict.run_id,
            job_id: &verdict.job_id,
            attempt: verdict.attempt,
            expires_ms: deadline_ms,
        };
        let wanted = vec![(
            "PUT",
            self.bucket.layout().audit_result(auditor, seq),
            locus_protocol::presign::Conditions::create_only(grant::AUDIT_RESULT_SIZE),
        )];
        let granted = grant::presign(&self.bucket, &scope, wanted, self.settings.clock.now_ms())?;
        grant::seal(&granted, auditor)
    }

    /// Reads the auditors' answers to the receipts out with them, and
    /// replays here those whose auditor ran out of time or was dropped.
    async fn collect_audits(&mut self) -> anyhow::Result<bool> {
        let mut progressed = false;
        let layout = self.bucket.layout().clone();
        let auditors: std::collections::BTreeSet<Hotkey> =
            self.out.keys().map(|(auditor, _)| *auditor).collect();
        for auditor in auditors {
            // Answers come in any order: list from the oldest one awaited.
            let Some(first) = self
                .out
                .range((auditor, 0)..=(auditor, u64::MAX))
                .next()
                .map(|((_, seq), _)| *seq)
            else {
                continue;
            };
            let after = first
                .checked_sub(1)
                .map(|before| layout.audit_result(&auditor, before));
            let listed = self
                .bucket
                .list(&layout.audit_results(&auditor), after.as_deref())
                .await?;
            for key in listed {
                let Some(seq) = layout.parse_audit_result(&auditor, &key) else {
                    continue;
                };
                if self.out.contains_key(&(auditor, seq)) {
                    progressed |= self.settle_audit(auditor, seq, &key).await;
                }
            }
        }
        let now = self.settings.clock.now_ms();
        let due: Vec<(Hotkey, u64)> = self
            .out
            .iter()
            .filter(|(_, out)| out.deadline_ms < now)
            .map(|(at, _)| *at)
            .collect();
        for at in due {
            let Some(out) = self.out.remove(&at) else {
                continue;
            };
            if self.auditors.is_trusted(&at.0) {
                warn!(run = %out.run_id(), receipt = %out.receipt_key(), auditor = %at.0, audit = %out.job_key, "the auditor did not answer in time; replaying here");
            }
            match self.replay_here(out.run_id(), &out.pending).await {
                Ok(mine) => {
                    progressed |= self.conclude_audit(out, &mine, None).await;
                }
                Err(e) => {
                    warn!(run = %out.run_id(), receipt = %out.receipt_key(), error = %e, "cannot replay yet; will retry");
                    self.out.insert(at, out);
                }
            }
        }
        Ok(progressed)
    }

    /// Takes the auditor's answer at `result_key` to audit `seq`: on its
    /// word when it passed and the secret draw does not pick it for a second
    /// replay; otherwise after this validator's own replay, which drops the
    /// auditor if the two disagree.
    async fn settle_audit(&mut self, auditor: Hotkey, seq: u64, result_key: &str) -> bool {
        let result = match self
            .bucket
            .get::<pb::AuditResult>(result_key, Expect::Signer(&auditor))
            .await
        {
            Ok(result) => result,
            Err(e) if e.is_transient() => {
                warn!(audit_result = %result_key, error = %e, "cannot read the audit result yet");
                return false;
            }
            Err(e) => {
                // Not the auditor's: a stranger's object at its key proves
                // nothing. The receipt waits for its deadline, then is
                // replayed here.
                if !e.is_repeat_rejection() {
                    warn!(audit_result = %result_key, auditor = %auditor, error = %e, "ignoring an audit result the auditor did not sign");
                }
                return false;
            }
        };
        let Some(out) = self.out.remove(&(auditor, seq)) else {
            return false;
        };
        let answers = result.audit_key == out.job_key
            && result.audit_digest.as_slice() == out.job_digest.as_bytes().as_slice()
            && result.receipt_key == out.receipt_key()
            && result.receipt_digest == out.pending.verdict().receipt_digest;
        let drawn = crate::sampling::recheck(
            &self.key,
            result_key,
            &result.digest(),
            self.settings.audit.recheck_rate,
        );
        if answers && !audit::must_recheck(&result, drawn) && self.auditors.is_trusted(&auditor) {
            let replayed = Replayed {
                checked: crate::replay::Checked::Passed,
                digest: locus_protocol::Digest::from_slice(&result.replayed_digest),
                ms: result.replay_ms,
            };
            return self.conclude_audit(out, &replayed, Some(auditor)).await;
        }
        let mine = match self.replay_here(out.run_id(), &out.pending).await {
            Ok(mine) => mine,
            Err(e) => {
                warn!(run = %out.run_id(), receipt = %out.receipt_key(), error = %e, "cannot replay yet; will retry");
                self.out.insert((auditor, seq), out);
                return false;
            }
        };
        let lie = if answers {
            let same_backend = result.backend == self.settings.device.backend();
            audit::contradiction(&result, &mine, same_backend)
        } else {
            Some(format!(
                "answered audit {} with a result for another job or receipt",
                out.job_key
            ))
        };
        if let Some(reason) = lie {
            self.drop_auditor(auditor, reason).await;
        }
        self.conclude_audit(out, &mine, None).await
    }

    /// Writes the verdict of a receipt that was out with an auditor.
    async fn conclude_audit(
        &mut self,
        out: Outstanding,
        replayed: &Replayed,
        on_word_of: Option<Hotkey>,
    ) -> bool {
        let (run_id, receipt_key) = (out.run_id().to_string(), out.receipt_key().to_string());
        if let Some(track) = self.runs.get_mut(&run_id) {
            track.auditing.remove(&receipt_key);
        }
        let verdict = out.pending.conclude(replayed, on_word_of.as_ref());
        let on_word = on_word_of.is_some().then(|| verdict.clone());
        // Not written: judged again from the start on the next pass.
        let written = self.record(&run_id, &receipt_key, verdict).await;
        if written && let Some(verdict) = on_word {
            self.on_word.push(verdict);
        }
        written
    }

    /// Drops a lying auditor: the receipts out with it are replayed here
    /// when next looked at, and every verdict that rests on its word alone
    /// is replayed again. The drop is recorded in the bucket, so it holds
    /// across a restart.
    async fn drop_auditor(&mut self, auditor: Hotkey, reason: String) {
        if !self.auditors.drop_auditor(auditor, reason.clone()) {
            return;
        }
        warn!(auditor = %auditor, %reason, "auditor dropped from the trusted set; its unchecked results are replayed again here");
        let record = pb::AuditorDropped {
            auditor: auditor.to_bytes().to_vec(),
            reason,
            unix_ms: self.settings.clock.now_ms(),
        };
        let key = self.bucket.layout().auditor_dropped(&auditor);
        if let Err(e) = self.bucket.put(&key, &record, &self.key).await {
            warn!(auditor = %auditor, error = %e, "cannot record the dropped auditor; it is dropped until a restart");
        }
        for ((_, _), out) in self.out.range_mut((auditor, 0)..=(auditor, u64::MAX)) {
            out.deadline_ms = 0;
        }
        let (theirs, others): (Vec<pb::Verdict>, Vec<pb::Verdict>) =
            std::mem::take(&mut self.on_word)
                .into_iter()
                .partition(|v| v.auditor == auditor.to_bytes());
        self.on_word = others;
        self.reaudit.extend(theirs);
    }

    /// Replays here what a dropped auditor alone vouched for; a result the
    /// replay finds wrong has its verdict revised to failed.
    async fn reaudit_pass(&mut self) -> bool {
        let mut progressed = false;
        while let Some(verdict) = self.reaudit.pop_front() {
            let Some(track) = self.runs.get(&verdict.run_id) else {
                continue;
            };
            let judge = self.judge(track, &|_| false);
            let replayed = match judge.audit(&verdict.receipt_key).await {
                Ok(replayed) => replayed,
                Err(e) => {
                    warn!(run = %verdict.run_id, receipt = %verdict.receipt_key, error = %e, "cannot replay again yet; will retry");
                    self.reaudit.push_front(verdict);
                    break;
                }
            };
            let crate::replay::Checked::Failed(why) = replayed.checked else {
                continue;
            };
            let mut revised = verdict.clone();
            revised.outcome = VerdictOutcome::Failed as i32;
            revised.output = None;
            revised.scalars.clear();
            revised.reason = format!(
                "replayed again after auditor {} was dropped: {why}",
                Hotkey::ss58_of(&verdict.auditor)
            );
            revised.auditor = Vec::new();
            revised.unix_ms = self.settings.clock.now_ms();
            let run_id = verdict.run_id.clone();
            if let Err(e) = self.revise(&run_id, revised).await {
                warn!(run = %run_id, error = %e, "cannot revise the verdict yet; will retry");
                self.reaudit.push_front(verdict);
                break;
            }
            progressed = true;
        }
        progressed
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
            clock: &self.settings.clock,
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
        revised.output = None;
        revised.scalars.clear();
        revised.reason = reason;
        revised.unix_ms = self.settings.clock.now_ms();
        Ok(self.revise(run_id, revised).await?)
    }

    /// Writes `revised`, a failed verdict, over the passing one this
    /// validator gave the same receipt: the one kind of verdict a validator
    /// rewrites, when the miner's own signed objects turn on it or a replay
    /// here finds what a dropped auditor passed wrong. The hotkey is zeroed
    /// and the job's credit freed for its redo.
    async fn revise(&mut self, run_id: &str, revised: pb::Verdict) -> Result<(), BucketError> {
        let Ok(hotkey) = Hotkey::from_bytes(&revised.hotkey) else {
            return Ok(());
        };
        let key =
            self.bucket
                .layout()
                .verdict(run_id, revised.step, &revised.job_id, revised.attempt);
        self.bucket.put(&key, &revised, &self.key).await?;
        warn!(run = %run_id, job = %revised.job_id, attempt = revised.attempt, hotkey = %hotkey, reason = %revised.reason, "passing verdict revised to failed");
        self.counters.verdict(VerdictOutcome::Failed);
        if let Some(track) = self.runs.get_mut(run_id) {
            if track
                .credited
                .get(&revised.job_id)
                .is_some_and(|v| v.attempt == revised.attempt)
            {
                track.credited.remove(&revised.job_id);
            }
            track.verdicts.push(judged_from(&revised, hotkey));
            track.unscored = true;
            if revised.step < track.checkpointed {
                // The checkpoint holds the passing verdict: one written
                // after this revision must hold it too (folded at once).
                track.checkpointed = revised.step;
                track.checkpoint_written = None;
            }
        }
        Ok(())
    }

    async fn write_scores(&mut self, run_id: &str) -> anyhow::Result<()> {
        let Some(track) = self.runs.get(run_id) else {
            return Ok(());
        };
        let tally = track.tally();
        let window = pb::ScoreWindow {
            window_id: run_id.to_string(),
            run_ids: vec![run_id.to_string()],
            unix_ms: self.settings.clock.now_ms(),
            scores: tally.scores(),
            complete: track.complete,
            receipts: tally.verdicts(),
        };
        let key = self.bucket.layout().score_window(run_id);
        self.bucket.put(&key, &window, &self.key).await?;
        let Some(track) = self.runs.get_mut(run_id) else {
            return Ok(());
        };
        track.unscored = false;
        track.scores_written = Some(Instant::now());
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
        step: v.step,
        outcome: VerdictOutcome::try_from(v.outcome).unwrap_or_default(),
        compute_units: v.compute_units,
        reason: v.reason.clone(),
    }
}
