//! Backing up one account into one repository.

use std::time::Instant;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::chunker::Chunker;
use super::packer::{BufferPool, KnownBlobs, PackerConfig, start};
use super::progress::{ProgressEvent, ProgressSink};
use super::report::BackupReport;
use super::stat_cache::{StatCache, StatCacheStore};
use super::upload::{UploadLimits, upload};
use super::walk::Walker;
use crate::error::{Error, Result};
use crate::model::{
    Account, BackupStats, ChunkId, DestinationId, ItemKind, JobId, PathFilter, Snapshot,
    SnapshotId, SnapshotItem, SnapshotKind, SnapshotStatus,
};
use crate::ports::AccountSource;
use crate::repo::{
    AccountRepo, Attrs, Node, PackReference, References, SnapshotContent, SnapshotObject, Tree,
    TreeEntry, TreeVersion, normalize_references,
};

/// Finished packs waiting for upload at most (with the open packs of the workers, this
/// bounds a backup's memory whatever the data size).
const UPLOAD_QUEUE: usize = 1;

/// What to back up.
#[derive(Debug, Clone)]
pub struct BackupRequest<'a> {
    /// The account.
    pub account: &'a Account,
    /// The destination the repository belongs to (recorded in the snapshot).
    pub destination: DestinationId,
    /// The job, if any.
    pub job: Option<JobId>,
    /// The queue task, if any (recorded in the snapshot).
    pub task: Option<crate::model::TaskId>,
    /// Why the snapshot is taken.
    pub kind: SnapshotKind,
    /// Items to back up; `None` takes every item the source has.
    pub items: Option<Vec<ItemKind>>,
    /// Excludes added to the account's own (for example the job's).
    pub extra_excludes: PathFilter,
    /// zstd level for compressible blobs of 64 KiB and more ([`DEFAULT_COMPRESSION_LEVEL`]
    /// unless changed).
    pub compression_level: i32,
    /// zstd level for the groups smaller blobs are compressed in
    /// ([`DEFAULT_GROUP_COMPRESSION_LEVEL`] unless changed).
    pub group_compression_level: i32,
    /// Where the stat cache of the previous backup to this destination is kept; `None`
    /// reads every file.
    pub stat_cache: Option<&'a dyn StatCacheStore>,
    /// Compress-and-seal threads; 0 uses one per core.
    pub threads: usize,
    /// `(bytes the account uses now, hard limit)`: a pack that would take the account past
    /// the limit is not written and the backup fails with [`Error::QuotaExceeded`],
    /// recording nothing (packs written before it are left for garbage collection).
    pub quota: Option<(u64, u64)>,
    /// Cancels the backup: no pack is written after it fires, and no snapshot.
    pub cancel: Option<CancellationToken>,
    /// Called right before the snapshot object is written; an error stops the backup
    /// there, recording nothing (the service checks its lease and the account's key).
    pub commit_guard: Option<&'a dyn CommitGuard>,
}

/// The last check before a backup commits its snapshot object.
#[async_trait::async_trait]
pub trait CommitGuard: Send + Sync + std::fmt::Debug {
    /// Fails to stop the commit.
    async fn check(&self) -> Result<()>;
}

/// The zstd level of single blobs (chunks of 64 KiB and more) by default. Level 3 rather
/// than 1: on text (web pages, scripts, mail, logs) it stores about 5 % less for about 8 %
/// more compression time (`cargo bench -p backup-benches --bench primitives -- "small
/// text"`), and it decompresses faster.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;

/// The zstd level of the groups small files are compressed in (up to 256 KiB each) by
/// default. At that input size zstd's level 2 finds nearly the matches level 3 finds:
/// `zstd -b` in 256 KiB blocks measured level 2 5-8 % faster for 0.3-1.3 % more output on
/// generated web pages, Rust sources and the text files of a Debian system, and it
/// decompresses 5-9 % faster. On larger blobs level 2 was no faster and 8 % larger, so they
/// keep [`DEFAULT_COMPRESSION_LEVEL`].
pub const DEFAULT_GROUP_COMPRESSION_LEVEL: i32 = 2;

