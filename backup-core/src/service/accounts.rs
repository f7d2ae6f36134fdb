//! Accounts, destinations, settings and listings.

use super::Server;
use crate::error::{Error, Result};
use crate::model::{
    Account, AccountStatus, Destination, DestinationClass, EncryptionMode, OwnerKey, Settings,
    Snapshot,
};

/// A new account and, for an owner-held key, the owner's key (shown once).
#[derive(Debug)]
pub struct AccountKeysOutput {
    /// The account as stored.
    pub account: Account,
    /// The owner's private key for owner-key encryption; never stored.
    pub owner_key: Option<OwnerKey>,
}

/// What [`Server::add_account`] needs: an [`Account`] value as the integrator set it up
/// (validated by its constructors). Its id is kept.
#[derive(Debug, Clone)]
pub struct NewAccount(pub Account);

impl NewAccount {
    /// A new active account with default settings and the given encryption.
    pub fn active(username: &str, encryption: EncryptionMode) -> Result<Self> {
        Ok(Self(
            Account::new(username)?
                .with_encryption(encryption)
                .with_status(AccountStatus::Active),
        ))
    }
}

impl Server {
    /// Creates an account with fresh keys. Usernames are unique on a server: adding an
    /// existing one fails, naming the account that has it. For owner-key encryption the
    /// owner's key is returned once and never stored.
    pub async fn add_account(&self, new: NewAccount) -> Result<AccountKeysOutput> {
        let account = new.0;
        self.check_username_free(&account).await?;
        let keys = self
            .inner
            .vault
            .generate(account.id, account.encryption)
            .await?;
        self.inner.catalog.put_account(&account).await?;
        self.inner
            .catalog
            .put_key_envelope(account.id, &keys.envelope)
            .await?;
        Ok(AccountKeysOutput {
            account,
            owner_key: keys.owner_key,
        })
    }

    async fn check_username_free(&self, account: &Account) -> Result<()> {
        let same = self
            .inner
            .catalog
            .find_accounts(account.username.as_str())
            .await?;
        if let Some(other) = same.iter().find(|a| {
            a.id != account.id && a.origin_server.as_deref() == account.origin_server.as_deref()
        }) {
            return Err(Error::AlreadyExists {
                what: format!("account {} (id {})", other.username, other.id),
            });
        }
        Ok(())
    }

    /// Stores changed settings of an existing account. The encryption mode cannot change
    /// (that is a key reset); the username stays unique. Destinations get the new account
    /// record at the next backup.
    pub async fn update_account(&self, account: &Account) -> Result<()> {
        let old = self
            .inner
            .catalog
            .get_account(account.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("account {}", account.id)))?;
        if old.encryption != account.encryption {
            return Err(Error::refused(format!(
                "the encryption mode of {} cannot change from {} to {}: create a new account",
                old.username,
                old.encryption.as_str(),
                account.encryption.as_str()
            )));
        }
        self.check_username_free(account).await?;
        self.inner.catalog.put_account(account).await
    }

    /// Removes an account from the catalog. Its snapshots and key stay (in the catalog
    /// and on the destinations) as orphans, until the orphan retention removes them.
    pub async fn remove_account(&self, account: &Account) -> Result<()> {
        if !self.inner.catalog.forget_account(account.id).await? {
            return Err(Error::not_found(format!("account {}", account.username)));
        }
        Ok(())
    }

    /// An account by username (unique on this server) or id.
    pub async fn account(&self, name_or_id: &str) -> Result<Account> {
        if let Ok(id) = name_or_id.parse()
            && let Some(a) = self.inner.catalog.get_account(id).await?
        {
            return Ok(a);
        }
        let mut found = self.inner.catalog.find_accounts(name_or_id).await?;
        match found.len() {
            0 => Err(Error::not_found(format!("account {name_or_id:?}"))),
            1 => Ok(found.remove(0)),
            n => Err(Error::invalid(
                "account",
                format!("{n} accounts are named {name_or_id:?}: use the account id"),
            )),
        }
    }

    /// Every account, by username.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        self.inner.catalog.list_accounts().await
    }

    /// The server's global settings.
    pub async fn settings(&self) -> Result<Settings> {
        self.inner.catalog.get_settings().await
    }

    /// Stores the server's global settings.
    pub async fn set_settings(&self, settings: &Settings) -> Result<()> {
        self.inner.catalog.put_settings(settings).await
    }

    /// Adds a destination. The URL must be explicit (`file:///ABS`, `s3://`, `sftp://`,
    /// `memory://`); the class defaults to what the URL suggests. A writable destination's
    /// repository is created now; a read-only one must exist already.
    pub async fn add_destination(
        &self,
        name: &str,
        url: &str,
        class: Option<DestinationClass>,
        read_only: bool,
    ) -> Result<Destination> {
        let mut destination = Destination::new(name, url)?.with_read_only(read_only);
        destination.class = class;
        self.inner.resolver.check(url)?;
        if self.inner.catalog.find_destination(name).await?.is_some() {
            return Err(Error::AlreadyExists {
                what: format!("destination {name:?}"),
            });
        }
        self.repo(&destination).await?;
        self.inner.catalog.put_destination(&destination).await?;
        Ok(destination)
    }

    /// Marks a destination read-only or writable.
    pub async fn set_destination_read_only(
        &self,
        name: &str,
        read_only: bool,
    ) -> Result<Destination> {
        let destination = self.destination(name).await?.with_read_only(read_only);
        if !read_only {
            // Writable from now on: create the repository if it is new.
            self.repo(&destination).await?;
        }
        self.inner.catalog.put_destination(&destination).await?;
        Ok(destination)
    }

    /// A destination by name.
    pub async fn destination(&self, name: &str) -> Result<Destination> {
        self.inner
            .catalog
            .find_destination(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("destination {name:?}")))
    }

    /// Every destination, by name.
    pub async fn destinations(&self) -> Result<Vec<Destination>> {
        self.inner.catalog.list_destinations().await
    }

    /// An account's snapshots, oldest first.
    pub async fn snapshots(&self, account: &Account) -> Result<Vec<Snapshot>> {
        self.inner.catalog.list_snapshots(account.id).await
    }

    /// A snapshot of the account by id or unique id prefix.
    pub async fn snapshot(&self, account: &Account, id: &str) -> Result<Snapshot> {
        let id = id.trim().to_ascii_lowercase();
        let all = self.snapshots(account).await?;
        let matching: Vec<&Snapshot> = all
            .iter()
            .filter(|s| s.id.to_string().starts_with(&id))
            .collect();
        match matching.as_slice() {
            [one] if !id.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(Error::not_found(format!(
                "snapshot {id:?} of account {}",
                account.username
            ))),
            _ => Err(Error::invalid(
                "snapshot",
                format!("{id:?} matches several snapshots: give more of the id"),
            )),
        }
    }
}
