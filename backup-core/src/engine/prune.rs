//! Garbage collection of one account's part of a repository: two-phase and time-based,
//! without the account's operation lease (backups run meanwhile) and without the content
//! key (snapshot headers and pack trailers are server-readable).
//!
//! One run, under the account's collection lease (the caller's):
//! 1. **Scan**: every snapshot object's references, every pack's trailer.
//! 2. **Repack** packs whose live share is below the threshold: their referenced blobs are
//!    copied, sealed bytes as they are, into a smaller pack; the snapshots that name the
//!    old pack are rewritten to name the new one (same sealed metadata, new MAC); the old
//!    pack is then unreferenced.
//! 3. **Condemn** every unreferenced pack not condemned yet: it may be deleted from `now +
//!    grace` on. A pack referenced again is no longer condemned. The state is stored.
//! 4. **Delete** the condemned packs that are due, unless a backup (or a key reset) holds
//!    the account's lease: then deletion waits for the next run. Before deleting, the
//!    snapshots are listed again, and a pack any of them references is kept.
//! 5. **Index**: one index of every remaining pack replaces the old ones.
//!
//! A backup, once it holds the account's lease, reuses no blob of a pack condemned and due
//! (with a margin for clocks). The argument that no referenced pack is ever deleted is in
//! `docs/architecture.md`; every step is safe to interrupt, and the next run finishes it.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::backup::CommitGuard;
use super::repack::Moves;
use crate::error::{Error, Result};
use crate::model::{AccountId, ChunkId, PackId, SnapshotId};
use crate::repo::{
    AccountRepo, BlobLocator, CollectionState, Compression, Condemned, IndexedPack, PackReference,
    PackTrailer, References, normalize_references, rewrite_pack_references,
};

/// How far ahead of its clock a backup treats condemned packs as due: the clocks of the
/// machines sharing a destination must agree to within it (as they must within a lease's
/// time to live).
pub const CLOCK_MARGIN: Duration = Duration::hours(1);

/// The default grace: a pack is deleted a day after it was first found unreferenced.
pub const DEFAULT_GRACE: Duration = Duration::days(1);

/// Packs listed per index object when a collection writes them anew.
const PACKS_PER_INDEX: usize = 1000;

/// The default share of pack bytes that may stay dead in referenced packs (restic's
/// default `--max-unused` is 5 %).
pub const DEFAULT_MAX_UNUSED: f64 = 0.1;

/// The default repack threshold: packs less than half live are rewritten.
pub const DEFAULT_REPACK_BELOW: f64 = 0.5;

/// How one collection runs.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// How long a pack stays condemned before it may be deleted.
    pub grace: Duration,
    /// Packs whose live share of bytes is below this (0 to 1) are repacked; 0 repacks none.
    pub repack_below: f64,
    /// Beyond those, packs are repacked (most dead first) until the bytes left dead in
    /// referenced packs are at most this share (0 to 1) of all pack bytes; 1 repacks no more.
    pub max_unused: f64,
    /// Reports what would be done, writing and deleting nothing.
    pub dry_run: bool,
    /// The time the run takes as now (the service's clock).
    pub now: DateTime<Utc>,
    /// Stops the run between steps (what is done stays done; the next run goes on).
    pub cancel: Option<CancellationToken>,
    /// Checked before every step that writes or deletes: the service's collection lease
    /// must still be held (a collector whose lease lapsed stops, so two never act at once).
    pub guard: Option<Arc<dyn CommitGuard>>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            repack_below: DEFAULT_REPACK_BELOW,
            max_unused: DEFAULT_MAX_UNUSED,
            dry_run: false,
            now: Utc::now(),
            cancel: None,
            guard: None,
        }
    }
}

/// What one collection of one account did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PruneReport {
    /// The account whose prefix was collected.
    pub account: AccountId,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Snapshot objects found.
    pub snapshots: u64,
    /// Packs found, and their bytes.
    pub packs: u64,
    /// Bytes of those packs.
    pub pack_bytes: u64,
    /// Packs found unreferenced and condemned by this run.
    pub condemned_packs: u64,
    /// Their bytes.
    pub condemned_bytes: u64,
    /// Condemned packs that are not due yet (their grace is running).
    pub waiting_packs: u64,
    /// Their bytes.
    pub waiting_bytes: u64,
    /// Packs deleted (or that would be).
    pub deleted_packs: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Packs rewritten smaller (or that would be).
    pub repacked_packs: u64,
    /// Their bytes before.
    pub repacked_bytes: u64,
    /// The bytes of the packs written in their place (a dry run counts the live bytes).
    pub repacked_into_bytes: u64,
    /// Snapshot objects rewritten to name the new packs.
    pub rewritten_snapshots: u64,
    /// Packs below the threshold left as they are: a live blob sits in a sealed group,
    /// which cannot move without the content key.
    pub repack_skipped: u64,
    /// Condemned packs found referenced again (a backup reused them) and kept.
    pub revived_packs: u64,
    /// Why due packs were not deleted this run, if they were not.
    pub deletion_deferred: Option<String>,
    /// Packs a snapshot references that are missing from the destination.
    pub missing_packs: Vec<PackId>,
    /// Index objects replaced by one.
    pub indexes_replaced: u64,
}

