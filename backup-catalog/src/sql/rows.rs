//! `rows!(Catalog, Database)`: the code that runs [`statements`](super::statements) over a
//! backend's pool, expanded once per backend.
//!
//! The backend type must have a `pool` field (`sqlx::Pool<Database>`) and two methods whose
//! work differs per database:
//!
//! - `async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Database>>` (SQLite
//!   takes its write lock up front);
//! - `async fn erase_removed_envelopes(&self, removal: Removal) -> Result<()>`, run after a
//!   key envelope was deleted or replaced (see [`Removal`](super::Removal)), so that its
//!   bytes do not stay where they can be read back (see `KeyStore` in `backup_core::ports`).
//!
//! Generated: the private helpers the capability impls of [`catalog`](super::catalog) call,
//! and the public bulk and reporting methods ([`put_snapshots`], [`orphan_snapshots`],
//! [`usage_per_account`]) with their docs.
//!
//! [`put_snapshots`]: crate::SqliteCatalog::put_snapshots
//! [`orphan_snapshots`]: crate::SqliteCatalog::orphan_snapshots
//! [`usage_per_account`]: crate::SqliteCatalog::usage_per_account

/// Rows per multi-row `INSERT` of [`put_snapshots`](crate::SqliteCatalog::put_snapshots):
/// 6 binds each stays far below both databases' limits (SQLite 32766, PostgreSQL 65535).
pub(crate) const SNAPSHOT_BATCH: usize = 500;

