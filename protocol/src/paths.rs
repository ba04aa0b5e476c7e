//! The bucket layout: every key any daemon reads or writes is built here.
//!
//! ```text
//! v1/netuid={n}/runs/{run}/run.pb                                RunManifest     owner
//! v1/netuid={n}/runs/{run}/state.pb                              RunState        owner
//! v1/netuid={n}/runs/{run}/jobs/{job}.pb                         JobManifest     owner
//! v1/netuid={n}/runs/{run}/jobs/{job}/r{revision}.pb             JobManifest     owner (when the first key is taken)
//! v1/netuid={n}/runs/{run}/artifacts/{job}/a{attempt}.pb         TensorArtifact  assigned hotkey (owner for `init`)
//! v1/netuid={n}/runs/{run}/receipts/s{step}/{job}/a{attempt}.pb  Receipt         assigned hotkey
//! v1/netuid={n}/runs/{run}/verdicts/s{step}/{job}/a{attempt}.pb  Verdict         validator
//! v1/netuid={n}/runs/{run}/validator-checkpoint.pb               ValidatorCheckpoint validator
//! v1/netuid={n}/assignments/{ss58}/w{worker}/{seq}.pb            Assignment      owner
//! v1/netuid={n}/heartbeats/{ss58}/w{worker}.pb                   WorkerHeartbeat hotkey
//! v1/netuid={n}/grants/{ss58}/heartbeat.pb                       HeartbeatGrant  owner
//! v1/netuid={n}/scores/{window}.pb                               ScoreWindow     validator
//! v1/netuid={n}/weights/{window}.pb                              ChainWeights    validator
//! v1/netuid={n}/audits/{ss58}/jobs/{seq}.pb                      AuditJob        validator
//! v1/netuid={n}/audits/{ss58}/results/{seq}.pb                   AuditResult     auditor {ss58}
//! v1/netuid={n}/dropped-auditors/{ss58}.pb                       AuditorDropped  validator
//! ```
//!
//! Steps, workers and sequence numbers are zero-padded so that the bucket's
//! lexicographic listing order is their numeric order, which lets readers
//! resume a listing after the last key they saw instead of re-reading a prefix.

use crate::keys::Hotkey;

/// Steps below this have six digits in keys (`s{step:06}`), so a run's
/// receipt and verdict keys sort by step up to it.
pub const SORTED_STEPS: u32 = 1_000_000;

/// Identifiers that become path segments must be short and path-safe.
pub fn validate_id(kind: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} {id:?} must be 1-64 characters of [A-Za-z0-9._-], not starting with '.'"
        ))
    }
}

/// Revisions of one job's manifest the owner tries before it gives the job
/// up as blocked (each taken key is named in its log).
pub const MAX_MANIFEST_REVISIONS: u32 = 16;

/// Key builder for one subnet's part of the bucket.
#[derive(Clone, Debug)]
pub struct Layout {
    netuid: u16,
    root: String,
}

impl Layout {
    pub fn new(netuid: u16) -> Self {
        Layout {
            netuid,
            root: format!("v1/netuid={netuid}"),
        }
    }

