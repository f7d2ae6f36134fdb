//! [`SqliteCatalog`]: the catalog in one SQLite file, or in memory for tests.
//!
//! Each table keeps the whole model value as JSON in `data`, next to the few columns needed
//! to look rows up, order them and keep names unique (see `migrations/`).

mod catalog;
mod sql;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::error::{Error, Result, clash_as};
use sql::{Named, Timed};

/// The schema migrations, embedded at compile time from `migrations/`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

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

    /// The row with this id (or account id), decoded.
    async fn get_row<T: DeserializeOwned>(
        &self,
        entity: &'static str,
        sql: &'static str,
        key: String,
    ) -> Result<Option<T>> {
        let row: Option<(String, String)> = sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| decode(entity, row)).transpose()
    }

    /// Every row the query gives, decoded, in the query's order.
    async fn rows<T: DeserializeOwned>(
        &self,
        entity: &'static str,
        sql: &'static str,
        key: Option<String>,
    ) -> Result<Vec<T>> {
        let query = sqlx::query_as(sql);
        let query = match key {
            Some(key) => query.bind(key),
            None => query,
        };
        let rows: Vec<(String, String)> = query.fetch_all(&self.pool).await?;
        rows.into_iter().map(|row| decode(entity, row)).collect()
    }

    /// Runs a one-parameter `DELETE`; whether it removed a row.
    async fn delete_row(&self, sql: &'static str, key: String) -> Result<bool> {
        let done = sqlx::query(sql).bind(key).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Upserts a row of a [`Named`] table; a clash on its unique key column is
    /// [`Error::AlreadyExists`] naming `clash` and the key.
    async fn put_named<T: Serialize>(
        &self,
        table: &Named,
        clash: &'static str,
        id: String,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let data = encode(table.entity, &id, value)?;
        sqlx::query(table.put)
            .bind(id)
            .bind(key.to_owned())
            .bind(data)
            .execute(&self.pool)
            .await
            .map_err(|e| clash_as(e, || format!("{clash} {key:?}")))?;
        Ok(())
    }

    /// Upserts a row of a [`Timed`] table.
    async fn put_timed<T: Serialize>(
        &self,
        table: &Timed,
        id: String,
        account: String,
        created: DateTime<Utc>,
        value: &T,
    ) -> Result<()> {
        let data = encode(table.entity, &id, value)?;
        let (secs, nanos) = split_time(created);
        sqlx::query(table.put)
            .bind(id)
            .bind(account)
            .bind(secs)
            .bind(nanos)
            .bind(data)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Upserts an account's key envelope.
    async fn put_key(&self, account: String, envelope: &[u8]) -> Result<()> {
        sqlx::query(sql::PUT_KEY)
            .bind(account)
            .bind(envelope.to_vec())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// An account's key envelope.
    async fn get_key(&self, account: String) -> Result<Option<Vec<u8>>> {
        let envelope = sqlx::query_scalar(sql::GET_KEY)
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        Ok(envelope)
    }

    /// Deletes an account's row with its snapshot rows, downloads and key envelope, in one
    /// transaction; whether the account row existed.
    async fn delete_account_rows(&self, account: String) -> Result<bool> {
        // IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so the
        // transaction cannot fail half-way on a lock upgrade.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for sql in [
            sql::SNAPSHOTS.delete_account,
            sql::DOWNLOADS.delete_account,
            sql::DELETE_KEY,
        ] {
            sqlx::query(sql)
                .bind(account.clone())
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query(sql::ACCOUNTS.delete)
            .bind(account)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Seconds since the epoch (floor) and nanoseconds within that second: ordering these pairs
/// orders the timestamps at full precision.
fn split_time(t: DateTime<Utc>) -> (i64, i64) {
    (t.timestamp(), i64::from(t.timestamp_subsec_nanos()))
}

fn encode<T: Serialize>(entity: &'static str, id: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Encode {
        entity,
        id: id.to_owned(),
        source,
    })
}

fn decode<T: DeserializeOwned>(entity: &'static str, (id, data): (String, String)) -> Result<T> {
    serde_json::from_str(&data).map_err(|source| Error::Corrupt { entity, id, source })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn split_time_orders_like_the_timestamps() {
        let times = [
            Utc.timestamp_opt(-1, 999_999_999).unwrap(),
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.timestamp_opt(0, 1).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 5).unwrap(),
            Utc.timestamp_opt(1_700_000_000, 6).unwrap(),
        ];
        for pair in times.windows(2) {
            assert!(split_time(pair[0]) < split_time(pair[1]), "{pair:?}");
        }
        assert_eq!(split_time(times[0]), (-1, 999_999_999));
    }
}
