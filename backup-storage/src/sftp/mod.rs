//! [`SftpStore`]: an [`ObjectStore`] over SSH/SFTP (russh + russh-sftp).
//!
//! Objects are files under the store's root directory; `/` in a key is a directory level
//! (created on demand, removed again when a delete leaves it empty).
//!
//! - **Writes are atomic and write-once by default**: data goes to a temporary name
//!   (`NAME#DIGITS`, hidden from listings) and is renamed into place, so a reader never
//!   sees half an object. OpenSSH renames a regular file by hard link + unlink, which fails
//!   when the name is taken: [`PutMode::Create`] (and `copy_if_not_exists`,
//!   `rename_if_not_exists`) is therefore an exclusive create with exactly one winner. An
//!   overwriting put uses `posix-rename@openssh.com` when the server offers it, else
//!   removes the old file first (readers may then briefly see no object).
//! - **Writes are flushed**: before the rename, the file is flushed to the server's disk
//!   with `fsync@openssh.com` where the server offers it (OpenSSH does), so a put that
//!   returned is not lost to a power cut of the server. (SFTP cannot flush a directory:
//!   the rename itself rests on the server's file system.)
//! - Ranged reads and writes are pipelined (several requests in flight per transfer, up to
//!   the server's announced request size).
//! - Multipart uploads write each part at its offset in one temporary file, renamed into
//!   place on completion.
//! - A small pool holds the connections (4 by default); a broken connection is dropped and
//!   replaced on the next request.
//! - **The host key is checked** against a known_hosts file: an unknown host or a changed
//!   key fails with [`Error::HostKeyRejected`](crate::Error::HostKeyRejected); nothing is
//!   ever accepted silently or learned.
//! - Not supported: [`PutMode::Update`] (no compare-and-swap over SFTP), object versions,
//!   attributes and tags. ETags are derived from modification time and size.

mod builder;
mod connection;
mod list;
mod multipart;
mod pool;
mod transfer;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, RenameTargetMode,
};
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

use builder::Settings;
pub use builder::SftpBuilder;
use pool::Pool;
use transfer::{Commit, OpenFile, Renamed};

use crate::error::{Error, message};

/// The `store` name in this store's `object_store::Error::Generic` errors.
const STORE: &str = "SFTP";
/// Objects deleted or copied at once by `delete_stream`.
const DELETE_CONCURRENCY: usize = 8;
/// Pieces of a copy in flight.
const COPY_PIPELINE: usize = 8;

/// An [`ObjectStore`] over SFTP; see the [module documentation](self) for the semantics.
///
/// Built with [`SftpBuilder`] or opened with [`open`](crate::open) from
/// `sftp://USER@HOST:PORT/ABSOLUTE/PATH?key=KEYFILE&known_hosts=FILE`. Cloning is cheap and
/// shares the connection pool. Connections are made on the first request.
#[derive(Debug, Clone)]
pub struct SftpStore {
    pool: Arc<Pool>,
}

impl fmt::Display for SftpStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.settings();
        write!(f, "SftpStore(sftp://{}@{}{})", s.user, s.address(), s.root)
    }
}

impl SftpStore {
    fn with_settings(settings: Arc<Settings>) -> Self {
        Self {
            pool: Arc::new(Pool::new(settings)),
        }
    }

    fn settings(&self) -> &Settings {
        self.pool.settings()
    }

    /// SSH connections open now (at most the pool size).
    pub fn open_connections(&self) -> usize {
        self.pool.open_connections()
    }

    /// The remote path of an object.
    fn remote(&self, location: &Path) -> String {
        let root = &self.settings().root;
        match (root.as_str(), location.as_ref()) {
            (root, "") => root.to_owned(),
            ("/", key) => format!("/{key}"),
            (root, key) => format!("{root}/{key}"),
        }
    }

    fn meta(location: &Path, attrs: &FileAttributes) -> ObjectMeta {
        let mtime = attrs.mtime.unwrap_or(0);
        let size = attrs.size.unwrap_or(0);
        ObjectMeta {
            location: location.clone(),
            last_modified: DateTime::<Utc>::from_timestamp(i64::from(mtime), 0).unwrap_or_default(),
            size,
            e_tag: Some(format!("{mtime:x}-{size:x}")),
            version: None,
        }
    }

    async fn lease(&self) -> object_store::Result<pool::Lease> {
        self.pool.lease().await.map_err(|e| e.into_store(STORE))
    }

    /// Writes a temporary file with `write`, then gives it its final name.
    async fn write_then_commit(
        &self,
        lease: &pool::Lease,
        location: &Path,
        mode: Commit,
        write: impl AsyncFnOnce(&OpenFile) -> Result<(), Error>,
    ) -> object_store::Result<()> {
        let path = self.remote(location);
        let tmp = transfer::temp_name(&path);
        let file = transfer::create_file(lease.shared(), &tmp)
            .await
            .map_err(|e| store_error(location, e))?;
        let written = match write(&file).await {
            Ok(()) => file.sync_and_close().await,
            Err(e) => Err(e),
        };
        let committed = match written {
            Ok(()) => transfer::rename(lease, &tmp, &path, mode).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(Renamed::Done) => Ok(()),
            Ok(Renamed::Exists) => {
                transfer::remove_quietly(lease, &tmp).await;
                Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: message("the object exists already"),
                })
            }
            Err(e) => {
                transfer::remove_quietly(lease, &tmp).await;
                Err(store_error(location, e))
            }
        }
    }

    async fn delete_one(&self, location: &Path) -> object_store::Result<()> {
        let lease = self.lease().await?;
        let path = self.remote(location);
        match lease.sftp.remove(path.as_str()).await {
            Ok(_) => {
                transfer::prune_empty_dirs(&lease, &self.settings().root, &path).await;
                Ok(())
            }
            // Deleting a missing object succeeds, as on S3: a retried delete is harmless.
            Err(russh_sftp::client::error::Error::Status(s))
                if s.status_code == StatusCode::NoSuchFile =>
            {
                Ok(())
            }
            Err(e) => Err(store_error(
                location,
                transfer::sftp_error(&lease, "remove", &path, e),
            )),
        }
    }
}

