//! The views the UI serves, built from what is indexed ([`DiscoveryIndex::snapshot`]),
//! and the queries the API answers from them ([`Snapshot`]).

use std::collections::{BTreeMap, HashMap};

use locus_protocol::{Hotkey, pb};

use super::DiscoveryIndex;
use crate::views::*;

/// Prebuilt views, published after each refresh that changed something.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub netuid: u16,
    pub owner: String,
    pub workers: Vec<WorkerView>,
    pub runs: Vec<RunView>,
    /// Newest first.
    pub receipts: Vec<ReceiptRow>,
    /// Verified score windows, newest first.
    pub scores: Vec<ScoreView>,
    /// Newest first.
    pub rejected: Vec<RejectedView>,
    /// Auditors verdicts rest on or validators dropped, by hotkey.
    pub auditors: Vec<AuditorView>,
    pub stats: Stats,
}

fn step_entry(steps: &mut BTreeMap<u32, StepProgress>, step: u32) -> &mut StepProgress {
    steps.entry(step).or_insert_with(|| StepProgress {
        step,
        jobs: 0,
        receipts: 0,
        verdicts: 0,
    })
}

fn stage_entry(stages: &mut BTreeMap<u32, StageProgress>, stage: u32) -> &mut StageProgress {
    stages.entry(stage).or_insert_with(|| StageProgress {
        stage,
        jobs: 0,
        receipts: 0,
        verdicts: 0,
    })
}

