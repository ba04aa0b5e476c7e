//! `minerd`: a miner host bound to one hotkey.
//!
//! The [`supervisor`] forks one [`worker`] process per device (`cuda:N` per
//! GPU, or `cpu` workers) and restarts any that dies. A worker finds its
//! assignments under its own bucket prefix, verifies the owner's signatures
//! and the input digests before computing, runs the job on Burn, and writes
//! its output artifact and a signed receipt.
//!
//! The worker calls an [`adversary::Adversary`] at fixed points of each job:
//! [`adversary::Honest`] (does nothing) in every default build. The attack
//! modes the validator and the owner are tested against (`--fault-mode`) are
//! compiled only with the `fault-injection` feature: `faults` names them,
//! `attacker` plugs them into the worker, `attacks` and `hostile` carry them
//! out.

pub use locus_daemon::access;
pub mod adversary;
#[cfg(feature = "fault-injection")]
pub mod attacker;
#[cfg(feature = "fault-injection")]
pub mod attacks;
#[cfg(feature = "fault-injection")]
pub mod faults;
#[cfg(feature = "fault-injection")]
pub mod hostile;
pub mod next_assignment;
pub use locus_daemon::supervisor;
pub mod worker;
