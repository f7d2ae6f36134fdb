//! The `backupctl` commands that make storage shrink: snapshot locks, `forget` by a
//! retention policy, `prune` (garbage collection), orphans (snapshots of removed accounts)
//! and `usage` after dedup. Every rule is the library's (`backup_core::service::Server`,
//! its `retention` module); this file parses and prints.
//!
//! ```text
//! snapshot lock USERNAME ID [--ttl DAYS] [--json] | snapshot unlock USERNAME ID [--json]
//! forget USERNAME [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N]
//!     [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION] [--keep-on-demand N]
//!     [--on-demand-ttl DURATION] [--time-zone ZONE] [--destination NAME] [--dry-run] [--json]
//! prune [--destination NAME] [--account USERNAME] [--grace DURATION] [--repack-below PERCENT]
//!     [--max-unused PERCENT] [--dry-run] [--json]
//! orphans [--json] | orphans reassign USERNAME --from ACCOUNT_ID [--json]
//!     | orphans prune [--older-than DAYS] [--dry-run] [--json]
//! usage [USERNAME] [--json]
//! ```
//! A DURATION is written as humantime writes it: `1d`, `12h`, `30m`, `0s`, `1h 30m`,
//! `2weeks` (units s, m, h, d, w, M = 30.44 days, y = 365.25 days).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use backup_core::model::{
    Account, AccountId, KeepReason, Limit, RetentionPolicy, RetentionZone, Snapshot, SnapshotId,
};
use backup_core::service::{
    DestinationUsage, ForgetReport, ForgetRequest, OrphanPruneReport, PruneRequest, PruneRun,
    Server,
};
use backup_core::{Error, ErrorKind, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{EXIT_INCOMPLETE, human_bytes, out, print_json};

#[derive(Subcommand, Debug)]
pub(crate) enum SnapshotCmd {
    /// Lock a snapshot: no retention policy forgets it, until it is unlocked or its time to
    /// live is over. The lock is kept on the destination too (a rebuilt catalog keeps it).
    Lock {
        /// Account username or id.
        username: String,
        /// Snapshot id or unique prefix.
        id: String,
        /// Days the lock lasts; 0 or absent: until unlocked.
        #[arg(long, value_name = "DAYS")]
        ttl: Option<u32>,
        /// Print the snapshot as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unlock a snapshot: retention may forget it again.
    Unlock {
        /// Account username or id.
        username: String,
        /// Snapshot id or unique prefix.
        id: String,
        /// Print the snapshot as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The keep rules of a retention policy (`forget`, `job add`).
#[derive(Args, Debug)]
pub(crate) struct KeepArgs {
    /// Keep the newest N scheduled snapshots.
    #[arg(long, value_name = "N")]
    pub(crate) keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long, value_name = "N")]
    pub(crate) keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long, value_name = "N")]
    pub(crate) keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks.
    #[arg(long, value_name = "N")]
    pub(crate) keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long, value_name = "N")]
    pub(crate) keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long, value_name = "N")]
    pub(crate) keep_yearly: Option<u32>,
    /// Keep every snapshot taken within this long (1d, 12h, 30m, 2weeks ...).
    #[arg(long, value_name = "DURATION")]
    pub(crate) keep_within: Option<String>,
    /// Keep the newest N on-demand snapshots (those of `backupctl backup` without --kind
    /// scheduled); default the account's max-on-demand setting.
    #[arg(long, value_name = "N")]
    pub(crate) keep_on_demand: Option<u32>,
    /// Forget on-demand snapshots older than this, even within the cap.
    #[arg(long, value_name = "DURATION")]
    pub(crate) on_demand_ttl: Option<String>,
}

