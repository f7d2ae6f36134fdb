//! Writing restored entries without ever leaving the target directory or following a link
//! a tenant planted there: every call is relative to an open directory handle with one
//! checked name component (`mkdirat`, `openat` with `O_NOFOLLOW`, `renameat`, ...).
//!
//! Files, links and special files are made in a private staging directory at the item root
//! (`.bkrestore-TOKEN`, 0700): created 0600, given their owner, mode, times and extended
//! attributes there, and renamed into place only when complete, so nothing is ever visible
//! under its final name with partial content or a looser mode. A killed restore leaves only
//! its staging directory, which the next restore of the item removes.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::fsat::{self, os};
use crate::error::{Error, Result};
use crate::model::Ownership;
use crate::repo::{Attrs, Owner, OwnerNames, SpecialKind, is_safe_name};

/// The prefix of staging directories.
pub(crate) const STAGING_PREFIX: &[u8] = b".bkrestore-";

/// An I/O error on `what` (a name relative to the target, for messages).
pub(crate) fn io_err(what: &[u8], e: impl Into<std::io::Error>) -> Error {
    Error::io(
        PathBuf::from(String::from_utf8_lossy(what).into_owned()),
        e.into(),
    )
}

/// How recorded owners and modes become the restored ones.
#[derive(Debug, Clone)]
pub(crate) struct OwnerPolicy {
    ownership: Ownership,
    /// The item root's recorded owner (what [`Ownership::Account`] maps).
    account: Option<Owner>,
    /// With [`Ownership::Account`], the other recorded users and groups this server has
    /// under the same name but another id: recorded id to local id.
    users: HashMap<u32, u32>,
    groups: HashMap<u32, u32>,
}

impl OwnerPolicy {
    /// A policy; `names` are the snapshot's owner names, used by [`Ownership::Account`]
    /// to map the owners other than the account's by name.
    pub(crate) fn new(ownership: Ownership, account: Option<Owner>, names: &OwnerNames) -> Self {
        let (users, groups) = match ownership {
            Ownership::Account { .. } => super::owners::map_by_name(names),
            _ => Default::default(),
        };
        Self {
            ownership,
            account,
            users,
            groups,
        }
    }

    /// The owner to give, or `None` to leave the process user's.
    fn owner(&self, recorded: Option<Owner>) -> Option<Owner> {
        let recorded = recorded?;
        match self.ownership {
            Ownership::Recorded => Some(recorded),
            Ownership::None => None,
            Ownership::Account { uid, gid } => {
                let from = self.account;
                Some(Owner {
                    uid: if from.is_some_and(|a| a.uid == recorded.uid) {
                        uid
                    } else {
                        *self.users.get(&recorded.uid).unwrap_or(&recorded.uid)
                    },
                    gid: if from.is_some_and(|a| a.gid == recorded.gid) {
                        gid
                    } else {
                        *self.groups.get(&recorded.gid).unwrap_or(&recorded.gid)
                    },
                })
            }
        }
    }

    /// The mode to give: setuid and setgid are dropped when owners are not restored.
    fn mode(&self, recorded: u32) -> u32 {
        match self.ownership {
            Ownership::None => recorded & 0o1777,
            _ => recorded & 0o7777,
        }
    }
}

fn timestamps(mtime_ns: i64) -> Timestamps {
    let mtime = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        // The access time is the restore's.
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        last_modification: mtime,
    }
}

/// Sets extended attributes; those the file system or the process may not set
/// (`trusted.*` as a user, none at all on some file systems) are left out.
fn set_xattrs(fd: impl AsFd, attrs: &Attrs, what: &[u8]) -> Result<()> {
    let fd = fd.as_fd();
    for x in &attrs.xattrs {
        match rustix::fs::fsetxattr(fd, os(&x.name), &x.value, rustix::fs::XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) | Err(Errno::PERM) => {}
            Err(e) => return Err(io_err(what, e)),
        }
    }
    Ok(())
}

/// Gives the open file or directory `fd` its extended attributes, owner, mode and mtime
/// (in that order: a change of owner clears setuid and setgid, so the mode comes after).
pub(crate) fn apply_attrs(
    fd: impl AsFd,
    attrs: &Attrs,
    policy: &OwnerPolicy,
    what: &[u8],
) -> Result<()> {
    let fd = fd.as_fd();
    set_xattrs(fd, attrs, what)?;
    if let Some(o) = policy.owner(attrs.owner) {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(o.uid)),
            Some(rustix::fs::Gid::from_raw(o.gid)),
        )
        .map_err(|e| io_err(what, e))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(policy.mode(attrs.mode) as _))
        .map_err(|e| io_err(what, e))?;
    rustix::fs::futimens(fd, &timestamps(attrs.mtime_ns)).map_err(|e| io_err(what, e))
}

