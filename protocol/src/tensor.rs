//! Tensor artifacts: named, row-major, little-endian f32 tensors inside a
//! [`pb::TensorArtifact`]. The artifact is stored as a signed envelope; the
//! BLAKE3 digest of its payload is what manifests and receipts commit to.

use prost::Message as _;

use crate::envelope::{field_len, sealed_len};
use crate::pb;

/// Refuse tensors above this many elements: a length field from the bucket
/// must never make a reader allocate without bound.
pub const MAX_ELEMENTS: u64 = 1 << 28;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("artifact has no tensor named {0:?}")]
    Missing(String),
    #[error("tensor {name:?}: {reason}")]
    Invalid { name: String, reason: String },
}

/// A decoded f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Tensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl F32Tensor {
    pub fn new(shape: Vec<usize>, values: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        F32Tensor { shape, values }
    }

    pub fn to_pb(&self, name: &str) -> pb::Tensor {
        let mut data = Vec::with_capacity(self.values.len() * 4);
        for v in &self.values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        pb::Tensor {
            name: name.to_string(),
            dtype: pb::DType::DtypeF32 as i32,
            shape: self.shape.iter().map(|&d| d as u64).collect(),
            data,
        }
    }

    pub fn from_pb(tensor: &pb::Tensor) -> Result<Self, TensorError> {
        let invalid = |reason: String| TensorError::Invalid {
            name: tensor.name.clone(),
            reason,
        };
        if tensor.dtype != pb::DType::DtypeF32 as i32 {
            return Err(invalid(format!("dtype {} is not f32", tensor.dtype)));
        }
        if tensor.shape.len() > 8 {
            return Err(invalid(format!("{} dimensions", tensor.shape.len())));
        }
        // Every dimension is bounded, not only their product: with a zero
        // among them, the others could otherwise claim up to 2^64 rows each
        // and reach code that sizes buffers from one dimension.
        let elements = tensor
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| {
                acc.checked_mul(d).filter(|_| d <= MAX_ELEMENTS)
            })
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| invalid(format!("shape {:?} is too large", tensor.shape)))?;
        if tensor.data.len() as u64 != elements * 4 {
            return Err(invalid(format!(
                "shape {:?} needs {} bytes, payload has {}",
                tensor.shape,
                elements * 4,
                tensor.data.len()
            )));
        }
        let values = tensor
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(F32Tensor {
            shape: tensor.shape.iter().map(|&d| d as usize).collect(),
            values,
        })
    }
}

impl pb::TensorArtifact {
    /// The tensor called `name`, decoded and validated.
    pub fn tensor(&self, name: &str) -> Result<F32Tensor, TensorError> {
        let found = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| TensorError::Missing(name.to_string()))?;
        F32Tensor::from_pb(found)
    }
}

/// The one-value f32 tensors among `tensors` (a job's losses, by the
/// workloads' convention), decoded: what a passing verdict carries for the
/// owner, who records them per step. Anything else is left out.
pub fn scalars(tensors: &[pb::Tensor]) -> Vec<(String, f32)> {
    tensors
        .iter()
        .filter(|t| t.shape.iter().product::<u64>() == 1)
        .filter_map(|t| {
            let value = F32Tensor::from_pb(t).ok()?.values.first().copied()?;
            Some((t.name.clone(), value))
        })
        .collect()
}

