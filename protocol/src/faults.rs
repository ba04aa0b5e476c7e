//! A fault-injecting `ObjectStore` for tests: a fraction of requests fail
//! (or are delayed) so that every daemon's retry paths run for real.
//!
//! Only compiled with the `fault-injection` feature, and only switched on by
//! `LOCUS_FAULT_RATE` (0..1) and optionally `LOCUS_FAULT_LATENCY_MS`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Wraps a store; each request fails with probability `rate`, or (see
/// [`FaultyStore::failing_every_other_put`]) chosen writes fail in turn.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    rate: f64,
    latency: Duration,
    seed: u64,
    counter: AtomicU64,
    /// Only writes to keys ending in this fail, every other one (the first
    /// included), and nothing else does.
    alternate_puts_to: Option<String>,
    pub injected: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, rate: f64, latency: Duration) -> Self {
        FaultyStore {
            inner,
            rate,
            latency,
            seed: u64::from(std::process::id()),
            counter: AtomicU64::new(0),
            alternate_puts_to: None,
            injected: AtomicU64::new(0),
        }
    }

    /// The first, third, fifth… write to any key ending in `suffix` fails;
    /// every other request succeeds. Deterministic, for tests of what a
    /// daemon does when one particular write fails at the worst moment.
    pub fn failing_every_other_put(inner: Arc<dyn ObjectStore>, suffix: &str) -> Self {
        FaultyStore {
            alternate_puts_to: Some(suffix.to_string()),
            ..Self::new(inner, 0.0, Duration::ZERO)
        }
    }

    /// From `LOCUS_FAULT_RATE` / `LOCUS_FAULT_LATENCY_MS`, if set.
    pub fn from_env(inner: Arc<dyn ObjectStore>) -> Option<Self> {
        let rate: f64 = std::env::var("LOCUS_FAULT_RATE").ok()?.parse().ok()?;
        let latency = std::env::var("LOCUS_FAULT_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        tracing::warn!(
            rate,
            latency_ms = latency.as_millis() as u64,
            "injecting storage faults (test only)"
        );
        Some(Self::new(inner, rate.clamp(0.0, 1.0), latency))
    }

    async fn fault(&self, op: &str) -> Result<()> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        self.draw(op)
    }

    /// A deterministic draw per request; `Err` with probability `rate`.
    fn draw(&self, op: &str) -> Result<()> {
        if self.rate <= 0.0 {
            // Leaves the counter to `alternate_puts_to`.
            return Ok(());
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.seed.to_le_bytes());
        hasher.update(&n.to_le_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
        let draw = (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
        if draw < self.rate {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(object_store::Error::Generic {
                store: "fault-injection",
                source: format!("injected fault in {op}").into(),
            });
        }
        Ok(())
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({}, rate {})", self.inner, self.rate)
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        match &self.alternate_puts_to {
            Some(suffix) => {
                if location.as_ref().ends_with(suffix.as_str())
                    && self
                        .counter
                        .fetch_add(1, Ordering::Relaxed)
                        .is_multiple_of(2)
                {
                    self.injected.fetch_add(1, Ordering::Relaxed);
                    return Err(object_store::Error::Generic {
                        store: "fault-injection",
                        source: format!("injected fault in put to {location}").into(),
                    });
                }
            }
            None => self.fault("put").await?,
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.fault("put_multipart").await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.fault("get").await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.fault("get_ranges").await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.faulty_stream(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.faulty_stream(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.fault("list").await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.fault("copy").await?;
        self.inner.copy_opts(from, to, options).await
    }
}

impl FaultyStore {
    fn faulty_stream(
        &self,
        inner: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.draw("list") {
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            Ok(()) => inner,
        }
    }
}
