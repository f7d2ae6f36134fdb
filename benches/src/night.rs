//! The night case of the end-to-end runner (`e2e --case night`): a night of backups on a
//! hosting server. Many accounts ([`crate::dataset::generate_accounts`]: small web, mail and
//! configuration files and a database dump each) are backed up by one job of ours (one
//! `backupctl job run --wait` process working two backup lanes) and, account by account, by
//! restic (one repository per account, two processes at a time): a first night, a night
//! with nothing changed, and a night after about 2 % of the files changed.
//!
//! This module holds what the runner records and prints, reads our `job run --json`, and
//! counts S3 requests ([`RequestCounter`]); the runner (`src/bin/e2e.rs`) runs the commands.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::dataset::DatasetStats;
use crate::retention::{Sample, median};

/// Accounts unless `--accounts` says otherwise.
pub const DEFAULT_ACCOUNTS: usize = 500;

/// Accounts of the S3 part unless `--s3-accounts` says otherwise (at most `--accounts`).
pub const DEFAULT_S3_ACCOUNTS: usize = 50;

/// Backups at once: our job's backup lanes and workers, restic's concurrent processes.
pub const LANES: usize = 2;

/// The name of our job.
pub const JOB: &str = "night";

/// Target: our first night at least this many times faster than restic's.
pub const FIRST_NIGHT_TARGET: f64 = 4.0;

/// Target: our no-change night at least this many times faster than restic's.
pub const NO_CHANGE_TARGET: f64 = 20.0;

/// Target: our night's peak RSS below restic's largest single process plus this (MiB).
pub const RSS_MARGIN_MIB: u64 = 100;

/// The nights of one run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Night {
    /// Everything new.
    First,
    /// Nothing changed since the first.
    NoChange,
    /// About 2 % of the files changed ([`crate::dataset::change_accounts`]).
    Changed,
}

impl Night {
    /// How the tables name it.
    pub fn label(self) -> &'static str {
        match self {
            Night::First => "first night",
            Night::NoChange => "no-change night",
            Night::Changed => "2 % changed night",
        }
    }
}

/// One run of one tool.
#[derive(Debug, Clone, Default)]
pub struct NightRun {
    /// Wall seconds of creating the repositories and accounts (not part of any night).
    pub set_up_secs: f64,
    /// The first night.
    pub first: Sample,
    /// The night with nothing changed.
    pub no_change: Sample,
    /// The night after about 2 % of the files changed, when run.
    pub changed: Option<Sample>,
    /// The repository (restic: all of them) after the nights.
    pub repo_bytes: u64,
}

impl NightRun {
    /// The sample of `night`.
    pub fn night(&self, night: Night) -> Option<Sample> {
        match night {
            Night::First => Some(self.first),
            Night::NoChange => Some(self.no_change),
            Night::Changed => self.changed,
        }
    }

    /// Records `sample` as `night`.
    pub fn set(&mut self, night: Night, sample: Sample) {
        match night {
            Night::First => self.first = sample,
            Night::NoChange => self.no_change = sample,
            Night::Changed => self.changed = Some(sample),
        }
    }
}

/// One tool's runs.
#[derive(Debug, Default)]
pub struct NightRow {
    /// The tool.
    pub tool: String,
    /// Every run.
    pub runs: Vec<NightRun>,
}

impl NightRow {
    /// The median wall time of `night` (0 when it did not run).
    pub fn secs(&self, night: Night) -> f64 {
        median(
            &self
                .runs
                .iter()
                .filter_map(|r| r.night(night).map(|s| s.secs))
                .collect::<Vec<_>>(),
        )
    }

    /// The highest peak RSS of any night of any run (ours: the `job run` process; restic:
    /// its largest single backup process), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.runs
            .iter()
            .flat_map(|r| [Night::First, Night::NoChange, Night::Changed].map(|n| r.night(n)))
            .flatten()
            .map(|s| s.rss_kib)
            .max()
            .unwrap_or(0)
    }

    fn set_up_secs(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.set_up_secs).collect::<Vec<_>>())
    }
}

