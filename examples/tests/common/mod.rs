//! Helpers shared by the integration tests of the reference `Service`.

use std::path::{Path, PathBuf};

use backup_core::engine::{ProgressSink, no_progress};
use backup_core::model::{Account, EncryptionMode, OwnerKey, Snapshot};
use backup_examples::{RestoreRequest, Service, generate_sample_account};

/// One account made by [`backed_up_accounts`]: the account, its owner key text (owner-key
/// mode), its live directory and its first snapshot.
pub(crate) type BackedUp = (Account, Option<String>, PathBuf, Snapshot);

/// Three accounts `user0..2` (no encryption, server key, owner key), each with a sample
/// live directory of `files(i)` home files under `dir`, backed up once to destination `d`.
pub(crate) async fn backed_up_accounts(
    service: &Service,
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
        let out = service
            .add_account(&format!("user{i}"), None, mode, excludes)
            .await
            .unwrap();
        let snapshot = service
            .backup(&out.account, &live, "d", &no_progress())
            .await
            .unwrap();
        let key = out.owner_key.map(|k| k.expose().to_owned());
        accounts.push((out.account, key, live, snapshot));
    }
    accounts
}

/// Restores every item of `snapshot` into `target`.
pub(crate) async fn restore_all(
    service: &Service,
    account: &Account,
    snapshot: &backup_core::model::Snapshot,
    target: &Path,
    key: Option<OwnerKey>,
) -> backup_core::Result<()> {
    let items = snapshot
        .items
        .iter()
        .map(|i| (i.kind, snapshot.clone()))
        .collect();
    let progress: ProgressSink = no_progress();
    service
        .restore(
            account,
            RestoreRequest {
                items,
                paths: vec![],
                target: target.to_path_buf(),
                owner_key: key,
                merge: false,
                dry_run: false,
                ownership: Default::default(),
            },
            &progress,
        )
        .await
        .map(|_| ())
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
