//! Storage and device quotas (MSP portal account creation).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A storage quota: without overage it is soft (report only); with an overage, backups fail
/// once usage passes quota + overage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StorageQuota {
    /// Quota in bytes.
    pub bytes: u64,
    /// Allowed overage in bytes; `None` makes the quota soft.
    pub overage: Option<u64>,
}

/// Where usage stands against a [`StorageQuota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaState {
    /// Within the quota.
    Within,
    /// Past the quota: report it, keep backing up.
    Over,
    /// Past quota + overage: backups fail.
    Blocked,
}

impl StorageQuota {
    /// A quota of `bytes`, soft (no overage). Zero is refused.
    pub fn soft(bytes: u64) -> Result<Self> {
        if bytes == 0 {
            return Err(Error::invalid("storage quota", "must be more than 0 bytes"));
        }
        Ok(Self {
            bytes,
            overage: None,
        })
    }

    /// A hard quota: backups fail past `bytes + overage`.
    pub fn with_overage(bytes: u64, overage: u64) -> Result<Self> {
        let mut q = Self::soft(bytes)?;
        q.overage = Some(overage);
        Ok(q)
    }

    /// The usage above which backups fail, if the quota is hard.
    pub fn hard_limit(&self) -> Option<u64> {
        self.overage.map(|o| self.bytes.saturating_add(o))
    }

    /// Classifies `used` bytes.
    pub fn state(&self, used: u64) -> QuotaState {
        match self.hard_limit() {
            Some(hard) if used > hard => QuotaState::Blocked,
            _ if used > self.bytes => QuotaState::Over,
            _ => QuotaState::Within,
        }
    }

    /// Fails with [`Error::QuotaExceeded`] when `used` is past the hard limit.
    pub fn check(&self, used: u64) -> Result<QuotaState> {
        match self.state(used) {
            QuotaState::Blocked => Err(Error::QuotaExceeded {
                used,
                limit: self.hard_limit().unwrap_or(self.bytes),
            }),
            s => Ok(s),
        }
    }
}

/// Maximum number of devices per kind an account may back up; `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct DeviceLimits {
    /// Physical workstations.
    pub workstations: Option<u32>,
    /// Physical servers.
    pub servers: Option<u32>,
    /// Virtual machines.
    pub virtual_machines: Option<u32>,
    /// Mobile devices.
    pub mobile_devices: Option<u32>,
    /// Mailboxes (e.g. Office 365).
    pub mailboxes: Option<u32>,
}

/// Quotas of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Quota {
    /// Storage quota; `None` = unlimited.
    pub storage: Option<StorageQuota>,
    /// Device counts.
    pub devices: DeviceLimits,
}

/// Where an account's backups may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BackupLocations {
    /// Local destinations and cloud destinations.
    #[default]
    LocalAndCloud,
    /// Cloud destinations only.
    CloudOnly,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_quota_only_reports() {
        let q = StorageQuota::soft(100).unwrap();
        assert_eq!(q.state(50), QuotaState::Within);
        assert_eq!(q.state(1000), QuotaState::Over);
        assert!(q.check(1000).is_ok());
    }

    #[test]
    fn hard_quota_blocks_past_overage() {
        let q = StorageQuota::with_overage(100, 20).unwrap();
        assert_eq!(q.state(110), QuotaState::Over);
        assert_eq!(q.state(121), QuotaState::Blocked);
        match q.check(121) {
            Err(Error::QuotaExceeded { used, limit }) => assert_eq!((used, limit), (121, 120)),
            other => panic!("{other:?}"),
        }
        assert!(StorageQuota::soft(0).is_err());
    }
}
