//! The `Server` end to end: the README flow recovered by a catalog rebuild, every account
//! setting that refuses a backup, a rebuild over damaged objects, read paths that never
//! write, crypto-shredding by a key reset, and `backupctl`'s answers to bad input.
//!
//! The first three scenarios run on a memory catalog with `file://` destinations, and again
//! on PostgreSQL with S3 destinations (ignored under a plain `cargo test`;
//! `scripts/test.sh` starts the servers and runs them). The read-only bind mount tests
//! need root, and are ignored likewise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use backup_core::FsAccount;
use backup_core::model::{
    Account, AccountStatus, BackupLocations, Destination, DestinationClass, EncryptionMode, Limit,
    NotificationLevel, OwnerKey, Snapshot, SnapshotId, SnapshotKind, StorageQuota,
};
use backup_core::ports::{DestinationStore, EventKind, MemoryCatalog};
use backup_core::service::{BackupJob, NewAccount, RestoreRequest, Server, VerifyRequest};
use backup_core::{Error, ErrorKind};
use backup_crypto::{MasterKey, MasterKeyVault};
use backup_examples::{StateDir, change_some_files, generate_sample_account};
use backup_storage::UrlResolver;

mod server_support;
use server_support::{
    Place, Recorder, account_objects, backupctl_path, copy_tree, damage_object, file_url,
    files_below, files_holding, objects, restore_whole, restores_to, small_account,
    state_backed_up_twice, tree_state,
};

fn new_vault() -> Arc<MasterKeyVault> {
    Arc::new(MasterKeyVault::from_key(MasterKey::generate()))
}

async fn new_server(place: &Place, vault: &Arc<MasterKeyVault>) -> Server {
    Server::builder(
        place.catalog().await,
        vault.clone(),
        Arc::new(UrlResolver::new()),
    )
    .build()
}

