//! Administration: key reset (crypto-shred), master-key rotation and rebuilding the
//! catalog from a destination (disaster recovery).

use serde::Serialize;

use super::{Server, release};
use crate::error::{Error, Result};
use crate::model::{Account, AccountId, Destination, EncryptionMode, OwnerKey};
use crate::ports::EventKind;
use crate::repo::{
    ACCOUNT_MAGIC, AccountRepo, LeaseGuard, Repository, decode_account, encode_account,
};

/// What [`Server::rebuild_catalog`] recovered, and what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    /// Accounts recovered.
    pub accounts: u64,
    /// Snapshots recovered.
    pub snapshots: u64,
    /// What was left out, each with the reason; everything else was recovered.
    pub problems: Vec<RebuildProblem>,
}

/// One account or snapshot a rebuild could not recover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildProblem {
    /// The account's id on the destination.
    pub account: String,
    /// The snapshot, when only it was left out.
    pub snapshot: Option<String>,
    /// Why.
    pub reason: String,
}

/// What [`Server::rotate_master_key`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// Accounts whose envelope was re-wrapped.
    pub accounts: u64,
    /// Read-only destinations left as they were: their envelopes and records stay under
    /// the previous key (keep its export for a disaster recovery from them).
    pub read_only_destinations: Vec<String>,
}

impl Server {
    /// Resets an encrypted account's keys.
    ///
    /// It takes the account's lease on every writable destination first (waiting for a
    /// running backup), so no backup sealed under the old key commits afterwards. Then
    /// every copy of the old envelope is removed (catalog, then destinations: crypto-shred),
    /// the vault forgets the account, every snapshot, pack and index of the account is
    /// deleted on every destination and in the catalog, the stat caches are cleared, and
    /// new keys are made. Earlier identities whose snapshots were reassigned to the account
    /// ([`Server::reassign_orphans`]) are shredded and deleted the same way. For an owner-held key the new private key is returned (once). An
    /// interrupted reset is finished by calling it again; until then the account has no
    /// usable key. A read-only destination holding the account's envelope makes the reset
    /// refuse before anything is changed.
    pub async fn reset_key(&self, account: &Account) -> Result<Option<OwnerKey>> {
        if account.encryption == EncryptionMode::None {
            return Err(Error::refused(format!(
                "account {} is not encrypted: there is no key to reset",
                account.username
            )));
        }
        let mut writable: Vec<Repository> = Vec::new();
        let mut destinations = self.inner.catalog.list_destinations().await?;
        destinations.sort_by_key(|d| d.id);
        for d in &destinations {
            let repo = self.repo(d).await?;
            if d.read_only {
                if !repo.key_envelopes(account.id).await?.is_empty() {
                    return Err(Error::setting(
                        "read-only",
                        format!(
                            "destination {} is read-only and holds a key of {}: make it writable (or remove it) before resetting the key",
                            d.name, account.username
                        ),
                    ));
                }
                continue;
            }
            writable.push(repo);
        }
        self.check_shutdown()?;
        // Earlier identities whose snapshots were reassigned to the account go with it.
        let mut identities: Vec<AccountId> = Vec::new();
        for s in self.inner.catalog.list_snapshots(account.id).await? {
            if s.storage_account() != account.id && !identities.contains(&s.storage_account()) {
                identities.push(s.storage_account());
            }
        }
        let mut leases: Vec<LeaseGuard> = Vec::new();
        let result = async {
            for repo in &writable {
                leases.push(self.lease(repo, account.id, "key reset").await?);
                // No collector rewrites a snapshot of the account while its data goes.
                for id in std::iter::once(account.id).chain(identities.iter().copied()) {
                    leases.push(self.collection_lease(repo, id, "key reset").await?);
                }
            }
            self.reset_under_leases(account, &identities, &writable)
                .await
        }
        .await;
        for lease in leases {
            release(lease).await;
        }
        let owner_key = result?;
        self.notify(account, EventKind::KeyReset).await;
        Ok(owner_key)
    }

