//! `/metrics` and `/healthz` for a daemon, when `--metrics-addr` is given.

use std::net::SocketAddr;

use locus_observe::Metrics;
use locus_protocol::Bucket;

use crate::Shutdown;

/// Starts the endpoint (if `addr` is set) with the bucket's request counters
/// registered. Returns the bound address.
pub async fn serve(
    addr: Option<SocketAddr>,
    metrics: &Metrics,
    bucket: &Bucket,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<SocketAddr>> {
    metrics.track_bucket("bucket", bucket);
    let Some(addr) = addr else {
        return Ok(None);
    };
    let stop = shutdown.clone();
    // `serve` logs the address it bound.
    let bound =
        locus_observe::metrics::serve(addr, metrics.clone(), async move { stop.wait().await })
            .await?;
    Ok(Some(bound))
}
