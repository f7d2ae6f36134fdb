//! Restore plans and download requests: mix-and-match items, each from its own snapshot.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::account::Account;
use super::ids::{AccountId, DownloadId, SnapshotId};
use super::item::ItemKind;
use super::selection::PathSelection;
use super::snapshot::Snapshot;
use crate::error::{Error, Result};

/// The owner's private key as exported text. Never serialized, redacted in `Debug`, zeroized
/// when dropped.
pub struct OwnerKey(Zeroizing<String>);

impl OwnerKey {
    /// Wraps the exported text (surrounding whitespace is ignored).
    pub fn new(text: impl Into<String>) -> Self {
        let mut text: String = text.into();
        let trimmed = text.trim().to_owned();
        zeroize::Zeroize::zeroize(&mut text);
        Self(Zeroizing::new(trimmed))
    }

    /// The exported text; handle with care.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerKey(<redacted>)")
    }
}

/// One item to restore, from one snapshot, with an optional file selection for trees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSelection {
    /// Which item.
    pub kind: ItemKind,
    /// The snapshot it comes from.
    pub snapshot: SnapshotId,
    /// Files to take (trees; for documents the patterns match document names).
    pub paths: PathSelection,
}

/// Restore options of the seeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RestoreOptions {
    /// Terminate the account before restoring (refused for resellers).
    pub terminate_first: bool,
    /// Merge with live data instead of replacing the item.
    pub merge: bool,
    /// Suspend the account after restoring.
    pub suspend_after: bool,
    /// Who owns the restored files.
    #[serde(default)]
    pub ownership: Ownership,
}

/// Who owns restored files and directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// The owners recorded in the snapshot (needs root for any owner but the process user).
    Recorded,
    /// The owner recorded for the item's root (the home directory's user and group) becomes
    /// `uid` and `gid`; every other recorded owner is mapped by name (a user or group this
    /// server has under the recorded name gets this server's id) or else kept. For restoring
    /// into a re-created account or onto another server.
    Account {
        /// The target account's user id.
        uid: u32,
        /// The target account's group id.
        gid: u32,
    },
    /// Everything owned by the process user; setuid and setgid bits are dropped.
    None,
}

impl Default for Ownership {
    /// [`Ownership::Recorded`] when running as root, else [`Ownership::None`].
    fn default() -> Self {
        if rustix::process::geteuid().is_root() {
            Ownership::Recorded
        } else {
            Ownership::None
        }
    }
}

impl std::str::FromStr for Ownership {
    type Err = Error;

    /// `recorded`, `none` or `account:UID:GID`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "recorded" => Ok(Ownership::Recorded),
            "none" => Ok(Ownership::None),
            _ => {
                let bad = || {
                    Error::invalid(
                        "ownership",
                        format!("{s:?}: expected recorded, none or account:UID:GID"),
                    )
                };
                let rest = s.strip_prefix("account:").ok_or_else(bad)?;
                let (uid, gid) = rest.split_once(':').ok_or_else(bad)?;
                Ok(Ownership::Account {
                    uid: uid.parse().map_err(|_| bad())?,
                    gid: gid.parse().map_err(|_| bad())?,
                })
            }
        }
    }
}

/// A restore: one selection per item kind, each from its own snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestorePlan {
    /// The account restored.
    pub account: AccountId,
    /// At most one selection per item kind.
    pub items: Vec<ItemSelection>,
    /// Options.
    pub options: RestoreOptions,
    /// Restore conditions the operator accepted.
    pub accepted_conditions: Vec<String>,
    /// The owner's private key, for owner-held-key accounts.
    #[serde(skip)]
    pub owner_key: Option<OwnerKey>,
    /// Stops the restore before the next item when cancelled.
    #[serde(skip)]
    pub cancel: Option<tokio_util::sync::CancellationToken>,
}

impl RestorePlan {
    /// An empty plan for `account`.
    pub fn new(account: AccountId) -> Self {
        Self {
            account,
            items: Vec::new(),
            options: RestoreOptions::default(),
            accepted_conditions: Vec::new(),
            owner_key: None,
            cancel: None,
        }
    }

