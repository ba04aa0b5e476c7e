//! Observability for Locus: Prometheus metrics for the daemons
//! ([`metrics`]) and the live, read-only discovery UI over the shared bucket
//! ([`ui`], backed by the incremental reader in [`index`]).
//!
//! The daemons call [`metrics::serve`]; `locus discovery-ui` calls
//! [`ui::serve_ui`].

pub mod index;
pub mod metrics;
pub mod ui;
pub mod views;

use std::net::SocketAddr;

pub use index::{DiscoveryIndex, IndexConfig, RefreshReport};
pub use metrics::{Counter, DurationMetric, Gauge, Metrics};
pub use ui::{UiConfig, serve_ui, serve_ui_with};

/// Errors of this crate. Problems with individual bucket objects are never
/// errors: they are listed as rejected objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bucket(#[from] locus_protocol::BucketError),
}
