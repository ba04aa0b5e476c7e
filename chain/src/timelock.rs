//! Drand timelock encryption of commit-reveal weights, byte for byte as Subtensor
//! decrypts them.
//!
//! On a subnet with commit-reveal on, a validator does not send its weights in the
//! clear: it encrypts them to a future round of drand's *quicknet* beacon with
//! Boneh–Franklin identity-based encryption (the identity is the round, the key the
//! beacon's signature of it) and calls `commit_timelocked_weights`. When that round's
//! signature is published the chain decrypts and applies the weights itself.
//!
//! The curve arithmetic, the IBE and the AES-GCM body come from the `timelock` crate
//! (Ideal Labs, the scheme's authors). The framing of the ciphertext does not: the
//! chain and the Bittensor SDK (PyPI `bittensor-drand`) read the header's `v` and `w`
//! as length-prefixed byte strings, where `timelock` 0.3 writes fixed arrays, so the
//! two are not wire compatible. [`encrypt`] and [`decrypt`] write and read the
//! chain's framing here, with every length bounded before anything is allocated.

use ark_ec::PrimeGroup;
use ark_ec::pairing::Pairing;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use codec::{Decode, Encode};
use rand_core::{OsRng, RngCore};
use sha2::Digest;
use timelock::block_ciphers::AESGCMBlockCipherProvider;
use timelock::engines::EngineBLS;
use timelock::engines::drand::TinyBLS381;
use timelock::ibe::fullident::{Ciphertext as IbeCiphertext, Identity};
use timelock::tlock::{TLECiphertext, tld, tle};

/// The public key of drand's quicknet beacon (a G2 point, compressed): the key every
/// round signature verifies against, and the IBE master public key.
pub const QUICKNET_PUBLIC_KEY: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
/// Unix time of quicknet's round 1.
pub const QUICKNET_GENESIS_UNIX: u64 = 1_692_803_367;
/// Seconds between quicknet rounds.
pub const QUICKNET_PERIOD_SECS: u64 = 3;
/// Blocks after the first block of the reveal epoch at which the round is aimed, so the
/// chain has already ingested the pulse when it reveals (the SDK's margin).
pub const SECURITY_BLOCK_OFFSET: u64 = 3;

const HASH_LEN: usize = 32;
const G2_COMPRESSED_LEN: usize = 96;
const CIPHER_SUITE: &[u8] = b"AES_GCM_";
const AES_GCM_NONCE_LEN: usize = 12;
/// No field of a commit is longer than the chain's own bound on a commit (5000 bytes).
const MAX_FIELD_LEN: u64 = 8 * 1024;

/// What goes wrong encrypting to, or decrypting from, a drand round.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimelockError {
    #[error("the quicknet public key does not decode: {0}")]
    PublicKey(String),
    #[error("timelock encryption failed: {0}")]
    Encrypt(String),
    #[error("malformed timelock ciphertext: {0}")]
    Malformed(String),
    #[error("not a drand quicknet signature: {0}")]
    Signature(String),
    #[error("the signature does not open this ciphertext (wrong round or tampered)")]
    WrongKey,
}

/// The plaintext of a commit, SCALE-encoded as Subtensor's `WeightsTlockPayload`
/// (field order matters: the chain decodes it by position).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WeightsTlockPayload {
    /// The committing hotkey's public key (32 bytes).
    pub hotkey: Vec<u8>,
    pub uids: Vec<u16>,
    pub values: Vec<u16>,
    pub version_key: u64,
}

/// The chain's settings that decide when a commit made now is revealed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RevealSchedule {
    pub netuid: u16,
    /// `Tempo`: blocks in an epoch, less one.
    pub tempo: u64,
    /// `RevealPeriodEpochs`: how many epochs after the commit's the reveal comes.
    pub reveal_period_epochs: u64,
    /// The head block the commit is made at.
    pub current_block: u64,
    /// Seconds per block (12 on finney).
    pub block_time_secs: f64,
}

