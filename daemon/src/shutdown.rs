//! Graceful stop on SIGTERM or SIGINT.
//!
//! Daemons check [`Shutdown::requested`] between units of work, so a stop
//! never abandons a half-written job: the current job finishes (or is left to
//! its lease) and state is flushed before exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Shutdown {
    /// Installs SIGTERM/SIGINT handlers that trigger this shutdown.
    pub fn install() -> std::io::Result<Self> {
        let shutdown = Shutdown::default();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stop requested; finishing current work");
            trigger.trigger();
        });
        Ok(shutdown)
    }

    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `duration`, or until `wake` reports a change, unless
    /// shutdown comes first. Returns `false` when interrupted by shutdown.
    pub async fn sleep_or_wake(&self, duration: std::time::Duration, wake: &crate::Wake) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => !self.requested(),
            _ = wake.changed() => !self.requested(),
            _ = self.wait() => false,
        }
    }

    /// Sleeps for `duration` unless shutdown comes first. Returns `false`
    /// when interrupted by shutdown.
    pub async fn sleep(&self, duration: std::time::Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => !self.requested(),
            _ = self.wait() => false,
        }
    }
}
