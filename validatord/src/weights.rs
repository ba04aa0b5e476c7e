//! Pushing a completed window's scores to Subtensor, off the judging path.
//!
//! Scores are per hotkey; the chain wants u16 weights per uid. Hotkeys not
//! registered on the subnet get nothing (logged by the chain adapter). In
//! dry-run mode (the default) the exact signed extrinsic is built and
//! recorded, and nothing is submitted. Either way the result is written to
//! the bucket as a validator-signed `ChainWeights` object.
//!
//! A chain node can be down, slow, or accept a connection and never answer,
//! so the judging loop never waits for it: [`WeightPusher`] is a task of its
//! own, handed the newest complete score window through a `watch` channel.
//! Only the newest window matters: one handed over while another waits for
//! its retry replaces it. Each attempt ([`push`]) is bounded by
//! [`PushPolicy`]'s timeouts on connecting and on each chain call; a failed
//! attempt is tried again after a delay that doubles up to a cap, until it
//! succeeds, fails for a reason no retry fixes ([`next_step`]), or a newer
//! window replaces it.

use std::sync::Arc;
use std::time::Duration;

use locus_chain::{Chain, ChainError, Mode, Outcome, ValidatorSigner, WeightsReport};
use locus_daemon::{Backoff, Shutdown};
use locus_protocol::pb;
use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, Keypair};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Where and how to set weights.
pub struct ChainTarget {
    pub endpoint: String,
    pub netuid: u16,
    pub signer: ValidatorSigner,
    pub mode: Mode,
    pub policy: PushPolicy,
}

/// How long one push may take, and when a failed one is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPolicy {
    /// Longest wait for the node to take a connection (WebSocket handshake
    /// and the client's first requests).
    pub connect_timeout: Duration,
    /// Longest wait for each chain call: reading the metagraph, and setting
    /// weights (in submit mode, until the extrinsic is in a block).
    pub call_timeout: Duration,
    /// Delay before the first retry of a failed push; it doubles per failure.
    pub retry_min: Duration,
    /// The longest delay between two attempts.
    pub retry_max: Duration,
}