impl<'a> BackupRequest<'a> {
    /// An on-demand backup of every item of `account`.
    pub fn new(account: &'a Account, destination: DestinationId) -> Self {
        Self {
            account,
            destination,
            job: None,
            task: None,
            kind: SnapshotKind::OnDemand,
            items: None,
            extra_excludes: PathFilter::default(),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            group_compression_level: DEFAULT_GROUP_COMPRESSION_LEVEL,
            stat_cache: None,
            threads: 0,
            quota: None,
            cancel: None,
            commit_guard: None,
        }
    }

    /// Stops the backup before any pack would take the account past `limit` bytes, given
    /// that it uses `used` bytes now.
    pub fn with_quota(mut self, used: u64, limit: u64) -> Self {
        self.quota = Some((used, limit));
        self
    }

    /// Makes the backup cancellable through `token`.
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Checks `guard` right before the snapshot object is written.
    pub fn with_commit_guard(mut self, guard: &'a dyn CommitGuard) -> Self {
        self.commit_guard = Some(guard);
        self
    }

    fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(c) if c.is_cancelled() => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// Uses a stat cache (unchanged files are not read again).
    pub fn with_stat_cache(mut self, cache: &'a dyn StatCacheStore) -> Self {
        self.stat_cache = Some(cache);
        self
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Backs up `source` into `repo` and returns the new snapshot (already written to the
/// repository; adding it to the catalog is the caller's step) with the entries it left out
/// or saw change. A second backup of unchanged data writes no new pack. An entry that
/// cannot be read is named in [`BackupReport::skipped`] and makes the snapshot
/// [`SnapshotStatus::Partial`]; nothing is left out silently.
///
/// Pipeline: a walking thread reads, chunks and hashes, and drops what the account already
/// has; one worker thread per core compresses, seals and packs new blobs; packs are uploaded
/// concurrently. Queues between the stages are bounded.
pub async fn backup(
    repo: &AccountRepo,
    request: &BackupRequest<'_>,
    source: &dyn AccountSource,
    progress: &ProgressSink,
) -> Result<BackupReport> {
    let started = Instant::now();
    let account = request.account;
    if account.id != repo.account() {
        return Err(Error::refused(
            "the repository handle belongs to another account",
        ));
    }
    let id = SnapshotId::new();
    let created = Utc::now();
    let excludes = account.excludes.union(&request.extra_excludes)?;
    let mut kinds = source.items().await?;
    if let Some(wanted) = &request.items {
        kinds.retain(|k| wanted.contains(k));
    }
    kinds.sort();
    kinds.dedup();

    let sealer = repo.sealer().clone();
    // The collector's state is read before the packs are listed: a pack it deletes from
    // now on was due in the state read here (so it is excluded below), and a state written
    // after a deletion is read only by a backup whose listing no longer shows the pack.
    let collection = repo.load_collection_state().await;
    // The stat cache and the account's blob locations load side by side.
    let (cached, locator) = tokio::join!(
        async {
            match request.stat_cache {
                Some(store) => store.load(account.id, request.destination).await,
                None => Ok(None),
            }
        },
        repo.load_locator()
    );
    let old_cache = match cached? {
        Some(bytes) => StatCache::decode(sealer.server_keys(), &bytes),
        None => StatCache::default(),
    };
    let mut locator = locator?;
    // Packs a collector condemned and may delete by now (with a margin for clocks) are not
    // reused: their blobs are stored again. The account's lease, held since before the
    // state was read, keeps every other pack listed above from being deleted until the
    // backup ends.
    match collection {
        Ok(state) => locator.exclude(state.due_at(created + super::prune::CLOCK_MARGIN).copied()),
        // A collector that cannot read the state starts afresh and deletes nothing that
        // was not condemned again, while this backup holds the lease: safe to go on.
        Err(e @ Error::Integrity { .. }) => {
            tracing::warn!(account = %account.id, error = %e, "collection state unreadable");
        }
        Err(e) => return Err(e),
    }
    let cached_files = old_cache.entries.len();
    let known = KnownBlobs::from_locator(&locator)?;
    drop(locator);
    let config = *repo.repository().config();
    let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
    // The packs open in the workers and in flight are about this many.
    let buffers = BufferPool::new(4);
    let uploader = tokio::spawn(upload(
        repo.clone(),
        rx,
        buffers.clone(),
        UploadLimits {
            quota: request.quota,
            cancel: request.cancel.clone(),
        },
    ));
    let threads = if request.threads == 0 {
        default_threads()
    } else {
        request.threads
    };
    let (sink, workers) = start(
        PackerConfig {
            sealer: sealer.clone(),
            known,
            pack_size: config.pack_size as usize,
            level: request.compression_level,
            group_level: request.group_compression_level,
            threads,
            buffers,
        },
        tx,
    )?;
    let mut slot = Some(Walker::new(
        Chunker::new(config.chunker, sealer.server_keys().chunker_seed()),
        sink,
        sealer.clone(),
        progress.clone(),
        old_cache,
        // Most files of an account are there again: room for all of them up front.
        StatCache::with_capacity(cached_files),
        created.timestamp_nanos_opt().unwrap_or(i64::MAX),
    ));

    let walked = walk_items(&mut slot, request, source, &kinds, &excludes, progress).await;
    let walker = slot.take();
    // Finishing (or dropping) the sink closes the job queue: workers flush and stop, which
    // closes the upload queue, so the uploader ends too.
    let (finished, walker_rest) = match walker {
        Some(w) => (
            Some(w.sink.finish()),
            Some((
                w.new_cache,
                (w.bytes_read, w.files_unchanged),
                (w.skipped, w.changed),
                w.owners,
            )),
        ),
        None => (None, None),
    };
    let workers_done = tokio::task::spawn_blocking(move || workers.join())
        .await
        .map_err(join_error)
        .and_then(|r| r);
    let uploaded = uploader.await.map_err(join_error).and_then(|r| r);
    // Report the root cause: a storage failure stops the uploader, then the workers, and the
    // walker only sees a closed queue.
    let uploaded = uploaded?;
    workers_done?;
    let walked = walked?;
    let (
        (references, pack_stats),
        (new_cache, (bytes_read, files_unchanged), (skipped, changed), owners),
    ) = match (finished, walker_rest) {
        (Some(f), Some(r)) => (f?.outcome()?, r),
        _ => {
            return Err(Error::Internal {
                reason: "backup worker lost".into(),
            });
        }
    };

    // Existing packs' entries the snapshot reuses, and every entry of the packs it wrote.
    let mut references = references;
    references.extend(
        uploaded
            .packs
            .iter()
            .filter_map(|p| PackReference::all(p.id, p.trailer.entries.len())),
    );
    let references = References::Packs(normalize_references(references));
    let mut bytes_stored = uploaded.bytes;
    request.check_cancel()?;
    if !uploaded.packs.is_empty() {
        let (_, index_len) = repo.put_index(&uploaded.packs).await?;
        bytes_stored += index_len;
    }
    if !skipped.is_empty() {
        tracing::warn!(
            account = %account.id,
            skipped = skipped.total,
            "backup skipped entries it could not read"
        );
    }
    let status = if skipped.is_empty() {
        SnapshotStatus::Complete
    } else {
        SnapshotStatus::Partial
    };
    let snapshot = Snapshot {
        id,
        account: account.id,
        job: request.job,
        destination: request.destination,
        created,
        kind: request.kind,
        status,
        items: walked.items,
        encrypted: sealer.is_encrypted(),
        locked: false,
        lock_until: None,
        identity: None,
        task: request.task,
        stats: BackupStats {
            bytes_read,
            bytes_new: pack_stats.bytes_new,
            bytes_deduplicated: pack_stats.bytes_deduplicated,
            bytes_stored,
            chunks_new: pack_stats.chunks_new,
            chunks_deduplicated: pack_stats.chunks_deduplicated,
            packs_written: uploaded.packs.len() as u64,
            files_unchanged,
            files_skipped: skipped.total,
            duration_ms: started.elapsed().as_millis() as u64,
        },
    };
    request.check_cancel()?;
    if let Some(guard) = request.commit_guard {
        guard.check().await?;
    }
    repo.put_snapshot(&SnapshotObject {
        snapshot: snapshot.clone(),
        references,
        content: Some(SnapshotContent {
            roots: walked.roots,
            trees: TreeVersion::V2,
            root_attrs: walked.root_attrs,
            names: super::owners::names_of(&owners),
        }),
    })
    .await?;
    if let Some(store) = request.stat_cache {
        let bytes = new_cache.encode(sealer.server_keys())?;
        store.save(account.id, request.destination, bytes).await?;
    }
    Ok(BackupReport {
        snapshot,
        skipped,
        changed,
    })
}

/// The items walked: their counts, root trees and the tree roots' own attributes.
#[derive(Default)]
struct Walked {
    items: Vec<SnapshotItem>,
    roots: Vec<(ItemKind, ChunkId)>,
    root_attrs: Vec<(ItemKind, Attrs)>,
}

async fn walk_items(
    walker: &mut Option<Walker>,
    request: &BackupRequest<'_>,
    source: &dyn AccountSource,
    kinds: &[ItemKind],
    excludes: &PathFilter,
    progress: &ProgressSink,
) -> Result<Walked> {
    let mut walked = Walked::default();
    for &kind in kinds {
        request.check_cancel()?;
        progress.event(ProgressEvent::ItemStarted { kind });
        let (root, stats) = if kind.is_tree() {
            let Some(root) = source.tree_root(kind).await? else {
                continue;
            };
            if !crate::engine::fsat::is_relative_below(&root.path) {
                return Err(Error::invalid(
                    "tree root",
                    format!("{} leaves its base directory", root.path.display()),
                ));
            }
            let filter = if kind == ItemKind::HomeDir {
                excludes.clone()
            } else {
                PathFilter::default()
            };
            let dir = in_blocking(walker, move |w| w.walk_root(kind, &root, &filter)).await?;
            // A root that could not be opened is reported in the walker's skipped list.
            let Some(dir) = dir else { continue };
            walked.root_attrs.push((kind, dir.attrs));
            (dir.tree, dir.stats)
        } else {
            let mut tree = Tree::default();
            let mut names = source.documents(kind).await?;
            names.sort();
            names.dedup();
            for name in names {
                crate::model::check_document_name(&name)?;
                let reader = source.open_document(kind, &name).await?;
                let label = std::path::PathBuf::from(format!("{kind}/{name}"));
                let (size, chunks) =
                    in_blocking(walker, move |w| w.store_content(reader, &label)).await?;
                tree.entries.push(TreeEntry {
                    name: name.into_bytes(),
                    node: Node::File {
                        size,
                        chunks,
                        extents: None,
                        link: None,
                    },
                    attrs: Attrs {
                        mode: 0o600,
                        ..Attrs::default()
                    },
                });
            }
            tree.entries.sort_by(|a, b| a.name.cmp(&b.name));
            let stats = tree.stats();
            let id = in_blocking(walker, move |w| w.store_tree(&tree)).await?;
            (id, stats)
        };
        progress.event(ProgressEvent::ItemFinished { kind, stats });
        walked.items.push(SnapshotItem { kind, stats });
        walked.roots.push((kind, root));
    }
    Ok(walked)
}

/// Runs `f` on the walker in a blocking thread (file I/O and hashing), moving the walker in
/// and back out.
async fn in_blocking<T: Send + 'static>(
    slot: &mut Option<Walker>,
    f: impl FnOnce(&mut Walker) -> Result<T> + Send + 'static,
) -> Result<T> {
    let mut walker = slot.take().ok_or_else(|| Error::Internal {
        reason: "backup worker lost".into(),
    })?;
    let (walker, result) = tokio::task::spawn_blocking(move || {
        let r = f(&mut walker);
        (walker, r)
    })
    .await
    .map_err(join_error)?;
    *slot = Some(walker);
    result
}

pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Internal {
        reason: format!("worker task failed: {e}"),
    }
}
