//! Helpers of the jobs, queue and daemon tests (`jobs.rs`): the `backupctl` binary over a
//! state directory (its SQLite catalog or a PostgreSQL schema), daemons in the background
//! (killed when dropped), small account homes, the queue and catalog read in-process, and
//! the interval checks of the attempts history.

// Each test uses its own part of these helpers.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_core::model::{
    Account, AccountId, DestinationHealth, JobRun, RunId, Snapshot, Task, TaskAttempt, TaskFilter,
    TaskId,
};
use backup_core::ports::{Catalog, JobQueue};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The lease (seconds) an account's destination lease lives without renewal in these
/// tests (`BACKUPCTL_LEASE_TTL`): a killed process keeps others waiting this long at most.
pub const LEASE_TTL: &str = "8";

pub use backup_examples::backupctl_path;

/// The `file://` URL of a local directory.
pub fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// `backupctl --home HOME [--catalog URL] --progress none`, with `BACKUPCTL_LEASE_TTL`
/// set to [`LEASE_TTL`] and the caller's `BACKUPCTL_*` variables removed.
#[derive(Debug, Clone)]
pub struct Ctl {
    /// The binary.
    pub bin: PathBuf,
    /// `--home`.
    pub home: PathBuf,
    /// `--catalog`, when not the state directory's SQLite file.
    pub catalog: Option<String>,
    /// Where background processes write their output.
    pub logs: PathBuf,
}

impl Ctl {
    /// Over the state directory `home` (not initialised), its default SQLite catalog.
    pub fn new(home: &Path) -> Self {
        let logs = home.with_file_name(format!(
            "{}-logs",
            home.file_name().unwrap().to_string_lossy()
        ));
        std::fs::create_dir_all(&logs).unwrap();
        Self {
            bin: backupctl_path(),
            home: home.to_path_buf(),
            catalog: None,
            logs,
        }
    }

    /// The same with `--catalog URL`.
    pub fn with_catalog(mut self, url: &str) -> Self {
        self.catalog = Some(url.to_owned());
        self
    }

    /// The URL the tests open the queue and catalog with in-process.
    pub fn catalog_url(&self) -> String {
        self.catalog
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.home.join("catalog.db").display()))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .env_remove("BACKUPCTL_CATALOG")
            .env_remove("BACKUPCTL_HOME")
            .env("BACKUPCTL_LEASE_TTL", LEASE_TTL)
            .env("RUST_BACKTRACE", "1")
            .arg("--home")
            .arg(&self.home);
        if let Some(url) = &self.catalog {
            command.arg("--catalog").arg(url);
        }
        command.args(["--progress", "none"]).args(args);
        command
    }

    /// Runs a command to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("backupctl runs")
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "backupctl {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs a command that must succeed and print JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("backupctl {args:?}: {e}: {out}"))
    }

    /// Runs a command that prints JSON whatever its exit code; the code and the JSON.
    pub fn json_with_code(&self, args: &[&str]) -> (Option<i32>, Value) {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "backupctl {args:?} ({:?}) printed no JSON: {e}: {stdout}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), value)
    }

    /// Runs a command that must fail with exit code `code` and a one-line error (no
    /// panic); the error line.
    pub fn fails_with(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).expect("UTF-8 errors");
        assert_eq!(
            out.status.code(),
            Some(code),
            "backupctl {args:?}: {stderr}{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "backupctl {args:?}: errors are one line: {stderr:?}"
        );
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    }

    /// Starts a command in the background (its output to files under [`Ctl::logs`]); it
    /// is killed when the handle is dropped.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Background {
        let out = self.logs.join(format!("{name}.out"));
        let err = self.logs.join(format!("{name}.err"));
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("backupctl starts");
        Background {
            child: Some(child),
            name: name.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            out,
            err,
        }
    }
}

/// A `backupctl` process in the background: SIGKILLed (and reaped) when dropped.
#[derive(Debug)]
pub struct Background {
    child: Option<Child>,
    /// Its name in messages and log files.
    pub name: String,
    args: Vec<String>,
    out: PathBuf,
    err: PathBuf,
}

