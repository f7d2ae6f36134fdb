//! The store resolver port: destination URLs to object stores.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::error::Result;

/// Opens the object store a destination URL names, with the resolver's layers applied
/// (retries on transient errors by default; counting, rate limits or faults as the
/// integrator adds them). The service opens each destination once and keeps the store.
#[async_trait]
pub trait StoreResolver: Send + Sync + Debug + 'static {
    /// Checks a URL without connecting: a known scheme, an absolute path, valid
    /// parameters. An empty or scheme-less URL is [`crate::Error::Invalid`].
    fn check(&self, url: &str) -> Result<()>;
    /// The store and the root prefix inside it.
    async fn open(&self, url: &str) -> Result<(Arc<dyn ObjectStore>, Path)>;
    /// Deletes what interrupted writes left outside the object listing (a local store's
    /// staging files) when older than `older_than`; returns how many. Stores that leave
    /// nothing of the kind keep this default, which does nothing.
    async fn sweep_staging(&self, url: &str, older_than: std::time::Duration) -> Result<u64> {
        let _ = (url, older_than);
        Ok(0)
    }

    /// Whether a storage error of this resolver's stores is worth trying again later (a
    /// queued task is retried with backoff, not failed). The default is
    /// [`crate::Error::is_transient`]'s rule; a resolver that knows its stores' error types
    /// (a local `ENOTDIR` is permanent, a reset SSH session is not) answers better.
    fn is_transient(&self, error: &object_store::Error) -> bool {
        crate::Error::storage_is_transient(error)
    }
}
