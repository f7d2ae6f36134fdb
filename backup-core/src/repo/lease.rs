//! Per-account leases: one operation on an account at a time, across processes and
//! machines, held by a conditional create on the destination.
//!
//! The lease is `ROOT/leases/<account uuid>`, a small JSON document naming its holder (a
//! random token, the operation, the host and process) and its expiry. It is outside the
//! account's prefix, so it never makes an account appear to a disaster recovery listing and
//! a key reset's deletion of the account's data leaves it alone.
//!
//! - Taking it is a `PutMode::Create`: of two takers exactly one wins on every store
//!   (local, memory, S3, SFTP).
//! - An expired lease (its holder died) is taken over by deleting it and creating it again,
//!   then reading it back: on stores without compare-and-swap two takers of the same
//!   expired lease may both delete, but only one create wins, and the loser sees another
//!   token when it reads back.
//! - The holder renews it in the background every third of its time to live
//!   ([`Lease::keep_alive`]); a holder that cannot renew, or finds another token, has lost
//!   it, and [`LeaseGuard::check`] fails, so the operation stops before it commits.
//!
//! The document is not authenticated: it coordinates honest processes; it guards no
//! secret. Clocks of the machines sharing a destination must agree to well within the time
//! to live.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::Repository;
use crate::error::{Error, Result};
use crate::model::AccountId;

/// How often a waiting taker looks again.
const POLL: Duration = Duration::from_millis(250);

/// The stored lease document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseDoc {
    token: String,
    operation: String,
    host: String,
    pid: u32,
    expires: DateTime<Utc>,
}

impl LeaseDoc {
    fn holder(&self) -> String {
        format!(
            "{} (host {}, process {})",
            self.operation, self.host, self.pid
        )
    }
}

/// A held lease on one account of one repository. Release it with [`Lease::release`];
/// dropped without release, it expires after its time to live.
#[derive(Debug)]
pub struct Lease {
    repo: Repository,
    account: AccountId,
    path: Path,
    doc: LeaseDoc,
    ttl: Duration,
    /// Until when this holder knows the lease is its own: the expiry it last wrote. Past
    /// it, another process may have taken the lease as expired (a collector deletes packs
    /// only while no backup holds the account's lease), so the lease is lost even if
    /// nobody took it over.
    held_until: std::sync::Mutex<DateTime<Utc>>,
}

