//! Key reset and master key rotation interrupted by a failing store at every call they make
//! (a refused call, and a call that acted but whose answer was lost): the old key is never
//! usable again after a reset started, and the next call finishes the job.

use std::sync::{Arc, Mutex};

use backup_core::engine::no_progress;
use backup_core::model::{EncryptionMode, OwnerKey};
use backup_core::ports::NullNotifier;
use backup_examples::{Service, StoreLayer, compare_trees, generate_sample_account};
use backup_storage::object_store::ObjectStore;
use backup_storage::{FaultPlan, FaultStore};

mod common;
use common::{backed_up_accounts, count_objects, restore_all};

type Faulty = FaultStore<Arc<dyn ObjectStore>>;

/// A layer failing call `n` of every store opened; the stores are kept for their counters.
fn failing_call(n: u64, lost_responses: bool) -> (StoreLayer, Arc<Mutex<Vec<Arc<Faulty>>>>) {
    let opened = Arc::new(Mutex::new(Vec::new()));
    let seen = opened.clone();
    let layer = StoreLayer::new(move |store| {
        let faulty =
            Arc::new(FaultStore::new(store, FaultPlan::Nth(n)).with_lost_responses(lost_responses));
        seen.lock().unwrap().push(faulty.clone());
        faulty as Arc<dyn ObjectStore>
    });
    (layer, opened)
}

fn injected(opened: &Mutex<Vec<Arc<Faulty>>>) -> u64 {
    opened.lock().unwrap().iter().map(|s| s.injected()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_reset_interrupted_at_every_store_call_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    generate_sample_account(&live, 6).unwrap();
    let (mut service, _) = Service::init(&dir.path().join("state")).await.unwrap();
    let dest = dir.path().join("dest");
    service
        .add_destination("d", &format!("file://{}", dest.display()))
        .await
        .unwrap();

    for lost_responses in [false, true] {
        let mut interrupted = 0;
        for n in 1.. {
            let account = service
                .add_account(
                    &format!("u{}x{n}", u8::from(lost_responses)),
                    None,
                    EncryptionMode::ServerKey,
                    &[],
                )
                .await
                .unwrap()
                .account;
            let snapshot = service
                .backup(&account, &live, "d", &no_progress())
                .await
                .unwrap();
            assert!(count_objects(&dest, &account) > 2);

            let (layer, opened) = failing_call(n, lost_responses);
            service.set_store_layer(Some(layer));
            let result = service.reset_key(&account, &NullNotifier).await;
            service.set_store_layer(None);
            let faults = injected(&opened);
            match result {
                Ok(_) if faults == 0 => break, // call n is past the last one: all covered
                Ok(_) => assert!(
                    lost_responses,
                    "an injected failure went unnoticed (call {n})"
                ),
                Err(e) => {
                    interrupted += 1;
                    assert_eq!(faults, 1, "call {n}: {e}");
                    // The old key is unusable: gone from the catalog, so no backup or
                    // restore of the account runs until the reset is finished.
                    assert!(
                        service
                            .catalog()
                            .get_key_envelope(account.id)
                            .await
                            .unwrap()
                            .is_none()
                    );
                    let t = dir.path().join(format!("t-{}", account.username));
                    let err = restore_all(&service, &account, &snapshot, &t, None)
                        .await
                        .unwrap_err();
                    assert!(err.to_string().contains("reset"), "call {n}: {err}");
                    let err = service
                        .backup(&account, &live, "d", &no_progress())
                        .await
                        .unwrap_err();
                    assert!(err.to_string().contains("reset"), "call {n}: {err}");
                    service.reset_key(&account, &NullNotifier).await.unwrap();
                }
            }
            assert_eq!(count_objects(&dest, &account), 0, "call {n}: objects left");
            assert!(service.snapshots(&account).await.unwrap().is_empty());
            // The new keys work.
            let fresh = service
                .backup(&account, &live, "d", &no_progress())
                .await
                .unwrap();
            let t = dir.path().join(format!("new-{}", account.username));
            restore_all(&service, &account, &fresh, &t, None)
                .await
                .unwrap();
            assert_eq!(compare_trees(&live, &t).unwrap(), None);
        }
        eprintln!("reset: {interrupted} interruptions (lost responses: {lost_responses})");
        assert!(
            interrupted >= 4,
            "only {interrupted} interruptions (lost responses: {lost_responses})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_interrupted_at_every_store_call_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut service, _) = Service::init(&dir.path().join("state")).await.unwrap();
    let dest = dir.path().join("dest");
    let destination = service
        .add_destination("d", &format!("file://{}", dest.display()))
        .await
        .unwrap();
    let accounts = backed_up_accounts(&service, dir.path(), |i| 5 + i, &[]).await;

    let check_all = async |service: &Service, tag: &str| {
        for (account, key, live, snapshot) in &accounts {
            let t = dir.path().join(format!("{tag}-{}", account.username));
            restore_all(
                service,
                account,
                snapshot,
                &t,
                key.clone().map(OwnerKey::new),
            )
            .await
            .unwrap_or_else(|e| panic!("{tag}: {}: {e}", account.username));
            assert_eq!(compare_trees(live, &t).unwrap(), None, "{tag}");
        }
    };

    for lost_responses in [false, true] {
        let mut interrupted = 0;
        for n in 1.. {
            let before = service.export_master_key();
            let (layer, opened) = failing_call(n, lost_responses);
            service.set_store_layer(Some(layer));
            let result = service.rotate_master_key().await;
            service.set_store_layer(None);
            let faults = injected(&opened);
            let tag = format!("{}-{n}", u8::from(lost_responses));
            match result {
                Ok(count) => {
                    assert_eq!(count, 3, "accounts with keys to re-wrap");
                    if faults == 0 {
                        break;
                    }
                    assert!(
                        lost_responses,
                        "an injected failure went unnoticed (call {n})"
                    );
                }
                Err(e) => {
                    interrupted += 1;
                    assert_eq!(faults, 1, "call {n}: {e}");
                    assert_eq!(service.export_master_key(), before, "key not replaced yet");
                    // Half re-wrapped: every account still backs up and restores.
                    check_all(&service, &format!("mid-{tag}")).await;
                    let (account, _, live, _) = &accounts[1];
                    service
                        .backup(account, live, "d", &no_progress())
                        .await
                        .unwrap();
                    assert_eq!(service.rotate_master_key().await.unwrap(), 3);
                }
            }
            assert_ne!(service.export_master_key(), before, "call {n}: key rotated");
            check_all(&service, &format!("after-{tag}")).await;

            // The destination's envelopes open under the new key alone: a new server with
            // only the exported key and the destination recovers every account.
            let home = dir.path().join(format!("recovered-{tag}"));
            Service::import_master_key(&home, &service.export_master_key()).unwrap();
            let (recovered, _) = Service::init_with_catalog(&home, Some("sqlite::memory:"))
                .await
                .unwrap();
            let report = recovered.rebuild_catalog(&destination).await.unwrap();
            assert_eq!(report.accounts, 3, "call {n}: {report:?}");
            check_all(&recovered, &format!("recovered-{tag}")).await;
        }
        eprintln!("rotation: {interrupted} interruptions (lost responses: {lost_responses})");
        assert!(
            interrupted >= 3,
            "only {interrupted} interruptions (lost responses: {lost_responses})"
        );
    }
}
