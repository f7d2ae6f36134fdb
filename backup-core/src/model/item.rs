//! The parts of a hosting account that are backed up and restored separately.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One backup item kind. Home directory and e-mail are file trees; the others are sets of
/// named documents (one dump per database, one zone per domain, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ItemKind {
    /// Panel configuration of the account.
    PanelConfig,
    /// The home directory tree.
    HomeDir,
    /// Cron tables.
    CronJobs,
    /// Database dumps, one document per database.
    Databases,
    /// Database users and grants.
    DatabaseUsers,
    /// DNS zones, one document per domain.
    DnsZones,
    /// SSL certificates and keys.
    Certificates,
    /// Mailboxes (a file tree).
    Email,
    /// FTP accounts.
    Ftp,
}

impl ItemKind {
    /// Every kind, in restore order (configuration before data).
    pub const ALL: [ItemKind; 9] = [
        ItemKind::PanelConfig,
        ItemKind::HomeDir,
        ItemKind::CronJobs,
        ItemKind::Databases,
        ItemKind::DatabaseUsers,
        ItemKind::DnsZones,
        ItemKind::Certificates,
        ItemKind::Email,
        ItemKind::Ftp,
    ];

    /// Whether the item is a file tree (as opposed to named documents).
    pub fn is_tree(self) -> bool {
        matches!(self, ItemKind::HomeDir | ItemKind::Email)
    }

    /// Short stable name (`home`, `databases`, ...), used in CLIs, JSON and storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::PanelConfig => "panel",
            ItemKind::HomeDir => "home",
            ItemKind::CronJobs => "cron",
            ItemKind::Databases => "databases",
            ItemKind::DatabaseUsers => "dbusers",
            ItemKind::DnsZones => "dns",
            ItemKind::Certificates => "ssl",
            ItemKind::Email => "mail",
            ItemKind::Ftp => "ftp",
        }
    }

    /// The long snake-case name (`home_dir`, `panel_config`, ...), as serde writes it.
    pub fn long_name(self) -> &'static str {
        match self {
            ItemKind::PanelConfig => "panel_config",
            ItemKind::HomeDir => "home_dir",
            ItemKind::CronJobs => "cron_jobs",
            ItemKind::Databases => "databases",
            ItemKind::DatabaseUsers => "database_users",
            ItemKind::DnsZones => "dns_zones",
            ItemKind::Certificates => "certificates",
            ItemKind::Email => "email",
            ItemKind::Ftp => "ftp",
        }
    }

    /// The stable one-byte code used in the repository format.
    pub fn code(self) -> u8 {
        match self {
            ItemKind::PanelConfig => 1,
            ItemKind::HomeDir => 2,
            ItemKind::CronJobs => 3,
            ItemKind::Databases => 4,
            ItemKind::DatabaseUsers => 5,
            ItemKind::DnsZones => 6,
            ItemKind::Certificates => 7,
            ItemKind::Email => 8,
            ItemKind::Ftp => 9,
        }
    }

    /// Inverse of [`ItemKind::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase().replace('-', "_");
        let found = ItemKind::ALL
            .into_iter()
            .find(|k| k.as_str() == lower || k.long_name() == lower);
        found.ok_or_else(|| {
            let names: Vec<&str> = ItemKind::ALL.iter().map(|k| k.as_str()).collect();
            Error::invalid(
                "item kind",
                format!("{s:?}: expected one of {}", names.join(", ")),
            )
        })
    }
}

/// Checks that a document name (a database dump, a zone file) is one plain path component:
/// not empty, not `.` or `..`, no `/`, `\` or NUL ([`Error::PathEscapes`] otherwise).
pub fn check_document_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
    {
        return Err(Error::PathEscapes {
            path: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for k in ItemKind::ALL {
            assert_eq!(k.as_str().parse::<ItemKind>().unwrap(), k);
            assert_eq!(ItemKind::from_code(k.code()), Some(k));
        }
        assert_eq!("home_dir".parse::<ItemKind>().unwrap(), ItemKind::HomeDir);
        assert_eq!(
            "Panel-Config".parse::<ItemKind>().unwrap(),
            ItemKind::PanelConfig
        );
        assert!("nope".parse::<ItemKind>().is_err());
        assert_eq!(ItemKind::from_code(0), None);
        for k in ItemKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.long_name());
        }
    }
}
