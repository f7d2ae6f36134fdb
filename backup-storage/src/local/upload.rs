//! Multipart uploads to the local store: the parts are written at their offsets in one
//! private staging file, flushed and renamed into place on completion.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};

use super::writes::{create_staging, etag, sync_dir, sync_new_dirs};
use super::{STORE, blocking, io_error, lock};
use crate::error::message;

/// A multipart upload in progress; removed if dropped before completion.
#[derive(Debug)]
pub(super) struct LocalUpload {
    state: Arc<UploadState>,
    /// Where the next part starts.
    offset: u64,
}

#[derive(Debug)]
struct UploadState {
    staged: PathBuf,
    dest: PathBuf,
    /// `None` once completed or aborted.
    file: Mutex<Option<File>>,
}

impl LocalUpload {
    /// Starts an upload to `dest` (blocking).
    pub(super) fn start(dest: PathBuf) -> object_store::Result<Self> {
        let (file, staged, created) = create_staging(&dest)?;
        if let Err(e) = sync_new_dirs(&created) {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
        Ok(Self {
            state: Arc::new(UploadState {
                staged,
                dest,
                file: Mutex::new(Some(file)),
            }),
            offset: 0,
        })
    }
}

fn finished() -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message("the upload was completed or aborted"),
    }
}

impl UploadState {
    fn write_at(&self, offset: u64, data: &PutPayload) -> object_store::Result<()> {
        let mut guard = lock(&self.file);
        let file = guard.as_mut().ok_or_else(finished)?;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| data.iter().try_for_each(|part| file.write_all(part)))
            .map_err(|e| io_error(&self.staged, e))
    }

    fn complete(&self) -> object_store::Result<PutResult> {
        let file = lock(&self.file).take().ok_or_else(finished)?;
        let published = file
            .sync_all()
            .and_then(|()| file.metadata())
            .map_err(|e| io_error(&self.staged, e))
            .and_then(|metadata| {
                drop(file);
                std::fs::rename(&self.staged, &self.dest).map_err(|e| io_error(&self.dest, e))?;
                Ok(metadata)
            });
        let metadata = match published {
            Ok(metadata) => metadata,
            Err(e) => {
                let _ = std::fs::remove_file(&self.staged);
                return Err(e);
            }
        };
        if let Some(dir) = self.dest.parent() {
            sync_dir(dir)?;
        }
        Ok(PutResult {
            e_tag: Some(etag(&metadata)),
            version: None,
            extensions: Default::default(),
        })
    }

    fn abort(&self) -> object_store::Result<()> {
        drop(lock(&self.file).take().ok_or_else(finished)?);
        std::fs::remove_file(&self.staged).map_err(|e| io_error(&self.staged, e))
    }
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let state = self.state.clone();
        blocking(move || state.write_at(offset, &data)).boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let state = self.state.clone();
        blocking(move || state.complete()).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let state = self.state.clone();
        blocking(move || state.abort()).await
    }
}

impl Drop for LocalUpload {
    /// An upload dropped before completion leaves nothing behind.
    fn drop(&mut self) {
        if lock(&self.state.file).take().is_none() {
            return;
        }
        let staged = self.state.staged.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || std::fs::remove_file(staged))),
            Err(_) => drop(std::fs::remove_file(staged)),
        }
    }
}
