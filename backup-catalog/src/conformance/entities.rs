//! Uniform access to each model type's catalog methods, so that one generic check covers
//! every entity; and rich sample values that exercise most of each type's fields.

use std::fmt::Debug;

use async_trait::async_trait;
use backup_core::Result;
use backup_core::model::{
    Account, AccountId, BackupStats, Destination, DestinationId, DownloadId, DownloadRequest,
    DownloadStatus, EncryptionMode, ItemKind, ItemSelection, ItemStats, Job, JobId, Organization,
    OrganizationId, PathSelection, PriorityGroup, PriorityGroupId, Schedule, Snapshot, SnapshotId,
    SnapshotItem, SnapshotKind, SnapshotStatus, StorageQuota, Tag, TagColor, TagId,
};
use backup_core::ports::Catalog;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A model type listed by a name-like key (name, login, username), then by id.
pub(super) trait Named: Clone + PartialEq + Debug + Send + Sync + 'static {
    /// Its id type.
    type Id: Copy + Ord + Debug + From<Uuid> + Send + Sync;
    /// What it is, for messages.
    const WHAT: &'static str;
    /// Whether the key must be unique.
    const UNIQUE: bool;
    /// A valid value with this key and id.
    fn sample(key: &str, id: Self::Id) -> Self;
    /// Its id.
    fn id(&self) -> Self::Id;
    /// Its listing key.
    fn key(&self) -> &str;
    /// Sets the key and changes some other field (for replace checks).
    fn change(&mut self, key: &str);
}

/// The catalog methods of a [`Named`] type.
#[async_trait]
pub(super) trait NamedStore: Named {
    /// `put_*`.
    async fn put(c: &dyn Catalog, v: &Self) -> Result<()>;
    /// `get_*`.
    async fn get(c: &dyn Catalog, id: Self::Id) -> Result<Option<Self>>;
    /// `list_*`.
    async fn list(c: &dyn Catalog) -> Result<Vec<Self>>;
    /// `delete_*`.
    async fn delete(c: &dyn Catalog, id: Self::Id) -> Result<bool>;
}

/// A [`Named`] type whose key is unique and can be looked up.
#[async_trait]
pub(super) trait Unique: NamedStore {
    /// `find_*` by key.
    async fn find(c: &dyn Catalog, key: &str) -> Result<Option<Self>>;
}

macro_rules! named_store {
    ($ty:ty, $put:ident, $get:ident, $list:ident, $delete:ident) => {
        #[async_trait]
        impl NamedStore for $ty {
            async fn put(c: &dyn Catalog, v: &Self) -> Result<()> {
                c.$put(v).await
            }
            async fn get(c: &dyn Catalog, id: Self::Id) -> Result<Option<Self>> {
                c.$get(id).await
            }
            async fn list(c: &dyn Catalog) -> Result<Vec<Self>> {
                c.$list().await
            }
            async fn delete(c: &dyn Catalog, id: Self::Id) -> Result<bool> {
                c.$delete(id).await
            }
        }
    };
}

fn valid<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("conformance: building a sample value failed (a bug in the suite): {e}"),
    }
}

impl Named for Organization {
    type Id = OrganizationId;
    const WHAT: &'static str = "organization";
    const UNIQUE: bool = true;
    fn sample(key: &str, id: Self::Id) -> Self {
        let mut v = valid(Organization::new(key, &format!("Org {key}")));
        v.id = id;
        v.parent = Some(OrganizationId::new());
        v
    }
    fn id(&self) -> Self::Id {
        self.id
    }
    fn key(&self) -> &str {
        &self.login
    }
    fn change(&mut self, key: &str) {
        self.login = key.to_owned();
        self.name = format!("Renamed {key}");
        self.parent = None;
    }
}

named_store!(
    Organization,
    put_organization,
    get_organization,
    list_organizations,
    delete_organization
);

#[async_trait]
impl Unique for Organization {
    async fn find(c: &dyn Catalog, key: &str) -> Result<Option<Self>> {
        c.find_organization(key).await
    }
}