/// What `backupctl job run NAME --wait --json` says of its tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStates {
    /// Tasks listed.
    pub total: usize,
    /// Tasks in state `done`.
    pub done: usize,
    /// The others: `STATE USERNAME: MESSAGE`.
    pub others: Vec<String>,
}

impl TaskStates {
    /// Reads `{"run": {...}, "tasks": [{"state": "done", ...}, ...]}`.
    pub fn from_json(doc: &Value) -> Self {
        let mut out = TaskStates::default();
        for t in doc["tasks"].as_array().into_iter().flatten() {
            out.total += 1;
            let state = t["state"].as_str().unwrap_or("?");
            if state == "done" {
                out.done += 1;
            } else {
                out.others.push(format!(
                    "{state} {}: {}",
                    t["username"].as_str().unwrap_or("?"),
                    t["message"].as_str().unwrap_or("")
                ));
            }
        }
        out
    }

    /// `Ok` when every one of `expected` tasks is done, else why not.
    pub fn check(&self, expected: usize) -> Result<(), String> {
        if self.total == expected && self.done == expected {
            return Ok(());
        }
        Err(format!(
            "{} tasks ({expected} expected), {} done; first others: {}",
            self.total,
            self.done,
            self.others
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ))
    }
}

/// HTTP requests seen, by kind (the method; `LIST` for a GET with `list-type` in its query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts(pub BTreeMap<String, u64>);

impl RequestCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `GET 3, LIST 1, PUT 2`, each divided by `per` (requests per account).
    pub fn per(&self, per: usize) -> String {
        let per = per.max(1) as f64;
        self.0
            .iter()
            .map(|(k, n)| format!("{k} {:.2}", *n as f64 / per))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The kind of request `method target` is.
pub fn request_kind(method: &str, target: &str) -> String {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    if method == "GET" && query.split('&').any(|p| p.starts_with("list-type")) {
        "LIST".into()
    } else if method == "POST" && query.split('&').any(|p| p == "delete" || p == "delete=") {
        "DELETE (bulk)".into()
    } else {
        method.to_owned()
    }
}

/// A plain-HTTP proxy on a loopback port that forwards every connection to an S3 endpoint
/// (moto) unchanged and counts the requests going through: the S3 requests `backupctl`
/// makes when its destination URL names the proxy as endpoint. moto checks no signatures,
/// so the `Host` header the client signed for the proxy passes as it is. Requests are
/// framed by `Content-Length` or chunked encoding; responses are copied as they come.
#[derive(Debug)]
pub struct RequestCounter {
    port: u16,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl RequestCounter {
    /// Starts the proxy in front of `upstream` (`host:port`).
    pub fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let upstream = upstream.to_owned();
        let shared = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, counts) = (upstream.clone(), shared.clone());
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(&upstream) {
                        let _ = relay(client, server, &counts);
                    }
                });
            }
        });
        Ok(RequestCounter { port, counts })
    }

    /// The endpoint to give the client: `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests counted since the last call (or the start), and counting again from 0.
    pub fn take(&self) -> RequestCounts {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        RequestCounts(std::mem::take(&mut *counts))
    }
}

/// Copies `client` to `server` request by request (counting them) and `server` to `client`
/// as it comes, until either side closes.
fn relay(
    client: TcpStream,
    server: TcpStream,
    counts: &Mutex<BTreeMap<String, u64>>,
) -> std::io::Result<()> {
    let (mut back_from, mut back_to) = (server.try_clone()?, client.try_clone()?);
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(client);
    let mut to = server;
    let result = forward_requests(&mut reader, &mut to, counts);
    let _ = to.shutdown(Shutdown::Write);
    let _ = back.join();
    result
}

