//! Waking a polling loop as soon as what it waits for is written.
//!
//! On a local bucket, filesystem events cut a hop of the pipeline (a receipt
//! to its verdict, a verdict to the next assignment, an assignment to its
//! pick-up) from a poll interval to the write itself. Polling stays: it is
//! the only signal on S3, and the fallback for an event the kernel drops or
//! a directory created before its watch was added — a missed event costs one
//! back-off interval, never correctness, because the loop re-reads the
//! bucket either way.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locus_protocol::Bucket;
use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tracing::warn;

/// Wakes are at least this far apart: a writer spamming a watched prefix
/// (any miner can write receipts, on a local bucket anything) makes the
/// loop run at most this often, not once per write. A single write after a
/// quiet spell still wakes at once.
pub const MIN_WAKE_GAP: Duration = Duration::from_millis(20);

/// How often a loop looks anyway while every prefix it waits on is watched
/// ([`Wake::is_watching`]): the events bring it back at once, so it need not
/// ramp its polls up from the minimum after each change. A change whose
/// event was lost waits at most this long.
pub const WATCHED_POLL: Duration = Duration::from_secs(5);

/// How long a wake that only a new directory caused waits for the object
/// to land in it. Every receipt and verdict gets a directory of its own,
/// created just before the object is renamed into place: a loop woken by
/// the directory listed too early, found nothing, and was woken again by
/// the object (an empty listing per job). The directory's event stays a
/// signal: an object written before the new directory was watched raises
/// no event of its own.
pub const DIRECTORY_SETTLE: Duration = Duration::from_millis(3);

/// Fires when an object appears, is replaced or removed under the watched
/// key prefixes of a local bucket; never fires on other stores.
pub struct Wake {
    changed: Arc<Notify>,
    seen: Arc<Seen>,
    watch: Option<Watch>,
    /// Events that came while a wake waited are dropped with it (see
    /// [`Wake::keep_every_wake`]).
    coalesce: bool,
}

/// What the events since the last wake were about.
#[derive(Default)]
struct Seen {
    object: AtomicBool,
    directory: AtomicBool,
}

struct Watch {
    root: PathBuf,
    /// When [`Wake::changed`] last resolved.
    last: Mutex<Option<Instant>>,
    watcher: Mutex<RecommendedWatcher>,
    prefixes: Mutex<HashSet<String>>,
    /// A prefix could not be watched: changes there come by polling only.
    unwatched: AtomicBool,
}

impl Wake {
    /// A wake that never fires: the loop runs on its back-off alone.
    pub fn never() -> Wake {
        Wake {
            changed: Arc::new(Notify::new()),
            seen: Arc::default(),
            watch: None,
            coalesce: true,
        }
    }

    /// Keeps the wake-up of events that came while a wake waited, for a
    /// loop whose pass may not read everything they stand for: a worker
    /// that reads only the key it expects must wake again for the one
    /// written after it.
    pub fn keep_every_wake(mut self) -> Wake {
        self.coalesce = false;
        self
    }

