//! Runs: the owner-signed manifest (read once it verifies), the run state
//! (read again whenever it changes) and the run's job manifests.

use std::collections::BTreeMap;

use locus_protocol::paths::validate_id;
use locus_protocol::{Expect, Hotkey, Listed, pb};

use super::receipts::ReceiptEntry;
use super::verdicts::VerdictEntry;
use super::{Cursor, DiscoveryIndex, RefreshReport, Version, WriteOnce, answer, check, settled};
use crate::views::VERIFIED;

/// A run whose manifest verified, and what is indexed of it.
#[derive(Debug)]
pub(super) struct RunEntry {
    pub(super) manifest_key: String,
    pub(super) manifest: pb::RunManifest,
    pub(super) validators: Vec<Hotkey>,
    /// The last state that verified.
    pub(super) state: Option<pb::RunState>,
    /// The version of the state object last read, verified or not.
    pub(super) state_version: Option<Version>,
    pub(super) state_status: String,
    pub(super) jobs: Cursor,
    pub(super) job_steps: BTreeMap<u32, u64>,
    /// The pipeline stage of each job with a verified manifest (0 for
    /// workloads without stages); eval jobs, which run every stage, have none.
    pub(super) job_stages: std::collections::HashMap<String, u32>,
    /// Every job counted in `job_steps`: from stored manifests (owners that
    /// stored them) or from the manifest an attributed receipt's
    /// assignment carries.
    pub(super) known_jobs: std::collections::HashSet<String>,
    pub(super) receipts_cur: Cursor,
    pub(super) receipts: BTreeMap<String, ReceiptEntry>,
    pub(super) verdicts_cur: Cursor,
    /// Keyed by the receipt key the verdict judges.
    pub(super) verdicts: BTreeMap<String, VerdictEntry>,
}

impl RunEntry {
    /// Counts `manifest`'s job once, whichever way it was learnt of.
    pub(super) fn note_job(&mut self, manifest: &pb::JobManifest) {
        if !self.known_jobs.insert(manifest.job_id.clone()) {
            return;
        }
        *self.job_steps.entry(manifest.step).or_default() += 1;
        // An eval job runs the whole model: no one stage's work.
        if manifest.kind != pb::JobKind::Eval as i32 {
            self.job_stages
                .insert(manifest.job_id.clone(), manifest.stage);
        }
    }

    fn new(manifest_key: String, manifest: pb::RunManifest, validators: Vec<Hotkey>) -> Self {
        RunEntry {
            manifest_key,
            manifest,
            validators,
            state: None,
            state_version: None,
            state_status: "missing".into(),
            jobs: Cursor::default(),
            job_steps: BTreeMap::new(),
            job_stages: Default::default(),
            known_jobs: Default::default(),
            receipts_cur: Cursor::default(),
            receipts: BTreeMap::new(),
            verdicts_cur: Cursor::default(),
            verdicts: BTreeMap::new(),
        }
    }

    pub(super) fn cursor(&self, family: WriteOnce) -> &Cursor {
        match family {
            WriteOnce::Jobs => &self.jobs,
            WriteOnce::Receipts => &self.receipts_cur,
            WriteOnce::Verdicts => &self.verdicts_cur,
        }
    }

    pub(super) fn cursor_mut(&mut self, family: WriteOnce) -> &mut Cursor {
        match family {
            WriteOnce::Jobs => &mut self.jobs,
            WriteOnce::Receipts => &mut self.receipts_cur,
            WriteOnce::Verdicts => &mut self.verdicts_cur,
        }
    }
}

impl DiscoveryIndex {
    /// Run manifests and states. Returns whether a run was added.
    pub(super) async fn refresh_runs(
        &mut self,
        report: &mut RefreshReport,
    ) -> Result<bool, crate::Error> {
        let layout = self.bucket.layout().clone();
        let mut added = false;
        for run in self.bucket.list_dirs(&layout.runs()).await? {
            let dir = layout.run_dir(&run);
            if let Err(reason) = validate_id("run", &run) {
                report.rejected += u64::from(self.reject(&dir, "run", reason));
                continue;
            }
            let files = self.bucket.list_files(&dir).await?;
            let listed = |key: String| files.iter().find(|l| l.key == key);
            if !self.runs.contains_key(&run) {
                let Some(manifest) = listed(layout.run_manifest(&run)) else {
                    continue;
                };
                added |= self.read_manifest(&run, manifest, report).await;
            }
            if let Some(state) = listed(layout.run_state(&run)) {
                self.read_state(&run, state, report).await;
            }
        }
        Ok(added)
    }

