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
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

use crate::digest::Digest;
use crate::envelope::{self, Expect, Rejection, Verified};
use crate::keys::Keypair;
use crate::paths::Layout;
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
}

/// Requests made through one [`Bucket`] handle (and its clones), with their
/// cumulative latency, for metrics and the requests-per-job figure.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub lists: AtomicU64,
    pub errors: AtomicU64,
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

    fn record<T, E>(
        &self,
        count: &AtomicU64,
        micros: &AtomicU64,
        started: Instant,
        result: &Result<T, E>,
    ) {
        count.fetch_add(1, Ordering::Relaxed);
        micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A handle on one subnet's part of the bucket. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    url: String,
    counts: Arc<RequestCounts>,
}

impl Bucket {
    /// Opens `url`: a local directory (`/path`, `file:///path`), created if missing.
    pub fn open(url: &str, netuid: u16) -> Result<Self, BucketError> {
        let open_err = |reason: String| BucketError::Open {
            url: url.to_string(),
            reason,
        };
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if dir.contains("://") {
            return Err(open_err(
                "unsupported scheme; use a local directory path or file:// URL".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| open_err(e.to_string()))?;
        Ok(Self::from_store(Arc::new(store), url, netuid))
    }

    pub fn from_store(store: Arc<dyn ObjectStore>, url: &str, netuid: u16) -> Self {
        Bucket {
            store,
            layout: Layout::new(netuid),
            url: url.to_string(),
            counts: Arc::default(),
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
        c.record(&c.puts, &c.put_micros, started, &result);
        result.map_err(|e| BucketError::storage(key, e))?;
        Ok(())
    }

    pub async fn get_bytes(&self, key: &str) -> Result<bytes::Bytes, BucketError> {
        let started = Instant::now();
        let result = self.store.get(&Path::from(key)).await;
        let c = &self.counts;
        c.record(&c.gets, &c.get_micros, started, &result);
        let result = result.map_err(|e| BucketError::storage(key, e))?;
        if result.meta.size > envelope::MAX_ENVELOPE_BYTES as u64 {
            return Err(BucketError::Rejected(Rejection {
                key: key.to_string(),
                reason: envelope::RejectReason::TooLarge(result.meta.size as usize),
            }));
        }
        result
            .bytes()
            .await
            .map_err(|e| BucketError::storage(key, e))
    }

    /// Reads and verifies the record at `key`.
    pub async fn get<T: Record>(
        &self,
        key: &str,
        expect: Expect<'_>,
    ) -> Result<Verified<T>, BucketError> {
        let bytes = self.get_bytes(key).await?;
        Ok(envelope::open(&bytes, key, expect)?)
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
        let started = Instant::now();
        let dir = Path::from(prefix.trim_end_matches('/'));
        let stream = match after {
            Some(offset) => self.store.list_with_offset(Some(&dir), &Path::from(offset)),
            None => self.store.list(Some(&dir)),
        };
        let listed: Result<Vec<_>, _> = stream.try_collect().await;
        let c = &self.counts;
        c.record(&c.lists, &c.list_micros, started, &listed);
        let metas = match listed {
            Ok(metas) => metas,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(BucketError::storage(prefix, e)),
        };
        let mut keys: Vec<String> = metas
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

impl Bucket {
    /// Names of the immediate sub-directories of `prefix` (one request,
    /// without listing everything below them).
    pub async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, BucketError> {
        let started = Instant::now();
        let dir = Path::from(prefix.trim_end_matches('/'));
        let listed = self.store.list_with_delimiter(Some(&dir)).await;
        let c = &self.counts;
        c.record(&c.lists, &c.list_micros, started, &listed);
        let listing = match listed {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(BucketError::storage(prefix, e)),
        };
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

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
    }
}
