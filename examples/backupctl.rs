//! `backupctl`: the reference command-line assembly of the backup crates, for integrators to
//! read and scripts to drive.
//!
//! ```text
//! backupctl [--home DIR]     state dir (catalog + master key); default $BACKUPCTL_HOME, else ./.backupctl
//!           [--catalog URL]  catalog: sqlite://PATH or postgres://...; default $BACKUPCTL_CATALOG, else DIR/catalog.db
//!   init
//!   destination add NAME URL
//!   account add USERNAME [--email E] [--encryption none|server|remote] [--exclude GLOB]... [--key-out FILE]
//!   account list [--json]
//!   backup USERNAME --source DIR --destination NAME [--json]
//!   snapshots USERNAME [--json]
//!   restore USERNAME --target DIR (--snapshot ID | --item KIND=SNAPSHOT_ID ...) [--path GLOB]... [--key-file FILE] [--dry-run]
//!   verify USERNAME [--read-data [--sample PERCENT]] [--key-file FILE]
//!   account reset-key USERNAME [--key-out FILE] [--yes]
//!   master-key export | import FILE | rotate
//!   catalog rebuild --destination NAME [--url URL]
//! ```
//! Errors print one line on stderr and exit non-zero.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use backup_core::engine::{ProgressSink, RestoreReport};
use backup_core::model::{EncryptionMode, ItemKind, OwnerKey, Ownership, Snapshot};
use backup_core::{Error, FsAccount, Result};
use backup_examples::{BarProgress, RestoreRequest, Service};
use clap::{Args, Parser, Subcommand};

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
    #[command(subcommand)]
    command: Command,
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
        /// The owner's key file, for owner-held-key accounts.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum DestinationCmd {
    /// Add a destination: file:///PATH (or a plain path), s3://BUCKET/PREFIX[?endpoint=..],
    /// sftp://USER@HOST:PORT/PATH?key=FILE&known_hosts=FILE, memory://.
    Add {
        /// Unique name.
        name: String,
        /// Object store URL.
        url: String,
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
    /// Rebuild the catalog from a destination alone (disaster recovery).
    Rebuild {
        /// Destination name (added to the catalog with --url if it is not there).
        #[arg(long)]
        destination: String,
        /// Destination URL, when the catalog does not know the destination.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum AccountCmd {
    /// Create an account with fresh keys.
    Add {
        /// Login name.
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
struct BackupArgs {
    /// Account username or id.
    username: String,
    /// The account's home directory, backed up whole as the home item (public_html/,
    /// mail/, ssl/, ... included).
    #[arg(long, conflicts_with = "layout", required_unless_present = "layout")]
    source: Option<PathBuf>,
    /// An account layout instead: DIR/home, DIR/mail, DIR/databases/NAME, ... one
    /// directory per item.
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Destination name.
    #[arg(long)]
    destination: String,
    /// Print the snapshot as JSON.
    #[arg(long)]
    json: bool,
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

fn main() -> ExitCode {
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
        Err(e) => {
            let hint = match &e {
                Error::KeyRequired { .. } => " (pass the owner's key with --key-file)",
                _ => "",
            };
            eprintln!("error: {e}{hint}");
            ExitCode::FAILURE
        }
    }
}

/// The exit code of a backup that left entries out (a partial snapshot) and of a restore
/// that could not restore every entry; both are named in the output.
const EXIT_INCOMPLETE: u8 = 3;

fn json_value(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::invalid("report", e.to_string()))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Internal {
        reason: format!("JSON output: {e}"),
    })?;
    println!("{text}");
    Ok(())
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

fn read_key_file(path: Option<&Path>) -> Result<Option<OwnerKey>> {
    match path {
        None => Ok(None),
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            Ok(Some(OwnerKey::new(text)))
        }
    }
}

fn write_key_file(path: &Path, key: &OwnerKey) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{}", key.expose()).map_err(|e| Error::io(path, e))
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let home = cli.home;
    let catalog = cli.catalog.as_deref().filter(|url| !url.is_empty());
    if let Command::Init = cli.command {
        let (service, created) = Service::init_with_catalog(&home, catalog).await?;
        if created {
            println!("initialised {}", service.home().display());
            println!(
                "the master key is in {}: keep a copy off this server, it is what disaster recovery needs",
                service.home().join("master.key").display()
            );
        } else {
            println!("{} is already initialised", service.home().display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::MasterKey(MasterKeyCmd::Import { file }) = &cli.command {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
        Service::import_master_key(&home, &text)?;
        println!(
            "master key installed in {}",
            home.join("master.key").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut service = Service::open_with_catalog(&home, catalog).await?;
    match cli.command {
        Command::Init => {}
        Command::Destination(DestinationCmd::Add { name, url }) => {
            let d = service.add_destination(&name, &url).await?;
            println!("destination {} added: {}", d.name, d.url);
        }
        Command::Destination(DestinationCmd::List { json }) => {
            let all = service.catalog().list_destinations().await?;
            if json {
                print_json(&all)?;
            } else {
                for d in all {
                    println!("{}\t{}", d.name, d.url);
                }
            }
        }
        Command::Account(AccountCmd::Add {
            username,
            email,
            encryption,
            excludes,
            key_out,
        }) => {
            let mode: EncryptionMode = encryption.parse()?;
            if key_out.is_some() && mode != EncryptionMode::OwnerKey {
                return Err(Error::invalid(
                    "--key-out",
                    "only accounts with --encryption remote have an owner key",
                ));
            }
            if let Some(path) = &key_out
                && path.exists()
            {
                return Err(Error::AlreadyExists {
                    what: format!("key file {}", path.display()),
                });
            }
            let out = service
                .add_account(&username, email.as_deref(), mode, &excludes)
                .await?;
            println!(
                "account {} created: id {}, encryption {}",
                out.account.username,
                out.account.id,
                mode.as_str()
            );
            if let Some(key) = out.owner_key {
                match key_out {
                    Some(path) => {
                        write_key_file(&path, &key)?;
                        println!(
                            "owner key written to {} (it is not kept here)",
                            path.display()
                        );
                    }
                    None => {
                        println!("owner key (shown once, not kept here; it is needed to restore):");
                        println!("{}", key.expose());
                    }
                }
            }
        }
        Command::Account(AccountCmd::ResetKey {
            username,
            key_out,
            yes,
        }) => {
            let account = service.account(&username).await?;
            if !yes {
                return Err(Error::refused(format!(
                    "resetting the key of {} makes ALL its existing encrypted backups unreadable \
                     and deletes them: run again with --yes to proceed",
                    account.username
                )));
            }
            if let Some(path) = &key_out
                && path.exists()
            {
                return Err(Error::AlreadyExists {
                    what: format!("key file {}", path.display()),
                });
            }
            let owner_key = service
                .reset_key(&account, &backup_core::ports::NullNotifier)
                .await?;
            println!(
                "key of {} reset: old encrypted backups deleted, new keys made",
                account.username
            );
            if let Some(key) = owner_key {
                match key_out {
                    Some(path) => {
                        write_key_file(&path, &key)?;
                        println!(
                            "new owner key written to {} (it is not kept here)",
                            path.display()
                        );
                    }
                    None => {
                        println!("new owner key (shown once, not kept here):");
                        println!("{}", key.expose());
                    }
                }
            }
        }
        Command::MasterKey(MasterKeyCmd::Export) => {
            println!("{}", service.export_master_key());
        }
        Command::MasterKey(MasterKeyCmd::Import { .. }) => {}
        Command::MasterKey(MasterKeyCmd::Rotate) => {
            let n = service.rotate_master_key().await?;
            println!("master key rotated: {n} accounts re-wrapped");
        }
        Command::Catalog(CatalogCmd::Rebuild { destination, url }) => {
            let dest = match service.catalog().find_destination(&destination).await? {
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
            let report = service.rebuild_catalog(&dest).await?;
            println!(
                "rebuilt from {}: {} accounts, {} snapshots",
                dest.name, report.accounts, report.snapshots
            );
            for id in &report.skipped {
                println!(
                    "  skipped account {id}: no key envelope the master key opens, or no account record"
                );
            }
        }
        Command::Account(AccountCmd::List { json }) => {
            let all = service.catalog().list_accounts().await?;
            if json {
                print_json(&all)?;
            } else {
                for a in all {
                    println!("{}\t{}\t{}", a.username, a.id, a.encryption.as_str());
                }
            }
        }
        Command::Backup(args) => {
            let account = service.account(&args.username).await?;
            let bar = Arc::new(BarProgress::new("backup", !args.json));
            let sink: ProgressSink = bar.clone();
            let source = match (&args.source, &args.layout) {
                (Some(home), _) => FsAccount::home(home),
                (None, Some(layout)) => FsAccount::new(layout),
                (None, None) => {
                    return Err(Error::invalid("--source", "give --source or --layout"));
                }
            };
            if !source.root().is_dir() {
                return Err(Error::not_found(format!(
                    "source directory {}",
                    source.root().display()
                )));
            }
            let result = service
                .backup_source(&account, &source, &args.destination, &sink)
                .await;
            bar.finish();
            let report = result?;
            let snap = &report.snapshot;
            if args.json {
                let mut doc = serde_json::to_value(snap)
                    .map_err(|e| Error::invalid("snapshot", e.to_string()))?;
                if let Some(map) = doc.as_object_mut() {
                    map.insert("skipped".into(), json_value(&report.skipped.entries)?);
                    map.insert("skipped_total".into(), report.skipped.total.into());
                    map.insert("changed".into(), json_value(&report.changed.entries)?);
                    map.insert("changed_total".into(), report.changed.total.into());
                }
                print_json(&doc)?;
            } else {
                let t = snap.totals();
                let secs = snap.stats.duration_ms as f64 / 1000.0;
                println!(
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
                    println!("changed: {} {}: {}", e.item, e.path, e.reason);
                }
                for e in &report.skipped.entries {
                    println!("skipped: {} {}: {}", e.item, e.path, e.reason);
                }
                if snap.stats.files_skipped > 0 {
                    println!(
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
            let account = service.account(&username).await?;
            let snaps = service.snapshots(&account).await?;
            if json {
                print_json(&snaps)?;
            } else {
                for s in snaps {
                    let items: Vec<&str> = s.items.iter().map(|i| i.kind.as_str()).collect();
                    println!(
                        "{}\t{}\t{}\t{}{}\t{}",
                        s.id,
                        s.created.format("%Y-%m-%d %H:%M:%S"),
                        s.kind,
                        human_bytes(s.totals().bytes),
                        if s.locked { "\tlocked" } else { "" },
                        items.join(",")
                    );
                }
            }
        }
        Command::Restore(args) => {
            let account = service.account(&args.username).await?;
            let mut items: Vec<(ItemKind, Snapshot)> = Vec::new();
            if let Some(id) = &args.snapshot {
                let snap = service.snapshot(&account, id).await?;
                for i in &snap.items {
                    items.push((i.kind, snap.clone()));
                }
            }
            for spec in &args.items {
                let (kind, id) = spec.split_once('=').ok_or_else(|| {
                    Error::invalid("--item", format!("{spec:?}: expected KIND=SNAPSHOT_ID"))
                })?;
                let kind: ItemKind = kind.parse()?;
                let snap = service.snapshot(&account, id).await?;
                items.push((kind, snap));
            }
            let owner_key = read_key_file(args.key_file.as_deref())?;
            let bar = Arc::new(BarProgress::new("restore", !args.dry_run));
            let sink: ProgressSink = bar.clone();
            let request = RestoreRequest {
                items,
                paths: args.paths,
                target: args.target.clone(),
                owner_key,
                merge: args.merge,
                dry_run: args.dry_run,
                ownership: args.ownership.unwrap_or_default(),
            };
            let result = service.restore(&account, request, &sink).await;
            bar.finish();
            let report = result?;
            if args.json {
                print_json(&report)?;
            } else {
                print_restore(&report, args.dry_run, &args.target);
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
        } => {
            let account = service.account(&username).await?;
            let owner_key = read_key_file(key_file.as_deref())?;
            let reports = service
                .verify(&account, read_data, sample, owner_key.as_ref())
                .await?;
            let mut ok = true;
            for (dest, r) in &reports {
                println!(
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
                    ok = false;
                    println!("  problem: {}: {}", p.object, p.reason);
                }
                for pack in &r.damaged_packs {
                    println!("  damaged pack {pack} (the next backup stores its blobs again)");
                }
                for a in &r.affected {
                    println!("  snapshot {} needs a damaged pack", a.snapshot);
                    for e in &a.entries.entries {
                        println!("    {} {}: {}", e.item, e.path, e.reason);
                    }
                }
            }
            if reports.is_empty() {
                println!("account {} has no snapshots", account.username);
            }
            if !ok {
                eprintln!("error: verification found problems");
                return Ok(ExitCode::FAILURE);
            }
            println!("ok");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_restore(report: &RestoreReport, dry_run: bool, target: &Path) {
    let verb = if dry_run { "would restore" } else { "restored" };
    for (kind, s) in &report.items {
        println!(
            "{verb} {kind}: {} files, {} dirs, {} symlinks, {}",
            s.files,
            s.dirs,
            s.symlinks,
            human_bytes(s.bytes)
        );
    }
    let t = report.totals();
    println!(
        "{verb} {} files, {} into {}",
        t.files,
        human_bytes(t.bytes),
        target.display()
    );
    for e in &report.failed.entries {
        println!("not restored: {} {}: {}", e.item, e.path, e.reason);
    }
    if report.failed.total > 0 {
        println!(
            "warning: {} entries could not be restored",
            report.failed.total
        );
    }
}
