//! What [`SqliteCatalog`](crate::SqliteCatalog) and [`PgCatalog`](crate::PgCatalog) share:
//! the table layout's statements, the row codec, and the code over a pool.
//!
//! Each entity is a row with the columns it is looked up, ordered or kept unique by, plus the
//! whole model value as JSON in `data` (see `migrations/`). The statements are the same text
//! for both databases; the code that runs them is written once, in the macros of
//! [`rows`] (helpers over `self.pool`) and [`catalog`] (the capability impls), and expanded for
//! each backend's concrete pool type: sqlx code generic over the database needs a long list
//! of higher-ranked bounds on every function, which a macro over two concrete types avoids.

pub(crate) mod catalog;
pub(crate) mod rows;
pub(crate) mod statements;

use backup_core::model::{AccountId, AccountUsage};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How a key envelope's bytes left their row, for the backend's erasure (the
/// `erase_removed_envelopes` every backend has, see [`rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Replaced by an envelope of the same length: the new bytes were written over the old
    /// ones, in place.
    Overwritten,
    /// Deleted, or replaced by an envelope of another length (or nothing was there: a retry):
    /// the row's space was freed and the database may have rearranged the table's pages.
    Freed,
}

/// Seconds since the epoch (floor) and nanoseconds within that second: ordering these pairs
/// orders the timestamps at full precision.
pub(crate) fn split_time(t: DateTime<Utc>) -> (i64, i64) {
    (t.timestamp(), i64::from(t.timestamp_subsec_nanos()))
}

/// A byte count as a BIGINT column holds it (saturating: no store reaches 2^63 bytes).
pub(crate) fn db_bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn encode<T: Serialize>(entity: &'static str, id: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|source| Error::Encode {
        entity,
        id: id.to_owned(),
        source,
    })
}

pub(crate) fn decode<T: DeserializeOwned>(
    entity: &'static str,
    (id, data): (String, String),
) -> Result<T> {
    serde_json::from_str(&data).map_err(|source| Error::Corrupt { entity, id, source })
}

/// A row of `account_usage`: (account id, snapshots, bytes stored).
pub(crate) fn decode_usage(
    (account, snapshots, bytes): (String, i64, i64),
) -> Result<AccountUsage> {
    let bad = |column: &'static str, reason: String| Error::BadColumn {
        table: "account_usage",
        column,
        value: account.clone(),
        reason,
    };
    let id: AccountId = account
        .parse()
        .map_err(|e: backup_core::Error| bad("account_id", e.to_string()))?;
    let count = |column, n: i64| u64::try_from(n).map_err(|_| bad(column, format!("{n} < 0")));
    Ok(AccountUsage {
        account: id,
        snapshots: count("snapshots", snapshots)?,
        bytes_stored: count("bytes_stored", bytes)?,
    })
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

    #[test]
    fn byte_counts_saturate() {
        assert_eq!(db_bytes(0), 0);
        assert_eq!(db_bytes(u64::MAX), i64::MAX);
    }

    #[test]
    fn bad_usage_rows_are_errors() {
        let id = AccountId::new().to_string();
        let good = decode_usage((id.clone(), 2, 10)).unwrap();
        assert_eq!((good.snapshots, good.bytes_stored), (2, 10));
        for row in [("x".to_owned(), 1, 1), (id.clone(), -1, 1), (id, 1, -5)] {
            let err = decode_usage(row).unwrap_err();
            assert!(matches!(err, Error::BadColumn { .. }), "{err}");
        }
    }
}
