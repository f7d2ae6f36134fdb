//! Storage that shrinks: snapshot locks, forget by retention policy, garbage collection,
//! orphans (snapshots of removed accounts) and usage after dedup.
//!
//! Forget, lock, unlock, orphan pruning and collection hold the account's **collection
//! lease** on the destination (one collector per account, on any number of machines), never
//! its operation lease: backups go on meanwhile. The order of writes keeps every rule of
//! the server: a lock is on the destination before the catalog says so (a rebuilt catalog
//! keeps it), a forgotten snapshot leaves the catalog before its object goes (a snapshot in
//! the catalog always restores), and a pack is deleted only as
//! [`crate::engine::prune`] describes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Server, release};
use crate::engine::{self, CommitGuard, PruneOptions, PruneReport, StorageUsage};
use crate::error::{Error, Result};
use crate::model::{
    Account, AccountId, Destination, DestinationId, Limit, RetentionDecision, RetentionPolicy,
    Snapshot, SnapshotId,
};
use crate::repo::{AccountRepo, LeaseGuard, Repository};

/// What [`Server::forget`] applies.
#[derive(Debug, Clone, Default)]
pub struct ForgetRequest {
    /// The policy. An on-demand cap left at [`Limit::Default`] takes the account's
    /// setting (which itself may fall back to the server's).
    pub policy: RetentionPolicy,
    /// Only the snapshots on this destination (by name); all destinations when `None`.
    pub destination: Option<String>,
    /// Decide and report, forgetting nothing.
    pub dry_run: bool,
}

/// What [`Server::forget`] did on one destination.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetOnDestination {
    /// The destination's name.
    pub destination: String,
    /// What the policy keeps and forgets, with reasons.
    pub decision: RetentionDecision,
    /// The snapshots forgotten (empty in a dry run). A snapshot locked meanwhile is kept.
    pub forgotten: Vec<SnapshotId>,
}

/// What [`Server::forget`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// The account.
    pub account: AccountId,
    /// Whether nothing was forgotten.
    pub dry_run: bool,
    /// Per destination holding snapshots of the account.
    pub destinations: Vec<ForgetOnDestination>,
}

/// What [`Server::prune`] collects.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// Only this destination (by name); every writable destination when `None`.
    pub destination: Option<String>,
    /// Only this account's objects (its own identity and those reassigned to it).
    pub account: Option<AccountId>,
    /// How long a pack stays condemned before it is deleted.
    pub grace: chrono::Duration,
    /// Packs whose live share is below this (0 to 1) are repacked; 0 repacks none.
    pub repack_below: f64,
    /// Beyond those, packs are repacked until at most this share (0 to 1) of the pack
    /// bytes is dead in referenced packs; 1 repacks no more.
    pub max_unused: f64,
    /// Report what would be done, writing nothing.
    pub dry_run: bool,
    /// Stops the run between steps.
    pub cancel: CancellationToken,
}

impl Default for PruneRequest {
    fn default() -> Self {
        Self {
            destination: None,
            account: None,
            grace: engine::DEFAULT_GRACE,
            repack_below: engine::DEFAULT_REPACK_BELOW,
            max_unused: engine::DEFAULT_MAX_UNUSED,
            dry_run: false,
            cancel: CancellationToken::new(),
        }
    }
}

/// An account prefix a collection could not handle, and why.
#[derive(Debug, Clone, Serialize)]
pub struct PruneProblem {
    /// The destination.
    pub destination: String,
    /// The account prefix.
    pub account: AccountId,
    /// Why.
    pub reason: String,
}

/// What [`Server::prune`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneRun {
    /// Per destination and account prefix.
    pub reports: Vec<(String, PruneReport)>,
    /// Prefixes left alone (no key this server opens, another collector running, damage).
    pub problems: Vec<PruneProblem>,
    /// Staging files of interrupted writes deleted (local destinations).
    pub staging_files_deleted: u64,
}

/// Staging files are swept when older than the grace, and never younger than this: a
/// running backup's files are renamed into place within seconds.
const STAGING_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(600);

impl PruneRun {
    /// Bytes deleted in all.
    pub fn deleted_bytes(&self) -> u64 {
        self.reports.iter().map(|(_, r)| r.deleted_bytes).sum()
    }
}

