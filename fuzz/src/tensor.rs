//! Target `tensor`: the tensor artifact format. Each input is read three
//! ways: as a `TensorArtifact` (what artifact envelopes carry), as a single
//! `Tensor`, and as a raw layout (dimension count, little-endian u64
//! dimensions, element bytes) that reaches shape and length mismatches
//! without protobuf framing in the way.

use locus_protocol::pb;
use locus_protocol::tensor::{F32Tensor, MAX_ELEMENTS};
use prost::Message as _;

use crate::keep;

pub fn fuzz(data: &[u8]) {
    if let Ok(artifact) = pb::TensorArtifact::decode(data) {
        for tensor in &artifact.tensors {
            check(tensor);
            keep(artifact.tensor(&tensor.name));
        }
        keep(artifact.tensor("absent").map_err(|e| e.to_string()));
    }
    if let Ok(tensor) = pb::Tensor::decode(data) {
        check(&tensor);
    }
    check(&from_raw(data));
}

/// `data` as: one byte of dimension count (mod 10, so "too many dimensions"
/// is reachable), that many little-endian u64 dimensions, element bytes.
pub fn from_raw(data: &[u8]) -> pb::Tensor {
    let (&count, rest) = data.split_first().unwrap_or((&0, &[]));
    let dims = usize::from(count % 10).min(rest.len() / 8);
    let (shape, elements) = rest.split_at(dims * 8);
    pb::Tensor {
        name: "raw".into(),
        dtype: pb::DType::DtypeF32 as i32,
        shape: shape
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
            .collect(),
        data: elements.to_vec(),
    }
}

/// Decodes one tensor; an accepted tensor must be what its fields say.
pub fn check(tensor: &pb::Tensor) {
    match F32Tensor::from_pb(tensor) {
        Ok(decoded) => {
            assert!(
                decoded.shape.iter().all(|&d| d as u64 <= MAX_ELEMENTS),
                "a dimension above MAX_ELEMENTS was accepted: {:?}",
                decoded.shape
            );
            assert_eq!(
                decoded.values.len(),
                decoded.shape.iter().product::<usize>()
            );
            assert_eq!(&decoded.to_pb(&tensor.name), tensor, "round trip differs");
        }
        Err(e) => keep(e.to_string()),
    }
}
