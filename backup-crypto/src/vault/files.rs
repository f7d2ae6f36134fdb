//! The key files of a state directory: their stamps, reading them, the directory itself.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::master::MasterKey;

/// Identity of a key file's contents: a replaced or rewritten file gets another stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
}

impl Stamp {
    pub(super) fn new(metadata: &fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            #[cfg(unix)]
            dev: metadata.dev(),
            #[cfg(unix)]
            ino: metadata.ino(),
        }
    }

    /// The stamp of the file at `path`, `None` if there is none.
    pub(super) fn of(path: &Path) -> Result<Option<Self>> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(Self::new(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// Reads a key file with the stamp of what was read; `None` if there is no file.
fn load_stamped(path: &Path) -> Result<Option<(MasterKey, Stamp)>> {
    match MasterKey::load_with_metadata(path) {
        Ok((key, metadata)) => Ok(Some((key, Stamp::new(&metadata)))),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What looking at a key file found.
pub(super) enum Seen {
    /// The file last seen (`known`), not read again.
    Unchanged,
    /// No file.
    Gone,
    /// A new or changed file, read.
    Read(MasterKey, Stamp),
}

impl Seen {
    /// Looks at the key file at `path`, reading it only if its stamp is not `known`.
    pub(super) fn look(path: &Path, known: Option<Stamp>) -> Result<Self> {
        match Stamp::of(path)? {
            None => Ok(Self::Gone),
            Some(stamp) if Some(stamp) == known => Ok(Self::Unchanged),
            Some(_) => Ok(match load_stamped(path)? {
                Some((key, stamp)) => Self::Read(key, stamp),
                None => Self::Gone,
            }),
        }
    }
}

/// Creates `dir` (and missing parents) if missing; the directory itself gets mode 0700
/// whatever the umask. An existing directory is left as it is.
pub(super) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let mut created = builder.create(dir);
    if let Err(e) = &created
        && e.kind() == io::ErrorKind::NotFound
        && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
    {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        created = builder.create(dir);
    }
    match created {
        Ok(()) => {
            #[cfg(unix)]
            fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| Error::io(dir, e))?;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}