/// Snapshots whose account was removed.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// The removed account's id (its identity).
    pub account: AccountId,
    /// Its username, read from its account record on a destination (`None` when no
    /// destination has a readable one).
    pub username: Option<String>,
    /// How many snapshots.
    pub snapshots: u64,
    /// How many of them are locked.
    pub locked: u64,
    /// What they stored (the sum of their `bytes_stored`).
    pub bytes: u64,
    /// The oldest snapshot's time.
    pub oldest: DateTime<Utc>,
    /// The newest snapshot's time: an orphan's age counts from it.
    pub newest: DateTime<Utc>,
    /// Destinations holding them, by name.
    pub destinations: Vec<String>,
}

/// What [`Server::prune_orphans`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrphanPruneReport {
    /// Whether nothing was removed.
    pub dry_run: bool,
    /// The age (days, from the newest snapshot) past which orphans go; 0 keeps all.
    pub older_than_days: u32,
    /// Orphans whose snapshots were forgotten (or would be).
    pub removed: Vec<Orphan>,
    /// Snapshots forgotten.
    pub snapshots: u64,
    /// Account prefixes deleted from destinations (every snapshot forgotten, none locked).
    pub prefixes_deleted: u64,
}

/// An account's storage on one destination after dedup.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationUsage {
    /// The destination.
    pub destination: String,
    /// The figures, per identity holding objects (the account's own first).
    pub usage: StorageUsage,
}

/// The collection lease as the engine's guard: held, or the collection stops.
#[derive(Debug)]
struct HeldLease(Arc<LeaseGuard>);

#[async_trait::async_trait]
impl CommitGuard for HeldLease {
    async fn check(&self) -> Result<()> {
        self.0.check().await
    }
}

impl Server {
    /// The collection lease of `identity` on `repo`, renewed in the background.
    pub(super) async fn collection_lease(
        &self,
        repo: &Repository,
        identity: AccountId,
        operation: &str,
    ) -> Result<LeaseGuard> {
        Ok(repo
            .acquire_collection_lease(
                identity,
                operation,
                self.inner.lease_ttl,
                self.inner.lease_wait,
            )
            .await?
            .keep_alive())
    }

    /// A handle on `identity`'s objects with the keys the server holds (the content key
    /// only for server-key accounts): what locks, forget and collection need. The catalog's
    /// envelope is used, else one on the destination that the vault opens.
    async fn server_handle(&self, repo: &Repository, identity: AccountId) -> Result<AccountRepo> {
        let mut envelopes = Vec::new();
        if let Some(e) = self.inner.catalog.get_key_envelope(identity).await? {
            envelopes.push(e);
        }
        envelopes.extend(
            repo.key_envelopes(identity)
                .await?
                .into_iter()
                .map(|(_, e)| e),
        );
        for envelope in &envelopes {
            if let Ok(keys) = self.inner.vault.open(identity, envelope, None).await {
                // The content key, where the server holds it (not for owner-key accounts),
                // lets a repack move every live blob.
                return Ok(repo.account(identity, keys.sealer, keys.opener));
            }
        }
        Err(Error::not_found(format!(
            "a key envelope of account {identity} that this server's master key opens"
        )))
    }

    async fn writable(&self, destination: &Destination, what: &str) -> Result<Repository> {
        if destination.read_only {
            return Err(Error::setting(
                "read-only",
                format!(
                    "destination {} is read-only: {what} changes it",
                    destination.name
                ),
            ));
        }
        self.repo(destination).await
    }

    /// Locks a snapshot out of retention (`ttl` `None` or zero: until unlocked). The lock
    /// is written to the destination first, then to the catalog.
    pub async fn lock_snapshot(
        &self,
        account: &Account,
        snapshot: &str,
        ttl: Option<std::time::Duration>,
    ) -> Result<Snapshot> {
        self.set_lock(account, snapshot, Some(ttl)).await
    }

    /// Unlocks a snapshot: the catalog first, then the destination (a lock left on the
    /// destination by an interruption only keeps data longer).
    pub async fn unlock_snapshot(&self, account: &Account, snapshot: &str) -> Result<Snapshot> {
        self.set_lock(account, snapshot, None).await
    }

