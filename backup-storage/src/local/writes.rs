//! The local store's durable writes: objects are written under a staging name (`NAME#N`,
//! which listings skip) in a private file, flushed, then published by a rename (replacing)
//! or a hard link (exclusive create); copies are hard links, renames renames. Directories
//! are created as needed ([`private`](super::private): 0700, files 0600) and every
//! directory whose entries changed is flushed before the call returns.

use std::collections::BTreeSet;
use std::fs::{File, Metadata};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use object_store::{PutPayload, PutResult};

use super::io_error;
use super::private::{create_dirs, create_file};

/// How often a write creates missing directories and tries again: a concurrent delete may
/// remove an empty directory in between (automatic cleanup). Each retry means another
/// request made progress, so this cannot spin forever.
const DIR_ATTEMPTS: usize = 16;

/// `DEST#N`: object_store's staging names, which its listings skip.
fn staging_path(dest: &Path, n: u32) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(format!("#{n}"));
    PathBuf::from(name)
}

/// Creates `DEST#N` (mode 0600) for the first free `N`, creating missing directories
/// (0700); returns the file, its path and the directories created, parents first.
pub(super) fn create_staging(dest: &Path) -> object_store::Result<(File, PathBuf, Vec<PathBuf>)> {
    let mut created = Vec::new();
    let mut attempts = 0;
    let mut n = 1u32;
    loop {
        let staged = staging_path(dest, n);
        match create_file(&staged) {
            Ok(file) => return Ok((file, staged, created)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && n < u32::MAX => n += 1,
            Err(e) if e.kind() == ErrorKind::NotFound && attempts < DIR_ATTEMPTS => {
                attempts += 1;
                let dir = dest.parent().ok_or_else(|| io_error(dest, e))?;
                created.extend(create_dirs(dir).map_err(|e| io_error(dir, e))?);
            }
            Err(e) => return Err(io_error(&staged, e)),
        }
    }
}

/// Flushes a directory's entries to disk (a no-op where directories cannot be opened).
pub(super) fn sync_dir(dir: &Path) -> object_store::Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Flushes new directories and the directories holding them.
pub(super) fn sync_new_dirs(created: &[PathBuf]) -> object_store::Result<()> {
    let dirs: BTreeSet<&Path> = created
        .iter()
        .flat_map(|d| [Some(d.as_path()), d.parent()])
        .flatten()
        .collect();
    dirs.into_iter().try_for_each(sync_dir)
}

/// Flushes the directory holding `path`.
fn sync_parent(path: &Path) -> object_store::Result<()> {
    path.parent().map_or(Ok(()), sync_dir)
}

/// The ETag object_store's `LocalFileSystem` reports for a file (inode, mtime, size), so
/// that a put and a later head agree.
pub(super) fn etag(metadata: &Metadata) -> String {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0u64;
    let mtime = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("\"{inode:x}-{mtime:x}-{:x}\"", metadata.len())
}

/// Whether something exists at `path` (a dangling link counts).
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn not_found(location: &object_store::path::Path, source: io::Error) -> object_store::Error {
    object_store::Error::NotFound {
        path: location.to_string(),
        source: Box::new(source),
    }
}

fn already_exists(location: &object_store::path::Path, source: io::Error) -> object_store::Error {
    object_store::Error::AlreadyExists {
        path: location.to_string(),
        source: Box::new(source),
    }
}

/// Writes `payload` as `dest` (the file of `location`): staged, flushed, then published,
/// replacing an existing object or, with `create`, only if the name is free
/// (`AlreadyExists` otherwise, and nothing changes).
pub(super) fn put(
    location: &object_store::path::Path,
    dest: &Path,
    payload: &PutPayload,
    create: bool,
) -> object_store::Result<PutResult> {
    let (file, staged, created) = create_staging(dest)?;
    let result = write_and_publish(location, file, &staged, dest, payload, create, &created);
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

fn write_and_publish(
    location: &object_store::path::Path,
    mut file: File,
    staged: &Path,
    dest: &Path,
    payload: &PutPayload,
    create: bool,
    created: &[PathBuf],
) -> object_store::Result<PutResult> {
    payload
        .iter()
        .try_for_each(|part| file.write_all(part))
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(staged, e))?;
    let metadata = file.metadata().map_err(|e| io_error(staged, e))?;
    drop(file);
    sync_new_dirs(created)?;
    if create {
        match std::fs::hard_link(staged, dest) {
            Ok(()) => {
                let _ = std::fs::remove_file(staged);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(already_exists(location, e));
            }
            Err(e) => return Err(io_error(dest, e)),
        }
    } else {
        std::fs::rename(staged, dest).map_err(|e| io_error(dest, e))?;
    }
    sync_parent(dest)?;
    Ok(PutResult {
        e_tag: Some(etag(&metadata)),
        version: None,
        extensions: Default::default(),
    })
}

/// Links `from` (the file of `from_location`) as `link`, creating `link`'s missing
/// directories: `NotFound` if there is no source, the OS error otherwise (`AlreadyExists`
/// if `link` is taken).
fn link_creating_dirs(
    from_location: &object_store::path::Path,
    from: &Path,
    link: &Path,
) -> Result<(), LinkError> {
    let mut attempts = 0;
    loop {
        match std::fs::hard_link(from, link) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound && !exists(from) => {
                return Err(LinkError::Store(not_found(from_location, e)));
            }
            Err(e) if e.kind() == ErrorKind::NotFound && attempts < DIR_ATTEMPTS => {
                attempts += 1;
                let dir = link.parent().ok_or_else(|| io_error(link, e))?;
                let created = create_dirs(dir).map_err(|e| io_error(dir, e))?;
                sync_new_dirs(&created)?;
            }
            Err(e) => return Err(LinkError::Os(e)),
        }
    }
}

