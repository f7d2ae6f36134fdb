//! [`UsageStore`]: what the snapshot rows add up to, per account, and the rows no account
//! owns.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{AccountId, AccountUsage, Snapshot};

/// Reports over the snapshot rows: per-account totals (what quotas are checked against) and
/// rows whose account is gone. Backends keep these cheap (the SQL catalogs maintain a
/// per-account summary on every snapshot write), so they may be called per request.
#[async_trait]
pub trait UsageStore: Send + Sync + Debug + 'static {
    /// Per account id that has snapshot rows (whether or not its account row exists), how
    /// many and the sum of their `stats.bytes_stored`; by account id. An account id without
    /// snapshot rows has no entry.
    async fn usage_per_account(&self) -> Result<Vec<AccountUsage>>;
    /// The totals of one account id; zeros (and this id) when it has no snapshot rows,
    /// whether or not the account exists.
    async fn account_usage(&self, account: AccountId) -> Result<AccountUsage>;
    /// Snapshot rows whose account has no row (recorded without it, or left behind by a tool
    /// that deleted the account row alone): by account id, then oldest first, then by id.
    async fn orphan_snapshots(&self) -> Result<Vec<Snapshot>>;
}
