//! The catalog port: the fast, queryable copy of what the repositories hold, plus settings.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{
    Account, AccountId, Destination, DestinationId, DownloadId, DownloadRequest, Job, JobId,
    Organization, OrganizationId, PriorityGroup, PriorityGroupId, Snapshot, SnapshotId, Tag, TagId,
};

/// Persistence of everything the model has.
///
/// Conventions every implementation keeps (the conformance suite in `backup-catalog` checks
/// them): `put_*` inserts or replaces by id; a unique-name clash (organization login,
/// destination name) is [`crate::Error::AlreadyExists`]; `get_*` returns `Ok(None)` when
/// absent; `delete_*` returns whether something was deleted; lists are ordered (snapshots
/// oldest first, everything else by name, then id). Deleting an account deletes its
/// snapshots' rows, its key envelope and its downloads.
#[async_trait]
pub trait Catalog: Send + Sync + Debug + 'static {
    /// Inserts or replaces an organization.
    async fn put_organization(&self, org: &Organization) -> Result<()>;
    /// One organization.
    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>>;
    /// The organization with this login.
    async fn find_organization(&self, login: &str) -> Result<Option<Organization>>;
    /// Every organization, by login.
    async fn list_organizations(&self) -> Result<Vec<Organization>>;
    /// Deletes an organization.
    async fn delete_organization(&self, id: OrganizationId) -> Result<bool>;

    /// Inserts or replaces an account.
    async fn put_account(&self, account: &Account) -> Result<()>;
    /// One account.
    async fn get_account(&self, id: AccountId) -> Result<Option<Account>>;
    /// Accounts with this username (usernames may repeat across servers).
    async fn find_accounts(&self, username: &str) -> Result<Vec<Account>>;
    /// Every account, by username.
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// Deletes an account with its snapshot rows, key envelope and downloads.
    async fn delete_account(&self, id: AccountId) -> Result<bool>;

    /// Inserts or replaces a tag.
    async fn put_tag(&self, tag: &Tag) -> Result<()>;
    /// One tag.
    async fn get_tag(&self, id: TagId) -> Result<Option<Tag>>;
    /// Every tag, by name.
    async fn list_tags(&self) -> Result<Vec<Tag>>;
    /// Deletes a tag.
    async fn delete_tag(&self, id: TagId) -> Result<bool>;

    /// Inserts or replaces a priority group.
    async fn put_priority_group(&self, group: &PriorityGroup) -> Result<()>;
    /// One priority group.
    async fn get_priority_group(&self, id: PriorityGroupId) -> Result<Option<PriorityGroup>>;
    /// Every priority group, by name.
    async fn list_priority_groups(&self) -> Result<Vec<PriorityGroup>>;
    /// Deletes a priority group.
    async fn delete_priority_group(&self, id: PriorityGroupId) -> Result<bool>;

    /// Inserts or replaces a destination (names are unique).
    async fn put_destination(&self, destination: &Destination) -> Result<()>;
    /// One destination.
    async fn get_destination(&self, id: DestinationId) -> Result<Option<Destination>>;
    /// The destination with this name.
    async fn find_destination(&self, name: &str) -> Result<Option<Destination>>;
    /// Every destination, by name.
    async fn list_destinations(&self) -> Result<Vec<Destination>>;
    /// Deletes a destination.
    async fn delete_destination(&self, id: DestinationId) -> Result<bool>;

    /// Inserts or replaces a job.
    async fn put_job(&self, job: &Job) -> Result<()>;
    /// One job.
    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;
    /// Every job, by name.
    async fn list_jobs(&self) -> Result<Vec<Job>>;
    /// Deletes a job.
    async fn delete_job(&self, id: JobId) -> Result<bool>;

    /// Inserts or replaces a snapshot row.
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()>;
    /// One snapshot.
    async fn get_snapshot(&self, id: SnapshotId) -> Result<Option<Snapshot>>;
    /// An account's snapshots, oldest first.
    async fn list_snapshots(&self, account: AccountId) -> Result<Vec<Snapshot>>;
    /// Deletes a snapshot row.
    async fn delete_snapshot(&self, id: SnapshotId) -> Result<bool>;

    /// Stores the account's key envelope (opaque bytes from the key adapter), replacing any.
    async fn put_key_envelope(&self, account: AccountId, envelope: &[u8]) -> Result<()>;
    /// The account's key envelope.
    async fn get_key_envelope(&self, account: AccountId) -> Result<Option<Vec<u8>>>;
    /// Removes the account's key envelope.
    async fn delete_key_envelope(&self, account: AccountId) -> Result<bool>;

    /// Inserts or replaces a download request.
    async fn put_download(&self, download: &DownloadRequest) -> Result<()>;
    /// One download request.
    async fn get_download(&self, id: DownloadId) -> Result<Option<DownloadRequest>>;
    /// An account's download requests, oldest first.
    async fn list_downloads(&self, account: AccountId) -> Result<Vec<DownloadRequest>>;
    /// Deletes a download request.
    async fn delete_download(&self, id: DownloadId) -> Result<bool>;
}
