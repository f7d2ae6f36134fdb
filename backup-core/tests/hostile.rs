//! A hostile tenant: every byte under the home directory is the tenant's, including links,
//! FIFOs and renames racing the backup, while the backup runs as root. Nothing outside the
//! home may end up in a snapshot, and a restore may create nothing outside its target.

#[path = "support/hosting.rs"]
mod hosting;
mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use backup_core::engine::BackupReport;
use backup_core::model::{ItemKind, Ownership, Snapshot, SnapshotStatus};
use hosting::*;
use rustix::fs::{Mode, OFlags, RenameFlags};

/// Long enough that only a hang reaches it (a small home backs up in well under a second).
const HANG: Duration = Duration::from_secs(60);

async fn backup_in_time(repo: &Repo, home: &Path, what: &str) -> backup_core::Result<BackupReport> {
    tokio::time::timeout(HANG, repo.backup_home(home))
        .await
        .unwrap_or_else(|_| panic!("{what}: the backup did not finish within {HANG:?} (hangs)"))
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn set_link_mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Exchanges the names `a` and `b` in `dir` (renameat2 RENAME_EXCHANGE) as fast as it can
/// until `stop`; returns how many exchanges it made.
fn exchanger(
    dir: &Path,
    a: &'static str,
    b: &'static str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            rustix::fs::renameat_with(&fd, a, &fd, b, RenameFlags::EXCHANGE)
                .expect("renameat2(RENAME_EXCHANGE)");
            n += 1;
        }
        n
    })
}

/// Like [`exchanger`], but goes on when a name is missing for a while (a restore replacing
/// it); returns how many exchanges succeeded.
fn lenient_exchanger(
    dir: &Path,
    a: &'static str,
    b: &'static str,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            if rustix::fs::renameat_with(&fd, a, &fd, b, RenameFlags::EXCHANGE).is_ok() {
                n += 1;
            } else {
                std::thread::yield_now();
            }
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn planted_links_are_restored_as_links_and_never_followed() {
    if not_root("planted_links_are_restored_as_links_and_never_followed") {
        return;
    }
    let s = Secrets::new();
    let home = &s.home;
    write(&home.join("public_html/index.html"), b"<h1>tenant</h1>");
    write(
        &home.join("mail/example.com/info/cur/1.M1"),
        b"Subject: hi\n\nhello",
    );
    let links: Vec<(&str, PathBuf)> = vec![
        ("databases", s.secret_dir.clone()),
        ("public_html/x", PathBuf::from("/")),
        ("home", s.secret_dir.clone()),
        ("link_to_shadow", s.secret_file.clone()),
        ("mail/example.com/info/new", s.secret_dir.clone()),
        ("ssl", s.secret_dir.clone()),
        ("public_html/up", PathBuf::from("../../secret")),
        (
            "public_html/shadow.txt",
            PathBuf::from("../../secret/shadow"),
        ),
    ];
    for (name, target) in &links {
        symlink(target, home.join(name)).unwrap();
        // Owned by the tenant with an old mtime: a restore that set them through the link
        // (chown, utimes or chmod following it) would change the secrets.
        std::os::unix::fs::lchown(home.join(name), Some(1001), Some(1001)).unwrap();
        set_link_mtime(&home.join(name), 1_500_000_000);
    }

    let repo = Repo::memory().await;
    let report = backup_in_time(&repo, home, "planted links")
        .await
        .expect("the backup of a home with planted links succeeds");
    let snap = report.snapshot;

    let restores = tempfile::tempdir().unwrap();
    let target = restores.path().join("t");
    let outside = s.outside();
    let steps = [
        (
            "first restore (every item)",
            How::whole(Ownership::Recorded),
        ),
        // The target now holds the planted links itself: restores over it must replace
        // them, never write through them.
        (
            "merge restore over the restored links",
            How::whole(Ownership::Recorded).merged(),
        ),
        (
            "plain restore over the restored links",
            How::whole(Ownership::Recorded),
        ),
    ];
    for (step, how) in steps {
        repo.restore(&snap, &target, how)
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        s.assert_no_leak(&target, step);
        outside.assert_unchanged(s.base.path(), step);
        for (name, want) in &links {
            let path = target.join(name);
            let meta = std::fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("{step}: {name} is not restored: {e}"));
            assert!(
                meta.file_type().is_symlink(),
                "{step}: {name} must come back as a symlink, found {:?}",
                meta.file_type()
            );
            assert_eq!(
                &std::fs::read_link(&path).unwrap(),
                want,
                "{step}: {name}: link target"
            );
        }
        assert_eq!(
            std::fs::read(target.join("public_html/index.html")).unwrap(),
            b"<h1>tenant</h1>",
            "{step}: public_html/index.html"
        );
    }
}

