//! [`LocalStore`]: a local directory whose puts are durable, flushing a backup's packs together.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
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
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// The name this store gives itself in errors.
const STORE: &str = "LocalStore";

/// A directory on a local file system as an object store, with every object on disk before
/// anything that can name it.
///
/// Reads, lists and unmarked writes go to object_store's [`LocalFileSystem`] with `fsync`
/// on: a put returns once the file and its directory are flushed. A put that carries
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

/// A deferred object on its way: written under `staged`, published as `dest`.
struct Staged {
    staged: PathBuf,
    dest: PathBuf,
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
    /// Opens the directory `root` (created if missing) as a store.
    pub fn new(root: impl Into<PathBuf>) -> object_store::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| generic(&root, e))?;
        let root = std::fs::canonicalize(&root).map_err(|e| generic(&root, e))?;
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

fn generic(path: &std::path::Path, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!("{}: {e}", path.display()).into(),
    }
}

/// Writes `payload` to a fresh staging file beside `dest` and starts its writeback;
/// returns the staging path.
fn write_staged(dest: &std::path::Path, payload: &PutPayload) -> object_store::Result<PathBuf> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| generic(dir, e))?;
    }
    let (mut file, staged) = create_staging(dest)?;
    let written = payload
        .iter()
        .try_for_each(|part| file.write_all(part))
        .map_err(|e| generic(&staged, e));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    drop_cached_pages(&file);
    Ok(staged)
}

