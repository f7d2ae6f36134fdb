//! Removing staging files that interrupted writes left behind.

use std::io;
use std::path::Path;
use std::time::SystemTime;

/// Whether `name` is a staging name, `OBJECT#N` (see `writes::create_staging`).
fn is_staging(name: &[u8]) -> bool {
    match name.iter().rposition(|b| *b == b'#') {
        Some(at) => {
            let digits = &name[at + 1..];
            at > 0 && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

/// Deletes every staging file under `root` last modified before `cutoff` (a process killed
/// between writing a staging file and renaming it into place leaves it; listings never show
/// it). Symbolic links are not followed. Returns how many were deleted; a file that
/// vanishes meanwhile is not an error.
pub fn sweep_staging(root: &Path, cutoff: SystemTime) -> io::Result<u64> {
    let mut deleted = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = match std::fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file()
                && is_staging(entry.file_name().as_encoded_bytes())
                && meta.modified()? < cutoff
            {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => deleted += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn removes_old_staging_files_only() {
        assert!(is_staging(b"abc#1") && is_staging(b"abc#12"));
        assert!(
            !is_staging(b"abc")
                && !is_staging(b"#1")
                && !is_staging(b"abc#")
                && !is_staging(b"a#b")
        );
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("accounts/x/packs/ab");
        std::fs::create_dir_all(&sub).unwrap();
        for name in ["pack#1", "pack", "other#2"] {
            std::fs::write(sub.join(name), b"x").unwrap();
        }
        // Nothing is older than a cutoff in the past.
        let past = SystemTime::now() - Duration::from_secs(3600);
        assert_eq!(sweep_staging(dir.path(), past).unwrap(), 0);
        let future = SystemTime::now() + Duration::from_secs(3600);
        assert_eq!(sweep_staging(dir.path(), future).unwrap(), 2);
        assert!(sub.join("pack").exists());
        assert!(!sub.join("pack#1").exists() && !sub.join("other#2").exists());
        assert_eq!(
            sweep_staging(&dir.path().join("missing"), future).unwrap(),
            0
        );
    }
}
