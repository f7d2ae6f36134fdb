//! The writing end of a backup, in two halves:
//! - [`BlobSink`] runs on the walking thread: it hashes small blobs (keyed chunk id), drops
//!   those the account already has, gathers small new data blobs into groups and hands
//!   blobs and groups to the pack workers. Large data blobs go to the workers unhashed;
//! - [`PackWorkers`] are threads, one per core, that hash large blobs, compress, seal and
//!   pack blobs and pass full packs to the uploader.
//!
//! Hashing large chunks on the workers keeps every core busy on incompressible files (media,
//! archives), where reading, chunking and hashing on the walking thread alone was the
//! bottleneck. Dedup is decided under one lock ([`Dedup`], shared by the sink and the
//! workers), so no blob is packed twice. Bounded queues keep memory flat: at most
//! [`JOBS_PER_WORKER`] jobs and [`QUEUED_BYTES_PER_WORKER`] bytes wait per worker, and each
//! worker holds at most one open pack per blob kind.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::model::{ChunkId, IdHasherBuilder, PackId};
use crate::ports::ContentSealer;
use crate::repo::{
    BlobCodec, BlobKind, BlobLocator, Compression, FinishedPack, GROUP_MEMBER_MAX, GROUP_TARGET,
    PackReference, PackWriter, set_entry_bit,
};

/// Counts kept while packing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PackStats {
    pub(crate) bytes_new: u64,
    pub(crate) bytes_deduplicated: u64,
    pub(crate) chunks_new: u64,
    pub(crate) chunks_deduplicated: u64,
}

/// New blobs on their way to a worker.
enum Job {
    /// One blob.
    Blob {
        id: ChunkId,
        kind: BlobKind,
        data: Vec<u8>,
    },
    /// Small data blobs to compress together: their plaintexts concatenated in `data`.
    Group(Group),
    /// A large data blob for the worker to hash and deduplicate first; its id goes back to
    /// the walker through `reply`, with the chunk's position in its file.
    Unhashed {
        data: Vec<u8>,
        reply: (Sender<Placed>, usize),
    },
}

impl Job {
    /// Bytes of plaintext the job holds.
    fn len(&self) -> usize {
        match self {
            Job::Blob { data, .. } | Job::Unhashed { data, .. } => data.len(),
            Job::Group(group) => group.data.len(),
        }
    }
}

/// Jobs queued per worker: enough that the walker's bursts (a run of small files, a file's
/// last chunks) and the workers' (a slow group) do not leave cores waiting on each other.
const JOBS_PER_WORKER: usize = 8;
/// Plaintext bytes queued per worker at most, whatever the chunk sizes.
const QUEUED_BYTES_PER_WORKER: usize = 4 << 20;

/// The bytes queued for the workers, bounded so that memory stays flat even with the
/// largest chunks (the queue's length alone would allow its length times the largest chunk).
struct Budget {
    /// Bytes queued, and whether the workers have stopped.
    state: Mutex<(usize, bool)>,
    changed: Condvar,
    limit: usize,
}

impl Budget {
    /// Waits until `len` more bytes fit (any job fits an empty queue); fails once the
    /// workers have stopped.
    fn acquire(&self, len: usize) -> Result<()> {
        let poisoned = |_| workers_closed();
        let mut state = self.state.lock().map_err(poisoned)?;
        loop {
            let (queued, closed) = *state;
            if closed {
                return Err(workers_closed());
            }
            if queued == 0 || queued + len <= self.limit {
                state.0 += len;
                return Ok(());
            }
            state = self.changed.wait(state).map_err(poisoned)?;
        }
    }

    /// A worker took a job of `len` bytes.
    fn release(&self, len: usize) {
        if let Ok(mut state) = self.state.lock() {
            state.0 = state.0.saturating_sub(len);
        }
        self.changed.notify_one();
    }

    /// The workers stop: a walker waiting for room gives up.
    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.1 = true;
        }
        self.changed.notify_all();
    }
}

