//! The one way Locus serves HTTP: bind, serve a warp filter on a spawned
//! task, stop gracefully. `/metrics` of the daemons ([`crate::metrics::serve`])
//! and the discovery UI both go through [`serve`], so binding errors, the
//! bound address and shutdown behave the same everywhere.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use warp::Filter;
use warp::reply::Response;

use crate::Error;

/// Binds `addr` (port 0 picks a free port) and serves `routes` on a spawned
/// task until `shutdown` completes; in-flight requests finish first. Returns
/// the bound address once the listener is up. `name` says what stopped in
/// the log. Routes must answer every request (end them with a fallback).
pub async fn serve<F>(
    addr: SocketAddr,
    routes: F,
    shutdown: impl Future<Output = ()> + Send + 'static,
    name: &'static str,
) -> Result<SocketAddr, Error>
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    tokio::spawn(async move {
        warp::serve(routes)
            .incoming(listener)
            .graceful(shutdown)
            .run()
            .await;
        tracing::debug!(addr = %bound, "{name} stopped");
    });
    Ok(bound)
}

/// A `404 not found` for whatever the routes before it did not answer.
pub fn not_found()
-> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    use warp::Reply as _;
    warp::any().map(|| {
        warp::reply::with_status("not found\n", warp::http::StatusCode::NOT_FOUND).into_response()
    })
}