    /// Reads a run's manifest unless this version already failed; returns
    /// whether the run is now indexed.
    async fn read_manifest(
        &mut self,
        run: &str,
        listed: &Listed,
        report: &mut RefreshReport,
    ) -> bool {
        if self.bad_runs.get(run) == Some(&Version::of(listed)) {
            return false;
        }
        report.fetched += 1;
        let key = &listed.key;
        let got = self
            .bucket
            .get_listed::<pb::RunManifest>(listed, Expect::Signer(&self.owner))
            .await;
        let Some(got) = settled("run manifest", key, got) else {
            return false;
        };
        if got.as_ref().is_err_and(|e| e.is_not_found()) {
            return false;
        }
        let checked = answer(got).and_then(|m| {
            check(m.run_id == run, || {
                format!("manifest names run {:?}, its key names {run:?}", m.run_id)
            })?;
            let validators = m
                .validators
                .iter()
                .map(|v| Hotkey::from_bytes(v).map_err(|e| format!("validator: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((m.into_inner(), validators))
        });
        report.changed = true;
        match checked {
            Ok((manifest, validators)) => {
                self.bad_runs.remove(run);
                self.rejected.remove(key);
                self.runs.insert(
                    run.to_string(),
                    RunEntry::new(key.clone(), manifest, validators),
                );
                true
            }
            Err(reason) => {
                self.bad_runs.insert(run.to_string(), Version::of(listed));
                report.rejected += u64::from(self.reject(key, "run manifest", reason));
                false
            }
        }
    }

    /// Reads a run's state when it changed since it was last read.
    async fn read_state(&mut self, run: &str, listed: &Listed, report: &mut RefreshReport) {
        let version = Version::of(listed);
        let Some(entry) = self.runs.get(run) else {
            return;
        };
        if entry.state_version.as_ref() == Some(&version) {
            return;
        }
        report.fetched += 1;
        let key = &listed.key;
        let got = self
            .bucket
            .get_listed::<pb::RunState>(listed, Expect::Signer(&self.owner))
            .await;
        let Some(got) = settled("run state", key, got) else {
            return;
        };
        if got.as_ref().is_err_and(|e| e.is_not_found()) {
            return;
        }
        let checked = answer(got).and_then(|s| {
            check(s.run_id == run, || {
                format!("state names run {:?}, its key names {run:?}", s.run_id)
            })
            .map(|()| s.into_inner())
        });
        report.changed = true;
        match &checked {
            Ok(_) => {
                self.rejected.remove(key);
            }
            Err(reason) => {
                report.rejected += u64::from(self.reject(key, "run state", reason.clone()));
            }
        }
        if let Some(entry) = self.runs.get_mut(run) {
            entry.state_version = Some(version);
            match checked {
                Ok(state) => {
                    entry.state = Some(state);
                    entry.state_status = VERIFIED.into();
                }
                Err(reason) => entry.state_status = format!("rejected: {reason}"),
            }
        }
    }

    /// The run's new job manifests: signed by the owner, for this run and
    /// the job their key names; counted per step.
    pub(super) async fn refresh_jobs(
        &mut self,
        run: &str,
        full: bool,
        report: &mut RefreshReport,
    ) -> Result<(), crate::Error> {
        let layout = self.bucket.layout().clone();
        let owner = self.owner;
        // Every key is read: one that does not parse fails the check below.
        let read = self
            .read_new::<pb::JobManifest, _>(
                run,
                WriteOnce::Jobs,
                full,
                |key| Some(layout.parse_job_manifest(run, key)),
                Expect::Signer(&owner),
                report,
            )
            .await?;
        for (key, parsed, got) in read {
            let checked = answer(got).and_then(|job| {
                check(
                    job.run_id == run && parsed.is_some_and(|(id, _)| id == job.job_id),
                    || {
                        format!(
                            "manifest of run {:?} job {:?} does not belong at this key",
                            job.run_id, job.job_id
                        )
                    },
                )
                .map(|()| job)
            });
            match checked {
                Ok(job) => {
                    self.seen(run, WriteOnce::Jobs, &key);
                    if let Some(entry) = self.runs.get_mut(run) {
                        entry.note_job(&job);
                    }
                }
                Err(reason) => self.reject_seen(run, WriteOnce::Jobs, &key, reason, report),
            }
        }
        Ok(())
    }
}
