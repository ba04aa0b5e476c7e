//! `minerd`: a miner host bound to one hotkey.
//!
//! The [`supervisor`] forks one [`worker`] process per device (`cuda:N` per
//! GPU, or `cpu` workers) and restarts any that dies. A worker finds its
//! assignments under its own bucket prefix, verifies the owner's signatures
//! and the input digests before computing, runs the job on Burn, and writes
//! its output artifact and a signed receipt.

pub mod access;
pub mod attacks;
pub mod faults;
pub mod hostile;
pub mod supervisor;
pub mod worker;