/// A lease renewed in the background; see [`Lease::keep_alive`].
#[derive(Debug)]
pub struct LeaseGuard {
    lease: Arc<Lease>,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

fn lease_path(repo: &Repository, account: AccountId) -> Path {
    repo.root().clone().join("leases").join(account.to_string())
}

/// The collection lease: `ROOT/leases/collect/<account uuid>`, apart from the operations'
/// lease, so that backups never wait for a collection.
fn collection_lease_path(repo: &Repository, account: AccountId) -> Path {
    repo.root()
        .clone()
        .join("leases")
        .join("collect")
        .join(account.to_string())
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

impl Repository {
    /// Takes the account's lease for `operation`, waiting up to `wait` for a holder to
    /// release it (or for its lease to expire). Fails with [`Error::LeaseHeld`] naming the
    /// holder when the wait is over.
    pub async fn acquire_lease(
        &self,
        account: AccountId,
        operation: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Lease> {
        self.acquire_at(lease_path(self, account), account, operation, ttl, wait)
            .await
    }

    /// Takes the account's collection lease (forget, prune, repack): one collector per
    /// account, on one machine or many. It is apart from [`Repository::acquire_lease`]:
    /// backups run while an account is collected.
    pub async fn acquire_collection_lease(
        &self,
        account: AccountId,
        operation: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Lease> {
        self.acquire_at(
            collection_lease_path(self, account),
            account,
            operation,
            ttl,
            wait,
        )
        .await
    }

    /// Who holds the account's operation lease now (a backup, a key reset), if anyone: a
    /// lease past its expiry, or one that does not parse, counts as nobody's.
    pub async fn lease_holder(&self, account: AccountId) -> Result<Option<String>> {
        Ok(match self.read_lease(&lease_path(self, account)).await? {
            Some(Some(doc)) if doc.expires > Utc::now() => Some(doc.holder()),
            _ => None,
        })
    }

    async fn acquire_at(
        &self,
        path: Path,
        account: AccountId,
        operation: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Lease> {
        let deadline = tokio::time::Instant::now() + wait;
        let token = uuid::Uuid::new_v4().to_string();
        loop {
            let doc = LeaseDoc {
                token: token.clone(),
                operation: operation.to_owned(),
                host: host_name(),
                pid: std::process::id(),
                expires: expiry(ttl),
            };
            let body = encode(&doc)?;
            let create = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self.store().put_opts(&path, body, create).await {
                Ok(_) => {
                    return Ok(Lease {
                        repo: self.clone(),
                        account,
                        path,
                        held_until: std::sync::Mutex::new(doc.expires),
                        doc,
                        ttl,
                    });
                }
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let current = self.read_lease(&path).await?;
            match &current {
                // Gone meanwhile: try again at once.
                None => continue,
                // A retried create whose first attempt landed: ours.
                Some(Some(held)) if held.token == token => {
                    return Ok(Lease {
                        repo: self.clone(),
                        account,
                        path,
                        held_until: std::sync::Mutex::new(held.expires),
                        doc: held.clone(),
                        ttl,
                    });
                }
                Some(Some(held)) if held.expires > Utc::now() => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::LeaseHeld {
                            account: account.to_string(),
                            holder: held.holder(),
                            expires: held.expires.to_rfc3339(),
                        });
                    }
                    tokio::time::sleep(POLL).await;
                }
                // Expired, or unreadable (a torn write): take it over.
                Some(_) => match self.store().delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                },
            }
        }
    }

    /// `None`: no lease; `Some(None)`: a lease that does not parse.
    async fn read_lease(&self, path: &Path) -> Result<Option<Option<LeaseDoc>>> {
        match self.store().get(path).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                Ok(Some(serde_json::from_slice(&bytes).ok()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn expiry(ttl: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1))
}

fn encode(doc: &LeaseDoc) -> Result<PutPayload> {
    let bytes = serde_json::to_vec(doc).map_err(|e| Error::Internal {
        reason: format!("encoding a lease: {e}"),
    })?;
    Ok(PutPayload::from(bytes))
}

impl Lease {
    /// The account.
    pub fn account(&self) -> AccountId {
        self.account
    }

    fn held_until(&self) -> DateTime<Utc> {
        *self
            .held_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lapsed(&self) -> Result<()> {
        if self.held_until() <= Utc::now() {
            return Err(Error::LeaseHeld {
                account: self.account.to_string(),
                holder: "nobody (this operation's lease expired before it was renewed)".into(),
                expires: self.held_until().to_rfc3339(),
            });
        }
        Ok(())
    }

    /// Fails with [`Error::LeaseHeld`] unless the stored lease is still this one and has
    /// not lapsed (expired before it was renewed, when another process could have taken
    /// it for free).
    pub async fn check(&self) -> Result<()> {
        self.lapsed()?;
        match self.repo.read_lease(&self.path).await? {
            Some(Some(doc)) if doc.token == self.doc.token => Ok(()),
            Some(Some(doc)) => Err(Error::LeaseHeld {
                account: self.account.to_string(),
                holder: doc.holder(),
                expires: doc.expires.to_rfc3339(),
            }),
            _ => Err(Error::LeaseHeld {
                account: self.account.to_string(),
                holder: "nobody (this operation's lease was lost)".into(),
                expires: Utc::now().to_rfc3339(),
            }),
        }
    }

    /// Extends the lease by its time to live; fails if it is no longer this one.
    pub async fn renew(&self) -> Result<()> {
        self.check().await?;
        let mut doc = self.doc.clone();
        doc.expires = expiry(self.ttl);
        self.repo.store().put(&self.path, encode(&doc)?).await?;
        // The new expiry counts only once it is stored; a renewal that lands after the
        // lease lapsed does not make it ours again (the check above refused it).
        *self
            .held_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = doc.expires;
        Ok(())
    }

    /// Deletes the lease if it is still this one (a lease another holder took over is
    /// left alone); a failure to read it is an error, so the caller can log it.
    pub async fn release(&self) -> Result<()> {
        let ours = matches!(
            self.repo.read_lease(&self.path).await?,
            Some(Some(doc)) if doc.token == self.doc.token
        );
        if ours {
            match self.repo.store().delete(&self.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Renews the lease every third of its time to live until the guard is released or
    /// dropped.
    pub fn keep_alive(self) -> LeaseGuard {
        let lease = Arc::new(self);
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let lease = lease.clone();
            let lost = lost.clone();
            tokio::spawn(async move {
                let every = (lease.ttl / 3).max(Duration::from_millis(100));
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = lease.renew().await {
                        // A transient failure is retried at the next tick; the lease
                        // outlives two missed ticks.
                        if !e.is_transient() || matches!(e, Error::LeaseHeld { .. }) {
                            tracing::warn!(account = %lease.account, error = %e, "lease lost");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };
        LeaseGuard {
            lease,
            lost,
            renewer,
        }
    }
}

impl LeaseGuard {
    /// Fails with [`Error::LeaseHeld`] if the lease was lost.
    pub async fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::LeaseHeld {
                account: self.lease.account.to_string(),
                holder: "another operation (this one's lease was lost)".into(),
                expires: Utc::now().to_rfc3339(),
            });
        }
        self.lease.check().await
    }

    /// Stops renewing and deletes the lease.
    pub async fn release(self) -> Result<()> {
        self.renewer.abort();
        self.lease.release().await
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    async fn repo() -> Repository {
        Repository::init(
            Arc::new(InMemory::new()),
            Path::from("r"),
            Default::default(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_expired_leases_are_taken_over() {
        let repo = repo().await;
        let a = AccountId::new();
        let ttl = Duration::from_secs(60);
        let first = repo
            .acquire_lease(a, "backup", ttl, Duration::ZERO)
            .await
            .unwrap();
        let busy = repo
            .acquire_lease(a, "reset", ttl, Duration::from_millis(300))
            .await;
        match busy {
            Err(Error::LeaseHeld { holder, .. }) => assert!(holder.starts_with("backup")),
            other => panic!("{other:?}"),
        }
        // Another account is not affected.
        let other = repo
            .acquire_lease(AccountId::new(), "x", ttl, Duration::ZERO)
            .await;
        assert!(other.is_ok());
        first.release().await.unwrap();
        let second = repo
            .acquire_lease(a, "reset", ttl, Duration::ZERO)
            .await
            .unwrap();
        second.check().await.unwrap();
        // A short lease that is not renewed expires and is taken over; its holder sees it.
        drop(second);
        let short = repo
            .acquire_lease(
                AccountId::new(),
                "x",
                Duration::from_millis(10),
                Duration::ZERO,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let taker = repo
            .acquire_lease(short.account(), "y", ttl, Duration::ZERO)
            .await
            .unwrap();
        assert!(matches!(short.check().await, Err(Error::LeaseHeld { .. })));
        assert!(short.renew().await.is_err());
        taker.check().await.unwrap();
    }

    #[tokio::test]
    async fn a_lapsed_lease_is_lost_even_if_nobody_took_it() {
        let repo = repo().await;
        let a = AccountId::new();
        let short = repo
            .acquire_lease(a, "backup", Duration::from_millis(20), Duration::ZERO)
            .await
            .unwrap();
        short.check().await.unwrap();
        assert_eq!(
            repo.lease_holder(a)
                .await
                .unwrap()
                .as_deref()
                .map(|h| h.starts_with("backup")),
            Some(true)
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Past its expiry, a collector sees nobody holding the account ...
        assert_eq!(repo.lease_holder(a).await.unwrap(), None);
        // ... so the holder has lost it: no check passes and no renewal revives it.
        assert!(matches!(short.check().await, Err(Error::LeaseHeld { .. })));
        assert!(short.renew().await.is_err());
        assert!(matches!(short.check().await, Err(Error::LeaseHeld { .. })));
    }

    #[tokio::test]
    async fn the_collection_lease_is_apart_from_the_operation_lease() {
        let repo = repo().await;
        let a = AccountId::new();
        let ttl = Duration::from_secs(60);
        let backup = repo
            .acquire_lease(a, "backup", ttl, Duration::ZERO)
            .await
            .unwrap();
        let collect = repo
            .acquire_collection_lease(a, "prune", ttl, Duration::ZERO)
            .await
            .unwrap();
        let second = repo
            .acquire_collection_lease(a, "prune", ttl, Duration::from_millis(300))
            .await;
        assert!(matches!(second, Err(Error::LeaseHeld { .. })));
        // The collector does not count as the account's holder; the backup does.
        assert!(repo.lease_holder(a).await.unwrap().is_some());
        backup.release().await.unwrap();
        assert_eq!(repo.lease_holder(a).await.unwrap(), None);
        collect.check().await.unwrap();
        // A listing of accounts never shows leases.
        assert!(repo.list_accounts().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn racing_takers_get_exactly_one_lease() {
        let repo = repo().await;
        let a = AccountId::new();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let repo = repo.clone();
                tokio::spawn(async move {
                    repo.acquire_lease(a, &format!("t{i}"), Duration::from_secs(60), Duration::ZERO)
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            if t.await.unwrap().is_ok() {
                won += 1;
            }
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn a_guard_renews_and_waiters_get_the_lease_after_release() {
        let repo = repo().await;
        let a = AccountId::new();
        let ttl = Duration::from_millis(300);
        let guard = repo
            .acquire_lease(a, "backup", ttl, Duration::ZERO)
            .await
            .unwrap()
            .keep_alive();
        // Held past several times its time to live.
        tokio::time::sleep(Duration::from_millis(900)).await;
        guard.check().await.unwrap();
        let waiter = {
            let repo = repo.clone();
            tokio::spawn(async move {
                repo.acquire_lease(a, "reset", ttl, Duration::from_secs(10))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        guard.release().await.unwrap();
        waiter.await.unwrap().unwrap();
    }
}
