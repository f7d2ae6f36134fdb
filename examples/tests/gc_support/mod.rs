//! Helpers of the garbage-collection tests (`gc.rs`): a seeded generator, a small live tree
//! and its expected state, accounts of each encryption mode on an in-memory repository,
//! restores compared byte for byte, the collector's repack decisions worked out
//! independently, and a store that adds random latency so that concurrent steps interleave.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::FsAccount;
use backup_core::engine::{self, BackupRequest, PruneOptions, PruneReport, VerifyOptions};
use backup_core::model::{
    Account, DestinationId, EncryptionMode, OwnerKey, PackId, RestorePlan, Snapshot, SnapshotId,
};
use backup_core::repo::{
    AccountRepo, ChunkerParams, Compression, References, RepoConfig, Repository,
};
use backup_crypto::AccountKeys;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// SplitMix64: a tiny seeded generator (no crate needed), the same sequence on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// `n` incompressible bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// Incompressible bytes, as many as a number in `len`.
    pub fn bytes_in(&mut self, len: std::ops::Range<usize>) -> Vec<u8> {
        let n = len.start + self.below(len.end - len.start);
        self.bytes(n)
    }

    /// Text, as many bytes as a number in `len`.
    pub fn text_in(&mut self, len: std::ops::Range<usize>) -> Vec<u8> {
        let n = len.start + self.below(len.end - len.start);
        self.text(n)
    }

    /// `n` bytes of compressible text.
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&str; 8] = [
            "collect ",
            "pack ",
            "grace ",
            "lease ",
            "repack ",
            "snapshot ",
            "blob ",
            "index\n",
        ];
        let mut out = Vec::with_capacity(n + 16);
        while out.len() < n {
            out.extend_from_slice(WORDS[self.below(WORDS.len())].as_bytes());
        }
        out.truncate(n);
        out
    }
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What a `home` tree holds: every file's bytes and every directory, by relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeState {
    pub files: BTreeMap<String, Vec<u8>>,
    pub dirs: BTreeSet<String>,
}

impl TreeState {
    /// Reads the tree under `dir` (empty when `dir` does not exist).
    pub fn capture(dir: &Path) -> Self {
        let mut state = Self::default();
        let mut stack = vec![(String::new(), dir.to_path_buf())];
        while let Some((rel, path)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&path) else {
                continue;
            };
            for e in entries {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let meta = std::fs::symlink_metadata(e.path()).unwrap();
                if meta.is_dir() {
                    state.dirs.insert(child.clone());
                    stack.push((child, e.path()));
                } else {
                    state.files.insert(child, std::fs::read(e.path()).unwrap());
                }
            }
        }
        state
    }

    /// What differs from `other`, by path (empty when the trees are equal).
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let mut out = Vec::new();
        for d in self.dirs.symmetric_difference(&other.dirs) {
            out.push(format!("directory {d} in one tree only"));
        }
        let names: BTreeSet<&String> = self.files.keys().chain(other.files.keys()).collect();
        for n in names {
            match (self.files.get(n), other.files.get(n)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    out.push(format!("{n}: {} vs {} bytes, differ", a.len(), b.len()))
                }
                (Some(_), None) => out.push(format!("{n}: missing from the restored tree")),
                (None, _) => out.push(format!("{n}: not expected")),
            }
        }
        out
    }
}

/// A new temporary directory, in memory where the system has a tmpfs at `/dev/shm` (the race
/// test restores thousands of trees).
pub fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("gc-test").tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// An account directory in the `FsAccount` layout with only a `home` tree.
#[derive(Debug)]
pub struct Live {
    dir: tempfile::TempDir,
}

impl Live {
    pub fn new() -> Self {
        let dir = scratch();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Self { dir }
    }

    /// The account directory (what `FsAccount` backs up).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.home().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        let p = self.home().join(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    pub fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.home().join(rel)).unwrap();
    }

    pub fn state(&self) -> TreeState {
        TreeState::capture(&self.home())
    }
}

/// Small chunks (4-64 KiB, so every chunk is a group member) and 64 KiB packs.
pub fn small_config() -> RepoConfig {
    RepoConfig {
        chunker: ChunkerParams {
            min_size: 4 * 1024,
            avg_size: 16 * 1024,
            max_size: 64 * 1024,
        },
        pack_size: 64 * 1024,
    }
}

/// Chunks of at least 64 KiB: a file of exactly 64 KiB is one single (ungrouped) blob and a
/// smaller file one group member. Packs of `pack_size` bytes.
pub fn single_blob_config(pack_size: u32) -> RepoConfig {
    RepoConfig {
        chunker: ChunkerParams {
            min_size: 64 * 1024,
            avg_size: 64 * 1024,
            max_size: 128 * 1024,
        },
        pack_size,
    }
}

