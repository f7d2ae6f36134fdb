//! Catalog at scale: 10,000 accounts with 100 snapshots each (1,000,000 snapshot rows) in
//! each backend, then everyday queries timed through the `Catalog` trait, and the two
//! reports (backend methods). Not a test: it prints Markdown for `docs/performance.md`.
//!
//! ```text
//! cargo bench -p backup-benches --bench catalog_scale
//! BACKUP_BENCH_PG_URL=postgres://USER:PASSWORD@127.0.0.1:55432/DB \
//!     cargo bench -p backup-benches --bench catalog_scale
//! ```
//!
//! PostgreSQL runs when `BACKUP_BENCH_PG_URL` (or `BACKUP_TEST_PG_URL`) is set, in a schema
//! of its own, dropped at the end. `CATALOG_SCALE_ACCOUNTS`, `CATALOG_SCALE_SNAPSHOTS` (per
//! account) and `CATALOG_SCALE_RUNS` change the sizes; the SQLite file goes to a temporary
//! directory (`TMPDIR` moves it).
//!
//! The fill writes account rows through the trait, then snapshot rows with the bulk
//! `put_snapshots`, 100 accounts (10,000 rows) per transaction. One account in a thousand
//! has snapshot rows but no account row, so the orphan report finds 1,000 rows.

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use backup_catalog::{AccountUsage, PgCatalog, SqliteCatalog};
use backup_core::model::{
    Account, AccountId, BackupStats, DestinationId, ItemKind, ItemStats, Snapshot, SnapshotId,
    SnapshotItem, SnapshotKind, SnapshotStatus,
};
use backup_core::ports::Catalog;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgConnectOptions;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    accounts: usize,
    snapshots: usize,
    runs: usize,
}

impl Sizes {
    fn from_env() -> AnyResult<Self> {
        let var = |name: &str, default: usize| -> AnyResult<usize> {
            match std::env::var(name) {
                Ok(v) => Ok(v.parse().map_err(|e| format!("{name}={v:?}: {e}"))?),
                Err(_) => Ok(default),
            }
        };
        Ok(Self {
            accounts: var("CATALOG_SCALE_ACCOUNTS", 10_000)?.max(2),
            snapshots: var("CATALOG_SCALE_SNAPSHOTS", 100)?.max(1),
            runs: var("CATALOG_SCALE_RUNS", 15)?.max(1),
        })
    }

    /// Accounts whose account row is never written: one in a thousand, at least one.
    fn orphaned(&self) -> usize {
        (self.accounts / 1000).max(1)
    }
}

/// What the bench needs beyond the trait: the bulk fill, the two reports and the size.
trait Scale: Catalog {
    fn bulk(&self, s: &[Snapshot]) -> impl Future<Output = backup_catalog::Result<()>>;
    fn orphans(&self) -> impl Future<Output = backup_catalog::Result<Vec<Snapshot>>>;
    fn usage(&self) -> impl Future<Output = backup_catalog::Result<Vec<AccountUsage>>>;
    /// Bytes on disk, tables and indexes.
    fn size(&self) -> impl Future<Output = AnyResult<u64>>;
    /// Work a deployment's maintenance does after a bulk load (statistics).
    fn settle(&self) -> impl Future<Output = AnyResult<()>>;
}

impl Scale for SqliteCatalog {
    async fn bulk(&self, s: &[Snapshot]) -> backup_catalog::Result<()> {
        self.put_snapshots(s).await
    }
    async fn orphans(&self) -> backup_catalog::Result<Vec<Snapshot>> {
        self.orphan_snapshots().await
    }
    async fn usage(&self) -> backup_catalog::Result<Vec<AccountUsage>> {
        self.usage_per_account().await
    }
    async fn size(&self) -> AnyResult<u64> {
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(self.pool())
            .await?;
        let page: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(self.pool())
            .await?;
        Ok(u64::try_from(pages * page)?)
    }
    async fn settle(&self) -> AnyResult<()> {
        Ok(())
    }
}

impl Scale for PgCatalog {
    async fn bulk(&self, s: &[Snapshot]) -> backup_catalog::Result<()> {
        self.put_snapshots(s).await
    }
    async fn orphans(&self) -> backup_catalog::Result<Vec<Snapshot>> {
        self.orphan_snapshots().await
    }
    async fn usage(&self) -> backup_catalog::Result<Vec<AccountUsage>> {
        self.usage_per_account().await
    }
    async fn size(&self) -> AnyResult<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(bytes)?)
    }
    async fn settle(&self) -> AnyResult<()> {
        // What autovacuum does shortly after a bulk load: statistics and the visibility map.
        sqlx::query("VACUUM (ANALYZE)").execute(self.pool()).await?;
        Ok(())
    }
}

