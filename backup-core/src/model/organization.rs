//! Organizations (MSP tenancy, resellers), tags and queue priority groups.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::{OrganizationId, PriorityGroupId, TagId};
use crate::error::{Error, Result};

fn check_name(field: &'static str, name: &str, max: usize) -> Result<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("{trimmed:?} is longer than {max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            format!("{trimmed:?} contains control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// An organization: an MSP customer, a reseller or a group inside one. Logins are globally
/// unique (the catalog enforces it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Identity.
    pub id: OrganizationId,
    /// Globally unique login name.
    pub login: String,
    /// Display name.
    pub name: String,
    /// Parent organization, for nested groups.
    pub parent: Option<OrganizationId>,
}

impl Organization {
    /// Validates and builds an organization.
    pub fn new(login: &str, name: &str) -> Result<Self> {
        let login = check_name("organization login", login, 64)?;
        if login.chars().any(char::is_whitespace) {
            return Err(Error::invalid(
                "organization login",
                format!("{login:?} contains whitespace"),
            ));
        }
        Ok(Self {
            id: OrganizationId::new(),
            login,
            name: check_name("organization name", name, 200)?,
            parent: None,
        })
    }
}

/// A `#rrggbb` colour.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TagColor([u8; 3]);

impl TagColor {
    /// Parses `#rrggbb` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::invalid("tag color", format!("{s:?} is not #rrggbb"));
        let hex = s.strip_prefix('#').ok_or_else(bad)?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut rgb = [0u8; 3];
        for (i, slot) in rgb.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(rgb))
    }

    /// A random colour (the seeds' "random hexadecimal number generator").
    pub fn random() -> Self {
        let bytes = uuid::Uuid::new_v4();
        let b = bytes.as_bytes();
        Self([b[0], b[1], b[2]])
    }

    /// Red, green, blue.
    pub fn rgb(&self) -> [u8; 3] {
        self.0
    }
}

impl fmt::Display for TagColor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

impl fmt::Debug for TagColor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagColor({self})")
    }
}

impl TryFrom<String> for TagColor {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<TagColor> for String {
    fn from(c: TagColor) -> String {
        c.to_string()
    }
}

/// A tag for sorting accounts and setting group priorities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Identity.
    pub id: TagId,
    /// Name for internal use.
    pub name: String,
    /// Colour.
    pub color: TagColor,
}

impl Tag {
    /// Validates and builds a tag; `color` `None` picks a random one.
    pub fn new(name: &str, color: Option<TagColor>) -> Result<Self> {
        Ok(Self {
            id: TagId::new(),
            name: check_name("tag name", name, 64)?,
            color: color.unwrap_or_else(TagColor::random),
        })
    }
}

/// A queue priority group (JetBackup's): accounts in a group with a lower number for a
/// task kind are served first. An account gets its group by override
/// ([`crate::model::Account::priority_group`]), else by carrying one of the group's tags,
/// else it is in the default group; without a default group, priorities are
/// [`PriorityGroup::NORMAL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityGroup {
    /// Identity.
    pub id: PriorityGroupId,
    /// Name ("High", "Low", ...).
    pub name: String,
    /// Backup priority, 0-100 (lower runs first).
    pub backup: u8,
    /// Restore priority, 0-100 (lower runs first; restores add a base by account level).
    pub restore: u8,
    /// Download priority, 0-100.
    pub download: u8,
    /// Clone priority, 0-100.
    #[serde(default = "normal_priority")]
    pub clone: u8,
    /// Accounts carrying one of these tags join the group (unless they have an override).
    #[serde(default)]
    pub tags: Vec<TagId>,
    /// The group of accounts with no override and no tag of any group.
    #[serde(default)]
    pub default: bool,
}

fn normal_priority() -> u8 {
    PriorityGroup::NORMAL
}

impl PriorityGroup {
    /// The built-in High group's priority.
    pub const HIGH: u8 = 10;
    /// The built-in Normal group's priority (the default group).
    pub const NORMAL: u8 = 50;
    /// The built-in Low group's priority.
    pub const LOW: u8 = 90;

    /// Validates and builds a group; priorities must be 0-100.
    pub fn new(name: &str, backup: u8, restore: u8, download: u8, clone: u8) -> Result<Self> {
        for (what, p) in [
            ("backup", backup),
            ("restore", restore),
            ("download", download),
            ("clone", clone),
        ] {
            if p > 100 {
                return Err(Error::invalid(
                    "priority",
                    format!("{what} priority {p} is not in 0-100"),
                ));
            }
        }
        Ok(Self {
            id: PriorityGroupId::new(),
            name: check_name("priority group name", name, 64)?,
            backup,
            restore,
            download,
            clone,
            tags: Vec::new(),
            default: false,
        })
    }

    /// The built-in groups: High (10), Normal (50, the default) and Low (90), the same
    /// number for every kind.
    pub fn built_in() -> Vec<Self> {
        [
            ("High", Self::HIGH),
            ("Normal", Self::NORMAL),
            ("Low", Self::LOW),
        ]
        .into_iter()
        .map(|(name, p)| {
            let mut g = Self::new(name, p, p, p, p).expect("built-in groups are valid");
            g.default = p == Self::NORMAL;
            g
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors() {
        let c = TagColor::parse("#A0b1C2").unwrap();
        assert_eq!(c.to_string(), "#a0b1c2");
        for bad in ["a0b1c2", "#a0b1c", "#gggggg", "#a0b1c2d"] {
            assert!(TagColor::parse(bad).is_err(), "{bad}");
        }
        let r = TagColor::random();
        assert_eq!(TagColor::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn validation() {
        assert!(Tag::new(" ", None).is_err());
        assert!(Organization::new("acme corp", "Acme").is_err());
        assert!(Organization::new("acme", "Acme").is_ok());
        assert!(PriorityGroup::new("High", 101, 0, 0, 0).is_err());
        assert!(PriorityGroup::new("High", 0, 0, 0, 101).is_err());
        assert_eq!(
            PriorityGroup::built_in()
                .iter()
                .filter(|g| g.default)
                .count(),
            1
        );
        let t = Tag::new("vip", None).unwrap();
        let back: Tag = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(t, back);
    }
}