    async fn set_lock(
        &self,
        account: &Account,
        snapshot: &str,
        lock: Option<Option<std::time::Duration>>,
    ) -> Result<Snapshot> {
        self.check_shutdown()?;
        let mut row = self.snapshot(account, snapshot).await?;
        let destination = self.destination_by_id(row.destination).await?;
        let repo = self.writable(&destination, "a lock").await?;
        let identity = row.storage_account();
        let handle = self.server_handle(&repo, identity).await?;
        let lease = self.collection_lease(&repo, identity, "lock").await?;
        let result = async {
            // Read again under the lease: a forget may have removed it meanwhile.
            row = self
                .inner
                .catalog
                .get_snapshot(row.id)
                .await?
                .ok_or_else(|| Error::not_found(format!("snapshot {}", row.id)))?;
            match lock {
                Some(ttl) => {
                    let until = ttl
                        .filter(|t| !t.is_zero())
                        .map(|t| {
                            chrono::Duration::from_std(t)
                                .map(|d| self.now() + d)
                                .map_err(|_| Error::invalid("lock time to live", "too long"))
                        })
                        .transpose()?;
                    handle.put_lock(row.id, until).await?;
                    row.locked = true;
                    row.lock_until = until;
                    self.inner.catalog.put_snapshot(&row).await?;
                }
                None => {
                    row.locked = false;
                    row.lock_until = None;
                    self.inner.catalog.put_snapshot(&row).await?;
                    handle.delete_lock(row.id).await?;
                }
            }
            Ok(row)
        }
        .await;
        release(lease).await;
        result
    }

    /// Applies a retention policy to an account's snapshots, per destination: what the
    /// policy does not keep is forgotten (catalog row, then snapshot object). Locked
    /// snapshots and the newest are never forgotten. Packs are freed later by
    /// [`Server::prune`].
    pub async fn forget(&self, account: &Account, request: &ForgetRequest) -> Result<ForgetReport> {
        self.check_shutdown()?;
        request.policy.validate()?;
        let settings = self.settings().await?;
        let mut policy = request.policy.clone();
        if policy.on_demand_cap == Limit::Default {
            policy.on_demand_cap = account
                .max_on_demand_snapshots
                .resolve(settings.max_on_demand_snapshots);
        }
        let now = self.now();
        let mut by_destination: BTreeMap<DestinationId, Vec<Snapshot>> = BTreeMap::new();
        for s in self.snapshots(account).await? {
            by_destination.entry(s.destination).or_default().push(s);
        }
        let mut report = ForgetReport {
            account: account.id,
            dry_run: request.dry_run,
            destinations: Vec::new(),
        };
        for (id, snapshots) in by_destination {
            let destination = self.destination_by_id(id).await?;
            if request
                .destination
                .as_ref()
                .is_some_and(|d| *d != destination.name)
            {
                continue;
            }
            let decision = policy.apply(&snapshots, now);
            let mut forgotten = Vec::new();
            if !request.dry_run && !decision.forget.is_empty() {
                let doomed: Vec<&Snapshot> = decision
                    .forget
                    .iter()
                    .filter_map(|f| snapshots.iter().find(|s| s.id == f.snapshot))
                    .collect();
                forgotten = self.forget_snapshots(&destination, &doomed).await?;
            }
            report.destinations.push(ForgetOnDestination {
                destination: destination.name.clone(),
                decision,
                forgotten,
            });
        }
        Ok(report)
    }