/// A snapshot as a full backup of a hosting account records it: every item, with counts.
fn snapshot(account: AccountId, created: DateTime<Utc>, n: u64) -> Snapshot {
    let items = ItemKind::ALL
        .into_iter()
        .enumerate()
        .map(|(i, kind)| SnapshotItem {
            kind,
            stats: ItemStats {
                files: 100 + n * 7 + i as u64,
                dirs: 10 + i as u64,
                symlinks: i as u64 % 3,
                bytes: 1_000_000 + n * 4096 + i as u64 * 100_000,
            },
        })
        .collect();
    Snapshot {
        id: SnapshotId::new(),
        account,
        job: None,
        destination: DestinationId::new(),
        created,
        kind: SnapshotKind::Scheduled,
        status: SnapshotStatus::Complete,
        items,
        encrypted: true,
        locked: false,
        lock_until: None,
        identity: None,
        task: None,
        stats: BackupStats {
            bytes_read: 9_000_000 + n * 4096,
            bytes_new: 40_000 + n,
            bytes_deduplicated: 8_960_000,
            bytes_stored: 20_000 + n,
            chunks_new: 12,
            chunks_deduplicated: 900,
            packs_written: 1,
            duration_ms: 1_500,
            ..BackupStats::default()
        },
    }
}

/// The fill's outcome.
#[derive(Debug)]
struct Filled {
    /// Account ids, in creation order; the first `orphaned` have no account row.
    accounts: Vec<AccountId>,
    orphaned: usize,
    accounts_time: Duration,
    snapshots_time: Duration,
}

async fn fill(c: &impl Scale, sizes: Sizes) -> AnyResult<Filled> {
    let started = Instant::now();
    let mut accounts = Vec::with_capacity(sizes.accounts);
    for i in 0..sizes.accounts {
        let account = Account::new(&format!("user{i:05}"))?;
        if i >= sizes.orphaned() {
            c.put_account(&account).await?;
        }
        accounts.push(account.id);
    }
    let accounts_time = started.elapsed();

    let started = Instant::now();
    let base = Utc::now() - TimeDelta::days(sizes.snapshots as i64 + 1);
    const PER_TRANSACTION: usize = 10_000;
    let per_batch = (PER_TRANSACTION / sizes.snapshots).max(1);
    for (b, group) in accounts.chunks(per_batch).enumerate() {
        let mut batch = Vec::with_capacity(group.len() * sizes.snapshots);
        for (a, account) in group.iter().enumerate() {
            for n in 0..sizes.snapshots {
                let created = base + TimeDelta::days(n as i64) + TimeDelta::seconds(a as i64);
                batch.push(snapshot(*account, created, n as u64));
            }
        }
        c.bulk(&batch).await?;
        let done = (b + 1) * per_batch;
        if done.is_multiple_of(per_batch * 10) {
            eprint!(
                "\r  {} / {} accounts' snapshots, {:.0?}",
                done.min(sizes.accounts),
                sizes.accounts,
                started.elapsed()
            );
        }
    }
    eprintln!();
    c.settle().await?;
    Ok(Filled {
        orphaned: sizes.orphaned(),
        accounts,
        accounts_time,
        snapshots_time: started.elapsed(),
    })
}

/// One timed operation: its name, what it returned, and the median of the runs.
#[derive(Debug)]
struct Timing {
    operation: &'static str,
    rows: usize,
    median: Duration,
}

/// Runs `op` once to warm up, then `runs` times; the median. `op` gets the run number and
/// returns the number of rows it saw (checked by the caller).
async fn time<F, Fut>(runs: usize, mut op: F) -> AnyResult<(usize, Duration)>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = AnyResult<usize>>,
{
    let rows = op(usize::MAX).await?;
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let started = Instant::now();
        let seen = op(run).await?;
        times.push(started.elapsed());
        if seen != rows {
            return Err(format!("run {run} saw {seen} rows, the warm-up {rows}").into());
        }
    }
    times.sort();
    Ok((rows, times[times.len() / 2]))
}

