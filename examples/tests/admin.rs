//! Key reset, master key rotation and export/import, and catalog rebuild (disaster recovery)
//! through the server assembled over a state directory.

use std::path::Path;
use std::sync::Arc;

use backup_core::model::{EncryptionMode, NotificationLevel, OwnerKey};
use backup_core::ports::{Event, EventKind, Notifier};
use backup_core::service::NewAccount;
use backup_core::{Error, ErrorKind};
use backup_examples::{StateDir, compare_trees, generate_sample_account};
use backup_storage::UrlResolver;

mod common;
use common::{backed_up_accounts, backup, count_objects, file_url, restore_all, server_over};

#[derive(Debug, Default)]
struct Events(std::sync::Mutex<Vec<Event>>);

#[async_trait::async_trait]
impl Notifier for Events {
    async fn notify(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_reset_shreds_everything_and_makes_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    generate_sample_account(&live, 40).unwrap();
    let (state, _) = StateDir::init(&dir.path().join("state"), None)
        .await
        .unwrap();
    let events = Arc::new(Events::default());
    let server = server_over(&state, UrlResolver::new())
        .notifier(events.clone())
        .build();
    let dest_dir = dir.path().join("dest");
    server
        .add_destination("d", &file_url(&dest_dir), None, false)
        .await
        .unwrap();
    let mut new = NewAccount::active("owner", EncryptionMode::OwnerKey).unwrap();
    // A key reset is a warning: the owner asked for warnings.
    new.0.notifications.level = NotificationLevel::More;
    let out = server.add_account(new).await.unwrap();
    let (account, old_key) = (out.account, out.owner_key.unwrap());
    let snap = backup(&server, &account, &live).await.unwrap();
    assert!(count_objects(&dest_dir, &account) > 2);
    let old_text = old_key.expose().to_owned();

    let notified_before = events.0.lock().unwrap().len();
    let new_key = server.reset_key(&account).await.unwrap().unwrap();
    assert_ne!(new_key.expose(), old_text);
    assert_eq!(
        count_objects(&dest_dir, &account),
        0,
        "every object of the account is gone"
    );
    assert!(server.snapshots(&account).await.unwrap().is_empty());
    let notified: Vec<EventKind> = events.0.lock().unwrap()[notified_before..]
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(notified, [EventKind::KeyReset]);

    // The old snapshot cannot be restored with the old key; the new key works for new data.
    let t = dir.path().join("t1");
    let err = restore_all(&server, &account, &snap, &t, Some(OwnerKey::new(old_text)))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Key | ErrorKind::NotFound),
        "{err:?}"
    );
    let snap2 = backup(&server, &account, &live).await.unwrap();
    let t2 = dir.path().join("t2");
    restore_all(&server, &account, &snap2, &t2, Some(new_key))
        .await
        .unwrap();
    assert_eq!(compare_trees(&live, &t2).unwrap(), None);

    // An unencrypted account has no key to reset.
    let plain = server
        .add_account(NewAccount::active("plain", EncryptionMode::None).unwrap())
        .await
        .unwrap()
        .account;
    assert!(matches!(
        server.reset_key(&plain).await,
        Err(Error::Refused { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_reset_leaves_no_usable_old_key_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    generate_sample_account(&live, 20).unwrap();
    let (state, _) = StateDir::init(&dir.path().join("state"), None)
        .await
        .unwrap();
    let server = &state.server;
    let dest_dir = dir.path().join("dest");
    server
        .add_destination("d", &file_url(&dest_dir), None, false)
        .await
        .unwrap();
    let account = server
        .add_account(NewAccount::active("srv", EncryptionMode::ServerKey).unwrap())
        .await
        .unwrap()
        .account;
    backup(server, &account, &live).await.unwrap();
    // Simulate an interruption right after the first step (catalog envelope removed).
    assert!(
        server
            .catalog()
            .delete_key_envelope(account.id)
            .await
            .unwrap()
    );
    let err = backup(server, &account, &live).await.unwrap_err();
    assert!(err.to_string().contains("reset"), "{err}");
    // The next call finishes the reset.
    server.reset_key(&account).await.unwrap();
    assert_eq!(count_objects(&dest_dir, &account), 0);
    backup(server, &account, &live).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_rebuild_and_master_key_rotation_restore_everything() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let (state, _) = StateDir::init(&state_dir, None).await.unwrap();
    let dest_dir = dir.path().join("dest");
    let destination = state
        .server
        .add_destination("d", &file_url(&dest_dir), None, false)
        .await
        .unwrap();
    let accounts = backed_up_accounts(
        &state.server,
        dir.path(),
        |i| 30 + i * 10,
        &["*.log".to_owned()],
    )
    .await;

    // Rotate the master key: everything still opens.
    let before = state.vault.fingerprint();
    let rotation = state.server.rotate_master_key().await.unwrap();
    assert_eq!(rotation.accounts, 3, "{rotation:?}");
    assert!(rotation.read_only_destinations.is_empty(), "{rotation:?}");
    assert_ne!(state.vault.fingerprint(), before, "a new master key");
    let exported = state.vault.export_text().to_string();
    drop(state);

    // Lose the whole state directory: a new server with the exported master key.
    std::fs::remove_dir_all(&state_dir).unwrap();
    let new_state = dir.path().join("new-state");
    let key_file = dir.path().join("master.txt");
    std::fs::write(&key_file, &exported).unwrap();
    assert!(StateDir::import_master_key(&new_state, &exported).unwrap());
    let (state, created) = StateDir::init(&new_state, None).await.unwrap();
    assert!(!created, "the imported key is used");
    let server = &state.server;
    let report = server.rebuild_catalog(&destination).await.unwrap();
    assert_eq!((report.accounts, report.snapshots), (3, 3), "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    // A destination the catalog did not know comes back read-only.
    assert!(server.destination("d").await.unwrap().read_only);
    for (account, key, live, snap) in &accounts {
        let restored = server.account(&account.id.to_string()).await.unwrap();
        assert_eq!(&restored, account, "settings come back");
        let t = dir.path().join(format!("restored-{}", account.username));
        restore_all(server, account, snap, &t, key.clone().map(OwnerKey::new))
            .await
            .unwrap();
        // Excluded logs are not in the backup.
        let expected = dir.path().join(format!("expected-{}", account.username));
        copy_without_logs(live, &expected);
        assert_eq!(
            compare_trees(&expected, &t).unwrap(),
            None,
            "{}",
            account.username
        );
    }
}

fn copy_without_logs(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_without_logs(&e.path(), &dest);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), dest).unwrap();
        } else if !e.file_name().to_string_lossy().ends_with(".log") {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
