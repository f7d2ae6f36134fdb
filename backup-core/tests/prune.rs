//! Garbage collection through the engine on an in-memory store: forget, condemn, delete,
//! repack (with the content key and without it), and everything kept still restores.

mod support;

use std::sync::Arc;

use backup_core::FsAccount;
use backup_core::engine::{self, BackupRequest, PruneOptions, no_progress};
use backup_core::model::*;
use backup_core::ports::*;
use backup_core::repo::*;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use support::*;

/// A handle for the collector (with or without the content key) and one that reads.
async fn handles(opener: bool) -> (AccountRepo, AccountRepo, Account) {
    let repo = Repository::init(
        Arc::new(InMemory::new()),
        StorePath::from("dest"),
        small_config(),
    )
    .await
    .unwrap();
    let account = Account::new("alice").unwrap();
    let crypto = Arc::new(PlainCrypto::new(ServerKeys::new([1; 32], [2; 32], 99)));
    let reader = repo.account(account.id, crypto.clone(), Some(crypto.clone()));
    let opener: Option<Arc<dyn ContentOpener>> = opener.then(|| crypto.clone() as _);
    (repo.account(account.id, crypto, opener), reader, account)
}

async fn backup(handle: &AccountRepo, account: &Account, live: &std::path::Path) -> Snapshot {
    engine::backup(
        handle,
        &BackupRequest::new(account, DestinationId::new()),
        &FsAccount::new(live),
        &no_progress(),
    )
    .await
    .unwrap()
    .snapshot
}

async fn restores(
    handle: &AccountRepo,
    account: &Account,
    snap: &Snapshot,
    expected: &std::path::Path,
) {
    let target = tempfile::tempdir().unwrap();
    let plan = RestorePlan::new(account.id).whole_snapshot(snap);
    engine::restore(
        handle,
        &plan,
        std::slice::from_ref(snap),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap();
    assert_contents_equal(expected, target.path());
}

async fn pack_bytes(handle: &AccountRepo) -> u64 {
    handle
        .list_packs()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum()
}

fn opts(grace_secs: i64) -> PruneOptions {
    PruneOptions {
        grace: chrono::Duration::seconds(grace_secs),
        ..PruneOptions::default()
    }
}

/// Many small files, then most of them deleted: the first snapshot's packs are mostly dead
/// once it is forgotten.
async fn mostly_dead(opener: bool) {
    let (h, reader, account) = handles(opener).await;
    let live = tempfile::tempdir().unwrap();
    for i in 0..120 {
        write(
            live.path(),
            &format!("home/f{i:03}.txt"),
            &pseudo_random(3000 + i * 7, i as u64),
        );
    }
    let first = backup(&h, &account, live.path()).await;
    for i in 0..110 {
        std::fs::remove_file(live.path().join(format!("home/f{i:03}.txt"))).unwrap();
    }
    let kept_copy = tempfile::tempdir().unwrap();
    copy_tree(live.path(), kept_copy.path());
    let second = backup(&h, &account, live.path()).await;
    assert!(h.delete_snapshot_object(first.id).await.unwrap());

    // With the default grace, nothing is deleted yet; the dead data waits.
    let before = pack_bytes(&h).await;
    let report = engine::prune(&h, &opts(86_400)).await.unwrap();
    assert_eq!(report.deleted_packs, 0);
    // An unencrypted account's packs move whole, groups included, with or without the
    // content key.
    assert!(report.repacked_packs > 0, "{report:?}");
    assert_eq!(report.repack_skipped, 0);
    assert!(report.rewritten_snapshots == 1, "{report:?}");

    restores(&reader, &account, &second, kept_copy.path()).await;

    // A day later the condemned packs go.
    let later = PruneOptions {
        now: chrono::Utc::now() + chrono::Duration::days(2),
        ..opts(86_400)
    };
    let report = engine::prune(&h, &later).await.unwrap();
    assert!(report.deleted_packs > 0, "{report:?}");
    let after = pack_bytes(&h).await;
    // 110 of 120 incompressible files are gone: so is most of the storage.
    assert!(after * 3 < before, "{after} * 3 < {before}");
    restores(&reader, &account, &second, kept_copy.path()).await;
    let verified = engine::verify(
        &reader,
        &[],
        engine::VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    // A second collection has nothing left to do.
    let again = engine::prune(&h, &later).await.unwrap();
    assert_eq!(
        (
            again.deleted_packs,
            again.repacked_packs,
            again.condemned_packs
        ),
        (0, 0, 0),
        "{again:?}"
    );
    let usage = engine::storage_usage(&h).await.unwrap();
    assert_eq!(usage.unreferenced_bytes, 0);
    assert_eq!(usage.snapshots.len(), 1);
    assert_eq!(
        usage.snapshots[0].unique_bytes,
        usage.snapshots[0].referenced_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mostly_dead_packs_are_reencoded_with_the_content_key() {
    mostly_dead(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mostly_dead_packs_are_copied_without_the_content_key() {
    mostly_dead(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holding_the_lease_defers_deletion() {
    let (h, reader, account) = handles(true).await;
    let live = tempfile::tempdir().unwrap();
    make_account(live.path(), 3);
    let first = backup(&h, &account, live.path()).await;
    write(live.path(), "home/new.txt", &text(50_000, 9));
    std::fs::remove_dir_all(live.path().join("home/public_html")).unwrap();
    let second = backup(&h, &account, live.path()).await;
    h.delete_snapshot_object(first.id).await.unwrap();
    let lease = h
        .repository()
        .acquire_lease(
            account.id,
            "backup",
            std::time::Duration::from_secs(60),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap();
    let report = engine::prune(&h, &opts(0)).await.unwrap();
    assert!(report.deletion_deferred.is_some(), "{report:?}");
    assert_eq!(report.deleted_packs, 0);
    // While it waits, a backup reuses nothing condemned and due.
    let state = h.load_collection_state().await.unwrap();
    assert!(!state.condemned.is_empty());
    lease.release().await.unwrap();
    let report = engine::prune(&h, &opts(0)).await.unwrap();
    assert!(report.deleted_packs > 0, "{report:?}");
    restores(&reader, &account, &second, live.path()).await;
}