async fn measure(c: &impl Scale, sizes: Sizes, filled: &Filled) -> AnyResult<Vec<Timing>> {
    let runs = sizes.runs;
    // A different account each run, spread over the table.
    let pick = |run: usize| {
        let i = run.wrapping_mul(7919) % (filled.accounts.len() - filled.orphaned);
        filled.accounts[filled.orphaned + i]
    };
    let mut out = Vec::new();
    let mut record = |operation, (rows, median)| {
        out.push(Timing {
            operation,
            rows,
            median,
        })
    };

    let r = time(runs, |run| async move {
        Ok(c.list_snapshots(pick(run)).await?.len())
    })
    .await?;
    assert_eq!(r.0, sizes.snapshots, "list_snapshots");
    record("`list_snapshots` (one account)", r);

    let some = c.list_snapshots(pick(1)).await?;
    let r = time(runs, |run| {
        let id = some[run % some.len()].id;
        async move { Ok(usize::from(c.get_snapshot(id).await?.is_some())) }
    })
    .await?;
    record("`get_snapshot`", r);

    let r = time(runs, |run| async move {
        let s = snapshot(pick(run), Utc::now(), 0);
        c.put_snapshot(&s).await?;
        Ok(1)
    })
    .await?;
    record("`put_snapshot` (new row)", r);

    let r = time(runs, |_| async { Ok(c.orphans().await?.len()) }).await?;
    assert_eq!(r.0, filled.orphaned * sizes.snapshots, "orphans");
    record("`orphan_snapshots`", r);

    let r = time(runs, |_| async { Ok(c.usage().await?.len()) }).await?;
    assert_eq!(r.0, sizes.accounts, "usage rows");
    record("`usage_per_account`", r);

    let r = time(runs, |_| async { Ok(c.list_accounts().await?.len()) }).await?;
    record("`list_accounts` (all)", r);

    let r = time(runs, |run| async move {
        let name = format!("user{:05}", filled.orphaned + run % 1000);
        Ok(c.find_accounts(&name).await?.len())
    })
    .await?;
    record("`find_accounts` (by username)", r);
    Ok(out)
}

/// Everything measured on one backend.
#[derive(Debug)]
struct Report {
    backend: &'static str,
    filled: Filled,
    size: u64,
    timings: Vec<Timing>,
}

async fn bench(backend: &'static str, c: &impl Scale, sizes: Sizes) -> AnyResult<Report> {
    eprintln!("{backend}: filling");
    let filled = fill(c, sizes).await?;
    eprintln!(
        "{backend}: filled in {:.1?} + {:.1?}; measuring",
        filled.accounts_time, filled.snapshots_time
    );
    let timings = measure(c, sizes, &filled).await?;
    let size = c.size().await?;
    Ok(Report {
        backend,
        filled,
        size,
        timings,
    })
}

async fn sqlite(sizes: Sizes) -> AnyResult<Report> {
    let dir = tempfile::tempdir()?;
    let catalog = SqliteCatalog::open(dir.path().join("catalog.db")).await?;
    let report = bench("SQLite", &catalog, sizes).await?;
    catalog.close().await;
    Ok(report)
}

async fn postgres(url: &str, sizes: Sizes) -> AnyResult<Report> {
    let admin = sqlx::PgPool::connect(url).await?;
    let schema = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let options = PgConnectOptions::from_str(url)?.options([("search_path", schema.as_str())]);
    let result = async {
        let catalog = PgCatalog::connect_with(options).await?;
        let report = bench("PostgreSQL", &catalog, sizes).await;
        catalog.close().await;
        report
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    result
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn print(sizes: Sizes, reports: &[Report]) {
    let total = sizes.accounts * sizes.snapshots;
    println!(
        "{} accounts x {} snapshots = {} snapshot rows ({} accounts without an account row); \
         median of {} runs after one warm-up.\n",
        sizes.accounts,
        sizes.snapshots,
        total,
        sizes.orphaned(),
        sizes.runs
    );
    let mut header = "| operation | rows |".to_owned();
    let mut rule = "|---|---:|".to_owned();
    for r in reports {
        header += &format!(" {} |", r.backend);
        rule += "---:|";
    }
    println!("{header}\n{rule}");
    for (i, t) in reports[0].timings.iter().enumerate() {
        let mut line = format!("| {} | {} |", t.operation, t.rows);
        for r in reports {
            line += &format!(" {} |", ms(r.timings[i].median));
        }
        println!("{line}");
    }
    println!();
    for r in reports {
        let f = &r.filled;
        let rate = total as f64 / f.snapshots_time.as_secs_f64();
        println!(
            "- {}: fill {:.1} s for {} account rows (one `put_account` each), {:.1} s for the \
             snapshot rows ({:.0} rows/s); {:.0} MiB on disk.",
            r.backend,
            f.accounts_time.as_secs_f64(),
            f.accounts.len() - f.orphaned,
            f.snapshots_time.as_secs_f64(),
            rate,
            r.size as f64 / (1024.0 * 1024.0)
        );
    }
}

fn main() -> AnyResult<()> {
    let sizes = Sizes::from_env()?;
    let pg_url = std::env::var("BACKUP_BENCH_PG_URL")
        .or_else(|_| std::env::var("BACKUP_TEST_PG_URL"))
        .ok()
        .filter(|u| !u.is_empty());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut reports = vec![sqlite(sizes).await?];
        match &pg_url {
            Some(url) => reports.push(postgres(url, sizes).await?),
            None => eprintln!("PostgreSQL skipped: set BACKUP_BENCH_PG_URL"),
        }
        print(sizes, &reports);
        Ok(())
    })
}
