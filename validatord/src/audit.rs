//! The validator's side of auditing, without I/O: which auditors it still
//! trusts, whom the next replay goes to, and whether an auditor's result
//! contradicts the validator's own replay of the same job.
//!
//! An auditor is trusted only as far as it is checked. A passing result is
//! taken on its word unless the validator's secret draw
//! ([`crate::sampling::recheck`]) picks it for a second replay; a failing or
//! void one is always replayed again, so no miner is zeroed on an auditor's
//! word. One contradiction drops the auditor, and whatever it alone vouched
//! for is replayed again by the validator.

use std::collections::BTreeMap;
use std::time::Duration;

use locus_protocol::Hotkey;
use locus_protocol::pb::{self, AuditOutcome};

use crate::replay::{Checked, Replayed};

/// How a validator uses auditors.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// The auditors' hotkeys; empty: the validator replays everything.
    pub auditors: Vec<Hotkey>,
    /// Fraction of passing audit results the validator replays again.
    pub recheck_rate: f64,
    /// How long an auditor has for one job before the validator replays
    /// it itself.
    pub timeout: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            auditors: Vec::new(),
            recheck_rate: 0.1,
            timeout: Duration::from_secs(60),
        }
    }
}

/// The auditors a validator trusts, and those it dropped and why.
#[derive(Debug, Default)]
pub struct Pool {
    trusted: Vec<Hotkey>,
    dropped: BTreeMap<Hotkey, String>,
    next: usize,
    last_seq: u64,
}

impl Pool {
    pub fn new(auditors: &[Hotkey]) -> Self {
        let mut trusted = Vec::new();
        for a in auditors {
            if !trusted.contains(a) {
                trusted.push(*a);
            }
        }
        Pool {
            trusted,
            ..Default::default()
        }
    }

    /// The auditor for the next replay, in turn; none when none is trusted.
    pub fn pick(&mut self) -> Option<Hotkey> {
        if self.trusted.is_empty() {
            return None;
        }
        let auditor = self.trusted[self.next % self.trusted.len()];
        self.next = self.next.wrapping_add(1);
        Some(auditor)
    }

    /// Drops `auditor` from the trusted set; false if it was not in it.
    pub fn drop_auditor(&mut self, auditor: Hotkey, reason: String) -> bool {
        let Some(at) = self.trusted.iter().position(|a| *a == auditor) else {
            return false;
        };
        self.trusted.remove(at);
        self.dropped.insert(auditor, reason);
        true
    }

    pub fn is_trusted(&self, auditor: &Hotkey) -> bool {
        self.trusted.contains(auditor)
    }

    /// Dropped auditors and why.
    pub fn dropped(&self) -> &BTreeMap<Hotkey, String> {
        &self.dropped
    }

    /// The next audit job's sequence number: microseconds since the epoch,
    /// kept increasing, so a restarted validator's numbers follow its old
    /// ones and an auditor can list after the last job it took.
    pub fn next_seq(&mut self, now_ms: u64) -> u64 {
        self.last_seq = now_ms.saturating_mul(1000).max(self.last_seq + 1);
        self.last_seq
    }
}

/// A replay's finding as an audit outcome.
pub fn outcome_of(checked: &Checked) -> AuditOutcome {
    match checked {
        Checked::Passed => AuditOutcome::Passed,
        Checked::Failed(_) => AuditOutcome::Failed,
        Checked::Void(_) => AuditOutcome::Void,
    }
}

/// Whether the validator must replay a job again before it uses the
/// result: always unless it passed (no miner is failed on an auditor's
/// word, and a void result costs the validator a replay it would have run
/// anyway), else when the secret draw says so.
pub fn must_recheck(result: &pb::AuditResult, drawn: bool) -> bool {
    drawn || AuditOutcome::try_from(result.outcome).unwrap_or_default() != AuditOutcome::Passed
}