impl RevealSchedule {
    /// The first block of the epoch in which the chain reveals a commit made now
    /// (Subtensor's epochs are offset by `netuid + 1` blocks).
    pub fn first_reveal_block(&self) -> u64 {
        let epoch_len = self.tempo.saturating_add(1);
        let offset = u64::from(self.netuid) + 1;
        let epoch = self.current_block.saturating_add(offset) / epoch_len;
        (epoch.saturating_add(self.reveal_period_epochs))
            .saturating_mul(epoch_len)
            .saturating_sub(offset)
    }

    /// The quicknet round to encrypt to, at `now_unix_secs`: the last round published
    /// before the block [`SECURITY_BLOCK_OFFSET`] blocks into the reveal epoch. Rounding
    /// down means the chain never waits for a pulse it has not yet ingested.
    pub fn reveal_round(&self, now_unix_secs: f64) -> u64 {
        let target_block = self
            .first_reveal_block()
            .saturating_add(SECURITY_BLOCK_OFFSET);
        let blocks_ahead = target_block.saturating_sub(self.current_block);
        let target = now_unix_secs + blocks_ahead as f64 * self.block_time_secs;
        let round = ((target - QUICKNET_GENESIS_UNIX as f64) / QUICKNET_PERIOD_SECS as f64).floor();
        if round < 1.0 { 1 } else { round as u64 }
    }
}

/// The message quicknet signs for `round` (and so the IBE identity of that round).
fn round_message(round: u64) -> Vec<u8> {
    sha2::Sha256::digest(round.to_be_bytes()).to_vec()
}

fn quicknet_key() -> Result<<TinyBLS381 as EngineBLS>::PublicKeyGroup, TimelockError> {
    let bytes =
        hex::decode(QUICKNET_PUBLIC_KEY).map_err(|e| TimelockError::PublicKey(e.to_string()))?;
    <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(&*bytes)
        .map_err(|e| TimelockError::PublicKey(e.to_string()))
}

/// Encrypts `plaintext` so that it opens with quicknet's signature of `round`, in the
/// framing the chain reads.
pub fn encrypt(plaintext: &[u8], round: u64) -> Result<Vec<u8>, TimelockError> {
    let key = quicknet_key()?;
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let identity = Identity::new(b"", &round_message(round));
    let ciphertext =
        tle::<TinyBLS381, AESGCMBlockCipherProvider, _>(key, secret, plaintext, identity, OsRng)
            .map_err(|e| TimelockError::Encrypt(format!("{e:?}")))?;
    let mut out =
        Vec::with_capacity(G2_COMPRESSED_LEN + 3 * 8 + 2 * HASH_LEN + ciphertext.body.len() + 16);
    ciphertext
        .header
        .u
        .serialize_compressed(&mut out)
        .map_err(|e| TimelockError::Encrypt(e.to_string()))?;
    put_bytes(&mut out, &ciphertext.header.v);
    put_bytes(&mut out, &ciphertext.header.w);
    put_bytes(&mut out, &ciphertext.body);
    put_bytes(&mut out, &ciphertext.cipher_suite);
    Ok(out)
}

/// Opens a ciphertext in the chain's framing with quicknet's signature of its round
/// (48 bytes, compressed G1, as drand publishes it).
pub fn decrypt(ciphertext: &[u8], signature: &[u8]) -> Result<Vec<u8>, TimelockError> {
    let signature = <TinyBLS381 as EngineBLS>::SignatureGroup::deserialize_compressed(signature)
        .map_err(|e| TimelockError::Signature(e.to_string()))?;
    let mut input = ciphertext;
    let u_bytes = take(&mut input, G2_COMPRESSED_LEN, "the header's U point")?;
    let u = <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(u_bytes)
        .map_err(|e| TimelockError::Malformed(format!("the header's U point: {e}")))?;
    let v = hash_field(&mut input, "v")?;
    let w = hash_field(&mut input, "w")?;
    let body = get_bytes(&mut input, "the body")?.to_vec();
    check_aes_framing(&body)?;
    let cipher_suite = get_bytes(&mut input, "the cipher suite")?.to_vec();
    if cipher_suite != CIPHER_SUITE {
        return Err(TimelockError::Malformed(format!(
            "cipher suite {:?}, expected {:?}",
            String::from_utf8_lossy(&cipher_suite),
            String::from_utf8_lossy(CIPHER_SUITE)
        )));
    }
    if !input.is_empty() {
        return Err(TimelockError::Malformed(format!(
            "{} bytes after the end",
            input.len()
        )));
    }
    let ciphertext = TLECiphertext::<TinyBLS381> {
        header: IbeCiphertext { u, v, w },
        body,
        cipher_suite,
    };
    tld::<TinyBLS381, AESGCMBlockCipherProvider>(ciphertext, signature)
        .map_err(|_| TimelockError::WrongKey)
}

