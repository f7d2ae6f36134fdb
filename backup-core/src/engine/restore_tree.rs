//! Restoring one tree item in two passes:
//! 1. **plan**: read every tree blob of the selection (names are checked here, so a crafted
//!    name is refused before anything is written) and list directories, files and links in
//!    walk order;
//! 2. **write**: create directories, write files chunk by chunk, recreate links; then prune
//!    (replace restores) and set directory times deepest first.
//!
//! Reading trees first keeps tree packs and data packs out of each other's cache, so each
//! data pack is fetched about once: files are written in the order the backup packed them.

use std::collections::HashSet;

use super::fs_write::{SafeDirs, finish_dir, prune, write_file, write_symlink};
use super::progress::{ProgressEvent, ProgressSink};
use super::reader::BlobReader;
use crate::error::Result;
use crate::model::{ChunkId, ItemStats, PathSelection};
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

/// Pass 2: writes what `plan` lists under `dirs`' root.
pub(crate) fn write(
    plan: TreePlan,
    reader: &mut BlobReader,
    dirs: &mut SafeDirs,
    progress: &ProgressSink,
) -> Result<ItemStats> {
    let mut stats = ItemStats::default();
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
                write_file(&dir, name, *mode, *mtime_ns, *size, chunks.len(), |i| {
                    let data = reader.read(&chunks[i])?;
                    progress.event(ProgressEvent::Bytes {
                        bytes: data.len() as u64,
                    });
                    Ok(data)
                })?;
                progress.event(ProgressEvent::FileDone);
                stats.files += 1;
                stats.bytes += size;
            }
            Planned::Symlink { path, target } => {
                let (name, parent) = split(path)?;
                let dir = dirs.ensure(&refs(parent))?;
                write_symlink(&dir, name, target)?;
                stats.symlinks += 1;
            }
        }
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
