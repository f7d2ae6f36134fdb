//! Restores keep what a hosting home is made of: owners and groups of several users, every
//! mode bit, nanosecond times, extended attributes and ACLs, hard links, sparse files,
//! FIFOs and links; under each ownership policy. Also restores over an interrupted restore
//! and from a repository with a damaged pack.

#[path = "support/hosting.rs"]
mod hosting;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use backup_core::model::{ItemKind, Ownership, SnapshotStatus};
use backup_core::repo::{ChunkerParams, RepoConfig};
use bytes::Bytes;
use futures::stream::BoxStream;
use hosting::*;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use rustix::fs::{AtFlags, Timespec, Timestamps, XattrFlags};

const MIB: u64 = 1 << 20;
const BIG_LEN: usize = 20 * 1024 * 1024;
const SPARSE_LEN: u64 = 2 << 30;
const SPARSE_AT: u64 = 1 << 30;
const HARDLINKS: [&str; 5] = [
    "data/a/big.bin",
    "data/b/big.bin",
    "data/c/big-link.bin",
    "public_html/media/big.bin",
    "backup/big.bin",
];

fn write(home: &Path, rel: &str, data: &[u8], mode: u32, uid: u32, gid: u32) {
    let p = home.join(rel);
    std::fs::write(&p, data).unwrap();
    own(&p, mode, uid, gid);
}

fn dir(home: &Path, rel: &str, mode: u32, uid: u32, gid: u32) {
    let p = home.join(rel);
    std::fs::create_dir_all(&p).unwrap();
    own(&p, mode, uid, gid);
}

/// chown then chmod (chown clears setuid and setgid).
fn own(p: &Path, mode: u32, uid: u32, gid: u32) {
    lchown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nsec as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// The `system.posix_acl_access` value of `u::rw-,u:1002:r--,g::r--,m::r--,o::r--`
/// (acl(5): u32 version 2, then entries of u16 tag, u16 perm, u32 id).
fn acl_xattr() -> Vec<u8> {
    const UNDEFINED: u32 = u32::MAX;
    let entries: [(u16, u16, u32); 5] = [
        (0x01, 6, UNDEFINED), // ACL_USER_OBJ rw
        (0x02, 4, 1002),      // ACL_USER 1002 r
        (0x04, 4, UNDEFINED), // ACL_GROUP_OBJ r
        (0x10, 4, UNDEFINED), // ACL_MASK r
        (0x20, 4, UNDEFINED), // ACL_OTHER r
    ];
    let mut out = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        out.extend(tag.to_le_bytes());
        out.extend(perm.to_le_bytes());
        out.extend(id.to_le_bytes());
    }
    out
}