impl Default for PushPolicy {
    fn default() -> Self {
        PushPolicy {
            connect_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(60),
            retry_min: Duration::from_secs(15),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// Why an attempt did not set the weights.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("no answer from the chain node within {after:?} while {what}")]
    TimedOut { what: &'static str, after: Duration },
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// What to do with a window after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The weights are set (or, in a dry run, signed) and recorded.
    Done,
    /// Try the same window again later.
    Retry,
    /// No retry can fix it; wait for the next window.
    GiveUp,
}

/// Decides what follows an attempt whose chain part ended with `chain`
/// (the outcome, or the error before one) and whose bucket record was
/// written or not (`recorded`). Pure: no I/O.
///
/// Weights on chain are never set twice for a lost record: a submitted
/// window that made it into a block is done even when its record could not
/// be written. A dry run whose record is missing is done again (it sends
/// nothing). In submit mode, any outcome short of inclusion is retried: a
/// rate limit passes, a dropped transaction or a dispatch error may not
/// happen again at the next block.
pub fn next_step(chain: &Result<Outcome, PushError>, recorded: bool, mode: Mode) -> Next {
    match chain {
        Err(PushError::TimedOut { .. }) => Next::Retry,
        Err(PushError::Chain(e)) if e.is_transient() => Next::Retry,
        Err(PushError::Chain(_)) => Next::GiveUp,
        Ok(_) if mode == Mode::DryRun => {
            if recorded {
                Next::Done
            } else {
                Next::Retry
            }
        }
        Ok(Outcome::Included { .. }) => Next::Done,
        Ok(Outcome::DryRun) => Next::Done,
        Ok(Outcome::RateLimited { .. } | Outcome::ChainError { .. } | Outcome::Rejected { .. }) => {
            Next::Retry
        }
    }
}

/// Runs `call`, or gives up on it after `after`.
async fn within<T>(
    after: Duration,
    what: &'static str,
    call: impl Future<Output = Result<T, ChainError>>,
) -> Result<T, PushError> {
    match tokio::time::timeout(after, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(PushError::TimedOut { what, after }),
    }
}

/// One attempt: maps `window`'s scores to uids, sets (or dry-runs) weights
/// and records the outcome in the bucket. No record is written when the
/// node cannot be reached or its metagraph read; otherwise the record holds
/// the outcome or the error. Returns what to do next, and the error to log
/// when it is not [`Next::Done`].
pub async fn push(
    target: &ChainTarget,
    window: &pb::ScoreWindow,
    bucket: &Bucket,
    key: &Keypair,
) -> (Next, Option<String>) {
    let policy = &target.policy;
    let connected = within(
        policy.connect_timeout,
        "connecting",
        Chain::connect(&target.endpoint),
    )
    .await;
    let chain = match connected {
        Ok(chain) => chain,
        Err(e) => return failed_before_record(e, target.mode),
    };
    let metagraph = match within(
        policy.call_timeout,
        "reading the metagraph",
        chain.metagraph(target.netuid),
    )
    .await
    {
        Ok(metagraph) => metagraph,
        Err(e) => return failed_before_record(e, target.mode),
    };
    let scores: Vec<([u8; 32], f64)> = window
        .scores
        .iter()
        .filter_map(|s| {
            <[u8; 32]>::try_from(s.hotkey.as_slice())
                .ok()
                .map(|h| (h, s.score))
        })
        .collect();
    let (by_uid, unregistered) = metagraph.scores_by_uid(&scores);
    let mut record = pb::ChainWeights {
        window_id: window.window_id.clone(),
        netuid: target.netuid as u32,
        unix_ms: unix_ms(),
        unregistered: unregistered.iter().map(|h| h.to_vec()).collect(),
        dry_run: target.mode == Mode::DryRun,
        ..Default::default()
    };
    let set = within(
        policy.call_timeout,
        "setting weights",
        chain.set_weights(&target.signer, target.netuid, &by_uid, target.mode),
    )
    .await;
    let chain_result = match set {
        Ok(report) => {
            fill_record(&mut record, &report, &metagraph, window, target.netuid);
            Ok(report.outcome)
        }
        Err(e) => {
            record.error = e.to_string();
            Err(e)
        }
    };
    let object = bucket.layout().chain_weights(&window.window_id);
    let recorded = match bucket.put(&object, &record, key).await {
        Ok(_) => true,
        Err(e) => {
            warn!(window = %window.window_id, key = %object, error = %e, "cannot record the weights in the bucket");
            false
        }
    };
    let next = next_step(&chain_result, recorded, target.mode);
    let error = match (&chain_result, recorded) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(_), _) if !record.error.is_empty() => Some(record.error.clone()),
        (Ok(_), false) => Some("the weights record was not written".into()),
        (Ok(_), true) => None,
    };
    (next, error)
}

/// An attempt that ended before there was anything to record.
fn failed_before_record(e: PushError, mode: Mode) -> (Next, Option<String>) {
    let error = e.to_string();
    (next_step(&Err(e), false, mode), Some(error))
}

/// Copies a report into the record and logs the outcome.
fn fill_record(
    record: &mut pb::ChainWeights,
    report: &WeightsReport,
    metagraph: &locus_chain::Metagraph,
    window: &pb::ScoreWindow,
    netuid: u16,
) {
    println!(
        "weights for window {} on netuid {}:\n{}",
        window.window_id,
        netuid,
        report.table()
    );
    record.uids = report.uids.iter().map(|&u| u as u32).collect();
    record.weights = report.weights.iter().map(|&w| w as u32).collect();
    record.hotkeys = report
        .uids
        .iter()
        .map(|&uid| {
            metagraph
                .hotkey(uid)
                .map(|h| h.to_vec())
                .unwrap_or_default()
        })
        .collect();
    record.version_key = report.version_key;
    record.extrinsic = report.extrinsic.clone();
    record.reveal_round = report.reveal_round.unwrap_or(0);
    record.block_hash = report.block_hash.clone().unwrap_or_default();
    match &report.outcome {
        Outcome::DryRun => {
            info!(window = %window.window_id, uids = report.uids.len(), "weights dry run: extrinsic built and signed, not submitted")
        }
        Outcome::Included { finalized } => match report.reveal_round {
            Some(round) => {
                info!(window = %window.window_id, block = %record.block_hash, finalized, reveal_round = round, "weights committed on chain, sealed until drand round {round}")
            }
            None => {
                info!(window = %window.window_id, block = %record.block_hash, finalized, "weights set on chain")
            }
        },
        Outcome::RateLimited {
            next_block,
            current_block,
        } => {
            record.error = format!("rate limited until block {next_block} (now {current_block})");
            warn!(window = %window.window_id, next_block, "weights not set: {}", record.error);
        }
        Outcome::ChainError { name } => {
            record.error = name.clone();
            warn!(window = %window.window_id, error = %name, "chain refused the weights");
        }
        Outcome::Rejected { reason } => {
            record.error = reason.clone();
            warn!(window = %window.window_id, %reason, "transaction pool refused the weights");
        }
    }
}

/// How long [`WeightPusher::close`] waits for the task before aborting it.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The weight-push task. [`submit`](Self::submit) never waits for the
/// chain. Dropping it stops the task.
pub struct WeightPusher {
    windows: watch::Sender<Option<pb::ScoreWindow>>,
    /// Stop now, dropping an attempt in flight.
    stop: Shutdown,
    /// Settle the window in hand (one attempt, no retry), then stop.
    drain: Shutdown,
    policy: PushPolicy,
    task: Option<JoinHandle<()>>,
}

impl WeightPusher {
    /// Starts the task (on the current tokio runtime).
    pub fn spawn(target: ChainTarget, bucket: Bucket, key: Arc<Keypair>) -> Self {
        let (windows, receiver) = watch::channel(None);
        let (stop, drain) = (Shutdown::default(), Shutdown::default());
        let policy = target.policy;
        let task = tokio::spawn(run(
            target,
            bucket,
            key,
            receiver,
            stop.clone(),
            drain.clone(),
        ));
        WeightPusher {
            windows,
            stop,
            drain,
            policy,
            task: Some(task),
        }
    }

