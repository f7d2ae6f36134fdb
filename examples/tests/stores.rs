//! Backup -> restore through the engine against real S3 and SFTP servers (started by
//! `scripts/test.sh`), with encrypted accounts: the server assembled over a state directory,
//! the `backupctl` CLI, and a measurement of throughput per store and S3 requests per GiB.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use backup_core::engine::{self, BackupRequest};
use backup_core::model::{
    Account, DestinationId, EncryptionMode, ItemKind, OwnerKey, RestorePlan, Snapshot,
};
use backup_core::repo::{RepoConfig, Repository};
use backup_core::service::{BackupJob, NewAccount, RestoreRequest, VerifyRequest};
use backup_core::{ErrorKind, FsAccount};
use backup_crypto::AccountKeys;
use backup_examples::{StateDir, change_some_files, compare_trees, generate_sample_account};

mod server_support;
use backup_storage::object_store::ObjectStore;
use backup_storage::{CountingStore, RequestKind};
use server_support::copy_tree;

/// A variable `scripts/test.sh` exports; without it the test fails, naming the script.
fn server_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run ./scripts/test.sh, which starts the test servers and sets it"
        )
    })
}

fn unique() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "{:016x}",
        RandomState::new().hash_one(std::time::SystemTime::now())
    )
}

/// An `s3://` URL of the test bucket under a fresh prefix.
fn s3_url(what: &str) -> String {
    format!(
        "s3://{}/{what}-{}?endpoint={}&allow_http=true",
        server_env("BACKUP_TEST_S3_BUCKET"),
        unique(),
        server_env("BACKUP_TEST_S3_ENDPOINT")
    )
}

/// An `sftp://` URL of a fresh directory on the test server.
fn sftp_url(what: &str) -> String {
    let url = server_env("BACKUP_TEST_SFTP_URL");
    let (base, query) = url.split_once('?').unwrap_or((&url, ""));
    format!("{base}/{what}-{}?{query}", unique())
}

fn same_key(key: &Option<OwnerKey>) -> Option<OwnerKey> {
    key.as_ref().map(|k| OwnerKey::new(k.expose().to_owned()))
}

