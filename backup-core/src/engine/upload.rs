//! The uploading end of a backup: writes finished packs with bounded concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::packer::BufferPool;
use crate::error::{Error, Result};
use crate::repo::{AccountRepo, FinishedPack, IndexedPack};

/// Packs uploaded at once.
const CONCURRENT_UPLOADS: usize = 2;

/// Result of the upload stage.
#[derive(Debug, Default)]
pub(crate) struct Uploaded {
    pub(crate) packs: Vec<IndexedPack>,
    pub(crate) bytes: u64,
}

/// What stops the upload stage before a pack is written.
#[derive(Debug, Clone, Default)]
pub(crate) struct UploadLimits {
    /// `(bytes the account used before, the hard limit)`: no pack is put that would take
    /// the account past the limit.
    pub(crate) quota: Option<(u64, u64)>,
    /// Cancels before the next put.
    pub(crate) cancel: Option<CancellationToken>,
}

/// Uploads every pack received until the channel closes, handing each pack's buffer back to
/// `buffers` when the store is done with it. A pack that would pass the quota, or any pack
/// after cancellation, is not put: the stage fails instead, which stops the pipeline.
pub(crate) async fn upload(
    repo: AccountRepo,
    rx: mpsc::Receiver<FinishedPack>,
    buffers: BufferPool,
    limits: UploadLimits,
) -> Result<Uploaded> {
    let reserved = Arc::new(AtomicU64::new(0));
    let limits = Arc::new(limits);
    let results = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|pack| (pack, rx))
    })
    .map(|pack| {
        let repo = repo.clone();
        let buffers = buffers.clone();
        let reserved = reserved.clone();
        let limits = limits.clone();
        async move {
            if limits.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                return Err(Error::Cancelled);
            }
            let len = pack.bytes.len() as u64;
            let total = reserved.fetch_add(len, Ordering::SeqCst) + len;
            if let Some((used, limit)) = limits.quota
                && used.saturating_add(total) > limit
            {
                return Err(Error::QuotaExceeded {
                    used: used.saturating_add(total),
                    limit,
                });
            }
            let (indexed, buffer) = repo.put_pack_reclaiming(pack).await?;
            if let Some(buffer) = buffer {
                buffers.give(buffer);
            }
            Ok::<_, crate::Error>(indexed)
        }
    })
    .buffer_unordered(CONCURRENT_UPLOADS);
    let mut results = std::pin::pin!(results);
    let mut out = Uploaded::default();
    while let Some(r) = results.next().await {
        let p = r?;
        out.bytes += p.len;
        out.packs.push(p);
    }
    Ok(out)
}
