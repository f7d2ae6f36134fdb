//! [`FsAccount`]: an account in a directory, implementing both [`AccountSource`] and
//! [`RestoreTarget`]. Tests and examples use it; real panels implement the traits over their
//! own layout. The caller says which shape the directory has; nothing is guessed from the
//! names inside it (a tenant controls those):
//!
//! - [`FsAccount::home`]: the directory is the home directory, backed up whole as
//!   [`ItemKind::HomeDir`] (`public_html/`, `mail/`, `ssl/`, ... included);
//! - [`FsAccount::new`]: an explicit layout, one directory per item:
//!
//! ```text
//! ROOT/home/            home directory tree          (ItemKind::HomeDir)
//! ROOT/mail/            mailboxes tree               (ItemKind::Email)
//! ROOT/panel/NAME       panel configuration files    (ItemKind::PanelConfig)
//! ROOT/cron/NAME        cron tables                  (ItemKind::CronJobs)
//! ROOT/databases/NAME   one dump per database        (ItemKind::Databases)
//! ROOT/dbusers/NAME     database users and grants    (ItemKind::DatabaseUsers)
//! ROOT/dns/NAME         one zone per domain          (ItemKind::DnsZones)
//! ROOT/ssl/NAME         certificates and keys        (ItemKind::Certificates)
//! ROOT/ftp/NAME         FTP accounts                 (ItemKind::Ftp)
//! ```

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::model::ItemKind;
use crate::ports::{AccountSource, DocumentReader, DocumentWriter, RestoreTarget, TreeRoot};

/// An account in a directory (see the module docs for the two shapes).
#[derive(Debug, Clone)]
pub struct FsAccount {
    root: PathBuf,
    home_only: bool,
}

impl FsAccount {
    /// The account laid out at `root`, one directory per item (need not exist yet when used
    /// as a restore target).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            home_only: false,
        }
    }

    /// The account whose home directory is `dir`: one item, [`ItemKind::HomeDir`], the
    /// whole directory. As a restore target the home directory is restored into `dir`.
    pub fn home(dir: impl Into<PathBuf>) -> Self {
        Self {
            root: dir.into(),
            home_only: true,
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of an item.
    pub fn item_dir(&self, kind: ItemKind) -> PathBuf {
        self.item_root(kind).display_path()
    }

    fn item_root(&self, kind: ItemKind) -> TreeRoot {
        if self.home_only {
            TreeRoot::at(&self.root)
        } else {
            TreeRoot::below(&self.root, kind.as_str())
        }
    }

    fn has(&self, kind: ItemKind) -> bool {
        if self.home_only {
            kind == ItemKind::HomeDir && self.root.is_dir()
        } else {
            // A link in place of a tree item's directory is not followed: the walk refuses
            // it and reports the item. A document item must be a real directory.
            std::fs::symlink_metadata(self.item_dir(kind))
                .is_ok_and(|m| m.is_dir() || (kind.is_tree() && m.file_type().is_symlink()))
        }
    }

    fn document_path(&self, kind: ItemKind, name: &str) -> Result<PathBuf> {
        if self.home_only {
            return Err(Error::invalid(
                "item kind",
                format!("{kind}: this account is a home directory only"),
            ));
        }
        if kind.is_tree() {
            return Err(Error::invalid(
                "item kind",
                format!("{kind} is a tree, not a set of documents"),
            ));
        }
        crate::model::check_document_name(name)?;
        Ok(self.item_dir(kind).join(name))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

#[async_trait]
impl AccountSource for FsAccount {
    async fn items(&self) -> Result<Vec<ItemKind>> {
        Ok(ItemKind::ALL.into_iter().filter(|k| self.has(*k)).collect())
    }

    async fn tree_root(&self, kind: ItemKind) -> Result<Option<TreeRoot>> {
        Ok((kind.is_tree() && self.has(kind)).then(|| self.item_root(kind)))
    }

    async fn documents(&self, kind: ItemKind) -> Result<Vec<String>> {
        let dir = self.item_dir(kind);
        if kind.is_tree() || !self.has(kind) {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let entry = entry.map_err(io(&dir))?;
                let ft = entry.file_type().map_err(io(&entry.path()))?;
                if ft.is_file() {
                    match entry.file_name().into_string() {
                        Ok(name) => names.push(name),
                        Err(raw) => {
                            return Err(Error::invalid(
                                "document name",
                                format!("{raw:?} is not UTF-8"),
                            ));
                        }
                    }
                }
            }
            names.sort();
            Ok(names)
        })
        .await
        .map_err(|e| Error::Internal {
            reason: e.to_string(),
        })?
    }

    async fn open_document(&self, kind: ItemKind, name: &str) -> Result<DocumentReader> {
        let path = self.document_path(kind, name)?;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(
                    (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
                )
                .open(&path)
                .map_err(io(&path))?
        };
        Ok(Box::new(file))
    }
}

#[async_trait]
impl RestoreTarget for FsAccount {
    async fn tree_root(&self, kind: ItemKind) -> Result<TreeRoot> {
        if self.home_only && kind != ItemKind::HomeDir {
            return Err(Error::invalid(
                "item kind",
                format!("{kind}: this target holds a home directory only"),
            ));
        }
        // The root is the operator's: created as given; the item's directory below it is
        // opened (or created) by the engine without following a link.
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        Ok(self.item_root(kind))
    }

    async fn create_document(&self, kind: ItemKind, name: &str) -> Result<DocumentWriter> {
        let path = self.document_path(kind, name)?;
        let dir = self.item_dir(kind);
        refuse_symlink(&self.root)?;
        refuse_symlink(&dir)?;
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Replace whatever is there without following a symlink planted at the name.
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                return Err(Error::refused(format!("{} is a directory", path.display())));
            }
            Ok(_) => std::fs::remove_file(&path).map_err(io(&path))?,
            Err(_) => {}
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Box::new(file))
    }

    async fn live_documents(&self, kind: ItemKind) -> Result<Vec<String>> {
        AccountSource::documents(self, kind).await
    }

    async fn remove_document(&self, kind: ItemKind, name: &str) -> Result<()> {
        let path = self.document_path(kind, name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    async fn terminate(&self) -> Result<()> {
        if self.home_only {
            return Err(Error::refused(
                "terminating an account needs its layout, not only its home directory",
            ));
        }
        for kind in ItemKind::ALL {
            let dir = self.item_dir(kind);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dir).map_err(io(&dir))?,
                Ok(_) => std::fs::remove_file(&dir).map_err(io(&dir))?,
                Err(_) => {}
            }
        }
        Ok(())
    }

    async fn suspend(&self) -> Result<()> {
        let marker = self.root.join(".suspended");
        std::fs::write(&marker, b"suspended\n").map_err(io(&marker))
    }
}

fn refuse_symlink(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::PathEscapes {
            path: path.display().to_string(),
        }),
        _ => Ok(()),
    }
}

/// The default [`SourceProvider`](crate::ports::SourceProvider): an account's directory is
/// its home item ([`FsAccount::home`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct HomeSources;

impl crate::ports::SourceProvider for HomeSources {
    fn source(
        &self,
        _account: &crate::model::Account,
        dir: &std::path::Path,
    ) -> Result<Box<dyn AccountSource>> {
        Ok(Box::new(FsAccount::home(dir)))
    }
}
