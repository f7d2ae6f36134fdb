//! The uploading end of a backup: writes finished packs with bounded concurrency.

use futures::StreamExt;
use tokio::sync::mpsc;

use super::packer::BufferPool;
use crate::error::Result;
use crate::repo::{AccountRepo, FinishedPack, IndexedPack};

/// Packs uploaded at once.
const CONCURRENT_UPLOADS: usize = 2;

/// Result of the upload stage.
#[derive(Debug, Default)]
pub(crate) struct Uploaded {
    pub(crate) packs: Vec<IndexedPack>,
    pub(crate) bytes: u64,
}

/// Uploads every pack received until the channel closes, handing each pack's buffer back to
/// `buffers` when the store is done with it.
pub(crate) async fn upload(
    repo: AccountRepo,
    rx: mpsc::Receiver<FinishedPack>,
    buffers: BufferPool,
) -> Result<Uploaded> {
    let results = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|pack| (pack, rx))
    })
    .map(|pack| {
        let repo = repo.clone();
        let buffers = buffers.clone();
        async move {
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
