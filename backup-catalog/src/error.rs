//! The crate's one error type, and its conversion into [`backup_core::Error`].

/// Result alias used by this crate's own (non-trait) functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a catalog backend.
///
/// The [`Catalog`](backup_core::ports::Catalog) methods return [`backup_core::Error`]:
/// [`Error::AlreadyExists`] becomes [`backup_core::Error::AlreadyExists`], every other variant
/// becomes [`backup_core::Error::Catalog`] with this error as its source.
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
    /// A connection URL this crate does not accept.
    #[error("invalid catalog url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
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

#[cfg(test)]
mod tests {
    use super::*;

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