/// One account on an in-memory repository, with its keys. The store the repository uses
/// may wrap the in-memory one (latency); `mem` is the bytes, for forks and clean handles.
#[derive(Debug)]
pub struct Fixture {
    pub mem: Arc<InMemory>,
    pub repo: Repository,
    pub account: Account,
    pub keys: Arc<AccountKeys>,
    pub owner_key: Option<Arc<OwnerKey>>,
    pub destination: DestinationId,
}

pub const ROOT: &str = "dest";

impl Fixture {
    /// A new repository on a new in-memory store with one account in `mode`.
    pub async fn new(name: &str, mode: EncryptionMode, config: RepoConfig) -> Self {
        let mem = Arc::new(InMemory::new());
        Self::over(mem.clone(), mem, name, mode, config).await
    }

    /// A new account in `mode` on the repository at [`ROOT`] of `store` (created if missing).
    pub async fn over(
        mem: Arc<InMemory>,
        store: Arc<dyn ObjectStore>,
        name: &str,
        mode: EncryptionMode,
        config: RepoConfig,
    ) -> Self {
        let repo = Repository::init(store, StorePath::from(ROOT), config)
            .await
            .unwrap();
        let account = Account::new(name).unwrap().with_encryption(mode);
        let (keys, owner_key) = AccountKeys::generate(account.id, mode).unwrap();
        Self {
            mem,
            repo,
            account,
            keys: Arc::new(keys),
            owner_key: owner_key.map(Arc::new),
            destination: DestinationId::new(),
        }
    }

    /// The same account and keys on a copy of the store taken now (later writes to either
    /// are not seen by the other).
    pub async fn fork(&self) -> Self {
        let mem = Arc::new(self.mem.fork());
        let repo = Repository::open(mem.clone(), StorePath::from(ROOT))
            .await
            .unwrap();
        Self {
            mem,
            repo,
            account: self.account.clone(),
            keys: self.keys.clone(),
            owner_key: self.owner_key.clone(),
            destination: self.destination,
        }
    }

    /// The repository opened over `store` (a wrapper of this fixture's bytes).
    pub async fn repo_over(&self, store: Arc<dyn ObjectStore>) -> Repository {
        Repository::open(store, StorePath::from(ROOT))
            .await
            .unwrap()
    }

    /// The handle the server writes and collects with: the sealer and server keys only.
    /// An owner-key account's content does not open with it.
    pub fn collector(&self) -> AccountRepo {
        self.collector_on(&self.repo)
    }

    pub fn collector_on(&self, repo: &Repository) -> AccountRepo {
        repo.account(self.account.id, self.keys.sealer(), None)
    }

    /// A handle with the content key (the owner's, for an owner-key account).
    pub fn reader(&self) -> AccountRepo {
        self.reader_on(&self.repo)
    }

    pub fn reader_on(&self, repo: &Repository) -> AccountRepo {
        let opener = self.keys.opener(self.owner_key.as_deref()).unwrap();
        repo.account(self.account.id, self.keys.sealer(), Some(opener))
    }

    /// A handle on the bare in-memory store (no wrapper), with the content key.
    pub async fn clean_reader(&self) -> AccountRepo {
        let repo = self.repo_over(self.mem.clone()).await;
        self.reader_on(&repo)
    }

    /// Backs up `live` through `handle` (one packing thread: packs are laid out the same
    /// way on every run).
    pub async fn backup_with(
        &self,
        handle: &AccountRepo,
        live: &Live,
    ) -> backup_core::Result<Snapshot> {
        let mut request = BackupRequest::new(&self.account, self.destination);
        request.threads = 1;
        let source = FsAccount::new(live.root());
        Ok(
            engine::backup(handle, &request, &source, &engine::no_progress())
                .await?
                .snapshot,
        )
    }

    pub async fn backup(&self, live: &Live) -> Snapshot {
        self.backup_with(&self.collector(), live).await.unwrap()
    }

    /// Forgets a snapshot at engine level (deletes its object).
    pub async fn forget(&self, id: SnapshotId) {
        assert!(self.collector().delete_snapshot_object(id).await.unwrap());
    }

    pub async fn prune(&self, grace: chrono::Duration, repack_below: f64) -> PruneReport {
        prune_now(&self.collector(), grace, repack_below).await
    }
}

/// Prune options at the real clock.
pub fn options(grace: chrono::Duration, repack_below: f64) -> PruneOptions {
    PruneOptions {
        grace,
        repack_below,
        dry_run: false,
        now: chrono::Utc::now(),
        ..Default::default()
    }
}

pub async fn prune_now(handle: &AccountRepo, grace: chrono::Duration, below: f64) -> PruneReport {
    engine::prune(handle, &options(grace, below)).await.unwrap()
}

