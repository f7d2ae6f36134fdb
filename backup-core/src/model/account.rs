//! Accounts and their settings (JetBackup account settings, MSP portal account creation).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{AccountId, OrganizationId, PriorityGroupId, TagId};
use super::limit::Limit;
use super::quota::{BackupLocations, Quota};
use super::selection::PathFilter;
use crate::error::{Error, Result};

/// A login name on a panel: 1-64 characters, no whitespace, control characters or `/`.
/// Usernames may repeat across servers: the [`AccountId`] is the identity.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    /// Validates and wraps a username.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let bad = |reason: &str| Err(Error::invalid("username", format!("{name:?}: {reason}")));
        if name.is_empty() {
            return bad("must not be empty");
        }
        if name.chars().count() > 64 {
            return bad("longer than 64 characters");
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '\\')
        {
            return bad("must not contain whitespace, control characters or slashes");
        }
        if name == "." || name == ".." {
            return bad("is not a name");
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<Username> for String {
    fn from(u: Username) -> String {
        u.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A notification e-mail address (checked for shape, not deliverability).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Validates and wraps an address.
    pub fn new(addr: impl Into<String>) -> Result<Self> {
        let addr = addr.into();
        let ok = addr.len() <= 254
            && !addr.chars().any(|c| c.is_whitespace() || c.is_control())
            && match addr.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.is_empty()
                        && !domain.contains('@')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if ok {
            Ok(Self(addr))
        } else {
            Err(Error::invalid(
                "email",
                format!("{addr:?} is not an e-mail address"),
            ))
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Life cycle of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    /// Created, waiting for the owner to activate it (MSP portals).
    #[default]
    Inactive,
    /// In normal use.
    Active,
    /// Suspended: kept, not backed up by schedules.
    Suspended,
    /// Terminated on the panel; its backups remain until retention removes them.
    Terminated,
}

/// How an account's backups are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EncryptionMode {
    /// Not encrypted (still authenticated by keyed checksums).
    None,
    /// Encrypted; the account's private key is kept by the server, wrapped by the master key.
    #[default]
    ServerKey,
    /// Encrypted; the private key is handed to the owner once and never stored: the server can
    /// write backups but cannot read them.
    OwnerKey,
}

impl EncryptionMode {
    /// Whether content is encrypted.
    pub fn is_encrypted(self) -> bool {
        !matches!(self, EncryptionMode::None)
    }

    /// The short name used in CLIs and JSON (`none`, `server`, `remote`).
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionMode::None => "none",
            EncryptionMode::ServerKey => "server",
            EncryptionMode::OwnerKey => "remote",
        }
    }
}

impl FromStr for EncryptionMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" | "off" => Ok(Self::None),
            "server" | "server_key" => Ok(Self::ServerKey),
            "remote" | "owner" | "owner_key" => Ok(Self::OwnerKey),
            _ => Err(Error::invalid(
                "encryption mode",
                format!("{s:?}: expected none, server or remote"),
            )),
        }
    }
}

/// Which events reach the account's e-mail address.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum NotificationLevel {
    /// No notifications.
    Off,
    /// Failures only (the default).
    #[default]
    Less,
    /// Failures and warnings.
    More,
    /// Failures, warnings and successes.
    All,
}

/// How serious an event is, for filtering by [`NotificationLevel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Something succeeded.
    Success,
    /// Something partly failed or needs attention.
    Warning,
    /// Something failed.
    Failure,
}

impl NotificationLevel {
    /// Whether an event of this severity is sent at this level.
    pub fn admits(self, severity: Severity) -> bool {
        match self {
            NotificationLevel::Off => false,
            NotificationLevel::Less => severity == Severity::Failure,
            NotificationLevel::More => severity >= Severity::Warning,
            NotificationLevel::All => true,
        }
    }
}

/// Notification settings of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    /// Backup notifications level.
    pub level: NotificationLevel,
    /// Business notifications (exceeded quotas) on or off.
    pub business: bool,
}

impl Default for Notifications {
    fn default() -> Self {
        Self {
            level: NotificationLevel::Less,
            business: true,
        }
    }
}

/// Per-account exclude globs, relative to the home directory.
pub type Excludes = PathFilter;

