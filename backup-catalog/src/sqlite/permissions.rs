//! The catalog's files readable and writable by their owner only: the database holds every
//! account's key envelope.

use std::ffi::OsString;
use std::fs::{OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The mode of the database file and of its `-wal` and `-shm`.
pub(super) const FILE_MODE: u32 = 0o600;

/// Creates the database file at `path`, empty and mode 0600, unless it exists (SQLite would
/// create it with the process umask applied to 0644).
pub(super) fn create(path: &Path) -> Result<()> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::FileMode {
            action: "create",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Gives the database file at `path` and its `-wal` and `-shm`, those that exist, mode 0600
/// (SQLite creates the journal files with the database file's mode, so they follow).
pub(super) fn restrict(path: &Path) -> Result<()> {
    for file in [path.to_owned(), beside(path, "-wal"), beside(path, "-shm")] {
        let mode = match std::fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode() & 0o7777,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(source) => {
                let action = "inspect";
                return Err(Error::FileMode {
                    action,
                    path: file,
                    source,
                });
            }
        };
        if mode != FILE_MODE {
            std::fs::set_permissions(&file, Permissions::from_mode(FILE_MODE)).map_err(
                |source| Error::FileMode {
                    action: "set mode 0600 on",
                    path: file,
                    source,
                },
            )?;
        }
    }
    Ok(())
}

/// The journal file SQLite keeps beside the database: its path with `suffix` appended.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}