    /// Hands over the newest complete window; it replaces one not yet set.
    pub fn submit(&self, window: pb::ScoreWindow) {
        self.windows.send_replace(Some(window));
    }

    /// Lets the task make one attempt at the window in hand (bounded by the
    /// policy's timeouts), unless `shutdown` comes first, then stops it.
    pub async fn finish(mut self, shutdown: &Shutdown) {
        self.drain.trigger();
        let limit = self.policy.connect_timeout + self.policy.call_timeout * 2 + STOP_GRACE;
        if let Some(task) = &mut self.task {
            tokio::select! {
                _ = task => { self.task = None; }
                _ = shutdown.wait() => {}
                _ = tokio::time::sleep(limit) => {
                    warn!(after = ?limit, "the weight push did not settle; stopping it");
                }
            }
        }
        self.close().await;
    }

    /// Stops the task, dropping an attempt in flight; waits for it at most
    /// a couple of seconds.
    pub async fn close(mut self) {
        self.stop.trigger();
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for WeightPusher {
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The task: waits for a window, pushes it, retries with back-off.
async fn run(
    target: ChainTarget,
    bucket: Bucket,
    key: Arc<Keypair>,
    mut windows: watch::Receiver<Option<pb::ScoreWindow>>,
    stop: Shutdown,
    drain: Shutdown,
) {
    let mut backoff = Backoff::new(target.policy.retry_min, target.policy.retry_max);
    let mut current: Option<pb::ScoreWindow> = None;
    let mut attempt: u32 = 0;
    loop {
        // A window handed over since the last look replaces the one in hand.
        if windows.has_changed().unwrap_or(false)
            && let Some(newest) = windows.borrow_and_update().clone()
        {
            if let Some(old) = &current {
                info!(window = %old.window_id, newer = %newest.window_id, "a newer window replaces the one waiting for its weights");
            }
            current = Some(newest);
            attempt = 0;
            backoff.reset();
        }
        let Some(window) = current.clone() else {
            if drain.requested() {
                return;
            }
            tokio::select! {
                _ = stop.wait() => return,
                _ = drain.wait() => return,
                changed = windows.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Seen now: take it on the next pass.
                    windows.mark_changed();
                    continue;
                }
            }
        };
        attempt += 1;
        let (next, error) = tokio::select! {
            _ = stop.wait() => return,
            result = push(&target, &window, &bucket, &key) => result,
        };
        let run = window.run_ids.join(",");
        let error = error.unwrap_or_default();
        match next {
            Next::Done => {
                if attempt > 1 {
                    info!(run = %run, window = %window.window_id, attempt, "weights pushed after retrying");
                }
                current = None;
                continue;
            }
            Next::GiveUp => {
                warn!(run = %run, window = %window.window_id, attempt, error = %error, "weights not set, and retrying cannot help; waiting for the next window");
                current = None;
                continue;
            }
            Next::Retry => {}
        }
        if drain.requested() {
            warn!(run = %run, window = %window.window_id, attempt, error = %error, "weight push failed; stopping without retrying");
            return;
        }
        let delay = backoff.next_delay();
        warn!(run = %run, window = %window.window_id, attempt, error = %error, retry_in_secs = delay.as_secs_f64(), "weight push failed; will retry");
        tokio::select! {
            _ = stop.wait() => return,
            _ = drain.wait() => return,
            _ = tokio::time::sleep(delay) => {}
            changed = windows.changed() => {
                if changed.is_err() {
                    return;
                }
                windows.mark_changed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed_out() -> PushError {
        PushError::TimedOut {
            what: "connecting",
            after: Duration::from_secs(30),
        }
    }

    #[test]
    fn failures_that_may_pass_are_retried() {
        for mode in [Mode::DryRun, Mode::Submit] {
            assert_eq!(next_step(&Err(timed_out()), false, mode), Next::Retry);
            let down = ChainError::Connect {
                url: "ws://127.0.0.1:9944".into(),
                reason: "refused".into(),
            };
            assert_eq!(next_step(&Err(down.into()), false, mode), Next::Retry);
        }
        for outcome in [
            Outcome::RateLimited {
                next_block: 10,
                current_block: 5,
            },
            Outcome::ChainError {
                name: "SettingWeightsTooFast".into(),
            },
            Outcome::Rejected {
                reason: "dropped".into(),
            },
        ] {
            assert_eq!(next_step(&Ok(outcome), true, Mode::Submit), Next::Retry);
        }
    }

    #[test]
    fn failures_no_retry_fixes_give_up() {
        for e in [
            ChainError::AllScoresZero,
            ChainError::CommitTooLarge {
                bytes: 6000,
                max: 5000,
            },
            ChainError::NotRegistered {
                ss58: "5F".into(),
                netuid: 3,
            },
            ChainError::InvalidEndpoint("mainnet".into()),
        ] {
            assert_eq!(next_step(&Err(e.into()), true, Mode::Submit), Next::GiveUp);
        }
    }

    #[test]
    fn included_weights_are_never_set_twice() {
        let included = Ok(Outcome::Included { finalized: false });
        assert_eq!(next_step(&included, true, Mode::Submit), Next::Done);
        // The record is lost, but the chain has the weights.
        assert_eq!(next_step(&included, false, Mode::Submit), Next::Done);
    }

    #[test]
    fn a_dry_run_is_done_once_recorded() {
        assert_eq!(
            next_step(&Ok(Outcome::DryRun), true, Mode::DryRun),
            Next::Done
        );
        assert_eq!(
            next_step(&Ok(Outcome::DryRun), false, Mode::DryRun),
            Next::Retry
        );
        // A dry run reports the rate limit but still signs: nothing to retry.
        let limited = Ok(Outcome::RateLimited {
            next_block: 10,
            current_block: 5,
        });
        assert_eq!(next_step(&limited, true, Mode::DryRun), Next::Done);
    }
}
