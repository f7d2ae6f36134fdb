//! Walking a file tree into tree blobs: one blob per directory, entries sorted by name.
//!
//! Every lookup is relative to an open directory handle and never follows a link (see
//! [`super::fsat`]): a directory is opened with `O_DIRECTORY | O_NOFOLLOW` and checked
//! against its listing (device and inode) before it is read; a regular file is opened with
//! `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` and checked the same way before a byte is read; a
//! FIFO, socket or device is never opened. A tenant who swaps a file or directory for a link
//! while the backup runs gets the entry reported as skipped, never the link's target stored.
//!
//! A lister thread reads each directory and the metadata of its entries ahead of the walker,
//! in the order the walker visits them (depth first, by name): on an unchanged tree the
//! `getdents` and `fstatat` calls are most of the work, and they overlap with the walker's
//! stat cache lookups and tree hashing.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use rustix::fs::FileType;

use super::chunker::Chunker;
use super::fsat::{self, ExtentReader, FileStat};
use super::packer::{BlobSink, Pending};
use super::progress::{ProgressEvent, ProgressSink};
use super::report::{EntryReport, EntryReports};
use super::stat_cache::{CachedFile, StatCache, key};
use crate::error::{Error, Result};
use crate::model::{ChunkId, ItemKind, ItemStats, PathFilter};
use crate::ports::{ServerKeys, TreeRoot};
use crate::repo::{
    Attrs, BlobKind, Extent, LinkId, Node, Owner, SpecialKind, Tree, TreeEntry, Xattr,
};

/// Directory listings the lister may read ahead of the walker.
const LISTINGS_AHEAD: usize = 32;

/// Directories nested deeper than this are reported and not read: the lister and the walker
/// each hold one open handle per level, and a tenant must not exhaust the process's file
/// descriptors or stack with a directory chain of any depth.
pub(crate) const MAX_DEPTH: usize = 256;

/// An entry as the lister read it: its name and `lstat`.
struct Listed {
    name: Vec<u8>,
    stat: std::io::Result<FileStat>,
}

/// An opened directory: its handle, `fstat` and extended attributes.
struct OpenDir {
    fd: Arc<OwnedFd>,
    stat: FileStat,
    xattrs: std::io::Result<Vec<Xattr>>,
}

/// One directory as the lister read it: entries sorted by name, excluded ones left out; or
/// why it could not be opened or read.
struct Listing {
    rel: Vec<u8>,
    dir: std::io::Result<(OpenDir, Vec<Listed>)>,
}

/// The path of `name` under `rel`, relative to the item root.
fn child_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut child = Vec::with_capacity(rel.len() + 1 + name.len());
    child.extend_from_slice(rel);
    if !child.is_empty() {
        child.push(b'/');
    }
    child.extend_from_slice(name);
    child
}

/// Reads the directory `fd` (at `rel` under the item root): entries not excluded, sorted by
/// name, each with its `lstat` relative to the open directory.
fn read_sorted(fd: &OwnedFd, rel: &[u8], excludes: &PathFilter) -> std::io::Result<Vec<Listed>> {
    let mut names = fsat::list_dir(fd)?;
    if !excludes.is_empty() {
        names.retain(|name| !excludes.matches(&String::from_utf8_lossy(&child_rel(rel, name))));
    }
    names.sort_unstable();
    Ok(names
        .into_iter()
        .map(|name| {
            let stat = fsat::stat_at(fd, &name);
            Listed { name, stat }
        })
        .collect())
}

fn replaced() -> std::io::Error {
    std::io::Error::other("replaced while the backup read it")
}

fn too_deep() -> std::io::Error {
    std::io::Error::other(format!("nested deeper than {MAX_DEPTH} directories"))
}

/// Opens `name` in `parent` as a directory and checks it is the directory `listed`.
fn open_subdir(parent: &OwnedFd, name: &[u8], listed: &FileStat) -> std::io::Result<OpenDir> {
    let fd = fsat::open_dir_at(parent, name)?;
    let stat = fsat::fstat(&fd)?;
    if !stat.same_file(listed) {
        return Err(replaced());
    }
    let xattrs = fsat::xattrs(&fd);
    Ok(OpenDir {
        fd: Arc::new(fd),
        stat,
        xattrs,
    })
}

