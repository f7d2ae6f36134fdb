//! Restoring one tree item in two passes:
//! 1. **plan**: read every tree blob of the selection (names are checked here, so a crafted
//!    name is refused before anything is written) and list directories, files and links in
//!    walk order;
//! 2. **write**: create directories, write files chunk by chunk, recreate links; then prune
//!    (replace restores) and set directory times deepest first.
//!
//! Reading trees first keeps tree packs and data packs out of each other's cache, so each
//! data pack is fetched about once: files are written in the order the backup packed them.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::fs_write::{
    SafeDirs, create_temp, finish_dir, finish_file, prune, temp_path, write_symlink,
};
use super::progress::{ProgressEvent, ProgressSink};
use super::reader::BlobReader;
use crate::error::Result;
use crate::model::{ChunkId, ItemStats, PackId, PathSelection};
use crate::repo::Node;

type Components = Vec<Vec<u8>>;

enum Planned {
    Dir {
        path: Components,
        mode: u32,
        mtime_ns: i64,
    },
    File {
        path: Components,
        size: u64,
        chunks: Vec<ChunkId>,
        mode: u32,
        mtime_ns: i64,
    },
    Symlink {
        path: Components,
        target: Vec<u8>,
    },
}

/// What pass 1 found.
pub(crate) struct TreePlan {
    entries: Vec<Planned>,
    /// Directories to prune (replace restores) with the names to keep.
    prune: Vec<(Components, HashSet<Vec<u8>>)>,
}

fn rel_path(components: &[Vec<u8>]) -> String {
    let parts: Vec<String> = components
        .iter()
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    parts.join("/")
}

fn split(path: &[Vec<u8>]) -> Result<(&[u8], &[Vec<u8>])> {
    path.split_last()
        .map(|(name, parent)| (name.as_slice(), parent))
        .ok_or_else(|| crate::Error::Internal {
            reason: "restore entry without a name".into(),
        })
}

fn refs(components: &[Vec<u8>]) -> Vec<&[u8]> {
    components.iter().map(Vec::as_slice).collect()
}

/// Pass 1: reads the trees under `root` and lists what the selection restores.
pub(crate) fn plan(
    reader: &mut BlobReader,
    root: &ChunkId,
    paths: &PathSelection,
    replace: bool,
) -> Result<TreePlan> {
    let mut plan = TreePlan {
        entries: Vec::new(),
        prune: Vec::new(),
    };
    plan_dir(reader, root, paths, replace, &mut Vec::new(), &mut plan)?;
    Ok(plan)
}

fn plan_dir(
    reader: &mut BlobReader,
    tree_id: &ChunkId,
    paths: &PathSelection,
    replace: bool,
    components: &mut Components,
    plan: &mut TreePlan,
) -> Result<()> {
    let tree = reader.tree(tree_id)?;
    let keep: HashSet<Vec<u8>> = if replace {
        tree.entries.iter().map(|e| e.name.clone()).collect()
    } else {
        HashSet::new()
    };
    for entry in tree.entries {
        components.push(entry.name);
        let rel = rel_path(components);
        match entry.node {
            Node::Dir { tree, .. } if paths.may_select_below(&rel) => {
                if paths.selects(&rel) {
                    plan.entries.push(Planned::Dir {
                        path: components.clone(),
                        mode: entry.mode,
                        mtime_ns: entry.mtime_ns,
                    });
                }
                plan_dir(reader, &tree, paths, replace, components, plan)?;
            }
            Node::File { size, chunks } if paths.selects(&rel) => {
                plan.entries.push(Planned::File {
                    path: components.clone(),
                    size,
                    chunks,
                    mode: entry.mode,
                    mtime_ns: entry.mtime_ns,
                });
            }
            Node::Symlink { target } if paths.selects(&rel) => {
                plan.entries.push(Planned::Symlink {
                    path: components.clone(),
                    target,
                });
            }
            _ => {}
        }
        components.pop();
    }
    if replace {
        plan.prune.push((components.clone(), keep));
    }
    Ok(())
}

/// A file being restored into its temporary sibling.
struct Pending {
    dir: PathBuf,
    name: Vec<u8>,
    tmp: PathBuf,
    size: u64,
    mode: u32,
    mtime_ns: i64,
}