/// Why `result` is a lie, given the validator's own replay `mine` of the
/// same job: another outcome, or (on the same backend, where replays agree
/// bit for bit) another replayed output. `None`: the auditor told the truth.
pub fn contradiction(
    result: &pb::AuditResult,
    mine: &Replayed,
    same_backend: bool,
) -> Option<String> {
    let said = AuditOutcome::try_from(result.outcome).unwrap_or_default();
    let found = outcome_of(&mine.checked);
    if said != found {
        let detail = match &mine.checked {
            Checked::Passed => String::new(),
            Checked::Failed(why) | Checked::Void(why) => format!(" ({why})"),
        };
        return Some(format!(
            "said {} for {}, the validator's replay found {}{detail}",
            name(said),
            result.receipt_key,
            name(found)
        ));
    }
    if same_backend
        && let Some(digest) = &mine.digest
        && found == AuditOutcome::Passed
        && result.replayed_digest.as_slice() != digest.as_bytes().as_slice()
    {
        return Some(format!(
            "reported a replayed output for {} that the validator's replay does not produce",
            result.receipt_key
        ));
    }
    None
}

fn name(outcome: AuditOutcome) -> &'static str {
    match outcome {
        AuditOutcome::Passed => "passed",
        AuditOutcome::Failed => "failed",
        AuditOutcome::Void => "void",
        AuditOutcome::Unspecified => "nothing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_protocol::{Digest, Keypair};

    fn result(outcome: AuditOutcome, digest: &Digest) -> pb::AuditResult {
        pb::AuditResult {
            receipt_key: "r".into(),
            outcome: outcome as i32,
            replayed_digest: digest.to_vec(),
            ..Default::default()
        }
    }

    fn replayed(checked: Checked, digest: &Digest) -> Replayed {
        Replayed {
            checked,
            digest: Some(*digest),
            ms: 1,
        }
    }

    #[test]
    fn turns_go_round_the_trusted_and_skip_the_dropped() {
        let (a, b) = (Keypair::generate().hotkey(), Keypair::generate().hotkey());
        let mut pool = Pool::new(&[a, b, a]);
        assert_eq!(
            (pool.pick(), pool.pick(), pool.pick()),
            (Some(a), Some(b), Some(a))
        );
        assert!(pool.drop_auditor(a, "lied".into()));
        assert!(!pool.drop_auditor(a, "again".into()));
        assert!(!pool.is_trusted(&a));
        assert_eq!((pool.pick(), pool.pick()), (Some(b), Some(b)));
        assert_eq!(pool.dropped().get(&a).map(String::as_str), Some("lied"));
        pool.drop_auditor(b, "lied".into());
        assert_eq!(pool.pick(), None);
    }

    #[test]
    fn sequence_numbers_only_grow() {
        let mut pool = Pool::default();
        let first = pool.next_seq(5);
        assert_eq!(first, 5000);
        assert_eq!(pool.next_seq(5), 5001);
        assert_eq!(pool.next_seq(4), 5002, "a clock stepping back");
        assert_eq!(pool.next_seq(u64::MAX), u64::MAX);
    }

    #[test]
    fn only_passes_are_taken_on_an_auditor_s_word() {
        let d = Digest::of(b"x");
        assert!(!must_recheck(&result(AuditOutcome::Passed, &d), false));
        assert!(must_recheck(&result(AuditOutcome::Passed, &d), true));
        for said in [
            AuditOutcome::Failed,
            AuditOutcome::Void,
            AuditOutcome::Unspecified,
        ] {
            assert!(must_recheck(&result(said, &d), false), "{said:?}");
        }
    }

    #[test]
    fn lies_about_the_outcome_or_the_output_are_caught() {
        let (honest, other) = (Digest::of(b"honest"), Digest::of(b"other"));
        let pass = replayed(Checked::Passed, &honest);
        let fail = replayed(Checked::Failed("replay mismatch".into()), &other);
        assert_eq!(
            contradiction(&result(AuditOutcome::Passed, &honest), &pass, true),
            None
        );
        assert_eq!(
            contradiction(&result(AuditOutcome::Failed, &other), &fail, true),
            None
        );
        let why = contradiction(&result(AuditOutcome::Failed, &honest), &pass, true)
            .expect("a false failure");
        assert!(why.contains("said failed"), "{why}");
        let why = contradiction(&result(AuditOutcome::Passed, &other), &fail, true)
            .expect("a false pass");
        assert!(
            why.contains("said passed") && why.contains("replay mismatch"),
            "{why}"
        );
        // A pass with a made-up output: caught on the same backend only,
        // where replays agree bit for bit.
        let made_up = result(AuditOutcome::Passed, &other);
        assert!(contradiction(&made_up, &pass, true).is_some());
        assert_eq!(contradiction(&made_up, &pass, false), None);
    }
}
