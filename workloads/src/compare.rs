//! Comparing a replay with a miner's output.
//!
//! On the same backend a replay must match bit for bit: the workloads are
//! deterministic there, so any difference is a wrong result. Across backends
//! (a CUDA miner replayed on CPU, say) rounding legitimately differs and the
//! manifest's relative tolerance applies.

use locus_protocol::pb;
use locus_protocol::tensor::F32Tensor;

/// How outputs must agree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Agreement {
    Bitwise,
    Relative(f32),
}

/// Checks that `claimed` holds exactly the tensors of `replayed`, agreeing
/// as required. The error says which tensor and element differ.
pub fn compare_outputs(
    replayed: &[pb::Tensor],
    claimed: &[pb::Tensor],
    agreement: Agreement,
) -> Result<(), String> {
    if replayed.len() != claimed.len() {
        return Err(format!(
            "{} output tensors, replay produced {}",
            claimed.len(),
            replayed.len()
        ));
    }
    for expected in replayed {
        let got = claimed
            .iter()
            .find(|t| t.name == expected.name)
            .ok_or_else(|| format!("output tensor {:?} is missing", expected.name))?;
        let want = F32Tensor::from_pb(expected).map_err(|e| e.to_string())?;
        let have = F32Tensor::from_pb(got).map_err(|e| e.to_string())?;
        if want.shape != have.shape {
            return Err(format!(
                "tensor {:?} has shape {:?}, replay {:?}",
                expected.name, have.shape, want.shape
            ));
        }
        // Across backends an element is measured against its own size or
        // the replayed tensor's RMS, whichever is larger: rounding in a sum
        // is relative to the terms summed, so an element that cancels to
        // near zero (a small gradient) carries an error the size of the
        // tensor's values, not of itself. The RMS is the replayer's own.
        let scale = match agreement {
            Agreement::Bitwise => 0.0,
            Agreement::Relative(_) => rms(&want.values),
        };
        for (i, (w, h)) in want.values.iter().zip(&have.values).enumerate() {
            let agree = match agreement {
                Agreement::Bitwise => w.to_bits() == h.to_bits(),
                Agreement::Relative(tol) => {
                    (w - h).abs() <= tol * w.abs().max(h.abs()).max(scale).max(1e-6)
                        && h.is_finite() == w.is_finite()
                }
            };
            if !agree {
                return Err(format!(
                    "tensor {:?} element {i}: miner {h:e}, replay {w:e} ({agreement:?})",
                    expected.name
                ));
            }
        }
    }
    Ok(())
}

/// Root mean square of the finite values, in f64.
fn rms(values: &[f32]) -> f32 {
    let (sum, n) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((0.0f64, 0usize), |(s, n), &v| {
            (s + f64::from(v) * f64::from(v), n + 1)
        });
    if n == 0 {
        0.0
    } else {
        (sum / n as f64).sqrt() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: Vec<f32>) -> pb::Tensor {
        F32Tensor::new(vec![values.len()], values).to_pb("a")
    }

    #[test]
    fn bitwise_and_tolerant() {
        let a = t(vec![1.0, 2.0]);
        let one = std::slice::from_ref;
        assert!(compare_outputs(one(&a), one(&a), Agreement::Bitwise).is_ok());
        let b = t(vec![1.0, 2.000001]);
        let err = compare_outputs(one(&a), one(&b), Agreement::Bitwise).unwrap_err();
        assert!(err.contains("element 1"), "{err}");
        assert!(compare_outputs(one(&a), one(&b), Agreement::Relative(1e-4)).is_ok());
        let c = t(vec![2.0, 2.0]);
        assert!(compare_outputs(&[a], &[c], Agreement::Relative(1e-4)).is_err());
    }

    #[test]
    fn small_elements_are_measured_against_the_tensor_s_scale() {
        let one = std::slice::from_ref;
        // RMS ~0.707: a difference of 5e-7 in a 5e-6 element is rounding.
        let replayed = t(vec![1.0, 5e-6]);
        let honest = t(vec![1.0, 5.0005e-6]);
        assert!(compare_outputs(one(&replayed), one(&honest), Agreement::Relative(1e-4)).is_ok());
        assert!(compare_outputs(one(&replayed), one(&honest), Agreement::Bitwise).is_err());
        // Beyond tolerance × RMS it is a wrong value, however small.
        let wrong = t(vec![1.0, 5e-4]);
        let err =
            compare_outputs(one(&replayed), one(&wrong), Agreement::Relative(1e-4)).unwrap_err();
        assert!(err.contains("element 1"), "{err}");
        // A non-finite claim never passes.
        let nan = t(vec![1.0, f32::NAN]);
        assert!(compare_outputs(one(&replayed), one(&nan), Agreement::Relative(1e-4)).is_err());
    }
}
