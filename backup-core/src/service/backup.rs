//! Backups: the settings that refuse them, the lease, the key, the commit order.

use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use super::progress::{OperationKind, OperationProgress, Phase, Reporter, no_operation_progress};
use super::{Server, release};
use crate::engine::{self, BackupReport, BackupRequest, CommitGuard};
use crate::error::{Error, Result};
use crate::model::{
    Account, AccountStatus, BackupLocations, Destination, DestinationClass, ItemKind, Job, JobId,
    Limit, PathFilter, QuotaState, SnapshotKind, TaskId,
};
use crate::ports::{AccountSource, EventKind};
use crate::repo::{AccountRepo, LeaseGuard, Repository, encode_account};

/// One backup to run.
#[derive(Debug)]
pub struct BackupJob<'a> {
    /// The account.
    pub account: &'a Account,
    /// Where its live data is.
    pub source: &'a dyn AccountSource,
    /// The destination's name.
    pub destination: &'a str,
    /// Why (on-demand snapshots count against the account's limit).
    pub kind: SnapshotKind,
    /// Items to back up; `None` takes every item the source has.
    pub items: Option<Vec<ItemKind>>,
    /// Progress events.
    pub progress: Arc<dyn OperationProgress>,
    /// Cancels the backup (nothing is recorded).
    pub cancel: CancellationToken,
    /// The job it runs for (recorded in the snapshot), if any.
    pub job: Option<JobId>,
    /// The queue task it runs for (recorded in the snapshot), if any.
    pub task: Option<TaskId>,
    /// Excludes added to the account's own (the job's).
    pub excludes: PathFilter,
    /// Checked last before the snapshot is committed, after the server's own checks; an
    /// error records nothing (a queue worker checks it still holds its task).
    pub guard: Option<&'a dyn CommitGuard>,
}

impl<'a> BackupJob<'a> {
    /// An on-demand backup of every item of `source` to `destination`.
    pub fn new(account: &'a Account, source: &'a dyn AccountSource, destination: &'a str) -> Self {
        Self {
            account,
            source,
            destination,
            kind: SnapshotKind::OnDemand,
            items: None,
            progress: no_operation_progress(),
            cancel: CancellationToken::new(),
            job: None,
            task: None,
            excludes: PathFilter::default(),
            guard: None,
        }
    }

    /// Runs for `job`: the snapshot names it, and the job's excludes are added.
    pub fn for_job(mut self, job: &Job) -> Self {
        self.job = Some(job.id);
        self.excludes = job.excludes.clone();
        self
    }

    /// Backs up only these items (those the source has).
    pub fn with_items(mut self, items: Vec<ItemKind>) -> Self {
        self.items = Some(items);
        self
    }

    /// Reports progress to `sink`.
    pub fn with_progress(mut self, sink: Arc<dyn OperationProgress>) -> Self {
        self.progress = sink;
        self
    }

    /// Cancels through `token`.
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Records the snapshot as `kind`.
    pub fn with_kind(mut self, kind: SnapshotKind) -> Self {
        self.kind = kind;
        self
    }
}

/// What a backup holds while it runs.
#[derive(Debug, Clone, Copy)]
struct Held<'a> {
    destination: &'a Destination,
    repo: &'a Repository,
    lease: &'a LeaseGuard,
    /// `(used, hard limit)` of a hard quota.
    hard_limit: Option<(u64, u64)>,
}

/// The last check before the snapshot object is written: the lease is still ours and the
/// account's key is still the one the backup sealed with (a key reset elsewhere would make
/// the snapshot unreadable).
#[derive(Debug)]
struct Guard<'a> {
    server: &'a Server,
    lease: &'a LeaseGuard,
    account: &'a Account,
    envelope: &'a [u8],
    /// The caller's own last check (a queue worker's: it still holds the task).
    extra: Option<&'a dyn CommitGuard>,
}

#[async_trait::async_trait]
impl CommitGuard for Guard<'_> {
    async fn check(&self) -> Result<()> {
        self.lease.check().await?;
        let now = self
            .server
            .inner
            .catalog
            .get_key_envelope(self.account.id)
            .await?;
        if now.as_deref() != Some(self.envelope) {
            return Err(Error::refused(format!(
                "the key of account {} changed during the backup (a key reset): nothing was recorded",
                self.account.username
            )));
        }
        if let Some(extra) = self.extra {
            extra.check().await?;
        }
        Ok(())
    }
}

