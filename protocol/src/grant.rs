//! Assignment grants: presigned URLs sealed to one miner's hotkey.
//!
//! In a fleet the owner holds the bucket's write credentials and miners hold
//! none. For each assignment the owner presigns exactly the requests that job
//! needs (GET each input, PUT the output artifact and the receipt), valid
//! until the job's deadline, and seals them to the miner's hotkey: the
//! ED25519 public key is mapped to X25519 and the grant is encrypted as a
//! libsodium-compatible sealed box (`crypto_box`). The sealed bytes travel
//! inside the owner-signed assignment, so they can be neither read by anyone
//! else nor altered.
//!
//! Every PUT URL signs the exact body size (`content-length`, carried as
//! [`pb::UrlGrant::size`] so the writer can pad to it) and, for objects
//! written once, `if-none-match: *` (see [`crate::presign`]): a grant cannot
//! be used to replace an object or to upload more than the owner meant to
//! read back.

use crypto_box::aead::OsRng;
use ed25519_dalek::SigningKey;
use prost::Message as _;

use crate::keys::{Hotkey, Keypair};
use crate::pb;

/// The size every heartbeat is padded to, and that a heartbeat grant URL
/// signs. The largest heartbeat a worker writes is about 300 bytes.
pub const HEARTBEAT_SIZE: u64 = 1024;

/// The size every receipt is padded to, and that a job grant's receipt URL
/// signs. The largest receipt a worker writes is about 800 bytes.
pub const RECEIPT_SIZE: u64 = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("cannot seal grant: {0}")]
    Seal(String),
    #[error("grant is not sealed to this hotkey (or was tampered with)")]
    Open,
    #[error("grant does not decode: {0}")]
    Decode(String),
    #[error("grant is for hotkey {found}, not {expected}")]
    WrongHotkey { expected: String, found: String },
    #[error("grant has no {method} URL for {key}")]
    NoUrl { method: String, key: String },
    #[error("grant expired")]
    Expired,
    #[error("cannot presign: {0}")]
    Presign(String),
}

/// The size every audit result is padded to, and that an audit job's grant
/// URL signs. The largest result an auditor writes is about 1 KiB.
pub const AUDIT_RESULT_SIZE: u64 = 4096;

/// Whom a grant is for, for what, and until when.
pub struct Scope<'a> {
    pub hotkey: Hotkey,
    pub run_id: &'a str,
    pub job_id: &'a str,
    pub attempt: u32,
    pub expires_ms: u64,
}

#[cfg(feature = "io")]
/// Presigns each `(method, key, conditions)` of `wanted` on `bucket` until
/// the scope expires (at least a second from `now_ms`) and names them in a
/// grant for the scope's hotkey. Errors where the bucket cannot presign.
pub fn presign(
    bucket: &crate::Bucket,
    scope: &Scope<'_>,
    wanted: Vec<(&str, String, crate::presign::Conditions)>,
    now_ms: u64,
) -> Result<pb::Grant, GrantError> {
    let valid_for =
        std::time::Duration::from_millis(scope.expires_ms.saturating_sub(now_ms).max(1000));
    let mut urls = Vec::with_capacity(wanted.len());
    for (method, key, conditions) in wanted {
        let url = bucket
            .presign(method, &key, valid_for, conditions)
            .map_err(|e| GrantError::Presign(e.to_string()))?
            .ok_or_else(|| GrantError::Presign(format!("{key}: the bucket cannot presign")))?;
        urls.push(pb::UrlGrant {
            method: method.into(),
            key,
            url,
            size: conditions.exact_size.unwrap_or(0),
        });
    }
    Ok(pb::Grant {
        run_id: scope.run_id.into(),
        job_id: scope.job_id.into(),
        attempt: scope.attempt,
        hotkey: scope.hotkey.to_bytes().to_vec(),
        expires_unix_ms: scope.expires_ms,
        urls,
    })
}

/// Encrypts `grant` so that only `to` can read it.
pub fn seal(grant: &pb::Grant, to: &Hotkey) -> Result<Vec<u8>, GrantError> {
    let x25519 = crypto_box::PublicKey::from(to.verifying_key().to_montgomery().to_bytes());
    x25519
        .seal(&mut OsRng, &grant.encode_to_vec())
        .map_err(|e| GrantError::Seal(e.to_string()))
}

