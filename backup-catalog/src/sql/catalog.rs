//! `catalog!(Catalog)`: the capability traits of `backup_core::ports` (together, its
//! `Catalog`) for a backend with the helpers of [`rows`](super::rows). Each method is one
//! statement (or one transaction for `delete_account` and a key replace), followed by the
//! backend's erasure after a key envelope is deleted or replaced.

macro_rules! catalog {
    ($catalog:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use backup_core::Result;
            use backup_core::model::{
                Account, AccountId, AccountUsage, Destination, DestinationId, DownloadId,
                DownloadRequest, Job, JobId, Organization, OrganizationId, PriorityGroup,
                PriorityGroupId, Settings, Snapshot, SnapshotId, Tag, TagId,
            };
            use backup_core::ports::{
                AccountStore, DestinationStore, DownloadStore, JobStore, KeyStore,
                OrganizationStore, PriorityGroupStore, SettingsStore, SnapshotStore, TagStore,
                UsageStore,
            };
            use $crate::sql::statements::{
                ACCOUNTS, DESTINATIONS, DOWNLOADS, JOBS, ORGANIZATIONS, PRIORITY_GROUPS, SNAPSHOTS,
                TAGS,
            };

            #[async_trait]
            impl OrganizationStore for $catalog {
                async fn put_organization(&self, org: &Organization) -> Result<()> {
                    let (t, id) = (&ORGANIZATIONS, org.id.to_string());
                    Ok(self
                        .put_named(t, "organization login", id, &org.login, org)
                        .await?)
                }
                async fn get_organization(
                    &self,
                    id: OrganizationId,
                ) -> Result<Option<Organization>> {
                    let t = &ORGANIZATIONS;
                    Ok(self.get_row(t.entity, t.get, id.to_string()).await?)
                }
                async fn find_organization(&self, login: &str) -> Result<Option<Organization>> {
                    let t = &ORGANIZATIONS;
                    let found = self.rows(t.entity, t.find, Some(login.to_owned())).await?;
                    Ok(found.into_iter().next())
                }
                async fn list_organizations(&self) -> Result<Vec<Organization>> {
                    let t = &ORGANIZATIONS;
                    Ok(self.rows(t.entity, t.list, None).await?)
                }
                async fn delete_organization(&self, id: OrganizationId) -> Result<bool> {
                    Ok(self
                        .delete_row(ORGANIZATIONS.delete, id.to_string())
                        .await?)
                }
            }

            #[async_trait]
            impl AccountStore for $catalog {
                async fn put_account(&self, account: &Account) -> Result<()> {
                    let (t, id) = (&ACCOUNTS, account.id.to_string());
                    let username = account.username.as_str();
                    Ok(self
                        .put_named(t, "account username", id, username, account)
                        .await?)
                }
                async fn get_account(&self, id: AccountId) -> Result<Option<Account>> {
                    let t = &ACCOUNTS;
                    Ok(self.get_row(t.entity, t.get, id.to_string()).await?)
                }
                async fn find_accounts(&self, username: &str) -> Result<Vec<Account>> {
                    let t = &ACCOUNTS;
                    Ok(self
                        .rows(t.entity, t.find, Some(username.to_owned()))
                        .await?)
                }
                async fn list_accounts(&self) -> Result<Vec<Account>> {
                    let t = &ACCOUNTS;
                    Ok(self.rows(t.entity, t.list, None).await?)
                }
                async fn delete_account(&self, id: AccountId) -> Result<bool> {
                    Ok(self.delete_account_rows(id.to_string()).await?)
                }
                async fn forget_account(&self, id: AccountId) -> Result<bool> {
                    Ok(self.delete_row(ACCOUNTS.delete, id.to_string()).await?)
                }
            }

            #[async_trait]
            impl TagStore for $catalog {
                async fn put_tag(&self, tag: &Tag) -> Result<()> {
                    let t = &TAGS;
                    Ok(self
                        .put_named(t, "tag name", tag.id.to_string(), &tag.name, tag)
                        .await?)
                }
                async fn get_tag(&self, id: TagId) -> Result<Option<Tag>> {
                    let t = &TAGS;
                    Ok(self.get_row(t.entity, t.get, id.to_string()).await?)
                }
                async fn list_tags(&self) -> Result<Vec<Tag>> {
                    let t = &TAGS;
                    Ok(self.rows(t.entity, t.list, None).await?)
                }
                async fn delete_tag(&self, id: TagId) -> Result<bool> {
                    Ok(self.delete_row(TAGS.delete, id.to_string()).await?)
                }
            }

            #[async_trait]
            impl PriorityGroupStore for $catalog {
                async fn put_priority_group(&self, group: &PriorityGroup) -> Result<()> {
                    let (t, id) = (&PRIORITY_GROUPS, group.id.to_string());
                    Ok(self
                        .put_named(t, "priority group name", id, &group.name, group)
                        .await?)
                }
                async fn get_priority_group(
                    &self,
                    id: PriorityGroupId,
                ) -> Result<Option<PriorityGroup>> {
                    let t = &PRIORITY_GROUPS;
                    Ok(self.get_row(t.entity, t.get, id.to_string()).await?)
                }
                async fn list_priority_groups(&self) -> Result<Vec<PriorityGroup>> {
                    let t = &PRIORITY_GROUPS;
                    Ok(self.rows(t.entity, t.list, None).await?)
                }
                async fn delete_priority_group(&self, id: PriorityGroupId) -> Result<bool> {
                    Ok(self
                        .delete_row(PRIORITY_GROUPS.delete, id.to_string())
                        .await?)
                }
            }

            #[async_trait]
            impl DestinationStore for $catalog {
                async fn put_destination(&self, destination: &Destination) -> Result<()> {
                    let (t, id) = (&DESTINATIONS, destination.id.to_string());
                    Ok(self
                        .put_named(t, "destination name", id, &destination.name, destination)
                        .await?)
                }
                async fn get_destination(&self, id: DestinationId) -> Result<Option<Destination>> {
                    let t = &DESTINATIONS;
                    Ok(self.get_row(t.entity, t.get, id.to_string()).await?)
                }
                async fn find_destination(&self, name: &str) -> Result<Option<Destination>> {
                    let t = &DESTINATIONS;
                    let found = self.rows(t.entity, t.find, Some(name.to_owned())).await?;
                    Ok(found.into_iter().next())
                }
                async fn list_destinations(&self) -> Result<Vec<Destination>> {
                    let t = &DESTINATIONS;
                    Ok(self.rows(t.entity, t.list, None).await?)
                }
                async fn delete_destination(&self, id: DestinationId) -> Result<bool> {
                    Ok(self.delete_row(DESTINATIONS.delete, id.to_string()).await?)
                }
            }

            #[async_trait]
            impl JobStore for $catalog {
                async fn put_job(&self, job: &Job) -> Result<()> {
                    let t = &JOBS;
                    Ok(self
                        .put_named(t, "job name", job.id.to_string(), &job.name, job)
                        .await?)
                }
                async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
                    let t = &JOBS;
                    Ok(self.get_row(t.entity, t.get, id.to_string()).await?)
                }
                async fn list_jobs(&self) -> Result<Vec<Job>> {
                    let t = &JOBS;
                    Ok(self.rows(t.entity, t.list, None).await?)
                }
                async fn delete_job(&self, id: JobId) -> Result<bool> {
                    Ok(self.delete_row(JOBS.delete, id.to_string()).await?)
                }
            }

            #[async_trait]
            impl SnapshotStore for $catalog {
                async fn put_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
                    let (id, account) = (snapshot.id.to_string(), snapshot.account.to_string());
                    let bytes = Some(snapshot.stats.bytes_stored);
                    Ok(self
                        .put_timed(&SNAPSHOTS, (id, account), snapshot.created, snapshot, bytes)
                        .await?)
                }
                async fn get_snapshot(&self, id: SnapshotId) -> Result<Option<Snapshot>> {
                    let t = &SNAPSHOTS;
                    Ok(self.get_row(t.entity, t.get, id.to_string()).await?)
                }
                async fn list_snapshots(&self, account: AccountId) -> Result<Vec<Snapshot>> {
                    let t = &SNAPSHOTS;
                    Ok(self
                        .rows(t.entity, t.list, Some(account.to_string()))
                        .await?)
                }
                async fn delete_snapshot(&self, id: SnapshotId) -> Result<bool> {
                    Ok(self.delete_row(SNAPSHOTS.delete, id.to_string()).await?)
                }
            }

            #[async_trait]
            impl KeyStore for $catalog {
                async fn put_key_envelope(
                    &self,
                    account: AccountId,
                    envelope: &[u8],
                ) -> Result<()> {
                    Ok(self.put_key(account.to_string(), envelope).await?)
                }
                async fn get_key_envelope(&self, account: AccountId) -> Result<Option<Vec<u8>>> {
                    Ok(self.get_key(account.to_string()).await?)
                }
                async fn delete_key_envelope(&self, account: AccountId) -> Result<bool> {
                    Ok(self.delete_key(account.to_string()).await?)
                }
            }

            #[async_trait]
            impl DownloadStore for $catalog {
                async fn put_download(&self, download: &DownloadRequest) -> Result<()> {
                    let (id, account) = (download.id.to_string(), download.account.to_string());
                    Ok(self
                        .put_timed(&DOWNLOADS, (id, account), download.created, download, None)
                        .await?)
                }
                async fn get_download(&self, id: DownloadId) -> Result<Option<DownloadRequest>> {
                    let t = &DOWNLOADS;
                    Ok(self.get_row(t.entity, t.get, id.to_string()).await?)
                }
                async fn list_downloads(&self, account: AccountId) -> Result<Vec<DownloadRequest>> {
                    let t = &DOWNLOADS;
                    Ok(self
                        .rows(t.entity, t.list, Some(account.to_string()))
                        .await?)
                }
                async fn delete_download(&self, id: DownloadId) -> Result<bool> {
                    Ok(self.delete_row(DOWNLOADS.delete, id.to_string()).await?)
                }
            }

            #[async_trait]
            impl SettingsStore for $catalog {
                async fn get_settings(&self) -> Result<Settings> {
                    Ok(self.settings_row().await?.unwrap_or_default())
                }
                async fn put_settings(&self, settings: &Settings) -> Result<()> {
                    Ok(self.put_settings_row(settings).await?)
                }
            }

            #[async_trait]
            impl UsageStore for $catalog {
                async fn usage_per_account(&self) -> Result<Vec<AccountUsage>> {
                    Ok(<$catalog>::usage_per_account(self).await?)
                }
                async fn account_usage(&self, account: AccountId) -> Result<AccountUsage> {
                    Ok(self.usage_row(account).await?)
                }
                async fn orphan_snapshots(&self) -> Result<Vec<Snapshot>> {
                    Ok(<$catalog>::orphan_snapshots(self).await?)
                }
            }
        };
    };
}

pub(crate) use catalog;
