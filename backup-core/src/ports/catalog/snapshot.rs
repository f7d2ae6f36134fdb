//! [`SnapshotStore`]: snapshot rows, per account.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{AccountId, Snapshot, SnapshotId};

/// Snapshot rows. A row may name an account that has no row (see
/// [`UsageStore::orphan_snapshots`](super::UsageStore::orphan_snapshots)).
#[async_trait]
pub trait SnapshotStore: Send + Sync + Debug + 'static {
    /// Inserts or replaces a snapshot row.
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()>;
    /// One snapshot.
    async fn get_snapshot(&self, id: SnapshotId) -> Result<Option<Snapshot>>;
    /// An account's snapshots, oldest first (then by id).
    async fn list_snapshots(&self, account: AccountId) -> Result<Vec<Snapshot>>;
    /// Deletes a snapshot row.
    async fn delete_snapshot(&self, id: SnapshotId) -> Result<bool>;
}
