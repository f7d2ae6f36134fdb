//! Shared by this crate's integration tests: a private PostgreSQL schema per test, and the
//! checks of the bulk and reporting methods both backends have.

#![allow(dead_code, unreachable_pub)] // each test file uses its own part

use std::str::FromStr;

use backup_catalog::{AccountUsage, PgCatalog, SqliteCatalog};
use backup_core::model::{
    Account, AccountId, BackupStats, DestinationId, Snapshot, SnapshotId, SnapshotKind,
    SnapshotStatus,
};
use backup_core::ports::Catalog;
use chrono::{TimeDelta, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// The variable `scripts/test.sh` sets to a server's URL.
pub const PG_URL_VAR: &str = "BACKUP_TEST_PG_URL";

/// The URL of the test server; a missing variable fails the test (it is ignored unless run
/// through the project's test script, which sets it).
pub fn pg_url() -> String {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{PG_URL_VAR} is not set: this test needs PostgreSQL; run scripts/test.sh, which \
             starts a private server and sets it"
        ),
    }
}

/// A fresh schema on the test server, for one test: the catalog's tables and migration
/// records live there, so tests run in parallel and again without seeing each other.
#[derive(Debug)]
pub struct PgSchema {
    admin: PgPool,
    /// The schema's name (`test_` and random hex).
    pub name: String,
    /// A URL whose connections use this schema (`options[search_path]=NAME`).
    pub url: String,
}

impl PgSchema {
    /// Creates the schema.
    pub async fn create() -> Self {
        let url = pg_url();
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {PG_URL_VAR}: {e}"));
        let name = format!("test_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options[search_path]={name}");
        Self { admin, name, url }
    }

    /// Connect options for this schema.
    pub fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url).unwrap()
    }

    /// A catalog in this schema (migrated).
    pub async fn catalog(&self) -> PgCatalog {
        PgCatalog::connect(&self.url).await.unwrap()
    }

    /// Removes the schema and everything in it.
    pub async fn drop(self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
        self.admin.close().await;
    }
}

/// A catalog in a fresh schema, and that schema (drop it at the end).
pub async fn pg_catalog() -> (PgCatalog, PgSchema) {
    let schema = PgSchema::create().await;
    (schema.catalog().await, schema)
}

/// A snapshot row of `account`, `minutes_ago`, storing `bytes`.
pub fn snapshot(account: AccountId, minutes_ago: i64, bytes: u64) -> Snapshot {
    Snapshot {
        id: SnapshotId::new(),
        account,
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
        stats: BackupStats {
            bytes_stored: bytes,
            ..BackupStats::default()
        },
    }
}

/// The inherent methods both backends have, so one check serves both.
pub trait Reports: Catalog {
    /// `put_snapshots`.
    fn bulk(&self, s: &[Snapshot]) -> impl Future<Output = backup_catalog::Result<()>>;
    /// `orphan_snapshots`.
    fn orphans(&self) -> impl Future<Output = backup_catalog::Result<Vec<Snapshot>>>;
    /// `usage_per_account`.
    fn usage(&self) -> impl Future<Output = backup_catalog::Result<Vec<AccountUsage>>>;
}

impl Reports for SqliteCatalog {
    async fn bulk(&self, s: &[Snapshot]) -> backup_catalog::Result<()> {
        self.put_snapshots(s).await
    }
    async fn orphans(&self) -> backup_catalog::Result<Vec<Snapshot>> {
        self.orphan_snapshots().await
    }
    async fn usage(&self) -> backup_catalog::Result<Vec<AccountUsage>> {
        self.usage_per_account().await
    }
}

impl Reports for PgCatalog {
    async fn bulk(&self, s: &[Snapshot]) -> backup_catalog::Result<()> {
        self.put_snapshots(s).await
    }
    async fn orphans(&self) -> backup_catalog::Result<Vec<Snapshot>> {
        self.orphan_snapshots().await
    }
    async fn usage(&self) -> backup_catalog::Result<Vec<AccountUsage>> {
        self.usage_per_account().await
    }
}

fn usage_of(usage: &[AccountUsage], account: AccountId) -> Option<(u64, u64)> {
    usage
        .iter()
        .find(|u| u.account == account)
        .map(|u| (u.snapshots, u.bytes_stored))
}

