//! The shared bucket: signed records in, verified records out.
//!
//! [`Bucket`] wraps any `object_store` backend (a local directory by default)
//! and is the only way the daemons touch storage. It seals records on the way
//! in, verifies them on the way out, and counts every request so operators can
//! see what a job costs in bucket traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::digest::Digest;
use crate::envelope::{self, Expect, RejectReason, Rejection, Verified};
use crate::keys::Keypair;
use crate::paths::Layout;
use crate::presign::{Conditions, PresignConfig, Presigner};
use crate::record::Record;

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("{key}: not found")]
    NotFound { key: String },
    #[error("{key}: already exists")]
    AlreadyExists { key: String },
    #[error("{key}: storage error: {source}")]
    Storage {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("cannot open bucket {url}: {reason}")]
    Open { url: String, reason: String },
}

impl BucketError {
    fn storage(key: &str, source: object_store::Error) -> Self {
        match source {
            object_store::Error::NotFound { .. } => BucketError::NotFound {
                key: key.to_string(),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => BucketError::AlreadyExists {
                key: key.to_string(),
            },
            source => BucketError::Storage {
                key: key.to_string(),
                source,
            },
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, BucketError::NotFound { .. })
    }

    /// A rejection remembered from an earlier read of the same version of
    /// the object (not read again): worth a debug line, not another warning.
    pub fn is_repeat_rejection(&self) -> bool {
        matches!(self, BucketError::Rejected(r) if matches!(r.reason, RejectReason::Unchanged(_)))
    }

    /// Whether the same request may succeed later: the storage failed, not
    /// the object. Missing, conflicting and rejected objects are answers.
    pub fn is_transient(&self) -> bool {
        matches!(self, BucketError::Storage { .. } | BucketError::Open { .. })
    }
}

/// The kind of a bucket request, for counting and tracing.
#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Put,
    Delete,
    List,
}

/// Requests made through one [`Bucket`] handle (and its clones), with their
/// cumulative latency, for metrics and the requests-per-job figure.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub lists: AtomicU64,
    pub errors: AtomicU64,
    /// GETs of a key that held nothing (counted in `gets` and `errors`
    /// too): a daemon that reads where an object is expected pays these
    /// instead of listings.
    pub get_misses: AtomicU64,
    /// Bytes of object bodies read through [`Bucket::get`] and friends.
    pub bytes_read: AtomicU64,
    pub get_micros: AtomicU64,
    pub put_micros: AtomicU64,
    pub list_micros: AtomicU64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
            + self.puts.load(Ordering::Relaxed)
            + self.lists.load(Ordering::Relaxed)
    }

    /// Counts one request; at trace level (`RUST_LOG=locus_protocol::bucket=trace`)
    /// logs it with its key, which is how a request budget is taken apart.
    fn record<T, E>(&self, op: Op, key: &str, started: Instant, result: &Result<T, E>) {
        let (count, micros) = match op {
            Op::Get => (&self.gets, &self.get_micros),
            Op::Put | Op::Delete => (&self.puts, &self.put_micros),
            Op::List => (&self.lists, &self.list_micros),
        };
        tracing::trace!(op = ?op, key, ok = result.is_ok(), "bucket request");
        count.fetch_add(1, Ordering::Relaxed);
        micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How to reach an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO).
/// Every field can come from the environment operators already use:
/// `S3_BUCKET`, `S3_ENDPOINT`, `S3_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `S3_PATH_STYLE`.
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO and most
    /// self-hosted servers want.
    pub path_style: bool,
    /// Unsigned requests: read-only access to a public bucket.
    pub anonymous: bool,
}

impl S3Options {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let flag =
            |name: &str| var(name).is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        S3Options {
            // The name the Python Locus and many S3 tools use, too.
            endpoint: var("S3_ENDPOINT").or_else(|| var("S3_ENDPOINT_URL")),
            region: var("S3_REGION").or_else(|| var("AWS_REGION")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            path_style: flag("S3_PATH_STYLE"),
            anonymous: flag("S3_ANONYMOUS"),
        }
    }
}

