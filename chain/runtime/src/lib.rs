//! Static bindings for the Subtensor (Bittensor) runtime, generated at build
//! time from `metadata/subtensor-metadata.scale` (a runtime metadata snapshot,
//! V16), so that building needs no chain access.
//!
//! They are a crate of their own because they are most of the chain adapter's
//! compile time: `locus-chain`'s unit tests and its changes then rebuild only
//! the adapter, not the runtime's whole API.

/// Static bindings for the Subtensor runtime.
#[subxt::subxt(runtime_metadata_path = "metadata/subtensor-metadata.scale")]
pub mod subtensor {}

/// The metadata the bindings were generated from.
pub const METADATA: &[u8] = include_bytes!("../metadata/subtensor-metadata.scale");
