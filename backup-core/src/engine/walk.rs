//! Walking a file tree into tree blobs: one blob per directory, entries sorted by name.
//!
//! A lister thread reads each directory and the metadata of its entries ahead of the walker,
//! in the order the walker visits them (depth first, by name): on an unchanged tree the
//! `getdents` and `fstatat` calls are most of the work, and they overlap with the walker's
//! stat cache lookups and tree hashing.

use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::chunker::Chunker;
use super::packer::{BlobSink, Pending};
use super::progress::{ProgressEvent, ProgressSink};
use super::stat_cache::{CachedFile, StatCache, key};
use crate::error::{Error, Result};
use crate::model::{ChunkId, ItemKind, ItemStats, PathFilter};
use crate::ports::ServerKeys;
use crate::repo::{BlobKind, Node, Tree, TreeEntry};

/// A stored file: its size and chunks.
type Stored = (u64, Vec<ChunkId>);

/// Directory listings the lister may read ahead of the walker.
const LISTINGS_AHEAD: usize = 32;

/// One directory as the lister read it: entries sorted by name, excluded ones left out, each
/// with its metadata or the error getting it; or the error reading the directory.
struct Listing {
    dir: PathBuf,
    entries: std::io::Result<Vec<(OsString, std::io::Result<Metadata>)>>,
}

/// The path of `name` under `rel`, relative to the item root.
fn child_rel(rel: &[u8], name: &OsStr) -> Vec<u8> {
    let mut child = Vec::with_capacity(rel.len() + 1 + name.len());
    child.extend_from_slice(rel);
    if !child.is_empty() {
        child.push(b'/');
    }
    child.extend_from_slice(name.as_bytes());
    child
}

/// Reads `dir` (at `rel` under the item root): entries not excluded, sorted by name, each
/// with its metadata, an `fstatat` relative to the open directory (no walk of the whole
/// path for each of thousands of files).
fn read_sorted(
    dir: &Path,
    rel: &[u8],
    excludes: &PathFilter,
) -> std::io::Result<Vec<(OsString, std::io::Result<Metadata>)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !excludes.is_empty()
            && excludes.matches(&String::from_utf8_lossy(&child_rel(rel, &name)))
        {
            continue;
        }
        entries.push((name, entry));
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(entries
        .into_iter()
        .map(|(name, entry)| {
            let meta = entry.metadata();
            (name, meta)
        })
        .collect())
}

/// Lists `dir` and every directory under it, depth first by name (the walker's order);
/// returns false once the walker has gone.
fn list(dir: PathBuf, rel: &[u8], excludes: &PathFilter, tx: &SyncSender<Listing>) -> bool {
    let entries = read_sorted(&dir, rel, excludes);
    let subdirs: Vec<(PathBuf, Vec<u8>)> = match &entries {
        Ok(entries) => entries
            .iter()
            .filter(|(_, meta)| meta.as_ref().is_ok_and(Metadata::is_dir))
            .map(|(name, _)| (dir.join(name), child_rel(rel, name)))
            .collect(),
        Err(_) => Vec::new(),
    };
    if tx.send(Listing { dir, entries }).is_err() {
        return false;
    }
    subdirs
        .into_iter()
        .all(|(sub, sub_rel)| list(sub, &sub_rel, excludes, tx))
}

