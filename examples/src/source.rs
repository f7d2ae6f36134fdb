//! A plain directory backed up as an account's home directory.

use std::path::PathBuf;

use async_trait::async_trait;
use backup_core::model::ItemKind;
use backup_core::ports::{AccountSource, DocumentReader};
use backup_core::{Error, Result};

/// An [`AccountSource`] with only a home directory: the given directory.
#[derive(Debug, Clone)]
pub struct HomeDirSource {
    dir: PathBuf,
}

impl HomeDirSource {
    /// Backs up `dir` as the home directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

#[async_trait]
impl AccountSource for HomeDirSource {
    async fn items(&self) -> Result<Vec<ItemKind>> {
        Ok(vec![ItemKind::HomeDir])
    }

    async fn tree_root(&self, kind: ItemKind) -> Result<Option<PathBuf>> {
        Ok((kind == ItemKind::HomeDir).then(|| self.dir.clone()))
    }

    async fn documents(&self, _kind: ItemKind) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    async fn open_document(&self, kind: ItemKind, name: &str) -> Result<DocumentReader> {
        Err(Error::not_found(format!("document {kind}/{name}")))
    }
}
