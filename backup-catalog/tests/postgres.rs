//! PgCatalog against a real PostgreSQL: the conformance suite, then what goes beyond it
//! (URLs, migrations, concurrency, clashes, usage and orphans, corrupt rows), and the task
//! queue's conformance suite, with claimers sharing a pool or on pools of their own.
//!
//! Every test is ignored by plain `cargo test`: `scripts/test.sh` starts a private server,
//! sets `BACKUP_TEST_PG_URL` and runs them with `--include-ignored` (without the variable
//! they fail). Each test works in a schema of its own.

mod common;

use std::sync::Arc;

use backup_catalog::{PgCatalog, conformance};
use backup_core::ErrorKind;
use backup_core::model::{
    Account, AccountId, Destination, Email, NewTask, Organization, TaskFilter, TaskKind,
};
use backup_core::ports::{
    AccountStore, DestinationStore, JobQueue, KeyStore, OrganizationStore, SnapshotStore, TagStore,
};
use chrono::Utc;
use common::{PgSchema, check_orphans, check_usage, pg_catalog, snapshot};
use sqlx::postgres::PgPoolOptions;

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn postgres_conforms() {
    let (catalog, schema) = pg_catalog().await;
    conformance::empty(&catalog).await;
    conformance::run(&catalog).await;
    // Again: the suite cleans up after itself and passes on a catalog that holds data.
    conformance::run(&catalog).await;
    catalog.close().await;
    schema.drop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn postgres_conforms_through_open_by_url() {
    let schema = PgSchema::create().await;
    for url in [
        schema.url.clone(),
        schema.url.replacen("postgres://", "postgresql://", 1),
    ] {
        let catalog = backup_catalog::open(&url).await.unwrap();
        conformance::run(catalog.as_ref()).await;
    }
    schema.drop().await;
}

/// Ordering is by bytes even where the database's collation would say otherwise (an ICU or
/// glibc locale puts "a-b" before "ab" and "B" after "a"): the name columns are `COLLATE "C"`.
#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn names_sort_by_bytes() {
    let (c, schema) = pg_catalog().await;
    let names = ["B", "a", "a-b", "aB", "ab", "é", "z"];
    for name in names.iter().rev() {
        c.put_tag(&backup_core::model::Tag::new(name, None).unwrap())
            .await
            .unwrap();
    }
    let listed: Vec<String> = c
        .list_tags()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    c.close().await;
    schema.drop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn data_persists_and_migrations_are_idempotent() {
    let schema = PgSchema::create().await;
    let account = Account::new("alice").unwrap();
    let snaps = [snapshot(account.id, 60, 1), snapshot(account.id, 5, 2)];
    {
        let c = schema.catalog().await;
        c.put_account(&account).await.unwrap();
        for s in &snaps {
            c.put_snapshot(s).await.unwrap();
        }
        c.put_key_envelope(account.id, b"\x00sealed\xff")
            .await
            .unwrap();
        c.close().await;
    }
    // Two catalogs at once (the migrator locks), then a third through `connect_with`.
    let (first, second) = tokio::join!(schema.catalog(), schema.catalog());
    let third = PgCatalog::connect_with(schema.options()).await.unwrap();
    for c in [&first, &second, &third] {
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(c.pool())
            .await
            .unwrap();
        assert_eq!(applied, 4);
        assert_eq!(c.list_snapshots(account.id).await.unwrap(), snaps.to_vec());
        assert_eq!(
            c.get_key_envelope(account.id).await.unwrap(),
            Some(b"\x00sealed\xff".to_vec())
        );
    }
    for c in [first, second, third] {
        c.close().await;
    }
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn concurrent_puts_all_land() {
    const TASKS: usize = 8;
    const EACH: usize = 25;
    let schema = PgSchema::create().await;
    let catalog = Arc::new(schema.catalog().await);
    let other = Arc::new(schema.catalog().await); // a second pool, as another process
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
                catalog
                    .put_snapshot(&snapshot(account.id, 1, 3))
                    .await
                    .unwrap();
                catalog
                    .put_key_envelope(account.id, account.id.as_bytes())
                    .await
                    .unwrap();
                if i % 5 == 0 {
                    let gone = Account::new(&format!("gone-{t}-{i}")).unwrap();
                    catalog.put_account(&gone).await.unwrap();
                    catalog
                        .put_snapshot(&snapshot(gone.id, 1, 3))
                        .await
                        .unwrap();
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
    assert_eq!(catalog.list_accounts().await.unwrap().len(), TASKS * EACH);
    for id in &ids {
        assert_eq!(catalog.list_snapshots(*id).await.unwrap().len(), 1);
    }
    let usage = catalog.usage_per_account().await.unwrap();
    assert_eq!(usage.len(), TASKS * EACH, "deleted accounts leave no usage");
    assert!(
        usage
            .iter()
            .all(|u| (u.snapshots, u.bytes_stored) == (1, 3))
    );
    catalog.close().await;
    other.close().await;
    schema.drop().await;
}

/// Racing upserts of one id: every one succeeds and one value remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn racing_upserts_of_one_row() {
    let (catalog, schema) = pg_catalog().await;
    let catalog = Arc::new(catalog);
    let base = Account::new("racer").unwrap();
    let snap = snapshot(base.id, 1, 1);
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (catalog, mut account, mut snap) = (catalog.clone(), base.clone(), snap.clone());
        tasks.push(tokio::spawn(async move {
            account.email = Some(Email::new(format!("r{t}@example.com")).unwrap());
            snap.stats.bytes_stored = t;
            catalog.put_account(&account).await.unwrap();
            catalog.put_snapshot(&snap).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(catalog.list_accounts().await.unwrap().len(), 1);
    let usage = catalog.usage_per_account().await.unwrap();
    let stored = catalog.get_snapshot(snap.id).await.unwrap().unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].snapshots, 1);
    assert_eq!(usage[0].bytes_stored, stored.stats.bytes_stored);
    catalog.close().await;
    schema.drop().await;
}

/// Racing inserts of one unique name: exactly one wins, the others are `AlreadyExists`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn racing_clashes_have_one_winner() {
    let (catalog, schema) = pg_catalog().await;
    let catalog = Arc::new(catalog);
    let mut tasks = Vec::new();
    for t in 0..12 {
        let catalog = catalog.clone();
        tasks.push(tokio::spawn(async move {
            let org = Organization::new("acme", &format!("Acme {t}")).unwrap();
            catalog.put_organization(&org).await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
        }
    }
    assert_eq!(won, 1);
    let err = catalog
        .put_destination(&Destination::new("offsite", "s3://a").unwrap())
        .await
        .and(
            catalog
                .put_destination(&Destination::new("offsite", "s3://b").unwrap())
                .await,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "destination name \"offsite\" already exists"
    );
    catalog.close().await;
    schema.drop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn usage_follows_every_write() {
    let (catalog, schema) = pg_catalog().await;
    check_usage(&catalog).await;
    catalog.close().await;
    schema.drop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn orphans_are_snapshots_without_an_account() {
    let (catalog, schema) = pg_catalog().await;
    check_orphans(&catalog).await;
    catalog.close().await;
    schema.drop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn a_corrupt_row_is_an_error_naming_it() {
    let (catalog, schema) = pg_catalog().await;
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
    catalog.close().await;
    schema.drop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn an_unknown_snapshot_status_is_an_error_naming_the_row() {
    let (catalog, schema) = pg_catalog().await;
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
    catalog.close().await;
    schema.drop().await;
}

/// A database that is not there is a database error, not a hang or a panic.
#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn missing_database_is_an_error() {
    let url = common::pg_url();
    let (base, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let Some((server, _database)) = base.rsplit_once('/') else {
        panic!("{url} names no database");
    };
    let wrong = format!("{server}/no_such_database_here?{query}");
    let started = std::time::Instant::now();
    let err = PgCatalog::connect(&wrong).await.unwrap_err();
    assert!(
        matches!(err, backup_catalog::Error::Database { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no_such_database_here"), "{err}");
    assert!(
        started.elapsed().as_secs() < 5,
        "failed fast: {:?}",
        started.elapsed()
    );
}

/// The queue's suite; each check gets the same catalog with the queue's tables emptied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn postgres_queue_conforms() {
    let (catalog, schema) = pg_catalog().await;
    conformance::queue::run(|| {
        let catalog = catalog.clone();
        async move {
            sqlx::query("TRUNCATE tasks, task_attempts, destination_health, job_runs")
                .execute(catalog.pool())
                .await
                .unwrap();
            Arc::new(catalog) as Arc<dyn JobQueue>
        }
    })
    .await;
    catalog.close().await;
    schema.drop().await;
}

/// Claimers on pools of their own (two connections each) in one schema, as workers on
/// separate machines would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn postgres_claimers_on_separate_pools() {
    let schema = PgSchema::create().await;
    let mut catalogs = Vec::new();
    for _ in 0..8 {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(schema.options())
            .await
            .unwrap();
        catalogs.push(PgCatalog::from_pool(pool).await.unwrap());
    }
    let queues: Vec<Arc<dyn JobQueue>> = catalogs
        .iter()
        .map(|c| Arc::new(c.clone()) as Arc<dyn JobQueue>)
        .collect();
    conformance::queue::concurrent_claims(&queues).await;
    for c in catalogs {
        c.close().await;
    }
    schema.drop().await;
}

/// The schema itself refuses a second running task of one account.
#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn one_running_task_per_account_is_a_constraint() {
    let (catalog, schema) = pg_catalog().await;
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
    catalog.close().await;
    schema.drop().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn open_with_queue_shares_one_backend() {
    let schema = PgSchema::create().await;
    let (catalog, queue) = backup_catalog::open_with_queue(&schema.url).await.unwrap();
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
    let other = schema.catalog().await;
    assert_eq!(other.list_accounts().await.unwrap(), vec![account]);
    let tasks = other.list_tasks(&TaskFilter::default()).await.unwrap();
    assert_eq!(tasks.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    other.close().await;
    drop((catalog, queue));
    schema.drop().await;
}