/// A cPanel-like home at `base/home`: owners 1001:1001 (the account), 1001:99 (nobody
/// group on public_html), 48:48 (apache), 1001:1002, 1001:12 (mail); setuid, setgid and a
/// setgid directory; a 20 MiB file with five names; xattrs and an ACL; a 2 GiB sparse file
/// with 1 MiB of data; a FIFO; a symlink with its own owner and an old mtime.
fn cpanel_home(base: &Path) -> PathBuf {
    let home = base.join("home");
    let h = home.as_path();
    dir(h, "", 0o711, 1001, 1001);
    dir(h, "public_html", 0o750, 1001, 99);
    write(
        h,
        "public_html/index.html",
        b"<h1>shop</h1>",
        0o644,
        1001,
        1001,
    );
    write(
        h,
        "public_html/wp-config.php",
        b"<?php define('DB_PASSWORD', 'pw');",
        0o640,
        1001,
        1001,
    );
    write(
        h,
        "public_html/.htaccess",
        b"Options -Indexes\n",
        0o644,
        1001,
        1001,
    );
    dir(h, "public_html/cache", 0o755, 48, 48);
    write(
        h,
        "public_html/cache/page.html",
        &pseudo_random(9000, 1),
        0o644,
        48,
        48,
    );
    write(
        h,
        "public_html/shared.txt",
        b"shared with 1002",
        0o664,
        1001,
        1002,
    );
    dir(h, "public_html/uploads", 0o2775, 1001, 1001);
    write(
        h,
        "public_html/uploads/photo.jpg",
        &pseudo_random(50_000, 2),
        0o664,
        1001,
        1002,
    );
    dir(h, "public_html/cgi-bin", 0o755, 1001, 1001);
    write(
        h,
        "public_html/cgi-bin/suid.cgi",
        b"#!/bin/sh\nid\n",
        0o4755,
        1001,
        1001,
    );
    write(
        h,
        "public_html/cgi-bin/sgid.cgi",
        b"#!/bin/sh\nid -g\n",
        0o2755,
        1001,
        1001,
    );
    write(h, "public_html/sticky-note", b"t", 0o1644, 1001, 1001);
    dir(h, "public_html/media", 0o755, 1001, 1001);

    dir(h, "mail", 0o751, 1001, 12);
    dir(h, "mail/example.com", 0o750, 1001, 12);
    for sub in ["cur", "new", "tmp"] {
        dir(h, &format!("mail/example.com/user/{sub}"), 0o700, 1001, 12);
    }
    own(&home.join("mail/example.com/user"), 0o750, 1001, 12);
    for i in 0..5 {
        write(
            h,
            &format!("mail/example.com/user/cur/17000000{i}.M{i}P1.host:2,S"),
            format!("From: a@example.com\nSubject: {i}\n\nbody {i}\n").as_bytes(),
            0o600,
            1001,
            12,
        );
    }
    write(
        h,
        "mail/example.com/user/new/1700000099.M9P9.host",
        b"Subject: new\n\nnew",
        0o600,
        1001,
        12,
    );

    for d in ["data", "data/a", "data/b", "data/c", "backup"] {
        dir(h, d, 0o755, 1001, 1001);
    }
    write(
        h,
        HARDLINKS[0],
        &pseudo_random(BIG_LEN, 3),
        0o644,
        1001,
        1001,
    );
    for name in &HARDLINKS[1..] {
        std::fs::hard_link(home.join(HARDLINKS[0]), home.join(name)).unwrap();
    }

    write(h, "notes.txt", b"notes", 0o600, 1001, 1001);
    rustix::fs::setxattr(
        home.join("notes.txt"),
        "user.test",
        b"hello",
        XattrFlags::empty(),
    )
    .unwrap();
    dir(h, "docs", 0o755, 1001, 1001);
    rustix::fs::setxattr(
        home.join("docs"),
        "user.test",
        b"hello",
        XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        home.join("docs"),
        "user.binary",
        &[0, 1, 2, 255],
        XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        home.join("public_html/shared.txt"),
        "system.posix_acl_access",
        &acl_xattr(),
        XattrFlags::empty(),
    )
    .expect("set a POSIX ACL (the file system must support ACLs)");

    let sparse = std::fs::File::create(home.join("sparse.img")).unwrap();
    sparse.set_len(SPARSE_LEN).unwrap();
    sparse.write_all_at(&sparse_data(), SPARSE_AT).unwrap();
    drop(sparse);
    own(&home.join("sparse.img"), 0o640, 1001, 1001);

    dir(h, "run", 0o755, 1001, 1001);
    mkfifo(&home.join("run/app.fifo"));
    own(&home.join("run/app.fifo"), 0o620, 1001, 1001);

    symlink("public_html", home.join("www")).unwrap();
    lchown(home.join("www"), Some(1001), Some(1001)).unwrap();
    set_mtime(&home.join("www"), 1_500_000_000, 123_456_789);
    symlink("/nonexistent/target", home.join("dangling")).unwrap();
    lchown(home.join("dangling"), Some(48), Some(48)).unwrap();

    // Distinct, old times with nanoseconds on a few files and directories (directories
    // last: creating entries changes their mtime).
    set_mtime(&home.join("public_html/index.html"), 1_600_000_000, 111);
    set_mtime(&home.join("notes.txt"), 1_400_000_000, 999_999_999);
    for (i, d) in [
        "mail/example.com/user/cur",
        "public_html/uploads",
        "docs",
        "data/a",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&home.join(d), 1_650_000_000 + i as i64, 500 + i as i64);
    }
    set_mtime(&home, 1_690_000_000, 42);
    home
}

fn sparse_data() -> Vec<u8> {
    pseudo_random(MIB as usize, 99)
}

