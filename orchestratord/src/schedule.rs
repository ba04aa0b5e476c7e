//! The orchestrator's pure core: which jobs are ready, who gets them, and
//! which leases have run out. No I/O; the driver feeds it what it read from
//! the bucket and writes what it decides.

use std::collections::{BTreeMap, HashMap};

use locus_protocol::Hotkey;
use locus_protocol::pb::JobKind;
use locus_workloads::plan::{JobSpec, Source};

/// One worker process of one miner hotkey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId {
    pub hotkey: Hotkey,
    pub worker: u32,
}

/// An accepted result: the artifact downstream jobs read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub attempt: u32,
    pub by: WorkerId,
    pub key: String,
    pub digest: locus_protocol::Digest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not handed out (yet, or again after a lease ran out).
    Waiting {
        last_attempt: u32,
        avoid: Option<Hotkey>,
    },
    Assigned {
        attempt: u32,
        to: WorkerId,
        deadline_ms: u64,
    },
    /// A result is in; downstream jobs wait for the validator's verdict on
    /// it, which names the output they read. The worker is free again and
    /// the lease no longer runs.
    Judging {
        attempt: u32,
        by: WorkerId,
    },
    Done(Output),
}

/// The jobs of a run that the orchestrator currently tracks.
#[derive(Default)]
pub struct Schedule {
    specs: BTreeMap<String, JobSpec>,
    states: HashMap<String, JobState>,
    rotation: usize,
    /// Jobs given to each worker in this run: among equally loaded workers
    /// the one given least goes first, so short jobs, which leave everyone
    /// idle between hops, still reach every worker.
    given: HashMap<WorkerId, u64>,
    /// Hotkeys caught cheating in this run: they get no more work.
    banned: std::collections::BTreeSet<Hotkey>,
    /// Leases a hotkey let lapse or results refused since its last accepted
    /// one: such a hotkey gets work only when nobody better is free.
    strikes: HashMap<Hotkey, u32>,
}

impl Schedule {
    /// Adds the jobs of a step (idempotent).
    pub fn add_jobs(&mut self, jobs: Vec<JobSpec>) {
        for job in jobs {
            self.states
                .entry(job.job_id.clone())
                .or_insert(JobState::Waiting {
                    last_attempt: 0,
                    avoid: None,
                });
            self.specs.entry(job.job_id.clone()).or_insert(job);
        }
    }

    /// Takes `spec` as done with `output` without tracking how: the
    /// parameter jobs of the step a restart resumes after, whose outputs the
    /// run state records.
    pub fn seed(&mut self, spec: JobSpec, output: Output) {
        self.states
            .insert(spec.job_id.clone(), JobState::Done(output));
        self.specs.insert(spec.job_id.clone(), spec);
    }

    pub fn spec(&self, job: &str) -> Option<&JobSpec> {
        self.specs.get(job)
    }

    pub fn state(&self, job: &str) -> Option<&JobState> {
        self.states.get(job)
    }

    pub fn output(&self, job: &str) -> Option<&Output> {
        match self.states.get(job) {
            Some(JobState::Done(out)) => Some(out),
            _ => None,
        }
    }

    /// Jobs not yet handed out whose inputs all exist, in DAG order.
    pub fn ready(&self) -> Vec<&JobSpec> {
        self.specs
            .values()
            .filter(|spec| {
                matches!(
                    self.states.get(&spec.job_id),
                    Some(JobState::Waiting { .. })
                )
            })
            .filter(|spec| {
                spec.inputs.iter().all(|input| match input {
                    Source::Owner(_) => true,
                    Source::Job(id) => self.output(id).is_some(),
                })
            })
            .collect()
    }

    /// The attempt number the next assignment of `job` gets.
    pub fn next_attempt(&self, job: &str) -> u32 {
        match self.states.get(job) {
            Some(JobState::Waiting { last_attempt, .. }) => last_attempt + 1,
            Some(JobState::Assigned { attempt, .. }) => attempt + 1,
            Some(JobState::Judging { attempt, .. }) => attempt + 1,
            Some(JobState::Done(out)) => out.attempt + 1,
            None => 1,
        }
    }