    /// Forgets snapshots of one destination under the collection lease of each identity
    /// holding them: the catalog row first, then the object (and its lock). A snapshot
    /// locked meanwhile is kept. Returns those forgotten.
    async fn forget_snapshots(
        &self,
        destination: &Destination,
        snapshots: &[&Snapshot],
    ) -> Result<Vec<SnapshotId>> {
        let repo = self.writable(destination, "forgetting snapshots").await?;
        let mut by_identity: BTreeMap<AccountId, Vec<SnapshotId>> = BTreeMap::new();
        for s in snapshots {
            by_identity
                .entry(s.storage_account())
                .or_default()
                .push(s.id);
        }
        let mut forgotten = Vec::new();
        for (identity, ids) in by_identity {
            self.check_shutdown()?;
            let handle = self.server_handle(&repo, identity).await?;
            let lease = self.collection_lease(&repo, identity, "forget").await?;
            let result = async {
                for id in ids {
                    let Some(row) = self.inner.catalog.get_snapshot(id).await? else {
                        continue;
                    };
                    if row.is_locked_at(self.now()) {
                        continue;
                    }
                    self.inner.catalog.delete_snapshot(id).await?;
                    handle.delete_snapshot_object(id).await?;
                    forgotten.push(id);
                }
                Ok::<_, Error>(())
            }
            .await;
            release(lease).await;
            result?;
        }
        Ok(forgotten)
    }

    /// Collects garbage: on every writable destination (or the one named), for every
    /// account prefix (or the one account's), as [`crate::engine::prune`] describes.
    /// Backups run meanwhile; two collectors of one account never run at once. A prefix
    /// that cannot be collected (no key, damage) is reported and the others go on.
    pub async fn prune(&self, request: &PruneRequest) -> Result<PruneRun> {
        self.check_shutdown()?;
        let mut run = PruneRun::default();
        let mut destinations = self.inner.catalog.list_destinations().await?;
        destinations.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(name) = &request.destination {
            destinations.retain(|d| d.name == *name);
            if destinations.is_empty() {
                return Err(Error::not_found(format!("destination {name:?}")));
            }
            if destinations[0].read_only && !request.dry_run {
                return Err(Error::setting(
                    "read-only",
                    format!("destination {name} is read-only: nothing is collected there"),
                ));
            }
        }
        let identities = match request.account {
            Some(id) => {
                let mut ids = vec![id];
                for s in self.inner.catalog.list_snapshots(id).await? {
                    if !ids.contains(&s.storage_account()) {
                        ids.push(s.storage_account());
                    }
                }
                Some(ids)
            }
            None => None,
        };
        let (cancel, watcher) = self.joined(&request.cancel);
        let result = async {
            for destination in destinations {
                if destination.read_only && !request.dry_run {
                    continue;
                }
                // A destination without a repository has nothing to collect (and gets none).
                let repo = match self.repo_for_reading(&destination).await {
                    Ok(r) => r,
                    Err(Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e),
                };
                if !request.dry_run && identities.is_none() {
                    let age = request
                        .grace
                        .to_std()
                        .unwrap_or_default()
                        .max(STAGING_MIN_AGE);
                    run.staging_files_deleted += self
                        .inner
                        .resolver
                        .sweep_staging(&destination.url, age)
                        .await?;
                }
                for identity in repo.list_accounts().await? {
                    if cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    if identities
                        .as_ref()
                        .is_some_and(|ids| !ids.contains(&identity))
                    {
                        continue;
                    }
                    match self.prune_prefix(&repo, identity, request, &cancel).await {
                        Ok(report) => run.reports.push((destination.name.clone(), report)),
                        Err(Error::Cancelled) => return Err(Error::Cancelled),
                        Err(e) => run.problems.push(PruneProblem {
                            destination: destination.name.clone(),
                            account: identity,
                            reason: e.to_string(),
                        }),
                    }
                }
            }
            Ok(())
        }
        .await;
        watcher.abort();
        result?;
        Ok(run)
    }

    async fn prune_prefix(
        &self,
        repo: &Repository,
        identity: AccountId,
        request: &PruneRequest,
        cancel: &CancellationToken,
    ) -> Result<PruneReport> {
        let handle = self.server_handle(repo, identity).await?;
        let opts = PruneOptions {
            grace: request.grace,
            repack_below: request.repack_below,
            max_unused: request.max_unused,
            dry_run: request.dry_run,
            now: self.now(),
            cancel: Some(cancel.clone()),
            guard: None,
        };
        if request.dry_run {
            return engine::prune(&handle, &opts).await;
        }
        let lease = Arc::new(self.collection_lease(repo, identity, "prune").await?);
        let opts = PruneOptions {
            guard: Some(Arc::new(HeldLease(lease.clone()))),
            ..opts
        };
        let result = engine::prune(&handle, &opts).await;
        drop(opts);
        if let Ok(lease) = Arc::try_unwrap(lease) {
            release(lease).await;
        }
        result
    }

