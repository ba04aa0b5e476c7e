//! Target `grant`: sealed grants as a miner opens them. The first input
//! byte picks what the rest is:
//!
//! - 0: a sealed box, as carried in an assignment;
//! - 1: a grant's plaintext, which the target seals to the miner itself so
//!   the decoder and the hotkey check behind the decryption are reached;
//! - 2: an `Assignment` or a `HeartbeatGrant` whose sealed grant is opened.

use crypto_box::aead::OsRng;
use locus_protocol::grant::{self, GrantError};
use locus_protocol::pb;
use prost::Message as _;

use crate::KEYS;
use crate::fixtures::check_sealed_grant;

pub fn fuzz(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check_sealed_grant(rest),
        1 => open_plaintext(rest),
        _ => {
            if let Ok(assignment) = pb::Assignment::decode(rest) {
                check_sealed_grant(&assignment.sealed_grant);
            }
            if let Ok(standing) = pb::HeartbeatGrant::decode(rest) {
                check_sealed_grant(&standing.sealed_grant);
            }
        }
    }
}

/// Seals `plain` to the miner; opening it must then fail only on what the
/// plaintext says, never on the decryption.
fn open_plaintext(plain: &[u8]) {
    let miner = KEYS.miner.hotkey();
    let x25519 = crypto_box::PublicKey::from(miner.verifying_key().to_montgomery().to_bytes());
    let sealed = x25519.seal(&mut OsRng, plain).expect("sealing");
    let opened = grant::open(&sealed, &KEYS.miner);
    match (pb::Grant::decode(plain), opened) {
        (Ok(expected), Ok(grant)) => {
            assert_eq!(grant, expected);
            assert_eq!(grant.hotkey, miner.to_bytes());
        }
        (Ok(expected), Err(GrantError::WrongHotkey { .. })) => {
            assert_ne!(expected.hotkey, miner.to_bytes());
        }
        (Err(_), Err(GrantError::Decode(_))) => {}
        (decoded, opened) => panic!("plaintext decodes as {decoded:?} but opens as {opened:?}"),
    }
}
