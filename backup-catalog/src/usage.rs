//! [`AccountUsage`]: what one account's snapshot rows add up to.

use backup_core::model::AccountId;
use serde::Serialize;

/// The snapshot rows of one account id, counted and summed (see
/// [`SqliteCatalog::usage_per_account`](crate::SqliteCatalog::usage_per_account) and
/// [`PgCatalog::usage_per_account`](crate::PgCatalog::usage_per_account)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccountUsage {
    /// The account id the snapshot rows name (its account row may be gone).
    pub account: AccountId,
    /// How many snapshot rows it has.
    pub snapshots: u64,
    /// The sum of their `stats.bytes_stored`.
    pub bytes_stored: u64,
}