/// Closes the budget when a worker ends, by error or by panic, so the walker never waits
/// for room that will not come.
struct CloseOnDrop(Arc<Budget>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A chunk id with the chunk's position in its input.
type Placed = (usize, ChunkId);

/// Small data blobs gathered for one group.
#[derive(Default)]
struct Group {
    members: Vec<(ChunkId, u32)>,
    data: Vec<u8>,
}

pub(crate) fn workers_closed() -> Error {
    Error::Internal {
        reason: "pack workers stopped".into(),
    }
}

/// Where a blob the account already has lives: the pack's number in
/// [`KnownBlobs::packs`] and the blob's entry in that pack's trailer, or [`NEW`].
type Place = (u32, u32);

/// The place of a blob this backup adds (every new blob is in a new pack).
const NEW: Place = (u32::MAX, u32::MAX);

/// The blobs an account already has, for dedup and for the snapshot's references.
#[derive(Debug, Default)]
pub(crate) struct KnownBlobs {
    places: HashMap<ChunkId, Place, IdHasherBuilder>,
    packs: Vec<PackId>,
}

impl KnownBlobs {
    /// Every blob of `locator`'s packs (a blob in several packs is taken from the first).
    pub(crate) fn from_locator(locator: &BlobLocator) -> Result<Self> {
        let too_many = || Error::Internal {
            reason: "more packs or blobs than a backup can index".into(),
        };
        let mut known = Self::default();
        for (pack, trailer) in locator.packs() {
            // Blobs in a pack found damaged are stored again rather than reused.
            if locator.is_damaged(pack) {
                continue;
            }
            let n = u32::try_from(known.packs.len()).map_err(|_| too_many())?;
            known.packs.push(*pack);
            for (i, e) in trailer.entries.iter().enumerate() {
                let i = u32::try_from(i).map_err(|_| too_many())?;
                known.places.entry(e.id).or_insert((n, i));
            }
        }
        Ok(known)
    }
}

/// Dedup state, shared by the sink and the workers: the blobs the account has or this backup
/// adds, which existing ones the snapshot uses (one bit per blob of each pack it touches),
/// and the counts.
#[derive(Debug, Default)]
struct Dedup {
    known: KnownBlobs,
    /// Per existing pack, the bitmap of its trailer entries in use.
    used: Vec<Vec<u8>>,
    stats: PackStats,
}

impl Dedup {
    /// Records `id` (`len` bytes of plaintext): true when it is new and must be packed,
    /// false when the account has it (its use is recorded).
    fn admit(&mut self, id: ChunkId, len: u64) -> bool {
        if self.known.places.contains_key(&id) {
            self.reuse(&[id], len);
            return false;
        }
        self.known.places.insert(id, NEW);
        self.stats.bytes_new += len;
        self.stats.chunks_new += 1;
        true
    }

    /// Records that the snapshot references blobs already stored, `len` bytes in all.
    fn reuse(&mut self, ids: &[ChunkId], len: u64) {
        for id in ids {
            if let Some(&(pack, entry)) = self.known.places.get(id)
                && (pack, entry) != NEW
            {
                set_entry_bit(&mut self.used[pack as usize], entry as usize);
            }
        }
        self.stats.bytes_deduplicated += len;
        self.stats.chunks_deduplicated += ids.len() as u64;
    }
}

fn lock(dedup: &Mutex<Dedup>) -> Result<MutexGuard<'_, Dedup>> {
    dedup.lock().map_err(|_| Error::Internal {
        reason: "a pack worker panicked while deduplicating".into(),
    })
}

/// The chunk ids of one input that the workers hash, to be collected with
/// [`Pending::collect`] before the input's chunk list is used.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    channel: Option<(Sender<Placed>, Receiver<Placed>)>,
    count: usize,
}

impl Pending {
    /// Where the id of the chunk at `index` is to be sent.
    fn reply(&mut self, index: usize) -> (Sender<Placed>, usize) {
        self.count += 1;
        let (tx, _) = self.channel.get_or_insert_with(channel);
        (tx.clone(), index)
    }

    /// Waits for the workers' ids and puts each at its place in `chunks`.
    pub(crate) fn collect(self, chunks: &mut [ChunkId]) -> Result<()> {
        let Some((tx, rx)) = self.channel else {
            return Ok(());
        };
        // Only the jobs hold senders now: a worker that stops drops its job's sender, and
        // `recv` fails instead of waiting forever.
        drop(tx);
        for _ in 0..self.count {
            let (index, id) = rx.recv().map_err(|_| workers_closed())?;
            let slot = chunks.get_mut(index).ok_or_else(|| Error::Internal {
                reason: "chunk position out of range".into(),
            })?;
            *slot = id;
        }
        Ok(())
    }
}

/// Walker side: hashes, deduplicates and dispatches blobs (large data blobs unhashed).
pub(crate) struct BlobSink {
    sealer: Arc<dyn ContentSealer>,
    dedup: Arc<Mutex<Dedup>>,
    /// Small data blobs waiting to fill a group.
    group: Group,
    jobs: Option<SyncSender<Job>>,
    budget: Arc<Budget>,
}

impl std::fmt::Debug for BlobSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSink")
            .field("group", &self.group.members.len())
            .finish()
    }
}

