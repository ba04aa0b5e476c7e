//! Where a worker's next assignment will be written.
//!
//! Each assignment names the sequence number the owner set aside for the
//! worker's next one (`Assignment.next_seq`). While one run gives the
//! worker work, reading that key answers "has more work come?" in one GET
//! instead of a listing and a GET. Runs of one owner number their
//! assignments independently, so where two runs give this worker work, no
//! single key answers that: the worker lists then.

use std::collections::BTreeMap;
use std::time::Duration;

/// A run's expectation is dropped once its last assignment's lease ran out
/// this long ago: the run gives this worker no more work, or has ended.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// What one assignment said about the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Told {
    pub run: String,
    /// The key of the next assignment, if the owner set one aside.
    pub next_key: Option<String>,
    pub deadline_ms: u64,
}

/// The next assignment key of each run giving this worker work.
#[derive(Debug, Default)]
pub struct NextAssignment {
    by_run: BTreeMap<String, (Option<String>, u64)>,
}

impl NextAssignment {
    /// Notes what the assignment handled at `key` said. A next key that
    /// does not sort after `key` is no expectation (listings resume after
    /// the cursor).
    pub fn learn(&mut self, key: &str, told: Told) {
        let next = told.next_key.filter(|next| next.as_str() > key);
        self.by_run.insert(told.run, (next, told.deadline_ms));
    }

    /// The one key to read instead of listing, where exactly one run gives
    /// this worker work and said where its next assignment goes.
    pub fn key(&self) -> Option<&str> {
        match self.by_run.values().collect::<Vec<_>>().as_slice() {
            [(Some(key), _)] => Some(key),
            _ => None,
        }
    }

    /// Whether the run whose next key is read gave this worker work whose
    /// lease is still running at `now_ms`: its next assignment is likely
    /// soon (a step's later levels), so the key is worth reading often.
    pub fn is_due(&self, now_ms: u64) -> bool {
        match self.by_run.values().collect::<Vec<_>>().as_slice() {
            [(Some(_), deadline)] => *deadline > now_ms,
            _ => false,
        }
    }

    /// Forgets an expected key that held an object not the owner's: the
    /// owner skips past such a key, and a listing finds where it went.
    pub fn forget(&mut self, key: &str) {
        for (next, _) in self.by_run.values_mut() {
            if next.as_deref() == Some(key) {
                *next = None;
            }
        }
    }

    /// Drops runs whose last assignment ran out [`FORGET_AFTER`] before
    /// `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        let forget = FORGET_AFTER.as_millis() as u64;
        self.by_run
            .retain(|_, (_, deadline)| deadline.saturating_add(forget) > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(run: &str, next: Option<&str>, deadline_ms: u64) -> Told {
        Told {
            run: run.into(),
            next_key: next.map(Into::into),
            deadline_ms,
        }
    }

    #[test]
    fn one_run_names_the_key_to_read() {
        let mut next = NextAssignment::default();
        assert_eq!(next.key(), None, "nothing told yet: list");
        next.learn("a/001", told("run1", Some("a/005"), 100));
        assert_eq!(next.key(), Some("a/005"));
        next.learn("a/005", told("run1", Some("a/009"), 200));
        assert_eq!(next.key(), Some("a/009"));
        // A next key that does not sort after the one handled is ignored.
        next.learn("a/009", told("run1", Some("a/002"), 300));
        assert_eq!(next.key(), None);
    }

    #[test]
    fn the_next_key_is_due_while_the_last_lease_runs() {
        let mut next = NextAssignment::default();
        assert!(!next.is_due(0), "nothing expected");
        next.learn("a/001", told("run1", Some("a/005"), 1_000));
        assert!(next.is_due(999));
        assert!(!next.is_due(1_000), "the lease ran out: back off");
        next.learn("a/005", told("run1", None, 2_000));
        assert!(!next.is_due(1_500), "no key to read");
    }

    #[test]
    fn two_runs_at_once_list_until_one_is_done() {
        let mut next = NextAssignment::default();
        next.learn("a/001", told("run1", Some("a/005"), 1_000));
        next.learn("a/002", told("run2", Some("a/006"), 2_000));
        assert_eq!(next.key(), None, "two runs: no one key answers");
        next.prune(1_000 + FORGET_AFTER.as_millis() as u64);
        assert_eq!(next.key(), Some("a/006"), "run1 has long run out");
    }

    #[test]
    fn a_key_someone_else_took_is_forgotten() {
        let mut next = NextAssignment::default();
        next.learn("a/001", told("run1", Some("a/005"), 100));
        next.forget("a/005");
        assert_eq!(next.key(), None);
        // An owner that set nothing aside: list.
        next.learn("a/007", told("run1", None, 200));
        assert_eq!(next.key(), None);
    }
}
