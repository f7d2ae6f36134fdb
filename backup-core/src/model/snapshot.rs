//! Snapshots as the catalog lists them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{AccountId, DestinationId, JobId, SnapshotId, TaskId};
use super::item::ItemKind;
use crate::error::{Error, Result};

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotKind {
    /// By a job's schedule.
    #[default]
    Scheduled,
    /// Asked for by the account or an admin.
    OnDemand,
    /// Taken automatically before a restore overwrote the account.
    Safety,
    /// Made while cloning the account to another server.
    Clone,
}

impl SnapshotKind {
    /// Stable one-byte code used in the repository format.
    pub fn code(self) -> u8 {
        match self {
            SnapshotKind::Scheduled => 1,
            SnapshotKind::OnDemand => 2,
            SnapshotKind::Safety => 3,
            SnapshotKind::Clone => 4,
        }
    }

    /// Inverse of [`SnapshotKind::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Scheduled, Self::OnDemand, Self::Safety, Self::Clone]
            .into_iter()
            .find(|k| k.code() == code)
    }

    /// Short name (`scheduled`, `on_demand`, `safety`, `clone`).
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Scheduled => "scheduled",
            SnapshotKind::OnDemand => "on_demand",
            SnapshotKind::Safety => "safety",
            SnapshotKind::Clone => "clone",
        }
    }
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SnapshotKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.replace('-', "_");
        [Self::Scheduled, Self::OnDemand, Self::Safety, Self::Clone]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid("snapshot kind", format!("{s:?}")))
    }
}

/// Whether a backup stored everything it was asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotStatus {
    /// Every entry of the selected items was stored.
    #[default]
    Complete,
    /// Some entries could not be read and are named in the backup's report.
    Partial,
}

impl SnapshotStatus {
    /// Stable one-byte code used in the repository format.
    pub fn code(self) -> u8 {
        match self {
            SnapshotStatus::Complete => 1,
            SnapshotStatus::Partial => 2,
        }
    }

    /// Inverse of [`SnapshotStatus::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Complete, Self::Partial]
            .into_iter()
            .find(|s| s.code() == code)
    }

    /// Short name (`complete`, `partial`).
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotStatus::Complete => "complete",
            SnapshotStatus::Partial => "partial",
        }
    }
}

impl fmt::Display for SnapshotStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SnapshotStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [Self::Complete, Self::Partial]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid("snapshot status", format!("{s:?}")))
    }
}

/// Counts for one item of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ItemStats {
    /// Regular files (documents count as files).
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

impl ItemStats {
    /// Adds another item's counts.
    pub fn add(&mut self, other: &ItemStats) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.symlinks += other.symlinks;
        self.bytes += other.bytes;
    }
}

/// One item of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotItem {
    /// Which item.
    pub kind: ItemKind,
    /// Its counts.
    pub stats: ItemStats,
}

/// What a backup run stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackupStats {
    /// Bytes of file content read from the source.
    pub bytes_read: u64,
    /// Plaintext bytes of chunks that were new (not deduplicated).
    pub bytes_new: u64,
    /// Plaintext bytes that were already in the repository.
    pub bytes_deduplicated: u64,
    /// Bytes written to storage for packs and index, after compression and sealing.
    pub bytes_stored: u64,
    /// New chunks.
    pub chunks_new: u64,
    /// Chunks found in the repository.
    pub chunks_deduplicated: u64,
    /// Pack objects written.
    pub packs_written: u64,
    /// Files taken from the stat cache without reading them.
    pub files_unchanged: u64,
    /// Entries that could not be read and were left out.
    pub files_skipped: u64,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
}

/// A snapshot of one account on one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Identity (UUIDv7: sorts by time).
    pub id: SnapshotId,
    /// Whose.
    pub account: AccountId,
    /// The job that made it, if any.
    pub job: Option<JobId>,
    /// Where it is stored.
    pub destination: DestinationId,
    /// When the backup started.
    pub created: DateTime<Utc>,
    /// Why it was taken.
    pub kind: SnapshotKind,
    /// Whether the backup stored everything it was asked to (`complete` when absent, as in
    /// snapshots recorded before the status existed).
    #[serde(default)]
    pub status: SnapshotStatus,
    /// Items with their counts.
    pub items: Vec<SnapshotItem>,
    /// Whether content is encrypted.
    pub encrypted: bool,
    /// Locked snapshots are out of retention rotation (see [`Snapshot::is_locked_at`]).
    pub locked: bool,
    /// When a lock set with a time to live ends; `None` locks until unlocked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_until: Option<DateTime<Utc>>,
    /// The account identity the snapshot was taken under, when it is not `account`: the
    /// snapshot of a removed account reassigned to a re-created one keeps its objects under
    /// the old identity's prefix and keys (see [`Snapshot::storage_account`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<AccountId>,
    /// The queue task whose backup recorded it, if any: a task claimed again after its
    /// worker died finds its snapshot here and is not run twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskId>,
    /// What the backup run stored.
    pub stats: BackupStats,
}

impl Snapshot {
    /// Whether the snapshot is locked at `now`: locked, and its lock's time to live (if
    /// any) not yet over.
    pub fn is_locked_at(&self, now: DateTime<Utc>) -> bool {
        self.locked && self.lock_until.is_none_or(|until| until > now)
    }

    /// The account whose repository prefix and keys hold the snapshot's objects: its
    /// original identity for a reassigned snapshot, otherwise `account`.
    pub fn storage_account(&self) -> AccountId {
        self.identity.unwrap_or(self.account)
    }

    /// Whether the snapshot holds `kind`.
    pub fn has_item(&self, kind: ItemKind) -> bool {
        self.items.iter().any(|i| i.kind == kind)
    }

    /// Counts over every item.
    pub fn totals(&self) -> ItemStats {
        let mut t = ItemStats::default();
        for i in &self.items {
            t.add(&i.stats);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_and_codes_round_trip() {
        for s in [SnapshotStatus::Complete, SnapshotStatus::Partial] {
            assert_eq!(s.as_str().parse::<SnapshotStatus>().unwrap(), s);
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(SnapshotStatus::from_code(s.code()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(SnapshotStatus::default(), SnapshotStatus::Complete);
        assert_eq!(SnapshotStatus::from_code(0), None);
        assert_eq!(SnapshotStatus::from_code(3), None);
        let err = "interrupted".parse::<SnapshotStatus>().unwrap_err();
        assert!(err.to_string().contains("snapshot status"), "{err}");
    }

    #[test]
    fn a_snapshot_without_a_status_is_complete() {
        let snapshot = Snapshot {
            id: SnapshotId::new(),
            account: AccountId::new(),
            job: None,
            destination: DestinationId::new(),
            created: Utc::now(),
            kind: SnapshotKind::Scheduled,
            status: SnapshotStatus::Partial,
            items: Vec::new(),
            encrypted: false,
            locked: false,
            lock_until: None,
            identity: None,
            task: None,
            stats: BackupStats::default(),
        };
        let mut value = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(value["status"], "partial");
        let back: Snapshot = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(back, snapshot);
        value.as_object_mut().unwrap().remove("status");
        let old: Snapshot = serde_json::from_value(value).unwrap();
        assert_eq!(old.status, SnapshotStatus::Complete);
    }
}
