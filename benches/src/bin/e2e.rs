//! End-to-end runner: backs up one deterministic dataset with our engine (through the
//! `backupctl` example) and with restic, borg and rustic when they are on PATH, in the same
//! run, and prints a table of times, peak memory, repository sizes and our ratio to each.
//!
//! ```text
//! cargo build --release --example backupctl
//! cargo run --release -p backup-benches --bin e2e -- [--scale 1.0] [--runs 3] [--dir /tmp/backup-bench] [--tools ours,restic,borg,rustic] [--dataset hosting|small-files] [--keep]
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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use backup_benches::dataset::Dataset;

#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    secs: f64,
    rss_kib: u64,
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
    let out_file = std::env::temp_dir().join(format!("e2e-time-{}", std::process::id()));
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut wrapped = Command::new("/usr/bin/time");
    wrapped
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&out_file)
        .arg(program)
        .args(args);
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    // Every tool starts with no dirty pages of the previous step left to write back, and
    // with its input in the page cache.
    let _ = Command::new("sync").status();
    warm(input);
    let started = Instant::now();
    let output = wrapped
        .output()
        .unwrap_or_else(|e| die(format!("{what}: cannot run (is GNU time installed?): {e}")));
    let wall = started.elapsed().as_secs_f64();
    if !output.status.success() {
        die(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    let last = text.lines().last().unwrap_or("");
    let mut parts = last.split_whitespace();
    let _reported: f64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(wall);
    let rss_kib = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Measure {
        secs: wall,
        rss_kib,
    }
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

/// Run `run` of `tool`: initial, no-op and 1 % backups into a fresh repository, added to
/// `row`; after the last run, the restore and the repository's size too.
fn run_tool(ctx: &Ctx, tool: &str, run: usize, last: bool, row: &mut Row) {
    let repo = ctx.work.join(format!("repo-{tool}-{run}"));
    let state = ctx.work.join(format!("state-{tool}-{run}"));
    let target = ctx.work.join(format!("restore-{tool}"));
    let data = ctx.data.display().to_string();
    let r = repo.display().to_string();
    let ours = |args: &[&str]| {
        let mut c = Command::new(&ctx.backupctl);
        c.arg("--home").arg(&state).args(args);
        c
    };
    let restic = |args: &[&str]| {
        let mut c = Command::new("restic");
        c.env("RESTIC_PASSWORD", "bench")
            .arg("-r")
            .arg(&r)
            .arg("-q")
            .args(args);
        c
    };
    let rustic = |args: &[&str]| {
        let mut c = Command::new("rustic");
        c.env("RUSTIC_PASSWORD", "bench")
            .arg("-r")
            .arg(&r)
            .args(args);
        c
    };
    let borg = |args: &[&str]| {
        let mut c = Command::new("borg");
        c.env("BORG_PASSPHRASE", "bench")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .args(args);
        c
    };
    let parent = ctx.data.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = ctx
        .data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();

    // Set-up (not timed).
    let setup: Vec<Command> = match tool {
        "ours" => vec![
            ours(&["init"]),
            ours(&["destination", "add", "bench", &format!("file://{r}")]),
            ours(&["account", "add", "bench", "--encryption", "server"]),
        ],
        "restic" => vec![restic(&["init"])],
        "rustic" => vec![rustic(&["init"])],
        "borg" => vec![borg(&["init", "-e", "repokey", &r])],
        _ => die(format!("unknown tool {tool}")),
    };
    for mut c in setup {
        let out = c
            .output()
            .unwrap_or_else(|e| die(format!("{tool} set-up: {e}")));
        if !out.status.success() {
            die(format!(
                "{tool} set-up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    let mut n = 0;
    let mut backup = |label: &str| {
        n += 1;
        let mut c = match tool {
            "ours" => ours(&[
                "backup",
                "bench",
                "--source",
                &data,
                "--destination",
                "bench",
                "--json",
            ]),
            "restic" => restic(&["backup", &data]),
            "rustic" => rustic(&["backup", &data]),
            _ => {
                let mut c = borg(&["create", &format!("{r}::s{n}"), &name]);
                c.current_dir(&parent);
                c
            }
        };
        timed(&mut c, &format!("{tool} {label}"), &ctx.data)
    };
    let initial = backup("initial backup");
    let noop = backup("no-op backup");
    ctx.dataset
        .change_one_percent(&ctx.data, ctx.scale)
        .unwrap_or_else(|e| die(e));
    let one_percent = backup("1% backup");
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
    let t = target.display().to_string();
    let mut c = match tool {
        "ours" => {
            let out = ours(&["snapshots", "bench", "--json"])
                .output()
                .unwrap_or_else(|e| die(e));
            let snaps: Vec<serde_json::Value> =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| die(e));
            let id = snaps
                .last()
                .and_then(|s| s["id"].as_str())
                .unwrap_or_else(|| die("no snapshot"))
                .to_owned();
            ours(&["restore", "bench", "--target", &t, "--snapshot", &id])
        }
        "restic" => restic(&["restore", "latest", "--target", &t]),
        "rustic" => rustic(&["restore", "latest", &t]),
        _ => {
            let mut c = borg(&["extract", &format!("{r}::s3")]);
            c.current_dir(&target);
            c
        }
    };
    row.restore = timed(&mut c, &format!("{tool} restore"), &repo);
    eprintln!("{tool} restore: {:.2} s", row.restore.secs);
    row.repo_bytes = dir_size(&repo);
    if tool == "ours" {
        // Prove the restore: every file equal to the source.
        let restored = target.join("home");
        let diff = backup_examples_compare(&ctx.data, &restored);
        if let Some(d) = diff {
            die(format!("our restore differs from the source: {d}"));
        }
    }
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
            }
            "--dir" => work = PathBuf::from(value()),
            "--tools" => tools = value().split(',').map(String::from).collect(),
            "--backupctl" => backupctl = PathBuf::from(value()),
            "--keep" => keep = true,
            "--dataset" => {
                dataset = match value().as_str() {
                    "hosting" => Dataset::Hosting,
                    "small-files" => Dataset::SmallFiles,
                    other => die(format!("unknown dataset {other}: hosting or small-files")),
                }
            }
            "--help" | "-h" => {
                println!(
                    "e2e [--scale F] [--runs N] [--dir DIR] [--tools ours,restic,borg,rustic] [--backupctl PATH] [--dataset hosting|small-files] [--keep]\n\
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
    let restores_from = if clean(&work) {
        eprintln!(
            "removed an earlier run's files: restores wait until {} s after that",
            SETTLE.as_secs()
        );
        Instant::now() + SETTLE
    } else {
        Instant::now()
    };
    // Each tool gets the same freshly generated dataset (the 1 % change mutates it).
    let mut ctxs = Vec::new();
    for tool in &available {
        let data = work.join(format!("data-{tool}"));
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
