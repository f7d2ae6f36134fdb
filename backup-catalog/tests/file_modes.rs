//! The catalog's files are mode 0600 whatever the process umask: the database holds every
//! account's key envelope. The umask is process-wide, so this binary holds this one test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use backup_catalog::SqliteCatalog;
use backup_core::model::Account;
use backup_core::ports::{AccountStore, KeyStore};
use rustix::fs::Mode;
use rustix::process::umask;

/// The database file and its journal files.
fn files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", db.display()));
    [db.to_owned(), with("-wal"), with("-shm")]
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[track_caller]
fn assert_private(db: &Path, when: &str) {
    for file in files(db) {
        assert_eq!(
            mode(&file),
            0o600,
            "{} should be mode 0600 ({when})",
            file.display()
        );
    }
}

/// Writes something, so that the write-ahead log and its index exist.
async fn write(catalog: &SqliteCatalog) {
    let account = Account::new("modes").unwrap();
    catalog.put_account(&account).await.unwrap();
    catalog
        .put_key_envelope(account.id, b"sealed keys")
        .await
        .unwrap();
}

#[tokio::test]
async fn catalog_files_are_private_whatever_the_umask() {
    let original = umask(Mode::from_bits_truncate(0o077));
    for mask in [0o022, 0o000] {
        umask(Mode::from_bits_truncate(mask));
        let when = |what: &str| format!("{what}, umask {mask:03o}");
        let dir = tempfile::tempdir().unwrap();

        // A new file, by path and by URL.
        let db = dir.path().join("catalog.db");
        let catalog = SqliteCatalog::open(&db).await.unwrap();
        write(&catalog).await;
        assert_private(&db, &when("new file"));
        let by_url = dir.path().join("url.db");
        let other = SqliteCatalog::connect(&format!("sqlite://{}", by_url.display()))
            .await
            .unwrap();
        write(&other).await;
        assert_private(&by_url, &when("new file by URL"));
        other.close().await;

        // Existing files someone loosened: opening tightens all three again (the first
        // catalog keeps the journal files in place).
        for file in files(&db) {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let again = SqliteCatalog::open(&db).await.unwrap();
        assert_private(&db, &when("existing files"));
        write(&again).await;
        again.close().await;
        catalog.close().await;

        // An existing database whose journal files are gone: SQLite recreates them with the
        // database file's mode.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!files(&db)[1].exists(), "closing removed the log");
        let reopened = SqliteCatalog::open(&db).await.unwrap();
        write(&reopened).await;
        assert_private(&db, &when("reopened"));
        reopened.close().await;
    }
    umask(original);
}
