//! [`AccountStore`]: accounts by id and username.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Account, AccountId};

/// Accounts. Usernames may repeat (across servers); deleting an account also deletes its
/// snapshot rows, key envelope and downloads.
#[async_trait]
pub trait AccountStore: Send + Sync + Debug + 'static {
    /// Inserts or replaces an account.
    async fn put_account(&self, account: &Account) -> Result<()>;
    /// One account.
    async fn get_account(&self, id: AccountId) -> Result<Option<Account>>;
    /// Accounts with this username (usernames may repeat across servers), by id.
    async fn find_accounts(&self, username: &str) -> Result<Vec<Account>>;
    /// Every account, by username.
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// Deletes an account with its snapshot rows, key envelope and downloads. The key
    /// envelope goes as [`KeyStore::delete_key_envelope`](super::KeyStore) removes it.
    async fn delete_account(&self, id: AccountId) -> Result<bool>;
    /// Deletes the account row only: its snapshot rows, key envelope and downloads stay
    /// (its backups become orphans, found by
    /// [`UsageStore::orphan_snapshots`](super::UsageStore), until retention removes them).
    async fn forget_account(&self, id: AccountId) -> Result<bool>;
}
