//! # backup-storage
//!
//! Object stores for backup destinations. Storage has no trait of its own:
//! [`object_store::ObjectStore`] is the port, so every object_store backend works unchanged.
//! This crate turns a destination URL into a store and a root prefix.
//!
//! | URL | store |
//! |---|---|
//! | `file:///ABSOLUTE/PATH` | [`object_store::local::LocalFileSystem`] rooted at the path (created if missing) |
//! | `memory://` | [`object_store::memory::InMemory`] (lost when dropped; tests) |
//!
//! S3 (`s3://`) and SFTP (`sftp://`) come next; an unknown scheme is [`Error::UnsupportedScheme`].
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use object_store::{ObjectStoreExt, PutPayload};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("file://{}", dir.path().display());
//! let (store, root) = backup_storage::open(&url).unwrap();
//! store.put(&root.clone().join("hello"), PutPayload::from_static(b"hi")).await.unwrap();
//! assert_eq!(std::fs::read(dir.path().join("hello")).unwrap(), b"hi");
//! # });
//! ```

mod error;
mod url;

pub use error::{Error, Result};
pub use url::open;