/// Usage follows every kind of snapshot write: insert, replace (same and other account),
/// bulk, delete, account deletion; rows are by account id. Expects an empty catalog.
pub async fn check_usage(c: &impl Reports) {
    let (a, b) = (
        Account::new("usage-a").unwrap(),
        Account::new("usage-b").unwrap(),
    );
    c.put_account(&a).await.unwrap();
    c.put_account(&b).await.unwrap();
    assert!(c.usage().await.unwrap().is_empty());

    let mut s1 = snapshot(a.id, 30, 100);
    let s2 = snapshot(a.id, 20, 20);
    c.put_snapshot(&s1).await.unwrap();
    c.put_snapshot(&s2).await.unwrap();
    assert_eq!(usage_of(&c.usage().await.unwrap(), a.id), Some((2, 120)));

    // Replacing a row counts it once, with its new size.
    s1.stats.bytes_stored = 1000;
    c.put_snapshot(&s1).await.unwrap();
    assert_eq!(usage_of(&c.usage().await.unwrap(), a.id), Some((2, 1020)));

    // Moving a row to another account moves its numbers.
    s1.account = b.id;
    c.put_snapshot(&s1).await.unwrap();
    let usage = c.usage().await.unwrap();
    assert_eq!(usage_of(&usage, a.id), Some((1, 20)));
    assert_eq!(usage_of(&usage, b.id), Some((1, 1000)));
    let mut ids: Vec<AccountId> = usage.iter().map(|u| u.account).collect();
    let sorted = {
        let mut s = ids.clone();
        s.sort_by_key(|id| id.to_string());
        s
    };
    assert_eq!(ids, sorted, "usage rows are by account id");

    // Bulk: new rows and a replaced one, a repeated id counted once (last value wins).
    let mut s3 = snapshot(b.id, 10, 7);
    let first = s3.clone();
    s3.stats.bytes_stored = 8;
    s3.status = SnapshotStatus::Partial;
    let mut s2b = s2.clone();
    s2b.stats.bytes_stored = 22;
    c.bulk(&[first, s2b.clone(), s3.clone()]).await.unwrap();
    let usage = c.usage().await.unwrap();
    assert_eq!(usage_of(&usage, a.id), Some((1, 22)));
    assert_eq!(usage_of(&usage, b.id), Some((2, 1008)));
    assert_eq!(c.get_snapshot(s3.id).await.unwrap(), Some(s3.clone()));
    assert_eq!(c.get_snapshot(s2.id).await.unwrap(), Some(s2b));

    // Deleting the last row of an account removes its usage row.
    assert!(c.delete_snapshot(s2.id).await.unwrap());
    assert_eq!(usage_of(&c.usage().await.unwrap(), a.id), None);
    assert!(c.delete_account(b.id).await.unwrap());
    assert!(c.usage().await.unwrap().is_empty());
    ids.clear();

    // A large bulk, over several statements.
    let many: Vec<Snapshot> = (0..1234).map(|i| snapshot(a.id, i, 1)).collect();
    c.bulk(&many).await.unwrap();
    assert_eq!(
        usage_of(&c.usage().await.unwrap(), a.id),
        Some((1234, 1234))
    );
    let listed = c.list_snapshots(a.id).await.unwrap();
    assert_eq!(listed.len(), 1234);
    assert_eq!(listed.first(), many.last(), "oldest first");
    c.bulk(&[]).await.unwrap();
}

/// Orphans are the snapshot rows whose account row is missing, by account id then oldest
/// first; nothing else. Expects an empty catalog.
pub async fn check_orphans(c: &impl Reports) {
    let kept = Account::new("kept").unwrap();
    c.put_account(&kept).await.unwrap();
    c.put_snapshot(&snapshot(kept.id, 5, 1)).await.unwrap();
    assert!(c.orphans().await.unwrap().is_empty());

    let mut gone: Vec<AccountId> = (0..3).map(|_| AccountId::new()).collect();
    gone.sort_by_key(|id| id.to_string());
    let mut expected = Vec::new();
    for id in &gone {
        let rows = [snapshot(*id, 50, 1), snapshot(*id, 10, 2)];
        // Put newest first: the order must come from the query.
        c.put_snapshot(&rows[1]).await.unwrap();
        c.put_snapshot(&rows[0]).await.unwrap();
        expected.extend(rows);
    }
    assert_eq!(c.orphans().await.unwrap(), expected);

    // An account row makes its snapshots no longer orphans.
    let mut adopted = Account::new("adopted").unwrap();
    adopted.id = gone[1];
    c.put_account(&adopted).await.unwrap();
    expected.drain(2..4);
    assert_eq!(c.orphans().await.unwrap(), expected);
}

/// A stored snapshot whose status this version does not know (`interrupted`) is an error
/// naming the row, from `get` and from the list, like any row that does not decode.
/// `corrupt` replaces the row's `data` (`$1`) by id (`$2`).
pub async fn check_unknown_status<F, Fut>(c: &impl Reports, corrupt: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let account = Account::new("status").unwrap();
    c.put_account(&account).await.unwrap();
    let s = snapshot(account.id, 5, 1);
    c.put_snapshot(&s).await.unwrap();
    let mut data = serde_json::to_value(&s).unwrap();
    data["status"] = serde_json::json!("interrupted");
    corrupt(data.to_string(), s.id.to_string()).await;

    let err = c.get_snapshot(s.id).await.unwrap_err();
    assert_eq!(err.kind(), backup_core::ErrorKind::Io);
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains(&s.id.to_string()), "{source}");
    assert!(source.contains("interrupted"), "{source}");
    assert!(c.list_snapshots(account.id).await.is_err());
}