    /// Picks the least-loaded live worker for `job`, avoiding the hotkey whose
    /// lease on it ran out when another is available. Ties rotate, so every
    /// live miner gets work rather than the first in name order.
    pub fn pick_worker(
        &mut self,
        job: &str,
        live: &[WorkerId],
        max_inflight: usize,
    ) -> Option<WorkerId> {
        let avoid = match self.states.get(job) {
            Some(JobState::Waiting { avoid, .. }) => *avoid,
            _ => None,
        };
        let load = self.load();
        let candidates: Vec<&WorkerId> = live
            .iter()
            .filter(|w| !self.banned.contains(&w.hotkey))
            .filter(|w| load.get(w).copied().unwrap_or(0) < max_inflight)
            .collect();
        let preferred: Vec<&WorkerId> = candidates
            .iter()
            .copied()
            .filter(|w| Some(w.hotkey) != avoid)
            .collect();
        let pool = if preferred.is_empty() {
            candidates
        } else {
            preferred
        };
        let rank = |w: &WorkerId| {
            (
                self.strikes.get(&w.hotkey).copied().unwrap_or(0).min(1),
                load.get(w).copied().unwrap_or(0),
                self.given.get(w).copied().unwrap_or(0),
            )
        };
        let best = pool.iter().map(|w| rank(w)).min()?;
        let tied: Vec<&WorkerId> = pool.into_iter().filter(|w| rank(w) == best).collect();
        let chosen = *tied[self.rotation % tied.len()];
        self.rotation = self.rotation.wrapping_add(1);
        Some(chosen)
    }

    /// Jobs currently assigned to each worker.
    pub fn load(&self) -> HashMap<WorkerId, usize> {
        let mut load = HashMap::new();
        for state in self.states.values() {
            if let JobState::Assigned { to, .. } = state {
                *load.entry(*to).or_default() += 1;
            }
        }
        load
    }

    pub fn assign(&mut self, job: &str, attempt: u32, to: WorkerId, deadline_ms: u64) {
        *self.given.entry(to).or_default() += 1;
        self.states.insert(
            job.to_string(),
            JobState::Assigned {
                attempt,
                to,
                deadline_ms,
            },
        );
    }

    /// Accepts a result if it is for the attempt currently assigned. A late
    /// result of an earlier attempt is refused (and earns nothing).
    pub fn complete(&mut self, job: &str, output: Output) -> bool {
        if !self.is_assigned(job, output.attempt, output.by) {
            return false;
        }
        self.strikes.remove(&output.by.hotkey);
        self.states.insert(job.to_string(), JobState::Done(output));
        true
    }

    /// Holds a result for judgement (see [`JobState::Judging`]), if it is
    /// for the attempt currently assigned.
    pub fn hold(&mut self, job: &str, attempt: u32, by: WorkerId) -> bool {
        if !self.is_assigned(job, attempt, by) {
            return false;
        }
        self.states
            .insert(job.to_string(), JobState::Judging { attempt, by });
        true
    }

    fn is_assigned(&self, job: &str, attempt: u32, by: WorkerId) -> bool {
        matches!(
            self.states.get(job),
            Some(JobState::Assigned { attempt: a, to, .. }) if *a == attempt && *to == by
        )
    }

    /// The attempt held for judgement and its worker, if any.
    pub fn judging(&self, job: &str) -> Option<(u32, WorkerId)> {
        match self.states.get(job) {
            Some(JobState::Judging { attempt, by }) => Some((*attempt, *by)),
            _ => None,
        }
    }

    /// The validator passed the held result, which is `output`: downstream
    /// jobs may read it.
    pub fn confirm(&mut self, job: &str, output: Output) -> bool {
        match self.states.get(job) {
            Some(JobState::Judging { attempt, by })
                if *attempt == output.attempt && *by == output.by =>
            {
                self.strikes.remove(&output.by.hotkey);
                self.states.insert(job.to_string(), JobState::Done(output));
                true
            }
            _ => false,
        }
    }