/// A handle on one subnet's part of the bucket. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// Present on S3 buckets opened with credentials: presigns grant URLs.
    signer: Option<Arc<Presigner>>,
    layout: Layout,
    url: String,
    counts: Arc<RequestCounts>,
    rejected: Arc<RejectedObjects>,
    /// The directory of a local bucket, where readers can watch for changes.
    local_dir: Option<std::path::PathBuf>,
}

/// What identifies one version of an object without reading it: its size
/// and its entity tag (a content hash on S3), or the time the storage says
/// it was written where the store gives no tag.
type Version = (u64, String);

fn version(size: u64, e_tag: Option<&str>, modified_ms: u64) -> Version {
    (
        size,
        e_tag.map_or_else(|| format!("t{modified_ms}"), str::to_string),
    )
}

/// Objects that failed verification for a reason that holds whoever reads
/// them, remembered with the version they had. A hostile object is read at
/// most once per version: until its writer changes it, a reader gets the
/// remembered rejection without reading the body again (and without any
/// request at all when a listing already gave the version).
#[derive(Debug, Default)]
struct RejectedObjects {
    map: std::sync::Mutex<std::collections::HashMap<RejectedKey, (Version, RejectReason)>>,
}

/// An object's key and the record type it was read as.
type RejectedKey = (String, &'static str);

/// Bounds the memory planted keys can make a reader spend on remembering
/// them; past it the memory starts over (the cost of a forgotten rejection
/// is one more bounded read).
const MAX_REMEMBERED_REJECTIONS: usize = 4096;

impl RejectedObjects {
    fn lookup(&self, key: &str, kind: &'static str, version: &Version) -> Option<Rejection> {
        let map = self.map.lock().ok()?;
        let (seen, reason) = map.get(&(key.to_string(), kind))?;
        (seen == version).then(|| Rejection {
            key: key.to_string(),
            reason: match reason {
                RejectReason::Unchanged(_) => reason.clone(),
                other => RejectReason::Unchanged(Box::new(other.clone())),
            },
        })
    }

    fn remember(&self, rejection: &Rejection, kind: &'static str, version: Version) {
        if !rejection.reason.is_intrinsic() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_REMEMBERED_REJECTIONS {
                map.clear();
            }
            map.insert(
                (rejection.key.clone(), kind),
                (version, rejection.reason.clone()),
            );
        }
    }
}

impl Bucket {
    /// Opens `url`: a local directory (`/path`, `file:///path`, created if
    /// missing) or `s3://bucket` (`s3://` alone takes `S3_BUCKET`), with S3
    /// settings from the environment.
    pub fn open(url: &str, netuid: u16) -> Result<Self, BucketError> {
        Self::open_with(url, netuid, &S3Options::from_env())
    }

