//! Backup and restore through the engine on an in-memory store.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use backup_core::engine::{self, BackupRequest, ProgressCounters, ProgressSink, no_progress};
use backup_core::model::*;
use backup_core::ports::*;
use backup_core::repo::*;
use backup_core::{Error, FsAccount};
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use support::*;

struct Fixture {
    store: Arc<dyn ObjectStore>,
    repo: Repository,
    account: Account,
    handle: AccountRepo,
}

async fn fixture(account: Account) -> Fixture {
    fixture_with(account, small_config()).await
}

async fn fixture_with(account: Account, config: RepoConfig) -> Fixture {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let repo = Repository::init(store.clone(), StorePath::from("dest"), config)
        .await
        .unwrap();
    let crypto = Arc::new(PlainCrypto::new(ServerKeys::new([1; 32], [2; 32], 99)));
    let handle = repo.account(account.id, crypto.clone(), Some(crypto));
    Fixture {
        store,
        repo,
        account,
        handle,
    }
}

async fn backup(f: &Fixture, live: &std::path::Path) -> Snapshot {
    engine::backup(
        &f.handle,
        &BackupRequest::new(&f.account, DestinationId::new()),
        &FsAccount::new(live),
        &no_progress(),
    )
    .await
    .unwrap()
    .snapshot
}

async fn restore_all(
    f: &Fixture,
    snap: &Snapshot,
    target: &std::path::Path,
) -> engine::RestoreReport {
    let plan = RestorePlan::new(f.account.id).whole_snapshot(snap);
    engine::restore(
        &f.handle,
        &plan,
        std::slice::from_ref(snap),
        &FsAccount::new(target),
        &no_progress(),
    )
    .await
    .unwrap()
}

/// Restores `snap` (the only snapshot) and compares it with `live`, then verifies with
/// every pack read: each blob the snapshot added is authenticated.
async fn assert_restores_and_verifies(f: &Fixture, snap: &Snapshot, live: &std::path::Path) {
    let target = tempfile::tempdir().unwrap();
    restore_all(f, snap, target.path()).await;
    assert_trees_equal(live, target.path());
    let report = verify_data(f).await;
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.blobs_authenticated, snap.stats.chunks_new);
}

