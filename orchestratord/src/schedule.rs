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
    Done(Output),
}

/// The jobs of a run that the orchestrator currently tracks.
#[derive(Default)]
pub struct Schedule {
    specs: BTreeMap<String, JobSpec>,
    states: HashMap<String, JobState>,
    rotation: usize,
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
                    Source::Initial => true,
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
        let least = pool
            .iter()
            .map(|w| load.get(*w).copied().unwrap_or(0))
            .min()?;
        let tied: Vec<&WorkerId> = pool
            .into_iter()
            .filter(|w| load.get(*w).copied().unwrap_or(0) == least)
            .collect();
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
        match self.states.get(job) {
            Some(JobState::Assigned { attempt, to, .. })
                if *attempt == output.attempt && *to == output.by =>
            {
                self.states.insert(job.to_string(), JobState::Done(output));
                true
            }
            _ => false,
        }
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
                expired.push((job.clone(), attempt, to));
            }
        }
        expired.sort();
        expired
    }

    /// Takes a job back from its worker at once (its result was refused).
    pub fn expire_now(&mut self, job: &str) {
        if let Some(JobState::Assigned { attempt, to, .. }) = self.states.get(job).cloned() {
            self.states.insert(
                job.to_string(),
                JobState::Waiting {
                    last_attempt: attempt,
                    avoid: Some(to.hotkey),
                },
            );
        }
    }

    /// Steps (ascending) that have at least one assigned job.
    pub fn steps_in_flight(&self) -> Vec<u32> {
        let mut steps: Vec<u32> = self
            .states
            .iter()
            .filter(|(_, s)| matches!(s, JobState::Assigned { .. }))
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
                JobState::Assigned { .. } => counts.1 += 1,
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
    use locus_workloads::{mlp, plan};

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
        s.add_jobs(plan::step_jobs(&cfg, 0));
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
    fn expired_lease_is_reassigned_elsewhere_and_late_result_refused() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(plan::step_jobs(&cfg, 0));
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
    fn respects_max_inflight() {
        let cfg = mlp::default_config(1);
        let mut s = Schedule::default();
        s.add_jobs(plan::step_jobs(&cfg, 0));
        let live = workers(1);
        let fwd = s.ready()[0].job_id.clone();
        let w = s.pick_worker(&fwd, &live, 1).unwrap();
        s.assign(&fwd, 1, w, 1000);
        assert!(s.pick_worker("other", &live, 1).is_none());
    }
}
