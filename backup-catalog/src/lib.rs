//! # backup-catalog
//!
//! Persistence for the [`Catalog`](backup_core::ports::Catalog) port of `backup-core`.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use backup_catalog::SqliteCatalog;
//! use backup_core::model::Account;
//! use backup_core::ports::Catalog;
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
//! - [`SqliteCatalog`]: the catalog in one SQLite file (WAL, migrations embedded) or in
//!   memory;
//! - [`conformance`]: the checks every `Catalog` implementation must pass, for this crate's
//!   tests and for other backends';
//! - [`Error`]: this crate's error, converted into [`backup_core::Error`] at the trait
//!   boundary.

pub mod conformance;
mod error;
mod sqlite;

pub use error::{Error, Result};
pub use sqlite::{BUSY_TIMEOUT, SqliteCatalog};
