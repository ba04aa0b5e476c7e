//! The discovery UI's incremental, read-only view of the bucket.
//!
//! Each [`DiscoveryIndex::refresh`] costs a fixed number of LIST requests
//! (one for the run directories, one per run for its top-level files, three
//! per run for jobs, receipts and verdicts, and one each for heartbeats,
//! scores, weights and dropped auditors) plus one GET per object that is new or changed since
//! the previous refresh. Objects are verified once and cached:
//!
//! * Write-once prefixes (jobs, receipts, verdicts) are listed with
//!   start-after a key a little behind the last one seen, so a listing
//!   returns only the tail of the prefix; keys already seen are never read
//!   again. Because jobs of one step finish in any order, the listing starts
//!   [`IndexConfig::rewind_keys`] keys back, and every
//!   [`IndexConfig::full_relist_every`] the whole prefix is listed once more
//!   (still without re-reading any object) to catch late arrivals.
//! * Rewritten objects (run state, heartbeats, score windows, weights) are
//!   listed with their metadata and read again only when their size, write
//!   time or ETag changed.
//!
//! Every request goes through [`Bucket`], which counts it. One family of
//! records per file: [`runs`] (manifests, states, job manifests),
//! [`receipts`] (checked against the assignment they name, by the rule in
//! [`attribution`]), [`verdicts`], [`rewritten`] (heartbeats, score windows,
//! chain weights, all through one generic refresh), and [`snapshot`] (the
//! views built from what is indexed). A read that fails for a transient
//! reason is decided in one place, [`settled`].

mod receipts;
mod rewritten;
mod runs;
mod snapshot;
mod verdicts;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use locus_protocol::pb;
use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, BucketError, Expect, Hotkey, Listed, Record, Verified};
use tracing::{debug, warn};

use crate::views::{RejectedView, Stats};

pub use snapshot::Snapshot;

/// Tuning of the incremental reader.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// How far behind the last seen key a write-once listing starts.
    pub rewind_keys: usize,
    /// How often write-once prefixes are listed from their start.
    pub full_relist_every: Duration,
    /// Concurrent GETs while catching up.
    pub concurrency: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            rewind_keys: 256,
            full_relist_every: Duration::from_secs(60),
            concurrency: 16,
        }
    }
}

/// What one refresh did.
#[derive(Clone, Debug, Default)]
pub struct RefreshReport {
    /// Objects read (new or changed) in this refresh.
    pub fetched: u64,
    /// Objects newly rejected in this refresh.
    pub rejected: u64,
    /// Whether anything shown changed.
    pub changed: bool,
    pub full_relist: bool,
}

/// What a listing says about one version of an object, to tell whether a
/// rewritten object changed since it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    size: u64,
    e_tag: Option<String>,
    modified_unix_ms: u64,
}

impl Version {
    fn of(listed: &Listed) -> Self {
        Version {
            size: listed.size,
            e_tag: listed.e_tag.clone(),
            modified_unix_ms: listed.modified_unix_ms,
        }
    }
}

/// A rewritten object and the version it was read at.
#[derive(Debug)]
struct Tracked<T> {
    version: Version,
    value: Result<T, String>,
}

impl<T> Tracked<T> {
    /// Whether the object as listed now is the one already read.
    fn is_current(&self, listed: &Listed) -> bool {
        self.version == Version::of(listed)
    }
}

/// Keys of a write-once prefix that were already handled.
#[derive(Debug, Default)]
struct Cursor {
    seen: BTreeSet<String>,
}

impl Cursor {
    fn after(&self, rewind: usize) -> Option<String> {
        self.seen.iter().nth_back(rewind).cloned()
    }
}

/// The write-once families of a run, each listed after its own cursor.
#[derive(Clone, Copy, Debug)]
enum WriteOnce {
    Jobs,
    Receipts,
    Verdicts,
}

