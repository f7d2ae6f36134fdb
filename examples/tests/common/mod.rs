//! Helpers shared by the integration tests of the reference `Service`.

use std::path::Path;

use backup_core::engine::{ProgressSink, no_progress};
use backup_core::model::{Account, OwnerKey};
use backup_examples::{RestoreRequest, Service};

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
