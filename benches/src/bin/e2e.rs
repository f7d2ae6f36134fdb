//! End-to-end runner: backs up one deterministic dataset with our engine (through the
//! `backupctl` example) and with restic, borg and rustic when they are on PATH, in the same
//! run, and prints a table of times, peak memory, repository sizes and our ratio to each.
//!
//! ```text
//! cargo build --release --example backupctl
//! cargo run --release -p backup-benches --bin e2e -- [--scale 1.0] [--runs 3] [--dir /tmp/backup-bench] [--tools ours,restic,borg,rustic] [--dataset hosting|small-files] [--keep]
//! cargo run --release -p backup-benches --bin e2e -- --case retention [--backups 30] [--keep-last 7] [--no-overlap] [--tools ours,restic,borg] ...
//! cargo run --release -p backup-benches --bin e2e -- --case night [--accounts 500] [--runs 1] [--no-changed-night] [--s3 [--s3-accounts 50]] ...
//! ```
//! Peak RSS comes from GNU time (`apt-get install time`). Every tool runs with encryption on
//! and its default compression; the page cache is warm for all of them: before each timed
//! step the runner reads the step's input (the dataset, or the repository for the restore),
//! since the host may drop cached pages while other steps run.
//!
//! The backups run `--runs` times, each time into a fresh repository, the tools taking turns
//! (run 1 of every tool, then run 2, ...), and the table gives each step's median: a shared
//! machine's slow stretches then weigh on every tool alike. Peak RSS is the highest of all
//! runs. The restore runs once, from the last run's repository: each restore writes a full
//! copy of the data, and deleting one while tools run slows the next tool's restore. For
//! the same reason no restore starts within 6.5 minutes of the runner removing an earlier
//! run's files; mass deletions made by hand that close before a run slow its restores too.
//!
//! `--case retention` ([`backup_benches::retention`]): `--backups` backups of the hosting
//! dataset, each after one round of [`dataset::change_two_percent`], then forget keeping the
//! last `--keep-last` and prune (ours: `forget` then `prune --grace 0s`; restic: `forget
//! --prune`; borg: `prune` then `compact`), the tools taking turns per run. Ours also backs up
//! once alone and once while its prune runs, on a copy of the repository taken before
//! forget. The tools share one dataset, generated again in place before each tool's run, and
//! each run's repositories go once measured (unless `--keep`), to bound the disk used; with
//! no restore there is no wait after removals.
//!
//! `--case night` ([`backup_benches::night`]): `--accounts` home directories
//! ([`dataset::generate_accounts`], generated again in place before each run), backed up by
//! one job of ours (`job run night --wait --workers 2 --lanes backup=2`, one process; the
//! accounts added with `account add USER --source HOME`, not timed) and by restic, one
//! repository per account (`restic init` not timed), two `restic backup` processes at a
//! time: a first night, a no-change night and a night after [`dataset::change_accounts`],
//! the tools taking turns. Nights create many files, so none starts within [`SETTLE`] of
//! the runner removing an earlier run's files. With `--s3`, ours also runs a first and a
//! no-change night of `--s3-accounts` accounts into moto through a request counter.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use backup_benches::dataset::{self, Dataset};
use backup_benches::night;
use backup_benches::retention::{self, Overlap, PruneSummary, RetentionRow, RetentionRun, Sample};

#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    secs: f64,
    rss_kib: u64,
}

impl From<Measure> for Sample {
    fn from(m: Measure) -> Self {
        Sample {
            secs: m.secs,
            rss_kib: m.rss_kib,
        }
    }
}

/// One tool's measures over every run.
#[derive(Debug, Default)]
struct Row {
    tool: String,
    initial: Vec<Measure>,
    noop: Vec<Measure>,
    one_percent: Vec<Measure>,
    restore: Measure,
    /// The last run's repository.
    repo_bytes: u64,
}

impl Row {
    /// Peak RSS of the backups, over every run.
    fn backup_rss(&self) -> u64 {
        [&self.initial, &self.noop, &self.one_percent]
            .into_iter()
            .flatten()
            .map(|m| m.rss_kib)
            .max()
            .unwrap_or(0)
    }
}

