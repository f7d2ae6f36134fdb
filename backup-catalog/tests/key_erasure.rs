//! A deleted or replaced key envelope leaves no byte in the catalog's files: not in
//! `catalog.db`, not in `catalog.db-wal`, not in `catalog.db-shm`, neither while the catalog
//! is open nor after it is closed. (What SQLite keeps is described on `KeyStore`.)

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use backup_catalog::SqliteCatalog;
use backup_core::model::{Account, AccountId};
use backup_core::ports::{AccountStore, KeyStore, SnapshotStore};
use sqlx::Connection;

/// Length of the windows looked for: a surviving run of 32 bytes of an envelope is found.
const WINDOW: usize = 32;

/// A directory for a catalog file: memory-backed `/dev/shm` when there is one (every erasure
/// syncs the files), else the system's temporary directory. The files are the same either
/// way.
fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
}

/// `len` random bytes.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 16);
    while bytes.len() < len {
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Every file in `dir` (the database, its log and its index), read whole.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        files.push((name, std::fs::read(entry.path()).unwrap()));
    }
    files.sort();
    files
}

/// Which of `envelopes` has some 32-byte window (at any offset) in some file of `dir`, and
/// where: (index, file name).
fn found(dir: &Path, envelopes: &[&[u8]]) -> Vec<(usize, String)> {
    let mut windows = std::collections::HashMap::new();
    for (i, envelope) in envelopes.iter().enumerate() {
        for window in envelope.windows(WINDOW) {
            windows.insert(window.to_vec(), i);
        }
    }
    let mut hits = HashSet::new();
    for (name, bytes) in files(dir) {
        for window in bytes.windows(WINDOW) {
            if let Some(i) = windows.get(window) {
                hits.insert((*i, name.clone()));
            }
        }
    }
    let mut hits: Vec<_> = hits.into_iter().collect();
    hits.sort();
    hits
}

/// Asserts that no window of `gone` is in the directory, and that every one of `kept` is.
#[track_caller]
fn assert_erased(dir: &Path, gone: &[&[u8]], kept: &[&[u8]], when: &str) {
    let names: Vec<String> = files(dir).into_iter().map(|(n, _)| n).collect();
    let left = found(dir, gone);
    assert!(
        left.is_empty(),
        "{when}: bytes of removed envelopes remain (envelope, file): {left:?} in {names:?}"
    );
    let present = found(dir, kept);
    let seen: HashSet<usize> = present.iter().map(|(i, _)| *i).collect();
    assert_eq!(
        seen.len(),
        kept.len(),
        "{when}: the scan should find every envelope still stored (control), found \
         {present:?} in {names:?}"
    );
}

#[tokio::test]
async fn removed_envelopes_leave_no_bytes_in_the_files() {
    let dir = scratch_dir();
    let catalog = SqliteCatalog::open(dir.path().join("catalog.db"))
        .await
        .unwrap();
    let mut accounts = Vec::new();
    let mut envelopes = Vec::new();
    for i in 0..8 {
        let account = Account::new(&format!("shred{i}")).unwrap();
        catalog.put_account(&account).await.unwrap();
        catalog
            .put_snapshot(&common::snapshot(account.id, 5, 100))
            .await
            .unwrap();
        let envelope = random_bytes(300);
        catalog
            .put_key_envelope(account.id, &envelope)
            .await
            .unwrap();
        accounts.push(account.id);
        envelopes.push(envelope);
    }

    // Replaced by one of the same size (rewritten in place) and by a larger one (moved).
    let same_size = random_bytes(300);
    let larger = random_bytes(700);
    catalog
        .put_key_envelope(accounts[0], &same_size)
        .await
        .unwrap();
    catalog
        .put_key_envelope(accounts[1], &larger)
        .await
        .unwrap();
    // Deleted alone, and with the account.
    assert!(catalog.delete_key_envelope(accounts[2]).await.unwrap());
    assert!(catalog.delete_account(accounts[3]).await.unwrap());

    let gone: Vec<&[u8]> = envelopes[..4].iter().map(Vec::as_slice).collect();
    let mut kept: Vec<&[u8]> = envelopes[4..].iter().map(Vec::as_slice).collect();
    kept.extend([same_size.as_slice(), larger.as_slice()]);
    assert_erased(dir.path(), &gone, &kept, "catalog open");
    assert_eq!(
        catalog.get_key_envelope(accounts[4]).await.unwrap(),
        Some(envelopes[4].clone())
    );
    catalog.close().await;
    assert_erased(dir.path(), &gone, &kept, "catalog closed");
}

