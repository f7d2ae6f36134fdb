//! Verification: structure (every blob a snapshot references is in some pack trailer) and,
//! optionally, data (every pack read back and checked against its keyed id; with the content
//! key, every blob opened and authenticated too).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures::StreamExt;

use super::reader::BlobReader;
use super::report::{EntryReport, EntryReports, child_path};
use crate::error::{Error, Result};
use crate::model::{ChunkId, ItemKind, PackId, SnapshotId};
use crate::repo::{AccountRepo, BlobCodec, BlobLocator, Node, References, TreeVersion};

/// What to check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Read packs back (not only the trailers).
    pub read_data: bool,
    /// With `read_data`, read only about this percentage of the packs, chosen at random each
    /// run (1-100); `None` reads every pack.
    pub sample_percent: Option<u8>,
    /// Write nothing to the destination: damaged packs found are reported, not recorded in
    /// the damaged-pack list (for read-only destinations).
    pub read_only: bool,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyProblem {
    /// The object concerned (snapshot, pack, blob).
    pub object: String,
    /// What is wrong.
    pub reason: String,
}

/// What a verification saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Packs known (and read, with `read_data`).
    pub packs: u64,
    /// Blobs referenced by the snapshots.
    pub blobs_referenced: u64,
    /// Blobs opened and authenticated (with `read_data` and the content key).
    pub blobs_authenticated: u64,
    /// Bytes read with `read_data`.
    pub bytes_read: u64,
    /// Problems; empty means the repository verified.
    pub problems: Vec<VerifyProblem>,
    /// Packs found damaged by a data verification (recorded in the account's damaged-pack
    /// list, so that the next backup stores their blobs again).
    pub damaged_packs: Vec<PackId>,
    /// The snapshots that need a damaged pack, each with the files and directories it
    /// cannot restore (named when the content key is at hand; a file whose blobs another
    /// pack also holds is not affected).
    pub affected: Vec<AffectedSnapshot>,
}

/// A snapshot that needs a damaged pack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AffectedSnapshot {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// What it cannot restore; empty when read without the content key.
    pub entries: EntryReports,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, object: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(VerifyProblem {
            object: object.into(),
            reason: reason.into(),
        });
    }
}

