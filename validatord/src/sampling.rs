//! Unpredictable, verifiable sampling.
//!
//! Whether a receipt is replayed is derived from the validator's ED25519
//! signature over the receipt's key and digest. ED25519 signatures are
//! deterministic, so the decision is fixed once the receipt exists, yet no
//! one without the validator's secret key can compute it in advance: a miner
//! cannot tell which of its receipts will be checked. The signature is
//! published in the verdict, so anyone can check afterwards that the draw was
//! honest (VRF-like).

use locus_protocol::pb;
use locus_protocol::{Digest, Hotkey, Keypair};

const DOMAIN: &[u8] = b"locus/v1/sample\0";
/// Draws whether an auditor's result is replayed again by the validator.
const RECHECK_DOMAIN: &[u8] = b"locus/v1/recheck\0";

fn message_in(domain: &[u8], key: &str, digest: &Digest) -> Vec<u8> {
    let mut msg = Vec::with_capacity(domain.len() + key.len() + 36);
    msg.extend_from_slice(domain);
    msg.extend_from_slice(&(key.len() as u32).to_be_bytes());
    msg.extend_from_slice(key.as_bytes());
    msg.extend_from_slice(digest.as_bytes());
    msg
}

fn message(receipt_key: &str, receipt_digest: &Digest) -> Vec<u8> {
    message_in(DOMAIN, receipt_key, receipt_digest)
}

/// The sampling proof for a receipt: the validator's signature over it.
pub fn proof(validator: &Keypair, receipt_key: &str, receipt_digest: &Digest) -> [u8; 64] {
    validator.sign(&message(receipt_key, receipt_digest))
}

/// Whether the validator replays an auditor's passing result again itself,
/// drawn like sampling from its signature over the result (key and
/// digest): fixed once the result exists, unknowable to the auditor.
pub fn recheck(validator: &Keypair, result_key: &str, result_digest: &Digest, rate: f64) -> bool {
    is_sampled(
        &validator.sign(&message_in(RECHECK_DOMAIN, result_key, result_digest)),
        rate,
    )
}

/// A uniform draw in [0, 1) from a proof.
pub fn draw(proof: &[u8]) -> f64 {
    let hash = blake3::hash(proof);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// Receipts replayed whatever the draw says, and why.
///
/// Reduce and outer jobs are where every other job's output meets: the next
/// step trains on what they produce, so the owner only lets the run consume
/// them once replayed. A hotkey on probation (too few replays passed in this
/// run) has every receipt replayed, so a miner that cheats from its first
/// job is caught before anything it wrote is used.
pub fn must_replay(kind: pb::JobKind, probation: bool) -> Option<&'static str> {
    match kind {
        pb::JobKind::Reduce | pb::JobKind::Outer => Some("replayed: critical job"),
        _ if probation => Some("replayed: hotkey on probation"),
        _ => None,
    }
}

pub fn is_sampled(proof: &[u8], rate: f64) -> bool {
    draw(proof) < rate
}

/// Anyone's check of a published decision: the proof must be the validator's
/// signature over this receipt, and the decision must follow from it.
pub fn verify(
    validator: &Hotkey,
    receipt_key: &str,
    receipt_digest: &Digest,
    proof: &[u8],
    rate: f64,
    sampled: bool,
) -> bool {
    validator.verify(&message(receipt_key, receipt_digest), proof)
        && is_sampled(proof, rate) == sampled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_respected_and_decisions_verify() {
        let key = Keypair::generate();
        let n = 4000;
        let mut sampled = 0;
        for i in 0..n {
            let rk = format!("receipts/s000000/job-{i}/a001.pb");
            let d = Digest::of(rk.as_bytes());
            let p = proof(&key, &rk, &d);
            let s = is_sampled(&p, 0.25);
            sampled += s as usize;
            assert!(verify(&key.hotkey(), &rk, &d, &p, 0.25, s));
            assert!(!verify(&key.hotkey(), &rk, &d, &p, 0.25, !s));
        }
        let frac = sampled as f64 / n as f64;
        assert!((frac - 0.25).abs() < 0.03, "{frac}");
    }

    #[test]
    fn critical_jobs_and_hotkeys_on_probation_are_always_replayed() {
        use pb::JobKind::*;
        for kind in [Reduce, Outer] {
            assert!(must_replay(kind, false).is_some());
        }
        for kind in [Forward, Inner, Eval] {
            assert_eq!(must_replay(kind, false), None);
            assert!(must_replay(kind, true).is_some());
        }
    }

    #[test]
    fn rechecks_follow_their_rate_and_differ_from_sampling() {
        let key = Keypair::generate();
        let n = 2000;
        let mut both = 0;
        let mut rechecked = 0;
        for i in 0..n {
            let k = format!("audits/x/results/{i:020}.pb");
            let d = Digest::of(k.as_bytes());
            let r = recheck(&key, &k, &d, 0.5);
            rechecked += r as usize;
            both += (r && is_sampled(&proof(&key, &k, &d), 0.5)) as usize;
        }
        let frac = rechecked as f64 / n as f64;
        assert!((frac - 0.5).abs() < 0.05, "{frac}");
        // Independent draws: about a quarter land in both.
        let joint = both as f64 / n as f64;
        assert!((joint - 0.25).abs() < 0.05, "{joint}");
    }

    #[test]
    fn other_keys_cannot_predict() {
        let (a, b) = (Keypair::generate(), Keypair::generate());
        let d = Digest::of(b"r");
        assert_ne!(proof(&a, "k", &d), proof(&b, "k", &d));
        assert_eq!(proof(&a, "k", &d), proof(&a, "k", &d), "deterministic");
        assert!(is_sampled(&proof(&a, "k", &d), 1.0));
        assert!(!is_sampled(&proof(&a, "k", &d), 0.0));
    }
}
