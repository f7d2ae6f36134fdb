//! The crate's one error type.
//!
//! Rules this module keeps:
//! - every variant names the failure a caller can act on (`NotFound`, `Integrity`,
//!   `KeyRequired`, `PathEscapes`, ...), never a bare string;
//! - the underlying cause is kept as `#[source]`;
//! - bytes read from storage that do not authenticate or do not parse are always
//!   [`Error::Integrity`] or [`Error::UnsupportedVersion`], never a panic;
//! - [`Error::kind`] gives a small enum callers can branch on.

use std::path::PathBuf;

/// Result alias used throughout backup-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed error from an adapter (catalog, key store, panel integration).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in backup-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given to a constructor or an operation is not acceptable.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field or argument.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// An exclude or selection glob does not compile.
    #[error("invalid glob pattern {pattern:?}: {source}")]
    InvalidGlob {
        /// The pattern as given.
        pattern: String,
        /// What globset said.
        #[source]
        source: globset::Error,
    },
    /// A named thing does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (e.g. `snapshot 0190…`).
        what: String,
    },
    /// A thing that must be unique exists already.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What collided.
        what: String,
    },
    /// An operation was refused by a rule of the domain (for example terminate-before-restore
    /// on a reseller account, or a plan naming another account's snapshot).
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// Data read from storage failed authentication or is malformed.
    #[error("integrity check failed for {object}: {reason}")]
    Integrity {
        /// The object (storage path, blob id) that failed.
        object: String,
        /// What did not hold.
        reason: String,
    },
    /// An object was written by a newer (or unknown) format version.
    #[error("{object} has unsupported format version {version}")]
    UnsupportedVersion {
        /// The object.
        object: String,
        /// The version found.
        version: u16,
    },
    /// Reading the snapshot needs the owner's private key, which was not given.
    #[error(
        "account {account} uses an owner-held key: the owner's private key is needed to read its snapshots"
    )]
    KeyRequired {
        /// The account whose key is needed.
        account: String,
    },
    /// A key was given but it does not belong to this account or does not open the data.
    #[error("wrong key: {reason}")]
    WrongKey {
        /// Why the key was refused.
        reason: String,
    },
    /// A restored path would leave the restore target.
    #[error("path escapes the restore target: {path}")]
    PathEscapes {
        /// The offending path, as recorded in the snapshot.
        path: String,
    },
    /// Storage usage would pass the account's hard limit.
    #[error("quota exceeded: {used} bytes used, limit {limit} bytes")]
    QuotaExceeded {
        /// Bytes in use (or that would be).
        used: u64,
        /// The hard limit.
        limit: u64,
    },
    /// Cryptographic failure that is not an integrity failure (bad key material, RNG).
    #[error("crypto: {reason}")]
    Crypto {
        /// What failed.
        reason: String,
    },
    /// The object store failed.
    #[error("storage: {source}")]
    Storage {
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The catalog adapter failed.
    #[error("catalog: {source}")]
    Catalog {
        /// The adapter's error.
        #[source]
        source: BoxError,
    },
    /// An account source or restore target (panel integration) failed.
    #[error("account source/target: {source}")]
    Integration {
        /// The adapter's error.
        #[source]
        source: BoxError,
    },
    /// An account setting refused the operation (status, on-demand limit, quota, backup
    /// locations, a read-only destination). Nothing was uploaded.
    #[error("refused by the account setting {setting}: {reason}")]
    SettingRefused {
        /// The setting, as the CLI and the panel name it (`status`, `max-on-demand`,
        /// `quota`, `locations`, `read-only`).
        setting: &'static str,
        /// Why, with the values involved.
        reason: String,
    },
    /// Another operation holds the account's lease on a destination (a backup, a key reset,
    /// a rotation), and it was not released in time.
    #[error("account {account} is busy: {holder} holds its lease until {expires}")]
    LeaseHeld {
        /// The account.
        account: String,
        /// What holds it (operation and process).
        holder: String,
        /// When the lease expires unless renewed (RFC 3339).
        expires: String,
    },
    /// The operation was cancelled through its token; nothing was recorded.
    #[error("cancelled")]
    Cancelled,
    /// A background task failed unexpectedly (a bug, reported instead of a panic).
    #[error("internal: {reason}")]
    Internal {
        /// What happened.
        reason: String,
    },
}

/// Coarse classification of an [`Error`], for callers that branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input from the caller.
    InvalidInput,
    /// Something does not exist.
    NotFound,
    /// Something exists already.
    AlreadyExists,
    /// Refused by a domain rule.
    Refused,
    /// Stored data failed authentication or is malformed.
    Integrity,
    /// A key is missing or wrong.
    Key,
    /// A path would leave the restore target.
    PathEscapes,
    /// A quota would be exceeded.
    Quota,
    /// Storage, catalog, file system or integration I/O.
    Io,
    /// An account setting refused the operation.
    Setting,
    /// Another operation holds the account's lease.
    Busy,
    /// Cancelled by the caller.
    Cancelled,
    /// A bug.
    Internal,
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid { .. } | Error::InvalidGlob { .. } => ErrorKind::InvalidInput,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Storage {
                source: object_store::Error::NotFound { .. },
            } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Integrity { .. } | Error::UnsupportedVersion { .. } => ErrorKind::Integrity,
            Error::KeyRequired { .. } | Error::WrongKey { .. } | Error::Crypto { .. } => {
                ErrorKind::Key
            }
            Error::PathEscapes { .. } => ErrorKind::PathEscapes,
            Error::QuotaExceeded { .. } => ErrorKind::Quota,
            Error::Storage { .. }
            | Error::Io { .. }
            | Error::Catalog { .. }
            | Error::Integration { .. } => ErrorKind::Io,
            Error::SettingRefused { .. } => ErrorKind::Setting,
            Error::LeaseHeld { .. } => ErrorKind::Busy,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// Whether trying again later may succeed: a held lease, and storage or catalog I/O
    /// that is not a missing object or a refused precondition. Bad input, refusals,
    /// integrity failures, keys, quotas and cancellation are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::LeaseHeld { .. } => true,
            Error::Storage { source } => Error::storage_is_transient(source),
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ),
            Error::Catalog { .. } => true,
            _ => false,
        }
    }

    /// The storage part of [`Error::is_transient`]: every `object_store` error but those
    /// naming a definite outcome (missing object, existing object, failed precondition,
    /// unsupported, bad path, permission, authentication). Stores' own classifiers are
    /// finer: see `StoreResolver::is_transient`.
    pub fn storage_is_transient(source: &object_store::Error) -> bool {
        !matches!(
            source,
            object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
    }

    /// Shorthand for [`Error::SettingRefused`].
    pub fn setting(setting: &'static str, reason: impl Into<String>) -> Self {
        Error::SettingRefused {
            setting,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Integrity`].
    pub fn integrity(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Integrity {
            object: object.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// Shorthand for [`Error::Refused`].
    pub fn refused(reason: impl Into<String>) -> Self {
        Error::Refused {
            reason: reason.into(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a catalog adapter error.
    pub fn catalog(source: impl Into<BoxError>) -> Self {
        Error::Catalog {
            source: source.into(),
        }
    }
}

impl From<object_store::Error> for Error {
    fn from(source: object_store::Error) -> Self {
        Error::Storage { source }
    }
}
