//! From verdicts to scores and weights.
//!
//! A hotkey's score is the compute units of its verified and unsampled work
//! in the window. Compute units come from each job's static cost in the
//! owner-signed manifest, so identical work always scores identically. Any
//! failed verdict in the window zeroes the hotkey: cheating on a fraction of
//! jobs must cost more than it could ever gain. Weights are scores
//! normalized to sum to 1.

use std::collections::BTreeMap;

use locus_protocol::Hotkey;
use locus_protocol::pb::{self, VerdictOutcome};

/// What scoring needs from one verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub hotkey: Hotkey,
    pub outcome: VerdictOutcome,
    pub compute_units: u64,
    pub reason: String,
}

pub fn score(verdicts: &[Judged]) -> Vec<pb::HotkeyScore> {
    let mut by_key: BTreeMap<Hotkey, pb::HotkeyScore> = BTreeMap::new();
    for v in verdicts {
        let entry = by_key.entry(v.hotkey).or_insert_with(|| pb::HotkeyScore {
            hotkey: v.hotkey.to_bytes().to_vec(),
            ss58: v.hotkey.ss58(),
            ..Default::default()
        });
        entry.receipts += 1;
        match v.outcome {
            VerdictOutcome::Verified => {
                entry.verified += 1;
                entry.verified_cu += v.compute_units;
            }
            VerdictOutcome::Unsampled => {
                entry.unsampled += 1;
                entry.unsampled_cu += v.compute_units;
            }
            VerdictOutcome::Failed => {
                entry.failed += 1;
                if entry.reason.is_empty() {
                    entry.reason = format!("failed verdict: {}", v.reason);
                }
            }
            VerdictOutcome::Late => entry.late += 1,
            VerdictOutcome::Unspecified => {}
        }
    }
    let mut scores: Vec<pb::HotkeyScore> = by_key.into_values().collect();
    for s in scores.iter_mut() {
        s.score = if s.failed > 0 {
            0.0
        } else {
            (s.verified_cu + s.unsampled_cu) as f64
        };
    }
    let total: f64 = scores.iter().map(|s| s.score).sum();
    for s in scores.iter_mut() {
        s.weight = if total > 0.0 { s.score / total } else { 0.0 };
        if s.failed == 0 {
            s.reason = format!(
                "{} verified ({} CU) + {} unsampled ({} CU)",
                s.verified, s.verified_cu, s.unsampled, s.unsampled_cu
            );
        }
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_protocol::Keypair;

    fn judged(hotkey: Hotkey, outcome: VerdictOutcome, cu: u64) -> Judged {
        Judged {
            hotkey,
            outcome,
            compute_units: cu,
            reason: "x".into(),
        }
    }

    #[test]
    fn one_failure_zeroes_and_weights_sum_to_one() {
        let (a, b, c) = (
            Keypair::generate().hotkey(),
            Keypair::generate().hotkey(),
            Keypair::generate().hotkey(),
        );
        let scores = score(&[
            judged(a, VerdictOutcome::Verified, 30),
            judged(a, VerdictOutcome::Unsampled, 10),
            judged(b, VerdictOutcome::Unsampled, 60),
            judged(c, VerdictOutcome::Verified, 500),
            judged(c, VerdictOutcome::Failed, 1),
        ]);
        let get = |k: Hotkey| scores.iter().find(|s| s.ss58 == k.ss58()).unwrap().clone();
        assert_eq!(get(a).score, 40.0);
        assert_eq!(get(c).score, 0.0);
        assert_eq!(get(c).weight, 0.0);
        assert!(get(c).reason.contains("failed"));
        assert!((get(a).weight - 0.4).abs() < 1e-12);
        assert!((get(b).weight - 0.6).abs() < 1e-12);
    }

    #[test]
    fn identical_work_scores_identically() {
        let (a, b) = (Keypair::generate().hotkey(), Keypair::generate().hotkey());
        let scores = score(&[
            judged(a, VerdictOutcome::Verified, 7),
            judged(b, VerdictOutcome::Unsampled, 7),
        ]);
        assert_eq!(scores[0].weight, 0.5);
        assert_eq!(scores[1].weight, 0.5);
    }
}