    /// Watches `prefixes` (key prefixes ending in `/`, with everything
    /// below them) of `bucket` when it is a local directory. Where the platform gives no watcher (or its watch
    /// limit is reached) it says so once and the loop polls.
    pub fn on(bucket: &Bucket, prefixes: &[String]) -> Wake {
        let Some(root) = bucket.local_dir() else {
            return Wake::never();
        };
        let changed = Arc::new(Notify::new());
        let seen = Arc::new(Seen::default());
        let (signal, saw) = (changed.clone(), seen.clone());
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let what = match &event {
                // An error or a rescan request (the kernel's queue
                // overflowed) may stand for changes that were dropped: look.
                Err(_) => Some(&saw.object),
                Ok(e) if e.need_rescan() => Some(&saw.object),
                Ok(e) if is_new_directory(e) => Some(&saw.directory),
                Ok(e) if is_visible_change(e) => Some(&saw.object),
                Ok(_) => None,
            };
            if let Some(flag) = what {
                flag.store(true, Ordering::Relaxed);
                signal.notify_one();
            }
        });
        let watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot watch the bucket directory; polling only");
                return Wake::never();
            }
        };
        let wake = Wake {
            changed,
            coalesce: true,
            seen,
            watch: Some(Watch {
                root: root.to_path_buf(),
                last: Mutex::default(),
                watcher: Mutex::new(watcher),
                prefixes: Mutex::default(),
                unwatched: AtomicBool::new(false),
            }),
        };
        for prefix in prefixes {
            wake.add(prefix);
        }
        wake
    }

    /// Also wakes on changes under `prefix`; watching a prefix twice is a
    /// no-op. The prefix's directory is created if missing, so that objects
    /// written there later are seen.
    pub fn add(&self, prefix: &str) {
        self.watch(prefix, RecursiveMode::Recursive);
    }

    /// Also wakes when an entry appears or goes directly under `prefix`
    /// (a new run's directory, not every object written inside it).
    pub fn add_shallow(&self, prefix: &str) {
        self.watch(prefix, RecursiveMode::NonRecursive);
    }

    fn watch(&self, prefix: &str, mode: RecursiveMode) {
        let Some(watch) = &self.watch else {
            return;
        };
        let Ok(mut prefixes) = watch.prefixes.lock() else {
            return;
        };
        if !prefixes.insert(prefix.to_string()) {
            return;
        }
        let dir = watch.root.join(prefix);
        let added = std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| match watch.watcher.lock() {
                Ok(mut w) => w.watch(&dir, mode).map_err(|e| e.to_string()),
                Err(_) => Err("watcher lock poisoned".to_string()),
            });
        if let Err(error) = added {
            watch.unwatched.store(true, Ordering::Relaxed);
            warn!(dir = %dir.display(), %error, "cannot watch for changes; polling there");
        }
    }

    /// Whether any prefix is watched.
    pub fn is_active(&self) -> bool {
        self.watch.is_some()
    }

    /// Whether every prefix added so far is watched: a loop waiting on
    /// these alone may poll at [`WATCHED_POLL`] when idle.
    pub fn is_watching(&self) -> bool {
        self.watch
            .as_ref()
            .is_some_and(|w| !w.unwatched.load(Ordering::Relaxed))
    }

    /// Resolves at the next change, or at once if one came since the last
    /// call (a change during a pass is never lost), but never sooner than
    /// [`MIN_WAKE_GAP`] after it last resolved. Never resolves on a wake
    /// that cannot fire.
    pub async fn changed(&self) {
        let Some(watch) = &self.watch else {
            return std::future::pending().await;
        };
        self.changed.notified().await;
        let since = watch
            .last
            .lock()
            .ok()
            .and_then(|last| last.map(|t| t.elapsed()));
        if let Some(wait) = since.and_then(|since| MIN_WAKE_GAP.checked_sub(since)) {
            tokio::time::sleep(wait).await;
        }
        if !self.seen.object.load(Ordering::Relaxed) && self.seen.directory.load(Ordering::Relaxed)
        {
            tokio::time::sleep(DIRECTORY_SETTLE).await;
        }
        // What came while this waited is seen by the pass about to run (one
        // that lists): its stored wake-up would only bring an empty pass.
        if self.coalesce {
            let _ = tokio::time::timeout(Duration::ZERO, self.changed.notified()).await;
        }
        self.seen.object.store(false, Ordering::Relaxed);
        self.seen.directory.store(false, Ordering::Relaxed);
        if let Ok(mut last) = watch.last.lock() {
            *last = Some(Instant::now());
        }
    }
}

/// A change a listing can see: a file created or renamed into place (how
/// the local store publishes an object), or removed. Writes into the
/// store's staging files (`key#n`) are not objects yet.
fn is_visible_change(event: &notify::Event) -> bool {
    let kind = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    );
    kind && event.paths.iter().any(|p| !is_staging(p))
}

/// A directory created: no object yet, but a sign one is coming (see
/// [`DIRECTORY_SETTLE`]).
fn is_new_directory(event: &notify::Event) -> bool {
    matches!(
        event.kind,
        EventKind::Create(notify::event::CreateKind::Folder)
    )
}