impl DiscoveryIndex {
    /// Builds the views the UI serves from what is indexed.
    pub fn snapshot(&self) -> Snapshot {
        let mut rejected: Vec<RejectedView> = self.rejected.values().cloned().collect();
        let mut receipts = Vec::new();
        let mut runs = Vec::new();
        let mut per_worker: HashMap<(String, u32), u64> = HashMap::new();
        for (run_id, run) in &self.runs {
            let mut steps: BTreeMap<u32, StepProgress> = BTreeMap::new();
            for (step, n) in &run.job_steps {
                step_entry(&mut steps, *step).jobs = *n;
            }
            let mut stages: BTreeMap<u32, StageProgress> = BTreeMap::new();
            for stage in run.job_stages.values() {
                stage_entry(&mut stages, *stage).jobs += 1;
            }
            let (mut verified, mut unsampled, mut failed, mut late, mut verdicts) = (0, 0, 0, 0, 0);
            // Activity is dated by the owner's and validators' signed times
            // only: a receipt's times are its miner's word, and one dated far
            // ahead would hide a stall for good.
            let (mut last_activity, mut max_attempt) = (run.manifest.created_unix_ms, 0);
            for (key, receipt) in &run.receipts {
                let mut row = receipt.row.clone();
                max_attempt = max_attempt.max(row.attempt);
                *per_worker
                    .entry((row.hotkey.clone(), row.worker))
                    .or_default() += 1;
                if let Some(v) = run.verdicts.get(key) {
                    if v.receipt_digest.as_slice() != receipt.digest.as_bytes().as_slice()
                        || v.hotkey.as_slice() != receipt.hotkey.as_slice()
                    {
                        rejected.push(RejectedView {
                            key: v.view.key.clone(),
                            kind: "verdict",
                            reason: "verdict commits to another receipt (digest or hotkey differs)"
                                .into(),
                            seen_unix_ms: v.view.unix_ms,
                        });
                    } else {
                        verdicts += 1;
                        match v.view.outcome {
                            "verified" => verified += 1,
                            "unsampled" => unsampled += 1,
                            "failed" => failed += 1,
                            "late" => late += 1,
                            _ => {}
                        }
                        last_activity = last_activity.max(v.view.unix_ms);
                        row.verdict = Some(v.view.clone());
                    }
                }
                let p = step_entry(&mut steps, row.step);
                p.receipts += 1;
                p.verdicts += u64::from(row.verdict.is_some());
                if let Some(stage) = run.job_stages.get(&row.job_id) {
                    let p = stage_entry(&mut stages, *stage);
                    p.receipts += 1;
                    p.verdicts += u64::from(row.verdict.is_some());
                }
                receipts.push(row);
            }
            let state = run.state.clone().unwrap_or_default();
            last_activity = last_activity.max(state.unix_ms);
            let rewinds = state
                .rewinds
                .iter()
                .map(|r| RewindView {
                    from_step: r.from_step,
                    hotkey: r.hotkey.clone(),
                    reason: r.reason.clone(),
                    unix_ms: r.unix_ms,
                })
                .collect();
            runs.push(RunView {
                run_id: run_id.clone(),
                manifest_key: run.manifest_key.clone(),
                workload: run.manifest.workload.clone(),
                steps: run.manifest.steps,
                created_unix_ms: run.manifest.created_unix_ms,
                validators: run.validators.iter().map(Hotkey::ss58).collect(),
                completed_steps: state.completed_steps,
                done: state.done,
                eval_loss: state.eval_loss,
                train_loss: state.train_loss,
                state_unix_ms: state.unix_ms,
                state_signature: run.state_status.clone(),
                jobs_published: run.job_steps.values().sum(),
                receipts: run.receipts.len() as u64,
                verdicts,
                verified,
                unsampled,
                failed,
                late,
                step_progress: steps.into_values().collect(),
                stage_progress: stages.into_values().collect(),
                signature: VERIFIED,
                rewinds,
                lease_ms: run.manifest.lease_ms,
                last_activity_unix_ms: last_activity,
                max_attempt,
                finished_unix_ms: state.done.then_some(state.unix_ms),
                status: "running",
                stalled_because: String::new(),
            });
        }
        receipts.sort_by(|a, b| {
            b.finished_unix_ms
                .cmp(&a.finished_unix_ms)
                .then_with(|| b.key.cmp(&a.key))
        });
        let workers: Vec<WorkerView> = self
            .heartbeats
            .iter()
            .filter_map(|(key, t)| {
                let hb = t.value.as_ref().ok()?;
                let hotkey = Hotkey::ss58_of(&hb.hotkey);
                Some(WorkerView {
                    key: key.clone(),
                    receipts: per_worker
                        .get(&(hotkey.clone(), hb.worker))
                        .copied()
                        .unwrap_or(0),
                    hotkey,
                    worker: hb.worker,
                    device: hb.device.clone(),
                    backend: hb.backend.clone(),
                    version: hb.version.clone(),
                    pid: hb.pid,
                    unix_ms: hb.unix_ms,
                    age_ms: 0,
                    current_job: hb.current_job.clone(),
                    jobs_done: hb.jobs_done,
                    signature: VERIFIED,
                })
            })
            .collect();
        let mut scores: Vec<ScoreView> = self
            .scores
            .iter()
            .filter_map(|(key, t)| {
                let (s, signer) = t.value.as_ref().ok()?;
                Some(self.score_view(key, s, signer))
            })
            .collect();
        scores.sort_by(|a, b| {
            b.unix_ms
                .cmp(&a.unix_ms)
                .then_with(|| b.window_id.cmp(&a.window_id))
        });
        rejected.sort_by(|a, b| {
            b.seen_unix_ms
                .cmp(&a.seen_unix_ms)
                .then_with(|| a.key.cmp(&b.key))
        });
        let stats = self.snapshot_stats();
        let auditors = self.auditor_views();
        Snapshot {
            netuid: self.bucket.layout().netuid(),
            owner: self.owner.ss58(),
            workers,
            runs,
            receipts,
            scores,
            rejected,
            auditors,
            stats,
        }
    }