/// The snapshots of an account and what each references.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Per snapshot, its references.
    pub(crate) snapshots: BTreeMap<SnapshotId, References>,
}

impl Scan {
    /// Reads every snapshot object's header (authenticated; no content key needed). A
    /// snapshot that does not authenticate stops the scan: what it references is unknown,
    /// so nothing may be collected.
    pub(crate) async fn load(repo: &AccountRepo, known: Option<&Scan>) -> Result<Self> {
        let mut scan = Scan::default();
        for id in repo.list_snapshots().await? {
            if let Some(refs) = known.and_then(|k| k.snapshots.get(&id)) {
                scan.snapshots.insert(id, refs.clone());
                continue;
            }
            let object = match repo.load_snapshot_header(id).await {
                Ok(o) => o,
                // Forgotten between the listing and the read.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            scan.snapshots.insert(id, object);
        }
        Ok(scan)
    }

    /// Per pack, the bitmap of its entries some snapshot references. Version 1 snapshots
    /// name blob ids: every copy of such a blob, in any pack, counts as referenced.
    pub(crate) fn live(&self, locator: &BlobLocator) -> HashMap<PackId, Vec<u8>> {
        let mut live: HashMap<PackId, Vec<u8>> = HashMap::new();
        let mut blob_ids: HashSet<ChunkId> = HashSet::new();
        for refs in self.snapshots.values() {
            match refs {
                References::Packs(packs) => {
                    for r in packs {
                        let bits = live.entry(r.pack).or_default();
                        if bits.len() < r.bits().len() {
                            bits.resize(r.bits().len(), 0);
                        }
                        for (a, b) in bits.iter_mut().zip(r.bits()) {
                            *a |= b;
                        }
                    }
                }
                References::Blobs(ids) => blob_ids.extend(ids.iter().copied()),
            }
        }
        if !blob_ids.is_empty() {
            for (pack, trailer) in locator.packs() {
                for (i, e) in trailer.entries.iter().enumerate() {
                    if blob_ids.contains(&e.id) {
                        crate::repo::set_entry_bit(live.entry(*pack).or_default(), i);
                    }
                }
            }
        }
        live
    }
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// The stored bytes of a pack's entries that `bits` marks (a group's span counted once,
/// whole, when any member is marked).
pub(crate) fn live_bytes(trailer: &PackTrailer, bits: &[u8]) -> u64 {
    stored_bytes(trailer, |i| bit(bits, i))
}

/// The stored bytes of the entries `take` selects, a group's span counted once.
fn stored_bytes(trailer: &PackTrailer, take: impl Fn(usize) -> bool) -> u64 {
    let mut total = 0u64;
    let mut last_group: Option<u64> = None;
    for (i, e) in trailer.entries.iter().enumerate() {
        if !take(i) {
            continue;
        }
        if e.compression == Compression::ZstdGroup {
            if last_group == Some(e.offset) {
                continue;
            }
            last_group = Some(e.offset);
        }
        total += u64::from(e.stored_len);
    }
    total
}

fn cancelled(opts: &PruneOptions) -> Result<()> {
    match &opts.cancel {
        Some(c) if c.is_cancelled() => Err(Error::Cancelled),
        _ => Ok(()),
    }
}

/// Before a step that writes or deletes: not cancelled, and the lease still held.
pub(crate) async fn may_write(opts: &PruneOptions) -> Result<()> {
    cancelled(opts)?;
    match &opts.guard {
        Some(g) => g.check().await,
        None => Ok(()),
    }
}

/// Collects one account's garbage as the module describes. The caller holds the account's
/// collection lease on this repository.
pub async fn prune(repo: &AccountRepo, opts: &PruneOptions) -> Result<PruneReport> {
    let now = opts.now;
    let mut report = PruneReport {
        account: repo.account(),
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    let mut state = match repo.load_collection_state().await {
        Ok(s) => s,
        Err(e @ Error::Integrity { .. }) => {
            // Start again: every unreferenced pack is condemned anew, with a full grace.
            tracing::warn!(account = %repo.account(), error = %e, "collection state unreadable; starting afresh");
            CollectionState::default()
        }
        Err(e) => return Err(e),
    };
    let scan = Scan::load(repo, None).await?;
    let listed = repo.list_packs().await?;
    let locator = repo.load_locator().await?;
    let sizes: HashMap<PackId, u64> = listed.iter().copied().collect();
    let live = scan.live(&locator);
    report.snapshots = scan.snapshots.len() as u64;
    report.packs = listed.len() as u64;
    report.pack_bytes = listed.iter().map(|(_, n)| n).sum();
    report.missing_packs = live
        .keys()
        .filter(|p| !sizes.contains_key(p))
        .copied()
        .collect();
    report.missing_packs.sort();
    cancelled(opts)?;

    // Condemnations of packs that are gone are dropped; packs referenced again revive.
    state.condemned.retain(|p, _| sizes.contains_key(p));
    let before = state.condemned.len();
    state.condemned.retain(|p, _| !live.contains_key(p));
    report.revived_packs = (before - state.condemned.len()) as u64;

    // Repack candidates: referenced packs mostly dead, then (most dead first) as many as
    // it takes to leave no more than `max_unused` of the bytes dead in referenced packs.
    let mut shares: Vec<(PackId, u64, u64, u64)> = Vec::new(); // pack, size, used, all
    for (pack, size) in &listed {
        if let (Some(bits), Some(trailer)) = (live.get(pack), locator.pack(pack)) {
            // Blob bytes only: the trailer shrinks with them, and a pack of tiny tree
            // blobs is not mostly dead because of its trailer.
            let used = live_bytes(trailer, bits);
            let all = stored_bytes(trailer, |_| true);
            if used < all {
                shares.push((*pack, *size, used, all));
            }
        }
    }
    shares.sort_by(|a, b| (a.2 as f64 / a.3 as f64).total_cmp(&(b.2 as f64 / b.3 as f64)));
    let mut dead_left: u64 = shares.iter().map(|s| s.3 - s.2).sum();
    let allowed = (opts.max_unused.clamp(0.0, 1.0) * report.pack_bytes as f64) as u64;
    let mut candidates: Vec<(PackId, u64)> = Vec::new();
    for (pack, size, used, all) in &shares {
        let mostly_dead = (*used as f64) < opts.repack_below * (*all as f64);
        if !mostly_dead && dead_left <= allowed {
            break;
        }
        dead_left -= all - used;
        candidates.push((*pack, *size));
    }
    let can_open = repo.opener().is_some();
    let mut work: Vec<(PackId, Vec<bool>)> = Vec::new();
    for (pack, size) in &candidates {
        let Some(trailer) = locator.pack(pack) else {
            continue;
        };
        let bits = &live[pack];
        let keep: Vec<bool> = (0..trailer.entries.len()).map(|i| bit(bits, i)).collect();
        // Without the content key a live member of a sealed group cannot move: the trailer
        // says so, and the pack is not even fetched.
        let movable = can_open
            || trailer.seal_header.is_empty()
            || !trailer
                .entries
                .iter()
                .enumerate()
                .any(|(i, e)| keep[i] && e.compression == Compression::ZstdGroup);
        if !movable {
            report.repack_skipped += 1;
        } else if opts.dry_run {
            report.repacked_packs += 1;
            report.repacked_bytes += size;
            report.repacked_into_bytes += live_bytes(trailer, bits);
        } else {
            work.push((*pack, keep));
        }
    }
    cancelled(opts)?;
    let done = if work.is_empty() {
        super::repack::Repacked::default()
    } else {
        super::repack::repack(repo, &work, opts).await?
    };
    report.repack_skipped += done.skipped;
    for pack in done.moves.keys() {
        report.repacked_packs += 1;
        report.repacked_bytes += sizes.get(pack).copied().unwrap_or(0);
    }
    report.repacked_into_bytes += done.written.iter().map(|p| p.len).sum::<u64>();
    let repacked = done.moves;
    let written = done.written;
    if !written.is_empty() {
        // Readers find the new packs without reading their trailers.
        repo.put_index(&written).await?;
        for (id, refs) in &scan.snapshots {
            may_write(opts).await?;
            let References::Packs(packs) = refs else {
                continue;
            };
            if !packs.iter().any(|r| repacked.contains_key(&r.pack)) {
                continue;
            }
            // Read again: a snapshot forgotten meanwhile is not brought back.
            let Some(bytes) = repo.get_snapshot_bytes(*id).await? else {
                continue;
            };
            let rewritten = rewrite_pack_references(
                repo.sealer().server_keys(),
                repo.account(),
                *id,
                &bytes,
                |refs| Ok(move_references(refs, &repacked)),
            )?;
            if let Some(rewritten) = rewritten {
                repo.replace_snapshot_bytes(*id, rewritten).await?;
                report.rewritten_snapshots += 1;
            }
        }
    }

    // Condemn what no snapshot references (the repacked packs among them).
    for (pack, size) in &listed {
        let unreferenced = !live.contains_key(pack) || repacked.contains_key(pack);
        if unreferenced && !state.condemned.contains_key(pack) {
            state.condemned.insert(
                *pack,
                Condemned {
                    since: now,
                    due: now + opts.grace,
                },
            );
            report.condemned_packs += 1;
            report.condemned_bytes += size;
        }
    }
    let due: Vec<PackId> = state.due_at(now).copied().collect();
    let size_of = |p: &PackId| sizes.get(p).copied().unwrap_or(0);
    if opts.dry_run {
        report.deleted_packs = due.len() as u64;
        report.deleted_bytes = due.iter().map(size_of).sum();
        let waiting = state.condemned.len() - due.len();
        report.waiting_packs = waiting as u64;
        report.waiting_bytes = state
            .condemned
            .iter()
            .filter(|(_, c)| c.due > now)
            .map(|(p, _)| size_of(p))
            .sum();
        return Ok(report);
    }
    may_write(opts).await?;
    repo.put_collection_state(&state).await?;

    // Delete what is due, unless an operation holds the account: a backup that started
    // before the state above was stored may reuse any pack it listed.
    let mut deleted: HashSet<PackId> = HashSet::new();
    if !due.is_empty() {
        match repo.repository().lease_holder(repo.account()).await? {
            Some(holder) => {
                report.deletion_deferred = Some(format!(
                    "{holder} holds the account; deletion waits for the next run"
                ));
            }
            None => {
                // Listed again after the lease was seen free: any snapshot committed by
                // now counts (objects are immutable but for this collector's rewrites).
                let fresh = Scan::load(repo, None).await?;
                let still = fresh.live(&locator);
                for pack in &due {
                    may_write(opts).await?;
                    if still.contains_key(pack) {
                        state.condemned.remove(pack);
                        report.revived_packs += 1;
                        continue;
                    }
                    repo.delete_pack(pack).await?;
                    state.condemned.remove(pack);
                    deleted.insert(*pack);
                    report.deleted_packs += 1;
                    report.deleted_bytes += size_of(pack);
                }
                repo.put_collection_state(&state).await?;
            }
        }
    }
    report.waiting_packs = state.condemned.len() as u64;
    report.waiting_bytes = state.condemned.keys().map(size_of).sum();

    if !deleted.is_empty() || !repacked.is_empty() {
        report.indexes_replaced = replace_indexes(repo, &locator, &written).await?;
    }
    Ok(report)
}

/// Moves references from repacked packs to the packs written in their place.
fn move_references(refs: Vec<PackReference>, repacked: &Moves) -> Vec<PackReference> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        match repacked.get(&r.pack) {
            None => out.push(r),
            Some(map) => {
                let mut by_pack: BTreeMap<PackId, Vec<usize>> = BTreeMap::new();
                for (new, entry) in r.indices().filter_map(|i| map.get(i).copied().flatten()) {
                    by_pack.entry(new).or_default().push(entry);
                }
                out.extend(
                    by_pack
                        .into_iter()
                        .filter_map(|(pack, entries)| PackReference::new(pack, entries)),
                );
            }
        }
    }
    normalize_references(out)
}

/// Writes one index of every pack now present and deletes the other index objects. An
/// index is only a cache of trailers, so a failure midway costs reads, never data.
async fn replace_indexes(
    repo: &AccountRepo,
    locator: &BlobLocator,
    written: &[IndexedPack],
) -> Result<u64> {
    let present = repo.list_packs().await?;
    let written: HashMap<PackId, &IndexedPack> = written.iter().map(|p| (p.id, p)).collect();
    let mut packs = Vec::with_capacity(present.len());
    for (id, len) in present {
        let trailer = match (written.get(&id), locator.pack(&id)) {
            (Some(p), _) => p.trailer.clone(),
            (None, Some(t)) => t.clone(),
            // Written by a backup since the scan.
            (None, None) => repo.get_trailer(&id, len).await?,
        };
        packs.push(IndexedPack { id, len, trailer });
    }
    let old = repo.list_indexes().await?;
    let mut new = HashSet::new();
    for chunk in packs.chunks(PACKS_PER_INDEX) {
        new.insert(repo.put_index(chunk).await?.0);
    }
    let mut replaced = 0;
    for (id, _) in old {
        if !new.contains(&id) && repo.delete_index(&id).await? {
            replaced += 1;
        }
    }
    Ok(replaced)
}

/// What an account's packs hold after dedup.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StorageUsage {
    /// The account whose prefix was measured.
    pub account: AccountId,
    /// Packs and their bytes.
    pub packs: u64,
    /// Bytes of every pack.
    pub pack_bytes: u64,
    /// Bytes of index objects.
    pub index_bytes: u64,
    /// Stored bytes some snapshot references.
    pub referenced_bytes: u64,
    /// Bytes of packs no snapshot references (collected by the next runs of prune).
    pub unreferenced_bytes: u64,
    /// Per snapshot: what it references and what it alone holds.
    pub snapshots: Vec<SnapshotUsage>,
}