/// Envelopes that all grow, round after round: SQLite splits and rebalances the table's
/// pages, and when it rebuilds a fragmented page it leaves copies of the cells it moved in the
/// page's free space, which `secure_delete` does not clear. (With SQLite 3.51 this exact
/// sequence leaves parts of three replaced envelopes behind unless the table is rebuilt.) None
/// may survive.
#[tokio::test]
async fn removed_envelopes_leave_no_bytes_after_pages_rebalance() {
    const ACCOUNTS: usize = 300;
    const ROUNDS: usize = 3;
    let dir = scratch_dir();
    let catalog = SqliteCatalog::open(dir.path().join("catalog.db"))
        .await
        .unwrap();
    // Sizes fixed by the position and the round, so the page layout is the same every run.
    let size = |i: usize, round: usize| {
        let spread = (i.wrapping_mul(2_654_435_761) ^ round.wrapping_mul(40_503)) % 200;
        150 + round * 250 + spread
    };
    let accounts: Vec<AccountId> = (0..ACCOUNTS).map(|_| AccountId::new()).collect();
    let mut stored: Vec<Vec<u8>> = (0..ACCOUNTS).map(|i| random_bytes(size(i, 0))).collect();
    for (account, envelope) in accounts.iter().zip(&stored) {
        catalog.put_key_envelope(*account, envelope).await.unwrap();
    }
    let mut gone = Vec::new();
    for round in 1..=ROUNDS {
        for (i, account) in accounts.iter().enumerate() {
            let new = random_bytes(size(i, round));
            catalog.put_key_envelope(*account, &new).await.unwrap();
            gone.push(std::mem::replace(&mut stored[i], new));
        }
    }
    // And a few deletes, which make pages underflow and merge.
    for (account, envelope) in accounts.iter().zip(&mut stored).step_by(7) {
        assert!(catalog.delete_key_envelope(*account).await.unwrap());
        gone.push(std::mem::take(envelope));
    }
    let gone: Vec<&[u8]> = gone.iter().map(Vec::as_slice).collect();
    let kept: Vec<&[u8]> = stored
        .iter()
        .map(Vec::as_slice)
        .filter(|e| !e.is_empty())
        .collect();
    assert_erased(dir.path(), &gone, &kept, "catalog open");
    catalog.close().await;
    assert_erased(dir.path(), &gone, &kept, "catalog closed");
}

/// Erasing rebuilds the envelope table: it keeps the migrated columns, primary key and
/// rows.
#[tokio::test]
async fn the_rebuilt_envelope_table_keeps_its_schema() {
    let catalog = SqliteCatalog::in_memory().await.unwrap();
    let layout = || async {
        let columns: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(
            "SELECT cid, name, type, \"notnull\", pk FROM pragma_table_info('key_envelopes')",
        )
        .fetch_all(catalog.pool())
        .await
        .unwrap();
        let indexes: Vec<(i64, String)> =
            sqlx::query_as("SELECT \"unique\", origin FROM pragma_index_list('key_envelopes')")
                .fetch_all(catalog.pool())
                .await
                .unwrap();
        (columns, indexes)
    };
    let migrated = layout().await;
    assert_eq!(migrated.0.len(), 2, "{migrated:?}");
    assert_eq!(migrated.1, vec![(1, "pk".to_owned())]);
    let (a, b) = (AccountId::new(), AccountId::new());
    catalog.put_key_envelope(a, b"first").await.unwrap();
    catalog.put_key_envelope(b, b"second").await.unwrap();
    assert!(catalog.delete_key_envelope(a).await.unwrap());
    assert_eq!(layout().await, migrated);
    assert_eq!(
        catalog.get_key_envelope(b).await.unwrap(),
        Some(b"second".to_vec())
    );
    catalog.put_key_envelope(a, b"again").await.unwrap();
    catalog.put_key_envelope(a, b"resized").await.unwrap();
    assert_eq!(layout().await, migrated);
    assert_eq!(
        catalog.get_key_envelope(a).await.unwrap(),
        Some(b"resized".to_vec())
    );
}

/// While another connection reads an older snapshot, the log cannot be emptied: the delete
/// commits but the call fails (after retrying for the busy timeout) instead of claiming the
/// bytes are gone, and they are indeed still in the files. Once the reader is done, calling
/// again completes the erasure.
#[tokio::test]
async fn a_blocked_erasure_fails_and_a_retry_completes_it() {
    let dir = scratch_dir();
    let path = dir.path().join("catalog.db");
    let catalog = SqliteCatalog::open(&path).await.unwrap();
    let (gone, kept) = (AccountId::new(), AccountId::new());
    let (old, other) = (random_bytes(300), random_bytes(300));
    catalog.put_key_envelope(gone, &old).await.unwrap();
    catalog.put_key_envelope(kept, &other).await.unwrap();

    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut reader = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM key_envelopes")
        .fetch_one(&mut reader)
        .await
        .unwrap();

    let started = Instant::now();
    let err = catalog.delete_key_envelope(gone).await.unwrap_err();
    assert!(
        started.elapsed() >= backup_catalog::BUSY_TIMEOUT,
        "gave up after {:?}",
        started.elapsed()
    );
    assert!(err.is_transient(), "{err}");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("erasure incomplete"), "{source}");
    assert_eq!(catalog.get_key_envelope(gone).await.unwrap(), None);
    assert!(
        !found(dir.path(), &[&old]).is_empty(),
        "the failed erasure left the bytes (else it should have succeeded)"
    );

    sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();
    assert!(!catalog.delete_key_envelope(gone).await.unwrap());
    assert_erased(dir.path(), &[&old], &[&other], "after the retry");
    catalog.close().await;
}
