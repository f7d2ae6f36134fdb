//! [`LocalStore`]: a local directory whose puts are durable, flushing a backup's packs
//! together, and whose files are private to their owner.

mod deferred;
mod private;
mod sweep;
#[cfg(test)]
mod tests;
mod upload;
mod writes;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::ports::DeferredFlush;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, RenameTargetMode,
};

use crate::error::Error;
use deferred::{Staged, publish, sync_files, write_staged};
pub(crate) use private::create_root;
pub use sweep::sweep_staging;
use upload::LocalUpload;

/// The name this store gives itself in errors.
const STORE: &str = "LocalStore";

/// A directory on a local file system as an object store, with every object on disk before
/// anything that can name it.
///
/// Reads, lists and deletes go to object_store's [`LocalFileSystem`] (which removes the
/// directories a delete empties). Writes are the store's own: a put is written under a
/// staging name (`NAME#N`, which listings skip), flushed, then renamed into place (or, for
/// [`PutMode::Create`], hard-linked, which fails if the name is taken) and its directory
/// flushed before it returns; copies are hard links, renames renames, multipart uploads
/// one staging file renamed into place on completion.
///
/// **Private files**: every directory the store creates, the root included, is mode 0700
/// and every file, staging files included, 0600, whatever
/// the process umask: each is created with that mode and then given exactly that mode, so
/// no other user can open an object even while it is written. A root directory that
/// exists is left as it is.
///
/// A put that carries
/// [`DeferredFlush`] (the engine's pack puts) is written under a staging name (`NAME#N`,
/// which listings skip), its writeback is started, and it returns without waiting for the
/// disk; a background task then flushes such files, renames them into place and flushes
/// their directories while the caller goes on. The next write, copy, rename or delete
/// without the marker, or [`LocalStore::flush`], is a barrier: it waits for that task and
/// does the same for what is left, then its own work. So a backup's pipeline never waits
/// for the disk, the barrier before its index finds little left (about 30 ms for the 1 GiB
/// benchmark; docs/performance.md, "Durable puts"), and an object found under its name has
/// always reached the disk whole: after a power cut a deferred pack is either complete and
/// durable or a staging file nothing refers to. A backup killed midway leaves the packs
/// already flushed visible, for the next backup to reuse.
///
/// A deferred object becomes visible once flushed, at the latest at the barrier (a get
/// before answers `NotFound`). A deferred put that cannot be flushed or renamed into place
/// is removed, and from then on every barrier of this handle fails, naming the first such
/// error: the store cannot tell which later write relies on the lost object, so none may
/// proceed (open the store again once the disk is sound). Deferred puts still unpublished
/// when the last handle is dropped (a backup that failed before its index) are flushed and
/// published then, in the dropping thread. Staging files left by a crash stay on disk,
/// unlisted, like those of object_store's own interrupted puts.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use backup_core::ports::DeferredFlush;
/// use backup_storage::LocalStore;
/// use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload, path::Path};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = LocalStore::new(dir.path()).unwrap();
/// let mut deferred = PutOptions::default();
/// deferred.extensions.insert(DeferredFlush);
/// store
///     .put_opts(&Path::from("packs/ab/ab01"), PutPayload::from_static(b"pack"), deferred)
///     .await
///     .unwrap();
/// assert_eq!(store.deferred_puts(), 1);
/// // An ordinary put (the index naming the pack) publishes and flushes the pack first.
/// store.put(&Path::from("index/1"), PutPayload::from_static(b"index")).await.unwrap();
/// assert_eq!(store.pending(), 0);
/// assert_eq!(std::fs::read(dir.path().join("packs/ab/ab01")).unwrap(), b"pack");
/// # });
/// ```
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<LocalFileSystem>,
    shared: Arc<Shared>,
}

struct Shared {
    /// The directory, canonical.
    root: PathBuf,
    /// Deferred objects written, not yet flushed and published.
    written: Mutex<Vec<Staged>>,
    /// The first deferred put that could not be flushed or published; once set, every
    /// barrier fails.
    failed: Mutex<Option<String>>,
    /// Whether a background flush is running or about to.
    flushing: AtomicBool,
    /// Deferred puts made and not yet published or dropped.
    unpublished: AtomicUsize,
    /// Deferred puts made since the store was opened.
    deferred: AtomicU64,
    /// Held while files are flushed and published, so that a barrier returns only once every
    /// deferred put made before it (including those a background flush took) is on disk.
    barrier: tokio::sync::Mutex<()>,
}

