//! Restoring a plan (items from different snapshots) into a [`RestoreTarget`], and dry runs.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::runtime::Handle;

use super::backup::join_error;
use super::fs_write::OwnerPolicy;
use super::fsat;
use super::progress::{ProgressEvent, ProgressSink};
use super::reader::BlobReader;
use super::report::{EntryReport, EntryReports, child_path};
use super::restore_tree;
use crate::error::{Error, Result};
use crate::model::{
    ChunkId, ItemKind, ItemStats, PathSelection, RestorePlan, Snapshot, SnapshotId,
};
use crate::ports::RestoreTarget;
use crate::repo::{AccountRepo, Attrs, BlobLocator, Node, OwnerNames, TreeVersion};

/// Tree packs kept in memory while planning (tree blobs are read in walk order).
const TREE_PACKS_CACHED: usize = 4;
/// Data packs kept in memory while writing trees: blobs are read grouped by pack, so one is
/// enough. Documents are read in order, and a few cached packs cover the interleaving of the
/// pack workers that wrote them.
const TREE_DATA_PACKS_CACHED: usize = 1;
const DATA_PACKS_CACHED: usize = 4;

/// What a restore or dry run covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// Per item: the counts restored (or that would be).
    pub items: Vec<(ItemKind, ItemStats)>,
    /// Entries that could not be restored (damaged or missing data, a device node without
    /// root), each named with the reason; every other entry was restored.
    pub failed: EntryReports,
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

/// One item's root in one snapshot: its tree, how the trees are encoded, its own
/// attributes.
#[derive(Clone)]
struct ItemRoot {
    tree: ChunkId,
    version: TreeVersion,
    attrs: Option<Attrs>,
    names: Arc<OwnerNames>,
}

/// Everything a restore reads, loaded once.
struct Loaded {
    reader_parts: (AccountRepo, Arc<BlobLocator>),
    roots: HashMap<(SnapshotId, ItemKind), ItemRoot>,
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
        let content = object.content.unwrap_or_default();
        let names = Arc::new(content.names);
        for (kind, tree) in content.roots {
            let attrs = (content.root_attrs.iter())
                .find(|(k, _)| *k == kind)
                .map(|(_, a)| a.clone());
            roots.insert(
                (id, kind),
                ItemRoot {
                    tree,
                    version: content.trees,
                    attrs,
                    names: names.clone(),
                },
            );
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
    fn root(&self, snapshot: SnapshotId, kind: ItemKind) -> Result<ItemRoot> {
        self.roots.get(&(snapshot, kind)).cloned().ok_or_else(|| {
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
/// `target`. Each restored file is written whole or not at all, with its recorded mode,
/// times, extended attributes and (by [`crate::model::Ownership`]) owner: content that
/// fails authentication is never left in place, and the file is named in
/// [`RestoreReport::failed`] while every other file is restored. A name that would leave
/// the target is [`Error::PathEscapes`]; no path under the target is ever followed through a
/// link.
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
        if plan.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
            return Err(Error::Cancelled);
        }
        let kind = sel.kind;
        progress.event(ProgressEvent::ItemStarted { kind });
        let root = loaded.root(sel.snapshot, kind)?;
        let replace = !plan.options.merge && sel.paths.is_all();
        let stats = if kind.is_tree() {
            let dir = target.tree_root(kind).await?;
            if !fsat::is_relative_below(&dir.path) {
                return Err(Error::PathEscapes {
                    path: dir.path.display().to_string(),
                });
            }
            let reader = loaded.reader(TREE_PACKS_CACHED)?;
            let paths = sel.paths.clone();
            let progress = progress.clone();
            let mut data_reader = loaded.reader(TREE_DATA_PACKS_CACHED)?;
            let policy = OwnerPolicy::new(
                plan.options.ownership,
                root.attrs.as_ref().and_then(|a| a.owner),
                &root.names,
            );
            let (stats, failed) = tokio::task::spawn_blocking(move || {
                let mut trees = reader;
                let tree_plan = restore_tree::plan(
                    &mut trees,
                    kind,
                    &root.tree,
                    root.version,
                    &paths,
                    replace,
                )?;
                drop(trees);
                let fd =
                    fsat::open_root(&dir, true).map_err(|e| Error::io(dir.display_path(), e))?;
                // The item root's own attributes apply when the whole item is restored.
                let root_attrs = root.attrs.as_ref().filter(|_| paths.is_all());
                restore_tree::write(
                    tree_plan,
                    &mut data_reader,
                    fd,
                    root_attrs,
                    &policy,
                    &progress,
                )
            })
            .await
            .map_err(join_error)??;
            report.failed.extend(failed);
            stats
        } else {
            let (stats, failed) = restore_documents(
                &loaded,
                kind,
                root.tree,
                root.version,
                &sel.paths,
                replace,
                target,
                progress,
            )
            .await?;
            report.failed.extend(failed);
            stats
        };
        progress.event(ProgressEvent::ItemFinished { kind, stats });
        report.items.push((kind, stats));
    }
    if plan.options.suspend_after {
        target.suspend().await?;
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn restore_documents(
    loaded: &Loaded,
    kind: ItemKind,
    root: ChunkId,
    version: TreeVersion,
    paths: &PathSelection,
    replace: bool,
    target: &dyn RestoreTarget,
    progress: &ProgressSink,
) -> Result<(ItemStats, EntryReports)> {
    let mut failed = EntryReports::default();
    let mut reader = Some(loaded.reader(DATA_PACKS_CACHED)?);
    let tree = {
        let mut r = reader.take().ok_or_else(lost)?;
        let (r, tree) = tokio::task::spawn_blocking(move || {
            let t = r.tree(&root, version);
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
        let Node::File { size, chunks, .. } = &entry.node else {
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
            if !restore_tree::is_damage(&e) {
                return Err(e);
            }
            failed.add(EntryReport {
                item: kind,
                path: name,
                reason: e.to_string(),
            });
            continue;
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
    Ok((stats, failed))
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
            count(
                &mut reader,
                &root.tree,
                root.version,
                "",
                &paths,
                &mut stats,
            )?;
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
    version: TreeVersion,
    rel: &str,
    paths: &PathSelection,
    stats: &mut ItemStats,
) -> Result<()> {
    let tree = reader.tree(tree, version)?;
    for e in &tree.entries {
        let child = child_path(rel, &e.name);
        match &e.node {
            Node::Dir { tree, stats: below } => {
                if paths.is_all() {
                    stats.dirs += 1;
                    stats.add(below);
                } else if paths.may_select_below(&child) {
                    if paths.selects(&child) {
                        stats.dirs += 1;
                    }
                    count(reader, tree, version, &child, paths, stats)?;
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