    /// Every auditor a verdict rests on or a validator dropped.
    fn auditor_views(&self) -> Vec<AuditorView> {
        let mut by_hotkey: BTreeMap<String, AuditorView> = BTreeMap::new();
        let blank = |hotkey: &str| AuditorView {
            hotkey: hotkey.to_string(),
            verdicts: 0,
            dropped: None,
            dropped_by: None,
            dropped_unix_ms: None,
        };
        for run in self.runs.values() {
            for v in run.verdicts.values() {
                if !v.view.auditor.is_empty() {
                    by_hotkey
                        .entry(v.view.auditor.clone())
                        .or_insert_with(|| blank(&v.view.auditor))
                        .verdicts += 1;
                }
            }
        }
        for t in self.dropped_auditors.values() {
            let Ok((d, signer)) = &t.value else {
                continue;
            };
            let hotkey = Hotkey::ss58_of(&d.auditor);
            let view = by_hotkey
                .entry(hotkey.clone())
                .or_insert_with(|| blank(&hotkey));
            view.dropped = Some(d.reason.clone());
            view.dropped_by = Some(signer.ss58());
            view.dropped_unix_ms = Some(d.unix_ms);
        }
        by_hotkey.into_values().collect()
    }

    /// Refresh statistics (cheap; the UI publishes them after every refresh).
    pub fn snapshot_stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.objects_indexed = self
            .runs
            .values()
            .map(|r| 1 + r.jobs.seen.len() + r.receipts_cur.seen.len() + r.verdicts_cur.seen.len())
            .sum::<usize>() as u64
            + self.assignments.len() as u64
            + self.heartbeats.len() as u64
            + self.scores.len() as u64
            + self.weights.len() as u64;
        stats
    }

    fn score_view(&self, key: &str, s: &pb::ScoreWindow, signer: &Hotkey) -> ScoreView {
        let weights = self
            .weights
            .iter()
            .filter_map(|(k, t)| {
                let (w, signer) = t.value.as_ref().ok()?;
                (w.window_id == s.window_id).then_some((k, w, signer))
            })
            .max_by_key(|(_, w, _)| w.unix_ms)
            .map(|(k, w, signer)| WeightsView {
                key: k.clone(),
                window_id: w.window_id.clone(),
                netuid: w.netuid,
                validator: signer.ss58(),
                dry_run: w.dry_run,
                block_hash: w.block_hash.clone(),
                error: w.error.clone(),
                unix_ms: w.unix_ms,
                entries: w
                    .hotkeys
                    .iter()
                    .zip(w.uids.iter().zip(w.weights.iter()))
                    .map(|(h, (uid, weight))| WeightEntry {
                        hotkey: Hotkey::ss58_of(h),
                        uid: *uid,
                        weight: *weight,
                    })
                    .collect(),
                unregistered: w.unregistered.iter().map(|h| Hotkey::ss58_of(h)).collect(),
                signature: VERIFIED,
            });
        let rows = s
            .scores
            .iter()
            .map(|h| {
                let hotkey = Hotkey::ss58_of(&h.hotkey);
                let entry = weights
                    .as_ref()
                    .and_then(|w| w.entries.iter().find(|e| e.hotkey == hotkey));
                ScoreRow {
                    receipts: h.receipts,
                    verified: h.verified,
                    failed: h.failed,
                    unsampled: h.unsampled,
                    late: h.late,
                    verified_cu: h.verified_cu,
                    unsampled_cu: h.unsampled_cu,
                    score: h.score,
                    weight: h.weight,
                    reason: h.reason.clone(),
                    uid: entry.map(|e| e.uid),
                    chain_weight: entry.map(|e| e.weight),
                    hotkey,
                }
            })
            .collect();
        ScoreView {
            key: key.to_string(),
            window_id: s.window_id.clone(),
            run_ids: s.run_ids.clone(),
            unix_ms: s.unix_ms,
            complete: s.complete,
            receipts: s.receipts,
            validator: signer.ss58(),
            rows,
            weights,
            signature: VERIFIED,
        }
    }
}