fn forward_requests(
    from: &mut impl BufRead,
    to: &mut impl Write,
    counts: &Mutex<BTreeMap<String, u64>>,
) -> std::io::Result<()> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    loop {
        let mut head = Vec::new();
        let mut line = Vec::new();
        let (mut length, mut chunked) = (0u64, false);
        loop {
            line.clear();
            if from.read_until(b'\n', &mut line)? == 0 {
                if head.is_empty() {
                    return Ok(());
                }
                return Err(invalid("connection closed inside a request's headers"));
            }
            let first = head.is_empty();
            head.extend_from_slice(&line);
            if line == b"\r\n" || line == b"\n" {
                if first {
                    // Stray blank line between requests.
                    head.clear();
                    continue;
                }
                break;
            }
            let text = String::from_utf8_lossy(&line);
            if let Some((name, value)) = text.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().map_err(|_| invalid("bad Content-Length"))?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.to_ascii_lowercase().contains("chunked");
                }
            }
        }
        let request_line =
            String::from_utf8_lossy(head.split(|b| *b == b'\n').next().unwrap_or(&[])).into_owned();
        let mut parts = request_line.split_whitespace();
        let kind = request_kind(parts.next().unwrap_or("?"), parts.next().unwrap_or(""));
        *counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default() += 1;
        to.write_all(&head)?;
        if chunked {
            loop {
                line.clear();
                from.read_until(b'\n', &mut line)?;
                to.write_all(&line)?;
                let size = String::from_utf8_lossy(&line);
                let size = size.trim().split(';').next().unwrap_or("");
                let size = u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
                if size == 0 {
                    // Trailers up to a blank line.
                    loop {
                        line.clear();
                        if from.read_until(b'\n', &mut line)? == 0 {
                            break;
                        }
                        to.write_all(&line)?;
                        if line == b"\r\n" || line == b"\n" {
                            break;
                        }
                    }
                    break;
                }
                // The chunk and its CRLF.
                let copied = std::io::copy(&mut from.by_ref().take(size + 2), to)?;
                if copied != size + 2 {
                    return Err(invalid("connection closed inside a chunk"));
                }
            }
        } else if length > 0 {
            let copied = std::io::copy(&mut from.by_ref().take(length), to)?;
            if copied != length {
                return Err(invalid("connection closed inside a request body"));
            }
        }
        to.flush()?;
    }
}

/// The S3 part: ours against a moto destination, on a subset of the accounts.
#[derive(Debug, Clone)]
pub enum S3Outcome {
    /// `--s3` was not given.
    NotAsked,
    /// Asked for, not run: why.
    Skipped(String),
    /// Measured.
    Measured(S3Report),
}

/// Requests of our nights to an S3 destination.
#[derive(Debug, Clone, Default)]
pub struct S3Report {
    /// Accounts in the job.
    pub accounts: usize,
    /// The first night: wall time and requests.
    pub first: (f64, RequestCounts),
    /// The no-change night: wall time and requests.
    pub no_change: (f64, RequestCounts),
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn pass(ok: bool) -> &'static str {
    if ok { "pass" } else { "FAIL" }
}

