//! From verdicts to scores and weights.
//!
//! A hotkey's score is the compute units of its verified and unsampled work
//! in the window. Compute units come from each job's static cost in the
//! owner-signed manifest, so identical work always scores identically. Any
//! failed verdict in the window zeroes the hotkey: cheating on a fraction of
//! jobs must cost more than it could ever gain. Weights are scores
//! normalized to sum to 1. Every zero says why, so a miner can tell a
//! failed replay from late or unattributable work.

use std::collections::BTreeMap;

use locus_protocol::Hotkey;
use locus_protocol::pb::{self, VerdictOutcome};

/// What scoring needs from one verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub hotkey: Hotkey,
    /// `Unspecified` stands for a receipt this hotkey signed that was
    /// rejected (not attributable to an assignment of it): no verdict.
    pub outcome: VerdictOutcome,
    pub compute_units: u64,
    pub reason: String,
}

pub fn score(verdicts: &[Judged]) -> Vec<pb::HotkeyScore> {
    let mut by_key: BTreeMap<Hotkey, pb::HotkeyScore> = BTreeMap::new();
    let mut notes: BTreeMap<(Hotkey, &str), String> = BTreeMap::new();
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
            VerdictOutcome::Late => {
                entry.late += 1;
                first_reason(&mut notes, v.hotkey, "late", &v.reason);
            }
            VerdictOutcome::Unspecified => {
                entry.rejected += 1;
                first_reason(&mut notes, v.hotkey, "rejected", &v.reason);
            }
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
        if s.failed > 0 {
            continue;
        }
        let mut reason = format!(
            "{} verified ({} CU) + {} unsampled ({} CU)",
            s.verified, s.verified_cu, s.unsampled, s.unsampled_cu
        );
        let Ok(hotkey) = Hotkey::from_bytes(&s.hotkey) else {
            continue;
        };
        for (what, count) in [("late", s.late), ("rejected", s.rejected)] {
            if count > 0 {
                let first = notes.get(&(hotkey, what)).cloned().unwrap_or_default();
                reason.push_str(&format!("; {count} {what}, no credit (first: {first})"));
            }
        }
        s.reason = reason;
    }
    scores
}

fn first_reason<'a>(
    notes: &mut BTreeMap<(Hotkey, &'a str), String>,
    hotkey: Hotkey,
    what: &'a str,
    reason: &str,
) {
    notes
        .entry((hotkey, what))
        .or_insert_with(|| reason.to_string());
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
    fn zero_scores_say_why() {
        let (a, b) = (Keypair::generate().hotkey(), Keypair::generate().hotkey());
        let mut late = judged(a, VerdictOutcome::Late, 9);
        late.reason = "written 800 ms after the lease expired".into();
        let mut rejected = judged(b, VerdictOutcome::Unspecified, 0);
        rejected.reason = "receipt names assignment x, which does not exist".into();
        let scores = score(&[late, rejected, judged(b, VerdictOutcome::Verified, 5)]);
        let get = |k: Hotkey| scores.iter().find(|s| s.ss58 == k.ss58()).unwrap().clone();
        assert_eq!(get(a).score, 0.0);
        assert!(
            get(a)
                .reason
                .contains("1 late, no credit (first: written 800 ms")
        );
        assert_eq!(get(b).rejected, 1);
        assert_eq!(
            get(b).score,
            5.0,
            "rejected receipts earn nothing, and cost nothing"
        );
        assert!(get(b).reason.contains("1 rejected"), "{}", get(b).reason);
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
