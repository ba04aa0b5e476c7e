//! Signed envelopes: the only way records enter or leave the bucket.
//!
//! The signature covers a domain-separated message
//! `"locus/v1/envelope\0" ‖ len(type) ‖ type ‖ len(key) ‖ key ‖ BLAKE3(payload)`
//! (lengths as big-endian u32). Binding the bucket key means a valid object
//! copied to another key (a receipt replayed for another job, say) fails
//! verification. [`open`] is the only constructor of [`Verified`], so code
//! holding a `Verified<T>` knows the signature, the record type and the
//! signer's role were checked.

use std::fmt;
use std::ops::Deref;

use prost::Message as _;

use crate::digest::Digest;
use crate::keys::{Hotkey, Keypair};
use crate::pb;
use crate::record::Record;

const DOMAIN: &[u8] = b"locus/v1/envelope\0";

/// Largest envelope a reader will decode. Bounds the memory an untrusted
/// object can make a reader allocate.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024 * 1024;

/// Who must have signed an object for a reader to accept it.
#[derive(Clone, Copy, Debug)]
pub enum Expect<'a> {
    /// Exactly this key (the owner for manifests, the assigned hotkey for receipts).
    Signer(&'a Hotkey),
    /// Any key of a set (the run's validators, for verdicts).
    OneOf(&'a [Hotkey]),
    /// Any valid signature. Only for display (the discovery UI), never for
    /// decisions: callers must check the signer themselves.
    AnySigner,
}

/// Why an object was refused. Always reported together with its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("too large ({0} bytes)")]
    TooLarge(usize),
    #[error("not a signed envelope: {0}")]
    Malformed(String),
    #[error("record type is {found}, expected {expected}")]
    WrongType { expected: String, found: String },
    #[error("signer public key is invalid")]
    BadSignerKey,
    #[error("signature does not verify for signer {signer} at this key")]
    BadSignature { signer: String },
    #[error("signed by {signer}, expected {expected}")]
    UnexpectedSigner { signer: String, expected: String },
    #[error("payload does not decode as {record}: {error}")]
    BadPayload { record: String, error: String },
    #[error("{0}")]
    Inconsistent(String),
    /// The object has not changed since it was rejected for this reason; it
    /// was not read again.
    #[error("unchanged since rejected: {0}")]
    Unchanged(Box<RejectReason>),
}

impl RejectReason {
    /// Whether the rejection holds whoever reads the object, whatever they
    /// expect of it: such a rejection can be remembered and reused until the
    /// object changes. (A signer that one reader refuses may be the one
    /// another reader wants.)
    pub fn is_intrinsic(&self) -> bool {
        matches!(
            self,
            RejectReason::TooLarge(_)
                | RejectReason::Malformed(_)
                | RejectReason::WrongType { .. }
                | RejectReason::BadSignerKey
                | RejectReason::BadSignature { .. }
                | RejectReason::BadPayload { .. }
                | RejectReason::Unchanged(_)
        )
    }
}

/// An object that failed verification, named by its bucket key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rejected {key}: {reason}")]
pub struct Rejection {
    pub key: String,
    pub reason: RejectReason,
}

/// A record whose envelope verified. Only [`open`] builds one.
#[derive(Clone, Debug)]
pub struct Verified<T> {
    key: String,
    signer: Hotkey,
    digest: Digest,
    size: usize,
    record: T,
}

impl<T> Verified<T> {
    /// The bucket key the object was read from (and signed for).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A record carried inside this one, vouched for by this record's
    /// signature, as if read from `key` (where its own copy is stored).
    pub(crate) fn vouch_for<U: Record>(&self, key: String, record: U) -> Verified<U> {
        let payload = record.encode_to_vec();
        Verified {
            key,
            signer: self.signer,
            digest: Digest::of(&payload),
            size: sealed_len::<U>(payload.len()),
            record,
        }
    }

    pub fn signer(&self) -> &Hotkey {
        &self.signer
    }

