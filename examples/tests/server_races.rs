//! Races on one account: key resets and master-key rotations while 20 backups run (some on
//! each of two destinations), and two backups of the same account at once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use backup_core::engine::{BackupReport, FsStatCache};
use backup_core::model::{Account, EncryptionMode, Limit, OwnerKey, Snapshot, SnapshotId};
use backup_core::ports::MemoryCatalog;
use backup_core::service::{
    BackupJob, NewAccount, OperationEvent, OperationProgress, Phase, Server, VerifyRequest,
};
use backup_core::{Error, ErrorKind, FsAccount};
use backup_crypto::{MasterKey, MasterKeyVault};
use backup_examples::{StateDir, generate_sample_account};
use backup_storage::UrlResolver;

mod server_support;
use server_support::{Place, account_objects, file_url, restores_to, small_account};

/// Backups started at once in each round.
const BACKUPS: usize = 20;
/// Rounds; the key operation starts after 0, 1, then 5 backups of the round committed.
const ROUNDS: [usize; 3] = [0, 1, 5];

/// The destinations of the race tests: `one` and `two`, `file://` under `dir`, or S3 ones
/// when `place` is given.
async fn two_destinations(
    server: &Server,
    dir: &Path,
    place: Option<&Place>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["one", "two"] {
        let url = match place {
            Some(place) => place.url(name),
            None => file_url(&dir.join(name)),
        };
        server
            .add_destination(name, &url, None, false)
            .await
            .unwrap();
        out.push((name.to_owned(), url));
    }
    out
}

/// Starts `BACKUPS` backups of `account` from `live`, every third one to `two`, taking
/// turns between `servers`.
fn spawn_backups(
    servers: &[&Server],
    account: &Account,
    live: &Path,
) -> Vec<tokio::task::JoinHandle<backup_core::Result<BackupReport>>> {
    (0..BACKUPS)
        .map(|i| {
            let server = servers[i % servers.len()].clone();
            let account = account.clone();
            let source = FsAccount::new(live);
            let destination = if i % 3 == 2 { "two" } else { "one" };
            tokio::spawn(async move {
                server
                    .backup(BackupJob::new(&account, &source, destination))
                    .await
            })
        })
        .collect()
}

/// Waits until `n` snapshots of `account` not in `known` are in the catalog (or the
/// backups are over).
async fn wait_for_commits(
    server: &Server,
    account: &Account,
    known: &BTreeSet<SnapshotId>,
    n: usize,
    backups: &[tokio::task::JoinHandle<backup_core::Result<BackupReport>>],
) {
    loop {
        let rows = server.snapshots(account).await.unwrap();
        let new = rows.iter().filter(|s| !known.contains(&s.id)).count();
        if new >= n || backups.iter().all(|b| b.is_finished()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The reports of the backups that succeeded; the others failed with an error saying the
/// account was busy or its key changed.
async fn outcomes(
    backups: Vec<tokio::task::JoinHandle<backup_core::Result<BackupReport>>>,
) -> (Vec<Snapshot>, Vec<Error>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for b in backups {
        match b.await.expect("the backup task does not panic") {
            Ok(report) => {
                assert!(report.skipped.is_empty(), "{:?}", report.skipped);
                ok.push(report.snapshot);
            }
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Busy | ErrorKind::Refused),
                    "a backup that loses the race fails as busy or refused: {e:?}"
                );
                failed.push(e);
            }
        }
    }
    (ok, failed)
}

