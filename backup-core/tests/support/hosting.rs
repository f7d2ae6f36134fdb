//! Helpers of the hostile-tenant and fidelity tests: root detection, repositories, a home
//! next to root-only secrets, tree walks that never follow a link, and metadata maps.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::engine::{self, BackupReport, BackupRequest, RestoreReport, no_progress};
use backup_core::model::{
    Account, DestinationId, EncryptionMode, ItemKind, Ownership, RestorePlan, Snapshot,
};
use backup_core::ports::PlainCrypto;
use backup_core::repo::{AccountRepo, RepoConfig, Repository};
use backup_core::{FsAccount, Result};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use rustix::fs::{AtFlags, Mode, OFlags};

/// Whether the test process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// True (after printing why) when the test must be skipped because it is not run as root.
pub fn not_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    println!("{test}: skipped, it needs root (run the ignored tests as root)");
    true
}

/// Bytes from the kernel's random source: unique to one run.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .expect("read /dev/urandom");
    out
}

/// Deterministic incompressible bytes.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// One account in a repository, with the handle the engine works on.
pub struct Repo {
    pub store: Arc<dyn ObjectStore>,
    pub repo: Repository,
    pub account: Account,
    pub handle: AccountRepo,
}

/// How a restore is run by [`Repo::restore`].
#[derive(Debug, Clone, Copy)]
pub struct How {
    /// Every item of the snapshot rather than the home directory only.
    pub whole: bool,
    pub merge: bool,
    pub ownership: Ownership,
}

impl How {
    /// The home directory, replaced, owners as recorded.
    pub fn home(ownership: Ownership) -> Self {
        Self {
            whole: false,
            merge: false,
            ownership,
        }
    }

    /// Every item of the snapshot, replaced.
    pub fn whole(ownership: Ownership) -> Self {
        Self {
            whole: true,
            merge: false,
            ownership,
        }
    }

    pub fn merged(mut self) -> Self {
        self.merge = true;
        self
    }
}

impl Repo {
    /// A repository in memory.
    pub async fn memory() -> Self {
        Self::on(Arc::new(InMemory::new()), crate::support::small_config()).await
    }

    /// A repository in the directory `dir` (objects under `dir/r/...`).
    pub async fn local(dir: &Path, config: RepoConfig) -> Self {
        let store =
            object_store::local::LocalFileSystem::new_with_prefix(dir).expect("local object store");
        Self::on(Arc::new(store), config).await
    }

    /// A repository on `store`.
    pub async fn on(store: Arc<dyn ObjectStore>, config: RepoConfig) -> Self {
        let repo = Repository::init(store.clone(), "r".into(), config)
            .await
            .expect("repository init");
        let account = Account::new("alice")
            .expect("account")
            .with_encryption(EncryptionMode::None);
        let crypto = Arc::new(PlainCrypto::checksums_only());
        let handle = repo.account(account.id, crypto.clone(), Some(crypto));
        Self {
            store,
            repo,
            account,
            handle,
        }
    }

    /// Backs up the home directory `home` (the whole directory is the home item).
    pub async fn backup_home(&self, home: &Path) -> Result<BackupReport> {
        engine::backup(
            &self.handle,
            &BackupRequest::new(&self.account, DestinationId::new()),
            &FsAccount::home(home),
            &no_progress(),
        )
        .await
    }

    /// Restores `snap` into the home directory `target`.
    pub async fn restore(&self, snap: &Snapshot, target: &Path, how: How) -> Result<RestoreReport> {
        let mut plan = if how.whole {
            RestorePlan::new(self.account.id).whole_snapshot(snap)
        } else {
            RestorePlan::new(self.account.id).item(ItemKind::HomeDir, snap.id)
        };
        plan.options.merge = how.merge;
        plan.options.ownership = how.ownership;
        engine::restore(
            &self.handle,
            &plan,
            std::slice::from_ref(snap),
            &FsAccount::home(target),
            &no_progress(),
        )
        .await
    }
}