/// Decrypts a grant sealed to `key` and checks it names `key`'s hotkey.
pub fn open(sealed: &[u8], key: &Keypair) -> Result<pb::Grant, GrantError> {
    let signing = SigningKey::from_bytes(&key.seed());
    let x25519 = crypto_box::SecretKey::from(signing.to_scalar_bytes());
    let plain = x25519.unseal(sealed).map_err(|_| GrantError::Open)?;
    let grant =
        pb::Grant::decode(plain.as_slice()).map_err(|e| GrantError::Decode(e.to_string()))?;
    let me = key.hotkey();
    if grant.hotkey != me.to_bytes() {
        let found = Hotkey::from_bytes(&grant.hotkey)
            .map(|h| h.ss58())
            .unwrap_or_else(|_| "an invalid key".into());
        return Err(GrantError::WrongHotkey {
            expected: me.ss58(),
            found,
        });
    }
    Ok(grant)
}

impl pb::Grant {
    /// The presigned URL for `method` on `key`, with its signed size.
    pub fn entry(&self, method: &str, key: &str) -> Result<&pb::UrlGrant, GrantError> {
        self.urls
            .iter()
            .find(|u| u.method == method && u.key == key)
            .ok_or_else(|| GrantError::NoUrl {
                method: method.to_string(),
                key: key.to_string(),
            })
    }

