//! Prometheus metrics for the Locus daemons: the registry ([`metrics`]) and
//! the one HTTP server helper ([`http::serve`]) that serves it, and that
//! `locus-discovery` serves its UI with.
//!
//! Every daemon links this crate (through `locus-daemon`), so it holds only
//! what a daemon needs: the live discovery UI is the separate
//! `locus-discovery` crate, linked by the `locus` binary alone.

pub mod http;
pub mod metrics;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::net::SocketAddr;

pub use metrics::{Counter, DurationMetric, Gauge, Metrics};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