    /// BLAKE3 of the payload: what other objects commit to.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Size of the whole envelope in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn into_inner(self) -> T {
        self.record
    }

    /// Further checks of a verified record's fields against what the reader
    /// expected (for example, that a receipt names the job its key names).
    pub fn ensure(self, ok: bool, what: impl FnOnce() -> String) -> Result<Self, Rejection> {
        if ok {
            Ok(self)
        } else {
            Err(Rejection {
                key: self.key,
                reason: RejectReason::Inconsistent(what()),
            })
        }
    }
}

impl<T> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.record
    }
}

fn signing_message(record_type: &str, key: &str, payload_digest: &Digest) -> Vec<u8> {
    let mut msg = Vec::with_capacity(DOMAIN.len() + 8 + record_type.len() + key.len() + 32);
    msg.extend_from_slice(DOMAIN);
    for part in [record_type.as_bytes(), key.as_bytes()] {
        msg.extend_from_slice(&(part.len() as u32).to_be_bytes());
        msg.extend_from_slice(part);
    }
    msg.extend_from_slice(payload_digest.as_bytes());
    msg
}

/// A sealed object: the bytes to store and the digest of its payload.
pub struct Sealed {
    pub bytes: Vec<u8>,
    pub digest: Digest,
}

/// Encodes `record`, signs it for bucket key `key` and wraps it in an envelope.
pub fn seal<T: Record>(record: &T, key: &str, signer: &Keypair) -> Sealed {
    seal_payload(T::TYPE, record.encode_to_vec(), key, signer)
}

/// Signs already encoded payload bytes as a record of `record_type` for
/// bucket key `key`. [`seal`] is this for a typed record; the fuzz targets
/// use it to sign payloads that are not valid records, so they reach the
/// payload decoder behind the signature check.
pub fn seal_payload(record_type: &str, payload: Vec<u8>, key: &str, signer: &Keypair) -> Sealed {
    let (envelope, digest) = sign_envelope(record_type, payload, key, signer);
    Sealed {
        bytes: envelope.encode_to_vec(),
        digest,
    }
}

/// `payload` signed by `signer` as a record of `record_type` for `key`, and
/// the payload's digest.
fn sign_envelope(
    record_type: &str,
    payload: Vec<u8>,
    key: &str,
    signer: &Keypair,
) -> (pb::Envelope, Digest) {
    let digest = Digest::of(&payload);
    let signature = signer.sign(&signing_message(record_type, key, &digest));
    let envelope = signed_envelope(record_type, payload, &signer.hotkey(), signature.to_vec());
    (envelope, digest)
}

/// The envelope of `payload` as a record of `record_type` with `signer`'s
/// `signature` over it: made by [`seal`], or rebuilt from a signature made
/// earlier (a copy carried inside another record).
pub fn signed_envelope(
    record_type: &str,
    payload: Vec<u8>,
    signer: &Hotkey,
    signature: Vec<u8>,
) -> pb::Envelope {
    pb::Envelope {
        record_type: record_type.to_string(),
        payload,
        signer: signer.to_bytes().to_vec(),
        signature,
        padding: Vec::new(),
    }
}

/// Bytes a length-delimited protobuf field with a one-byte key (field
/// numbers 1-15) takes for `len` bytes of content; proto3 leaves an empty
/// field out.
pub fn field_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + prost::encoding::encoded_len_varint(len as u64) + len
    }
}

/// Length of the envelope [`seal`] makes for a `T` whose encoding is
/// `payload_len` bytes long (the signer and signature have fixed sizes), so
/// that a size can be bounded without building the record.
pub fn sealed_len<T: Record>(payload_len: usize) -> usize {
    envelope_len(T::TYPE, payload_len)
}

/// Length of an unpadded envelope of `record_type` around `payload_len`
/// bytes: [`sealed_len`] for a record type given by name (a carried copy).
pub fn envelope_len(record_type: &str, payload_len: usize) -> usize {
    field_len(record_type.len())
        + field_len(payload_len)
        + field_len(ed25519_dalek::PUBLIC_KEY_LENGTH)
        + field_len(ed25519_dalek::SIGNATURE_LENGTH)
}

