//! An in-memory [`Catalog`](super::Catalog), for unit tests and as the reference for the
//! conventions.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{
    AccountStore, DestinationStore, DownloadStore, JobStore, KeyStore, OrganizationStore,
    PriorityGroupStore, SettingsStore, SnapshotStore, TagStore, UsageStore,
};
use crate::error::{Error, Result};
use crate::model::{
    Account, AccountId, AccountUsage, Destination, DestinationId, DownloadId, DownloadRequest, Job,
    JobId, Organization, OrganizationId, PriorityGroup, PriorityGroupId, Settings, Snapshot,
    SnapshotId, Tag, TagId,
};

#[derive(Debug, Default)]
struct Tables {
    organizations: BTreeMap<OrganizationId, Organization>,
    accounts: BTreeMap<AccountId, Account>,
    tags: BTreeMap<TagId, Tag>,
    groups: BTreeMap<PriorityGroupId, PriorityGroup>,
    destinations: BTreeMap<DestinationId, Destination>,
    jobs: BTreeMap<JobId, Job>,
    snapshots: BTreeMap<SnapshotId, Snapshot>,
    /// Zeroed when removed, replaced or dropped.
    keys: BTreeMap<AccountId, Zeroizing<Vec<u8>>>,
    downloads: BTreeMap<DownloadId, DownloadRequest>,
    settings: Option<Settings>,
}

impl Tables {
    /// Per account id with snapshot rows, their count and summed `bytes_stored`.
    fn usage(&self) -> BTreeMap<AccountId, AccountUsage> {
        let mut usage = BTreeMap::new();
        for s in self.snapshots.values() {
            let entry = usage.entry(s.account).or_insert(AccountUsage {
                account: s.account,
                snapshots: 0,
                bytes_stored: 0,
            });
            entry.snapshots += 1;
            entry.bytes_stored = entry.bytes_stored.saturating_add(s.stats.bytes_stored);
        }
        usage
    }
}

/// A catalog held in memory; lost when dropped. Implements every capability of
/// [`Catalog`](super::Catalog); usage is computed from the snapshot rows on each call. A key
/// envelope's memory is overwritten with zeros when it is deleted or replaced (copies
/// handed out by `get_key_envelope` belong to their callers).
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    tables: Mutex<Tables>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Tables) -> Result<T>) -> Result<T> {
        let mut guard = self.tables.lock().map_err(|_| Error::Internal {
            reason: "memory catalog lock poisoned".into(),
        })?;
        f(&mut guard)
    }
}

fn sorted<T: Clone, K: Ord>(items: impl Iterator<Item = T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort_by_key(|x| key(x));
    v
}

#[async_trait]
impl OrganizationStore for MemoryCatalog {
    async fn put_organization(&self, org: &Organization) -> Result<()> {
        self.with(|t| {
            if t.organizations
                .values()
                .any(|o| o.login == org.login && o.id != org.id)
            {
                return Err(Error::AlreadyExists {
                    what: format!("organization login {:?}", org.login),
                });
            }
            t.organizations.insert(org.id, org.clone());
            Ok(())
        })
    }
    async fn get_organization(&self, id: OrganizationId) -> Result<Option<Organization>> {
        self.with(|t| Ok(t.organizations.get(&id).cloned()))
    }
    async fn find_organization(&self, login: &str) -> Result<Option<Organization>> {
        self.with(|t| Ok(t.organizations.values().find(|o| o.login == login).cloned()))
    }
    async fn list_organizations(&self) -> Result<Vec<Organization>> {
        self.with(|t| {
            Ok(sorted(t.organizations.values().cloned(), |o| {
                (o.login.clone(), o.id)
            }))
        })
    }
    async fn delete_organization(&self, id: OrganizationId) -> Result<bool> {
        self.with(|t| Ok(t.organizations.remove(&id).is_some()))
    }
}

