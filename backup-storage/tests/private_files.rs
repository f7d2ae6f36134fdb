//! Local destinations are private whatever the umask: every directory the store creates is
//! 0700 and every file 0600, staging files included. The umask is process-wide, so this
//! binary holds this one test, which sets it.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use backup_core::ports::DeferredFlush;
use backup_storage::object_store::path::Path;
use backup_storage::object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rustix::fs::Mode;

#[test]
fn local_files_are_private_whatever_the_umask() {
    // 0277 takes away the owner's own bits: the exact mode is set after creation.
    for umask in [0o022, 0o000, 0o277] {
        let dir = tempfile::tempdir().unwrap();
        let previous = rustix::process::umask(Mode::from_raw_mode(umask));
        let outcome = std::panic::catch_unwind(|| write_everything(dir.path(), umask));
        rustix::process::umask(previous);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

fn mode(path: &FsPath) -> u32 {
    mode_if_there(path).unwrap_or_else(|| panic!("{} is missing", path.display()))
}

/// The mode, or `None` if the file is gone (a staging file published meanwhile).
fn mode_if_there(path: &FsPath) -> Option<u32> {
    let metadata = std::fs::symlink_metadata(path).ok()?;
    Some(metadata.permissions().mode() & 0o7777)
}

/// Every directory and file below `dir`.
fn walk(dir: &FsPath) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // Directories and files may go away meanwhile (a deferred put being published).
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// Asserts that every directory below `dir` is 0700 and every file 0600; returns how many
/// files there are and how many of them are staging files (`NAME#N`).
#[track_caller]
fn assert_private(dir: &FsPath, umask: u32, step: &str) -> (usize, usize) {
    let (mut files, mut staging) = (0, 0);
    for path in walk(dir) {
        let Some(found) = mode_if_there(&path) else {
            continue;
        };
        let (want, what) = if path.is_dir() {
            (0o700, "directory")
        } else {
            files += 1;
            if path.to_string_lossy().contains('#') {
                staging += 1;
            }
            (0o600, "file")
        };
        assert_eq!(
            found,
            want,
            "umask {umask:03o}, {step}: {what} {} is {found:03o}",
            path.display(),
        );
    }
    (files, staging)
}

fn deferred() -> PutOptions {
    let mut opts = PutOptions::default();
    opts.extensions.insert(DeferredFlush);
    opts
}

fn write_everything(dir: &FsPath, umask: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A root that does not exist yet is created 0700, with its missing parents.
        let missing = dir.join("not/yet/there");
        let (store, root) = backup_storage::open(&format!("file://{}", missing.display())).unwrap();
        for created in ["not", "not/yet", "not/yet/there"] {
            assert_eq!(
                mode(&dir.join(created)),
                0o700,
                "umask {umask:03o}: {created}"
            );
        }
        exercise(&store, &root, &missing, umask).await;

        // A root that exists is left as it is; what the store creates in it is private.
        let existing = dir.join("existing");
        std::fs::create_dir(&existing).unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (store, root) =
            backup_storage::open(&format!("file://{}", existing.display())).unwrap();
        assert_eq!(mode(&existing), 0o755);
        exercise(&store, &root, &existing, umask).await;
        assert_eq!(mode(&existing), 0o755);
    });
}

/// Writes objects at several depths in every way the store writes, checking the tree while
/// staging files are visible and at the end.
async fn exercise(store: &Arc<dyn ObjectStore>, root: &Path, dir: &FsPath, umask: u32) {
    // `Path::from` splits on `/`: each name is several levels deep.
    let key = |name: &str| Path::from_iter(root.parts().chain(Path::from(name).parts()));
    for name in ["top", "a/one", "a/b/two", "a/b/c/d/three"] {
        store.put(&key(name), "data".into()).await.unwrap();
    }
    store
        .put_opts(
            &key("locks/acct/lease"),
            "mine".into(),
            PutMode::Create.into(),
        )
        .await
        .unwrap();
    store
        .copy(&key("a/one"), &key("copies/x/y/one"))
        .await
        .unwrap();
    store
        .copy_if_not_exists(&key("a/one"), &key("copies/z/one"))
        .await
        .unwrap();
    store
        .rename(&key("top"), &key("moved/p/top"))
        .await
        .unwrap();
    store
        .rename_if_not_exists(&key("a/b/two"), &key("moved/q/two"))
        .await
        .unwrap();
    assert_private(dir, umask, "after puts, copies and renames");

    // Deferred puts (packs) wait under their staging names until the next barrier; the
    // tree is checked while they may still be there.
    for name in ["packs/ab/p1", "packs/cd/ef/p2"] {
        store
            .put_opts(&key(name), PutPayload::from_static(b"pack"), deferred())
            .await
            .unwrap();
    }
    assert_private(dir, umask, "with deferred puts pending");

    // A multipart upload's staging file is visible until completion.
    let mut upload = store.put_multipart(&key("big/m/n/object")).await.unwrap();
    upload.put_part(vec![1u8; 1000].into()).await.unwrap();
    let (_, staging) = assert_private(dir, umask, "during a multipart upload");
    assert!(
        staging >= 1,
        "umask {umask:03o}: the upload's staging file is visible"
    );
    upload.put_part(vec![2u8; 1000].into()).await.unwrap();
    upload.complete().await.unwrap();

    // The index put is the barrier that publishes the packs.
    store.put(&key("index/1"), "index".into()).await.unwrap();
    let (files, staging) = assert_private(dir, umask, "at the end");
    assert_eq!(staging, 0, "umask {umask:03o}: no staging file is left");
    assert_eq!(files, 11, "umask {umask:03o}: every object is there");
    assert!(dir.join("a/b/c/d/three").is_file(), "objects are nested");
    let got = store.get(&key("big/m/n/object")).await.unwrap();
    assert_eq!(got.bytes().await.unwrap().len(), 2000);
}