    async fn reset_under_leases(
        &self,
        account: &Account,
        identities: &[AccountId],
        repos: &[Repository],
    ) -> Result<Option<OwnerKey>> {
        let catalog = &self.inner.catalog;
        for id in std::iter::once(account.id).chain(identities.iter().copied()) {
            // 1. Crypto-shred: the catalog's copy (the catalog leaves no readable trace).
            catalog.delete_key_envelope(id).await?;
            // 2. The destinations' copies first, then the data there.
            for repo in repos {
                for (key_id, _) in repo.key_envelopes(id).await? {
                    repo.delete_key_envelope(id, &key_id).await?;
                }
                repo.delete_account_data(id).await?;
            }
            self.inner.vault.shred(id).await?;
        }
        // 3. The catalog's snapshot rows and the stat caches.
        for snapshot in catalog.list_snapshots(account.id).await? {
            catalog.delete_snapshot(snapshot.id).await?;
        }
        if let Some(cache) = &self.inner.stat_cache {
            cache.clear(account.id).await?;
        }
        // 4. New keys.
        let keys = self
            .inner
            .vault
            .generate(account.id, account.encryption)
            .await?;
        catalog.put_key_envelope(account.id, &keys.envelope).await?;
        Ok(keys.owner_key)
    }

    /// Rotates the vault's master secret: every account's envelope is re-wrapped (catalog
    /// and writable destinations, each account under its leases, so no backup writes an
    /// envelope under the old key meanwhile), account records are sealed again, then the
    /// new secret replaces the old. Interrupted, it resumes on the next call.
    pub async fn rotate_master_key(&self) -> Result<RotationReport> {
        let vault = &self.inner.vault;
        vault.begin_rotation().await?;
        let mut destinations = self.inner.catalog.list_destinations().await?;
        destinations.sort_by_key(|d| d.id);
        let mut report = RotationReport::default();
        let mut repos = Vec::new();
        for d in &destinations {
            if d.read_only {
                report.read_only_destinations.push(d.name.clone());
            } else {
                repos.push(self.repo(d).await?);
            }
        }
        // Every envelope the catalog holds: the accounts', and those of removed accounts
        // whose backups stay as orphans (they must open after the rotation too).
        let mut ids: Vec<(AccountId, Option<Account>)> = self
            .inner
            .catalog
            .list_accounts()
            .await?
            .into_iter()
            .map(|a| (a.id, Some(a)))
            .collect();
        for orphan in self.inner.catalog.orphan_snapshots().await? {
            if !ids.iter().any(|(id, _)| *id == orphan.account) {
                ids.push((orphan.account, None));
            }
        }
        for (id, account) in ids {
            self.check_shutdown()?;
            let mut leases = Vec::new();
            let result = async {
                for repo in &repos {
                    leases.push(self.lease(repo, id, "master-key rotation").await?);
                }
                self.rewrap_account(id, account.as_ref(), &repos).await
            }
            .await;
            for lease in leases {
                release(lease).await;
            }
            if result? {
                report.accounts += 1;
            }
        }
        vault.finish_rotation().await?;
        Ok(report)
    }

    /// Re-wraps one account's envelope and re-seals its records (from the catalog's
    /// account, or for a removed account from the record on the destination); false when
    /// it has no envelope (a key reset was interrupted).
    async fn rewrap_account(
        &self,
        id: AccountId,
        account: Option<&Account>,
        repos: &[Repository],
    ) -> Result<bool> {
        let catalog = &self.inner.catalog;
        let vault = &self.inner.vault;
        let Some(envelope) = catalog.get_key_envelope(id).await? else {
            return Ok(false);
        };
        let keys = vault.open(id, &envelope, None).await?;
        let rewrapped = vault.rewrap(id, &envelope).await?;
        catalog.put_key_envelope(id, &rewrapped).await?;
        for repo in repos {
            if repo.key_envelopes(id).await?.is_empty() {
                continue;
            }
            repo.replace_key_envelope(id, &keys.key_id, &rewrapped)
                .await?;
            let handle = repo.account(id, keys.sealer.clone(), None);
            let record = match account {
                Some(account) => encode_account(handle.sealer().server_keys(), account)?,
                None => match self.read_account_record(&handle).await {
                    Ok(account) => encode_account(handle.sealer().server_keys(), &account)?,
                    // No readable record: nothing to re-seal.
                    Err(_) => continue,
                },
            };
            let sealed = vault.seal_record(id, &record).await?;
            handle.put_account_record_bytes(sealed).await?;
        }
        Ok(true)
    }