#[async_trait]
impl AccountStore for MemoryCatalog {
    async fn put_account(&self, account: &Account) -> Result<()> {
        self.with(|t| {
            t.accounts.insert(account.id, account.clone());
            Ok(())
        })
    }
    async fn get_account(&self, id: AccountId) -> Result<Option<Account>> {
        self.with(|t| Ok(t.accounts.get(&id).cloned()))
    }
    async fn find_accounts(&self, username: &str) -> Result<Vec<Account>> {
        self.with(|t| {
            Ok(sorted(
                t.accounts
                    .values()
                    .filter(|a| a.username.as_str() == username)
                    .cloned(),
                |a| a.id,
            ))
        })
    }
    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.with(|t| {
            Ok(sorted(t.accounts.values().cloned(), |a| {
                (a.username.clone(), a.id)
            }))
        })
    }
    async fn delete_account(&self, id: AccountId) -> Result<bool> {
        self.with(|t| {
            t.snapshots.retain(|_, s| s.account != id);
            t.downloads.retain(|_, d| d.account != id);
            t.keys.remove(&id);
            Ok(t.accounts.remove(&id).is_some())
        })
    }
    async fn forget_account(&self, id: AccountId) -> Result<bool> {
        self.with(|t| Ok(t.accounts.remove(&id).is_some()))
    }
}

#[async_trait]
impl TagStore for MemoryCatalog {
    async fn put_tag(&self, tag: &Tag) -> Result<()> {
        self.with(|t| {
            t.tags.insert(tag.id, tag.clone());
            Ok(())
        })
    }
    async fn get_tag(&self, id: TagId) -> Result<Option<Tag>> {
        self.with(|t| Ok(t.tags.get(&id).cloned()))
    }
    async fn list_tags(&self) -> Result<Vec<Tag>> {
        self.with(|t| Ok(sorted(t.tags.values().cloned(), |x| (x.name.clone(), x.id))))
    }
    async fn delete_tag(&self, id: TagId) -> Result<bool> {
        self.with(|t| Ok(t.tags.remove(&id).is_some()))
    }
}

#[async_trait]
impl PriorityGroupStore for MemoryCatalog {
    async fn put_priority_group(&self, group: &PriorityGroup) -> Result<()> {
        self.with(|t| {
            t.groups.insert(group.id, group.clone());
            Ok(())
        })
    }
    async fn get_priority_group(&self, id: PriorityGroupId) -> Result<Option<PriorityGroup>> {
        self.with(|t| Ok(t.groups.get(&id).cloned()))
    }
    async fn list_priority_groups(&self) -> Result<Vec<PriorityGroup>> {
        self.with(|t| {
            Ok(sorted(t.groups.values().cloned(), |x| {
                (x.name.clone(), x.id)
            }))
        })
    }
    async fn delete_priority_group(&self, id: PriorityGroupId) -> Result<bool> {
        self.with(|t| Ok(t.groups.remove(&id).is_some()))
    }
}

#[async_trait]
impl DestinationStore for MemoryCatalog {
    async fn put_destination(&self, destination: &Destination) -> Result<()> {
        self.with(|t| {
            if t.destinations
                .values()
                .any(|d| d.name == destination.name && d.id != destination.id)
            {
                return Err(Error::AlreadyExists {
                    what: format!("destination {:?}", destination.name),
                });
            }
            t.destinations.insert(destination.id, destination.clone());
            Ok(())
        })
    }
    async fn get_destination(&self, id: DestinationId) -> Result<Option<Destination>> {
        self.with(|t| Ok(t.destinations.get(&id).cloned()))
    }
    async fn find_destination(&self, name: &str) -> Result<Option<Destination>> {
        self.with(|t| Ok(t.destinations.values().find(|d| d.name == name).cloned()))
    }
    async fn list_destinations(&self) -> Result<Vec<Destination>> {
        self.with(|t| {
            Ok(sorted(t.destinations.values().cloned(), |x| {
                (x.name.clone(), x.id)
            }))
        })
    }
    async fn delete_destination(&self, id: DestinationId) -> Result<bool> {
        self.with(|t| Ok(t.destinations.remove(&id).is_some()))
    }
}

#[async_trait]
impl JobStore for MemoryCatalog {
    async fn put_job(&self, job: &Job) -> Result<()> {
        self.with(|t| {
            t.jobs.insert(job.id, job.clone());
            Ok(())
        })
    }
    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.with(|t| Ok(t.jobs.get(&id).cloned()))
    }
    async fn list_jobs(&self) -> Result<Vec<Job>> {
        self.with(|t| Ok(sorted(t.jobs.values().cloned(), |x| (x.name.clone(), x.id))))
    }
    async fn delete_job(&self, id: JobId) -> Result<bool> {
        self.with(|t| Ok(t.jobs.remove(&id).is_some()))
    }
}

