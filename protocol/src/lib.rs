//! The Locus wire protocol.
//!
//! Everything the three daemons exchange goes through the shared bucket as a
//! signed protobuf record. This crate owns those records ([`pb`]), the keys
//! that sign them ([`keys`]), the envelope that binds a signature to a record
//! type and a bucket key ([`envelope`]), where every object lives
//! ([`paths`]), the tensor artifact format ([`tensor`]), the storage
//! handle ([`bucket`]), the grant URLs it presigns ([`grant`],
//! [`presign`]), the TLS its HTTPS clients use ([`tls`]) and the rule that attributes a receipt to a hotkey
//! ([`attribution`]).

pub mod attribution;
#[cfg(feature = "io")]
pub mod bucket;
pub mod digest;
pub mod envelope;
#[cfg(feature = "fault-injection")]
pub mod faults;
pub mod grant;
pub mod keys;
pub mod paths;
#[cfg(feature = "io")]
pub mod presign;
pub mod record;
#[cfg(feature = "io")]
pub mod runs;
pub mod tensor;
pub mod time;
#[cfg(feature = "io")]
pub mod tls;
pub mod wallet;

/// Generated protobuf types of package `locus.v1` (see
/// `proto/locus/v1/locus.proto`; regenerated as `build.rs` says).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!("pb/locus.v1.rs");

    #[cfg(test)]
    mod tests {
        /// The committed types were generated from the `.proto` as it is.
        #[test]
        fn pb_is_current() {
            let proto = include_bytes!("../proto/locus/v1/locus.proto");
            let generated = include_str!("pb/locus.v1.rs");
            let recorded = generated
                .lines()
                .find_map(|l| l.split_once("Source BLAKE3: ").map(|(_, d)| d.trim()))
                .expect("src/pb/locus.v1.rs names the BLAKE3 of its source");
            assert_eq!(
                recorded,
                blake3::hash(proto).to_hex().as_str(),
                "proto/locus/v1/locus.proto changed since src/pb/locus.v1.rs was generated: \
                 run `cargo build -p locus-protocol --features protogen` and commit the result"
            );
        }
    }
}

#[cfg(feature = "io")]
pub use bucket::{Bucket, BucketError, Listed};
pub use digest::Digest;
pub use envelope::{Expect, RejectReason, Rejection, Verified};
pub use keys::{Hotkey, Keypair};
pub use paths::Layout;
pub use record::Record;
