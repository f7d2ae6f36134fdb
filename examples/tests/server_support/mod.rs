//! Helpers shared by the `Server` tests: a recording notifier, live trees, listings of
//! directories and destinations, whole-snapshot restores, byte scans, and the real servers
//! (`BACKUP_TEST_*`: S3 via moto, PostgreSQL) that `scripts/test.sh` starts.

// Each test binary uses its own part of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use backup_core::FsAccount;
use backup_core::engine::RestoreReport;
use backup_core::model::{Account, AccountId, OwnerKey, Snapshot};
use backup_core::ports::{Catalog, Event, EventKind, MemoryCatalog, Notifier, StoreResolver};
use backup_core::service::{RestoreRequest, Server};
use backup_storage::UrlResolver;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

/// Records every event it is given.
#[derive(Debug, Default)]
pub(crate) struct Recorder(Mutex<Vec<Event>>);

#[async_trait::async_trait]
impl Notifier for Recorder {
    async fn notify(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    /// Takes the events recorded so far about `account`, oldest first (the others stay).
    pub(crate) fn take(&self, account: AccountId) -> Vec<EventKind> {
        let mut all = self.0.lock().unwrap();
        let (mine, others): (Vec<Event>, Vec<Event>) =
            all.drain(..).partition(|e| e.account == account);
        *all = others;
        mine.into_iter().map(|e| e.kind).collect()
    }
}

/// A variable `scripts/test.sh` exports; without it the test fails, naming the script.
pub(crate) fn server_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run ./scripts/test.sh, which starts the test servers and sets it"
        )
    })
}

/// A fresh name part.
pub(crate) fn unique() -> String {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    format!(
        "{:016x}{:08x}",
        state.hash_one(std::time::SystemTime::now()),
        state.hash_one(std::process::id()) as u32
    )
}

/// Where a test keeps its catalogs and destinations: a memory catalog and `file://`
/// directories, or PostgreSQL schemas and S3 prefixes of the test servers.
#[derive(Debug)]
pub(crate) struct Place {
    /// Scratch space (live data, restore targets, `file://` destinations).
    pub(crate) dir: tempfile::TempDir,
    servers: bool,
    schemas: Mutex<Vec<String>>,
}

impl Place {
    /// Memory catalogs and `file://` destinations.
    pub(crate) fn local() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            servers: false,
            schemas: Mutex::new(Vec::new()),
        }
    }

    /// PostgreSQL catalogs and S3 destinations (fails without the test servers).
    pub(crate) fn servers() -> Self {
        for name in [
            "BACKUP_TEST_PG_URL",
            "BACKUP_TEST_S3_BUCKET",
            "BACKUP_TEST_S3_ENDPOINT",
        ] {
            server_env(name);
        }
        Self {
            servers: true,
            ..Self::local()
        }
    }

    /// A path in the scratch space.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A new, empty catalog.
    pub(crate) async fn catalog(&self) -> Arc<dyn Catalog> {
        if !self.servers {
            return Arc::new(MemoryCatalog::default());
        }
        let url = server_env("BACKUP_TEST_PG_URL");
        let name = format!("server_test_{}", unique());
        let admin = sqlx::PgPool::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to BACKUP_TEST_PG_URL: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        self.schemas.lock().unwrap().push(name.clone());
        let sep = if url.contains('?') { '&' } else { '?' };
        backup_catalog::open(&format!("{url}{sep}options[search_path]={name}"))
            .await
            .unwrap()
    }

    /// A new, empty destination's URL.
    pub(crate) fn url(&self, name: &str) -> String {
        if self.servers {
            format!(
                "s3://{}/server-{name}-{}?endpoint={}&allow_http=true",
                server_env("BACKUP_TEST_S3_BUCKET"),
                unique(),
                server_env("BACKUP_TEST_S3_ENDPOINT")
            )
        } else {
            file_url(&self.path(name))
        }
    }

    /// Drops the PostgreSQL schemas made by [`Place::catalog`].
    pub(crate) async fn clean_up(self) {
        let names = std::mem::take(&mut *self.schemas.lock().unwrap());
        if names.is_empty() {
            return;
        }
        let admin = sqlx::PgPool::connect(&server_env("BACKUP_TEST_PG_URL"))
            .await
            .unwrap();
        for name in names {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
                .execute(&admin)
                .await
                .unwrap();
        }
        admin.close().await;
    }
}

/// `file://` URL of a directory.
pub(crate) fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// The objects of the destination at `url`, with their sizes, by path below its root.
pub(crate) async fn objects(url: &str) -> BTreeMap<String, u64> {
    let (store, root) = UrlResolver::new().open(url).await.unwrap();
    let metas: Vec<_> = store.list(Some(&root)).try_collect().await.unwrap();
    let prefix = root.as_ref().len();
    metas
        .into_iter()
        .map(|m| {
            let path = m.location.as_ref();
            let rel = path[prefix..].trim_start_matches('/').to_owned();
            (rel, m.size)
        })
        .collect()
}

