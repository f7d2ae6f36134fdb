//! The server: core's policy layer above the engine, over ports only.
//!
//! A [`Server`] is what a hosting panel or an MSP portal embeds. It is assembled with a
//! [`ServerBuilder`] from a [`Catalog`], a [`KeyVault`] and a [`StoreResolver`] (plus,
//! optionally, a [`StatCacheStore`], a [`Notifier`] and a [`Clock`]), and it owns every
//! rule an integrator could get wrong:
//!
//! - **commit order**: objects first, the catalog row last, so a snapshot in the catalog
//!   always restores; the key envelope and the (sealed) account record are on a destination
//!   before the first pack, so disaster recovery finds every account;
//! - **account settings act** before any byte is uploaded: status, on-demand limit, quota
//!   with overage, backup locations, read-only destinations; each refusal is an
//!   [`Error::SettingRefused`] naming the setting, and a notification;
//! - **one operation per account at a time**, across processes and machines: a lease on the
//!   destination ([`crate::repo::Lease`]) that backups, key resets and master-key rotations
//!   take; a backup also re-checks, right before it commits, that it still holds the lease
//!   and that the account's key did not change;
//! - **read paths never write**: restore, dry run, verify, listings and catalog rebuild open
//!   destinations without creating or changing anything;
//! - **keys**: envelopes are opened by the vault, owner keys are checked, a key reset
//!   removes every copy of the old envelope before making new keys.
//!
//! Destinations are opened once (through the resolver, retries on) and kept.

mod accounts;
mod admin;
mod backup;
mod jobs;
mod progress;
mod restore;
mod retention;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::engine::StatCacheStore;
use crate::error::{Error, Result};
use crate::model::{Account, AccountId, Destination, DestinationId, OwnerKey};
use crate::ports::{
    Catalog, Clock, Event, EventKind, JobQueue, KeyVault, Notifier, NullNotifier, OpenedKeys,
    SourceProvider, StoreResolver, SystemClock,
};
use crate::repo::{AccountRepo, LeaseGuard, RepoConfig, Repository};

pub use accounts::{AccountKeysOutput, NewAccount};
pub use admin::{RebuildProblem, RebuildReport, RotationReport};
pub use backup::BackupJob;
pub use jobs::{
    DaemonReport, Health, JobHealth, StaleAccount, TaskEnd, WorkerOptions, priority_for,
};
pub use progress::{
    NoOperationProgress, OperationEvent, OperationKind, OperationProgress, Phase,
    no_operation_progress,
};
pub use restore::{RestoreRequest, VerifyRequest};
pub use retention::{
    DestinationUsage, ForgetOnDestination, ForgetReport, ForgetRequest, Orphan, OrphanPruneReport,
    PruneProblem, PruneRequest, PruneRun,
};

/// How long a lease lives without renewal (a holder renews it every third of this).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);

/// How long an operation waits for another one on the same account to finish.
pub const DEFAULT_LEASE_WAIT: Duration = Duration::from_secs(600);

/// Builds a [`Server`].
#[derive(Debug)]
pub struct ServerBuilder {
    catalog: Arc<dyn Catalog>,
    vault: Arc<dyn KeyVault>,
    resolver: Arc<dyn StoreResolver>,
    stat_cache: Option<Arc<dyn StatCacheStore>>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    repo_config: RepoConfig,
    lease_ttl: Duration,
    lease_wait: Duration,
    shutdown: CancellationToken,
    queue: Option<Arc<dyn JobQueue>>,
    sources: Arc<dyn SourceProvider>,
}

