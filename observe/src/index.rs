//! The discovery UI's incremental, read-only view of the bucket.
//!
//! Each [`DiscoveryIndex::refresh`] costs a fixed number of LIST requests
//! (one for the run directories, one per run for its top-level files, three
//! per run for jobs, receipts and verdicts, and one each for heartbeats,
//! scores and weights) plus one GET per object that is new or changed since
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
//!   listed with their metadata and read again only when their size, mtime
//!   or ETag changed.
//!
//! Receipts are checked against the hotkey they name and the owner-signed
//! assignment they point to (fetched once per assignment key); verdicts,
//! scores and weights against the validators of the run manifest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use locus_protocol::pb::{self, VerdictOutcome};
use locus_protocol::time::unix_ms;
use locus_protocol::{Bucket, BucketError, Digest, Expect, Hotkey, Record, Verified};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use tracing::{debug, warn};

use crate::views::*;

/// Tuning of the incremental reader.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// How far behind the last seen key a write-once listing starts.
    pub rewind_keys: usize,
    /// How often write-once prefixes are listed from their start.
    pub full_relist_every: Duration,
    /// Concurrent GETs while catching up.
    pub concurrency: usize,
    /// For buckets without listing metadata (remote buckets), how often
    /// rewritten objects (heartbeats, run states, scores, weights) are read
    /// again. Local buckets re-read them only when they change.
    pub reread_without_meta: Duration,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            rewind_keys: 256,
            full_relist_every: Duration::from_secs(60),
            concurrency: 16,
            reread_without_meta: Duration::from_secs(10),
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

/// Listing metadata, to tell whether a rewritten object changed.
#[derive(Clone, Debug, PartialEq)]
struct Meta {
    modified: String,
    size: u64,
    e_tag: Option<String>,
}

/// Metadata listings. The protocol's `Bucket::list` returns keys only, so
/// for a local bucket the index opens the same directory read-only through
/// `object_store` to see sizes and mtimes; those listings are counted in the
/// bucket's request counts like any other LIST. For other buckets there is
/// no metadata and rewritten objects are read on every refresh.
#[derive(Clone, Debug)]
enum MetaSource {
    Local(Arc<dyn ObjectStore>),
    KeysOnly,
}

struct Listed {
    key: String,
    meta: Option<Meta>,
}

impl MetaSource {
    fn for_bucket(bucket: &Bucket) -> Self {
        let url = bucket.url();
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if dir.contains("://") || !std::path::Path::new(dir).is_dir() {
            return MetaSource::KeysOnly;
        }
        match LocalFileSystem::new_with_prefix(dir) {
            Ok(store) => MetaSource::Local(Arc::new(store)),
            Err(e) => {
                warn!(bucket = %url, error = %e, "no metadata listings; rewritten objects are re-read every refresh");
                MetaSource::KeysOnly
            }
        }
    }