    /// The validator refused the held result: the job goes back to
    /// `Waiting`, away from the hotkey that produced it.
    pub fn discard(&mut self, job: &str, attempt: u32) -> bool {
        match self.states.get(job) {
            Some(JobState::Judging { attempt: held, by }) if *held == attempt => {
                let hotkey = by.hotkey;
                *self.strikes.entry(hotkey).or_default() += 1;
                self.states.insert(
                    job.to_string(),
                    JobState::Waiting {
                        last_attempt: attempt,
                        avoid: Some(hotkey),
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Gives a cheater no more work; its open assignments are taken back.
    /// Returns the jobs taken back.
    pub fn ban(&mut self, hotkey: Hotkey) -> Vec<String> {
        if !self.banned.insert(hotkey) {
            return Vec::new();
        }
        let held: Vec<String> = self
            .states
            .iter()
            .filter(|(_, s)| matches!(s, JobState::Assigned { to, .. } if to.hotkey == hotkey))
            .map(|(job, _)| job.clone())
            .collect();
        for job in &held {
            self.expire_now(job);
        }
        held
    }

    /// Forgets every job of `step` and later (a rewind plans them again
    /// under new ids); returns the jobs forgotten.
    pub fn drop_steps_from(&mut self, step: u32) -> Vec<String> {
        let dropped: Vec<String> = self
            .specs
            .values()
            .filter(|s| s.step >= step)
            .map(|s| s.job_id.clone())
            .collect();
        for job in &dropped {
            self.specs.remove(job);
            self.states.remove(job);
        }
        dropped
    }

    pub fn is_banned(&self, hotkey: &Hotkey) -> bool {
        self.banned.contains(hotkey)
    }

    /// The assignments whose lease has run out by `now_ms` (what
    /// [`Schedule::expire`] would take back), with attempt and worker.
    pub fn due(&self, now_ms: u64) -> Vec<(String, u32, WorkerId)> {
        let mut due: Vec<(String, u32, WorkerId)> = self
            .states
            .iter()
            .filter_map(|(job, state)| match *state {
                JobState::Assigned {
                    attempt,
                    to,
                    deadline_ms,
                } if deadline_ms <= now_ms => Some((job.clone(), attempt, to)),
                _ => None,
            })
            .collect();
        due.sort();
        due
    }

    /// Steps (ascending) with a job out or a result waiting for its
    /// verdict: where a verdict can still come.
    pub fn steps_open(&self) -> Vec<u32> {
        self.steps_where(|s| matches!(s, JobState::Assigned { .. } | JobState::Judging { .. }))
    }

    /// The attempts a verdict can still come for, as (step, job, attempt):
    /// jobs out, and results waiting for their verdict.
    pub fn awaiting_verdict(&self) -> Vec<(u32, String, u32)> {
        let mut awaited: Vec<(u32, String, u32)> = self
            .states
            .iter()
            .filter_map(|(job, state)| match *state {
                JobState::Assigned { attempt, .. } | JobState::Judging { attempt, .. } => {
                    Some((self.specs.get(job)?.step, job.clone(), attempt))
                }
                _ => None,
            })
            .collect();
        awaited.sort();
        awaited
    }

    /// Returns expired assignments to `Waiting` and lists them.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(String, u32, WorkerId)> {
        let mut expired = Vec::new();
        for (job, state) in self.states.iter_mut() {
            if let JobState::Assigned {
                attempt,
                to,
                deadline_ms,
            } = *state
                && deadline_ms <= now_ms
            {
                *state = JobState::Waiting {
                    last_attempt: attempt,
                    avoid: Some(to.hotkey),
                };
                *self.strikes.entry(to.hotkey).or_default() += 1;
                expired.push((job.clone(), attempt, to));
            }
        }
        expired.sort();
        expired
    }

    /// Takes a job back from its worker at once (its result was refused).
    pub fn expire_now(&mut self, job: &str) {
        if let Some(JobState::Assigned { attempt, to, .. }) = self.states.get(job).cloned() {
            *self.strikes.entry(to.hotkey).or_default() += 1;
            self.states.insert(
                job.to_string(),
                JobState::Waiting {
                    last_attempt: attempt,
                    avoid: Some(to.hotkey),
                },
            );
        }
    }

    /// Takes a job back without holding it against its worker: its result
    /// was lost or spoiled by someone else.
    pub fn requeue(&mut self, job: &str) {
        let last_attempt = match self.states.get(job) {
            Some(JobState::Assigned { attempt, .. } | JobState::Judging { attempt, .. }) => {
                *attempt
            }
            Some(JobState::Done(out)) => out.attempt,
            _ => return,
        };
        self.states.insert(
            job.to_string(),
            JobState::Waiting {
                last_attempt,
                avoid: None,
            },
        );
    }

    /// Jobs that read `job`'s output and do not have a result of their own
    /// yet: when that output is lost they cannot finish.
    pub fn waiting_on(&self, job: &str) -> Vec<String> {
        self.specs
            .values()
            .filter(|s| {
                s.inputs
                    .iter()
                    .any(|i| matches!(i, Source::Job(id) if id == job))
            })
            .filter(|s| {
                matches!(
                    self.states.get(&s.job_id),
                    Some(JobState::Assigned { .. } | JobState::Waiting { .. })
                )
            })
            .map(|s| s.job_id.clone())
            .collect()
    }

    /// Steps (ascending) that have at least one assigned job.
    pub fn steps_in_flight(&self) -> Vec<u32> {
        self.steps_where(|s| matches!(s, JobState::Assigned { .. }))
    }

    fn steps_where(&self, wanted: fn(&JobState) -> bool) -> Vec<u32> {
        let mut steps: Vec<u32> = self
            .states
            .iter()
            .filter(|(_, s)| wanted(s))
            .filter_map(|(job, _)| self.specs.get(job).map(|s| s.step))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }

    /// True once the step's eval job has an accepted result.
    pub fn step_done(&self, step: u32) -> bool {
        self.specs
            .values()
            .find(|s| s.step == step && s.kind == JobKind::Eval)
            .is_some_and(|s| self.output(&s.job_id).is_some())
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for state in self.states.values() {
            match state {
                JobState::Waiting { .. } => counts.0 += 1,
                JobState::Assigned { .. } | JobState::Judging { .. } => counts.1 += 1,
                JobState::Done(_) => counts.2 += 1,
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_protocol::{Digest, Keypair};
    use locus_workloads::mlp;

    fn workers(n: usize) -> Vec<WorkerId> {
        let mut w: Vec<WorkerId> = (0..n)
            .map(|_| WorkerId {
                hotkey: Keypair::generate().hotkey(),
                worker: 0,
            })
            .collect();
        w.sort();
        w
    }

    fn output(attempt: u32, by: WorkerId) -> Output {
        Output {
            attempt,
            by,
            key: "k".into(),
            digest: Digest::of(b"x"),
        }
    }

    #[test]
    fn spreads_ready_jobs_over_all_live_workers() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(mlp::step_jobs(&cfg, 0));
        let live = workers(4);
        let fwd = s.ready()[0].job_id.clone();
        assert_eq!(s.ready().len(), 1, "only forward is ready at first");
        let w = s.pick_worker(&fwd, &live, 2).unwrap();
        s.assign(&fwd, 1, w, 1000);
        assert!(s.complete(&fwd, output(1, w)));
        let inner: Vec<String> = s.ready().iter().map(|j| j.job_id.clone()).collect();
        assert_eq!(inner.len(), 4);
        let mut used = Vec::new();
        for job in &inner {
            let w = s.pick_worker(job, &live, 2).unwrap();
            s.assign(job, 1, w, 1000);
            used.push(w);
        }
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 4, "each of 4 live workers gets one inner job");
    }

    #[test]
    fn jobs_that_finish_at_once_still_reach_every_worker() {
        // Three steps of the default DAG (8 jobs each), every hop's jobs done
        // before the next hop is ready: all 16 workers idle between hops.
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        let live = workers(16);
        let mut used = Vec::new();
        for step in 0..3 {
            s.add_jobs(mlp::step_jobs(&cfg, step));
            loop {
                let hop: Vec<String> = s.ready().iter().map(|j| j.job_id.clone()).collect();
                if hop.is_empty() {
                    break;
                }
                let given: Vec<_> = hop
                    .iter()
                    .map(|job| {
                        let w = s.pick_worker(job, &live, 2).unwrap();
                        s.assign(job, 1, w, 1000);
                        w
                    })
                    .collect();
                for (job, w) in hop.iter().zip(given) {
                    assert!(s.complete(job, output(1, w)));
                    used.push(w);
                }
            }
        }
        assert_eq!(used.len(), 24);
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 16, "every worker gets work");
    }

    #[test]
    fn expired_lease_is_reassigned_elsewhere_and_late_result_refused() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(mlp::step_jobs(&cfg, 0));
        let live = workers(2);
        let fwd = s.ready()[0].job_id.clone();
        let first = s.pick_worker(&fwd, &live, 1).unwrap();
        s.assign(&fwd, 1, first, 100);
        assert!(s.expire(99).is_empty());
        assert_eq!(s.expire(100).len(), 1);
        assert_eq!(s.next_attempt(&fwd), 2);
        let second = s.pick_worker(&fwd, &live, 1).unwrap();
        assert_ne!(
            second.hotkey, first.hotkey,
            "avoids the hotkey that let the lease lapse"
        );
        s.assign(&fwd, 2, second, 1000);
        assert!(!s.complete(&fwd, output(1, first)), "late result refused");
        assert!(s.complete(&fwd, output(2, second)));
        assert!(!s.complete(&fwd, output(2, second)), "never credited twice");
    }

    #[test]
    fn held_results_wait_for_the_verdict_and_cheaters_are_banned() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(mlp::step_jobs(&cfg, 0));
        let live = workers(2);
        let fwd = s.ready()[0].job_id.clone();
        let cheat = s.pick_worker(&fwd, &live, 2).unwrap();
        s.assign(&fwd, 1, cheat, 1000);
        assert!(s.hold(&fwd, 1, cheat));
        assert!(
            s.ready().is_empty(),
            "nothing reads a result under judgement"
        );
        assert!(s.expire(5000).is_empty(), "no lease runs while judging");
        assert_eq!(s.steps_open(), vec![0]);
        assert!(s.discard(&fwd, 1));
        s.ban(cheat.hotkey);
        for _ in 0..4 {
            let w = s.pick_worker(&fwd, &live, 2).unwrap();
            assert_ne!(w.hotkey, cheat.hotkey, "a banned hotkey gets no work");
        }
        let honest = s.pick_worker(&fwd, &live, 2).unwrap();
        s.assign(&fwd, 2, honest, 1000);
        assert!(!s.hold(&fwd, 1, honest), "only the assigned attempt");
        assert!(s.hold(&fwd, 2, honest));
        assert!(!s.confirm(&fwd, output(1, honest)), "only the held attempt");
        assert!(!s.confirm(&fwd, output(2, cheat)), "only its worker's");
        assert!(s.confirm(&fwd, output(2, honest)));
        assert_eq!(s.ready().len(), 4, "inner jobs read the confirmed result");
        let only_cheater = vec![cheat];
        assert!(s.pick_worker("x", &only_cheater, 2).is_none());
    }

    #[test]
    fn due_leases_are_listed_without_being_taken_back() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(mlp::step_jobs(&cfg, 0));
        let live = workers(2);
        let fwd = s.ready()[0].job_id.clone();
        let w = s.pick_worker(&fwd, &live, 2).unwrap();
        s.assign(&fwd, 1, w, 1000);
        assert_eq!(s.steps_open(), vec![0], "a job out: a verdict may come");
        assert!(s.due(999).is_empty());
        assert_eq!(s.due(1000), vec![(fwd.clone(), 1, w)]);
        assert_eq!(s.due(1000), vec![(fwd.clone(), 1, w)], "still out");
        assert!(s.hold(&fwd, 1, w));
        assert!(s.due(5000).is_empty(), "a held result has no lease");
        assert_eq!(s.steps_open(), vec![0], "held: its verdict may come");
        assert!(s.confirm(&fwd, output(1, w)));
        assert!(s.steps_open().is_empty());
    }

    #[test]
    fn a_hotkey_that_lets_leases_lapse_gets_work_last() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(mlp::step_jobs(&cfg, 0));
        let live = workers(2);
        let fwd = s.ready()[0].job_id.clone();
        let slow = s.pick_worker(&fwd, &live, 4).unwrap();
        s.assign(&fwd, 1, slow, 100);
        s.expire(100);
        let fast = s.pick_worker(&fwd, &live, 4).unwrap();
        s.assign(&fwd, 2, fast, 1000);
        assert!(s.complete(&fwd, output(2, fast)));
        let inner: Vec<String> = s.ready().iter().map(|j| j.job_id.clone()).collect();
        let mut got = Vec::new();
        for job in &inner {
            let w = s.pick_worker(job, &live, 4).unwrap();
            s.assign(job, 1, w, 1000);
            got.push(w);
        }
        assert!(
            got.iter().all(|w| *w == fast),
            "the fast worker has room for all 4: the lapsed one waits"
        );
        let more = s.pick_worker("x", &live, 4).unwrap();
        assert_eq!(more, slow, "once the others are full, it gets work again");
    }

