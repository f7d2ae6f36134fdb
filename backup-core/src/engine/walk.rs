//! Walking a file tree into tree blobs: one blob per directory, entries sorted by name.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::chunker::Chunker;
use super::packer::Packer;
use super::progress::{ProgressEvent, ProgressSink};
use crate::error::{Error, Result};
use crate::model::{ChunkId, ItemStats, PathFilter};
use crate::repo::{BlobKind, Node, Tree, TreeEntry};

/// State of a backup's blocking half: chunker, packer and counters.
#[derive(Debug)]
pub(crate) struct Walker {
    pub(crate) chunker: Chunker,
    pub(crate) packer: Packer,
    pub(crate) progress: ProgressSink,
    pub(crate) bytes_read: u64,
    pub(crate) skipped: u64,
}

pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

impl Walker {
    /// Chunks one input into data blobs; returns its size and chunk ids.
    pub(crate) fn store_content(
        &mut self,
        input: impl std::io::Read,
        what: &Path,
    ) -> Result<(u64, Vec<ChunkId>)> {
        let mut chunks = Vec::new();
        let packer = &mut self.packer;
        let progress = &self.progress;
        let size = self.chunker.chunk(input, what, |data| {
            chunks.push(packer.add(BlobKind::Data, data)?);
            progress.event(ProgressEvent::Bytes {
                bytes: data.len() as u64,
            });
            Ok(())
        })?;
        self.bytes_read += size;
        self.progress.event(ProgressEvent::FileDone);
        Ok((size, chunks))
    }

    /// Stores a tree blob.
    pub(crate) fn store_tree(&mut self, tree: &Tree) -> Result<ChunkId> {
        self.packer.add(BlobKind::Tree, &tree.encode()?)
    }

    /// Walks `dir` (relative path `rel` under the item root), skipping excluded paths, and
    /// returns its tree id and counts. Unreadable entries are skipped and counted.
    pub(crate) fn walk_dir(
        &mut self,
        dir: &Path,
        rel: &str,
        excludes: &PathFilter,
    ) -> Result<(ChunkId, ItemStats)> {
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            names.push(entry.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

        let mut tree = Tree::default();
        for name in names {
            let path = dir.join(&name);
            let rel_child = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            if excludes.matches(&rel_child) {
                continue;
            }
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.skip(&path, &e);
                    continue;
                }
            };
            let ft = meta.file_type();
            let node = if ft.is_file() {
                match std::fs::File::open(&path) {
                    Ok(file) => {
                        let (size, chunks) = self.store_content(file, &path)?;
                        Node::File { size, chunks }
                    }
                    Err(e) => {
                        self.skip(&path, &e);
                        continue;
                    }
                }
            } else if ft.is_dir() {
                match self.walk_dir(&path, &rel_child, excludes) {
                    Ok((tree, stats)) => Node::Dir { tree, stats },
                    Err(Error::Io { path: p, source }) if p == path => {
                        self.skip(&path, &source);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else if ft.is_symlink() {
                match std::fs::read_link(&path) {
                    Ok(target) => Node::Symlink {
                        target: target.as_os_str().as_bytes().to_vec(),
                    },
                    Err(e) => {
                        self.skip(&path, &e);
                        continue;
                    }
                }
            } else {
                // Sockets, FIFOs and devices are not account data.
                continue;
            };
            tree.entries.push(TreeEntry {
                name: name.as_bytes().to_vec(),
                node,
                mode: meta.permissions().mode() & 0o7777,
                mtime_ns: mtime_ns(&meta),
            });
        }
        let stats = tree.stats();
        let id = self.store_tree(&tree)?;
        Ok((id, stats))
    }

    fn skip(&mut self, path: &Path, e: &std::io::Error) {
        tracing::warn!(path = %path.display(), error = %e, "skipped unreadable entry");
        self.skipped += 1;
    }
}
