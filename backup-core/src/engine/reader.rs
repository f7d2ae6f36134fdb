//! Reading blobs back: fetches whole packs (each checked against its id), keeps the few most
//! recent in memory, opens and authenticates blobs. Used from blocking threads.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tokio::runtime::Handle;

use crate::error::{Error, Result};
use crate::model::{ChunkId, PackId};
use crate::ports::OpenSession;
use crate::repo::{AccountRepo, BlobCodec, BlobLocator, Tree};

/// Packs kept in memory (restores read packs mostly in the order backups wrote them).
const CACHED_PACKS: usize = 3;

/// Reads and authenticates blobs of one account.
pub(crate) struct BlobReader {
    repo: AccountRepo,
    locator: Arc<BlobLocator>,
    handle: Handle,
    codec: BlobCodec,
    cache: VecDeque<(PackId, Bytes)>,
    sessions: HashMap<PackId, Arc<dyn OpenSession>>,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl BlobReader {
    pub(crate) fn new(
        repo: AccountRepo,
        locator: Arc<BlobLocator>,
        handle: Handle,
    ) -> Result<Self> {
        repo.require_opener()?;
        Ok(Self {
            repo,
            locator,
            handle,
            codec: BlobCodec::new(1)?,
            cache: VecDeque::new(),
            sessions: HashMap::new(),
        })
    }

    fn pack(&mut self, id: &PackId) -> Result<Bytes> {
        if let Some((_, bytes)) = self.cache.iter().find(|(p, _)| p == id) {
            return Ok(bytes.clone());
        }
        let (bytes, _trailer) = self.handle.block_on(self.repo.get_pack(id))?;
        if self.cache.len() == CACHED_PACKS {
            self.cache.pop_front();
        }
        self.cache.push_back((*id, bytes.clone()));
        Ok(bytes)
    }

    fn session(&mut self, pack: &PackId) -> Result<Arc<dyn OpenSession>> {
        if let Some(s) = self.sessions.get(pack) {
            return Ok(s.clone());
        }
        let trailer = self
            .locator
            .pack(pack)
            .ok_or_else(|| Error::integrity(format!("pack {pack}"), "not in the index"))?;
        let session: Arc<dyn OpenSession> = Arc::from(
            self.repo
                .require_opener()?
                .open_session(&trailer.seal_header)?,
        );
        self.sessions.insert(*pack, session.clone());
        Ok(session)
    }

    /// The plaintext of blob `id`, authenticated.
    pub(crate) fn read(&mut self, id: &ChunkId) -> Result<Vec<u8>> {
        let (pack, entry) = *self.locator.locate(id).ok_or_else(|| {
            Error::integrity(
                format!("blob {id}"),
                "referenced but in no pack (missing pack or index)",
            )
        })?;
        let bytes = self.pack(&pack)?;
        let start = usize::try_from(entry.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(entry.stored_len as usize);
        if end > bytes.len() {
            return Err(Error::integrity(
                format!("pack {pack}"),
                "blob lies outside the pack",
            ));
        }
        let sealed = bytes[start..end].to_vec();
        let session = self.session(&pack)?;
        self.codec.open_blob(
            self.repo.sealer().server_keys(),
            session.as_ref(),
            &entry,
            sealed,
        )
    }

    /// Reads and parses a tree blob.
    pub(crate) fn tree(&mut self, id: &ChunkId) -> Result<Tree> {
        let bytes = self.read(id)?;
        Tree::decode(&bytes, id)
    }
}
