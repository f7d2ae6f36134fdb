//! The conformance suite has teeth: the reference catalog with one convention broken fails
//! it. Each fault is a plausible backend bug.

use async_trait::async_trait;
use backup_core::Result;
use backup_core::model::{
    Account, AccountId, AccountUsage, Destination, DestinationId, DownloadId, DownloadRequest, Job,
    JobId, Limit, Organization, OrganizationId, PriorityGroup, PriorityGroupId, Settings, Snapshot,
    SnapshotId, SnapshotStatus, Tag, TagId,
};
use backup_core::ports::{
    AccountStore, DestinationStore, DownloadStore, JobStore, KeyStore, MemoryCatalog,
    OrganizationStore, PriorityGroupStore, SettingsStore, SnapshotStore, TagStore, UsageStore,
};

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Tags listed in insertion-independent but wrong order (reversed).
    TagsReversed,
    /// Name ties not broken by id.
    JobTiesByNameOnly,
    /// `delete_priority_group` always says it deleted.
    DeleteAlwaysTrue,
    /// Destination names are not unique.
    NoDestinationUniqueness,
    /// Login uniqueness only checked when inserting a new id (not on rename).
    OrgClashOnlyOnInsert,
    /// Deleting an account leaves its downloads.
    DownloadsSurviveAccount,
    /// Snapshots ordered by id only.
    SnapshotsById,
    /// Snapshot times truncated to milliseconds for ordering.
    SnapshotsByMillis,
    /// `find_accounts` returns only one account.
    FindOneAccount,
    /// An empty key envelope is treated as absent.
    EmptyKeyAbsent,
    /// A missing organization is an error instead of `None`.
    MissingOrgIsError,
    /// Listing snapshots of one account shows everyone's.
    SnapshotsOfEveryone,
    /// A snapshot's status is not stored: every snapshot reads back complete.
    StatusNotStored,
    /// Settings are stored once; later puts are ignored.
    SettingsStoredOnce,
    /// A limit of `Max(n)` reads back as unlimited.
    SettingsLoseMax,
    /// Usage counts snapshots but not their bytes.
    UsageWithoutBytes,
    /// `account_usage` of an account without snapshots is an error instead of zeros.
    NoUsageIsError,
    /// `usage_per_account` lists accounts newest id first.
    UsageReversed,
    /// Orphans listed newest first.
    OrphansNewestFirst,
    /// Snapshots of every account count as orphans.
    EverySnapshotOrphan,
    /// Forgetting an account deletes it with its rows.
    ForgetDeletesAll,
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryCatalog,
    fault: Fault,
    /// For [`Fault::SettingsStoredOnce`].
    stored: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl OrganizationStore for Faulty {
    async fn put_organization(&self, org: &Organization) -> Result<()> {
        let known = self.inner.get_organization(org.id).await?.is_some();
        if matches!(self.fault, Fault::OrgClashOnlyOnInsert)
            && known
            && let Some(other) = self.inner.find_organization(&org.login).await?
        {
            self.inner.delete_organization(other.id).await?;
        }
        self.inner.put_organization(org).await
    }
    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        match (self.fault, self.inner.get_organization(id).await?) {
            (Fault::MissingOrgIsError, None) => Err(backup_core::Error::not_found("org")),
            (_, found) => Ok(found),
        }
    }
    async fn find_organization(&self, login: &str) -> Result<Option<Organization>> {
        self.inner.find_organization(login).await
    }
    async fn list_organizations(&self) -> Result<Vec<Organization>> {
        self.inner.list_organizations().await
    }
    async fn delete_organization(&self, id: OrganizationId) -> Result<bool> {
        self.inner.delete_organization(id).await
    }
}

#[async_trait]
impl AccountStore for Faulty {
    async fn put_account(&self, account: &Account) -> Result<()> {
        self.inner.put_account(account).await
    }
    async fn get_account(&self, id: AccountId) -> Result<Option<Account>> {
        self.inner.get_account(id).await
    }
    async fn find_accounts(&self, username: &str) -> Result<Vec<Account>> {
        let mut found = self.inner.find_accounts(username).await?;
        if matches!(self.fault, Fault::FindOneAccount) {
            found.truncate(1);
        }
        Ok(found)
    }
    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.inner.list_accounts().await
    }
    async fn forget_account(&self, id: AccountId) -> Result<bool> {
        if matches!(self.fault, Fault::ForgetDeletesAll) {
            return self.inner.delete_account(id).await;
        }
        self.inner.forget_account(id).await
    }
    async fn delete_account(&self, id: AccountId) -> Result<bool> {
        let downloads = self.inner.list_downloads(id).await?;
        let deleted = self.inner.delete_account(id).await?;
        if matches!(self.fault, Fault::DownloadsSurviveAccount) {
            for d in &downloads {
                self.inner.put_download(d).await?;
            }
        }
        Ok(deleted)
    }
}

