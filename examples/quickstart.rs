//! Quickstart: a whole backup round trip on the embedded defaults (local directory
//! destination, SQLite catalog, server-held encryption key).
//!
//! ```text
//! cargo run --release --example quickstart [-- DIR]
//! ```
//! Generates a sample hosting account (a few thousand files in `home/`, database dumps, cron,
//! a DNS zone, a certificate, a mailbox), backs it up, changes a few files, backs up again,
//! restores the home directory from the second snapshot and the databases from the first,
//! and checks the result byte for byte. With `DIR`, everything is kept there; otherwise a
//! temporary directory is used and removed. Exits non-zero unless the check passed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use backup_core::model::{EncryptionMode, ItemKind, Snapshot};
use backup_core::service::{BackupJob, NewAccount, RestoreRequest};
use backup_core::{Error, FsAccount, Result};
use backup_examples::{
    BarProgress, StateDir, change_some_files, compare_trees, generate_sample_account,
};

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(label: &str, snap: &Snapshot) {
    let secs = (snap.stats.duration_ms.max(1)) as f64 / 1000.0;
    println!(
        "{label}: {} files, {:.1} MiB read, {:.1} MiB new, {:.1} MiB deduplicated, {:.1} MiB stored, {:.2} s ({:.0} MiB/s)",
        snap.totals().files,
        mib(snap.stats.bytes_read),
        mib(snap.stats.bytes_new),
        mib(snap.stats.bytes_deduplicated),
        mib(snap.stats.bytes_stored),
        secs,
        mib(snap.stats.bytes_read) / secs
    );
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let dest = to.join(entry.file_name());
        if entry
            .file_type()
            .map_err(|e| Error::io(entry.path(), e))?
            .is_dir()
        {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest).map_err(|e| Error::io(&dest, e))?;
        }
    }
    Ok(())
}

async fn run(work: &Path) -> Result<bool> {
    let live = work.join("live/alice");
    let state = work.join("state");
    let repo = work.join("destination");
    let restored = work.join("restored/alice");
    for dir in [&live, &restored] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }

    let started = Instant::now();
    let sample = generate_sample_account(&live, 3000).map_err(|e| Error::io(&live, e))?;
    println!(
        "sample account: {} files, {:.1} MiB in {}",
        sample.files,
        mib(sample.bytes),
        live.display()
    );

    let (state, _) = StateDir::init(&state, None).await?;
    let server = &state.server;
    if server.catalog().find_destination("local").await?.is_none() {
        server
            .add_destination("local", &format!("file://{}", repo.display()), None, false)
            .await?;
    }
    let account = match server.account("alice").await {
        Ok(account) => account,
        Err(Error::NotFound { .. }) => {
            let new = NewAccount::active("alice", EncryptionMode::ServerKey)?;
            let new = NewAccount(new.0.with_email("alice@example.com")?);
            server.add_account(new).await?.account
        }
        Err(e) => return Err(e),
    };
    let source = FsAccount::new(&live);

    let bar = Arc::new(BarProgress::new("backup", true));
    let first = server
        .backup(BackupJob::new(&account, &source, "local").with_progress(bar.clone()))
        .await?
        .snapshot;
    bar.finish();
    report("backup 1", &first);

    // Keep the databases as they were, to check the restore from the first snapshot.
    let first_databases = work.join("expected-databases");
    if first_databases.exists() {
        std::fs::remove_dir_all(&first_databases).map_err(|e| Error::io(&first_databases, e))?;
    }
    copy_dir(&live.join("databases"), &first_databases)?;

    let changed = change_some_files(&live, 20).map_err(|e| Error::io(&live, e))?;
    println!("changed {changed} files");
    let bar = Arc::new(BarProgress::new("backup", true));
    let second = server
        .backup(BackupJob::new(&account, &source, "local").with_progress(bar.clone()))
        .await?
        .snapshot;
    bar.finish();
    report("backup 2", &second);

    let restore_started = Instant::now();
    std::fs::create_dir_all(&restored).map_err(|e| Error::io(&restored, e))?;
    let target = FsAccount::new(&restored);
    let bar = Arc::new(BarProgress::new("restore", true));
    let mut request = RestoreRequest::new(
        vec![
            (ItemKind::HomeDir, second.clone()),
            (ItemKind::Databases, first.clone()),
        ],
        &target,
    );
    request.progress = bar.clone();
    let restore = server.restore(&account, request).await?;
    bar.finish();
    let restore_secs = restore_started.elapsed().as_secs_f64();
    let totals = restore.totals();
    println!(
        "restore (home from snapshot 2, databases from snapshot 1): {} files, {:.1} MiB, {:.2} s ({:.0} MiB/s)",
        totals.files,
        mib(totals.bytes),
        restore_secs,
        mib(totals.bytes) / restore_secs.max(0.001)
    );

    let checks = [
        ("home", live.join("home"), restored.join("home")),
        (
            "databases",
            first_databases.clone(),
            restored.join("databases"),
        ),
    ];
    let mut ok = true;
    for (what, expected, got) in checks {
        match compare_trees(&expected, &got).map_err(|e| Error::io(&got, e))? {
            None => println!("verified {what}: identical byte for byte"),
            Some(diff) => {
                ok = false;
                println!("MISMATCH in {what}: {diff}");
            }
        }
    }
    println!("total {:.2} s", started.elapsed().as_secs_f64());
    Ok(ok)
}

fn main() -> ExitCode {
    let arg = std::env::args_os().nth(1).map(PathBuf::from);
    let temp;
    let work = match arg {
        Some(dir) => dir,
        None => match tempfile::tempdir() {
            Ok(t) => {
                temp = t;
                temp.path().to_path_buf()
            }
            Err(e) => {
                eprintln!("error: cannot create a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
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
    match runtime.block_on(run(&work)) {
        Ok(true) => {
            println!("quickstart passed");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            eprintln!("error: the restored data differs from the source");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
