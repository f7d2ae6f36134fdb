//! [`DownloadStore`]: download requests, per account.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{AccountId, DownloadId, DownloadRequest};

/// Download requests.
#[async_trait]
pub trait DownloadStore: Send + Sync + Debug + 'static {
    /// Inserts or replaces a download request.
    async fn put_download(&self, download: &DownloadRequest) -> Result<()>;
    /// One download request.
    async fn get_download(&self, id: DownloadId) -> Result<Option<DownloadRequest>>;
    /// An account's download requests, oldest first (then by id).
    async fn list_downloads(&self, account: AccountId) -> Result<Vec<DownloadRequest>>;
    /// Deletes a download request.
    async fn delete_download(&self, id: DownloadId) -> Result<bool>;
}