#[async_trait]
impl TagStore for Faulty {
    async fn put_tag(&self, tag: &Tag) -> Result<()> {
        self.inner.put_tag(tag).await
    }
    async fn get_tag(&self, id: TagId) -> Result<Option<Tag>> {
        self.inner.get_tag(id).await
    }
    async fn list_tags(&self) -> Result<Vec<Tag>> {
        let mut tags = self.inner.list_tags().await?;
        if matches!(self.fault, Fault::TagsReversed) {
            tags.reverse();
        }
        Ok(tags)
    }
    async fn delete_tag(&self, id: TagId) -> Result<bool> {
        self.inner.delete_tag(id).await
    }
}

#[async_trait]
impl PriorityGroupStore for Faulty {
    async fn put_priority_group(&self, group: &PriorityGroup) -> Result<()> {
        self.inner.put_priority_group(group).await
    }
    async fn get_priority_group(&self, id: PriorityGroupId) -> Result<Option<PriorityGroup>> {
        self.inner.get_priority_group(id).await
    }
    async fn list_priority_groups(&self) -> Result<Vec<PriorityGroup>> {
        self.inner.list_priority_groups().await
    }
    async fn delete_priority_group(&self, id: PriorityGroupId) -> Result<bool> {
        let deleted = self.inner.delete_priority_group(id).await?;
        Ok(deleted || matches!(self.fault, Fault::DeleteAlwaysTrue))
    }
}

#[async_trait]
impl DestinationStore for Faulty {
    async fn put_destination(&self, destination: &Destination) -> Result<()> {
        if matches!(self.fault, Fault::NoDestinationUniqueness) {
            for d in self.inner.list_destinations().await? {
                if d.name == destination.name && d.id != destination.id {
                    self.inner.delete_destination(d.id).await?;
                }
            }
        }
        self.inner.put_destination(destination).await
    }
    async fn get_destination(&self, id: DestinationId) -> Result<Option<Destination>> {
        self.inner.get_destination(id).await
    }
    async fn find_destination(&self, name: &str) -> Result<Option<Destination>> {
        self.inner.find_destination(name).await
    }
    async fn list_destinations(&self) -> Result<Vec<Destination>> {
        self.inner.list_destinations().await
    }
    async fn delete_destination(&self, id: DestinationId) -> Result<bool> {
        self.inner.delete_destination(id).await
    }
}

#[async_trait]
impl JobStore for Faulty {
    async fn put_job(&self, job: &Job) -> Result<()> {
        self.inner.put_job(job).await
    }
    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.inner.get_job(id).await
    }
    async fn list_jobs(&self) -> Result<Vec<Job>> {
        let mut jobs = self.inner.list_jobs().await?;
        if matches!(self.fault, Fault::JobTiesByNameOnly) {
            jobs.sort_by(|a, b| a.name.cmp(&b.name).then(b.id.cmp(&a.id)));
        }
        Ok(jobs)
    }
    async fn delete_job(&self, id: JobId) -> Result<bool> {
        self.inner.delete_job(id).await
    }
}

#[async_trait]
impl SnapshotStore for Faulty {
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        if matches!(self.fault, Fault::StatusNotStored) {
            let status = SnapshotStatus::Complete;
            return self
                .inner
                .put_snapshot(&Snapshot {
                    status,
                    ..snapshot.clone()
                })
                .await;
        }
        self.inner.put_snapshot(snapshot).await
    }
    async fn get_snapshot(&self, id: SnapshotId) -> Result<Option<Snapshot>> {
        self.inner.get_snapshot(id).await
    }
    async fn list_snapshots(&self, account: AccountId) -> Result<Vec<Snapshot>> {
        let mut snaps = self.inner.list_snapshots(account).await?;
        match self.fault {
            Fault::SnapshotsById => snaps.sort_by_key(|s| s.id),
            Fault::SnapshotsByMillis => {
                snaps.sort_by_key(|s| (s.created.timestamp_millis(), s.id));
            }
            Fault::SnapshotsOfEveryone => {
                if let Some(first) = snaps.first().cloned() {
                    snaps.push(Snapshot {
                        id: SnapshotId::new(),
                        account: AccountId::new(),
                        ..first
                    });
                }
            }
            _ => {}
        }
        Ok(snaps)
    }
    async fn delete_snapshot(&self, id: SnapshotId) -> Result<bool> {
        self.inner.delete_snapshot(id).await
    }
}