/// Key of `Envelope.padding`: field 5, wire type 2 (length-delimited).
const PADDING_KEY: u8 = (5 << 3) | 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PadError {
    #[error("the sealed object is {size} bytes, more than the {limit} bytes granted")]
    TooLarge { size: usize, limit: usize },
    #[error("not a sealed envelope")]
    NotSealed,
}

/// Pads the bytes of a sealed envelope to exactly `size` bytes, the size a
/// grant URL signs as `content-length`.
///
/// The padding is an `Envelope.padding` field of zero bytes appended after
/// the other fields: outside the signature, so the object still opens and
/// verifies with the same payload digest, and ignored by every reader. Where
/// a minimal varint cannot make the length come out exact (one byte short of
/// a varint boundary, or one byte of room in all) a length varint is written
/// one byte longer than minimal, which protobuf decoders accept.
pub fn pad_to(mut sealed: Vec<u8>, size: usize) -> Result<Vec<u8>, PadError> {
    let room = size.checked_sub(sealed.len()).ok_or(PadError::TooLarge {
        size: sealed.len(),
        limit: size,
    })?;
    match room {
        0 => {}
        // No field fits in one byte: widen the first field's length instead.
        1 => widen_first_length(&mut sealed)?,
        _ => {
            let (len, width) = padding_length(room - 1);
            sealed.push(PADDING_KEY);
            push_varint(&mut sealed, len, width);
            sealed.resize(size, 0);
        }
    }
    debug_assert_eq!(sealed.len(), size);
    Ok(sealed)
}

/// For `room` bytes after the padding key: the padding's length `n` and the
/// width of its length varint, `n + width == room`. The varint is minimal
/// where that works and one byte wider where it does not (room 129, 16386…).
fn padding_length(room: usize) -> (u64, usize) {
    let fits = |width: usize, extra: usize| {
        room.checked_sub(width)
            .filter(|&n| prost::encoding::encoded_len_varint(n as u64) + extra == width)
            .map(|n| (n as u64, width))
    };
    (1..=10)
        .find_map(|w| fits(w, 0))
        .or_else(|| (2..=10).find_map(|w| fits(w, 1)))
        .expect("every room of at least one byte has a padding length")
}

/// Writes `value` as a varint of exactly `width` bytes (at least minimal).
fn push_varint(out: &mut Vec<u8>, mut value: u64, width: usize) {
    for i in 0..width {
        let more = if i + 1 < width { 0x80 } else { 0 };
        out.push((value & 0x7f) as u8 | more);
        value >>= 7;
    }
}

/// Rewrites the length varint of the envelope's first field (the record
/// type) one byte longer, the same value: the object grows by one byte.
fn widen_first_length(sealed: &mut Vec<u8>) -> Result<(), PadError> {
    // `record_type` is field 1, length-delimited, and never empty in a
    // sealed envelope, so it comes first.
    if sealed.first() != Some(&((1 << 3) | 2)) {
        return Err(PadError::NotSealed);
    }
    let last = (1..sealed.len().min(10))
        .find(|&i| sealed[i] & 0x80 == 0)
        .ok_or(PadError::NotSealed)?;
    sealed[last] |= 0x80;
    sealed.insert(last + 1, 0);
    Ok(())
}

/// Verifies and decodes the object stored at `key`.
pub fn open<T: Record>(
    bytes: &[u8],
    key: &str,
    expect: Expect<'_>,
) -> Result<Verified<T>, Rejection> {
    let reject = |reason| Rejection {
        key: key.to_string(),
        reason,
    };
    if bytes.len() > MAX_ENVELOPE_BYTES.min(T::MAX_BYTES) {
        return Err(reject(RejectReason::TooLarge(bytes.len())));
    }
    let envelope =
        pb::Envelope::decode(bytes).map_err(|e| reject(RejectReason::Malformed(e.to_string())))?;
    open_envelope(&envelope, T::TYPE, key, expect, bytes.len())
}

