//! Notifications: the engine reports events; the integrator delivers them.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Account, AccountId, Severity, SnapshotId};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
#[non_exhaustive]
pub enum EventKind {
    /// A backup finished.
    BackupSucceeded {
        /// The new snapshot.
        snapshot: SnapshotId,
    },
    /// A backup finished but some files could not be read.
    BackupPartial {
        /// The new snapshot.
        snapshot: SnapshotId,
        /// Files skipped.
        skipped: u64,
    },
    /// A backup was refused by an account setting before anything was uploaded (or, for
    /// the quota, stopped before passing it).
    BackupRefused {
        /// The setting (`status`, `max-on-demand`, `quota`, `locations`, `read-only`).
        setting: String,
        /// Why.
        reason: String,
    },
    /// A backup failed.
    BackupFailed {
        /// Why.
        reason: String,
    },
    /// A restore finished.
    RestoreSucceeded,
    /// A restore failed.
    RestoreFailed {
        /// Why.
        reason: String,
    },
    /// Storage usage is past the quota, below any overage: backups go on (a business
    /// notification).
    QuotaWarning {
        /// Bytes used.
        used: u64,
        /// The quota.
        limit: u64,
    },
    /// A backup was stopped by the quota and its overage (a business notification).
    QuotaExceeded {
        /// Bytes used.
        used: u64,
        /// The quota.
        limit: u64,
    },
    /// The account's encryption key was reset: old encrypted backups are gone.
    KeyReset,
}

impl EventKind {
    /// How serious the event is.
    pub fn severity(&self) -> Severity {
        match self {
            EventKind::BackupSucceeded { .. } | EventKind::RestoreSucceeded => Severity::Success,
            EventKind::BackupPartial { .. }
            | EventKind::QuotaWarning { .. }
            | EventKind::KeyReset => Severity::Warning,
            EventKind::BackupFailed { .. }
            | EventKind::BackupRefused { .. }
            | EventKind::QuotaExceeded { .. }
            | EventKind::RestoreFailed { .. } => Severity::Failure,
        }
    }

    /// Whether this is a business notification (quota), governed by the business flag.
    pub fn is_business(&self) -> bool {
        matches!(
            self,
            EventKind::QuotaExceeded { .. } | EventKind::QuotaWarning { .. }
        )
    }
}

/// An event about one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Whose.
    pub account: AccountId,
    /// When.
    pub time: DateTime<Utc>,
    /// What.
    pub kind: EventKind,
}

impl Event {
    /// An event now.
    pub fn new(account: AccountId, kind: EventKind) -> Self {
        Self {
            account,
            time: Utc::now(),
            kind,
        }
    }

    /// Whether the account's settings ask for this event by e-mail: business events follow
    /// the business flag, the others the notification level.
    pub fn wanted_by(&self, account: &Account) -> bool {
        if self.kind.is_business() {
            account.notifications.business
        } else {
            account.notifications.level.admits(self.kind.severity())
        }
    }
}

/// Receives events. Implementations deliver them (e-mail, webhook, CRM API) and should
/// honour [`Event::wanted_by`].
#[async_trait]
pub trait Notifier: Send + Sync + Debug + 'static {
    /// Delivers one event; delivery failures are the notifier's to log, not the engine's.
    async fn notify(&self, event: &Event);
}

/// Drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullNotifier;

#[async_trait]
impl Notifier for NullNotifier {
    async fn notify(&self, _event: &Event) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NotificationLevel;

    #[test]
    fn events_follow_account_settings() {
        let mut a = Account::new("dave").unwrap();
        let ok = Event::new(a.id, EventKind::RestoreSucceeded);
        let failed = Event::new(a.id, EventKind::BackupFailed { reason: "x".into() });
        let quota = Event::new(a.id, EventKind::QuotaExceeded { used: 2, limit: 1 });
        assert!(!ok.wanted_by(&a) && failed.wanted_by(&a) && quota.wanted_by(&a));
        a.notifications.level = NotificationLevel::All;
        a.notifications.business = false;
        assert!(ok.wanted_by(&a) && !quota.wanted_by(&a));
    }
}
