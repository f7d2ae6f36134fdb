//! File-level work over one connection: open handles (closed even when dropped), pipelined
//! reads and writes, directory creation, write-once commits by rename.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::PutPayload;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::connection::{Connection, is_transport_failure};
use super::pool::Lease;
use crate::error::Error;

/// Requests in flight per transfer.
const PIPELINE: usize = 16;
/// How often `put` creates missing directories and tries again, and how often one directory
/// walk starts again (a concurrent delete may remove an empty directory in between). Each
/// retry means another request made progress, so these cannot spin forever.
const MKDIR_ATTEMPTS: usize = 16;

/// An SFTP failure as this crate's error; a transport failure takes the connection out of
/// service.
pub(crate) fn sftp_error(
    conn: &Connection,
    op: &'static str,
    path: &str,
    source: SftpError,
) -> Error {
    if is_transport_failure(&source) {
        conn.mark_broken();
    }
    Error::Sftp {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The status code of a failed request, if the server sent one.
pub(crate) fn status_of(error: &Error) -> Option<StatusCode> {
    match error {
        Error::Sftp {
            source: SftpError::Status(s),
            ..
        } => Some(s.status_code),
        _ => None,
    }
}

/// The mode bits' file type.
const TYPE_MASK: u32 = 0o170000;

/// Whether the attributes describe a regular file.
pub(crate) fn is_regular(attrs: &FileAttributes) -> bool {
    attrs.permissions.is_some_and(|p| p & TYPE_MASK == 0o100000)
}

/// Whether the attributes describe a directory.
pub(crate) fn is_directory(attrs: &FileAttributes) -> bool {
    attrs.permissions.is_some_and(|p| p & TYPE_MASK == 0o040000)
}

/// An open remote file; closed explicitly with [`OpenFile::close`], or in the background
/// when dropped.
pub(crate) struct OpenFile {
    conn: Arc<Connection>,
    /// Keeps the connection counted as busy while the file is open.
    lease: Option<Lease>,
    pub(crate) handle: String,
    pub(crate) path: String,
    closed: bool,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile")
            .field("path", &self.path)
            .finish()
    }
}

impl OpenFile {
    /// Opens `path` with `flags`.
    pub(crate) async fn open(
        conn: Arc<Connection>,
        path: &str,
        flags: OpenFlags,
    ) -> Result<Self, Error> {
        let permit = conn
            .handles
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Protocol {
                path: path.to_owned(),
                reason: "connection closed".into(),
            })?;
        let handle = conn
            .sftp
            .open(path, flags, FileAttributes::empty())
            .await
            .map_err(|e| sftp_error(&conn, "open", path, e))?
            .handle;
        Ok(Self {
            conn,
            lease: None,
            handle,
            path: path.to_owned(),
            closed: false,
            _permit: permit,
        })
    }

    /// Keeps `lease` (the connection counted busy) until the file is closed or dropped.
    pub(crate) fn hold(mut self, lease: Lease) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The connection the file is open on.
    pub(crate) fn shared_conn(&self) -> Arc<Connection> {
        self.conn.clone()
    }

    /// The attributes of the open file.
    pub(crate) async fn stat(&self) -> Result<FileAttributes, Error> {
        Ok(self
            .conn
            .sftp
            .fstat(self.handle.as_str())
            .await
            .map_err(|e| sftp_error(&self.conn, "fstat", &self.path, e))?
            .attrs)
    }

    /// Closes the handle and reports the server's answer (a failed close can mean lost
    /// data).
    pub(crate) async fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.conn
            .sftp
            .close(self.handle.as_str())
            .await
            .map(|_| ())
            .map_err(|e| sftp_error(&self.conn, "close", &self.path, e))
    }

    /// Flushes the file to the server's disk (where the server offers `fsync@openssh.com`,
    /// as OpenSSH does), then closes it: what a put writes survives a power cut of the
    /// server once the put returns.
    pub(crate) async fn sync_and_close(self) -> Result<(), Error> {
        if self.conn.fsync {
            self.conn
                .sftp
                .fsync(self.handle.as_str())
                .await
                .map_err(|e| sftp_error(&self.conn, "fsync", &self.path, e))?;
        }
        self.close().await
    }

    /// Writes `payload` at `offset` with several requests in flight.
    pub(crate) async fn write_all_at(&self, offset: u64, payload: PutPayload) -> Result<(), Error> {
        write_at(
            self.conn.clone(),
            self.handle.clone(),
            self.path.clone(),
            offset,
            payload,
        )
        .await
    }

    /// Reads exactly `range` (the file must be at least that long).
    pub(crate) async fn read_exact(&self, range: Range<u64>) -> Result<Bytes, Error> {
        read_exact(&self.conn, &self.handle, &self.path, range).await
    }

    /// Streams `range` of the file with reads pipelined; the handle closes when the stream
    /// ends or is dropped.
    pub(crate) fn into_stream(self, range: Range<u64>) -> BoxStream<'static, Result<Bytes, Error>> {
        let chunk = u64::from(self.conn.chunk);
        let pieces = (range.start..range.end)
            .step_by(chunk as usize)
            .map(move |start| start..(start + chunk).min(range.end));
        let file = Arc::new(self);
        stream::iter(pieces)
            .map(move |piece| {
                let file = file.clone();
                async move { file.read_exact(piece).await }
            })
            .buffered(PIPELINE)
            .boxed()
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let conn = self.conn.clone();
            let handle = std::mem::take(&mut self.handle);
            runtime.spawn(async move {
                let _ = conn.sftp.close(handle).await;
            });
        }
    }
}