/// Restores `snap` into a new directory and returns the `home` tree restored, or the
/// error, or the entries the restore could not write (with their reasons).
pub async fn restore(reader: &AccountRepo, snap: &Snapshot) -> Result<TreeState, String> {
    let target = scratch();
    let plan = RestorePlan::new(reader.account()).whole_snapshot(snap);
    let report = engine::restore(
        reader,
        &plan,
        std::slice::from_ref(snap),
        &FsAccount::new(target.path()),
        &engine::no_progress(),
    )
    .await
    .map_err(|e| e.to_string())?;
    if !report.failed.is_empty() {
        return Err(format!("entries not restored: {:?}", report.failed.entries));
    }
    Ok(TreeState::capture(&target.path().join("home")))
}

/// Restores `snap` and compares it with `expected`, byte for byte.
pub async fn assert_restores(
    reader: &AccountRepo,
    snap: &Snapshot,
    expected: &TreeState,
    context: &str,
) {
    let restored = match restore(reader, snap).await {
        Ok(t) => t,
        Err(e) => panic!("{context}: snapshot {} does not restore: {e}", snap.id),
    };
    let diff = expected.differences(&restored);
    assert!(
        diff.is_empty(),
        "{context}: snapshot {} restores differently: {diff:?}",
        snap.id
    );
}

/// Verifies every snapshot, reading every pack back.
pub async fn assert_verifies(reader: &AccountRepo, context: &str) {
    let report = engine::verify(
        reader,
        &[],
        VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{context}: verify failed: {e}"));
    assert!(
        report.is_ok(),
        "{context}: verify found {:?}",
        report.problems
    );
}

/// The account's packs and the bytes they take.
pub async fn packs(handle: &AccountRepo) -> (BTreeSet<PackId>, u64) {
    let listed = handle.list_packs().await.unwrap();
    let bytes = listed.iter().map(|(_, n)| n).sum();
    (listed.into_iter().map(|(p, _)| p).collect(), bytes)
}

pub async fn snapshot_ids(handle: &AccountRepo) -> BTreeSet<SnapshotId> {
    handle.list_snapshots().await.unwrap().into_iter().collect()
}

/// Per pack, the trailer entries some snapshot object references (read from the headers).
pub async fn live_entries(handle: &AccountRepo) -> BTreeMap<PackId, BTreeSet<usize>> {
    let mut live: BTreeMap<PackId, BTreeSet<usize>> = BTreeMap::new();
    for id in handle.list_snapshots().await.unwrap() {
        match handle.load_snapshot_header(id).await.unwrap() {
            References::Packs(refs) => {
                for r in refs {
                    live.entry(r.pack).or_default().extend(r.indices());
                }
            }
            References::Blobs(_) => panic!("this engine writes pack references"),
        }
    }
    live
}

/// What a collection with `repack_below` should do with the referenced packs, worked out
/// from the trailers: packs whose live share of the blobs' stored bytes (a group's span
/// once) is below the threshold are repacked, unless a live blob sits in a sealed group
/// (then skipped).
#[derive(Debug, Default)]
pub struct RepackPlan {
    pub repack: BTreeSet<PackId>,
    pub skip: BTreeSet<PackId>,
}

pub async fn expected_repack(handle: &AccountRepo, repack_below: f64) -> RepackPlan {
    let live = live_entries(handle).await;
    let locator = handle.load_locator().await.unwrap();
    let mut plan = RepackPlan::default();
    for (pack, _) in handle.list_packs().await.unwrap() {
        let Some(entries) = live.get(&pack) else {
            continue;
        };
        let trailer = locator.pack(&pack).expect("every pack has a trailer");
        // Group members share their group's offset and stored length.
        let spans: BTreeSet<(u64, u32)> = entries
            .iter()
            .map(|&i| (trailer.entries[i].offset, trailer.entries[i].stored_len))
            .collect();
        let used: u64 = spans.iter().map(|(_, n)| u64::from(*n)).sum();
        // Measured against the bytes of every blob, the trailer left out.
        let all: BTreeSet<(u64, u32)> = trailer
            .entries
            .iter()
            .map(|e| (e.offset, e.stored_len))
            .collect();
        let all: u64 = all.iter().map(|(_, n)| u64::from(*n)).sum();
        if used as f64 >= repack_below * all as f64 {
            continue;
        }
        let sealed_group = !trailer.seal_header.is_empty()
            && entries
                .iter()
                .any(|&i| trailer.entries[i].compression == Compression::ZstdGroup);
        if sealed_group {
            plan.skip.insert(pack);
        } else {
            plan.repack.insert(pack);
        }
    }
    plan
}

/// What runs before each call of a [`HookStore`]: `op` is `"put"`, `"get"`, `"list"` or
/// `"delete"`, `path` the object (or the listed prefix).
pub trait Hook: std::fmt::Debug + Send + Sync + 'static {
    fn before(self: Arc<Self>, op: &'static str, path: String) -> BoxFuture<'static, ()>;
}

/// A store that runs its hook before each call of the store it wraps.
#[derive(Debug)]
pub struct HookStore<H> {
    inner: Arc<dyn ObjectStore>,
    hook: Arc<H>,
}

impl<H> Clone for HookStore<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl<H: Hook> HookStore<H> {
    fn with(inner: Arc<dyn ObjectStore>, hook: H) -> Self {
        Self {
            inner,
            hook: Arc::new(hook),
        }
    }

    async fn before(&self, op: &'static str, path: &str) {
        self.hook.clone().before(op, path.to_owned()).await;
    }
}

impl<H: Hook> std::fmt::Display for HookStore<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HookStore({:?}, {})", self.hook, self.inner)
    }
}