impl BlobSink {
    /// When the account's repository holds every blob of `ids`, records that the snapshot
    /// references them (`len` bytes in all) and returns true.
    pub(crate) fn reuse_if_stored(&self, ids: &[ChunkId], len: u64) -> Result<bool> {
        let mut dedup = lock(&self.dedup)?;
        if !ids.iter().all(|id| dedup.known.places.contains_key(id)) {
            return Ok(false);
        }
        dedup.reuse(ids, len);
        Ok(true)
    }

    /// Adds the data chunk at `index` of an input: small ones are hashed here and their id
    /// returned; large ones go to a worker, which hashes them and sends the id to `pending`
    /// (`None` here).
    pub(crate) fn add_data(
        &mut self,
        plaintext: &[u8],
        index: usize,
        pending: &mut Pending,
    ) -> Result<Option<ChunkId>> {
        if plaintext.len() < GROUP_MEMBER_MAX {
            return self.add(BlobKind::Data, plaintext).map(Some);
        }
        self.send(Job::Unhashed {
            data: plaintext.to_vec(),
            reply: pending.reply(index),
        })?;
        Ok(None)
    }

    /// Adds a blob (stored once per account) and returns its id.
    pub(crate) fn add(&mut self, kind: BlobKind, plaintext: &[u8]) -> Result<ChunkId> {
        let id = self.sealer.server_keys().chunk_id(plaintext);
        if !lock(&self.dedup)?.admit(id, plaintext.len() as u64) {
            return Ok(id);
        }
        if kind == BlobKind::Data && plaintext.len() < GROUP_MEMBER_MAX {
            if self.group.data.len() + plaintext.len() > GROUP_TARGET {
                self.send_group()?;
            }
            if self.group.data.capacity() == 0 {
                self.group.data.reserve_exact(GROUP_TARGET);
            }
            self.group.data.extend_from_slice(plaintext);
            // Below GROUP_MEMBER_MAX, so it fits.
            self.group.members.push((id, plaintext.len() as u32));
            return Ok(id);
        }
        self.send(Job::Blob {
            id,
            kind,
            data: plaintext.to_vec(),
        })?;
        Ok(id)
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(workers_closed)?;
        self.budget.acquire(job.len())?;
        jobs.send(job).map_err(|_| workers_closed())
    }

    fn send_group(&mut self) -> Result<()> {
        if self.group.members.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(&mut self.group);
        self.send(Job::Group(group))
    }

    /// Sends the last group and closes the job channel (workers flush and stop); the
    /// outcome is read once the workers have stopped ([`Finished::outcome`]).
    pub(crate) fn finish(mut self) -> Result<Finished> {
        let sent = self.send_group();
        self.jobs = None;
        sent?;
        Ok(Finished(self.dedup))
    }
}

/// A finished sink's dedup state.
pub(crate) struct Finished(Arc<Mutex<Dedup>>);

impl Finished {
    /// The existing packs' entries the snapshot uses (blobs it added are in the new packs,
    /// all of them used) and the counts. Read after the workers have stopped.
    pub(crate) fn outcome(self) -> Result<(Vec<PackReference>, PackStats)> {
        let dedup = std::mem::take(&mut *lock(&self.0)?);
        let refs = dedup
            .known
            .packs
            .iter()
            .zip(dedup.used)
            .filter_map(|(pack, bits)| PackReference::from_bits(*pack, bits))
            .collect();
        Ok((refs, dedup.stats))
    }
}

/// Worker side: the pool of compress-seal-pack threads.
pub(crate) struct PackWorkers {
    handles: Vec<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for PackWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackWorkers")
            .field("threads", &self.handles.len())
            .finish()
    }
}

/// Finished packs' buffers, handed back by the upload for the next packs. An 8 MiB buffer
/// allocated anew costs a page fault per 4 KiB page on first write (and on a virtual machine
/// whose host takes back freed memory, a host fault too): in `perf`, first writes to pack
/// buffers were about half of a backup's page faults. The total moves too much between runs
/// to show the difference, and the time is the same; what shows is the peak RSS, with fewer
/// buffers alive at once (hand runs: 84-99 MiB against 101-119 MiB). Reusing large chunks'
/// buffers as well kept more memory (106-127 MiB) and was no faster.
#[derive(Debug, Clone)]
pub(crate) struct BufferPool {
    kept: Arc<Mutex<Vec<Vec<u8>>>>,
    limit: usize,
}