/// Reads exactly `range` of an open handle.
async fn read_exact(
    conn: &Connection,
    handle: &str,
    path: &str,
    range: Range<u64>,
) -> Result<Bytes, Error> {
    let want = (range.end - range.start) as usize;
    let mut out = BytesMut::new();
    let mut offset = range.start;
    while out.len() < want {
        let len = (want - out.len()).min(conn.chunk as usize) as u32;
        match conn.sftp.read(handle, offset, len).await {
            Ok(data) if data.data.is_empty() || data.data.len() > len as usize => {
                return Err(Error::Protocol {
                    path: path.to_owned(),
                    reason: format!("asked for {len} bytes at {offset}, got {}", data.data.len()),
                });
            }
            Ok(data) => {
                offset += data.data.len() as u64;
                if out.is_empty() && data.data.len() == want {
                    return Ok(Bytes::from(data.data));
                }
                out.extend_from_slice(&data.data);
            }
            Err(SftpError::Status(s)) if s.status_code == StatusCode::Eof => {
                return Err(Error::Protocol {
                    path: path.to_owned(),
                    reason: format!("file ended at {offset}, before its recorded size"),
                });
            }
            Err(e) => return Err(sftp_error(conn, "read", path, e)),
        }
    }
    Ok(out.freeze())
}

/// Writes `payload` to an open handle from `offset` on, several requests in flight.
pub(crate) async fn write_at(
    conn: Arc<Connection>,
    handle: String,
    path: String,
    offset: u64,
    payload: PutPayload,
) -> Result<(), Error> {
    let chunk = conn.chunk as usize;
    let mut pieces = Vec::new();
    let mut at = offset;
    for part in payload.iter() {
        let mut start = 0;
        while start < part.len() {
            let end = (start + chunk).min(part.len());
            pieces.push((at, part.slice(start..end)));
            at += (end - start) as u64;
            start = end;
        }
    }
    stream::iter(pieces)
        .map(|(at, bytes)| {
            let (conn, handle, path) = (&conn, &handle, &path);
            async move {
                conn.sftp
                    .write(handle.as_str(), at, bytes.to_vec())
                    .await
                    .map(|_| ())
                    .map_err(|e| sftp_error(conn, "write", path, e))
            }
        })
        .buffer_unordered(PIPELINE)
        .try_collect::<()>()
        .await
}

/// Whether `dir` lies strictly below `root` (both absolute, no trailing slash).
fn is_below(root: &str, dir: &str) -> bool {
    match dir.strip_prefix(root) {
        Some(rest) => rest.starts_with('/') || (root == "/" && !rest.is_empty()),
        None => false,
    }
}

/// The directory part of a remote path (`/a/b` for `/a/b/c`).
pub(crate) fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

/// Creates `dir` and its missing parents (existing directories are fine).
///
/// A concurrent delete may prune an emptied directory between our creating it and creating
/// the next level below it (`prune_empty_dirs`); the walk then starts again, a bounded number
/// of times.
pub(crate) async fn mkdir_all(conn: &Connection, dir: &str) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match mkdir_walk(conn, dir).await? {
            Walk::Done => return Ok(()),
            Walk::Vanished(e) if attempt >= MKDIR_ATTEMPTS => return Err(e),
            Walk::Vanished(_) => {}
        }
    }
}

/// The outcome of one [`mkdir_walk`].
enum Walk {
    Done,
    /// A directory created during the walk was removed again before the next level was
    /// made below it.
    Vanished(Error),
}

/// One walk up to the deepest existing ancestor, then down creating each level.
async fn mkdir_walk(conn: &Connection, dir: &str) -> Result<Walk, Error> {
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        match conn.sftp.mkdir(current, FileAttributes::empty()).await {
            Ok(_) => break,
            Err(e) => {
                let e = sftp_error(conn, "mkdir", current, e);
                match existing_dir(conn, current).await? {
                    Some(true) => break,
                    Some(false) => return Err(file_in_the_way(current)),
                    None => match parent(current) {
                        Some(p) if p != current => {
                            missing.push(current);
                            current = p;
                        }
                        _ => return Err(e),
                    },
                }
            }
        }
    }
    for dir in missing.into_iter().rev() {
        if let Err(e) = conn.sftp.mkdir(dir, FileAttributes::empty()).await {
            let e = sftp_error(conn, "mkdir", dir, e);
            match existing_dir(conn, dir).await? {
                Some(true) => {}
                Some(false) => return Err(file_in_the_way(dir)),
                // Its parent, made a moment ago, was pruned by a concurrent delete.
                None => return Ok(Walk::Vanished(e)),
            }
        }
    }
    Ok(Walk::Done)
}