#[async_trait]
impl<H: Hook> ObjectStore for HookStore<H> {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.before("put", location.as_ref()).await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.before("put", location.as_ref()).await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &StorePath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.before("get", location.as_ref()).await;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<StorePath>>,
    ) -> BoxStream<'static, object_store::Result<StorePath>> {
        let inner = self.inner.clone();
        let hook = self.hook.clone();
        locations
            .then(move |location| {
                let (inner, hook) = (inner.clone(), hook.clone());
                async move {
                    let location = location?;
                    hook.before("delete", location.as_ref().to_owned()).await;
                    inner.delete(&location).await.map(|()| location)
                }
            })
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&StorePath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let inner = self.inner.clone();
        let hook = self.hook.clone();
        let prefix = prefix.cloned();
        futures::stream::once(async move {
            let path = prefix.as_ref().map(|p| p.as_ref().to_owned());
            hook.before("list", path.unwrap_or_default()).await;
            // Listed after the hook, as a slow server would.
            inner.list(prefix.as_ref())
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&StorePath>,
    ) -> object_store::Result<ListResult> {
        let path = prefix.map(|p| p.as_ref().to_owned()).unwrap_or_default();
        self.before("list", &path).await;
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

/// A random delay (0-2 ms, on about two calls in three) before the calls of the store it
/// wraps, so that a backup's and a collector's steps interleave differently each round.
#[derive(Debug)]
pub struct Latency {
    state: AtomicU64,
    enabled: AtomicBool,
}

impl Hook for Latency {
    fn before(self: Arc<Self>, _: &'static str, _: String) -> BoxFuture<'static, ()> {
        let delay = self.delay();
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
        })
    }
}

impl Latency {
    fn delay(&self) -> Option<Duration> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let x = mix(self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
        (!x.is_multiple_of(3)).then(|| Duration::from_micros((x >> 8) % 2_000))
    }
}

/// A store with [`Latency`].
pub type LatencyStore = HookStore<Latency>;

impl LatencyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, seed: u64) -> Self {
        Self::with(
            inner,
            Latency {
                state: AtomicU64::new(seed),
                enabled: AtomicBool::new(true),
            },
        )
    }

    pub fn set_enabled(&self, on: bool) {
        self.hook.enabled.store(on, Ordering::Relaxed);
    }
}

/// Which calls a [`GateStore`] holds: the `nth` (from 1) call of kind `op` (`"get"`,
/// `"put"`, `"list"`, `"delete"`) whose path ends with `suffix` (or contains it, for
/// `contains`).
#[derive(Debug, Clone)]
pub struct GateRule {
    pub op: &'static str,
    pub path: String,
    pub contains: bool,
    pub nth: u64,
}

/// Holds one chosen call until released: a test stops a backup or a collector at an exact
/// step and lets the other run meanwhile.
#[derive(Debug)]
pub struct Gate {
    rule: GateRule,
    seen: AtomicU64,
    reached: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

impl Hook for Gate {
    fn before(self: Arc<Self>, op: &'static str, path: String) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let r = &self.rule;
            let matches = op == r.op
                && if r.contains {
                    path.contains(&r.path)
                } else {
                    path.ends_with(&r.path)
                };
            if matches && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == r.nth {
                self.reached.notify_one();
                self.go.notified().await;
            }
        })
    }
}

/// A store with a [`Gate`].
pub type GateStore = HookStore<Gate>;

impl GateStore {
    pub fn new(inner: Arc<dyn ObjectStore>, rule: GateRule) -> Self {
        Self::with(
            inner,
            Gate {
                rule,
                seen: AtomicU64::new(0),
                reached: tokio::sync::Notify::new(),
                go: tokio::sync::Notify::new(),
            },
        )
    }

    /// Waits until the chosen call is held.
    pub async fn reached(&self) {
        self.hook.reached.notified().await;
    }

    /// Lets the held call go on.
    pub fn release(&self) {
        self.hook.go.notify_one();
    }
}
