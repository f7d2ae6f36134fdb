//! Backup jobs, schedules and destinations (what a job keeps is in `retention`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::account::{Account, AccountStatus, Excludes};
use super::ids::{DestinationId, JobId, OrganizationId, TagId};
use super::item::ItemKind;
use super::retention::{RetentionPolicy, RetentionZone};
use super::schedule::{Schedule, Timing};
use crate::error::{Error, Result};

/// Which accounts a job backs up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum AccountSelection {
    /// Every account.
    #[default]
    All,
    /// Accounts carrying a tag.
    Tag {
        /// The tag.
        tag: TagId,
    },
    /// Accounts of an organization (MSP customer or reseller).
    Organization {
        /// The organization.
        organization: OrganizationId,
    },
    /// Accounts whose username matches a regular expression (anchored: the whole name
    /// must match).
    Pattern {
        /// The expression (Rust `regex` syntax).
        pattern: String,
    },
}

impl AccountSelection {
    /// A username pattern, checked to compile.
    pub fn pattern(pattern: &str) -> Result<Self> {
        compile(pattern)?;
        Ok(AccountSelection::Pattern {
            pattern: pattern.to_owned(),
        })
    }

    /// A matcher for this selection (the pattern compiled once).
    pub fn matcher(&self) -> Result<AccountMatcher<'_>> {
        Ok(AccountMatcher {
            selection: self,
            regex: match self {
                AccountSelection::Pattern { pattern } => Some(compile(pattern)?),
                _ => None,
            },
        })
    }
}

fn compile(pattern: &str) -> Result<regex::Regex> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| Error::invalid("account pattern", format!("{pattern:?}: {e}")))
}

/// Tests accounts against an [`AccountSelection`].
#[derive(Debug, Clone)]
pub struct AccountMatcher<'a> {
    selection: &'a AccountSelection,
    regex: Option<regex::Regex>,
}

impl AccountMatcher<'_> {
    /// Whether the selection takes `account` (status is the job's business, not this).
    pub fn matches(&self, account: &Account) -> bool {
        match self.selection {
            AccountSelection::All => true,
            AccountSelection::Tag { tag } => account.tags.contains(tag),
            AccountSelection::Organization { organization } => {
                account.organization == Some(*organization)
            }
            AccountSelection::Pattern { .. } => self
                .regex
                .as_ref()
                .is_some_and(|r| r.is_match(account.username.as_str())),
        }
    }
}

/// A backup job: what, when, where and how long.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Identity.
    pub id: JobId,
    /// Display name.
    pub name: String,
    /// Item kinds the job backs up.
    pub items: Vec<ItemKind>,
    /// When it runs.
    pub schedule: Schedule,
    /// What it keeps.
    pub retention: RetentionPolicy,
    /// Where it writes (one snapshot per destination).
    pub destinations: Vec<DestinationId>,
    /// Job-wide excludes, added to each account's own.
    pub excludes: Excludes,
    /// An on-demand job (accounts may start it themselves).
    pub on_demand: bool,
    /// Report backup quota usage for this job.
    pub quota_reporting: bool,
    /// Whether the job is enabled.
    pub enabled: bool,
    /// Which accounts it backs up.
    #[serde(default)]
    pub accounts: AccountSelection,
    /// Leave suspended accounts out.
    #[serde(default)]
    pub exclude_suspended: bool,
    /// The zone the schedule's times are in (UTC by default).
    #[serde(default, skip_serializing_if = "RetentionZone::is_utc")]
    pub time_zone: RetentionZone,
    /// Minutes added to every scheduled time (and after the job an after-job schedule
    /// follows).
    #[serde(default)]
    pub delay_minutes: u32,
    /// When the job was added: a timed job that never ran is first due at its first slot
    /// after this (`None`: due at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
}

impl Job {
    /// A job backing up `items` to `destinations`; validated.
    pub fn new(
        name: &str,
        items: Vec<ItemKind>,
        schedule: Schedule,
        destinations: Vec<DestinationId>,
    ) -> Result<Self> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::invalid("job name", "must not be empty"));
        }
        if items.is_empty() {
            return Err(Error::invalid(
                "job items",
                "a job backs up at least one item",
            ));
        }
        if destinations.is_empty() {
            return Err(Error::invalid(
                "job destinations",
                "a job writes to at least one destination",
            ));
        }
        schedule.validate()?;
        let mut items = items;
        items.sort();
        items.dedup();
        Ok(Self {
            id: JobId::new(),
            name: name.to_owned(),
            items,
            schedule,
            retention: RetentionPolicy::default(),
            destinations,
            excludes: Excludes::default(),
            on_demand: false,
            quota_reporting: false,
            enabled: true,
            accounts: AccountSelection::All,
            exclude_suspended: false,
            time_zone: RetentionZone::default(),
            delay_minutes: 0,
            created: Some(Utc::now()),
        })
    }

    /// The job's schedule with its zone and delay, for next-run times.
    pub fn timing(&self) -> Timing<'_> {
        Timing {
            schedule: &self.schedule,
            zone: &self.time_zone,
            delay: chrono::Duration::minutes(i64::from(self.delay_minutes)),
        }
    }

    /// Whether the job backs up `account`: selected, and not left out by status (inactive
    /// and terminated accounts never are; suspended ones unless `exclude_suspended`).
    pub fn takes(&self, matcher: &AccountMatcher<'_>, account: &Account) -> bool {
        let status_ok = match account.status {
            AccountStatus::Active => true,
            AccountStatus::Suspended => !self.exclude_suspended,
            AccountStatus::Inactive | AccountStatus::Terminated => false,
        };
        status_ok && matcher.matches(account)
    }
}

