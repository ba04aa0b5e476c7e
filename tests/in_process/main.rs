//! The daemon loops in one process over an in-memory bucket (`tests/kit`),
//! in one test binary so that the kit is compiled once:
//! - `honest`: honest runs, planted keys, restarts of the owner and the
//!   validator;
//! - `attacks`: the attack matrix of docs/security.md (with the
//!   `fault-injection` feature, whose attack modes it drives);
//! - `audit`: auditors, honest and lying (the same);
//! - `gpt_pipe`: the pipelined GPT run against the single-process trainer.

#[path = "../kit/mod.rs"]
mod kit;

#[cfg(feature = "fault-injection")]
mod attacks;
#[cfg(feature = "fault-injection")]
mod audit;
mod gpt_pipe;
mod honest;
