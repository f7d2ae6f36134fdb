//! Administration on [`Service`]: key reset (crypto-shred), master key export, import and
//! rotation, and rebuilding the catalog from a destination (disaster recovery).

use std::path::Path;

use backup_core::engine::{FsStatCache, StatCacheStore};
use backup_core::model::{Account, Destination, EncryptionMode, OwnerKey};
use backup_core::ports::{Event, EventKind, Notifier};
use backup_core::{Error, Result};
use backup_crypto::{AccountKeys, MasterKey};

use crate::service::Service;

/// What [`Service::rebuild_catalog`] recovered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Accounts recovered.
    pub accounts: u64,
    /// Snapshots recovered.
    pub snapshots: u64,
    /// Account prefixes skipped (no key envelope, or one the master key does not open).
    pub skipped: Vec<String>,
}

const NEXT_MASTER_KEY_FILE: &str = "master.key.next";

impl Service {
    /// Resets an encrypted account's keys: first the key envelope is removed from the
    /// catalog and from every destination (crypto-shred: nothing held any more opens the
    /// old objects), then every snapshot, pack and index of the account is deleted on every
    /// destination and in the catalog, then new keys are made. For an owner-held key the new
    /// private key is returned (once). An interrupted reset is finished by calling it again;
    /// until then the account has no usable key.
    pub async fn reset_key(
        &self,
        account: &Account,
        notifier: &dyn Notifier,
    ) -> Result<Option<OwnerKey>> {
        if account.encryption == EncryptionMode::None {
            return Err(Error::refused(format!(
                "account {} is not encrypted: there is no key to reset",
                account.username
            )));
        }
        // 1. Crypto-shred on the server.
        self.catalog().delete_key_envelope(account.id).await?;
        // 2. Crypto-shred on every destination, then delete the data there.
        for destination in self.catalog().list_destinations().await? {
            let repo = self.open_repo(&destination).await?;
            for (key_id, _) in repo.key_envelopes(account.id).await? {
                repo.delete_key_envelope(account.id, &key_id).await?;
            }
            repo.delete_account_data(account.id).await?;
        }
        // 3. The catalog's snapshot rows and the local stat cache.
        for snapshot in self.catalog().list_snapshots(account.id).await? {
            self.catalog().delete_snapshot(snapshot.id).await?;
        }
        FsStatCache::new(self.home().join("statcache"))
            .clear(account.id)
            .await?;
        // 4. New keys.
        let (keys, owner_key) = AccountKeys::generate(account.id, account.encryption)?;
        let envelope = keys.to_envelope(self.master())?;
        self.catalog()
            .put_key_envelope(account.id, &envelope)
            .await?;
        notifier
            .notify(&Event::new(account.id, EventKind::KeyReset))
            .await;
        Ok(owner_key)
    }

    /// The master key as checksummed text, for safekeeping off the server.
    pub fn export_master_key(&self) -> String {
        self.master().to_text().to_string()
    }

    /// Installs a master key from its exported text into an empty state directory (for
    /// disaster recovery on a new server). Refuses to replace a different key.
    pub fn import_master_key(home: &Path, text: &str) -> Result<()> {
        let key = MasterKey::from_text(text)?;
        std::fs::create_dir_all(home).map_err(|e| Error::io(home, e))?;
        let path = home.join("master.key");
        if path.exists() {
            let existing = MasterKey::load(&path)?;
            if existing.fingerprint() == key.fingerprint() {
                return Ok(());
            }
            return Err(Error::AlreadyExists {
                what: format!("a different master key in {}", path.display()),
            });
        }
        key.save_new(&path)?;
        Ok(())
    }

    /// Rotates the master key: a new key is saved beside the old one, every account's key
    /// envelope is re-wrapped under it (catalog and destinations), then the new key replaces
    /// the old file. Interrupted, it resumes on the next call (envelopes already re-wrapped
    /// are recognised). Returns the number of accounts re-wrapped.
    pub async fn rotate_master_key(&mut self) -> Result<u64> {
        let next_path = self.home().join(NEXT_MASTER_KEY_FILE);
        let (next, _) = MasterKey::load_or_create(&next_path)?;
        let destinations = self.catalog().list_destinations().await?;
        let mut repos = Vec::new();
        for d in &destinations {
            repos.push(self.open_repo(d).await?);
        }
        let mut count = 0;
        for account in self.catalog().list_accounts().await? {
            let Some(envelope) = self.catalog().get_key_envelope(account.id).await? else {
                continue;
            };
            let keys = match AccountKeys::from_envelope(self.master(), account.id, &envelope) {
                Ok(k) => k,
                // Already re-wrapped by an interrupted rotation.
                Err(_) => AccountKeys::from_envelope(&next, account.id, &envelope)?,
            };
            let rewrapped = keys.to_envelope(&next)?;
            self.catalog()
                .put_key_envelope(account.id, &rewrapped)
                .await?;
            for repo in &repos {
                if repo.key_envelopes(account.id).await?.is_empty() {
                    continue;
                }
                repo.replace_key_envelope(account.id, &keys.key_id(), &rewrapped)
                    .await?;
            }
            count += 1;
        }
        let current = self.home().join("master.key");
        std::fs::rename(&next_path, &current).map_err(|e| Error::io(&current, e))?;
        self.set_master(next);
        Ok(count)
    }

    /// Fills the catalog from a destination alone (disaster recovery): every account whose
    /// key envelope the master key opens, with its settings (account record) and snapshots.
    /// The destination is added to the catalog if missing.
    pub async fn rebuild_catalog(&self, destination: &Destination) -> Result<RebuildReport> {
        if self
            .catalog()
            .find_destination(&destination.name)
            .await?
            .is_none()
        {
            self.catalog().put_destination(destination).await?;
        }
        let repo = self.open_repo(destination).await?;
        let mut report = RebuildReport::default();
        for id in repo.list_accounts().await? {
            let envelopes = repo.key_envelopes(id).await?;
            let opened = envelopes.iter().find_map(|(_, bytes)| {
                AccountKeys::from_envelope(self.master(), id, bytes)
                    .ok()
                    .map(|k| (k, bytes.clone()))
            });
            let Some((keys, envelope)) = opened else {
                report.skipped.push(id.to_string());
                continue;
            };
            let handle = repo.account(id, keys.sealer(), None);
            let Some(account) = handle.get_account_record().await? else {
                report.skipped.push(id.to_string());
                continue;
            };
            self.catalog().put_account(&account).await?;
            self.catalog().put_key_envelope(id, &envelope).await?;
            report.accounts += 1;
            for snapshot_id in handle.list_snapshots().await? {
                let object = handle.load_snapshot(snapshot_id).await?;
                let mut snapshot = object.snapshot;
                snapshot.destination = destination.id;
                self.catalog().put_snapshot(&snapshot).await?;
                report.snapshots += 1;
            }
        }
        Ok(report)
    }
}
