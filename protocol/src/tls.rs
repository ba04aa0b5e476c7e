//! TLS for every HTTPS client in a process: rustls on ring.
//!
//! The S3 client (object_store) and the grant writer (reqwest) both build
//! their TLS from rustls's process-wide crypto provider. The build links
//! ring only, not aws-lc-rs (whose C library was the heaviest unit of a
//! cold build), so rustls has no provider of its own choosing: it is
//! installed here, once, before any client is built. A client built
//! without it would panic, so clients are built through this module.

use std::sync::Once;

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

#[cfg(test)]
mod tests {
    /// HTTPS clients build (they panic without a provider).
    #[test]
    fn clients_build_with_ring() {
        let _ = super::http_client();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
