//! Deferred puts: written under a staging name now, flushed and published later (see
//! [`LocalStore`](super::LocalStore)).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use object_store::PutPayload;

use super::io_error;
use super::writes::{create_staging, sync_dir};

/// A deferred object on its way: written under `staged`, published as `dest`.
pub(super) struct Staged {
    pub(super) staged: PathBuf,
    pub(super) dest: PathBuf,
}

/// Writes `payload` to a fresh staging file beside `dest` and starts its writeback;
/// returns the staging path.
pub(super) fn write_staged(dest: &Path, payload: &PutPayload) -> object_store::Result<PathBuf> {
    // The directories created are flushed when the object is published.
    let (mut file, staged, _created) = create_staging(dest)?;
    let written = payload
        .iter()
        .try_for_each(|part| file.write_all(part))
        .map_err(|e| io_error(&staged, e));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    drop_cached_pages(&file);
    Ok(staged)
}

/// Asks the kernel to drop the file's pages from its cache: `POSIX_FADV_DONTNEED` starts
/// the writeback of dirty pages (so a later flush finds the file mostly on disk) and frees
/// the clean ones (so, after the flush, the pages go back to the free list). A backup does
/// not read its packs again, so they need not push the server's own data out of the cache,
/// and the next pack is written into recycled pages: on a virtual machine whose host takes
/// back free memory, a page filled for the first time since costs several times more
/// (docs/performance.md, "Fresh pages"). Advice only: a failure changes nothing but speed.
pub(super) fn drop_cached_pages(file: &File) {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Flushes each staging file to disk; returns those flushed and the first error. A file
/// that fails is removed: it is never published.
pub(super) fn sync_files(files: Vec<Staged>) -> (Vec<Staged>, Option<object_store::Error>) {
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
                error.get_or_insert_with(|| io_error(&file.staged, e));
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
pub(super) fn publish(root: &Path, files: Vec<Staged>) -> object_store::Result<()> {
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
                first_error.get_or_insert_with(|| io_error(&file.staged, e));
            }
        }
    }
    for dir in dirs {
        if let Err(e) = sync_dir(&dir) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
