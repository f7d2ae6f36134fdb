//! Writing restored entries without ever leaving the target directory: every path is built
//! from checked single components, existing directories on the way must be real directories
//! (a symlink there is [`Error::PathEscapes`]), files are written under a temporary name with
//! exclusive create (never through a planted symlink) and renamed into place only once every
//! chunk authenticated.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::repo::is_safe_name;

/// Directories already checked (or created) under one target root.
#[derive(Debug)]
pub(crate) struct SafeDirs {
    root: PathBuf,
    checked: HashSet<PathBuf>,
}

impl SafeDirs {
    pub(crate) fn new(root: PathBuf) -> Result<Self> {
        let meta = std::fs::symlink_metadata(&root).map_err(|e| Error::io(&root, e))?;
        if !meta.is_dir() {
            return Err(Error::PathEscapes {
                path: root.display().to_string(),
            });
        }
        Ok(Self {
            root,
            checked: HashSet::new(),
        })
    }

    /// Makes sure the directory `components` exists as a real directory, creating what is
    /// missing; a symlink or file in the way is refused.
    pub(crate) fn ensure(&mut self, components: &[&[u8]]) -> Result<PathBuf> {
        let mut p = self.root.clone();
        for c in components {
            if !is_safe_name(c) {
                return Err(Error::PathEscapes {
                    path: String::from_utf8_lossy(c).into_owned(),
                });
            }
            p.push(OsStr::from_bytes(c));
            if self.checked.contains(&p) {
                continue;
            }
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::PathEscapes {
                        path: p.display().to_string(),
                    });
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    // A file where the snapshot has a directory: the snapshot wins.
                    std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                    std::fs::create_dir(&p).map_err(|e| Error::io(&p, e))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&p).map_err(|e| Error::io(&p, e))?;
                }
                Err(e) => return Err(Error::io(&p, e)),
            }
            self.checked.insert(p.clone());
        }
        Ok(p)
    }
}

fn system_time(mtime_ns: i64) -> SystemTime {
    if mtime_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(mtime_ns as u64)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_nanos(mtime_ns.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// The temporary name beside `dir/name` (hidden) for a restore writing it as `unique` (a
/// random token of the restore and the file's number); nothing is created yet.
pub(crate) fn temp_path(dir: &Path, name: &[u8], unique: &str) -> PathBuf {
    let mut tmp_name = b".".to_vec();
    tmp_name.extend_from_slice(&name[..name.len().min(100)]);
    tmp_name.extend_from_slice(b".restore-");
    tmp_name.extend_from_slice(unique.as_bytes());
    dir.join(OsStr::from_bytes(&tmp_name))
}

/// Creates the temporary file `tmp` with exclusive create (never through a planted
/// symlink), open for writing; the restore writes into it and [`finish_file`] moves it into
/// place.
pub(crate) fn create_temp(tmp: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| Error::io(tmp, e))
}

/// Opens the temporary file `tmp` again for writing; a symlink put in its place is refused,
/// never followed (Linux: `O_NOFOLLOW`).
pub(crate) fn open_temp(tmp: &Path) -> Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    options.open(tmp).map_err(|e| Error::io(tmp, e))
}

/// Sets a completed temporary file's mode and mtime (through `file`, open on `tmp`, or by
/// opening `tmp`) and renames it over `dir/name` (a directory in the way is removed: the
/// snapshot has a file there).
pub(crate) fn finish_file(
    file: Option<std::fs::File>,
    dir: &Path,
    name: &[u8],
    tmp: &Path,
    mode: u32,
    mtime_ns: i64,
) -> Result<()> {
    let file = match file {
        Some(f) => f,
        None => open_temp(tmp)?,
    };
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))
        .map_err(|e| Error::io(tmp, e))?;
    file.set_modified(system_time(mtime_ns))
        .map_err(|e| Error::io(tmp, e))?;
    drop(file);
    let final_path = dir.join(OsStr::from_bytes(name));
    if let Ok(m) = std::fs::symlink_metadata(&final_path)
        && m.is_dir()
    {
        std::fs::remove_dir_all(&final_path).map_err(|e| Error::io(&final_path, e))?;
    }
    std::fs::rename(tmp, &final_path).map_err(|e| Error::io(&final_path, e))
}

/// Creates a symlink at `dir/name` (replacing a file or link there; never following one).
pub(crate) fn write_symlink(dir: &Path, name: &[u8], target: &[u8]) -> Result<()> {
    let path = dir.join(OsStr::from_bytes(name));
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?,
        Ok(_) => std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).map_err(|e| Error::io(&path, e))
}

/// Sets a directory's permissions and modification time (after its children are written).
pub(crate) fn finish_dir(path: &Path, mode: u32, mtime_ns: i64) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o1777))
        .map_err(|e| Error::io(path, e))?;
    let dir = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    dir.set_modified(system_time(mtime_ns))
        .map_err(|e| Error::io(path, e))
}

/// Removes entries of `dir` whose names are not in `keep` (replace restores). Directories
/// are removed with their contents; symlinks are removed, never followed.
pub(crate) fn prune(dir: &Path, keep: &HashSet<&[u8]>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if keep.contains(name.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if ft.is_dir() {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink put where a temporary file was is refused when the restore opens that file
    /// again: the restore never writes through it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_symlink_in_place_of_a_temporary_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        let tmp = dir.path().join(".f.restore-x");
        create_temp(&tmp).unwrap();
        std::fs::remove_file(&tmp).unwrap();
        std::os::unix::fs::symlink(&outside, &tmp).unwrap();
        assert!(open_temp(&tmp).is_err());
        assert!(finish_file(None, dir.path(), b"f", &tmp, 0o600, 0).is_err());
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        let mode = std::fs::metadata(&outside).unwrap().permissions().mode();
        assert_ne!(mode & 0o777, 0o600);
    }
}