impl Snapshot {
    /// Workers with their heartbeat age as of `now_ms`, freshest first.
    pub fn workers_at(&self, now_ms: u64) -> Vec<WorkerView> {
        let mut workers = self.workers.clone();
        for w in &mut workers {
            w.age_ms = now_ms.saturating_sub(w.unix_ms);
        }
        workers.sort_by(|a, b| a.hotkey.cmp(&b.hotkey).then(a.worker.cmp(&b.worker)));
        workers
    }

    /// Runs with their status as of `now_ms`.
    pub fn runs_at(&self, now_ms: u64) -> Vec<RunView> {
        let mut runs = self.runs.clone();
        for run in &mut runs {
            run.judge_progress(now_ms);
        }
        runs
    }

    /// Receipts (newest first), optionally of one hotkey and/or run.
    pub fn receipts_of(
        &self,
        hotkey: Option<&str>,
        run: Option<&str>,
        limit: usize,
    ) -> Vec<ReceiptRow> {
        self.receipts
            .iter()
            .filter(|r| hotkey.is_none_or(|h| r.hotkey == h))
            .filter(|r| run.is_none_or(|id| r.run_id == id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The latest score window, or the one named.
    pub fn score_window(&self, window: Option<&str>) -> Option<&ScoreView> {
        match window {
            Some(id) => self.scores.iter().find(|s| s.window_id == id),
            None => self.scores.first(),
        }
    }

    /// The receipts and verdicts behind one hotkey's score.
    pub fn hotkey_detail(&self, hotkey: &str, window: Option<&str>, now_ms: u64) -> HotkeyDetail {
        let window = self.score_window(window);
        let runs: Option<&Vec<String>> = window.map(|w| &w.run_ids);
        let mut totals = HotkeyTotals::default();
        let mut failures = Vec::new();
        let mut receipts = Vec::new();
        for r in self.receipts.iter().filter(|r| r.hotkey == hotkey) {
            if runs.is_some_and(|ids| !ids.contains(&r.run_id)) {
                continue;
            }
            totals.receipts += 1;
            match &r.verdict {
                None => totals.pending += 1,
                Some(v) => match v.outcome {
                    "verified" => {
                        totals.verified += 1;
                        totals.verified_cu += v.compute_units;
                    }
                    "unsampled" => {
                        totals.unsampled += 1;
                        totals.unsampled_cu += v.compute_units;
                    }
                    "failed" => {
                        totals.failed += 1;
                        failures.push(Failure {
                            receipt_key: r.key.clone(),
                            job_id: r.job_id.clone(),
                            attempt: r.attempt,
                            validator: v.validator.clone(),
                            reason: v.reason.clone(),
                        });
                    }
                    "late" => totals.late += 1,
                    _ => totals.pending += 1,
                },
            }
            receipts.push(r.clone());
        }
        HotkeyDetail {
            hotkey: hotkey.to_string(),
            window_id: window.map(|w| w.window_id.clone()),
            score: window.and_then(|w| w.rows.iter().find(|r| r.hotkey == hotkey).cloned()),
            workers: self
                .workers_at(now_ms)
                .into_iter()
                .filter(|w| w.hotkey == hotkey)
                .collect(),
            totals,
            failures,
            receipts,
        }
    }

    pub fn overview(&self, now_ms: u64, receipts: usize, rejected: usize) -> Overview {
        let (active, gone): (Vec<WorkerView>, Vec<WorkerView>) = self
            .workers_at(now_ms)
            .into_iter()
            .partition(|w| w.age_ms <= WORKER_GONE_MS);
        let workers_gone = gone.len();
        Overview {
            netuid: self.netuid,
            owner: self.owner.clone(),
            now_unix_ms: now_ms,
            stats: self.stats.clone(),
            workers: active,
            workers_gone,
            runs: self.runs_at(now_ms),
            receipts_total: self.receipts.len(),
            receipts: self.receipts.iter().take(receipts).cloned().collect(),
            scores: self.scores.first().cloned(),
            rejected_total: self.rejected.len(),
            rejected: self.rejected.iter().take(rejected).cloned().collect(),
            auditors: self.auditors.clone(),
        }
    }
}