/// The objects of `account` below `accounts/<id>/<what>/` at `url`.
pub(crate) async fn account_objects(url: &str, account: AccountId, what: &str) -> Vec<String> {
    let prefix = format!("accounts/{account}/{what}/");
    objects(url)
        .await
        .into_keys()
        .filter(|k| k.starts_with(&prefix))
        .collect()
}

fn object_path(root: &ObjectPath, rel: &str) -> ObjectPath {
    if root.as_ref().is_empty() {
        ObjectPath::from(rel)
    } else {
        ObjectPath::from(format!("{root}/{rel}"))
    }
}

/// The bytes of the object `rel` (below the root) of the destination at `url`.
pub(crate) async fn read_object(url: &str, rel: &str) -> Vec<u8> {
    let (store, root) = UrlResolver::new().open(url).await.unwrap();
    let bytes = store
        .get(&object_path(&root, rel))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    bytes.to_vec()
}

/// Flips one bit in the middle of the object `rel` of the destination at `url`.
pub(crate) async fn damage_object(url: &str, rel: &str) {
    let mut bytes = read_object(url, rel).await;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let (store, root) = UrlResolver::new().open(url).await.unwrap();
    store
        .put(&object_path(&root, rel), bytes.into())
        .await
        .unwrap();
}

/// A copy of the owner key (it is not `Clone`).
pub(crate) fn same_key(key: Option<&OwnerKey>) -> Option<OwnerKey> {
    key.map(|k| OwnerKey::new(k.expose().to_owned()))
}

/// Restores every item of `snapshot` into `target` (created).
pub(crate) async fn restore_whole(
    server: &Server,
    account: &Account,
    snapshot: &Snapshot,
    target: &Path,
    key: Option<&OwnerKey>,
) -> backup_core::Result<RestoreReport> {
    std::fs::create_dir_all(target).unwrap();
    let fs = FsAccount::new(target);
    let mut request = RestoreRequest::whole(snapshot, &fs);
    request.owner_key = same_key(key);
    server.restore(account, request).await
}

/// Restores `snapshot` into a fresh `target` and checks it byte for byte against
/// `expected` (an account layout).
pub(crate) async fn restores_to(
    server: &Server,
    account: &Account,
    snapshot: &Snapshot,
    target: &Path,
    key: Option<&OwnerKey>,
    expected: &Path,
) {
    let report = restore_whole(server, account, snapshot, target, key)
        .await
        .unwrap_or_else(|e| panic!("restore of snapshot {} failed: {e}", snapshot.id));
    assert!(
        report.failed.is_empty(),
        "snapshot {} restored incompletely: {:?}",
        snapshot.id,
        report.failed
    );
    assert_eq!(
        backup_examples::compare_trees(expected, target).unwrap(),
        None,
        "snapshot {} restores to {}",
        snapshot.id,
        expected.display()
    );
}

/// Deterministic bytes: `n` of them, text-like or random-looking.
pub(crate) fn filler(seed: u64, n: usize, text: bool) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if text {
            let words = [
                &b"<p>hosting "[..],
                b"backup ",
                b"account ",
                b"restore\n",
                b"mail ",
            ];
            out.extend_from_slice(words[(x % 5) as usize]);
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(n);
    out
}

/// A small account layout under `root` (about 600 KiB): home pages and images, a database
/// dump, a mailbox and a cron table.
pub(crate) fn small_account(root: &Path, seed: u64) {
    let write = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    for i in 0..24u64 {
        write(
            &format!("home/public_html/site{}/page{i}.html", i % 3),
            &filler(seed + i, 2_000 + (i as usize * 997) % 9_000, true),
        );
    }
    for i in 0..6u64 {
        write(
            &format!("home/public_html/img/photo{i}.jpg"),
            &filler(seed + 100 + i, 40_000 + i as usize * 3_000, false),
        );
    }
    write("home/.bashrc", b"export PATH=$HOME/bin:$PATH\n");
    write("databases/shop.sql", &filler(seed + 200, 150_000, true));
    for i in 0..8u64 {
        write(
            &format!("mail/example.com/info/cur/{i}.mx:2,S"),
            &filler(seed + 300 + i, 3_000, true),
        );
    }
    write("cron/crontab", b"*/5 * * * * php ~/public_html/cron.php\n");
}

/// Copies a directory tree (files, directories, symbolic links).
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let dest = to.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &dest);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), dest).unwrap();
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// What can be seen of one entry without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EntryState {
    /// Type and permission bits.
    pub(crate) mode: u32,
    /// Size in bytes.
    pub(crate) size: u64,
    /// Modification time (seconds, nanoseconds).
    pub(crate) mtime: (i64, i64),
    /// Status change time (seconds, nanoseconds): a chmod, chown or rename changes it.
    pub(crate) ctime: (i64, i64),
    /// Inode number (a replaced file has another).
    pub(crate) inode: u64,
}

