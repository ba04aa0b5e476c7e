//! `orchestratord`: the owner's daemon that turns a training run into signed
//! job manifests and assignments in the bucket, accepts results, reassigns
//! jobs whose lease ran out, and resumes from the bucket after a restart.
//!
//! [`schedule`] is the pure core; [`driver`] is the loop that reads and
//! writes the bucket around it.

pub mod driver;
pub mod gate;
pub mod schedule;
pub mod workload;