impl KeepArgs {
    /// The policy these rules make (UTC calendar; the caller sets the zone).
    pub(crate) fn policy(&self) -> Result<RetentionPolicy> {
        let mut policy = RetentionPolicy {
            keep_last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            ..RetentionPolicy::default()
        };
        if let Some(text) = &self.keep_within {
            policy.keep_within = Some(parse_duration("--keep-within", text)?);
        }
        if let Some(n) = self.keep_on_demand {
            policy.on_demand_cap = Limit::Max(n);
        }
        if let Some(text) = &self.on_demand_ttl {
            policy.on_demand_ttl = Some(parse_duration("--on-demand-ttl", text)?);
        }
        policy.validate()?;
        Ok(policy)
    }
}

/// `forget`: a retention policy and where it applies.
#[derive(Args, Debug)]
pub(crate) struct ForgetArgs {
    /// Account username or id.
    username: String,
    #[command(flatten)]
    keep: KeepArgs,
    /// The zone whose calendar draws days, weeks, months and years: an IANA name
    /// (Europe/Berlin), UTC (the default) or an offset (+02:00).
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,
    /// Only the snapshots on this destination.
    #[arg(long, value_name = "NAME")]
    destination: Option<String>,
    /// Print what would be kept and forgotten, forgetting nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `prune`: what to collect and how.
#[derive(Args, Debug)]
pub(crate) struct PruneArgs {
    /// Only this destination (default every writable one).
    #[arg(long, value_name = "NAME")]
    destination: Option<String>,
    /// Only this account's objects (username, or the id of a removed account).
    #[arg(long, value_name = "USERNAME")]
    account: Option<String>,
    /// How long a pack found unreferenced waits before it is deleted (default 1d; 0s
    /// deletes it in this run).
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    /// Rewrite packs whose live share is below this percentage (0 rewrites none).
    #[arg(long, value_name = "PERCENT", default_value_t = 50.0)]
    repack_below: f64,
    /// Then rewrite packs, most dead first, until at most this percentage of the pack
    /// bytes is unreferenced (100 rewrites no more).
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    max_unused: f64,
    /// Print what would be deleted and repacked, writing nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `orphans`: list them, or a subcommand.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct OrphansArgs {
    #[command(subcommand)]
    command: Option<OrphansCmd>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum OrphansCmd {
    /// Give the snapshots of a removed account to a live account of the same username
    /// (they still open with the old keys: an owner-key account's need its original key).
    Reassign {
        /// The live account (username or id).
        username: String,
        /// The removed account's id (see `backupctl orphans`).
        #[arg(long, value_name = "ACCOUNT_ID")]
        from: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget the snapshots of accounts removed longer ago than the orphan TTL (counted
    /// from their newest snapshot); an orphan left without snapshots is deleted from the
    /// destinations. Locked snapshots stay.
    Prune {
        /// Days instead of the server's orphan-ttl-days setting; 0 keeps every orphan.
        #[arg(long, value_name = "DAYS")]
        older_than: Option<u32>,
        /// Print what would be removed, removing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `usage`: storage after dedup.
#[derive(Args, Debug)]
pub(crate) struct UsageArgs {
    /// One account (username or id), with every snapshot's share; default every account.
    username: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Parses a duration as humantime writes it (`1d`, `12h 30m`, `0s`, `2weeks`).
pub(crate) fn parse_duration(what: &'static str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        Error::invalid(
            what,
            format!("{text:?}: {e}; expected a duration such as 1d, 12h, 30m or 0s"),
        )
    })
}

fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Lines of cells, each column padded to its widest cell.
fn print_table(rows: &[Vec<String>]) -> Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        outln!("{}", line.trim_end());
    }
    Ok(())
}

fn lock_text(s: &Snapshot) -> String {
    match (s.locked, s.lock_until) {
        (false, _) => "unlocked".into(),
        (true, None) => "locked until unlocked".into(),
        (true, Some(until)) => format!("locked until {} UTC", date(until)),
    }
}

/// `snapshot lock` and `snapshot unlock`.
pub(crate) async fn snapshot(server: &Server, command: SnapshotCmd) -> Result<ExitCode> {
    let (snap, json) = match command {
        SnapshotCmd::Lock {
            username,
            id,
            ttl,
            json,
        } => {
            let account = server.account(&username).await?;
            let ttl = ttl.map(|days| Duration::from_secs(u64::from(days) * 86_400));
            (server.lock_snapshot(&account, &id, ttl).await?, json)
        }
        SnapshotCmd::Unlock { username, id, json } => {
            let account = server.account(&username).await?;
            (server.unlock_snapshot(&account, &id).await?, json)
        }
    };
    if json {
        print_json(&snap)?;
    } else {
        outln!("snapshot {} {}", snap.id, lock_text(&snap));
    }
    Ok(ExitCode::SUCCESS)
}

/// A reason's short name for human output (`last`, `on-demand`, `not-kept`).
fn tag(name: &str) -> String {
    name.replace('_', "-")
}

/// `forget`.
pub(crate) async fn forget(server: &Server, args: ForgetArgs) -> Result<ExitCode> {
    let account = server.account(&args.username).await?;
    if let Some(name) = &args.destination {
        server.destination(name).await?;
    }
    let mut policy = args.keep.policy()?;
    if let Some(zone) = &args.time_zone {
        policy.time_zone = RetentionZone::new(zone)?;
    }
    let keeps_everything = policy.keeps_everything();
    let snapshots = server.snapshots(&account).await?;
    let request = ForgetRequest {
        policy,
        destination: args.destination.clone(),
        dry_run: args.dry_run,
    };
    let report = server.forget(&account, &request).await?;
    if args.json {
        print_json(&report)?;
    } else {
        print_forget(&account, &report, &snapshots, keeps_everything)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_forget(
    account: &Account,
    report: &ForgetReport,
    snapshots: &[Snapshot],
    keeps_everything: bool,
) -> Result<()> {
    let created: HashMap<SnapshotId, DateTime<Utc>> =
        snapshots.iter().map(|s| (s.id, s.created)).collect();
    let when = |id: &SnapshotId| created.get(id).map(|t| date(*t)).unwrap_or_default();
    if report.destinations.is_empty() {
        outln!("account {} has no snapshots here", account.username);
        return Ok(());
    }
    let mut forgotten = 0;
    let mut planned = 0;
    let mut on_demand_kept = false;
    for d in &report.destinations {
        let decision = &d.decision;
        outln!(
            "destination {}: keep {}, forget {}",
            d.destination,
            decision.keep.len(),
            decision.forget.len()
        );
        let mut rows = Vec::new();
        for k in &decision.keep {
            on_demand_kept |= k.reasons.contains(&KeepReason::OnDemand);
            let reasons: Vec<String> = k.reasons.iter().map(|r| tag(r.as_str())).collect();
            rows.push(vec![
                "  keep".to_owned(),
                k.snapshot.to_string(),
                when(&k.snapshot),
                format!("({})", reasons.join(", ")),
            ]);
        }
        for f in &decision.forget {
            let verb = if report.dry_run || d.forgotten.contains(&f.snapshot) {
                "  forget"
            } else {
                "  kept"
            };
            let reason = if verb == "  kept" {
                "locked meanwhile".to_owned()
            } else {
                tag(f.reason.as_str())
            };
            rows.push(vec![
                verb.to_owned(),
                f.snapshot.to_string(),
                when(&f.snapshot),
                format!("({reason})"),
            ]);
        }
        print_table(&rows)?;
        forgotten += d.forgotten.len();
        planned += decision.forget.len();
    }
    if keeps_everything {
        outln!("no --keep-* rule given: every scheduled snapshot is kept");
    }
    if on_demand_kept && !keeps_everything {
        outln!(
            "note: --keep-* rules rotate scheduled snapshots; on-demand ones (`backupctl backup` \
             without --kind scheduled) are kept up to the on-demand cap (--keep-on-demand N)"
        );
    }
    if report.dry_run {
        outln!(
            "dry run: nothing was removed; {} would be forgotten",
            count(planned as u64, "snapshot")
        );
    } else {
        outln!(
            "{} forgotten; `backupctl prune` frees the space they alone used",
            count(forgotten as u64, "snapshot")
        );
    }
    Ok(())
}

/// `prune`.
pub(crate) async fn prune(server: &Server, args: PruneArgs) -> Result<ExitCode> {
    let mut request = PruneRequest {
        destination: args.destination.clone(),
        dry_run: args.dry_run,
        ..PruneRequest::default()
    };
    if let Some(text) = &args.grace {
        let grace = parse_duration("--grace", text)?;
        request.grace = chrono::Duration::from_std(grace)
            .map_err(|_| Error::invalid("--grace", format!("{text:?} is too long")))?;
    }
    if !(0.0..=100.0).contains(&args.repack_below) {
        return Err(Error::invalid(
            "--repack-below",
            format!("{}: expected a percentage from 0 to 100", args.repack_below),
        ));
    }
    request.repack_below = args.repack_below / 100.0;
    if !(0.0..=100.0).contains(&args.max_unused) {
        return Err(Error::invalid(
            "--max-unused",
            format!("{}: expected a percentage from 0 to 100", args.max_unused),
        ));
    }
    request.max_unused = args.max_unused / 100.0;
    if let Some(name) = &args.account {
        request.account = Some(account_or_removed(server, name).await?);
    }
    let run = server.prune(&request).await?;
    if args.json {
        print_json(&run)?;
    } else {
        print_prune(server, &run, args.dry_run).await?;
    }
    if !run.problems.is_empty() {
        return Ok(ExitCode::from(EXIT_INCOMPLETE));
    }
    Ok(ExitCode::SUCCESS)
}

/// A live account's id by username or id, else the id of a removed one.
async fn account_or_removed(server: &Server, name: &str) -> Result<AccountId> {
    match server.account(name).await {
        Ok(a) => Ok(a.id),
        Err(e) if e.kind() == ErrorKind::NotFound => name.parse().map_err(|_| e),
        Err(e) => Err(e),
    }
}

/// Usernames by account id, for output.
async fn usernames(server: &Server) -> Result<HashMap<AccountId, String>> {
    Ok(server
        .accounts()
        .await?
        .into_iter()
        .map(|a| (a.id, a.username.to_string()))
        .collect())
}

fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

async fn print_prune(server: &Server, run: &PruneRun, dry_run: bool) -> Result<()> {
    let names = usernames(server).await?;
    let who = |id: &AccountId| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("{id} (removed or reassigned)"))
    };
    let (delete, repack) = if dry_run {
        ("would delete", "would repack")
    } else {
        ("deleted", "repacked")
    };
    let mut rows = Vec::new();
    for (destination, r) in &run.reports {
        rows.push(vec![
            destination.clone(),
            who(&r.account),
            format!("{} ({})", count(r.packs, "pack"), human_bytes(r.pack_bytes)),
            format!(
                "{delete} {} ({})",
                count(r.deleted_packs, "pack"),
                human_bytes(r.deleted_bytes)
            ),
            format!(
                "{repack} {} ({} into {})",
                count(r.repacked_packs, "pack"),
                human_bytes(r.repacked_bytes),
                human_bytes(r.repacked_into_bytes)
            ),
            format!(
                "{} ({}) in their grace",
                count(r.waiting_packs, "pack"),
                human_bytes(r.waiting_bytes)
            ),
        ]);
    }
    print_table(&rows)?;
    for (destination, r) in &run.reports {
        let who = who(&r.account);
        if let Some(why) = &r.deletion_deferred {
            outln!("{destination} {who}: deletion deferred: {why}");
        }
        if r.repack_skipped > 0 {
            outln!(
                "{destination} {who}: {} below the threshold left as they are (sealed groups)",
                count(r.repack_skipped, "pack")
            );
        }
        if !r.missing_packs.is_empty() {
            outln!(
                "warning: {destination} {who}: {} that snapshots reference are missing (run `backupctl verify`)",
                count(r.missing_packs.len() as u64, "pack")
            );
        }
    }
    for p in &run.problems {
        outln!(
            "problem: {} {}: {} (left alone)",
            p.destination,
            who(&p.account),
            p.reason
        );
    }
    if run.staging_files_deleted > 0 {
        outln!(
            "{} of interrupted writes deleted",
            count(run.staging_files_deleted, "staging file")
        );
    }
    let sum = |f: fn(&backup_core::engine::PruneReport) -> u64| -> u64 {
        run.reports.iter().map(|(_, r)| f(r)).sum()
    };
    let total = format!(
        "{} {} ({}), {} {} ({})",
        delete,
        count(sum(|r| r.deleted_packs), "pack"),
        human_bytes(sum(|r| r.deleted_bytes)),
        repack,
        count(sum(|r| r.repacked_packs), "pack"),
        human_bytes(sum(|r| r.repacked_bytes)),
    );
    if dry_run {
        outln!("dry run: nothing was deleted or written; {total}");
    } else {
        outln!("total: {total}");
    }
    Ok(())
}

/// `orphans`, `orphans reassign`, `orphans prune`.
pub(crate) async fn orphans(server: &Server, args: OrphansArgs) -> Result<ExitCode> {
    match args.command {
        None => {
            let all = server.orphans().await?;
            if args.json {
                print_json(&all)?;
            } else if all.is_empty() {
                outln!("no orphans");
            } else {
                let mut rows = vec![
                    [
                        "ACCOUNT",
                        "USERNAME",
                        "SNAPSHOTS",
                        "LOCKED",
                        "BYTES",
                        "NEWEST",
                        "DESTINATIONS",
                    ]
                    .map(String::from)
                    .to_vec(),
                ];
                for o in &all {
                    rows.push(vec![
                        o.account.to_string(),
                        o.username.clone().unwrap_or_else(|| "?".into()),
                        o.snapshots.to_string(),
                        o.locked.to_string(),
                        human_bytes(o.bytes),
                        date(o.newest),
                        o.destinations.join(","),
                    ]);
                }
                print_table(&rows)?;
            }
        }
        Some(OrphansCmd::Reassign {
            username,
            from,
            json,
        }) => {
            let to = server.account(&username).await?;
            let from: AccountId = from.parse()?;
            let moved = server.reassign_orphans(&to, from).await?;
            if json {
                print_json(&serde_json::json!({
                    "account": to.id,
                    "from": from,
                    "snapshots": moved,
                }))?;
            } else {
                outln!(
                    "{} of removed account {from} reassigned to {} (they open with the old \
                     account's keys: an owner-key account's need its original owner key)",
                    count(moved, "snapshot"),
                    to.username
                );
            }
        }
        Some(OrphansCmd::Prune {
            older_than,
            dry_run,
            json,
        }) => {
            let report = server.prune_orphans(older_than, dry_run).await?;
            if json {
                print_json(&report)?;
            } else {
                print_orphan_prune(&report)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_orphan_prune(report: &OrphanPruneReport) -> Result<()> {
    if report.older_than_days == 0 {
        outln!("an orphan TTL of 0 keeps every orphan: nothing to do");
        return Ok(());
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let rows: Vec<Vec<String>> = report
        .removed
        .iter()
        .map(|o| {
            vec![
                verb.to_owned(),
                o.account.to_string(),
                o.username.clone().unwrap_or_else(|| "?".into()),
                count(o.snapshots - o.locked, "snapshot"),
                human_bytes(o.bytes),
                format!("newest {}", date(o.newest)),
            ]
        })
        .collect();
    print_table(&rows)?;
    if report.dry_run {
        outln!(
            "dry run: nothing was removed; {} of orphans older than {} days would be forgotten",
            count(report.snapshots, "snapshot"),
            report.older_than_days
        );
    } else {
        outln!(
            "{} of orphans older than {} days forgotten, {} deleted from destinations",
            count(report.snapshots, "snapshot"),
            report.older_than_days,
            count(report.prefixes_deleted, "account prefix")
        );
    }
    Ok(())
}

/// One account's storage, as `usage --json` prints it.
#[derive(Debug, Serialize)]
struct AccountStorage {
    account: AccountId,
    username: String,
    snapshots: usize,
    destinations: Vec<DestinationUsage>,
}

impl AccountStorage {
    async fn measure(server: &Server, account: &Account) -> Result<Self> {
        Ok(Self {
            account: account.id,
            username: account.username.to_string(),
            snapshots: server.snapshots(account).await?.len(),
            destinations: server.storage_usage(account).await?,
        })
    }

    fn sum(&self, f: fn(&backup_core::engine::StorageUsage) -> u64) -> u64 {
        self.destinations.iter().map(|d| f(&d.usage)).sum()
    }
}

/// `usage`.
pub(crate) async fn usage(server: &Server, args: UsageArgs) -> Result<ExitCode> {
    let Some(username) = &args.username else {
        let mut all = Vec::new();
        for account in server.accounts().await? {
            all.push(AccountStorage::measure(server, &account).await?);
        }
        if args.json {
            print_json(&all)?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut rows = vec![
            [
                "USERNAME",
                "SNAPSHOTS",
                "PACK BYTES",
                "REFERENCED",
                "UNREFERENCED",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for a in &all {
            rows.push(vec![
                a.username.clone(),
                a.snapshots.to_string(),
                human_bytes(a.sum(|u| u.pack_bytes)),
                human_bytes(a.sum(|u| u.referenced_bytes)),
                human_bytes(a.sum(|u| u.unreferenced_bytes)),
            ]);
        }
        print_table(&rows)?;
        return Ok(ExitCode::SUCCESS);
    };
    let account = server.account(username).await?;
    let storage = AccountStorage::measure(server, &account).await?;
    if args.json {
        print_json(&storage)?;
        return Ok(ExitCode::SUCCESS);
    }
    let created: HashMap<SnapshotId, DateTime<Utc>> = server
        .snapshots(&account)
        .await?
        .iter()
        .map(|s| (s.id, s.created))
        .collect();
    outln!(
        "{}: {}, {} in packs, {} referenced, {} unreferenced (prune frees these)",
        storage.username,
        count(storage.snapshots as u64, "snapshot"),
        human_bytes(storage.sum(|u| u.pack_bytes)),
        human_bytes(storage.sum(|u| u.referenced_bytes)),
        human_bytes(storage.sum(|u| u.unreferenced_bytes)),
    );
    for d in &storage.destinations {
        let u = &d.usage;
        let identity = if u.account == account.id {
            String::new()
        } else {
            format!(" (objects of removed account {})", u.account)
        };
        outln!(
            "{}{identity}: {} ({}), {} of indexes, {} referenced, {} unreferenced",
            d.destination,
            count(u.packs, "pack"),
            human_bytes(u.pack_bytes),
            human_bytes(u.index_bytes),
            human_bytes(u.referenced_bytes),
            human_bytes(u.unreferenced_bytes),
        );
        let rows: Vec<Vec<String>> = u
            .snapshots
            .iter()
            .map(|s| {
                vec![
                    format!("  {}", s.snapshot),
                    created
                        .get(&s.snapshot)
                        .map(|t| date(*t))
                        .unwrap_or_default(),
                    format!("referenced {}", human_bytes(s.referenced_bytes)),
                    format!("unique {}", human_bytes(s.unique_bytes)),
                ]
            })
            .collect();
        print_table(&rows)?;
    }
    if storage.destinations.is_empty() {
        outln!("account {} has no snapshots", account.username);
    }
    Ok(ExitCode::SUCCESS)
}
