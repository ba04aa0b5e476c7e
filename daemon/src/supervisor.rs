//! The supervisor: one child process per device, restarted when it dies.
//!
//! Workers are separate processes rather than threads so that a crash, a
//! wedged GPU driver or a leak in one device's worker cannot take down the
//! others, and so each worker's memory is visible to the operating system.
//!
//! The supervisor's `/healthz` speaks for its workers: 503, naming each
//! failing worker with its device and restart counts, while a worker is not
//! running or is crash-looping (see [`health`]); `ok` when all run.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Shutdown;
use tokio::process::{Child, Command};
use tracing::{error, info, warn};

/// A worker that ran at least this long before dying is restarted at once;
/// one that dies sooner waits, doubling up to `MAX_RESTART_DELAY`.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A worker restarted more than [`CRASH_LOOP_RESTARTS`] times within this
/// window is crash-looping, even in the moments it is up.
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);
pub const CRASH_LOOP_RESTARTS: usize = 3;

struct Slot {
    index: u32,
    /// What the worker runs on (`cpu`, `cuda:0`), passed as `--device`.
    device: String,
    child: Option<Child>,
    started: Instant,
    delay: Duration,
    restart_at: Option<Instant>,
    restarts: u64,
    /// When it last exited, within [`CRASH_WINDOW`].
    recent_exits: VecDeque<Instant>,
    last_exit: Option<String>,
}

impl Slot {
    fn health(&mut self, now: Instant) -> WorkerHealth {
        while self
            .recent_exits
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            self.recent_exits.pop_front();
        }
        WorkerHealth {
            index: self.index,
            device: self.device.clone(),
            running: self.child.is_some(),
            restarts: self.restarts,
            recent_restarts: self.recent_exits.len(),
            last_exit: self.last_exit.clone(),
        }
    }
}

/// What the supervisor knows of one worker, for its `/healthz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerHealth {
    pub index: u32,
    pub device: String,
    /// Its process is up.
    pub running: bool,
    /// Times it exited and was (or is about to be) restarted, in all.
    pub restarts: u64,
    /// The same within the last [`CRASH_WINDOW`].
    pub recent_restarts: usize,
    /// How it last exited (`exit status: 1`).
    pub last_exit: Option<String>,
}

/// The supervisor's health from its workers': `Ok` when every worker runs
/// and none restarted more than [`CRASH_LOOP_RESTARTS`] times in the last
/// [`CRASH_WINDOW`]; otherwise the text `/healthz` answers (with HTTP 503),
/// one line per failing worker.
pub fn health(workers: &[WorkerHealth]) -> Result<(), String> {
    if workers.is_empty() {
        return Err("no workers\n".into());
    }
    let failing: Vec<String> = workers
        .iter()
        .filter_map(|w| {
            let looping = w.recent_restarts > CRASH_LOOP_RESTARTS;
            let state = match (w.running, looping) {
                (true, false) => return None,
                (true, true) => "crash-looping (up now)",
                (false, true) => "crash-looping (down)",
                (false, false) => "not running",
            };
            let last = w
                .last_exit
                .as_deref()
                .map(|e| format!("; last exit: {e}"))
                .unwrap_or_default();
            Some(format!(
                "worker {} ({}): {state}; {} restarts in the last {} s, {} in all{last}",
                w.index,
                w.device,
                w.recent_restarts,
                CRASH_WINDOW.as_secs(),
                w.restarts,
            ))
        })
        .collect();
    if failing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} of {} workers failing\n{}\n",
        failing.len(),
        workers.len(),
        failing.join("\n")
    ))
}

/// The metrics address of worker `index` when the supervisor serves on
/// `base`: the port after it plus the index. `None` when there is no such
/// port (start-up checks rule that out).
pub fn worker_metrics_addr(base: std::net::SocketAddr, index: u32) -> Option<std::net::SocketAddr> {
    let port = u16::try_from(u32::from(base.port()) + 1 + index).ok()?;
    Some(std::net::SocketAddr::new(base.ip(), port))
}