impl Server {
    /// Backs up an account and records the snapshot.
    ///
    /// Before any byte is uploaded the account's settings are checked (status, on-demand
    /// limit, quota, backup locations) and the destination must be writable; a refusal is
    /// [`Error::SettingRefused`] and a notification. Then the account's lease on the
    /// destination is taken (waiting for another operation on the account), the key
    /// envelope and sealed account record are written if missing, the engine runs, and the
    /// catalog row is written last. The report names what was left out (the snapshot is
    /// then partial).
    pub async fn backup(&self, job: BackupJob<'_>) -> Result<BackupReport> {
        // Notifications follow the settings as stored (the caller's copy may be stale).
        let account = match self.inner.catalog.get_account(job.account.id).await {
            Ok(Some(stored)) => stored,
            _ => job.account.clone(),
        };
        let account = &account;
        let reporter = Reporter::new(OperationKind::Backup, job.progress.clone());
        reporter.phase(Phase::Preparing);
        let result = self.run_backup(&job, &reporter).await;
        reporter.phase(if result.is_ok() {
            Phase::Finished
        } else {
            Phase::Failed
        });
        match &result {
            Ok(report) if report.skipped.is_empty() => {
                self.notify(
                    account,
                    EventKind::BackupSucceeded {
                        snapshot: report.snapshot.id,
                    },
                )
                .await
            }
            Ok(report) => {
                self.notify(
                    account,
                    EventKind::BackupPartial {
                        snapshot: report.snapshot.id,
                        skipped: report.skipped.total,
                    },
                )
                .await
            }
            Err(Error::SettingRefused { setting, reason }) => {
                self.notify(
                    account,
                    EventKind::BackupRefused {
                        setting: (*setting).to_owned(),
                        reason: reason.clone(),
                    },
                )
                .await
            }
            Err(Error::Cancelled) => {}
            Err(e) => {
                self.notify(
                    account,
                    EventKind::BackupFailed {
                        reason: e.to_string(),
                    },
                )
                .await
            }
        }
        result
    }

