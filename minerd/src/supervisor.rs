//! The supervisor: one child process per device, restarted when it dies.
//!
//! Workers are separate processes rather than threads so that a crash, a
//! wedged GPU driver or a leak in one device's worker cannot take down the
//! others, and so each worker's memory is visible to the operating system.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use locus_daemon::Shutdown;
use locus_workloads::Device;
use tokio::process::{Child, Command};
use tracing::{error, info, warn};

/// A worker that ran at least this long before dying is restarted at once;
/// one that dies sooner waits, doubling up to `MAX_RESTART_DELAY`.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

struct Slot {
    index: u32,
    device: Device,
    child: Option<Child>,
    started: Instant,
    delay: Duration,
    restart_at: Option<Instant>,
    restarts: u64,
}

/// Spawns and watches the workers until shutdown. `worker_args` are the
/// common arguments each child gets before `worker --index I --device D`.
/// With `metrics_addr`, worker `i` serves its own `/metrics` on the port
/// after it plus `i` (`port + 1 + i`).
pub async fn supervise(
    devices: Vec<Device>,
    worker_args: Vec<String>,
    metrics_addr: Option<std::net::SocketAddr>,
    restarts: locus_observe::Counter,
    shutdown: &Shutdown,
) -> anyhow::Result<u64> {
    let exe: PathBuf = std::env::current_exe()?;
    let mut slots: Vec<Slot> = devices
        .into_iter()
        .enumerate()
        .map(|(i, device)| Slot {
            index: i as u32,
            device,
            child: None,
            started: Instant::now(),
            delay: Duration::from_secs(1),
            restart_at: Some(Instant::now()),
            restarts: 0,
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
                    .arg(slot.device.to_string())
                    .kill_on_drop(true);
                if let Some(base) = metrics_addr {
                    let port = base.port().saturating_add(1 + slot.index as u16);
                    let addr = std::net::SocketAddr::new(base.ip(), port);
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
        shutdown.sleep(Duration::from_millis(200)).await;
    }
    stop_all(&mut slots).await;
    Ok(total_restarts)
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