/// State of a backup's walking thread: chunker, blob sink, stat caches and counters.
#[derive(Debug)]
pub(crate) struct Walker {
    pub(crate) chunker: Chunker,
    pub(crate) sink: BlobSink,
    pub(crate) keys: std::sync::Arc<dyn crate::ports::ContentSealer>,
    pub(crate) progress: ProgressSink,
    /// The previous backup's stat cache (empty when there is none).
    pub(crate) old_cache: StatCache,
    /// This backup's stat cache.
    pub(crate) new_cache: StatCache,
    /// When the backup started (ns since the epoch): files modified too close before it are
    /// not cached (see [`Walker::cacheable`]).
    pub(crate) started_ns: i64,
    pub(crate) bytes_read: u64,
    pub(crate) files_unchanged: u64,
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
        // Ids of large chunks come back from the workers; their places hold a zero id until
        // then.
        let mut pending = Pending::default();
        let sink = &mut self.sink;
        let progress = &self.progress;
        let size = self.chunker.chunk(input, what, |data| {
            let id = sink.add_data(data, chunks.len(), &mut pending)?;
            chunks.push(id.unwrap_or(ChunkId([0; 32])));
            progress.event(ProgressEvent::Bytes {
                bytes: data.len() as u64,
            });
            Ok(())
        })?;
        pending.collect(&mut chunks)?;
        self.bytes_read += size;
        self.progress.event(ProgressEvent::FileDone);
        Ok((size, chunks))
    }

    /// Stores a tree blob.
    pub(crate) fn store_tree(&mut self, tree: &Tree) -> Result<ChunkId> {
        self.sink.add(BlobKind::Tree, &tree.encode()?)
    }

    fn server_keys(&self) -> &ServerKeys {
        self.keys.server_keys()
    }

    /// Stores a regular file, from the stat cache when its stat is unchanged and the
    /// repository still has its chunks, else by reading it.
    fn store_file(
        &mut self,
        kind: ItemKind,
        path: impl FnOnce() -> PathBuf,
        rel: &[u8],
        meta: &std::fs::Metadata,
    ) -> std::result::Result<Result<Stored>, (PathBuf, std::io::Error)> {
        let k = key(self.server_keys(), kind, rel);
        // Taken out of the old cache (each key is visited once) into the new one.
        let reused = match self.old_cache.entries.remove(&k) {
            Some(cached) if cached.unchanged(meta) => {
                match self.sink.reuse_if_stored(&cached.chunks, cached.size) {
                    Ok(true) => Some(cached),
                    Ok(false) => None,
                    Err(e) => return Ok(Err(e)),
                }
            }
            _ => None,
        };
        if let Some(cached) = reused {
            self.progress
                .event(ProgressEvent::Bytes { bytes: cached.size });
            self.progress.event(ProgressEvent::FileDone);
            self.files_unchanged += 1;
            let out = (cached.size, cached.chunks.clone());
            self.new_cache.entries.insert(k, cached);
            return Ok(Ok(out));
        }
        let path = path();
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => return Err((path, e)),
        };
        let result = self.store_content(file, &path);
        if let Ok((_, chunks)) = &result
            && self.cacheable(meta)
        {
            self.new_cache
                .entries
                .insert(k, CachedFile::stat(meta, chunks.clone()));
        }
        Ok(result)
    }

    /// Walks `dir` (relative path `rel` under the item root), skipping excluded paths, and
    /// returns its tree id and counts. Unreadable entries are skipped and counted.
    pub(crate) fn walk_dir(
        &mut self,
        kind: ItemKind,
        dir: &Path,
        rel: &[u8],
        excludes: &PathFilter,
    ) -> Result<(ChunkId, ItemStats)> {
        let (tx, rx) = sync_channel(LISTINGS_AHEAD);
        let (root, root_rel, filter) = (dir.to_path_buf(), rel.to_vec(), excludes.clone());
        let lister = std::thread::Builder::new()
            .name("backup-lister".into())
            .spawn(move || {
                list(root, &root_rel, &filter, &tx);
            })
            .map_err(|e| Error::Internal {
                reason: format!("cannot start the directory lister: {e}"),
            })?;
        let walked = self.walk_listed(kind, dir, rel, &rx);
        // A walker that stopped early closes the channel, so the lister stops too.
        drop(rx);
        let joined = lister.join();
        let walked = walked?;
        joined.map_err(|_| Error::Internal {
            reason: "the directory lister panicked".into(),
        })?;
        Ok(walked)
    }

    /// Walks `dir` from the lister's next listing, which is `dir`'s.
    fn walk_listed(
        &mut self,
        kind: ItemKind,
        dir: &Path,
        rel: &[u8],
        listings: &Receiver<Listing>,
    ) -> Result<(ChunkId, ItemStats)> {
        let listing = listings.recv().map_err(|_| Error::Internal {
            reason: "the directory lister stopped".into(),
        })?;
        if listing.dir != dir {
            return Err(Error::Internal {
                reason: format!(
                    "directory listings out of order: {} instead of {}",
                    listing.dir.display(),
                    dir.display()
                ),
            });
        }
        let entries = listing.entries.map_err(|e| Error::io(dir, e))?;

        let mut tree = Tree::default();
        for (name, meta) in entries {
            // Built only where needed: an unchanged file from the stat cache needs no path.
            let path = || dir.join(&name);
            let rel_child = child_rel(rel, &name);
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    self.skip(&path(), &e);
                    continue;
                }
            };
            let ft = meta.file_type();
            let node = if ft.is_file() {
                match self.store_file(kind, path, &rel_child, &meta) {
                    Ok(stored) => {
                        let (size, chunks) = stored?;
                        Node::File { size, chunks }
                    }
                    Err((path, e)) => {
                        self.skip(&path, &e);
                        continue;
                    }
                }
            } else if ft.is_dir() {
                let path = path();
                match self.walk_listed(kind, &path, &rel_child, listings) {
                    Ok((tree, stats)) => Node::Dir { tree, stats },
                    Err(Error::Io { path: p, source }) if p == path => {
                        self.skip(&path, &source);
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else if ft.is_symlink() {
                let path = path();
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

    /// Whether a file's stat can be trusted next time. A file written again within the same
    /// timestamp tick keeps its mtime, so files modified just before the backup started are
    /// read again next time: within 100 ms on file systems with sub-second times (the kernel's
    /// timestamp tick is a few ms), within 2 s where times are whole seconds.
    fn cacheable(&self, meta: &std::fs::Metadata) -> bool {
        let window = if meta.mtime_nsec() == 0 {
            2_000_000_000
        } else {
            100_000_000
        };
        mtime_ns(meta) < self.started_ns.saturating_sub(window)
    }

    fn skip(&mut self, path: &Path, e: &std::io::Error) {
        tracing::warn!(path = %path.display(), error = %e, "skipped unreadable entry");
        self.skipped += 1;
    }
}