/// How a background process ended.
#[derive(Debug)]
pub struct Ended {
    /// Its status.
    pub status: ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Ended {
    /// Its stdout as JSON (it must have succeeded).
    pub fn json(&self, what: &str) -> Value {
        assert!(
            self.status.success(),
            "{what} failed ({:?}): {}{}",
            self.status.code(),
            self.stdout,
            self.stderr
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{what}: {e}: {}{}", self.stdout, self.stderr))
    }
}

impl Background {
    fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .unwrap_or_else(|| panic!("{} has already been reaped", self.name))
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("{} has already been reaped", self.name))
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_none()
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let child = self.child();
        let _ = child.kill();
        let _ = child.wait();
        self.child = None;
    }

    /// SIGTERM (the daemon's shutdown: no more claims, running tasks get their grace).
    pub fn terminate(&mut self) {
        let pid = rustix::process::Pid::from_child(self.child());
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }

    /// Waits for it to end by itself, at most `limit` (then it is killed and the test
    /// fails, with what it printed).
    pub fn wait(&mut self, limit: Duration) -> Ended {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                self.child = None;
                return Ended {
                    status,
                    stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
                    stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
                };
            }
            if start.elapsed() > limit {
                self.kill();
                panic!(
                    "{} (backupctl {:?}) did not end within {limit:?}; it printed: {}{}",
                    self.name,
                    self.args,
                    std::fs::read_to_string(&self.out).unwrap_or_default(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `probe` every `every` until it gives a value; past `limit` the test fails, saying
/// what it waited for and what the last probe saw.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if start.elapsed() > limit => {
                panic!("waited {limit:?} for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// The catalog and queue of a state directory, read in-process (the way a panel would),
/// over their own runtime.
pub struct Db {
    rt: tokio::runtime::Runtime,
    /// The catalog.
    pub catalog: Arc<dyn Catalog>,
    /// The queue in the same database.
    pub queue: Arc<dyn JobQueue>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    /// Opens the catalog and queue at `url` (`backup_catalog::open_with_queue`).
    pub fn open(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (catalog, queue) = rt
            .block_on(backup_catalog::open_with_queue(url))
            .unwrap_or_else(|e| panic!("cannot open the catalog and queue: {e}"));
        Self { rt, catalog, queue }
    }

    /// Runs a future on this runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Every task, oldest first.
    pub fn tasks(&self) -> Vec<Task> {
        self.block_on(self.queue.list_tasks(&TaskFilter::default()))
            .unwrap()
    }

    /// The tasks of one run, oldest first.
    pub fn run_tasks(&self, run: RunId) -> Vec<Task> {
        self.block_on(self.queue.list_tasks(&TaskFilter {
            run: Some(run),
            ..TaskFilter::default()
        }))
        .unwrap()
    }

    /// One run.
    pub fn run(&self, run: RunId) -> Option<JobRun> {
        self.block_on(self.queue.get_run(run)).unwrap()
    }

    /// Every attempt, by task then attempt.
    pub fn attempts(&self) -> Vec<TaskAttempt> {
        self.block_on(self.queue.task_attempts(None)).unwrap()
    }

    /// The circuit-breaker state of every destination that had a task.
    pub fn destination_health(&self) -> Vec<DestinationHealth> {
        self.block_on(self.queue.destination_health()).unwrap()
    }

    /// Every account.
    pub fn accounts(&self) -> Vec<Account> {
        self.block_on(self.catalog.list_accounts()).unwrap()
    }

    /// An account's snapshots.
    pub fn snapshots(&self, account: AccountId) -> Vec<Snapshot> {
        self.block_on(self.catalog.list_snapshots(account)).unwrap()
    }
}

/// A task id from JSON.
pub fn task_id(v: &Value) -> TaskId {
    v.as_str()
        .unwrap_or_else(|| panic!("a task id: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("a task id: {v}: {e}"))
}

/// A run id from JSON.
pub fn run_id(v: &Value) -> RunId {
    v.as_str()
        .unwrap_or_else(|| panic!("a run id: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("a run id: {v}: {e}"))
}

/// Where the attempts history shows two attempts at once: attempts are grouped by `key`
/// (a task, an account); within a group, in claim order, each must have ended (finished,
/// retried, handed back, or lost at its lease's end) before the next was claimed. Every
/// attempt must have ended. Returns one line per violation.
pub fn overlaps<K: Ord + std::fmt::Debug>(
    attempts: &[TaskAttempt],
    key: impl Fn(&TaskAttempt) -> K,
) -> Vec<String> {
    let mut groups: BTreeMap<K, Vec<&TaskAttempt>> = BTreeMap::new();
    for a in attempts {
        groups.entry(key(a)).or_default().push(a);
    }
    let mut problems = Vec::new();
    for (k, mut group) in groups {
        group.sort_by_key(|a| (a.claimed, a.task, a.attempt));
        for a in &group {
            if a.ended.is_none() {
                problems.push(format!(
                    "{k:?}: attempt {} of task {} (worker {}) never ended",
                    a.attempt, a.task, a.worker
                ));
            }
        }
        for pair in group.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let ended: Option<DateTime<Utc>> = a.ended;
            if ended.is_none_or(|e| e > b.claimed) {
                let by = ended.map(|e| e - b.claimed);
                problems.push(format!(
                    "{k:?}: attempt {} of task {} by {} [{} .. {:?}, {:?}] overlaps attempt {} \
                     of task {} by {} claimed {} (by {by:?})",
                    a.attempt,
                    a.task,
                    a.worker,
                    a.claimed,
                    a.ended,
                    a.outcome,
                    b.attempt,
                    b.task,
                    b.worker,
                    b.claimed
                ));
            }
        }
    }
    problems
}

/// Deterministic bytes: `n` of them, text-like or random-looking.
pub fn filler(seed: u64, n: usize, text: bool) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if text {
            let words: [&[u8]; 6] = [
                b"<p>hosting ",
                b"backup ",
                b"account ",
                b"queue ",
                b"restore\n",
                b"mail ",
            ];
            out.extend_from_slice(words[(x % 6) as usize]);
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(n);
    out
}

/// A small home directory at `dir` (created), `files` files of its own content (seeded):
/// pages in a few directories and one incompressible file. Returns the file count.
pub fn write_home(dir: &Path, seed: u64, files: usize) -> u64 {
    assert!(files >= 2);
    for i in 0..files - 1 {
        let p = dir.join(format!("public_html/site{}/page{i}.html", i % 3));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let len = 500 + (i * 997 + seed as usize * 13) % 6_000;
        std::fs::write(p, filler(seed * 10_000 + i as u64, len, true)).unwrap();
    }
    std::fs::create_dir_all(dir.join("mail")).unwrap();
    std::fs::write(dir.join("mail/archive.bin"), filler(seed, 48_000, false)).unwrap();
    files as u64
}

/// The files a snapshot (JSON of `snapshots --json`) holds in all its items.
pub fn snapshot_files(snapshot: &Value) -> u64 {
    snapshot["items"]
        .as_array()
        .unwrap_or_else(|| panic!("snapshot items: {snapshot}"))
        .iter()
        .map(|i| i["stats"]["files"].as_u64().unwrap())
        .sum()
}

/// The variable `scripts/test-servers/start.sh` exports for the PostgreSQL test server;
/// without it the test fails, saying how to start the servers.
pub const PG_URL_VAR: &str = "BACKUP_TEST_PG_URL";

/// A fresh schema on the PostgreSQL test server, dropped again when this is dropped.
pub struct PgSchema {
    rt: tokio::runtime::Runtime,
    admin: sqlx::PgPool,
    /// The schema's name.
    pub name: String,
    /// A URL whose connections use the schema.
    pub url: String,
}

impl std::fmt::Debug for PgSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSchema")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PgSchema {
    /// Creates a schema; fails the test when the server's URL is not set.
    pub fn create(prefix: &str) -> Self {
        let url = match std::env::var(PG_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "{PG_URL_VAR} is not set: this test needs PostgreSQL; run \
                 `eval \"$(scripts/test-servers/start.sh)\"` (or scripts/test.sh) first"
            ),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        let admin = rt.block_on(async {
            let admin = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {PG_URL_VAR}: {e}"));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
                .execute(&admin)
                .await
                .unwrap();
            admin
        });
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options[search_path]={name}");
        Self {
            rt,
            admin,
            name,
            url,
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = self
            .rt
            .block_on(sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.admin));
    }
}