/// A copy of the account layout `live` without the paths `excluded` (relative to it).
fn expected_without(live: &Path, excluded: &[&str], copy: PathBuf) -> PathBuf {
    copy_tree(live, &copy);
    for rel in excluded {
        let p = copy.join(rel);
        assert!(p.exists(), "{} is not in the sample", p.display());
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
    copy
}

// ---------------------------------------------------------------------------------------
// 1. The README flow, recovered by a rebuild
// ---------------------------------------------------------------------------------------

/// The README's flow (a destination, an owner-key and a server-key account, backups,
/// restores), then disaster recovery: a new server over an empty catalog and the same
/// master key rebuilds both accounts, their settings and snapshots from the destination
/// alone; the destination comes back read-only until the operator makes it writable.
async fn readme_flow_recovered_by_rebuild(place: &Place) {
    let vault = new_vault();
    let server = new_server(place, &vault).await;
    let url = place.url("dest");
    server
        .add_destination("main", &url, None, false)
        .await
        .unwrap();

    let alice = Account::new("alice")
        .unwrap()
        .with_encryption(EncryptionMode::OwnerKey)
        .with_status(AccountStatus::Active)
        .with_email("alice@example.com")
        .unwrap()
        .with_excludes(["logs"])
        .unwrap();
    let added = server.add_account(NewAccount(alice)).await.unwrap();
    let alice_key = added.owner_key.expect("an owner-key account gets its key");
    let alice = added.account;
    let bob = NewAccount::active("bob", EncryptionMode::ServerKey)
        .unwrap()
        .0
        .with_email("bob@example.org")
        .unwrap()
        .with_excludes(["public_html/video", "*.tmp"])
        .unwrap();
    let added = server.add_account(NewAccount(bob)).await.unwrap();
    assert!(
        added.owner_key.is_none(),
        "a server-key account has no owner key"
    );
    let bob = added.account;

    let live_alice = place.path("live-alice");
    generate_sample_account(&live_alice, 60).unwrap();
    let live_bob = place.path("live-bob");
    generate_sample_account(&live_bob, 30).unwrap();
    change_some_files(&live_bob, 4).unwrap();
    std::fs::write(live_bob.join("home/session.tmp"), b"scratch").unwrap();
    // What restores give back: the live layouts without what the excludes leave out.
    let expected_alice = expected_without(&live_alice, &["home/logs"], place.path("exp-alice"));
    let expected_bob = expected_without(
        &live_bob,
        &["home/public_html/video", "home/session.tmp"],
        place.path("exp-bob"),
    );
    let users = [
        (&alice, Some(&alice_key), &live_alice, &expected_alice),
        (&bob, None, &live_bob, &expected_bob),
    ];

    let mut first: Vec<Snapshot> = Vec::new();
    for (account, key, live, expected) in users {
        let source = FsAccount::new(live);
        let report = server
            .backup(BackupJob::new(account, &source, "main"))
            .await
            .unwrap();
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert!(report.snapshot.encrypted);
        let target = place.path(&format!("restored-{}", account.username));
        restores_to(&server, account, &report.snapshot, &target, key, expected).await;
        first.push(report.snapshot);
    }
    let err = restore_whole(&server, &alice, &first[0], &place.path("no-key"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeyRequired { .. }), "{err:?}");
    let stored = [
        server.account("alice").await.unwrap(),
        server.account("bob").await.unwrap(),
    ];
    let rows = [
        server.snapshots(&alice).await.unwrap(),
        server.snapshots(&bob).await.unwrap(),
    ];

    // Disaster recovery: an empty catalog, the same master key, the destination alone.
    let recovered = new_server(place, &vault).await;
    assert!(recovered.accounts().await.unwrap().is_empty());
    let report = recovered
        .rebuild_catalog(&Destination::new("main", &url).unwrap())
        .await
        .unwrap();
    assert_eq!(report.problems, vec![]);
    assert_eq!((report.accounts, report.snapshots), (2, 2));
    let destination = recovered.destination("main").await.unwrap();
    assert!(
        destination.read_only,
        "a destination found by a rebuild starts read-only"
    );
    assert_eq!(destination.url, url);

    let mut back_accounts = Vec::new();
    for (((original, key, _, expected), stored), rows) in users.into_iter().zip(&stored).zip(&rows)
    {
        let back = recovered.account(&original.id.to_string()).await.unwrap();
        assert_eq!(back.username, original.username);
        assert_eq!(back.email, original.email);
        assert_eq!(back.excludes.patterns(), original.excludes.patterns());
        assert_eq!(back.encryption, original.encryption);
        assert_eq!(&back, stored, "every setting comes back");
        let snapshots = recovered.snapshots(&back).await.unwrap();
        // As recorded, on the rebuilt destination; the snapshot object keeps the time to
        // the millisecond.
        let as_found = |rows: &[Snapshot]| -> Vec<Snapshot> {
            rows.iter()
                .map(|row| {
                    let mut row = row.clone();
                    row.destination = destination.id;
                    row.created =
                        chrono::DateTime::from_timestamp_millis(row.created.timestamp_millis())
                            .unwrap();
                    row
                })
                .collect()
        };
        assert_eq!(
            as_found(&snapshots),
            as_found(rows),
            "the snapshots come back as recorded"
        );
        let target = place.path(&format!("recovered-{}", back.username));
        restores_to(&recovered, &back, &snapshots[0], &target, key, expected).await;
        back_accounts.push(back);
    }
    let err = restore_whole(
        &recovered,
        &back_accounts[0],
        &recovered.snapshots(&back_accounts[0]).await.unwrap()[0],
        &place.path("recovered-no-key"),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::KeyRequired { .. }),
        "the owner key is still needed after a rebuild: {err:?}"
    );

    // Backups to the rebuilt destination are refused, and write nothing, until it is
    // made writable.
    let before = objects(&url).await;
    for (account, (_, _, live, _)) in back_accounts.iter().zip(users) {
        let source = FsAccount::new(live);
        let err = recovered
            .backup(BackupJob::new(account, &source, "main"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::SettingRefused {
                    setting: "read-only",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(
        objects(&url).await,
        before,
        "a refused backup writes nothing"
    );
    let writable = recovered
        .set_destination_read_only("main", false)
        .await
        .unwrap();
    assert!(!writable.read_only);
    for (account, (_, key, live, expected)) in back_accounts.iter().zip(users) {
        let source = FsAccount::new(live);
        let report = recovered
            .backup(BackupJob::new(account, &source, "main"))
            .await
            .unwrap();
        assert!(
            report.snapshot.stats.bytes_new < (64 << 10),
            "the rebuilt destination deduplicates: {:?}",
            report.snapshot.stats
        );
        assert_eq!(recovered.snapshots(account).await.unwrap().len(), 2);
        let target = place.path(&format!("after-{}", account.username));
        restores_to(
            &recovered,
            account,
            &report.snapshot,
            &target,
            key,
            expected,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_flow_recovered_by_rebuild_locally() {
    let place = Place::local();
    readme_flow_recovered_by_rebuild(&place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs S3 and PostgreSQL: run scripts/test.sh"]
async fn readme_flow_recovered_by_rebuild_on_servers() {
    let place = Place::servers();
    readme_flow_recovered_by_rebuild(&place).await;
    place.clean_up().await;
}

// ---------------------------------------------------------------------------------------
// 2. Account settings refuse before any byte is uploaded
// ---------------------------------------------------------------------------------------

struct SettingsCheck {
    server: Server,
    recorder: Arc<Recorder>,
    source: FsAccount,
    /// Destination names and URLs.
    urls: Vec<(String, String)>,
}

impl SettingsCheck {
    fn url(&self, destination: &str) -> &str {
        &self
            .urls
            .iter()
            .find(|(n, _)| n == destination)
            .expect("a known destination")
            .1
    }

    /// An active server-key account that wants every notification, with `set` applied.
    async fn account(&self, name: &str, set: impl FnOnce(&mut Account)) -> Account {
        let mut account = NewAccount::active(name, EncryptionMode::ServerKey)
            .unwrap()
            .0;
        account.notifications.level = NotificationLevel::All;
        set(&mut account);
        self.server
            .add_account(NewAccount(account))
            .await
            .unwrap()
            .account
    }

    /// The backup is refused by `setting`, nothing reaches the destination, nothing is
    /// recorded, and the refusal is notified.
    async fn refused(&self, account: &Account, destination: &str, setting: &str) {
        let url = self.url(destination);
        let before = objects(url).await;
        let rows = self.server.snapshots(account).await.unwrap();
        let err = self
            .server
            .backup(BackupJob::new(account, &self.source, destination))
            .await
            .unwrap_err();
        match &err {
            Error::SettingRefused { setting: named, .. } if *named == setting => {}
            other => panic!(
                "a backup of {} to {destination} should be refused by {setting}: {other:?}",
                account.username
            ),
        }
        assert_eq!(err.kind(), ErrorKind::Setting);
        assert_eq!(
            objects(url).await,
            before,
            "a backup refused by {setting} uploads nothing"
        );
        assert_eq!(self.server.snapshots(account).await.unwrap(), rows);
        let events = self.recorder.take(account.id);
        assert!(
            events.iter().any(|e| matches!(
                e,
                EventKind::BackupRefused { setting: named, .. } if named == setting
            )),
            "a refusal by {setting} is notified: {events:?}"
        );
    }

    /// The backup goes through, is recorded and notified; returns the events with it.
    async fn backs_up(&self, job: BackupJob<'_>) -> (Snapshot, Vec<EventKind>) {
        let account = job.account;
        let destination = job.destination.to_owned();
        let report = self.server.backup(job).await.unwrap_or_else(|e| {
            panic!(
                "a backup of {} to {destination} should succeed: {e}",
                account.username
            )
        });
        let rows = self.server.snapshots(account).await.unwrap();
        assert!(rows.iter().any(|s| s.id == report.snapshot.id));
        let events = self.recorder.take(account.id);
        assert!(
            events.contains(&EventKind::BackupSucceeded {
                snapshot: report.snapshot.id
            }),
            "{events:?}"
        );
        (report.snapshot, events)
    }

    async fn backs_up_to(
        &self,
        account: &Account,
        destination: &str,
    ) -> (Snapshot, Vec<EventKind>) {
        self.backs_up(BackupJob::new(account, &self.source, destination))
            .await
    }
}

async fn settings_refuse_before_upload(place: &Place) {
    let recorder = Arc::new(Recorder::default());
    let server = Server::builder(
        place.catalog().await,
        new_vault(),
        Arc::new(UrlResolver::new()),
    )
    .notifier(recorder.clone())
    .build();
    let live = place.path("live");
    small_account(&live, 7);
    let urls = vec![
        ("main".to_owned(), place.url("main")),
        ("disk".to_owned(), file_url(&place.path("disk"))),
        ("cloud".to_owned(), place.url("cloud")),
        ("archive".to_owned(), place.url("archive")),
    ];
    for (name, url) in &urls {
        let class = (name == "cloud").then_some(DestinationClass::Cloud);
        server
            .add_destination(name, url, class, false)
            .await
            .unwrap();
    }
    let s = SettingsCheck {
        server,
        recorder,
        source: FsAccount::new(&live),
        urls,
    };

    // Status: inactive and terminated accounts are not backed up, suspended ones are.
    let inactive = s
        .account("inactive", |a| a.status = AccountStatus::Inactive)
        .await;
    s.refused(&inactive, "main", "status").await;
    let terminated = s
        .account("terminated", |a| a.status = AccountStatus::Terminated)
        .await;
    s.refused(&terminated, "main", "status").await;
    let suspended = s
        .account("suspended", |a| a.status = AccountStatus::Suspended)
        .await;
    s.backs_up_to(&suspended, "main").await;

    // On-demand limits: disabled; at most one (the second is refused); scheduled backups
    // do not count against them.
    let disabled = s
        .account("disabled", |a| a.max_on_demand_snapshots = Limit::Disabled)
        .await;
    s.refused(&disabled, "main", "max-on-demand").await;
    s.backs_up(BackupJob::new(&disabled, &s.source, "main").with_kind(SnapshotKind::Scheduled))
        .await;
    let one = s
        .account("one", |a| a.max_on_demand_snapshots = Limit::Max(1))
        .await;
    s.backs_up_to(&one, "main").await;
    s.refused(&one, "main", "max-on-demand").await;
    assert_eq!(s.server.snapshots(&one).await.unwrap().len(), 1);

    // A soft quota: backups go on, with a business notification past it (unless the
    // account turned those off).
    let soft = s
        .account("soft", |a| {
            a.quota.storage = Some(StorageQuota::soft(1000).unwrap())
        })
        .await;
    for round in 1..=2u64 {
        let (snapshot, events) = s.backs_up_to(&soft, "main").await;
        let warning = events.iter().find_map(|e| match e {
            EventKind::QuotaWarning { used, limit } => Some((*used, *limit)),
            _ => None,
        });
        let (used, limit) = warning.unwrap_or_else(|| panic!("no quota warning: {events:?}"));
        assert_eq!(limit, 1000);
        assert!(used > 1000 && used >= snapshot.stats.bytes_stored, "{used}");
        assert_eq!(s.server.snapshots(&soft).await.unwrap().len() as u64, round);
    }
    let quiet = s
        .account("soft-quiet", |a| {
            a.quota.storage = Some(StorageQuota::soft(1000).unwrap());
            a.notifications.business = false;
        })
        .await;
    let (_, events) = s.backs_up_to(&quiet, "main").await;
    assert!(
        !events.iter().any(|e| e.is_business()),
        "business notifications are off: {events:?}"
    );

    // A hard quota (no overage) stops the backup: nothing recorded, in the catalog or on
    // the destination, the lease released, and the stop notified.
    let hard = s
        .account("hard", |a| {
            a.quota.storage = Some(StorageQuota::with_overage(1000, 0).unwrap())
        })
        .await;
    let err = s
        .server
        .backup(BackupJob::new(&hard, &s.source, "main"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SettingRefused {
                setting: "quota",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(s.server.snapshots(&hard).await.unwrap(), vec![]);
    assert_eq!(
        account_objects(s.url("main"), hard.id, "snapshots").await,
        Vec::<String>::new()
    );
    let left = objects(s.url("main")).await;
    assert!(
        !left.keys().any(|k| k.starts_with("leases/")),
        "the lease is released: {:?}",
        left.keys()
            .filter(|k| k.starts_with("leases/"))
            .collect::<Vec<_>>()
    );
    let events = s.recorder.take(hard.id);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::QuotaExceeded { limit: 1000, .. })),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            EventKind::BackupRefused { setting, .. } if setting == "quota"
        )),
        "{events:?}"
    );
    // A hard quota the backup fits in lets it through.
    let roomy = s
        .account("roomy", |a| {
            a.quota.storage = Some(StorageQuota::with_overage(100 << 20, 0).unwrap())
        })
        .await;
    s.backs_up_to(&roomy, "main").await;

    // Cloud-only accounts: refused on a local destination, accepted on a cloud one.
    let cloudy = s
        .account("cloudy", |a| {
            a.backup_locations = BackupLocations::CloudOnly
        })
        .await;
    s.refused(&cloudy, "disk", "locations").await;
    s.backs_up_to(&cloudy, "cloud").await;

    // A read-only destination.
    let archived = s.account("archived", |_| {}).await;
    s.backs_up_to(&archived, "archive").await;
    let ro = s
        .server
        .set_destination_read_only("archive", true)
        .await
        .unwrap();
    assert!(ro.read_only);
    s.refused(&archived, "archive", "read-only").await;
    s.backs_up_to(&archived, "main").await;

    // The server-wide limit applies to accounts on the default, not to those with their own.
    let mut settings = s.server.settings().await.unwrap();
    settings.max_on_demand_snapshots = Limit::Max(1);
    s.server.set_settings(&settings).await.unwrap();
    let global = s.account("global", |_| {}).await;
    assert_eq!(global.max_on_demand_snapshots, Limit::Default);
    s.backs_up_to(&global, "main").await;
    s.refused(&global, "main", "max-on-demand").await;
    let own = s
        .account("own", |a| a.max_on_demand_snapshots = Limit::Unlimited)
        .await;
    s.backs_up_to(&own, "main").await;
    s.backs_up_to(&own, "main").await;
    settings.max_on_demand_snapshots = Limit::Default;
    s.server.set_settings(&settings).await.unwrap();
    s.backs_up_to(&global, "main").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_refuse_before_upload_locally() {
    let place = Place::local();
    settings_refuse_before_upload(&place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs S3 and PostgreSQL: run scripts/test.sh"]
async fn settings_refuse_before_upload_on_servers() {
    let place = Place::servers();
    settings_refuse_before_upload(&place).await;
    place.clean_up().await;
}

// ---------------------------------------------------------------------------------------
// 3. A rebuild goes past damaged objects
// ---------------------------------------------------------------------------------------

async fn rebuild_goes_past_damage(place: &Place) {
    let vault = new_vault();
    let server = new_server(place, &vault).await;
    let url = place.url("dest");
    server
        .add_destination("main", &url, None, false)
        .await
        .unwrap();
    // Accounts are listed by id: the one with the lowest id gets a damaged record and the
    // next a damaged snapshot, so the damage comes first and the rebuild must go on past it.
    let mut drafts: Vec<Account> = ["record-damaged", "snapshot-damaged", "intact"]
        .iter()
        .map(|name| {
            NewAccount::active(name, EncryptionMode::ServerKey)
                .unwrap()
                .0
        })
        .collect();
    let mut ids: Vec<_> = drafts.iter().map(|a| a.id).collect();
    ids.sort();
    for (draft, id) in drafts.iter_mut().zip(ids) {
        draft.id = id;
    }
    let mut accounts = Vec::new();
    for (i, draft) in drafts.into_iter().enumerate() {
        let account = server.add_account(NewAccount(draft)).await.unwrap().account;
        let live = place.path(&format!("live-{}", account.username));
        small_account(&live, 10 * i as u64);
        let source = FsAccount::new(&live);
        let mut snapshots = Vec::new();
        for _ in 0..2 {
            let report = server
                .backup(BackupJob::new(&account, &source, "main"))
                .await
                .unwrap();
            snapshots.push(report.snapshot);
        }
        accounts.push((account, live, snapshots));
    }

    let record_damaged = &accounts[0].0;
    damage_object(&url, &format!("accounts/{}/account", record_damaged.id)).await;
    let (snapshot_damaged, _, damaged_snapshots) = &accounts[1];
    let bad_snapshot = damaged_snapshots[0].id;
    let snapshot_objects = account_objects(&url, snapshot_damaged.id, "snapshots").await;
    let bad_object = format!("accounts/{}/snapshots/{bad_snapshot}", snapshot_damaged.id);
    assert!(
        snapshot_objects.contains(&bad_object),
        "{snapshot_objects:?}"
    );
    damage_object(&url, &bad_object).await;

    let recovered = new_server(place, &vault).await;
    let report = recovered
        .rebuild_catalog(&Destination::new("main", &url).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (report.accounts, report.snapshots),
        (2, 3),
        "everything else is recovered: {report:?}"
    );
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    let record_problem = report
        .problems
        .iter()
        .find(|p| p.account == record_damaged.id.to_string())
        .unwrap_or_else(|| panic!("the damaged record is named: {:?}", report.problems));
    assert_eq!(record_problem.snapshot, None);
    assert!(!record_problem.reason.is_empty());
    let snapshot_problem = report
        .problems
        .iter()
        .find(|p| p.account == snapshot_damaged.id.to_string())
        .unwrap_or_else(|| panic!("the damaged snapshot is named: {:?}", report.problems));
    assert_eq!(snapshot_problem.snapshot, Some(bad_snapshot.to_string()));

    let usernames: Vec<String> = recovered
        .accounts()
        .await
        .unwrap()
        .iter()
        .map(|a| a.username.to_string())
        .collect();
    assert_eq!(usernames, vec!["intact", "snapshot-damaged"]);
    for (account, live, snapshots) in &accounts[1..] {
        let back = recovered.account(&account.id.to_string()).await.unwrap();
        let rows: Vec<SnapshotId> = recovered
            .snapshots(&back)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let expected: Vec<SnapshotId> = snapshots
            .iter()
            .map(|s| s.id)
            .filter(|id| *id != bad_snapshot)
            .collect();
        assert_eq!(rows, expected);
        for row in recovered.snapshots(&back).await.unwrap() {
            let target = place.path(&format!("restored-{}-{}", back.username, row.id));
            restores_to(&recovered, &back, &row, &target, None, live).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_goes_past_damage_locally() {
    let place = Place::local();
    rebuild_goes_past_damage(&place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs S3 and PostgreSQL: run scripts/test.sh"]
async fn rebuild_goes_past_damage_on_servers() {
    let place = Place::servers();
    rebuild_goes_past_damage(&place).await;
    place.clean_up().await;
}

// ---------------------------------------------------------------------------------------
// 4. Read paths never write
// ---------------------------------------------------------------------------------------

/// Two accounts (owner key, server key) backed up twice each to a `file://` destination.
struct Written {
    vault: Arc<MasterKeyVault>,
    catalog: Arc<MemoryCatalog>,
    server: Server,
    dest: PathBuf,
    /// Account, owner key, live layout, snapshots.
    accounts: Vec<(Account, Option<OwnerKey>, PathBuf, Vec<Snapshot>)>,
}

async fn written(dir: &Path) -> Written {
    let vault = new_vault();
    let catalog = Arc::new(MemoryCatalog::default());
    let server =
        Server::builder(catalog.clone(), vault.clone(), Arc::new(UrlResolver::new())).build();
    let dest = dir.join("dest");
    server
        .add_destination("main", &file_url(&dest), None, false)
        .await
        .unwrap();
    let mut accounts = Vec::new();
    for (i, mode) in [EncryptionMode::OwnerKey, EncryptionMode::ServerKey]
        .into_iter()
        .enumerate()
    {
        let added = server
            .add_account(NewAccount::active(&format!("user{i}"), mode).unwrap())
            .await
            .unwrap();
        let live = dir.join(format!("live{i}"));
        small_account(&live, 40 + i as u64);
        let source = FsAccount::new(&live);
        let mut snapshots = Vec::new();
        for _ in 0..2 {
            snapshots.push(
                server
                    .backup(BackupJob::new(&added.account, &source, "main"))
                    .await
                    .unwrap()
                    .snapshot,
            );
        }
        accounts.push((added.account, added.owner_key, live, snapshots));
    }
    Written {
        vault,
        catalog,
        server,
        dest,
        accounts,
    }
}

/// Every read path through `server`, for every account of `w`: listings, restores, dry
/// runs, verification with and without reading the data.
async fn read_through(server: &Server, w: &Written, scratch: &Path) {
    for (account, key, live, snapshots) in &w.accounts {
        let account = server.account(&account.id.to_string()).await.unwrap();
        let rows = server.snapshots(&account).await.unwrap();
        let ids: Vec<SnapshotId> = rows.iter().map(|s| s.id).collect();
        let expected: Vec<SnapshotId> = snapshots.iter().map(|s| s.id).collect();
        assert_eq!(ids, expected);
        for row in &rows {
            let target = scratch.join(format!("restore-{}", row.id));
            restores_to(server, &account, row, &target, key.as_ref(), live).await;

            let target = scratch.join(format!("dry-{}", row.id));
            let fs = FsAccount::new(&target);
            let mut request = RestoreRequest::whole(row, &fs);
            request.owner_key = server_support::same_key(key.as_ref());
            request.dry_run = true;
            let report = server.restore(&account, request).await.unwrap();
            assert_eq!(report.totals(), row.totals(), "a dry run counts everything");
            assert!(!target.exists(), "a dry run writes nothing");
        }
        for read_data in [false, true] {
            let request = VerifyRequest {
                read_data,
                owner_key: server_support::same_key(key.as_ref()),
                ..Default::default()
            };
            let reports = server.verify(&account, &request).await.unwrap();
            assert_eq!(reports.len(), 1);
            let report = &reports[0].1;
            assert_eq!(report.problems, vec![], "read_data {read_data}");
            assert_eq!(report.snapshots, rows.len() as u64);
            if read_data {
                assert!(report.bytes_read > 0);
                assert!(report.blobs_authenticated > 0);
            }
        }
    }
}

/// Servers over empty catalogs that know the destination at `url` only by a rebuild
/// (added read-only first, or found by the rebuild), each read through; and one more
/// rebuild into an empty catalog.
async fn read_only_servers_read(w: &Written, url: &str, scratch: &Path) {
    let fresh = || {
        Server::builder(
            Arc::new(MemoryCatalog::default()),
            w.vault.clone(),
            Arc::new(UrlResolver::new()),
        )
        .build()
    };
    let added = fresh();
    let destination = added.add_destination("ro", url, None, true).await.unwrap();
    assert!(destination.read_only);
    let found = fresh();
    let mut servers = Vec::new();
    for (server, destination) in [
        (added, destination),
        (found, Destination::new("found", url).unwrap()),
    ] {
        let report = server.rebuild_catalog(&destination).await.unwrap();
        assert_eq!(report.problems, vec![]);
        assert_eq!((report.accounts, report.snapshots), (2, 4));
        assert!(
            server
                .destination(&destination.name)
                .await
                .unwrap()
                .read_only
        );
        servers.push(server);
    }
    for (i, server) in servers.iter().enumerate() {
        read_through(server, w, &scratch.join(format!("server{i}"))).await;
    }
    let report = fresh()
        .rebuild_catalog(&Destination::new("again", url).unwrap())
        .await
        .unwrap();
    assert_eq!((report.accounts, report.snapshots), (2, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_paths_leave_the_destination_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let w = written(dir.path()).await;
    let before = tree_state(&w.dest);
    // The server that wrote it (its destination writable) ...
    read_through(&w.server, &w, &dir.path().join("writer")).await;
    assert_unchanged(&w.dest, &before, "read through the server that wrote it");
    // ... and servers that know it from a rebuild only.
    read_only_servers_read(&w, &file_url(&w.dest), &dir.path().join("readers")).await;
    assert_unchanged(
        &w.dest,
        &before,
        "read through servers that rebuilt their catalogs from it",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_paths_of_a_new_server_leave_a_writable_destination_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let w = written(dir.path()).await;
    let before = tree_state(&w.dest);
    // Another server over the same catalog (another process, or after a restart), where
    // the destination is writable: its first use of the destination is a read.
    read_through(&writable_view(&w), &w, &dir.path().join("restarted")).await;
    assert_unchanged(
        &w.dest,
        &before,
        "read through a new server over the same catalog",
    );
    // A rebuild from the destination the catalog knows (writable) reads it only.
    let server = writable_view(&w);
    let main = server.destination("main").await.unwrap();
    assert!(!main.read_only);
    let report = server.rebuild_catalog(&main).await.unwrap();
    assert_eq!(report.problems, vec![]);
    assert_eq!((report.accounts, report.snapshots), (2, 4));
    assert_unchanged(&w.dest, &before, "a rebuild from a known destination");
}

fn assert_unchanged(
    dir: &Path,
    before: &std::collections::BTreeMap<String, server_support::EntryState>,
    when: &str,
) {
    let after = tree_state(dir);
    for (path, state) in before {
        assert_eq!(after.get(path), Some(state), "{when}: {path:?} changed");
    }
    assert_eq!(&after, before, "{when}");
}

/// A new server over the catalog of `w`, where the destination is writable.
fn writable_view(w: &Written) -> Server {
    Server::builder(
        w.catalog.clone(),
        w.vault.clone(),
        Arc::new(UrlResolver::new()),
    )
    .build()
}

/// A read-only bind mount, unmounted when dropped.
struct ReadOnlyMount(PathBuf);

impl ReadOnlyMount {
    fn new(source: &Path, at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (s, a) = (source.to_str().unwrap(), at.to_str().unwrap());
        run(&["mount", "--bind", s, a]);
        let mount = Self(at.to_path_buf());
        run(&["mount", "-o", "remount,bind,ro", a]);
        mount
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (a file still open): detach it now, it goes when the last user does.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn read_paths_work_on_a_read_only_mount() {
    assert!(
        running_as_root(),
        "this test needs root (a read-only bind mount): run scripts/test.sh as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let w = written(dir.path()).await;
    let before = tree_state(&w.dest);
    let ro = dir.path().join("ro");
    {
        let _mount = ReadOnlyMount::new(&w.dest, &ro);
        let err = std::fs::write(ro.join("probe"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ReadOnlyFilesystem);
        read_only_servers_read(&w, &file_url(&ro), &dir.path().join("readers")).await;
    }
    assert_eq!(tree_state(&w.dest), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn read_paths_work_when_a_writable_destination_turns_read_only() {
    assert!(
        running_as_root(),
        "this test needs root (a read-only bind mount): run scripts/test.sh as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let w = written(dir.path()).await;
    let ro = dir.path().join("ro");
    let _mount = ReadOnlyMount::new(&w.dest, &ro);
    // The catalog's writable destination, now on the read-only mount (its storage turned
    // read-only): a new server still restores and verifies from it.
    let mut moved = w.server.destination("main").await.unwrap();
    assert!(!moved.read_only);
    moved.url = file_url(&ro);
    w.catalog.put_destination(&moved).await.unwrap();
    read_through(&writable_view(&w), &w, &dir.path().join("moved")).await;
    let report = writable_view(&w).rebuild_catalog(&moved).await.unwrap();
    assert_eq!(report.problems, vec![]);
    assert_eq!((report.accounts, report.snapshots), (2, 4));
}

/// Whether this process runs as root (from `/proc/self/status`, so no dependency is needed).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------
// 5. A key reset leaves no copy of the old envelope
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reset_leaves_no_copy_of_the_old_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("state");
    let dest = dir.path().join("dest");
    let live = dir.path().join("live");
    let (state, account) = state_backed_up_twice(dir.path(), "shred", 3).await;
    let server = &state.server;
    let source = FsAccount::new(&live);
    assert!(
        !files_below(&home.join("statcache")).is_empty(),
        "the backups keep a stat cache"
    );
    let old = server
        .catalog()
        .get_key_envelope(account.id)
        .await
        .unwrap()
        .expect("an envelope");
    let key_files = files_below(&dest.join(format!("accounts/{}/keys", account.id)));
    assert!(!key_files.is_empty());
    let old_key_files: Vec<Vec<u8>> = key_files
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let catalog_files = || -> Vec<PathBuf> {
        files_below(&home)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("catalog.db"))
            })
            .collect()
    };
    // Every file of the state directory (catalog.db and its -wal and -shm, the stat
    // caches, master.key) and of the destination.
    let every_file = || -> Vec<PathBuf> {
        let mut all = files_below(&home);
        all.extend(files_below(&dest));
        all
    };
    // The scan finds the envelope where it is before the reset.
    assert!(!files_holding(&catalog_files(), &old).is_empty());
    assert!(!files_holding(&files_below(&dest), &old).is_empty());

    server.reset_key(&account).await.unwrap();
    let new = server
        .catalog()
        .get_key_envelope(account.id)
        .await
        .unwrap()
        .expect("new keys");
    assert_ne!(new, old);
    let no_trace = |when: &str| {
        let files = every_file();
        assert!(files.len() > 2, "{files:?}");
        assert_eq!(
            files_holding(&files, &old),
            Vec::<PathBuf>::new(),
            "{when}: the old envelope is gone"
        );
        for bytes in &old_key_files {
            assert_eq!(
                files_holding(&files, bytes),
                Vec::<PathBuf>::new(),
                "{when}: the destination's old key file is gone"
            );
        }
    };
    no_trace("after the reset");
    assert!(
        !files_holding(&catalog_files(), &new).is_empty(),
        "the same scan finds the new envelope in the catalog"
    );

    // The account works with its new keys.
    let report = server
        .backup(BackupJob::new(&account, &source, "main"))
        .await
        .unwrap();
    restores_to(
        server,
        &account,
        &report.snapshot,
        &dir.path().join("restored"),
        None,
        &live,
    )
    .await;
    no_trace("after a new backup");
    assert!(!files_holding(&files_below(&dest), &new).is_empty());
}

// ---------------------------------------------------------------------------------------
// backupctl: bad input
// ---------------------------------------------------------------------------------------

struct Ctl {
    bin: PathBuf,
    home: PathBuf,
}

impl Ctl {
    fn new(dir: &Path) -> Self {
        Self {
            bin: backupctl_path(),
            home: dir.join("state"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .env_remove("BACKUPCTL_CATALOG")
            .env_remove("BACKUPCTL_HOME")
            .arg("--home")
            .arg(&self.home)
            .args(args);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("backupctl runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "backupctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Fails with `code`, printing exactly one line on stderr, starting `error:`.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).expect("UTF-8 errors");
        assert_eq!(
            out.status.code(),
            Some(code),
            "backupctl {args:?}: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "backupctl {args:?}: one line on stderr: {stderr:?}"
        );
        assert!(stderr.starts_with("error: "), "{stderr:?}");
        assert!(stderr.ends_with('\n'), "{stderr:?}");
        stderr
    }

    /// `init` and a `file://` destination `main`.
    fn set_up(dir: &Path) -> Self {
        let ctl = Self::new(dir);
        ctl.ok(&["init"]);
        let url = file_url(&dir.join("dest"));
        ctl.ok(&["destination", "add", "main", &url]);
        ctl
    }
}

#[test]
fn cli_init_refuses_a_catalog_without_its_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl::set_up(dir.path());
    ctl.ok(&["account", "add", "alice"]);
    std::fs::remove_file(ctl.home.join("master.key")).unwrap();
    let err = ctl.fails(&["init"], 1);
    assert!(
        err.contains("master-key import"),
        "says how to import: {err}"
    );
    assert!(
        !ctl.home.join("master.key").exists(),
        "no new master key beside the old envelopes"
    );
}

#[test]
fn cli_account_add_twice_names_the_existing_account() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl::set_up(dir.path());
    let out = ctl.ok(&["account", "add", "alice"]);
    let id = out
        .split("id ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no id in {out:?}"))
        .trim()
        .to_owned();
    assert_eq!(id.len(), 36, "{out}");
    let err = ctl.fails(&["account", "add", "alice"], 1);
    assert!(
        err.contains(&id),
        "names the existing account's id {id}: {err}"
    );
}

#[test]
fn cli_destination_add_refuses_urls_that_are_not_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl::new(dir.path());
    ctl.ok(&["init"]);
    for url in ["", "s3:bucket/p", "relative/path"] {
        ctl.fails(&["destination", "add", "x", url], 2);
    }
    assert_eq!(ctl.ok(&["destination", "list"]), "", "nothing was added");
}

/// `alice` and `bob` with owner keys (in `alice.key` and `bob.key`), alice backed up once.
fn owner_key_accounts(dir: &Path) -> (Ctl, PathBuf, PathBuf, String) {
    let ctl = Ctl::set_up(dir);
    let live = dir.join("live");
    small_account(&live, 5);
    let mut keys = Vec::new();
    for user in ["alice", "bob"] {
        let key = dir.join(format!("{user}.key"));
        let k = key.display().to_string();
        ctl.ok(&[
            "account",
            "add",
            user,
            "--encryption",
            "remote",
            "--key-out",
            &k,
        ]);
        keys.push(key);
    }
    let l = live.display().to_string();
    ctl.ok(&["backup", "alice", "--layout", &l, "--destination", "main"]);
    let snapshots = ctl.ok(&["snapshots", "alice"]);
    let id = snapshots
        .split('\t')
        .next()
        .expect("a snapshot line")
        .to_owned();
    let bob = keys.pop().unwrap();
    let alice = keys.pop().unwrap();
    (ctl, alice, bob, id)
}

#[test]
fn cli_a_wrong_key_fails_verify_like_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, alice_key, bob_key, id) = owner_key_accounts(dir.path());
    let (a, b) = (
        alice_key.display().to_string(),
        bob_key.display().to_string(),
    );
    let target = dir.path().join("target").display().to_string();
    let verify = ctl.fails(&["verify", "alice", "--key-file", &b], 1);
    let restore = ctl.fails(
        &[
            "restore",
            "alice",
            "--target",
            &target,
            "--snapshot",
            &id,
            "--key-file",
            &b,
        ],
        1,
    );
    assert!(verify.contains("key"), "{verify}");
    assert!(restore.contains("key"), "{restore}");
    // The right key passes both.
    let out = ctl.ok(&["verify", "alice", "--read-data", "--key-file", &a]);
    assert!(out.contains("ok"), "{out}");
    ctl.ok(&[
        "restore",
        "alice",
        "--target",
        &target,
        "--snapshot",
        &id,
        "--key-file",
        &a,
    ]);
}

#[test]
fn cli_a_huge_key_file_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, _, _, id) = owner_key_accounts(dir.path());
    let huge = dir.path().join("huge.key");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let h = huge.display().to_string();
    let target = dir.path().join("target").display().to_string();
    for args in [
        vec!["verify", "alice", "--key-file", &h],
        vec![
            "restore",
            "alice",
            "--target",
            &target,
            "--snapshot",
            &id,
            "--key-file",
            &h,
        ],
    ] {
        let started = std::time::Instant::now();
        let err = ctl.fails(&args, 2);
        assert!(err.contains("key"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "refused without reading"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl::set_up(dir.path());
    ctl.ok(&["account", "add", "alice"]);
    let live = dir.path().join("live");
    small_account(&live, 9);
    let l = live.display().to_string();
    ctl.ok(&["backup", "alice", "--layout", &l, "--destination", "main"]);
    {
        // Many catalog rows (copies of the real one), so the listing is far larger than a
        // pipe holds.
        let state = StateDir::open(&ctl.home, None).await.unwrap();
        let account = state.server.account("alice").await.unwrap();
        let row = state.server.snapshots(&account).await.unwrap().remove(0);
        for _ in 0..2000 {
            let mut copy = row.clone();
            copy.id = SnapshotId::new();
            state.server.catalog().put_snapshot(&copy).await.unwrap();
        }
    }
    let mut child = ctl
        .command(&["snapshots", "alice"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr, "", "nothing on stderr");
}

#[test]
fn cli_settings_refuse_backups_with_exit_code_4() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl::set_up(dir.path());
    let live = dir.path().join("live");
    small_account(&live, 11);
    let l = live.display().to_string();
    let backup = ["backup", "alice", "--layout", &l, "--destination", "main"];
    ctl.ok(&["account", "add", "alice"]);
    ctl.ok(&["account", "set", "alice", "--quota", "1000+0"]);
    let err = ctl.fails(&backup, 4);
    assert!(err.contains("quota"), "{err}");
    ctl.ok(&[
        "account", "set", "alice", "--quota", "none", "--status", "inactive",
    ]);
    let err = ctl.fails(&backup, 4);
    assert!(err.contains("status"), "{err}");
    ctl.ok(&["account", "set", "alice", "--status", "active"]);
    ctl.ok(&backup);
}