/// Maps this crate's error to the trait's: a missing file is `NotFound`, a refused one
/// `PermissionDenied`, the rest `Generic`.
fn store_error(location: &Path, error: Error) -> object_store::Error {
    match transfer::status_of(&error) {
        Some(StatusCode::NoSuchFile) => object_store::Error::NotFound {
            path: location.to_string(),
            source: Box::new(error),
        },
        Some(StatusCode::PermissionDenied) => object_store::Error::PermissionDenied {
            path: location.to_string(),
            source: Box::new(error),
        },
        _ => error.into_store(STORE),
    }
}

fn not_found(location: &Path, why: &str) -> object_store::Error {
    object_store::Error::NotFound {
        path: location.to_string(),
        source: message(why),
    }
}

#[async_trait]
impl ObjectStore for SftpStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let mode = match opts.mode {
            PutMode::Overwrite => Commit::Overwrite,
            PutMode::Create => Commit::Create,
            PutMode::Update(_) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "put with PutMode::Update".into(),
                    implementer: "SftpStore".into(),
                });
            }
        };
        let lease = self.lease().await?;
        self.write_then_commit(&lease, location, mode, async |file| {
            file.write_all_at(0, payload).await
        })
        .await?;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let lease = self.lease().await?;
        let path = self.remote(location);
        let tmp = transfer::temp_name(&path);
        let file = transfer::create_file(lease.shared(), &tmp)
            .await
            .map_err(|e| store_error(location, e))?
            .hold(lease);
        Ok(Box::new(multipart::SftpUpload::new(
            file,
            path,
            location.clone(),
        )))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.version.is_some() {
            return Err(object_store::Error::NotSupported {
                source: message("SftpStore keeps no object versions"),
            });
        }
        let lease = self.lease().await?;
        let path = self.remote(location);
        if options.head {
            let attrs = lease
                .sftp
                .stat(path.as_str())
                .await
                .map_err(|e| store_error(location, transfer::sftp_error(&lease, "stat", &path, e)))?
                .attrs;
            if !transfer::is_regular(&attrs) {
                return Err(not_found(location, "not a regular file"));
            }
            let meta = Self::meta(location, &attrs);
            options.check_preconditions(&meta)?;
            return Ok(GetResult {
                payload: GetResultPayload::Stream(stream::empty().boxed()),
                range: 0..meta.size,
                meta,
                attributes: Default::default(),
                extensions: Default::default(),
            });
        }
        let file = OpenFile::open(lease.shared(), &path, OpenFlags::READ)
            .await
            .map_err(|e| store_error(location, e))?
            .hold(lease);
        let attrs = file.stat().await.map_err(|e| store_error(location, e))?;
        if !transfer::is_regular(&attrs) {
            return Err(not_found(location, "not a regular file"));
        }
        if attrs.size.is_none() {
            return Err(Error::Protocol {
                path,
                reason: "the server did not send the file size".into(),
            }
            .into_store(STORE));
        }
        let meta = Self::meta(location, &attrs);
        options.check_preconditions(&meta)?;
        let range = match &options.range {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic {
                    store: STORE,
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        let shown = location.clone();
        let stream = file
            .into_stream(range.clone())
            .map_err(move |e| store_error(&shown, e))
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    store.delete_one(&location).await?;
                    Ok(location)
                }
            })
            .buffered(DELETE_CONCURRENCY)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        list::walk(self.clone(), prefix.cloned().unwrap_or_default())
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        list::one_level(self, prefix.cloned().unwrap_or_default()).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let mode = match options.mode {
            CopyMode::Overwrite => Commit::Overwrite,
            CopyMode::Create => Commit::Create,
        };
        let lease = self.lease().await?;
        let source_path = self.remote(from);
        let source = OpenFile::open(lease.shared(), &source_path, OpenFlags::READ)
            .await
            .map_err(|e| store_error(from, e))?;
        let attrs = source.stat().await.map_err(|e| store_error(from, e))?;
        if !transfer::is_regular(&attrs) {
            return Err(not_found(from, "not a regular file"));
        }
        let size = attrs.size.unwrap_or(0);
        let chunk = u64::from(lease.chunk);
        self.write_then_commit(&lease, to, mode, async |target| {
            stream::iter((0..size).step_by(chunk as usize))
                .map(|start| {
                    let (source, target) = (&source, target);
                    async move {
                        let bytes = source.read_exact(start..(start + chunk).min(size)).await?;
                        target.write_all_at(start, bytes.into()).await
                    }
                })
                .buffer_unordered(COPY_PIPELINE)
                .try_collect::<()>()
                .await
        })
        .await?;
        let _ = source.close().await;
        Ok(())
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let mode = match options.target_mode {
            RenameTargetMode::Overwrite => Commit::Overwrite,
            RenameTargetMode::Create => Commit::Create,
        };
        let lease = self.lease().await?;
        let (source, target) = (self.remote(from), self.remote(to));
        match transfer::rename(&lease, &source, &target, mode).await {
            Ok(Renamed::Done) => {
                transfer::prune_empty_dirs(&lease, &self.settings().root, &source).await;
                Ok(())
            }
            Ok(Renamed::Exists) => Err(object_store::Error::AlreadyExists {
                path: to.to_string(),
                source: message("the object exists already"),
            }),
            Err(e) => Err(store_error(from, e)),
        }
    }
}