    fn count(bucket: &Bucket, started: Instant, ok: bool) {
        let c = bucket.counts();
        c.lists.fetch_add(1, Ordering::Relaxed);
        c.list_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn meta_of(m: &object_store::ObjectMeta) -> Meta {
        Meta {
            modified: m.last_modified.to_rfc3339(),
            size: m.size,
            e_tag: m.e_tag.clone(),
        }
    }

    /// Every object under `prefix`, with metadata.
    async fn list(&self, bucket: &Bucket, prefix: &str) -> Result<Vec<Listed>, BucketError> {
        match self {
            MetaSource::KeysOnly => Ok(bucket
                .list(prefix, None)
                .await?
                .into_iter()
                .map(|key| Listed { key, meta: None })
                .collect()),
            MetaSource::Local(store) => {
                let started = Instant::now();
                let dir = StorePath::from(prefix.trim_end_matches('/'));
                let listed: Result<Vec<_>, _> = store.list(Some(&dir)).try_collect().await;
                Self::count(bucket, started, listed.is_ok());
                let metas = match listed {
                    Ok(m) => m,
                    Err(object_store::Error::NotFound { .. }) => Vec::new(),
                    Err(source) => {
                        return Err(BucketError::Storage {
                            key: prefix.to_string(),
                            source,
                        });
                    }
                };
                let mut out: Vec<Listed> = metas
                    .iter()
                    .map(|m| Listed {
                        key: m.location.to_string(),
                        meta: Some(Self::meta_of(m)),
                    })
                    .filter(|l| l.key.starts_with(prefix))
                    .collect();
                out.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(out)
            }
        }
    }

    /// The objects directly in a run's directory `prefix` (not in its
    /// sub-directories). Without metadata these are just the two names a run
    /// directory holds, at no request.
    async fn run_files(&self, bucket: &Bucket, prefix: &str) -> Result<Vec<Listed>, BucketError> {
        match self {
            MetaSource::KeysOnly => Ok(["run.pb", "state.pb"]
                .into_iter()
                .map(|name| Listed {
                    key: format!("{prefix}{name}"),
                    meta: None,
                })
                .collect()),
            MetaSource::Local(store) => {
                let started = Instant::now();
                let dir = StorePath::from(prefix.trim_end_matches('/'));
                let listed = store.list_with_delimiter(Some(&dir)).await;
                Self::count(bucket, started, listed.is_ok());
                let listing = match listed {
                    Ok(l) => l,
                    Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
                    Err(source) => {
                        return Err(BucketError::Storage {
                            key: prefix.to_string(),
                            source,
                        });
                    }
                };
                Ok(listing
                    .objects
                    .iter()
                    .map(|m| Listed {
                        key: m.location.to_string(),
                        meta: Some(Self::meta_of(m)),
                    })
                    .collect())
            }
        }
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

/// A rewritten object and the metadata it was read at.
#[derive(Debug)]
struct Tracked<T> {
    meta: Option<Meta>,
    read_at: Instant,
    value: Result<T, String>,
}

impl<T> Tracked<T> {
    /// Whether the object as listed now is the one already read.
    fn fresh(&self, listed: &Option<Meta>, reread: Duration) -> bool {
        match listed {
            Some(_) => self.meta == *listed,
            None => self.read_at.elapsed() < reread,
        }
    }
}

/// Forgets rewritten objects no longer listed and returns the listed ones
/// that must be read (again): new, changed, or due for a re-read.
fn stale<'l, T>(
    tracked: &mut BTreeMap<String, Tracked<T>>,
    listed: &'l [Listed],
    reread: Duration,
    report: &mut RefreshReport,
) -> Vec<&'l Listed> {
    let present: BTreeSet<&str> = listed.iter().map(|l| l.key.as_str()).collect();
    let before = tracked.len();
    tracked.retain(|k, _| present.contains(k.as_str()));
    report.changed |= before != tracked.len();
    listed
        .iter()
        .filter(|l| {
            !tracked
                .get(&l.key)
                .is_some_and(|t| t.fresh(&l.meta, reread))
        })
        .collect()
}

/// Stores what reading a rewritten object gave, listing it as rejected (or
/// no longer) accordingly.
fn settle<T>(
    tracked: &mut BTreeMap<String, Tracked<T>>,
    rejected: &mut BTreeMap<String, RejectedView>,
    listed: &Listed,
    kind: &'static str,
    value: Result<T, String>,
    report: &mut RefreshReport,
) {
    report.changed = true;
    match &value {
        Ok(_) => {
            rejected.remove(&listed.key);
        }
        Err(reason) => {
            report.rejected += u64::from(reject_into(rejected, &listed.key, kind, reason.clone()));
        }
    }
    tracked.insert(
        listed.key.clone(),
        Tracked {
            meta: listed.meta.clone(),
            read_at: Instant::now(),
            value,
        },
    );
}

/// Adds `key` to the rejected objects; returns whether it (or its reason) is new.
fn reject_into(
    rejected: &mut BTreeMap<String, RejectedView>,
    key: &str,
    kind: &'static str,
    reason: String,
) -> bool {
    let fresh = match rejected.get(key) {
        Some(r) => r.reason != reason,
        None => true,
    };
    if fresh {
        debug!(key, kind, %reason, "rejected object");
        rejected.insert(
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

#[derive(Debug)]
struct ReceiptEntry {
    row: ReceiptRow,
    digest: Digest,
    hotkey: [u8; 32],
}

#[derive(Debug)]
struct VerdictEntry {
    view: VerdictView,
    receipt_key: String,
    receipt_digest: Vec<u8>,
    hotkey: Vec<u8>,
}

#[derive(Debug)]
struct RunEntry {
    manifest_key: String,
    manifest: pb::RunManifest,
    validators: Vec<Hotkey>,
    state: Option<pb::RunState>,
    state_meta: Option<Meta>,
    state_read_at: Option<Instant>,
    state_status: String,
    jobs: Cursor,
    job_steps: BTreeMap<u32, u64>,
    receipts_cur: Cursor,
    receipts: BTreeMap<String, ReceiptEntry>,
    verdicts_cur: Cursor,
    /// Keyed by the receipt key the verdict judges.
    verdicts: BTreeMap<String, VerdictEntry>,
}

/// Prebuilt views, published after each refresh that changed something.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub netuid: u16,
    pub owner: String,
    pub workers: Vec<WorkerView>,
    pub runs: Vec<RunView>,
    /// Newest first.
    pub receipts: Vec<ReceiptRow>,
    /// Verified score windows, newest first.
    pub scores: Vec<ScoreView>,
    /// Newest first.
    pub rejected: Vec<RejectedView>,
    pub stats: Stats,
}

/// The incremental reader. Owns its bucket handle; never writes.
pub struct DiscoveryIndex {
    bucket: Bucket,
    owner: Hotkey,
    netuid: u16,
    cfg: IndexConfig,
    meta: MetaSource,
    runs: BTreeMap<String, RunEntry>,
    /// Run manifests that failed, with the metadata they failed at.
    bad_runs: HashMap<String, Tracked<()>>,
    assignments: HashMap<String, Result<pb::Assignment, String>>,
    heartbeats: BTreeMap<String, Tracked<pb::WorkerHeartbeat>>,
    scores: BTreeMap<String, Tracked<(pb::ScoreWindow, Hotkey)>>,
    weights: BTreeMap<String, Tracked<(pb::ChainWeights, Hotkey)>>,
    rejected: BTreeMap<String, RejectedView>,
    last_full: Option<Instant>,
    stats: Stats,
}

fn reason_of(e: &BucketError) -> String {
    match e {
        BucketError::Rejected(r) => r.reason.to_string(),
        other => other.to_string(),
    }
}

/// Errors worth retrying on the next refresh rather than rejecting.
fn transient(e: &BucketError) -> bool {
    !matches!(e, BucketError::Rejected(_) | BucketError::NotFound { .. })
}

fn outcome_name(outcome: i32) -> &'static str {
    match VerdictOutcome::try_from(outcome) {
        Ok(VerdictOutcome::Verified) => "verified",
        Ok(VerdictOutcome::Failed) => "failed",
        Ok(VerdictOutcome::Unsampled) => "unsampled",
        Ok(VerdictOutcome::Late) => "late",
        _ => "unspecified",
    }
}

fn ss58_of(bytes: &[u8]) -> String {
    Hotkey::from_bytes(bytes)
        .map(|h| h.ss58())
        .unwrap_or_else(|_| format!("<invalid key: {} bytes>", bytes.len()))
}

fn step_entry(steps: &mut BTreeMap<u32, StepProgress>, step: u32) -> &mut StepProgress {
    steps.entry(step).or_insert_with(|| StepProgress {
        step,
        jobs: 0,
        receipts: 0,
        verdicts: 0,
    })
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

impl DiscoveryIndex {
    pub fn new(bucket: Bucket, owner: Hotkey, cfg: IndexConfig) -> Self {
        let meta = MetaSource::for_bucket(&bucket);
        let netuid = bucket
            .layout()
            .root()
            .rsplit('=')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        DiscoveryIndex {
            bucket,
            owner,
            netuid,
            cfg,
            meta,
            runs: BTreeMap::new(),
            bad_runs: HashMap::new(),
            assignments: HashMap::new(),
            heartbeats: BTreeMap::new(),
            scores: BTreeMap::new(),
            weights: BTreeMap::new(),
            rejected: BTreeMap::new(),
            last_full: None,
            stats: Stats::default(),
        }
    }

    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    fn reject(&mut self, key: &str, kind: &'static str, reason: String) -> bool {
        reject_into(&mut self.rejected, key, kind, reason)
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
        self.refresh_heartbeats(report).await?;
        self.refresh_scores(report).await?;
        self.refresh_weights(report).await?;
        Ok(())
    }

    /// Run manifests and states. Returns whether a run was added.
    async fn refresh_runs(&mut self, report: &mut RefreshReport) -> Result<bool, crate::Error> {
        let layout = self.bucket.layout().clone();
        let mut added = false;
        for run in self.bucket.list_dirs(&layout.runs()).await? {
            if let Err(reason) = locus_protocol::paths::validate_id("run", &run) {
                let key = format!("{}{run}/", layout.runs());
                report.rejected += u64::from(self.reject(&key, "run", reason));
                continue;
            }
            let prefix = format!("{}{run}/", layout.runs());
            let files = self.meta.run_files(&self.bucket, &prefix).await?;
            let manifest_key = layout.run_manifest(&run);
            let state_key = layout.run_state(&run);
            if !self.runs.contains_key(&run) {
                let Some(listed) = files.iter().find(|l| l.key == manifest_key) else {
                    continue;
                };
                if self
                    .bad_runs
                    .get(&run)
                    .is_some_and(|t| t.fresh(&listed.meta, self.cfg.reread_without_meta))
                {
                    continue;
                }
                report.fetched += 1;
                let got = self
                    .bucket
                    .get::<pb::RunManifest>(&manifest_key, Expect::Signer(&self.owner))
                    .await;
                let checked = match got {
                    Ok(m) => check(m.run_id == run, || {
                        format!("manifest names run {:?}, its key names {run:?}", m.run_id)
                    })
                    .and_then(|()| {
                        m.validators
                            .iter()
                            .map(|v| Hotkey::from_bytes(v).map_err(|e| format!("validator: {e}")))
                            .collect::<Result<Vec<_>, _>>()
                            .map(|v| (m.into_inner(), v))
                    }),
                    Err(e) if e.is_not_found() => continue,
                    Err(e) if transient(&e) => {
                        warn!(key = %manifest_key, error = %e, "cannot read run manifest; will retry");
                        continue;
                    }
                    Err(e) => Err(reason_of(&e)),
                };
                match checked {
                    Ok((manifest, validators)) => {
                        self.bad_runs.remove(&run);
                        self.rejected.remove(&manifest_key);
                        self.runs.insert(
                            run.clone(),
                            RunEntry {
                                manifest_key: manifest_key.clone(),
                                manifest,
                                validators,
                                state: None,
                                state_meta: None,
                                state_read_at: None,
                                state_status: "missing".into(),
                                jobs: Cursor::default(),
                                job_steps: BTreeMap::new(),
                                receipts_cur: Cursor::default(),
                                receipts: BTreeMap::new(),
                                verdicts_cur: Cursor::default(),
                                verdicts: BTreeMap::new(),
                            },
                        );
                        added = true;
                        report.changed = true;
                    }
                    Err(reason) => {
                        self.bad_runs.insert(
                            run.clone(),
                            Tracked {
                                meta: listed.meta.clone(),
                                read_at: Instant::now(),
                                value: Ok(()),
                            },
                        );
                        report.rejected +=
                            u64::from(self.reject(&manifest_key, "run manifest", reason));
                        report.changed = true;
                        continue;
                    }
                }
            }
            // The run's state, when it changed.
            let Some(listed) = files.iter().find(|l| l.key == state_key) else {
                continue;
            };
            let Some(entry) = self.runs.get(&run) else {
                continue;
            };
            let fresh = match &listed.meta {
                Some(_) => entry.state_meta == listed.meta,
                None => entry
                    .state_read_at
                    .is_some_and(|t| t.elapsed() < self.cfg.reread_without_meta),
            };
            if fresh {
                continue;
            }
            report.fetched += 1;
            let got = self
                .bucket
                .get::<pb::RunState>(&state_key, Expect::Signer(&self.owner))
                .await;
            let checked = match got {
                Ok(s) => check(s.run_id == run, || {
                    format!("state names run {:?}, its key names {run:?}", s.run_id)
                })
                .map(|()| s.into_inner()),
                Err(e) if e.is_not_found() => {
                    if let Some(entry) = self.runs.get_mut(&run) {
                        entry.state_read_at = Some(Instant::now());
                    }
                    continue;
                }
                Err(e) if transient(&e) => {
                    warn!(key = %state_key, error = %e, "cannot read run state; will retry");
                    continue;
                }
                Err(e) => Err(reason_of(&e)),
            };
            report.changed = true;
            let meta = listed.meta.clone();
            match checked {
                Ok(state) => {
                    self.rejected.remove(&state_key);
                    if let Some(entry) = self.runs.get_mut(&run) {
                        entry.state = Some(state);
                        entry.state_meta = meta;
                        entry.state_read_at = Some(Instant::now());
                        entry.state_status = VERIFIED.into();
                    }
                }
                Err(reason) => {
                    if let Some(entry) = self.runs.get_mut(&run) {
                        entry.state_meta = meta;
                        entry.state_read_at = Some(Instant::now());
                        entry.state_status = format!("rejected: {reason}");
                    }
                    report.rejected += u64::from(self.reject(&state_key, "run state", reason));
                }
            }
        }
        Ok(added)
    }

    async fn new_keys(
        &self,
        cursor: &Cursor,
        prefix: &str,
        full: bool,
    ) -> Result<Vec<String>, BucketError> {
        let after = if full {
            None
        } else {
            cursor.after(self.cfg.rewind_keys)
        };
        let keys = self.bucket.list(prefix, after.as_deref()).await?;
        Ok(keys
            .into_iter()
            .filter(|k| !cursor.seen.contains(k))
            .collect())
    }

    async fn refresh_jobs(
        &mut self,
        run: &str,
        full: bool,
        report: &mut RefreshReport,
    ) -> Result<(), crate::Error> {
        let Some(entry) = self.runs.get(run) else {
            return Ok(());
        };
        let layout = self.bucket.layout().clone();
        let prefix = format!("{}/runs/{run}/jobs/", layout.root());
        let keys = self.new_keys(&entry.jobs, &prefix, full).await?;
        if keys.is_empty() {
            return Ok(());
        }
        report.fetched += keys.len() as u64;
        let owner = self.owner;
        let fetched = self
            .fetch_all::<pb::JobManifest>(keys, Expect::Signer(&owner))
            .await;
        for (key, result) in fetched {
            let checked = match result {
                Ok(job) => check(
                    job.run_id == run
                        && layout
                            .parse_job_manifest(run, &key)
                            .is_some_and(|(id, _)| id == job.job_id),
                    || {
                        format!(
                            "manifest of run {:?} job {:?} does not belong at this key",
                            job.run_id, job.job_id
                        )
                    },
                )
                .map(|()| job.step),
                Err(e) if transient(&e) => {
                    warn!(key = %key, error = %e, "cannot read job manifest; will retry");
                    continue;
                }
                Err(e) => Err(reason_of(&e)),
            };
            report.changed = true;
            if let Some(entry) = self.runs.get_mut(run) {
                entry.jobs.seen.insert(key.clone());
                if let Ok(step) = checked {
                    *entry.job_steps.entry(step).or_default() += 1;
                }
            }
            if let Err(reason) = checked {
                report.rejected += u64::from(self.reject(&key, "job manifest", reason));
            }
        }
        Ok(())
    }

    async fn refresh_receipts(
        &mut self,
        run: &str,
        full: bool,
        report: &mut RefreshReport,
    ) -> Result<(), crate::Error> {
        let Some(entry) = self.runs.get(run) else {
            return Ok(());
        };
        let layout = self.bucket.layout().clone();
        let keys = self
            .new_keys(&entry.receipts_cur, &layout.receipts(run), full)
            .await?;
        if keys.is_empty() {
            return Ok(());
        }
        report.changed = true;
        let mut parsed = Vec::new();
        for key in keys {
            match layout.parse_receipt(run, &key) {
                Some(p) => parsed.push((key, p)),
                None => {
                    if let Some(entry) = self.runs.get_mut(run) {
                        entry.receipts_cur.seen.insert(key.clone());
                    }
                    report.rejected += u64::from(self.reject(
                        &key,
                        "receipt",
                        "key is not receipts/s{step}/{job}/a{attempt}.pb".into(),
                    ));
                }
            }
        }
        let by_key: HashMap<String, (u32, String, u32)> = parsed.into_iter().collect();
        report.fetched += by_key.len() as u64;
        let fetched = self
            .fetch_all::<pb::Receipt>(by_key.keys().cloned().collect(), Expect::AnySigner)
            .await;
        // First pass: signature and the receipt's own fields.
        let mut candidates = Vec::new();
        for (key, result) in fetched {
            let Some((step, job, attempt)) = by_key.get(&key) else {
                continue;
            };
            let checked = match result {
                Ok(r) => Self::check_receipt_fields(&layout, run, *step, job, *attempt, r),
                Err(e) if transient(&e) => {
                    warn!(key = %key, error = %e, "cannot read receipt; will retry");
                    continue;
                }
                Err(e) => Err(reason_of(&e)),
            };
            match checked {
                Ok(r) => candidates.push(r),
                Err(reason) => {
                    if let Some(entry) = self.runs.get_mut(run) {
                        entry.receipts_cur.seen.insert(key.clone());
                    }
                    report.rejected += u64::from(self.reject(&key, "receipt", reason));
                }
            }
        }
        // Second pass: the assignments they point to, each read once.
        let mut wanted: Vec<String> = candidates
            .iter()
            .map(|r| r.assignment_key.clone())
            .filter(|k| !self.assignments.contains_key(k))
            .collect();
        wanted.sort();
        wanted.dedup();
        report.fetched += wanted.len() as u64;
        let owner = self.owner;
        for (key, result) in self
            .fetch_all::<pb::Assignment>(wanted, Expect::Signer(&owner))
            .await
        {
            match result {
                Ok(a) => {
                    self.assignments.insert(key, Ok(a.into_inner()));
                }
                Err(e) if transient(&e) => {
                    warn!(key = %key, error = %e, "cannot read assignment; will retry");
                }
                Err(e) => {
                    let reason = reason_of(&e);
                    if !e.is_not_found() {
                        report.rejected +=
                            u64::from(self.reject(&key, "assignment", reason.clone()));
                    }
                    self.assignments.insert(key, Err(reason));
                }
            }
        }
        for receipt in candidates {
            let Some(assignment) = self.assignments.get(&receipt.assignment_key) else {
                continue; // transient: retried next refresh
            };
            let checked = match assignment {
                Ok(a) => Self::check_against_assignment(&receipt, a),
                Err(reason) => Err(format!("assignment {}: {reason}", receipt.assignment_key)),
            };
            let key = receipt.key().to_string();
            match checked {
                Ok(()) => {
                    let hotkey = Hotkey::from_bytes(&receipt.hotkey)
                        .map(|h| h.to_bytes())
                        .unwrap_or_default();
                    let digest = receipt.digest();
                    let r = receipt.into_inner();
                    let row = ReceiptRow {
                        key: key.clone(),
                        run_id: r.run_id,
                        step: r.step,
                        job_id: r.job_id,
                        attempt: r.attempt,
                        hotkey: ss58_of(&r.hotkey),
                        worker: r.worker,
                        backend: r.backend,
                        device: r.device,
                        started_unix_ms: r.started_unix_ms,
                        finished_unix_ms: r.finished_unix_ms,
                        assignment_key: r.assignment_key,
                        signature: VERIFIED,
                        verdict: None,
                    };
                    self.rejected.remove(&key);
                    if let Some(entry) = self.runs.get_mut(run) {
                        entry.receipts_cur.seen.insert(key.clone());
                        entry.receipts.insert(
                            key,
                            ReceiptEntry {
                                row,
                                digest,
                                hotkey,
                            },
                        );
                    }
                }
                Err(reason) => {
                    if let Some(entry) = self.runs.get_mut(run) {
                        entry.receipts_cur.seen.insert(key.clone());
                    }
                    report.rejected += u64::from(self.reject(&key, "receipt", reason));
                }
            }
        }
        Ok(())
    }

    fn check_receipt_fields(
        layout: &locus_protocol::Layout,
        run: &str,
        step: u32,
        job: &str,
        attempt: u32,
        r: Verified<pb::Receipt>,
    ) -> Result<Verified<pb::Receipt>, String> {
        let hotkey = Hotkey::from_bytes(&r.hotkey).map_err(|e| format!("receipt hotkey: {e}"))?;
        check(*r.signer() == hotkey, || {
            format!(
                "signed by {}, but the receipt names hotkey {hotkey}",
                r.signer()
            )
        })?;
        check(
            r.run_id == run && r.job_id == job && r.attempt == attempt && r.step == step,
            || {
                format!(
                    "receipt is for run {:?} step {} job {:?} attempt {}, its key names run {run:?} step {step} job {job:?} attempt {attempt}",
                    r.run_id, r.step, r.job_id, r.attempt
                )
            },
        )?;
        let own_prefix = format!("{}/assignments/{}/", layout.root(), hotkey.ss58());
        check(r.assignment_key.starts_with(&own_prefix), || {
            format!(
                "assignment key {:?} is not under the hotkey's own assignments",
                r.assignment_key
            )
        })?;
        Ok(r)
    }

    fn check_against_assignment(r: &pb::Receipt, a: &pb::Assignment) -> Result<(), String> {
        check(
            a.run_id == r.run_id
                && a.job_id == r.job_id
                && a.attempt == r.attempt
                && a.step == r.step
                && a.hotkey == r.hotkey
                && a.worker == r.worker,
            || {
                format!(
                    "assignment is for job {:?} attempt {} hotkey {} worker {}, the receipt claims job {:?} attempt {} worker {}",
                    a.job_id,
                    a.attempt,
                    ss58_of(&a.hotkey),
                    a.worker,
                    r.job_id,
                    r.attempt,
                    r.worker
                )
            },
        )?;
        check(a.manifest_digest == r.manifest_digest, || {
            "receipt commits to another job manifest than its assignment".into()
        })
    }

    async fn refresh_verdicts(
        &mut self,
        run: &str,
        full: bool,
        report: &mut RefreshReport,
    ) -> Result<(), crate::Error> {
        let Some(entry) = self.runs.get(run) else {
            return Ok(());
        };
        let layout = self.bucket.layout().clone();
        let prefix = layout.verdicts(run);
        let keys = self.new_keys(&entry.verdicts_cur, &prefix, full).await?;
        if keys.is_empty() {
            return Ok(());
        }
        report.changed = true;
        let validators = entry.validators.clone();
        let mut parsed = HashMap::new();
        for key in keys {
            // Verdict keys mirror receipt keys.
            let as_receipt = key
                .strip_prefix(&prefix)
                .map(|rest| format!("{}{rest}", layout.receipts(run)));
            match as_receipt
                .as_deref()
                .and_then(|k| layout.parse_receipt(run, k))
            {
                Some(p) => {
                    parsed.insert(key, p);
                }
                None => {
                    if let Some(entry) = self.runs.get_mut(run) {
                        entry.verdicts_cur.seen.insert(key.clone());
                    }
                    report.rejected += u64::from(self.reject(
                        &key,
                        "verdict",
                        "key is not verdicts/s{step}/{job}/a{attempt}.pb".into(),
                    ));
                }
            }
        }
        report.fetched += parsed.len() as u64;
        let fetched = self
            .fetch_all::<pb::Verdict>(parsed.keys().cloned().collect(), Expect::OneOf(&validators))
            .await;
        for (key, result) in fetched {
            let Some((step, job, attempt)) = parsed.get(&key) else {
                continue;
            };
            let receipt_key = layout.receipt(run, *step, job, *attempt);
            let checked = match result {
                Ok(v) => check(
                    v.run_id == run
                        && v.job_id == *job
                        && v.attempt == *attempt
                        && v.step == *step
                        && v.receipt_key == receipt_key,
                    || {
                        format!(
                            "verdict on {:?} (job {:?} attempt {}) does not belong at this key",
                            v.receipt_key, v.job_id, v.attempt
                        )
                    },
                )
                .map(|()| v),
                Err(e) if transient(&e) => {
                    warn!(key = %key, error = %e, "cannot read verdict; will retry");
                    continue;
                }
                Err(e) => Err(reason_of(&e)),
            };
            match checked {
                Ok(v) => {
                    let validator = v.signer().ss58();
                    let v = v.into_inner();
                    let entry = VerdictEntry {
                        view: VerdictView {
                            key: key.clone(),
                            validator,
                            outcome: outcome_name(v.outcome),
                            reason: v.reason,
                            compute_units: v.compute_units,
                            sample_rate: v.sample_rate,
                            replay_ms: v.replay_ms,
                            unix_ms: v.unix_ms,
                            signature: VERIFIED,
                        },
                        receipt_key: v.receipt_key,
                        receipt_digest: v.receipt_digest,
                        hotkey: v.hotkey,
                    };
                    self.rejected.remove(&key);
                    if let Some(run_entry) = self.runs.get_mut(run) {
                        run_entry.verdicts_cur.seen.insert(key);
                        run_entry.verdicts.insert(entry.receipt_key.clone(), entry);
                    }
                }
                Err(reason) => {
                    if let Some(entry) = self.runs.get_mut(run) {
                        entry.verdicts_cur.seen.insert(key.clone());
                    }
                    report.rejected += u64::from(self.reject(&key, "verdict", reason));
                }
            }
        }
        Ok(())
    }

    async fn refresh_heartbeats(&mut self, report: &mut RefreshReport) -> Result<(), crate::Error> {
        let layout = self.bucket.layout().clone();
        let listed = self.meta.list(&self.bucket, &layout.heartbeats()).await?;
        let reread = self.cfg.reread_without_meta;
        for l in stale(&mut self.heartbeats, &listed, reread, report) {
            let value = match layout.parse_heartbeat(&l.key) {
                None => Err("key is not heartbeats/{ss58}/w{worker}.pb".to_string()),
                Some((hotkey, worker)) => {
                    report.fetched += 1;
                    match self
                        .bucket
                        .get::<pb::WorkerHeartbeat>(&l.key, Expect::Signer(&hotkey))
                        .await
                    {
                        Ok(hb) => check(
                            hb.hotkey == hotkey.to_bytes() && hb.worker == worker,
                            || {
                                format!(
                                    "heartbeat names hotkey {} worker {}, its key names {hotkey} worker {worker}",
                                    ss58_of(&hb.hotkey),
                                    hb.worker
                                )
                            },
                        )
                        .map(|()| hb.into_inner()),
                        Err(e) if transient(&e) => {
                            warn!(key = %l.key, error = %e, "cannot read heartbeat; will retry");
                            continue;
                        }
                        Err(e) => Err(reason_of(&e)),
                    }
                }
            };
            settle(
                &mut self.heartbeats,
                &mut self.rejected,
                l,
                "heartbeat",
                value,
                report,
            );
        }
        Ok(())
    }

    /// Validators of the named runs that this index knows.
    fn validators_of(&self, run_ids: &[String]) -> Vec<Hotkey> {
        let mut out: Vec<Hotkey> = run_ids
            .iter()
            .filter_map(|r| self.runs.get(r))
            .flat_map(|r| r.validators.iter().copied())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn all_validators(&self) -> Vec<Hotkey> {
        let ids: Vec<String> = self.runs.keys().cloned().collect();
        self.validators_of(&ids)
    }

    async fn refresh_scores(&mut self, report: &mut RefreshReport) -> Result<(), crate::Error> {
        let layout = self.bucket.layout().clone();
        let prefix = layout.scores();
        let listed = self.meta.list(&self.bucket, &prefix).await?;
        let reread = self.cfg.reread_without_meta;
        for l in stale(&mut self.scores, &listed, reread, report) {
            report.fetched += 1;
            let window = l
                .key
                .strip_prefix(&prefix)
                .and_then(|w| w.strip_suffix(".pb"))
                .unwrap_or_default()
                .to_string();
            let value = match self
                .bucket
                .get::<pb::ScoreWindow>(&l.key, Expect::AnySigner)
                .await
            {
                Ok(s) => {
                    let allowed = self.validators_of(&s.run_ids);
                    let signer = *s.signer();
                    check(s.window_id == window, || {
                        format!("window {:?} stored under {window:?}", s.window_id)
                    })
                    .and_then(|()| {
                        check(!allowed.is_empty(), || {
                            format!("names no known run (runs {:?})", s.run_ids)
                        })
                    })
                    .and_then(|()| {
                        check(allowed.contains(&signer), || {
                            format!(
                                "signed by {signer}, not a validator of run(s) {:?}",
                                s.run_ids
                            )
                        })
                    })
                    .map(|()| (s.into_inner(), signer))
                }
                Err(e) if transient(&e) => {
                    warn!(key = %l.key, error = %e, "cannot read score window; will retry");
                    continue;
                }
                Err(e) => Err(reason_of(&e)),
            };
            settle(
                &mut self.scores,
                &mut self.rejected,
                l,
                "score window",
                value,
                report,
            );
        }
        Ok(())
    }

    async fn refresh_weights(&mut self, report: &mut RefreshReport) -> Result<(), crate::Error> {
        let layout = self.bucket.layout().clone();
        let prefix = format!("{}/weights/", layout.root());
        let listed = self.meta.list(&self.bucket, &prefix).await?;
        let reread = self.cfg.reread_without_meta;
        for l in stale(&mut self.weights, &listed, reread, report) {
            report.fetched += 1;
            let window = l
                .key
                .strip_prefix(&prefix)
                .and_then(|w| w.strip_suffix(".pb"))
                .unwrap_or_default()
                .to_string();
            let value = match self
                .bucket
                .get::<pb::ChainWeights>(&l.key, Expect::AnySigner)
                .await
            {
                Ok(w) => {
                    let score_runs = self
                        .scores
                        .values()
                        .filter_map(|t| t.value.as_ref().ok())
                        .find(|(s, _)| s.window_id == w.window_id)
                        .map(|(s, _)| s.run_ids.clone());
                    let allowed = match score_runs {
                        Some(runs) => self.validators_of(&runs),
                        None => self.all_validators(),
                    };
                    let signer = *w.signer();
                    check(w.window_id == window, || {
                        format!("window {:?} stored under {window:?}", w.window_id)
                    })
                    .and_then(|()| {
                        check(allowed.contains(&signer), || {
                            format!("signed by {signer}, not a validator of a known run")
                        })
                    })
                    .map(|()| (w.into_inner(), signer))
                }
                Err(e) if transient(&e) => {
                    warn!(key = %l.key, error = %e, "cannot read chain weights; will retry");
                    continue;
                }
                Err(e) => Err(reason_of(&e)),
            };
            settle(
                &mut self.weights,
                &mut self.rejected,
                l,
                "chain weights",
                value,
                report,
            );
        }
        Ok(())
    }

    /// Builds the views the UI serves from what is indexed.
    pub fn snapshot(&self) -> Snapshot {
        let mut rejected: Vec<RejectedView> = self.rejected.values().cloned().collect();
        let mut receipts = Vec::new();
        let mut runs = Vec::new();
        let mut per_worker: HashMap<(String, u32), u64> = HashMap::new();
        for (run_id, run) in &self.runs {
            let mut steps: BTreeMap<u32, StepProgress> = BTreeMap::new();
            for (step, n) in &run.job_steps {
                step_entry(&mut steps, *step).jobs = *n;
            }
            let (mut verified, mut unsampled, mut failed, mut late, mut verdicts) = (0, 0, 0, 0, 0);
            for (key, receipt) in &run.receipts {
                let mut row = receipt.row.clone();
                *per_worker
                    .entry((row.hotkey.clone(), row.worker))
                    .or_default() += 1;
                if let Some(v) = run.verdicts.get(key) {
                    if v.receipt_digest.as_slice() != receipt.digest.as_bytes().as_slice()
                        || v.hotkey.as_slice() != receipt.hotkey.as_slice()
                    {
                        rejected.push(RejectedView {
                            key: v.view.key.clone(),
                            kind: "verdict",
                            reason: "verdict commits to another receipt (digest or hotkey differs)"
                                .into(),
                            seen_unix_ms: v.view.unix_ms,
                        });
                    } else {
                        verdicts += 1;
                        match v.view.outcome {
                            "verified" => verified += 1,
                            "unsampled" => unsampled += 1,
                            "failed" => failed += 1,
                            "late" => late += 1,
                            _ => {}
                        }
                        row.verdict = Some(v.view.clone());
                    }
                }
                let p = step_entry(&mut steps, row.step);
                p.receipts += 1;
                p.verdicts += u64::from(row.verdict.is_some());
                receipts.push(row);
            }
            let state = run.state.clone().unwrap_or_default();
            runs.push(RunView {
                run_id: run_id.clone(),
                manifest_key: run.manifest_key.clone(),
                workload: run.manifest.workload.clone(),
                steps: run.manifest.steps,
                created_unix_ms: run.manifest.created_unix_ms,
                validators: run.validators.iter().map(Hotkey::ss58).collect(),
                completed_steps: state.completed_steps,
                done: state.done,
                eval_loss: state.eval_loss,
                train_loss: state.train_loss,
                state_unix_ms: state.unix_ms,
                state_signature: run.state_status.clone(),
                jobs_published: run.job_steps.values().sum(),
                receipts: run.receipts.len() as u64,
                verdicts,
                verified,
                unsampled,
                failed,
                late,
                step_progress: steps.into_values().collect(),
                signature: VERIFIED,
            });
        }
        receipts.sort_by(|a, b| {
            b.finished_unix_ms
                .cmp(&a.finished_unix_ms)
                .then_with(|| b.key.cmp(&a.key))
        });
        let workers: Vec<WorkerView> = self
            .heartbeats
            .iter()
            .filter_map(|(key, t)| {
                let hb = t.value.as_ref().ok()?;
                let hotkey = ss58_of(&hb.hotkey);
                Some(WorkerView {
                    key: key.clone(),
                    receipts: per_worker
                        .get(&(hotkey.clone(), hb.worker))
                        .copied()
                        .unwrap_or(0),
                    hotkey,
                    worker: hb.worker,
                    device: hb.device.clone(),
                    backend: hb.backend.clone(),
                    version: hb.version.clone(),
                    pid: hb.pid,
                    unix_ms: hb.unix_ms,
                    age_ms: 0,
                    current_job: hb.current_job.clone(),
                    jobs_done: hb.jobs_done,
                    signature: VERIFIED,
                })
            })
            .collect();
        let mut scores: Vec<ScoreView> = self
            .scores
            .iter()
            .filter_map(|(key, t)| {
                let (s, signer) = t.value.as_ref().ok()?;
                Some(self.score_view(key, s, signer))
            })
            .collect();
        scores.sort_by(|a, b| {
            b.unix_ms
                .cmp(&a.unix_ms)
                .then_with(|| b.window_id.cmp(&a.window_id))
        });
        rejected.sort_by(|a, b| {
            b.seen_unix_ms
                .cmp(&a.seen_unix_ms)
                .then_with(|| a.key.cmp(&b.key))
        });
        let stats = self.snapshot_stats();
        Snapshot {
            netuid: self.netuid,
            owner: self.owner.ss58(),
            workers,
            runs,
            receipts,
            scores,
            rejected,
            stats,
        }
    }

    /// Refresh statistics (cheap; the UI publishes them after every refresh).
    pub fn snapshot_stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.objects_indexed = self
            .runs
            .values()
            .map(|r| 1 + r.jobs.seen.len() + r.receipts_cur.seen.len() + r.verdicts_cur.seen.len())
            .sum::<usize>() as u64
            + self.assignments.len() as u64
            + self.heartbeats.len() as u64
            + self.scores.len() as u64
            + self.weights.len() as u64;
        stats
    }

    fn score_view(&self, key: &str, s: &pb::ScoreWindow, signer: &Hotkey) -> ScoreView {
        let weights = self
            .weights
            .iter()
            .filter_map(|(k, t)| {
                let (w, signer) = t.value.as_ref().ok()?;
                (w.window_id == s.window_id).then_some((k, w, signer))
            })
            .max_by_key(|(_, w, _)| w.unix_ms)
            .map(|(k, w, signer)| WeightsView {
                key: k.clone(),
                window_id: w.window_id.clone(),
                netuid: w.netuid,
                validator: signer.ss58(),
                dry_run: w.dry_run,
                block_hash: w.block_hash.clone(),
                error: w.error.clone(),
                unix_ms: w.unix_ms,
                entries: w
                    .hotkeys
                    .iter()
                    .zip(w.uids.iter().zip(w.weights.iter()))
                    .map(|(h, (uid, weight))| WeightEntry {
                        hotkey: ss58_of(h),
                        uid: *uid,
                        weight: *weight,
                    })
                    .collect(),
                unregistered: w.unregistered.iter().map(|h| ss58_of(h)).collect(),
                signature: VERIFIED,
            });
        let rows = s
            .scores
            .iter()
            .map(|h| {
                let hotkey = ss58_of(&h.hotkey);
                let entry = weights
                    .as_ref()
                    .and_then(|w| w.entries.iter().find(|e| e.hotkey == hotkey));
                ScoreRow {
                    receipts: h.receipts,
                    verified: h.verified,
                    failed: h.failed,
                    unsampled: h.unsampled,
                    late: h.late,
                    verified_cu: h.verified_cu,
                    unsampled_cu: h.unsampled_cu,
                    score: h.score,
                    weight: h.weight,
                    reason: h.reason.clone(),
                    uid: entry.map(|e| e.uid),
                    chain_weight: entry.map(|e| e.weight),
                    hotkey,
                }
            })
            .collect();
        ScoreView {
            key: key.to_string(),
            window_id: s.window_id.clone(),
            run_ids: s.run_ids.clone(),
            unix_ms: s.unix_ms,
            complete: s.complete,
            receipts: s.receipts,
            validator: signer.ss58(),
            rows,
            weights,
            signature: VERIFIED,
        }
    }
}

impl Snapshot {
    /// Workers with their heartbeat age as of `now_ms`, freshest first.
    pub fn workers_at(&self, now_ms: u64) -> Vec<WorkerView> {
        let mut workers = self.workers.clone();
        for w in &mut workers {
            w.age_ms = now_ms.saturating_sub(w.unix_ms);
        }
        workers.sort_by(|a, b| a.hotkey.cmp(&b.hotkey).then(a.worker.cmp(&b.worker)));
        workers
    }

    /// Receipts (newest first), optionally of one hotkey and/or run.
    pub fn receipts_of(
        &self,
        hotkey: Option<&str>,
        run: Option<&str>,
        limit: usize,
    ) -> Vec<ReceiptRow> {
        self.receipts
            .iter()
            .filter(|r| hotkey.is_none_or(|h| r.hotkey == h))
            .filter(|r| run.is_none_or(|id| r.run_id == id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// The latest score window, or the one named.
    pub fn score_window(&self, window: Option<&str>) -> Option<&ScoreView> {
        match window {
            Some(id) => self.scores.iter().find(|s| s.window_id == id),
            None => self.scores.first(),
        }
    }

    /// The receipts and verdicts behind one hotkey's score.
    pub fn hotkey_detail(&self, hotkey: &str, window: Option<&str>, now_ms: u64) -> HotkeyDetail {
        let window = self.score_window(window);
        let runs: Option<&Vec<String>> = window.map(|w| &w.run_ids);
        let mut totals = HotkeyTotals::default();
        let mut failures = Vec::new();
        let mut receipts = Vec::new();
        for r in self.receipts.iter().filter(|r| r.hotkey == hotkey) {
            if runs.is_some_and(|ids| !ids.contains(&r.run_id)) {
                continue;
            }
            totals.receipts += 1;
            match &r.verdict {
                None => totals.pending += 1,
                Some(v) => match v.outcome {
                    "verified" => {
                        totals.verified += 1;
                        totals.verified_cu += v.compute_units;
                    }
                    "unsampled" => {
                        totals.unsampled += 1;
                        totals.unsampled_cu += v.compute_units;
                    }
                    "failed" => {
                        totals.failed += 1;
                        failures.push(Failure {
                            receipt_key: r.key.clone(),
                            job_id: r.job_id.clone(),
                            attempt: r.attempt,
                            validator: v.validator.clone(),
                            reason: v.reason.clone(),
                        });
                    }
                    "late" => totals.late += 1,
                    _ => totals.pending += 1,
                },
            }
            receipts.push(r.clone());
        }
        HotkeyDetail {
            hotkey: hotkey.to_string(),
            window_id: window.map(|w| w.window_id.clone()),
            score: window.and_then(|w| w.rows.iter().find(|r| r.hotkey == hotkey).cloned()),
            workers: self
                .workers_at(now_ms)
                .into_iter()
                .filter(|w| w.hotkey == hotkey)
                .collect(),
            totals,
            failures,
            receipts,
        }
    }

    pub fn overview(&self, now_ms: u64, receipts: usize, rejected: usize) -> Overview {
        Overview {
            netuid: self.netuid,
            owner: self.owner.clone(),
            now_unix_ms: now_ms,
            stats: self.stats.clone(),
            workers: self.workers_at(now_ms),
            runs: self.runs.clone(),
            receipts_total: self.receipts.len(),
            receipts: self.receipts.iter().take(receipts).cloned().collect(),
            scores: self.scores.first().cloned(),
            rejected_total: self.rejected.len(),
            rejected: self.rejected.iter().take(rejected).cloned().collect(),
        }
    }
}