/// One snapshot's share of the account's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SnapshotUsage {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// Stored bytes of every blob it references.
    pub referenced_bytes: u64,
    /// Stored bytes no other snapshot references: what forgetting it (and collecting)
    /// would free.
    pub unique_bytes: u64,
}

/// Measures an account's storage after dedup: bytes its packs take, and per snapshot the
/// bytes it references and those it alone holds. A group member counts its share of the
/// group (by plaintext length).
pub async fn storage_usage(repo: &AccountRepo) -> Result<StorageUsage> {
    let scan = Scan::load(repo, None).await?;
    let listed = repo.list_packs().await?;
    let locator = repo.load_locator().await?;
    let indexes = repo.list_indexes().await?;
    let live = scan.live(&locator);
    let mut usage = StorageUsage {
        account: repo.account(),
        packs: listed.len() as u64,
        pack_bytes: listed.iter().map(|(_, n)| n).sum(),
        index_bytes: indexes.iter().map(|(_, n)| n).sum(),
        ..StorageUsage::default()
    };
    for (pack, size) in &listed {
        match (live.get(pack), locator.pack(pack)) {
            (Some(bits), Some(trailer)) => usage.referenced_bytes += live_bytes(trailer, bits),
            (None, _) => usage.unreferenced_bytes += size,
            _ => {}
        }
    }
    // How many snapshots reference each entry.
    let share = |trailer: &PackTrailer, i: usize| -> u64 {
        let e = &trailer.entries[i];
        if e.compression == Compression::ZstdGroup && e.group_len > 0 {
            u64::from(e.stored_len) * u64::from(e.raw_len) / u64::from(e.group_len)
        } else {
            u64::from(e.stored_len)
        }
    };
    let mut counts: HashMap<PackId, Vec<u16>> = HashMap::new();
    let entries_of = |refs: &References| -> Vec<(PackId, usize)> {
        match refs {
            References::Packs(packs) => packs
                .iter()
                .flat_map(|r| r.indices().map(move |i| (r.pack, i)))
                .collect(),
            References::Blobs(ids) => ids
                .iter()
                .filter_map(|id| locator.locate(id).map(|(p, _)| (*p, id)))
                .filter_map(|(p, id)| {
                    let t = locator.pack(&p)?;
                    let i = t.entries.iter().position(|e| e.id == *id)?;
                    Some((p, i))
                })
                .collect(),
        }
    };
    for refs in scan.snapshots.values() {
        for (pack, i) in entries_of(refs) {
            let Some(trailer) = locator.pack(&pack) else {
                continue;
            };
            let c = counts
                .entry(pack)
                .or_insert_with(|| vec![0; trailer.entries.len()]);
            if let Some(n) = c.get_mut(i) {
                *n = n.saturating_add(1);
            }
        }
    }
    for (id, refs) in &scan.snapshots {
        let mut s = SnapshotUsage {
            snapshot: *id,
            referenced_bytes: 0,
            unique_bytes: 0,
        };
        for (pack, i) in entries_of(refs) {
            let Some(trailer) = locator.pack(&pack) else {
                continue;
            };
            if i >= trailer.entries.len() {
                continue;
            }
            let bytes = share(trailer, i);
            s.referenced_bytes += bytes;
            if counts.get(&pack).and_then(|c| c.get(i)) == Some(&1) {
                s.unique_bytes += bytes;
            }
        }
        usage.snapshots.push(s);
    }
    Ok(usage)
}
