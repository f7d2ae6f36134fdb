//! Reading blobs back: fetches whole packs (header and trailer checked), keeps the few most
//! recent in memory (and the last opened groups of small blobs), opens and authenticates
//! blobs. Used from blocking threads.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::model::{ChunkId, IdHasherBuilder, PackId};
use crate::ports::OpenSession;
use crate::repo::{
    AccountRepo, BlobCodec, BlobLocator, Compression, TrailerEntry, Tree, TreeVersion,
};

/// Opened groups kept per reader: callers read a pack's blobs in trailer order, so each
/// group is opened once.
const GROUPS: usize = 2;

/// Reads and authenticates blobs of one account.
pub(crate) struct BlobReader {
    repo: AccountRepo,
    locator: Arc<BlobLocator>,
    handle: Handle,
    codec: BlobCodec,
    cache: VecDeque<CachedPack>,
    capacity: usize,
    /// Opened groups: pack, group offset and plaintext.
    groups: VecDeque<(PackId, u64, Vec<u8>)>,
}

/// A fetched pack, checked against its id, with its own trailer's entries and session.
struct CachedPack {
    id: PackId,
    bytes: Bytes,
    entries: HashMap<ChunkId, TrailerEntry, IdHasherBuilder>,
    session: Arc<dyn OpenSession>,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl BlobReader {
    /// A reader keeping up to `capacity` packs in memory.
    pub(crate) fn new(
        repo: AccountRepo,
        locator: Arc<BlobLocator>,
        handle: Handle,
        capacity: usize,
    ) -> Result<Self> {
        repo.require_opener()?;
        Ok(Self {
            repo,
            locator,
            handle,
            codec: BlobCodec::new(1)?,
            cache: VecDeque::new(),
            capacity: capacity.max(1),
            groups: VecDeque::new(),
        })
    }

    /// Another reader of the same account and locator, with an empty cache of the same
    /// capacity (for a second thread).
    pub(crate) fn fork(&self) -> Result<Self> {
        Self::new(
            self.repo.clone(),
            self.locator.clone(),
            self.handle.clone(),
            self.capacity,
        )
    }

    /// The pack, fetched once while it stays in the small cache. Its header and MAC-checked
    /// trailer are checked, blobs are located through the pack's own trailer (the index only
    /// says which pack to fetch), and each blob is authenticated when opened.
    fn pack(&mut self, id: &PackId) -> Result<usize> {
        if let Some(i) = self.cache.iter().position(|p| p.id == *id) {
            return Ok(i);
        }
        let (bytes, trailer) = self.handle.block_on(self.repo.get_pack_for_reading(id))?;
        let session: Arc<dyn OpenSession> = Arc::from(
            self.repo
                .require_opener()?
                .open_session(&trailer.seal_header)?,
        );
        let entries = trailer.entries.iter().map(|e| (e.id, *e)).collect();
        if self.cache.len() >= self.capacity {
            self.cache.pop_front();
        }
        self.cache.push_back(CachedPack {
            id: *id,
            bytes,
            entries,
            session,
        });
        Ok(self.cache.len() - 1)
    }

    /// The pack said to hold blob `id`, the blob's plaintext length and its place in the
    /// pack (reading a pack's blobs in that order opens each group once).
    pub(crate) fn locate(&self, id: &ChunkId) -> Result<(PackId, u32, (u64, u32))> {
        self.locator
            .locate(id)
            .map(|(pack, entry)| (*pack, entry.raw_len, (entry.offset, entry.group_start)))
            .ok_or_else(|| {
                Error::integrity(
                    format!("blob {id}"),
                    "referenced but in no pack (missing pack or index)",
                )
            })
    }

    /// The plaintext of blob `id`, authenticated.
    pub(crate) fn read(&mut self, id: &ChunkId) -> Result<Vec<u8>> {
        let pack = *self
            .locator
            .locate(id)
            .ok_or_else(|| {
                Error::integrity(
                    format!("blob {id}"),
                    "referenced but in no pack (missing pack or index)",
                )
            })?
            .0;
        let slot = self.pack(&pack)?;
        let cached = &self.cache[slot];
        let entry = *cached.entries.get(id).ok_or_else(|| {
            Error::integrity(format!("pack {pack}"), format!("does not hold blob {id}"))
        })?;
        let keys = self.repo.sealer().server_keys();
        if entry.compression == Compression::ZstdGroup
            && let Some((_, _, group)) = self
                .groups
                .iter()
                .find(|(p, at, _)| *p == pack && *at == entry.offset)
        {
            return BlobCodec::member(keys, &entry, group);
        }
        // Offsets were checked against the pack body when its trailer was parsed.
        let start = entry.offset as usize;
        let sealed = cached.bytes[start..start + entry.stored_len as usize].to_vec();
        let session = cached.session.clone();
        if entry.compression != Compression::ZstdGroup {
            return self.codec.open_blob(keys, session.as_ref(), &entry, sealed);
        }
        let group = self.codec.open_group(session.as_ref(), &entry, sealed)?;
        let plain = BlobCodec::member(keys, &entry, &group);
        if self.groups.len() >= GROUPS {
            self.groups.pop_front();
        }
        self.groups.push_back((pack, entry.offset, group));
        plain
    }

    /// Reads and parses a tree blob of the given encoding.
    pub(crate) fn tree(&mut self, id: &ChunkId, version: TreeVersion) -> Result<Tree> {
        let bytes = self.read(id)?;
        Tree::decode(&bytes, id, version)
    }
}
