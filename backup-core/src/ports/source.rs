//! Where live account data comes from and goes back to: the panel integration point.

use std::fmt::Debug;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::ItemKind;

/// A document being read (a database dump, a zone file). Read on a blocking thread.
pub type DocumentReader = Box<dyn std::io::Read + Send>;

/// A document being written back. Written on a blocking thread; dropped when complete.
pub type DocumentWriter = Box<dyn std::io::Write + Send>;

/// Live data of one account.
///
/// Tree items ([`ItemKind::is_tree`]) are local directories the engine walks; every other
/// item is a set of named documents the engine streams.
#[async_trait]
pub trait AccountSource: Send + Sync + Debug {
    /// The item kinds this account has.
    async fn items(&self) -> Result<Vec<ItemKind>>;
    /// The directory holding a tree item, or `None` if the account has none.
    async fn tree_root(&self, kind: ItemKind) -> Result<Option<PathBuf>>;
    /// Names of the documents of a document item (plain names, no `/`).
    async fn documents(&self, kind: ItemKind) -> Result<Vec<String>>;
    /// Opens one document.
    async fn open_document(&self, kind: ItemKind, name: &str) -> Result<DocumentReader>;
}

/// Where a restore writes, and the account life-cycle hooks a restore may call.
#[async_trait]
pub trait RestoreTarget: Send + Sync + Debug {
    /// The directory a tree item is restored into; created if missing.
    async fn tree_root(&self, kind: ItemKind) -> Result<PathBuf>;
    /// Creates or replaces one document of a document item.
    async fn create_document(&self, kind: ItemKind, name: &str) -> Result<DocumentWriter>;
    /// Names of the documents the live account has for `kind` (for replace restores).
    async fn live_documents(&self, kind: ItemKind) -> Result<Vec<String>>;
    /// Removes one live document (for replace restores).
    async fn remove_document(&self, kind: ItemKind, name: &str) -> Result<()>;
    /// Terminates the account before a restore (the "terminate first" option).
    async fn terminate(&self) -> Result<()>;
    /// Suspends the account after a restore (the "suspend after" option).
    async fn suspend(&self) -> Result<()>;
}
