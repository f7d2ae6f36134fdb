//! [`open`]: a catalog backend chosen by URL.

use std::sync::Arc;

use backup_core::ports::Catalog;

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
