//! `validatord`: samples receipts unpredictably, replays sampled jobs on
//! Burn, writes signed verdicts, and turns verified work into compute-unit
//! scores and dry-run weights.
//!
//! [`sampling`] and [`scoring`] are pure; [`replay`] checks one receipt,
//! reading shared inputs once through [`input_cache`]; [`driver`] is the
//! bucket loop.

pub mod audit;
pub mod auditor;
pub mod driver;
pub use locus_daemon::input_cache;
pub mod replay;
pub mod sampling;
pub mod scoring;
pub mod weights;