/// Spawns and watches the workers until shutdown. `worker_args` are the
/// common arguments each child gets before `worker --index I --device D`.
/// With `metrics_addr`, worker `i` serves its own `/metrics` on the port
/// after it plus `i` (`port + 1 + i`). Registers `worker_restarts_total`,
/// `workers_running` and the `/healthz` check on `metrics`.
pub async fn supervise(
    devices: Vec<impl std::fmt::Display>,
    worker_args: Vec<String>,
    metrics_addr: Option<std::net::SocketAddr>,
    metrics: &locus_observe::Metrics,
    shutdown: &Shutdown,
) -> anyhow::Result<u64> {
    let restarts = metrics.counter("worker_restarts_total", "Worker processes restarted");
    let running = metrics.gauge("workers_running", "Worker processes running");
    let status: Arc<Mutex<Vec<WorkerHealth>>> = Arc::default();
    let shared = status.clone();
    metrics.set_health(move || health(&shared.lock().unwrap_or_else(|e| e.into_inner())));
    let exe: PathBuf = std::env::current_exe()?;
    let mut slots: Vec<Slot> = devices
        .into_iter()
        .enumerate()
        .map(|(i, device)| Slot {
            index: i as u32,
            device: device.to_string(),
            child: None,
            started: Instant::now(),
            delay: Duration::from_secs(1),
            restart_at: Some(Instant::now()),
            restarts: 0,
            recent_exits: VecDeque::new(),
            last_exit: None,
        })
        .collect();
    info!(workers = slots.len(), "supervisor starting workers");
    let mut total_restarts = 0;
    while !shutdown.requested() {
        for slot in slots.iter_mut() {
            if let Some(child) = slot.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let ran = slot.started.elapsed();
                slot.child = None;
                if ran >= HEALTHY_RUN {
                    slot.delay = Duration::from_secs(1);
                }
                warn!(worker = slot.index, device = %slot.device, %status, ran_secs = ran.as_secs(), restart_in_secs = slot.delay.as_secs(), "worker exited; restarting");
                slot.restart_at = Some(Instant::now() + slot.delay);
                slot.delay = (slot.delay * 2).min(MAX_RESTART_DELAY);
                slot.restarts += 1;
                slot.recent_exits.push_back(Instant::now());
                slot.last_exit = Some(status.to_string());
                total_restarts += 1;
                restarts.inc();
            }
            if slot.child.is_none() && slot.restart_at.is_some_and(|t| Instant::now() >= t) {
                let mut command = Command::new(&exe);
                command
                    .args(&worker_args)
                    .arg("worker")
                    .arg("--index")
                    .arg(slot.index.to_string())
                    .arg("--device")
                    .arg(&slot.device)
                    .kill_on_drop(true);
                if let Some(addr) = metrics_addr.and_then(|b| worker_metrics_addr(b, slot.index)) {
                    command.arg(format!("--metrics-addr={addr}"));
                }
                match command.spawn() {
                    Ok(child) => {
                        info!(worker = slot.index, device = %slot.device, pid = child.id(), "worker started");
                        slot.child = Some(child);
                        slot.started = Instant::now();
                        slot.restart_at = None;
                    }
                    Err(e) => {
                        error!(worker = slot.index, error = %e, "cannot start worker");
                        slot.restart_at = Some(Instant::now() + slot.delay);
                    }
                }
            }
        }
        let now = Instant::now();
        let report: Vec<WorkerHealth> = slots.iter_mut().map(|s| s.health(now)).collect();
        running.set(report.iter().filter(|w| w.running).count() as f64);
        if let Err(why) = health(&report)
            && health(&status.lock().unwrap_or_else(|e| e.into_inner())).is_ok()
        {
            warn!(%why, "workers failing: /healthz reports 503");
        }
        *status.lock().unwrap_or_else(|e| e.into_inner()) = report;
        shutdown.sleep(Duration::from_millis(200)).await;
    }
    stop_all(&mut slots).await;
    Ok(total_restarts)
}