impl Pending {
    fn finish(&self, file: Option<std::fs::File>, written: u64) -> Result<()> {
        if written != self.size {
            return Err(crate::Error::integrity(
                self.dir
                    .join(std::ffi::OsStr::from_bytes(&self.name))
                    .display()
                    .to_string(),
                format!("chunks hold {written} bytes, the tree says {}", self.size),
            ));
        }
        finish_file(
            file,
            &self.dir,
            &self.name,
            &self.tmp,
            self.mode,
            self.mtime_ns,
        )
    }
}

/// Open temporary files kept between writes (a small cache: large files get many chunks).
const OPEN_FILES: usize = 64;

/// Pass 2: writes what `plan` lists under `dirs`' root. Directories and links first, then
/// every file into an exclusive temporary sibling, pack by pack (each pack is fetched once,
/// each blob opened once however many files share it, written with positioned writes), and
/// each file is moved into place as soon as it is complete. On any failure every temporary
/// file is removed, so no file that failed authentication is left anywhere.
pub(crate) fn write(
    plan: TreePlan,
    reader: &mut BlobReader,
    dirs: &mut SafeDirs,
    progress: &ProgressSink,
) -> Result<ItemStats> {
    let mut stats = ItemStats::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut chunk_lists: Vec<&[ChunkId]> = Vec::new();
    let result = (|| {
        for entry in &plan.entries {
            match entry {
                Planned::Dir { path, .. } => {
                    dirs.ensure(&refs(path))?;
                    stats.dirs += 1;
                }
                Planned::File {
                    path,
                    size,
                    chunks,
                    mode,
                    mtime_ns,
                } => {
                    let (name, parent) = split(path)?;
                    let dir = dirs.ensure(&refs(parent))?;
                    let tmp = temp_path(&dir, name);
                    pending.push(Pending {
                        dir,
                        name: name.to_vec(),
                        tmp,
                        size: *size,
                        mode: *mode,
                        mtime_ns: *mtime_ns,
                    });
                    chunk_lists.push(chunks);
                }
                Planned::Symlink { path, target } => {
                    let (name, parent) = split(path)?;
                    let dir = dirs.ensure(&refs(parent))?;
                    write_symlink(&dir, name, target)?;
                    stats.symlinks += 1;
                }
            }
        }
        write_data(reader, &chunk_lists, &pending, progress)
    })();
    if let Err(e) = result {
        // Files already moved into place are complete and authenticated; the rest go.
        for p in &pending {
            let _ = std::fs::remove_file(&p.tmp);
        }
        return Err(e);
    }
    for p in &pending {
        stats.files += 1;
        stats.bytes += p.size;
    }
    for (path, keep) in &plan.prune {
        let dir = dirs.ensure(&refs(path))?;
        let keep: HashSet<&[u8]> = keep.iter().map(Vec::as_slice).collect();
        prune(&dir, &keep)?;
    }
    // Children change their parent's mtime: set directory times deepest first.
    for entry in plan.entries.iter().rev() {
        if let Planned::Dir {
            path,
            mode,
            mtime_ns,
        } = entry
        {
            finish_dir(&dirs.join(&refs(path))?, *mode, *mtime_ns)?;
        }
    }
    Ok(stats)
}

/// Where one blob goes: chunk id, plaintext length, file index, offset in the file.
type Need = (ChunkId, u32, usize, u64);

