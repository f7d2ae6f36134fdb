//! Restoring a plan (items from different snapshots) into a [`RestoreTarget`], and dry runs.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::runtime::Handle;

use super::backup::join_error;
use super::fs_write::SafeDirs;
use super::progress::{ProgressEvent, ProgressSink};
use super::reader::BlobReader;
use super::restore_tree;
use crate::error::{Error, Result};
use crate::model::{
    ChunkId, ItemKind, ItemStats, PathSelection, RestorePlan, Snapshot, SnapshotId,
};
use crate::ports::RestoreTarget;
use crate::repo::{AccountRepo, BlobLocator, Node};

/// Tree packs kept in memory while planning (tree blobs are read in walk order).
const TREE_PACKS_CACHED: usize = 4;
/// Data packs kept in memory while writing trees: blobs are read grouped by pack, so one is
/// enough. Documents are read in order, and a few cached packs cover the interleaving of the
/// pack workers that wrote them.
const TREE_DATA_PACKS_CACHED: usize = 1;
const DATA_PACKS_CACHED: usize = 4;

/// What a restore or dry run covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Per item: the counts restored (or that would be).
    pub items: Vec<(ItemKind, ItemStats)>,
}

impl RestoreReport {
    /// Counts over every item.
    pub fn totals(&self) -> ItemStats {
        let mut t = ItemStats::default();
        for (_, s) in &self.items {
            t.add(s);
        }
        t
    }
}

/// Everything a restore reads, loaded once.
struct Loaded {
    reader_parts: (AccountRepo, Arc<BlobLocator>),
    roots: HashMap<(SnapshotId, ItemKind), ChunkId>,
}

async fn load(repo: &AccountRepo, plan: &RestorePlan, snapshots: &[Snapshot]) -> Result<Loaded> {
    if plan.account != repo.account() {
        return Err(Error::refused(
            "the repository handle belongs to another account",
        ));
    }
    plan.check_snapshots(snapshots)?;
    repo.require_opener()?;
    let mut roots = HashMap::new();
    for id in plan.snapshot_ids() {
        let object = repo.load_snapshot(id).await?;
        for (kind, root) in object.roots.unwrap_or_default() {
            roots.insert((id, kind), root);
        }
    }
    let locator = Arc::new(repo.load_locator().await?);
    Ok(Loaded {
        reader_parts: (repo.clone(), locator),
        roots,
    })
}

fn ordered(plan: &RestorePlan) -> Vec<&crate::model::ItemSelection> {
    let mut items: Vec<_> = plan.items.iter().collect();
    items.sort_by_key(|s| ItemKind::ALL.iter().position(|k| *k == s.kind));
    items
}

impl Loaded {
    fn root(&self, snapshot: SnapshotId, kind: ItemKind) -> Result<ChunkId> {
        self.roots.get(&(snapshot, kind)).copied().ok_or_else(|| {
            Error::integrity(
                format!("snapshot {snapshot}"),
                format!("has no {kind} item in the repository"),
            )
        })
    }

    fn reader(&self, cached_packs: usize) -> Result<BlobReader> {
        BlobReader::new(
            self.reader_parts.0.clone(),
            self.reader_parts.1.clone(),
            Handle::current(),
            cached_packs,
        )
    }
}

/// Restores `plan` (whose snapshots are `snapshots`, as the catalog lists them) into
/// `target`. Each restored file is written whole or not at all: content that fails
/// authentication stops the restore with [`Error::Integrity`] and is never left in place.
/// A name that would leave the target is [`Error::PathEscapes`].
pub async fn restore(
    repo: &AccountRepo,
    plan: &RestorePlan,
    snapshots: &[Snapshot],
    target: &dyn RestoreTarget,
    progress: &ProgressSink,
) -> Result<RestoreReport> {
    let loaded = load(repo, plan, snapshots).await?;
    if plan.options.terminate_first {
        target.terminate().await?;
    }
    let mut report = RestoreReport::default();
    for sel in ordered(plan) {
        let kind = sel.kind;
        progress.event(ProgressEvent::ItemStarted { kind });
        let root = loaded.root(sel.snapshot, kind)?;
        let replace = !plan.options.merge && sel.paths.is_all();
        let stats = if kind.is_tree() {
            let dir = target.tree_root(kind).await?;
            let reader = loaded.reader(TREE_PACKS_CACHED)?;
            let paths = sel.paths.clone();
            let progress = progress.clone();
            let mut data_reader = loaded.reader(TREE_DATA_PACKS_CACHED)?;
            tokio::task::spawn_blocking(move || {
                let mut trees = reader;
                let plan = restore_tree::plan(&mut trees, &root, &paths, replace)?;
                drop(trees);
                let mut dirs = SafeDirs::new(dir)?;
                restore_tree::write(plan, &mut data_reader, &mut dirs, &progress)
            })
            .await
            .map_err(join_error)??
        } else {
            restore_documents(&loaded, kind, root, &sel.paths, replace, target, progress).await?
        };
        progress.event(ProgressEvent::ItemFinished { kind, stats });
        report.items.push((kind, stats));
    }
    if plan.options.suspend_after {
        target.suspend().await?;
    }
    Ok(report)
}