impl Named for Account {
    type Id = AccountId;
    const WHAT: &'static str = "account";
    const UNIQUE: bool = false;
    fn sample(key: &str, id: Self::Id) -> Self {
        let mut v = valid(
            valid(valid(Account::new(key)).with_email("owner@example.com"))
                .with_excludes(["cache/**", "*.log"]),
        )
        .with_encryption(EncryptionMode::OwnerKey);
        v.id = id;
        v.organization = Some(OrganizationId::new());
        v.origin_server = Some("server-1.example.com".into());
        v.first_name = Some("Ünïcødé".into());
        v.tags = vec![TagId::new(), TagId::new()];
        v.priority_group = Some(PriorityGroupId::new());
        v.quota.storage = Some(valid(StorageQuota::with_overage(10 << 30, 1 << 30)));
        v.quota.devices.servers = Some(3);
        v
    }
    fn id(&self) -> Self::Id {
        self.id
    }
    fn key(&self) -> &str {
        self.username.as_str()
    }
    fn change(&mut self, key: &str) {
        self.username = valid(backup_core::model::Username::new(key));
        self.reseller = !self.reseller;
        self.tags.clear();
        self.email = None;
    }
}

named_store!(
    Account,
    put_account,
    get_account,
    list_accounts,
    delete_account
);

impl Named for Tag {
    type Id = TagId;
    const WHAT: &'static str = "tag";
    const UNIQUE: bool = false;
    fn sample(key: &str, id: Self::Id) -> Self {
        let mut v = valid(Tag::new(key, Some(valid(TagColor::parse("#a0b1c2")))));
        v.id = id;
        v
    }
    fn id(&self) -> Self::Id {
        self.id
    }
    fn key(&self) -> &str {
        &self.name
    }
    fn change(&mut self, key: &str) {
        self.name = key.to_owned();
        self.color = valid(TagColor::parse("#00ff7f"));
    }
}

named_store!(Tag, put_tag, get_tag, list_tags, delete_tag);

impl Named for PriorityGroup {
    type Id = PriorityGroupId;
    const WHAT: &'static str = "priority group";
    const UNIQUE: bool = false;
    fn sample(key: &str, id: Self::Id) -> Self {
        let mut v = valid(PriorityGroup::new(key, 10, 20, 30, 40));
        v.id = id;
        v
    }
    fn id(&self) -> Self::Id {
        self.id
    }
    fn key(&self) -> &str {
        &self.name
    }
    fn change(&mut self, key: &str) {
        self.name = key.to_owned();
        self.backup = 100;
        self.download = 0;
    }
}

named_store!(
    PriorityGroup,
    put_priority_group,
    get_priority_group,
    list_priority_groups,
    delete_priority_group
);

impl Named for Destination {
    type Id = DestinationId;
    const WHAT: &'static str = "destination";
    const UNIQUE: bool = true;
    fn sample(key: &str, id: Self::Id) -> Self {
        let mut v = valid(Destination::new(key, &format!("memory://{key}")));
        v.id = id;
        v
    }
    fn id(&self) -> Self::Id {
        self.id
    }
    fn key(&self) -> &str {
        &self.name
    }
    fn change(&mut self, key: &str) {
        self.name = key.to_owned();
        self.url = format!("file:///srv/backups/{key}");
    }
}

named_store!(
    Destination,
    put_destination,
    get_destination,
    list_destinations,
    delete_destination
);

#[async_trait]
impl Unique for Destination {
    async fn find(c: &dyn Catalog, key: &str) -> Result<Option<Self>> {
        c.find_destination(key).await
    }
}

impl Named for Job {
    type Id = JobId;
    const WHAT: &'static str = "job";
    const UNIQUE: bool = false;
    fn sample(key: &str, id: Self::Id) -> Self {
        let mut v = valid(Job::new(
            key,
            vec![ItemKind::HomeDir, ItemKind::Databases, ItemKind::Email],
            Schedule::Weekly {
                days: vec![2, 5],
                at: valid(backup_core::model::TimeOfDay::new(3, 15)),
            },
            vec![DestinationId::new(), DestinationId::new()],
        ));
        v.id = id;
        v.retention.keep_last = Some(7);
        v.retention.daily = Some(14);
        v.excludes = valid(backup_core::model::PathFilter::new(["tmp/**"]));
        v.quota_reporting = true;
        v
    }
    fn id(&self) -> Self::Id {
        self.id
    }
    fn key(&self) -> &str {
        &self.name
    }
    fn change(&mut self, key: &str) {
        self.name = key.to_owned();
        self.enabled = !self.enabled;
        self.schedule = Schedule::Hourly { every: 6 };
        self.delay_minutes += 5;
    }
}

named_store!(Job, put_job, get_job, list_jobs, delete_job);