/// Lists the open directory `dir` and every directory under it, depth first by name (the
/// walker's order); returns false once the walker has gone.
fn list(
    dir: OpenDir,
    rel: Vec<u8>,
    depth: usize,
    excludes: &PathFilter,
    tx: &SyncSender<Listing>,
) -> bool {
    let fd = dir.fd.clone();
    let entries = match read_sorted(&fd, &rel, excludes) {
        Ok(entries) => entries,
        Err(e) => return tx.send(Listing { rel, dir: Err(e) }).is_ok(),
    };
    let subdirs: Vec<(Vec<u8>, FileStat)> = entries
        .iter()
        .filter_map(|l| match &l.stat {
            Ok(s) if s.kind == FileType::Directory => Some((l.name.clone(), *s)),
            _ => None,
        })
        .collect();
    if tx
        .send(Listing {
            rel: rel.clone(),
            dir: Ok((dir, entries)),
        })
        .is_err()
    {
        return false;
    }
    for (name, listed) in subdirs {
        let sub_rel = child_rel(&rel, &name);
        let opened = if depth >= MAX_DEPTH {
            Err(too_deep())
        } else {
            open_subdir(&fd, &name, &listed)
        };
        let more = match opened {
            Ok(sub) => list(sub, sub_rel, depth + 1, excludes, tx),
            Err(e) => tx
                .send(Listing {
                    rel: sub_rel,
                    dir: Err(e),
                })
                .is_ok(),
        };
        if !more {
            return false;
        }
    }
    true
}

/// A file already stored in this backup under another of its links.
#[derive(Debug, Clone)]
struct StoredLink {
    stat: FileStat,
    size: u64,
    chunks: Vec<ChunkId>,
    extents: Option<Vec<Extent>>,
    xattrs: Vec<Xattr>,
}

/// A walked directory: its tree blob, the counts below it and its own attributes.
pub(crate) struct WalkedDir {
    pub(crate) tree: ChunkId,
    pub(crate) stats: ItemStats,
    pub(crate) attrs: Attrs,
}

/// State of a backup's walking thread: chunker, blob sink, stat caches and counters.
#[derive(Debug)]
pub(crate) struct Walker {
    pub(crate) chunker: Chunker,
    pub(crate) sink: BlobSink,
    pub(crate) keys: Arc<dyn crate::ports::ContentSealer>,
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
    /// Entries left out, named.
    pub(crate) skipped: EntryReports,
    /// Files that changed while they were read (stored as read), or vanished.
    pub(crate) changed: EntryReports,
    /// Owners seen, for their names.
    pub(crate) owners: std::collections::BTreeSet<Owner>,
    /// Files with several links stored so far in this item, by device and inode.
    links: HashMap<(u64, u64), StoredLink>,
}

/// Attributes from a stat and extended attributes.
fn attrs(stat: &FileStat, xattrs: Vec<Xattr>) -> Attrs {
    Attrs {
        mode: stat.mode,
        mtime_ns: stat.mtime_ns,
        owner: Some(Owner {
            uid: stat.uid,
            gid: stat.gid,
        }),
        xattrs,
    }
}

/// What storing one regular file gave: its node, extended attributes and the stat its
/// attributes come from (the file read, which may have replaced the listed one), or why it
/// was left out.
type StoredFile = std::result::Result<(Node, Vec<Xattr>, FileStat), std::io::Error>;