    /// The subnet this layout's keys belong to.
    pub fn netuid(&self) -> u16 {
        self.netuid
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn runs(&self) -> String {
        format!("{}/runs/", self.root)
    }

    /// The directory of one run: its manifest and state directly in it,
    /// jobs, artifacts, receipts and verdicts below it.
    pub fn run_dir(&self, run: &str) -> String {
        format!("{}{run}/", self.runs())
    }

    pub fn run_manifest(&self, run: &str) -> String {
        format!("{}/runs/{run}/run.pb", self.root)
    }

    pub fn run_state(&self, run: &str) -> String {
        format!("{}/runs/{run}/state.pb", self.root)
    }

    /// The run's validator checkpoint: its verdicts of closed steps, folded.
    pub fn validator_checkpoint(&self, run: &str) -> String {
        format!("{}/runs/{run}/validator-checkpoint.pb", self.root)
    }

    /// Every job manifest of a run (all revisions) is under this prefix.
    pub fn job_manifests(&self, run: &str) -> String {
        format!("{}jobs/", self.run_dir(run))
    }

    pub fn job_manifest(&self, run: &str, job: &str) -> String {
        self.job_manifest_revision(run, job, 0)
    }

    /// Where revision `revision` of a job's manifest lives. The owner moves
    /// to the next revision when the key it must write is taken by an object
    /// it did not write (or by its own manifest naming inputs that are gone):
    /// a planted object can cost a key, never the job. Assignments name the
    /// manifest key they commit to.
    pub fn job_manifest_revision(&self, run: &str, job: &str, revision: u32) -> String {
        match revision {
            0 => format!("{}/runs/{run}/jobs/{job}.pb", self.root),
            n => format!("{}/runs/{run}/jobs/{job}/r{n:03}.pb", self.root),
        }
    }

    /// Parses a job manifest key of `run` into (job, revision).
    pub fn parse_job_manifest(&self, run: &str, key: &str) -> Option<(String, u32)> {
        let rest = key.strip_prefix(&self.job_manifests(run))?;
        let (job, revision) = match rest.split_once('/') {
            Some((job, file)) => {
                let n: u32 = file.strip_prefix('r')?.strip_suffix(".pb")?.parse().ok()?;
                (job, n.checked_sub(1)? + 1)
            }
            None => (rest.strip_suffix(".pb")?, 0),
        };
        validate_id("job", job).ok()?;
        (self.job_manifest_revision(run, job, revision) == key).then(|| (job.to_string(), revision))
    }

    pub fn artifact(&self, run: &str, job: &str, attempt: u32) -> String {
        format!("{}/runs/{run}/artifacts/{job}/a{attempt:03}.pb", self.root)
    }

    /// Parses an artifact key of `run` back into its job and attempt;
    /// exactly the keys [`Layout::artifact`] makes.
    pub fn parse_artifact(&self, run: &str, key: &str) -> Option<(String, u32)> {
        let rest = key.strip_prefix(&format!("{}/runs/{run}/artifacts/", self.root))?;
        let (job, file) = rest.split_once('/')?;
        let attempt: u32 = file.strip_prefix('a')?.strip_suffix(".pb")?.parse().ok()?;
        validate_id("job", job).ok()?;
        (self.artifact(run, job, attempt) == key).then(|| (job.to_string(), attempt))
    }

    pub fn receipts(&self, run: &str) -> String {
        format!("{}/runs/{run}/receipts/", self.root)
    }

    pub fn receipts_of_step(&self, run: &str, step: u32) -> String {
        format!("{}/runs/{run}/receipts/s{step:06}/", self.root)
    }

    pub fn receipt(&self, run: &str, step: u32, job: &str, attempt: u32) -> String {
        format!("{}{job}/a{attempt:03}.pb", self.receipts_of_step(run, step))
    }

    pub fn verdicts(&self, run: &str) -> String {
        format!("{}/runs/{run}/verdicts/", self.root)
    }

    pub fn verdicts_of_step(&self, run: &str, step: u32) -> String {
        format!("{}s{step:06}/", self.verdicts(run))
    }

    pub fn verdict(&self, run: &str, step: u32, job: &str, attempt: u32) -> String {
        format!("{}{job}/a{attempt:03}.pb", self.verdicts_of_step(run, step))
    }

    /// Where the owner puts work for every worker of one hotkey.
    pub fn assignments_of_hotkey(&self, hotkey: &Hotkey) -> String {
        format!("{}/assignments/{}/", self.root, hotkey.ss58())
    }

    /// Where the owner puts work for one worker of one hotkey.
    pub fn assignments_of(&self, hotkey: &Hotkey, worker: u32) -> String {
        format!("{}w{worker:03}/", self.assignments_of_hotkey(hotkey))
    }

    pub fn assignment(&self, hotkey: &Hotkey, worker: u32, seq: u64) -> String {
        format!("{}{seq:012}.pb", self.assignments_of(hotkey, worker))
    }

    /// Where the owner puts work for every hotkey.
    pub fn assignments(&self) -> String {
        format!("{}/assignments/", self.root)
    }

    /// The sequence number of an assignment key (any hotkey and worker).
    pub fn parse_assignment_seq(&self, key: &str) -> Option<u64> {
        self.parse_assignment(key).map(|(_, _, seq)| seq)
    }

    /// Parses `assignments/{ss58}/w{worker}/{seq:012}.pb` into (hotkey,
    /// worker, sequence number); exactly the keys [`Layout::assignment`]
    /// makes, so a planted key cannot pass for another.
    pub fn parse_assignment(&self, key: &str) -> Option<(Hotkey, u32, u64)> {
        let rest = key.strip_prefix(&self.assignments())?;
        let mut parts = rest.split('/');
        let (ss58, worker, file) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let worker = worker.strip_prefix('w')?;
        if worker.len() < 3 || !worker.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let worker: u32 = worker.parse().ok()?;
        let digits = file.strip_suffix(".pb")?;
        if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hotkey: Hotkey = ss58.parse().ok()?;
        let parsed = (hotkey, worker, digits.parse().ok()?);
        (self.assignment(&parsed.0, parsed.1, parsed.2) == key).then_some(parsed)
    }

    pub fn heartbeats(&self) -> String {
        format!("{}/heartbeats/", self.root)
    }

    pub fn heartbeat(&self, hotkey: &Hotkey, worker: u32) -> String {
        format!("{}/heartbeats/{}/w{worker:03}.pb", self.root, hotkey.ss58())
    }

    pub fn scores(&self) -> String {
        format!("{}/scores/", self.root)
    }

    pub fn score_window(&self, window: &str) -> String {
        format!("{}{window}.pb", self.scores())
    }

    /// The window named by a key under [`Layout::scores`] (the key is
    /// `score_window(window)`), whether or not it is a valid window id.
    pub fn parse_score_window(&self, key: &str) -> Option<String> {
        parse_window(key, &self.scores())
    }

    /// The owner's standing heartbeat grant for a hotkey.
    pub fn heartbeat_grant(&self, hotkey: &Hotkey) -> String {
        format!("{}/grants/{}/heartbeat.pb", self.root, hotkey.ss58())
    }

    /// Every window's chain weights are under this prefix.
    pub fn weights(&self) -> String {
        format!("{}/weights/", self.root)
    }

    pub fn chain_weights(&self, window: &str) -> String {
        format!("{}{window}.pb", self.weights())
    }

    /// The window named by a key under [`Layout::weights`] (the key is
    /// `chain_weights(window)`), whether or not it is a valid window id.
    pub fn parse_chain_weights(&self, key: &str) -> Option<String> {
        parse_window(key, &self.weights())
    }

    /// Parses `heartbeats/{ss58}/w{worker}.pb` back into its hotkey and worker.
    pub fn parse_heartbeat(&self, key: &str) -> Option<(Hotkey, u32)> {
        let rest = key.strip_prefix(&self.heartbeats())?;
        let (ss58, file) = rest.split_once('/')?;
        let worker = file.strip_prefix('w')?.strip_suffix(".pb")?.parse().ok()?;
        Some((ss58.parse().ok()?, worker))
    }

    /// Parses `.../receipts/s{step}/{job}/a{attempt}.pb` into (step, job, attempt).
    pub fn parse_receipt(&self, run: &str, key: &str) -> Option<(u32, String, u32)> {
        parse_step_object(key.strip_prefix(&self.receipts(run))?)
    }

    /// Parses `.../verdicts/s{step}/{job}/a{attempt}.pb` into (step, job, attempt).
    pub fn parse_verdict(&self, run: &str, key: &str) -> Option<(u32, String, u32)> {
        parse_step_object(key.strip_prefix(&self.verdicts(run))?)
    }

    /// Where a validator puts replay work for one auditor.
    pub fn audit_jobs(&self, auditor: &Hotkey) -> String {
        format!("{}/audits/{}/jobs/", self.root, auditor.ss58())
    }

    /// Audit job `seq` of an auditor. Sequence numbers grow with time, so
    /// the auditor lists after the last job it took.
    pub fn audit_job(&self, auditor: &Hotkey, seq: u64) -> String {
        format!("{}{seq:020}.pb", self.audit_jobs(auditor))
    }

    /// Where an auditor answers its audit jobs.
    pub fn audit_results(&self, auditor: &Hotkey) -> String {
        format!("{}/audits/{}/results/", self.root, auditor.ss58())
    }

    /// The answer to audit job `seq`: the same number under `results/`.
    pub fn audit_result(&self, auditor: &Hotkey, seq: u64) -> String {
        format!("{}{seq:020}.pb", self.audit_results(auditor))
    }

    /// Every validator's records of the auditors it stopped trusting: a
    /// prefix of its own, so a reader lists them without the audit jobs.
    pub fn dropped_auditors(&self) -> String {
        format!("{}/dropped-auditors/", self.root)
    }

    /// Where a validator records that it stopped trusting an auditor.
    pub fn auditor_dropped(&self, auditor: &Hotkey) -> String {
        format!("{}{}.pb", self.dropped_auditors(), auditor.ss58())
    }

    /// The auditor a key under [`Layout::dropped_auditors`] names.
    pub fn parse_auditor_dropped(&self, key: &str) -> Option<Hotkey> {
        let ss58 = key
            .strip_prefix(&self.dropped_auditors())?
            .strip_suffix(".pb")?;
        let hotkey: Hotkey = ss58.parse().ok()?;
        (self.auditor_dropped(&hotkey) == key).then_some(hotkey)
    }

    /// The sequence number of an audit job key of `auditor`; exactly the
    /// keys [`Layout::audit_job`] makes.
    pub fn parse_audit_job(&self, auditor: &Hotkey, key: &str) -> Option<u64> {
        parse_seq(key.strip_prefix(&self.audit_jobs(auditor))?)
    }

    /// The sequence number of an audit result key of `auditor`.
    pub fn parse_audit_result(&self, auditor: &Hotkey, key: &str) -> Option<u64> {
        parse_seq(key.strip_prefix(&self.audit_results(auditor))?)
    }

    /// Parses `.../runs/{run}/run.pb` into the run id.
    pub fn parse_run_manifest(&self, key: &str) -> Option<String> {
        let run = key.strip_prefix(&self.runs())?.strip_suffix("/run.pb")?;
        validate_id("run", run).ok()?;
        Some(run.to_string())
    }
}

/// `{prefix}{window}.pb` → window.
fn parse_window(key: &str, prefix: &str) -> Option<String> {
    Some(key.strip_prefix(prefix)?.strip_suffix(".pb")?.to_string())
}

/// `{seq:020}.pb` → seq.
fn parse_seq(file: &str) -> Option<u64> {
    let digits = file.strip_suffix(".pb")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `s{step}/{job}/a{attempt}.pb` → (step, job, attempt).
fn parse_step_object(rest: &str) -> Option<(u32, String, u32)> {
    let mut parts = rest.split('/');
    let step = parts.next()?.strip_prefix('s')?.parse().ok()?;
    let job = parts.next()?.to_string();
    let attempt = parts
        .next()?
        .strip_prefix('a')?
        .strip_suffix(".pb")?
        .parse()
        .ok()?;
    if parts.next().is_some() || validate_id("job", &job).is_err() {
        return None;
    }
    Some((step, job, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn receipt_and_heartbeat_keys_parse_back() {
        let layout = Layout::new(3);
        let key = layout.receipt("run1", 7, "s00007-inner-m00-r01", 2);
        assert_eq!(
            layout.parse_receipt("run1", &key),
            Some((7, "s00007-inner-m00-r01".to_string(), 2))
        );
        let verdict = layout.verdict("run1", 7, "s00007-reduce", 1);
        assert!(verdict.starts_with(&layout.verdicts_of_step("run1", 7)));
        assert_eq!(
            layout.parse_verdict("run1", &verdict),
            Some((7, "s00007-reduce".to_string(), 1))
        );
        assert_eq!(layout.parse_verdict("run1", &key), None);
        let artifact = layout.artifact("run1", "s00007-outer", 12);
        assert_eq!(
            layout.parse_artifact("run1", &artifact),
            Some(("s00007-outer".to_string(), 12))
        );
        assert_eq!(layout.parse_artifact("run2", &artifact), None);
        assert_eq!(layout.parse_artifact("run1", &key), None);
        let hotkey = Keypair::generate().hotkey();
        let hb = layout.heartbeat(&hotkey, 4);
        assert_eq!(layout.parse_heartbeat(&hb), Some((hotkey, 4)));
        assert_eq!(
            layout.parse_run_manifest(&layout.run_manifest("run1")),
            Some("run1".into())
        );
        let assignee = Keypair::generate().hotkey();
        let assignment = layout.assignment(&assignee, 2, 41);
        assert_eq!(layout.parse_assignment_seq(&assignment), Some(41));
        assert_eq!(
            layout.parse_assignment(&assignment),
            Some((assignee, 2, 41))
        );
        assert!(assignment.starts_with(&layout.assignments()));
        let unpadded = assignment.replace("/w002/", "/w2/");
        assert_eq!(layout.parse_assignment(&unpadded), None);
        let root = layout.root();
        for bad in [
            "x/w000/18446744073709551615.pb",
            "x/w000/000000000001.pb/y",
            "x/w000/00000000000a.pb",
        ] {
            assert_eq!(
                layout.parse_assignment_seq(&format!("{root}/assignments/{bad}")),
                None
            );
        }
        for revision in [0, 1, 12] {
            let key = layout.job_manifest_revision("run1", "s00001-outer", revision);
            assert_eq!(
                layout.parse_job_manifest("run1", &key),
                Some(("s00001-outer".to_string(), revision))
            );
            assert_eq!(layout.parse_job_manifest("run2", &key), None);
        }
        let root = layout.root();
        for bad in [
            "jobs/x/r000.pb",
            "jobs/x/r1.pb",
            "jobs/x/r001.pb/y",
            "jobs/.x.pb",
        ] {
            let key = format!("{root}/runs/run1/{bad}");
            assert_eq!(layout.parse_job_manifest("run1", &key), None, "{bad}");
        }
    }

    #[test]
    fn prefixes_hold_their_keys_and_windows_parse_back() {
        let layout = Layout::new(12);
        assert_eq!(layout.netuid(), 12);
        let run = layout.run_dir("run1");
        assert!(run.starts_with(&layout.runs()) && run.ends_with('/'));
        for key in [layout.run_manifest("run1"), layout.run_state("run1")] {
            assert_eq!(key.strip_prefix(&run).map(|f| f.contains('/')), Some(false));
        }
        assert!(layout.run_dir("run10") != run && !layout.run_dir("run10").starts_with(&run));
        for revision in [0, 3] {
            let job = layout.job_manifest_revision("run1", "s00001-outer", revision);
            assert!(job.starts_with(&layout.job_manifests("run1")));
        }
        let hotkey = Keypair::generate().hotkey();
        let mine = layout.assignments_of_hotkey(&hotkey);
        assert!(layout.assignment(&hotkey, 3, 1).starts_with(&mine));
        let other = layout.assignment(&Keypair::generate().hotkey(), 3, 1);
        assert!(!other.starts_with(&mine));
        for window in ["w-00042", "2026-01-01"] {
            let scores = layout.score_window(window);
            let weights = layout.chain_weights(window);
            assert!(scores.starts_with(&layout.scores()));
            assert!(weights.starts_with(&layout.weights()));
            assert_eq!(layout.parse_score_window(&scores), Some(window.into()));
            assert_eq!(layout.parse_chain_weights(&weights), Some(window.into()));
            assert_eq!(layout.parse_score_window(&weights), None);
            assert_eq!(layout.parse_chain_weights(&scores), None);
        }
        assert_eq!(
            layout.parse_score_window(&format!("{}x.json", layout.scores())),
            None
        );
    }

    #[test]
    fn audit_keys_parse_back_only_for_their_auditor() {
        let layout = Layout::new(3);
        let (a, b) = (
            crate::Keypair::generate().hotkey(),
            crate::Keypair::generate().hotkey(),
        );
        let job = layout.audit_job(&a, 1_700_000_000_000_001);
        assert_eq!(
            layout.parse_audit_job(&a, &job),
            Some(1_700_000_000_000_001)
        );
        assert_eq!(layout.parse_audit_job(&b, &job), None);
        assert_eq!(layout.parse_audit_result(&a, &job), None);
        let dropped = layout.auditor_dropped(&a);
        assert_eq!(layout.parse_auditor_dropped(&dropped), Some(a));
        assert_eq!(layout.parse_auditor_dropped(&job), None);
        let result = layout.audit_result(&a, 7);
        assert_eq!(layout.parse_audit_result(&a, &result), Some(7));
        assert!(layout.audit_job(&a, 9) < layout.audit_job(&a, 10));
        for planted in ["7.pb", "000000000000000000007", "0000000000000000000x.pb"] {
            let key = format!("{}{planted}", layout.audit_results(&a));
            assert_eq!(layout.parse_audit_result(&a, &key), None, "{planted}");
        }
    }

    #[test]
    fn padded_numbers_sort_lexicographically() {
        let layout = Layout::new(3);
        let hotkey = Keypair::generate().hotkey();
        assert!(layout.assignment(&hotkey, 0, 9) < layout.assignment(&hotkey, 0, 10));
        assert!(layout.receipts_of_step("r", 9) < layout.receipts_of_step("r", 10));
    }

    #[test]
    fn ids_are_path_safe() {
        assert!(validate_id("run", "run-2026.1_a").is_ok());
        for bad in ["", "a/b", "..", ".hidden", "x y", &"a".repeat(65)] {
            assert!(validate_id("run", bad).is_err(), "{bad:?}");
        }
    }
}