/// Verifies `snapshots` of the account (all of its snapshot objects when empty). Problems in
/// the data are reported, not returned as errors; storage failures are errors.
pub async fn verify(
    repo: &AccountRepo,
    snapshots: &[SnapshotId],
    options: VerifyOptions,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let ids = if snapshots.is_empty() {
        repo.list_snapshots().await?
    } else {
        snapshots.to_vec()
    };
    let locator = repo.load_locator().await?;
    let mut referenced: HashSet<ChunkId> = HashSet::new();
    let mut loaded = Vec::new();
    for id in &ids {
        report.snapshots += 1;
        match repo.load_snapshot(*id).await {
            Ok(obj) => {
                loaded.push(obj.clone());
                let mut mine: HashSet<ChunkId> = HashSet::new();
                match &obj.references {
                    References::Packs(refs) => {
                        for r in refs {
                            let Some(trailer) = locator.pack(&r.pack) else {
                                report.problem(
                                    format!("snapshot {id}"),
                                    format!("references pack {}, which is missing", r.pack),
                                );
                                continue;
                            };
                            for i in r.indices() {
                                match trailer.entries.get(i) {
                                    Some(e) => {
                                        mine.insert(e.id);
                                    }
                                    None => report.problem(
                                        format!("snapshot {id}"),
                                        format!(
                                            "references entry {i} of pack {}, which has {}",
                                            r.pack,
                                            trailer.entries.len()
                                        ),
                                    ),
                                }
                            }
                        }
                    }
                    References::Blobs(ids) => {
                        for r in ids {
                            if !locator.contains(r) {
                                report.problem(
                                    format!("snapshot {id}"),
                                    format!("blob {r} is in no pack"),
                                );
                            }
                        }
                        mine.extend(ids.iter().copied());
                    }
                }
                if let Some(content) = &obj.content {
                    for (kind, root) in &content.roots {
                        if !mine.contains(root) {
                            report.problem(
                                format!("snapshot {id}"),
                                format!("{kind} root {root} is not among its references"),
                            );
                        }
                    }
                }
                referenced.extend(mine);
            }
            Err(e @ (Error::Integrity { .. } | Error::UnsupportedVersion { .. })) => {
                report.problem(format!("snapshot {id}"), e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    report.blobs_referenced = referenced.len() as u64;
    let mut packs: Vec<PackId> = locator.packs().map(|(id, _)| *id).collect();
    report.packs = packs.len() as u64;
    if !options.read_data {
        return Ok(report);
    }
    if let Some(percent) = options.sample_percent {
        let percent = u128::from(percent.clamp(1, 100));
        // A fresh random threshold per pack: an attacker cannot predict which packs are read.
        packs.retain(|_| u128::from(uuid::Uuid::new_v4().as_u128() as u8) * 100 < percent * 256);
    }
    let opener = repo.opener().cloned();
    let keys_holder = repo.sealer().clone();
    let mut damaged: BTreeSet<PackId> = BTreeSet::new();
    let mut fetched = futures::stream::iter(packs)
        .map(|id| async move { (id, repo.get_pack(&id).await) })
        .buffer_unordered(4);
    let mut codec = BlobCodec::new(1)?;
    while let Some((id, result)) = fetched.next().await {
        let (bytes, trailer) = match result {
            Ok(x) => x,
            Err(e @ (Error::Integrity { .. } | Error::UnsupportedVersion { .. })) => {
                report.problem(format!("pack {id}"), e.to_string());
                damaged.insert(id);
                continue;
            }
            Err(e) => return Err(e),
        };
        report.bytes_read += bytes.len() as u64;
        let Some(opener) = &opener else { continue };
        let session = match opener.open_session(&trailer.seal_header) {
            Ok(s) => s,
            Err(e) => {
                report.problem(format!("pack {id}"), e.to_string());
                damaged.insert(id);
                continue;
            }
        };
        codec.open_all(
            keys_holder.server_keys(),
            session.as_ref(),
            &bytes,
            &trailer.entries,
            |e, opened| match opened {
                Ok(_) => report.blobs_authenticated += 1,
                Err(err) => {
                    damaged.insert(id);
                    report.problem(format!("blob {} in pack {id}", e.id), err.to_string())
                }
            },
        );
    }
    drop(fetched);
    if damaged.is_empty() {
        return Ok(report);
    }
    report.damaged_packs = damaged.iter().copied().collect();
    // Recorded so that the next backup heals; a destination that takes no writes (read
    // only) keeps no list, and says so.
    if options.read_only {
        report.problem(
            "damaged-pack list",
            "not recorded: the destination is read-only, so backups to it would still reuse these packs",
        );
    } else if let Err(e) = repo.mark_damaged(damaged.iter().copied()).await {
        report.problem(
            "damaged-pack list",
            format!("could not be recorded, so backups still reuse these packs: {e}"),
        );
    }
    // The trailers already loaded, located again with the damaged packs known (no second
    // listing of the destination).
    let mut relocated = BlobLocator::new();
    relocated.set_damaged(damaged.iter().copied());
    relocated.set_damaged((locator.packs().map(|(id, _)| *id)).filter(|id| locator.is_damaged(id)));
    for (id, trailer) in locator.packs() {
        relocated.add_pack(*id, trailer.clone());
    }
    let locator = Arc::new(relocated);
    for obj in loaded {
        let needs = match &obj.references {
            References::Packs(refs) => refs.iter().any(|r| damaged.contains(&r.pack)),
            References::Blobs(ids) => ids.iter().any(|b| {
                locator
                    .locate(b)
                    .is_none_or(|(pack, _)| damaged.contains(pack))
            }),
        };
        if !needs {
            continue;
        }
        let entries = match (&obj.content, repo.opener()) {
            (Some(content), Some(_)) => {
                let reader = BlobReader::new(
                    repo.clone(),
                    locator.clone(),
                    tokio::runtime::Handle::current(),
                    2,
                )?;
                let content = content.clone();
                let locator = locator.clone();
                tokio::task::spawn_blocking(move || {
                    let mut walk = DamageWalk {
                        reader,
                        locator,
                        version: content.trees,
                        out: EntryReports::default(),
                    };
                    for (kind, tree) in &content.roots {
                        walk.tree(*kind, tree, "");
                    }
                    walk.out
                })
                .await
                .map_err(super::backup::join_error)?
            }
            _ => EntryReports::default(),
        };
        // A snapshot whose every blob another pack also holds restores whole.
        if obj.content.is_some() && repo.opener().is_some() && entries.is_empty() {
            continue;
        }
        report.affected.push(AffectedSnapshot {
            snapshot: obj.snapshot.id,
            entries,
        });
    }
    Ok(report)
}

/// Walks a snapshot's trees naming what a damaged pack keeps from being restored.
struct DamageWalk {
    reader: BlobReader,
    locator: Arc<BlobLocator>,
    version: TreeVersion,
    out: EntryReports,
}

impl DamageWalk {
    fn lost(&self, id: &ChunkId) -> bool {
        self.locator
            .locate(id)
            .is_none_or(|(pack, _)| self.locator.is_damaged(pack))
    }

    fn tree(&mut self, kind: ItemKind, id: &ChunkId, rel: &str) {
        if self.lost(id) {
            self.out.add(EntryReport {
                item: kind,
                path: rel.to_owned(),
                reason: "its directory listing is in a damaged pack".into(),
            });
            return;
        }
        let tree = match self.reader.tree(id, self.version) {
            Ok(t) => t,
            Err(e) => {
                self.out.add(EntryReport {
                    item: kind,
                    path: rel.to_owned(),
                    reason: e.to_string(),
                });
                return;
            }
        };
        for e in tree.entries {
            let child = child_path(rel, &e.name);
            match &e.node {
                Node::Dir { tree, .. } => self.tree(kind, tree, &child),
                Node::File { chunks, .. } if chunks.iter().any(|c| self.lost(c)) => {
                    self.out.add(EntryReport {
                        item: kind,
                        path: child,
                        reason: "content in a damaged pack".into(),
                    })
                }
                _ => {}
            }
        }
    }
}