/// Checks a restored copy of `sparse.img`: its size, data at 1 GiB, zeros around, and
/// that it takes little space.
fn check_sparse(path: &Path, context: &str) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{context}: sparse.img: {e}"));
    let m = f.metadata().unwrap();
    assert_eq!(m.len(), SPARSE_LEN, "{context}: sparse.img size");
    let used = m.blocks() * 512;
    assert!(
        used < 8 * MIB,
        "{context}: the restored 2 GiB sparse file with 1 MiB of data uses {used} bytes on disk \
         (holes must stay holes)"
    );
    let mut data = vec![0; MIB as usize];
    f.read_exact_at(&mut data, SPARSE_AT).unwrap();
    assert!(
        data == sparse_data(),
        "{context}: sparse.img: the data at 1 GiB differs"
    );
    let mut zeros = vec![0xAA; 64 * 1024];
    for at in [
        0,
        4096,
        512 * MIB,
        SPARSE_AT - 64 * 1024,
        SPARSE_AT + MIB,
        SPARSE_LEN - 64 * 1024,
    ] {
        f.read_exact_at(&mut zeros, at).unwrap();
        assert!(
            zeros.iter().all(|b| *b == 0),
            "{context}: sparse.img is not zero at offset {at}"
        );
    }
}

/// Checks that the five names of the big file are one inode and that the target's distinct
/// inodes (the sparse file aside) take about 20 MiB, not 100 MiB.
fn check_hardlinks(target: &Path, context: &str) {
    let inodes: Vec<(u64, u64)> = HARDLINKS
        .iter()
        .map(|n| {
            let m = std::fs::symlink_metadata(target.join(n))
                .unwrap_or_else(|e| panic!("{context}: {n}: {e}"));
            (m.ino(), m.nlink())
        })
        .collect();
    assert!(
        inodes.iter().all(|i| i.0 == inodes[0].0),
        "{context}: the five names of the 20 MiB file are not one inode: {inodes:?}"
    );
    assert_eq!(inodes[0].1, 5, "{context}: link count of the 20 MiB file");
    let mut seen = BTreeSet::new();
    let mut used = 0;
    for e in walk_fd(target, |_, _| {}) {
        if e.rel != Path::new("sparse.img") && seen.insert(e.ino) {
            used += e.blocks * 512;
        }
    }
    assert!(
        (20 * MIB..30 * MIB).contains(&used),
        "{context}: the restored home uses {used} bytes (the 20 MiB file is stored once on \
         disk, about 20 MiB in all)"
    );
}

/// Content hashes of every regular file (the sparse file aside), by relative path.
fn contents(root: &Path) -> BTreeMap<PathBuf, Option<u64>> {
    walk_fd(root, |_, _| {})
        .into_iter()
        .filter(|e| e.mode & S_IFMT == S_IFREG && e.rel != Path::new("sparse.img"))
        .map(|e| (e.rel, e.content_hash))
        .collect()
}

fn only_user_xattrs(map: &mut BTreeMap<String, Meta>) {
    for m in map.values_mut() {
        m.xattrs.retain(|k, _| k.starts_with("user."));
    }
}

/// Builds the home, backs it up, restores it into a fresh target with `ownership`; checks
/// contents, hard links and the sparse file, and returns (source map, restored map).
async fn backup_and_restore(
    ownership: Ownership,
    context: &str,
) -> (BTreeMap<String, Meta>, BTreeMap<String, Meta>) {
    let base = tempfile::tempdir().unwrap();
    let home = cpanel_home(base.path());
    let before = meta_map(&home);
    let repo = Repo::memory().await;
    let report = repo
        .backup_home(&home)
        .await
        .expect("backup of the cPanel home");
    assert!(
        report.skipped.is_empty(),
        "{context}: nothing is unreadable for root, yet skipped: {:?}",
        report.skipped
    );
    assert_eq!(
        report.snapshot.status,
        SnapshotStatus::Complete,
        "{context}"
    );
    let after = meta_map(&home);
    let touched = diff_maps(&before, &after);
    assert!(
        touched.is_empty(),
        "{context}: the backup changed the source: {touched:#?}"
    );

    let target = base.path().join("restored");
    let rep = repo
        .restore(&report.snapshot, &target, How::home(ownership))
        .await
        .unwrap_or_else(|e| panic!("{context}: restore: {e}"));
    assert!(
        rep.failed.is_empty(),
        "{context}: restore failures: {:?}",
        rep.failed
    );
    let leftovers = restore_temporaries(&target);
    assert!(
        leftovers.is_empty(),
        "{context}: temporaries left: {leftovers:?}"
    );
    assert_eq!(
        contents(&home),
        contents(&target),
        "{context}: file contents differ"
    );
    check_hardlinks(&target, context);
    check_sparse(&target.join("sparse.img"), context);
    (after, meta_map(&target))
}

