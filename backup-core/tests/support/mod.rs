//! Helpers shared by the engine tests: a generated hosting account and tree comparison.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use backup_core::repo::{ChunkerParams, RepoConfig};
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;

/// Small chunks and packs so that tests exercise multi-chunk files and many packs.
pub fn small_config() -> RepoConfig {
    RepoConfig {
        chunker: ChunkerParams {
            min_size: 4 * 1024,
            avg_size: 16 * 1024,
            max_size: 64 * 1024,
        },
        pack_size: 256 * 1024,
    }
}

pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn text(n: usize, seed: u64) -> Vec<u8> {
    let words = [
        "lorem", "ipsum", "dolor", "sit", "amet", "backup", "restore", "account",
    ];
    let mut out = Vec::with_capacity(n + 16);
    let mut i = seed as usize;
    while out.len() < n {
        out.extend_from_slice(words[i % words.len()].as_bytes());
        out.push(if i.is_multiple_of(11) { b'\n' } else { b' ' });
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    out.truncate(n);
    out
}

pub fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::new(secs, 123_456_789))
        .unwrap();
}

/// A hosting account in the FsAccount layout with every case the engine must keep.
pub fn make_account(root: &Path, seed: u64) {
    write(root, "home/public_html/index.php", &text(3000, seed));
    write(
        root,
        "home/public_html/wp-config.php",
        b"<?php define('DB', 'x');",
    );
    for i in 0..20 {
        write(
            root,
            &format!("home/public_html/img/pic{i}.png"),
            &pseudo_random(5_000 + i * 3_000, seed + i as u64),
        );
    }
    for i in 0..30 {
        write(
            root,
            &format!("home/public_html/wp-content/posts/p{i}.html"),
            &text(2_000 + i * 500, seed * 100 + i as u64),
        );
    }
    write(
        root,
        "home/public_html/video.bin",
        &pseudo_random(400_000, seed + 77),
    );
    write(root, "home/mail_notes.txt", b"notes");
    write(root, "home/empty.txt", b"");
    std::fs::create_dir_all(root.join("home/empty-dir")).unwrap();
    std::fs::create_dir_all(root.join("home/deep/a/b/c/d")).unwrap();
    write(root, "home/deep/a/b/c/d/leaf.txt", b"leaf");
    write(
        root,
        "home/docs/日本語 ñ émoji 😀.txt",
        "unicode ✓".as_bytes(),
    );
    let raw = root
        .join("home/docs")
        .join(std::ffi::OsStr::from_bytes(b"raw-\xff\xfe.bin"));
    std::fs::write(&raw, b"not utf-8 name").unwrap();
    write(root, "home/bin/run.sh", b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(
        root.join("home/bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    write(root, "home/.ssh/id", b"secret");
    std::fs::set_permissions(
        root.join("home/.ssh/id"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("public_html", root.join("home/www")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("home/dangling")).unwrap();
    set_mtime(&root.join("home/public_html/index.php"), 1_600_000_000);
    write(
        root,
        "mail/example.com/info/cur/1700000000.M1.host",
        &text(4000, seed + 5),
    );
    write(
        root,
        "mail/example.com/info/new/1700000001.M2.host",
        &text(100, seed + 6),
    );
    write(root, "databases/shop.sql", &text(150_000, seed + 1));
    write(root, "databases/blog.sql", &text(20_000, seed + 2));
    write(
        root,
        "dbusers/grants.sql",
        b"GRANT ALL ON shop.* TO 'shop'@'localhost';",
    );
    write(
        root,
        "dns/example.com.db",
        b"$ORIGIN example.com.\n@ IN A 192.0.2.1\n",
    );
    write(
        root,
        "ssl/example.com.crt",
        b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    write(
        root,
        "cron/alice",
        b"0 3 * * * php ~/public_html/cron.php\n",
    );
    write(root, "ftp/accounts", b"alice_ftp:/home/alice/public_html\n");
    write(root, "panel/config.json", b"{\"plan\":\"basic\"}");
}

pub fn copy_tree(from: &Path, to: &Path) {
    for (rel, data) in list_files(from) {
        write(to, &rel, &data);
    }
}

/// Regular files under `root` with their contents, keyed by relative path (lossy UTF-8).
pub fn list_files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (rel, path, meta) in walk(root) {
        if meta.is_file() {
            out.insert(rel, std::fs::read(path).unwrap());
        }
    }
    out
}

fn walk(root: &Path) -> Vec<(String, PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push((child.clone(), e.path()));
            }
            out.push((child, e.path(), meta));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

const DOCUMENT_DIRS: [&str; 7] = ["panel", "cron", "databases", "dbusers", "dns", "ssl", "ftp"];

/// Same entries, types, contents and symlink targets; for tree items also modes and mtimes.
pub fn assert_trees_equal(a: &Path, b: &Path) {
    compare(a, b, true);
}

/// Same entries, types, contents and symlink targets.
pub fn assert_contents_equal(a: &Path, b: &Path) {
    compare(a, b, false);
}

fn compare(a: &Path, b: &Path, metadata: bool) {
    let left = walk(a);
    let right = walk(b);
    let names = |v: &Vec<(String, PathBuf, std::fs::Metadata)>| {
        v.iter().map(|x| x.0.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&left), names(&right), "different entries");
    for ((rel, pa, ma), (_, pb, mb)) in left.iter().zip(&right) {
        assert_eq!(ma.file_type(), mb.file_type(), "{rel}: type");
        if ma.is_file() {
            assert!(
                std::fs::read(pa).unwrap() == std::fs::read(pb).unwrap(),
                "{rel}: content"
            );
        }
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(pa).unwrap(),
                std::fs::read_link(pb).unwrap(),
                "{rel}: link"
            );
            continue;
        }
        let top = rel.split('/').next().unwrap_or("");
        let depth = rel.split('/').count();
        let document = DOCUMENT_DIRS.contains(&top);
        if metadata && !document && depth >= 2 {
            assert_eq!(
                ma.permissions().mode() & 0o7777,
                mb.permissions().mode() & 0o7777,
                "{rel}: mode"
            );
            assert_eq!(
                (ma.mtime(), ma.mtime_nsec()),
                (mb.mtime(), mb.mtime_nsec()),
                "{rel}: mtime"
            );
        }
    }
}

pub async fn list_objects(store: &Arc<dyn ObjectStore>, kind: &str) -> Vec<StorePath> {
    let all: Vec<_> = store.list(None).try_collect().await.unwrap();
    all.into_iter()
        .map(|m| m.location)
        .filter(|p| p.as_ref().split('/').any(|part| part == kind))
        .collect()
}

pub async fn count_objects(store: &Arc<dyn ObjectStore>, kind: &str) -> usize {
    list_objects(store, kind).await.len()
}

/// Sets every file's and directory's mtime `secs` seconds into the past (the stat cache does
/// not trust files modified in the last seconds).
pub fn age_all(root: &Path, secs: u64) {
    let when = std::time::SystemTime::now() - Duration::from_secs(secs);
    for (_, path, meta) in walk(root) {
        if meta.is_file() {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(when).unwrap();
        }
    }
}

pub fn walk_files(root: &Path) -> Vec<PathBuf> {
    walk(root)
        .into_iter()
        .filter(|(_, _, m)| m.is_file())
        .map(|(_, p, _)| p)
        .collect()
}
