//! Subtensor (Bittensor) chain adapter for the Locus validator.
//!
//! - [`Chain::metagraph`] reads a subnet's hotkey → uid map (and validator permits).
//! - [`Chain::set_weights`] turns scores into Bittensor weights and signs (dry run) or
//!   submits a `SubtensorModule::set_weights` extrinsic, respecting the subnet's rate limit;
//!   on a commit-reveal subnet it seals the weights to a drand round ([`timelock`]) and
//!   sends `commit_timelocked_weights` instead.
//!
//! The bindings are generated at build time from `runtime/metadata/subtensor-metadata.scale`
//! (a Subtensor runtime metadata snapshot, V16), so the build needs no chain access.

mod chain;
mod signer;
pub mod timelock;
mod weights;

pub use chain::{
    Chain, DecodedCommit, DecodedSetWeights, MAX_COMMIT_BYTES, Metagraph, Mode, Network, Outcome,
    UnixClock, WeightsReport, bundled_offline_client, decode_commit_timelocked_weights,
    decode_set_weights,
};
pub use signer::{CryptoType, ValidatorSigner};
pub use weights::{U16_MAX_WEIGHT, normalize_max_u16, rate_limited_until};

/// Static bindings for the Subtensor runtime and the metadata they were
/// generated from (crate `locus-chain-runtime`).
pub use locus_chain_runtime::{METADATA, subtensor};

/// Everything that can go wrong talking to the chain or preparing weights.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("invalid chain endpoint {0:?}: expected finney, test, local, or a ws:// / wss:// URL")]
    InvalidEndpoint(String),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("chain request failed while {context}: {reason}")]
    Rpc { context: String, reason: String },
    #[error("subnet {0} does not exist on this chain")]
    SubnetNotFound(u16),
    #[error("subnet {0} has no owner hotkey on chain")]
    NoOwnerHotkey(u16),
    #[error("no weights to set: the score list is empty")]
    NoWeights,
    #[error("all scores are zero: there is nothing to set")]
    AllScoresZero,
    #[error("invalid score {score} for uid {uid}: scores must be finite and not negative")]
    InvalidScore { uid: u16, score: f64 },
    #[error("uid {0} appears more than once in the weights")]
    DuplicateUid(u16),
    #[error("uid {uid} is not a neuron of subnet {netuid} (it has {n} neurons)")]
    UnknownUid { netuid: u16, uid: u16, n: u16 },
    #[error("validator hotkey {ss58} is not registered on subnet {netuid}")]
    NotRegistered { ss58: String, netuid: u16 },
    #[error("cannot seal the weights for commit-reveal: {0}")]
    Timelock(#[from] timelock::TimelockError),
    #[error("the sealed weights take {bytes} bytes; the chain takes at most {max} in a commit")]
    CommitTooLarge { bytes: usize, max: usize },
    #[error("wallet keyfile {path}: {reason}")]
    Wallet { path: String, reason: String },
    #[error("cannot build the extrinsic: {0}")]
    Extrinsic(String),
    #[error("the node refused the extrinsic: {0}")]
    Submit(String),
    #[error("cannot decode the extrinsic: {0}")]
    Decode(String),
}

impl ChainError {
    /// Whether trying the same request again later may succeed: the node was
    /// unreachable or failed a request, or the chain changed under the request.
    /// The rest need an operator (wrong endpoint, subnet or wallet, a hotkey
    /// not registered, commit-reveal) or different scores.
    pub fn is_transient(&self) -> bool {
        match self {
            ChainError::Connect { .. }
            | ChainError::Rpc { .. }
            | ChainError::Submit(_)
            | ChainError::Extrinsic(_)
            | ChainError::UnknownUid { .. } => true,
            ChainError::InvalidEndpoint(_)
            | ChainError::SubnetNotFound(_)
            | ChainError::NoOwnerHotkey(_)
            | ChainError::NoWeights
            | ChainError::AllScoresZero
            | ChainError::InvalidScore { .. }
            | ChainError::DuplicateUid(_)
            | ChainError::NotRegistered { .. }
            | ChainError::Timelock(_)
            | ChainError::CommitTooLarge { .. }
            | ChainError::Wallet { .. }
            | ChainError::Decode(_) => false,
        }
    }
}