/// Creates `DEST#N` for the first free `N` (object_store's staging names, which its
/// listings skip).
fn create_staging(dest: &std::path::Path) -> object_store::Result<(File, PathBuf)> {
    for n in 1u32.. {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let staged = PathBuf::from(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
        {
            Ok(file) => return Ok((file, staged)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(generic(&staged, e)),
        }
    }
    Err(generic(dest, std::io::Error::other("no free staging name")))
}

/// Asks the kernel to drop the file's pages from its cache: `POSIX_FADV_DONTNEED` starts
/// the writeback of dirty pages (so a later flush finds the file mostly on disk) and frees
/// the clean ones (so, after the flush, the pages go back to the free list). A backup does
/// not read its packs again, so they need not push the server's own data out of the cache,
/// and the next pack is written into recycled pages: on a virtual machine whose host takes
/// back free memory, a page filled for the first time since costs several times more
/// (docs/performance.md, "Fresh pages"). Advice only: a failure changes nothing but speed.
fn drop_cached_pages(file: &File) {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Flushes each staging file to disk; returns those flushed and the first error. A file
/// that fails is removed: it is never published.
fn sync_files(files: Vec<Staged>) -> (Vec<Staged>, Option<object_store::Error>) {
    let mut error = None;
    let mut flushed = Vec::with_capacity(files.len());
    for file in files {
        let synced = File::open(&file.staged).and_then(|f| {
            f.sync_all()?;
            drop_cached_pages(&f);
            Ok(())
        });
        match synced {
            Ok(()) => flushed.push(file),
            Err(e) => {
                let _ = std::fs::remove_file(&file.staged);
                error.get_or_insert_with(|| generic(&file.staged, e));
            }
        }
    }
    (flushed, error)
}

/// Renames flushed staging files into place, then flushes every directory from theirs up
/// to `root`. A file that cannot be renamed is removed; the first error is returned after
/// the rest are published. The upper directories are flushed again in every batch, though
/// most were flushed before: a delete removes directories it empties (automatic cleanup),
/// so a directory seen before may be a new one, and remembering which are on disk could
/// skip the flush that makes a new one's link durable.
fn publish(root: &std::path::Path, files: Vec<Staged>) -> object_store::Result<()> {
    let mut first_error = None;
    let mut dirs = BTreeSet::new();
    for file in files {
        match std::fs::rename(&file.staged, &file.dest) {
            Ok(()) => {
                let mut dir = file.dest.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(root)) {
                    if !dirs.insert(d.to_path_buf()) {
                        break;
                    }
                    dir = d.parent();
                }
            }
            Err(e) => {
                let _ = std::fs::remove_file(&file.staged);
                first_error.get_or_insert_with(|| generic(&file.staged, e));
            }
        }
    }
    for dir in dirs {
        if let Err(e) = File::open(&dir).and_then(|d| d.sync_all()) {
            first_error.get_or_insert_with(|| generic(&dir, e));
        }
    }
    first_error.map_or(Ok(()), Err)
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
        self.flush().await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.flush().await?;
        self.inner.put_multipart_opts(location, opts).await
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
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.flush().await?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, PutMode};

    use super::*;

    fn deferred() -> PutOptions {
        let mut opts = PutOptions::default();
        opts.extensions.insert(DeferredFlush);
        opts
    }

    async fn put_deferred(store: &LocalStore, path: &str, body: &'static [u8]) {
        store
            .put_opts(&Path::from(path), PutPayload::from_static(body), deferred())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn deferred_puts_are_published_by_the_next_unmarked_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        put_deferred(&store, "a/packs/00/p1", b"one").await;
        put_deferred(&store, "a/packs/01/p2", b"two").await;
        assert_eq!(store.deferred_puts(), 2);

        store
            .put(&Path::from("a/index/i1"), PutPayload::from_static(b"idx"))
            .await
            .unwrap();
        assert_eq!(store.pending(), 0);
        let one = store.get(&Path::from("a/packs/00/p1")).await.unwrap();
        assert_eq!(one.bytes().await.unwrap().as_ref(), b"one");
        let mut names: Vec<String> = store
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        names.sort();
        assert_eq!(names, ["a/index/i1", "a/packs/00/p1", "a/packs/01/p2"]);
        // No staging file is left behind.
        let staged: Vec<_> = walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains('#'))
            .collect();
        assert!(staged.is_empty(), "{staged:?}");
    }

    #[tokio::test]
    async fn deletes_copies_renames_and_flush_are_barriers() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();

        put_deferred(&store, "p/1", b"1").await;
        store.delete(&Path::from("p/1")).await.unwrap();
        assert_eq!(store.pending(), 0);
        // Published first, then deleted: the delete is not undone by a later barrier.
        assert!(!dir.path().join("p/1").exists());

        put_deferred(&store, "p/2", b"2").await;
        store
            .copy(&Path::from("p/2"), &Path::from("p/3"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("p/3")).unwrap(), b"2");

        put_deferred(&store, "p/4", b"4").await;
        store
            .rename(&Path::from("p/4"), &Path::from("p/5"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("p/5")).unwrap(), b"4");

        put_deferred(&store, "p/6", b"6").await;
        let upload = store.put_multipart(&Path::from("m")).await.unwrap();
        assert_eq!(store.pending(), 0);
        drop(upload);

        put_deferred(&store, "p/7", b"7").await;
        store.flush().await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("p/7")).unwrap(), b"7");
        assert_eq!(store.pending(), 0);
    }

    #[tokio::test]
    async fn a_deferred_put_replaces_and_conditional_puts_are_not_deferred() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        put_deferred(&store, "x", b"old").await;
        put_deferred(&store, "x", b"new").await;
        store.flush().await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"new");

        let mut create = deferred();
        create.mode = PutMode::Create;
        let err = store
            .put_opts(&Path::from("x"), PutPayload::from_static(b"again"), create)
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::AlreadyExists { .. }),
            "{err}"
        );
        assert_eq!(store.pending(), 0);
    }

    #[test]
    fn a_file_that_cannot_be_published_is_an_error_and_never_appears() {
        // Outside a runtime nothing flushes in the background, so the staging file is
        // still there to take away.
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        futures::executor::block_on(async {
            put_deferred(&store, "d/ok", b"ok").await;
            put_deferred(&store, "d/gone", b"gone").await;
            // The staging file vanishes before the barrier (as if removed by hand).
            std::fs::remove_file(dir.path().join("d/gone#1")).unwrap();
            let err = store.flush().await.unwrap_err();
            assert!(err.to_string().contains("gone#"), "{err}");
            assert_eq!(std::fs::read(dir.path().join("d/ok")).unwrap(), b"ok");
            assert!(!dir.path().join("d/gone").exists());
            assert_eq!(store.pending(), 0);
            // Every later barrier fails too: a write made after it cannot rely on d/gone.
            let again = store.flush().await.unwrap_err();
            assert!(again.to_string().contains("gone#"), "{again}");
            store
                .put(&Path::from("index"), PutPayload::from_static(b"i"))
                .await
                .unwrap_err();
            assert!(!dir.path().join("index").exists());
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_background_publish_fails_every_later_barrier() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let store = LocalStore::new(dir.path()).unwrap();
            // A directory where the object should go: the rename into place fails, whether
            // the background task or the barrier does it.
            std::fs::create_dir_all(dir.path().join("x/inside")).unwrap();
            put_deferred(&store, "x", b"x").await;
            if round % 2 == 1 {
                // Let the background task get there first.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let err = store
                .put(&Path::from("index"), PutPayload::from_static(b"i"))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("x#1"), "round {round}: {err}");
            assert!(!dir.path().join("index").exists(), "round {round}");
            assert!(!dir.path().join("x#1").exists(), "round {round}");
            // And to every later barrier.
            assert!(store.flush().await.is_err(), "round {round}");
        }
    }

    #[tokio::test]
    async fn deferred_puts_left_when_the_store_is_dropped_are_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        put_deferred(&store, "packs/aa/left", b"left").await;
        drop(store);
        // The background flush may still hold the last handle: the file appears once it
        // ends (bounded wait, not a timing assertion).
        let dest = dir.path().join("packs/aa/left");
        for _ in 0..500 {
            if dest.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(std::fs::read(&dest).unwrap(), b"left");
        assert!(!dir.path().join("packs/aa/left#1").exists());
    }

    #[test]
    fn works_outside_a_tokio_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path()).unwrap();
        futures::executor::block_on(async {
            put_deferred(&store, "p", b"p").await;
            assert_eq!(store.pending(), 1);
            store.flush().await.unwrap();
        });
        assert_eq!(std::fs::read(dir.path().join("p")).unwrap(), b"p");
    }

    fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
