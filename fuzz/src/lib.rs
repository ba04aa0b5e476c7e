//! Fuzz targets for every decoder of bucket data, and the fixtures they share
//! with the seed-corpus generator (`src/bin/seed_corpus.rs`).
//!
//! Each module's `fuzz` is one cargo-fuzz target; `fuzz_targets/<name>.rs`
//! only calls it. The targets call the public decoders of `locus-protocol`
//! and let them return errors: a panic, an abort or an allocation over the
//! fuzzer's `-malloc_limit_mb` is a finding. The `assert!`s state properties
//! the decoders promise (a valid signature opens, a decoded tensor holds as
//! many values as its shape says), so breaking one is a finding too.
//!
//! Keys come from constant seeds: runs are reproducible, seeds sealed by the
//! generator verify inside the targets, and no key is committed as a file.

use std::sync::LazyLock;

use locus_protocol::{Hotkey, Keypair, pb};

pub mod envelope;
pub mod fixtures;
pub mod grant;
pub mod keyfile;
pub mod paths;
pub mod records;
pub mod tensor;

pub use fixtures::Fixture;

/// Netuid and run id of every bucket key the fixtures use.
pub const NETUID: u16 = 7;
pub const RUN: &str = "fuzz-run";

/// The bucket key every seed envelope is sealed for and every target opens
/// at. The signature binds the key, so a seed only verifies here.
pub const OBJECT_KEY: &str = "v1/netuid=7/runs/fuzz-run/objects/seed.pb";

/// Who signs a record type in a real run (see `locus_protocol::paths`).
#[derive(Clone, Copy, Debug)]
pub enum Role {
    Owner,
    Miner,
    Validator,
}

/// The fixed identities of a fuzzing run.
pub struct Keys {
    pub owner: Keypair,
    pub miner: Keypair,
    pub validator: Keypair,
    /// Signs nothing a reader expects: its envelopes verify but must be
    /// refused by every `Expect` other than `AnySigner`.
    pub stranger: Keypair,
    /// The set targets pass as `Expect::OneOf`: miner and validator.
    pub one_of: Vec<Hotkey>,
}

impl Keys {
    pub fn get(&self, role: Role) -> &Keypair {
        match role {
            Role::Owner => &self.owner,
            Role::Miner => &self.miner,
            Role::Validator => &self.validator,
        }
    }
}

/// Built once per process: deriving a key costs a scalar multiplication,
/// too much to repeat for every input.
pub static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let key = |byte: u8| Keypair::from_seed(&[byte; 32]);
    let (miner, validator) = (key(2), key(3));
    let one_of = vec![miner.hotkey(), validator.hotkey()];
    Keys {
        owner: key(1),
        miner,
        validator,
        stranger: key(9),
        one_of,
    }
});

/// Does something for one record type; see [`each_record`] and [`nth_record`].
pub trait Visit {
    fn visit<T: Fixture>(&mut self);
}

macro_rules! record_table {
    ($($ty:ident),* $(,)?) => {
        /// How many record types the table below covers. The seed generator
        /// checks it against `locus_protocol::record::TYPES`.
        pub const RECORD_COUNT: usize = [$(stringify!($ty)),*].len();

        /// Calls `visitor` for every record type, in table order.
        pub fn each_record<V: Visit>(visitor: &mut V) {
            $(visitor.visit::<pb::$ty>();)*
        }

        /// Calls `visitor` for the record type at `index % RECORD_COUNT`:
        /// how the `records` target maps its first input byte to a type.
        pub fn nth_record<V: Visit>(index: usize, visitor: &mut V) {
            let index = index % RECORD_COUNT;
            let mut i = 0;
            $(
                if i == index {
                    return visitor.visit::<pb::$ty>();
                }
                i += 1;
            )*
            let _ = i;
        }
    };
}

record_table!(
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
    AuditJob,
    AuditResult,
    AuditorDropped,
    ValidatorCheckpoint,
);

/// Seals raw payload bytes with the protocol's own signing, so targets can
/// sign payloads that are not valid records and reach the payload decoder
/// behind the signature check.
pub fn seal_raw(record_type: &str, payload: &[u8], key: &str, signer: &Keypair) -> Vec<u8> {
    locus_protocol::envelope::seal_payload(record_type, payload.to_vec(), key, signer).bytes
}

/// The record type names of the table, for the generator's coverage check.
pub fn table_types() -> Vec<&'static str> {
    struct Names(Vec<&'static str>);
    impl Visit for Names {
        fn visit<T: Fixture>(&mut self) {
            self.0.push(T::TYPE);
        }
    }
    let mut names = Names(Vec::new());
    each_record(&mut names);
    names.0
}

/// Keeps a decoder's result alive so the optimizer cannot drop the call.
pub fn keep<T>(value: T) {
    std::hint::black_box(value);
}
