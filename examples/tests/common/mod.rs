//! Helpers shared by the integration tests of the server assembled over a state directory
//! ([`StateDir`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::FsAccount;
use backup_core::engine::FsStatCache;
use backup_core::model::{Account, EncryptionMode, OwnerKey, Snapshot};
use backup_core::service::{BackupJob, NewAccount, RestoreRequest, Server, ServerBuilder};
use backup_examples::{StateDir, generate_sample_account};
use backup_storage::UrlResolver;

/// One account made by [`backed_up_accounts`]: the account, its owner key text (owner-key
/// mode), its live directory and its first snapshot.
pub(crate) type BackedUp = (Account, Option<String>, PathBuf, Snapshot);

/// The explicit `file://` URL of a local directory.
pub(crate) fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// A server over the catalog, master-key vault and stat caches of `state`, opening
/// destinations with `resolver`; the caller adds what the test needs (a notifier, lease
/// times) before building it. It shares the catalog and the vault with `state.server`, so
/// both see the same accounts, keys and rotations.
pub(crate) fn server_over(state: &StateDir, resolver: UrlResolver) -> ServerBuilder {
    Server::builder(
        state.server.catalog().clone(),
        state.vault.clone(),
        Arc::new(resolver),
    )
    .stat_cache(Arc::new(FsStatCache::new(state.home.join("statcache"))))
}

/// Three accounts `user0..2` (no encryption, server key, owner key), each with a sample
/// live directory of `files(i)` home files under `dir`, backed up once to destination `d`.
pub(crate) async fn backed_up_accounts(
    server: &Server,
    dir: &Path,
    files: impl Fn(usize) -> usize,
    excludes: &[String],
) -> Vec<BackedUp> {
    let modes = [
        EncryptionMode::None,
        EncryptionMode::ServerKey,
        EncryptionMode::OwnerKey,
    ];
    let mut accounts = Vec::new();
    for (i, mode) in modes.into_iter().enumerate() {
        let live = dir.join(format!("live{i}"));
        generate_sample_account(&live, files(i)).unwrap();
        let new = NewAccount::active(&format!("user{i}"), mode).unwrap();
        let new = NewAccount(new.0.with_excludes(excludes.iter().cloned()).unwrap());
        let out = server.add_account(new).await.unwrap();
        let snapshot = backup(server, &out.account, &live).await.unwrap();
        let key = out.owner_key.map(|k| k.expose().to_owned());
        accounts.push((out.account, key, live, snapshot));
    }
    accounts
}

/// Backs up the sample-account layout at `live` to destination `d`; returns the snapshot.
pub(crate) async fn backup(
    server: &Server,
    account: &Account,
    live: &Path,
) -> backup_core::Result<Snapshot> {
    let source = FsAccount::new(live);
    Ok(server
        .backup(BackupJob::new(account, &source, "d"))
        .await?
        .snapshot)
}

/// Restores every item of `snapshot` into `target` (created if missing).
pub(crate) async fn restore_all(
    server: &Server,
    account: &Account,
    snapshot: &Snapshot,
    target: &Path,
    key: Option<OwnerKey>,
) -> backup_core::Result<()> {
    std::fs::create_dir_all(target).unwrap();
    let target = FsAccount::new(target);
    let mut request = RestoreRequest::whole(snapshot, &target);
    request.owner_key = key;
    server.restore(account, request).await.map(|_| ())
}

/// How many objects the account has in the file destination at `dir`.
pub(crate) fn count_objects(dir: &Path, account: &Account) -> usize {
    let root = dir.join("accounts").join(account.id.to_string());
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        if e.path().is_dir() {
                            walk(&e.path())
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&root)
}
