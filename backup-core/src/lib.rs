//! # backup-core
//!
//! The domain model, ports, repository format and engine of a multi-tenant, account-level
//! backup library: thousands of hosting or MSP accounts per server, each with its own
//! settings, key, snapshots and mix-and-match restores.
//!
//! - [`model`]: accounts, quotas, jobs, snapshots, restore plans (plain serde types,
//!   validated by their constructors);
//! - [`ports`]: the traits adapters implement ([`ports::Catalog`], [`ports::ContentSealer`] /
//!   [`ports::ContentOpener`], [`ports::AccountSource`] / [`ports::RestoreTarget`],
//!   [`ports::Notifier`]); storage is [`object_store::ObjectStore`] itself;
//! - [`repo`]: repository format v1 (config, packs with trailers, index, snapshot objects);
//! - [`engine`]: backup, restore and dry-run;
//! - [`service`]: the server integrators embed ([`service::Server`]): the policy layer
//!   above the engine (settings, leases, commit order, keys, disaster recovery);
//! - [`FsAccount`]: an account laid out in a directory, for tests and examples.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use backup_core::{engine, model::*, ports::*, repo::Repository, FsAccount};
//! use object_store::memory::InMemory;
//!
//! // Live data of one account.
//! let live = tempfile::tempdir().unwrap();
//! std::fs::create_dir_all(live.path().join("home/public_html")).unwrap();
//! std::fs::write(live.path().join("home/public_html/index.html"), b"<h1>hi</h1>").unwrap();
//!
//! // A repository on an object store, and the account's crypto (plain here).
//! let repo = Repository::init(Arc::new(InMemory::new()), "backups".into(), Default::default())
//!     .await
//!     .unwrap();
//! let account = Account::new("alice").unwrap().with_encryption(EncryptionMode::None);
//! let crypto = Arc::new(PlainCrypto::checksums_only());
//! let handle = repo.account(account.id, crypto.clone(), Some(crypto));
//!
//! let snapshot = engine::backup(
//!     &handle,
//!     &engine::BackupRequest::new(&account, DestinationId::new()),
//!     &FsAccount::new(live.path()),
//!     &engine::no_progress(),
//! )
//! .await
//! .unwrap()
//! .snapshot;
//!
//! // Restore the home directory into another place.
//! let target = tempfile::tempdir().unwrap();
//! let plan = RestorePlan::new(account.id).item(ItemKind::HomeDir, snapshot.id);
//! engine::restore(&handle, &plan, &[snapshot], &FsAccount::new(target.path()), &engine::no_progress())
//!     .await
//!     .unwrap();
//! assert_eq!(
//!     std::fs::read(target.path().join("home/public_html/index.html")).unwrap(),
//!     b"<h1>hi</h1>"
//! );
//! # });
//! ```

pub mod engine;
mod error;
mod fs_account;
pub mod model;
pub mod ports;
pub mod repo;
pub mod service;

pub use error::{BoxError, Error, ErrorKind, Result};
pub use fs_account::{FsAccount, HomeSources};
