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
    /// The step of the receipt: verdicts of closed steps are folded into a
    /// [`Tally`] by it.
    pub step: u32,
    /// `Unspecified` stands for a receipt this hotkey signed that was
    /// rejected (not attributable to an assignment of it): no verdict.
    pub outcome: VerdictOutcome,
    pub compute_units: u64,
    pub reason: String,
}

/// Verdicts counted per hotkey: what scores are computed from, and all a
/// validator keeps of the steps it closed (its checkpoint), so that neither
/// its memory nor its restart grows with the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally(BTreeMap<Hotkey, pb::HotkeyTally>);

impl Tally {
    /// Reads a checkpoint's tallies back; entries whose hotkey does not
    /// parse (the validator wrote them, so never in practice) are skipped.
    pub fn from_pb(tallies: &[pb::HotkeyTally]) -> Tally {
        Tally(
            tallies
                .iter()
                .filter_map(|t| Some((Hotkey::from_bytes(&t.hotkey).ok()?, t.clone())))
                .collect(),
        )
    }

    pub fn to_pb(&self) -> Vec<pb::HotkeyTally> {
        self.0.values().cloned().collect()
    }

    pub fn add(&mut self, v: &Judged) {
        let entry = self.0.entry(v.hotkey).or_insert_with(|| pb::HotkeyTally {
            hotkey: v.hotkey.to_bytes().to_vec(),
            ..Default::default()
        });
        entry.receipts += 1;
        let first_reason = |slot: &mut String| {
            if slot.is_empty() {
                *slot = v.reason.clone();
            }
        };
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
                first_reason(&mut entry.failed_reason);
            }
            VerdictOutcome::Late => {
                entry.late += 1;
                first_reason(&mut entry.late_reason);
            }
            VerdictOutcome::Unspecified => {
                entry.rejected += 1;
                first_reason(&mut entry.rejected_reason);
            }
        }
    }

    /// Receipts that got a verdict (rejected ones have none).
    pub fn verdicts(&self) -> u64 {
        self.0.values().map(|t| t.receipts - t.rejected).sum()
    }

    /// Passed replays per hotkey, for probation.
    pub fn replays_passed(&self) -> impl Iterator<Item = (Hotkey, u64)> + '_ {
        self.0.iter().map(|(hotkey, t)| (*hotkey, t.verified))
    }

    /// Each hotkey's score and weight, with the reason for it.
    pub fn scores(&self) -> Vec<pb::HotkeyScore> {
        let mut scores: Vec<pb::HotkeyScore> = self
            .0
            .iter()
            .map(|(hotkey, t)| pb::HotkeyScore {
                hotkey: t.hotkey.clone(),
                ss58: hotkey.ss58(),
                receipts: t.receipts,
                verified: t.verified,
                failed: t.failed,
                unsampled: t.unsampled,
                verified_cu: t.verified_cu,
                unsampled_cu: t.unsampled_cu,
                late: t.late,
                rejected: t.rejected,
                score: if t.failed > 0 {
                    0.0
                } else {
                    (t.verified_cu + t.unsampled_cu) as f64
                },
                ..Default::default()
            })
            .collect();
        let total: f64 = scores.iter().map(|s| s.score).sum();
        for (s, t) in scores.iter_mut().zip(self.0.values()) {
            s.weight = if total > 0.0 { s.score / total } else { 0.0 };
            if s.failed > 0 {
                s.reason = format!("failed verdict: {}", t.failed_reason);
                continue;
            }
            let mut reason = format!(
                "{} verified ({} CU) + {} unsampled ({} CU)",
                s.verified, s.verified_cu, s.unsampled, s.unsampled_cu
            );
            for (what, count, first) in [
                ("late", s.late, &t.late_reason),
                ("rejected", s.rejected, &t.rejected_reason),
            ] {
                if count > 0 {
                    reason.push_str(&format!("; {count} {what}, no credit (first: {first})"));
                }
            }
            s.reason = reason;
        }
        scores
    }
}

/// Scores of `verdicts` alone.
pub fn score(verdicts: &[Judged]) -> Vec<pb::HotkeyScore> {
    let mut tally = Tally::default();
    for v in verdicts {
        tally.add(v);
    }
    tally.scores()
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_protocol::Keypair;

    fn judged(hotkey: Hotkey, outcome: VerdictOutcome, cu: u64) -> Judged {
        Judged {
            hotkey,
            step: 0,
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

    #[test]
    fn a_tally_folded_through_its_record_scores_as_the_verdicts_do() {
        let (a, b) = (Keypair::generate().hotkey(), Keypair::generate().hotkey());
        let mut rejected = judged(b, VerdictOutcome::Unspecified, 0);
        rejected.reason = "names no assignment".into();
        let mut late = judged(a, VerdictOutcome::Late, 3);
        late.reason = "job already credited".into();
        let all = vec![
            judged(a, VerdictOutcome::Verified, 30),
            late.clone(),
            judged(b, VerdictOutcome::Unsampled, 60),
            rejected,
            judged(a, VerdictOutcome::Unsampled, 10),
            late,
            judged(b, VerdictOutcome::Verified, 5),
        ];
        for cut in 0..=all.len() {
            let mut closed = Tally::default();
            for v in &all[..cut] {
                closed.add(v);
            }
            let mut restored = Tally::from_pb(&closed.to_pb());
            for v in &all[cut..] {
                restored.add(v);
            }
            assert_eq!(
                restored.scores(),
                score(&all),
                "folded after {cut} verdicts"
            );
            assert_eq!(restored.verdicts(), 6);
        }
        let mut failed = Tally::from_pb(&Tally::default().to_pb());
        let mut caught = judged(b, VerdictOutcome::Failed, 0);
        caught.reason = "output differs".into();
        failed.add(&caught);
        assert_eq!(failed.scores()[0].reason, "failed verdict: output differs");
    }
}