    async fn run_backup(&self, job: &BackupJob<'_>, reporter: &Reporter) -> Result<BackupReport> {
        // The account as stored now (the caller's copy may be stale).
        let account = self
            .inner
            .catalog
            .get_account(job.account.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("account {}", job.account.username)))?;
        let destination = self.destination(job.destination).await?;
        // Refused early, before waiting for the lease or writing anything...
        self.check_backup_allowed(&account, &destination, job.kind)
            .await?;
        self.check_quota_before(&account).await?;
        let repo = self.repo(&destination).await?;
        let lease = self.lease(&repo, account.id, "backup").await?;
        let result = async {
            // ...and checked again under the lease, where no other backup of the account
            // adds a snapshot or usage between the check and the commit.
            let account = self
                .inner
                .catalog
                .get_account(account.id)
                .await?
                .ok_or_else(|| Error::not_found(format!("account {}", account.username)))?;
            self.check_backup_allowed(&account, &destination, job.kind)
                .await?;
            let hard_limit = self.check_quota_before(&account).await?;
            let held = Held {
                destination: &destination,
                repo: &repo,
                lease: &lease,
                hard_limit,
            };
            self.backup_under_lease(job, &account, &held, reporter)
                .await
        }
        .await;
        release(lease).await;
        let report = result?;
        self.check_quota_after(&account).await?;
        Ok(report)
    }

    async fn backup_under_lease(
        &self,
        job: &BackupJob<'_>,
        account: &Account,
        held: &Held<'_>,
        reporter: &Reporter,
    ) -> Result<BackupReport> {
        let Held {
            destination,
            repo,
            lease,
            hard_limit,
        } = *held;
        // Read under the lease: a key reset or rotation holding it has finished.
        let (keys, envelope) = self.keys(account, None).await?;
        let handle = repo.account(account.id, keys.sealer.clone(), None);
        self.publish_keys(repo, &handle, account, &keys.key_id, &envelope)
            .await?;
        let guard = Guard {
            server: self,
            lease,
            account,
            envelope: &envelope,
            extra: job.guard,
        };
        let (cancel, watcher) = self.joined(&job.cancel);
        let mut request = BackupRequest::new(account, destination.id)
            .with_cancel(cancel)
            .with_commit_guard(&guard);
        request.kind = job.kind;
        request.items = job.items.clone();
        request.job = job.job;
        request.task = job.task;
        request.extra_excludes = job.excludes.clone();
        if let Some(store) = &self.inner.stat_cache {
            request = request.with_stat_cache(store.as_ref());
        }
        if let Some((used, limit)) = hard_limit {
            request = request.with_quota(used, limit);
        }
        let outcome = engine::backup(&handle, &request, job.source, &reporter.sink()).await;
        watcher.abort();
        let report = match outcome {
            Ok(report) => report,
            Err(Error::QuotaExceeded { used, limit }) => {
                self.notify(account, EventKind::QuotaExceeded { used, limit })
                    .await;
                return Err(Error::setting(
                    "quota",
                    format!(
                        "the backup stopped: it would take {} to {used} bytes, past its quota and overage of {limit} bytes; nothing was recorded",
                        account.username
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        // The catalog row last: a snapshot in the catalog always restores.
        reporter.phase(Phase::Committing);
        self.inner.catalog.put_snapshot(&report.snapshot).await?;
        Ok(report)
    }

    /// Writes the key envelope and the sealed account record to the destination. Under the
    /// lease, the catalog's envelope is current: a different one with the same key id is
    /// the same keys under a previous master key (a rotation that did not reach here).
    async fn publish_keys(
        &self,
        repo: &Repository,
        handle: &AccountRepo,
        account: &Account,
        key_id: &str,
        envelope: &[u8],
    ) -> Result<()> {
        match repo.put_key_envelope(account.id, key_id, envelope).await {
            Err(Error::AlreadyExists { .. }) => {
                repo.replace_key_envelope(account.id, key_id, envelope)
                    .await?
            }
            other => other?,
        }
        let record = encode_account(handle.sealer().server_keys(), account)?;
        let sealed = self.inner.vault.seal_record(account.id, &record).await?;
        handle.put_account_record_bytes(sealed).await
    }

    /// The settings that refuse a backup before anything is uploaded.
    async fn check_backup_allowed(
        &self,
        account: &Account,
        destination: &Destination,
        kind: SnapshotKind,
    ) -> Result<()> {
        if destination.read_only {
            return Err(Error::setting(
                "read-only",
                format!(
                    "destination {} is read-only: restores and verification read it, backups do not write to it",
                    destination.name
                ),
            ));
        }
        match account.status {
            AccountStatus::Active | AccountStatus::Suspended => {}
            AccountStatus::Inactive => {
                return Err(Error::setting(
                    "status",
                    format!("account {} is not activated yet", account.username),
                ));
            }
            AccountStatus::Terminated => {
                return Err(Error::setting(
                    "status",
                    format!("account {} is terminated", account.username),
                ));
            }
        }
        if account.backup_locations == BackupLocations::CloudOnly
            && destination.class() == DestinationClass::Local
        {
            return Err(Error::setting(
                "locations",
                format!(
                    "account {} is backed up to cloud destinations only, and {} is local",
                    account.username, destination.name
                ),
            ));
        }
        if kind == SnapshotKind::OnDemand {
            let global = self
                .inner
                .catalog
                .get_settings()
                .await?
                .max_on_demand_snapshots;
            match account.max_on_demand_snapshots.resolve(global) {
                Limit::Disabled => {
                    return Err(Error::setting(
                        "max-on-demand",
                        format!("on-demand backups are disabled for {}", account.username),
                    ));
                }
                Limit::Max(n) => {
                    let kept = self
                        .inner
                        .catalog
                        .list_snapshots(account.id)
                        .await?
                        .iter()
                        .filter(|s| s.kind == SnapshotKind::OnDemand)
                        .count() as u64;
                    if kept >= u64::from(n) {
                        return Err(Error::setting(
                            "max-on-demand",
                            format!(
                                "{} keeps {kept} on-demand snapshots (locked ones count) and may keep {n}",
                                account.username
                            ),
                        ));
                    }
                }
                Limit::Unlimited | Limit::Default => {}
            }
        }
        Ok(())
    }

    /// `Some((used, hard limit))` when the account has a hard quota (the backup stops before
    /// passing it); refuses when usage is past it already.
    async fn check_quota_before(&self, account: &Account) -> Result<Option<(u64, u64)>> {
        let Some(quota) = account.quota.storage else {
            return Ok(None);
        };
        let used = self.used_bytes(account).await?;
        match (quota.state(used), quota.hard_limit()) {
            (QuotaState::Blocked, Some(limit)) => {
                self.notify(account, EventKind::QuotaExceeded { used, limit })
                    .await;
                Err(Error::setting(
                    "quota",
                    format!(
                        "{} uses {used} bytes, past its quota and overage of {limit} bytes",
                        account.username
                    ),
                ))
            }
            (_, Some(limit)) => Ok(Some((used, limit))),
            (_, None) => Ok(None),
        }
    }

    /// The bytes the account's snapshots take (dedup-aware: see `UsageStore`).
    async fn used_bytes(&self, account: &Account) -> Result<u64> {
        Ok(self
            .inner
            .catalog
            .account_usage(account.id)
            .await?
            .bytes_stored)
    }

    /// After a backup: a business notification when usage is past the quota.
    async fn check_quota_after(&self, account: &Account) -> Result<()> {
        let Some(quota) = account.quota.storage else {
            return Ok(());
        };
        let used = self.used_bytes(account).await?;
        if quota.state(used) != QuotaState::Within {
            self.notify(
                account,
                EventKind::QuotaWarning {
                    used,
                    limit: quota.bytes,
                },
            )
            .await;
        }
        Ok(())
    }
}
