//! # backup-catalog
//!
//! Persistence for the [`Catalog`](backup_core::ports::Catalog) port of `backup-core`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use backup_catalog::SqliteCatalog;
//! use backup_core::model::Account;
//! use backup_core::ports::AccountStore;
//!
//! let catalog = SqliteCatalog::in_memory().await?;
//! let alice = Account::new("alice")?;
//! catalog.put_account(&alice).await?;
//!
//! let accounts = catalog.list_accounts().await?;
//! assert_eq!(accounts, vec![alice]);
//! # Ok::<(), backup_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! - [`open`]: the backend a URL names (`sqlite://PATH`, `sqlite::memory:`,
//!   `postgres://…`), as an `Arc<dyn Catalog>`;
//! - [`SqliteCatalog`]: the catalog in one SQLite file (WAL, migrations embedded) or in
//!   memory;
//! - [`PgCatalog`]: the catalog in PostgreSQL (pooled, migrations embedded);
//! - [`AccountUsage`]: per-account snapshot totals (the model type of `backup-core`,
//!   re-exported), from the `UsageStore` port or either backend's inherent
//!   `usage_per_account` (beside `orphan_snapshots` and the bulk `put_snapshots`);
//! - [`conformance`]: the checks every `Catalog` implementation must pass, for this crate's
//!   tests and for other backends';
//! - [`Error`]: this crate's error, converted into [`backup_core::Error`] at the trait
//!   boundary.
//!
//! Both backends share one table layout (see `migrations/sqlite/` and `migrations/postgres/`,
//! versioned in step) and one set of statements; each migrates its schema forward when
//! opened.

pub mod conformance;
mod error;
mod parse;
mod postgres;
mod sql;
mod sqlite;

pub use backup_core::model::AccountUsage;
pub use error::{Error, Result};
pub use parse::open;
pub use postgres::{PG_MAX_CONNECTIONS, PgCatalog};
pub use sqlite::{BUSY_TIMEOUT, SqliteCatalog};