/// Writes every chunk of every pending file, grouped by pack in order of first use, and
/// moves each file into place once complete. Packs are shared out among one thread per core
/// (each with its own reader), so fetching, opening, writing and finishing files overlap;
/// each pack is still fetched once and each blob opened once. A file whose chunks all lie in
/// one pack (most files) is created, written and finished by the thread holding that pack,
/// through one open handle; the others are created first and finished at the end.
fn write_data(
    reader: &mut BlobReader,
    chunk_lists: &[&[ChunkId]],
    pending: &[Pending],
    progress: &ProgressSink,
) -> Result<()> {
    // Where each blob goes, grouped by pack, packs in order of first use; each file's pack
    // when it has exactly one.
    let mut slot_of: HashMap<PackId, usize> = HashMap::new();
    let mut by_pack: Vec<Vec<Need>> = Vec::new();
    let mut home: Vec<Option<usize>> = Vec::with_capacity(chunk_lists.len());
    for (file, chunks) in chunk_lists.iter().enumerate() {
        let mut offset = 0u64;
        let mut packs = (None, false);
        for id in chunks.iter() {
            let (pack, len) = reader.locate(id)?;
            let slot = *slot_of.entry(pack).or_insert_with(|| {
                by_pack.push(Vec::new());
                by_pack.len() - 1
            });
            by_pack[slot].push((*id, len, file, offset));
            offset += u64::from(len);
            packs = match packs {
                (None, _) => (Some(slot), false),
                (Some(first), many) => (Some(first), many || first != slot),
            };
        }
        home.push(match packs {
            (Some(slot), false) => Some(slot),
            _ => None,
        });
    }
    for (p, h) in pending.iter().zip(&home) {
        if h.is_none() {
            create_temp(&p.tmp)?;
        }
    }
    for needs in &mut by_pack {
        needs.sort_unstable_by_key(|n| (n.0, n.2, n.3));
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(by_pack.len().max(1));
    let mut readers = Vec::with_capacity(threads);
    for _ in 1..threads {
        readers.push(reader.fork()?);
    }
    let written: Vec<AtomicU64> = pending.iter().map(|_| AtomicU64::new(0)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let shared = Shared {
        by_pack: &by_pack,
        home: &home,
        pending,
        written: &written,
        next: &next,
        failed: &failed,
        progress,
    };
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = readers
            .iter_mut()
            .map(|r| scope.spawn(|| shared.run(r)))
            .collect();
        let mut results = vec![shared.run(reader)];
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                Err(crate::Error::Internal {
                    reason: "restore writer thread panicked".into(),
                })
            }));
        }
        results
    });
    for r in results {
        r?;
    }
    for ((p, h), w) in pending.iter().zip(&home).zip(&written) {
        if h.is_none() {
            p.finish(None, w.load(Ordering::Relaxed))?;
            progress.event(ProgressEvent::FileDone);
        }
    }
    Ok(())
}

/// What the threads of [`write_data`] share.
struct Shared<'a> {
    by_pack: &'a [Vec<Need>],
    /// Per file: the one pack holding all its chunks, if there is one.
    home: &'a [Option<usize>],
    pending: &'a [Pending],
    written: &'a [AtomicU64],
    next: &'a AtomicUsize,
    failed: &'a AtomicBool,
    progress: &'a ProgressSink,
}

impl Shared<'_> {
    /// Takes packs until none is left (or another thread failed).
    fn run(&self, reader: &mut BlobReader) -> Result<()> {
        let mut open: HashMap<usize, std::fs::File> = HashMap::new();
        while !self.failed.load(Ordering::Relaxed) {
            let slot = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(needs) = self.by_pack.get(slot) else {
                return Ok(());
            };
            if let Err(e) = self.write_pack(reader, slot, needs, &mut open) {
                self.failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(())
    }

    fn write_pack(
        &self,
        reader: &mut BlobReader,
        slot: usize,
        needs: &[Need],
        open: &mut HashMap<usize, std::fs::File>,
    ) -> Result<()> {
        // The files this pack completes, created on their first chunk.
        let mut owned: HashMap<usize, std::fs::File> = HashMap::new();
        let mut i = 0;
        while i < needs.len() {
            let (id, len, _, _) = needs[i];
            let data = reader.read(&id)?;
            if data.len() != len as usize {
                return Err(crate::Error::integrity(
                    format!("blob {id}"),
                    "length differs from the index",
                ));
            }
            while i < needs.len() && needs[i].0 == id {
                let (_, _, file, offset) = needs[i];
                let tmp = &self.pending[file].tmp;
                let f = if self.home[file] == Some(slot) {
                    match owned.entry(file) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => e.insert(create_temp(tmp)?),
                    }
                } else {
                    if !open.contains_key(&file) && open.len() >= OPEN_FILES {
                        open.clear();
                    }
                    match open.entry(file) {
                        Entry::Occupied(e) => e.into_mut(),
                        Entry::Vacant(e) => e.insert(
                            std::fs::OpenOptions::new()
                                .write(true)
                                .open(tmp)
                                .map_err(|e| crate::Error::io(tmp, e))?,
                        ),
                    }
                };
                f.write_all_at(&data, offset)
                    .map_err(|e| crate::Error::io(tmp, e))?;
                self.written[file].fetch_add(data.len() as u64, Ordering::Relaxed);
                self.progress.event(ProgressEvent::Bytes {
                    bytes: data.len() as u64,
                });
                i += 1;
            }
        }
        for (file, f) in owned {
            self.pending[file].finish(Some(f), self.written[file].load(Ordering::Relaxed))?;
            self.progress.event(ProgressEvent::FileDone);
        }
        Ok(())
    }
}