/// Why [`link_creating_dirs`] failed.
enum LinkError {
    /// Already the store's answer.
    Store(object_store::Error),
    /// The link itself failed.
    Os(io::Error),
}

impl From<object_store::Error> for LinkError {
    fn from(e: object_store::Error) -> Self {
        LinkError::Store(e)
    }
}

/// Copies `from` to `to` (the files of the two locations) as a hard link: published by a
/// rename over `to`, or with `create` only if `to` is free (`AlreadyExists` otherwise).
pub(super) fn copy(
    from_location: &object_store::path::Path,
    from: &Path,
    to_location: &object_store::path::Path,
    to: &Path,
    create: bool,
) -> object_store::Result<()> {
    if create {
        match link_creating_dirs(from_location, from, to) {
            Ok(()) => {}
            Err(LinkError::Store(e)) => return Err(e),
            Err(LinkError::Os(e)) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(already_exists(to_location, e));
            }
            Err(LinkError::Os(e)) => return Err(io_error(to, e)),
        }
        return sync_parent(to);
    }
    if from == to {
        // Renaming a link onto another link of the same file would do nothing and leave
        // the staging name behind.
        return match std::fs::metadata(from) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(not_found(from_location, e)),
            Err(e) => Err(io_error(from, e)),
        };
    }
    let mut n = 1u32;
    let staged = loop {
        let staged = staging_path(to, n);
        match link_creating_dirs(from_location, from, &staged) {
            Ok(()) => break staged,
            Err(LinkError::Store(e)) => return Err(e),
            Err(LinkError::Os(e)) if e.kind() == ErrorKind::AlreadyExists && n < u32::MAX => n += 1,
            Err(LinkError::Os(e)) => return Err(io_error(&staged, e)),
        }
    };
    if let Err(e) = std::fs::rename(&staged, to) {
        let _ = std::fs::remove_file(&staged);
        return Err(io_error(to, e));
    }
    sync_parent(to)
}

/// Renames `from` to `to` (the files of the two locations), replacing `to`; `NotFound` if
/// there is no source.
pub(super) fn rename(
    from_location: &object_store::path::Path,
    from: &Path,
    to: &Path,
) -> object_store::Result<()> {
    let mut attempts = 0;
    loop {
        match std::fs::rename(from, to) {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::NotFound && !exists(from) => {
                return Err(not_found(from_location, e));
            }
            Err(e) if e.kind() == ErrorKind::NotFound && attempts < DIR_ATTEMPTS => {
                attempts += 1;
                let dir = to.parent().ok_or_else(|| io_error(to, e))?;
                let created = create_dirs(dir).map_err(|e| io_error(dir, e))?;
                sync_new_dirs(&created)?;
            }
            Err(e) => return Err(io_error(to, e)),
        }
    }
    sync_parent(to)?;
    if from.parent() != to.parent() {
        sync_parent(from)?;
    }
    Ok(())
}