/// Every entry below `root` (and `root` itself, as `""`), without following links.
pub(crate) fn tree_state(root: &Path) -> BTreeMap<String, EntryState> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, path)) = stack.pop() {
        let m = std::fs::symlink_metadata(&path).unwrap();
        out.insert(
            rel.clone(),
            EntryState {
                mode: m.mode(),
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
                inode: m.ino(),
            },
        );
        if m.is_dir() {
            for e in std::fs::read_dir(&path).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((child, e.path()));
            }
        }
    }
    out
}

/// Every regular file below `root`, without following links.
pub(crate) fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The files among `files` that hold any 32-byte run of `needle`.
pub(crate) fn files_holding(files: &[PathBuf], needle: &[u8]) -> Vec<PathBuf> {
    const RUN: usize = 32;
    assert!(needle.len() >= RUN, "a needle of {} bytes", needle.len());
    let runs: HashSet<&[u8]> = needle.windows(RUN).collect();
    let starts: HashSet<u64> = needle
        .windows(RUN)
        .map(|w| u64::from_le_bytes(w[..8].try_into().unwrap()))
        .collect();
    files
        .iter()
        .filter(|path| {
            // A file may vanish between the listing and the read (a checkpoint).
            let Ok(data) = std::fs::read(path) else {
                return false;
            };
            data.len() >= RUN
                && (0..=data.len() - RUN).any(|i| {
                    starts.contains(&u64::from_le_bytes(data[i..i + 8].try_into().unwrap()))
                        && runs.contains(&data[i..i + RUN])
                })
        })
        .cloned()
        .collect()
}

pub(crate) use backup_examples::backupctl_path;

/// A state directory under `dir/state` (its SQLite catalog, master key, stat caches) with a
/// `file://` destination `main` under `dir/dest` and a server-key account `username`,
/// backed up twice from a small account of `files` files under `dir/live`.
pub(crate) async fn state_backed_up_twice(
    dir: &Path,
    username: &str,
    files: u64,
) -> (backup_examples::StateDir, Account) {
    use backup_core::model::EncryptionMode;
    use backup_core::service::{BackupJob, NewAccount};
    let (state, created) = backup_examples::StateDir::init(&dir.join("state"), None)
        .await
        .unwrap();
    assert!(created);
    let server = &state.server;
    server
        .add_destination("main", &file_url(&dir.join("dest")), None, false)
        .await
        .unwrap();
    let account = server
        .add_account(NewAccount::active(username, EncryptionMode::ServerKey).unwrap())
        .await
        .unwrap()
        .account;
    let live = dir.join("live");
    small_account(&live, files);
    let source = FsAccount::new(&live);
    for _ in 0..2 {
        server
            .backup(BackupJob::new(&account, &source, "main"))
            .await
            .unwrap();
    }
    (state, account)
}

/// An `s3://` URL of a fresh prefix of the test bucket (moto, started by `scripts/test.sh`).
pub(crate) fn s3_url(what: &str) -> String {
    format!(
        "s3://{}/{what}-{}?endpoint={}&allow_http=true",
        server_env("BACKUP_TEST_S3_BUCKET"),
        unique(),
        server_env("BACKUP_TEST_S3_ENDPOINT")
    )
}

/// An `sftp://` URL of a fresh directory on the test sshd (started by `scripts/test.sh`).
pub(crate) fn sftp_url(what: &str) -> String {
    let url = server_env("BACKUP_TEST_SFTP_URL");
    let (base, query) = url.split_once('?').unwrap_or((&url, ""));
    format!("{base}/{what}-{}?{query}", unique())
}

/// The `backupctl` binary over one state directory (its default SQLite catalog).
#[derive(Debug)]
pub(crate) struct Ctl {
    /// The binary.
    pub(crate) bin: PathBuf,
    /// `--home`.
    pub(crate) home: PathBuf,
}

impl Ctl {
    /// `backupctl --home HOME` (not initialised).
    pub(crate) fn new(home: &Path) -> Self {
        Self {
            bin: backupctl_path(),
            home: home.to_path_buf(),
        }
    }

    /// Runs `backupctl --home HOME --progress none ARGS`.
    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(&self.bin)
            .env_remove("BACKUPCTL_CATALOG")
            .arg("--home")
            .arg(&self.home)
            .args(["--progress", "none"])
            .args(args)
            .output()
            .expect("backupctl runs")
    }

    /// Runs a command that must succeed; its stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "backupctl {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs a command that must succeed and print JSON.
    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("backupctl {args:?}: {e}: {out}"))
    }

    /// Runs a command that must fail with exit code `code` and a one-line error; the
    /// error.
    pub(crate) fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).expect("UTF-8 errors");
        assert_eq!(
            out.status.code(),
            Some(code),
            "backupctl {args:?}: {stderr}{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "errors are one line: {stderr:?}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }
}