#[async_trait]
impl SnapshotStore for MemoryCatalog {
    async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        self.with(|t| {
            t.snapshots.insert(snapshot.id, snapshot.clone());
            Ok(())
        })
    }
    async fn get_snapshot(&self, id: SnapshotId) -> Result<Option<Snapshot>> {
        self.with(|t| Ok(t.snapshots.get(&id).cloned()))
    }
    async fn list_snapshots(&self, account: AccountId) -> Result<Vec<Snapshot>> {
        self.with(|t| {
            Ok(sorted(
                t.snapshots
                    .values()
                    .filter(|s| s.account == account)
                    .cloned(),
                |s| (s.created, s.id),
            ))
        })
    }
    async fn delete_snapshot(&self, id: SnapshotId) -> Result<bool> {
        self.with(|t| Ok(t.snapshots.remove(&id).is_some()))
    }
}

#[async_trait]
impl KeyStore for MemoryCatalog {
    async fn put_key_envelope(&self, account: AccountId, envelope: &[u8]) -> Result<()> {
        self.with(|t| {
            t.keys.insert(account, Zeroizing::new(envelope.to_vec()));
            Ok(())
        })
    }
    async fn get_key_envelope(&self, account: AccountId) -> Result<Option<Vec<u8>>> {
        self.with(|t| Ok(t.keys.get(&account).map(|k| k.to_vec())))
    }
    async fn delete_key_envelope(&self, account: AccountId) -> Result<bool> {
        self.with(|t| Ok(t.keys.remove(&account).is_some()))
    }
}

#[async_trait]
impl DownloadStore for MemoryCatalog {
    async fn put_download(&self, download: &DownloadRequest) -> Result<()> {
        self.with(|t| {
            t.downloads.insert(download.id, download.clone());
            Ok(())
        })
    }
    async fn get_download(&self, id: DownloadId) -> Result<Option<DownloadRequest>> {
        self.with(|t| Ok(t.downloads.get(&id).cloned()))
    }
    async fn list_downloads(&self, account: AccountId) -> Result<Vec<DownloadRequest>> {
        self.with(|t| {
            Ok(sorted(
                t.downloads
                    .values()
                    .filter(|d| d.account == account)
                    .cloned(),
                |d| (d.created, d.id),
            ))
        })
    }
    async fn delete_download(&self, id: DownloadId) -> Result<bool> {
        self.with(|t| Ok(t.downloads.remove(&id).is_some()))
    }
}

#[async_trait]
impl SettingsStore for MemoryCatalog {
    async fn get_settings(&self) -> Result<Settings> {
        self.with(|t| Ok(t.settings.clone().unwrap_or_default()))
    }
    async fn put_settings(&self, settings: &Settings) -> Result<()> {
        self.with(|t| {
            t.settings = Some(settings.clone());
            Ok(())
        })
    }
}

#[async_trait]
impl UsageStore for MemoryCatalog {
    async fn usage_per_account(&self) -> Result<Vec<AccountUsage>> {
        self.with(|t| Ok(t.usage().into_values().collect()))
    }
    async fn account_usage(&self, account: AccountId) -> Result<AccountUsage> {
        self.with(|t| {
            let mut usage = AccountUsage {
                account,
                snapshots: 0,
                bytes_stored: 0,
            };
            for s in t.snapshots.values().filter(|s| s.account == account) {
                usage.snapshots += 1;
                usage.bytes_stored = usage.bytes_stored.saturating_add(s.stats.bytes_stored);
            }
            Ok(usage)
        })
    }
    async fn orphan_snapshots(&self) -> Result<Vec<Snapshot>> {
        self.with(|t| {
            Ok(sorted(
                t.snapshots
                    .values()
                    .filter(|s| !t.accounts.contains_key(&s.account))
                    .cloned(),
                |s| (s.account, s.created, s.id),
            ))
        })
    }
}