async fn restore_documents(
    loaded: &Loaded,
    kind: ItemKind,
    root: ChunkId,
    paths: &PathSelection,
    replace: bool,
    target: &dyn RestoreTarget,
    progress: &ProgressSink,
) -> Result<ItemStats> {
    let mut reader = Some(loaded.reader(DATA_PACKS_CACHED)?);
    let tree = {
        let mut r = reader.take().ok_or_else(lost)?;
        let (r, tree) = tokio::task::spawn_blocking(move || {
            let t = r.tree(&root);
            (r, t)
        })
        .await
        .map_err(join_error)?;
        reader = Some(r);
        tree?
    };
    let mut stats = ItemStats::default();
    for entry in &tree.entries {
        let name = String::from_utf8(entry.name.clone())
            .map_err(|_| Error::integrity(format!("tree {root}"), "document name is not UTF-8"))?;
        let Node::File { size, chunks } = &entry.node else {
            continue;
        };
        if !paths.selects(&name) {
            continue;
        }
        let mut writer = target.create_document(kind, &name).await?;
        let mut r = reader.take().ok_or_else(lost)?;
        let chunks = chunks.clone();
        let progress2 = progress.clone();
        let (r, written) = tokio::task::spawn_blocking(move || {
            let result = (|| {
                for id in &chunks {
                    let data = r.read(id)?;
                    writer
                        .write_all(&data)
                        .map_err(|e| Error::io(PathBuf::from(id.to_hex()), e))?;
                    progress2.event(ProgressEvent::Bytes {
                        bytes: data.len() as u64,
                    });
                }
                writer
                    .flush()
                    .map_err(|e| Error::io(PathBuf::from("document"), e))?;
                Ok::<_, Error>(())
            })();
            (r, result)
        })
        .await
        .map_err(join_error)?;
        reader = Some(r);
        if let Err(e) = written {
            // Never leave a partial document that could pass for the real one.
            let _ = target.remove_document(kind, &name).await;
            return Err(e);
        }
        progress.event(ProgressEvent::FileDone);
        stats.files += 1;
        stats.bytes += size;
    }
    if replace {
        let keep: HashSet<&[u8]> = tree.entries.iter().map(|e| e.name.as_slice()).collect();
        for live in target.live_documents(kind).await? {
            if !keep.contains(live.as_bytes()) {
                target.remove_document(kind, &live).await?;
            }
        }
    }
    Ok(stats)
}

fn lost() -> Error {
    Error::Internal {
        reason: "restore worker lost".into(),
    }
}

/// Reports what [`restore`] would restore (items, files, bytes) without writing anything.
/// Needs the content key, like a restore (file names are sealed).
pub async fn dry_run(
    repo: &AccountRepo,
    plan: &RestorePlan,
    snapshots: &[Snapshot],
) -> Result<RestoreReport> {
    let loaded = load(repo, plan, snapshots).await?;
    let mut report = RestoreReport::default();
    for sel in ordered(plan) {
        let root = loaded.root(sel.snapshot, sel.kind)?;
        let mut reader = loaded.reader(TREE_PACKS_CACHED)?;
        let paths = sel.paths.clone();
        let stats = tokio::task::spawn_blocking(move || {
            let mut stats = ItemStats::default();
            count(&mut reader, &root, "", &paths, &mut stats)?;
            Ok::<_, Error>(stats)
        })
        .await
        .map_err(join_error)??;
        report.items.push((sel.kind, stats));
    }
    Ok(report)
}

fn count(
    reader: &mut BlobReader,
    tree: &ChunkId,
    rel: &str,
    paths: &PathSelection,
    stats: &mut ItemStats,
) -> Result<()> {
    let tree = reader.tree(tree)?;
    for e in &tree.entries {
        let name = String::from_utf8_lossy(&e.name);
        let child = if rel.is_empty() {
            name.into_owned()
        } else {
            format!("{rel}/{name}")
        };
        match &e.node {
            Node::Dir { tree, stats: below } => {
                if paths.is_all() {
                    stats.dirs += 1;
                    stats.add(below);
                } else if paths.may_select_below(&child) {
                    if paths.selects(&child) {
                        stats.dirs += 1;
                    }
                    count(reader, tree, &child, paths, stats)?;
                }
            }
            Node::File { size, .. } if paths.selects(&child) => {
                stats.files += 1;
                stats.bytes += size;
            }
            Node::Symlink { .. } if paths.selects(&child) => stats.symlinks += 1,
            _ => {}
        }
    }
    Ok(())
}
