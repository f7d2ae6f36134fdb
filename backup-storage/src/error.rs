//! The crate's error type.
//!
//! Rules:
//! - [`open`](crate::open) and the builders return [`Error`] directly.
//! - Inside [`ObjectStore`](object_store::ObjectStore) methods the trait's own
//!   [`object_store::Error`] is returned: a missing object is `NotFound`, an exclusive
//!   create that lost is `AlreadyExists`, and every other failure of this crate's stores and
//!   wrappers is `Generic` with an [`Error`] as its source, so callers can downcast it and
//!   ask [`Error::is_retryable`] (the [`RetryStore`](crate::RetryStore) does).
//! - Secrets never appear in messages: key files are named by path, never shown.

use std::fmt::Display;

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a destination could not be opened or a storage operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not a URL this crate understands.
    #[error("invalid destination URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The scheme is not one this crate opens.
    #[error(
        "unsupported destination scheme {scheme:?} in {url:?} (supported: file://, memory://, s3://, sftp://)"
    )]
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
    /// A local file or directory could not be read or created.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The SSH connection could not be made or broke.
    #[error("ssh to {host}: {source}")]
    Ssh {
        /// `HOST:PORT`.
        host: String,
        /// The SSH library's error.
        #[source]
        source: russh::Error,
    },
    /// The server's host key is not the one recorded for it: the connection is refused.
    #[error("host key of {host} refused: {reason}")]
    HostKeyRejected {
        /// `HOST:PORT`.
        host: String,
        /// Why (unknown host, changed key, certificate).
        reason: String,
    },
    /// The server did not accept the client key.
    #[error("ssh authentication of {user:?} at {host} failed with the key {key_file}")]
    AuthRejected {
        /// The user name.
        user: String,
        /// `HOST:PORT`.
        host: String,
        /// The private key file used (path only).
        key_file: String,
    },
    /// The private key file could not be loaded.
    #[error("cannot load the ssh key {path}: {source}")]
    Key {
        /// The key file (path only).
        path: String,
        /// Why.
        #[source]
        source: russh::keys::Error,
    },
    /// An SFTP request failed.
    #[error("sftp {op} {path}: {source}")]
    Sftp {
        /// What was being done (`open`, `write`, `rename`, ...).
        op: &'static str,
        /// The remote path.
        path: String,
        /// The SFTP library's error or the server's status.
        #[source]
        source: russh_sftp::client::error::Error,
    },
    /// The server answered something that breaks the protocol or the object's own record.
    #[error("sftp {path}: unexpected server behaviour: {reason}")]
    Protocol {
        /// The remote path.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A failure injected by [`FaultStore`](crate::FaultStore).
    #[error("injected fault on call {call} ({kind})")]
    InjectedFault {
        /// The call's number, from 1, among the calls the plan looks at.
        call: u64,
        /// The request kind that failed.
        kind: crate::RequestKind,
    },
}

impl Error {
    /// Whether trying the same operation again may succeed: connection failures, timeouts,
    /// broken sessions and injected faults are retryable; refused host keys, rejected
    /// credentials, bad URLs and server statuses about the object itself are not.
    pub fn is_retryable(&self) -> bool {
        use russh_sftp::client::error::Error as SftpError;
        use russh_sftp::protocol::StatusCode;
        match self {
            Error::Ssh { .. } | Error::InjectedFault { .. } => true,
            Error::Sftp { source, .. } => match source {
                SftpError::Status(status) => matches!(
                    status.status_code,
                    StatusCode::NoConnection | StatusCode::ConnectionLost
                ),
                SftpError::IO(_) | SftpError::Timeout | SftpError::UnexpectedBehavior(_) => true,
                SftpError::Limited(_) | SftpError::UnexpectedPacket => false,
            },
            Error::Io { source, .. } => is_transient_io(source.kind()),
            Error::InvalidUrl { .. }
            | Error::UnsupportedScheme { .. }
            | Error::Open { .. }
            | Error::HostKeyRejected { .. }
            | Error::AuthRejected { .. }
            | Error::Key { .. }
            | Error::Protocol { .. } => false,
        }
    }

    /// Wraps this error for an [`ObjectStore`](object_store::ObjectStore) method.
    pub(crate) fn into_store(self, store: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store,
            source: Box::new(self),
        }
    }
}

/// Whether an [`object_store::Error`] is worth retrying. A `Generic` error is looked at
/// along its source chain: this crate's [`Error`] answers [`Error::is_retryable`]; an HTTP
/// failure of the S3 client that is about the connection (connect, request, timeout,
/// interrupted, truncated body) and I/O errors of the timeout/reset kind are transient.
/// Everything else is not: statuses the S3 client already retried by itself (it retries
/// 5xx and throttling on its own), invalid ranges, and every variant that names a definite
/// outcome (`NotFound`, `AlreadyExists`, `Precondition`, `NotModified`, `PermissionDenied`,
/// `Unauthenticated`, `InvalidPath`, `NotSupported`, `NotImplemented`, ...).
pub fn is_transient(error: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let object_store::Error::Generic { source, .. } = error else {
        return matches!(error, object_store::Error::JoinError { .. });
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(e) = current {
        if let Some(ours) = e.downcast_ref::<Error>() {
            return ours.is_retryable();
        }
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Decode
            );
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return is_transient_io(io.kind());
        }
        current = e.source();
    }
    false
}

fn is_transient_io(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind;
    matches!(
        kind,
        ErrorKind::TimedOut
            | ErrorKind::Interrupted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionRefused
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}

/// A plain-text error for `object_store` error sources.
#[derive(Debug)]
pub(crate) struct Message(pub(crate) String);

impl Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// Boxes a message as an error source.
pub(crate) fn message(text: impl Into<String>) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(Message(text.into()))
}
