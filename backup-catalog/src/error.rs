//! The crate's one error type, and its conversion into [`backup_core::Error`].

/// Result alias used by this crate's own (non-trait) functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a catalog backend.
///
/// The [`Catalog`](backup_core::ports::Catalog) methods return [`backup_core::Error`]:
/// [`Error::AlreadyExists`] becomes [`backup_core::Error::AlreadyExists`],
/// [`Error::InvalidUrl`] becomes [`backup_core::Error::Invalid`] (field `catalog url`), every
/// other variant becomes [`backup_core::Error::Catalog`] with this error as its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed (connection, I/O, SQL, constraint other than a name clash).
    #[error("catalog database: {source}")]
    Database {
        /// What sqlx reported.
        #[source]
        source: sqlx::Error,
    },
    /// Bringing the schema up to date failed.
    #[error("catalog migration: {source}")]
    Migrate {
        /// What the migrator reported.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A value that must be unique (organization login, destination name) is taken by another
    /// row.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What clashed, e.g. `organization login "acme"`.
        what: String,
    },
    /// A stored row does not decode into its model type (edited by hand, or written by a
    /// newer version).
    #[error("stored {entity} {id} does not decode: {source}")]
    Corrupt {
        /// The kind of row (`account`, `snapshot`, ...).
        entity: &'static str,
        /// The row's id, as stored.
        id: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// A model value could not be encoded as JSON.
    #[error("cannot encode {entity} {id}: {source}")]
    Encode {
        /// The kind of value.
        entity: &'static str,
        /// The value's id.
        id: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// A stored column holds a value this version never writes (edited by hand, or written
    /// by a newer version).
    #[error("stored {table}.{column} value {value:?} is invalid: {reason}")]
    BadColumn {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The row's key, as stored.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key envelope was deleted or replaced, but its old bytes could not yet be erased
    /// from the files (SQLite: the write-ahead-log checkpoint stayed blocked by other
    /// connections reading or writing). The change itself is committed; retrying the call
    /// completes the erasure.
    #[error(
        "key envelope erasure incomplete: other connections blocked the write-ahead-log \
         checkpoint ({attempts} attempts); retry"
    )]
    ErasureBlocked {
        /// How many checkpoints were tried.
        attempts: u32,
    },
    /// The catalog file could not be created, or it or its `-wal`/`-shm` could not be
    /// given mode 0600 (for example a missing directory, or a file another user owns).
    #[error("cannot {action} catalog file {}: {source}", path.display())]
    FileMode {
        /// What failed: `create`, `inspect` or `set mode 0600 on`.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A connection URL this crate does not accept.
    #[error("invalid catalog url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given, with any password replaced by `***`.
        url: String,
        /// Why it was refused.
        reason: String,
    },
}

impl From<sqlx::Error> for Error {
    fn from(source: sqlx::Error) -> Self {
        Error::Database { source }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(source: sqlx::migrate::MigrateError) -> Self {
        Error::Migrate { source }
    }
}

impl From<Error> for backup_core::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::AlreadyExists { what } => backup_core::Error::AlreadyExists { what },
            Error::InvalidUrl { url, reason } => {
                backup_core::Error::invalid("catalog url", format!("{url:?}: {reason}"))
            }
            other => backup_core::Error::catalog(other),
        }
    }
}

/// Maps a unique-constraint violation to [`Error::AlreadyExists`] naming `what`; any other
/// database error stays [`Error::Database`].
pub(crate) fn clash_as(err: sqlx::Error, what: impl FnOnce() -> String) -> Error {
    let unique = err
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation());
    if unique {
        Error::AlreadyExists { what: what() }
    } else {
        Error::Database { source: err }
    }
}

/// The URL with its password (`user:password@` or a `password=` parameter) replaced by
/// `***`, for error messages.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<&str> = query
                .split('&')
                .map(|p| {
                    if p.starts_with("password=") {
                        "password=***"
                    } else {
                        p
                    }
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        for (url, shown) in [
            ("postgres://u:pw@h:5/db?x=1", "postgres://u:***@h:5/db?x=1"),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?a=1&password=x&b",
                "postgres://h/db?a=1&password=***&b",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
            ("sqlite:///a:b@c", "sqlite:///a:b@c"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
    }

    #[test]
    fn invalid_urls_are_invalid_input() {
        let core: backup_core::Error = Error::InvalidUrl {
            url: "mysql://h/db".into(),
            reason: "unsupported".into(),
        }
        .into();
        assert_eq!(core.kind(), backup_core::ErrorKind::InvalidInput);
        assert_eq!(
            core.to_string(),
            "invalid catalog url: \"mysql://h/db\": unsupported"
        );
    }

    #[test]
    fn already_exists_keeps_its_kind() {
        let core: backup_core::Error = Error::AlreadyExists {
            what: "destination \"x\"".into(),
        }
        .into();
        assert_eq!(core.kind(), backup_core::ErrorKind::AlreadyExists);
        assert_eq!(core.to_string(), "destination \"x\" already exists");
    }

    #[test]
    fn other_errors_become_catalog_errors() {
        let core: backup_core::Error = Error::from(sqlx::Error::PoolClosed).into();
        assert_eq!(core.kind(), backup_core::ErrorKind::Io);
        assert!(matches!(core, backup_core::Error::Catalog { .. }));
        let source = std::error::Error::source(&core).expect("source kept");
        assert!(source.to_string().starts_with("catalog database:"));
    }

    #[test]
    fn non_unique_errors_are_not_clashes() {
        let err = clash_as(sqlx::Error::RowNotFound, || unreachable!());
        assert!(matches!(err, Error::Database { .. }));
    }
}