/// Checks that `signature` is quicknet's BLS signature of `round`:
/// e(σ, g₂) = e(H(sha256(round)), pk).
pub fn verify_round_signature(round: u64, signature: &[u8]) -> Result<(), TimelockError> {
    let sigma = <TinyBLS381 as EngineBLS>::SignatureGroup::deserialize_compressed(signature)
        .map_err(|e| TimelockError::Signature(e.to_string()))?;
    let hashed = TinyBLS381::hash_to_signature_curve(&round_message(round)[..]);
    let key = quicknet_key()?;
    type Curve = <TinyBLS381 as EngineBLS>::Engine;
    let generator = <TinyBLS381 as EngineBLS>::PublicKeyGroup::generator();
    if Curve::pairing(sigma, generator) == Curve::pairing(hashed, key) {
        Ok(())
    } else {
        Err(TimelockError::Signature(format!(
            "it does not verify for round {round}"
        )))
    }
}

/// ark-serialize's `Vec<u8>`: a little-endian u64 length, then the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take<'a>(input: &mut &'a [u8], len: usize, what: &str) -> Result<&'a [u8], TimelockError> {
    if input.len() < len {
        return Err(TimelockError::Malformed(format!(
            "{what}: needs {len} bytes, {} left",
            input.len()
        )));
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

fn get_bytes<'a>(input: &mut &'a [u8], what: &str) -> Result<&'a [u8], TimelockError> {
    let len_bytes = take(input, 8, what)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(len_bytes);
    let len = u64::from_le_bytes(len);
    if len > MAX_FIELD_LEN {
        return Err(TimelockError::Malformed(format!(
            "{what}: length {len} exceeds {MAX_FIELD_LEN}"
        )));
    }
    take(input, len as usize, what)
}

/// The body is an AES-GCM output, `ciphertext` then `nonce`, each length-prefixed.
/// `timelock` decodes it with ark-serialize, which trusts the prefixes; check them
/// against the body first so a forged length is an error, not an allocation.
fn check_aes_framing(body: &[u8]) -> Result<(), TimelockError> {
    let mut rest = body;
    get_bytes(&mut rest, "the body's ciphertext")?;
    let nonce = get_bytes(&mut rest, "the body's nonce")?;
    if nonce.len() != AES_GCM_NONCE_LEN || !rest.is_empty() {
        return Err(TimelockError::Malformed(format!(
            "the body's nonce is {} bytes with {} after it; expected {AES_GCM_NONCE_LEN} and none",
            nonce.len(),
            rest.len()
        )));
    }
    Ok(())
}

