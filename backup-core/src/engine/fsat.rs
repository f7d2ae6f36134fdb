//! File-system calls relative to open directories, so that no lookup inside an account's
//! tree ever follows a link the tenant planted: every name is one component opened with
//! `O_NOFOLLOW` under a directory handle, and what was opened is checked against what was
//! listed before a byte is read. Path length is unlimited (no path is ever built).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, SeekFrom};

use crate::ports::TreeRoot;
use crate::repo::{Extent, Xattr};

/// What a backup needs of an `lstat` or `fstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStat {
    pub(crate) kind: FileType,
    /// Permission bits (`st_mode & 0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) size: u64,
    /// 512-byte blocks allocated.
    pub(crate) blocks: u64,
    pub(crate) mtime_ns: i64,
    pub(crate) ctime_ns: i64,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    pub(crate) rdev: u64,
}

fn ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl From<rustix::fs::Stat> for FileStat {
    fn from(s: rustix::fs::Stat) -> Self {
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        Self {
            kind: FileType::from_raw_mode(s.st_mode as _),
            mode: (s.st_mode as u32) & 0o7777,
            uid: s.st_uid as u32,
            gid: s.st_gid as u32,
            size: s.st_size.max(0) as u64,
            blocks: s.st_blocks.max(0) as u64,
            mtime_ns: ns(s.st_mtime as i64, s.st_mtime_nsec as i64),
            ctime_ns: ns(s.st_ctime as i64, s.st_ctime_nsec as i64),
            dev: s.st_dev as u64,
            ino: s.st_ino as u64,
            nlink: s.st_nlink as u64,
            rdev: s.st_rdev as u64,
        }
    }
}

impl FileStat {
    /// Whether `other` is the same file (device and inode) of the same type.
    pub(crate) fn same_file(&self, other: &FileStat) -> bool {
        self.kind == other.kind && self.dev == other.dev && self.ino == other.ino
    }

    /// Whether the content may have changed between `self` and `later` (same file).
    pub(crate) fn changed_since(&self, later: &FileStat) -> bool {
        self.size != later.size
            || self.mtime_ns != later.mtime_ns
            || self.ctime_ns != later.ctime_ns
    }
}

/// The name as a path argument (one component; never a path).
pub(crate) fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// `lstat` of `name` in `dir`.
pub(crate) fn stat_at(dir: impl AsFd, name: &[u8]) -> io::Result<FileStat> {
    Ok(rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?.into())
}

/// `fstat`.
pub(crate) fn fstat(fd: impl AsFd) -> io::Result<FileStat> {
    Ok(rustix::fs::fstat(fd)?.into())
}

/// Opens `name` in `dir` to read a regular file: no link followed, and a FIFO or device
/// that took the file's place is neither blocked on nor made the controlling terminal.
pub(crate) fn open_file_at(dir: impl AsFd, name: &[u8]) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        os(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Opens the directory `name` in `dir` without following a link.
pub(crate) fn open_dir_at(dir: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        os(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in the directory `dir` (not `.` and `..`), unsorted.
pub(crate) fn list_dir(dir: impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// The extended attributes of an open file or directory, sorted by name; none where the
/// file system has none.
pub(crate) fn xattrs(fd: impl AsFd) -> io::Result<Vec<Xattr>> {
    let fd = fd.as_fd();
    let mut list = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::flistxattr(fd, &mut list[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let need = rustix::fs::flistxattr_query(fd)?;
                list.resize(need.max(list.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in list[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::fgetxattr(fd, os(name), &mut value[..]) {
                Ok(len) => break Some(len),
                Err(rustix::io::Errno::RANGE) => {
                    let need = rustix::fs::fgetxattr_query(fd, os(name))?;
                    value.resize(need.max(value.len() * 2), 0);
                }
                // Removed since it was listed.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push(Xattr {
                name: name.to_vec(),
                value,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Opens an item's root directory: `base` as the integrator gave it (links followed), then
/// each component of `path` below it without following a link (created private, 0700, when
/// `create` and missing). A `..` component is refused.
pub(crate) fn open_root(root: &TreeRoot, create: bool) -> io::Result<OwnedFd> {
    let mut fd = rustix::fs::open(
        &root.base,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for c in root.path.components() {
        let name = match c {
            Component::Normal(n) => n.as_bytes(),
            Component::CurDir => continue,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} leaves its base directory", root.path.display()),
                ));
            }
        };
        if create {
            match rustix::fs::mkdirat(&fd, os(name), Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        fd = open_dir_at(&fd, name)?;
    }
    Ok(fd)
}

/// The data ranges of the open regular file `file` of `size` bytes when it has holes
/// (`SEEK_DATA` / `SEEK_HOLE`); `None` when it has none or the file system cannot say.
/// Only asked when the blocks allocated cover less than the size, so a dense file costs
/// nothing. Leaves the file offset anywhere (reads are positioned).
pub(crate) fn data_extents(file: &File, size: u64) -> io::Result<Option<Vec<Extent>>> {
    let mut extents = Vec::new();
    let mut at = 0u64;
    while at < size {
        let start = match rustix::fs::seek(file, SeekFrom::Data(at)) {
            Ok(s) => s,
            // No data after `at`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL) if at == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = rustix::fs::seek(file, SeekFrom::Hole(start))?.min(size);
        if end <= start {
            break;
        }
        extents.push(Extent {
            offset: start,
            len: end - start,
        });
        at = end;
    }
    if extents.len() == 1 && extents[0].offset == 0 && extents[0].len == size {
        return Ok(None);
    }
    Ok(Some(extents))
}

/// Reads a sparse file's data ranges one after the other. A file that shrinks while it is
/// read gives zeros for the missing bytes, so the stream always matches the ranges (the
/// backup reports the file as changed).
pub(crate) struct ExtentReader<'a> {
    file: &'a File,
    extents: &'a [Extent],
    index: usize,
    done: u64,
}

impl<'a> ExtentReader<'a> {
    pub(crate) fn new(file: &'a File, extents: &'a [Extent]) -> Self {
        Self {
            file,
            extents,
            index: 0,
            done: 0,
        }
    }
}

impl io::Read for ExtentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        while let Some(x) = self.extents.get(self.index) {
            let left = x.len - self.done;
            if left == 0 {
                self.index += 1;
                self.done = 0;
                continue;
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match self.file.read_at(&mut buf[..want], x.offset + self.done)? {
                0 => {
                    buf[..want].fill(0);
                    want
                }
                n => n,
            };
            self.done += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

/// Whether `path` names nothing outside its base (no `..`, not absolute).
pub(crate) fn is_relative_below(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}