/// Two backups of an encrypted account, a full restore, a mixed restore (home from the
/// first snapshot, databases from the second) and a data verification, all through `url`.
async fn server_round_trip(url: &str, encryption: EncryptionMode) {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) = StateDir::init(&dir.path().join("state"), None)
        .await
        .unwrap();
    let server = &state.server;
    server
        .add_destination("remote", url, None, false)
        .await
        .unwrap();
    let out = server
        .add_account(NewAccount::active("alice", encryption).unwrap())
        .await
        .unwrap();
    let live = dir.path().join("live");
    generate_sample_account(&live, 150).unwrap();
    let source = FsAccount::new(&live);
    let first = server
        .backup(BackupJob::new(&out.account, &source, "remote"))
        .await
        .unwrap();
    assert!(first.skipped.is_empty(), "{:?}", first.skipped);
    let first = first.snapshot;
    assert!(first.encrypted);
    let before = dir.path().join("before");
    copy_tree(&live, &before);
    change_some_files(&live, 5).unwrap();
    let second = server
        .backup(BackupJob::new(&out.account, &source, "remote"))
        .await
        .unwrap()
        .snapshot;
    assert!(
        second.stats.bytes_new < first.stats.bytes_new / 4,
        "the second backup deduplicates: {:?}",
        second.stats
    );

    let restore = async |items: Vec<(ItemKind, Snapshot)>, target: &Path, key: Option<OwnerKey>| {
        std::fs::create_dir_all(target).unwrap();
        let target = FsAccount::new(target);
        let mut request = RestoreRequest::new(items, &target);
        request.owner_key = key;
        server.restore(&out.account, request).await
    };
    let all: Vec<_> = second
        .items
        .iter()
        .map(|i| (i.kind, second.clone()))
        .collect();
    let restored = dir.path().join("restored");
    let report = restore(all.clone(), &restored, same_key(&out.owner_key))
        .await
        .unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(compare_trees(&live, &restored).unwrap(), None);

    let mixed = dir.path().join("mixed");
    let items = vec![
        (ItemKind::HomeDir, first.clone()),
        (ItemKind::Databases, second.clone()),
    ];
    restore(items, &mixed, same_key(&out.owner_key))
        .await
        .unwrap();
    assert_eq!(
        compare_trees(&before.join("home"), &mixed.join("home")).unwrap(),
        None
    );
    assert_eq!(
        compare_trees(&live.join("databases"), &mixed.join("databases")).unwrap(),
        None
    );

    let reports = server
        .verify(
            &out.account,
            &VerifyRequest {
                read_data: true,
                owner_key: same_key(&out.owner_key),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    let report = &reports[0].1;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.snapshots, 2);
    assert!(report.blobs_authenticated > 0);

    if encryption == EncryptionMode::OwnerKey {
        // The server alone cannot read an owner-key account's backups.
        let err = restore(all, &dir.path().join("no-key"), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Key, "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs S3: run scripts/test.sh"]
async fn s3_backup_restore_with_server_held_key() {
    server_round_trip(&s3_url("server"), EncryptionMode::ServerKey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs S3: run scripts/test.sh"]
async fn s3_backup_restore_with_owner_held_key() {
    server_round_trip(&s3_url("server-owner"), EncryptionMode::OwnerKey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SFTP: run scripts/test.sh"]
async fn sftp_backup_restore_with_server_held_key() {
    server_round_trip(&sftp_url("server"), EncryptionMode::ServerKey).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs SFTP: run scripts/test.sh"]
async fn sftp_backup_restore_with_owner_held_key() {
    server_round_trip(&sftp_url("server-owner"), EncryptionMode::OwnerKey).await;
}

fn backupctl(home: &Path, args: &[&str]) -> String {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples")
        .join("backupctl");
    let out = Command::new(&bin)
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", bin.display()));
    assert!(
        out.status.success(),
        "backupctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `backupctl destination add NAME s3://...` and `sftp://...`, then a backup to each and
/// a restore from each.
#[test]
#[ignore = "needs S3 and SFTP: run scripts/test.sh"]
fn backupctl_backs_up_to_s3_and_sftp() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("state");
    backupctl(&home, &["init"]);
    let s3 = s3_url("cli");
    let sftp = sftp_url("cli");
    let out = backupctl(&home, &["destination", "add", "s3", &s3]);
    assert!(out.contains("s3://"), "{out}");
    let out = backupctl(&home, &["destination", "add", "sftp", &sftp]);
    assert!(out.contains("sftp://"), "{out}");
    backupctl(&home, &["account", "add", "bob", "--encryption", "server"]);
    let live = dir.path().join("live");
    generate_sample_account(&live, 60).unwrap();
    let src = live.display().to_string();
    for destination in ["s3", "sftp"] {
        let json = backupctl(
            &home,
            &[
                "backup",
                "bob",
                "--layout",
                &src,
                "--destination",
                destination,
                "--json",
            ],
        );
        let snapshot: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let id = snapshot["id"].as_str().expect("snapshot id").to_owned();
        let target = dir.path().join(format!("restored-{destination}"));
        let t = target.display().to_string();
        backupctl(
            &home,
            &["restore", "bob", "--target", &t, "--snapshot", &id],
        );
        assert_eq!(
            compare_trees(&live, &target).unwrap(),
            None,
            "{destination}"
        );
    }
    let out = backupctl(&home, &["verify", "bob", "--read-data"]);
    assert!(out.contains("ok"), "{out}");
}

/// One store's figures.
struct Measured {
    store: &'static str,
    backup_secs: f64,
    restore_secs: f64,
    /// Requests of the backup.
    requests: backup_storage::RequestCounts,
    /// Requests of the restore.
    restore_requests: backup_storage::RequestCounts,
}

/// Backs up `live` to `url` and restores it through the engine, counting requests.
async fn measure(store: &'static str, url: &str, live: &Path, scratch: &Path) -> (Measured, u64) {
    let (inner, root) = backup_storage::open(url).unwrap();
    let counting = Arc::new(CountingStore::new(inner));
    let shared: Arc<dyn ObjectStore> = counting.clone();
    let repo = Repository::init(shared, root, RepoConfig::default())
        .await
        .unwrap();
    let account = Account::new("measure")
        .unwrap()
        .with_encryption(EncryptionMode::ServerKey);
    let (keys, _) = AccountKeys::generate(account.id, account.encryption).unwrap();
    let handle = repo.account(account.id, keys.sealer(), Some(keys.opener(None).unwrap()));
    let progress = engine::no_progress();

    let started = Instant::now();
    let request = BackupRequest::new(&account, DestinationId::new());
    let snapshot = engine::backup(&handle, &request, &FsAccount::new(live), &progress)
        .await
        .unwrap()
        .snapshot;
    let backup_secs = started.elapsed().as_secs_f64();
    let requests = counting.counts();

    let mut plan = RestorePlan::new(account.id);
    for item in &snapshot.items {
        plan = plan.item(item.kind, snapshot.id);
    }
    let target = scratch.join(format!("restore-{store}"));
    std::fs::create_dir_all(&target).unwrap();
    let started = Instant::now();
    engine::restore(
        &handle,
        &plan,
        std::slice::from_ref(&snapshot),
        &FsAccount::new(&target),
        &progress,
    )
    .await
    .unwrap();
    let restore_secs = started.elapsed().as_secs_f64();
    let restore_requests = counting.counts().since(&requests);
    assert_eq!(compare_trees(live, &target).unwrap(), None, "{store}");
    std::fs::remove_dir_all(&target).unwrap();
    let measured = Measured {
        store,
        backup_secs,
        restore_secs,
        requests,
        restore_requests,
    };
    (measured, snapshot.stats.bytes_read)
}

/// Backup and restore throughput to memory, local disk, S3 and SFTP on the same data, and
/// the S3 requests per GiB backed up (from `CountingStore`). Prints a table; the data size
/// is `BACKUP_MEASURE_HOME_FILES` home files (default 400, about 12 MiB in all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs S3 and SFTP: run scripts/test.sh"]
async fn throughput_and_s3_requests_per_gib() {
    let home_files = std::env::var("BACKUP_MEASURE_HOME_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let sample = generate_sample_account(&live, home_files).unwrap();
    let local = format!("file://{}", dir.path().join("local-dest").display());
    let stores = [
        ("memory", "memory://".to_owned()),
        ("local", local),
        ("s3", s3_url("measure")),
        ("sftp", sftp_url("measure")),
    ];
    let mut rows = Vec::new();
    let mut read = 0;
    for (name, url) in &stores {
        let (m, bytes) = measure(name, url, &live, dir.path()).await;
        read = bytes;
        rows.push(m);
    }
    let mib = read as f64 / 1048576.0;
    let gib = read as f64 / 1073741824.0;
    println!(
        "\n{} files, {mib:.1} MiB read per backup ({} profile)",
        sample.files,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("store   backup MiB/s  restore MiB/s  backup requests (per GiB)");
    for m in &rows {
        let per_gib = m.requests.total() as f64 / gib;
        println!(
            "{:<7} {:>12.1}  {:>13.1}  {:>6} ({:>6.0})",
            m.store,
            mib / m.backup_secs,
            mib / m.restore_secs,
            m.requests.total(),
            per_gib,
        );
        println!("        backup:  {}", m.requests);
        println!("        restore: {}", m.restore_requests);
    }
    let s3 = rows.iter().find(|m| m.store == "s3").expect("s3 row");
    println!(
        "S3 per GiB backed up: {:.0} requests, {:.0} PUT, {:.0} class A, {:.0} class B",
        s3.requests.total() as f64 / gib,
        s3.requests.get(RequestKind::Put) as f64 / gib,
        s3.requests.s3_class_a() as f64 / gib,
        s3.requests.s3_class_b() as f64 / gib
    );
    assert!(s3.requests.get(RequestKind::Put) > 0);
}