fn assert_maps(expected: &BTreeMap<String, Meta>, actual: &BTreeMap<String, Meta>, context: &str) {
    let diffs = diff_maps(expected, actual);
    assert!(
        diffs.is_empty(),
        "{context}: {} entries differ from the source:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn recorded_ownership_restores_owners_modes_times_xattrs_acls_and_links() {
    if not_root("recorded_ownership_restores_owners_modes_times_xattrs_acls_and_links") {
        return;
    }
    let (source, restored) = backup_and_restore(Ownership::Recorded, "Recorded").await;
    assert_eq!(source[""].perm, 0o711, "the source home is 0711");
    assert!(
        source["public_html/shared.txt"]
            .xattrs
            .contains_key("system.posix_acl_access"),
        "the source ACL is set"
    );
    assert_maps(&source, &restored, "Ownership::Recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn account_ownership_maps_the_home_owner_and_keeps_other_owners() {
    if not_root("account_ownership_maps_the_home_owner_and_keeps_other_owners") {
        return;
    }
    let (source, mut restored) = backup_and_restore(
        Ownership::Account {
            uid: 2001,
            gid: 2002,
        },
        "Account",
    )
    .await;
    let mut expected = source;
    for m in expected.values_mut() {
        if m.uid == 1001 {
            m.uid = 2001;
        }
        if m.gid == 1001 {
            m.gid = 2002;
        }
    }
    // Spot checks of the mapping the comparison relies on.
    assert_eq!((expected[""].uid, expected[""].gid), (2001, 2002));
    assert_eq!(
        (expected["public_html"].uid, expected["public_html"].gid),
        (2001, 99)
    );
    assert_eq!((expected["mail"].uid, expected["mail"].gid), (2001, 12));
    assert_eq!(
        (
            expected["public_html/cache/page.html"].uid,
            expected["public_html/cache/page.html"].gid
        ),
        (48, 48)
    );
    only_user_xattrs(&mut expected);
    only_user_xattrs(&mut restored);
    assert_maps(
        &expected,
        &restored,
        "Ownership::Account { uid: 2001, gid: 2002 }",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn no_ownership_gives_everything_to_the_process_user_without_setid_bits() {
    if not_root("no_ownership_gives_everything_to_the_process_user_without_setid_bits") {
        return;
    }
    let (source, mut restored) = backup_and_restore(Ownership::None, "None").await;
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let mut expected = source;
    for m in expected.values_mut() {
        m.uid = uid;
        m.gid = gid;
        m.perm &= !0o6000;
    }
    only_user_xattrs(&mut expected);
    only_user_xattrs(&mut restored);
    assert_maps(&expected, &restored, "Ownership::None");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_file_is_read_as_its_data_and_restored_sparse() {
    let base = tempfile::tempdir().unwrap();
    let home = base.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("small.txt"), b"small").unwrap();
    let f = std::fs::File::create(home.join("sparse.img")).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    f.write_all_at(&sparse_data(), SPARSE_AT).unwrap();
    drop(f);

    let repo = Repo::memory().await;
    let report = repo.backup_home(&home).await.expect("backup");
    let read = report.snapshot.stats.bytes_read;
    assert!(
        read < 4 * MIB,
        "backing up a 2 GiB file with 1 MiB of data read {read} bytes (holes must be skipped)"
    );
    let target = base.path().join("restored");
    repo.restore(&report.snapshot, &target, How::home(Ownership::None))
        .await
        .expect("restore");
    check_sparse(&target.join("sparse.img"), "sparse restore");
    assert_eq!(std::fs::read(target.join("small.txt")).unwrap(), b"small");
}

// -- interrupted restores -----------------------------------------------------------------

/// A store whose reads fail once `fail_after` of them have been made.
#[derive(Debug)]
struct FailingStore {
    inner: InMemory,
    gets: AtomicU64,
    fail_after: AtomicU64,
}

impl FailingStore {
    fn new() -> Self {
        Self {
            inner: InMemory::new(),
            gets: AtomicU64::new(0),
            fail_after: AtomicU64::new(u64::MAX),
        }
    }

    /// Counts from zero again; reads fail from the `n`-th on.
    fn fail_after(&self, n: u64) {
        self.gets.store(0, Ordering::SeqCst);
        self.fail_after.store(n, Ordering::SeqCst);
    }

    fn check(&self, location: &StorePath) -> object_store::Result<()> {
        let n = self.gets.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_after.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "FailingStore",
                source: format!("injected failure reading {location}").into(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for FailingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FailingStore")
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &StorePath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &StorePath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<StorePath>>,
    ) -> BoxStream<'static, object_store::Result<StorePath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&StorePath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&StorePath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A home of many small and medium files in nested directories with several modes.
fn many_files_home(base: &Path) -> PathBuf {
    let home = base.join("home");
    let modes = [0o644, 0o600, 0o640, 0o755, 0o444];
    for i in 0..240u64 {
        let rel = format!("public_html/d{}/e{}/f{i}.dat", i % 6, i % 4);
        let p = home.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = 500 + (i as usize * 977) % 40_000;
        std::fs::write(&p, pseudo_random(len, 1000 + i)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(modes[i as usize % 5]))
            .unwrap();
    }
    std::fs::set_permissions(
        home.join("public_html/d1"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    symlink("public_html", home.join("www")).unwrap();
    home
}

/// Every source entry has its type, content, mode (setid bits aside: the restore does not
/// keep owners) and link target in `target`, no temporaries are left, and nothing else is
/// there.
fn assert_final(home: &Path, target: &Path, context: &str) {
    let leftovers = restore_temporaries(target);
    assert!(
        leftovers.is_empty(),
        "{context}: hidden restore temporaries left under the target: {leftovers:?}"
    );
    let key = |e: &FdEntry| {
        (
            e.rel.clone(),
            (
                e.mode & S_IFMT,
                e.mode & 0o1777,
                e.content_hash,
                e.link.clone(),
            ),
        )
    };
    let want: BTreeMap<_, _> = walk_fd(home, |_, _| {}).iter().map(key).collect();
    let have: BTreeMap<_, _> = walk_fd(target, |_, _| {}).iter().map(key).collect();
    let wrong: Vec<String> = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| format!("{}: want {v:?}, have {:?}", k.display(), have.get(k)))
        .chain(
            have.keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| format!("{}: not in the snapshot", k.display())),
        )
        .collect();
    assert!(
        wrong.is_empty(),
        "{context}: {} entries are not in their final state:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_over_an_interrupted_restore_leave_final_files_and_no_temporaries() {
    let base = tempfile::tempdir().unwrap();
    let home = many_files_home(base.path());
    let store = Arc::new(FailingStore::new());
    let config = RepoConfig {
        chunker: ChunkerParams {
            min_size: 2 * 1024,
            avg_size: 8 * 1024,
            max_size: 32 * 1024,
        },
        pack_size: 32 * 1024,
    };
    let repo = Repo::on(store.clone(), config).await;
    let snap = repo.backup_home(&home).await.expect("backup").snapshot;

    // How many reads a whole restore makes.
    store.fail_after(u64::MAX);
    let scratch = base.path().join("scratch");
    repo.restore(&snap, &scratch, How::home(Ownership::None))
        .await
        .expect("a restore through the store without failures");
    assert_final(&home, &scratch, "restore without failures");
    let reads = store.gets.load(Ordering::SeqCst);
    assert!(reads > 4, "a restore of many packs reads {reads} objects");

    let target = base.path().join("target");
    let plain = How::home(Ownership::None);
    let merge = How::home(Ownership::None).merged();
    for (round, interrupted, then, stale) in [
        (
            "interrupted plain restore, then a merge restore",
            plain,
            merge,
            false,
        ),
        (
            "interrupted merge restore, then a plain restore",
            merge,
            plain,
            true,
        ),
    ] {
        if stale {
            // Spoil part of the live copy so that the merge has files to rewrite.
            for (i, e) in walk_fd(&target, |_, _| {}).iter().enumerate() {
                if e.mode & S_IFMT == S_IFREG && i % 3 == 0 {
                    let p = target.join(&e.rel);
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
                    std::fs::write(&p, b"stale").unwrap();
                }
            }
        }
        store.fail_after(reads / 2);
        let cut = repo.restore(&snap, &target, interrupted).await;
        let cut_short = match &cut {
            Err(_) => true,
            Ok(r) => !r.failed.is_empty(),
        };
        assert!(
            cut_short,
            "{round}: reads failing after {} of {reads} did not interrupt the restore",
            reads / 2
        );
        println!(
            "{round}: interrupted restore: {:?}; temporaries left by it: {:?}",
            cut.as_ref()
                .map(|r| r.failed.total)
                .map_err(|e| e.to_string()),
            restore_temporaries(&target)
        );

        store.fail_after(u64::MAX);
        let rep = repo
            .restore(&snap, &target, then)
            .await
            .unwrap_or_else(|e| panic!("{round}: the restore after the interrupted one: {e}"));
        assert!(rep.failed.is_empty(), "{round}: failed: {:?}", rep.failed);
        assert_final(&home, &target, round);
    }
}

// -- a damaged pack -------------------------------------------------------------------------

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_pack_fails_only_the_files_whose_chunks_it_held() {
    let base = tempfile::tempdir().unwrap();
    let home = base.path().join("home");
    // Files smaller than the chunker's minimum are one chunk each; random bytes are stored
    // as they are (not compressible), so each file can be found in its pack.
    let mut files = BTreeMap::new();
    for i in 0..120u64 {
        let rel = format!("public_html/p{}/f{i}.bin", i % 5);
        let data = pseudo_random(3000, 5000 + i);
        let p = home.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        files.insert(rel, data);
    }
    let repo_dir = base.path().join("repo");
    std::fs::create_dir(&repo_dir).unwrap();
    let config = RepoConfig {
        chunker: ChunkerParams {
            min_size: 4 * 1024,
            avg_size: 16 * 1024,
            max_size: 64 * 1024,
        },
        pack_size: 32 * 1024,
    };
    let repo = Repo::local(&repo_dir, config).await;
    let snap = repo.backup_home(&home).await.expect("backup").snapshot;

    let packs_dir = repo_dir
        .join("r/accounts")
        .join(repo.account.id.to_string())
        .join("packs");
    let packs = files_under(&packs_dir);
    assert!(
        packs.len() > 3,
        "expected several packs in {}",
        packs_dir.display()
    );
    // The first pack holding a file's bytes verbatim: damage one byte inside that file.
    let mut damaged: Option<(PathBuf, String, BTreeSet<String>)> = None;
    for pack in &packs {
        let mut bytes = std::fs::read(pack).unwrap();
        let held: BTreeSet<String> = files
            .iter()
            .filter(|(_, d)| find(&bytes, &d[..]).is_some())
            .map(|(r, _)| r.clone())
            .collect();
        if let Some(victim) = held.iter().next().cloned() {
            let at = find(&bytes, &files[&victim]).unwrap() + 1500;
            bytes[at] ^= 0xFF;
            std::fs::write(pack, &bytes).unwrap();
            damaged = Some((pack.clone(), victim, held));
            break;
        }
    }
    let (pack, victim, held) = damaged.unwrap_or_else(|| {
        // Data not stored verbatim: damage the middle of the largest pack instead.
        let pack = packs
            .iter()
            .max_by_key(|p| std::fs::metadata(p).unwrap().len())
            .unwrap()
            .clone();
        let mut bytes = std::fs::read(&pack).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        std::fs::write(&pack, &bytes).unwrap();
        println!(
            "no file found verbatim in a pack; damaged the middle of {}",
            pack.display()
        );
        (pack, String::new(), files.keys().cloned().collect())
    });
    println!(
        "damaged {} holding {} files, inside {victim:?}",
        pack.display(),
        held.len()
    );

    let target = base.path().join("restored");
    let rep = repo
        .restore(&snap, &target, How::home(Ownership::None))
        .await
        .expect("a restore with one damaged pack returns Ok and names the failed files");
    assert_eq!(
        rep.failed.total,
        rep.failed.entries.len() as u64,
        "every failed file is named"
    );
    let failed: BTreeSet<String> = rep
        .failed
        .entries
        .iter()
        .map(|e| {
            assert_eq!(e.item, ItemKind::HomeDir, "{e:?}");
            assert!(!e.reason.is_empty(), "a reason is given: {e:?}");
            e.path.clone()
        })
        .collect();
    assert!(
        !failed.is_empty(),
        "the damaged file is not reported as failed"
    );
    if !victim.is_empty() {
        assert!(
            failed.contains(&victim),
            "{victim} (damaged) is not named in failed: {failed:?}"
        );
    }
    let unrelated: Vec<&String> = failed.iter().filter(|f| !held.contains(*f)).collect();
    assert!(
        unrelated.is_empty(),
        "files whose chunks are not in the damaged pack are reported failed: {unrelated:?}"
    );
    for (rel, data) in &files {
        let restored = std::fs::read(target.join(rel));
        if failed.contains(rel) {
            if rel == &victim
                && let Ok(r) = restored
            {
                let mut bad = data.clone();
                bad[1500] ^= 0xFF;
                assert!(
                    find(&r, &bad[1400..1600]).is_none(),
                    "{rel} is named failed yet holds the damaged (unauthenticated) bytes"
                );
            }
            continue;
        }
        let restored = restored.unwrap_or_else(|e| panic!("{rel} is not restored: {e}"));
        assert!(restored == *data, "{rel}: restored content differs");
    }
    let leftovers = restore_temporaries(&target);
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
}
