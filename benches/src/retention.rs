//! The retention case of the end-to-end runner (`e2e --case retention`): many backups of a
//! dataset that changes before each ([`crate::dataset::change_two_percent`]), then forget
//! keeping the last few and prune, by every tool in the same run; for ours also one backup
//! started while a prune runs, against the same backup alone.
//!
//! This module holds what the runner records and prints, and reads our prune's and
//! forget's JSON; the runner (`src/bin/e2e.rs`) runs the commands.

use serde_json::Value;

/// Backups per run unless `--backups` says otherwise.
pub const DEFAULT_BACKUPS: usize = 30;

/// Snapshots forget keeps unless `--keep-last` says otherwise.
pub const DEFAULT_KEEP_LAST: usize = 7;

/// When our backup starts during our prune: this share of the prune's time alone (in the
/// same run) after the prune started.
pub const BACKUP_DURING_PRUNE_AT: f64 = 0.25;

/// One timed command: wall seconds and peak RSS.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Wall time, seconds.
    pub secs: f64,
    /// Peak resident set, KiB.
    pub rss_kib: u64,
}

/// One run of one tool.
#[derive(Debug, Clone, Default)]
pub struct RetentionRun {
    /// The first backup (the whole dataset).
    pub initial: Sample,
    /// The backups after it.
    pub backups: Vec<Sample>,
    /// Forget and prune, as the tool spells them (one command for restic).
    pub steps: Vec<(String, Sample)>,
    /// Repository bytes after the backups.
    pub bytes_before: u64,
    /// Repository bytes after forget and prune.
    pub bytes_after: u64,
    /// Snapshots left.
    pub snapshots_left: usize,
}

impl RetentionRun {
    /// Forget and prune: the wall time of all steps.
    pub fn collect_secs(&self) -> f64 {
        self.steps.iter().map(|(_, s)| s.secs).sum()
    }

    /// Forget and prune: the highest peak RSS of the steps.
    pub fn collect_rss_kib(&self) -> u64 {
        self.steps.iter().map(|(_, s)| s.rss_kib).max().unwrap_or(0)
    }
}

/// Our backup alone and during our prune, in one run, on a copy of the repository taken
/// before the timed forget and forgotten the same way: the backup alone first, then the next
/// round's backup beside the prune.
#[derive(Debug, Clone, Default)]
pub struct Overlap {
    /// A backup of a 2 % change, nothing else running.
    pub alone: Sample,
    /// The same kind of backup (the next round) started while the prune ran.
    pub during: Sample,
    /// The prune it ran beside.
    pub prune: Sample,
    /// Seconds from the prune's start to the backup's start.
    pub started_after: f64,
    /// Whether the backup ended before the prune did.
    pub ended_first: bool,
    /// What that prune reported.
    pub summary: PruneSummary,
}

/// One tool's runs.
#[derive(Debug, Default)]
pub struct RetentionRow {
    /// The tool.
    pub tool: String,
    /// Every run.
    pub runs: Vec<RetentionRun>,
    /// Ours only: per run.
    pub overlaps: Vec<Overlap>,
    /// Ours only: what the measured prune reported, per run.
    pub prunes: Vec<PruneSummary>,
}

impl RetentionRow {
    fn median_of(&self, f: impl Fn(&RetentionRun) -> f64) -> f64 {
        median(&self.runs.iter().map(f).collect::<Vec<_>>())
    }

    fn max_of(&self, f: impl Fn(&RetentionRun) -> u64) -> u64 {
        self.runs.iter().map(f).max().unwrap_or(0)
    }

    /// The median wall time of forget and prune.
    pub fn collect_secs(&self) -> f64 {
        self.median_of(RetentionRun::collect_secs)
    }

    /// The last run's repository size after forget and prune.
    pub fn bytes_after(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.bytes_after)
    }
}

/// What our prune's JSON says, summed over its per-account reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PruneSummary {
    /// Per-account reports found.
    pub reports: u64,
    /// Packs found.
    pub packs: u64,
    /// Pack bytes found.
    pub pack_bytes: u64,
    /// Packs condemned by the run.
    pub condemned_packs: u64,
    /// Packs deleted.
    pub deleted_packs: u64,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Packs condemned but not due.
    pub waiting_packs: u64,
    /// Condemned packs found referenced again (a backup reused them) and kept.
    pub revived_packs: u64,
    /// Packs rewritten smaller.
    pub repacked_packs: u64,
    /// Their bytes before.
    pub repacked_bytes: u64,
    /// The bytes of the packs written in their place.
    pub repacked_into_bytes: u64,
    /// Packs below the repack threshold left as they are (a live blob in a sealed group).
    pub repack_skipped: u64,
    /// Why deletion waited, when it did.
    pub deferred: Vec<String>,
    /// Prefixes the run could not collect, with the reason.
    pub problems: Vec<String>,
}