/// The median wall time of `runs` (the mean of the middle two for an even count).
fn median(runs: &[Measure]) -> f64 {
    let mut secs: Vec<f64> = runs.iter().map(|m| m.secs).collect();
    secs.sort_by(f64::total_cmp);
    match secs.len() {
        0 => 0.0,
        n if n % 2 == 1 => secs[n / 2],
        n => (secs[n / 2 - 1] + secs[n / 2]) / 2.0,
    }
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

/// Runs `cmd` under GNU time, its input `input` read just before; returns wall seconds and
/// peak RSS.
fn timed(cmd: &mut Command, what: &str, input: &Path) -> Measure {
    timed_output(cmd, what, &[input]).0
}

/// [`timed`] with several inputs, returning the command's standard output too.
fn timed_output(cmd: &mut Command, what: &str, inputs: &[&Path]) -> (Measure, Vec<u8>) {
    prepare(inputs);
    Timed::start(cmd, what).finish()
}

/// Every tool starts with no dirty pages of the previous step left to write back, and with
/// its inputs in the page cache.
fn prepare(inputs: &[&Path]) {
    let _ = Command::new("sync").status();
    for input in inputs {
        warm(input);
    }
}

/// A command running under GNU time.
struct Timed {
    child: Child,
    out_file: PathBuf,
    started: Instant,
    what: String,
}

impl Timed {
    fn start(cmd: &Command, what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let out_file = std::env::temp_dir().join(format!(
            "e2e-time-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut wrapped = Command::new("/usr/bin/time");
        wrapped
            .arg("-f")
            .arg("%e %M")
            .arg("-o")
            .arg(&out_file)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        let started = Instant::now();
        let child = wrapped
            .spawn()
            .unwrap_or_else(|e| die(format!("{what}: cannot run (is GNU time installed?): {e}")));
        Timed {
            child,
            out_file,
            started,
            what: what.to_owned(),
        }
    }

    /// Waits for the command; dies if it failed. Returns its wall time and peak RSS, and its
    /// standard output.
    fn finish(self) -> (Measure, Vec<u8>) {
        let what = self.what.clone();
        let (m, output) = self.wait();
        if !output.status.success() {
            die(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        (m, output.stdout)
    }

    /// Waits for the command, failed or not: its wall time and peak RSS, and its output.
    fn wait(self) -> (Measure, std::process::Output) {
        let what = self.what;
        let output = self
            .child
            .wait_with_output()
            .unwrap_or_else(|e| die(format!("{what}: {e}")));
        let wall = self.started.elapsed().as_secs_f64();
        let text = std::fs::read_to_string(&self.out_file).unwrap_or_default();
        let _ = std::fs::remove_file(&self.out_file);
        let last = text.lines().last().unwrap_or("");
        let mut parts = last.split_whitespace();
        let _reported: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(wall);
        let rss_kib = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        (
            Measure {
                secs: wall,
                rss_kib,
            },
            output,
        )
    }
}

/// Runs `cmd` (not timed); dies if it fails; returns its standard output.
fn run_ok(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| die(format!("{what}: {e}")));
    if !out.status.success() {
        die(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    out.stdout
}

fn dir_size(p: &Path) -> u64 {
    files_under(p)
        .iter()
        .map(|(_, f)| std::fs::symlink_metadata(f).map_or(0, |m| m.len()))
        .sum()
}

/// The regular files under `root` (symlinks not followed), each with its path relative to
/// `root` (`/`-separated); unreadable directories are skipped.
fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    fn walk(root: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) {
        if let Ok(rd) = std::fs::read_dir(root.join(rel)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                match e.file_type() {
                    Ok(t) if t.is_dir() => walk(root, &child, out),
                    Ok(t) if t.is_file() => out.push((child, e.path())),
                    _ => {}
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out
}

fn on_path(tool: &str) -> bool {
    Command::new(tool)
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
        || Command::new(tool)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

fn fresh(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap_or_else(|e| die(format!("{}: {e}", dir.display())));
    }
}

#[derive(Clone)]
struct Ctx {
    work: PathBuf,
    data: PathBuf,
    scale: f64,
    dataset: Dataset,
    backupctl: PathBuf,
    /// No restore starts before this (see [`SETTLE`]).
    restores_from: Instant,
}

/// How long ext4 may treat a freed inode as recently deleted and skip it when creating
/// files: a minute, plus five while its inode table block is dirty (`RECENTCY_MIN` and
/// `RECENTCY_DIRTY` in `fs/ext4/ialloc.c`), and a restore's own new files keep those
/// blocks dirty. A restore of 22,000 files within that time of deleting as many took two to
/// four times as long (for every tool; ext4's `recently_deleted` was 65 % of its samples).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(6 * 60 + 30);

/// A tool's repository in one run and, for ours, its state directory.
struct ToolRepo<'a> {
    ctx: &'a Ctx,
    tool: &'a str,
    repo: PathBuf,
    /// Ours: the state directory; restic and borg: their cache (removed with the run).
    state: PathBuf,
    /// Ours: back up as scheduled snapshots (what `forget --keep-*` rotates) rather than
    /// on-demand ones.
    scheduled: bool,
}

impl<'a> ToolRepo<'a> {
    fn new(ctx: &'a Ctx, tool: &'a str, run: usize) -> Self {
        if !["ours", "restic", "rustic", "borg"].contains(&tool) {
            die(format!("unknown tool {tool}"));
        }
        ToolRepo {
            ctx,
            tool,
            repo: ctx.work.join(format!("repo-{tool}-{run}")),
            state: ctx.work.join(format!("state-{tool}-{run}")),
            scheduled: false,
        }
    }

    fn repo_arg(&self) -> String {
        self.repo.display().to_string()
    }

    /// A command of the tool on this repository (borg's `args` name it themselves).
    fn command(&self, args: &[&str]) -> Command {
        let mut c;
        match self.tool {
            "ours" => {
                c = Command::new(&self.ctx.backupctl);
                c.arg("--home").arg(&self.state);
            }
            "restic" => {
                c = Command::new("restic");
                c.env("RESTIC_PASSWORD", "bench")
                    .env("RESTIC_CACHE_DIR", &self.state)
                    .arg("-r")
                    .arg(&self.repo)
                    .arg("-q");
            }
            "rustic" => {
                c = Command::new("rustic");
                c.env("RUSTIC_PASSWORD", "bench").arg("-r").arg(&self.repo);
            }
            _ => {
                c = Command::new("borg");
                c.env("BORG_PASSPHRASE", "bench")
                    .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
                    .env("BORG_CACHE_DIR", &self.state);
            }
        }
        c.args(args);
        c
    }

    /// Creates the repository (ours: the state directory, the destination and the account).
    fn set_up(&self) {
        let r = self.repo_arg();
        let steps = match self.tool {
            "ours" => vec![
                self.command(&["init"]),
                self.command(&["destination", "add", "bench", &format!("file://{r}")]),
                self.command(&["account", "add", "bench", "--encryption", "server"]),
            ],
            "borg" => vec![self.command(&["init", "-e", "repokey", &r])],
            _ => vec![self.command(&["init"])],
        };
        for mut c in steps {
            run_ok(&mut c, &format!("{} set-up", self.tool));
        }
    }

    /// A backup of the dataset as the `n`th snapshot (borg names its archives `s{n}`).
    fn backup(&self, n: usize) -> Command {
        let data = self.ctx.data.display().to_string();
        match self.tool {
            "ours" => {
                let mut c = self.command(&[
                    "backup",
                    "bench",
                    "--source",
                    &data,
                    "--destination",
                    "bench",
                    "--json",
                ]);
                if self.scheduled {
                    c.args(["--kind", "scheduled"]);
                }
                c
            }
            "borg" => {
                let name = self
                    .ctx
                    .data
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut c = self.command(&["create", &format!("{}::s{n}", self.repo_arg()), &name]);
                c.current_dir(self.ctx.data.parent().unwrap_or(Path::new("/")));
                c
            }
            _ => self.command(&["backup", &data]),
        }
    }

    /// Forget all but the newest `keep` snapshots and delete what only they used, as the
    /// tool spells it: the named steps.
    fn forget_and_prune(&self, keep: usize) -> Vec<(&'static str, Command)> {
        let keep = keep.to_string();
        let r = self.repo_arg();
        match self.tool {
            "ours" => vec![
                (
                    "forget",
                    self.command(&["forget", "bench", "--keep-last", &keep, "--json"]),
                ),
                ("prune", self.command(&["prune", "--grace", "0s", "--json"])),
            ],
            "borg" => vec![
                ("prune", self.command(&["prune", "--keep-last", &keep, &r])),
                ("compact", self.command(&["compact", &r])),
            ],
            _ => vec![(
                "forget --prune",
                self.command(&["forget", "--keep-last", &keep, "--prune"]),
            )],
        }
    }

    /// The snapshots (borg: archives) in the repository.
    fn snapshot_count(&self) -> usize {
        let what = format!("{} snapshot list", self.tool);
        match self.tool {
            "borg" => {
                let out = run_ok(
                    &mut self.command(&["list", "--short", &self.repo_arg()]),
                    &what,
                );
                String::from_utf8_lossy(&out).lines().count()
            }
            _ => {
                let mut c = match self.tool {
                    "ours" => self.command(&["snapshots", "bench", "--json"]),
                    _ => self.command(&["snapshots", "--json"]),
                };
                let out = run_ok(&mut c, &what);
                serde_json::from_slice::<Vec<serde_json::Value>>(&out)
                    .unwrap_or_else(|e| die(format!("{what}: {e}")))
                    .len()
            }
        }
    }
}

/// Run `run` of `tool`: initial, no-op and 1 % backups into a fresh repository, added to
/// `row`; after the last run, the restore and the repository's size too.
fn run_tool(ctx: &Ctx, tool: &str, run: usize, last: bool, row: &mut Row) {
    let t = ToolRepo::new(ctx, tool, run);
    let target = ctx.work.join(format!("restore-{tool}"));
    t.set_up();
    let initial = timed(
        &mut t.backup(1),
        &format!("{tool} initial backup"),
        &ctx.data,
    );
    let noop = timed(&mut t.backup(2), &format!("{tool} no-op backup"), &ctx.data);
    ctx.dataset
        .change_one_percent(&ctx.data, ctx.scale)
        .unwrap_or_else(|e| die(e));
    let one_percent = timed(&mut t.backup(3), &format!("{tool} 1% backup"), &ctx.data);
    eprintln!(
        "{tool} run {run}: initial {:.2} s, no-op {:.2} s, 1 % {:.2} s",
        initial.secs, noop.secs, one_percent.secs
    );
    row.initial.push(initial);
    row.noop.push(noop);
    row.one_percent.push(one_percent);
    if !last {
        return;
    }
    // Undo nothing: the restore below restores the latest snapshot, which is the changed data.
    let wait = ctx.restores_from.saturating_duration_since(Instant::now());
    if !wait.is_zero() {
        eprintln!(
            "waiting {:.0} s for the file system to settle after the removal",
            wait.as_secs_f64()
        );
        std::thread::sleep(wait);
    }
    std::fs::create_dir_all(&target).unwrap_or_else(|e| die(e));
    let tgt = target.display().to_string();
    let mut c = match tool {
        "ours" => {
            let out = run_ok(
                &mut t.command(&["snapshots", "bench", "--json"]),
                "ours snapshots",
            );
            let snaps: Vec<serde_json::Value> =
                serde_json::from_slice(&out).unwrap_or_else(|e| die(e));
            let id = snaps
                .last()
                .and_then(|s| s["id"].as_str())
                .unwrap_or_else(|| die("no snapshot"))
                .to_owned();
            t.command(&["restore", "bench", "--target", &tgt, "--snapshot", &id])
        }
        "restic" => t.command(&["restore", "latest", "--target", &tgt]),
        "rustic" => t.command(&["restore", "latest", &tgt]),
        _ => {
            let mut c = t.command(&["extract", &format!("{}::s3", t.repo_arg())]);
            c.current_dir(&target);
            c
        }
    };
    row.restore = timed(&mut c, &format!("{tool} restore"), &t.repo);
    eprintln!("{tool} restore: {:.2} s", row.restore.secs);
    row.repo_bytes = dir_size(&t.repo);
    if tool == "ours" {
        // Prove the restore: every file equal to the source.
        let restored = target.join("home");
        let diff = backup_examples_compare(&ctx.data, &restored);
        if let Some(d) = diff {
            die(format!("our restore differs from the source: {d}"));
        }
    }
}

/// What the retention case does in each run.
#[derive(Debug, Clone, Copy)]
struct RetentionCase {
    backups: usize,
    keep_last: usize,
    /// Leave each run's repositories (else they go once measured, to bound the disk used).
    keep: bool,
    /// Ours: measure a backup beside a prune (on a copy of the repository).
    overlap: bool,
}

/// Run `run` of `tool` in the retention case, added to `row`: `backups` backups into a
/// fresh repository, one round of changes before each, then forget and prune, timed; for
/// ours also [`overlap`].
fn run_retention(ctx: &Ctx, tool: &str, run: usize, case: RetentionCase, row: &mut RetentionRow) {
    // The tools share one dataset, generated afresh before each: the rounds' directories
    // go and every other file is written again in place (no mass deletion).
    fresh(&ctx.data.join(dataset::ROUNDS_DIR));
    ctx.dataset
        .generate(&ctx.data, ctx.scale)
        .unwrap_or_else(|e| die(e));
    let t = ToolRepo {
        scheduled: true,
        ..ToolRepo::new(ctx, tool, run)
    };
    t.set_up();
    let mut result = RetentionRun::default();
    for n in 1..=case.backups {
        dataset::change_two_percent(&ctx.data, ctx.scale, n as u64).unwrap_or_else(|e| die(e));
        let m = timed(&mut t.backup(n), &format!("{tool} backup {n}"), &ctx.data);
        if n == 1 {
            result.initial = m.into();
        } else {
            result.backups.push(m.into());
        }
    }
    result.bytes_before = dir_size(&t.repo);
    // Ours: a copy before anything is forgotten, for the backup beside a prune.
    let twin = (tool == "ours" && case.overlap).then(|| {
        let twin = (
            t.repo.with_file_name(format!("repo-{tool}-{run}-twin")),
            t.state.with_file_name(format!("state-{tool}-{run}-twin")),
        );
        copy_tree(&t.repo, &twin.0);
        copy_tree(&t.state, &twin.1);
        twin
    });
    let mut outputs = Vec::new();
    for (name, mut c) in t.forget_and_prune(case.keep_last) {
        let (m, out) = timed_output(&mut c, &format!("{tool} {name}"), &[&t.repo]);
        result.steps.push((name.to_owned(), m.into()));
        outputs.push(out);
    }
    result.bytes_after = dir_size(&t.repo);
    result.snapshots_left = t.snapshot_count();
    eprintln!(
        "{tool} run {run}: initial {:.2} s, later backups {:.2}-{:.2} s, {} {:.2} s, repository {:.1} -> {:.1} MB, {} snapshots left",
        result.initial.secs,
        result
            .backups
            .iter()
            .map(|s| s.secs)
            .fold(f64::INFINITY, f64::min),
        result.backups.iter().map(|s| s.secs).fold(0.0, f64::max),
        result
            .steps
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" + "),
        result.collect_secs(),
        result.bytes_before as f64 / 1e6,
        result.bytes_after as f64 / 1e6,
        result.snapshots_left
    );
    let expected = case.keep_last.min(case.backups).max(1);
    if result.snapshots_left != expected {
        eprintln!(
            "warning: {tool} kept {} snapshots, not {expected}: its figures are not comparable",
            result.snapshots_left
        );
    }
    if tool == "ours" {
        let forgotten = retention::forgotten_count(&ours_json(&outputs[0], "forget"));
        let summary = PruneSummary::from_json(&ours_json(&outputs[1], "prune"));
        eprintln!(
            "ours run {run}: forgot {forgotten}; prune deleted {} packs ({:.1} MB), repacked {}, skipped {}",
            summary.deleted_packs,
            summary.deleted_bytes as f64 / 1e6,
            summary.repacked_packs,
            summary.repack_skipped
        );
        row.prunes.push(summary);
        if let Some(twin) = twin {
            let prune_alone = result.steps.last().map_or(0.0, |(_, s)| s.secs);
            row.overlaps.push(overlap(&t, twin, case, prune_alone));
        }
    }
    row.runs.push(result);
    if !case.keep {
        for dir in [&t.repo, &t.state] {
            fresh(dir);
            fresh(&pruned(dir));
        }
    }
}

/// The JSON `backupctl COMMAND --json` printed.
fn ours_json(out: &[u8], command: &str) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| die(format!("ours {command} --json: {e}")))
}

/// Where [`overlap`] sets a measured repository or state directory aside.
fn pruned(dir: &Path) -> PathBuf {
    dir.with_file_name(format!(
        "{}-pruned",
        dir.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Our backup alone and during a prune, on `twin`, the copy of `t`'s repository and state
/// directory taken before forget. The copy takes the original's place (the catalog names
/// the repository by its path; the original is kept as `*-pruned`), forgets as the timed run
/// did, then backs up a round of changes alone; then it starts a prune and, after
/// [`retention::BACKUP_DURING_PRUNE_AT`] of `prune_alone`, backs up the next round.
fn overlap(
    t: &ToolRepo,
    twin: (PathBuf, PathBuf),
    case: RetentionCase,
    prune_alone: f64,
) -> Overlap {
    let ctx = t.ctx;
    for (original, copy) in [(&t.repo, &twin.0), (&t.state, &twin.1)] {
        std::fs::rename(original, pruned(original)).unwrap_or_else(|e| die(e));
        std::fs::rename(copy, original).unwrap_or_else(|e| die(e));
    }
    let (_, mut forget) = t.forget_and_prune(case.keep_last).swap_remove(0);
    run_ok(&mut forget, "ours forget (copy)");
    let n = case.backups + 1;
    dataset::change_two_percent(&ctx.data, ctx.scale, n as u64).unwrap_or_else(|e| die(e));
    let (alone, _) = timed_output(&mut t.backup(n), "ours backup alone", &[&ctx.data, &t.repo]);
    dataset::change_two_percent(&ctx.data, ctx.scale, n as u64 + 1).unwrap_or_else(|e| die(e));
    prepare(&[&ctx.data, &t.repo]);
    let t0 = Instant::now();
    let prune = Timed::start(
        &t.command(&["prune", "--grace", "0s", "--json"]),
        "ours prune beside a backup",
    );
    let prune = std::thread::spawn(move || prune.finish());
    std::thread::sleep(std::time::Duration::from_secs_f64(
        prune_alone * retention::BACKUP_DURING_PRUNE_AT,
    ));
    let started_after = t0.elapsed().as_secs_f64();
    let (during, _) = Timed::start(&t.backup(n + 1), "ours backup during prune").finish();
    let backup_end = t0.elapsed().as_secs_f64();
    let (prune, out) = prune
        .join()
        .unwrap_or_else(|_| die("the prune's waiting thread panicked"));
    let o = Overlap {
        alone: alone.into(),
        during: during.into(),
        prune: prune.into(),
        started_after,
        ended_first: backup_end < prune.secs,
        summary: PruneSummary::from_json(&ours_json(&out, "prune")),
    };
    eprintln!(
        "ours backup alone {:.2} s, during prune {:.2} s (started {:.2} s into a prune of {:.2} s)",
        o.alone.secs, o.during.secs, o.started_after, o.prune.secs
    );
    o
}

/// What the night case does in each run (`--case night`).
#[derive(Debug, Clone)]
struct NightCase {
    accounts: usize,
    seed: u64,
    /// Run the night after about 2 % of the files changed.
    changed_night: bool,
    /// Measure our S3 requests (on `s3_accounts` accounts), when moto is there.
    s3: bool,
    s3_accounts: usize,
    runs: usize,
    keep: bool,
}

/// The night case's directories and tools for one run.
struct NightCtx<'a> {
    case: &'a NightCase,
    work: &'a Path,
    data: &'a Path,
    backupctl: &'a Path,
    run: usize,
}

impl NightCtx<'_> {
    fn home(&self, i: usize) -> PathBuf {
        self.data.join(dataset::account_name(i))
    }

    /// Ours: the state directory and repository of this run (`tag` apart).
    fn ours_dirs(&self, tag: &str) -> (PathBuf, PathBuf) {
        (
            self.work
                .join(format!("state-ours-night{tag}-{}", self.run)),
            self.work.join(format!("repo-ours-night{tag}-{}", self.run)),
        )
    }

    /// restic: the directory of the run's repositories (one per account) and its cache.
    fn restic_dirs(&self) -> (PathBuf, PathBuf) {
        (
            self.work.join(format!("repo-restic-night-{}", self.run)),
            self.work.join(format!("state-restic-night-{}", self.run)),
        )
    }

    fn restic(&self, i: usize, args: &[&str]) -> Command {
        let (repos, cache) = self.restic_dirs();
        let mut c = Command::new("restic");
        c.env("RESTIC_PASSWORD", "bench")
            .env("RESTIC_CACHE_DIR", cache)
            .arg("-r")
            .arg(repos.join(dataset::account_name(i)))
            .arg("-q")
            .args(args);
        c
    }
}

/// `backupctl --home STATE ARGS...`.
fn ours_at(backupctl: &Path, state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(backupctl);
    c.arg("--home").arg(state).args(args);
    c
}

/// Our server for accounts `0..accounts`: the state directory, a destination `d` at `url`,
/// an account per home directory (`account add USER --source HOME --encryption server`, one
/// process each) and the job (`job add night --destination d --schedule manual`). Returns
/// the wall seconds.
fn night_ours_set_up(ctx: &NightCtx, state: &Path, url: &str, accounts: usize) -> f64 {
    let t0 = Instant::now();
    let run = |args: &[&str], what: &str| {
        run_ok(&mut ours_at(ctx.backupctl, state, args), what);
    };
    run(&["init"], "ours init");
    run(&["destination", "add", "d", url], "ours destination add");
    for i in 0..accounts {
        let user = dataset::account_name(i);
        let home = ctx.home(i).display().to_string();
        run(
            &[
                "account",
                "add",
                &user,
                "--source",
                &home,
                "--encryption",
                "server",
            ],
            &format!("ours account add {user}"),
        );
    }
    run(
        &[
            "job",
            "add",
            night::JOB,
            "--destination",
            "d",
            "--schedule",
            "manual",
        ],
        "ours job add",
    );
    t0.elapsed().as_secs_f64()
}

/// One night of ours: `job run night --wait --workers 2 --lanes backup=2 --json`, timed
/// with its peak RSS, the dataset read first; `Err` unless it exits 0 with every one of
/// `accounts` tasks `done`.
fn night_ours(
    ctx: &NightCtx,
    state: &Path,
    accounts: usize,
    what: &str,
) -> Result<Measure, String> {
    let lanes = night::LANES.to_string();
    let c = ours_at(
        ctx.backupctl,
        state,
        &[
            "job",
            "run",
            night::JOB,
            "--wait",
            "--workers",
            &lanes,
            "--lanes",
            &format!("backup={lanes}"),
            "--json",
        ],
    );
    let homes: Vec<PathBuf> = (0..accounts).map(|i| ctx.home(i)).collect();
    prepare(&homes.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let (m, out) = Timed::start(&c, what).wait();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let states = night::TaskStates::from_json(&doc);
    let checked = states.check(accounts);
    if !out.status.success() || checked.is_err() {
        return Err(format!(
            "{what}: {} ({}); stderr: {}",
            out.status,
            checked.err().unwrap_or_else(|| "every task done".into()),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take(10)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    Ok(m)
}

/// restic's set-up: `restic init` of a repository per account, [`night::LANES`] at a time.
/// Returns the wall seconds.
fn night_restic_set_up(ctx: &NightCtx) -> f64 {
    let (repos, _) = ctx.restic_dirs();
    std::fs::create_dir_all(&repos).unwrap_or_else(|e| die(e));
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..night::LANES {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= ctx.case.accounts {
                        break;
                    }
                    run_ok(&mut ctx.restic(i, &["init"]), "restic init");
                }
            });
        }
    });
    t0.elapsed().as_secs_f64()
}

/// One night of restic: `restic backup HOME` into each account's repository,
/// [`night::LANES`] processes at a time, each account's home read just before its backup.
/// The night's time is the longest lane's time in restic (those reads left out); the RSS
/// is that of the largest process.
fn night_restic(ctx: &NightCtx, what: &str) -> Measure {
    prepare(&[]);
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    let lanes: Vec<Measure> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..night::LANES)
            .map(|_| {
                s.spawn(|| {
                    let mut lane = Measure::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= ctx.case.accounts {
                            break;
                        }
                        let home = ctx.home(i);
                        warm(&home);
                        let c = ctx.restic(i, &["backup", &home.display().to_string()]);
                        let (m, _) = Timed::start(&c, &format!("{what}, account {i}")).finish();
                        lane.secs += m.secs;
                        lane.rss_kib = lane.rss_kib.max(m.rss_kib);
                    }
                    lane
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| die("a restic lane panicked")))
            .collect()
    });
    let m = Measure {
        secs: lanes.iter().map(|l| l.secs).fold(0.0, f64::max),
        rss_kib: lanes.iter().map(|l| l.rss_kib).max().unwrap_or(0),
    };
    eprintln!(
        "{what}: {:.2} s in restic's lanes ({:.2} s of wall time with the reads before each account)",
        m.secs,
        t0.elapsed().as_secs_f64()
    );
    m
}

/// The night case: `runs` runs, each generating the accounts again in place, setting every
/// tool up, then the nights, the tools taking turns; then our S3 requests when asked.
fn night_case(work: &Path, backupctl: &Path, tools: &[String], case: &NightCase) {
    std::fs::create_dir_all(work).unwrap_or_else(|e| die(e));
    let work = work.canonicalize().unwrap_or_else(|e| die(e));
    // Nights create many files (packs, restic's repositories): none starts within SETTLE
    // of removing an earlier run's leftovers (generating and setting up run meanwhile).
    let nights_from = if clean(&work) {
        eprintln!(
            "removed an earlier run's files: the first night waits until {} s after that",
            SETTLE.as_secs()
        );
        Instant::now() + SETTLE
    } else {
        Instant::now()
    };
    let data = work.join("data");
    let mut stats = dataset::DatasetStats::default();
    let mut rows: Vec<night::NightRow> = tools
        .iter()
        .map(|t| night::NightRow {
            tool: t.clone(),
            ..Default::default()
        })
        .collect();
    for run in 1..=case.runs {
        let started = Instant::now();
        stats =
            dataset::generate_accounts(&data, case.accounts, case.seed).unwrap_or_else(|e| die(e));
        eprintln!(
            "run {run}: {} accounts, {} files, {:.0} MiB (generated in {:.1} s)",
            case.accounts,
            stats.files,
            stats.bytes as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        );
        let ctx = NightCtx {
            case,
            work: &work,
            data: &data,
            backupctl,
            run,
        };
        let mut results: Vec<night::NightRun> = Vec::new();
        for tool in tools {
            let set_up_secs = match tool.as_str() {
                "ours" => {
                    let (state, repo) = ctx.ours_dirs("");
                    let url = format!("file://{}", repo.display());
                    night_ours_set_up(&ctx, &state, &url, case.accounts)
                }
                _ => night_restic_set_up(&ctx),
            };
            eprintln!("{tool} set-up: {set_up_secs:.1} s");
            results.push(night::NightRun {
                set_up_secs,
                ..Default::default()
            });
        }
        let wait = nights_from.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            eprintln!(
                "waiting {:.0} s for the file system to settle after the removal",
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
        }
        let mut nights = vec![night::Night::First, night::Night::NoChange];
        if case.changed_night {
            nights.push(night::Night::Changed);
        }
        for n in nights {
            if n == night::Night::Changed {
                let changed =
                    dataset::change_accounts(&data, case.accounts, 1).unwrap_or_else(|e| die(e));
                eprintln!("changed {changed} files");
            }
            for (tool, result) in tools.iter().zip(&mut results) {
                let what = format!("{tool} {} (run {run})", n.label());
                let m = match tool.as_str() {
                    "ours" => night_ours(&ctx, &ctx.ours_dirs("").0, case.accounts, &what)
                        .unwrap_or_else(|e| die(e)),
                    _ => night_restic(&ctx, &what),
                };
                eprintln!(
                    "{what}: {:.2} s, peak RSS {:.0} MiB",
                    m.secs,
                    m.rss_kib as f64 / 1024.0
                );
                result.set(n, m.into());
            }
        }
        for ((tool, result), row) in tools.iter().zip(results).zip(&mut rows) {
            let repo = match tool.as_str() {
                "ours" => ctx.ours_dirs("").1,
                _ => ctx.restic_dirs().0,
            };
            row.runs.push(night::NightRun {
                repo_bytes: dir_size(&repo),
                ..result
            });
        }
    }
    night::print_tables(&rows, case.accounts, stats);
    let s3 = if !case.s3 {
        night::S3Outcome::NotAsked
    } else if !tools.iter().any(|t| t == "ours") {
        night::S3Outcome::Skipped("ours is not among the tools".into())
    } else {
        let ctx = NightCtx {
            case,
            work: &work,
            data: &data,
            backupctl,
            run: case.runs,
        };
        night_s3(&ctx)
    };
    night::print_s3(&s3);
    if !case.keep {
        clean(&work);
    }
}

/// Our first and no-change nights of the first `--s3-accounts` accounts into an S3
/// destination (moto, from `scripts/test-servers/start.sh`: `BACKUP_TEST_S3_ENDPOINT`,
/// `BACKUP_TEST_S3_BUCKET` and the `AWS_*` credentials), through a [`night::RequestCounter`]
/// that counts the requests. The objects stay in moto (in memory) under a fresh prefix.
fn night_s3(ctx: &NightCtx) -> night::S3Outcome {
    let Ok(endpoint) = std::env::var("BACKUP_TEST_S3_ENDPOINT") else {
        return night::S3Outcome::Skipped(
            "no BACKUP_TEST_S3_ENDPOINT: start moto with `eval \"$(scripts/test-servers/start.sh)\"`"
                .into(),
        );
    };
    let bucket = std::env::var("BACKUP_TEST_S3_BUCKET").unwrap_or_else(|_| "backup-test".into());
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if endpoint.starts_with("https://") || upstream.contains('/') {
        return night::S3Outcome::Skipped(format!(
            "{endpoint}: the request counter relays plain http://HOST:PORT only"
        ));
    }
    let counter = match night::RequestCounter::start(&upstream) {
        Ok(c) => c,
        Err(e) => return night::S3Outcome::Skipped(format!("request counter: {e}")),
    };
    let accounts = ctx.case.s3_accounts.min(ctx.case.accounts);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let url = format!(
        "s3://{bucket}/e2e-night-{}-{secs}?endpoint={}&allow_http=true",
        std::process::id(),
        counter.endpoint()
    );
    let (state, _) = ctx.ours_dirs("-s3");
    let set_up = night_ours_set_up(ctx, &state, &url, accounts);
    eprintln!("ours S3 set-up ({accounts} accounts): {set_up:.1} s");
    counter.take();
    let mut nights = Vec::new();
    for n in [night::Night::First, night::Night::NoChange] {
        let what = format!("ours {} to S3", n.label());
        match night_ours(ctx, &state, accounts, &what) {
            Ok(m) => {
                let counts = counter.take();
                eprintln!(
                    "{what}: {:.2} s, {} requests ({})",
                    m.secs,
                    counts.total(),
                    counts.per(1)
                );
                nights.push((m.secs, counts));
            }
            Err(e) => return night::S3Outcome::Skipped(format!("the night failed: {e}")),
        }
    }
    let no_change = nights.pop().unwrap_or_default();
    let first = nights.pop().unwrap_or_default();
    night::S3Outcome::Measured(night::S3Report {
        accounts,
        first,
        no_change,
    })
}

/// Copies `from` to `to` (`cp -a`).
fn copy_tree(from: &Path, to: &Path) {
    fresh(to);
    run_ok(
        Command::new("cp").arg("-a").arg(from).arg(to),
        &format!("copying {}", from.display()),
    );
}

/// Reads every file under `dir` (symlinks not followed), so that the timed step right after
/// it finds its input in the page cache, as the table says. Needed on hosts that take cached
/// pages back: the virtual machine of docs/performance.md pages out file pages left
/// untouched for about 6 s (a DAMON `pageout` scheme); 30 s after a full read only 72 % of
/// the dataset was still cached, and a backup then waited on the disk.
fn warm(dir: &Path) {
    let mut buf = vec![0; 1 << 20];
    for (_, path) in files_under(dir) {
        if let Ok(mut f) = std::fs::File::open(path) {
            while matches!(std::io::Read::read(&mut f, &mut buf), Ok(n) if n > 0) {}
        }
    }
}

/// Compares two trees file by file (contents only).
fn backup_examples_compare(a: &Path, b: &Path) -> Option<String> {
    let (mut x, mut y) = (files_under(a), files_under(b));
    x.sort();
    y.sort();
    if x.len() != y.len() {
        return Some(format!("{} files vs {} files", x.len(), y.len()));
    }
    for ((ra, pa), (rb, pb)) in x.iter().zip(&y) {
        if ra != rb {
            return Some(format!("{ra} vs {rb}"));
        }
        if std::fs::read(pa).ok() != std::fs::read(pb).ok() {
            return Some(format!("{ra}: contents differ"));
        }
    }
    None
}

fn main() {
    let mut scale = 1.0f64;
    let mut dataset = Dataset::Hosting;
    let mut work = PathBuf::from("/tmp/backup-bench");
    let mut tools = vec!["ours", "restic", "borg", "rustic"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    let mut backupctl = PathBuf::from("target/release/examples/backupctl");
    let mut keep = false;
    let mut runs = 3usize;
    let mut retention_wanted = false;
    let mut backups = retention::DEFAULT_BACKUPS;
    let mut keep_last = retention::DEFAULT_KEEP_LAST;
    let mut tools_given = false;
    let mut overlap = true;
    let mut night_wanted = false;
    let mut runs_given = false;
    let mut accounts = night::DEFAULT_ACCOUNTS;
    let mut seed = dataset::DEFAULT_ACCOUNTS_SEED;
    let mut s3 = false;
    let mut s3_accounts = night::DEFAULT_S3_ACCOUNTS;
    let mut changed_night = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| die(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--scale" => scale = value().parse().unwrap_or_else(|e| die(e)),
            "--runs" => {
                runs = value().parse().unwrap_or_else(|e| die(e));
                if runs == 0 {
                    die("--runs needs at least 1");
                }
                runs_given = true;
            }
            "--dir" => work = PathBuf::from(value()),
            "--tools" => {
                tools = value().split(',').map(String::from).collect();
                tools_given = true;
            }
            "--case" => {
                (retention_wanted, night_wanted) = match value().as_str() {
                    "backup" => (false, false),
                    "retention" => (true, false),
                    "night" => (false, true),
                    other => die(format!("unknown case {other}: backup, retention or night")),
                }
            }
            "--backups" => {
                backups = value().parse().unwrap_or_else(|e| die(e));
                if backups == 0 {
                    die("--backups needs at least 1");
                }
            }
            "--keep-last" => {
                keep_last = value().parse().unwrap_or_else(|e| die(e));
                if keep_last == 0 {
                    die("--keep-last needs at least 1");
                }
            }
            "--backupctl" => backupctl = PathBuf::from(value()),
            "--keep" => keep = true,
            "--no-overlap" => overlap = false,
            "--accounts" => {
                accounts = value().parse().unwrap_or_else(|e| die(e));
                if accounts == 0 {
                    die("--accounts needs at least 1");
                }
            }
            "--seed" => seed = value().parse().unwrap_or_else(|e| die(e)),
            "--s3" => s3 = true,
            "--s3-accounts" => {
                s3_accounts = value().parse().unwrap_or_else(|e| die(e));
                if s3_accounts == 0 {
                    die("--s3-accounts needs at least 1");
                }
            }
            "--no-changed-night" => changed_night = false,
            "--dataset" => {
                dataset = match value().as_str() {
                    "hosting" => Dataset::Hosting,
                    "small-files" => Dataset::SmallFiles,
                    other => die(format!("unknown dataset {other}: hosting or small-files")),
                }
            }
            "--help" | "-h" => {
                println!(
                    "e2e [--case backup|retention|night] [--scale F] [--runs N] [--dir DIR] [--tools ours,restic,borg,rustic] [--backupctl PATH] [--dataset hosting|small-files] [--keep]\n\
                     \x20   [--backups N] [--keep-last N] [--no-overlap] [--accounts N] [--seed N] [--no-changed-night] [--s3] [--s3-accounts N]\n\
                     --case backup (default): initial, no-op and 1 % backups, then a full restore\n\
                     --case retention: --backups N backups (default 30) of the hosting dataset, 2 % of its files changed before each,\n\
                     \x20   then forget keeping the last --keep-last N (default 7) and prune; tools ours, restic and borg;\n\
                     \x20   --no-overlap skips our backup beside a prune (and the copy of our repository it needs)\n\
                     --case night: a night on a hosting server: --accounts N home directories (default 500, about 1.1 GiB), one job of ours\n\
                     \x20   (`job run --wait --workers 2 --lanes backup=2`) against restic with a repository per account, 2 at a time;\n\
                     \x20   a first night, a no-change night and (unless --no-changed-night) a night after 2 % of the files changed;\n\
                     \x20   tools ours and restic; --runs defaults to 1 here; --seed N another dataset of the same shape;\n\
                     \x20   --s3 also counts our S3 requests per account on a no-change night, on --s3-accounts N accounts (default 50),\n\
                     \x20   against moto (BACKUP_TEST_S3_ENDPOINT: eval \"$(scripts/test-servers/start.sh)\")\n\
                     --dataset small-files: 40,000 files of 0.5-16 KiB (at scale 1) instead of the hosting dataset\n\
                     --runs N backs up N times (fresh repositories, tools taking turns) and reports medians (default 3)\n\
                     --keep leaves the datasets, repositories and restores in DIR"
                );
                return;
            }
            other => die(format!("unknown argument {other}")),
        }
    }
    if !backupctl.exists() {
        die(format!(
            "{} not found: run `cargo build --release --example backupctl` first",
            backupctl.display()
        ));
    }
    let backupctl = backupctl.canonicalize().unwrap_or(backupctl);
    if night_wanted {
        if !tools_given {
            tools = vec!["ours".into(), "restic".into()];
        } else if let Some(t) = tools.iter().find(|t| *t != "ours" && *t != "restic") {
            die(format!(
                "--case night: {t} is not part of it (ours, restic)"
            ));
        }
        let available: Vec<String> = tools
            .into_iter()
            .filter(|t| {
                let ok = t == "ours" || on_path(t);
                if !ok {
                    eprintln!("{t} is not on PATH: skipped");
                }
                ok
            })
            .collect();
        let case = NightCase {
            accounts,
            seed,
            changed_night,
            s3,
            s3_accounts,
            runs: if runs_given { runs } else { 1 },
            keep,
        };
        night_case(&work, &backupctl, &available, &case);
        return;
    }
    let retention_case = retention_wanted.then_some(RetentionCase {
        backups,
        keep_last,
        keep,
        overlap,
    });
    if retention_case.is_some() {
        if dataset != Dataset::Hosting {
            die("--case retention runs on the hosting dataset only");
        }
        if !tools_given {
            tools.retain(|t| t != "rustic");
        } else if tools.iter().any(|t| t == "rustic") {
            die("--case retention: rustic is not part of it (ours, restic, borg)");
        }
    }
    let available: Vec<String> = tools
        .into_iter()
        .filter(|t| {
            let ok = t == "ours" || on_path(t);
            if !ok {
                eprintln!("{t} is not on PATH: skipped");
            }
            ok
        })
        .collect();
    std::fs::create_dir_all(&work).unwrap_or_else(|e| die(e));
    // Nothing is deleted while tools run, and no restore starts within SETTLE of removing
    // an earlier run's leftovers (the backups run meanwhile).
    let restores_from = if clean(&work) && retention_case.is_none() {
        eprintln!(
            "removed an earlier run's files: restores wait until {} s after that",
            SETTLE.as_secs()
        );
        Instant::now() + SETTLE
    } else {
        Instant::now()
    };
    // Each tool gets the same freshly generated dataset (the 1 % change mutates it).
    // The retention case resets one shared dataset before each tool's run.
    let mut ctxs: Vec<Ctx> = Vec::new();
    for tool in &available {
        let data = match retention_case {
            Some(_) => work.join("data"),
            None => work.join(format!("data-{tool}")),
        };
        if retention_case.is_some() && !ctxs.is_empty() {
            ctxs.push(Ctx {
                data,
                ..ctxs[0].clone()
            });
            continue;
        }
        let started = Instant::now();
        let stats = dataset.generate(&data, scale).unwrap_or_else(|e| die(e));
        eprintln!(
            "dataset for {tool}: {} files, {:.0} MiB (generated in {:.1} s)",
            stats.files,
            stats.bytes as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        );
        ctxs.push(Ctx {
            work: work.clone(),
            data,
            scale,
            dataset,
            backupctl: backupctl.clone(),
            restores_from,
        });
    }
    if let Some(case) = retention_case {
        let mut rows: Vec<RetentionRow> = available
            .iter()
            .map(|tool| RetentionRow {
                tool: tool.clone(),
                ..Default::default()
            })
            .collect();
        for run in 1..=runs {
            for ((tool, ctx), row) in available.iter().zip(&ctxs).zip(&mut rows) {
                run_retention(ctx, tool, run, case, row);
            }
        }
        retention::print_tables(&rows, case.backups, case.keep_last);
        if !keep {
            clean(&work);
        }
        return;
    }
    let mut rows: Vec<Row> = available
        .iter()
        .map(|tool| Row {
            tool: tool.clone(),
            ..Default::default()
        })
        .collect();
    for run in 1..=runs {
        for ((tool, ctx), row) in available.iter().zip(&ctxs).zip(&mut rows) {
            run_tool(ctx, tool, run, run == runs, row);
        }
    }
    print_table(&rows, runs);
    if !keep {
        clean(&work);
    }
}

/// Removes what a run leaves in `work`; returns whether there was anything.
fn clean(work: &Path) -> bool {
    let mut any = false;
    for e in std::fs::read_dir(work).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if ["data", "repo-", "state-", "restore-"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            fresh(&e.path());
            any = true;
        }
    }
    any
}

fn print_table(rows: &[Row], runs: usize) {
    let mib = |k: u64| k as f64 / 1024.0;
    println!("Backups: median of {runs} run(s), each into a fresh repository; restore: once.");
    println!();
    println!(
        "| tool | initial backup (s) | no-op backup (s) | 1 % changed (s) | full restore (s) | peak RSS backup / restore (MiB) | repository (MB) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} / {:.0} | {:.1} |",
            r.tool,
            median(&r.initial),
            median(&r.noop),
            median(&r.one_percent),
            r.restore.secs,
            mib(r.backup_rss()),
            mib(r.restore.rss_kib),
            r.repo_bytes as f64 / 1e6
        );
    }
    let Some(ours) = rows.iter().find(|r| r.tool == "ours") else {
        return;
    };
    println!();
    println!(
        "| ours vs | initial (x faster) | no-op (x faster) | 1 % (x faster) | restore (x faster) | peak RSS (ours/peer) | repository (ours/peer) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let peak = |x: &Row| x.backup_rss().max(x.restore.rss_kib);
    for r in rows.iter().filter(|r| r.tool != "ours") {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} |",
            r.tool,
            median(&r.initial) / median(&ours.initial),
            median(&r.noop) / median(&ours.noop),
            median(&r.one_percent) / median(&ours.one_percent),
            r.restore.secs / ours.restore.secs,
            peak(ours) as f64 / peak(r).max(1) as f64,
            ours.repo_bytes as f64 / r.repo_bytes.max(1) as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(all: &[f64]) -> Vec<Measure> {
        all.iter()
            .map(|&secs| Measure { secs, rss_kib: 0 })
            .collect()
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&secs(&[3.0, 1.0, 2.0])), 2.0);
        assert_eq!(median(&secs(&[4.0, 1.0, 3.0, 2.0])), 2.5);
        assert_eq!(median(&secs(&[7.5])), 7.5);
        assert_eq!(median(&[]), 0.0);
    }
}
