//! TLS for every HTTPS client in a process: rustls on ring.
//!
//! The S3 client (object_store) and the grant writer (reqwest) both build
//! their TLS from rustls's process-wide crypto provider. The build links
//! ring only, not aws-lc-rs (whose C library was the heaviest unit of a
//! cold build), so rustls has no provider of its own choosing: it is
//! installed here, once, before any client is built. A client built
//! without it would panic, so clients are built through this module.

use std::sync::{Arc, Once, OnceLock};

/// Makes ring rustls's process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if a provider was installed first; that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A builder for an HTTP client (e.g. for presigned grant URLs), with the
/// crypto provider in place.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

/// An HTTP client with default settings (see [`http_client_builder`]).
pub fn http_client() -> reqwest::Client {
    // Fails only where TLS cannot be set up at all, as `Client::new` does.
    http_client_builder()
        .build()
        .expect("an HTTP client with rustls on ring")
}

/// An HTTP client built on first use and shared by its clones. Building
/// one loads the system's CA certificates (about a millisecond), and a
/// process on a local bucket never sends a request through it.
#[derive(Clone, Default)]
pub struct LazyHttpClient(Arc<OnceLock<reqwest::Client>>);

impl LazyHttpClient {
    /// The client, built by [`http_client`] the first time it is asked for.
    pub fn client(&self) -> &reqwest::Client {
        self.0.get_or_init(http_client)
    }
}

impl From<reqwest::Client> for LazyHttpClient {
    /// One built already (with settings of its own).
    fn from(client: reqwest::Client) -> Self {
        LazyHttpClient(Arc::new(OnceLock::from(client)))
    }
}

#[cfg(test)]
mod tests {
    /// HTTPS clients build (they panic without a provider).
    #[test]
    fn clients_build_with_ring() {
        let _ = super::http_client();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    /// Clones share the one client, built once.
    #[test]
    fn a_lazy_client_is_built_once_for_all_its_clones() {
        let lazy = super::LazyHttpClient::default();
        let clone = lazy.clone();
        assert!(clone.0.get().is_none(), "built before it was asked for");
        let first: *const reqwest::Client = lazy.client();
        assert!(std::ptr::eq(first, clone.client()));
    }
}