    /// Fills the catalog from a destination alone (disaster recovery): every account whose
    /// key envelope the vault opens, with its settings (the sealed account record) and
    /// snapshots. Nothing is written to the destination; one that the catalog does not
    /// know is added read-only, until the operator marks it writable
    /// ([`Server::set_destination_read_only`]). A damaged envelope, record or snapshot
    /// object is reported and the rebuild goes on with the others.
    pub async fn rebuild_catalog(&self, destination: &Destination) -> Result<RebuildReport> {
        let destination = match self
            .inner
            .catalog
            .find_destination(&destination.name)
            .await?
        {
            Some(known) => known,
            None => {
                self.inner.resolver.check(&destination.url)?;
                let d = destination.clone().with_read_only(true);
                self.inner.catalog.put_destination(&d).await?;
                d
            }
        };
        let repo = self.repo_for_reading(&destination).await?;
        let mut report = RebuildReport::default();
        for id in repo.list_accounts().await? {
            self.check_shutdown()?;
            if let Err(e) = self
                .rebuild_account(&repo, &destination, id, &mut report)
                .await
            {
                report.problems.push(RebuildProblem {
                    account: id.to_string(),
                    snapshot: None,
                    reason: e.to_string(),
                });
            }
        }
        Ok(report)
    }

    async fn rebuild_account(
        &self,
        repo: &Repository,
        destination: &Destination,
        id: AccountId,
        report: &mut RebuildReport,
    ) -> Result<()> {
        let envelopes = repo.key_envelopes(id).await?;
        let mut opened = None;
        for (_, bytes) in &envelopes {
            if let Ok(keys) = self.inner.vault.open(id, bytes, None).await {
                opened = Some((keys, bytes.clone()));
                break;
            }
        }
        let Some((keys, envelope)) = opened else {
            return Err(Error::not_found(if envelopes.is_empty() {
                "a key envelope (the account has none here)".to_owned()
            } else {
                "a key envelope this server's master key opens".to_owned()
            }));
        };
        let handle = repo.account(id, keys.sealer, None);
        let account = self.read_account_record(&handle).await?;
        self.inner.catalog.put_account(&account).await?;
        self.inner.catalog.put_key_envelope(id, &envelope).await?;
        report.accounts += 1;
        // Locks are kept on the destination too, so a rebuilt catalog keeps them.
        let locks: std::collections::HashMap<_, _> = match handle.list_locks().await {
            Ok(locks) => locks.into_iter().collect(),
            Err(e) => {
                report.problems.push(RebuildProblem {
                    account: id.to_string(),
                    snapshot: None,
                    reason: format!("snapshot locks: {e}"),
                });
                Default::default()
            }
        };
        for snapshot_id in handle.list_snapshots().await? {
            match handle.load_snapshot(snapshot_id).await {
                Ok(object) => {
                    let mut snapshot = object.snapshot;
                    snapshot.destination = destination.id;
                    if let Some(until) = locks.get(&snapshot_id) {
                        snapshot.locked = true;
                        snapshot.lock_until = *until;
                    }
                    self.inner.catalog.put_snapshot(&snapshot).await?;
                    report.snapshots += 1;
                }
                Err(e) => report.problems.push(RebuildProblem {
                    account: id.to_string(),
                    snapshot: Some(snapshot_id.to_string()),
                    reason: e.to_string(),
                }),
            }
        }
        Ok(())
    }

    /// The account record: sealed by the vault (or, written before records were sealed,
    /// only authenticated), then checked with the account's MAC key.
    pub(super) async fn read_account_record(&self, handle: &AccountRepo) -> Result<Account> {
        let bytes = handle
            .get_account_record_bytes()
            .await?
            .ok_or_else(|| Error::not_found("an account record"))?;
        let keys = handle.sealer().server_keys();
        let account = if bytes.starts_with(ACCOUNT_MAGIC) {
            decode_account(keys, &bytes)?
        } else {
            let plain = self
                .inner
                .vault
                .open_record(handle.account(), &bytes)
                .await?;
            decode_account(keys, &plain)?
        };
        if account.id != handle.account() {
            return Err(Error::integrity("account record", "names another account"));
        }
        Ok(account)
    }
}
