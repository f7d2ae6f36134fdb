//! The conformance suite has teeth: the reference catalog with one convention broken fails
//! it. Each fault is a plausible backend bug.

use async_trait::async_trait;
use backup_core::Result;
use backup_core::model::{
    Account, AccountId, Destination, DestinationId, DownloadId, DownloadRequest, Job, JobId,
    Organization, OrganizationId, PriorityGroup, PriorityGroupId, Snapshot, SnapshotId,
    SnapshotStatus, Tag, TagId,
};
use backup_core::ports::{Catalog, MemoryCatalog};

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
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryCatalog,
    fault: Fault,
}

#[async_trait]
impl Catalog for Faulty {
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
    ];
    for fault in faults {
        let catalog = Faulty {
            inner: MemoryCatalog::new(),
            fault,
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