/// Replaces `name` under `root` (file, directory or link) by a symlink to `to`.
fn plant(root: &Path, name: &str, to: &Path) {
    let p = root.join(name);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p).unwrap(),
        Ok(_) => std::fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
    symlink(to, &p).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn restores_replace_links_planted_in_the_target_instead_of_writing_through_them() {
    if not_root("restores_replace_links_planted_in_the_target_instead_of_writing_through_them") {
        return;
    }
    let s = Secrets::new();
    let home = &s.home;
    write(&home.join("public_html/index.html"), b"<h1>index</h1>");
    write(&home.join("public_html/.htaccess"), b"Options -Indexes\n");
    write(
        &home.join("public_html/uploads/a.jpg"),
        &pseudo_random(5000, 3),
    );
    write(
        &home.join("mail/example.com/info/cur/1.M1"),
        b"Subject: hi\n\nhello",
    );
    write(&home.join("notes.txt"), b"notes");
    for e in walk_fd(home, |_, _| {}) {
        std::os::unix::fs::lchown(home.join(&e.rel), Some(1001), Some(1001)).unwrap();
    }
    let repo = Repo::memory().await;
    let snap = backup_in_time(&repo, home, "backup")
        .await
        .expect("backup")
        .snapshot;

    let restores = tempfile::tempdir().unwrap();
    let target = restores.path().join("t");
    repo.restore(&snap, &target, How::whole(Ownership::Recorded))
        .await
        .expect("first restore");
    let outside = s.outside();
    let missing = s
        .secret_file
        .parent()
        .unwrap()
        .join("created-through-a-link");
    for (step, how) in [
        ("merge restore", How::whole(Ownership::Recorded).merged()),
        ("plain restore", How::whole(Ownership::Recorded)),
    ] {
        // The tenant replaces restored entries of its live home by links out of it.
        plant(&target, "public_html/index.html", &s.secret_file);
        plant(&target, "public_html/.htaccess", &missing);
        plant(&target, "public_html/uploads", &s.secret_dir);
        plant(&target, "mail", &s.secret_dir);
        plant(&target, "notes.txt", &s.secret_dir.join("id_rsa"));
        repo.restore(&snap, &target, how)
            .await
            .unwrap_or_else(|e| panic!("{step} over planted links: {e}"));
        outside.assert_unchanged(s.base.path(), step);
        assert!(
            !missing.exists(),
            "{step}: a file was created through a planted link"
        );
        s.assert_no_leak(&target, step);
        for (name, data) in [
            ("public_html/index.html", b"<h1>index</h1>".to_vec()),
            ("public_html/.htaccess", b"Options -Indexes\n".to_vec()),
            ("public_html/uploads/a.jpg", pseudo_random(5000, 3)),
            (
                "mail/example.com/info/cur/1.M1",
                b"Subject: hi\n\nhello".to_vec(),
            ),
            ("notes.txt", b"notes".to_vec()),
        ] {
            let p = target.join(name);
            let m = std::fs::symlink_metadata(&p)
                .unwrap_or_else(|e| panic!("{step}: {name} is not restored: {e}"));
            assert!(
                m.is_file(),
                "{step}: {name} must be the snapshot's regular file, found {:?}",
                m.file_type()
            );
            assert!(
                std::fs::read(&p).unwrap() == data,
                "{step}: {name}: content"
            );
        }
        for name in ["public_html/uploads", "mail"] {
            let m = std::fs::symlink_metadata(target.join(name)).unwrap();
            assert!(m.is_dir(), "{step}: {name} must be a directory again");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_directory_swapped_with_a_link_during_restores_never_redirects_writes() {
    if not_root("a_directory_swapped_with_a_link_during_restores_never_redirects_writes") {
        return;
    }
    let s = Secrets::new();
    for i in 0..40 {
        write(
            &s.home.join(format!("d/f{i}.txt")),
            format!("file {i}").as_bytes(),
        );
    }
    write(&s.home.join("d/id_rsa"), b"the tenant's own id_rsa");
    write(&s.home.join("public_html/index.html"), b"<h1>index</h1>");
    symlink(&s.secret_dir, s.home.join("dlink")).unwrap();
    for e in walk_fd(&s.home, |_, _| {}) {
        std::os::unix::fs::lchown(s.home.join(&e.rel), Some(1001), Some(1001)).unwrap();
    }
    let repo = Repo::memory().await;
    let snap = backup_in_time(&repo, &s.home, "backup")
        .await
        .expect("backup")
        .snapshot;

    let restores = tempfile::tempdir().unwrap();
    let target = restores.path().join("t");
    repo.restore(&snap, &target, How::whole(Ownership::Recorded))
        .await
        .expect("first restore");
    let outside = s.outside();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = lenient_exchanger(&target, "d", "dlink", stop.clone());
    let mut failed = Vec::new();
    for i in 0..30 {
        let how = if i % 2 == 0 {
            How::whole(Ownership::Recorded).merged()
        } else {
            How::whole(Ownership::Recorded)
        };
        let r = tokio::time::timeout(HANG, repo.restore(&snap, &target, how))
            .await
            .unwrap_or_else(|_| panic!("restore {i} hangs"));
        if let Err(e) = r {
            failed.push(format!("restore {i}: {e}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    println!(
        "{swaps} exchanges during 30 restores, {} failed: {failed:?}",
        failed.len()
    );
    assert!(swaps > 30, "the exchanges did not run during the restores");
    outside.assert_unchanged(s.base.path(), "restores raced by a directory swap");
    s.assert_no_leak(&target, "restores raced by a directory swap");
}

fn kind_name(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "link"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_fifo() {
        "fifo"
    } else {
        "other"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn tenant_entries_named_like_restore_staging_are_kept_by_a_merge_restore() {
    if not_root("tenant_entries_named_like_restore_staging_are_kept_by_a_merge_restore") {
        return;
    }
    let s = Secrets::new();
    write(&s.home.join(".bkrestore-notes/keep.txt"), b"keep");
    write(&s.home.join("public_html/index.html"), b"<h1>index</h1>");
    let repo = Repo::memory().await;
    let snap = backup_in_time(&repo, &s.home, "backup")
        .await
        .expect("backup")
        .snapshot;
    let restores = tempfile::tempdir().unwrap();
    let target = restores.path().join("t");
    repo.restore(&snap, &target, How::home(Ownership::Recorded))
        .await
        .expect("first restore");
    assert_eq!(
        std::fs::read(target.join(".bkrestore-notes/keep.txt")).ok(),
        Some(b"keep".to_vec()),
        "a backed-up directory named .bkrestore-notes is restored"
    );

    // Live tenant entries that are not in the snapshot: a regular file (a restore's staging
    // area is always a directory) and a link out of the home.
    write(&target.join(".bkrestore-live.txt"), b"live data");
    symlink(&s.secret_dir, target.join(".bkrestore-evil")).unwrap();
    let outside = s.outside();
    repo.restore(&snap, &target, How::home(Ownership::Recorded).merged())
        .await
        .expect("merge restore");
    outside.assert_unchanged(
        s.base.path(),
        "merge restore with .bkrestore-* tenant entries",
    );
    assert_eq!(
        std::fs::read(target.join(".bkrestore-live.txt")).ok(),
        Some(b"live data".to_vec()),
        "a merge restore keeps live data that is not in the snapshot, yet the tenant's \
         regular file .bkrestore-live.txt at the home root was removed"
    );
    assert_eq!(
        std::fs::read(target.join(".bkrestore-notes/keep.txt")).ok(),
        Some(b"keep".to_vec()),
        "after the merge restore, .bkrestore-notes/keep.txt"
    );
}

/// Restores every snapshot into its own directory and checks each for secret bytes; returns
/// the restore targets' parent (kept alive by the caller).
async fn restore_each(
    repo: &Repo,
    s: &Secrets,
    snaps: &[Snapshot],
    check: impl Fn(&Path, usize),
) -> tempfile::TempDir {
    let restores = tempfile::tempdir().unwrap();
    let outside = s.outside();
    for (i, snap) in snaps.iter().enumerate() {
        let target = restores.path().join(format!("r{i}"));
        let what = format!("restore of snapshot {i}");
        tokio::time::timeout(
            HANG,
            repo.restore(snap, &target, How::whole(Ownership::Recorded)),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: hangs"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        s.assert_no_leak(&target, &what);
        check(&target, i);
    }
    outside.assert_unchanged(s.base.path(), "restores of the raced snapshots");
    restores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_file_swapped_with_a_link_to_a_secret_during_backups_never_leaks() {
    if not_root("a_file_swapped_with_a_link_to_a_secret_during_backups_never_leaks") {
        return;
    }
    let s = Secrets::new();
    let html = s.home.join("public_html");
    let victim = pseudo_random(2000, 7);
    write(&html.join("victim.txt"), &victim);
    write(&html.join("index.html"), b"<h1>index</h1>");
    symlink(&s.secret_file, html.join("swap")).unwrap();

    let repo = Repo::memory().await;
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = exchanger(&html, "victim.txt", "swap", stop.clone());
    let mut snaps = Vec::new();
    let mut errors = Vec::new();
    for i in 0..50 {
        match backup_in_time(&repo, &s.home, &format!("backup {i}")).await {
            Ok(r) => snaps.push(r.snapshot),
            Err(e) => errors.push(format!("backup {i}: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    println!(
        "{swaps} exchanges during 50 backups, {} failed",
        errors.len()
    );
    assert!(swaps > 50, "the exchanges did not run during the backups");

    let secret = s.secret_file.clone();
    let seen = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    let _keep = restore_each(&repo, &s, &snaps, |target, i| {
        for name in ["victim.txt", "swap"] {
            let path = target.join("public_html").join(name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                *seen
                    .borrow_mut()
                    .entry(format!("{name}: absent"))
                    .or_default() += 1;
                continue; // skipped or changed while read: not stored
            };
            *seen
                .borrow_mut()
                .entry(format!("{name}: {}", kind_name(&meta)))
                .or_default() += 1;
            if meta.file_type().is_symlink() {
                assert_eq!(
                    std::fs::read_link(&path).unwrap(),
                    secret,
                    "snapshot {i}: {name}: a link is restored with its own target"
                );
            } else {
                assert!(
                    meta.is_file(),
                    "snapshot {i}: {name}: {:?}",
                    meta.file_type()
                );
                assert!(
                    std::fs::read(&path).unwrap() == victim,
                    "snapshot {i}: {name} is a regular file but does not hold victim.txt's bytes"
                );
            }
        }
    })
    .await;
    println!("restored names: {:?}", seen.borrow());
    assert!(
        errors.is_empty(),
        "a tenant renaming its own files must not fail the backup: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_directory_swapped_with_a_link_to_a_secret_directory_during_backups_never_leaks() {
    if not_root("a_directory_swapped_with_a_link_to_a_secret_directory_during_backups_never_leaks")
    {
        return;
    }
    let s = Secrets::new();
    // The tenant's directory holds a file of the same name as the secret one.
    let own_key = b"the tenant's own id_rsa".to_vec();
    write(&s.home.join("d/id_rsa"), &own_key);
    write(&s.home.join("d/other.txt"), b"other");
    write(&s.home.join("public_html/index.html"), b"<h1>index</h1>");
    symlink(&s.secret_dir, s.home.join("dlink")).unwrap();

    let repo = Repo::memory().await;
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = exchanger(&s.home, "d", "dlink", stop.clone());
    let mut snaps = Vec::new();
    let mut errors = Vec::new();
    for i in 0..50 {
        match backup_in_time(&repo, &s.home, &format!("backup {i}")).await {
            Ok(r) => snaps.push(r.snapshot),
            Err(e) => errors.push(format!("backup {i}: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    println!(
        "{swaps} exchanges during 50 backups, {} failed",
        errors.len()
    );
    assert!(swaps > 50, "the exchanges did not run during the backups");

    let secret_dir = s.secret_dir.clone();
    let seen = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    let _keep = restore_each(&repo, &s, &snaps, |target, i| {
        for name in ["d", "dlink"] {
            let path = target.join(name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                *seen
                    .borrow_mut()
                    .entry(format!("{name}: absent"))
                    .or_default() += 1;
                continue;
            };
            *seen
                .borrow_mut()
                .entry(format!("{name}: {}", kind_name(&meta)))
                .or_default() += 1;
            if meta.file_type().is_symlink() {
                assert_eq!(
                    std::fs::read_link(&path).unwrap(),
                    secret_dir,
                    "snapshot {i}: {name}: a link is restored with its own target"
                );
            } else {
                assert!(
                    meta.is_dir(),
                    "snapshot {i}: {name}: {:?}",
                    meta.file_type()
                );
                if let Ok(key) = std::fs::read(path.join("id_rsa")) {
                    assert!(
                        key == own_key,
                        "snapshot {i}: {name}/id_rsa does not hold the tenant's own bytes"
                    );
                }
            }
        }
    })
    .await;
    println!("restored names: {:?}", seen.borrow());
    assert!(
        errors.is_empty(),
        "a tenant renaming its own directories must not fail the backup: {errors:?}"
    );
}

/// Opens (read-write, which never blocks on a FIFO) and closes every name in `names`: a
/// reader blocked opening a FIFO there is released.
fn release_fifo_readers(names: &[PathBuf]) {
    for _ in 0..10 {
        for name in names {
            let _ = rustix::fs::open(
                name,
                OFlags::RDWR | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_fifo_swapped_in_for_a_file_never_hangs_the_backup() {
    if not_root("a_fifo_swapped_in_for_a_file_never_hangs_the_backup") {
        return;
    }
    let s = Secrets::new();
    let content = b"plain file content\n".repeat(100);
    write(&s.home.join("f.txt"), &content);
    write(&s.home.join("public_html/index.html"), b"<h1>index</h1>");
    mkfifo(&s.home.join("fifo"));

    let repo = Repo::memory().await;
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = exchanger(&s.home, "f.txt", "fifo", stop.clone());
    let mut snaps = Vec::new();
    let mut failure = None;
    for i in 0..20 {
        match tokio::time::timeout(HANG, repo.backup_home(&s.home)).await {
            Ok(Ok(r)) => snaps.push(r.snapshot),
            Ok(Err(e)) => {
                failure = Some(format!("backup {i} failed: {e}"));
                break;
            }
            Err(_) => {
                failure = Some(format!(
                    "backup {i} did not finish within {HANG:?}: it hangs on the FIFO"
                ));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    if failure.is_some() {
        // Let a thread stuck opening the FIFO go, so that the runtime can shut down.
        release_fifo_readers(&[s.home.join("fifo"), s.home.join("f.txt")]);
    }
    if let Some(f) = failure {
        panic!("{f}");
    }

    let _keep = restore_each(&repo, &s, &snaps, |target, i| {
        for name in ["f.txt", "fifo"] {
            let Ok(meta) = std::fs::symlink_metadata(target.join(name)) else {
                continue;
            };
            if meta.is_file() {
                assert!(
                    std::fs::read(target.join(name)).unwrap() == content,
                    "snapshot {i}: {name} is a regular file without f.txt's bytes"
                );
            } else {
                assert!(
                    meta.file_type().is_fifo(),
                    "snapshot {i}: {name} is neither the file nor a FIFO: {:?}",
                    meta.file_type()
                );
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn a_path_longer_than_path_max_is_backed_up_and_restored() {
    if not_root("a_path_longer_than_path_max_is_backed_up_and_restored") {
        return;
    }
    let s = Secrets::new();
    let names: Vec<Vec<u8>> = (0..41)
        .map(|i| {
            let mut n = format!("{i:03}-").into_bytes();
            n.resize(200, b'd');
            n
        })
        .collect();
    let depth_bytes: usize = names.iter().map(|n| n.len() + 1).sum();
    assert!(depth_bytes > 8000, "the path is {depth_bytes} bytes");
    let leaf = [b"deep leaf:".as_slice(), &pseudo_random(30_000, 41)].concat();
    {
        let deepest = mkdir_chain(&s.home, &names);
        write_at(&deepest, "leaf.txt", &leaf);
    }
    write(&s.home.join("public_html/index.html"), b"<h1>index</h1>");

    let repo = Repo::memory().await;
    let report = backup_in_time(&repo, &s.home, "long path")
        .await
        .expect("backup of a home with a path longer than PATH_MAX");
    let skipped: Vec<String> = report
        .skipped
        .entries
        .iter()
        .map(|e| e.path.clone())
        .collect();
    assert!(
        report.skipped.is_empty(),
        "nothing is unreadable, yet {} entries were skipped: {:.300?}",
        skipped.len(),
        skipped
    );
    assert_eq!(report.snapshot.status, SnapshotStatus::Complete);

    let restores = tempfile::tempdir().unwrap();
    let target = restores.path().join("t");
    let outside = s.outside();
    repo.restore(&report.snapshot, &target, How::home(Ownership::Recorded))
        .await
        .expect("restore of a path longer than PATH_MAX");
    let deepest = open_chain(&target, &names)
        .unwrap_or_else(|e| panic!("the {} directories are not restored: {e}", names.len()));
    let back = read_at(&deepest, "leaf.txt").expect("the leaf file at the bottom is restored");
    assert!(back == leaf, "the leaf file's bytes differ after restore");
    s.assert_no_leak(&target, "long path restore");
    outside.assert_unchanged(s.base.path(), "long path restore");
}

// -- an unreadable directory, backed up by a user that is not root ------------------------

const CHILD_HOME: &str = "BACKUP_TEST_UNREADABLE_HOME";
const CHILD_OUT: &str = "BACKUP_TEST_UNREADABLE_OUT";
const NOBODY: u32 = 65534;

/// A home owned by `nobody` with an unreadable directory `private/` and an unreadable file
/// `public_html/locked.txt`; the directories are made traversable for `nobody`.
fn nobody_home(base: &Path) -> PathBuf {
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = base.join("home");
    write(&home.join("public_html/index.html"), b"<h1>index</h1>");
    write(&home.join("public_html/locked.txt"), b"locked");
    write(&home.join("private/data.txt"), b"private data");
    write(&home.join("notes.txt"), b"notes");
    for e in walk_fd(&home, |_, _| {}) {
        std::os::unix::fs::lchown(home.join(&e.rel), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    std::os::unix::fs::chown(&home, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(
        home.join("public_html/locked.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(home.join("private"), std::fs::Permissions::from_mode(0o000)).unwrap();
    home
}

fn setpriv_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
    ]);
    c
}

fn has_setpriv() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Run by `an_unreadable_directory_makes_a_partial_backup_that_names_it` in a child process
/// of this test binary as `nobody`: backs up the home in `$BACKUP_TEST_UNREADABLE_HOME`,
/// restores it and writes what happened as JSON to `$BACKUP_TEST_UNREADABLE_OUT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as nobody by an_unreadable_directory_makes_a_partial_backup_that_names_it"]
async fn unreadable_directory_child() {
    let (Some(home), Some(out)) = (std::env::var_os(CHILD_HOME), std::env::var_os(CHILD_OUT))
    else {
        println!("unreadable_directory_child: nothing to do outside its parent test");
        return;
    };
    let home = PathBuf::from(home);
    let repo = Repo::memory().await;
    let result = match tokio::time::timeout(HANG, repo.backup_home(&home)).await {
        Err(_) => serde_json::json!({ "error": "the backup hangs" }),
        Ok(Err(e)) => serde_json::json!({ "error": e.to_string() }),
        Ok(Ok(report)) => {
            let target = Path::new(&out).with_extension("restored");
            let restored = match repo
                .restore(&report.snapshot, &target, How::home(Ownership::None))
                .await
            {
                Ok(_) => serde_json::json!(
                    std::fs::read(target.join("public_html/index.html"))
                        .map(|d| String::from_utf8_lossy(&d).into_owned())
                        .unwrap_or_else(|e| format!("public_html/index.html: {e}"))
                ),
                Err(e) => serde_json::json!(format!("restore failed: {e}")),
            };
            serde_json::json!({
                "status": report.snapshot.status.as_str(),
                "skipped": report.skipped.entries.iter().map(|e| serde_json::json!({
                    "item": e.item.as_str(),
                    "path": e.path,
                    "reason": e.reason,
                })).collect::<Vec<_>>(),
                "index": restored,
            })
        }
    };
    std::fs::write(&out, result.to_string()).unwrap();
}

fn assert_names_unreadable(doc: &serde_json::Value, context: &str) {
    assert_eq!(
        doc["status"], "partial",
        "{context}: a backup that could not read everything is partial: {doc}"
    );
    let skipped = doc["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("{context}: no skipped array: {doc}"));
    for want in ["private", "public_html/locked.txt"] {
        let entry = skipped
            .iter()
            .find(|e| e["path"].as_str().map(|p| p.trim_end_matches('/')) == Some(want))
            .unwrap_or_else(|| panic!("{context}: {want} is not named in skipped: {doc}"));
        let item = entry["item"].as_str().unwrap_or_default();
        assert!(
            item == ItemKind::HomeDir.as_str() || item == ItemKind::HomeDir.long_name(),
            "{context}: {want}: the item is the home directory: {entry}"
        );
        assert!(
            entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{context}: {want}: a reason is given: {entry}"
        );
    }
    for readable in ["public_html/index.html", "notes.txt", "public_html"] {
        assert!(
            !skipped.iter().any(|e| e["path"] == readable),
            "{context}: {readable} is readable but skipped: {doc}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn an_unreadable_directory_makes_a_partial_backup_that_names_it() {
    if not_root("an_unreadable_directory_makes_a_partial_backup_that_names_it") {
        return;
    }
    if !has_setpriv() {
        println!(
            "an_unreadable_directory_makes_a_partial_backup_that_names_it: skipped, setpriv (util-linux) is missing"
        );
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let home = nobody_home(base.path());
    let work = base.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = work.join("child.json");

    let exe = std::env::current_exe().unwrap();
    let run = setpriv_nobody()
        .arg(&exe)
        .args([
            "unreadable_directory_child",
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_HOME, &home)
        .env(CHILD_OUT, &out)
        .output()
        .expect("run the test binary as nobody");
    assert!(
        run.status.success(),
        "the child backup as nobody failed: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| {
        panic!(
            "the child wrote no result ({e}): {}",
            String::from_utf8_lossy(&run.stdout)
        )
    });
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        doc.get("error").is_none(),
        "a backup by a user who cannot read one directory must succeed as partial: {doc}"
    );
    assert_names_unreadable(&doc, "engine::backup as nobody");
    assert_eq!(
        doc["index"], "<h1>index</h1>",
        "the readable files of a partial backup are restored"
    );
}

/// Modification times of the file `path` or of the files under the directory `path`.
fn source_mtimes(path: &Path) -> Vec<std::time::SystemTime> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    if !meta.is_dir() {
        return meta.modified().into_iter().collect();
    }
    walk_fd(path, |_, _| {})
        .into_iter()
        .filter(|e| e.mode & S_IFMT == S_IFREG)
        .filter_map(|e| {
            std::fs::metadata(path.join(&e.rel))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

/// `target/<profile>/examples/backupctl`, built when missing or older than its sources.
fn backupctl() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir.join("examples").join("backupctl");
    let built_at = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let stale = built_at.is_none_or(|t| {
        ["examples/backupctl.rs", "examples/src", "backup-core/src"]
            .iter()
            .flat_map(|d| source_mtimes(&workspace.join(d)))
            .any(|m| m > t)
    });
    if stale {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-p", "backup-examples", "--example", "backupctl"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .ok()?;
        if !built.success() {
            return None;
        }
    }
    bin.exists().then_some(bin)
}

#[test]
#[ignore = "needs root"]
fn the_cli_reports_an_unreadable_directory_as_partial_with_exit_code_3() {
    let name = "the_cli_reports_an_unreadable_directory_as_partial_with_exit_code_3";
    if not_root(name) {
        return;
    }
    if !has_setpriv() {
        println!("{name}: skipped, setpriv (util-linux) is missing");
        return;
    }
    let bin = backupctl().expect("backupctl is built (cargo build --example backupctl)");
    let base = tempfile::tempdir().unwrap();
    let home = nobody_home(base.path());
    let state = base.path().join("state");
    let dest = base.path().join("dest");
    for d in [&state, &dest] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let ctl = |args: &[&str]| {
        setpriv_nobody()
            .arg(&bin)
            .arg("--home")
            .arg(&state)
            .args(args)
            .env("HOME", &state)
            .env_remove("BACKUPCTL_CATALOG")
            .output()
            .expect("run backupctl as nobody")
    };
    let dest_url = format!("file://{}", dest.display());
    for args in [
        vec!["init"],
        vec!["destination", "add", "d", dest_url.as_str()],
        vec!["account", "add", "alice", "--encryption", "none"],
    ] {
        let out = ctl(&args);
        assert!(
            out.status.success(),
            "backupctl {args:?} as nobody: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let home_arg = home.to_str().unwrap();
    let out = ctl(&[
        "backup",
        "alice",
        "--source",
        home_arg,
        "--destination",
        "d",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);

    let doc: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("backup --json prints one JSON document ({e}): {stdout}"));
    assert_names_unreadable(&doc, "backupctl backup --json as nobody");
    assert_eq!(
        out.status.code(),
        Some(3),
        "a partial backup exits with code 3: stdout {stdout} stderr {stderr}"
    );
}