impl LocalStore {
    /// Opens the directory `root` as a store; if missing, it is created with its missing
    /// parents, mode 0700.
    pub fn new(root: impl Into<PathBuf>) -> object_store::Result<Self> {
        let root = root.into();
        create_root(&root).map_err(|e| io_error(&root, e))?;
        let root = std::fs::canonicalize(&root).map_err(|e| io_error(&root, e))?;
        let inner = LocalFileSystem::new_with_prefix(&root)?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        Ok(Self {
            inner: Arc::new(inner),
            shared: Arc::new(Shared {
                root,
                written: Mutex::default(),
                failed: Mutex::default(),
                flushing: AtomicBool::new(false),
                unpublished: AtomicUsize::new(0),
                deferred: AtomicU64::new(0),
                barrier: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Deferred puts made and not yet published.
    pub fn pending(&self) -> usize {
        self.shared.unpublished.load(Ordering::Acquire)
    }

    /// Puts taken as [`DeferredFlush`] since the store was opened.
    pub fn deferred_puts(&self) -> u64 {
        self.shared.deferred.load(Ordering::Acquire)
    }

    /// Flushes every deferred put made so far to disk and publishes it under its name
    /// (the barrier every write without [`DeferredFlush`] runs first). A file that cannot
    /// be flushed or renamed is removed, never published, and this and every later
    /// barrier of the handle fail.
    pub async fn flush(&self) -> object_store::Result<()> {
        self.publish_written().await;
        match lock(&self.shared.failed).as_deref() {
            Some(first) => Err(object_store::Error::Generic {
                store: STORE,
                source: format!(
                    "a deferred put did not reach the disk ({first}); nothing written through \
                     this store since may rely on it: open the store again"
                )
                .into(),
            }),
            None => Ok(()),
        }
    }

    /// Flushes and publishes the deferred puts written so far, holding the barrier lock:
    /// batches are published in the order they were taken, so a later put of a name wins.
    /// An error is kept before the lock is released, so a barrier waiting for this batch
    /// (the background task's) sees it.
    async fn publish_written(&self) {
        let _held = self.shared.barrier.lock().await;
        let written = std::mem::take(&mut *lock(&self.shared.written));
        if written.is_empty() {
            return;
        }
        let taken = written.len();
        let root = self.shared.root.clone();
        let published = blocking(move || {
            let (flushed, error) = sync_files(written);
            let published = publish(&root, flushed);
            error.map_or(published, Err)
        })
        .await;
        self.shared.unpublished.fetch_sub(taken, Ordering::AcqRel);
        if let Err(e) = published {
            lock(&self.shared.failed).get_or_insert_with(|| e.to_string());
        }
    }

    async fn put_deferred(
        &self,
        location: &Path,
        payload: PutPayload,
    ) -> object_store::Result<PutResult> {
        let dest = self.inner.path_to_filesystem(location)?;
        let staged =
            blocking(move || write_staged(&dest, &payload).map(|staged| Staged { staged, dest }))
                .await?;
        self.shared.unpublished.fetch_add(1, Ordering::AcqRel);
        self.shared.deferred.fetch_add(1, Ordering::AcqRel);
        lock(&self.shared.written).push(staged);
        self.flush_in_background();
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    /// Flushes and publishes written files on a task of their own while the caller goes on,
    /// so that the disk works alongside the backup and a barrier finds little left to wait
    /// for. (One flush at the barrier instead was slower: the whole backup's data then
    /// reached the disk at the end, 0.5 s for the benchmark's 400 MB.)
    fn flush_in_background(&self) {
        // Outside a tokio runtime the barrier does all the flushing.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        runtime.spawn(async move {
            loop {
                // Errors are kept for the barriers.
                this.publish_written().await;
                this.shared.flushing.store(false, Ordering::Release);
                // A put may have come in after the take and seen a flush still running.
                if lock(&this.shared.written).is_empty()
                    || this.shared.flushing.swap(true, Ordering::AcqRel)
                {
                    break;
                }
            }
        });
    }
}

impl Drop for Shared {
    /// Publishes what no barrier did (a backup that failed before its index), so that the
    /// packs stay visible like any object put: reusable by the next backup, removable by
    /// pruning. Blocking, but only when something is left.
    fn drop(&mut self) {
        let written = std::mem::take(self.written.get_mut().unwrap_or_else(|p| p.into_inner()));
        if written.is_empty() {
            return;
        }
        let (flushed, error) = sync_files(written);
        if let Err(e) = error.map_or(publish(&self.root, flushed), Err) {
            tracing::warn!(error = %e, "publishing deferred puts on close failed");
        }
    }
}

/// Runs blocking file-system work off the async threads (in place outside a tokio runtime,
/// as object_store's own local store does).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> object_store::Result<T> + Send + 'static,
) -> object_store::Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime
                .spawn_blocking(f)
                .await
                .map_err(|e| object_store::Error::Generic {
                    store: STORE,
                    source: Box::new(e),
                })?
        }
        Err(_) => f(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A local file error as the trait's error: `Generic`, with [`Error::Io`] naming the path
/// as its source.
fn io_error(path: &std::path::Path, source: std::io::Error) -> object_store::Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
    .into_store(STORE)
}

impl LocalStore {
    /// Object attributes (content type, ...) have nowhere to go in a plain file.
    fn refuse_attributes(&self, attributes: &object_store::Attributes) -> object_store::Result<()> {
        if attributes.is_empty() {
            return Ok(());
        }
        Err(object_store::Error::NotImplemented {
            operation: "puts with attributes".into(),
            implementer: self.to_string(),
        })
    }
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore")
            .field("root", &self.shared.root)
            .field("pending", &self.pending())
            .finish()
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.shared.root.display())
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        // Deferral keeps plain overwrite semantics only; anything else (a conditional put,
        // attributes, which LocalFileSystem refuses) takes the ordinary path.
        let deferrable = opts.extensions.get::<DeferredFlush>().is_some()
            && matches!(opts.mode, PutMode::Overwrite)
            && opts.attributes.is_empty();
        if deferrable {
            return self.put_deferred(location, payload).await;
        }
        let create = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "put with PutMode::Update".into(),
                    implementer: self.to_string(),
                });
            }
        };
        self.refuse_attributes(&opts.attributes)?;
        self.flush().await?;
        let dest = self.inner.path_to_filesystem(location)?;
        let location = location.clone();
        blocking(move || writes::put(&location, &dest, &payload, create)).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.refuse_attributes(&opts.attributes)?;
        self.flush().await?;
        let dest = self.inner.path_to_filesystem(location)?;
        let upload = blocking(move || LocalUpload::start(dest)).await?;
        Ok(Box::new(upload))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let this = self.clone();
        stream::once(async move {
            match this.flush().await {
                Ok(()) => this.inner.delete_stream(locations),
                Err(e) => stream::iter([Err(e)]).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.flush().await?;
        let create = matches!(options.mode, CopyMode::Create);
        let (from_file, to_file) = (
            self.inner.path_to_filesystem(from)?,
            self.inner.path_to_filesystem(to)?,
        );
        let (from, to) = (from.clone(), to.clone());
        blocking(move || writes::copy(&from, &from_file, &to, &to_file, create)).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.flush().await?;
        match options.target_mode {
            RenameTargetMode::Overwrite => {
                let (from_file, to_file) = (
                    self.inner.path_to_filesystem(from)?,
                    self.inner.path_to_filesystem(to)?,
                );
                let from = from.clone();
                blocking(move || writes::rename(&from, &from_file, &to_file)).await
            }
            RenameTargetMode::Create => {
                // A hard link claims the name; the delete removes the old one (and the
                // directories it empties).
                self.copy_opts(from, to, CopyOptions::new().with_mode(CopyMode::Create))
                    .await?;
                self.inner.delete(from).await
            }
        }
    }
}