/// Gives the link or special file `name` in `dir` its owner, mode (not for links) and mtime,
/// by name, never following it (it lies in the private staging directory).
fn apply_attrs_at(
    dir: impl AsFd,
    name: &[u8],
    attrs: &Attrs,
    policy: &OwnerPolicy,
    link: bool,
    what: &[u8],
) -> Result<()> {
    let dir = dir.as_fd();
    if let Some(o) = policy.owner(attrs.owner) {
        rustix::fs::chownat(
            dir,
            os(name),
            Some(rustix::fs::Uid::from_raw(o.uid)),
            Some(rustix::fs::Gid::from_raw(o.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(what, e))?;
    }
    if !link {
        rustix::fs::chmodat(
            dir,
            os(name),
            Mode::from_raw_mode(policy.mode(attrs.mode) as _),
            AtFlags::empty(),
        )
        .map_err(|e| io_err(what, e))?;
    }
    rustix::fs::utimensat(
        dir,
        os(name),
        &timestamps(attrs.mtime_ns),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err(what, e))
}

/// Removes `name` in `dir` whatever it is: a directory with everything below it (walked by
/// handle, links never followed), anything else unlinked. Missing is fine.
pub(crate) fn remove_at(dir: impl AsFd, name: &[u8]) -> std::io::Result<()> {
    let dir = dir.as_fd();
    match rustix::fs::unlinkat(dir, os(name), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = match fsat::open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for child in fsat::list_dir(&sub)? {
        remove_at(&sub, &child)?;
    }
    drop(sub);
    match rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Opens the directory `name` in `parent`, creating it (0700) when missing; whatever else is
/// there (a file, a link) is replaced: the snapshot has a directory at that name.
pub(crate) fn ensure_dir_at(parent: impl AsFd, name: &[u8]) -> Result<OwnedFd> {
    let parent = parent.as_fd();
    if !is_safe_name(name) {
        return Err(Error::PathEscapes {
            path: String::from_utf8_lossy(name).into_owned(),
        });
    }
    match rustix::fs::mkdirat(parent, os(name), Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(io_err(name, e)),
    }
    match fsat::open_dir_at(parent, name) {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                || e.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) =>
        {
            remove_at(parent, name).map_err(|e| io_err(name, e))?;
            rustix::fs::mkdirat(parent, os(name), Mode::from_raw_mode(0o700))
                .map_err(|e| io_err(name, e))?;
            fsat::open_dir_at(parent, name).map_err(|e| io_err(name, e))
        }
        Err(e) => Err(io_err(name, e)),
    }
}

/// The private staging directory of one restore of one item.
#[derive(Debug)]
pub(crate) struct Staging {
    pub(crate) fd: OwnedFd,
    name: Vec<u8>,
}

impl Staging {
    /// Removes the staging directories earlier restores left in `root` (killed ones), then
    /// makes this restore's own.
    pub(crate) fn create(root: &OwnedFd, token: &str) -> Result<Self> {
        // Only a directory the restoring user owns is a staging directory: a tenant's own
        // file or directory of that name is live data and stays.
        let me = rustix::process::geteuid().as_raw();
        for name in fsat::list_dir(root).map_err(|e| io_err(b".", e))? {
            if name.starts_with(STAGING_PREFIX)
                && fsat::stat_at(root, &name)
                    .is_ok_and(|s| s.kind == rustix::fs::FileType::Directory && s.uid == me)
            {
                remove_at(root, &name).map_err(|e| io_err(&name, e))?;
            }
        }
        let mut name = STAGING_PREFIX.to_vec();
        name.extend_from_slice(token.as_bytes());
        rustix::fs::mkdirat(root, os(&name), Mode::from_raw_mode(0o700))
            .map_err(|e| io_err(&name, e))?;
        let fd = fsat::open_dir_at(root, &name).map_err(|e| io_err(&name, e))?;
        Ok(Self { fd, name })
    }

    /// The staging directory's own name in the item root.
    pub(crate) fn name(&self) -> &[u8] {
        &self.name
    }

    /// Creates the staged file `name`, private (0600) and empty.
    pub(crate) fn create_file(&self, name: &str) -> Result<std::fs::File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(name.as_bytes(), e))?;
        Ok(std::fs::File::from(fd))
    }

    /// Opens the staged file `name` again for writing.
    pub(crate) fn open_file(&self, name: &str) -> Result<std::fs::File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(name.as_bytes(), e))?;
        Ok(std::fs::File::from(fd))
    }

    /// Moves the staged `name` to `dir/target` (a directory there is removed first: the
    /// snapshot has something else at that name).
    pub(crate) fn publish(&self, name: &str, dir: impl AsFd, target: &[u8]) -> Result<()> {
        let dir = dir.as_fd();
        match rustix::fs::renameat(&self.fd, name, dir, os(target)) {
            Ok(()) => Ok(()),
            Err(Errno::ISDIR) | Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => {
                remove_at(dir, target).map_err(|e| io_err(target, e))?;
                rustix::fs::renameat(&self.fd, name, dir, os(target)).map_err(|e| io_err(target, e))
            }
            Err(e) => Err(io_err(target, e)),
        }
    }

    /// A complete staged file: attributes set through its handle, then moved into place.
    pub(crate) fn finish_file(
        &self,
        file: &std::fs::File,
        name: &str,
        attrs: &Attrs,
        policy: &OwnerPolicy,
        dir: impl AsFd,
        target: &[u8],
    ) -> Result<()> {
        apply_attrs(file, attrs, policy, target)?;
        self.publish(name, dir, target)
    }

    /// A hard link to the open staged or published file `file`, staged as `name`.
    pub(crate) fn link(&self, file: &std::fs::File, name: &str) -> Result<()> {
        // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the /proc path works for anyone.
        match rustix::fs::linkat(file, "", &self.fd, name, AtFlags::EMPTY_PATH) {
            Ok(()) => Ok(()),
            Err(_) => {
                let proc = format!("/proc/self/fd/{}", file.as_raw_fd());
                rustix::fs::linkat(
                    rustix::fs::CWD,
                    proc.as_str(),
                    &self.fd,
                    name,
                    AtFlags::SYMLINK_FOLLOW,
                )
                .map_err(|e| io_err(name.as_bytes(), e))
            }
        }
    }

    /// A symbolic link staged as `name`, with its owner and mtime.
    pub(crate) fn symlink(
        &self,
        name: &str,
        target: &[u8],
        attrs: &Attrs,
        policy: &OwnerPolicy,
        what: &[u8],
    ) -> Result<()> {
        rustix::fs::symlinkat(os(target), &self.fd, name).map_err(|e| io_err(what, e))?;
        apply_attrs_at(&self.fd, name.as_bytes(), attrs, policy, true, what)
    }

    /// A FIFO or device node staged as `name`, with its owner, mode and mtime.
    pub(crate) fn special(
        &self,
        name: &str,
        kind: SpecialKind,
        rdev: u64,
        attrs: &Attrs,
        policy: &OwnerPolicy,
        what: &[u8],
    ) -> Result<()> {
        let file_type = match kind {
            SpecialKind::Fifo => rustix::fs::FileType::Fifo,
            SpecialKind::CharDevice => rustix::fs::FileType::CharacterDevice,
            SpecialKind::BlockDevice => rustix::fs::FileType::BlockDevice,
        };
        rustix::fs::mknodat(
            &self.fd,
            name,
            file_type,
            Mode::from_raw_mode(0o600),
            rdev as _,
        )
        .map_err(|e| io_err(what, e))?;
        apply_attrs_at(&self.fd, name.as_bytes(), attrs, policy, false, what)
    }

    /// Removes the staging directory and whatever is left in it (files that failed).
    pub(crate) fn remove(self, root: &OwnedFd) -> Result<()> {
        drop(self.fd);
        remove_at(root, &self.name).map_err(|e| io_err(&self.name, e))
    }
}