/// A per-account model type listed oldest first, then by id.
#[async_trait]
pub(super) trait Timed: Clone + PartialEq + Debug + Send + Sync + 'static {
    /// Its id type.
    type Id: Copy + Ord + Debug + From<Uuid> + Send + Sync;
    /// What it is, for messages.
    const WHAT: &'static str;
    /// A valid value.
    fn sample(account: AccountId, id: Self::Id, created: DateTime<Utc>) -> Self;
    /// Its id.
    fn id(&self) -> Self::Id;
    /// Its creation time.
    fn created(&self) -> DateTime<Utc>;
    /// Sets the creation time and changes some other field (for replace checks).
    fn change(&mut self, created: DateTime<Utc>);
    /// `put_*`.
    async fn put(c: &dyn Catalog, v: &Self) -> Result<()>;
    /// `get_*`.
    async fn get(c: &dyn Catalog, id: Self::Id) -> Result<Option<Self>>;
    /// `list_*` of one account.
    async fn list(c: &dyn Catalog, account: AccountId) -> Result<Vec<Self>>;
    /// `delete_*`.
    async fn delete(c: &dyn Catalog, id: Self::Id) -> Result<bool>;
}

#[async_trait]
impl Timed for Snapshot {
    type Id = SnapshotId;
    const WHAT: &'static str = "snapshot";
    fn sample(account: AccountId, id: Self::Id, created: DateTime<Utc>) -> Self {
        let stats = |files: u64| ItemStats {
            files,
            dirs: 2,
            symlinks: 1,
            bytes: files * 1000,
        };
        Snapshot {
            id,
            account,
            job: Some(JobId::new()),
            destination: DestinationId::new(),
            created,
            kind: SnapshotKind::OnDemand,
            status: SnapshotStatus::Complete,
            items: vec![
                SnapshotItem {
                    kind: ItemKind::HomeDir,
                    stats: stats(12),
                },
                SnapshotItem {
                    kind: ItemKind::Databases,
                    stats: stats(2),
                },
            ],
            encrypted: true,
            locked: false,
            lock_until: None,
            identity: None,
            task: None,
            stats: BackupStats {
                bytes_read: 14_000,
                bytes_new: 9_000,
                duration_ms: 1_234,
                ..BackupStats::default()
            },
        }
    }
    fn id(&self) -> Self::Id {
        self.id
    }
    fn created(&self) -> DateTime<Utc> {
        self.created
    }
    fn change(&mut self, created: DateTime<Utc>) {
        self.created = created;
        self.locked = true;
        self.kind = SnapshotKind::Safety;
        self.status = SnapshotStatus::Partial;
    }
    async fn put(c: &dyn Catalog, v: &Self) -> Result<()> {
        c.put_snapshot(v).await
    }
    async fn get(c: &dyn Catalog, id: Self::Id) -> Result<Option<Self>> {
        c.get_snapshot(id).await
    }
    async fn list(c: &dyn Catalog, account: AccountId) -> Result<Vec<Self>> {
        c.list_snapshots(account).await
    }
    async fn delete(c: &dyn Catalog, id: Self::Id) -> Result<bool> {
        c.delete_snapshot(id).await
    }
}

#[async_trait]
impl Timed for DownloadRequest {
    type Id = DownloadId;
    const WHAT: &'static str = "download";
    fn sample(account: AccountId, id: Self::Id, created: DateTime<Utc>) -> Self {
        let paths = valid(PathSelection::new(["public_html/**"], ["*.log"]));
        let items = vec![
            ItemSelection {
                kind: ItemKind::HomeDir,
                snapshot: SnapshotId::new(),
                paths,
            },
            ItemSelection {
                kind: ItemKind::DnsZones,
                snapshot: SnapshotId::new(),
                paths: PathSelection::all(),
            },
        ];
        let mut v = valid(DownloadRequest::new(account, items));
        v.id = id;
        v.created = created;
        v
    }
    fn id(&self) -> Self::Id {
        self.id
    }
    fn created(&self) -> DateTime<Utc> {
        self.created
    }
    fn change(&mut self, created: DateTime<Utc>) {
        self.created = created;
        self.status = DownloadStatus::Ready;
    }
    async fn put(c: &dyn Catalog, v: &Self) -> Result<()> {
        c.put_download(v).await
    }
    async fn get(c: &dyn Catalog, id: Self::Id) -> Result<Option<Self>> {
        c.get_download(id).await
    }
    async fn list(c: &dyn Catalog, account: AccountId) -> Result<Vec<Self>> {
        c.list_downloads(account).await
    }
    async fn delete(c: &dyn Catalog, id: Self::Id) -> Result<bool> {
        c.delete_download(id).await
    }
}
