//! Restores, dry runs and verification: read paths, which never write to a destination.

use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::Server;
use super::progress::{OperationKind, OperationProgress, Phase, Reporter, no_operation_progress};
use crate::engine::{self, ProgressSink, RestoreReport, VerifyOptions, VerifyReport};
use crate::error::{Error, Result};
use crate::model::{
    Account, AccountId, CheckedPlan, Destination, DestinationId, ItemKind, ItemSelection, OwnerKey,
    PathSelection, RestoreOptions, RestorePlan, Snapshot,
};
use crate::ports::{EventKind, RestoreTarget};

/// What to restore.
#[derive(Debug)]
pub struct RestoreRequest<'a> {
    /// Items, each from its snapshot (snapshots may be on different destinations).
    pub items: Vec<(ItemKind, Snapshot)>,
    /// Include globs for tree items (home, mail); empty takes everything.
    pub paths: Vec<String>,
    /// Where to write.
    pub target: &'a dyn RestoreTarget,
    /// The owner's key, for owner-key accounts.
    pub owner_key: Option<OwnerKey>,
    /// Restore options (merge, ownership, ...).
    pub options: RestoreOptions,
    /// Only report what would be restored.
    pub dry_run: bool,
    /// Progress events.
    pub progress: Arc<dyn OperationProgress>,
    /// Stops the restore before its next item.
    pub cancel: CancellationToken,
}

impl<'a> RestoreRequest<'a> {
    /// Restores `items` into `target` with default options.
    pub fn new(items: Vec<(ItemKind, Snapshot)>, target: &'a dyn RestoreTarget) -> Self {
        Self {
            items,
            paths: Vec::new(),
            target,
            owner_key: None,
            options: RestoreOptions::default(),
            dry_run: false,
            progress: no_operation_progress(),
            cancel: CancellationToken::new(),
        }
    }

    /// Every item of `snapshot`.
    pub fn whole(snapshot: &Snapshot, target: &'a dyn RestoreTarget) -> Self {
        Self::new(
            snapshot
                .items
                .iter()
                .map(|i| (i.kind, snapshot.clone()))
                .collect(),
            target,
        )
    }
}

/// What to verify.
#[derive(Debug, Default)]
pub struct VerifyRequest {
    /// Read every pack back (and, with the content key, open every blob).
    pub read_data: bool,
    /// With `read_data`, read about this percentage of the packs.
    pub sample_percent: Option<u8>,
    /// The owner's key, for owner-key accounts: checked, and a wrong one fails.
    pub owner_key: Option<OwnerKey>,
    /// Stops between destinations.
    pub cancel: CancellationToken,
}

/// The items of a restore held by one destination and one identity.
type Part<'a> = ((DestinationId, AccountId), Vec<&'a (ItemKind, Snapshot)>);

impl Server {
    /// Checks a restore plan against the catalog: the account exists, the rules of its
    /// settings hold (terminate-first is refused for resellers, every required condition
    /// is accepted), and every snapshot exists and belongs to the account.
    pub async fn check_plan(
        &self,
        plan: &RestorePlan,
        required_conditions: &[String],
    ) -> Result<CheckedPlan> {
        let account = self
            .inner
            .catalog
            .get_account(plan.account)
            .await?
            .ok_or_else(|| Error::not_found(format!("account {}", plan.account)))?;
        plan.check_rules(&account, required_conditions)?;
        let mut snapshots: Vec<Snapshot> = Vec::new();
        for id in plan.snapshot_ids() {
            let s = self
                .inner
                .catalog
                .get_snapshot(id)
                .await?
                .ok_or_else(|| Error::not_found(format!("snapshot {id}")))?;
            snapshots.push(s);
        }
        plan.check_snapshots(&snapshots)?;
        Ok(CheckedPlan { account, snapshots })
    }

    /// Restores (or dry-runs) items from snapshots, possibly on several destinations.
    /// Nothing is written to any destination.
    pub async fn restore(
        &self,
        account: &Account,
        request: RestoreRequest<'_>,
    ) -> Result<RestoreReport> {
        let dry_run = request.dry_run;
        let mut reporter = Reporter::new(
            if dry_run {
                OperationKind::DryRun
            } else {
                OperationKind::Restore
            },
            request.progress.clone(),
        );
        let mut totals = crate::model::ItemStats::default();
        for (kind, snapshot) in &request.items {
            if let Some(item) = snapshot.items.iter().find(|i| i.kind == *kind) {
                totals.add(&item.stats);
            }
        }
        reporter.set_totals(totals);
        reporter.phase(Phase::Preparing);
        let result = self.run_restore(account, request, &reporter).await;
        reporter.phase(if result.is_ok() {
            Phase::Finished
        } else {
            Phase::Failed
        });
        if !dry_run {
            match &result {
                Ok(r) if r.failed.is_empty() => {
                    self.notify(account, EventKind::RestoreSucceeded).await
                }
                Ok(r) => {
                    self.notify(
                        account,
                        EventKind::RestoreFailed {
                            reason: format!("{} entries could not be restored", r.failed.total),
                        },
                    )
                    .await
                }
                Err(Error::Cancelled) => {}
                Err(e) => {
                    self.notify(
                        account,
                        EventKind::RestoreFailed {
                            reason: e.to_string(),
                        },
                    )
                    .await
                }
            }
        }
        result
    }

