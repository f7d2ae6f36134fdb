//! Restoring one tree item in two passes:
//! 1. **plan**: read every tree blob of the selection (names are checked here, so a crafted
//!    name is refused before anything is written) and list directories, files and links in
//!    walk order;
//! 2. **write**: create directories, write files chunk by chunk, recreate links; then prune
//!    (replace restores) and set directory times deepest first.
//!
//! Reading trees first keeps tree packs and data packs out of each other's cache, so each
//! data pack is fetched about once: files are written in the order the backup packed them.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::fs_write::{SafeDirs, create_temp, finish_dir, finish_file, prune, write_symlink};
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
    written: u64,
}

/// Open temporary files kept between writes (a small cache: large files get many chunks).
const OPEN_FILES: usize = 64;

/// Pass 2: writes what `plan` lists under `dirs`' root. Directories and links first, then
/// every file into an exclusive temporary sibling, pack by pack (each pack is fetched once,
/// each blob opened once however many files share it, written with positioned writes), then
/// each complete file is moved into place. On any failure every temporary file is removed,
/// so no file that failed authentication is left anywhere.
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
                    let tmp = create_temp(&dir, name)?;
                    pending.push(Pending {
                        dir,
                        name: name.to_vec(),
                        tmp,
                        size: *size,
                        mode: *mode,
                        mtime_ns: *mtime_ns,
                        written: 0,
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
        write_data(reader, &chunk_lists, &mut pending, progress)?;
        for p in &pending {
            if p.written != p.size {
                return Err(crate::Error::integrity(
                    p.dir
                        .join(std::ffi::OsStr::from_bytes(&p.name))
                        .display()
                        .to_string(),
                    format!("chunks hold {} bytes, the tree says {}", p.written, p.size),
                ));
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for p in &pending {
            let _ = std::fs::remove_file(&p.tmp);
        }
        return Err(e);
    }
    for p in &pending {
        finish_file(&p.dir, &p.name, &p.tmp, p.mode, p.mtime_ns)?;
        progress.event(ProgressEvent::FileDone);
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

/// Writes every chunk of every pending file, grouped by pack in order of first use.
fn write_data(
    reader: &mut BlobReader,
    chunk_lists: &[&[ChunkId]],
    pending: &mut [Pending],
    progress: &ProgressSink,
) -> Result<()> {
    // Where each blob goes: (file, offset), grouped by pack, packs in order of first use.
    let mut order: Vec<PackId> = Vec::new();
    let mut by_pack: HashMap<PackId, Vec<(ChunkId, u32, usize, u64)>> = HashMap::new();
    for (file, chunks) in chunk_lists.iter().enumerate() {
        let mut offset = 0u64;
        for id in chunks.iter() {
            let (pack, len) = reader.locate(id)?;
            by_pack
                .entry(pack)
                .or_insert_with(|| {
                    order.push(pack);
                    Vec::new()
                })
                .push((*id, len, file, offset));
            offset += u64::from(len);
        }
    }
    let mut open: HashMap<usize, std::fs::File> = HashMap::new();
    for pack in order {
        let mut needs = by_pack.remove(&pack).unwrap_or_default();
        needs.sort_unstable_by_key(|n| (n.0, n.2, n.3));
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
                if !open.contains_key(&file) {
                    if open.len() >= OPEN_FILES {
                        open.clear();
                    }
                    let tmp = &pending[file].tmp;
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(tmp)
                        .map_err(|e| crate::Error::io(tmp, e))?;
                    open.insert(file, f);
                }
                if let Some(f) = open.get(&file) {
                    f.write_all_at(&data, offset)
                        .map_err(|e| crate::Error::io(&pending[file].tmp, e))?;
                }
                pending[file].written += data.len() as u64;
                progress.event(ProgressEvent::Bytes {
                    bytes: data.len() as u64,
                });
                i += 1;
            }
        }
    }
    Ok(())
}
