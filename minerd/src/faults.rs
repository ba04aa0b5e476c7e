//! Deliberate misbehaviour: the attack matrix the validator and the owner
//! are tested against (`docs/security.md` lists each attack and its defence).
//!
//! Compiled only with the `fault-injection` feature (off by default; the
//! test suite switches it on), so a production miner holds no attack code
//! and cannot be switched into a cheating mode by a flag.

use std::fmt;
use std::str::FromStr;

use locus_protocol::pb;
use locus_protocol::tensor::F32Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Compute honestly, then add 1 to one element of the output.
    PartialCorrupt,
    /// Replace the output with plausible-looking noise.
    WrongOutput,
    /// Do not compute; return zeros of the right shapes.
    SkipCompute,
    /// Corrupt only receipts it guesses will not be sampled, guessing from
    /// public data (the receipt key), as a predictable sampler would allow.
    Stealth,
    /// Never compute: wait for another attempt's output of the same job and
    /// submit a copy of it.
    Copy,
    /// Submit the output of an earlier job of the same kind for a new job.
    ReplayOld,
    /// Compute honestly, but write receipts claiming another miner's hotkey.
    ForeignReceipt,
    /// Ignore real work; forge owner manifests and assignments (for itself
    /// and planted for other miners) and submit receipts for them.
    ForgeManifest,
    /// Compute honestly, but report a huge cost in the receipt.
    InflateCost,
    /// Compute honestly, but write the result after the lease expired.
    Late,
    /// Ignore real work; try to write through grants sealed to other miners.
    LeakedGrant,
    /// Corrupt inner outputs (which the step's reduce averages) from the
    /// start, and reduce and outer outputs from step 2 on: the run uses its
    /// unverified inner outputs for two steps before a replay of a critical
    /// job catches it, and must then undo them.
    Taint,
    /// Compute honestly; once the validator has judged a result, replace the
    /// artifact with a different one it also signs (through its own grant on
    /// S3, where the store must refuse it).
    OverwriteOwn,
    /// Compute honestly, but act as a stranger with write access to a local
    /// bucket: replace a few other miners' artifacts with objects it signs,
    /// and delete a few accepted outputs before the jobs that read them ran.
    Tamper,
    /// Compute honestly, but plant objects at keys the owner will need:
    /// manifests of future jobs, assignment keys of other workers.
    Plant,
    /// Compute honestly, but delete its first receipts right after writing
    /// them, before any verdict.
    DeleteReceipts,
    /// Compute honestly, but put 100 MB objects where the owner and the
    /// validator read: a heartbeat, a run manifest, a receipt, a verdict.
    Bloat,
}

impl FaultMode {
    pub const ALL: [FaultMode; 17] = [
        FaultMode::PartialCorrupt,
        FaultMode::WrongOutput,
        FaultMode::SkipCompute,
        FaultMode::Stealth,
        FaultMode::Copy,
        FaultMode::ReplayOld,
        FaultMode::ForeignReceipt,
        FaultMode::ForgeManifest,
        FaultMode::InflateCost,
        FaultMode::Late,
        FaultMode::LeakedGrant,
        FaultMode::Taint,
        FaultMode::OverwriteOwn,
        FaultMode::Tamper,
        FaultMode::Plant,
        FaultMode::DeleteReceipts,
        FaultMode::Bloat,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            FaultMode::PartialCorrupt => "partial_corrupt",
            FaultMode::WrongOutput => "wrong_output",
            FaultMode::SkipCompute => "skip_compute",
            FaultMode::Stealth => "stealth",
            FaultMode::Copy => "copy",
            FaultMode::ReplayOld => "replay_old",
            FaultMode::ForeignReceipt => "foreign_receipt",
            FaultMode::ForgeManifest => "forge_manifest",
            FaultMode::InflateCost => "inflate_cost",
            FaultMode::Late => "late",
            FaultMode::LeakedGrant => "leaked_grant",
            FaultMode::Taint => "taint",
            FaultMode::OverwriteOwn => "overwrite_own",
            FaultMode::Tamper => "tamper",
            FaultMode::Plant => "plant",
            FaultMode::DeleteReceipts => "delete_receipts",
            FaultMode::Bloat => "bloat",
        }
    }

    /// Whether `taint` corrupts a job of `kind` (a `JobKind` value) in `step`.
    pub fn taints(kind: i32, step: u32) -> bool {
        match pb::JobKind::try_from(kind) {
            Ok(pb::JobKind::Inner) => true,
            Ok(pb::JobKind::Reduce | pb::JobKind::Outer) => step >= 2,
            _ => false,
        }
    }

    /// What the stealth attacker believes: a receipt is checked when a
    /// public hash of its key falls under the default rate (how a sampler
    /// keyed on public data decides). The validator's draw is keyed on its
    /// own secret signature instead, so this guess is worth nothing.
    pub fn guess_sampled(receipt_key: &str) -> bool {
        let hash = blake3::hash(receipt_key.as_bytes());
        hash.as_bytes()[0] < 64
    }

    /// Applies the fault to honestly computed outputs (not used for
    /// `SkipCompute`, which never computes).
    pub fn corrupt(&self, tensors: &mut [pb::Tensor], salt: u64) {
        match self {
            FaultMode::PartialCorrupt | FaultMode::Stealth | FaultMode::Taint => {
                if let Some(first) = tensors.first_mut()
                    && let Ok(mut t) = F32Tensor::from_pb(first)
                    && let Some(v) = t.values.first_mut()
                {
                    *v += 1.0;
                    *first = t.to_pb(&first.name);
                }
            }
            FaultMode::WrongOutput => {
                let mut state = salt | 1;
                for tensor in tensors.iter_mut() {
                    if let Ok(mut t) = F32Tensor::from_pb(tensor) {
                        for v in t.values.iter_mut() {
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            *v = (state % 2000) as f32 / 1000.0 - 1.0;
                        }
                        *tensor = t.to_pb(&tensor.name);
                    }
                }
            }
            _ => {}
        }
    }

    /// Zero tensors shaped like a job's real outputs.
    pub fn zeros(spec: &[(String, Vec<usize>)]) -> Vec<pb::Tensor> {
        spec.iter()
            .map(|(name, shape)| {
                F32Tensor::new(shape.clone(), vec![0.0; shape.iter().product()]).to_pb(name)
            })
            .collect()
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FaultMode {
    /// A clap parser that lists every mode in `--help` and in its errors.
    pub fn value_parser() -> impl clap::builder::TypedValueParser<Value = FaultMode> {
        use clap::builder::TypedValueParser as _;
        clap::builder::PossibleValuesParser::new(FaultMode::ALL.map(|m| m.name()))
            .try_map(|name| name.parse::<FaultMode>())
    }
}

impl FromStr for FaultMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultMode::ALL.iter().map(|m| m.name()).collect();
                format!("unknown fault mode {s:?}; one of {}", names.join(", "))
            })
    }
}
