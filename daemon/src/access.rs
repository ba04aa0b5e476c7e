//! How a worker reads and writes the bucket for one job.
//!
//! On a local-directory bucket a worker writes directly. On S3 a miner holds
//! no write credential: every byte it writes goes through a presigned URL
//! from the owner's grant, sealed to this hotkey, and its inputs are read
//! through the grant's GET URLs too. The storage itself refuses anything the
//! grant does not cover, or anything after it expires: each PUT URL signs the
//! exact body size, and `If-None-Match: *` for objects written once, so the
//! writer pads its envelope to that size and sends the header.

use locus_protocol::envelope::{self, PadError, Sealed};
use locus_protocol::grant::{self, GrantError};
use locus_protocol::tls::LazyHttpClient;
use locus_protocol::{Bucket, BucketError, Expect, Keypair, Record, Verified, pb};
use prost::Message as _;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("{method} {key} through the grant failed: {reason}")]
    Http {
        method: String,
        key: String,
        reason: String,
    },
    #[error("the bucket is remote but the assignment carries no grant")]
    NoGrant,
    /// The object does not fit the size its grant URL signs.
    #[error("{key} does not fit its grant: {source}")]
    TooLarge {
        key: String,
        #[source]
        source: PadError,
    },
}

/// The write path for one assignment.
pub enum Access {
    Direct,
    Granted(pb::Grant),
}

impl Access {
    /// Chooses the path: a grant sealed to `key` if the assignment has one; a
    /// direct write only on a local bucket.
    pub fn for_assignment(
        bucket: &Bucket,
        sealed_grant: &[u8],
        key: &Keypair,
    ) -> Result<Self, AccessError> {
        if !sealed_grant.is_empty() {
            return Ok(Access::Granted(grant::open(sealed_grant, key)?));
        }
        if bucket.is_remote() {
            return Err(AccessError::NoGrant);
        }
        Ok(Access::Direct)
    }

    /// Reads and verifies the record at `key`.
    pub async fn get<T: Record>(
        &self,
        http: &LazyHttpClient,
        bucket: &Bucket,
        key: &str,
        expect: Expect<'_>,
    ) -> Result<Verified<T>, AccessError> {
        match self {
            Access::Granted(grant) if grant.url("GET", key).is_ok() => {
                let url = grant.url("GET", key)?;
                count(&bucket.counts().gets);
                let bytes = send(http.client().get(url), "GET", key).await?;
                Ok(envelope::open(&bytes, key, expect).map_err(BucketError::from)?)
            }
            _ => Ok(bucket.get(key, expect).await?),
        }
    }

    /// Signs `record` for `key` and writes it once.
    pub async fn create<T: Record>(
        &self,
        http: &LazyHttpClient,
        bucket: &Bucket,
        key: &str,
        record: &T,
        signer: &Keypair,
    ) -> Result<locus_protocol::Digest, AccessError> {
        let Sealed { bytes, digest } = envelope::seal(record, key, signer);
        let written = match self {
            Access::Direct => bucket
                .put_bytes(key, bytes, object_store::PutMode::Create)
                .await
                .map_err(AccessError::from),
            Access::Granted(grant) => {
                count(&bucket.counts().puts);
                put_granted(http.client(), grant.entry("PUT", key)?, bytes, true).await
            }
        };
        if let Err(e) = written {
            // Signatures and workloads are deterministic, so a worker that
            // died after writing finds byte-identical content on its retry.
            if !self.already_written(bucket, key, &digest).await {
                return Err(e);
            }
            tracing::info!(key, "already written by an earlier run of this job");
        }
        Ok(digest)
    }

    async fn already_written(
        &self,
        bucket: &Bucket,
        key: &str,
        digest: &locus_protocol::Digest,
    ) -> bool {
        match bucket.get_bytes(key).await {
            Ok(existing) => locus_protocol::pb::Envelope::decode(existing.as_ref())
                .is_ok_and(|env| locus_protocol::Digest::of(&env.payload) == *digest),
            Err(_) => false,
        }
    }
}

/// PUTs sealed `bytes` through a grant URL: padded to exactly the size the
/// URL signs (`content-length`; no padding where it signs none) and, when
/// `create_only`, with `If-None-Match: *`, which grants sign for objects
/// written once. A request that differs from what was signed is refused by
/// the store, so this is the only shape of request that can succeed.
pub async fn put_granted(
    http: &reqwest::Client,
    url: &pb::UrlGrant,
    bytes: Vec<u8>,
    create_only: bool,
) -> Result<(), AccessError> {
    let key = url.key.as_str();
    let body = match url.size {
        0 => bytes,
        size => envelope::pad_to(bytes, usize::try_from(size).unwrap_or(usize::MAX)).map_err(
            |source| AccessError::TooLarge {
                key: key.to_string(),
                source,
            },
        )?,
    };
    let mut request = http
        .put(&url.url)
        .header(reqwest::header::CONTENT_LENGTH, body.len());
    if create_only {
        request = request.header(reqwest::header::IF_NONE_MATCH, "*");
    }
    send(request.body(body), "PUT", key).await.map(|_| ())
}

async fn send(
    request: reqwest::RequestBuilder,
    method: &str,
    key: &str,
) -> Result<bytes::Bytes, AccessError> {
    let err = |reason: String| AccessError::Http {
        method: method.to_string(),
        key: key.to_string(),
        reason,
    };
    let response = request.send().await.map_err(|e| err(e.to_string()))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
        return Err(err(format!("HTTP {status}: {text}")));
    }
    if body.len() > envelope::MAX_ENVELOPE_BYTES {
        return Err(err(format!("{} bytes is too large", body.len())));
    }
    Ok(body)
}

/// Requests through grant URLs count as bucket requests too.
pub fn count(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
