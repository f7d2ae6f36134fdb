//! Tamper suite: every way a destination can damage or replay objects gives a typed error on
//! restore and a problem (or a typed error) on verification with data reads; never a panic,
//! never wrong data written.

use std::path::Path;
use std::sync::Arc;

use backup_core::engine::{self, BackupRequest, VerifyOptions, no_progress};
use backup_core::model::{Account, DestinationId, EncryptionMode, RestorePlan, Snapshot};
use backup_core::repo::{AccountRepo, Repository};
use backup_core::{Error, ErrorKind, FsAccount};
use backup_crypto::{AccountKeys, MasterKey};

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn append(root: &Path, rel: &str, extra: &[u8]) {
    let p = root.join(rel);
    let mut data = std::fs::read(&p).unwrap();
    data.extend_from_slice(extra);
    std::fs::write(p, data).unwrap();
}

/// A small account: pages, a binary file larger than one pack, a database dump.
fn small_account(root: &Path) {
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..30 {
        let text: String = (0..400)
            .map(|j| format!("word{} ", (next() % 50) + j % 3))
            .collect();
        let p = root.join(format!("home/public_html/page{i}.html"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let blob: Vec<u8> = (0..600_000).map(|_| next() as u8).collect();
    std::fs::write(root.join("home/public_html/photo.jpg"), blob).unwrap();
    std::fs::create_dir_all(root.join("databases")).unwrap();
    std::fs::write(
        root.join("databases/shop.sql"),
        "INSERT INTO t VALUES (1);\n".repeat(5000),
    )
    .unwrap();
}

struct Setup {
    store: Arc<dyn ObjectStore>,
    repo: Repository,
    live: tempfile::TempDir,
    accounts: Vec<(Account, AccountKeys, AccountRepo, Vec<Snapshot>)>,
}

async fn setup() -> Setup {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // Small packs, so that an account has several.
    let config = backup_core::repo::RepoConfig {
        pack_size: 64 * 1024,
        chunker: backup_core::repo::ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        },
    };
    let repo = Repository::init(store.clone(), StorePath::from("d"), config)
        .await
        .unwrap();
    let live = tempfile::tempdir().unwrap();
    small_account(live.path());
    let mut accounts = Vec::new();
    for name in ["alice", "bob"] {
        let account = Account::new(name)
            .unwrap()
            .with_encryption(EncryptionMode::ServerKey);
        let (keys, _) = AccountKeys::generate(account.id, account.encryption).unwrap();
        let handle = repo.account(account.id, keys.sealer(), Some(keys.opener(None).unwrap()));
        let mut snaps = Vec::new();
        for _ in 0..2 {
            let s = engine::backup(
                &handle,
                &BackupRequest::new(&account, DestinationId::new()),
                &FsAccount::new(live.path()),
                &no_progress(),
            )
            .await
            .unwrap()
            .snapshot;
            snaps.push(s);
            append(
                live.path(),
                "home/public_html/page3.html",
                b"<!-- edited -->",
            );
        }
        accounts.push((account, keys, handle, snaps));
    }
    Setup {
        store,
        repo,
        live,
        accounts,
    }
}

async fn objects(store: &Arc<dyn ObjectStore>, account: &Account, kind: &str) -> Vec<StorePath> {
    let prefix = StorePath::from(format!("d/accounts/{}/{kind}", account.id));
    let mut v: Vec<StorePath> = store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    v.sort();
    v
}

async fn read(store: &Arc<dyn ObjectStore>, p: &StorePath) -> Vec<u8> {
    store.get(p).await.unwrap().bytes().await.unwrap().to_vec()
}

async fn write(store: &Arc<dyn ObjectStore>, p: &StorePath, bytes: Vec<u8>) {
    store.put(p, PutPayload::from(bytes)).await.unwrap();
}

/// Restores the newest snapshot of account 0 and verifies with data reads: both must report
/// the damage (a typed error, or the restore naming the files it could not restore), and
/// nothing written may differ from the source.
async fn assert_detected(s: &Setup, what: &str) {
    let (account, _, handle, snaps) = &s.accounts[0];
    let snap = snaps.last().unwrap();
    let target = tempfile::tempdir().unwrap();
    let plan = RestorePlan::new(account.id).whole_snapshot(snap);
    let restored = engine::restore(
        handle,
        &plan,
        std::slice::from_ref(snap),
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await;
    match &restored {
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::Integrity | ErrorKind::NotFound),
            "{what}: restore gave {e:?}"
        ),
        Ok(report) => assert!(
            !report.failed.is_empty(),
            "{what}: restore succeeded on damaged data"
        ),
    }
    assert_nothing_wrong(s.live.path(), target.path(), what);
    match engine::verify(
        handle,
        &[],
        VerifyOptions {
            read_data: true,
            ..Default::default()
        },
    )
    .await
    {
        Ok(report) => assert!(!report.is_ok(), "{what}: verify --read-data found nothing"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Integrity, "{what}: verify gave {e:?}"),
    }
}

/// Every file written is byte-identical to the live file of the same path (the live tree has
/// changed since, so a file may also equal an older version: accept any version we made).
fn assert_nothing_wrong(live: &Path, target: &Path, what: &str) {
    let mut stack = vec![target.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.contains(".restore-"),
                    "{what}: temporary file left: {name}"
                );
                let rel = e.path().strip_prefix(target).unwrap().to_path_buf();
                let data = std::fs::read(e.path()).unwrap();
                let now = std::fs::read(live.join(&rel)).unwrap_or_default();
                // Edited files only grew by appended markers: a good restore is a prefix.
                assert!(
                    now.starts_with(&data) || data == now,
                    "{what}: {} is wrong",
                    rel.display()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_packs_are_detected() {
    type Mutation = fn(&mut Vec<u8>);
    let cases: [(&str, Mutation); 4] = [
        ("flipped byte", |b| {
            let n = b.len() / 2;
            b[n] ^= 0x01;
        }),
        ("truncated", |b| b.truncate(b.len() - 7)),
        ("extended", |b| b.extend_from_slice(b"appended")),
        ("emptied", |b| b.clear()),
    ];
    for (what, mutate) in cases {
        let s = setup().await;
        let packs = objects(&s.store, &s.accounts[0].0, "packs").await;
        for p in &packs {
            let mut bytes = read(&s.store, p).await;
            mutate(&mut bytes);
            write(&s.store, p, bytes).await;
        }
        assert_detected(&s, &format!("pack {what}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_and_foreign_packs_are_detected() {
    // Two packs of the same account swapped.
    let s = setup().await;
    let packs = objects(&s.store, &s.accounts[0].0, "packs").await;
    assert!(packs.len() >= 2);
    let (a, b) = (
        read(&s.store, &packs[0]).await,
        read(&s.store, &packs[1]).await,
    );
    write(&s.store, &packs[0], b).await;
    write(&s.store, &packs[1], a).await;
    assert_detected(&s, "swapped packs").await;

    // Bob's packs served under Alice's pack names.
    let s = setup().await;
    let mine = objects(&s.store, &s.accounts[0].0, "packs").await;
    let theirs = objects(&s.store, &s.accounts[1].0, "packs").await;
    for (m, t) in mine.iter().zip(theirs.iter().cycle()) {
        let bytes = read(&s.store, t).await;
        write(&s.store, m, bytes).await;
    }
    assert_detected(&s, "another account's packs").await;

    // Bob's pack copied into Alice's prefix under its own name (a pack she never wrote).
    let s = setup().await;
    let theirs = objects(&s.store, &s.accounts[1].0, "packs").await;
    let name = theirs[0].as_ref().rsplit('/').next().unwrap().to_owned();
    let dest = StorePath::from(format!(
        "d/accounts/{}/packs/{}/{}",
        s.accounts[0].0.id,
        &name[..2],
        name
    ));
    let bytes = read(&s.store, &theirs[0]).await;
    write(&s.store, &dest, bytes).await;
    let (_, _, handle, _) = &s.accounts[0];
    let err = handle.load_locator().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_trailers_and_indexes_are_detected() {
    // A trailer byte flipped, read through the trailer path (no index).
    let s = setup().await;
    for idx in objects(&s.store, &s.accounts[0].0, "index").await {
        s.store.delete(&idx).await.unwrap();
    }
    let packs = objects(&s.store, &s.accounts[0].0, "packs").await;
    let mut bytes = read(&s.store, &packs[0]).await;
    let n = bytes.len();
    bytes[n - 60] ^= 0x10; // inside the trailer, before the footer
    write(&s.store, &packs[0], bytes).await;
    assert_detected(&s, "trailer flipped").await;

    // An index object flipped.
    let s = setup().await;
    let idx = objects(&s.store, &s.accounts[0].0, "index").await;
    let mut bytes = read(&s.store, &idx[0]).await;
    bytes[12] ^= 0x01;
    write(&s.store, &idx[0], bytes).await;
    assert_detected(&s, "index flipped").await;

    // An index replaced by another account's index.
    let s = setup().await;
    let mine = objects(&s.store, &s.accounts[0].0, "index").await;
    let theirs = objects(&s.store, &s.accounts[1].0, "index").await;
    let bytes = read(&s.store, &theirs[0]).await;
    write(&s.store, &mine[0], bytes).await;
    assert_detected(&s, "foreign index").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_replayed_snapshots_are_detected() {
    type Mutation = fn(&mut Vec<u8>);
    let mutations: [(&str, Mutation); 3] = [
        ("flipped", |b| b[14] ^= 0x01),
        ("truncated", |b| b.truncate(b.len() / 2)),
        ("extended", |b| b.push(0)),
    ];
    for (what, mutate) in mutations {
        let s = setup().await;
        let snap = s.accounts[0].3.last().unwrap();
        let p = StorePath::from(format!(
            "d/accounts/{}/snapshots/{}",
            s.accounts[0].0.id, snap.id
        ));
        let mut bytes = read(&s.store, &p).await;
        mutate(&mut bytes);
        write(&s.store, &p, bytes).await;
        assert_detected(&s, &format!("snapshot {what}")).await;
    }

    // The old snapshot served under the new snapshot's id.
    let s = setup().await;
    let (old, new) = (&s.accounts[0].3[0], &s.accounts[0].3[1]);
    let dir = format!("d/accounts/{}/snapshots", s.accounts[0].0.id);
    let bytes = read(&s.store, &StorePath::from(format!("{dir}/{}", old.id))).await;
    write(
        &s.store,
        &StorePath::from(format!("{dir}/{}", new.id)),
        bytes,
    )
    .await;
    assert_detected(&s, "replayed snapshot").await;

    // Bob's snapshot placed in Alice's prefix under its own id.
    let s = setup().await;
    let bob_snap = &s.accounts[1].3[0];
    let bytes = read(
        &s.store,
        &StorePath::from(format!(
            "d/accounts/{}/snapshots/{}",
            s.accounts[1].0.id, bob_snap.id
        )),
    )
    .await;
    let p = StorePath::from(format!(
        "d/accounts/{}/snapshots/{}",
        s.accounts[0].0.id, bob_snap.id
    ));
    write(&s.store, &p, bytes).await;
    let err = s.accounts[0]
        .2
        .load_snapshot(bob_snap.id)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let s = setup().await;
    let (alice, alice_keys, _, alice_snaps) = &s.accounts[0];
    let (_, bob_keys, _, _) = &s.accounts[1];
    // Bob's keys on Alice's data: nothing opens, nothing is written.
    let wrong = s.repo.account(
        alice.id,
        bob_keys.sealer(),
        Some(bob_keys.opener(None).unwrap()),
    );
    let target = tempfile::tempdir().unwrap();
    let plan = RestorePlan::new(alice.id).whole_snapshot(&alice_snaps[0]);
    let err = engine::restore(
        &wrong,
        &plan,
        &alice_snaps[..1],
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
    assert!(
        !target.path().join("home").exists()
            || std::fs::read_dir(target.path().join("home"))
                .unwrap()
                .count()
                == 0
    );
    // Alice's sealer with only Bob's opener: the content does not open.
    let mixed = s.repo.account(
        alice.id,
        alice_keys.sealer(),
        Some(bob_keys.opener(None).unwrap()),
    );
    let err = engine::restore(
        &mixed,
        &plan,
        &alice_snaps[..1],
        &FsAccount::new(target.path()),
        &no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
    // A tampered key envelope does not unwrap.
    let master = MasterKey::generate();
    let mut env = alice_keys.to_envelope(&master).unwrap();
    env[40] ^= 1;
    assert!(AccountKeys::from_envelope(&master, alice.id, &env).is_err());
    // Bob's envelope is refused for Alice.
    let env = bob_keys.to_envelope(&master).unwrap();
    assert!(AccountKeys::from_envelope(&master, alice.id, &env).is_err());
}
