//! What a backup or restore names beside its counts: entries left out, changed while read,
//! or not restored, each with its path and the reason.

use serde::{Deserialize, Serialize};

use crate::model::{ItemKind, Snapshot};

/// Entries named at most per list; the count goes on past it (a tenant with a million
/// unreadable files must not make a report of a million lines).
pub const ENTRIES_LISTED: usize = 10_000;

/// The path of `name` under `rel` (both relative to an item root), as reports and path
/// selections show it (names that are not UTF-8 lossily).
pub(crate) fn child_path(rel: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if rel.is_empty() {
        name.into_owned()
    } else {
        format!("{rel}/{name}")
    }
}

/// One entry and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryReport {
    /// The item it belongs to.
    pub item: ItemKind,
    /// Its path relative to the item root (`""`: the item itself); names that are not UTF-8
    /// are shown lossily.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// A list of entries, the first [`ENTRIES_LISTED`] named, all counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryReports {
    /// The entries named.
    pub entries: Vec<EntryReport>,
    /// How many there were in all (more than `entries.len()` when the list was cut).
    pub total: u64,
}

impl EntryReports {
    /// Adds one.
    pub fn add(&mut self, entry: EntryReport) {
        self.total += 1;
        if self.entries.len() < ENTRIES_LISTED {
            self.entries.push(entry);
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Adds every entry of `other`.
    pub fn extend(&mut self, other: EntryReports) {
        let unnamed = other.total - other.entries.len() as u64;
        for e in other.entries {
            self.add(e);
        }
        self.total += unnamed;
    }
}

/// What a backup did: the snapshot recorded (already in the repository; adding it to the
/// catalog is the caller's step) and the entries it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The snapshot. Its status is [`crate::model::SnapshotStatus::Partial`] when anything
    /// was skipped.
    pub snapshot: Snapshot,
    /// Entries that could not be read and are not in the snapshot (an item root that could
    /// not be opened has the path `""`).
    pub skipped: EntryReports,
    /// Files that changed while they were read (stored as read) or vanished before.
    pub changed: EntryReports,
}