/// Signs `record` as a copy of the object at `key` to be carried inside
/// another record, under `copy_type`: a record type of its own, so that the
/// copy (which may leave fields out) cannot be stored at `key` and pass for
/// the object there.
pub fn sign_copy<T: Record>(
    record: &T,
    copy_type: &str,
    key: &str,
    signer: &Keypair,
) -> pb::Envelope {
    sign_envelope(copy_type, record.encode_to_vec(), key, signer).0
}

/// Verifies a copy made by [`sign_copy`] as the record at `key`: checked
/// like an object read from the bucket, under `copy_type`.
pub fn open_copy<T: Record>(
    copy: &pb::Envelope,
    copy_type: &str,
    key: &str,
    expect: Expect<'_>,
) -> Result<Verified<T>, Rejection> {
    open_envelope(copy, copy_type, key, expect, copy.encoded_len())
}

/// The checks of [`open`] after decoding: record type, signer key,
/// signature for `key`, signer role, payload.
fn open_envelope<T: Record>(
    envelope: &pb::Envelope,
    record_type: &str,
    key: &str,
    expect: Expect<'_>,
    size: usize,
) -> Result<Verified<T>, Rejection> {
    let reject = |reason| Rejection {
        key: key.to_string(),
        reason,
    };
    if envelope.record_type != record_type {
        return Err(reject(RejectReason::WrongType {
            expected: record_type.to_string(),
            found: truncate(&envelope.record_type),
        }));
    }
    let signer =
        Hotkey::from_bytes(&envelope.signer).map_err(|_| reject(RejectReason::BadSignerKey))?;
    let digest = Digest::of(&envelope.payload);
    if !signer.verify(
        &signing_message(record_type, key, &digest),
        &envelope.signature,
    ) {
        return Err(reject(RejectReason::BadSignature {
            signer: signer.ss58(),
        }));
    }
    let allowed = match expect {
        Expect::Signer(expected) => signer == *expected,
        Expect::OneOf(set) => set.contains(&signer),
        Expect::AnySigner => true,
    };
    if !allowed {
        let expected = match expect {
            Expect::Signer(k) => k.ss58(),
            Expect::OneOf(set) => format!(
                "one of [{}]",
                set.iter().map(Hotkey::ss58).collect::<Vec<_>>().join(", ")
            ),
            Expect::AnySigner => unreachable!("AnySigner accepts every signer"),
        };
        return Err(reject(RejectReason::UnexpectedSigner {
            signer: signer.ss58(),
            expected,
        }));
    }
    let record = T::decode(envelope.payload.as_slice()).map_err(|e| {
        reject(RejectReason::BadPayload {
            record: T::TYPE.to_string(),
            error: e.to_string(),
        })
    })?;
    Ok(Verified {
        key: key.to_string(),
        signer,
        digest,
        size,
        record,
    })
}

