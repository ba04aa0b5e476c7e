//! What the discovery UI shows, as served by its JSON API.
//!
//! Every hotkey is an SS58 address. Every object listed here verified
//! against the signer the trust model expects (owner for runs, states and
//! assignments; the hotkey for heartbeats and receipts; a run validator for
//! verdicts, scores and weights); everything else is in [`RejectedView`].

use serde::Serialize;

/// Signature status shown next to each object.
pub const VERIFIED: &str = "verified";

#[derive(Clone, Debug, Serialize)]
pub struct WorkerView {
    pub key: String,
    pub hotkey: String,
    pub worker: u32,
    pub device: String,
    pub backend: String,
    pub version: String,
    pub pid: u32,
    pub unix_ms: u64,
    /// Milliseconds since the heartbeat was written (at the time of the request).
    pub age_ms: u64,
    pub current_job: String,
    pub jobs_done: u64,
    /// Receipts of this worker found in the bucket.
    pub receipts: u64,
    pub signature: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepProgress {
    pub step: u32,
    pub jobs: u64,
    pub receipts: u64,
    pub verdicts: u64,
}

/// Jobs of one pipeline stage across the run (one entry for workloads
/// without stages). Eval jobs run the whole model and count under no stage.
#[derive(Clone, Debug, Serialize)]
pub struct StageProgress {
    pub stage: u32,
    pub jobs: u64,
    pub receipts: u64,
    pub verdicts: u64,
}

/// A time the run went back to recompute from a step (see `RunState.rewinds`).
#[derive(Clone, Debug, Serialize)]
pub struct RewindView {
    pub from_step: u32,
    /// The banned hotkey whose unverified outputs were thrown away.
    pub hotkey: String,
    pub reason: String,
    pub unix_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunView {
    pub run_id: String,
    pub manifest_key: String,
    pub workload: String,
    pub steps: u32,
    pub created_unix_ms: u64,
    pub validators: Vec<String>,
    pub completed_steps: u32,
    pub done: bool,
    pub eval_loss: Vec<f32>,
    pub train_loss: Vec<f32>,
    pub state_unix_ms: u64,
    /// `verified`, `missing` or `rejected: <reason>`.
    pub state_signature: String,
    pub jobs_published: u64,
    pub receipts: u64,
    pub verdicts: u64,
    pub verified: u64,
    pub unsampled: u64,
    pub failed: u64,
    /// Verdicts for attempts past their lease (no credit, no penalty).
    pub late: u64,
    pub step_progress: Vec<StepProgress>,
    pub stage_progress: Vec<StageProgress>,
    pub signature: &'static str,
    /// Why jobs of later steps carry `-g{N}`: each time the run recomputed
    /// from a step after a hotkey was caught.
    pub rewinds: Vec<RewindView>,
    pub lease_ms: u64,
    /// The newest of the run's creation, its state and its verdicts (times
    /// the owner and the validators signed; a receipt's are its miner's).
    pub last_activity_unix_ms: u64,
    /// The highest attempt number of any receipt (a job done over and over).
    pub max_attempt: u32,
    /// When the owner wrote the state that says the run is done.
    pub finished_unix_ms: Option<u64>,
    /// `done`, `running` or `stalled`, as of the request.
    pub status: &'static str,
    /// Why a stalled run counts as stalled.
    pub stalled_because: String,
}

/// A run is stalled when nothing moved for this many leases...
pub const STALL_LEASES: u64 = 3;
/// ...and at least this long (a short lease would flag a busy pause).
pub const STALL_MIN_MS: u64 = 5 * 60 * 1000;
/// A job done this many times (its miners keep losing it) stalls the run.
pub const STALL_ATTEMPTS: u32 = 5;
/// Workers whose heartbeat is older than this are no longer active.
pub const WORKER_GONE_MS: u64 = 60_000;

impl RunView {
    /// Sets `status` (and `stalled_because`) as of `now_ms`.
    pub fn judge_progress(&mut self, now_ms: u64) {
        self.stalled_because.clear();
        self.status = if self.done {
            "done"
        } else {
            let quiet = now_ms.saturating_sub(self.last_activity_unix_ms);
            let allowed = (self.lease_ms * STALL_LEASES).max(STALL_MIN_MS);
            if quiet > allowed {
                self.stalled_because = format!(
                    "nothing written for {} s (over {STALL_LEASES} leases)",
                    quiet / 1000
                );
            } else if self.max_attempt >= STALL_ATTEMPTS {
                self.stalled_because = format!(
                    "a job is on attempt {}: its workers keep losing it",
                    self.max_attempt
                );
            }
            if self.stalled_because.is_empty() {
                "running"
            } else {
                "stalled"
            }
        };
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VerdictView {
    pub key: String,
    pub validator: String,
    /// `verified`, `failed`, `unsampled`, `late` or `unspecified`.
    pub outcome: &'static str,
    pub reason: String,
    pub compute_units: u64,
    pub sample_rate: f64,
    pub replay_ms: u64,
    pub unix_ms: u64,
    pub signature: &'static str,
    /// The validator's signature the sampling draw comes from (hex): anyone
    /// can check the draw after the fact.
    pub sample_proof: String,
    /// The auditor whose replay the verdict rests on (SS58); empty when
    /// the validator replayed it, or nothing was replayed.
    pub auditor: String,
    /// The receipt digest the verdict commits to (hex).
    pub receipt_digest: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReceiptRow {
    pub key: String,
    pub run_id: String,
    pub step: u32,
    pub job_id: String,
    pub attempt: u32,
    pub hotkey: String,
    pub worker: u32,
    pub backend: String,
    pub device: String,
    pub started_unix_ms: u64,
    pub finished_unix_ms: u64,
    pub assignment_key: String,
    pub signature: &'static str,
    pub verdict: Option<VerdictView>,
    /// BLAKE3 of the receipt's payload (hex): what its verdict commits to.
    pub digest: String,
    /// The job manifest the receipt answers (hex digest).
    pub manifest_digest: String,
    /// The output the miner committed to: key, digest (hex), payload size.
    pub output_key: String,
    pub output_digest: String,
    pub output_size: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScoreRow {
    pub hotkey: String,
    pub receipts: u64,
    pub verified: u64,
    pub failed: u64,
    pub unsampled: u64,
    pub late: u64,
    pub verified_cu: u64,
    pub unsampled_cu: u64,
    pub score: f64,
    pub weight: f64,
    pub reason: String,
    /// From the window's ChainWeights, when present.
    pub uid: Option<u32>,
    pub chain_weight: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WeightEntry {
    pub hotkey: String,
    pub uid: u32,
    pub weight: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct WeightsView {
    pub key: String,
    pub window_id: String,
    pub netuid: u32,
    pub validator: String,
    pub dry_run: bool,
    pub block_hash: String,
    pub error: String,
    pub unix_ms: u64,
    pub entries: Vec<WeightEntry>,
    pub unregistered: Vec<String>,
    pub signature: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScoreView {
    pub key: String,
    pub window_id: String,
    pub run_ids: Vec<String>,
    pub unix_ms: u64,
    pub complete: bool,
    pub receipts: u64,
    pub validator: String,
    pub rows: Vec<ScoreRow>,
    pub weights: Option<WeightsView>,
    pub signature: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct RejectedView {
    pub key: String,
    /// What the object was read as (`receipt`, `heartbeat`, ...).
    pub kind: &'static str,
    pub reason: String,
    pub seen_unix_ms: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub refreshes: u64,
    pub last_refresh_unix_ms: u64,
    pub last_refresh_ms: u64,
    pub last_error: Option<String>,
    pub objects_indexed: u64,
    pub bucket_gets: u64,
    pub bucket_lists: u64,
    pub bucket_errors: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HotkeyTotals {
    pub receipts: u64,
    pub verified: u64,
    pub unsampled: u64,
    pub failed: u64,
    pub late: u64,
    /// Receipts without a verdict yet.
    pub pending: u64,
    pub verified_cu: u64,
    pub unsampled_cu: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub receipt_key: String,
    pub job_id: String,
    pub attempt: u32,
    pub validator: String,
    pub reason: String,
}

/// Everything that made one hotkey's score.
#[derive(Clone, Debug, Serialize)]
pub struct HotkeyDetail {
    pub hotkey: String,
    pub window_id: Option<String>,
    pub score: Option<ScoreRow>,
    pub workers: Vec<WorkerView>,
    /// Recomputed from the verdicts in the bucket, to compare with the score row.
    pub totals: HotkeyTotals,
    pub failures: Vec<Failure>,
    pub receipts: Vec<ReceiptRow>,
}

/// An auditor as the bucket shows it: verdicts that rest on its replays,
/// and whether a run's validator dropped it (and why).
#[derive(Clone, Debug, Serialize)]
pub struct AuditorView {
    pub hotkey: String,
    /// Verdicts of the indexed runs that rest on this auditor's replay.
    pub verdicts: u64,
    /// The validator's reason, if it dropped the auditor.
    pub dropped: Option<String>,
    pub dropped_by: Option<String>,
    pub dropped_unix_ms: Option<u64>,
}

/// The page's main poll: everything but the long lists, which are capped.
#[derive(Clone, Debug, Serialize)]
pub struct Overview {
    pub netuid: u16,
    pub owner: String,
    pub now_unix_ms: u64,
    pub stats: Stats,
    /// Workers with a heartbeat at most [`WORKER_GONE_MS`] old.
    pub workers: Vec<WorkerView>,
    /// Workers whose last heartbeat is older (not shown).
    pub workers_gone: usize,
    pub runs: Vec<RunView>,
    pub receipts_total: usize,
    pub receipts: Vec<ReceiptRow>,
    pub scores: Option<ScoreView>,
    pub rejected_total: usize,
    pub rejected: Vec<RejectedView>,
    pub auditors: Vec<AuditorView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(done: bool, last_activity: u64, max_attempt: u32) -> RunView {
        RunView {
            run_id: "r".into(),
            manifest_key: String::new(),
            workload: String::new(),
            steps: 3,
            created_unix_ms: 0,
            validators: Vec::new(),
            completed_steps: 1,
            done,
            eval_loss: Vec::new(),
            train_loss: Vec::new(),
            state_unix_ms: 0,
            state_signature: String::new(),
            jobs_published: 0,
            receipts: 0,
            verdicts: 0,
            verified: 0,
            unsampled: 0,
            failed: 0,
            late: 0,
            step_progress: Vec::new(),
            stage_progress: Vec::new(),
            signature: VERIFIED,
            rewinds: Vec::new(),
            lease_ms: 60_000,
            last_activity_unix_ms: last_activity,
            max_attempt,
            finished_unix_ms: None,
            status: "running",
            stalled_because: String::new(),
        }
    }

    #[test]
    fn a_run_is_stalled_by_silence_or_by_a_job_lost_over_and_over() {
        let now = 10_000_000;
        let judged = |mut r: RunView| {
            r.judge_progress(now);
            (r.status, r.stalled_because)
        };
        assert_eq!(judged(run(false, now - 1_000, 1)).0, "running");
        // Three leases of a minute are less than the five-minute floor.
        assert_eq!(judged(run(false, now - 4 * 60_000, 1)).0, "running");
        let (status, why) = judged(run(false, now - 6 * 60_000, 1));
        assert_eq!(status, "stalled");
        assert!(why.contains("nothing written for 360 s"), "{why}");
        let (status, why) = judged(run(false, now, STALL_ATTEMPTS));
        assert_eq!(status, "stalled");
        assert!(why.contains("attempt 5"), "{why}");
        assert_eq!(judged(run(true, 0, 9)).0, "done");
    }
}
