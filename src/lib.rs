//! The `locus` command's library part: what its local runs and the
//! process-level tests share.

pub mod system;