macro_rules! rows {
    ($catalog:ty, $db:ty) => {
        impl $catalog {
            /// Inserts or replaces many snapshot rows in one transaction, with multi-row
            /// statements: what [`put_snapshot`](backup_core::ports::SnapshotStore::put_snapshot)
            /// does for each, much faster for imports and rebuilds. When an id appears more
            /// than once, the last value wins. All rows land or none does.
            pub async fn put_snapshots(
                &self,
                snapshots: &[backup_core::model::Snapshot],
            ) -> $crate::Result<()> {
                // Keep the last value of each id: one statement may not upsert a row twice.
                let mut seen = std::collections::HashSet::new();
                let mut rows = Vec::with_capacity(snapshots.len());
                for s in snapshots.iter().rev() {
                    if seen.insert(s.id) {
                        let id = s.id.to_string();
                        let data = $crate::sql::encode("snapshot", &id, s)?;
                        let (secs, nanos) = $crate::sql::split_time(s.created);
                        let bytes = $crate::sql::db_bytes(s.stats.bytes_stored);
                        rows.push((id, s.account.to_string(), secs, nanos, data, bytes));
                    }
                }
                rows.reverse();
                let mut tx = self.begin_write().await?;
                for batch in rows.chunks($crate::sql::rows::SNAPSHOT_BATCH) {
                    let mut query =
                        sqlx::QueryBuilder::<$db>::new($crate::sql::statements::SNAPSHOT_INSERT);
                    query.push_values(batch, |mut row, (id, account, secs, nanos, data, bytes)| {
                        row.push_bind(id.as_str())
                            .push_bind(account.as_str())
                            .push_bind(*secs)
                            .push_bind(*nanos)
                            .push_bind(data.as_str())
                            .push_bind(*bytes);
                    });
                    query.push($crate::sql::statements::SNAPSHOT_CONFLICT);
                    query.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            /// Snapshot rows whose account has no row (recorded without it, or left behind
            /// by a tool that deleted the account row alone): by account id, then oldest
            /// first. Reads one summary row per account id, then only the orphans' rows.
            ///
            /// The same as [`UsageStore::orphan_snapshots`](backup_core::ports::UsageStore),
            /// with this crate's error.
            pub async fn orphan_snapshots(
                &self,
            ) -> $crate::Result<Vec<backup_core::model::Snapshot>> {
                let rows: Vec<(String, String)> =
                    sqlx::query_as($crate::sql::statements::ORPHAN_SNAPSHOTS)
                        .fetch_all(&self.pool)
                        .await?;
                rows.into_iter()
                    .map(|row| $crate::sql::decode("snapshot", row))
                    .collect()
            }

            /// Per account id that has snapshot rows (whether or not its account row
            /// exists), how many and the sum of their `stats.bytes_stored`; by account id.
            /// Kept up to date by the database on every snapshot write, so this reads one
            /// row per account, not every snapshot.
            ///
            /// The same as [`UsageStore::usage_per_account`](backup_core::ports::UsageStore),
            /// with this crate's error.
            pub async fn usage_per_account(&self) -> $crate::Result<Vec<$crate::AccountUsage>> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as($crate::sql::statements::USAGE)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map($crate::sql::decode_usage).collect()
            }

            /// The row with this id (or account id), decoded.
            async fn get_row<T: serde::de::DeserializeOwned>(
                &self,
                entity: &'static str,
                sql: &'static str,
                key: String,
            ) -> $crate::Result<Option<T>> {
                let row: Option<(String, String)> = sqlx::query_as(sql)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| $crate::sql::decode(entity, row)).transpose()
            }

            /// Every row the query gives, decoded, in the query's order.
            async fn rows<T: serde::de::DeserializeOwned>(
                &self,
                entity: &'static str,
                sql: &'static str,
                key: Option<String>,
            ) -> $crate::Result<Vec<T>> {
                let query = sqlx::query_as(sql);
                let query = match key {
                    Some(key) => query.bind(key),
                    None => query,
                };
                let rows: Vec<(String, String)> = query.fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|row| $crate::sql::decode(entity, row))
                    .collect()
            }

            /// Runs a one-parameter `DELETE`; whether it removed a row.
            async fn delete_row(&self, sql: &'static str, key: String) -> $crate::Result<bool> {
                let done = sqlx::query(sql).bind(key).execute(&self.pool).await?;
                Ok(done.rows_affected() > 0)
            }

            /// Upserts a row of a `Named` table; a clash on its unique key column is
            /// `Error::AlreadyExists` naming `clash` and the key.
            async fn put_named<T: serde::Serialize>(
                &self,
                table: &$crate::sql::statements::Named,
                clash: &'static str,
                id: String,
                key: &str,
                value: &T,
            ) -> $crate::Result<()> {
                let data = $crate::sql::encode(table.entity, &id, value)?;
                sqlx::query(table.put)
                    .bind(id)
                    .bind(key.to_owned())
                    .bind(data)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| $crate::error::clash_as(e, || format!("{clash} {key:?}")))?;
                Ok(())
            }

            /// Upserts a row of a `Timed` table; `bytes` is the snapshots' extra column.
            async fn put_timed<T: serde::Serialize>(
                &self,
                table: &$crate::sql::statements::Timed,
                (id, account): (String, String),
                created: chrono::DateTime<chrono::Utc>,
                value: &T,
                bytes: Option<u64>,
            ) -> $crate::Result<()> {
                let data = $crate::sql::encode(table.entity, &id, value)?;
                let (secs, nanos) = $crate::sql::split_time(created);
                let query = sqlx::query(table.put)
                    .bind(id)
                    .bind(account)
                    .bind(secs)
                    .bind(nanos)
                    .bind(data);
                let query = match bytes {
                    Some(bytes) => query.bind($crate::sql::db_bytes(bytes)),
                    None => query,
                };
                query.execute(&self.pool).await?;
                Ok(())
            }

            /// One account id's snapshot totals; zeros when it has none.
            async fn usage_row(
                &self,
                account: backup_core::model::AccountId,
            ) -> $crate::Result<$crate::AccountUsage> {
                let row: Option<(String, i64, i64)> =
                    sqlx::query_as($crate::sql::statements::ACCOUNT_USAGE)
                        .bind(account.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                match row {
                    Some(row) => $crate::sql::decode_usage(row),
                    None => Ok($crate::AccountUsage {
                        account,
                        snapshots: 0,
                        bytes_stored: 0,
                    }),
                }
            }

            /// The stored settings, if any.
            async fn settings_row(&self) -> $crate::Result<Option<backup_core::model::Settings>> {
                let data: Option<String> =
                    sqlx::query_scalar($crate::sql::statements::GET_SETTINGS)
                        .fetch_optional(&self.pool)
                        .await?;
                data.map(|data| $crate::sql::decode("settings", ("1".to_owned(), data)))
                    .transpose()
            }

            /// Stores the settings, replacing any.
            async fn put_settings_row(
                &self,
                settings: &backup_core::model::Settings,
            ) -> $crate::Result<()> {
                let data = $crate::sql::encode("settings", "1", settings)?;
                sqlx::query($crate::sql::statements::PUT_SETTINGS)
                    .bind(data)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// Upserts an account's key envelope; when it replaced one, erases the old bytes.
            async fn put_key(&self, account: String, envelope: &[u8]) -> $crate::Result<()> {
                use $crate::sql::statements::{KEY_LENGTH, PUT_KEY};
                let mut tx = self.begin_write().await?;
                let old: Option<i64> = sqlx::query_scalar(KEY_LENGTH)
                    .bind(account.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
                sqlx::query(PUT_KEY)
                    .bind(account)
                    .bind(envelope.to_vec())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                let same_length = |old| usize::try_from(old).is_ok_and(|n| n == envelope.len());
                match old {
                    None => Ok(()),
                    Some(old) if same_length(old) => {
                        self.erase_removed_envelopes($crate::sql::Removal::Overwritten)
                            .await
                    }
                    Some(_) => {
                        self.erase_removed_envelopes($crate::sql::Removal::Freed)
                            .await
                    }
                }
            }

            /// Deletes an account's key envelope, then erases its bytes (also when there was
            /// none: a retry after a failed erasure completes it); whether there was one.
            async fn delete_key(&self, account: String) -> $crate::Result<bool> {
                let deleted = self
                    .delete_row($crate::sql::statements::DELETE_KEY, account)
                    .await?;
                self.erase_removed_envelopes($crate::sql::Removal::Freed)
                    .await?;
                Ok(deleted)
            }

            /// An account's key envelope.
            async fn get_key(&self, account: String) -> $crate::Result<Option<Vec<u8>>> {
                let envelope = sqlx::query_scalar($crate::sql::statements::GET_KEY)
                    .bind(account)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(envelope)
            }

            /// Deletes an account's row with its snapshot rows, downloads and key envelope,
            /// in one transaction, then erases the envelope's bytes if it had one, or if the
            /// account row was already gone (a retry after a failed erasure completes it);
            /// whether the account row existed.
            async fn delete_account_rows(&self, account: String) -> $crate::Result<bool> {
                use $crate::sql::statements::{ACCOUNTS, DELETE_KEY, DOWNLOADS, SNAPSHOTS};
                let mut tx = self.begin_write().await?;
                for sql in [SNAPSHOTS.delete_account, DOWNLOADS.delete_account] {
                    sqlx::query(sql)
                        .bind(account.clone())
                        .execute(&mut *tx)
                        .await?;
                }
                let key = sqlx::query(DELETE_KEY)
                    .bind(account.clone())
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query(ACCOUNTS.delete)
                    .bind(account)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                let found = done.rows_affected() > 0;
                if key.rows_affected() > 0 || !found {
                    self.erase_removed_envelopes($crate::sql::Removal::Freed)
                        .await?;
                }
                Ok(found)
            }
        }
    };
}

pub(crate) use rows;