/// Prints the case's tables (Markdown) and the targets on stdout.
pub fn print_tables(rows: &[NightRow], accounts: usize, stats: DatasetStats) {
    let runs = rows.first().map_or(0, |r| r.runs.len());
    let changed = rows
        .iter()
        .any(|r| r.runs.iter().any(|x| x.changed.is_some()));
    let nights: Vec<Night> = [Night::First, Night::NoChange, Night::Changed]
        .into_iter()
        .filter(|n| *n != Night::Changed || changed)
        .collect();
    println!(
        "A night on a hosting server: {accounts} accounts, {} files, {:.0} MiB; {LANES} backups \
         at a time; medians of {runs} run(s), each into fresh repositories.",
        stats.files,
        stats.bytes as f64 / 1048576.0
    );
    println!();
    let heads: Vec<String> = nights
        .iter()
        .map(|n| format!("{} (s)", n.label()))
        .collect();
    println!(
        "| tool | set-up, not timed (s) | {} | peak RSS (MiB) | repository (MB) |",
        heads.join(" | ")
    );
    println!("|---|---|{}---|---|", "---|".repeat(nights.len()));
    for r in rows {
        let secs: Vec<String> = nights
            .iter()
            .map(|n| format!("{:.2}", r.secs(*n)))
            .collect();
        println!(
            "| {} | {:.1} | {} | {:.0} | {:.1} |",
            r.tool,
            r.set_up_secs(),
            secs.join(" | "),
            mib(r.peak_rss_kib()),
            r.runs.last().map_or(0, |x| x.repo_bytes) as f64 / 1e6
        );
    }
    let Some(ours) = rows.iter().find(|r| r.tool == "ours") else {
        return;
    };
    let peers: Vec<&NightRow> = rows.iter().filter(|r| r.tool != "ours").collect();
    if peers.is_empty() {
        return;
    }
    println!();
    let heads: Vec<String> = nights
        .iter()
        .map(|n| format!("{} (x faster)", n.label()))
        .collect();
    println!("| ours vs | {} | peak RSS (ours/peer) |", heads.join(" | "));
    println!("|---|{}---|", "---|".repeat(nights.len()));
    for r in &peers {
        let ratios: Vec<String> = nights
            .iter()
            .map(|n| format!("{:.2}", r.secs(*n) / ours.secs(*n).max(1e-9)))
            .collect();
        println!(
            "| {} | {} | {:.2} |",
            r.tool,
            ratios.join(" | "),
            ours.peak_rss_kib() as f64 / r.peak_rss_kib().max(1) as f64
        );
    }
    let Some(restic) = peers.iter().find(|r| r.tool == "restic") else {
        return;
    };
    println!();
    println!("Targets (against restic):");
    let first = restic.secs(Night::First) / ours.secs(Night::First).max(1e-9);
    let no_change = restic.secs(Night::NoChange) / ours.secs(Night::NoChange).max(1e-9);
    let limit = restic.peak_rss_kib() + RSS_MARGIN_MIB * 1024;
    println!(
        "- first night at least {FIRST_NIGHT_TARGET}x faster: {first:.2}x ({:.2} s against {:.2} s): {}",
        ours.secs(Night::First),
        restic.secs(Night::First),
        pass(first >= FIRST_NIGHT_TARGET)
    );
    println!(
        "- no-change night at least {NO_CHANGE_TARGET}x faster: {no_change:.2}x ({:.2} s against {:.2} s): {}",
        ours.secs(Night::NoChange),
        restic.secs(Night::NoChange),
        pass(no_change >= NO_CHANGE_TARGET)
    );
    println!(
        "- peak RSS below restic's largest process + {RSS_MARGIN_MIB} MiB: {:.0} MiB against {:.0} MiB ({:.0} + {RSS_MARGIN_MIB}): {}",
        mib(ours.peak_rss_kib()),
        mib(limit),
        mib(restic.peak_rss_kib()),
        pass(ours.peak_rss_kib() < limit)
    );
}