/// Length of the sealed envelope of a [`pb::TensorArtifact`] with these ids
/// and f32 tensors of these names and shapes (as [`F32Tensor::to_pb`] makes
/// them), whatever their values: every element takes four bytes. Computed
/// without building the tensors, which can be large.
pub fn sealed_artifact_len(
    run_id: &str,
    job_id: &str,
    attempt: u32,
    tensors: &[(String, Vec<usize>)],
) -> usize {
    let ids = pb::TensorArtifact {
        run_id: run_id.to_string(),
        job_id: job_id.to_string(),
        attempt,
        tensors: Vec::new(),
    };
    let tensors: usize = tensors
        .iter()
        .map(|(name, shape)| {
            let header = pb::Tensor {
                name: name.clone(),
                dtype: pb::DType::DtypeF32 as i32,
                shape: shape.iter().map(|&d| d as u64).collect(),
                data: Vec::new(),
            };
            let data = 4 * shape.iter().product::<usize>();
            field_len(header.encoded_len() + field_len(data))
        })
        .sum();
    sealed_len::<pb::TensorArtifact>(ids.encoded_len() + tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_the_one_value_f32_tensors() {
        let mut truncated = F32Tensor::new(vec![1], vec![9.0]).to_pb("short");
        truncated.data.pop();
        let tensors = vec![
            F32Tensor::new(vec![1], vec![2.5]).to_pb("eval_loss"),
            F32Tensor::new(vec![2], vec![1.0, 2.0]).to_pb("x"),
            F32Tensor::new(vec![1, 1], vec![-1.0]).to_pb("train_loss"),
            F32Tensor::new(vec![0], vec![]).to_pb("empty"),
            truncated,
        ];
        assert_eq!(
            scalars(&tensors),
            vec![
                ("eval_loss".to_string(), 2.5),
                ("train_loss".to_string(), -1.0)
            ]
        );
    }

    #[test]
    fn sealed_artifact_len_is_exact() {
        let key = crate::Keypair::generate();
        for rows in [0usize, 1, 7, 8, 31, 32, 1024, 1025, 4097] {
            let spec = vec![
                ("x".to_string(), vec![rows, 16]),
                ("loss".to_string(), vec![1]),
                ("e".to_string(), vec![0]),
            ];
            let artifact = pb::TensorArtifact {
                run_id: "run-1".into(),
                job_id: "s00003-inner-m01-r00-g2".into(),
                attempt: 130,
                tensors: spec
                    .iter()
                    .map(|(n, shape)| {
                        let values = (0..shape.iter().product::<usize>())
                            .map(|i| i as f32 * 0.5 - 3.0)
                            .collect();
                        F32Tensor::new(shape.clone(), values).to_pb(n)
                    })
                    .collect(),
            };
            let sealed = crate::envelope::seal(&artifact, "k", &key);
            assert_eq!(
                sealed.bytes.len(),
                sealed_artifact_len("run-1", "s00003-inner-m01-r00-g2", 130, &spec),
                "{rows} rows"
            );
        }
    }

    #[test]
    fn round_trip_and_validation() {
        let t = F32Tensor::new(vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, f32::MIN, 7.0]);
        let p = t.to_pb("w");
        assert_eq!(p.data.len(), 24);
        assert_eq!(&p.data[..4], &1.0f32.to_le_bytes());
        assert_eq!(F32Tensor::from_pb(&p).unwrap(), t);
        let mut short = p.clone();
        short.data.pop();
        assert!(F32Tensor::from_pb(&short).is_err());
        let mut huge = p;
        huge.shape = vec![u64::MAX, 2];
        assert!(
            F32Tensor::from_pb(&huge)
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
    }

    /// Found by the `tensor` fuzz target: a zero dimension made the element
    /// count 0, so any other dimension passed, however large.
    #[test]
    fn empty_tensor_cannot_claim_huge_dimensions() {
        let mut empty = F32Tensor::new(vec![0, 4], vec![]).to_pb("e");
        assert_eq!(F32Tensor::from_pb(&empty).unwrap().shape, vec![0, 4]);
        for shape in [
            vec![0, MAX_ELEMENTS + 1],
            vec![0, 0, 2_676_586_235_471_855_616, 790_704_862_796_260_645],
            vec![u64::MAX, 0],
        ] {
            empty.shape = shape;
            let err = F32Tensor::from_pb(&empty).unwrap_err().to_string();
            assert!(err.contains("too large"), "{err}");
        }
        empty.shape = vec![MAX_ELEMENTS, 0];
        assert!(F32Tensor::from_pb(&empty).is_ok());
    }
}
