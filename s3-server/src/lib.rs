//! A loopback S3-compatible server for tests and local fleets.
//!
//! The server stores objects in a directory (one sub-directory per bucket, via
//! `s3s-fs`) and verifies AWS SigV4 on every request, both header-signed and
//! presigned (query-signed, including expiry). Each start mints two random
//! credential pairs:
//!
//! * `writer`: every S3 operation is allowed.
//! * `reader`: only [`READER_OPERATIONS`] are allowed; anything else (every
//!   write) is refused with `403 AccessDenied`.
//!
//! Anonymous (unsigned) requests are refused with `403 AccessDenied`.
//!
//! Conditional writes (`If-None-Match: *`, `If-Match: <etag>`) on `PutObject`
//! and `CompleteMultipartUpload` are honoured and answered with
//! `412 PreconditionFailed`; this crate serialises conditional writes per key
//! so that two racing `If-None-Match: *` creates cannot both succeed.
//!
//! One server process must own a root directory at a time: the file-system
//! backend names its temporary files with a per-process counter and removes
//! stale temporary files at start.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use rand::Rng;
use rand::distr::Alphanumeric;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use s3s_fs::FileSystem;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// S3 operations (as named by the S3 API) that the `reader` credentials may
/// perform. Everything else is refused for the reader.
pub const READER_OPERATIONS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "ListObjects",
    "ListObjectsV2",
    "ListBuckets",
    "HeadBucket",
    "GetBucketLocation",
];

/// The region the server reports and that clients should sign for.
pub const REGION: &str = "us-east-1";

/// How long [`S3Server::stop`] waits for in-flight connections to finish.
const GRACEFUL_TIMEOUT: Duration = Duration::from_secs(5);

/// An access key id and secret access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Random credentials; `prefix` makes the role visible in server logs.
    fn random(prefix: &str) -> Self {
        let mut rng = rand::rng();
        let mut id = String::from(prefix);
        id.extend(
            (&mut rng)
                .sample_iter(Alphanumeric)
                .take(20 - prefix.len().min(20))
                .map(|b| char::from(b).to_ascii_uppercase()),
        );
        let secret: String = (&mut rng)
            .sample_iter(Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        Self {
            access_key_id: id,
            secret_access_key: secret,
        }
    }

    /// `{"access_key_id": ..., "secret_access_key": ...}`
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
        })
    }
}

/// A running server. Dropping it (or calling [`S3Server::stop`]) shuts it down.
#[derive(Debug)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The bucket created at start.
    pub bucket: String,
    /// Full-access credentials.
    pub writer: Credentials,
    /// Read-only credentials (see [`READER_OPERATIONS`]).
    pub reader: Credentials,
    /// The bound socket address.
    pub addr: SocketAddr,
    /// The storage root directory (buckets are sub-directories).
    pub root: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl S3Server {
    /// The description printed by the binary:
    /// `{"endpoint", "bucket", "writer": {..}, "reader": {..}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "region": REGION,
            "writer": self.writer.to_json(),
            "reader": self.reader.to_json(),
        })
    }

    /// Stops accepting connections, lets in-flight requests finish (up to a
    /// few seconds) and waits for the server task to end.
    pub async fn stop(mut self) {
        self.signal_shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Resolves when the server task has ended (after a stop, or on a fatal
    /// listener error).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// Starts a server on `127.0.0.1` with an OS-chosen port.
pub async fn start(root_dir: &Path, bucket: &str) -> Result<S3Server> {
    start_on(root_dir, bucket, 0).await
}

/// Starts a server on `127.0.0.1:port` (`0` picks a free port), storing data
/// under `root_dir` and creating `root_dir/bucket` if missing.
pub async fn start_on(root_dir: &Path, bucket: &str, port: u16) -> Result<S3Server> {
    validate_bucket_name(bucket)?;
    std::fs::create_dir_all(root_dir.join(bucket))
        .with_context(|| format!("creating bucket directory under {}", root_dir.display()))?;
    let root = root_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", root_dir.display()))?;

    let writer = Credentials::random("LOCUSW");
    let reader = Credentials::random("LOCUSR");

    let fs =
        FileSystem::new(&root).map_err(|e| anyhow::anyhow!("opening {}: {e:?}", root.display()))?;
    let backend = Backend {
        fs,
        key_locks: KeyLocks::default(),
    };

    let service = {
        let mut b = S3ServiceBuilder::new(backend);
        let mut auth = SimpleAuth::new();
        auth.register(
            writer.access_key_id.clone(),
            writer.secret_access_key.clone().into(),
        );
        auth.register(
            reader.access_key_id.clone(),
            reader.secret_access_key.clone().into(),
        );
        b.set_auth(auth);
        b.set_access(Policy {
            writer_key: writer.access_key_id.clone(),
            reader_key: reader.access_key_id.clone(),
        });
        b.build()
    };

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, mut shutdown_rx) = oneshot::channel::<()>();

    let task = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        loop {
            let socket = tokio::select! {
                res = listener.accept() => match res {
                    Ok((socket, _)) => socket,
                    Err(err) => {
                        eprintln!("locus-s3-server: accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown_rx => break,
            };
            let _ = socket.set_nodelay(true);
            let conn = http.serve_connection(TokioIo::new(socket), service.clone());
            let conn = graceful.watch(conn.into_owned());
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        drop(listener);
        let _ = tokio::time::timeout(GRACEFUL_TIMEOUT, graceful.shutdown()).await;
    });

    Ok(S3Server {
        endpoint: format!("http://{addr}"),
        bucket: bucket.to_owned(),
        writer,
        reader,
        addr,
        root,
        shutdown: Some(shutdown_tx),
        task: Some(task),
    })
}

fn validate_bucket_name(bucket: &str) -> Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.'])
        && !bucket.contains("..");
    if !ok {
        bail!("invalid bucket name {bucket:?}: use 3-63 characters of a-z, 0-9, '-' and '.'");
    }
    Ok(())
}

/// Authorisation: the writer may do anything, the reader only
/// [`READER_OPERATIONS`], anyone else nothing.
struct Policy {
    writer_key: String,
    reader_key: String,
}

#[async_trait::async_trait]
impl S3Access for Policy {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(creds) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        let key = creds.access_key.as_str();
        if key == self.writer_key {
            return Ok(());
        }
        if key == self.reader_key {
            let op = cx.s3_op().name();
            if READER_OPERATIONS.contains(&op) {
                return Ok(());
            }
            return Err(s3_error!(
                AccessDenied,
                "{op} is not allowed for read-only credentials"
            ));
        }
        Err(s3_error!(AccessDenied, "Unknown access key"))
    }
}

/// Per-object locks held for the duration of conditional writes, so that the
/// backend's check-then-write is atomic with respect to other conditional
/// writes of the same key.
type KeyLock = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
struct KeyLocks {
    map: StdMutex<HashMap<(String, String), KeyLock>>,
}

impl KeyLocks {
    async fn run<T, F>(&self, bucket: &str, key: &str, f: F) -> T
    where
        F: Future<Output = T>,
    {
        let id = (bucket.to_owned(), key.to_owned());
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id.clone()).or_default().clone()
        };
        // Removes the map entry when the last user is done, also when the
        // request is cancelled while waiting or writing.
        let _entry = EntryGuard {
            locks: self,
            id,
            lock: Arc::clone(&lock),
        };
        let _guard = lock.lock().await;
        f.await
    }
}

