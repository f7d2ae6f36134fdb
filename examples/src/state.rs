//! [`StateDir`]: the wiring of one server's state directory: the SQLite catalog (or one at a
//! URL), the master-key vault and the stat caches, assembled into a
//! [`backup_core::service::Server`] with the URL resolver.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_catalog::SqliteCatalog;
use backup_core::engine::FsStatCache;
use backup_core::ports::{Catalog, JobQueue};
use backup_core::service::Server;
use backup_core::{Error, Result};
use backup_crypto::MasterKeyVault;
use backup_storage::UrlResolver;

/// File names inside the state directory.
const MASTER_KEY_FILE: &str = "master.key";
const CATALOG_FILE: &str = "catalog.db";
const STAT_CACHE_DIR: &str = "statcache";

/// A server assembled over a state directory.
#[derive(Debug)]
pub struct StateDir {
    /// The state directory (mode 0700).
    pub home: PathBuf,
    /// The server.
    pub server: Server,
    /// The master-key vault (for export and fingerprints).
    pub vault: Arc<MasterKeyVault>,
}

/// The catalog at `url`, or the SQLite file in the state directory, with the job queue in
/// the same database.
async fn open_catalog(
    home: &Path,
    url: Option<&str>,
) -> Result<(Arc<dyn Catalog>, Arc<dyn JobQueue>)> {
    Ok(match url {
        Some(url) => backup_catalog::open_with_queue(url).await?,
        None => {
            let catalog = Arc::new(SqliteCatalog::open(home.join(CATALOG_FILE)).await?);
            (catalog.clone(), catalog)
        }
    })
}

/// `BACKUPCTL_LEASE_TTL`: seconds an account's lease on a destination lives without
/// renewal (default [`backup_core::service::DEFAULT_LEASE_TTL`]): how long a killed
/// process's lease keeps others waiting.
fn lease_ttl_from_env() -> Result<Option<std::time::Duration>> {
    match std::env::var("BACKUPCTL_LEASE_TTL") {
        Ok(text) => {
            let secs: u64 = text.trim().parse().map_err(|_| {
                Error::invalid(
                    "BACKUPCTL_LEASE_TTL",
                    format!("{text:?}: a number of seconds"),
                )
            })?;
            if secs < 3 {
                return Err(Error::invalid("BACKUPCTL_LEASE_TTL", "at least 3 seconds"));
            }
            Ok(Some(std::time::Duration::from_secs(secs)))
        }
        Err(_) => Ok(None),
    }
}

impl StateDir {
    /// Creates the state directory (0700), master key (0600) and catalog if missing;
    /// returns whether the master key was created now. Refuses a state directory, or a
    /// catalog, that has a catalog's data but no master key: a new key would sit beside
    /// envelopes it cannot open.
    pub async fn init(home: &Path, catalog: Option<&str>) -> Result<(Self, bool)> {
        let key = home.join(MASTER_KEY_FILE);
        if !key.exists() {
            let local_catalog = catalog.is_none() && home.join(CATALOG_FILE).exists();
            let remote_catalog = match catalog {
                Some(url) => {
                    let c = backup_catalog::open(url).await?;
                    !c.list_accounts().await?.is_empty()
                }
                None => false,
            };
            if local_catalog || remote_catalog {
                return Err(Error::refused(format!(
                    "{} has no master key but its catalog has data: import the master key it \
                     was made with (`backupctl master-key import FILE`, from `master-key export`) \
                     instead of making a new one",
                    home.display()
                )));
            }
        }
        let (vault, created) = MasterKeyVault::load_or_create(home)?;
        // Private whatever it was created with: it holds the catalog and the master key.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(home, e))?;
        }
        let state = Self::assemble(home, catalog, vault, UrlResolver::new()).await?;
        Ok((state, created))
    }

    /// Opens an initialised state directory.
    pub async fn open(home: &Path, catalog: Option<&str>) -> Result<Self> {
        Self::open_with(home, catalog, UrlResolver::new()).await
    }

    /// Like [`StateDir::open`], with destinations opened by `resolver` (layers for metrics,
    /// rate limits or fault injection).
    pub async fn open_with(
        home: &Path,
        catalog: Option<&str>,
        resolver: UrlResolver,
    ) -> Result<Self> {
        if !home.join(MASTER_KEY_FILE).exists() {
            return Err(Error::not_found(format!(
                "master key in {} (run `backupctl init` first)",
                home.display()
            )));
        }
        let vault = MasterKeyVault::load(home)?;
        Self::assemble(home, catalog, vault, resolver).await
    }

    async fn assemble(
        home: &Path,
        catalog: Option<&str>,
        vault: MasterKeyVault,
        resolver: UrlResolver,
    ) -> Result<Self> {
        let (catalog, queue) = open_catalog(home, catalog).await?;
        let vault = Arc::new(vault);
        let mut builder = Server::builder(catalog, vault.clone(), Arc::new(resolver))
            .stat_cache(Arc::new(FsStatCache::new(home.join(STAT_CACHE_DIR))))
            .queue(queue);
        if let Some(ttl) = lease_ttl_from_env()? {
            builder = builder.lease_ttl(ttl);
        }
        let server = builder.build();
        Ok(Self {
            home: home.to_path_buf(),
            server,
            vault,
        })
    }

    /// Installs an exported master key into a state directory without one (disaster
    /// recovery on a new server); `true` if installed now, `false` if it was there.
    pub fn import_master_key(home: &Path, text: &str) -> Result<bool> {
        Ok(MasterKeyVault::import_text(home, text)?)
    }

    /// The master key's path.
    pub fn master_key_path(&self) -> PathBuf {
        self.home.join(MASTER_KEY_FILE)
    }
}