/// Every catalog row of `account` was reported by a backup that succeeded and restores to
/// `live`; every snapshot of a successful backup that is no longer in the catalog is gone
/// from its destination too; verification with data passes.
async fn every_row_restores(
    server: &Server,
    account: &Account,
    key: Option<&OwnerKey>,
    live: &Path,
    reported: &[Snapshot],
    scratch: &Path,
) -> Vec<Snapshot> {
    let rows = server.snapshots(account).await.unwrap();
    let destinations = server.destinations().await.unwrap();
    for row in &rows {
        assert!(
            reported.iter().any(|s| s.id == row.id),
            "snapshot {} is in the catalog but no backup reported it",
            row.id
        );
        let target = scratch.join(row.id.to_string());
        restores_to(server, account, row, &target, key, live).await;
    }
    for snapshot in reported {
        if rows.iter().any(|r| r.id == snapshot.id) {
            continue;
        }
        let destination = destinations
            .iter()
            .find(|d| d.id == snapshot.destination)
            .expect("a known destination");
        let objects = account_objects(&destination.url, account.id, "snapshots").await;
        assert!(
            !objects
                .iter()
                .any(|o| o.ends_with(&snapshot.id.to_string())),
            "snapshot {} left the catalog but not {}",
            snapshot.id,
            destination.name
        );
    }
    let reports = server
        .verify(
            account,
            &VerifyRequest {
                read_data: true,
                owner_key: server_support::same_key(key),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut verified = 0;
    for (destination, report) in &reports {
        assert_eq!(report.problems, vec![], "{}", destination.name);
        assert!(report.damaged_packs.is_empty(), "{}", destination.name);
        verified += report.snapshots;
    }
    assert_eq!(verified, rows.len() as u64);
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_resets_racing_backups_leave_only_snapshots_that_restore() {
    key_resets_racing_backups(&Place::local(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs S3 and PostgreSQL: run scripts/test.sh"]
async fn key_resets_racing_backups_on_servers() {
    let place = Place::servers();
    key_resets_racing_backups(&place, true).await;
    place.clean_up().await;
}

/// Rounds of 20 backups, each raced by a key reset; on the servers' catalog and S3 when
/// `servers`, else a memory catalog and `file://` destinations.
async fn key_resets_racing_backups(place: &Place, servers: bool) {
    let dir = &place.dir;
    let server = Server::builder(
        place.catalog().await,
        Arc::new(MasterKeyVault::from_key(MasterKey::generate())),
        Arc::new(UrlResolver::new()),
    )
    .stat_cache(Arc::new(FsStatCache::new(dir.path().join("statcache"))))
    .lease_wait(Duration::from_secs(300))
    .build();
    two_destinations(&server, dir.path(), servers.then_some(place)).await;
    let account = server
        .add_account(NewAccount::active("racer", EncryptionMode::ServerKey).unwrap())
        .await
        .unwrap()
        .account;
    let live = dir.path().join("live");
    small_account(&live, 21);

    let mut reported = Vec::new();
    let mut known = BTreeSet::new();
    for (round, after) in ROUNDS.into_iter().enumerate() {
        let envelope = server.catalog().get_key_envelope(account.id).await.unwrap();
        let backups = spawn_backups(&[&server], &account, &live);
        wait_for_commits(&server, &account, &known, after, &backups).await;
        let owner_key = server.reset_key(&account).await.unwrap();
        assert!(owner_key.is_none());
        assert_ne!(
            server.catalog().get_key_envelope(account.id).await.unwrap(),
            envelope,
            "round {round}: new keys"
        );
        let (ok, failed) = outcomes(backups).await;
        let succeeded = ok.len();
        reported.extend(ok);
        let scratch = dir.path().join(format!("round{round}"));
        let rows = every_row_restores(&server, &account, None, &live, &reported, &scratch).await;
        eprintln!(
            "round {round}: {succeeded} backups succeeded, {} failed, {} kept after the reset",
            failed.len(),
            rows.len()
        );
        known.extend(rows.iter().map(|s| s.id));
    }

    // A backup and a restore after the storm.
    for destination in ["one", "two"] {
        let source = FsAccount::new(&live);
        let report = server
            .backup(BackupJob::new(&account, &source, destination))
            .await
            .unwrap();
        let target = dir.path().join(format!("after-{destination}"));
        restores_to(&server, &account, &report.snapshot, &target, None, &live).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn master_key_rotations_racing_backups_keep_every_snapshot_readable() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("state");
    let (state, _) = StateDir::init(&home, None).await.unwrap();
    // Another process's view of the same state directory, opened before any rotation: it
    // runs half of the backups.
    let other = StateDir::open(&home, None).await.unwrap();
    let server = state.server.clone();
    let destinations = two_destinations(&server, dir.path(), None).await;
    let account = server
        .add_account(NewAccount::active("rotor", EncryptionMode::ServerKey).unwrap())
        .await
        .unwrap()
        .account;
    let live = dir.path().join("live");
    small_account(&live, 31);
    // An owner-key account with one snapshot on each destination: its envelopes and
    // records are re-wrapped too, and only its owner reads its data.
    let added = server
        .add_account(NewAccount::active("keeper", EncryptionMode::OwnerKey).unwrap())
        .await
        .unwrap();
    let (keeper, keeper_key) = (added.account, added.owner_key.unwrap());
    let keeper_live = dir.path().join("keeper-live");
    small_account(&keeper_live, 32);
    let mut keeper_rows = Vec::new();
    for (name, _) in &destinations {
        let source = FsAccount::new(&keeper_live);
        keeper_rows.push(
            server
                .backup(BackupJob::new(&keeper, &source, name))
                .await
                .unwrap()
                .snapshot,
        );
    }

    let mut reported = Vec::new();
    let mut known = BTreeSet::new();
    let mut last_rows = Vec::new();
    for (round, after) in ROUNDS.into_iter().enumerate() {
        let fingerprint = state.vault.fingerprint();
        let backups = spawn_backups(&[&server, &other.server], &account, &live);
        wait_for_commits(&server, &account, &known, after, &backups).await;
        let rotation = server.rotate_master_key().await.unwrap();
        assert_eq!(rotation.accounts, 2, "round {round}");
        assert!(rotation.read_only_destinations.is_empty());
        assert_ne!(state.vault.fingerprint(), fingerprint, "round {round}");
        let (ok, failed) = outcomes(backups).await;
        eprintln!(
            "round {round}: {} backups succeeded, {} failed",
            ok.len(),
            failed.len()
        );
        let ok_ids: BTreeSet<SnapshotId> = ok.iter().map(|s| s.id).collect();
        reported.extend(ok);
        let scratch = dir.path().join(format!("round{round}"));
        let rows = every_row_restores(&server, &account, None, &live, &reported, &scratch).await;
        let row_ids: BTreeSet<SnapshotId> = rows.iter().map(|s| s.id).collect();
        assert!(
            ok_ids.is_subset(&row_ids),
            "a rotation deletes nothing: every successful backup is recorded"
        );
        known.extend(row_ids);
        last_rows = rows.clone();

        // The new master key alone opens every destination's envelopes and records.
        assert!(!home.join("master.key.next").exists());
        let new_key = MasterKey::load(home.join("master.key")).unwrap();
        let only_new = Arc::new(MasterKeyVault::from_key(new_key));
        for (name, url) in &destinations {
            let rebuilt = Server::builder(
                Arc::new(MemoryCatalog::default()),
                only_new.clone(),
                Arc::new(UrlResolver::new()),
            )
            .build();
            let report = rebuilt
                .rebuild_catalog(&backup_core::model::Destination::new(name, url).unwrap())
                .await
                .unwrap();
            assert_eq!(report.problems, vec![], "round {round}, destination {name}");
            assert_eq!(report.accounts, 2, "round {round}, destination {name}");
            let here = server.destination(name).await.unwrap().id;
            let on_it = rows.iter().filter(|s| s.destination == here).count() + 1;
            assert_eq!(report.snapshots, on_it as u64, "destination {name}");
            let back = rebuilt.account("keeper").await.unwrap();
            let row = rebuilt.snapshots(&back).await.unwrap().remove(0);
            let target = scratch.join(format!("keeper-{name}"));
            restores_to(
                &rebuilt,
                &back,
                &row,
                &target,
                Some(&keeper_key),
                &keeper_live,
            )
            .await;
        }
    }
    for row in &keeper_rows {
        let target = dir.path().join(format!("keeper-{}", row.id));
        restores_to(
            &server,
            &keeper,
            row,
            &target,
            Some(&keeper_key),
            &keeper_live,
        )
        .await;
    }

    // The other process (opened before the rotations) and a new one back up and restore.
    let fresh = StateDir::open(&home, None).await.unwrap();
    for (i, view) in [&other, &fresh].into_iter().enumerate() {
        let source = FsAccount::new(&live);
        let report = view
            .server
            .backup(BackupJob::new(&account, &source, "one"))
            .await
            .unwrap();
        let target = dir.path().join(format!("view{i}"));
        restores_to(
            &view.server,
            &account,
            &report.snapshot,
            &target,
            None,
            &live,
        )
        .await;
        // And read what the storm left.
        let row = last_rows.last().expect("the last round recorded snapshots");
        let target = dir.path().join(format!("view{i}-storm"));
        restores_to(&view.server, &account, row, &target, None, &live).await;
    }
}

/// Holds a backup at its first engine event (under its lease) until opened.
#[derive(Debug, Default)]
struct Gate {
    /// (entered, open)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl OperationProgress for Gate {
    fn event(&self, event: &OperationEvent) {
        if event.phase != Phase::Running {
            return;
        }
        let mut state = self.state.lock().unwrap();
        if state.0 {
            return;
        }
        state.0 = true;
        self.changed.notify_all();
        // Hand this worker's other tasks to another thread while waiting.
        tokio::task::block_in_place(|| {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !state.1 && std::time::Instant::now() < deadline {
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
        });
    }
}

impl Gate {
    async fn entered(&self) {
        while !self.state.lock().unwrap().0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

struct Pair {
    dir: tempfile::TempDir,
    server: Server,
    url: String,
    account: Account,
    live: PathBuf,
}

async fn pair(lease_wait: Duration) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder(
        Arc::new(MemoryCatalog::default()),
        Arc::new(MasterKeyVault::from_key(MasterKey::generate())),
        Arc::new(UrlResolver::new()),
    )
    .lease_wait(lease_wait)
    .build();
    let url = file_url(&dir.path().join("dest"));
    server
        .add_destination("main", &url, None, false)
        .await
        .unwrap();
    let account = server
        .add_account(NewAccount::active("twice", EncryptionMode::ServerKey).unwrap())
        .await
        .unwrap()
        .account;
    let live = dir.path().join("live");
    generate_sample_account(&live, 40).unwrap();
    Pair {
        dir,
        server,
        url,
        account,
        live,
    }
}

/// Starts a backup of the pair's account held by `gate` once under its lease.
fn spawn_gated(
    p: &Pair,
    gate: &Arc<Gate>,
) -> tokio::task::JoinHandle<backup_core::Result<BackupReport>> {
    let (server, account, source, gate) = (
        p.server.clone(),
        p.account.clone(),
        FsAccount::new(&p.live),
        gate.clone(),
    );
    tokio::spawn(async move {
        server
            .backup(BackupJob::new(&account, &source, "main").with_progress(gate))
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_backups_of_one_account_run_one_after_the_other() {
    let p = pair(Duration::from_secs(120)).await;
    let gate = Arc::new(Gate::default());
    let first = spawn_gated(&p, &gate);
    gate.entered().await;
    let second = {
        let (server, account, source) =
            (p.server.clone(), p.account.clone(), FsAccount::new(&p.live));
        tokio::spawn(async move {
            server
                .backup(BackupJob::new(&account, &source, "main"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !second.is_finished(),
        "the second backup waits for the first one's lease"
    );
    assert!(p.server.snapshots(&p.account).await.unwrap().is_empty());
    gate.open();
    let first = first.await.unwrap().unwrap().snapshot;
    let second = second.await.unwrap().unwrap().snapshot;
    assert!(second.created >= first.created, "{second:?}");
    assert!(
        second.stats.bytes_new < (64 << 10) && second.stats.bytes_new * 100 < first.stats.bytes_new,
        "the second backup stores (almost) nothing new: {:?} after {:?}",
        second.stats,
        first.stats
    );
    let rows: Vec<SnapshotId> = p
        .server
        .snapshots(&p.account)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(rows, vec![first.id, second.id]);
    for s in [&first, &second] {
        let target = p.dir.path().join(format!("restored-{}", s.id));
        restores_to(&p.server, &p.account, s, &target, None, &p.live).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_that_cannot_wait_fails_busy_and_records_nothing() {
    let p = pair(Duration::ZERO).await;
    let gate = Arc::new(Gate::default());
    let first = spawn_gated(&p, &gate);
    gate.entered().await;
    let source = FsAccount::new(&p.live);
    let err = p
        .server
        .backup(BackupJob::new(&p.account, &source, "main"))
        .await
        .unwrap_err();
    gate.open();
    assert!(matches!(err, Error::LeaseHeld { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(err.is_transient());
    let first = first.await.unwrap().unwrap().snapshot;
    let rows: Vec<SnapshotId> = p
        .server
        .snapshots(&p.account)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        rows,
        vec![first.id],
        "nothing of the refused backup is recorded"
    );
    assert_eq!(
        account_objects(&p.url, p.account.id, "snapshots").await,
        vec![format!("accounts/{}/snapshots/{}", p.account.id, first.id)]
    );
    // Once the first is done, the account takes backups again.
    let again = p
        .server
        .backup(BackupJob::new(&p.account, &source, "main"))
        .await
        .unwrap();
    let target = p.dir.path().join("restored");
    restores_to(
        &p.server,
        &p.account,
        &again.snapshot,
        &target,
        None,
        &p.live,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_on_demand_cap_holds_for_backups_that_wait_for_each_other() {
    let p = pair(Duration::from_secs(60)).await;
    let mut account = p.account.clone();
    account.max_on_demand_snapshots = Limit::Max(1);
    p.server.update_account(&account).await.unwrap();
    let gate = Arc::new(Gate::default());
    let first = spawn_gated(&p, &gate);
    gate.entered().await;
    // The second passes the early check (nothing is committed yet), then waits for the
    // lease; under it, the first one's snapshot counts.
    let second = {
        let (server, account, live) = (p.server.clone(), account.clone(), p.live.clone());
        tokio::spawn(async move {
            let source = FsAccount::new(&live);
            server
                .backup(BackupJob::new(&account, &source, "main"))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.open();
    let first = first.await.unwrap().unwrap().snapshot;
    match second.await.unwrap() {
        Err(Error::SettingRefused { setting, .. }) => assert_eq!(setting, "max-on-demand"),
        other => panic!("the second on-demand backup passed a cap of 1: {other:?}"),
    }
    let rows: Vec<SnapshotId> = p
        .server
        .snapshots(&account)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(rows, vec![first.id]);
}
