//! SqliteCatalog beyond the conventions: files, migrations, concurrency, settings, errors,
//! usage and orphans, `open` by URL, and the task queue's conformance suite.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use backup_catalog::{SqliteCatalog, conformance};
use backup_core::ErrorKind;
use backup_core::model::{
    Account, AccountId, BackupStats, Destination, DestinationId, NewTask, Organization, Snapshot,
    SnapshotId, SnapshotKind, SnapshotStatus, TaskFilter, TaskKind,
};
use backup_core::ports::{
    AccountStore, DestinationStore, JobQueue, KeyStore, OrganizationStore, SnapshotStore,
};
use chrono::{TimeDelta, Utc};

fn snapshot(account: &Account, minutes_ago: i64) -> Snapshot {
    Snapshot {
        id: SnapshotId::new(),
        account: account.id,
        job: None,
        destination: DestinationId::new(),
        created: Utc::now() - TimeDelta::minutes(minutes_ago),
        kind: SnapshotKind::Scheduled,
        status: SnapshotStatus::Complete,
        items: Vec::new(),
        encrypted: false,
        locked: false,
        lock_until: None,
        identity: None,
        task: None,
        stats: BackupStats::default(),
    }
}

async fn migrations_applied(catalog: &SqliteCatalog) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(catalog.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn data_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let account = Account::new("alice").unwrap();
    let org = Organization::new("acme", "Acme").unwrap();
    let dest = Destination::new("local", "file:///srv/backups").unwrap();
    let snaps = [snapshot(&account, 60), snapshot(&account, 5)];
    {
        let catalog = SqliteCatalog::open(&path).await.unwrap();
        catalog.put_account(&account).await.unwrap();
        catalog.put_organization(&org).await.unwrap();
        catalog.put_destination(&dest).await.unwrap();
        for s in &snaps {
            catalog.put_snapshot(s).await.unwrap();
        }
        catalog
            .put_key_envelope(account.id, b"sealed")
            .await
            .unwrap();
        catalog.close().await;
    }
    let catalog = SqliteCatalog::open(&path).await.unwrap();
    assert_eq!(
        catalog.get_account(account.id).await.unwrap(),
        Some(account.clone())
    );
    assert_eq!(catalog.find_organization("acme").await.unwrap(), Some(org));
    assert_eq!(catalog.find_destination("local").await.unwrap(), Some(dest));
    assert_eq!(
        catalog.list_snapshots(account.id).await.unwrap(),
        snaps.to_vec()
    );
    assert_eq!(
        catalog.get_key_envelope(account.id).await.unwrap(),
        Some(b"sealed".to_vec())
    );
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let first = SqliteCatalog::open(&path).await.unwrap();
    let account = Account::new("bob").unwrap();
    first.put_account(&account).await.unwrap();
    // A second catalog on the same file while the first is open, then a third after both.
    let second = SqliteCatalog::open(&path).await.unwrap();
    assert_eq!(migrations_applied(&first).await, 4);
    assert_eq!(migrations_applied(&second).await, 4);
    assert_eq!(second.list_accounts().await.unwrap(), vec![account.clone()]);
    first.close().await;
    second.close().await;
    let third = SqliteCatalog::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(migrations_applied(&third).await, 4);
    assert_eq!(third.list_accounts().await.unwrap(), vec![account]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_all_land() {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let catalog = Arc::new(SqliteCatalog::open(&path).await.unwrap());
    // A second pool on the same file: writers also contend across connections it does not
    // share, as two processes would.
    let other = Arc::new(SqliteCatalog::open(&path).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let catalog = if t % 2 == 0 {
            catalog.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                let account = Account::new(&format!("user-{t}-{i}")).unwrap();
                catalog.put_account(&account).await.unwrap();
                catalog.put_snapshot(&snapshot(&account, 1)).await.unwrap();
                catalog
                    .put_key_envelope(account.id, account.id.as_bytes())
                    .await
                    .unwrap();
                if i % 5 == 0 {
                    // Transactions contend too.
                    let gone = Account::new(&format!("gone-{t}-{i}")).unwrap();
                    catalog.put_account(&gone).await.unwrap();
                    assert!(catalog.delete_account(gone.id).await.unwrap());
                }
                mine.push(account.id);
            }
            mine
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    let accounts = catalog.list_accounts().await.unwrap();
    assert_eq!(accounts.len(), TASKS * EACH);
    for id in ids {
        assert_eq!(catalog.list_snapshots(id).await.unwrap().len(), 1);
        assert_eq!(
            catalog.get_key_envelope(id).await.unwrap(),
            Some(id.as_bytes().to_vec())
        );
    }
}

#[tokio::test]
async fn file_catalog_connection_settings() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteCatalog::open(dir.path().join("catalog.db"))
        .await
        .unwrap();
    let pool = catalog.pool();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(busy, backup_catalog::BUSY_TIMEOUT.as_millis() as i64);
    let secure: i64 = sqlx::query_scalar("PRAGMA secure_delete")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(secure, 1, "deleted rows are overwritten");
    let temp: i64 = sqlx::query_scalar("PRAGMA temp_store")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(temp, 2, "temporary files stay in memory");
}

#[tokio::test]
async fn in_memory_catalogs_are_private_and_clones_share() {
    let a = SqliteCatalog::in_memory().await.unwrap();
    let b = SqliteCatalog::in_memory().await.unwrap();
    let account = Account::new("carol").unwrap();
    a.put_account(&account).await.unwrap();
    assert!(b.list_accounts().await.unwrap().is_empty());
    let clone = a.clone();
    assert_eq!(clone.list_accounts().await.unwrap(), vec![account]);
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_naming_it() {
    let catalog = SqliteCatalog::in_memory().await.unwrap();
    let account = Account::new("dave").unwrap();
    catalog.put_account(&account).await.unwrap();
    sqlx::query("UPDATE accounts SET data = '{\"not\": \"an account\"}'")
        .execute(catalog.pool())
        .await
        .unwrap();
    let err = catalog.get_account(account.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains(&account.id.to_string()), "{source}");
    assert!(catalog.list_accounts().await.is_err());
}

#[tokio::test]
async fn an_unknown_snapshot_status_is_an_error_naming_the_row() {
    let catalog = SqliteCatalog::in_memory().await.unwrap();
    let pool = catalog.pool().clone();
    common::check_unknown_status(&catalog, |data, id| async move {
        sqlx::query("UPDATE snapshots SET data = $1 WHERE id = $2")
            .bind(data)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn bad_urls_and_paths_are_refused() {
    for url in ["postgres://localhost/catalog", "catalog.db", "sqlite://"] {
        let err = SqliteCatalog::connect(url).await.unwrap_err();
        assert!(
            matches!(err, backup_catalog::Error::InvalidUrl { .. }),
            "{url}: {err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteCatalog::open(dir.path().join("missing/dir/catalog.db"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            backup_catalog::Error::FileMode {
                action: "create",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("missing/dir/catalog.db"), "{err}");
    let core: backup_core::Error = err.into();
    assert_eq!(core.kind(), ErrorKind::Io);
    // Without creation (`mode=rw`), a missing file is SQLite's to report.
    let url = format!(
        "sqlite://{}?mode=rw",
        dir.path().join("absent.db").display()
    );
    let err = SqliteCatalog::connect(&url).await.unwrap_err();
    assert!(
        matches!(err, backup_catalog::Error::Database { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn clashes_name_the_value() {
    let catalog = SqliteCatalog::in_memory().await.unwrap();
    catalog
        .put_destination(&Destination::new("offsite", "s3://bucket").unwrap())
        .await
        .unwrap();
    let err = catalog
        .put_destination(&Destination::new("offsite", "s3://other").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        err.to_string(),
        "destination name \"offsite\" already exists"
    );
}

#[tokio::test]
async fn usage_follows_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = SqliteCatalog::open(dir.path().join("usage.db"))
        .await
        .unwrap();
    common::check_usage(&catalog).await;
    common::check_usage(&SqliteCatalog::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn orphans_are_snapshots_without_an_account() {
    common::check_orphans(&SqliteCatalog::in_memory().await.unwrap()).await;
}

#[tokio::test]
async fn open_picks_the_backend_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("by-url.db");
    let catalog = backup_catalog::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let account = Account::new("erin").unwrap();
    catalog.put_account(&account).await.unwrap();
    assert!(path.exists());
    let memory = backup_catalog::open("sqlite::memory:").await.unwrap();
    assert!(memory.list_accounts().await.unwrap().is_empty());
    for url in [
        "mysql://u@h/db",
        "catalog.db",
        "",
        "postgres:/x",
        "file:///tmp/catalog.db",
        "mysql://u:s3cret@h/db",
    ] {
        let err = backup_catalog::open(url).await.unwrap_err();
        assert!(
            matches!(err, backup_catalog::Error::InvalidUrl { .. }),
            "{url}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("sqlite://PATH") && text.contains("postgres://"),
            "{text}"
        );
        assert!(!text.contains("s3cret"), "{text}");
        let core: backup_core::Error = err.into();
        assert_eq!(core.kind(), ErrorKind::InvalidInput);
    }
}

/// Malformed PostgreSQL URLs are refused before any connection is tried.
#[tokio::test]
async fn bad_postgres_urls_are_refused() {
    for url in [
        "postgres://u:pw@host:notaport/db",
        "postgresql://h/db?sslmode=sometimes",
    ] {
        let err = backup_catalog::PgCatalog::connect(url).await.unwrap_err();
        assert!(
            matches!(err, backup_catalog::Error::InvalidUrl { .. }),
            "{url}: {err}"
        );
        assert!(!err.to_string().contains(":pw@"), "{err}");
    }
    let err = backup_catalog::PgCatalog::connect("sqlite::memory:")
        .await
        .unwrap_err();
    assert!(
        matches!(err, backup_catalog::Error::InvalidUrl { .. }),
        "{err}"
    );
}

fn queue_of(catalog: SqliteCatalog) -> Arc<dyn JobQueue> {
    Arc::new(catalog)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_conforms_in_memory() {
    conformance::queue::run(|| async { queue_of(SqliteCatalog::in_memory().await.unwrap()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_conforms_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let made = AtomicUsize::new(0);
    conformance::queue::run(|| {
        let n = made.fetch_add(1, Ordering::SeqCst);
        let path = dir.path().join(format!("queue-{n}.db"));
        async move { queue_of(SqliteCatalog::open(path).await.unwrap()) }
    })
    .await;
}

/// Claimers with pools of their own on one file, as processes of one machine would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_claims_from_separate_pools() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared-queue.db");
    let mut queues = Vec::new();
    for _ in 0..4 {
        queues.push(queue_of(SqliteCatalog::open(&path).await.unwrap()));
    }
    conformance::queue::concurrent_claims(&queues).await;
}

/// The schema itself refuses a second running task of one account.
#[tokio::test]
async fn one_running_task_per_account_is_a_constraint() {
    let catalog = SqliteCatalog::in_memory().await.unwrap();
    let account = AccountId::new();
    let task = |priority| NewTask {
        kind: TaskKind::Backup,
        account,
        username: "frank".into(),
        job: None,
        run: None,
        destination: None,
        priority,
        not_before: Utc::now(),
        max_attempts: 1,
        payload: serde_json::Value::Null,
    };
    catalog
        .enqueue(&[task(0), task(1)], Utc::now())
        .await
        .unwrap();
    let err = sqlx::query("UPDATE tasks SET state = 'running'")
        .execute(catalog.pool())
        .await
        .unwrap_err();
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{err}"
    );
}

#[tokio::test]
async fn open_with_queue_shares_one_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.db");
    let url = format!("sqlite://{}", path.display());
    let (catalog, queue) = backup_catalog::open_with_queue(&url).await.unwrap();
    let account = Account::new("grace").unwrap();
    catalog.put_account(&account).await.unwrap();
    let task = NewTask {
        kind: TaskKind::Verify,
        account: account.id,
        username: "grace".into(),
        job: None,
        run: None,
        destination: None,
        priority: 0,
        not_before: Utc::now(),
        max_attempts: 1,
        payload: serde_json::json!({}),
    };
    let ids = queue.enqueue(&[task], Utc::now()).await.unwrap();
    let reopened = SqliteCatalog::open(&path).await.unwrap();
    assert_eq!(reopened.list_accounts().await.unwrap(), vec![account]);
    let tasks = reopened.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.iter().map(|t| t.id).collect::<Vec<_>>(), ids);

    let (_, memory) = backup_catalog::open_with_queue("sqlite::memory:")
        .await
        .unwrap();
    assert!(
        memory
            .list_tasks(&TaskFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    for url in ["mysql://u:s3cret@h/db", "catalog.db"] {
        let err = backup_catalog::open_with_queue(url).await.unwrap_err();
        assert!(
            matches!(err, backup_catalog::Error::InvalidUrl { .. }),
            "{url}: {err}"
        );
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}

/// A task row whose columns were edited into nonsense is an error naming the row.
#[tokio::test]
async fn a_corrupt_task_row_is_an_error_naming_it() {
    let catalog = SqliteCatalog::in_memory().await.unwrap();
    let task = NewTask {
        kind: TaskKind::Backup,
        account: AccountId::new(),
        username: "heidi".into(),
        job: None,
        run: None,
        destination: None,
        priority: 0,
        not_before: Utc::now(),
        max_attempts: 1,
        payload: serde_json::Value::Null,
    };
    let id = catalog.enqueue(&[task], Utc::now()).await.unwrap()[0];
    sqlx::query("UPDATE tasks SET state = 'napping'")
        .execute(catalog.pool())
        .await
        .unwrap();
    let err = catalog.get_task(id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains(&id.to_string()), "{source}");
    assert!(source.contains("napping"), "{source}");
}