    pub fn open_with(url: &str, netuid: u16, s3: &S3Options) -> Result<Self, BucketError> {
        let open_err = |reason: String| BucketError::Open {
            url: url.to_string(),
            reason,
        };
        if let Some(name) = url.strip_prefix("s3://") {
            let name = name.trim_end_matches('/');
            let name = if name.is_empty() {
                std::env::var("S3_BUCKET").map_err(|_| {
                    open_err("no bucket name: use s3://NAME or set S3_BUCKET".into())
                })?
            } else {
                name.to_string()
            };
            let store = Arc::new(open_s3(&name, s3).map_err(open_err)?);
            let signer = match s3.anonymous {
                true => None,
                false => Some(Arc::new(presigner(&name, s3).map_err(open_err)?)),
            };
            let mut bucket = Self::from_store(store, &format!("s3://{name}"), netuid);
            bucket.signer = signer;
            return Ok(bucket);
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if dir.contains("://") {
            return Err(open_err(
                "unsupported scheme; use a local directory, file:// or s3://".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| open_err(e.to_string()))?;
        let mut bucket = Self::from_store(Arc::new(store), url, netuid);
        bucket.local_dir = Some(std::path::PathBuf::from(dir));
        Ok(bucket)
    }

    /// The directory a local bucket keeps its objects in (key `k` is the
    /// file `dir/k`); `None` for other stores.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    pub fn from_store(store: Arc<dyn ObjectStore>, url: &str, netuid: u16) -> Self {
        #[cfg(feature = "fault-injection")]
        let store: Arc<dyn ObjectStore> = match crate::faults::FaultyStore::from_env(store.clone())
        {
            Some(faulty) => Arc::new(faulty),
            None => store,
        };
        Bucket {
            store,
            signer: None,
            layout: Layout::new(netuid),
            url: url.to_string(),
            counts: Arc::default(),
            rejected: Arc::default(),
            local_dir: None,
        }
    }

    /// True for S3 buckets: writers without credentials must use grants.
    pub fn is_remote(&self) -> bool {
        self.url.starts_with("s3://")
    }

    /// Whether this handle can presign URLs (an S3 bucket with credentials).
    pub fn can_presign(&self) -> bool {
        self.signer.is_some()
    }

    /// A presigned URL for `method` ("GET" or "PUT") on `key`, valid for
    /// `expires_in`, that the store honours only for a request meeting
    /// `conditions` (signed headers; PUT only). `None` where the store cannot
    /// presign (local directory).
    pub fn presign(
        &self,
        method: &str,
        key: &str,
        expires_in: std::time::Duration,
        conditions: Conditions,
    ) -> Result<Option<String>, BucketError> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        signer
            .url(method, key, conditions, expires_in)
            .map(Some)
            .map_err(|e| BucketError::Open {
                url: self.url.clone(),
                reason: e.to_string(),
            })
    }

    /// One cheap request that fails clearly when the bucket is unreachable or
    /// the credentials are missing or wrong. Daemons call it at start-up.
    pub async fn check_access(&self) -> Result<(), BucketError> {
        // A refusal (bad credentials) fails at once; other errors may be a
        // passing network fault and get two more tries.
        let mut tries = 0;
        loop {
            tries += 1;
            match self.list_dirs(self.layout.root()).await {
                Ok(_) => return Ok(()),
                Err(BucketError::Storage { source, .. }) => {
                    let refused = matches!(
                        source,
                        object_store::Error::PermissionDenied { .. }
                            | object_store::Error::Unauthenticated { .. }
                    );
                    if refused || tries >= 3 {
                        return Err(BucketError::Open {
                            url: self.url.clone(),
                            reason: format!(
                                "the bucket refused a listing (check the endpoint, bucket name and credentials): {source}"
                            ),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn counts(&self) -> &RequestCounts {
        &self.counts
    }

    /// Signs `record` for `key` and writes it, replacing what was there.
    pub async fn put<T: Record>(
        &self,
        key: &str,
        record: &T,
        signer: &Keypair,
    ) -> Result<Digest, BucketError> {
        let sealed = envelope::seal(record, key, signer);
        self.put_bytes(key, sealed.bytes, PutMode::Overwrite)
            .await?;
        Ok(sealed.digest)
    }

    /// Signs `record` for `key` and writes it only if nothing is there yet.
    /// Objects that must never change (manifests, receipts, artifacts,
    /// verdicts) are written this way.
    pub async fn create<T: Record>(
        &self,
        key: &str,
        record: &T,
        signer: &Keypair,
    ) -> Result<Digest, BucketError> {
        let sealed = envelope::seal(record, key, signer);
        self.put_bytes(key, sealed.bytes, PutMode::Create).await?;
        Ok(sealed.digest)
    }

    /// Writes raw bytes. Daemons only write sealed records; tests use this to
    /// plant malformed or forged objects.
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<(), BucketError> {
        let options = PutOptions {
            mode,
            ..Default::default()
        };
        let started = Instant::now();
        let result = self
            .store
            .put_opts(&Path::from(key), PutPayload::from(bytes), options)
            .await;
        let c = &self.counts;
        c.record(Op::Put, key, started, &result);
        result.map_err(|e| BucketError::storage(key, e))?;
        Ok(())
    }

    /// Removes the object at `key` (missing is fine). The daemons never
    /// delete; operators' tools and the hostile-writer tests do.
    pub async fn delete(&self, key: &str) -> Result<(), BucketError> {
        let started = Instant::now();
        let result = self.store.delete(&Path::from(key)).await;
        let c = &self.counts;
        c.record(Op::Delete, key, started, &result);
        match result {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(BucketError::storage(key, e)),
        }
    }

    /// Reads the object at `key` whatever its type, up to the envelope cap.
    pub async fn get_bytes(&self, key: &str) -> Result<bytes::Bytes, BucketError> {
        Ok(self.fetch(key, envelope::MAX_ENVELOPE_BYTES, None).await?.0)
    }

    /// Reads the body at `key` if the storage says it is at most `max`
    /// bytes and it is not a version already rejected as `kind`. The size
    /// comes with the response headers, so an oversized object is refused
    /// before its body is read.
    async fn fetch(
        &self,
        key: &str,
        max: usize,
        kind: Option<&'static str>,
    ) -> Result<(bytes::Bytes, Version), BucketError> {
        let started = Instant::now();
        let result = self.store.get(&Path::from(key)).await;
        let c = &self.counts;
        c.record(Op::Get, key, started, &result);
        if let Err(object_store::Error::NotFound { .. }) = &result {
            c.get_misses.fetch_add(1, Ordering::Relaxed);
        }
        let result = result.map_err(|e| BucketError::storage(key, e))?;
        let version = version(
            result.meta.size,
            result.meta.e_tag.as_deref(),
            result.meta.last_modified.timestamp_millis().max(0) as u64,
        );
        if let Some(known) = kind.and_then(|kind| self.rejected.lookup(key, kind, &version)) {
            return Err(known.into());
        }
        if result.meta.size > max as u64 {
            let rejection = Rejection {
                key: key.to_string(),
                reason: RejectReason::TooLarge(result.meta.size as usize),
            };
            if let Some(kind) = kind {
                self.rejected.remember(&rejection, kind, version);
            }
            return Err(rejection.into());
        }
        let body = result
            .bytes()
            .await
            .map_err(|e| BucketError::storage(key, e))?;
        c.bytes_read.fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok((body, version))
    }

    /// Reads and verifies the record at `key`. An object larger than its
    /// record type allows is refused unread, and one rejected before is not
    /// read again until it changes.
    pub async fn get<T: Record>(
        &self,
        key: &str,
        expect: Expect<'_>,
    ) -> Result<Verified<T>, BucketError> {
        let (bytes, version) = self.fetch(key, T::MAX_BYTES, Some(T::TYPE)).await?;
        envelope::open(&bytes, key, expect).map_err(|rejection| {
            self.rejected.remember(&rejection, T::TYPE, version);
            rejection.into()
        })
    }

    /// Like [`Bucket::get`] for an object a listing returned: a version
    /// already rejected, or one larger than its type allows, costs no
    /// request at all.
    pub async fn get_listed<T: Record>(
        &self,
        object: &Listed,
        expect: Expect<'_>,
    ) -> Result<Verified<T>, BucketError> {
        let version = version(
            object.size,
            object.e_tag.as_deref(),
            object.modified_unix_ms,
        );
        if let Some(known) = self.rejected.lookup(&object.key, T::TYPE, &version) {
            return Err(known.into());
        }
        if object.size > T::MAX_BYTES as u64 {
            let rejection = Rejection {
                key: object.key.clone(),
                reason: RejectReason::TooLarge(object.size as usize),
            };
            self.rejected.remember(&rejection, T::TYPE, version);
            return Err(rejection.into());
        }
        let result = self.get(&object.key, expect).await;
        if let Err(BucketError::Rejected(rejection)) = &result {
            // Listings and reads may describe a version differently (write
            // times at other precisions): remember the listing's view too.
            self.rejected.remember(rejection, T::TYPE, version);
        }
        result
    }

    /// Like [`Bucket::get`], with a missing object as `None`.
    pub async fn get_opt<T: Record>(
        &self,
        key: &str,
        expect: Expect<'_>,
    ) -> Result<Option<Verified<T>>, BucketError> {
        match self.get(key, expect).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Keys under `prefix` in lexicographic order, starting after `after`.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<Vec<String>, BucketError> {
        Ok(self
            .list_meta(prefix, after)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect())
    }

    /// Like [`Bucket::list`], with each object's size and the time the
    /// storage (not the writer) says it was last written.
    pub async fn list_meta(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<Vec<Listed>, BucketError> {
        let started = Instant::now();
        let dir = Path::from(prefix.trim_end_matches('/'));
        let stream = match after {
            Some(offset) => self.store.list_with_offset(Some(&dir), &Path::from(offset)),
            None => self.store.list(Some(&dir)),
        };
        let listed: Result<Vec<_>, _> = stream.try_collect().await;
        let c = &self.counts;
        c.record(Op::List, prefix, started, &listed);
        let metas = match listed {
            Ok(metas) => metas,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(BucketError::storage(prefix, e)),
        };
        let mut objects: Vec<Listed> = metas
            .into_iter()
            .map(Listed::from)
            .filter(|o| o.key.starts_with(prefix))
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

impl Bucket {
    /// The objects of a run's step-keyed family (receipts or verdicts) in
    /// `steps` (sorted), in one request for any number of steps. `all` is
    /// the family's prefix and `of_step` a step's prefix in it: `all`
    /// followed by one path segment. Keys sort by step below
    /// [`SORTED_STEPS`](crate::paths::SORTED_STEPS), so the listing starts
    /// after the first step's prefix; with a step of seven digits or more
    /// it lists the whole family. Either way it keeps only what is under
    /// the steps asked for.
    pub async fn list_steps(
        &self,
        all: &str,
        of_step: impl Fn(u32) -> String,
        steps: &[u32],
    ) -> Result<Vec<Listed>, BucketError> {
        let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else {
            return Ok(Vec::new());
        };
        if first == last {
            return self.list_meta(&of_step(first), None).await;
        }
        let after = (last < crate::paths::SORTED_STEPS).then(|| of_step(first));
        let mut listed = self.list_meta(all, after.as_deref()).await?;
        let wanted: std::collections::HashSet<String> = steps.iter().map(|&s| of_step(s)).collect();
        listed.retain(|o| {
            let segment = o.key.get(all.len()..).and_then(|rest| rest.find('/'));
            segment.is_some_and(|end| wanted.contains(&o.key[..all.len() + end + 1]))
        });
        Ok(listed)
    }
}

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// The storage's entity tag of this version, where it gives one.
    pub e_tag: Option<String>,
    /// When the storage says the object was written, in Unix milliseconds.
    pub modified_unix_ms: u64,
}

impl From<object_store::ObjectMeta> for Listed {
    fn from(m: object_store::ObjectMeta) -> Self {
        Listed {
            key: m.location.to_string(),
            size: m.size,
            e_tag: m.e_tag,
            modified_unix_ms: m.last_modified.timestamp_millis().max(0) as u64,
        }
    }
}

impl Bucket {
    /// Names of the immediate sub-directories of `prefix` (one request,
    /// without listing everything below them).
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, BucketError> {
        let (dirs, _) = self.list_one_level(prefix).await?;
        let mut names: Vec<String> = dirs
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The objects directly in `prefix`, not in its sub-directories, with
    /// their metadata as in [`Bucket::list_meta`] (one request).
    pub async fn list_files(&self, prefix: &str) -> Result<Vec<Listed>, BucketError> {
        let (_, objects) = self.list_one_level(prefix).await?;
        let mut objects: Vec<Listed> = objects.into_iter().map(Listed::from).collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// One delimited (counted) listing of `prefix`: its sub-directories and
    /// its objects; a missing prefix has neither.
    async fn list_one_level(
        &self,
        prefix: &str,
    ) -> Result<(Vec<Path>, Vec<object_store::ObjectMeta>), BucketError> {
        let started = Instant::now();
        let dir = Path::from(prefix.trim_end_matches('/'));
        let listed = self.store.list_with_delimiter(Some(&dir)).await;
        let c = &self.counts;
        c.record(Op::List, prefix, started, &listed);
        match listed {
            Ok(listing) => Ok((listing.common_prefixes, listing.objects)),
            Err(object_store::Error::NotFound { .. }) => Ok((Vec::new(), Vec::new())),
            Err(e) => Err(BucketError::storage(prefix, e)),
        }
    }
}

fn region(s3: &S3Options) -> String {
    s3.region.clone().unwrap_or_else(|| "us-east-1".into())
}

/// Presigns for the same bucket URL and credentials as [`open_s3`]'s client.
fn presigner(name: &str, s3: &S3Options) -> Result<Presigner, String> {
    let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) else {
        return Err("no S3 credentials to presign with".into());
    };
    Presigner::new(&PresignConfig {
        bucket: name,
        endpoint: s3.endpoint.as_deref(),
        region: &region(s3),
        path_style: s3.path_style,
        access_key_id: id,
        secret_access_key: secret,
        session_token: s3.session_token.as_deref(),
    })
    .map_err(|e| e.to_string())
}

fn open_s3(name: &str, s3: &S3Options) -> Result<AmazonS3, String> {
    crate::tls::install_crypto_provider();
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(name)
        .with_region(region(s3))
        .with_virtual_hosted_style_request(!s3.path_style)
        // A few quick retries: a wrong credential or endpoint should surface
        // as one clear error, not minutes of back-off.
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(30),
            ..Default::default()
        });
    if let Some(endpoint) = &s3.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if s3.anonymous {
        builder = builder.with_skip_signature(true);
    } else {
        match (&s3.access_key_id, &s3.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = &s3.session_token {
                    builder = builder.with_token(token);
                }
            }
            _ => {
                return Err(
                    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                            (or S3_ANONYMOUS=1 for read-only access to a public bucket)"
                        .into(),
                );
            }
        }
    }
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::SORTED_STEPS;
    use crate::pb;

    /// The steps asked for, in one request, on a directory and in memory;
    /// nothing of the steps between or after them.
    #[tokio::test]
    async fn list_steps_lists_the_steps_asked_for_in_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let on_disk = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
        let in_memory = Bucket::from_store(
            Arc::new(object_store::memory::InMemory::new()),
            "memory://",
            3,
        );
        for bucket in [on_disk, in_memory] {
            let layout = bucket.layout().clone();
            for step in [1, 2, 3, 5, 6, SORTED_STEPS, SORTED_STEPS + 1] {
                for job in ["a", "b"] {
                    let key = layout.receipt("r", step, job, 1);
                    bucket
                        .put_bytes(&key, b"x".to_vec(), PutMode::Overwrite)
                        .await
                        .unwrap();
                }
            }
            let of_step = |s| layout.receipts_of_step("r", s);
            let steps_of = |listed: Vec<Listed>| -> Vec<u32> {
                listed
                    .iter()
                    .map(|o| layout.parse_receipt("r", &o.key).unwrap().0)
                    .collect()
            };
            let lists = || bucket.counts().lists.load(Ordering::Relaxed);
            let before = lists();
            let listed = bucket
                .list_steps(&layout.receipts("r"), of_step, &[2, 3, 5])
                .await
                .unwrap();
            assert_eq!(steps_of(listed), [2, 2, 3, 3, 5, 5]);
            assert_eq!(lists() - before, 1, "one request");
            let listed = bucket
                .list_steps(&layout.receipts("r"), of_step, &[6, SORTED_STEPS + 1])
                .await
                .unwrap();
            assert_eq!(steps_of(listed), [6, 6, SORTED_STEPS + 1, SORTED_STEPS + 1]);
            assert_eq!(lists() - before, 2, "one request for unsorted steps too");
            assert!(
                bucket
                    .list_steps(&layout.receipts("r"), of_step, &[])
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[tokio::test]
    async fn create_is_create_only_and_list_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
        let owner = Keypair::generate();
        let state = pb::RunState {
            run_id: "r".into(),
            ..Default::default()
        };
        for i in 0..3 {
            let key = format!("v1/netuid=3/x/{i:03}.pb");
            bucket.create(&key, &state, &owner).await.unwrap();
        }
        let err = bucket
            .create("v1/netuid=3/x/000.pb", &state, &owner)
            .await
            .unwrap_err();
        assert!(matches!(err, BucketError::AlreadyExists { .. }), "{err}");
        let all = bucket.list("v1/netuid=3/x/", None).await.unwrap();
        assert_eq!(all.len(), 3);
        let rest = bucket.list("v1/netuid=3/x/", Some(&all[0])).await.unwrap();
        assert_eq!(rest, all[1..].to_vec());
        assert!(
            bucket
                .list("v1/netuid=3/none/", None)
                .await
                .unwrap()
                .is_empty()
        );
        let got: Verified<pb::RunState> = bucket
            .get(&all[2], Expect::Signer(&owner.hotkey()))
            .await
            .unwrap();
        assert_eq!(got.run_id, "r");
        assert!(
            bucket
                .get_opt::<pb::RunState>("v1/nope", Expect::AnySigner)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            bucket.list_dirs("v1/netuid=3/").await.unwrap(),
            vec!["x".to_string()]
        );
        // One level only: objects of `x/`, not of `x/deeper/`.
        bucket
            .create("v1/netuid=3/x/deeper/000.pb", &state, &owner)
            .await
            .unwrap();
        let lists = bucket.counts().lists.load(Ordering::Relaxed);
        let files = bucket.list_files("v1/netuid=3/x/").await.unwrap();
        assert_eq!(bucket.counts().lists.load(Ordering::Relaxed), lists + 1);
        let keys: Vec<&str> = files.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, all.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(files.iter().all(|o| o.size > 0));
        assert!(
            bucket
                .list_files("v1/netuid=3/none/")
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A hostile object costs one bounded read: an oversized one is refused
    /// from its size alone, and a rejected one is not read again until it
    /// changes.
    #[tokio::test]
    async fn rejections_cost_once() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path().to_str().unwrap(), 3).unwrap();
        let miner = Keypair::generate();
        let key = "v1/netuid=3/heartbeats/x/w000.pb";
        let big = vec![7u8; 10 << 20];
        bucket
            .put_bytes(key, big.clone(), PutMode::Overwrite)
            .await
            .unwrap();
        let read = || async {
            bucket
                .get::<pb::WorkerHeartbeat>(key, Expect::Signer(&miner.hotkey()))
                .await
        };
        let err = read().await.unwrap_err();
        assert!(
            matches!(&err, BucketError::Rejected(r) if matches!(r.reason, RejectReason::TooLarge(n) if n == big.len())),
            "{err}"
        );
        assert_eq!(bucket.counts().bytes_read.load(Ordering::Relaxed), 0);
        let err = read().await.unwrap_err();
        assert!(err.is_repeat_rejection(), "{err}");

        // Garbage small enough to read is read once per version.
        bucket
            .put_bytes(key, vec![0xff; 100], PutMode::Overwrite)
            .await
            .unwrap();
        for _ in 0..5 {
            assert!(read().await.is_err());
        }
        let listed = bucket
            .list_meta("v1/netuid=3/heartbeats/", None)
            .await
            .unwrap();
        let gets = bucket.counts().gets.load(Ordering::Relaxed);
        for _ in 0..5 {
            let err = bucket
                .get_listed::<pb::WorkerHeartbeat>(&listed[0], Expect::Signer(&miner.hotkey()))
                .await
                .unwrap_err();
            assert!(err.is_repeat_rejection(), "{err}");
        }
        assert_eq!(
            bucket.counts().gets.load(Ordering::Relaxed),
            gets,
            "listed versions cost no request"
        );
        assert_eq!(bucket.counts().bytes_read.load(Ordering::Relaxed), 100);

        // A new version is read: here the miner's real heartbeat.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let hb = pb::WorkerHeartbeat {
            worker: 0,
            ..Default::default()
        };
        bucket.put(key, &hb, &miner).await.unwrap();
        assert!(read().await.is_ok());
        // A signer one reader refuses is not remembered as a rejection.
        let other = Keypair::generate().hotkey();
        let refused = bucket
            .get::<pb::WorkerHeartbeat>(key, Expect::Signer(&other))
            .await
            .unwrap_err();
        assert!(!refused.is_repeat_rejection());
        assert!(read().await.is_ok());
    }
}