    /// An account's storage after dedup, per destination and identity: the bytes its packs
    /// take and, per snapshot, the bytes it alone holds (what forgetting it would free).
    pub async fn storage_usage(&self, account: &Account) -> Result<Vec<DestinationUsage>> {
        let mut keys: Vec<(DestinationId, AccountId)> = Vec::new();
        for s in self.snapshots(account).await? {
            let key = (s.destination, s.storage_account());
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut out = Vec::new();
        for (destination, identity) in keys {
            self.check_shutdown()?;
            let destination = self.destination_by_id(destination).await?;
            let repo = self.repo_for_reading(&destination).await?;
            let handle = self.server_handle(&repo, identity).await?;
            out.push(DestinationUsage {
                destination: destination.name.clone(),
                usage: engine::storage_usage(&handle).await?,
            });
        }
        Ok(out)
    }

    /// Snapshots whose account was removed, per removed account: count, size, age and the
    /// username its account record on a destination names.
    pub async fn orphans(&self) -> Result<Vec<Orphan>> {
        let now = self.now();
        let mut grouped: BTreeMap<AccountId, Vec<Snapshot>> = BTreeMap::new();
        for s in self.inner.catalog.orphan_snapshots().await? {
            grouped.entry(s.account).or_default().push(s);
        }
        let mut out = Vec::new();
        for (account, snapshots) in grouped {
            let mut destinations: Vec<String> = Vec::new();
            let mut username = None;
            for s in &snapshots {
                let Ok(d) = self.destination_by_id(s.destination).await else {
                    continue;
                };
                if !destinations.contains(&d.name) {
                    if username.is_none() {
                        username = self.orphan_username(&d, account).await;
                    }
                    destinations.push(d.name.clone());
                }
            }
            out.push(Orphan {
                account,
                username,
                snapshots: snapshots.len() as u64,
                locked: snapshots.iter().filter(|s| s.is_locked_at(now)).count() as u64,
                bytes: snapshots.iter().map(|s| s.stats.bytes_stored).sum(),
                oldest: snapshots.iter().map(|s| s.created).min().unwrap_or(now),
                newest: snapshots.iter().map(|s| s.created).max().unwrap_or(now),
                destinations,
            });
        }
        Ok(out)
    }

    async fn orphan_username(
        &self,
        destination: &Destination,
        account: AccountId,
    ) -> Option<String> {
        let repo = self.repo_for_reading(destination).await.ok()?;
        let handle = self.server_handle(&repo, account).await.ok()?;
        let record = self.read_account_record(&handle).await.ok()?;
        Some(record.username.to_string())
    }

    /// Makes the snapshots of a removed account (`from`) the history of `to`, a live
    /// account of the same username: they keep their objects and keys (a snapshot of an
    /// owner-key account still opens with the original owner key). Returns how many.
    pub async fn reassign_orphans(&self, to: &Account, from: AccountId) -> Result<u64> {
        self.check_shutdown()?;
        if from == to.id {
            return Err(Error::invalid(
                "orphan",
                "an account cannot take its own snapshots",
            ));
        }
        if self.inner.catalog.get_account(from).await?.is_some() {
            return Err(Error::refused(format!(
                "account {from} is not removed: only orphans are reassigned"
            )));
        }
        let rows: Vec<Snapshot> = (self.inner.catalog.orphan_snapshots().await?)
            .into_iter()
            .filter(|s| s.account == from)
            .collect();
        let Some(first) = rows.first() else {
            return Err(Error::not_found(format!(
                "orphan snapshots of account {from}"
            )));
        };
        let destination = self.destination_by_id(first.destination).await?;
        match self.orphan_username(&destination, from).await {
            Some(name) if name == to.username.as_str() => {}
            Some(name) => {
                return Err(Error::refused(format!(
                    "the orphan snapshots of {from} belong to {name:?}, not {:?}",
                    to.username.as_str()
                )));
            }
            None => {
                return Err(Error::refused(format!(
                    "the account record of {from} could not be read on {}: its username is unknown",
                    destination.name
                )));
            }
        }
        let mut destinations: Vec<DestinationId> = rows.iter().map(|s| s.destination).collect();
        destinations.sort();
        destinations.dedup();
        let mut leases = Vec::new();
        let result = async {
            for d in &destinations {
                let d = self.destination_by_id(*d).await?;
                if d.read_only {
                    continue;
                }
                let repo = self.repo(&d).await?;
                leases.push(self.collection_lease(&repo, from, "reassign").await?);
            }
            let mut moved = 0;
            for mut row in rows {
                // An orphan pruned meanwhile stays gone.
                if self.inner.catalog.get_snapshot(row.id).await?.is_none() {
                    continue;
                }
                row.identity = Some(row.storage_account());
                row.account = to.id;
                self.inner.catalog.put_snapshot(&row).await?;
                moved += 1;
            }
            Ok(moved)
        }
        .await;
        for lease in leases {
            release(lease).await;
        }
        result
    }

    /// Forgets the snapshots of accounts removed longer ago than `older_than_days` (the
    /// newest snapshot's age; `None` takes the server's orphan TTL, 0 keeps every orphan).
    /// Locked snapshots stay. When an orphan has no snapshot left, its objects and key
    /// envelopes are deleted from every writable destination and its key is shredded.
    pub async fn prune_orphans(
        &self,
        older_than_days: Option<u32>,
        dry_run: bool,
    ) -> Result<OrphanPruneReport> {
        self.check_shutdown()?;
        let days = match older_than_days {
            Some(d) => d,
            None => self.settings().await?.orphan_ttl_days,
        };
        let mut report = OrphanPruneReport {
            dry_run,
            older_than_days: days,
            ..OrphanPruneReport::default()
        };
        if days == 0 {
            return Ok(report);
        }
        let now = self.now();
        let cutoff = now - chrono::Duration::days(i64::from(days));
        for orphan in self.orphans().await? {
            if orphan.newest >= cutoff {
                continue;
            }
            report.removed.push(orphan.clone());
            if dry_run {
                report.snapshots += orphan.snapshots - orphan.locked;
                continue;
            }
            let (forgotten, deleted) = self.remove_orphan(orphan.account).await?;
            report.snapshots += forgotten;
            report.prefixes_deleted += deleted;
        }
        Ok(report)
    }

    async fn remove_orphan(&self, id: AccountId) -> Result<(u64, u64)> {
        let rows: Vec<Snapshot> = (self.inner.catalog.orphan_snapshots().await?)
            .into_iter()
            .filter(|s| s.account == id)
            .collect();
        let mut by_destination: BTreeMap<DestinationId, Vec<Snapshot>> = BTreeMap::new();
        for s in rows {
            by_destination.entry(s.destination).or_default().push(s);
        }
        let mut forgotten = 0;
        for (d, snapshots) in &by_destination {
            let d = self.destination_by_id(*d).await?;
            if d.read_only {
                continue;
            }
            let refs: Vec<&Snapshot> = snapshots.iter().collect();
            forgotten += self.forget_snapshots(&d, &refs).await?.len() as u64;
        }
        // Anything left (locked, on a read-only destination, or reassigned to a live
        // account by an interrupted reassign) keeps the identity alive.
        let mut left = (self.inner.catalog.orphan_snapshots().await?)
            .iter()
            .any(|s| s.account == id);
        for account in self.inner.catalog.list_accounts().await? {
            if left {
                break;
            }
            left = (self.inner.catalog.list_snapshots(account.id).await?)
                .iter()
                .any(|s| s.storage_account() == id);
        }
        let mut deleted = 0;
        if !left {
            for d in self.inner.catalog.list_destinations().await? {
                if d.read_only {
                    continue;
                }
                let repo = self.repo(&d).await?;
                let lease = self.collection_lease(&repo, id, "orphan removal").await?;
                let result = repo.delete_account_data(id).await;
                release(lease).await;
                if result? > 0 {
                    deleted += 1;
                }
            }
            self.inner.catalog.delete_key_envelope(id).await?;
            self.inner.vault.shred(id).await?;
        }
        Ok((forgotten, deleted))
    }
}
