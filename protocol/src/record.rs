//! The [`Record`] trait ties each protobuf message to the type tag its
//! envelope carries, so a receipt can never be read back as a manifest.

use crate::pb;

/// A protobuf message that can be stored in the bucket inside a signed envelope.
pub trait Record: prost::Message + Default + Sized {
    /// Fully qualified protobuf type name, signed into every envelope.
    const TYPE: &'static str;
}

macro_rules! records {
    ($($ty:ident),* $(,)?) => {
        $(impl Record for pb::$ty {
            const TYPE: &'static str = concat!("locus.v1.", stringify!($ty));
        })*

        /// The [`Record::TYPE`] of every record type, so that code covering
        /// all of them (the fuzz targets) can check it misses none.
        pub const TYPES: &[&str] = &[$(concat!("locus.v1.", stringify!($ty))),*];
    };
}

records!(
    RunManifest,
    RunState,
    JobManifest,
    Assignment,
    WorkerHeartbeat,
    Receipt,
    Verdict,
    ScoreWindow,
    TensorArtifact,
    ChainWeights,
    HeartbeatGrant,
);
