//! Key reset and master key rotation interrupted by a failing store at every call they make
//! (a refused call, and a call that acted but whose answer was lost): the old key is never
//! usable again after a reset started, and the next call finishes the job.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::model::{Account, EncryptionMode, OwnerKey};
use backup_core::service::{NewAccount, Server};
use backup_examples::{StateDir, compare_trees, generate_sample_account};
use backup_storage::object_store::ObjectStore;
use backup_storage::{FaultPlan, FaultStore, UrlResolver};

mod common;
use common::{backed_up_accounts, backup, count_objects, file_url, restore_all, server_over};

type Faulty = FaultStore<Arc<dyn ObjectStore>>;

/// The lease time of the failing servers: a lease a failed call leaves behind expires
/// soon, and the next operation on the account takes it over.
const LEASE_TTL: Duration = Duration::from_secs(3);

/// A resolver failing call `n` of every store it opens, without retries (so every call
/// the server makes is one call counted); the stores are kept for their counters.
fn failing_call(n: u64, lost_responses: bool) -> (UrlResolver, Arc<Mutex<Vec<Arc<Faulty>>>>) {
    let opened = Arc::new(Mutex::new(Vec::new()));
    let seen = opened.clone();
    let resolver =
        UrlResolver::new()
            .without_retries()
            .with_layer(move |store: Arc<dyn ObjectStore>| {
                let faulty = Arc::new(
                    FaultStore::new(store, FaultPlan::Nth(n)).with_lost_responses(lost_responses),
                );
                seen.lock().unwrap().push(faulty.clone());
                faulty as Arc<dyn ObjectStore>
            });
    (resolver, opened)
}

/// A server over `state` (same catalog, vault and stat caches) whose destinations fail at
/// call `n`.
fn failing_server(
    state: &StateDir,
    n: u64,
    lost_responses: bool,
) -> (Server, Arc<Mutex<Vec<Arc<Faulty>>>>) {
    let (resolver, opened) = failing_call(n, lost_responses);
    let server = server_over(state, resolver).lease_ttl(LEASE_TTL).build();
    (server, opened)
}

fn injected(opened: &Mutex<Vec<Arc<Faulty>>>) -> u64 {
    opened.lock().unwrap().iter().map(|s| s.injected()).sum()
}

/// The leases left in the file destination at `dest`, operation and collection leases
/// (each names its account).
fn leases_left(dest: &Path) -> Vec<String> {
    [dest.join("leases"), dest.join("leases/collect")]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.path().is_file())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_else(|_| Vec::new())
        })
        .collect()
}