impl WriteOnce {
    fn kind(self) -> &'static str {
        match self {
            WriteOnce::Jobs => "job manifest",
            WriteOnce::Receipts => "receipt",
            WriteOnce::Verdicts => "verdict",
        }
    }

    /// Why a key of this family that does not parse is rejected.
    fn shape(self) -> &'static str {
        match self {
            WriteOnce::Jobs => "key is not jobs/{job}.pb or jobs/{job}/r{revision}.pb",
            WriteOnce::Receipts => "key is not receipts/s{step}/{job}/a{attempt}.pb",
            WriteOnce::Verdicts => "key is not verdicts/s{step}/{job}/a{attempt}.pb",
        }
    }

    fn prefix(self, layout: &locus_protocol::Layout, run: &str) -> String {
        match self {
            WriteOnce::Jobs => layout.job_manifests(run),
            WriteOnce::Receipts => layout.receipts(run),
            WriteOnce::Verdicts => layout.verdicts(run),
        }
    }
}

/// The incremental reader. Owns its bucket handle; never writes.
pub struct DiscoveryIndex {
    bucket: Bucket,
    owner: Hotkey,
    cfg: IndexConfig,
    runs: BTreeMap<String, runs::RunEntry>,
    /// Run manifests that failed, with the version they failed at.
    bad_runs: HashMap<String, Version>,
    assignments: HashMap<String, Result<pb::Assignment, String>>,
    heartbeats: BTreeMap<String, Tracked<pb::WorkerHeartbeat>>,
    scores: BTreeMap<String, Tracked<(pb::ScoreWindow, Hotkey)>>,
    weights: BTreeMap<String, Tracked<(pb::ChainWeights, Hotkey)>>,
    dropped_auditors: BTreeMap<String, Tracked<(pb::AuditorDropped, Hotkey)>>,
    rejected: BTreeMap<String, RejectedView>,
    last_full: Option<Instant>,
    stats: Stats,
}

/// The one place that decides what a failed read means. A transient
/// failure ([`BucketError::is_transient`]: the storage failed, not the
/// object) is logged and gives `None`: the caller leaves the object as if
/// it had not been listed, so the next refresh reads it again. Anything else
/// (the record, missing, or rejected) is the object's answer.
fn settled<T>(
    kind: &str,
    key: &str,
    result: Result<T, BucketError>,
) -> Option<Result<T, BucketError>> {
    match result {
        Err(e) if e.is_transient() => {
            warn!(key = %key, error = %e, "cannot read {kind}; will retry");
            None
        }
        other => Some(other),
    }
}