/// A named backup destination: one object-store URL (one repository).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Identity.
    pub id: DestinationId,
    /// Unique name (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Object store URL (`file:///...`, `s3://...`, `sftp://...`, `memory://`).
    pub url: String,
    /// When it was added.
    pub created: DateTime<Utc>,
    /// Local or cloud, as the operator classed it; `None` (rows written before classes
    /// existed) is inferred from the URL: see [`Destination::class`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<DestinationClass>,
    /// Backups to it are refused; restores, verification and listings still read it. A
    /// destination found during disaster recovery starts read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Whether a destination is on this server's own disks or elsewhere: an account whose
/// backup locations are "cloud only" is never backed up to a `Local` one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationClass {
    /// On this server (a local directory, a mounted disk).
    Local,
    /// Off this server (S3, SFTP, another machine).
    Cloud,
}

impl DestinationClass {
    /// The class a URL suggests: `file://` and `memory://` are local, the rest cloud.
    pub fn for_url(url: &str) -> Self {
        if url.starts_with("file:") || url.starts_with("memory:") {
            DestinationClass::Local
        } else {
            DestinationClass::Cloud
        }
    }

    /// The CLI spelling (`local`, `cloud`).
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationClass::Local => "local",
            DestinationClass::Cloud => "cloud",
        }
    }
}

impl std::str::FromStr for DestinationClass {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "local" => Ok(Self::Local),
            "cloud" => Ok(Self::Cloud),
            _ => Err(Error::invalid(
                "destination class",
                format!("{s:?}: expected local or cloud"),
            )),
        }
    }
}

impl Destination {
    /// The class: as set, else inferred from the URL ([`DestinationClass::for_url`]).
    pub fn class(&self) -> DestinationClass {
        self.class
            .unwrap_or_else(|| DestinationClass::for_url(&self.url))
    }

    /// Sets the class.
    pub fn with_class(mut self, class: DestinationClass) -> Self {
        self.class = Some(class);
        self
    }

    /// Marks the destination read-only (or writable).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Validates and builds a destination. The URL is checked for a scheme only; the storage
    /// crate parses it.
    pub fn new(name: &str, url: &str) -> Result<Self> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::invalid(
                "destination name",
                format!("{name:?}: use 1-64 letters, digits, '-', '_' or '.'"),
            ));
        }
        let scheme = url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("file" | "s3" | "sftp" | "memory")) {
            return Err(Error::invalid(
                "destination url",
                format!(
                    "{url:?}: give an explicit URL: file:///ABSOLUTE/PATH, s3://BUCKET/PREFIX, \
                     sftp://USER@HOST/PATH or memory://"
                ),
            ));
        }
        if scheme == Some("file") && !url["file://".len()..].starts_with('/') {
            return Err(Error::invalid(
                "destination url",
                format!("{url:?}: a file:// URL takes an absolute path (file:///srv/backups)"),
            ));
        }
        Ok(Self {
            id: DestinationId::new(),
            name: name.to_owned(),
            url: url.to_owned(),
            created: Utc::now(),
            class: None,
            read_only: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_validate_and_round_trip() {
        let d = Destination::new("local-1", "file:///backups").unwrap();
        assert!(Destination::new("bad name", "file:///x").is_err());
        assert!(Destination::new("ok", "/no/scheme").is_err());
        assert!(Job::new("nightly", vec![], Schedule::Manual, vec![d.id]).is_err());
        let job = Job::new(
            "nightly",
            vec![ItemKind::HomeDir, ItemKind::Databases, ItemKind::HomeDir],
            Schedule::Daily {
                at: crate::model::TimeOfDay::new(2, 30).unwrap(),
            },
            vec![d.id],
        )
        .unwrap();
        assert_eq!(job.items.len(), 2);
        let back: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        assert!(job.retention.keeps_everything());
    }

    #[test]
    fn selections_match() {
        let mut a = Account::new("shop42").unwrap();
        let tag = TagId::new();
        a.tags.push(tag);
        let yes = |sel: AccountSelection| sel.matcher().unwrap().matches(&a);
        assert!(yes(AccountSelection::All));
        assert!(yes(AccountSelection::Tag { tag }));
        assert!(!yes(AccountSelection::Tag { tag: TagId::new() }));
        assert!(yes(AccountSelection::pattern("shop[0-9]+").unwrap()));
        assert!(!yes(AccountSelection::pattern("shop").unwrap()), "anchored");
        assert!(AccountSelection::pattern("(").is_err());
        let org = OrganizationId::new();
        assert!(!yes(AccountSelection::Organization { organization: org }));
        let d = Destination::new("d", "file:///x").unwrap();
        let mut job = Job::new("n", vec![ItemKind::HomeDir], Schedule::Manual, vec![d.id]).unwrap();
        let all = AccountSelection::All;
        let m = all.matcher().unwrap();
        for (status, taken) in [
            (AccountStatus::Active, true),
            (AccountStatus::Suspended, true),
            (AccountStatus::Inactive, false),
            (AccountStatus::Terminated, false),
        ] {
            assert_eq!(job.takes(&m, &a.clone().with_status(status)), taken);
        }
        job.exclude_suspended = true;
        assert!(!job.takes(&m, &a.clone().with_status(AccountStatus::Suspended)));
    }
}
