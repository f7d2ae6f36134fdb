//! The writing end of a backup: deduplicates blobs against the account's known chunks,
//! compresses and seals new ones into packs, and hands full packs to the uploader.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::model::ChunkId;
use crate::ports::ContentSealer;
use crate::repo::{BlobCodec, BlobKind, FinishedPack, PackWriter};

/// Counts kept while packing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PackStats {
    pub(crate) bytes_new: u64,
    pub(crate) bytes_deduplicated: u64,
    pub(crate) chunks_new: u64,
    pub(crate) chunks_deduplicated: u64,
}

/// Deduplicates, encodes and packs blobs. Runs on a blocking thread.
pub(crate) struct Packer {
    sealer: Arc<dyn ContentSealer>,
    known: HashSet<ChunkId>,
    referenced: HashSet<ChunkId>,
    codec: BlobCodec,
    data: Option<PackWriter>,
    tree: Option<PackWriter>,
    pack_size: usize,
    out: mpsc::Sender<FinishedPack>,
    pub(crate) stats: PackStats,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer")
            .field("known", &self.known.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Packer {
    pub(crate) fn new(
        sealer: Arc<dyn ContentSealer>,
        known: HashSet<ChunkId>,
        pack_size: usize,
        level: i32,
        out: mpsc::Sender<FinishedPack>,
    ) -> Result<Self> {
        Ok(Self {
            sealer,
            known,
            referenced: HashSet::new(),
            codec: BlobCodec::new(level)?,
            data: None,
            tree: None,
            pack_size,
            out,
            stats: PackStats::default(),
        })
    }

    /// Adds a blob (stored once per account) and returns its id.
    pub(crate) fn add(&mut self, kind: BlobKind, plaintext: &[u8]) -> Result<ChunkId> {
        let id = self.sealer.server_keys().chunk_id(plaintext);
        self.referenced.insert(id);
        if self.known.contains(&id) {
            self.stats.bytes_deduplicated += plaintext.len() as u64;
            self.stats.chunks_deduplicated += 1;
            return Ok(id);
        }
        let (compression, encoded) = self.codec.encode(plaintext);
        let slot = match kind {
            BlobKind::Data => &mut self.data,
            BlobKind::Tree => &mut self.tree,
        };
        if slot.is_none() {
            let capacity = self.pack_size + self.pack_size / 8;
            *slot = Some(PackWriter::new(kind, self.sealer.begin()?, capacity));
        }
        let writer = slot.as_mut().ok_or_else(|| Error::Internal {
            reason: "pack writer missing".into(),
        })?;
        writer.add(id, compression, plaintext.len(), encoded)?;
        self.known.insert(id);
        self.stats.bytes_new += plaintext.len() as u64;
        self.stats.chunks_new += 1;
        if writer.len() >= self.pack_size {
            self.flush(kind)?;
        }
        Ok(id)
    }

    fn flush(&mut self, kind: BlobKind) -> Result<()> {
        let slot = match kind {
            BlobKind::Data => &mut self.data,
            BlobKind::Tree => &mut self.tree,
        };
        if let Some(writer) = slot.take()
            && !writer.is_empty()
        {
            let pack = writer.finish(self.sealer.server_keys())?;
            self.out.blocking_send(pack).map_err(|_| Error::Internal {
                reason: "uploader stopped".into(),
            })?;
        }
        Ok(())
    }

    /// Flushes both open packs and returns every blob id referenced.
    pub(crate) fn finish(mut self) -> Result<(Vec<ChunkId>, PackStats)> {
        self.flush(BlobKind::Data)?;
        self.flush(BlobKind::Tree)?;
        let mut refs: Vec<ChunkId> = self.referenced.into_iter().collect();
        refs.sort();
        Ok((refs, self.stats))
    }
}
