//! [`PgCatalog`]: the catalog in a PostgreSQL database, for servers that share one catalog or
//! outgrow a file.
//!
//! The tables, statements and queries are those of [`crate::sql`], shared with
//! [`SqliteCatalog`](crate::SqliteCatalog); the schema is `migrations/postgres/` (the same
//! layout, with `COLLATE "C"` on compared text columns and BYTEA for bytes).

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::error::{Error, Result, redacted};

/// The schema migrations, embedded at compile time from `migrations/postgres/`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections of the pool [`PgCatalog::connect`] opens.
pub const PG_MAX_CONNECTIONS: u32 = 8;

/// How long [`PgCatalog::connect`]'s pool waits for a connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Catalog`](backup_core::ports::Catalog) stored in PostgreSQL.
///
/// Same tables and behaviour as [`SqliteCatalog`](crate::SqliteCatalog); upserts are
/// `INSERT … ON CONFLICT (id) DO UPDATE`, so concurrent writers (tasks, processes, servers)
/// never lose or duplicate a row, and a taken unique name is
/// [`Error::AlreadyExists`]. Text columns that are ordered are
/// `COLLATE "C"`: lists sort by bytes whatever the database's collation.
///
/// Every constructor brings the schema up to date (the migrator holds an advisory lock, so
/// several processes may start at once). The tables live in the connection's `search_path`
/// (normally `public`; set it in the URL with `options=-c search_path=NAME` to keep several
/// catalogs in one database). This build has no TLS: connect over loopback, a Unix socket or
/// a trusted network (`sslmode=require` fails). Cloning is cheap and shares the pool.
///
/// Deleting or replacing a key envelope (or deleting an account) ends with
/// `VACUUM key_envelopes`, best effort; PostgreSQL has no way to overwrite a deleted row's
/// bytes, so see `KeyStore` in `backup_core::ports` for what may remain and for how long.
///
/// ```no_run
/// # async fn demo() -> backup_catalog::Result<()> {
/// use backup_catalog::PgCatalog;
///
/// let catalog = PgCatalog::connect("postgres://backup:secret@127.0.0.1/backup").await?;
/// let usage = catalog.usage_per_account().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgCatalog {
    pool: PgPool,
}

impl PgCatalog {
    /// Connects to `postgres://…` or `postgresql://…` (libpq-style URL: user, password,
    /// host, port, database, `sslmode`, `options`, …) with a pool of up to
    /// [`PG_MAX_CONNECTIONS`], and migrates.
    pub async fn connect(url: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: redacted(url),
            reason,
        };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("expected postgres://… or postgresql://…".into()));
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| invalid(e.to_string()))?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (a pool of up to [`PG_MAX_CONNECTIONS`]) and migrates.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Self::from_pool(pool).await
    }

    /// Uses a pool the caller configured, and migrates.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for maintenance and inspection.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection, waiting for them to be returned; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction (READ COMMITTED: each statement sees committed rows, and
    /// the upserts' conflict handling is atomic at that level).
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// After a key envelope was deleted or replaced: `VACUUM key_envelopes` (outside any
    /// transaction, as VACUUM requires) frees the dead row version so that later writes can
    /// reuse its space. Best effort: a role that does not own the table gets a warning and
    /// nothing done, a transaction older than the delete keeps the row version alive, and
    /// an error here is ignored; the delete itself has committed. What may remain is listed
    /// on `KeyStore` in `backup_core::ports`.
    async fn erase_removed_envelopes(&self, _removal: crate::sql::Removal) -> Result<()> {
        let _ = sqlx::raw_sql("VACUUM key_envelopes")
            .execute(&self.pool)
            .await;
        Ok(())
    }
}

crate::sql::rows::rows!(PgCatalog, Postgres);
crate::sql::catalog::catalog!(PgCatalog);
crate::queue::methods::queue!(PgCatalog, Postgres, crate::queue::statements::POSTGRES);
