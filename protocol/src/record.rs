//! The [`Record`] trait ties each protobuf message to the type tag its
//! envelope carries, so a receipt can never be read back as a manifest.

use crate::pb;

/// A protobuf message that can be stored in the bucket inside a signed envelope.
pub trait Record: prost::Message + Default + Sized {
    /// Fully qualified protobuf type name, signed into every envelope.
    const TYPE: &'static str;
    /// Largest sealed object of this type a reader fetches. Checked against
    /// the size the storage reports before the body is read, so a hostile
    /// object at a heartbeat or receipt key costs one bounded request, not
    /// a download of whatever its writer chose to upload.
    const MAX_BYTES: usize;
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

macro_rules! records {
    ($($ty:ident => $max:expr),* $(,)?) => {
        $(impl Record for pb::$ty {
            const TYPE: &'static str = concat!("locus.v1.", stringify!($ty));
            const MAX_BYTES: usize = $max;
        })*

        /// The [`Record::TYPE`] of every record type, so that code covering
        /// all of them (the fuzz targets) can check it misses none.
        pub const TYPES: &[&str] = &[$(concat!("locus.v1.", stringify!($ty))),*];
    };
}

// Caps leave wide room above the largest honest object: a job manifest or
// assignment grows with a job's inputs (a reduce reads every micro-batch),
// run state with steps and rewinds, score windows with hotkeys, a run
// manifest with its compacted vocabulary (at most 65,536 ids of ≤ 5 bytes).
records!(
    RunManifest => 512 * KIB,
    RunState => 4 * MIB,
    JobManifest => MIB,
    Assignment => 4 * MIB,
    WorkerHeartbeat => 16 * KIB,
    Receipt => 64 * KIB,
    Verdict => 64 * KIB,
    ScoreWindow => 16 * MIB,
    TensorArtifact => crate::envelope::MAX_ENVELOPE_BYTES,
    ChainWeights => 4 * MIB,
    HeartbeatGrant => 4 * MIB,
    AuditJob => 64 * KIB,
    AuditResult => 64 * KIB,
    AuditorDropped => 64 * KIB,
    ValidatorCheckpoint => 64 * MIB,
);