/// Verifies every snapshot and reads every pack.
async fn verify_data(f: &Fixture) -> engine::VerifyReport {
    engine::verify(
        &f.handle,
        &[],
        engine::VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_is_identical() {
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 1);
    let f = fixture(Account::new("alice").unwrap()).await;
    let counters = Arc::new(ProgressCounters::default());
    let sink: ProgressSink = counters.clone();
    let snap = engine::backup(
        &f.handle,
        &BackupRequest::new(&f.account, DestinationId::new()),
        &FsAccount::new(live.path()),
        &sink,
    )
    .await
    .unwrap()
    .snapshot;
    assert!(counters.files.load(Ordering::Relaxed) > 10);
    assert_eq!(
        counters.bytes.load(Ordering::Relaxed),
        snap.stats.bytes_read
    );
    assert!(snap.has_item(ItemKind::HomeDir) && snap.has_item(ItemKind::Databases));
    assert!(snap.stats.packs_written > 2, "small packs force several");

    let target = tempfile::tempdir().unwrap();
    let counters = Arc::new(ProgressCounters::default());
    let sink: ProgressSink = counters.clone();
    let plan = RestorePlan::new(f.account.id).whole_snapshot(&snap);
    let report = engine::restore(
        &f.handle,
        &plan,
        std::slice::from_ref(&snap),
        &FsAccount::new(target.path()),
        &sink,
    )
    .await
    .unwrap();
    assert_trees_equal(live.path(), target.path());
    assert_eq!(report.totals(), snap.totals());
    assert_eq!(counters.files.load(Ordering::Relaxed), snap.totals().files);
    assert_eq!(counters.bytes.load(Ordering::Relaxed), snap.totals().bytes);
}

#[tokio::test]
async fn restore_works_on_a_current_thread_runtime() {
    let live = tempfile::tempdir().unwrap();
    write(live.path(), "home/a.txt", b"a");
    let f = fixture(Account::new("single").unwrap()).await;
    let snap = backup(&f, live.path()).await;
    let target = tempfile::tempdir().unwrap();
    restore_all(&f, &snap, target.path()).await;
    assert_trees_equal(live.path(), target.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_data_writes_no_new_pack() {
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 2);
    let f = fixture(Account::new("bob").unwrap()).await;
    let first = backup(&f, live.path()).await;
    let packs_before = count_objects(&f.store, "packs").await;
    let second = backup(&f, live.path()).await;
    assert_eq!(count_objects(&f.store, "packs").await, packs_before);
    assert_eq!(second.stats.packs_written, 0);
    assert_eq!(second.stats.chunks_new, 0);
    assert_eq!(
        second.stats.bytes_deduplicated,
        first.stats.bytes_new + first.stats.bytes_deduplicated
    );

    // One changed file adds one data pack and tree blobs along its path only.
    write(
        live.path(),
        "home/public_html/index.php",
        b"<?php echo 'changed';",
    );
    let third = backup(&f, live.path()).await;
    assert_eq!(
        third.stats.chunks_new,
        1 + 2,
        "one chunk, its directory's tree, the root tree"
    );
    // One data pack, and tree packs from whichever workers took the two tree blobs.
    assert!(
        (2..=3).contains(&third.stats.packs_written),
        "{}",
        third.stats.packs_written
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excludes_leave_files_out() {
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 3);
    write(live.path(), "home/public_html/cache/page.html", b"cached");
    // Directories under an excluded one, and a link to a directory (not followed), keep the
    // directory lister and the walker in step.
    write(
        live.path(),
        "home/public_html/cache/a/b/page.html",
        b"cached",
    );
    std::os::unix::fs::symlink("deep/a", live.path().join("home/link-to-a")).unwrap();
    write(live.path(), "home/logs/error.log", b"log line");
    let account = Account::new("carol")
        .unwrap()
        .with_excludes(["/public_html/cache", "*.log"])
        .unwrap();
    let f = fixture(account).await;
    let snap = backup(&f, live.path()).await;
    let target = tempfile::tempdir().unwrap();
    restore_all(&f, &snap, target.path()).await;
    assert!(!target.path().join("home/public_html/cache").exists());
    assert!(!target.path().join("home/logs/error.log").exists());
    assert!(target.path().join("home/logs").is_dir());
    assert_eq!(
        std::fs::read_link(target.path().join("home/link-to-a")).unwrap(),
        std::path::Path::new("deep/a")
    );
    std::fs::remove_dir_all(live.path().join("home/public_html/cache")).unwrap();
    std::fs::remove_file(live.path().join("home/logs/error.log")).unwrap();
    // Removing them changed the live directories' mtimes: compare contents.
    assert_contents_equal(live.path(), target.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_snapshot_plan_takes_each_item_from_its_snapshot() {
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 4);
    let f = fixture(Account::new("dave").unwrap()).await;
    let first = backup(&f, live.path()).await;
    let first_copy = tempfile::tempdir().unwrap();
    copy_tree(live.path(), first_copy.path());

    write(live.path(), "home/public_html/index.php", b"second version");
    write(live.path(), "databases/shop.sql", b"-- second dump");
    let second = backup(&f, live.path()).await;

    let target = tempfile::tempdir().unwrap();
    let plan = RestorePlan::new(f.account.id)
        .item(ItemKind::HomeDir, second.id)
        .item(ItemKind::Databases, first.id);
    let both = [first.clone(), second.clone()];
    let dry = engine::dry_run(&f.handle, &plan, &both).await.unwrap();
    assert_eq!(
        std::fs::read_dir(target.path()).unwrap().count(),
        0,
        "dry run writes nothing"
    );
    let report = engine::restore(
        &f.handle,
        &plan,
        &both,
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(dry, report);
    assert_trees_equal(&live.path().join("home"), &target.path().join("home"));
    assert_contents_equal(
        &first_copy.path().join("databases"),
        &target.path().join("databases"),
    );
    assert!(
        !target.path().join("dns").exists(),
        "only planned items are restored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_selection_and_dry_run_counts() {
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 5);
    let f = fixture(Account::new("erin").unwrap()).await;
    let snap = backup(&f, live.path()).await;
    let sel = PathSelection::new(["public_html"], ["public_html/img"]).unwrap();
    let plan = RestorePlan::new(f.account.id).item_paths(ItemKind::HomeDir, snap.id, sel);
    let dry = engine::dry_run(&f.handle, &plan, std::slice::from_ref(&snap))
        .await
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let report = engine::restore(
        &f.handle,
        &plan,
        std::slice::from_ref(&snap),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(dry.totals().files, report.totals().files);
    assert_eq!(dry.totals().bytes, report.totals().bytes);
    let restored = list_files(&target.path().join("home"));
    assert!(!restored.is_empty());
    assert!(
        restored
            .keys()
            .all(|p| p.starts_with("public_html/") && !p.starts_with("public_html/img"))
    );
    assert!(!target.path().join("home/mail_notes.txt").exists());

    let whole = RestorePlan::new(f.account.id).whole_snapshot(&snap);
    let all = engine::dry_run(&f.handle, &whole, std::slice::from_ref(&snap))
        .await
        .unwrap();
    assert_eq!(all.totals(), snap.totals());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_prunes_and_merge_keeps_extra_files() {
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 6);
    let f = fixture(Account::new("frank").unwrap()).await;
    let snap = backup(&f, live.path()).await;
    let target = tempfile::tempdir().unwrap();
    write(target.path(), "home/extra.txt", b"live only");
    write(target.path(), "databases/extra.sql", b"live only");
    let merge = RestorePlan::new(f.account.id)
        .whole_snapshot(&snap)
        .with_options(RestoreOptions {
            merge: true,
            ..Default::default()
        });
    engine::restore(
        &f.handle,
        &merge,
        std::slice::from_ref(&snap),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert!(target.path().join("home/extra.txt").exists());
    assert!(target.path().join("databases/extra.sql").exists());
    restore_all(&f, &snap, target.path()).await;
    assert!(!target.path().join("home/extra.txt").exists());
    assert!(!target.path().join("databases/extra.sql").exists());
    assert_trees_equal(live.path(), target.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_parent_dir_names_are_refused() {
    let f = fixture(Account::new("mallory").unwrap()).await;
    let keys_crypto = f.handle.sealer().clone();
    let keys = keys_crypto.server_keys();
    // A home tree whose single entry is named "..", holding a file.
    let file_data = b"owned".to_vec();
    let data_id = keys.chunk_id(&file_data);
    let inner = Tree {
        entries: vec![TreeEntry {
            name: b"evil.txt".to_vec(),
            node: Node::File {
                size: 5,
                chunks: vec![data_id],
                extents: None,
                link: None,
            },
            attrs: Attrs {
                mode: 0o644,
                ..Attrs::default()
            },
        }],
    };
    let inner_bytes = inner.encode().unwrap();
    let inner_id = keys.chunk_id(&inner_bytes);
    let root = Tree {
        entries: vec![TreeEntry {
            name: b"..".to_vec(),
            node: Node::Dir {
                tree: inner_id,
                stats: Default::default(),
            },
            attrs: Attrs {
                mode: 0o755,
                ..Attrs::default()
            },
        }],
    };
    let root_bytes = root.encode().unwrap();
    let root_id = keys.chunk_id(&root_bytes);
    let mut data = PackWriter::new(BlobKind::Data, keys_crypto.begin().unwrap(), 100);
    data.add(data_id, Compression::None, file_data.len(), &file_data)
        .unwrap();
    let data = data.finish(keys).unwrap();
    let data_pack = data.id;
    f.handle.put_pack(data).await.unwrap();
    let mut trees = PackWriter::new(BlobKind::Tree, keys_crypto.begin().unwrap(), 100);
    trees
        .add(inner_id, Compression::None, inner_bytes.len(), &inner_bytes)
        .unwrap();
    trees
        .add(root_id, Compression::None, root_bytes.len(), &root_bytes)
        .unwrap();
    let trees = trees.finish(keys).unwrap();
    let tree_pack = trees.id;
    f.handle.put_pack(trees).await.unwrap();
    let snapshot = Snapshot {
        id: SnapshotId::new(),
        account: f.account.id,
        job: None,
        destination: DestinationId::new(),
        created: chrono::Utc::now(),
        kind: SnapshotKind::OnDemand,
        status: SnapshotStatus::Complete,
        items: vec![SnapshotItem {
            kind: ItemKind::HomeDir,
            stats: Default::default(),
        }],
        encrypted: false,
        locked: false,
        lock_until: None,
        identity: None,
        task: None,
        stats: Default::default(),
    };
    f.handle
        .put_snapshot(&SnapshotObject {
            snapshot: snapshot.clone(),
            references: References::Packs(normalize_references(
                [
                    PackReference::all(data_pack, 1),
                    PackReference::all(tree_pack, 2),
                ]
                .into_iter()
                .flatten()
                .collect(),
            )),
            content: Some(SnapshotContent {
                roots: vec![(ItemKind::HomeDir, root_id)],
                ..SnapshotContent::default()
            }),
        })
        .await
        .unwrap();

    let outer = tempfile::tempdir().unwrap();
    let target = outer.path().join("account");
    std::fs::create_dir(&target).unwrap();
    let plan = RestorePlan::new(f.account.id).whole_snapshot(&snapshot);
    let err = engine::restore(
        &f.handle,
        &plan,
        std::slice::from_ref(&snapshot),
        &FsAccount::new(&target),
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::PathEscapes { .. }), "{err:?}");
    assert!(!outer.path().join("evil.txt").exists());
    assert!(!target.join("evil.txt").exists());
    let dry = engine::dry_run(&f.handle, &plan, std::slice::from_ref(&snapshot)).await;
    assert!(matches!(dry, Err(Error::PathEscapes { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_in_the_target_are_never_followed() {
    let live = tempfile::tempdir().unwrap();
    write(live.path(), "home/sub/file.txt", b"inside");
    write(live.path(), "home/link-target-test", b"x");
    std::os::unix::fs::symlink("/etc/passwd", live.path().join("home/abs-link")).unwrap();
    let f = fixture(Account::new("grace").unwrap()).await;
    let snap = backup(&f, live.path()).await;

    let outside = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(target.path().join("home")).unwrap();
    std::os::unix::fs::symlink(outside.path(), target.path().join("home/sub")).unwrap();
    let plan = RestorePlan::new(f.account.id)
        .whole_snapshot(&snap)
        .with_options(RestoreOptions {
            merge: true,
            ..Default::default()
        });
    // The snapshot has a directory where the target has a link: the link is replaced by
    // a real directory, and nothing is written where it pointed.
    let report = engine::restore(
        &f.handle,
        &plan,
        std::slice::from_ref(&snap),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    let sub = target.path().join("home/sub");
    assert!(std::fs::symlink_metadata(&sub).unwrap().is_dir());
    assert_eq!(std::fs::read(sub.join("file.txt")).unwrap(), b"inside");

    // A symlink in the snapshot is restored as a link, not followed.
    let clean = tempfile::tempdir().unwrap();
    restore_all(&f, &snap, clean.path()).await;
    let link = clean.path().join("home/abs-link");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        std::path::Path::new("/etc/passwd")
    );

    // A planted symlink at a file's name is replaced, not written through.
    let planted = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"untouched").unwrap();
    std::fs::create_dir_all(planted.path().join("home/sub")).unwrap();
    std::os::unix::fs::symlink(&victim, planted.path().join("home/sub/file.txt")).unwrap();
    restore_all(&f, &snap, planted.path()).await;
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    assert_eq!(
        std::fs::read(planted.path().join("home/sub/file.txt")).unwrap(),
        b"inside"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_an_integrity_error_and_nothing_bad_is_written() {
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 7);
    let f = fixture(Account::new("heidi").unwrap()).await;
    let snap = backup(&f, live.path()).await;
    // Flip one byte in the middle of every data pack... one is enough: pick the largest.
    let packs = list_objects(&f.store, "packs").await;
    let mut biggest = None;
    for p in &packs {
        let bytes = f.store.get(p).await.unwrap().bytes().await.unwrap();
        if biggest
            .as_ref()
            .is_none_or(|(_, b): &(StorePath, bytes::Bytes)| bytes.len() > b.len())
        {
            biggest = Some((p.clone(), bytes));
        }
    }
    let (path, bytes) = biggest.unwrap();
    let mut bad = bytes.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    f.store.put(&path, bad.into()).await.unwrap();

    let target = tempfile::tempdir().unwrap();
    let plan = RestorePlan::new(f.account.id).whole_snapshot(&snap);
    // Damage costs only what it touches: the files whose chunks fail are named, every
    // other file is restored.
    let report = engine::restore(
        &f.handle,
        &plan,
        std::slice::from_ref(&snap),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert!(!report.failed.is_empty(), "the damage was not reported");
    for e in &report.failed.entries {
        assert!(e.reason.contains("integrity"), "{e:?}");
    }
    // Whatever was written is exactly the source: nothing from the bad pack passed as good,
    // and no temporary file is left behind.
    let source = list_files(live.path());
    let restored = list_files(target.path());
    for (rel, content) in &restored {
        assert!(!rel.contains(".bkrestore-"), "temporary file left: {rel}");
        assert_eq!(
            source.get(rel),
            Some(content),
            "{rel} differs from the source"
        );
    }
    // Every source file is either restored or named as failed.
    for rel in source.keys() {
        let named = report
            .failed
            .entries
            .iter()
            .any(|e| rel.ends_with(&e.path) && rel.starts_with(e.item.as_str()));
        assert!(
            restored.contains_key(rel) || named,
            "{rel} neither restored nor named"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_are_checked_before_anything_is_read() {
    let live = tempfile::tempdir().unwrap();
    write(live.path(), "home/a", b"a");
    let f = fixture(Account::new("ivan").unwrap()).await;
    let snap = backup(&f, live.path()).await;

    // No opener: a key is required.
    let writer_only = f
        .repo
        .account(f.account.id, f.handle.sealer().clone(), None);
    let plan = RestorePlan::new(f.account.id).whole_snapshot(&snap);
    let target = tempfile::tempdir().unwrap();
    let err = engine::restore(
        &writer_only,
        &plan,
        std::slice::from_ref(&snap),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::KeyRequired { .. }), "{err:?}");

    // A plan naming another account's snapshot.
    let mut foreign = snap.clone();
    foreign.account = AccountId::new();
    let err = engine::restore(
        &f.handle,
        &plan,
        std::slice::from_ref(&foreign),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err:?}");

    // An item the snapshot does not have.
    let plan = RestorePlan::new(f.account.id).item(ItemKind::Email, snap.id);
    assert!(
        engine::dry_run(&f.handle, &plan, std::slice::from_ref(&snap))
            .await
            .is_err()
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_span_many_chunks_and_packs() {
    let live = tempfile::tempdir().unwrap();
    // Larger than the whole-read limit, so it is streamed.
    let big = pseudo_random(17 * 1024 * 1024 + 123, 11);
    write(live.path(), "home/big.bin", &big);
    let f = fixture(Account::new("judy").unwrap()).await;
    let snap = backup(&f, live.path()).await;
    assert!(snap.stats.chunks_new > 100);
    let target = tempfile::tempdir().unwrap();
    restore_all(&f, &snap, target.path()).await;
    assert_eq!(
        std::fs::read(target.path().join("home/big.bin")).unwrap(),
        big
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_damage_with_and_without_reading_data() {
    use backup_core::engine::{VerifyOptions, verify};
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 8);
    let f = fixture(Account::new("ken").unwrap()).await;
    let snap = backup(&f, live.path()).await;
    let clean = verify_data(&f).await;
    assert!(clean.is_ok(), "{:?}", clean.problems);
    assert_eq!(clean.snapshots, 1);
    assert_eq!(clean.blobs_authenticated, snap.stats.chunks_new);
    let sampled = verify(
        &f.handle,
        &[],
        VerifyOptions {
            read_data: true,
            sample_percent: Some(100),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        sampled.bytes_read, clean.bytes_read,
        "100 % reads every pack"
    );

    // Damage one pack: structure still holds (the index lists it), data does not.
    let packs = list_objects(&f.store, "packs").await;
    let victim = &packs[0];
    let mut bytes = f
        .store
        .get(victim)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    bytes[20] ^= 1;
    f.store.put(victim, bytes.into()).await.unwrap();
    let structure = verify(&f.handle, &[], VerifyOptions::default())
        .await
        .unwrap();
    assert!(structure.is_ok());
    let data = verify_data(&f).await;
    assert_eq!(data.problems.len(), 1, "{:?}", data.problems);

    // Remove a pack: structure fails.
    f.store.delete(victim).await.unwrap();
    let structure = verify(&f.handle, &[], VerifyOptions::default())
        .await
        .unwrap();
    assert!(!structure.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_are_compressed_in_groups_and_restored_exactly() {
    let live = tempfile::tempdir().unwrap();
    for i in 0..300 {
        let text = format!("<?php echo 'page {i}'; // shared theme code\n").repeat(20 + i % 50);
        write(
            live.path(),
            &format!("home/site/page{i}.php"),
            text.as_bytes(),
        );
    }
    // Incompressible small files end up stored one by one.
    for i in 0..20 {
        write(
            live.path(),
            &format!("home/media/img{i}.jpg"),
            &pseudo_random(20_000 + i, i as u64 + 1),
        );
    }
    let f = fixture(Account::new("groups").unwrap()).await;
    let snap = backup(&f, live.path()).await;
    let locator = f.handle.load_locator().await.unwrap();
    let entries: Vec<TrailerEntry> = locator
        .packs()
        .flat_map(|(_, t)| t.entries.iter().copied())
        .filter(|e| e.kind == BlobKind::Data)
        .collect();
    let grouped = entries
        .iter()
        .filter(|e| e.compression == Compression::ZstdGroup)
        .count();
    let groups: std::collections::HashSet<_> = entries
        .iter()
        .filter(|e| e.compression == Compression::ZstdGroup)
        .map(|e| e.offset)
        .collect();
    assert!(
        grouped >= 250,
        "{grouped} of {} blobs grouped",
        entries.len()
    );
    assert!(groups.len() < grouped / 4, "groups hold many members");
    assert!(
        entries
            .iter()
            .filter(|e| e.compression == Compression::None)
            .count()
            >= 20,
        "random files are not compressed"
    );

    assert_restores_and_verifies(&f, &snap, live.path()).await;
}

/// Chunks of at least 64 KiB are hashed by the pack workers: duplicates among them (a copied
/// file, a shifted copy, a repeated file in another directory) are stored once, ids come back
/// in order, and a second backup finds every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_chunks_hashed_by_workers_are_deduplicated_and_restored() {
    let live = tempfile::tempdir().unwrap();
    let video = pseudo_random(3 * 1024 * 1024 + 17, 5);
    write(live.path(), "home/media/video.bin", &video);
    write(live.path(), "home/media/copy.bin", &video);
    let mut shifted = pseudo_random(777, 6);
    shifted.extend_from_slice(&video);
    write(live.path(), "home/media/shifted.bin", &shifted);
    write(live.path(), "home/other/video.bin", &video);
    let log = "GET /index.php 200 account backup server\n".repeat(40_000);
    write(live.path(), "home/logs/access.log", log.as_bytes());
    let config = RepoConfig {
        chunker: ChunkerParams {
            min_size: 64 * 1024,
            avg_size: 128 * 1024,
            max_size: 256 * 1024,
        },
        pack_size: 1024 * 1024,
    };
    let f = fixture_with(Account::new("media").unwrap(), config).await;
    let first = backup(&f, live.path()).await;
    let video_chunks = first.stats.chunks_deduplicated;
    assert!(
        video_chunks >= 2 * 20,
        "the copy and the other directory's file are deduplicated chunk by chunk: \
         {video_chunks}"
    );
    // The video once, the shifted copy's first chunk or two, the log compressed, trees.
    assert!(
        first.stats.bytes_new < video.len() as u64 + 2 * 256 * 1024 + log.len() as u64,
        "{:?}",
        first.stats
    );
    assert!(first.stats.bytes_stored < video.len() as u64 + 1024 * 1024);

    assert_restores_and_verifies(&f, &first, live.path()).await;

    // Read again (no stat cache here): every chunk is found, nothing new is written.
    let second = backup(&f, live.path()).await;
    assert_eq!(second.stats.chunks_new, 0);
    assert_eq!(second.stats.packs_written, 0);
    assert_eq!(
        referenced_ids(&f, &second).await,
        referenced_ids(&f, &first).await
    );
}

/// The blob ids a stored snapshot references (through its pack references and the packs'
/// trailers).
async fn referenced_ids(f: &Fixture, snap: &Snapshot) -> std::collections::HashSet<ChunkId> {
    let obj = f.handle.load_snapshot(snap.id).await.unwrap();
    let References::Packs(refs) = obj.references else {
        panic!("a backup writes version 2 references");
    };
    let locator = f.handle.load_locator().await.unwrap();
    let mut ids = std::collections::HashSet::new();
    for r in refs {
        let trailer = locator.pack(&r.pack).expect("referenced pack exists");
        for i in r.indices() {
            ids.insert(trailer.entries[i].id);
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_reference_exactly_the_blobs_they_use() {
    use backup_core::engine::{VerifyOptions, verify};
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 12);
    let f = fixture(Account::new("refs").unwrap()).await;
    let first = backup(&f, live.path()).await;
    let keys = f.handle.sealer().server_keys();
    let id_of = |rel: &str| keys.chunk_id(&std::fs::read(live.path().join(rel)).unwrap());
    let gone = "home/public_html/wp-config.php";
    let kept = "home/public_html/index.php";
    let gone_id = id_of(gone);
    let kept_id = id_of(kept);
    let refs1 = referenced_ids(&f, &first).await;
    // Everything the first backup stored is its own.
    assert_eq!(refs1.len() as u64, first.stats.chunks_new);
    assert!(refs1.contains(&gone_id) && refs1.contains(&kept_id));

    std::fs::remove_file(live.path().join(gone)).unwrap();
    std::fs::write(
        live.path().join("home/new.txt"),
        b"a file the first backup lacks",
    )
    .unwrap();
    let new_id = id_of("home/new.txt");
    let second = backup(&f, live.path()).await;
    let refs2 = referenced_ids(&f, &second).await;
    assert!(refs2.contains(&kept_id), "reused blobs are referenced");
    assert!(refs2.contains(&new_id), "new blobs are referenced");
    assert!(!refs2.contains(&gone_id), "a deleted file's blob is not");
    let report = verify(&f.handle, &[second.id], VerifyOptions::default())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.blobs_referenced, refs2.len() as u64);
    // Besides the new file's blob, only blobs the first snapshot had, and new trees.
    let added: Vec<_> = refs2.difference(&refs1).collect();
    assert_eq!(added.len() as u64, second.stats.chunks_new, "{added:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_cache_skips_unchanged_files_and_catches_changes() {
    use backup_core::engine::FsStatCache;
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 9);
    age_all(live.path(), 3600);
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = FsStatCache::new(cache_dir.path());
    let f = fixture(Account::new("lena").unwrap()).await;
    let destination = DestinationId::new();
    async fn cached(
        f: &Fixture,
        d: DestinationId,
        cache: &FsStatCache,
        live: &std::path::Path,
    ) -> Snapshot {
        let request = BackupRequest::new(&f.account, d).with_stat_cache(cache);
        engine::backup(&f.handle, &request, &FsAccount::new(live), &no_progress())
            .await
            .unwrap()
            .snapshot
    }
    let first = cached(&f, destination, &cache, live.path()).await;
    assert_eq!(first.stats.files_unchanged, 0);
    let second = cached(&f, destination, &cache, live.path()).await;
    let tree_files = second
        .items
        .iter()
        .filter(|i| i.kind.is_tree())
        .map(|i| i.stats.files)
        .sum::<u64>();
    assert_eq!(
        second.stats.files_unchanged, tree_files,
        "every home and mail file came from the cache"
    );
    let documents: u64 = second
        .items
        .iter()
        .filter(|i| !i.kind.is_tree())
        .map(|i| i.stats.bytes)
        .sum();
    assert_eq!(
        second.stats.bytes_read, documents,
        "only documents (streams) were read"
    );
    assert_eq!(second.stats.chunks_new, 0);

    // Same size, same mtime, new content: the ctime gives it away.
    let path = live.path().join("home/public_html/index.php");
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut data = std::fs::read(&path).unwrap();
    data[0] ^= 0x20;
    std::fs::write(&path, &data).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(before)
        .unwrap();
    let third = cached(&f, destination, &cache, live.path()).await;
    assert_eq!(third.stats.files_unchanged, tree_files - 1);
    let target = tempfile::tempdir().unwrap();
    restore_all(&f, &third, target.path()).await;
    assert_eq!(
        std::fs::read(target.path().join("home/public_html/index.php")).unwrap(),
        data
    );

    // A cache whose chunks the repository does not have (another repository) is not trusted.
    let other = fixture(f.account.clone()).await;
    let fresh = cached(&other, destination, &cache, live.path()).await;
    assert_eq!(
        fresh.stats.files_unchanged, 1,
        "only the empty file, which needs no chunk"
    );
    let target = tempfile::tempdir().unwrap();
    restore_all(&other, &fresh, target.path()).await;
    assert_contents_equal(live.path(), target.path());

    // A damaged cache is ignored.
    for entry in walk_files(cache_dir.path()) {
        let mut b = std::fs::read(&entry).unwrap();
        let n = b.len();
        b[n / 2] ^= 1;
        std::fs::write(&entry, b).unwrap();
    }
    let after_damage = cached(&other, destination, &cache, live.path()).await;
    assert_eq!(
        after_damage.stats.files_unchanged, 0,
        "a damaged cache is not used at all"
    );
}

/// A damaged pack found by `verify --read-data` names the snapshots and files it affects and
/// is recorded; the next backup stores those chunks again, and from then on every snapshot,
/// the damaged one included, restores whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_records_damage_and_the_next_backup_heals_it() {
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 11);
    let f = fixture(Account::new("judy").unwrap()).await;
    let first = backup(&f, live.path()).await;
    let packs = list_objects(&f.store, "packs").await;
    let mut biggest: Option<(StorePath, bytes::Bytes)> = None;
    for p in &packs {
        let bytes = f.store.get(p).await.unwrap().bytes().await.unwrap();
        if biggest.as_ref().is_none_or(|(_, b)| bytes.len() > b.len()) {
            biggest = Some((p.clone(), bytes));
        }
    }
    let (path, bytes) = biggest.unwrap();
    let mut bad = bytes.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    f.store.put(&path, bad.into()).await.unwrap();

    let report = engine::verify(
        &f.handle,
        &[],
        engine::VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.damaged_packs.len(), 1, "{report:?}");
    assert_eq!(report.affected.len(), 1, "{report:?}");
    assert_eq!(report.affected[0].snapshot, first.id);
    let named = &report.affected[0].entries;
    assert!(!named.is_empty(), "no affected file named");
    // A restore fails no file verify did not name (verify names every file with content in
    // the damaged pack; a restore fails those whose own blobs fail authentication).
    let target = tempfile::tempdir().unwrap();
    let plan = RestorePlan::new(f.account.id).whole_snapshot(&first);
    let restored = engine::restore(
        &f.handle,
        &plan,
        std::slice::from_ref(&first),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert!(!restored.failed.is_empty());
    for e in &restored.failed.entries {
        assert!(
            named.entries.iter().any(|n| n.path == e.path),
            "{} failed but was not named by verify",
            e.path
        );
    }

    // The next backup (every file read again: no stat cache) stores the lost chunks anew.
    let second = backup(&f, live.path()).await;
    assert!(second.stats.bytes_new > 0, "nothing was stored again");
    for snap in [&second, &first] {
        let target = tempfile::tempdir().unwrap();
        let plan = RestorePlan::new(f.account.id).whole_snapshot(snap);
        let report = engine::restore(
            &f.handle,
            &plan,
            std::slice::from_ref(snap),
            &FsAccount::new(target.path()),
            &no_progress(),
        )
        .await
        .unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(list_files(target.path()), list_files(live.path()));
    }
}

/// A 1 TiB sparse file with 1 MiB of data: the backup reads the data only, the restore
/// allocates only the data (asserted on bytes read and blocks allocated, not on time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terabyte_sparse_file_costs_only_its_data() {
    let live = tempfile::tempdir().unwrap();
    let home = live.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let path = home.join("disk.img");
    let data = pseudo_random(1 << 20, 5);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(1 << 40).unwrap();
        f.write_all_at(&data, 300 << 30).unwrap();
    }
    let f = fixture(Account::new("kim").unwrap()).await;
    let snap = backup(&f, live.path()).await;
    assert!(
        snap.stats.bytes_read < 2 << 20,
        "read {} bytes of a file with 1 MiB of data",
        snap.stats.bytes_read
    );
    let target = tempfile::tempdir().unwrap();
    restore_all(&f, &snap, target.path()).await;
    let restored = target.path().join("home/disk.img");
    let meta = std::fs::metadata(&restored).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.len(), 1 << 40);
    assert!(
        meta.blocks() * 512 < 4 << 20,
        "the restore allocated {} bytes",
        meta.blocks() * 512
    );
    let file = std::fs::File::open(&restored).unwrap();
    let mut back = vec![0u8; data.len()];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut back, 300 << 30).unwrap();
    assert!(back == data, "the data came back different");
    let mut zeros = vec![1u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut zeros, 1 << 39).unwrap();
    assert!(zeros.iter().all(|b| *b == 0));
}

/// A file written to while a backup reads it is named as changed (its stat before and after
/// the read differ); the snapshot is still complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_during_the_backup_is_reported_as_changed() {
    let live = tempfile::tempdir().unwrap();
    let log = live.path().join("home/logs/access.log");
    write(
        live.path(),
        "home/logs/access.log",
        &pseudo_random(8 << 20, 3),
    );
    write(live.path(), "home/index.html", b"<h1>hi</h1>");
    let f = fixture(Account::new("lena").unwrap()).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                file.write_all_at(&i.to_le_bytes(), (i * 4099) % (8 << 20))
                    .unwrap();
                i += 1;
            }
        })
    };
    let mut reported = 0;
    for _ in 0..10 {
        let report = engine::backup(
            &f.handle,
            &BackupRequest::new(&f.account, DestinationId::new()),
            &FsAccount::new(live.path()),
            &no_progress(),
        )
        .await
        .unwrap();
        assert_eq!(report.snapshot.status, SnapshotStatus::Complete);
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        if report
            .changed
            .entries
            .iter()
            .any(|e| e.path == "logs/access.log" && e.item == ItemKind::HomeDir)
        {
            reported += 1;
        }
        assert!(
            !report
                .changed
                .entries
                .iter()
                .any(|e| e.path == "index.html"),
            "an unchanged file was reported"
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(reported > 0, "a file written throughout was never reported");
}

/// A directory chain deeper than the walk holds handles for is reported, not read, and the
/// rest of the home is backed up (a tenant cannot exhaust descriptors or the stack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_nested_too_deep_are_reported_not_followed() {
    let live = tempfile::tempdir().unwrap();
    write(live.path(), "home/index.html", b"<h1>hi</h1>");
    let mut deep = live.path().join("home");
    for _ in 0..300 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom.txt"), b"bottom").unwrap();
    let f = fixture(Account::new("mona").unwrap()).await;
    let report = engine::backup(
        &f.handle,
        &BackupRequest::new(&f.account, DestinationId::new()),
        &FsAccount::new(live.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(report.snapshot.status, SnapshotStatus::Partial);
    assert_eq!(report.skipped.total, 1, "{:?}", report.skipped);
    let e = &report.skipped.entries[0];
    assert!(e.reason.contains("deeper than"), "{e:?}");
    assert_eq!(e.path.matches('d').count(), 257, "{}", e.path);
    let target = tempfile::tempdir().unwrap();
    restore_all(&f, &report.snapshot, target.path()).await;
    assert_eq!(
        std::fs::read(target.path().join("home/index.html")).unwrap(),
        b"<h1>hi</h1>"
    );
}

/// A link in place of an item's root (the layout's `home` or `mail`, which a tenant may
/// control) is never followed: the item is named in the report and the snapshot is partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_at_an_item_root_is_refused_and_reported() {
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("shadow"), b"root-only secret").unwrap();
    let live = tempfile::tempdir().unwrap();
    write(live.path(), "home/index.html", b"<h1>hi</h1>");
    std::os::unix::fs::symlink(secret.path(), live.path().join("mail")).unwrap();
    let f = fixture(Account::new("nina").unwrap()).await;
    let report = engine::backup(
        &f.handle,
        &BackupRequest::new(&f.account, DestinationId::new()),
        &FsAccount::new(live.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert_eq!(report.snapshot.status, SnapshotStatus::Partial);
    assert!(!report.snapshot.has_item(ItemKind::Email));
    assert!(report.snapshot.has_item(ItemKind::HomeDir));
    assert!(
        report
            .skipped
            .entries
            .iter()
            .any(|e| e.item == ItemKind::Email && e.path.is_empty()),
        "{:?}",
        report.skipped
    );
    let target = tempfile::tempdir().unwrap();
    restore_all(&f, &report.snapshot, target.path()).await;
    for (rel, data) in list_files(target.path()) {
        assert!(
            !data.windows(16).any(|w| w == b"root-only secret"),
            "{rel} holds the secret"
        );
    }
}

/// A snapshot written before trees version 2 (a version 1 snapshot object whose trees hold
/// name, node, mode and mtime only) still restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_with_version_1_trees_still_restore() {
    use serde::Serialize;
    // The version 1 tree encoding, as earlier releases wrote it.
    #[derive(Serialize)]
    enum OldNode {
        File {
            size: u64,
            chunks: Vec<ChunkId>,
        },
        #[allow(dead_code)]
        Dir {
            tree: ChunkId,
            stats: ItemStats,
        },
        Symlink {
            target: Vec<u8>,
        },
    }
    #[derive(Serialize)]
    struct OldEntry {
        name: Vec<u8>,
        node: OldNode,
        mode: u32,
        mtime_ns: i64,
    }
    #[derive(Serialize)]
    struct OldTree {
        entries: Vec<OldEntry>,
    }
    let f = fixture(Account::new("olga").unwrap()).await;
    let keys_crypto = f.handle.sealer().clone();
    let keys = keys_crypto.server_keys();
    let content = b"<?php echo 'old'; ?>".to_vec();
    let data_id = keys.chunk_id(&content);
    let tree = postcard::to_stdvec(&OldTree {
        entries: vec![
            OldEntry {
                name: b"index.php".to_vec(),
                node: OldNode::File {
                    size: content.len() as u64,
                    chunks: vec![data_id],
                },
                mode: 0o640,
                mtime_ns: 1_600_000_000_123_456_789,
            },
            OldEntry {
                name: b"link".to_vec(),
                node: OldNode::Symlink {
                    target: b"index.php".to_vec(),
                },
                mode: 0o777,
                mtime_ns: 0,
            },
        ],
    })
    .unwrap();
    let tree_id = keys.chunk_id(&tree);
    let mut data = PackWriter::new(BlobKind::Data, keys_crypto.begin().unwrap(), 100);
    data.add(data_id, Compression::None, content.len(), &content)
        .unwrap();
    f.handle.put_pack(data.finish(keys).unwrap()).await.unwrap();
    let mut trees = PackWriter::new(BlobKind::Tree, keys_crypto.begin().unwrap(), 100);
    trees
        .add(tree_id, Compression::None, tree.len(), &tree)
        .unwrap();
    f.handle
        .put_pack(trees.finish(keys).unwrap())
        .await
        .unwrap();
    let snapshot = Snapshot {
        id: SnapshotId::new(),
        account: f.account.id,
        job: None,
        destination: DestinationId::new(),
        created: chrono::Utc::now(),
        kind: SnapshotKind::OnDemand,
        status: SnapshotStatus::Complete,
        items: vec![SnapshotItem {
            kind: ItemKind::HomeDir,
            stats: Default::default(),
        }],
        encrypted: false,
        locked: false,
        lock_until: None,
        identity: None,
        task: None,
        stats: Default::default(),
    };
    // A version 1 object (every referenced blob id): its trees are read as version 1.
    f.handle
        .put_snapshot(&SnapshotObject {
            snapshot: snapshot.clone(),
            references: References::Blobs(vec![data_id, tree_id]),
            content: Some(SnapshotContent {
                roots: vec![(ItemKind::HomeDir, tree_id)],
                trees: TreeVersion::V1,
                ..SnapshotContent::default()
            }),
        })
        .await
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    let report = restore_all(&f, &snapshot, target.path()).await;
    assert!(report.failed.is_empty(), "{report:?}");
    let file = target.path().join("home/index.php");
    assert_eq!(std::fs::read(&file).unwrap(), content);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.mtime(), 1_600_000_000);
    assert_eq!(meta.mtime_nsec(), 123_456_789);
    assert_eq!(
        std::fs::read_link(target.path().join("home/link")).unwrap(),
        std::path::Path::new("index.php")
    );
}
