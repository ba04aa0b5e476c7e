//! Plumbing shared by the three daemons, kept out of their logic so each
//! daemon's `main` stays a thin shell.

pub mod access;
pub mod args;
pub mod backoff;
pub mod config;
pub mod exit;
pub mod input_cache;
pub mod limits;
pub mod logging;
pub mod shutdown;
pub mod stats;
pub mod supervisor;
pub mod telemetry;
pub mod wake;

pub use backoff::Backoff;
pub use shutdown::Shutdown;
pub use wake::Wake;