fn hash_field(input: &mut &[u8], what: &str) -> Result<[u8; HASH_LEN], TimelockError> {
    let bytes = get_bytes(input, what)?;
    <[u8; HASH_LEN]>::try_from(bytes).map_err(|_| {
        TimelockError::Malformed(format!(
            "{what}: {} bytes, expected {HASH_LEN}",
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quicknet's round 1000, as published at
    /// `api.drand.sh/52db9ba7…e971/public/1000` (checked below against the beacon's key).
    pub(crate) const ROUND_1000_SIGNATURE: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

    fn signature() -> Vec<u8> {
        hex::decode(ROUND_1000_SIGNATURE).expect("hex")
    }

    #[test]
    fn the_fixture_is_quicknet_s_signature_of_round_1000() {
        verify_round_signature(1000, &signature()).expect("verifies");
        assert!(matches!(
            verify_round_signature(1001, &signature()),
            Err(TimelockError::Signature(_))
        ));
    }

    #[test]
    fn a_commit_opens_with_its_round_s_signature_only() {
        let payload = WeightsTlockPayload {
            hotkey: vec![7; 32],
            uids: vec![0, 3, 9],
            values: vec![65535, 100, 7],
            version_key: 42,
        }
        .encode();
        let sealed = encrypt(&payload, 1000).expect("encrypts");
        let opened = decrypt(&sealed, &signature()).expect("opens");
        assert_eq!(
            WeightsTlockPayload::decode(&mut &opened[..])
                .expect("payload")
                .uids,
            vec![0, 3, 9]
        );
        // Sealed to another round, the same signature opens nothing.
        let other = encrypt(&payload, 1001).expect("encrypts");
        assert_eq!(decrypt(&other, &signature()), Err(TimelockError::WrongKey));
    }

    #[test]
    fn malformed_ciphertexts_are_named_not_allocated() {
        let sealed = encrypt(b"weights", 1000).expect("encrypts");
        for cut in [0, 10, 96, 100, 140, sealed.len() - 1] {
            assert!(
                matches!(
                    decrypt(&sealed[..cut], &signature()),
                    Err(TimelockError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        // A huge length prefix is refused before any allocation.
        let mut bloated = sealed[..G2_COMPRESSED_LEN].to_vec();
        bloated.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(
            matches!(decrypt(&bloated, &signature()), Err(TimelockError::Malformed(m)) if m.contains("exceeds"))
        );
        // So is one inside the body, whose fields timelock would otherwise trust.
        let body_at = G2_COMPRESSED_LEN + 2 * (8 + HASH_LEN) + 8;
        let mut inner = sealed.clone();
        inner[body_at..body_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(
            matches!(decrypt(&inner, &signature()), Err(TimelockError::Malformed(m)) if m.contains("exceeds"))
        );
        let mut trailing = sealed.clone();
        trailing.push(0);
        assert!(matches!(
            decrypt(&trailing, &signature()),
            Err(TimelockError::Malformed(_))
        ));
        // A flipped body bit fails authentication.
        let mut tampered = sealed;
        let last_body_byte = tampered.len() - 8 - CIPHER_SUITE.len() - 1;
        tampered[last_body_byte] ^= 1;
        assert_eq!(
            decrypt(&tampered, &signature()),
            Err(TimelockError::WrongKey)
        );
        assert!(matches!(
            decrypt(b"", b"short"),
            Err(TimelockError::Signature(_))
        ));
    }

    #[test]
    fn the_reveal_round_follows_the_chain_s_epochs() {
        // netuid 1, tempo 99: epochs start at blocks ≡ -2 (mod 100), i.e. 98, 198, …
        let schedule = RevealSchedule {
            netuid: 1,
            tempo: 99,
            reveal_period_epochs: 1,
            current_block: 150,
            block_time_secs: 12.0,
        };
        assert_eq!(schedule.first_reveal_block(), 198);
        // 198 + 3 − 150 = 51 blocks = 612 s ahead; rounds are 3 s from genesis.
        let now = (QUICKNET_GENESIS_UNIX + 3000) as f64;
        assert_eq!(schedule.reveal_round(now), 1000 + 612 / 3);
        assert_eq!(schedule.reveal_round(now + 2.9), 1204);
        assert_eq!(schedule.reveal_round(now + 3.0), 1205);
        // Two epochs of delay add one epoch of blocks.
        let later = RevealSchedule {
            reveal_period_epochs: 2,
            ..schedule
        };
        assert_eq!(later.first_reveal_block(), 298);
        // A clock before genesis still names round 1.
        assert_eq!(schedule.reveal_round(0.0), 1);
    }
}
