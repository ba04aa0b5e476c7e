//! The verdict gate: what a validator's verdict on a held result means for
//! the run, and what the run must undo when a hotkey is caught.
//!
//! Pure: verdicts and convictions in, decisions out. The driver reads the
//! verdicts and carries the decisions out; this module remembers which
//! hotkeys are banned and where each hotkey's unverified results begin, and
//! round-trips both through the [`pb::RunState`] so that a restart needs no
//! pass over the run's history.

use std::collections::{BTreeMap, BTreeSet};

use locus_protocol::Hotkey;
use locus_protocol::pb::{self, VerdictOutcome};

/// What to do with a held result once its verdict is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Downstream jobs may read it. `unverified`: no replay checked it.
    Use { unverified: bool },
    /// Throw it away and redo the job; nobody is blamed.
    Redo,
    /// Throw it away, ban its hotkey and undo what the run built on the
    /// hotkey's unverified results.
    Convict,
}

/// Banned hotkeys and, per hotkey, the earliest step holding a result of it
/// the run used without a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    banned: BTreeSet<Hotkey>,
    unverified_from: BTreeMap<Hotkey, u32>,
}

/// What catching a hotkey costs the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conviction {
    /// Whether the hotkey was not banned before.
    pub newly_banned: bool,
    /// The step the run must recompute from, if it used the hotkey's
    /// output unverified.
    pub rewind_from: Option<u32>,
}

impl Gate {
    /// Reads the gate back from the run state the owner last wrote; keys
    /// that do not parse (the owner wrote them, so never in practice) are
    /// skipped.
    pub fn from_state(state: &pb::RunState) -> Gate {
        let banned = state
            .banned
            .iter()
            .filter_map(|k| Hotkey::from_bytes(k).ok())
            .collect();
        let unverified_from = state
            .unverified
            .iter()
            .filter_map(|u| Some((Hotkey::from_bytes(&u.hotkey).ok()?, u.earliest_step)))
            .collect();
        Gate {
            banned,
            unverified_from,
        }
    }

    /// Writes the gate into the run state to persist.
    pub fn save(&self, state: &mut pb::RunState) {
        state.banned = self.banned.iter().map(|h| h.to_bytes().to_vec()).collect();
        state.unverified = self
            .unverified_from
            .iter()
            .map(|(hotkey, step)| pb::Unverified {
                hotkey: hotkey.to_bytes().to_vec(),
                earliest_step: *step,
            })
            .collect();
    }

    pub fn is_banned(&self, hotkey: &Hotkey) -> bool {
        self.banned.contains(hotkey)
    }

    pub fn banned(&self) -> impl Iterator<Item = &Hotkey> {
        self.banned.iter()
    }

    /// The earliest step holding a result of `hotkey` used unverified.
    pub fn unverified_from(&self, hotkey: &Hotkey) -> Option<u32> {
        self.unverified_from.get(hotkey).copied()
    }

    /// The verdict `outcome` on a result of `by` at `step`; `audited`: it
    /// rests on an auditor's replay, not the validator's. A result used
    /// unverified is remembered against its hotkey: an audited pass counts
    /// as unverified, so an auditor that covered for a cheater cannot keep
    /// the cheater's output in the run once the cheater is caught.
    pub fn on_verdict(
        &mut self,
        outcome: VerdictOutcome,
        by: Hotkey,
        step: u32,
        audited: bool,
    ) -> Decision {
        match outcome {
            // A cheater's output is never used unverified.
            VerdictOutcome::Unsampled if self.is_banned(&by) => Decision::Redo,
            VerdictOutcome::Verified if audited && self.is_banned(&by) => Decision::Redo,
            VerdictOutcome::Unsampled => {
                self.used_unverified(by, step);
                Decision::Use { unverified: true }
            }
            VerdictOutcome::Verified if audited => {
                self.used_unverified(by, step);
                Decision::Use { unverified: true }
            }
            VerdictOutcome::Verified => Decision::Use { unverified: false },
            VerdictOutcome::Failed => Decision::Convict,
            // Late, or a verdict with no outcome: no proof either way.
            VerdictOutcome::Late | VerdictOutcome::Unspecified => Decision::Redo,
        }
    }

