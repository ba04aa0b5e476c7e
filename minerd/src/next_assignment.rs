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

/// How long after an assignment was read the next one of its run is due
/// (and read often, where no events say it came): within a step's levels.
/// Past that, the jobs that kept this worker waiting are long enough that
/// a pick-up within the 1 s idle poll costs little.
pub const DUE_WITHIN: Duration = Duration::from_secs(30);

/// What one assignment said about the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Told {
    pub run: String,
    /// The key of the next assignment, if the owner set one aside.
    pub next_key: Option<String>,
    pub deadline_ms: u64,
    /// When the worker read the assignment.
    pub read_ms: u64,
}

/// The next assignment key of each run giving this worker work.
#[derive(Debug, Default)]
pub struct NextAssignment {
    by_run: BTreeMap<String, Expected>,
}

#[derive(Debug)]
struct Expected {
    next_key: Option<String>,
    deadline_ms: u64,
    read_ms: u64,
}

impl NextAssignment {
    /// Notes what the assignment handled at `key` said. A next key that
    /// does not sort after `key` is no expectation (listings resume after
    /// the cursor).
    pub fn learn(&mut self, key: &str, told: Told) {
        let next_key = told.next_key.filter(|next| next.as_str() > key);
        self.by_run.insert(
            told.run,
            Expected {
                next_key,
                deadline_ms: told.deadline_ms,
                read_ms: told.read_ms,
            },
        );
    }

    /// The one run giving this worker work, where there is exactly one.
    fn only(&self) -> Option<&Expected> {
        let mut runs = self.by_run.values();
        match (runs.next(), runs.next()) {
            (Some(expected), None) => Some(expected),
            _ => None,
        }
    }

    /// The one key to read instead of listing, where exactly one run gives
    /// this worker work and said where its next assignment goes.
    pub fn key(&self) -> Option<&str> {
        self.only()?.next_key.as_deref()
    }

    /// Whether that key is worth reading often at `now_ms`: the last
    /// assignment was read less than [`DUE_WITHIN`] ago and its lease still
    /// runs, so the run's next job for this worker is likely soon (a step's
    /// later levels).
    pub fn is_due(&self, now_ms: u64) -> bool {
        self.only().is_some_and(|e| {
            let due_until = e
                .deadline_ms
                .min(e.read_ms.saturating_add(DUE_WITHIN.as_millis() as u64));
            e.next_key.is_some() && now_ms < due_until
        })
    }

    /// Forgets an expected key that held an object not the owner's: the
    /// owner skips past such a key, and a listing finds where it went.
    pub fn forget(&mut self, key: &str) {
        for expected in self.by_run.values_mut() {
            if expected.next_key.as_deref() == Some(key) {
                expected.next_key = None;
            }
        }
    }

    /// Drops runs whose last assignment ran out [`FORGET_AFTER`] before
    /// `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        let forget = FORGET_AFTER.as_millis() as u64;
        self.by_run
            .retain(|_, e| e.deadline_ms.saturating_add(forget) > now_ms);
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
            read_ms: 0,
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
    fn the_next_key_is_due_soon_after_a_read_while_its_lease_runs() {
        let mut next = NextAssignment::default();
        assert!(!next.is_due(0), "nothing expected");
        next.learn("a/001", told("run1", Some("a/005"), 1_000));
        assert!(next.is_due(999));
        assert!(!next.is_due(1_000), "the lease ran out: back off");
        next.learn("a/005", told("run1", None, 2_000));
        assert!(!next.is_due(1_500), "no key to read");
        // A long lease: due for DUE_WITHIN after the read, not all of it.
        let within = DUE_WITHIN.as_millis() as u64;
        next.learn("a/009", told("run1", Some("a/011"), 10 * within));
        assert!(next.is_due(within - 1));
        assert!(!next.is_due(within), "long past the read: back off");
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