/// Releasing a lease is the one step whose failure an operation does not report (the lease
/// expires on its own): an injected failure that went unreported must have left the lease
/// of one of `accounts` behind.
fn assert_only_release_failed(dest: &Path, accounts: &[&Account], n: u64) {
    let left = leases_left(dest);
    assert!(
        accounts.iter().any(|a| left.contains(&a.id.to_string())),
        "an injected failure went unnoticed (call {n}); leases left: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_reset_interrupted_at_every_store_call_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    generate_sample_account(&live, 6).unwrap();
    let (state, _) = StateDir::init(&dir.path().join("state"), None)
        .await
        .unwrap();
    let server = &state.server;
    let dest = dir.path().join("dest");
    server
        .add_destination("d", &file_url(&dest), None, false)
        .await
        .unwrap();

    for lost_responses in [false, true] {
        // Failures after the reset started, and before it changed anything.
        let (mut interrupted, mut not_started) = (0, 0);
        for n in 1.. {
            let username = format!("u{}x{n}", u8::from(lost_responses));
            let account = server
                .add_account(NewAccount::active(&username, EncryptionMode::ServerKey).unwrap())
                .await
                .unwrap()
                .account;
            let snapshot = backup(server, &account, &live).await.unwrap();
            let objects = count_objects(&dest, &account);
            assert!(objects > 2);

            let (failing, opened) = failing_server(&state, n, lost_responses);
            let result = failing.reset_key(&account).await;
            drop(failing);
            let faults = injected(&opened);
            match result {
                Ok(_) if faults == 0 => break, // call n is past the last one: all covered
                Ok(_) if lost_responses => {}
                Ok(_) => assert_only_release_failed(&dest, &[&account], n),
                Err(e) => {
                    assert_eq!(faults, 1, "call {n}: {e}");
                    let envelope = server.catalog().get_key_envelope(account.id).await.unwrap();
                    if envelope.is_some() {
                        // It failed before the reset started (opening the destination,
                        // taking the lease): nothing changed, the old key still works.
                        not_started += 1;
                        assert_eq!(count_objects(&dest, &account), objects, "call {n}: {e}");
                        assert_eq!(
                            server.snapshots(&account).await.unwrap(),
                            std::slice::from_ref(&snapshot)
                        );
                        let t = dir.path().join(format!("old-{}", account.username));
                        restore_all(server, &account, &snapshot, &t, None)
                            .await
                            .unwrap_or_else(|e| panic!("call {n}: {e}"));
                        assert_eq!(compare_trees(&live, &t).unwrap(), None, "call {n}");
                    } else {
                        // The old key is unusable: gone from the catalog, so no backup or
                        // restore of the account runs until the reset is finished.
                        interrupted += 1;
                        let t = dir.path().join(format!("t-{}", account.username));
                        let err = restore_all(server, &account, &snapshot, &t, None)
                            .await
                            .unwrap_err();
                        assert!(err.to_string().contains("reset"), "call {n}: {err}");
                        let err = backup(server, &account, &live).await.unwrap_err();
                        assert!(err.to_string().contains("reset"), "call {n}: {err}");
                    }
                    server.reset_key(&account).await.unwrap();
                }
            }
            assert_eq!(count_objects(&dest, &account), 0, "call {n}: objects left");
            assert!(server.snapshots(&account).await.unwrap().is_empty());
            // The new keys work.
            let fresh = backup(server, &account, &live).await.unwrap();
            let t = dir.path().join(format!("new-{}", account.username));
            restore_all(server, &account, &fresh, &t, None)
                .await
                .unwrap();
            assert_eq!(compare_trees(&live, &t).unwrap(), None);
        }
        eprintln!(
            "reset: {interrupted} interruptions, {not_started} failures before it started \
             (lost responses: {lost_responses})"
        );
        assert!(
            interrupted >= 4,
            "only {interrupted} interruptions (lost responses: {lost_responses})"
        );
        assert!(
            not_started >= 1,
            "no failure before the reset started (lost responses: {lost_responses})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_interrupted_at_every_store_call_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _) = StateDir::init(&dir.path().join("state"), None)
        .await
        .unwrap();
    let server = &state.server;
    let dest = dir.path().join("dest");
    let destination = server
        .add_destination("d", &file_url(&dest), None, false)
        .await
        .unwrap();
    let accounts = backed_up_accounts(server, dir.path(), |i| 5 + i, &[]).await;
    let all: Vec<&Account> = accounts.iter().map(|(a, ..)| a).collect();

    let check_all = async |server: &Server, tag: &str| {
        for (account, key, live, snapshot) in &accounts {
            let t = dir.path().join(format!("{tag}-{}", account.username));
            restore_all(
                server,
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
            let before = state.vault.export_text();
            let (failing, opened) = failing_server(&state, n, lost_responses);
            let result = failing.rotate_master_key().await;
            drop(failing);
            let faults = injected(&opened);
            let tag = format!("{}-{n}", u8::from(lost_responses));
            match result {
                Ok(report) => {
                    assert_eq!(report.accounts, 3, "accounts with keys to re-wrap");
                    if faults == 0 {
                        break;
                    }
                    if !lost_responses {
                        assert_only_release_failed(&dest, &all, n);
                    }
                }
                Err(e) => {
                    interrupted += 1;
                    assert_eq!(faults, 1, "call {n}: {e}");
                    assert_eq!(state.vault.export_text(), before, "key not replaced yet");
                    // Half re-wrapped: every account still backs up and restores.
                    check_all(server, &format!("mid-{tag}")).await;
                    let (account, _, live, _) = &accounts[1];
                    backup(server, account, live).await.unwrap();
                    assert_eq!(server.rotate_master_key().await.unwrap().accounts, 3);
                }
            }
            assert_ne!(state.vault.export_text(), before, "call {n}: key rotated");
            check_all(server, &format!("after-{tag}")).await;

            // The destination's envelopes open under the new key alone: a new server with
            // only the exported key and the destination recovers every account.
            let home = dir.path().join(format!("recovered-{tag}"));
            assert!(StateDir::import_master_key(&home, &state.vault.export_text()).unwrap());
            let (recovered, created) = StateDir::init(&home, Some("sqlite::memory:"))
                .await
                .unwrap();
            assert!(!created, "the imported key is used");
            let report = recovered
                .server
                .rebuild_catalog(&destination)
                .await
                .unwrap();
            assert_eq!(report.accounts, 3, "call {n}: {report:?}");
            assert!(report.problems.is_empty(), "call {n}: {report:?}");
            check_all(&recovered.server, &format!("recovered-{tag}")).await;
        }
        eprintln!("rotation: {interrupted} interruptions (lost responses: {lost_responses})");
        assert!(
            interrupted >= 3,
            "only {interrupted} interruptions (lost responses: {lost_responses})"
        );
    }
}
