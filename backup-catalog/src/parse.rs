//! [`open`] and [`open_with_queue`]: a catalog backend chosen by URL.

use std::sync::Arc;

use backup_core::ports::{Catalog, JobQueue};

use crate::error::{Error, Result, redacted};
use crate::{PgCatalog, SqliteCatalog};

/// Opens the catalog a URL names, migrated and ready:
///
/// - `sqlite://PATH` (or `sqlite:PATH`): a [`SqliteCatalog`] file, created if missing
///   (see [`SqliteCatalog::connect`] for the parameters);
/// - `sqlite::memory:`: a private in-memory [`SqliteCatalog`];
/// - `postgres://…` or `postgresql://…`: a [`PgCatalog`] (see [`PgCatalog::connect`]).
///
/// Anything else is [`Error::InvalidUrl`] listing these forms. Passwords never appear in
/// errors.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let catalog = backup_catalog::open("sqlite::memory:").await?;
/// assert!(catalog.list_accounts().await?.is_empty());
///
/// let err = backup_catalog::open("mysql://db/catalog").await.unwrap_err();
/// assert!(matches!(err, backup_catalog::Error::InvalidUrl { .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn Catalog>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteCatalog::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgCatalog::connect(url).await?))
    } else {
        Err(Error::InvalidUrl {
            url: redacted(url),
            reason: "expected sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DATABASE"
                .into(),
        })
    }
}

/// Opens the backend a URL names, like [`open`] (the same URLs and errors), and hands back
/// two handles to that one backend: its [`Catalog`] and its [`JobQueue`] (the task queue
/// lives in the catalog's database). Both share one connection pool.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use backup_core::model::TaskFilter;
///
/// let (catalog, queue) = backup_catalog::open_with_queue("sqlite::memory:").await?;
/// assert!(catalog.list_accounts().await?.is_empty());
/// assert!(queue.list_tasks(&TaskFilter::default()).await?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn open_with_queue(url: &str) -> Result<(Arc<dyn Catalog>, Arc<dyn JobQueue>)> {
    if url.starts_with("sqlite:") {
        let backend = Arc::new(SqliteCatalog::connect(url).await?);
        Ok((backend.clone(), backend))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let backend = Arc::new(PgCatalog::connect(url).await?);
        Ok((backend.clone(), backend))
    } else {
        Err(Error::InvalidUrl {
            url: redacted(url),
            reason: "expected sqlite://PATH, sqlite::memory: or postgres://USER@HOST/DATABASE"
                .into(),
        })
    }
}