/// Called first in a worker process: a worker must not outlive its
/// supervisor (killed with `kill -9`, say), or a restarted supervisor would
/// run a second worker on the same device and prefix.
pub fn stop_with_supervisor() {
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a signal number for this
    // process; getppid has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::getppid() == 1 {
            libc::raise(libc::SIGTERM);
        }
    }
}

/// Asks every worker to stop (SIGTERM: it finishes its current job), then
/// kills any still running after the grace period.
async fn stop_all(slots: &mut [Slot]) {
    for slot in slots.iter() {
        if let Some(pid) = slot.child.as_ref().and_then(Child::id) {
            // SAFETY: plain signal delivery to our own child's pid.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for slot in slots.iter_mut() {
        if let Some(child) = slot.child.as_mut() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                warn!(
                    worker = slot.index,
                    "worker did not stop in time; killing it"
                );
                let _ = child.kill().await;
            }
        }
    }
    info!("all workers stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(index: u32, running: bool, recent: usize, all: u64) -> WorkerHealth {
        WorkerHealth {
            index,
            device: "cpu".into(),
            running,
            restarts: all,
            recent_restarts: recent,
            last_exit: (all > 0).then(|| "exit status: 1".to_string()),
        }
    }

    #[test]
    fn healthy_only_when_every_worker_runs_and_none_crash_loops() {
        assert_eq!(
            health(&[worker(0, true, 0, 0), worker(1, true, 0, 0)]),
            Ok(())
        );
        // Restarts long ago, or a few recent ones, are not a crash loop.
        assert_eq!(health(&[worker(0, true, CRASH_LOOP_RESTARTS, 40)]), Ok(()));

        let e = health(&[worker(0, true, 0, 0), worker(1, false, 1, 1)]).unwrap_err();
        assert_eq!(
            e,
            "1 of 2 workers failing\nworker 1 (cpu): not running; 1 restarts in the last 60 s, \
             1 in all; last exit: exit status: 1\n"
        );
        let e = health(&[worker(0, true, CRASH_LOOP_RESTARTS + 1, 9)]).unwrap_err();
        assert!(
            e.contains(
                "worker 0 (cpu): crash-looping (up now); 4 restarts in the last 60 s, 9 in all"
            ),
            "{e}"
        );
        let e = health(&[worker(0, false, 5, 5), worker(1, false, 0, 0)]).unwrap_err();
        assert!(e.starts_with("2 of 2 workers failing\n"), "{e}");
        assert!(e.contains("worker 0 (cpu): crash-looping (down)"), "{e}");
        assert!(e.contains("worker 1 (cpu): not running; 0 restarts"), "{e}");
        assert!(health(&[]).is_err());
    }

    #[test]
    fn exits_age_out_of_the_crash_window() {
        let now = Instant::now();
        let mut slot = Slot {
            index: 3,
            device: "cpu".into(),
            child: None,
            started: now,
            delay: Duration::from_secs(1),
            restart_at: None,
            restarts: 5,
            recent_exits: VecDeque::new(),
            last_exit: Some("exit status: 1".into()),
        };
        slot.recent_exits.push_back(now);
        let later = now + CRASH_WINDOW + Duration::from_secs(1);
        slot.recent_exits.push_back(later);
        let h = slot.health(later);
        assert_eq!(
            (h.index, h.running, h.recent_restarts, h.restarts),
            (3, false, 1, 5)
        );
    }

    #[test]
    fn worker_ports_follow_the_supervisor_s() {
        let base = "127.0.0.1:9110".parse().unwrap();
        assert_eq!(
            worker_metrics_addr(base, 0),
            Some("127.0.0.1:9111".parse().unwrap())
        );
        assert_eq!(
            worker_metrics_addr(base, 7),
            Some("127.0.0.1:9118".parse().unwrap())
        );
        let top = "127.0.0.1:65535".parse().unwrap();
        assert_eq!(worker_metrics_addr(top, 0), None);
    }
}
