//! Private files: every directory the local store creates is mode 0700 and every file 0600,
//! whatever the process umask.
//!
//! Each is created with that mode, then given exactly that mode: the umask can only take
//! bits away at creation (so 000 cannot leave a file 0666), and a umask that takes away the
//! owner's own bits (0277) is undone. Directories and files that exist already are left as
//! they are.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The mode of the directories the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The mode of the files the store creates (objects and their staging files).
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates the store's root directory and its missing parents, each 0700; an existing
/// directory is left as it is.
pub(crate) fn create_root(root: &Path) -> io::Result<()> {
    create_dirs(root).map(drop)
}

/// Creates `dir` and its missing parents, each 0700; returns those created, parents first.
/// A directory another process or thread creates meanwhile is taken as it is.
pub(crate) fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    create_dirs_into(dir, &mut created)?;
    Ok(created)
}

fn create_dirs_into(dir: &Path, created: &mut Vec<PathBuf>) -> io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    match mkdir(dir) {
        Ok(()) => return made(dir, created),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) if dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) => create_dirs_into(parent, created)?,
        None => return Err(io::Error::other("no directory to create the path in")),
    }
    match mkdir(dir) {
        Ok(()) => made(dir, created),
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates one directory with mode 0700 less the umask (its parent must exist).
fn mkdir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Gives the directory just created exactly mode 0700 and records it.
fn made(dir: &Path, created: &mut Vec<PathBuf>) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    created.push(dir.to_path_buf());
    Ok(())
}

/// Creates the new file `path` 0600, open for reading and writing; fails with
/// `AlreadyExists` if the name is taken. The file is removed again if its mode cannot be
/// set.
pub(crate) fn create_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE)) {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    }
    Ok(file)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn directories_are_created_0700_and_existing_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let deep = dir.path().join("a/b/c");
        let created = create_dirs(&deep).unwrap();
        assert_eq!(
            created,
            [dir.path().join("a"), dir.path().join("a/b"), deep.clone()]
        );
        for d in &created {
            assert_eq!(mode(d), DIR_MODE, "{}", d.display());
        }
        assert_eq!(mode(dir.path()), 0o755);
        assert!(create_dirs(&deep).unwrap().is_empty());

        let file = dir.path().join("a/f");
        create_file(&file).unwrap();
        assert_eq!(mode(&file), FILE_MODE);
        let again = create_file(&file).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        // A file in the way of a directory is an error, not a directory.
        assert!(create_dirs(&file.join("below")).is_err());
    }
}