/// Removes entries of `dir` whose names are not in `keep` (replace restores). Directories
/// are removed with their contents; links are removed, never followed.
pub(crate) fn prune(dir: &OwnedFd, keep: &HashSet<&[u8]>, what: &[u8]) -> Result<()> {
    for name in fsat::list_dir(dir).map_err(|e| io_err(what, e))? {
        if !keep.contains(name.as_slice()) {
            remove_at(dir, &name).map_err(|e| io_err(&name, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink where the snapshot has a directory is replaced, never followed.
    #[test]
    fn a_symlink_in_place_of_a_directory_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"keep").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
        let root = fsat::open_root(&crate::ports::TreeRoot::at(dir.path()), false).unwrap();
        let d = ensure_dir_at(&root, b"d").unwrap();
        rustix::fs::mkdirat(&d, "inner", Mode::from_raw_mode(0o700)).unwrap();
        assert!(dir.path().join("d/inner").is_dir());
        assert!(
            !std::fs::symlink_metadata(dir.path().join("d"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(!outside.path().join("inner").exists());
        assert_eq!(std::fs::read(outside.path().join("keep")).unwrap(), b"keep");
    }

    /// Staged files are private whatever the umask, and earlier staging directories go.
    #[test]
    fn staging_is_private_and_cleans_up_after_killed_restores() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".bkrestore-old")).unwrap();
        std::fs::write(dir.path().join(".bkrestore-old/0"), b"partial").unwrap();
        let root = fsat::open_root(&crate::ports::TreeRoot::at(dir.path()), false).unwrap();
        let staging = Staging::create(&root, "new").unwrap();
        assert!(!dir.path().join(".bkrestore-old").exists());
        let f = staging.create_file("0").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = f.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let st = std::fs::metadata(dir.path().join(".bkrestore-new")).unwrap();
        assert_eq!(st.permissions().mode() & 0o077, 0);
        staging.remove(&root).unwrap();
        assert!(!dir.path().join(".bkrestore-new").exists());
    }
}