impl PruneSummary {
    /// Reads `backupctl prune --json`: every object holding both `deleted_packs` and
    /// `condemned_packs` is one account's report, wherever it sits; `problems` entries are
    /// kept as text.
    pub fn from_json(doc: &Value) -> Self {
        fn walk(v: &Value, out: &mut PruneSummary) {
            match v {
                Value::Object(map) => {
                    if map.contains_key("deleted_packs") && map.contains_key("condemned_packs") {
                        let n = |k: &str| map.get(k).and_then(Value::as_u64).unwrap_or(0);
                        out.reports += 1;
                        out.packs += n("packs");
                        out.pack_bytes += n("pack_bytes");
                        out.condemned_packs += n("condemned_packs");
                        out.deleted_packs += n("deleted_packs");
                        out.deleted_bytes += n("deleted_bytes");
                        out.waiting_packs += n("waiting_packs");
                        out.revived_packs += n("revived_packs");
                        out.repacked_packs += n("repacked_packs");
                        out.repacked_bytes += n("repacked_bytes");
                        out.repacked_into_bytes += n("repacked_into_bytes");
                        out.repack_skipped += n("repack_skipped");
                        if let Some(why) = map.get("deletion_deferred").and_then(Value::as_str) {
                            out.deferred.push(why.to_owned());
                        }
                        return;
                    }
                    for (k, v) in map {
                        match (k.as_str(), v) {
                            ("problems", Value::Array(all)) => {
                                out.problems.extend(all.iter().map(|p| p.to_string()))
                            }
                            _ => walk(v, out),
                        }
                    }
                }
                Value::Array(all) => all.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = PruneSummary::default();
        walk(doc, &mut out);
        out
    }
}

/// How many snapshots `backupctl forget --json` forgot: the sum of the lengths of its
/// `forgotten` lists.
pub fn forgotten_count(doc: &Value) -> usize {
    match doc {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match (k.as_str(), v) {
                ("forgotten", Value::Array(ids)) => ids.len(),
                _ => forgotten_count(v),
            })
            .sum(),
        Value::Array(all) => all.iter().map(forgotten_count).sum(),
        _ => 0,
    }
}

/// The median (the mean of the middle two for an even count; 0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn list(values: impl Iterator<Item = f64>) -> String {
    values
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the case's tables (Markdown) on stdout.
pub fn print_tables(rows: &[RetentionRow], backups: usize, keep_last: usize) {
    let runs = rows.first().map_or(0, |r| r.runs.len());
    println!(
        "Retention: {backups} backups, 2 % of the files changed before each, then forget keeping \
         the last {keep_last} and prune; medians of {runs} run(s), each into a fresh repository."
    );
    println!();
    println!(
        "| tool | initial backup (s) | later backups, median (s) | steps (s) | forget + prune (s) | peak RSS forget / prune (MiB) | repository before / after (MB) | snapshots left |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        let steps = r.runs.last().map_or(String::new(), |last| {
            last.steps
                .iter()
                .enumerate()
                .map(|(i, (name, _))| {
                    let secs = median(
                        &r.runs
                            .iter()
                            .filter_map(|run| run.steps.get(i).map(|(_, s)| s.secs))
                            .collect::<Vec<_>>(),
                    );
                    format!("{name} {secs:.2}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        });
        let rss = r.runs.last().map_or(String::new(), |last| {
            (0..last.steps.len())
                .map(|i| {
                    let k = r.max_of(|run| run.steps.get(i).map_or(0, |(_, s)| s.rss_kib));
                    format!("{:.0}", mib(k))
                })
                .collect::<Vec<_>>()
                .join(" / ")
        });
        let later = median(
            &r.runs
                .iter()
                .flat_map(|run| run.backups.iter().map(|s| s.secs))
                .collect::<Vec<_>>(),
        );
        println!(
            "| {} | {:.2} | {:.2} | {} | {:.2} | {} | {:.1} / {:.1} | {} |",
            r.tool,
            r.median_of(|run| run.initial.secs),
            later,
            steps,
            r.collect_secs(),
            rss,
            r.runs.last().map_or(0, |x| x.bytes_before) as f64 / 1e6,
            r.bytes_after() as f64 / 1e6,
            r.runs.last().map_or(0, |x| x.snapshots_left),
        );
    }
    println!();
    println!("Forget + prune per run (s):");
    for r in rows {
        println!(
            "- {}: {}",
            r.tool,
            list(r.runs.iter().map(RetentionRun::collect_secs))
        );
    }
    let Some(ours) = rows.iter().find(|r| r.tool == "ours") else {
        return;
    };
    for (i, p) in ours.prunes.iter().enumerate() {
        println!(
            "- ours, prune of run {}: {} packs ({:.1} MB) found, {} condemned, {} deleted ({:.1} MB), {} repacked ({:.1} MB into {:.1} MB), {} left below the threshold (sealed groups), {} waiting{}{}",
            i + 1,
            p.packs,
            p.pack_bytes as f64 / 1e6,
            p.condemned_packs,
            p.deleted_packs,
            p.deleted_bytes as f64 / 1e6,
            p.repacked_packs,
            p.repacked_bytes as f64 / 1e6,
            p.repacked_into_bytes as f64 / 1e6,
            p.repack_skipped,
            p.waiting_packs,
            if p.deferred.is_empty() {
                String::new()
            } else {
                format!(", deletion deferred: {}", p.deferred.join("; "))
            },
            if p.problems.is_empty() {
                String::new()
            } else {
                format!(", problems: {}", p.problems.join("; "))
            },
        );
    }
    if rows.len() > 1 {
        println!();
        println!(
            "| ours vs | forget + prune (x faster) | repository after (ours/peer) | peak RSS of forget + prune (ours/peer) |"
        );
        println!("|---|---|---|---|");
        for r in rows.iter().filter(|r| r.tool != "ours") {
            println!(
                "| {} | {:.2} | {:.3} | {:.2} |",
                r.tool,
                r.collect_secs() / ours.collect_secs().max(1e-9),
                ours.bytes_after() as f64 / r.bytes_after().max(1) as f64,
                ours.max_of(RetentionRun::collect_rss_kib) as f64
                    / r.max_of(RetentionRun::collect_rss_kib).max(1) as f64,
            );
        }
    }
    if ours.overlaps.is_empty() {
        return;
    }
    let o = &ours.overlaps;
    let alone = median(&o.iter().map(|x| x.alone.secs).collect::<Vec<_>>());
    let during = median(&o.iter().map(|x| x.during.secs).collect::<Vec<_>>());
    println!();
    println!(
        "| ours | backup alone (s) | backup during prune (s) | during / alone | prune alone (s) | prune beside the backup (s) | backup started after (s) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| median | {alone:.2} | {during:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
        during / alone.max(1e-9),
        median(
            &ours
                .runs
                .iter()
                .filter_map(|r| r.steps.last().map(|(_, s)| s.secs))
                .collect::<Vec<_>>()
        ),
        median(&o.iter().map(|x| x.prune.secs).collect::<Vec<_>>()),
        median(&o.iter().map(|x| x.started_after).collect::<Vec<_>>()),
    );
    println!();
    for (i, x) in o.iter().enumerate() {
        println!(
            "- run {}: alone {:.2} s, during {:.2} s ({:.2}x), started {:.2} s into a prune of {:.2} s, {}; that prune condemned {} packs, deleted {} ({:.1} MB), revived {}{}",
            i + 1,
            x.alone.secs,
            x.during.secs,
            x.during.secs / x.alone.secs.max(1e-9),
            x.started_after,
            x.prune.secs,
            if x.ended_first {
                "ended first"
            } else {
                "ended after the prune"
            },
            x.summary.condemned_packs,
            x.summary.deleted_packs,
            x.summary.deleted_bytes as f64 / 1e6,
            x.summary.revived_packs,
            if x.summary.deferred.is_empty() {
                String::new()
            } else {
                format!(", deferred: {}", x.summary.deferred.join("; "))
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn prune_reports_are_found_wherever_they_sit() {
        let report = |deleted: u64, deferred: Value| {
            serde_json::json!({
                "account": "a", "packs": 10, "pack_bytes": 100, "condemned_packs": 4,
                "deleted_packs": deleted, "deleted_bytes": deleted * 10, "waiting_packs": 0,
                "repacked_packs": 1, "repack_skipped": 2, "deletion_deferred": deferred,
            })
        };
        let doc = serde_json::json!({
            "reports": [["local", report(3, Value::Null)], ["cloud", report(0, "busy".into())]],
            "problems": [{"destination": "x", "reason": "no key"}],
            "staging_files_deleted": 0,
        });
        let s = PruneSummary::from_json(&doc);
        assert_eq!(s.reports, 2);
        assert_eq!(s.packs, 20);
        assert_eq!(s.deleted_packs, 3);
        assert_eq!(s.deleted_bytes, 30);
        assert_eq!(s.repack_skipped, 4);
        assert_eq!(s.deferred, vec!["busy".to_owned()]);
        assert_eq!(s.problems.len(), 1);
    }

    #[test]
    fn forgotten_lists_are_summed() {
        let doc = serde_json::json!({
            "account": "a",
            "destinations": [
                {"destination": "d1", "decision": {"keep": [], "forget": []}, "forgotten": ["x", "y"]},
                {"destination": "d2", "forgotten": ["z"]},
            ],
        });
        assert_eq!(forgotten_count(&doc), 3);
    }
}
