//! The uploading end of a backup: writes finished packs with bounded concurrency.

use futures::StreamExt;
use tokio::sync::mpsc;

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

/// Uploads every pack received until the channel closes.
pub(crate) async fn upload(
    repo: AccountRepo,
    rx: mpsc::Receiver<FinishedPack>,
) -> Result<Uploaded> {
    let results = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|pack| (pack, rx))
    })
    .map(|pack| {
        let repo = repo.clone();
        async move { repo.put_pack(pack).await }
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