impl Walker {
    /// A walker over the given pipeline and caches.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        chunker: Chunker,
        sink: BlobSink,
        keys: Arc<dyn crate::ports::ContentSealer>,
        progress: ProgressSink,
        old_cache: StatCache,
        new_cache: StatCache,
        started_ns: i64,
    ) -> Self {
        Self {
            chunker,
            sink,
            keys,
            progress,
            old_cache,
            new_cache,
            started_ns,
            bytes_read: 0,
            files_unchanged: 0,
            skipped: EntryReports::default(),
            changed: EntryReports::default(),
            owners: Default::default(),
            links: HashMap::new(),
        }
    }

    /// Chunks one input into data blobs; returns its size and chunk ids.
    pub(crate) fn store_content(
        &mut self,
        input: impl std::io::Read,
        what: &std::path::Path,
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

    /// Stores the regular file `name` of the directory `dir` (listed as `listed`): from the
    /// stat cache when its stat is unchanged and the repository still has its chunks, from
    /// another link of the same file stored earlier, else by reading it through a handle
    /// opened without following links and checked to be the listed file.
    fn store_file(
        &mut self,
        kind: ItemKind,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        listed: &FileStat,
    ) -> Result<StoredFile> {
        let link = (listed.nlink > 1).then_some(LinkId {
            dev: listed.dev,
            ino: listed.ino,
        });
        if link.is_some()
            && let Some(stored) = self.links.get(&(listed.dev, listed.ino))
            && !stored.stat.changed_since(listed)
        {
            let stored = stored.clone();
            self.progress.event(ProgressEvent::FileDone);
            return Ok(Ok((
                Node::File {
                    size: stored.size,
                    chunks: stored.chunks,
                    extents: stored.extents,
                    link,
                },
                stored.xattrs,
                *listed,
            )));
        }
        let k = key(self.server_keys(), kind, rel);
        // Taken out of the old cache (each key is visited once) into the new one.
        let reused = match self.old_cache.entries.remove(&k) {
            Some(cached) if cached.unchanged(listed) => {
                if self
                    .sink
                    .reuse_if_stored(&cached.chunks, cached.stored_len())?
                {
                    Some(cached)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(cached) = reused {
            self.progress.event(ProgressEvent::Bytes {
                bytes: cached.stored_len(),
            });
            self.progress.event(ProgressEvent::FileDone);
            self.files_unchanged += 1;
            let node = Node::File {
                size: cached.size,
                chunks: cached.chunks.clone(),
                extents: cached.extents.clone(),
                link,
            };
            let xattrs = cached.xattrs.clone();
            self.remember_link(listed, &node, &xattrs);
            self.new_cache.entries.insert(k, cached);
            return Ok(Ok((node, xattrs, *listed)));
        }
        let file = match fsat::open_file_at(dir, name) {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let before = match fsat::fstat(&file) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        // Only a regular file on the listed device is read. Another regular file put at
        // the name since the listing (an editor's or an updater's atomic save renames a
        // new file over the old) is what the tenant has there now: it is stored and named
        // as changed. A link, FIFO or device in its place is never read.
        if before.kind != FileType::RegularFile || before.dev != listed.dev {
            return Ok(Err(replaced()));
        }
        let renamed = before.ino != listed.ino;
        if renamed {
            self.changed.push(
                kind,
                rel,
                "replaced by another file while the backup ran; the new one is stored".into(),
            );
        }
        let link = (before.nlink > 1).then_some(LinkId {
            dev: before.dev,
            ino: before.ino,
        });
        let label = PathBuf::from(String::from_utf8_lossy(rel).into_owned());
        // Holes are looked for only where fewer blocks are allocated than the size needs.
        let extents = if before.blocks.saturating_mul(512) < before.size {
            match fsat::data_extents(&file, before.size) {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            }
        } else {
            None
        };
        let stored = match &extents {
            Some(x) => self.store_content(ExtentReader::new(&file, x), &label),
            None => self.store_content(&file, &label),
        };
        let (read, chunks) = match stored {
            Ok(s) => s,
            // A read error on this file leaves this file out, not the backup.
            Err(Error::Io { path, source }) if path == label => {
                return Ok(Err(source));
            }
            Err(e) => return Err(e),
        };
        let size = if extents.is_some() { before.size } else { read };
        let xattrs = self.xattrs_or_report(kind, rel, fsat::xattrs(&file));
        let changed = match fsat::fstat(&file) {
            Ok(after) => before.changed_since(&after) || size != before.size,
            Err(_) => true,
        };
        if changed {
            self.changed
                .push(kind, rel, "changed while it was read".into());
        } else if self.cacheable(&before) {
            self.new_cache.entries.insert(
                k,
                CachedFile::stat(&before, chunks.clone(), extents.clone(), xattrs.clone()),
            );
        }
        let node = Node::File {
            size,
            chunks,
            extents,
            link,
        };
        if !changed {
            self.remember_link(&before, &node, &xattrs);
        }
        Ok(Ok((node, xattrs, before)))
    }

    fn remember_link(&mut self, stat: &FileStat, node: &Node, xattrs: &[Xattr]) {
        if let Node::File {
            size,
            chunks,
            extents,
            link: Some(_),
        } = node
        {
            self.links.insert(
                (stat.dev, stat.ino),
                StoredLink {
                    stat: *stat,
                    size: *size,
                    chunks: chunks.clone(),
                    extents: extents.clone(),
                    xattrs: xattrs.to_vec(),
                },
            );
        }
    }

    /// Walks a tree item from `root`, skipping excluded paths. `Ok(None)` when the root
    /// cannot be opened (a link in its place, no permission): the item is reported in
    /// [`Walker::skipped`].
    pub(crate) fn walk_root(
        &mut self,
        kind: ItemKind,
        root: &TreeRoot,
        excludes: &PathFilter,
    ) -> Result<Option<WalkedDir>> {
        self.links.clear();
        let opened = fsat::open_root(root, false).and_then(|fd| {
            let stat = fsat::fstat(&fd)?;
            let xattrs = fsat::xattrs(&fd);
            Ok(OpenDir {
                fd: Arc::new(fd),
                stat,
                xattrs,
            })
        });
        let root_dir = match opened {
            Ok(d) => d,
            Err(e) => {
                let reason = if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
                {
                    format!(
                        "{}: not a directory (a link is never followed): {e}",
                        root.display_path().display()
                    )
                } else {
                    format!("{}: {e}", root.display_path().display())
                };
                self.skipped.push(kind, b"", reason);
                return Ok(None);
            }
        };
        let (tx, rx) = sync_channel(LISTINGS_AHEAD);
        let filter = excludes.clone();
        let lister = std::thread::Builder::new()
            .name("backup-lister".into())
            .stack_size(16 << 20)
            .spawn(move || {
                list(root_dir, Vec::new(), 0, &filter, &tx);
            })
            .map_err(|e| Error::Internal {
                reason: format!("cannot start the directory lister: {e}"),
            })?;
        let walked = self.walk_listed(kind, b"", &rx);
        // A walker that stopped early closes the channel, so the lister stops too.
        drop(rx);
        let joined = lister.join();
        let walked = walked?;
        joined.map_err(|_| Error::Internal {
            reason: "the directory lister panicked".into(),
        })?;
        Ok(match walked {
            Ok(w) => Some(w),
            Err(e) => {
                self.skipped.push(kind, b"", e.to_string());
                None
            }
        })
    }

    /// Walks the directory at `rel` from the lister's next listing, which is its own.
    /// `Ok(Err(_))` when that directory could not be opened or read.
    fn walk_listed(
        &mut self,
        kind: ItemKind,
        rel: &[u8],
        listings: &Receiver<Listing>,
    ) -> Result<std::io::Result<WalkedDir>> {
        let listing = listings.recv().map_err(|_| Error::Internal {
            reason: "the directory lister stopped".into(),
        })?;
        if listing.rel != rel {
            return Err(Error::Internal {
                reason: "directory listings out of order".into(),
            });
        }
        let (dir, entries) = match listing.dir {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let dir_xattrs = self.xattrs_or_report(kind, rel, dir.xattrs);
        let mut tree = Tree::default();
        for listed in entries {
            let name = listed.name;
            let rel_child = child_rel(rel, &name);
            let stat = match listed.stat {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.changed
                        .push(kind, &rel_child, "removed while the backup ran".into());
                    continue;
                }
                Err(e) => {
                    self.skipped.push(kind, &rel_child, e.to_string());
                    continue;
                }
            };
            let (node, xattrs, stat) = match stat.kind {
                FileType::RegularFile => {
                    match self.store_file(kind, &dir.fd, &name, &rel_child, &stat)? {
                        Ok(stored) => stored,
                        Err(e) => {
                            self.left_out(kind, &rel_child, &e);
                            continue;
                        }
                    }
                }
                FileType::Directory => match self.walk_listed(kind, &rel_child, listings)? {
                    Ok(sub) => (
                        Node::Dir {
                            tree: sub.tree,
                            stats: sub.stats,
                        },
                        sub.attrs.xattrs,
                        stat,
                    ),
                    Err(e) => {
                        self.left_out(kind, &rel_child, &e);
                        continue;
                    }
                },
                FileType::Symlink => {
                    match rustix::fs::readlinkat(&*dir.fd, fsat::os(&name), Vec::new()) {
                        Ok(target) => (
                            Node::Symlink {
                                target: target.into_bytes(),
                            },
                            Vec::new(),
                            stat,
                        ),
                        Err(e) => {
                            self.left_out(kind, &rel_child, &e.into());
                            continue;
                        }
                    }
                }
                FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                    let special = match stat.kind {
                        FileType::Fifo => SpecialKind::Fifo,
                        FileType::CharacterDevice => SpecialKind::CharDevice,
                        _ => SpecialKind::BlockDevice,
                    };
                    let rdev = if special == SpecialKind::Fifo {
                        0
                    } else {
                        stat.rdev
                    };
                    (
                        Node::Special {
                            kind: special,
                            rdev,
                        },
                        Vec::new(),
                        stat,
                    )
                }
                // Sockets belong to running programs, not to the account's data.
                _ => continue,
            };
            self.owners.insert(Owner {
                uid: stat.uid,
                gid: stat.gid,
            });
            tree.entries.push(TreeEntry {
                name,
                node,
                attrs: attrs(&stat, xattrs),
            });
        }
        let stats = tree.stats();
        let id = self.store_tree(&tree)?;
        self.owners.insert(Owner {
            uid: dir.stat.uid,
            gid: dir.stat.gid,
        });
        Ok(Ok(WalkedDir {
            tree: id,
            stats,
            attrs: attrs(&dir.stat, dir_xattrs),
        }))
    }

    /// The extended attributes read, or none with the entry reported as skipped (its
    /// content is stored, its attributes are not).
    fn xattrs_or_report(
        &mut self,
        kind: ItemKind,
        rel: &[u8],
        read: std::io::Result<Vec<Xattr>>,
    ) -> Vec<Xattr> {
        read.unwrap_or_else(|e| {
            self.skipped.push(
                kind,
                rel,
                format!("extended attributes not read ({e}); content stored"),
            );
            Vec::new()
        })
    }

    /// Reports an entry that could not be stored: one removed since it was listed (sessions,
    /// caches and temporary files come and go on a live server) is named as changed and
    /// leaves the snapshot complete; anything else is skipped and makes it partial.
    fn left_out(&mut self, kind: ItemKind, rel: &[u8], e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            self.changed
                .push(kind, rel, "removed while the backup ran".into());
        } else {
            self.skipped.push(kind, rel, e.to_string());
        }
    }

    /// Whether a file's stat can be trusted next time. A file written again within the same
    /// timestamp tick keeps its mtime, so files modified just before the backup started are
    /// read again next time: within 100 ms on file systems with sub-second times (the kernel's
    /// timestamp tick is a few ms), within 2 s where times are whole seconds.
    fn cacheable(&self, stat: &FileStat) -> bool {
        let window = if stat.mtime_ns % 1_000_000_000 == 0 {
            2_000_000_000
        } else {
            100_000_000
        };
        stat.mtime_ns < self.started_ns.saturating_sub(window)
    }
}

impl EntryReports {
    fn push(&mut self, item: ItemKind, rel: &[u8], reason: String) {
        tracing::warn!(%item, path = %String::from_utf8_lossy(rel), %reason, "backup entry");
        self.add(EntryReport {
            item,
            path: String::from_utf8_lossy(rel).into_owned(),
            reason,
        });
    }
}