    /// The presigned URL for `method` on `key`.
    pub fn url(&self, method: &str, key: &str) -> Result<&str, GrantError> {
        self.entry(method, key).map(|u| u.url.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant_for(hotkey: &Hotkey) -> pb::Grant {
        pb::Grant {
            run_id: "r".into(),
            job_id: "j".into(),
            attempt: 1,
            hotkey: hotkey.to_bytes().to_vec(),
            expires_unix_ms: 1,
            urls: vec![pb::UrlGrant {
                method: "PUT".into(),
                key: "k".into(),
                url: "http://127.0.0.1/k?X-Amz-Signature=abc".into(),
                size: 4096,
            }],
        }
    }

    #[test]
    fn only_the_recipient_can_open() {
        let (a, b) = (Keypair::generate(), Keypair::generate());
        let sealed = seal(&grant_for(&a.hotkey()), &a.hotkey()).unwrap();
        let opened = open(&sealed, &a).unwrap();
        assert_eq!(
            opened.url("PUT", "k").unwrap(),
            "http://127.0.0.1/k?X-Amz-Signature=abc"
        );
        assert_eq!(opened.entry("PUT", "k").unwrap().size, 4096);
        assert!(opened.url("GET", "k").is_err());
        assert_eq!(open(&sealed, &b).unwrap_err(), GrantError::Open);
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let a = Keypair::generate();
        let mut sealed = seal(&grant_for(&a.hotkey()), &a.hotkey()).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(open(&sealed, &a).unwrap_err(), GrantError::Open);
    }

    #[test]
    fn grant_naming_another_hotkey_is_refused() {
        let (a, b) = (Keypair::generate(), Keypair::generate());
        let sealed = seal(&grant_for(&b.hotkey()), &a.hotkey()).unwrap();
        assert!(matches!(
            open(&sealed, &a),
            Err(GrantError::WrongHotkey { .. })
        ));
    }

    /// The largest heartbeat and receipt a worker can write, sealed, against
    /// their size classes: ids at their 64-character limit, every number at
    /// its widest, the longest device and CPU-feature strings.
    #[test]
    fn size_classes_hold_the_largest_records() {
        use crate::envelope::seal;
        use crate::paths::Layout;
        let key = Keypair::generate();
        let hotkey = key.hotkey();
        let layout = Layout::new(u16::MAX);
        let id = "x".repeat(64);
        let heartbeat = pb::WorkerHeartbeat {
            hotkey: hotkey.to_bytes().to_vec(),
            worker: u32::MAX,
            device: format!("cuda:{}", usize::MAX),
            backend: "burn-ndarray-f32".into(),
            unix_ms: u64::MAX,
            current_job: id.clone(),
            pid: u32::MAX,
            version: "999.999.999-rc.999".into(),
            jobs_done: u64::MAX,
        };
        let hb_key = layout.heartbeat(&hotkey, u32::MAX);
        let hb = seal(&heartbeat, &hb_key, &key).bytes.len() as u64;
        let receipt = pb::Receipt {
            run_id: id.clone(),
            job_id: id.clone(),
            attempt: u32::MAX,
            hotkey: hotkey.to_bytes().to_vec(),
            worker: u32::MAX,
            assignment_key: layout.assignment(&hotkey, u32::MAX, u64::MAX),
            manifest_digest: vec![0xff; 32],
            output: Some(pb::OutputCommitment {
                key: layout.artifact(&id, &id, u32::MAX),
                digest: vec![0xff; 32],
                size: u64::MAX,
            }),
            backend: "burn-ndarray-f32".into(),
            device: format!("cuda:{}", usize::MAX),
            cpu_features: "avx2,fma,avx512f".into(),
            started_unix_ms: u64::MAX,
            finished_unix_ms: u64::MAX,
            claimed_cost: Some(pb::StaticCost {
                flops: u64::MAX,
                bytes_moved: u64::MAX,
            }),
            step: u32::MAX,
            assignment: None,
        };
        let receipt_key = layout.receipt(&id, u32::MAX, &id, u32::MAX);
        let rc = seal(&receipt, &receipt_key, &key).bytes.len() as u64;
        println!("largest sealed heartbeat {hb} bytes, receipt {rc} bytes");
        // At least twice the room the largest needs.
        assert!(2 * hb <= HEARTBEAT_SIZE, "heartbeat {hb}");
        assert!(2 * rc <= RECEIPT_SIZE, "receipt {rc}");

        // A receipt carrying its assignment's copy fits the room the owner
        // grants for it, whatever sequence number the copy names.
        let input = input_of(&layout, &id);
        let assignment = pb::Assignment {
            run_id: id.clone(),
            job_id: id.clone(),
            attempt: u32::MAX,
            hotkey: hotkey.to_bytes().to_vec(),
            worker: u32::MAX,
            manifest_key: layout.job_manifest(&id, &id),
            manifest_digest: vec![0xff; 32],
            issued_unix_ms: u64::MAX,
            deadline_unix_ms: u64::MAX,
            step: u32::MAX,
            sealed_grant: vec![0xff; 8192],
            manifest: Some(pb::JobManifest {
                run_id: id.clone(),
                job_id: id.clone(),
                step: u32::MAX,
                inputs: vec![input; 16],
                ..Default::default()
            }),
            next_seq: Some(0),
            copy_signature: Vec::new(),
        };
        let assignment_key = layout.assignment(&hotkey, u32::MAX, u64::MAX);
        let signed = pb::Assignment {
            copy_signature: crate::attribution::sign_assignment_copy(
                &assignment,
                &assignment_key,
                &key,
            ),
            ..assignment.clone()
        };
        let carrying = pb::Receipt {
            assignment: crate::attribution::carry_assignment(&signed, &hotkey),
            ..receipt
        };
        let rc = seal(&carrying, &receipt_key, &key).bytes.len() as u64;
        let room = crate::attribution::receipt_size(&assignment);
        assert_eq!(
            room,
            RECEIPT_SIZE + crate::attribution::carried_assignment_bound(&assignment)
        );
        assert!(rc <= room, "receipt carrying its assignment: {rc} > {room}");
        // The bound is what the widest copy (the largest sequence number)
        // adds to a receipt, to the byte.
        let widest = pb::Assignment {
            next_seq: Some(u64::MAX),
            ..signed.clone()
        };
        let carried = pb::Receipt {
            assignment: crate::attribution::carry_assignment(&widest, &hotkey),
            ..Default::default()
        };
        assert_eq!(
            carried.encoded_len() as u64,
            crate::attribution::carried_assignment_bound(&assignment)
        );
        assert!(crate::attribution::copy_fits(&assignment));
        let opened = crate::attribution::carried_assignment(&carrying, &hotkey).expect("verifies");
        assert_eq!(opened.sealed_grant, Vec::<u8>::new());
        assert_eq!(opened.next_seq, Some(0));
        // A manifest naming thousands of inputs: no copy, the receipt keeps
        // to its own size.
        let huge = pb::Assignment {
            manifest: Some(pb::JobManifest {
                inputs: vec![input_of(&layout, &id); 1000],
                ..pb::JobManifest::default()
            }),
            ..assignment
        };
        assert!(!crate::attribution::copy_fits(&huge));
        assert_eq!(crate::attribution::receipt_size(&huge), RECEIPT_SIZE);
    }

    fn input_of(layout: &crate::Layout, id: &str) -> pb::InputRef {
        pb::InputRef {
            key: layout.artifact(id, id, u32::MAX),
            digest: vec![0xff; 32],
            writer: vec![0xff; 32],
        }
    }
}