/// Prints the S3 part's line(s) on stdout.
pub fn print_s3(s3: &S3Outcome) {
    println!();
    match s3 {
        S3Outcome::NotAsked => {
            println!("S3 requests per account: not measured (give --s3, with moto running).")
        }
        S3Outcome::Skipped(why) => println!("S3 requests per account: skipped ({why})."),
        S3Outcome::Measured(r) => {
            println!(
                "S3 requests per account (ours, {} accounts, one job, moto through a counting proxy):",
                r.accounts
            );
            println!();
            println!("| night | wall (s) | requests | per account | per account, by kind |");
            println!("|---|---|---|---|---|");
            for (name, (secs, counts)) in [("first", &r.first), ("no-change", &r.no_change)] {
                println!(
                    "| {name} | {secs:.2} | {} | {:.2} | {} |",
                    counts.total(),
                    counts.total() as f64 / r.accounts.max(1) as f64,
                    counts.per(r.accounts)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_states_are_counted() {
        let doc = serde_json::json!({
            "run": {"id": "r"},
            "tasks": [
                {"state": "done", "username": "a"},
                {"state": "failed", "username": "b", "message": "disk full"},
                {"state": "done", "username": "c"},
            ],
        });
        let s = TaskStates::from_json(&doc);
        assert_eq!(s.total, 3);
        assert_eq!(s.done, 2);
        assert_eq!(s.others, vec!["failed b: disk full".to_owned()]);
        assert!(s.check(3).is_err());
        let all = serde_json::json!({"tasks": [{"state": "done"}, {"state": "done"}]});
        assert_eq!(TaskStates::from_json(&all).check(2), Ok(()));
        assert!(TaskStates::from_json(&all).check(3).is_err());
    }

    fn tree(root: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                    out.push((rel, std::fs::read(e.path()).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    /// The accounts have the promised shape, the same seed gives the same trees, a change
    /// round touches a few files and no more, and generating again undoes it.
    #[test]
    fn accounts_are_deterministic_and_undone_by_generating_again() {
        use crate::dataset::{DUMP_PATH, account_name, change_accounts, generate_accounts};
        let n = std::env::var("NIGHT_TEST_ACCOUNTS").map_or(12, |v| v.parse().unwrap());
        let base = std::env::temp_dir().join(format!("night-test-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        let stats = generate_accounts(&a, n, 7).unwrap();
        eprintln!(
            "{n} accounts: {} files, {:.1} MiB",
            stats.files,
            stats.bytes as f64 / 1048576.0
        );
        for i in 0..n {
            let home = a.join(account_name(i));
            let files = tree(&home);
            assert!((51..=401).contains(&files.len()), "{}", files.len());
            let dump = std::fs::metadata(home.join(DUMP_PATH)).unwrap().len();
            assert!((512 << 10..=3 << 20).contains(&(dump as usize)), "{dump}");
        }
        generate_accounts(&b, n, 7).unwrap();
        let original = tree(&a);
        assert_eq!(original, tree(&b));
        let changed = change_accounts(&a, n, 1).unwrap();
        let after = tree(&a);
        let differ = original.iter().zip(&after).filter(|(x, y)| x != y).count() as u64;
        assert_eq!(after.len(), original.len());
        assert_eq!(differ, changed);
        assert!(changed > 0 && changed < stats.files / 20, "{changed}");
        generate_accounts(&a, n, 7).unwrap();
        assert_eq!(tree(&a), original);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn request_kinds() {
        assert_eq!(request_kind("GET", "/b?list-type=2&prefix=x/"), "LIST");
        assert_eq!(request_kind("GET", "/b/x/config"), "GET");
        assert_eq!(request_kind("POST", "/b?delete"), "DELETE (bulk)");
        assert_eq!(request_kind("PUT", "/b/x/p?partNumber=1&uploadId=u"), "PUT");
    }

    /// Requests of every framing go through whole and are counted once each.
    #[test]
    fn the_proxy_counts_and_relays_requests() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = upstream.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (conn, _) = upstream.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut writer = conn;
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            writer.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
            all
        });
        let counter = RequestCounter::start(&addr).unwrap();
        let port = counter.endpoint().rsplit(':').next().unwrap().to_owned();
        let mut client = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        let sent = b"PUT /b/k HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
GET /b?list-type=2&prefix=p HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b?delete HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
HEAD /b/k HTTP/1.1\r\n\r\n";
        client.write_all(sent).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(server.join().unwrap(), sent.to_vec());
        assert_eq!(reply, b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
        let counts = counter.take();
        assert_eq!(counts.total(), 4);
        assert_eq!(
            counts.per(1),
            "DELETE (bulk) 1.00, HEAD 1.00, LIST 1.00, PUT 1.00"
        );
        assert_eq!(counter.take().total(), 0);
    }
}
