//! Backup jobs, schedules and destinations (what a job keeps is in `retention`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::account::Excludes;
use super::ids::{DestinationId, JobId};
use super::item::ItemKind;
use super::retention::RetentionPolicy;
use crate::error::{Error, Result};

/// When a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "every")]
pub enum Schedule {
    /// Only when started by hand (on-demand jobs).
    Manual,
    /// Every `hours` hours.
    Hours {
        /// Interval, 1-24.
        hours: u8,
    },
    /// Every day at `hour:minute` (server time).
    Daily {
        /// 0-23.
        hour: u8,
        /// 0-59.
        minute: u8,
    },
    /// Every week on `weekday` (0 = Monday) at `hour:minute`.
    Weekly {
        /// 0-6, Monday first.
        weekday: u8,
        /// 0-23.
        hour: u8,
        /// 0-59.
        minute: u8,
    },
    /// Every month on `day` at `hour:minute`.
    Monthly {
        /// 1-28 (so that every month has it).
        day: u8,
        /// 0-23.
        hour: u8,
        /// 0-59.
        minute: u8,
    },
}

impl Schedule {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let time = |hour: u8, minute: u8| {
            if hour > 23 || minute > 59 {
                Err(Error::invalid(
                    "schedule",
                    format!("{hour:02}:{minute:02} is not a time of day"),
                ))
            } else {
                Ok(())
            }
        };
        match *self {
            Schedule::Manual => Ok(()),
            Schedule::Hours { hours } if (1..=24).contains(&hours) => Ok(()),
            Schedule::Hours { hours } => Err(Error::invalid(
                "schedule",
                format!("every {hours} hours: expected 1-24"),
            )),
            Schedule::Daily { hour, minute } => time(hour, minute),
            Schedule::Weekly {
                weekday,
                hour,
                minute,
            } => {
                if weekday > 6 {
                    return Err(Error::invalid(
                        "schedule",
                        format!("weekday {weekday}: expected 0 (Monday) to 6"),
                    ));
                }
                time(hour, minute)
            }
            Schedule::Monthly { day, hour, minute } => {
                if !(1..=28).contains(&day) {
                    return Err(Error::invalid(
                        "schedule",
                        format!("day {day}: expected 1-28"),
                    ));
                }
                time(hour, minute)
            }
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
        })
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
    fn schedules_validate() {
        assert!(Schedule::Daily { hour: 3, minute: 0 }.validate().is_ok());
        assert!(
            Schedule::Daily {
                hour: 24,
                minute: 0
            }
            .validate()
            .is_err()
        );
        assert!(Schedule::Hours { hours: 0 }.validate().is_err());
        assert!(
            Schedule::Monthly {
                day: 31,
                hour: 0,
                minute: 0
            }
            .validate()
            .is_err()
        );
    }

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
                hour: 2,
                minute: 30,
            },
            vec![d.id],
        )
        .unwrap();
        assert_eq!(job.items.len(), 2);
        let back: Job = serde_json::from_str(&serde_json::to_string(&job).unwrap()).unwrap();
        assert_eq!(back, job);
        assert!(job.retention.keeps_everything());
    }
}
