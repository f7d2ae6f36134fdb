//! Multipart uploads: every part is written at its offset in one temporary file, which is
//! renamed into place on completion (overwriting, like a single put).

use async_trait::async_trait;
use futures::FutureExt;
use object_store::path::Path;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

use super::transfer::{self, Commit, OpenFile};
use super::{STORE, store_error};
use crate::error::message;

/// An upload in progress; parts may complete in any order.
#[derive(Debug)]
pub(crate) struct SftpUpload {
    /// The temporary file, until completion or abort.
    file: Option<OpenFile>,
    /// The final remote path.
    dest: String,
    location: Path,
    /// Where the next part starts.
    offset: u64,
}

impl SftpUpload {
    pub(crate) fn new(file: OpenFile, dest: String, location: Path) -> Self {
        Self {
            file: Some(file),
            dest,
            location,
            offset: 0,
        }
    }

    fn finished(&self) -> object_store::Error {
        object_store::Error::Generic {
            store: STORE,
            source: message(format!(
                "the multipart upload of {} is already completed or aborted",
                self.location
            )),
        }
    }
}

#[async_trait]
impl MultipartUpload for SftpUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let Some(file) = &self.file else {
            let error = self.finished();
            return async move { Err(error) }.boxed();
        };
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let (conn, handle, path) = (file.shared_conn(), file.handle.clone(), file.path.clone());
        let location = self.location.clone();
        async move {
            transfer::write_at(conn, handle, path, offset, data)
                .await
                .map_err(|e| store_error(&location, e))
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let file = self.file.take().ok_or_else(|| self.finished())?;
        let conn = file.shared_conn();
        let tmp = file.path.clone();
        let result = match file.sync_and_close().await {
            Ok(()) => transfer::rename(&conn, &tmp, &self.dest, Commit::Overwrite)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            transfer::remove_quietly(&conn, &tmp).await;
            return Err(store_error(&self.location, e));
        }
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let file = self.file.take().ok_or_else(|| self.finished())?;
        let conn = file.shared_conn();
        let tmp = file.path.clone();
        let _ = file.close().await;
        transfer::remove_quietly(&conn, &tmp).await;
        Ok(())
    }
}

impl Drop for SftpUpload {
    fn drop(&mut self) {
        // Neither completed nor aborted: remove the temporary file in the background.
        if let Some(file) = self.file.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let conn = file.shared_conn();
                let tmp = file.path.clone();
                let _ = file.close().await;
                transfer::remove_quietly(&conn, &tmp).await;
            });
        }
    }
}
