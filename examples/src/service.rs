//! [`Service`]: the catalog, the master key and the destinations, wired to the engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_catalog::SqliteCatalog;
use backup_core::engine::{
    self, BackupReport, BackupRequest, FsStatCache, ProgressSink, RestoreReport, VerifyOptions,
    VerifyReport,
};
use backup_core::model::{
    Account, AccountStatus, Destination, EncryptionMode, ItemKind, ItemSelection, OwnerKey,
    Ownership, PathSelection, RestoreOptions, RestorePlan, Snapshot,
};
use backup_core::ports::{AccountSource, Catalog};
use backup_core::repo::{AccountRepo, RepoConfig, Repository};
use backup_core::{Error, FsAccount, Result};
use backup_crypto::{AccountKeys, MasterKey};
use backup_storage::object_store::ObjectStore;

/// File names inside the state directory.
const MASTER_KEY_FILE: &str = "master.key";
const CATALOG_FILE: &str = "catalog.db";

/// A new account and, for an owner-held key, the owner's key (shown once).
#[derive(Debug)]
pub struct AccountKeysOutput {
    /// The account as stored.
    pub account: Account,
    /// The owner's private key for `remote` encryption; never stored.
    pub owner_key: Option<OwnerKey>,
}

/// What to restore.
#[derive(Debug)]
pub struct RestoreRequest {
    /// Items, each from its snapshot.
    pub items: Vec<(ItemKind, Snapshot)>,
    /// Include globs for tree items (home, mail); empty takes everything.
    pub paths: Vec<String>,
    /// Where to write (an `FsAccount` layout: `DIR/home`, `DIR/databases`, ...).
    pub target: PathBuf,
    /// The owner's key, for owner-held-key accounts.
    pub owner_key: Option<OwnerKey>,
    /// Merge into what is there instead of replacing items.
    pub merge: bool,
    /// Only report what would be restored.
    pub dry_run: bool,
    /// Who owns the restored files.
    pub ownership: Ownership,
}

/// The assembled backup service of one server: state directory, catalog and master key.
#[derive(Debug)]
pub struct Service {
    home: PathBuf,
    catalog: Arc<dyn Catalog>,
    master: MasterKey,
    store_layer: Option<StoreLayer>,
}

/// Wraps every destination store the service opens: metrics, rate limits, request logs,
/// or fault injection in tests ([`backup_storage::FaultStore`]).
#[derive(Clone)]
pub struct StoreLayer(Arc<WrapStore>);

type WrapStore = dyn Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync;

impl StoreLayer {
    /// A layer applying `wrap` to each store opened.
    pub fn new(
        wrap: impl Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(wrap))
    }
}

impl std::fmt::Debug for StoreLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLayer")
    }
}

/// The catalog at `url`, or the SQLite file in the state directory.
async fn open_catalog(home: &Path, url: Option<&str>) -> Result<Arc<dyn Catalog>> {
    Ok(match url {
        Some(url) => backup_catalog::open(url).await?,
        None => Arc::new(SqliteCatalog::open(home.join(CATALOG_FILE)).await?),
    })
}

fn storage_error(e: backup_storage::Error) -> Error {
    Error::invalid("destination", e.to_string())
}

impl Service {
    /// Creates the state directory, master key and catalog if missing; returns whether the
    /// master key was created now. The catalog is the SQLite file `catalog.db` in `home`.
    pub async fn init(home: &Path) -> Result<(Self, bool)> {
        Self::init_with_catalog(home, None).await
    }

    /// Like [`Service::init`], with the catalog at `catalog` when given: a URL for
    /// [`backup_catalog::open`] (`sqlite://PATH`, `sqlite::memory:`, `postgres://…`).
    pub async fn init_with_catalog(home: &Path, catalog: Option<&str>) -> Result<(Self, bool)> {
        std::fs::create_dir_all(home).map_err(|e| Error::io(home, e))?;
        let (master, created) = MasterKey::load_or_create(home.join(MASTER_KEY_FILE))?;
        let catalog = open_catalog(home, catalog).await?;
        Ok((
            Self {
                home: home.to_path_buf(),
                catalog,
                master,
                store_layer: None,
            },
            created,
        ))
    }

    /// Opens an initialised state directory (catalog: `catalog.db` in it).
    pub async fn open(home: &Path) -> Result<Self> {
        Self::open_with_catalog(home, None).await
    }

    /// Like [`Service::open`], with the catalog at `catalog` when given (see
    /// [`Service::init_with_catalog`]).
    pub async fn open_with_catalog(home: &Path, catalog: Option<&str>) -> Result<Self> {
        let key = home.join(MASTER_KEY_FILE);
        if !key.exists() {
            return Err(Error::not_found(format!(
                "state directory {} (run `backupctl init` first)",
                home.display()
            )));
        }
        let master = MasterKey::load(&key)?;
        let catalog = open_catalog(home, catalog).await?;
        Ok(Self {
            home: home.to_path_buf(),
            catalog,
            master,
            store_layer: None,
        })
    }