fn truncate(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

impl fmt::Display for Expect<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Signer(k) => write!(f, "{k}"),
            Expect::OneOf(set) => write!(f, "one of {} keys", set.len()),
            Expect::AnySigner => f.write_str("any signer"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> pb::Receipt {
        pb::Receipt {
            run_id: "r1".into(),
            job_id: "s00000-forward".into(),
            attempt: 1,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip() {
        let key = Keypair::generate();
        let sealed = seal(&receipt(), "a/b", &key);
        let opened: Verified<pb::Receipt> =
            open(&sealed.bytes, "a/b", Expect::Signer(&key.hotkey())).unwrap();
        assert_eq!(opened.job_id, "s00000-forward");
        assert_eq!(opened.digest(), sealed.digest);
        assert_eq!(*opened.signer(), key.hotkey());
    }

    #[test]
    fn moved_object_fails() {
        let key = Keypair::generate();
        let sealed = seal(&receipt(), "a/b", &key);
        let err =
            open::<pb::Receipt>(&sealed.bytes, "a/c", Expect::Signer(&key.hotkey())).unwrap_err();
        assert!(
            matches!(err.reason, RejectReason::BadSignature { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("a/c"));
    }

    #[test]
    fn wrong_signer_and_type_and_garbage() {
        let key = Keypair::generate();
        let other = Keypair::generate().hotkey();
        let sealed = seal(&receipt(), "k", &key);
        let err = open::<pb::Receipt>(&sealed.bytes, "k", Expect::Signer(&other)).unwrap_err();
        assert!(matches!(err.reason, RejectReason::UnexpectedSigner { .. }));
        let err = open::<pb::Verdict>(&sealed.bytes, "k", Expect::AnySigner).unwrap_err();
        assert!(matches!(err.reason, RejectReason::WrongType { .. }));
        let err = open::<pb::Receipt>(b"\xff\xffgarbage", "k", Expect::AnySigner).unwrap_err();
        assert!(matches!(err.reason, RejectReason::Malformed(_)));
    }

    #[test]
    fn tampered_payload_fails() {
        let key = Keypair::generate();
        let sealed = seal(&receipt(), "k", &key);
        let mut env = pb::Envelope::decode(sealed.bytes.as_slice()).unwrap();
        env.payload.push(0);
        let err = open::<pb::Receipt>(&env.encode_to_vec(), "k", Expect::AnySigner).unwrap_err();
        assert!(matches!(err.reason, RejectReason::BadSignature { .. }));
    }

    fn padded_opens(base: &Sealed, key: &Keypair, size: usize) {
        let padded = pad_to(base.bytes.clone(), size).unwrap();
        assert_eq!(padded.len(), size);
        let env = pb::Envelope::decode(padded.as_slice()).unwrap();
        assert!(env.padding.iter().all(|&b| b == 0));
        assert_eq!(Digest::of(&env.payload), base.digest, "size {size}");
        let opened = open::<pb::Receipt>(&padded, "k", Expect::Signer(&key.hotkey()));
        if size > <pb::Receipt as Record>::MAX_BYTES {
            // Padding counts towards the record type's cap like any byte.
            assert!(matches!(
                opened.unwrap_err().reason,
                RejectReason::TooLarge(n) if n == size
            ));
            return;
        }
        let opened = opened.unwrap();
        assert_eq!(opened.digest(), base.digest, "size {size}");
        assert_eq!(opened.size(), size);
        assert_eq!(opened.job_id, receipt().job_id);
    }

    #[test]
    fn padding_reaches_every_size_and_keeps_the_signature() {
        let key = Keypair::generate();
        // Payloads from empty to past the one- and two-byte varint bounds.
        for extra in [0usize, 1, 50, 100, 127, 128, 200, 16_300, 16_383, 16_384] {
            let mut record = receipt();
            record.device = "d".repeat(extra);
            let base = seal(&record, "k", &key);
            assert_eq!(
                base.bytes.len(),
                sealed_len::<pb::Receipt>(record.encoded_len())
            );
            let n = base.bytes.len();
            // Every size up to a few past each varint boundary of the padding.
            let sizes = (n..n + 300).chain(n + 16_300..n + 16_500).chain([
                n + (1 << 21) - 2,
                n + (1 << 21),
                n + (1 << 21) + 3,
            ]);
            for size in sizes {
                padded_opens(&base, &key, size);
            }
            assert_eq!(
                pad_to(base.bytes.clone(), n - 1).unwrap_err(),
                PadError::TooLarge {
                    size: n,
                    limit: n - 1
                }
            );
        }
        assert_eq!(pad_to(vec![0x12, 0], 3).unwrap_err(), PadError::NotSealed);
    }

    #[test]
    fn sealed_len_matches_seal() {
        let key = Keypair::generate();
        let empty = seal(&pb::RunState::default(), "k", &key);
        assert_eq!(empty.bytes.len(), sealed_len::<pb::RunState>(0));
        for n in [1usize, 127, 128, 16_383, 16_384, 70_000] {
            let artifact = pb::TensorArtifact {
                run_id: "r".into(),
                tensors: vec![pb::Tensor {
                    data: vec![7; n],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let sealed = seal(&artifact, "k", &key);
            assert_eq!(
                sealed.bytes.len(),
                sealed_len::<pb::TensorArtifact>(artifact.encoded_len())
            );
        }
    }
}