/// An account: one user of a hosting panel or of an MSP portal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The identity (usernames can repeat across servers).
    pub id: AccountId,
    /// Login name on the panel or portal.
    pub username: Username,
    /// Server the account lives on, if known.
    pub origin_server: Option<String>,
    /// Owning organization (MSP tenant or reseller), if any.
    pub organization: Option<OrganizationId>,
    /// Where notifications go.
    pub email: Option<Email>,
    /// Optional first name.
    pub first_name: Option<String>,
    /// Optional last name.
    pub last_name: Option<String>,
    /// Life-cycle status.
    pub status: AccountStatus,
    /// Administrator privileges.
    pub admin: bool,
    /// The account is a reseller (terminate-before-restore is refused for resellers).
    pub reseller: bool,
    /// Agents registered under this account update themselves.
    pub agent_auto_update: bool,
    /// Tags, for sorting and group priorities.
    pub tags: Vec<TagId>,
    /// Queue priority group; `None` uses the default group.
    pub priority_group: Option<PriorityGroupId>,
    /// Exclude globs relative to the home directory.
    pub excludes: Excludes,
    /// Encryption mode.
    pub encryption: EncryptionMode,
    /// Notification settings.
    pub notifications: Notifications,
    /// Maximum on-demand snapshots the owner may create.
    pub max_on_demand_snapshots: Limit,
    /// Storage and device quotas.
    pub quota: Quota,
    /// Where backups may be kept.
    pub backup_locations: BackupLocations,
    /// When the account was created here.
    pub created: DateTime<Utc>,
    /// Where the account's live data is (its home directory); `None` takes the server's
    /// accounts root ([`crate::model::Settings::accounts_root`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<std::path::PathBuf>,
}

impl Account {
    /// A new account with default settings (inactive, server-held key, notifications on
    /// failures, defaults for every limit).
    pub fn new(username: &str) -> Result<Self> {
        Ok(Self {
            id: AccountId::new(),
            username: Username::new(username)?,
            origin_server: None,
            organization: None,
            email: None,
            first_name: None,
            last_name: None,
            status: AccountStatus::default(),
            admin: false,
            reseller: false,
            agent_auto_update: true,
            tags: Vec::new(),
            priority_group: None,
            excludes: Excludes::default(),
            encryption: EncryptionMode::default(),
            notifications: Notifications::default(),
            max_on_demand_snapshots: Limit::Default,
            quota: Quota::default(),
            backup_locations: BackupLocations::default(),
            created: Utc::now(),
            source: None,
        })
    }

    /// Sets the notification address (validated).
    pub fn with_email(mut self, email: &str) -> Result<Self> {
        self.email = Some(Email::new(email)?);
        Ok(self)
    }

    /// Sets the encryption mode.
    pub fn with_encryption(mut self, mode: EncryptionMode) -> Self {
        self.encryption = mode;
        self
    }

    /// Sets the exclude globs (validated: an invalid pattern is an error naming it).
    pub fn with_excludes<I, S>(mut self, patterns: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.excludes = Excludes::new(patterns)?;
        Ok(self)
    }

    /// Sets the status.
    pub fn with_status(mut self, status: AccountStatus) -> Self {
        self.status = status;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_validated() {
        assert!(Username::new("alice").is_ok());
        for bad in ["", "a b", "a/b", "..", &"x".repeat(65)] {
            assert!(Username::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn emails_are_validated() {
        assert!(Email::new("a@example.com").is_ok());
        for bad in ["", "a", "@x", "a@", "a b@c", "a@b@c", "a@.x"] {
            assert!(Email::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn notification_levels_filter() {
        use NotificationLevel::*;
        assert!(!Off.admits(Severity::Failure));
        assert!(Less.admits(Severity::Failure) && !Less.admits(Severity::Warning));
        assert!(More.admits(Severity::Warning) && !More.admits(Severity::Success));
        assert!(All.admits(Severity::Success));
    }

    #[test]
    fn account_serde_round_trip() {
        let a = Account::new("bob")
            .unwrap()
            .with_email("bob@example.com")
            .unwrap()
            .with_excludes(["cache/**", "*.log"])
            .unwrap()
            .with_encryption(EncryptionMode::OwnerKey);
        let json = serde_json::to_string(&a).unwrap();
        let back: Account = serde_json::from_str(&json).unwrap();
        assert_eq!(a, back);
    }

    #[test]
    fn deserializing_invalid_values_fails() {
        let a = Account::new("bob").unwrap();
        let mut v = serde_json::to_value(&a).unwrap();
        v["username"] = "a b".into();
        assert!(serde_json::from_value::<Account>(v.clone()).is_err());
        v["username"] = "ok".into();
        v["excludes"] = serde_json::json!(["[unclosed"]);
        assert!(serde_json::from_value::<Account>(v).is_err());
    }

    #[test]
    fn encryption_mode_names() {
        for m in [
            EncryptionMode::None,
            EncryptionMode::ServerKey,
            EncryptionMode::OwnerKey,
        ] {
            assert_eq!(m.as_str().parse::<EncryptionMode>().unwrap(), m);
        }
        assert!("rot13".parse::<EncryptionMode>().is_err());
    }
}