impl BufferPool {
    /// A pool keeping at most `limit` buffers (about as many as are in use at once).
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            kept: Arc::default(),
            limit,
        }
    }

    /// An empty buffer, with the room of an earlier one when there is one.
    fn take(&self) -> Vec<u8> {
        self.kept
            .lock()
            .map(|mut kept| kept.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Keeps `buffer` for later (or frees it, when enough are kept).
    pub(crate) fn give(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        if let Ok(mut kept) = self.kept.lock()
            && kept.len() < self.limit
        {
            kept.push(buffer);
        }
    }
}

/// Settings of the pack workers.
pub(crate) struct PackerConfig {
    pub(crate) sealer: Arc<dyn ContentSealer>,
    pub(crate) known: KnownBlobs,
    pub(crate) pack_size: usize,
    pub(crate) level: i32,
    pub(crate) group_level: i32,
    pub(crate) threads: usize,
    /// Where finished packs' buffers come back to.
    pub(crate) buffers: BufferPool,
}

/// Starts `threads` workers and returns the sink that feeds them.
pub(crate) fn start(
    config: PackerConfig,
    packs: mpsc::Sender<FinishedPack>,
) -> Result<(BlobSink, PackWorkers)> {
    let threads = config.threads.max(1);
    let (tx, rx) = sync_channel::<Job>(threads * JOBS_PER_WORKER);
    let budget = Arc::new(Budget {
        state: Mutex::new((0, false)),
        changed: Condvar::new(),
        limit: threads * QUEUED_BYTES_PER_WORKER,
    });
    let rx = Arc::new(Mutex::new(rx));
    let dedup = Arc::new(Mutex::new(Dedup {
        used: vec![Vec::new(); config.known.packs.len()],
        known: config.known,
        stats: PackStats::default(),
    }));
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let mut worker = Worker {
            sealer: config.sealer.clone(),
            codec: BlobCodec::with_group_level(config.level, config.group_level)?,
            dedup: dedup.clone(),
            data: None,
            tree: None,
            pack_size: config.pack_size,
            out: packs.clone(),
            buffers: config.buffers.clone(),
        };
        let rx = rx.clone();
        let budget = budget.clone();
        let handle = std::thread::Builder::new()
            .name(format!("pack-worker-{i}"))
            .spawn(move || worker.run(&rx, &budget))
            .map_err(|e| Error::Internal {
                reason: format!("cannot start a pack worker: {e}"),
            })?;
        handles.push(handle);
    }
    let sink = BlobSink {
        sealer: config.sealer,
        dedup,
        group: Group::default(),
        jobs: Some(tx),
        budget,
    };
    Ok((sink, PackWorkers { handles }))
}

impl PackWorkers {
    /// Waits for every worker (after the sink was finished or dropped); the first error wins.
    pub(crate) fn join(self) -> Result<()> {
        let mut first = Ok(());
        for h in self.handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(Error::Internal {
                    reason: "a pack worker panicked".into(),
                })
            });
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

struct Worker {
    sealer: Arc<dyn ContentSealer>,
    codec: BlobCodec,
    dedup: Arc<Mutex<Dedup>>,
    data: Option<PackWriter>,
    tree: Option<PackWriter>,
    pack_size: usize,
    out: mpsc::Sender<FinishedPack>,
    buffers: BufferPool,
}

impl Worker {
    fn run(&mut self, jobs: &Mutex<Receiver<Job>>, budget: &Arc<Budget>) -> Result<()> {
        let _close = CloseOnDrop(budget.clone());
        loop {
            let job = {
                let rx = jobs.lock().map_err(|_| Error::Internal {
                    reason: "pack job queue poisoned".into(),
                })?;
                rx.recv()
            };
            match job {
                Ok(job) => {
                    budget.release(job.len());
                    self.add(job)?;
                }
                Err(_) => break,
            }
        }
        self.flush(BlobKind::Data)?;
        self.flush(BlobKind::Tree)
    }

    fn add(&mut self, job: Job) -> Result<()> {
        match job {
            Job::Blob { id, kind, data } => self
                .pack(kind, data.len(), |w, codec| {
                    w.add_plaintext(codec, id, &data)
                })
                .map(drop),
            Job::Group(group) if group.members.len() > 1 => {
                let (members, data) = (&group.members, &group.data);
                let grouped = self.pack(BlobKind::Data, data.len(), |w, codec| {
                    w.add_group_plaintext(codec, members, data)
                })?;
                if grouped {
                    return Ok(());
                }
                // Incompressible together: each member is stored as it is.
                let mut at = 0;
                for &(id, len) in members {
                    let member = &data[at..at + len as usize];
                    at += len as usize;
                    self.pack(BlobKind::Data, member.len(), |w, _| {
                        w.add(id, Compression::None, member.len(), member)
                    })?;
                }
                Ok(())
            }
            Job::Unhashed {
                data,
                reply: (reply, index),
            } => {
                let id = self.sealer.server_keys().chunk_id(&data);
                let new = lock(&self.dedup)?.admit(id, data.len() as u64);
                // The walker waits for this id before it goes on; when it has stopped
                // (an error elsewhere), nobody needs the id any more.
                let _ = reply.send((index, id));
                if !new {
                    return Ok(());
                }
                self.add(Job::Blob {
                    id,
                    kind: BlobKind::Data,
                    data,
                })
            }
            // A group of one is a blob like any other.
            Job::Group(group) => match group.members.first() {
                Some(&(id, _)) => self.add(Job::Blob {
                    id,
                    kind: BlobKind::Data,
                    data: group.data,
                }),
                None => Ok(()),
            },
        }
    }