/// An answer with its error as the reason shown for a rejected object.
fn answer<T>(result: Result<T, BucketError>) -> Result<T, String> {
    result.map_err(|e| match e {
        BucketError::Rejected(r) => r.reason.to_string(),
        other => other.to_string(),
    })
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

impl DiscoveryIndex {
    pub fn new(bucket: Bucket, owner: Hotkey, cfg: IndexConfig) -> Self {
        DiscoveryIndex {
            bucket,
            owner,
            cfg,
            runs: BTreeMap::new(),
            bad_runs: HashMap::new(),
            assignments: HashMap::new(),
            heartbeats: BTreeMap::new(),
            scores: BTreeMap::new(),
            weights: BTreeMap::new(),
            dropped_auditors: BTreeMap::new(),
            rejected: BTreeMap::new(),
            last_full: None,
            stats: Stats::default(),
        }
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Lists `key` as rejected; returns whether it (or its reason) is new.
    fn reject(&mut self, key: &str, kind: &'static str, reason: String) -> bool {
        let fresh = self.rejected.get(key).is_none_or(|r| r.reason != reason);
        if fresh {
            debug!(key, kind, %reason, "rejected object");
            self.rejected.insert(
                key.to_string(),
                RejectedView {
                    key: key.to_string(),
                    kind,
                    reason,
                    seen_unix_ms: unix_ms(),
                },
            );
        }
        fresh
    }

    /// Marks `key` of a write-once family of `run` as handled for good.
    fn seen(&mut self, run: &str, family: WriteOnce, key: &str) {
        if let Some(entry) = self.runs.get_mut(run) {
            entry.cursor_mut(family).seen.insert(key.to_string());
        }
    }

    /// Marks `key` as handled and lists it as rejected.
    fn reject_seen(
        &mut self,
        run: &str,
        family: WriteOnce,
        key: &str,
        reason: String,
        report: &mut RefreshReport,
    ) {
        self.seen(run, family, key);
        report.rejected += u64::from(self.reject(key, family.kind(), reason));
    }

    /// GETs `keys` concurrently; results in no particular order.
    async fn fetch_all<T: Record + Send>(
        &self,
        keys: Vec<String>,
        expect: Expect<'_>,
    ) -> Vec<(String, Result<Verified<T>, BucketError>)> {
        let bucket = &self.bucket;
        futures::stream::iter(keys)
            .map(|key| async move {
                let result = bucket.get::<T>(&key, expect).await;
                (key, result)
            })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await
    }

    /// The objects of one write-once family of `run` not handled yet: listed
    /// after its cursor (from the start on a full relist); keys that do not
    /// `parse` are rejected unread, the others read concurrently as `T`.
    /// Transient failures are left out, to be read next time.
    async fn read_new<T: Record + Send, P>(
        &mut self,
        run: &str,
        family: WriteOnce,
        full: bool,
        parse: impl Fn(&str) -> Option<P>,
        expect: Expect<'_>,
        report: &mut RefreshReport,
    ) -> Result<Vec<(String, P, Result<Verified<T>, BucketError>)>, crate::Error> {
        let Some(entry) = self.runs.get(run) else {
            return Ok(Vec::new());
        };
        let after = match full {
            true => None,
            false => entry.cursor(family).after(self.cfg.rewind_keys),
        };
        let prefix = family.prefix(self.bucket.layout(), run);
        let listed = self.bucket.list(&prefix, after.as_deref()).await?;
        let keys: Vec<String> = listed
            .into_iter()
            .filter(|k| !entry.cursor(family).seen.contains(k))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        report.changed = true;
        let mut parsed = HashMap::new();
        for key in keys {
            match parse(&key) {
                Some(p) => {
                    parsed.insert(key, p);
                }
                None => self.reject_seen(run, family, &key, family.shape().into(), report),
            }
        }
        report.fetched += parsed.len() as u64;
        let fetched = self
            .fetch_all::<T>(parsed.keys().cloned().collect(), expect)
            .await;
        Ok(fetched
            .into_iter()
            .filter_map(|(key, result)| {
                let result = settled(family.kind(), &key, result)?;
                let p = parsed.remove(&key)?;
                Some((key, p, result))
            })
            .collect())
    }

    /// Reads whatever is new or changed. Problems with single objects end up
    /// in the rejected list; only a failing listing is an error.
    pub async fn refresh(&mut self) -> Result<RefreshReport, crate::Error> {
        let started = Instant::now();
        let full = self
            .last_full
            .is_none_or(|t| t.elapsed() >= self.cfg.full_relist_every);
        let mut report = RefreshReport {
            full_relist: full,
            ..Default::default()
        };
        let result = self.refresh_inner(full, &mut report).await;
        if full && result.is_ok() {
            self.last_full = Some(Instant::now());
        }
        let c = self.bucket.counts();
        self.stats.refreshes += 1;
        self.stats.last_refresh_unix_ms = unix_ms();
        self.stats.last_refresh_ms = started.elapsed().as_millis() as u64;
        self.stats.bucket_gets = c.gets.load(Ordering::Relaxed);
        self.stats.bucket_lists = c.lists.load(Ordering::Relaxed);
        self.stats.bucket_errors = c.errors.load(Ordering::Relaxed);
        self.stats.last_error = result.as_ref().err().map(|e| e.to_string());
        result.map(|()| report)
    }

    async fn refresh_inner(
        &mut self,
        full: bool,
        report: &mut RefreshReport,
    ) -> Result<(), crate::Error> {
        let new_runs = self.refresh_runs(report).await?;
        if new_runs {
            // Scores and weights rejected for naming unknown runs get
            // another look now that there are more validators to check against.
            self.scores.retain(|_, t| t.value.is_ok());
            self.weights.retain(|_, t| t.value.is_ok());
        }
        let run_ids: Vec<String> = self.runs.keys().cloned().collect();
        for run in &run_ids {
            self.refresh_jobs(run, full, report).await?;
            self.refresh_receipts(run, full, report).await?;
            self.refresh_verdicts(run, full, report).await?;
        }
        self.refresh_rewritten::<rewritten::Heartbeats>(report)
            .await?;
        self.refresh_rewritten::<rewritten::Scores>(report).await?;
        self.refresh_rewritten::<rewritten::Weights>(report).await?;
        self.refresh_rewritten::<rewritten::DroppedAuditors>(report)
            .await?;
        Ok(())
    }
}