    async fn run_restore(
        &self,
        account: &Account,
        request: RestoreRequest<'_>,
        reporter: &Reporter,
    ) -> Result<RestoreReport> {
        if request.items.is_empty() {
            return Err(Error::invalid("restore", "no item selected"));
        }
        let tree_paths = PathSelection::new(request.paths.iter().cloned(), Vec::<String>::new())?;
        // Grouped by destination and by the identity holding the objects (a reassigned
        // snapshot keeps its first identity's prefix and keys).
        let mut by_destination: Vec<Part<'_>> = Vec::new();
        for item in &request.items {
            if item.1.account != account.id {
                return Err(Error::refused(format!(
                    "snapshot {} belongs to another account",
                    item.1.id
                )));
            }
            let key = (item.1.destination, item.1.storage_account());
            match by_destination.iter_mut().find(|(d, _)| *d == key) {
                Some((_, v)) => v.push(item),
                None => by_destination.push((key, vec![item])),
            }
        }
        let (cancel, watcher) = self.joined(&request.cancel);
        let sink = reporter.sink();
        let result = self
            .restore_parts(
                account,
                &request,
                by_destination,
                &tree_paths,
                &cancel,
                &sink,
            )
            .await;
        watcher.abort();
        result
    }

    async fn restore_parts(
        &self,
        account: &Account,
        request: &RestoreRequest<'_>,
        by_destination: Vec<Part<'_>>,
        tree_paths: &PathSelection,
        cancel: &CancellationToken,
        sink: &ProgressSink,
    ) -> Result<RestoreReport> {
        let mut report = RestoreReport::default();
        for ((destination_id, identity), items) in by_destination {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let destination = self.destination_by_id(destination_id).await?;
            let handle = self
                .reader(
                    account,
                    identity,
                    &destination,
                    request.owner_key.as_ref(),
                    true,
                )
                .await?;
            let mut plan = RestorePlan::new(identity).with_options(request.options);
            plan.cancel = Some(cancel.clone());
            let mut snapshots: Vec<Snapshot> = Vec::new();
            for (kind, snap) in items {
                let paths = if kind.is_tree() {
                    tree_paths.clone()
                } else {
                    PathSelection::all()
                };
                plan.items.push(ItemSelection {
                    kind: *kind,
                    snapshot: snap.id,
                    paths,
                });
                if !snapshots.iter().any(|s| s.id == snap.id) {
                    snapshots.push(snap.clone());
                }
            }
            let part = if request.dry_run {
                engine::dry_run(&handle, &plan, &snapshots).await?
            } else {
                engine::restore(&handle, &plan, &snapshots, request.target, sink).await?
            };
            report.items.extend(part.items);
            report.failed.extend(part.failed);
        }
        Ok(report)
    }

    /// Verifies every destination holding snapshots of the account. Without `read_data`
    /// the structure is checked; with it every pack is read back (and, when the content key
    /// is at hand, every blob opened and authenticated). A wrong owner key fails here as it
    /// fails a restore. Nothing is written to a read-only destination.
    pub async fn verify(
        &self,
        account: &Account,
        request: &VerifyRequest,
    ) -> Result<Vec<(Destination, VerifyReport)>> {
        let snapshots = self.snapshots(account).await?;
        let mut destinations = Vec::new();
        for s in &snapshots {
            let key = (s.destination, s.storage_account());
            if !destinations.contains(&key) {
                destinations.push(key);
            }
        }
        let mut out = Vec::new();
        for (id, identity) in destinations {
            self.check_shutdown()?;
            if request.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let destination = self.destination_by_id(id).await?;
            let handle = self
                .reader(
                    account,
                    identity,
                    &destination,
                    request.owner_key.as_ref(),
                    false,
                )
                .await?;
            let ids: Vec<_> = snapshots
                .iter()
                .filter(|s| s.destination == id && s.storage_account() == identity)
                .map(|s| s.id)
                .collect();
            let report = engine::verify(
                &handle,
                &ids,
                VerifyOptions {
                    read_data: request.read_data,
                    sample_percent: request.sample_percent,
                    read_only: destination.read_only,
                },
            )
            .await?;
            out.push((destination, report));
        }
        Ok(out)
    }
}
