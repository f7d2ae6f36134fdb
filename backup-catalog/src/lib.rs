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
//!   `postgres://…`), as an `Arc<dyn Catalog>`; [`open_with_queue`]: the same backend as
//!   both its `Arc<dyn Catalog>` and its `Arc<dyn JobQueue>`;
//! - [`SqliteCatalog`]: the catalog in one SQLite file (WAL, migrations embedded) or in
//!   memory;
//! - [`PgCatalog`]: the catalog in PostgreSQL (pooled, migrations embedded);
//! - the persistent task queue: both backends implement the
//!   [`JobQueue`](backup_core::ports::JobQueue) port too, in the same database (tables
//!   `tasks`, `task_attempts`, `destination_health` and `job_runs`): SQLite for the workers
//!   of one machine, PostgreSQL for workers on many, each claim one transaction that keeps
//!   the lanes, one running task per account and the circuit breaker exact however many
//!   workers claim at once;
//! - [`AccountUsage`]: per-account snapshot totals (the model type of `backup-core`,
//!   re-exported), from the `UsageStore` port or either backend's inherent
//!   `usage_per_account` (beside `orphan_snapshots` and the bulk `put_snapshots`);
//! - [`conformance`]: the checks every `Catalog` implementation must pass, for this crate's
//!   tests and for other backends' ([`conformance::queue`]: those of a `JobQueue`);
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
mod queue;
mod sql;
mod sqlite;

pub use backup_core::model::AccountUsage;
pub use error::{Error, Result};
pub use parse::{open, open_with_queue};
pub use postgres::{PG_MAX_CONNECTIONS, PgCatalog};
pub use sqlite::{BUSY_TIMEOUT, SqliteCatalog};