/// A home directory with root-only secrets beside it (outside the home):
///
/// ```text
/// BASE/home/               the tenant's home (every byte the tenant's)
/// BASE/secret/shadow       mode 0600, unique random bytes
/// BASE/secret_dir/id_rsa   mode 0600, other unique random bytes (the directory 0700)
/// ```
pub struct Secrets {
    pub base: tempfile::TempDir,
    pub home: PathBuf,
    pub secret_file: PathBuf,
    pub secret_dir: PathBuf,
    pub shadow: Vec<u8>,
    pub id_rsa: Vec<u8>,
}

impl Secrets {
    pub fn new() -> Self {
        let base = tempfile::tempdir().expect("tempdir");
        let home = base.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o711)).unwrap();
        let secret = base.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
        let secret_file = secret.join("shadow");
        let mut shadow = b"SHADOW-SECRET:".to_vec();
        shadow.extend(random_bytes(4096));
        std::fs::write(&secret_file, &shadow).unwrap();
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret_dir = base.path().join("secret_dir");
        std::fs::create_dir(&secret_dir).unwrap();
        std::fs::set_permissions(&secret_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut id_rsa = b"ID-RSA-SECRET:".to_vec();
        id_rsa.extend(random_bytes(4096));
        std::fs::write(secret_dir.join("id_rsa"), &id_rsa).unwrap();
        std::fs::set_permissions(
            secret_dir.join("id_rsa"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        Self {
            base,
            home,
            secret_file,
            secret_dir,
            shadow,
            id_rsa,
        }
    }

    /// Every regular file under `target` (never following a link) holding any 32-byte window
    /// of a secret, with the secret's name.
    pub fn leaks(&self, target: &Path) -> Vec<String> {
        let needles: Vec<(&str, Vec<&[u8]>)> = vec![
            ("shadow", windows(&self.shadow)),
            ("secret_dir/id_rsa", windows(&self.id_rsa)),
        ];
        let mut found = Vec::new();
        walk_fd(target, |rel, data| {
            for (name, pieces) in &needles {
                if pieces.iter().any(|p| contains(data, p)) {
                    found.push(format!("{} holds bytes of {name}", rel.display()));
                }
            }
        });
        found
    }

    /// Asserts that no file under `target` holds secret bytes.
    pub fn assert_no_leak(&self, target: &Path, context: &str) {
        let leaks = self.leaks(target);
        assert!(
            leaks.is_empty(),
            "{context}: root-only bytes from outside the home were restored: {leaks:?}"
        );
    }

    /// What exists outside the restore targets: the whole BASE directory (home, secrets) and
    /// the names at the file-system root.
    pub fn outside(&self) -> Outside {
        Outside::of(self.base.path())
    }
}

impl Default for Secrets {
    fn default() -> Self {
        Self::new()
    }
}

fn windows(secret: &[u8]) -> Vec<&[u8]> {
    (0..secret.len() - 32)
        .step_by(256)
        .map(|at| &secret[at..at + 32])
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A listing of a directory (type, size, mode, owner, mtime of every entry, content hash
/// of files) and of the names in `/`, to show a restore changed nothing outside its target.
#[derive(Debug, PartialEq, Eq)]
pub struct Outside {
    tree: BTreeMap<PathBuf, String>,
    slash: Vec<String>,
}

impl Outside {
    pub fn of(dir: &Path) -> Self {
        let mut tree = BTreeMap::new();
        let entries = walk_fd(dir, |_, _| {});
        for e in entries {
            let mut line = format!(
                "mode {:o} uid {} gid {} size {} mtime {}.{}",
                e.mode, e.uid, e.gid, e.size, e.mtime, e.mtime_nsec
            );
            if let Some(t) = &e.link {
                line.push_str(&format!(" -> {}", t.display()));
            }
            if let Some(h) = e.content_hash {
                line.push_str(&format!(" hash {h:016x}"));
            }
            tree.insert(e.rel, line);
        }
        let mut slash: Vec<String> = std::fs::read_dir("/")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        slash.sort();
        Self { tree, slash }
    }

    /// Asserts nothing changed since `self` was taken of the same directory.
    pub fn assert_unchanged(&self, dir: &Path, context: &str) {
        let now = Self::of(dir);
        let changed: Vec<String> = self
            .tree
            .iter()
            .filter(|(k, v)| now.tree.get(*k) != Some(*v))
            .map(|(k, v)| format!("{}: was {v}, now {:?}", k.display(), now.tree.get(k)))
            .chain(
                now.tree
                    .keys()
                    .filter(|k| !self.tree.contains_key(*k))
                    .map(|k| format!("{}: created", k.display())),
            )
            .collect();
        assert!(
            changed.is_empty(),
            "{context}: entries outside the restore target changed: {changed:?}"
        );
        assert_eq!(
            self.slash, now.slash,
            "{context}: the names in / changed (something was created outside the target)"
        );
    }
}

/// One entry found by [`walk_fd`].
#[derive(Debug, Clone)]
pub struct FdEntry {
    /// Path relative to the walked root ("" for the root itself is not listed).
    pub rel: PathBuf,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub blocks: u64,
    pub ino: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// The target of a symbolic link.
    pub link: Option<PathBuf>,
    /// A hash of a regular file's content.
    pub content_hash: Option<u64>,
}

pub const S_IFMT: u32 = 0o170_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFIFO: u32 = 0o010_000;

/// Walks `root` through directory descriptors (openat with O_NOFOLLOW, so neither links
/// nor path length limits matter) and calls `on_file` with every regular file's path and
/// content (files larger than 64 MiB are not read). Returns every entry below `root`.
pub fn walk_fd(root: &Path, mut on_file: impl FnMut(&Path, &[u8])) -> Vec<FdEntry> {
    let dir = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", root.display()));
    let mut out = Vec::new();
    let mut stack: Vec<(OwnedFd, PathBuf)> = vec![(dir, PathBuf::new())];
    while let Some((fd, rel)) = stack.pop() {
        let mut names = Vec::new();
        let mut reader = rustix::fs::Dir::read_from(&fd).expect("read directory");
        while let Some(entry) = reader.read() {
            let entry = entry.expect("directory entry");
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push(name.to_vec());
        }
        names.sort();
        for name in names {
            let name_os = OsStr::from_bytes(&name);
            let child = rel.join(name_os);
            let st = rustix::fs::statat(&fd, name_os, AtFlags::SYMLINK_NOFOLLOW)
                .unwrap_or_else(|e| panic!("stat {}: {e}", child.display()));
            let mode = st.st_mode;
            let mut e = FdEntry {
                rel: child.clone(),
                mode,
                uid: st.st_uid,
                gid: st.st_gid,
                size: st.st_size as u64,
                blocks: st.st_blocks as u64,
                ino: st.st_ino,
                mtime: st.st_mtime as i64,
                mtime_nsec: st.st_mtime_nsec as i64,
                link: None,
                content_hash: None,
            };
            match mode & S_IFMT {
                S_IFDIR => {
                    let sub = rustix::fs::openat(
                        &fd,
                        name_os,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .unwrap_or_else(|e| panic!("open {}: {e}", child.display()));
                    stack.push((sub, child));
                }
                S_IFLNK => {
                    let t = rustix::fs::readlinkat(&fd, name_os, Vec::new()).unwrap();
                    e.link = Some(PathBuf::from(OsStr::from_bytes(t.as_bytes())));
                }
                S_IFREG if e.size <= 64 << 20 => {
                    let f = rustix::fs::openat(
                        &fd,
                        name_os,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                        Mode::empty(),
                    )
                    .unwrap_or_else(|e| panic!("open {}: {e}", child.display()));
                    let mut data = Vec::new();
                    std::fs::File::from(f).read_to_end(&mut data).unwrap();
                    e.content_hash = Some(hash(&data));
                    on_file(&child, &data);
                }
                _ => {}
            }
            out.push(e);
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

/// FNV-1a, enough to tell contents apart in a listing.
pub fn hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Creates directories `names` one inside the other below the directory `root` through
/// descriptors (so the depth may exceed PATH_MAX) and returns the descriptor of the last.
pub fn mkdir_chain(root: &Path, names: &[Vec<u8>]) -> OwnedFd {
    let mut fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    for name in names {
        let n = OsStr::from_bytes(name);
        rustix::fs::mkdirat(&fd, n, Mode::from_raw_mode(0o755)).unwrap();
        fd = rustix::fs::openat(
            &fd,
            n,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
    }
    fd
}

/// Opens the chain of directories `names` below `root` through descriptors.
pub fn open_chain(root: &Path, names: &[Vec<u8>]) -> std::io::Result<OwnedFd> {
    let mut fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for name in names {
        fd = rustix::fs::openat(
            &fd,
            OsStr::from_bytes(name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(fd)
}

/// Writes the file `name` in the directory `dir`.
pub fn write_at(dir: impl AsFd, name: &str, data: &[u8]) {
    let f = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    std::io::Write::write_all(&mut std::fs::File::from(f), data).unwrap();
}

/// Reads the file `name` in the directory `dir`.
pub fn read_at(dir: impl AsFd, name: &str) -> std::io::Result<Vec<u8>> {
    let f = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut data = Vec::new();
    std::fs::File::from(f).read_to_end(&mut data)?;
    Ok(data)
}

/// Creates a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// Extended attributes of `path` (not following a link), name -> value.
pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return out,
        Err(e) => panic!("llistxattr {}: {e}", path.display()),
    };
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, name.as_str(), &mut value[..])
            .unwrap_or_else(|e| panic!("lgetxattr {} {name}: {e}", path.display()));
        value.truncate(len);
        out.insert(name, value);
    }
    out
}

/// What the fidelity tests compare of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// File type bits of `st_mode`.
    pub kind: u32,
    /// The 12 permission bits (setuid, setgid, sticky, rwx x3).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    pub size: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    pub link: Option<PathBuf>,
}

/// `path -> Meta` for `root` itself (key "") and every entry below it, never following a
/// link (std paths: for trees within PATH_MAX).
pub fn meta_map(root: &Path) -> BTreeMap<String, Meta> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), root.to_path_buf())];
    while let Some((rel, path)) = stack.pop() {
        let m = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let kind = m.mode() & S_IFMT;
        let link = (kind == S_IFLNK).then(|| std::fs::read_link(&path).unwrap());
        if kind == S_IFDIR {
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
        out.insert(
            rel,
            Meta {
                kind,
                perm: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                size: m.size(),
                xattrs: xattrs(&path),
                link,
            },
        );
    }
    out
}

/// Compares two maps entry by entry, listing every difference.
pub fn diff_maps(
    expected: &BTreeMap<String, Meta>,
    actual: &BTreeMap<String, Meta>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, e) in expected {
        let name = if k.is_empty() { "<home root>" } else { k };
        match actual.get(k) {
            None => out.push(format!("{name}: missing")),
            Some(a) if a != e => {
                let mut parts = Vec::new();
                if a.kind != e.kind {
                    parts.push(format!("type {:o} != {:o}", a.kind, e.kind));
                }
                if a.perm != e.perm {
                    parts.push(format!("mode {:04o} != {:04o}", a.perm, e.perm));
                }
                if (a.uid, a.gid) != (e.uid, e.gid) {
                    parts.push(format!("owner {}:{} != {}:{}", a.uid, a.gid, e.uid, e.gid));
                }
                if a.mtime_ns != e.mtime_ns {
                    parts.push(format!("mtime_ns {} != {}", a.mtime_ns, e.mtime_ns));
                }
                if a.size != e.size {
                    parts.push(format!("size {} != {}", a.size, e.size));
                }
                if a.xattrs != e.xattrs {
                    parts.push(format!(
                        "xattrs {:?} != {:?}",
                        a.xattrs.keys().collect::<Vec<_>>(),
                        e.xattrs.keys().collect::<Vec<_>>()
                    ));
                }
                if a.link != e.link {
                    parts.push(format!("link {:?} != {:?}", a.link, e.link));
                }
                out.push(format!(
                    "{name}: {} (restored != expected)",
                    parts.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            out.push(format!("{k}: not in the source"));
        }
    }
    out
}

/// Hidden temporaries a restore may use: `.bkrestore-*` entries or names containing
/// `.restore-`, anywhere under `root`.
pub fn restore_temporaries(root: &Path) -> Vec<PathBuf> {
    walk_fd(root, |_, _| {})
        .into_iter()
        .filter(|e| {
            let name = e
                .rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.starts_with(".bkrestore-") || name.contains(".restore-")
        })
        .map(|e| e.rel)
        .collect()
}