impl ServerBuilder {
    /// A server over `catalog`, with keys from `vault` and destinations opened by
    /// `resolver`. Without more, it keeps no stat cache (every file is read at every
    /// backup), drops notifications and uses the system clock.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        vault: Arc<dyn KeyVault>,
        resolver: Arc<dyn StoreResolver>,
    ) -> Self {
        Self {
            catalog,
            vault,
            resolver,
            stat_cache: None,
            notifier: Arc::new(NullNotifier),
            clock: Arc::new(SystemClock),
            repo_config: RepoConfig::default(),
            lease_ttl: DEFAULT_LEASE_TTL,
            lease_wait: DEFAULT_LEASE_WAIT,
            shutdown: CancellationToken::new(),
            queue: None,
            sources: Arc::new(crate::HomeSources),
        }
    }

    /// Runs jobs through this queue (normally the catalog's own database: `SqliteCatalog`
    /// and `PgCatalog` implement [`JobQueue`]). Without one, the job, queue and worker
    /// calls fail with [`Error::Invalid`].
    pub fn queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Makes the sources a job's workers back up (default [`crate::HomeSources`]: an
    /// account's directory is its home item).
    pub fn sources(mut self, sources: Arc<dyn SourceProvider>) -> Self {
        self.sources = sources;
        self
    }

    /// Cancels every long operation of the server when `token` fires (a daemon's
    /// shutdown): backups and restores stop as their own tokens would stop them, a rotation
    /// or a rebuild stops before its next account (each resumes on the next call).
    pub fn shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// Keeps stat caches here: unchanged files cost one `stat` at the next backup.
    pub fn stat_cache(mut self, store: Arc<dyn StatCacheStore>) -> Self {
        self.stat_cache = Some(store);
        self
    }

    /// Delivers events (filtered by each account's notification settings) here.
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Uses this clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The repository config new destinations get.
    pub fn repo_config(mut self, config: RepoConfig) -> Self {
        self.repo_config = config;
        self
    }

    /// How long an account's lease lives without renewal.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long an operation waits for another one on the same account before it fails
    /// with [`Error::LeaseHeld`] (zero: fail at once).
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// The server.
    pub fn build(self) -> Server {
        Server {
            inner: Arc::new(Inner {
                catalog: self.catalog,
                vault: self.vault,
                resolver: self.resolver,
                stat_cache: self.stat_cache,
                notifier: self.notifier,
                clock: self.clock,
                repo_config: self.repo_config,
                lease_ttl: self.lease_ttl,
                lease_wait: self.lease_wait,
                shutdown: self.shutdown,
                queue: self.queue,
                sources: self.sources,
                repos: Mutex::new(HashMap::new()),
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    catalog: Arc<dyn Catalog>,
    vault: Arc<dyn KeyVault>,
    resolver: Arc<dyn StoreResolver>,
    stat_cache: Option<Arc<dyn StatCacheStore>>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    repo_config: RepoConfig,
    lease_ttl: Duration,
    lease_wait: Duration,
    shutdown: CancellationToken,
    queue: Option<Arc<dyn JobQueue>>,
    sources: Arc<dyn SourceProvider>,
    /// Opened destinations by id, with the URL they were opened from.
    repos: Mutex<HashMap<DestinationId, (String, Repository)>>,
}

/// The backup server of one catalog. Cheap to clone; every clone shares the opened
/// destinations.
#[derive(Debug, Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    /// Starts building a server.
    pub fn builder(
        catalog: Arc<dyn Catalog>,
        vault: Arc<dyn KeyVault>,
        resolver: Arc<dyn StoreResolver>,
    ) -> ServerBuilder {
        ServerBuilder::new(catalog, vault, resolver)
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.inner.catalog
    }

    /// The key vault.
    pub fn vault(&self) -> &Arc<dyn KeyVault> {
        &self.inner.vault
    }

    /// The store resolver.
    pub fn resolver(&self) -> &Arc<dyn StoreResolver> {
        &self.inner.resolver
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    /// Sends `kind` about `account` when the account's settings ask for it.
    async fn notify(&self, account: &Account, kind: EventKind) {
        let mut event = Event::new(account.id, kind);
        event.time = self.now();
        if event.wanted_by(account) {
            self.inner.notifier.notify(&event).await;
        }
    }

    /// The repository on `destination`, opened once, then kept. With `create` (the write
    /// paths) a writable destination's repository is created if new (its `config` written
    /// once); otherwise (read paths, read-only destinations) it is only opened, must exist,
    /// and nothing is written.
    async fn repo_at(&self, destination: &Destination, create: bool) -> Result<Repository> {
        let mut repos = self.inner.repos.lock().await;
        if let Some((url, repo)) = repos.get(&destination.id)
            && *url == destination.url
        {
            return Ok(repo.clone());
        }
        let (store, root) = self.inner.resolver.open(&destination.url).await?;
        let repo = if create && !destination.read_only {
            Repository::init(store, root, self.inner.repo_config).await?
        } else {
            Repository::open(store, root).await?
        };
        repos.insert(destination.id, (destination.url.clone(), repo.clone()));
        Ok(repo)
    }

    /// The repository for a write path (see [`Server::repo_at`]).
    async fn repo(&self, destination: &Destination) -> Result<Repository> {
        self.repo_at(destination, true).await
    }

    /// The repository for a read path: never created, nothing written.
    async fn repo_for_reading(&self, destination: &Destination) -> Result<Repository> {
        self.repo_at(destination, false).await
    }

    /// A destination by id.
    async fn destination_by_id(&self, id: DestinationId) -> Result<Destination> {
        self.inner
            .catalog
            .get_destination(id)
            .await?
            .ok_or_else(|| Error::not_found(format!("destination {id}")))
    }

    /// The account's envelope from the catalog, opened by the vault.
    async fn keys(
        &self,
        account: &Account,
        owner_key: Option<&OwnerKey>,
    ) -> Result<(OpenedKeys, Vec<u8>)> {
        self.keys_of(account, account.id, owner_key).await
    }

    /// The keys of `identity`: the account's own, or an earlier identity of it whose
    /// snapshots were reassigned to it.
    async fn keys_of(
        &self,
        account: &Account,
        identity: AccountId,
        owner_key: Option<&OwnerKey>,
    ) -> Result<(OpenedKeys, Vec<u8>)> {
        let envelope = self
            .inner
            .catalog
            .get_key_envelope(identity)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "keys of account {} (if a key reset was interrupted, run it again)",
                    account.username
                ))
            })?;
        let keys = self
            .inner
            .vault
            .open(identity, &envelope, owner_key)
            .await?;
        Ok((keys, envelope))
    }

    /// A reading handle on the account's part of `destination`: nothing is written.
    /// A read-only handle on the objects of `identity` (the account's id, or the earlier
    /// identity a reassigned snapshot keeps: [`crate::model::Snapshot::storage_account`]).
    async fn reader(
        &self,
        account: &Account,
        identity: AccountId,
        destination: &Destination,
        owner_key: Option<&OwnerKey>,
        need_content: bool,
    ) -> Result<AccountRepo> {
        let (keys, _) = self.keys_of(account, identity, owner_key).await?;
        if need_content && keys.opener.is_none() {
            return Err(Error::KeyRequired {
                account: account.username.to_string(),
            });
        }
        let repo = self.repo_for_reading(destination).await?;
        Ok(repo.account(identity, keys.sealer, keys.opener))
    }

    /// Takes the account's lease on `repo` for `operation` and keeps it renewed.
    async fn lease(
        &self,
        repo: &Repository,
        account: AccountId,
        operation: &str,
    ) -> Result<LeaseGuard> {
        Ok(repo
            .acquire_lease(
                account,
                operation,
                self.inner.lease_ttl,
                self.inner.lease_wait,
            )
            .await?
            .keep_alive())
    }
}

impl Server {
    /// Fails with [`Error::Cancelled`] once the server is shutting down.
    fn check_shutdown(&self) -> Result<()> {
        if self.inner.shutdown.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// A token that fires when `own` or the server's shutdown token does, with the task
    /// that forwards `own` to it (abort it when the operation is over).
    fn joined(&self, own: &CancellationToken) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let joined = self.inner.shutdown.child_token();
        let watcher = {
            let own = own.clone();
            let joined = joined.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = own.cancelled() => joined.cancel(),
                    _ = joined.cancelled() => {}
                }
            })
        };
        (joined, watcher)
    }
}

/// Releases a lease, logging (not failing on) an error: the lease expires anyway.
async fn release(guard: LeaseGuard) {
    if let Err(e) = guard.release().await {
        tracing::warn!(error = %e, "could not release a lease; it expires on its own");
    }
}