    /// Adds `kind` from `snapshot`, everything selected.
    pub fn item(self, kind: ItemKind, snapshot: SnapshotId) -> Self {
        self.item_paths(kind, snapshot, PathSelection::all())
    }

    /// Adds `kind` from `snapshot` with a path selection.
    pub fn item_paths(
        mut self,
        kind: ItemKind,
        snapshot: SnapshotId,
        paths: PathSelection,
    ) -> Self {
        self.items.push(ItemSelection {
            kind,
            snapshot,
            paths,
        });
        self
    }

    /// Every item of `snapshot`.
    pub fn whole_snapshot(mut self, snapshot: &Snapshot) -> Self {
        for i in &snapshot.items {
            self = self.item(i.kind, snapshot.id);
        }
        self
    }

    /// Sets the options.
    pub fn with_options(mut self, options: RestoreOptions) -> Self {
        self.options = options;
        self
    }

    /// Gives the owner's key.
    pub fn with_owner_key(mut self, key: OwnerKey) -> Self {
        self.owner_key = Some(key);
        self
    }

    /// Accepts a restore condition.
    pub fn accept(mut self, condition: impl Into<String>) -> Self {
        self.accepted_conditions.push(condition.into());
        self
    }

    /// The distinct snapshots the plan reads, in plan order.
    pub fn snapshot_ids(&self) -> Vec<SnapshotId> {
        let mut ids = Vec::new();
        for sel in &self.items {
            if !ids.contains(&sel.snapshot) {
                ids.push(sel.snapshot);
            }
        }
        ids
    }

    /// The account-level rules: the plan is for `account`, terminate-first is not used on a
    /// reseller, every required condition is accepted.
    pub fn check_rules(&self, account: &Account, required_conditions: &[String]) -> Result<()> {
        if account.id != self.account {
            return Err(Error::refused("the plan names another account"));
        }
        if self.options.terminate_first && account.reseller {
            return Err(Error::refused(
                "terminate before restore is not allowed for reseller accounts",
            ));
        }
        for c in required_conditions {
            if !self.accepted_conditions.iter().any(|a| a == c) {
                return Err(Error::refused(format!(
                    "restore condition not accepted: {c}"
                )));
            }
        }
        Ok(())
    }

    /// The snapshot-level rules, given the snapshots the plan names: at least one item, no
    /// item twice, every snapshot known, of this account, and holding the item.
    pub fn check_snapshots(&self, snapshots: &[Snapshot]) -> Result<()> {
        if self.items.is_empty() {
            return Err(Error::invalid("restore plan", "no item selected"));
        }
        let mut seen = BTreeSet::new();
        for sel in &self.items {
            if !seen.insert(sel.kind) {
                return Err(Error::invalid(
                    "restore plan",
                    format!("item {} selected twice", sel.kind),
                ));
            }
            let snap = snapshots
                .iter()
                .find(|s| s.id == sel.snapshot)
                .ok_or_else(|| Error::not_found(format!("snapshot {}", sel.snapshot)))?;
            // A reassigned snapshot belongs to its account and is read as its first
            // identity, whose prefix and keys hold it.
            if snap.account != self.account && snap.storage_account() != self.account {
                return Err(Error::refused(format!(
                    "snapshot {} belongs to another account",
                    snap.id
                )));
            }
            if !snap.has_item(sel.kind) {
                return Err(Error::invalid(
                    "restore plan",
                    format!("snapshot {} has no {} item", snap.id, sel.kind),
                ));
            }
        }
        Ok(())
    }
}

/// A plan that passed `Server::check_plan` (in `backup_core::service`): the account and
/// every snapshot it reads.
#[derive(Debug, Clone)]
pub struct CheckedPlan {
    /// The account restored.
    pub account: Account,
    /// Snapshots the plan reads, each once.
    pub snapshots: Vec<Snapshot>,
}

/// Archive format of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloadFormat {
    /// An uncompressed tar stream.
    #[default]
    Tar,
}

/// State of a download request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DownloadStatus {
    /// Waiting in the queue.
    #[default]
    Pending,
    /// Being produced.
    Running,
    /// Ready to fetch.
    Ready,
    /// Failed.
    Failed,
}

