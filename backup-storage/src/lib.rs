//! # backup-storage
//!
//! Object stores for backup destinations. Storage has no trait of its own:
//! [`object_store::ObjectStore`] is the port, so every object_store backend works unchanged.
//! This crate turns a destination URL into a store and a root prefix ([`open`], [`check`]
//! without opening anything, and [`UrlResolver`], the core's
//! [`StoreResolver`](backup_core::ports::StoreResolver) with retries and [`StoreLayer`]s),
//! adds a local directory store that flushes a backup's packs in the background and keeps
//! its files private ([`LocalStore`]), an SFTP backend ([`SftpStore`]), wrappers that add
//! behaviour to any store, and the [`conformance`] suite every store must pass.
//!
//! | URL | store |
//! |---|---|
//! | `file:///ABSOLUTE/PATH` | [`LocalStore`] rooted at the path (created mode 0700 if missing; directories it creates are 0700, files 0600, whatever the umask); every object is flushed to disk (`fsync` of the file and its directories) before it returns, or for puts marked [`DeferredFlush`](backup_core::ports::DeferredFlush) (packs) before the next unmarked write |
//! | `memory://` | [`object_store::memory::InMemory`] (lost when dropped; tests) |
//! | `s3://BUCKET/PREFIX?endpoint=URL&region=R&allow_http=true` | [`object_store::aws::AmazonS3`]; credentials from `AWS_*` variables |
//! | `sftp://USER@HOST:PORT/ABSOLUTE/PATH?key=KEYFILE&known_hosts=FILE` | [`SftpStore`] |
//!
//! URLs are explicit: an empty or scheme-less string, a scheme without `//` and a `file`
//! URL without an absolute path are refused ([`Error::NotExplicit`]), naming the problem and
//! these forms.
//!
//! Wrappers (each an `ObjectStore` around another): [`RetryStore`] (transient failures,
//! exponential backoff), [`CountingStore`] (requests by [`RequestKind`], bytes; an S3 cost
//! report), [`FaultStore`] (fails the Nth call or a fraction of calls).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use backup_storage::{CountingStore, RetryStore};
//! use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("file://{}", dir.path().display());
//! let (store, root) = backup_storage::open(&url).unwrap();
//! let counting = Arc::new(CountingStore::new(RetryStore::new(store)));
//! let store: Arc<dyn ObjectStore> = counting.clone();
//! store.put(&root.clone().join("hello"), PutPayload::from_static(b"hi")).await.unwrap();
//! assert_eq!(std::fs::read(dir.path().join("hello")).unwrap(), b"hi");
//! assert_eq!(counting.counts().total(), 1);
//! # });
//! ```

pub mod conformance;
mod counting;
mod error;
mod faults;
mod local;
mod request;
mod resolver;
mod retry;
mod s3;
mod sftp;
mod url;

pub use counting::{CountingStore, RequestCounts};
pub use error::{Error, Result, UrlProblem, is_transient};
pub use faults::{FaultPlan, FaultStore};
pub use local::{LocalStore, sweep_staging};
pub use request::RequestKind;
pub use resolver::{StoreLayer, UrlResolver};
pub use retry::{RetryPolicy, RetryStore};
pub use sftp::{SftpBuilder, SftpStore};
pub use url::{check, local_root, open};

/// The object_store crate this one builds on, for callers that need its types.
pub use object_store;