fn is_staging(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn soon(wake: &Wake) -> bool {
        tokio::time::timeout(Duration::from_secs(2), wake.changed())
            .await
            .is_ok()
    }

    async fn put(bucket: &Bucket, key: &str) {
        let mode = object_store::PutMode::Create;
        bucket.put_bytes(key, b"x".to_vec(), mode).await.unwrap();
    }

    #[tokio::test]
    async fn wakes_on_an_object_under_a_watched_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
        let watched = bucket.layout().receipts("r1");
        let wake = Wake::on(&bucket, std::slice::from_ref(&watched));
        assert!(wake.is_active());
        assert!(wake.is_watching());
        // Elsewhere in the bucket: no wake.
        let elsewhere = format!("{}x.pb", bucket.layout().verdicts("r1"));
        put(&bucket, &elsewhere).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(300), wake.changed())
                .await
                .is_err(),
            "woke for a key outside the watched prefix"
        );
        // In a directory created after the watch began.
        let key = format!("{watched}s000001/job/a000.pb");
        put(&bucket, &key).await;
        assert!(soon(&wake).await, "no wake for {key}");
        // A later prefix.
        let later = bucket.layout().receipts("r2");
        wake.add(&later);
        wake.add(&later);
        put(&bucket, &format!("{later}a.pb")).await;
        assert!(soon(&wake).await, "no wake under a prefix added later");
    }

    /// One object (its directory, staging file and rename: several events)
    /// wakes a loop once: a second wake would only bring an empty pass.
    #[tokio::test]
    async fn one_write_wakes_once() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
        let watched = bucket.layout().receipts("r1");
        let wake = Wake::on(&bucket, std::slice::from_ref(&watched));
        put(&bucket, &format!("{watched}first.pb")).await;
        assert!(soon(&wake).await, "no wake for the first object");
        // Written while the loop waits, just after a wake: its events come
        // while the wake keeps the minimum gap.
        let writer = bucket.clone();
        let key = format!("{watched}s000001/job/a001.pb");
        let write = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            put(&writer, &key).await;
        });
        assert!(soon(&wake).await, "no wake for the object");
        write.await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(300), wake.changed())
                .await
                .is_err(),
            "woke twice for one object"
        );
    }

    /// A prefix that cannot be watched (a file sits where its directory
    /// would be) leaves the wake active for the others, but not watching
    /// everything: the loop must keep polling at its normal rate.
    #[tokio::test]
    async fn an_unwatchable_prefix_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
        let blocked = format!("{}blocked", bucket.layout().runs());
        put(&bucket, &blocked).await;
        let wake = Wake::on(&bucket, &[bucket.layout().receipts("r")]);
        assert!(wake.is_watching());
        wake.add(&format!("{blocked}/"));
        assert!(wake.is_active());
        assert!(!wake.is_watching());
    }

    #[tokio::test]
    async fn other_stores_never_wake() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let bucket = Bucket::from_store(store, "memory://", 3);
        let wake = Wake::on(&bucket, &[bucket.layout().receipts("r")]);
        assert!(!wake.is_active());
        assert!(!wake.is_watching());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wake.changed())
                .await
                .is_err()
        );
    }

    /// A writer creating objects as fast as it can under a watched prefix
    /// wakes the loop at most once per [`MIN_WAKE_GAP`].
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_spam_wakes_at_most_once_per_gap() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
        let watched = bucket.layout().receipts("r");
        let wake = Wake::on(&bucket, std::slice::from_ref(&watched));
        let spam = {
            let bucket = bucket.clone();
            tokio::spawn(async move {
                let stop = Instant::now() + Duration::from_millis(600);
                let mut n = 0u64;
                while Instant::now() < stop {
                    put(&bucket, &format!("{watched}{n}.pb")).await;
                    n += 1;
                }
                n
            })
        };
        let window = Duration::from_millis(500);
        let started = Instant::now();
        let mut wakes = 0u32;
        while tokio::time::timeout(window.saturating_sub(started.elapsed()), wake.changed())
            .await
            .is_ok()
        {
            wakes += 1;
        }
        let writes = spam.await.unwrap();
        let most = (window.as_millis() / MIN_WAKE_GAP.as_millis()) as u32 + 2;
        assert!(writes > u64::from(most), "only {writes} writes: no spam");
        assert!(
            wakes >= 1 && wakes <= most,
            "{wakes} wakes for {writes} writes"
        );
    }

    #[test]
    fn staging_files_are_not_objects() {
        assert!(is_staging(Path::new("/b/k.pb#3")));
        assert!(!is_staging(Path::new("/b/k.pb")));
    }
}
