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

/// Where a tree item lives: a `base` directory the integrator trusts (opened as given, links
/// followed: `/home/alice`, a panel's own directory) and a relative `path` below it whose
/// every component the tenant may control (`mail`, `public_html`). The engine opens each
/// component of `path` with `O_NOFOLLOW`: a link planted there makes the item fail (it is
/// reported, never followed). Nothing below the root is ever looked up by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRoot {
    /// The trusted directory.
    pub base: PathBuf,
    /// The item's directory below `base`: plain components only (empty for `base` itself).
    pub path: PathBuf,
}

impl TreeRoot {
    /// The directory `dir` itself, trusted.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self {
            base: dir.into(),
            path: PathBuf::new(),
        }
    }

    /// `path` below the trusted `base`.
    pub fn below(base: impl Into<PathBuf>, path: impl Into<PathBuf>) -> Self {
        Self {
            base: base.into(),
            path: path.into(),
        }
    }

    /// The joined path, for messages.
    pub fn display_path(&self) -> PathBuf {
        self.base.join(&self.path)
    }
}

/// Live data of one account.
///
/// Tree items ([`ItemKind::is_tree`]) are local directories the engine walks; every other
/// item is a set of named documents the engine streams. The integrator says where each
/// item lives; nothing is guessed from names the tenant controls.
#[async_trait]
pub trait AccountSource: Send + Sync + Debug {
    /// The item kinds this account has.
    async fn items(&self) -> Result<Vec<ItemKind>>;
    /// The directory holding a tree item, or `None` if the account has none.
    async fn tree_root(&self, kind: ItemKind) -> Result<Option<TreeRoot>>;
    /// Names of the documents of a document item (plain names, no `/`).
    async fn documents(&self, kind: ItemKind) -> Result<Vec<String>>;
    /// Opens one document.
    async fn open_document(&self, kind: ItemKind, name: &str) -> Result<DocumentReader>;
}

/// Makes the [`AccountSource`] of an account whose live data is in a directory: what a
/// job's worker backs up when nobody names the directories. The default
/// ([`crate::HomeSources`]) takes the directory as the account's home item.
pub trait SourceProvider: Send + Sync + Debug + 'static {
    /// The source of `account`, whose data is in `dir` (its recorded source, or the
    /// server's accounts root for it).
    fn source(
        &self,
        account: &crate::model::Account,
        dir: &std::path::Path,
    ) -> Result<Box<dyn AccountSource>>;
}

/// Where a restore writes, and the account life-cycle hooks a restore may call.
#[async_trait]
pub trait RestoreTarget: Send + Sync + Debug {
    /// The directory a tree item is restored into; the engine creates the components of
    /// its `path` that are missing (0700 until the restore sets their recorded mode).
    async fn tree_root(&self, kind: ItemKind) -> Result<TreeRoot>;
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
