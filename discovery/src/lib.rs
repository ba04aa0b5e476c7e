//! The live, read-only discovery UI over the shared bucket: a page and a
//! JSON API ([`ui`]) over an incremental reader that verifies every object
//! it shows ([`index`]), in the shapes of [`views`].
//!
//! Only the `locus` binary links this crate (`locus discovery-ui` calls
//! [`serve_ui`]); the daemons link `locus-observe` for their metrics alone.

pub mod index;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod ui;
pub mod views;

pub use index::{DiscoveryIndex, IndexConfig, RefreshReport};
pub use ui::{UiConfig, serve_ui, serve_ui_with};

/// Errors of this crate. Problems with individual bucket objects are never
/// errors: they are listed as rejected objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Serve(#[from] locus_observe::Error),
    #[error(transparent)]
    Bucket(#[from] locus_protocol::BucketError),
}