/// A download: like a restore plan, producing an archive instead of writing the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRequest {
    /// Identity.
    pub id: DownloadId,
    /// Whose.
    pub account: AccountId,
    /// Items, each from its snapshot.
    pub items: Vec<ItemSelection>,
    /// Archive format.
    pub format: DownloadFormat,
    /// State.
    pub status: DownloadStatus,
    /// When it was asked for.
    pub created: DateTime<Utc>,
}

impl DownloadRequest {
    /// A pending tar download of `items`.
    pub fn new(account: AccountId, items: Vec<ItemSelection>) -> Result<Self> {
        if items.is_empty() {
            return Err(Error::invalid("download", "no item selected"));
        }
        Ok(Self {
            id: DownloadId::new(),
            account,
            items,
            format: DownloadFormat::Tar,
            status: DownloadStatus::Pending,
            created: Utc::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DestinationId, SnapshotItem, SnapshotKind, SnapshotStatus};

    fn snapshot(account: AccountId, kinds: &[ItemKind]) -> Snapshot {
        Snapshot {
            id: SnapshotId::new(),
            account,
            job: None,
            destination: DestinationId::new(),
            created: Utc::now(),
            kind: SnapshotKind::OnDemand,
            status: SnapshotStatus::Complete,
            items: kinds
                .iter()
                .map(|&kind| SnapshotItem {
                    kind,
                    stats: Default::default(),
                })
                .collect(),
            encrypted: false,
            locked: false,
            lock_until: None,
            identity: None,
            task: None,
            stats: Default::default(),
        }
    }

    fn validate(plan: &RestorePlan, account: &Account, snaps: &[Snapshot]) -> Result<usize> {
        plan.check_rules(account, &["backup is older".to_owned()])?;
        plan.check_snapshots(snaps)?;
        Ok(plan.snapshot_ids().len())
    }

    #[test]
    fn plans_are_checked() {
        let mut account = Account::new("carol").unwrap();
        let s1 = snapshot(account.id, &[ItemKind::HomeDir, ItemKind::Databases]);
        let s2 = snapshot(account.id, &[ItemKind::HomeDir]);
        let other = snapshot(AccountId::new(), &[ItemKind::HomeDir]);
        let snaps = vec![s1.clone(), s2.clone(), other.clone()];
        let ok = RestorePlan::new(account.id)
            .item(ItemKind::HomeDir, s2.id)
            .item(ItemKind::Databases, s1.id)
            .accept("backup is older");
        assert_eq!(validate(&ok, &account, &snaps).unwrap(), 2);

        let no_condition = RestorePlan::new(account.id).item(ItemKind::HomeDir, s2.id);
        assert!(matches!(
            validate(&no_condition, &account, &snaps),
            Err(Error::Refused { .. })
        ));
        let foreign = RestorePlan::new(account.id)
            .item(ItemKind::HomeDir, other.id)
            .accept("backup is older");
        assert!(matches!(
            validate(&foreign, &account, &snaps),
            Err(Error::Refused { .. })
        ));
        let missing_item = RestorePlan::new(account.id)
            .item(ItemKind::Databases, s2.id)
            .accept("backup is older");
        assert!(validate(&missing_item, &account, &snaps).is_err());
        let twice = RestorePlan::new(account.id)
            .item(ItemKind::HomeDir, s1.id)
            .item(ItemKind::HomeDir, s2.id)
            .accept("backup is older");
        assert!(validate(&twice, &account, &snaps).is_err());

        account.reseller = true;
        let terminate = RestorePlan::new(account.id)
            .item(ItemKind::HomeDir, s1.id)
            .accept("backup is older")
            .with_options(RestoreOptions {
                terminate_first: true,
                ..Default::default()
            });
        assert!(matches!(
            validate(&terminate, &account, &snaps),
            Err(Error::Refused { .. })
        ));
    }

    #[test]
    fn owner_key_is_redacted() {
        let k = OwnerKey::new("  secret-text \n");
        assert_eq!(k.expose(), "secret-text");
        assert!(!format!("{k:?}").contains("secret"));
    }
}
