//! The attacking miner of `local-smoke` (`--bad-miner-index`,
//! `--fault-mode`): only in builds with the `fault-injection` feature, whose
//! `minerd` has the attack modes. Which flags make sense together, what the
//! attacker is told, and what outcome its mode deserves.

use clap::Args;
use locus_daemon::limits::{Setting, SettingError};
use locus_protocol::Hotkey;
use minerd::faults::FaultMode;

use super::SmokeArgs;

#[derive(Args, Debug, Clone)]
pub struct AttackArgs {
    /// Index of a miner that misbehaves (needs --fault-mode).
    #[arg(long, env = "LOCUS_BAD_MINER_INDEX", requires = "fault_mode")]
    pub bad_miner_index: Option<usize>,
    /// How the bad miner misbehaves (see docs/security.md; `taint` needs
    /// --steps 3 or more when sampling and probation are off).
    #[arg(
        long,
        env = "LOCUS_FAULT_MODE",
        requires = "bad_miner_index",
        value_parser = FaultMode::value_parser()
    )]
    pub fault_mode: Option<FaultMode>,
    /// How auditor 0 misbehaves (needs --auditors): `lie` answers the
    /// opposite of what its replay found.
    #[arg(long, env = "LOCUS_AUDITOR_FAULT_MODE", value_parser = ["lie"])]
    pub auditor_fault_mode: Option<String>,
}

/// Whether `mode` is caught only by replaying its output (the others are
/// refused for what they write, whatever is sampled).
fn caught_by_replay(mode: FaultMode) -> bool {
    matches!(
        mode,
        FaultMode::PartialCorrupt
            | FaultMode::WrongOutput
            | FaultMode::SkipCompute
            | FaultMode::Stealth
            | FaultMode::ReplayOld
            | FaultMode::Taint
    )
}

/// A run that may let the cheater escape without anything being wrong:
/// with sampling and probation off only the one reduce and the one outer
/// job of each step are replayed, and with more than two workers they may
/// never go to the cheater (assignment rotates over the workers in hotkey
/// order, so the same two may get them every step).
pub fn escape_note(args: &SmokeArgs) -> Option<String> {
    let mode = args.attack.fault_mode?;
    let workers = args.miners * args.workers_per_miner as usize;
    if !caught_by_replay(mode)
        || args.sample_rate > 0.0
        || args.probation_replays > 0
        || workers <= 2
    {
        return None;
    }
    Some(format!(
        "with --sample-rate 0 and --probation-replays 0 only reduce and outer jobs are \
         replayed, and with {workers} workers they may never go to the {mode} miner, which \
         then escapes (the run exits 1); --miners 2 hands it one every step"
    ))
}

/// The attack flags together with the rest: a bad miner that exists, and
/// an attack the validator can catch at all with the sampling asked for, so
/// the smoke fails at once with the flags to change rather than after the
/// run.
pub fn check(args: &SmokeArgs) -> Result<(), SettingError> {
    if let Some(bad) = args.attack.bad_miner_index
        && bad >= args.miners
    {
        return Err(Setting::flag("bad-miner-index").invalid(
            bad,
            format!(
                "out of range for {} miners (--miners): use 0 to {}",
                args.miners,
                args.miners - 1
            ),
        ));
    }
    let Some(mode) = args.attack.fault_mode else {
        return Ok(());
    };
    // With sampling and probation off the validator replays only reduce
    // and outer jobs. An attack that leaves every one of those honest in
    // a run this short can never be caught.
    if args.sample_rate > 0.0 || args.probation_replays > 0 {
        return Ok(());
    }
    let needs = match mode {
        // Corrupts reduce and outer only from the third step (index 2) on.
        FaultMode::Taint => 3,
        // Resubmits an earlier output of the same kind: the first reduce
        // and the first outer it gets are honest, and a step has one each.
        FaultMode::ReplayOld => 2,
        _ => 0,
    };
    if args.steps < needs {
        let what = match mode {
            FaultMode::Taint => {
                "corrupts inner outputs from the start but reduce and outer outputs only from \
                 the third step on"
            }
            _ => {
                "resubmits an earlier output of the same kind, so its first reduce and outer are honest"
            }
        };
        return Err(SettingError::new(format!(
            "--fault-mode {mode} cannot be caught in this run: it {what}, and with \
             --sample-rate 0 and --probation-replays 0 the validator replays only reduce and \
             outer jobs. Use --steps {needs} or more (got --steps {}), or a --sample-rate or \
             --probation-replays above 0",
            args.steps
        )));
    }
    Ok(())
}

/// Says who misbehaves, and whether it may escape.
pub fn announce(args: &SmokeArgs, miners: &[Hotkey]) {
    if let (Some(bad), Some(mode)) = (args.attack.bad_miner_index, args.attack.fault_mode) {
        println!("miner {bad} ({}) misbehaves: {mode}", miners[bad]);
    }
    if let Some(note) = escape_note(args) {
        println!("note: {note}");
    }
}

/// The extra `minerd` flags of miner `index`.
pub fn miner_args(args: &SmokeArgs, index: usize) -> Option<String> {
    let mode = args.attack.fault_mode?;
    (args.attack.bad_miner_index == Some(index)).then(|| format!("--fault-mode={mode}"))
}

/// Fault modes that cheat nobody of anything the attacker's own signed
/// objects could prove: its honest work is still paid. (`overwrite_own`
/// is proven only where the store lets the overwrite through.)
pub fn attacker_is_paid(args: &SmokeArgs, remote: bool) -> bool {
    match args.attack.fault_mode {
        Some(
            FaultMode::InflateCost
            | FaultMode::Tamper
            | FaultMode::Plant
            | FaultMode::DeleteReceipts
            | FaultMode::Bloat,
        ) => true,
        Some(FaultMode::OverwriteOwn) => remote,
        _ => false,
    }
}

/// What a run with an attacker must end with, if it has one.
pub fn expectation(args: &SmokeArgs, shares: &str) -> Option<String> {
    let bad = args.attack.bad_miner_index?;
    Some(match args.attack.fault_mode {
        Some(FaultMode::InflateCost) => {
            format!("miner {bad}'s cost claims were ignored; {shares}")
        }
        Some(mode) if attacker_is_paid(args, args.bucket != "local") => {
            format!("the run survived miner {bad}'s {mode}; {shares}")
        }
        _ => format!("miner {bad} scored 0, every honest miner is paid; {shares}"),
    })
}
