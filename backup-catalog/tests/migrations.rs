//! The schema is versioned: both backends' migrations stay in step, a released migration
//! never changes, and a catalog written at version 1 opens at the latest version with its
//! rows intact (and the new columns filled in), default settings (version 3's table starts
//! empty) and settings that can be stored.
//!
//! The old catalog is made by hand: the first migration only (sqlx's `Migrator::run_to`),
//! then rows inserted with the statements version 1 used, holding the JSON that code wrote
//! (snapshots without a `status`, which read back as complete).

mod common;

use backup_catalog::{AccountUsage, PgCatalog, SqliteCatalog};
use backup_core::model::{
    Account, DownloadRequest, ItemKind, ItemSelection, Limit, PathSelection, Settings, Snapshot,
    SnapshotId, SnapshotStatus,
};
use backup_core::ports::UsageStore;
use chrono::{DateTime, Utc};
use common::{PgSchema, snapshot};
use sqlx::migrate::Migrator;

static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// (version, description, SHA-384 of the SQL) of every released migration. Append here when
/// adding one; an applied migration whose file changed makes every existing catalog refuse
/// to open, so a change to a listed line is a bug. (SQLite's version 1 moved from
/// `migrations/` to `migrations/sqlite/` unchanged: same checksum, so catalogs made before
/// the move still open.)
const SQLITE_RELEASED: &[(i64, &str, &str)] = &[
    (
        1,
        "catalog",
        "bd48b7b202f0c4991e0cf9a0ed11b8338fdcba5502f56f97ab354b699ca1497116a0024e115eb38a4f034d7d8f3241fa",
    ),
    (
        2,
        "account usage",
        "08f533bf76433e6bbda6179804b981229918690a51cdb431f27ad88c12afcc7f109b427c8205281ae2e3288c9fb75c26",
    ),
    (
        3,
        "settings",
        "0955da9a943e6014bc0a1ad69c00de9329c360b2d1c572a89d7612a9e2d690d0679e1b98e515e686183364292ab5b339",
    ),
    (
        4,
        "queue",
        "36e882a8b366f8785814d45c0e9f9576af13d07bd1415474cd42648f648aa91127d0afef5ef2249275aed25441e6869b",
    ),
];
const POSTGRES_RELEASED: &[(i64, &str, &str)] = &[
    (
        1,
        "catalog",
        "2ff781e914a3c5914d33eeafcc1569806bbae65bba106ccecd9934419ca86c8da07c3a7d09d042d695f5a7542ea45d51",
    ),
    (
        2,
        "account usage",
        "40ca5924479ca548759d446bbc20f6d8aab3ac663362b7cccf3906bc6a4a56daedd68a567c2f8fdec44fdf2ce4847e27",
    ),
    (
        3,
        "settings",
        "35ef105320362469695b75eb3a01ee6437e1b2d92f56ada0373e26922a64e90b864e22913894b4e205967d9208e52c51",
    ),
    (
        4,
        "queue",
        "e9ff9b6ed96f43eeb736b62807b9a209401c20f002e2d5b6db7b6da15476cbf43f5974077b48e9bc71605070d0984b37",
    ),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn listed(migrator: &Migrator) -> Vec<(i64, String, String)> {
    migrator
        .iter()
        .map(|m| (m.version, m.description.to_string(), hex(&m.checksum)))
        .collect()
}

#[test]
fn released_migrations_never_change() {
    for (migrator, released) in [(&SQLITE, SQLITE_RELEASED), (&POSTGRES, POSTGRES_RELEASED)] {
        let released: Vec<(i64, String, String)> = released
            .iter()
            .map(|(v, d, c)| (*v, d.to_string(), c.to_string()))
            .collect();
        assert_eq!(listed(migrator), released);
    }
}

#[test]
fn both_backends_have_the_same_versions() {
    let versions = |m: &Migrator| -> Vec<(i64, String)> {
        m.iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect()
    };
    assert_eq!(versions(&SQLITE), versions(&POSTGRES));
}

/// Version 1's statements, as its code ran them.
const V1_ACCOUNT: &str = "INSERT INTO accounts (id, username, data) VALUES ($1, $2, $3)";
const V1_SNAPSHOT: &str = "INSERT INTO snapshots (id, account_id, created_secs, created_nanos, \
     data) VALUES ($1, $2, $3, $4, $5)";
const V1_DOWNLOAD: &str = "INSERT INTO downloads (id, account_id, created_secs, created_nanos, \
     data) VALUES ($1, $2, $3, $4, $5)";
const V1_KEY: &str = "INSERT INTO key_envelopes (account_id, envelope) VALUES ($1, $2)";

/// What a version-1 catalog holds: two accounts' rows, one of them without its account row.
struct Old {
    account: Account,
    snapshots: Vec<Snapshot>,
    orphans: Vec<Snapshot>,
    download: DownloadRequest,
}

fn old_rows() -> Old {
    let account = Account::new("veteran").unwrap();
    let gone = backup_core::model::AccountId::new();
    Old {
        snapshots: vec![
            snapshot(account.id, 300, 1 << 40),
            snapshot(account.id, 200, 7),
        ],
        orphans: vec![snapshot(gone, 100, 5)],
        download: DownloadRequest::new(
            account.id,
            vec![ItemSelection {
                kind: ItemKind::HomeDir,
                snapshot: SnapshotId::new(),
                paths: PathSelection::all(),
            }],
        )
        .unwrap(),
        account,
    }
}

/// A snapshot's JSON as written before snapshots had a status.
fn v1_snapshot_json(s: &Snapshot) -> String {
    assert_eq!(
        s.status,
        SnapshotStatus::Complete,
        "version 1 knew only complete backups"
    );
    let mut value = serde_json::to_value(s).unwrap();
    let removed = value.as_object_mut().unwrap().remove("status");
    assert_eq!(removed, Some(serde_json::json!("complete")));
    value.to_string()
}

fn time(t: DateTime<Utc>) -> (i64, i64) {
    (t.timestamp(), i64::from(t.timestamp_subsec_nanos()))
}

/// Binds and runs one version-1 statement on a pool of either database.
macro_rules! insert_old {
    ($pool:expr, $old:expr) => {{
        let old: &Old = $old;
        sqlx::query(V1_ACCOUNT)
            .bind(old.account.id.to_string())
            .bind(old.account.username.as_str().to_owned())
            .bind(serde_json::to_string(&old.account).unwrap())
            .execute($pool)
            .await
            .unwrap();
        for s in old.snapshots.iter().chain(&old.orphans) {
            let (secs, nanos) = time(s.created);
            sqlx::query(V1_SNAPSHOT)
                .bind(s.id.to_string())
                .bind(s.account.to_string())
                .bind(secs)
                .bind(nanos)
                .bind(v1_snapshot_json(s))
                .execute($pool)
                .await
                .unwrap();
        }
        let d = &old.download;
        let (secs, nanos) = time(d.created);
        sqlx::query(V1_DOWNLOAD)
            .bind(d.id.to_string())
            .bind(d.account.to_string())
            .bind(secs)
            .bind(nanos)
            .bind(serde_json::to_string(d).unwrap())
            .execute($pool)
            .await
            .unwrap();
        sqlx::query(V1_KEY)
            .bind(old.account.id.to_string())
            .bind(b"old envelope".to_vec())
            .execute($pool)
            .await
            .unwrap();
    }};
}

/// The migrated catalog holds every old row (its snapshots complete), with usage filled in
/// from the old snapshots (through the port too), reads default settings, and takes new
/// writes (snapshots of either status, settings).
async fn check_migrated<C: common::Reports>(c: &C, old: &Old, applied: i64) {
    assert_eq!(applied, 4, "every migration recorded");
    assert_eq!(c.get_settings().await.unwrap(), Settings::default());
    let settings = Settings {
        max_on_demand_snapshots: Limit::Max(3),
        orphan_ttl_days: 30,
        accounts_root: "/srv/homes/{USER}".into(),
    };
    c.put_settings(&settings).await.unwrap();
    assert_eq!(c.get_settings().await.unwrap(), settings);
    assert_eq!(
        c.get_account(old.account.id).await.unwrap(),
        Some(old.account.clone())
    );
    let listed = c.list_snapshots(old.account.id).await.unwrap();
    assert_eq!(listed, old.snapshots);
    assert!(
        listed.iter().all(|s| s.status == SnapshotStatus::Complete),
        "snapshots recorded before the status read back complete"
    );
    assert_eq!(
        c.list_downloads(old.account.id).await.unwrap(),
        vec![old.download.clone()]
    );
    assert_eq!(
        c.get_key_envelope(old.account.id).await.unwrap(),
        Some(b"old envelope".to_vec())
    );
    assert_eq!(c.orphans().await.unwrap(), old.orphans);
    let mut expected = vec![
        AccountUsage {
            account: old.account.id,
            snapshots: 2,
            bytes_stored: (1 << 40) + 7,
        },
        AccountUsage {
            account: old.orphans[0].account,
            snapshots: 1,
            bytes_stored: 5,
        },
    ];
    expected.sort_by_key(|u| u.account.to_string());
    assert_eq!(c.usage().await.unwrap(), expected);
    assert_eq!(UsageStore::usage_per_account(c).await.unwrap(), expected);
    assert_eq!(UsageStore::orphan_snapshots(c).await.unwrap(), old.orphans);
    let mine = c.account_usage(old.account.id).await.unwrap();
    assert_eq!((mine.snapshots, mine.bytes_stored), (2, (1 << 40) + 7));

    let mut newer = snapshot(old.account.id, 1, 10);
    newer.status = SnapshotStatus::Partial;
    c.put_snapshot(&newer).await.unwrap();
    assert_eq!(c.get_snapshot(newer.id).await.unwrap(), Some(newer.clone()));
    let usage = c.usage().await.unwrap();
    let mine = usage.iter().find(|u| u.account == old.account.id).unwrap();
    assert_eq!((mine.snapshots, mine.bytes_stored), (3, (1 << 40) + 17));
    assert!(c.delete_account(old.account.id).await.unwrap());
    assert_eq!(c.usage().await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_version_1_migrates_forward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = old_rows();
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        SQLITE.run_to(1, &pool).await.unwrap();
        insert_old!(&pool, &old);
        pool.close().await;
    }
    let catalog = SqliteCatalog::open(&path).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(catalog.pool())
        .await
        .unwrap();
    check_migrated(&catalog, &old, applied).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: run scripts/test.sh"]
async fn postgres_version_1_migrates_forward() {
    let schema = PgSchema::create().await;
    let old = old_rows();
    {
        let pool = sqlx::PgPool::connect_with(schema.options()).await.unwrap();
        POSTGRES.run_to(1, &pool).await.unwrap();
        insert_old!(&pool, &old);
        pool.close().await;
    }
    let catalog = PgCatalog::connect(&schema.url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(catalog.pool())
        .await
        .unwrap();
    check_migrated(&catalog, &old, applied).await;
    catalog.close().await;
    schema.drop().await;
}