    /// Where the open pack of `kind` is kept.
    fn slot(&mut self, kind: BlobKind) -> &mut Option<PackWriter> {
        match kind {
            BlobKind::Data => &mut self.data,
            BlobKind::Tree => &mut self.tree,
        }
    }

    /// Runs `add` on the open pack of `kind` for a blob of about `len` bytes: a pack without
    /// room left for it is sent first (so a pack's bytes are never moved to a larger buffer)
    /// and a new one started; a pack that is full afterwards is sent.
    fn pack<T>(
        &mut self,
        kind: BlobKind,
        len: usize,
        add: impl FnOnce(&mut PackWriter, &mut BlobCodec) -> Result<T>,
    ) -> Result<T> {
        if self
            .slot(kind)
            .as_ref()
            .is_some_and(|w| !w.is_empty() && !w.fits(len))
        {
            self.flush(kind)?;
        }
        if self.slot(kind).is_none() {
            let capacity = self.pack_size + self.pack_size / 8;
            let writer =
                PackWriter::with_buffer(kind, self.sealer.begin()?, self.buffers.take(), capacity);
            *self.slot(kind) = Some(writer);
        }
        // The writer and the codec are borrowed together, field by field.
        let writer = match kind {
            BlobKind::Data => self.data.as_mut(),
            BlobKind::Tree => self.tree.as_mut(),
        };
        let writer = writer.ok_or_else(|| Error::Internal {
            reason: "pack writer missing".into(),
        })?;
        let added = add(writer, &mut self.codec)?;
        self.flush_if_full(kind)?;
        Ok(added)
    }

    fn flush_if_full(&mut self, kind: BlobKind) -> Result<()> {
        let len = self.slot(kind).as_ref().map_or(0, PackWriter::len);
        if len >= self.pack_size {
            self.flush(kind)?;
        }
        Ok(())
    }

    fn flush(&mut self, kind: BlobKind) -> Result<()> {
        if let Some(writer) = self.slot(kind).take()
            && !writer.is_empty()
        {
            let pack = writer.finish(self.sealer.server_keys())?;
            self.out.blocking_send(pack).map_err(|_| Error::Internal {
                reason: "uploader stopped".into(),
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            state: Mutex::new((0, false)),
            changed: Condvar::new(),
            limit,
        })
    }

    #[test]
    fn a_buffer_pool_hands_back_empty_buffers_with_their_room_and_keeps_at_most_its_limit() {
        let pool = BufferPool::new(2);
        assert_eq!(pool.take().capacity(), 0);
        for _ in 0..3 {
            let mut b = Vec::with_capacity(1000);
            b.extend_from_slice(b"pack");
            pool.give(b);
        }
        assert_eq!(pool.kept.lock().unwrap().len(), 2);
        let b = pool.take();
        assert!(b.is_empty());
        assert!(b.capacity() >= 1000);
        assert!(pool.take().capacity() >= 1000);
        // Both kept buffers are out: a fresh, empty one.
        assert_eq!(pool.take().capacity(), 0);
    }

    #[test]
    fn budget_bounds_queued_bytes_but_admits_any_job_into_an_empty_queue() {
        let b = budget(100);
        b.acquire(250).unwrap();
        b.release(250);
        b.acquire(60).unwrap();
        b.acquire(40).unwrap();
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.acquire(10))
        };
        // The waiter gets room only once a worker takes a job.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished());
        b.release(60);
        waiter.join().unwrap().unwrap();
        assert_eq!(b.state.lock().unwrap().0, 50);
    }

    #[test]
    fn a_closed_budget_fails_waiting_and_later_senders() {
        let b = budget(10);
        b.acquire(10).unwrap();
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.acquire(5))
        };
        drop(CloseOnDrop(b.clone()));
        assert!(waiter.join().unwrap().is_err());
        assert!(b.acquire(1).is_err());
    }
}