    /// Notes that the run uses a result of `by` at `step` without a replay.
    pub fn used_unverified(&mut self, by: Hotkey, step: u32) {
        self.unverified_from
            .entry(by)
            .and_modify(|s| *s = (*s).min(step))
            .or_insert(step);
    }

    /// Bans `hotkey`; says where the run must go back to.
    pub fn convict(&mut self, hotkey: Hotkey) -> Conviction {
        Conviction {
            newly_banned: self.banned.insert(hotkey),
            rewind_from: self.unverified_from.get(&hotkey).copied(),
        }
    }

    /// After the run went back to recompute from `step`: results from there
    /// on are gone, so they no longer count as used. Keeping only the
    /// earliest step per hotkey loses nothing: a hotkey whose earliest
    /// unverified result is before `step` still has it, and one whose
    /// earliest is at or after `step` has none left.
    pub fn forget_from(&mut self, step: u32) {
        self.unverified_from.retain(|_, earliest| *earliest < step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use locus_protocol::Keypair;

    fn hotkey() -> Hotkey {
        Keypair::generate().hotkey()
    }

    #[test]
    fn verdicts_decide_use_redo_or_conviction() {
        let mut gate = Gate::default();
        let (honest, cheat) = (hotkey(), hotkey());
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Verified, honest, 0, false),
            Decision::Use { unverified: false }
        );
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Unsampled, honest, 1, false),
            Decision::Use { unverified: true }
        );
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Late, honest, 1, false),
            Decision::Redo
        );
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Unspecified, honest, 1, false),
            Decision::Redo
        );
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Failed, cheat, 2, false),
            Decision::Convict
        );
        gate.convict(cheat);
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Unsampled, cheat, 3, false),
            Decision::Redo,
            "a banned hotkey's output is never used unverified"
        );
    }

    #[test]
    fn an_audited_pass_counts_as_unverified() {
        let mut gate = Gate::default();
        let miner = hotkey();
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Verified, miner, 4, true),
            Decision::Use { unverified: true }
        );
        assert_eq!(gate.convict(miner).rewind_from, Some(4));
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Verified, miner, 5, true),
            Decision::Redo,
            "a banned hotkey's audited output is not used either"
        );
        assert_eq!(
            gate.on_verdict(VerdictOutcome::Verified, miner, 5, false),
            Decision::Use { unverified: false }
        );
    }

    #[test]
    fn a_conviction_rewinds_to_the_earliest_unverified_use() {
        let mut gate = Gate::default();
        let (a, b) = (hotkey(), hotkey());
        gate.on_verdict(VerdictOutcome::Unsampled, a, 5, false);
        gate.on_verdict(VerdictOutcome::Unsampled, a, 3, false);
        gate.on_verdict(VerdictOutcome::Unsampled, a, 4, false);
        gate.on_verdict(VerdictOutcome::Verified, b, 1, false);
        assert_eq!(
            gate.convict(b),
            Conviction {
                newly_banned: true,
                rewind_from: None
            }
        );
        assert_eq!(
            gate.convict(a),
            Conviction {
                newly_banned: true,
                rewind_from: Some(3)
            }
        );
        assert!(!gate.convict(a).newly_banned);
    }

    #[test]
    fn a_rewind_forgets_only_what_it_recomputes() {
        let mut gate = Gate::default();
        let (early, late) = (hotkey(), hotkey());
        gate.used_unverified(early, 2);
        gate.used_unverified(early, 9);
        gate.used_unverified(late, 6);
        gate.forget_from(5);
        assert_eq!(gate.convict(early).rewind_from, Some(2));
        assert_eq!(gate.convict(late).rewind_from, None);
    }

    #[test]
    fn the_gate_survives_a_restart_through_the_run_state() {
        let mut gate = Gate::default();
        let (a, b) = (hotkey(), hotkey());
        gate.used_unverified(a, 4);
        gate.convict(b);
        let mut state = pb::RunState::default();
        gate.save(&mut state);
        assert_eq!(Gate::from_state(&state), gate);
        state.banned.push(vec![1, 2, 3]);
        assert_eq!(Gate::from_state(&state), gate, "junk is skipped");
    }
}
