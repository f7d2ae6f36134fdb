//! [`SqliteCatalog`]: the catalog in one SQLite file, or in memory for tests.
//!
//! The tables, statements and queries are those of [`crate::sql`], shared with
//! [`PgCatalog`](crate::PgCatalog); the schema is `migrations/sqlite/`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};

use crate::error::{Error, Result};

/// The schema migrations, embedded at compile time from `migrations/sqlite/`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another writer's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a file catalog's pool (WAL: readers run beside the one writer).
const MAX_CONNECTIONS: u32 = 8;

/// A [`Catalog`](backup_core::ports::Catalog) stored in SQLite.
///
/// A file catalog uses WAL journaling, foreign keys and a [`BUSY_TIMEOUT`] of 5 s, so several
/// tasks (and processes) can write to it at once. Every constructor brings the schema up to
/// date; running the migrations again is a no-op. Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pool: SqlitePool,
}

impl SqliteCatalog {
    /// Opens (creating if missing) the catalog file at `path`. The parent directory must
    /// exist.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::open_file(options).await
    }

    /// Opens a catalog from a URL: `sqlite://PATH` (or `sqlite:PATH`) for a file, created if
    /// missing unless the URL sets `mode=`; `sqlite::memory:` (or `mode=memory`) for a
    /// private in-memory catalog like [`SqliteCatalog::in_memory`].
    pub async fn connect(url: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("sqlite:")
            .ok_or_else(|| invalid("expected sqlite://PATH or sqlite::memory:".into()))?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
        if database.is_empty() {
            return Err(invalid("no database path".into()));
        }
        let options = SqliteConnectOptions::from_str(url).map_err(|e| invalid(e.to_string()))?;
        let has_param = |name: &str| params.split('&').any(|p| p.starts_with(name));
        if database == ":memory:" || params.split('&').any(|p| p == "mode=memory") {
            Self::open_memory(options).await
        } else if has_param("mode=") {
            Self::open_file(options).await
        } else {
            Self::open_file(options.create_if_missing(true)).await
        }
    }

    /// A fresh, private, empty in-memory catalog (lost when the last clone is dropped).
    pub async fn in_memory() -> Result<Self> {
        Self::open_memory(SqliteConnectOptions::from_str("sqlite::memory:")?).await
    }

    /// The connection pool, for maintenance (backups of the file, `VACUUM`, inspection).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection, waiting for them to be returned; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn open_file(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    /// An in-memory database lives as long as a connection to it: one connection, kept
    /// forever, so that every query sees the same database.
    async fn open_memory(options: SqliteConnectOptions) -> Result<Self> {
        let options = options.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<Self> {
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Starts a write transaction. IMMEDIATE takes the write lock up front (waiting up to
    /// the busy timeout), so the transaction cannot fail half-way on a lock upgrade.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

crate::sql::rows::rows!(SqliteCatalog, Sqlite);
crate::sql::catalog::catalog!(SqliteCatalog);