    #[test]
    fn a_rewind_forgets_the_steps_it_replans() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        for step in 0..3 {
            s.add_jobs(mlp::step_jobs(&cfg, step));
        }
        let dropped = s.drop_steps_from(1);
        assert_eq!(dropped.len(), 16);
        assert!(dropped.iter().all(|j| !j.starts_with("s00000")));
        assert!(s.spec("s00000-forward").is_some());
        assert!(s.spec("s00001-forward").is_none());
        s.add_jobs(mlp::step_jobs_in(&cfg, 1, 1, 0));
        assert!(s.spec("s00001-forward-g1").is_some());
    }

    #[test]
    fn respects_max_inflight() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(mlp::step_jobs(&cfg, 0));
        let live = workers(1);
        let fwd = s.ready()[0].job_id.clone();
        let w = s.pick_worker(&fwd, &live, 1).unwrap();
        s.assign(&fwd, 1, w, 1000);
        assert!(s.pick_worker("other", &live, 1).is_none());
    }

    /// A lost output sends its job back (as the next attempt, without a
    /// strike), and the jobs that were reading it wait for the redo.
    #[test]
    fn a_lost_output_is_redone_before_its_readers_run() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(mlp::step_jobs(&cfg, 0));
        let live = workers(2);
        let fwd = s.ready()[0].job_id.clone();
        s.assign(&fwd, 1, live[0], 1000);
        assert!(s.complete(&fwd, output(1, live[0])));
        let inner: Vec<String> = s.ready().iter().map(|j| j.job_id.clone()).collect();
        s.assign(&inner[0], 1, live[1], 1000);
        let mut readers = s.waiting_on(&fwd);
        readers.sort();
        assert_eq!(readers.len(), inner.len());
        s.requeue(&fwd);
        for reader in s.waiting_on(&fwd) {
            s.requeue(&reader);
        }
        assert_eq!(s.next_attempt(&fwd), 2);
        assert_eq!(s.next_attempt(&inner[0]), 2);
        let ready: Vec<&str> = s.ready().iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(ready, vec![fwd.as_str()], "readers wait for the redo");
        // No strike: the worker whose output was lost is not avoided.
        assert_eq!(s.pick_worker(&fwd, &live[..1], 2), Some(live[0]));
    }
}
