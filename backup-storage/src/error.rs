//! The crate's error type.

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a destination URL could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a URL.
    #[error("invalid destination URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The scheme is not one this crate opens.
    #[error("unsupported destination scheme {scheme:?} in {url:?} (supported: file://, memory://)")]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
        /// The URL as given.
        url: String,
    },
    /// The store could not be set up.
    #[error("cannot open {url:?}: {source}")]
    Open {
        /// The URL as given.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
