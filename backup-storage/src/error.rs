//! The crate's error type.
//!
//! Rules:
//! - [`open`](crate::open) and the builders return [`Error`] directly.
//! - Inside [`ObjectStore`](object_store::ObjectStore) methods the trait's own
//!   [`object_store::Error`] is returned: a missing object is `NotFound`, an exclusive
//!   create that lost is `AlreadyExists`, and every other failure of this crate's stores and
//!   wrappers is `Generic` with an [`Error`] as its source, so callers can downcast it and
//!   ask [`Error::is_retryable`] (the [`RetryStore`](crate::RetryStore) does).
//! - Secrets never appear in messages: key files are named by path, never shown; URLs
//!   lose their passwords and the values of options this crate does not know.
//! - Into [`backup_core::Error`]: a URL this crate refuses becomes
//!   [`Invalid`](backup_core::Error::Invalid) with the field `destination url`, an
//!   object-store error [`Storage`](backup_core::Error::Storage), a local file error
//!   [`Io`](backup_core::Error::Io); the failures of a store (SSH, SFTP, injected faults)
//!   become `Storage` holding `object_store::Error::Generic` with this error as its source,
//!   as the stores return them from their methods.

use std::fmt::{self, Display};
use std::path::PathBuf;

/// The destination URL forms [`open`](crate::open) accepts, for messages.
pub(crate) const ACCEPTED_FORMS: &str = "file:///ABSOLUTE/PATH, s3://BUCKET/PREFIX[?OPTIONS], \
     sftp://USER@HOST[:PORT]/ABSOLUTE/PATH[?OPTIONS], memory://";

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
    /// The text is not in one of the explicit forms a destination URL takes (an empty or
    /// scheme-less string, a scheme without `//`, a `file` URL without an absolute path).
    #[error("destination URL {url:?} is not explicit: {problem}; accepted forms: {ACCEPTED_FORMS}")]
    NotExplicit {
        /// The URL as given (not shown if it may hold credentials).
        url: String,
        /// What is missing.
        problem: UrlProblem,
    },
    /// The scheme is not one this crate opens.
    #[error(
        "unsupported destination scheme {scheme:?} in {url:?}; accepted forms: {ACCEPTED_FORMS}"
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
            | Error::NotExplicit { .. }
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

/// Why a destination URL is not explicit ([`Error::NotExplicit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlProblem {
    /// Nothing was given.
    Empty,
    /// No scheme: a bare name or path such as `backups` or `/srv/backups`.
    NoScheme,
    /// A known scheme not followed by `//`, such as `s3:bucket/prefix`.
    MissingSlashes {
        /// The scheme, lower case.
        scheme: String,
    },
    /// A `file` URL without an absolute path after `file://`, such as `file://relative`
    /// or `file:`.
    NotAbsolute,
}

impl Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlProblem::Empty => f.write_str("the URL is empty"),
            UrlProblem::NoScheme => {
                f.write_str("no scheme (a local directory is file:///ABSOLUTE/PATH)")
            }
            UrlProblem::MissingSlashes { scheme } => {
                write!(f, "'{scheme}:' must be followed by '//'")
            }
            UrlProblem::NotAbsolute => f.write_str(
                "a file URL takes an absolute path after 'file://' (three slashes in all)",
            ),
        }
    }
}

/// The field [`backup_core::Error::Invalid`] names for a refused destination URL.
const URL_FIELD: &str = "destination url";

impl From<Error> for backup_core::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidUrl { url, reason } => {
                backup_core::Error::invalid(URL_FIELD, format!("{url:?}: {reason}"))
            }
            Error::NotExplicit { url, problem } => backup_core::Error::invalid(
                URL_FIELD,
                format!("{url:?} is not explicit: {problem}; accepted forms: {ACCEPTED_FORMS}"),
            ),
            Error::UnsupportedScheme { scheme, url } => backup_core::Error::invalid(
                URL_FIELD,
                format!("{url:?}: unsupported scheme {scheme:?}; accepted forms: {ACCEPTED_FORMS}"),
            ),
            Error::Open { source, .. } => backup_core::Error::Storage { source },
            Error::Io { path, source } => backup_core::Error::Io {
                path: PathBuf::from(path),
                source,
            },
            Error::InjectedFault { .. } => backup_core::Error::Storage {
                source: err.into_store("FaultStore"),
            },
            Error::Ssh { .. }
            | Error::HostKeyRejected { .. }
            | Error::AuthRejected { .. }
            | Error::Key { .. }
            | Error::Sftp { .. }
            | Error::Protocol { .. } => backup_core::Error::Storage {
                source: err.into_store("SFTP"),
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_core_errors_by_kind() {
        use backup_core::Error as Core;

        let bad = crate::check("s3:bucket/p").unwrap_err();
        match Core::from(bad) {
            Core::Invalid { field, reason } => {
                assert_eq!(field, "destination url");
                assert!(
                    reason.contains("'s3:' must be followed by '//'"),
                    "{reason}"
                );
                assert!(reason.contains(ACCEPTED_FORMS), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        for bad in ["ftp://host/x", "s3://bucket/x?allow_http=maybe"] {
            let core = Core::from(crate::check(bad).unwrap_err());
            assert!(
                matches!(
                    core,
                    Core::Invalid {
                        field: "destination url",
                        ..
                    }
                ),
                "{core:?}"
            );
        }

        let io = Error::Io {
            path: "/srv/b".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        match Core::from(io) {
            Core::Io { path, source } => {
                assert_eq!(path, PathBuf::from("/srv/b"));
                assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
            }
            other => panic!("{other:?}"),
        }

        let open = Error::Open {
            url: "s3://bucket".into(),
            source: object_store::Error::NotImplemented {
                operation: "x".into(),
                implementer: "y".into(),
            },
        };
        assert!(matches!(
            Core::from(open),
            Core::Storage {
                source: object_store::Error::NotImplemented { .. }
            }
        ));

        // A store's own failure keeps this error as the source, as store methods return it.
        let fault = Error::InjectedFault {
            call: 3,
            kind: crate::RequestKind::Put,
        };
        match Core::from(fault) {
            Core::Storage { source } => {
                assert!(is_transient(&source), "{source}");
                let object_store::Error::Generic { source, .. } = source else {
                    panic!("not Generic");
                };
                assert!(matches!(
                    source.downcast_ref::<Error>(),
                    Some(Error::InjectedFault { call: 3, .. })
                ));
            }
            other => panic!("{other:?}"),
        }
        let refused = Error::HostKeyRejected {
            host: "h:22".into(),
            reason: "changed".into(),
        };
        assert!(matches!(Core::from(refused), Core::Storage { .. }));
    }
}
