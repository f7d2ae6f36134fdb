//! Key reset, master key rotation and export/import, and catalog rebuild (disaster recovery)
//! through the reference `Service`.

use std::path::Path;

use backup_core::engine::no_progress;
use backup_core::model::{EncryptionMode, OwnerKey};
use backup_core::ports::{Event, EventKind, Notifier};
use backup_core::{Error, ErrorKind};
use backup_examples::{Service, compare_trees, generate_sample_account};

mod common;
use common::{backed_up_accounts, count_objects, restore_all};

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
    let (service, _) = Service::init(&dir.path().join("state")).await.unwrap();
    let dest_dir = dir.path().join("dest");
    service
        .add_destination("d", &format!("file://{}", dest_dir.display()))
        .await
        .unwrap();
    let out = service
        .add_account("owner", None, EncryptionMode::OwnerKey, &[])
        .await
        .unwrap();
    let (account, old_key) = (out.account, out.owner_key.unwrap());
    let progress = no_progress();
    let snap = service
        .backup(&account, &live, "d", &progress)
        .await
        .unwrap();
    assert!(count_objects(&dest_dir, &account) > 2);
    let old_text = old_key.expose().to_owned();

    let events = Events::default();
    let new_key = service.reset_key(&account, &events).await.unwrap().unwrap();
    assert_ne!(new_key.expose(), old_text);
    assert_eq!(
        count_objects(&dest_dir, &account),
        0,
        "every object of the account is gone"
    );
    assert!(service.snapshots(&account).await.unwrap().is_empty());
    assert_eq!(events.0.lock().unwrap()[0].kind, EventKind::KeyReset);

    // The old snapshot cannot be restored with the old key; the new key works for new data.
    let t = dir.path().join("t1");
    let err = restore_all(&service, &account, &snap, &t, Some(OwnerKey::new(old_text)))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Key | ErrorKind::NotFound),
        "{err:?}"
    );
    let snap2 = service
        .backup(&account, &live, "d", &progress)
        .await
        .unwrap();
    let t2 = dir.path().join("t2");
    restore_all(&service, &account, &snap2, &t2, Some(new_key))
        .await
        .unwrap();
    assert_eq!(compare_trees(&live, &t2).unwrap(), None);

    // An unencrypted account has no key to reset.
    let plain = service
        .add_account("plain", None, EncryptionMode::None, &[])
        .await
        .unwrap()
        .account;
    assert!(matches!(
        service.reset_key(&plain, &events).await,
        Err(Error::Refused { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_reset_leaves_no_usable_old_key_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    generate_sample_account(&live, 20).unwrap();
    let (service, _) = Service::init(&dir.path().join("state")).await.unwrap();
    let dest_dir = dir.path().join("dest");
    service
        .add_destination("d", &format!("file://{}", dest_dir.display()))
        .await
        .unwrap();
    let account = service
        .add_account("srv", None, EncryptionMode::ServerKey, &[])
        .await
        .unwrap()
        .account;
    let progress = no_progress();
    service
        .backup(&account, &live, "d", &progress)
        .await
        .unwrap();
    // Simulate an interruption right after the first step (catalog envelope removed).
    service
        .catalog()
        .delete_key_envelope(account.id)
        .await
        .unwrap();
    let err = service
        .backup(&account, &live, "d", &progress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reset"), "{err}");
    // The next call finishes the reset.
    service
        .reset_key(&account, &Events::default())
        .await
        .unwrap();
    assert_eq!(count_objects(&dest_dir, &account), 0);
    service
        .backup(&account, &live, "d", &progress)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_rebuild_and_master_key_rotation_restore_everything() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (mut service, _) = Service::init(&state).await.unwrap();
    let dest_dir = dir.path().join("dest");
    let destination = service
        .add_destination("d", &format!("file://{}", dest_dir.display()))
        .await
        .unwrap();
    let accounts =
        backed_up_accounts(&service, dir.path(), |i| 30 + i * 10, &["*.log".to_owned()]).await;

    // Rotate the master key: everything still opens.
    assert_eq!(service.rotate_master_key().await.unwrap(), 3);
    let exported = service.export_master_key();
    drop(service);

    // Lose the whole state directory: a new server with the exported master key.
    std::fs::remove_dir_all(&state).unwrap();
    let new_state = dir.path().join("new-state");
    let key_file = dir.path().join("master.txt");
    std::fs::write(&key_file, &exported).unwrap();
    Service::import_master_key(&new_state, &exported).unwrap();
    let (service, created) = Service::init(&new_state).await.unwrap();
    assert!(!created, "the imported key is used");
    let report = service.rebuild_catalog(&destination).await.unwrap();
    assert_eq!((report.accounts, report.snapshots), (3, 3), "{report:?}");
    for (account, key, live, snap) in &accounts {
        let restored = service.account(&account.id.to_string()).await.unwrap();
        assert_eq!(&restored, account, "settings come back");
        let t = dir.path().join(format!("restored-{}", account.username));
        restore_all(&service, account, snap, &t, key.clone().map(OwnerKey::new))
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