#[async_trait]
impl KeyStore for Faulty {
    async fn put_key_envelope(&self, account: AccountId, envelope: &[u8]) -> Result<()> {
        if envelope.is_empty() && matches!(self.fault, Fault::EmptyKeyAbsent) {
            self.inner.delete_key_envelope(account).await?;
            return Ok(());
        }
        self.inner.put_key_envelope(account, envelope).await
    }
    async fn get_key_envelope(&self, account: AccountId) -> Result<Option<Vec<u8>>> {
        self.inner.get_key_envelope(account).await
    }
    async fn delete_key_envelope(&self, account: AccountId) -> Result<bool> {
        self.inner.delete_key_envelope(account).await
    }
}

#[async_trait]
impl DownloadStore for Faulty {
    async fn put_download(&self, download: &DownloadRequest) -> Result<()> {
        self.inner.put_download(download).await
    }
    async fn get_download(&self, id: DownloadId) -> Result<Option<DownloadRequest>> {
        self.inner.get_download(id).await
    }
    async fn list_downloads(&self, account: AccountId) -> Result<Vec<DownloadRequest>> {
        self.inner.list_downloads(account).await
    }
    async fn delete_download(&self, id: DownloadId) -> Result<bool> {
        self.inner.delete_download(id).await
    }
}

#[async_trait]
impl SettingsStore for Faulty {
    async fn get_settings(&self) -> Result<Settings> {
        let mut settings = self.inner.get_settings().await?;
        if matches!(self.fault, Fault::SettingsLoseMax)
            && matches!(settings.max_on_demand_snapshots, Limit::Max(_))
        {
            settings.max_on_demand_snapshots = Limit::Unlimited;
        }
        Ok(settings)
    }
    async fn put_settings(&self, settings: &Settings) -> Result<()> {
        if matches!(self.fault, Fault::SettingsStoredOnce) && self.settings_stored() {
            return Ok(());
        }
        self.inner.put_settings(settings).await
    }
}

impl Faulty {
    /// Whether settings were ever put (the memory catalog's defaults read back otherwise).
    fn settings_stored(&self) -> bool {
        self.stored.swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    fn usage(&self, mut usage: AccountUsage) -> AccountUsage {
        if matches!(self.fault, Fault::UsageWithoutBytes) {
            usage.bytes_stored = 0;
        }
        usage
    }
}

#[async_trait]
impl UsageStore for Faulty {
    async fn usage_per_account(&self) -> Result<Vec<AccountUsage>> {
        let mut all: Vec<AccountUsage> = (self.inner.usage_per_account().await?)
            .into_iter()
            .map(|u| self.usage(u))
            .collect();
        if matches!(self.fault, Fault::UsageReversed) {
            all.reverse();
        }
        Ok(all)
    }
    async fn account_usage(&self, account: AccountId) -> Result<AccountUsage> {
        let usage = self.inner.account_usage(account).await?;
        if matches!(self.fault, Fault::NoUsageIsError) && usage.snapshots == 0 {
            return Err(backup_core::Error::not_found("usage"));
        }
        Ok(self.usage(usage))
    }
    async fn orphan_snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut orphans = self.inner.orphan_snapshots().await?;
        match self.fault {
            Fault::OrphansNewestFirst => {
                orphans.sort_by_key(|s| (s.account, std::cmp::Reverse(s.created), s.id));
            }
            Fault::EverySnapshotOrphan => {
                for account in self.inner.list_accounts().await? {
                    orphans.extend(self.inner.list_snapshots(account.id).await?);
                }
                orphans.sort_by_key(|s| (s.account, s.created, s.id));
            }
            _ => {}
        }
        Ok(orphans)
    }
}

#[tokio::test]
async fn every_fault_fails_the_suite() {
    let faults = [
        Fault::TagsReversed,
        Fault::JobTiesByNameOnly,
        Fault::DeleteAlwaysTrue,
        Fault::NoDestinationUniqueness,
        Fault::OrgClashOnlyOnInsert,
        Fault::DownloadsSurviveAccount,
        Fault::SnapshotsById,
        Fault::SnapshotsByMillis,
        Fault::FindOneAccount,
        Fault::EmptyKeyAbsent,
        Fault::MissingOrgIsError,
        Fault::SnapshotsOfEveryone,
        Fault::StatusNotStored,
        Fault::SettingsStoredOnce,
        Fault::SettingsLoseMax,
        Fault::UsageWithoutBytes,
        Fault::NoUsageIsError,
        Fault::UsageReversed,
        Fault::OrphansNewestFirst,
        Fault::EverySnapshotOrphan,
        Fault::ForgetDeletesAll,
    ];
    for fault in faults {
        let catalog = Faulty {
            inner: MemoryCatalog::new(),
            fault,
            stored: Default::default(),
        };
        // Spawning also proves the suite's future is Send.
        let outcome = tokio::spawn(async move {
            backup_catalog::conformance::run(&catalog).await;
        })
        .await;
        assert!(
            outcome.is_err_and(|e| e.is_panic()),
            "the suite passed a catalog with fault {fault:?}"
        );
    }
}