struct EntryGuard<'a> {
    locks: &'a KeyLocks,
    id: (String, String),
    lock: KeyLock,
}

impl Drop for EntryGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // The map, this guard and the caller's clone: nobody else uses it.
        if Arc::strong_count(&self.lock) <= 3 {
            map.remove(&self.id);
        }
    }
}

/// The `s3s-fs` backend with conditional writes serialised per key.
struct Backend {
    fs: FileSystem,
    key_locks: KeyLocks,
}

macro_rules! backend_impl {
    ($($op:ident($input:ty) -> $output:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for Backend {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.fs.$op(req).await
                }
            )*

            async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
                if req.input.if_none_match.is_none() && req.input.if_match.is_none() {
                    return self.fs.put_object(req).await;
                }
                let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
                self.key_locks.run(&bucket, &key, self.fs.put_object(req)).await
            }

            async fn complete_multipart_upload(
                &self,
                req: S3Request<CompleteMultipartUploadInput>,
            ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
                if req.input.if_none_match.is_none() && req.input.if_match.is_none() {
                    return self.fs.complete_multipart_upload(req).await;
                }
                let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
                self.key_locks
                    .run(&bucket, &key, self.fs.complete_multipart_upload(req))
                    .await
            }
        }
    };
}

backend_impl! {
    create_bucket(CreateBucketInput) -> CreateBucketOutput;
    copy_object(CopyObjectInput) -> CopyObjectOutput;
    delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
    delete_object(DeleteObjectInput) -> DeleteObjectOutput;
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
    get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
    get_object(GetObjectInput) -> GetObjectOutput;
    head_bucket(HeadBucketInput) -> HeadBucketOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    list_buckets(ListBucketsInput) -> ListBucketsOutput;
    list_objects(ListObjectsInput) -> ListObjectsOutput;
    list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    upload_part_copy(UploadPartCopyInput) -> UploadPartCopyOutput;
    list_parts(ListPartsInput) -> ListPartsOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_shape() {
        let c = Credentials::random("LOCUSW");
        assert_eq!(c.access_key_id.len(), 20);
        assert!(c.access_key_id.starts_with("LOCUSW"));
        assert_eq!(c.secret_access_key.len(), 40);
        assert_ne!(c, Credentials::random("LOCUSW"));
        assert!(!format!("{c:?}").contains(&c.secret_access_key));
    }

    #[tokio::test]
    async fn key_locks_are_released() {
        let locks = KeyLocks::default();
        assert_eq!(locks.run("b", "k", async { 7 }).await, 7);
        assert!(locks.map.lock().unwrap().is_empty());

        // Holder and waiter on one key; the waiter is cancelled while waiting.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut holder = Box::pin(locks.run("b", "k", async {
            let _ = rx.await;
        }));
        let mut waiter = Box::pin(locks.run("b", "k", async {}));
        assert!(futures_poll_once(holder.as_mut()).await.is_none());
        assert!(futures_poll_once(waiter.as_mut()).await.is_none());
        assert_eq!(locks.map.lock().unwrap().len(), 1);
        drop(waiter);
        assert_eq!(locks.map.lock().unwrap().len(), 1);
        drop(tx);
        holder.await;
        assert!(locks.map.lock().unwrap().is_empty());
    }

    async fn futures_poll_once<F: Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[test]
    fn bucket_names() {
        assert!(validate_bucket_name("locus-test").is_ok());
        assert!(validate_bucket_name("ab").is_err());
        assert!(validate_bucket_name("Bad").is_err());
        assert!(validate_bucket_name("../x").is_err());
        assert!(validate_bucket_name("a/b").is_err());
    }
}
