//! [`SqliteCatalog`]: the catalog in one SQLite file, or in memory for tests.
//!
//! The tables, statements and queries are those of [`crate::sql`], shared with
//! [`PgCatalog`](crate::PgCatalog); the schema is `migrations/sqlite/`.

mod erase;
mod permissions;

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
///
/// The database file and its `-wal` and `-shm` are mode 0600 whatever the umask: opening
/// creates a missing file with that mode and sets it on existing ones (it fails if it
/// cannot, for example on a file another user owns).
///
/// Key envelopes are erased, not just deleted: no byte of a deleted or replaced envelope is
/// left in the database file, its `-wal` or its `-shm` once the call returns. Every
/// connection runs with `PRAGMA secure_delete = ON` and `PRAGMA temp_store = MEMORY`;
/// deleting an envelope (or an account that has one) or replacing it with one of another
/// length rebuilds the envelope table (a copy of a few hundred bytes per account), and every
/// delete or replace ends with `PRAGMA wal_checkpoint(TRUNCATE)`, which writes the zeroed
/// pages into the database file and empties the write-ahead log. While other connections (of
/// this pool or another process) keep the checkpoint from completing it is tried again, for
/// up to [`BUSY_TIMEOUT`], then the call fails with [`Error::ErasureBlocked`]; the change is
/// committed and a retry completes the erasure. See `KeyStore` in `backup_core::ports` for
/// what remains outside these files.
#[derive(Debug, Clone)]
pub struct SqliteCatalog {
    pool: SqlitePool,
}

impl SqliteCatalog {
    /// Opens (creating if missing) the catalog file at `path`, mode 0600. The parent
    /// directory must exist.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new().filename(path);
        Self::open_file(options, true).await
    }

    /// Opens a catalog from a URL: `sqlite://PATH` (or `sqlite:PATH`) for a file, created if
    /// missing unless the URL sets `mode=`, and mode 0600 like [`SqliteCatalog::open`]'s;
    /// `sqlite::memory:` (or `mode=memory`) for a private in-memory catalog like
    /// [`SqliteCatalog::in_memory`].
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
        } else {
            Self::open_file(options, !has_param("mode=")).await
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

    /// Opens a file catalog; `create`: create the file if missing. The mode is set before
    /// SQLite opens the file, and again after, in case the URL let SQLite create it.
    async fn open_file(options: SqliteConnectOptions, create: bool) -> Result<Self> {
        let path = options.get_filename().to_owned();
        if create {
            permissions::create(&path)?;
        }
        permissions::restrict(&path)?;
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("secure_delete", "ON")
            .pragma("temp_store", "MEMORY");
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await?;
        let catalog = Self::migrated(pool).await?;
        permissions::restrict(&path)?;
        Ok(catalog)
    }

    /// An in-memory database lives as long as a connection to it: one connection, kept
    /// forever, so that every query sees the same database.
    async fn open_memory(options: SqliteConnectOptions) -> Result<Self> {
        let options = options
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("secure_delete", "ON")
            .pragma("temp_store", "MEMORY");
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
crate::queue::methods::queue!(SqliteCatalog, Sqlite, crate::queue::statements::SQLITE);
