//! File modes of everything a server writes (state directory, master key, catalog, stat
//! caches, `file://` destinations) whatever the process umask. A binary of its own: the
//! umask is process-wide.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::Mode;
use rustix::process::umask;

mod server_support;
use server_support::state_backed_up_twice;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every directory at or below `root` that is not 0700 and every file that is not 0600.
fn not_private(root: &Path) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let m = mode(&dir);
        if m != 0o700 {
            wrong.push(format!("directory {} is {m:o}", dir.display()));
        }
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                let m = mode(&e.path());
                if m != 0o600 {
                    wrong.push(format!("{} is {m:o}", e.path().display()));
                }
            }
        }
    }
    wrong.sort();
    wrong
}

async fn state_and_destination(mask: u32) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("state");
    let dest = dir.path().join("dest");
    let (_state, account) = state_backed_up_twice(dir.path(), "modes", 2).await;

    assert_eq!(mode(&home), 0o700, "umask {mask:03o}: the state directory");
    assert_eq!(mode(&home.join("master.key")), 0o600, "umask {mask:03o}");
    let catalog = home.join("catalog.db");
    assert!(catalog.exists());
    for suffix in ["", "-wal", "-shm"] {
        let path = home.join(format!("catalog.db{suffix}"));
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "umask {mask:03o}: {}", path.display());
        }
    }
    let stat_cache = home.join("statcache");
    assert!(
        std::fs::read_dir(stat_cache.join(account.id.to_string()))
            .unwrap()
            .next()
            .is_some(),
        "the backups keep a stat cache"
    );
    assert_eq!(
        not_private(&stat_cache),
        Vec::<String>::new(),
        "umask {mask:03o}"
    );
    assert_eq!(not_private(&home), Vec::<String>::new(), "umask {mask:03o}");
    assert!(dest.join("accounts").join(account.id.to_string()).is_dir());
    assert_eq!(not_private(&dest), Vec::<String>::new(), "umask {mask:03o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_written_is_private_whatever_the_umask() {
    for mask in [0o022, 0o000] {
        let previous = umask(Mode::from_raw_mode(mask));
        state_and_destination(mask).await;
        umask(previous);
    }
}
