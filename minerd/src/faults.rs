//! Deliberate misbehaviour for adversarial tests of the validator.
//!
//! Only compiled with the `fault-injection` feature (on for development
//! builds, off in release images), so a production miner cannot be switched
//! into a cheating mode by a flag.

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
}

impl FaultMode {
    pub const ALL: [FaultMode; 3] = [
        FaultMode::PartialCorrupt,
        FaultMode::WrongOutput,
        FaultMode::SkipCompute,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            FaultMode::PartialCorrupt => "partial_corrupt",
            FaultMode::WrongOutput => "wrong_output",
            FaultMode::SkipCompute => "skip_compute",
        }
    }

    /// Applies the fault to honestly computed outputs (not used for
    /// `SkipCompute`, which never computes).
    pub fn corrupt(&self, tensors: &mut [pb::Tensor], salt: u64) {
        match self {
            FaultMode::PartialCorrupt => {
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
            FaultMode::SkipCompute => {}
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

impl FromStr for FaultMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown fault mode {s:?}; one of partial_corrupt, wrong_output, skip_compute"
                )
            })
    }
}