/// Whether `path` is a directory (`Some(true)`), something else (`Some(false)`) or missing.
async fn existing_dir(conn: &Connection, path: &str) -> Result<Option<bool>, Error> {
    match conn.sftp.stat(path).await {
        Ok(a) => Ok(Some(is_directory(&a.attrs))),
        Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(None),
        Err(other) => Err(sftp_error(conn, "stat", path, other)),
    }
}

fn file_in_the_way(path: &str) -> Error {
    Error::Protocol {
        path: path.to_owned(),
        reason: "a file stands where a directory is needed".into(),
    }
}

/// Opens a new file for writing (exclusive create), creating missing directories.
pub(crate) async fn create_file(conn: Arc<Connection>, path: &str) -> Result<OpenFile, Error> {
    let flags = OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE | OpenFlags::TRUNCATE;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match OpenFile::open(conn.clone(), path, flags).await {
            Ok(f) => return Ok(f),
            Err(e) if attempt < MKDIR_ATTEMPTS && status_of(&e) == Some(StatusCode::NoSuchFile) => {
                if let Some(dir) = parent(path) {
                    mkdir_all(&conn, dir).await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// A fresh temporary name beside `path`: `NAME#DIGITS`, which listings skip (the same
/// convention as object_store's `LocalFileSystem`).
pub(crate) fn temp_name(path: &str) -> String {
    format!("{path}#{}", rand::random::<u64>())
}

/// Whether a file name is a temporary name of this store.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, digits)| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// How a finished temporary file takes its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// Only if the name is free (exclusive create).
    Create,
    /// Replacing what is there.
    Overwrite,
}

/// The outcome of renaming onto a taken name with [`Commit::Create`].
#[derive(Debug)]
pub(crate) enum Renamed {
    Done,
    Exists,
}

/// Renames `from` to `to`. OpenSSH's plain rename of a regular file is a hard link plus
/// unlink, so it fails when `to` exists: that is the exclusive create. An overwrite uses
/// `posix-rename@openssh.com` where offered, else removes the old file first.
pub(crate) async fn rename(
    conn: &Connection,
    from: &str,
    to: &str,
    mode: Commit,
) -> Result<Renamed, Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = if mode == Commit::Overwrite && conn.posix_rename {
            conn.posix_rename(from, to).await
        } else {
            conn.sftp.rename(from, to).await.map(|_| ())
        };
        let error = match result {
            Ok(()) => return Ok(Renamed::Done),
            Err(e) => sftp_error(conn, "rename", to, e),
        };
        if attempt >= MKDIR_ATTEMPTS || is_transport(&error) {
            return Err(error);
        }
        // Why did it fail? Without the source nothing can help (the error says NotFound).
        match conn.sftp.stat(from).await {
            Ok(_) => {}
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                return Err(error);
            }
            Err(e) => return Err(sftp_error(conn, "stat", from, e)),
        }
        match conn.sftp.stat(to).await {
            Ok(a) if is_directory(&a.attrs) => return Err(error),
            Ok(_) if mode == Commit::Create => return Ok(Renamed::Exists),
            // posix-rename replaces files: its failure is not about the target existing.
            Ok(_) if conn.posix_rename => return Err(error),
            Ok(_) => match conn.sftp.remove(to).await {
                Ok(_) => {}
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
                Err(e) => return Err(sftp_error(conn, "remove", to, e)),
            },
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                // The target's directory may be missing.
                match parent(to) {
                    Some(dir) => mkdir_all(conn, dir).await?,
                    None => return Err(error),
                }
            }
            Err(e) => return Err(sftp_error(conn, "stat", to, e)),
        }
    }
}

fn is_transport(error: &Error) -> bool {
    matches!(error, Error::Sftp { source, .. } if is_transport_failure(source))
}

/// Removes a file, ignoring a missing one.
pub(crate) async fn remove_quietly(conn: &Connection, path: &str) {
    let _ = conn.sftp.remove(path).await;
}

/// Removes the now empty directories above a deleted object, up to (not including) `root`.
pub(crate) async fn prune_empty_dirs(conn: &Connection, root: &str, path: &str) {
    let mut current = parent(path);
    while let Some(dir) = current {
        if !is_below(root, dir) {
            break;
        }
        if conn.sftp.rmdir(dir).await.is_err() {
            break;
        }
        current = parent(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        assert_eq!(parent("/a/b/c"), Some("/a/b"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert!(is_below("/srv/b", "/srv/b/x"));
        assert!(!is_below("/srv/b", "/srv/b"));
        assert!(!is_below("/srv/b", "/srv/backup2"));
        assert!(!is_below("/srv/b", "/srv"));
        assert!(is_below("/", "/a"));
        assert!(!is_below("/", "/"));
        let tmp = temp_name("/r/obj");
        assert!(tmp.starts_with("/r/obj#") && is_temp_name(&tmp));
        for name in ["obj", "a#b", "a#", "a#12x", "#"] {
            assert!(!is_temp_name(name), "{name}");
        }
        assert!(is_temp_name("photo.jpg#0123"));
    }
}
