//! `minerd`: a miner host bound to one hotkey.
//!
//! The [`supervisor`] forks one [`worker`] process per device (`cuda:N` per
//! GPU, or `cpu` workers) and restarts any that dies. A worker finds its
//! assignments under its own bucket prefix, verifies the owner's signatures
//! and the input digests before computing, runs the job on Burn, and writes
//! its output artifact and a signed receipt.
//!
//! The worker calls an [`adversary::Adversary`] at fixed points of each job:
//! [`adversary::Honest`] does nothing; `attacker` plugs in the test-only
//! attack modes of `faults`.

pub mod access;
pub mod adversary;
pub mod attacker;
pub mod attacks;
pub mod faults;
pub mod hostile;
pub mod supervisor;
pub mod worker;
