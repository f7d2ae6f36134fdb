//! `backupctl`: the reference command-line assembly of the backup crates, for integrators to
//! read and scripts to drive. Every rule lives in `backup_core::service::Server`; this file
//! parses arguments, wires a state directory ([`StateDir`]) and prints.
//!
//! ```text
//! backupctl [--home DIR]     state dir (catalog + master key); default $BACKUPCTL_HOME, else ./.backupctl
//!           [--catalog URL]  catalog: sqlite://PATH or postgres://...; default $BACKUPCTL_CATALOG, else DIR/catalog.db
//!           [--progress bar|json|none]
//!   init
//!   destination add NAME URL [--class local|cloud] [--read-only]
//!   destination set NAME --read-only on|off
//!   destination list [--json]
//!   account add USERNAME [--email E] [--encryption none|server|remote] [--exclude GLOB]... [--key-out FILE]
//!       [--source DIR] [--priority-group NAME] [--tag NAME]...
//!   account set USERNAME [--email E] [--notify off|less|more|all] [--business-notices on|off]
//!       [--max-on-demand default|unlimited|disabled|N] [--quota SIZE[+OVERAGE]|none]
//!       [--locations local+cloud|cloud] [--status active|inactive|suspended|terminated]
//!       [--exclude GLOB]... [--clear-excludes] [--reseller on|off] [--source DIR | --clear-source]
//!       [--priority-group NAME] [--tag NAME]... [--clear-tags]
//!   account show USERNAME [--json]
//!   account list [--json]
//!   account remove USERNAME [--yes]
//!   account reset-key USERNAME [--key-out FILE] [--yes]
//!   settings set max-on-demand N | settings set orphan-ttl-days N | settings set accounts-root DIR
//!   settings show [--json]
//!   backup USERNAME [--source HOMEDIR | --layout DIR] --destination NAME [--kind scheduled|on-demand] [--json]
//!   snapshots USERNAME [--json]
//!   restore USERNAME --target DIR (--snapshot ID | --item KIND=SNAPSHOT_ID ...) [--path GLOB]...
//!       [--key-file FILE] [--dry-run] [--merge] [--ownership ...] [--json]
//!   verify USERNAME [--read-data [--sample PERCENT]] [--key-file FILE] [--json]
//!   master-key export | import FILE | rotate
//!   catalog rebuild --destination NAME [--url URL] [--json]
//!   snapshot lock USERNAME ID [--ttl DAYS] | snapshot unlock USERNAME ID
//!   forget USERNAME [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N]
//!       [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION] [--dry-run] [--json] ...
//!   prune [--destination NAME] [--account USERNAME] [--grace DURATION] [--dry-run] [--json] ...
//!   orphans [--json] | orphans reassign USERNAME --from ACCOUNT_ID | orphans prune [--older-than DAYS]
//!   usage [USERNAME] [--json]
//!   tag add NAME [--color #RRGGBB|random] | tag list [--json]
//!   priority-group add NAME --backup N --restore N --download N --clone N [--tag NAME]... | priority-group list [--json]
//!   job add NAME --destination NAME... [--items KIND,...] [--accounts all|tag:T|org:O|re:PATTERN]
//!       [--exclude-suspended] [--schedule manual|hourly:N|daily@HH:MM|weekly:DAYS@HH:MM|monthly:DAYS@HH:MM|after:JOB]
//!       [--keep-last N --keep-daily N ...] [--on-demand]
//!   job list [--json] | job run NAME [--wait] [--json]
//!   queue list [--json] | queue cancel TASK_ID
//!   daemon [--workers N] [--once] | health [--stale-days N] [--json]
//! ```
//! The commands that make storage shrink (snapshot lock to usage) are in
//! `backupctl/retention.rs`; the jobs, queue and daemon commands in `backupctl/jobs.rs`.
//! `BACKUPCTL_LEASE_TTL` (seconds, default 120) sets how long an account's lease on a
//! destination lives without renewal, so how long a killed process keeps others waiting.
//! Errors print one line on stderr. Exit codes: 0 success; 1 failure; 2 invalid input;
//! 3 a partial backup, an incomplete restore or a prune that left an account's objects alone
//! (named in the output), or a `job run --wait` whose tasks did not all end done; 4 refused by an account setting or a read-only destination; 5 the
//! account is busy with another operation (try again later). A closed stdout (`| head`) ends the command quietly.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use backup_core::engine::RestoreReport;
use backup_core::model::{
    AccountStatus, BackupLocations, DestinationClass, EncryptionMode, ItemKind, Limit,
    NotificationLevel, OwnerKey, Ownership, RestoreOptions, Snapshot, SnapshotKind, StorageQuota,
};
use backup_core::service::{
    BackupJob, NewAccount, OperationEvent, OperationProgress, RestoreRequest, VerifyRequest,
    no_operation_progress,
};
use backup_core::{Error, ErrorKind, FsAccount, Result};
use backup_examples::{BarProgress, StateDir};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "backupctl",
    version,
    about = "Multi-tenant account backups: reference CLI"
)]
struct Cli {
    /// State directory (catalog + master key).
    #[arg(
        long,
        global = true,
        env = "BACKUPCTL_HOME",
        default_value = ".backupctl"
    )]
    home: PathBuf,
    /// Catalog URL (sqlite://PATH, sqlite::memory:, postgres://USER@HOST/DB); default the
    /// SQLite file catalog.db in the state directory.
    #[arg(
        long,
        global = true,
        env = "BACKUPCTL_CATALOG",
        hide_env_values = true,
        value_name = "URL"
    )]
    catalog: Option<String>,
    /// Progress of backups and restores on stderr: a bar on a terminal, JSON lines (one
    /// event per line, with the operation id, phase and totals), or nothing.
    #[arg(long, global = true, value_enum, default_value = "bar")]
    progress: ProgressMode,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressMode {
    Bar,
    Json,
    None,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the state directory, master key and catalog.
    Init,
    /// Manage destinations.
    #[command(subcommand)]
    Destination(DestinationCmd),
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Server-wide settings.
    #[command(subcommand)]
    Settings(SettingsCmd),
    /// Back up an account.
    Backup(BackupArgs),
    /// List an account's snapshots, oldest first.
    Snapshots {
        /// Account username or id.
        username: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore items of an account.
    Restore(RestoreArgs),
    /// Export, import or rotate the server master key.
    #[command(subcommand)]
    MasterKey(MasterKeyCmd),
    /// Catalog maintenance.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Verify an account's snapshots.
    Verify {
        /// Account username or id.
        username: String,
        /// Read every pack back (and authenticate every blob when the key is at hand).
        #[arg(long)]
        read_data: bool,
        /// With --read-data, read only about this percentage of the packs (1-100).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100), requires = "read_data")]
        sample: Option<u8>,
        /// The owner's key file, for owner-held-key accounts (a wrong one fails).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lock a snapshot out of retention, or unlock it.
    #[command(subcommand)]
    Snapshot(retention::SnapshotCmd),
    /// Forget an account's snapshots that a retention policy does not keep (the newest and
    /// locked ones are always kept); `prune` then frees their space.
    Forget(retention::ForgetArgs),
    /// Collect garbage: delete packs no snapshot references (after a grace) and rewrite
    /// packs mostly unreferenced.
    Prune(retention::PruneArgs),
    /// Snapshots of removed accounts: list, reassign to a new account, or prune.
    Orphans(retention::OrphansArgs),
    /// Storage after dedup: every account, or one with each snapshot's share.
    Usage(retention::UsageArgs),
    /// Tags, for job selections and priority groups.
    #[command(subcommand)]
    Tag(jobs::TagCmd),
    /// Queue priority groups.
    #[command(subcommand)]
    PriorityGroup(jobs::PriorityGroupCmd),
    /// Backup jobs: add, list, run.
    #[command(subcommand)]
    Job(jobs::JobCmd),
    /// The task queue: list, cancel.
    #[command(subcommand)]
    Queue(jobs::QueueCmd),
    /// The scheduler and workers in one process (until SIGTERM, or --once).
    Daemon(jobs::DaemonArgs),
    /// The health summary: jobs' last success and next run, accounts not backed up lately.
    Health(jobs::HealthArgs),
}

#[derive(Subcommand, Debug)]
enum DestinationCmd {
    /// Add a destination: file:///ABSOLUTE/PATH, s3://BUCKET/PREFIX[?endpoint=..],
    /// sftp://USER@HOST:PORT/PATH?key=FILE&known_hosts=FILE, memory://.
    Add {
        /// Unique name.
        name: String,
        /// Object store URL (explicit: a plain path is refused).
        url: String,
        /// local (this server's disks) or cloud; default from the URL (file:// is local).
        #[arg(long)]
        class: Option<DestinationClass>,
        /// Read it only: backups to it are refused.
        #[arg(long)]
        read_only: bool,
    },
    /// Change a destination.
    Set {
        /// Destination name.
        name: String,
        /// on: backups to it are refused; off: writable. (It takes a value: a plain bool
        /// field would make `--read-only` a flag and `off` an unexpected argument.)
        #[arg(long, value_parser = on_off, action = clap::ArgAction::Set, required = true)]
        read_only: bool,
    },
    /// List destinations.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MasterKeyCmd {
    /// Print the master key (checksummed text) for safekeeping off this server.
    Export,
    /// Install a master key from a file holding its exported text (new server, empty state).
    Import {
        /// File with the exported text.
        file: PathBuf,
    },
    /// Re-wrap every account's keys under a new master key (resumes if interrupted).
    Rotate,
}

#[derive(Subcommand, Debug)]
enum CatalogCmd {
    /// Rebuild the catalog from a destination alone (disaster recovery). A destination the
    /// catalog does not know is added read-only.
    Rebuild {
        /// Destination name (added to the catalog with --url if it is not there).
        #[arg(long)]
        destination: String,
        /// Destination URL, when the catalog does not know the destination.
        #[arg(long)]
        url: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SettingsCmd {
    /// Set a server-wide setting: max-on-demand default|unlimited|disabled|N (also the
    /// panel's 0 = unlimited, -1 = disabled), or orphan-ttl-days N (days the backups of a
    /// removed account are kept; 0 = until removed by hand).
    Set {
        /// The setting (max-on-demand, orphan-ttl-days).
        name: String,
        /// Its value.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Show the settings.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AccountCmd {
    /// Create an account with fresh keys (active).
    Add {
        /// Login name (unique on this server).
        username: String,
        /// Notification e-mail.
        #[arg(long)]
        email: Option<String>,
        /// none, server (server-held key) or remote (owner-held key, shown once).
        #[arg(long, default_value = "server")]
        encryption: String,
        /// Exclude glob, relative to the home directory (repeatable).
        #[arg(long = "exclude")]
        excludes: Vec<String>,
        /// Write the owner's key to this file (mode 0600) instead of printing it.
        #[arg(long)]
        key_out: Option<PathBuf>,
        #[command(flatten)]
        placement: Placement,
    },
    /// Change an account's settings.
    Set(AccountSetArgs),
    /// Show an account's settings and usage.
    Show {
        /// Account username or id.
        username: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an account from the catalog; its backups stay, as orphans, until the orphan
    /// TTL.
    Remove {
        /// Account username or id.
        username: String,
        /// Confirm: without it nothing is done.
        #[arg(long)]
        yes: bool,
    },
    /// Reset an encrypted account's key: ALL its existing encrypted backups become
    /// unreadable and are deleted; new keys are made.
    ResetKey {
        /// Account username or id.
        username: String,
        /// Write the new owner key to this file (owner-held-key accounts).
        #[arg(long)]
        key_out: Option<PathBuf>,
        /// Confirm: without it nothing is done.
        #[arg(long)]
        yes: bool,
    },
    /// List accounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct AccountSetArgs {
    /// Account username or id.
    username: String,
    /// Notification e-mail.
    #[arg(long)]
    email: Option<String>,
    /// Which backup events are e-mailed: off, less (failures), more (and warnings), all.
    #[arg(long)]
    notify: Option<String>,
    /// Business notifications (quota) on or off.
    #[arg(long, value_parser = on_off)]
    business_notices: Option<bool>,
    /// Maximum on-demand snapshots kept: default (the server setting), unlimited,
    /// disabled or a count.
    #[arg(long)]
    max_on_demand: Option<String>,
    /// Storage quota: SIZE (soft: backups go on, a notice is sent) or SIZE+OVERAGE (hard:
    /// backups stop past SIZE+OVERAGE), binary units (10G = 10 GiB; K, M, G, T), or none.
    #[arg(long)]
    quota: Option<String>,
    /// Backup locations: local+cloud or cloud (never backed up to a local destination).
    #[arg(long)]
    locations: Option<String>,
    /// active, inactive (not activated yet: not backed up), suspended, terminated (not
    /// backed up).
    #[arg(long)]
    status: Option<String>,
    /// Add an exclude glob, relative to the home directory (repeatable).
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    /// Remove every exclude glob first.
    #[arg(long)]
    clear_excludes: bool,
    /// Reseller account (terminate-first restores are refused) on or off.
    #[arg(long, value_parser = on_off)]
    reseller: Option<bool>,
    #[command(flatten)]
    placement: Placement,
    /// Remove every tag first.
    #[arg(long)]
    clear_tags: bool,
    /// Forget the recorded source (use the accounts root).
    #[arg(long, conflicts_with = "source")]
    clear_source: bool,
}

/// Where an account's data is and where it stands in the queue (`account add|set`).
#[derive(Args, Debug)]
struct Placement {
    /// The account's live data (its home directory), backed up by jobs; default the
    /// accounts root (`settings set accounts-root`, /home/{USER}).
    #[arg(long)]
    source: Option<PathBuf>,
    /// Queue priority group (name), overriding the groups of its tags.
    #[arg(long)]
    priority_group: Option<String>,
    /// Add a tag (name, repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

impl Placement {
    /// Applies the options to `account`.
    async fn apply(
        &self,
        server: &backup_core::service::Server,
        account: &mut backup_core::model::Account,
    ) -> Result<()> {
        if let Some(dir) = &self.source {
            if !dir.is_absolute() {
                return Err(Error::invalid("--source", "give an absolute directory"));
            }
            account.source = Some(dir.clone());
        }
        if let Some(group) = &self.priority_group {
            account.priority_group = Some(server.priority_group(group).await?.id);
        }
        for t in &self.tags {
            let id = server.tag(t).await?.id;
            if !account.tags.contains(&id) {
                account.tags.push(id);
            }
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
struct BackupArgs {
    /// Account username or id.
    username: String,
    /// The account's home directory, backed up whole as the home item (public_html/,
    /// mail/, ssl/, ... included); default the account's recorded source (`account set
    /// --source`), else the accounts root for it (/home/{USER}).
    #[arg(long, conflicts_with = "layout")]
    source: Option<PathBuf>,
    /// An account layout instead: DIR/home, DIR/mail, DIR/databases/NAME, ... one
    /// directory per item.
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Destination name.
    #[arg(long)]
    destination: String,
    /// on-demand (counted against the max-on-demand cap; the default) or scheduled (what
    /// `forget --keep-*` rotates: for backups run from cron).
    #[arg(long, value_enum, default_value = "on-demand")]
    kind: BackupKind,
    /// Print the snapshot as JSON.
    #[arg(long)]
    json: bool,
}

/// The snapshot kinds `backup` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackupKind {
    OnDemand,
    Scheduled,
}

impl From<BackupKind> for SnapshotKind {
    fn from(kind: BackupKind) -> Self {
        match kind {
            BackupKind::OnDemand => SnapshotKind::OnDemand,
            BackupKind::Scheduled => SnapshotKind::Scheduled,
        }
    }
}

#[derive(Args, Debug)]
struct RestoreArgs {
    /// Account username or id.
    username: String,
    /// Where to restore (written as DIR/home, DIR/databases, ...).
    #[arg(long)]
    target: PathBuf,
    /// Restore every item of this snapshot (id or unique prefix).
    #[arg(long, conflicts_with = "items", required_unless_present = "items")]
    snapshot: Option<String>,
    /// KIND=SNAPSHOT_ID: take this item from this snapshot (repeatable).
    #[arg(long = "item")]
    items: Vec<String>,
    /// Include glob for home and mail files (repeatable); default everything.
    #[arg(long = "path")]
    paths: Vec<String>,
    /// The owner's key file, for owner-held-key accounts.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Report what would be restored without writing.
    #[arg(long)]
    dry_run: bool,
    /// Merge into existing data instead of replacing each restored item.
    #[arg(long)]
    merge: bool,
    /// Who owns restored files: recorded (default as root), account:UID:GID (the home
    /// directory's recorded owner becomes UID:GID, other owners mapped by name or kept) or none (the
    /// process user; setuid and setgid dropped; default otherwise).
    #[arg(long)]
    ownership: Option<Ownership>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn on_off(s: &str) -> std::result::Result<bool, String> {
    match s {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

/// The exit code of a backup that left entries out (a partial snapshot) and of a restore
/// that could not restore every entry; both are named in the output.
const EXIT_INCOMPLETE: u8 = 3;
/// Invalid input (as clap's usage errors).
const EXIT_INVALID: u8 = 2;
/// Refused by an account setting or a read-only destination.
const EXIT_REFUSED: u8 = 4;
/// The account is busy with another operation.
const EXIT_BUSY: u8 = 5;

/// Key files are a few hundred bytes; anything larger is not one.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// Caps glibc's malloc arenas at 2 by running this program again with `MALLOC_ARENA_MAX=2`
/// (glibc reads it only at start-up; the workspace forbids the `unsafe` a `mallopt` call
/// needs). By default glibc keeps up to 8 arenas per core, and a daemon whose backups run on
/// the runtime's threads and their pack workers leaves each arena's freed pages mapped: a
/// night of 100 small accounts peaked at 242 MiB with the default and 120 MiB with 2
/// arenas, at the same speed. The same process id goes on (exec); if exec fails, this
/// process goes on uncapped. A `MALLOC_ARENA_MAX` already set is left alone.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && let Ok(exe) = std::env::current_exe()
    {
        use std::os::unix::process::CommandExt;
        let _exec_failed = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("MALLOC_ARENA_MAX", "2")
            .exec();
    }
}

fn main() -> ExitCode {
    cap_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // stdout closed early (`| head`): nothing more to say.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let hint = match &e {
                Error::KeyRequired { .. } => " (pass the owner's key with --key-file)",
                _ => "",
            };
            let line = format!("error: {e}{hint}").replace('\n', " ");
            let _ = writeln!(std::io::stderr(), "{line}");
            ExitCode::from(match e.kind() {
                ErrorKind::InvalidInput => EXIT_INVALID,
                ErrorKind::Setting => EXIT_REFUSED,
                ErrorKind::Busy => EXIT_BUSY,
                _ => 1,
            })
        }
    }
}

/// Writes a line to stdout; a closed stdout becomes an error `main` ends quietly on.
fn out(args: fmt::Arguments<'_>) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        .map_err(|e| Error::io("stdout", e))
}

macro_rules! outln {
    ($($arg:tt)*) => { out(format_args!($($arg)*))? };
}

// After `outln!`, which it uses.
#[path = "backupctl/retention.rs"]
mod retention;

#[path = "backupctl/jobs.rs"]
mod jobs;

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Internal {
        reason: format!("JSON output: {e}"),
    })?;
    outln!("{text}");
    Ok(())
}

fn json_value(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Internal {
        reason: format!("JSON output: {e}"),
    })
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `10G`, `500M`, `1T`, `4096` (bytes): binary units.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let shift = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => {
            return Err(Error::invalid(
                "size",
                format!("{s:?}: expected a number with K, M, G or T (binary units)"),
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| Error::invalid("size", format!("{s:?}: expected a number such as 10G")))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| Error::invalid("size", format!("{s:?} is too large")))
}

fn parse_quota(s: &str) -> Result<Option<StorageQuota>> {
    if s == "none" {
        return Ok(None);
    }
    Ok(Some(match s.split_once('+') {
        Some((size, overage)) => {
            StorageQuota::with_overage(parse_size(size)?, parse_size(overage)?)?
        }
        None => StorageQuota::soft(parse_size(s)?)?,
    }))
}

fn parse_limit(s: &str) -> Result<Limit> {
    match s {
        "default" => Ok(Limit::Default),
        "unlimited" => Ok(Limit::Unlimited),
        "disabled" => Ok(Limit::Disabled),
        n => {
            let v: i64 = n.parse().map_err(|_| {
                Error::invalid(
                    "max-on-demand",
                    format!("{n:?}: expected default, unlimited, disabled or a count"),
                )
            })?;
            Limit::from_panel_value(Some(v))
        }
    }
}

fn limit_name(l: Limit) -> String {
    match l {
        Limit::Default => "default".into(),
        Limit::Unlimited => "unlimited".into(),
        Limit::Disabled => "disabled".into(),
        Limit::Max(n) => n.to_string(),
    }
}

fn parse_notify(s: &str) -> Result<NotificationLevel> {
    match s {
        "off" => Ok(NotificationLevel::Off),
        "less" => Ok(NotificationLevel::Less),
        "more" => Ok(NotificationLevel::More),
        "all" => Ok(NotificationLevel::All),
        _ => Err(Error::invalid(
            "--notify",
            format!("{s:?}: expected off, less, more or all"),
        )),
    }
}

fn parse_status(s: &str) -> Result<AccountStatus> {
    match s {
        "active" => Ok(AccountStatus::Active),
        "inactive" => Ok(AccountStatus::Inactive),
        "suspended" => Ok(AccountStatus::Suspended),
        "terminated" => Ok(AccountStatus::Terminated),
        _ => Err(Error::invalid(
            "--status",
            format!("{s:?}: expected active, inactive, suspended or terminated"),
        )),
    }
}

fn parse_locations(s: &str) -> Result<BackupLocations> {
    match s {
        "local+cloud" | "cloud+local" => Ok(BackupLocations::LocalAndCloud),
        "cloud" => Ok(BackupLocations::CloudOnly),
        _ => Err(Error::invalid(
            "--locations",
            format!("{s:?}: expected local+cloud or cloud"),
        )),
    }
}

/// Reads an owner key file, refusing anything larger than a key before reading it.
fn read_key_file(path: Option<&Path>) -> Result<Option<OwnerKey>> {
    match path {
        None => Ok(None),
        Some(p) => Ok(Some(OwnerKey::new(read_small_text(p, "--key-file")?))),
    }
}

fn write_key_file(path: &Path, key: &OwnerKey) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{}", key.expose()).map_err(|e| Error::io(path, e))
}

fn refuse_existing(path: Option<&PathBuf>) -> Result<()> {
    if let Some(path) = path
        && path.exists()
    {
        return Err(Error::AlreadyExists {
            what: format!("key file {}", path.display()),
        });
    }
    Ok(())
}

/// Progress events as JSON lines on stderr.
#[derive(Debug)]
struct JsonProgress;

impl OperationProgress for JsonProgress {
    fn event(&self, event: &OperationEvent) {
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

/// The progress sink `mode` asks for; the bar is hidden when `quiet`.
fn progress(
    mode: ProgressMode,
    verb: &str,
    quiet: bool,
) -> (Arc<dyn OperationProgress>, Option<Arc<BarProgress>>) {
    match mode {
        ProgressMode::Json => (Arc::new(JsonProgress), None),
        ProgressMode::None => (no_operation_progress(), None),
        ProgressMode::Bar => {
            let bar = Arc::new(BarProgress::new(verb, !quiet));
            (bar.clone(), Some(bar))
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let home = cli.home;
    let catalog = cli.catalog.as_deref().filter(|url| !url.is_empty());
    if let Command::Init = cli.command {
        let (state, created) = StateDir::init(&home, catalog).await?;
        if created {
            outln!("initialised {}", state.home.display());
            outln!(
                "the master key is in {}: keep a copy off this server (`backupctl master-key export`), it is what disaster recovery needs",
                state.master_key_path().display()
            );
        } else {
            outln!("{} is already initialised", state.home.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::MasterKey(MasterKeyCmd::Import { file }) = &cli.command {
        let text = read_small_text(file, "master key file")?;
        let installed = StateDir::import_master_key(&home, &text)?;
        outln!(
            "master key {} {}",
            if installed {
                "installed in"
            } else {
                "already in"
            },
            home.join("master.key").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let state = StateDir::open(&home, catalog).await?;
    let server = &state.server;
    match cli.command {
        Command::Init | Command::MasterKey(MasterKeyCmd::Import { .. }) => {}
        Command::Destination(DestinationCmd::Add {
            name,
            url,
            class,
            read_only,
        }) => {
            let d = server
                .add_destination(&name, &url, class, read_only)
                .await?;
            outln!(
                "destination {} added: {} ({}{})",
                d.name,
                d.url,
                d.class().as_str(),
                if d.read_only { ", read-only" } else { "" }
            );
        }
        Command::Destination(DestinationCmd::Set { name, read_only }) => {
            let d = server.set_destination_read_only(&name, read_only).await?;
            outln!(
                "destination {} is {}",
                d.name,
                if d.read_only { "read-only" } else { "writable" }
            );
        }
        Command::Destination(DestinationCmd::List { json }) => {
            let all = server.destinations().await?;
            if json {
                let docs: Vec<serde_json::Value> = all
                    .iter()
                    .map(|d| {
                        let mut v = json_value(d)?;
                        v["class"] = d.class().as_str().into();
                        Ok(v)
                    })
                    .collect::<Result<_>>()?;
                print_json(&docs)?;
            } else {
                for d in all {
                    outln!(
                        "{}\t{}\t{}{}",
                        d.name,
                        d.url,
                        d.class().as_str(),
                        if d.read_only { "\tread-only" } else { "" }
                    );
                }
            }
        }
        Command::Account(AccountCmd::Add {
            username,
            email,
            encryption,
            excludes,
            key_out,
            placement,
        }) => {
            let mode: EncryptionMode = encryption.parse()?;
            if key_out.is_some() && mode != EncryptionMode::OwnerKey {
                return Err(Error::invalid(
                    "--key-out",
                    "only accounts with --encryption remote have an owner key",
                ));
            }
            refuse_existing(key_out.as_ref())?;
            let mut new = NewAccount::active(&username, mode)?;
            new.0 = new.0.with_excludes(excludes)?;
            if let Some(email) = &email {
                new.0 = new.0.with_email(email)?;
            }
            placement.apply(server, &mut new.0).await?;
            let out_keys = server.add_account(new).await?;
            outln!(
                "account {} created: id {}, encryption {}",
                out_keys.account.username,
                out_keys.account.id,
                mode.as_str()
            );
            if let Some(key) = out_keys.owner_key {
                hand_out_key(&key, key_out.as_deref(), "owner key")?;
            }
        }
        Command::Account(AccountCmd::Set(args)) => {
            let mut account = server.account(&args.username).await?;
            if let Some(e) = &args.email {
                account = account.with_email(e)?;
            }
            if let Some(n) = &args.notify {
                account.notifications.level = parse_notify(n)?;
            }
            if let Some(b) = args.business_notices {
                account.notifications.business = b;
            }
            if let Some(m) = &args.max_on_demand {
                account.max_on_demand_snapshots = parse_limit(m)?;
            }
            if let Some(q) = &args.quota {
                account.quota.storage = parse_quota(q)?;
            }
            if let Some(l) = &args.locations {
                account.backup_locations = parse_locations(l)?;
            }
            if let Some(s) = &args.status {
                account.status = parse_status(s)?;
            }
            if args.clear_excludes || !args.excludes.is_empty() {
                let mut globs: Vec<String> = if args.clear_excludes {
                    Vec::new()
                } else {
                    account.excludes.patterns().to_vec()
                };
                globs.extend(args.excludes.iter().cloned());
                account = account.with_excludes(globs)?;
            }
            if let Some(r) = args.reseller {
                account.reseller = r;
            }
            if args.clear_tags {
                account.tags.clear();
            }
            if args.clear_source {
                account.source = None;
            }
            args.placement.apply(server, &mut account).await?;
            server.update_account(&account).await?;
            outln!("account {} updated", account.username);
        }
        Command::Account(AccountCmd::Show { username, json }) => {
            let account = server.account(&username).await?;
            let usage = server.catalog().account_usage(account.id).await?;
            if json {
                let mut doc = json_value(&account)?;
                doc["usage"] = json_value(&usage)?;
                print_json(&doc)?;
            } else {
                outln!("username\t{}", account.username);
                outln!("id\t{}", account.id);
                outln!(
                    "status\t{}",
                    json_value(&account.status)?.as_str().unwrap_or("")
                );
                outln!("encryption\t{}", account.encryption.as_str());
                outln!(
                    "email\t{}",
                    account.email.as_ref().map(|e| e.as_str()).unwrap_or("-")
                );
                outln!(
                    "notify\t{}{}",
                    json_value(&account.notifications.level)?
                        .as_str()
                        .unwrap_or(""),
                    if account.notifications.business {
                        ", business notices on"
                    } else {
                        ", business notices off"
                    }
                );
                outln!(
                    "max-on-demand\t{}",
                    limit_name(account.max_on_demand_snapshots)
                );
                outln!(
                    "quota\t{}",
                    match account.quota.storage {
                        None => "none".to_owned(),
                        Some(q) => match q.overage {
                            Some(o) =>
                                format!("{} + {} overage", human_bytes(q.bytes), human_bytes(o)),
                            None => format!("{} (soft)", human_bytes(q.bytes)),
                        },
                    }
                );
                outln!(
                    "locations\t{}",
                    match account.backup_locations {
                        BackupLocations::LocalAndCloud => "local+cloud",
                        BackupLocations::CloudOnly => "cloud",
                    }
                );
                outln!("reseller\t{}", if account.reseller { "on" } else { "off" });
                outln!("excludes\t{}", account.excludes.patterns().join(" "));
                outln!(
                    "usage\t{} in {} snapshots",
                    human_bytes(usage.bytes_stored),
                    usage.snapshots
                );
            }
        }
        Command::Account(AccountCmd::Remove { username, yes }) => {
            let account = server.account(&username).await?;
            if !yes {
                return Err(Error::refused(format!(
                    "removing {} keeps its backups as orphans until the orphan TTL: run again with --yes to proceed",
                    account.username
                )));
            }
            server.remove_account(&account).await?;
            outln!(
                "account {} removed; its backups stay as orphans",
                account.username
            );
        }
        Command::Account(AccountCmd::ResetKey {
            username,
            key_out,
            yes,
        }) => {
            let account = server.account(&username).await?;
            if !yes {
                return Err(Error::refused(format!(
                    "resetting the key of {} makes ALL its existing encrypted backups unreadable \
                     and deletes them: run again with --yes to proceed",
                    account.username
                )));
            }
            refuse_existing(key_out.as_ref())?;
            let owner_key = server.reset_key(&account).await?;
            outln!(
                "key of {} reset: old encrypted backups deleted, new keys made",
                account.username
            );
            if let Some(key) = owner_key {
                hand_out_key(&key, key_out.as_deref(), "new owner key")?;
            }
        }
        Command::Account(AccountCmd::List { json }) => {
            let all = server.accounts().await?;
            if json {
                print_json(&all)?;
            } else {
                for a in all {
                    outln!("{}\t{}\t{}", a.username, a.id, a.encryption.as_str());
                }
            }
        }
        Command::Settings(SettingsCmd::Set { name, value }) => {
            let mut settings = server.settings().await?;
            match name.as_str() {
                "max-on-demand" => settings.max_on_demand_snapshots = parse_limit(&value)?,
                "orphan-ttl-days" => {
                    settings.orphan_ttl_days = value.parse().map_err(|_| {
                        Error::invalid(
                            "orphan-ttl-days",
                            format!("{value:?}: expected a number of days (0 keeps orphans)"),
                        )
                    })?;
                }
                "accounts-root" => {
                    backup_core::model::Settings::validate_accounts_root(&value)?;
                    settings.accounts_root = value.trim().to_owned();
                }
                other => {
                    return Err(Error::invalid(
                        "setting",
                        format!(
                            "{other:?}: known settings: max-on-demand, orphan-ttl-days, accounts-root"
                        ),
                    ));
                }
            }
            server.set_settings(&settings).await?;
            outln!("{name} set to {value}");
        }
        Command::Settings(SettingsCmd::Show { json }) => {
            let settings = server.settings().await?;
            if json {
                print_json(&settings)?;
            } else {
                outln!(
                    "max-on-demand\t{}",
                    limit_name(settings.max_on_demand_snapshots)
                );
                outln!("orphan-ttl-days\t{}", settings.orphan_ttl_days);
                outln!("accounts-root\t{}", settings.accounts_root);
            }
        }
        Command::MasterKey(MasterKeyCmd::Export) => {
            let text = state.vault.export_text();
            outln!("{}", text.as_str());
        }
        Command::MasterKey(MasterKeyCmd::Rotate) => {
            let report = server.rotate_master_key().await?;
            outln!(
                "master key rotated: {} accounts re-wrapped (new fingerprint {})",
                report.accounts,
                state.vault.fingerprint()
            );
            for d in &report.read_only_destinations {
                outln!(
                    "  destination {d} is read-only: its copies stay under the previous master key"
                );
            }
        }
        Command::Catalog(CatalogCmd::Rebuild {
            destination,
            url,
            json,
        }) => {
            let dest = match server.catalog().find_destination(&destination).await? {
                Some(d) => d,
                None => {
                    let url = url.ok_or_else(|| {
                        Error::not_found(format!(
                            "destination {destination:?} in the catalog (give --url)"
                        ))
                    })?;
                    backup_core::model::Destination::new(&destination, &url)?
                }
            };
            let report = server.rebuild_catalog(&dest).await?;
            if json {
                print_json(&report)?;
            } else {
                outln!(
                    "rebuilt from {}: {} accounts, {} snapshots",
                    dest.name,
                    report.accounts,
                    report.snapshots
                );
                for p in &report.problems {
                    match &p.snapshot {
                        Some(s) => outln!(
                            "  skipped snapshot {s} of account {}: {}",
                            p.account,
                            p.reason
                        ),
                        None => outln!("  skipped account {}: {}", p.account, p.reason),
                    }
                }
            }
            if !report.problems.is_empty() {
                return Ok(ExitCode::from(EXIT_INCOMPLETE));
            }
        }
        Command::Backup(args) => {
            let account = server.account(&args.username).await?;
            let source = match (&args.source, &args.layout) {
                (Some(home), _) => FsAccount::home(home),
                (None, Some(layout)) => FsAccount::new(layout),
                (None, None) => FsAccount::home(server.source_dir(&account).await?),
            };
            if !source.root().is_dir() {
                return Err(Error::not_found(format!(
                    "source directory {}",
                    source.root().display()
                )));
            }
            let (sink, bar) = progress(cli.progress, "backup", args.json);
            let result = server
                .backup(
                    BackupJob::new(&account, &source, &args.destination)
                        .with_kind(args.kind.into())
                        .with_progress(sink),
                )
                .await;
            if let Some(bar) = bar {
                bar.finish();
            }
            let report = result?;
            let snap = &report.snapshot;
            if args.json {
                let mut doc = json_value(snap)?;
                doc["skipped"] = json_value(&report.skipped.entries)?;
                doc["skipped_total"] = report.skipped.total.into();
                doc["changed"] = json_value(&report.changed.entries)?;
                doc["changed_total"] = report.changed.total.into();
                print_json(&doc)?;
            } else {
                let t = snap.totals();
                let secs = snap.stats.duration_ms as f64 / 1000.0;
                outln!(
                    "snapshot {} of {}: {} files, {} read, {} new, {} deduplicated, {} stored, {:.2} s",
                    snap.id,
                    account.username,
                    t.files,
                    human_bytes(snap.stats.bytes_read),
                    human_bytes(snap.stats.bytes_new),
                    human_bytes(snap.stats.bytes_deduplicated),
                    human_bytes(snap.stats.bytes_stored),
                    secs
                );
                for e in &report.changed.entries {
                    outln!("changed: {} {}: {}", e.item, e.path, e.reason);
                }
                for e in &report.skipped.entries {
                    outln!("skipped: {} {}: {}", e.item, e.path, e.reason);
                }
                if snap.stats.files_skipped > 0 {
                    outln!(
                        "warning: {} unreadable entries were skipped; the snapshot is partial",
                        snap.stats.files_skipped
                    );
                }
            }
            if !report.skipped.is_empty() {
                return Ok(ExitCode::from(EXIT_INCOMPLETE));
            }
        }
        Command::Snapshots { username, json } => {
            let account = server.account(&username).await?;
            let snaps = server.snapshots(&account).await?;
            if json {
                print_json(&snaps)?;
            } else {
                for s in snaps {
                    let items: Vec<&str> = s.items.iter().map(|i| i.kind.as_str()).collect();
                    outln!(
                        "{}\t{}\t{}\t{}{}\t{}",
                        s.id,
                        s.created.format("%Y-%m-%d %H:%M:%S"),
                        s.kind,
                        human_bytes(s.totals().bytes),
                        match (s.is_locked_at(chrono::Utc::now()), s.lock_until) {
                            (false, _) => String::new(),
                            (true, None) => "\tlocked".to_owned(),
                            (true, Some(until)) =>
                                format!("\tlocked until {}", until.format("%Y-%m-%d %H:%M")),
                        },
                        items.join(",")
                    );
                }
            }
        }
        Command::Restore(args) => {
            let account = server.account(&args.username).await?;
            let mut items: Vec<(ItemKind, Snapshot)> = Vec::new();
            if let Some(id) = &args.snapshot {
                let snap = server.snapshot(&account, id).await?;
                for i in &snap.items {
                    items.push((i.kind, snap.clone()));
                }
            }
            for spec in &args.items {
                let (kind, id) = spec.split_once('=').ok_or_else(|| {
                    Error::invalid("--item", format!("{spec:?}: expected KIND=SNAPSHOT_ID"))
                })?;
                let kind: ItemKind = kind.parse()?;
                let snap = server.snapshot(&account, id).await?;
                items.push((kind, snap));
            }
            let owner_key = read_key_file(args.key_file.as_deref())?;
            if !args.dry_run {
                std::fs::create_dir_all(&args.target).map_err(|e| Error::io(&args.target, e))?;
            }
            let target = FsAccount::new(&args.target);
            let (sink, bar) = progress(cli.progress, "restore", args.dry_run || args.json);
            let mut request = RestoreRequest::new(items, &target);
            request.paths = args.paths;
            request.owner_key = owner_key;
            request.dry_run = args.dry_run;
            request.options = RestoreOptions {
                merge: args.merge,
                ownership: args.ownership.unwrap_or_default(),
                ..Default::default()
            };
            request.progress = sink;
            let result = server.restore(&account, request).await;
            if let Some(bar) = bar {
                bar.finish();
            }
            let report = result?;
            if args.json {
                print_json(&report)?;
            } else {
                print_restore(&report, args.dry_run, &args.target)?;
            }
            if !report.failed.is_empty() {
                return Ok(ExitCode::from(EXIT_INCOMPLETE));
            }
        }
        Command::Verify {
            username,
            read_data,
            sample,
            key_file,
            json,
        } => {
            let account = server.account(&username).await?;
            let request = VerifyRequest {
                read_data,
                sample_percent: sample,
                owner_key: read_key_file(key_file.as_deref())?,
                ..Default::default()
            };
            let reports = server.verify(&account, &request).await?;
            let ok = reports.iter().all(|(_, r)| r.problems.is_empty());
            if json {
                let docs: Vec<serde_json::Value> = reports
                    .iter()
                    .map(|(d, r)| {
                        Ok(serde_json::json!({
                            "destination": d.name,
                            "report": json_value(r)?,
                        }))
                    })
                    .collect::<Result<_>>()?;
                print_json(&serde_json::json!({ "ok": ok, "destinations": docs }))?;
            } else {
                print_verify(&reports, read_data)?;
                if reports.is_empty() {
                    outln!("account {} has no snapshots", account.username);
                }
                if ok {
                    outln!("ok");
                }
            }
            if !ok {
                let _ = writeln!(std::io::stderr(), "error: verification found problems");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Snapshot(command) => return retention::snapshot(server, command).await,
        Command::Forget(args) => return retention::forget(server, args).await,
        Command::Prune(args) => return retention::prune(server, args).await,
        Command::Orphans(args) => return retention::orphans(server, args).await,
        Command::Usage(args) => return retention::usage(server, args).await,
        Command::Tag(command) => return jobs::tag(server, command).await,
        Command::PriorityGroup(command) => return jobs::priority_group(server, command).await,
        Command::Job(command) => return jobs::job(server, command).await,
        Command::Queue(command) => return jobs::queue(server, command).await,
        Command::Daemon(args) => return jobs::daemon(server, args).await,
        Command::Health(args) => return jobs::health(server, args).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a key file (an owner key, a master key export): one larger than a key is refused
/// from its size, before it is read, and never read whole.
fn read_small_text(path: &Path, what: &'static str) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut text = String::new();
    if len <= MAX_KEY_FILE {
        file.take(MAX_KEY_FILE + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io(path, e))?;
    }
    if len > MAX_KEY_FILE || text.len() as u64 > MAX_KEY_FILE {
        return Err(Error::invalid(
            what,
            format!(
                "{} holds {} bytes: a key file holds a few hundred",
                path.display(),
                len.max(text.len() as u64)
            ),
        ));
    }
    Ok(text)
}

fn hand_out_key(key: &OwnerKey, path: Option<&Path>, what: &str) -> Result<()> {
    match path {
        Some(path) => {
            write_key_file(path, key)?;
            outln!("{what} written to {} (it is not kept here)", path.display());
        }
        None => {
            outln!("{what} (shown once, not kept here; it is needed to restore):");
            outln!("{}", key.expose());
        }
    }
    Ok(())
}

fn print_verify(
    reports: &[(
        backup_core::model::Destination,
        backup_core::engine::VerifyReport,
    )],
    read_data: bool,
) -> Result<()> {
    for (dest, r) in reports {
        outln!(
            "{}: {} snapshots, {} packs, {} blobs referenced{}",
            dest.name,
            r.snapshots,
            r.packs,
            r.blobs_referenced,
            if read_data {
                format!(
                    ", {} read, {} blobs authenticated",
                    human_bytes(r.bytes_read),
                    r.blobs_authenticated
                )
            } else {
                String::new()
            }
        );
        for p in &r.problems {
            outln!("  problem: {}: {}", p.object, p.reason);
        }
        for pack in &r.damaged_packs {
            outln!("  damaged pack {pack} (the next backup stores its blobs again)");
        }
        for a in &r.affected {
            outln!("  snapshot {} needs a damaged pack", a.snapshot);
            for e in &a.entries.entries {
                outln!("    {} {}: {}", e.item, e.path, e.reason);
            }
        }
    }
    Ok(())
}

fn print_restore(report: &RestoreReport, dry_run: bool, target: &Path) -> Result<()> {
    let verb = if dry_run { "would restore" } else { "restored" };
    for (kind, s) in &report.items {
        outln!(
            "{verb} {kind}: {} files, {} dirs, {} symlinks, {}",
            s.files,
            s.dirs,
            s.symlinks,
            human_bytes(s.bytes)
        );
    }
    let t = report.totals();
    outln!(
        "{verb} {} files, {} into {}",
        t.files,
        human_bytes(t.bytes),
        target.display()
    );
    for e in &report.failed.entries {
        outln!("not restored: {} {}: {}", e.item, e.path, e.reason);
    }
    if report.failed.total > 0 {
        outln!(
            "warning: {} entries could not be restored",
            report.failed.total
        );
    }
    Ok(())
}