    /// The state directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The server master key.
    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    /// Replaces the master key in use (after a rotation).
    pub(crate) fn set_master(&mut self, master: MasterKey) {
        self.master = master;
    }

    /// Sets (or with `None` removes) the layer wrapping every destination store opened
    /// from now on.
    pub fn set_store_layer(&mut self, layer: Option<StoreLayer>) {
        self.store_layer = layer;
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// Adds a destination and creates its repository. A plain path is taken as `file://`.
    pub async fn add_destination(&self, name: &str, url: &str) -> Result<Destination> {
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            let path = Path::new(url);
            let abs = if path.is_absolute() {
                path.to_path_buf()
            } else {
                std::env::current_dir()
                    .map_err(|e| Error::io(".", e))?
                    .join(path)
            };
            let clean: PathBuf = abs.components().collect();
            format!("file://{}", clean.display())
        };
        if self.catalog.find_destination(name).await?.is_some() {
            return Err(Error::AlreadyExists {
                what: format!("destination {name:?}"),
            });
        }
        let destination = Destination::new(name, &url)?;
        self.open_repo(&destination).await?;
        self.catalog.put_destination(&destination).await?;
        Ok(destination)
    }

    /// A destination by name.
    pub async fn destination(&self, name: &str) -> Result<Destination> {
        self.catalog
            .find_destination(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("destination {name:?}")))
    }

    pub(crate) async fn open_repo(&self, destination: &Destination) -> Result<Repository> {
        let (mut store, root) = backup_storage::open(&destination.url).map_err(storage_error)?;
        if let Some(layer) = &self.store_layer {
            store = (layer.0)(store);
        }
        Repository::init(store, root, RepoConfig::default()).await
    }

    /// Creates an account with fresh keys. For `OwnerKey` mode the owner's key is returned
    /// once and never stored.
    pub async fn add_account(
        &self,
        username: &str,
        email: Option<&str>,
        encryption: EncryptionMode,
        excludes: &[String],
    ) -> Result<AccountKeysOutput> {
        let mut account = Account::new(username)?
            .with_encryption(encryption)
            .with_excludes(excludes.iter().cloned())?
            .with_status(AccountStatus::Active);
        if let Some(email) = email {
            account = account.with_email(email)?;
        }
        let (keys, owner_key) = AccountKeys::generate(account.id, encryption)?;
        let envelope = keys.to_envelope(&self.master)?;
        self.catalog.put_account(&account).await?;
        self.catalog.put_key_envelope(account.id, &envelope).await?;
        Ok(AccountKeysOutput { account, owner_key })
    }

    /// An account by username (must be unique here) or UUID.
    pub async fn account(&self, name_or_id: &str) -> Result<Account> {
        if let Ok(id) = name_or_id.parse()
            && let Some(a) = self.catalog.get_account(id).await?
        {
            return Ok(a);
        }
        let mut found = self.catalog.find_accounts(name_or_id).await?;
        match found.len() {
            0 => Err(Error::not_found(format!("account {name_or_id:?}"))),
            1 => Ok(found.remove(0)),
            n => Err(Error::invalid(
                "account",
                format!("{n} accounts are named {name_or_id:?}: use the account id"),
            )),
        }
    }

    pub(crate) async fn keys(&self, account: &Account) -> Result<(AccountKeys, Vec<u8>)> {
        let envelope = self
            .catalog
            .get_key_envelope(account.id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "keys of account {} (if a key reset was interrupted, run it again)",
                    account.username
                ))
            })?;
        let keys = match AccountKeys::from_envelope(&self.master, account.id, &envelope) {
            Ok(k) => k,
            Err(e) => {
                // A master key rotation was interrupted after re-wrapping this account.
                let next = self.home.join("master.key.next");
                if !next.exists() {
                    return Err(e.into());
                }
                AccountKeys::from_envelope(&MasterKey::load(&next)?, account.id, &envelope)?
            }
        };
        Ok((keys, envelope))
    }

    async fn handle(
        &self,
        account: &Account,
        destination: &Destination,
        owner_key: Option<&OwnerKey>,
        need_reader: bool,
    ) -> Result<AccountRepo> {
        let (keys, envelope) = self.keys(account).await?;
        let opener = match (need_reader, keys.opener(owner_key)) {
            (_, Ok(o)) => Some(o),
            (false, Err(_)) => None,
            (true, Err(e)) => return Err(e.into()),
        };
        let repo = self.open_repo(destination).await?;
        match repo
            .put_key_envelope(account.id, &keys.key_id(), &envelope)
            .await
        {
            // The same keys under the previous master key (a rotation that did not reach
            // this destination): the catalog's copy is current.
            Err(Error::AlreadyExists { .. }) => {
                repo.replace_key_envelope(account.id, &keys.key_id(), &envelope)
                    .await?
            }
            other => other?,
        }
        Ok(repo.account(account.id, keys.sealer(), opener))
    }

    /// Backs up the account laid out at `source` (an `FsAccount` layout: `home/`,
    /// `databases/NAME`, ...) to the named destination and records the snapshot.
    pub async fn backup(
        &self,
        account: &Account,
        source: &Path,
        destination: &str,
        progress: &ProgressSink,
    ) -> Result<Snapshot> {
        if !source.is_dir() {
            return Err(Error::not_found(format!(
                "source directory {}",
                source.display()
            )));
        }
        let report = self
            .backup_source(account, &FsAccount::new(source), destination, progress)
            .await?;
        Ok(report.snapshot)
    }

    /// Backs up `source` to the named destination and records the snapshot; the report
    /// names what was left out (the snapshot is then partial).
    pub async fn backup_source(
        &self,
        account: &Account,
        source: &dyn AccountSource,
        destination: &str,
        progress: &ProgressSink,
    ) -> Result<BackupReport> {
        let destination = self.destination(destination).await?;
        let handle = self.handle(account, &destination, None, false).await?;
        // The account's settings go with its data, for disaster recovery.
        handle.put_account_record(account).await?;
        // The stat cache lives beside the catalog: unchanged files cost one stat next time.
        let stat_cache = FsStatCache::new(self.home.join("statcache"));
        let request = BackupRequest::new(account, destination.id).with_stat_cache(&stat_cache);
        let report = engine::backup(&handle, &request, source, progress).await?;
        self.catalog.put_snapshot(&report.snapshot).await?;
        Ok(report)
    }

    /// An account's snapshots, oldest first.
    pub async fn snapshots(&self, account: &Account) -> Result<Vec<Snapshot>> {
        self.catalog.list_snapshots(account.id).await
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

    /// Restores (or dry-runs) items from snapshots, possibly on several destinations.
    pub async fn restore(
        &self,
        account: &Account,
        request: RestoreRequest,
        progress: &ProgressSink,
    ) -> Result<RestoreReport> {
        if request.items.is_empty() {
            return Err(Error::invalid("restore", "no item selected"));
        }
        let tree_paths = PathSelection::new(request.paths.iter().cloned(), Vec::<String>::new())?;
        let mut by_destination: Vec<(
            backup_core::model::DestinationId,
            Vec<&(ItemKind, Snapshot)>,
        )> = Vec::new();
        for item in &request.items {
            match by_destination
                .iter_mut()
                .find(|(d, _)| *d == item.1.destination)
            {
                Some((_, v)) => v.push(item),
                None => by_destination.push((item.1.destination, vec![item])),
            }
        }
        let target = FsAccount::new(&request.target);
        let mut report = RestoreReport::default();
        for (destination_id, items) in by_destination {
            let destination = self
                .catalog
                .get_destination(destination_id)
                .await?
                .ok_or_else(|| Error::not_found(format!("destination {destination_id}")))?;
            let handle = self
                .handle(account, &destination, request.owner_key.as_ref(), true)
                .await?;
            let mut plan = RestorePlan::new(account.id).with_options(RestoreOptions {
                merge: request.merge,
                ownership: request.ownership,
                ..Default::default()
            });
            let mut snapshots: Vec<Snapshot> = Vec::new();
            for (kind, snap) in items {
                let paths = if kind.is_tree() {
                    tree_paths.clone()
                } else {
                    PathSelection::all()
                };
                plan.items.push(ItemSelection {
                    kind: *kind,
                    snapshot: snap.id,
                    paths,
                });
                if !snapshots.iter().any(|s| s.id == snap.id) {
                    snapshots.push(snap.clone());
                }
            }
            let part = if request.dry_run {
                engine::dry_run(&handle, &plan, &snapshots).await?
            } else {
                std::fs::create_dir_all(&request.target)
                    .map_err(|e| Error::io(&request.target, e))?;
                engine::restore(&handle, &plan, &snapshots, &target, progress).await?
            };
            report.items.extend(part.items);
            report.failed.extend(part.failed);
        }
        Ok(report)
    }

    /// Verifies every destination holding snapshots of the account. Without `read_data` the
    /// structure is checked; with it every pack is read back (and, when the content key is
    /// at hand, every blob opened and authenticated).
    pub async fn verify(
        &self,
        account: &Account,
        read_data: bool,
        sample_percent: Option<u8>,
        owner_key: Option<&OwnerKey>,
    ) -> Result<Vec<(Destination, VerifyReport)>> {
        let snapshots = self.snapshots(account).await?;
        let mut destinations = Vec::new();
        for s in &snapshots {
            if !destinations.contains(&s.destination) {
                destinations.push(s.destination);
            }
        }
        let mut out = Vec::new();
        for id in destinations {
            let destination = self
                .catalog
                .get_destination(id)
                .await?
                .ok_or_else(|| Error::not_found(format!("destination {id}")))?;
            let handle = self.handle(account, &destination, owner_key, false).await?;
            let ids: Vec<_> = snapshots
                .iter()
                .filter(|s| s.destination == id)
                .map(|s| s.id)
                .collect();
            let report = engine::verify(
                &handle,
                &ids,
                VerifyOptions {
                    read_data,
                    sample_percent,
                },
            )
            .await?;
            out.push((destination, report));
        }
        Ok(out)
    }
}
