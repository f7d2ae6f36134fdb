//! Retention: which snapshots a job keeps, and why.
//!
//! [`RetentionPolicy::apply`] is a pure plan in the manner of restic's and rustic's
//! `forget`: it takes a history and the current time and returns a [`RetentionDecision`]
//! naming, for every snapshot, either every reason it is kept or the one reason it is
//! forgotten. A dry run prints the decision; the real run removes what it forgets.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::ids::SnapshotId;
use super::limit::Limit;
use super::snapshot::{Snapshot, SnapshotKind};
use crate::error::{Error, Result};

/// How many snapshots a job keeps.
///
/// Rules, applied as restic's `forget` applies them:
/// - `Scheduled` and `Clone` snapshots go through the keep rules (`keep_last`,
///   `keep_within`, `hourly` ... `yearly`). A bucket rule with `n` walks them newest first
///   and keeps the newest snapshot of each of the `n` most recent distinct calendar buckets
///   (hour, day, ISO week, month, year of the snapshot's time in [`Self::time_zone`]) that
///   hold one (a local hour repeated by a daylight-saving change is one bucket). With
///   every keep rule `None` ([`Self::keeps_everything`]) all of them are kept.
/// - `OnDemand` snapshots are counted apart: the newest [`Self::on_demand_cap`] are kept,
///   less those older than [`Self::on_demand_ttl`].
/// - `Safety` snapshots are kept: they expire by their own time to live elsewhere.
/// - A snapshot locked at `now` and the newest snapshot of the history are never forgotten.
///
/// Stored as JSON inside jobs: fields added after the first version default when absent.
///
/// ```
/// use backup_core::model::RetentionPolicy;
///
/// let mut policy = RetentionPolicy::default();
/// policy.daily = Some(7);
/// policy.time_zone = "Europe/Berlin".parse()?;
/// policy.validate()?;
/// let decision = policy.apply(&[], chrono::Utc::now());
/// assert!(decision.keep.is_empty() && decision.forget.is_empty());
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep the newest n.
    pub keep_last: Option<u32>,
    /// Keep the newest of each of the last n hours.
    pub hourly: Option<u32>,
    /// Keep the newest of each of the last n days.
    pub daily: Option<u32>,
    /// Keep the newest of each of the last n ISO weeks (Monday first).
    pub weekly: Option<u32>,
    /// Keep the newest of each of the last n months.
    pub monthly: Option<u32>,
    /// Keep the newest of each of the last n years.
    pub yearly: Option<u32>,
    /// Cap on on-demand snapshots kept per account by this job. The caller resolves
    /// [`Limit::Default`] against the account's or the global setting
    /// ([`Limit::resolve`]) before calling [`Self::apply`]; `apply` itself reads
    /// `Max(n)` as "keep the newest n" and every other value (`Default`, `Unlimited`, and
    /// `Disabled`, which forbids taking new ones but removes none) as "keep all".
    pub on_demand_cap: Limit,
    /// Keep every snapshot taken within this long before `now`. In JSON a humantime
    /// string (`"30days"`, `"30d"`, `"12h 30m"`); a number of seconds is read too.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_text"
    )]
    pub keep_within: Option<Duration>,
    /// The zone whose calendar draws the buckets (UTC when absent).
    #[serde(default, skip_serializing_if = "RetentionZone::is_utc")]
    pub time_zone: RetentionZone,
    /// On-demand snapshots older than this are forgotten even within the cap. Same JSON
    /// form as [`Self::keep_within`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_text"
    )]
    pub on_demand_ttl: Option<Duration>,
}

impl RetentionPolicy {
    /// Whether the policy keeps every scheduled and clone snapshot: no keep rule
    /// (`keep_last`, `keep_within`, `hourly` ... `yearly`) is set.
    pub fn keeps_everything(&self) -> bool {
        self.counts().iter().all(|(_, n)| n.is_none()) && self.keep_within.is_none()
    }

    /// Refuses settings that are surely a mistake: a count of 0 (it keeps nothing; leave
    /// the rule unset instead) and a zero `keep_within` or `on_demand_ttl`. The zone is
    /// checked when it is parsed ([`RetentionZone::new`]).
    pub fn validate(&self) -> Result<()> {
        for (name, n) in self.counts() {
            if n == Some(0) {
                return Err(Error::invalid(
                    "retention policy",
                    format!("{name} 0 keeps nothing: leave it unset, or give a count of 1 or more"),
                ));
            }
        }
        for (name, d) in [
            ("keep-within", self.keep_within),
            ("on-demand-ttl", self.on_demand_ttl),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(Error::invalid(
                    "retention policy",
                    format!("{name} 0s: give a positive duration such as 30d, or leave it unset"),
                ));
            }
        }
        Ok(())
    }

    /// Decides, for every snapshot of `snapshots`, whether it is kept and why.
    ///
    /// Pure and deterministic: no clock (`now` is given), no I/O, and the same decision
    /// for any order of the input. Snapshot ids are expected to be unique; every input
    /// snapshot appears in exactly one of the two lists, each sorted newest first (by
    /// `created`, ties by id).
    pub fn apply(&self, snapshots: &[Snapshot], now: DateTime<Utc>) -> RetentionDecision {
        let mut order: Vec<&Snapshot> = snapshots.iter().collect();
        order.sort_by_key(|s| std::cmp::Reverse((s.created, s.id)));
        let mut kept: Vec<Vec<KeepReason>> = vec![Vec::new(); order.len()];
        let mut dropped: Vec<Option<ForgetReason>> = vec![None; order.len()];

        if self.keeps_everything() {
            for (i, _) in order.iter().enumerate().filter(|(_, s)| rotated(s)) {
                kept[i].push(KeepReason::NoPolicy);
            }
        } else {
            self.apply_keep_rules(&order, now, &mut kept);
        }

        let ttl_cutoff = self.on_demand_ttl.and_then(|ttl| before(now, ttl));
        let mut on_demand_rank = 0u64;
        for (i, s) in order.iter().enumerate() {
            match s.kind {
                SnapshotKind::OnDemand => {
                    let within_cap = match self.on_demand_cap {
                        Limit::Max(n) => on_demand_rank < u64::from(n),
                        Limit::Default | Limit::Unlimited | Limit::Disabled => true,
                    };
                    on_demand_rank += 1;
                    if ttl_cutoff.is_some_and(|cutoff| s.created < cutoff) {
                        dropped[i] = Some(ForgetReason::OnDemandTtl);
                    } else if within_cap {
                        kept[i].push(KeepReason::OnDemand);
                    } else {
                        dropped[i] = Some(ForgetReason::OnDemandCap);
                    }
                }
                SnapshotKind::Safety => kept[i].push(KeepReason::Safety),
                SnapshotKind::Scheduled | SnapshotKind::Clone => {}
            }
            if s.is_locked_at(now) {
                kept[i].push(KeepReason::Locked);
            }
            if i == 0 {
                kept[i].push(KeepReason::Newest);
            }
        }

        let mut decision = RetentionDecision::default();
        for ((s, reasons), dropped) in order.iter().zip(kept).zip(dropped) {
            if reasons.is_empty() {
                decision.forget.push(Forgotten {
                    snapshot: s.id,
                    reason: dropped.unwrap_or(ForgetReason::NotKept),
                });
            } else {
                decision.keep.push(Kept {
                    snapshot: s.id,
                    reasons,
                });
            }
        }
        decision
    }

    /// `keep_last`, `keep_within` and the bucket rules over the rotated snapshots of
    /// `order` (newest first); reasons are pushed in [`KeepReason`]'s order.
    fn apply_keep_rules(
        &self,
        order: &[&Snapshot],
        now: DateTime<Utc>,
        kept: &mut [Vec<KeepReason>],
    ) {
        let within_cutoff = self.keep_within.map(|d| before(now, d));
        let buckets = [
            (Calendar::Hour, self.hourly, KeepReason::Hourly),
            (Calendar::Day, self.daily, KeepReason::Daily),
            (Calendar::Week, self.weekly, KeepReason::Weekly),
            (Calendar::Month, self.monthly, KeepReason::Monthly),
            (Calendar::Year, self.yearly, KeepReason::Yearly),
        ];
        let mut seen: [HashSet<BucketKey>; 5] = Default::default();
        let rotated = order.iter().enumerate().filter(|(_, s)| rotated(s));
        for (rank, (i, s)) in rotated.enumerate() {
            if self.keep_last.is_some_and(|n| rank < n as usize) {
                kept[i].push(KeepReason::Last);
            }
            if let Some(cutoff) = within_cutoff
                && cutoff.is_none_or(|cutoff| s.created >= cutoff)
            {
                kept[i].push(KeepReason::Within);
            }
            let local = self.time_zone.civil(s.created);
            for ((calendar, n, reason), seen) in buckets.iter().zip(&mut seen) {
                let Some(n) = *n else { continue };
                if seen.len() < n as usize && seen.insert(calendar.bucket(local)) {
                    kept[i].push(*reason);
                }
            }
        }
    }

    fn counts(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("keep-last", self.keep_last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
    }
}

/// Whether the keep rules consider the snapshot (scheduled and clone snapshots).
fn rotated(s: &Snapshot) -> bool {
    matches!(s.kind, SnapshotKind::Scheduled | SnapshotKind::Clone)
}

/// `now - d`, or `None` when that is before the earliest representable time (so every
/// snapshot is after it).
fn before(now: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
}

/// A calendar unit of the bucket rules.
#[derive(Debug, Clone, Copy)]
enum Calendar {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// One bucket of one calendar unit: local (year, month, day, hour), the finer fields
/// zeroed; ISO (year, week) for weeks.
type BucketKey = (i16, i8, i8, i8);

impl Calendar {
    fn bucket(self, t: jiff::civil::DateTime) -> BucketKey {
        match self {
            Calendar::Hour => (t.year(), t.month(), t.day(), t.hour()),
            Calendar::Day => (t.year(), t.month(), t.day(), 0),
            Calendar::Week => {
                let w = t.date().iso_week_date();
                (w.year(), w.week(), 0, 0)
            }
            Calendar::Month => (t.year(), t.month(), 0, 0),
            Calendar::Year => (t.year(), 0, 0, 0),
        }
    }
}

/// The zone whose calendar draws a policy's buckets: an IANA name (`Europe/Berlin`),
/// `UTC` (the default), or a fixed offset (`+02:00`, `-0330`).
///
/// IANA names are looked up in the time zone database bundled into the binary (jiff's
/// `tzdb-bundle-always`), never in the machine's `/usr/share/zoneinfo`, so every machine
/// draws the same buckets. The server's `local` zone is refused for the same reason.
/// Serialized as its name; an unknown name fails to deserialize.
#[derive(Clone)]
pub struct RetentionZone {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl RetentionZone {
    /// Parses a zone name; an unknown name or a malformed offset is [`Error::Invalid`].
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |why: &str| Error::invalid("time zone", format!("{name:?}: {why}"));
        let trimmed = name.trim();
        if trimmed.eq_ignore_ascii_case("utc") || trimmed == "Z" {
            return Ok(Self::default());
        }
        if trimmed.eq_ignore_ascii_case("local") {
            return Err(invalid(
                "the server's local zone would make retention depend on the machine; \
                 give an IANA name such as Europe/Berlin",
            ));
        }
        if let Some(rest) = trimmed.strip_prefix(['+', '-']) {
            let seconds = parse_offset(rest)
                .ok_or_else(|| invalid("expected a fixed offset such as +02:00 or -0330"))?;
            let sign = if trimmed.starts_with('-') { -1 } else { 1 };
            let offset = jiff::tz::Offset::from_seconds(sign * seconds)
                .map_err(|e| invalid(&e.to_string()))?;
            return Ok(Self {
                name: format!(
                    "{}{:02}:{:02}",
                    if sign < 0 { '-' } else { '+' },
                    seconds / 3600,
                    seconds % 3600 / 60
                ),
                zone: jiff::tz::TimeZone::fixed(offset),
            });
        }
        static DATABASE: OnceLock<jiff::tz::TimeZoneDatabase> = OnceLock::new();
        let zone = DATABASE
            .get_or_init(jiff::tz::TimeZoneDatabase::bundled)
            .get(trimmed)
            .map_err(|_| invalid("not a time zone of the IANA database (e.g. Europe/Berlin)"))?;
        Ok(Self {
            name: zone.iana_name().unwrap_or(trimmed).to_owned(),
            zone,
        })
    }

    /// The zone's name: canonical IANA spelling, `UTC`, or `+HH:MM`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is UTC (the default).
    pub fn is_utc(&self) -> bool {
        self.name == "UTC"
    }

    /// The zone, for calendar arithmetic (schedules).
    pub(crate) fn tz(&self) -> &jiff::tz::TimeZone {
        &self.zone
    }

    /// The local civil time of `t` in this zone. Times outside jiff's range (years
    /// beyond ±9999) are clamped to it rather than refused.
    fn civil(&self, t: DateTime<Utc>) -> jiff::civil::DateTime {
        let seconds = t.timestamp();
        let at = jiff::Timestamp::from_second(seconds).unwrap_or(if seconds < 0 {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        self.zone.to_datetime(at)
    }
}

/// Seconds of `HH`, `HH:MM` or `HHMM` (hours 0-23, minutes 0-59).
fn parse_offset(text: &str) -> Option<i32> {
    let digits = |s: &str| -> Option<i32> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (hours, minutes) = match text.len() {
        2 => (digits(text)?, 0),
        4 => (digits(text.get(..2)?)?, digits(text.get(2..)?)?),
        5 if text.as_bytes()[2] == b':' => (digits(text.get(..2)?)?, digits(text.get(3..)?)?),
        _ => return None,
    };
    (hours < 24 && minutes < 60).then_some(hours * 3600 + minutes * 60)
}

impl Default for RetentionZone {
    fn default() -> Self {
        Self {
            name: "UTC".to_owned(),
            zone: jiff::tz::TimeZone::UTC,
        }
    }
}

impl PartialEq for RetentionZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for RetentionZone {}

impl fmt::Debug for RetentionZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetentionZone({})", self.name)
    }
}

impl fmt::Display for RetentionZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl FromStr for RetentionZone {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for RetentionZone {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for RetentionZone {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

/// `Option<Duration>` as a humantime string, read from a string or a number of seconds.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Seconds(u64),
        Human(String),
    }

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.collect_str(&humantime::format_duration(*d)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<Text>::deserialize(deserializer)? {
            None => Ok(None),
            Some(Text::Seconds(s)) => Ok(Some(Duration::from_secs(s))),
            Some(Text::Human(text)) => humantime::parse_duration(&text)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("duration {text:?}: {e}"))),
        }
    }
}

/// Why a snapshot is kept. A kept snapshot lists every reason that applies, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeepReason {
    /// One of the newest `keep_last`.
    Last,
    /// Taken within `keep_within` of now.
    Within,
    /// The newest of one of the last `hourly` hours.
    Hourly,
    /// The newest of one of the last `daily` days.
    Daily,
    /// The newest of one of the last `weekly` ISO weeks.
    Weekly,
    /// The newest of one of the last `monthly` months.
    Monthly,
    /// The newest of one of the last `yearly` years.
    Yearly,
    /// An on-demand snapshot within the cap and its time to live.
    OnDemand,
    /// A safety snapshot (it expires by its own time to live, not by this policy).
    Safety,
    /// The policy sets no keep rule, so it keeps every scheduled and clone snapshot.
    NoPolicy,
    /// Locked at the time of the decision.
    Locked,
    /// The newest snapshot of the history, never forgotten.
    Newest,
}

impl KeepReason {
    /// The snake_case name used in JSON (`last`, `on_demand`, `no_policy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::Last => "last",
            KeepReason::Within => "within",
            KeepReason::Hourly => "hourly",
            KeepReason::Daily => "daily",
            KeepReason::Weekly => "weekly",
            KeepReason::Monthly => "monthly",
            KeepReason::Yearly => "yearly",
            KeepReason::OnDemand => "on_demand",
            KeepReason::Safety => "safety",
            KeepReason::NoPolicy => "no_policy",
            KeepReason::Locked => "locked",
            KeepReason::Newest => "newest",
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeepReason::Last => "one of the newest (keep-last)",
            KeepReason::Within => "within the keep-within window",
            KeepReason::Hourly => "newest of its hour (hourly)",
            KeepReason::Daily => "newest of its day (daily)",
            KeepReason::Weekly => "newest of its week (weekly)",
            KeepReason::Monthly => "newest of its month (monthly)",
            KeepReason::Yearly => "newest of its year (yearly)",
            KeepReason::OnDemand => "on-demand, within the cap",
            KeepReason::Safety => "safety snapshot, expires by its own TTL",
            KeepReason::NoPolicy => "no retention rule set",
            KeepReason::Locked => "locked",
            KeepReason::Newest => "newest snapshot",
        })
    }
}

/// Why a snapshot is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ForgetReason {
    /// A scheduled or clone snapshot that no keep rule keeps.
    NotKept,
    /// An on-demand snapshot beyond the newest `on_demand_cap`.
    OnDemandCap,
    /// An on-demand snapshot older than `on_demand_ttl` (checked before the cap).
    OnDemandTtl,
}

impl ForgetReason {
    /// The snake_case name used in JSON (`not_kept`, `on_demand_cap`, `on_demand_ttl`).
    pub fn as_str(self) -> &'static str {
        match self {
            ForgetReason::NotKept => "not_kept",
            ForgetReason::OnDemandCap => "on_demand_cap",
            ForgetReason::OnDemandTtl => "on_demand_ttl",
        }
    }
}

impl fmt::Display for ForgetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForgetReason::NotKept => "not kept by any rule",
            ForgetReason::OnDemandCap => "beyond the on-demand cap",
            ForgetReason::OnDemandTtl => "on-demand, older than its time to live",
        })
    }
}

/// A snapshot the policy keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Which.
    pub snapshot: SnapshotId,
    /// Every reason that keeps it (never empty), in [`KeepReason`]'s order.
    pub reasons: Vec<KeepReason>,
}

impl fmt::Display for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.snapshot)?;
        for (i, reason) in self.reasons.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{reason}")?;
        }
        Ok(())
    }
}

/// A snapshot the policy forgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    /// Which.
    pub snapshot: SnapshotId,
    /// Why.
    pub reason: ForgetReason,
}

impl fmt::Display for Forgotten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.snapshot, self.reason)
    }
}

/// What [`RetentionPolicy::apply`] decided: every snapshot in exactly one list, each
/// list newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionDecision {
    /// The snapshots kept, with their reasons.
    pub keep: Vec<Kept>,
    /// The snapshots forgotten, with the reason.
    pub forget: Vec<Forgotten>,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::model::{AccountId, BackupStats, DestinationId, SnapshotStatus};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn snapshot(id: u128, created: DateTime<Utc>, kind: SnapshotKind) -> Snapshot {
        Snapshot {
            id: SnapshotId::from_uuid(Uuid::from_u128(id)),
            account: AccountId::from_uuid(Uuid::from_u128(1)),
            job: None,
            destination: DestinationId::from_uuid(Uuid::from_u128(2)),
            created,
            kind,
            status: SnapshotStatus::Complete,
            items: Vec::new(),
            encrypted: false,
            locked: false,
            lock_until: None,
            identity: None,
            task: None,
            stats: BackupStats::default(),
        }
    }

    /// Scheduled snapshots at the given times, ids 1, 2, ... in the order given.
    fn scheduled(times: &[&str]) -> Vec<Snapshot> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| snapshot(i as u128 + 1, at(t), SnapshotKind::Scheduled))
            .collect()
    }

    fn id(n: u128) -> SnapshotId {
        SnapshotId::from_uuid(Uuid::from_u128(n))
    }

    fn kept_ids(d: &RetentionDecision) -> Vec<SnapshotId> {
        d.keep.iter().map(|k| k.snapshot).collect()
    }

    fn reasons(d: &RetentionDecision, n: u128) -> Vec<KeepReason> {
        d.keep
            .iter()
            .find(|k| k.snapshot == id(n))
            .map(|k| k.reasons.clone())
            .unwrap_or_default()
    }

    fn forgotten(d: &RetentionDecision, n: u128) -> Option<ForgetReason> {
        d.forget
            .iter()
            .find(|f| f.snapshot == id(n))
            .map(|f| f.reason)
    }

    const NOW: &str = "2025-06-30T00:00:00Z";

    #[test]
    fn keep_last_keeps_the_newest_n_and_lists_newest_first() {
        let history = scheduled(&[
            "2025-06-01T01:00:00Z",
            "2025-06-01T02:00:00Z",
            "2025-06-01T03:00:00Z",
            "2025-06-01T04:00:00Z",
        ]);
        let policy = RetentionPolicy {
            keep_last: Some(2),
            ..Default::default()
        };
        let d = policy.apply(&history, at(NOW));
        assert_eq!(kept_ids(&d), [id(4), id(3)]);
        assert_eq!(reasons(&d, 4), [KeepReason::Last, KeepReason::Newest]);
        assert_eq!(reasons(&d, 3), [KeepReason::Last]);
        let forgotten: Vec<_> = d.forget.iter().map(|f| (f.snapshot, f.reason)).collect();
        assert_eq!(
            forgotten,
            [
                (id(2), ForgetReason::NotKept),
                (id(1), ForgetReason::NotKept)
            ]
        );
    }

    fn kept_by(policy: &RetentionPolicy, times: &[&str]) -> Vec<SnapshotId> {
        kept_ids(&policy.apply(&scheduled(times), at(NOW)))
    }

    #[test]
    fn bucket_rules_keep_the_newest_of_each_of_the_last_n_buckets() {
        let hourly = RetentionPolicy {
            hourly: Some(2),
            ..Default::default()
        };
        let times = [
            "2025-06-01T10:05:00Z",
            "2025-06-01T10:40:00Z",
            "2025-06-01T11:10:00Z",
        ];
        assert_eq!(kept_by(&hourly, &times), [id(3), id(2)]);

        // An empty day (06-03) is no bucket: the two newest days holding one count.
        let daily = RetentionPolicy {
            daily: Some(2),
            ..Default::default()
        };
        let times = [
            "2025-06-01T08:00:00Z",
            "2025-06-01T20:00:00Z",
            "2025-06-02T08:00:00Z",
            "2025-06-04T08:00:00Z",
        ];
        assert_eq!(kept_by(&daily, &times), [id(4), id(3)]);

        // ISO weeks: Sunday 2024-12-29 is week 52 of 2024, Monday 2024-12-30 already week 1
        // of 2025, like Sunday 2025-01-05.
        let weekly = RetentionPolicy {
            weekly: Some(2),
            ..Default::default()
        };
        let times = [
            "2024-12-29T12:00:00Z",
            "2024-12-30T12:00:00Z",
            "2025-01-05T12:00:00Z",
        ];
        assert_eq!(kept_by(&weekly, &times), [id(3), id(1)]);

        let mut monthly = RetentionPolicy {
            monthly: Some(1),
            ..Default::default()
        };
        let times = [
            "2025-01-15T12:00:00Z",
            "2025-01-31T12:00:00Z",
            "2025-02-01T12:00:00Z",
        ];
        assert_eq!(kept_by(&monthly, &times), [id(3)]);
        monthly.monthly = Some(2);
        assert_eq!(kept_by(&monthly, &times), [id(3), id(2)]);

        let yearly = RetentionPolicy {
            yearly: Some(2),
            ..Default::default()
        };
        let times = [
            "2022-06-01T00:00:00Z",
            "2023-01-01T00:00:00Z",
            "2023-12-31T23:00:00Z",
        ];
        let d = yearly.apply(&scheduled(&times), at(NOW));
        assert_eq!(kept_ids(&d), [id(3), id(1)]);
        assert_eq!(reasons(&d, 1), [KeepReason::Yearly]);
    }

    #[test]
    fn rules_combine_and_every_reason_is_listed() {
        let policy = RetentionPolicy {
            keep_last: Some(1),
            daily: Some(2),
            monthly: Some(3),
            ..Default::default()
        };
        let times = [
            "2025-05-10T12:00:00Z",
            "2025-06-01T08:00:00Z",
            "2025-06-02T08:00:00Z",
        ];
        let d = policy.apply(&scheduled(&times), at(NOW));
        use KeepReason::*;
        assert_eq!(reasons(&d, 3), [Last, Daily, Monthly, Newest]);
        assert_eq!(reasons(&d, 2), [Daily]);
        assert_eq!(reasons(&d, 1), [Monthly]);
        assert!(d.forget.is_empty());
    }

    #[test]
    fn buckets_follow_the_policy_time_zone() {
        // 23:30 UTC on 1 January is 00:30 on 2 January in Berlin.
        let times = [
            "2023-12-31T12:00:00Z",
            "2024-01-01T22:00:00Z",
            "2024-01-01T23:30:00Z",
        ];
        let mut policy = RetentionPolicy {
            daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept_by(&policy, &times), [id(3), id(1)]);
        policy.time_zone = "Europe/Berlin".parse().unwrap();
        assert_eq!(kept_by(&policy, &times), [id(3), id(2)]);
        // A fixed offset west of UTC moves 02:00 UTC back into the day before.
        let times = [
            "2024-01-01T12:00:00Z",
            "2024-01-02T02:00:00Z",
            "2024-01-02T12:00:00Z",
        ];
        policy.time_zone = "UTC".parse().unwrap();
        assert_eq!(kept_by(&policy, &times), [id(3), id(1)]);
        policy.time_zone = "-05:00".parse().unwrap();
        assert_eq!(kept_by(&policy, &times), [id(3), id(2)]);
    }

    #[test]
    fn keep_within_keeps_everything_since_now_minus_the_window() {
        let policy: RetentionPolicy = serde_json::from_value(serde_json::json!({
            "keep_last": null, "hourly": null, "daily": null, "weekly": null,
            "monthly": null, "yearly": null, "on_demand_cap": "default",
            "keep_within": "7d",
        }))
        .unwrap();
        assert_eq!(policy.keep_within, Some(Duration::from_secs(7 * 86_400)));
        let times = [
            "2025-05-31T00:00:00Z", // 30 days old
            "2025-06-22T23:59:59Z", // a second too old
            "2025-06-23T00:00:00Z", // exactly 7 days
            "2025-06-29T00:00:00Z",
        ];
        let d = policy.apply(&scheduled(&times), at(NOW));
        assert_eq!(kept_ids(&d), [id(4), id(3)]);
        assert_eq!(reasons(&d, 3), [KeepReason::Within]);
        assert_eq!(forgotten(&d, 2), Some(ForgetReason::NotKept));
        // A window longer than time itself keeps everything, without overflowing.
        let huge = RetentionPolicy {
            keep_within: Some(Duration::from_secs(u64::MAX)),
            ..Default::default()
        };
        assert!(huge.apply(&scheduled(&times), at(NOW)).forget.is_empty());
    }

    /// Five on-demand snapshots on days 1-5 of June and a scheduled one on day 6.
    fn on_demand_history() -> Vec<Snapshot> {
        let mut history: Vec<_> = (1..=5)
            .map(|day| {
                let created = at(&format!("2025-06-0{day}T00:00:00Z"));
                snapshot(day, created, SnapshotKind::OnDemand)
            })
            .collect();
        history.push(snapshot(
            6,
            at("2025-06-06T00:00:00Z"),
            SnapshotKind::Scheduled,
        ));
        history
    }

    #[test]
    fn on_demand_snapshots_are_capped_and_expire_apart_from_the_keep_rules() {
        let now = at("2025-06-06T00:00:00Z");
        let mut policy = RetentionPolicy {
            keep_last: Some(1),
            on_demand_cap: Limit::Max(2),
            ..Default::default()
        };
        let d = policy.apply(&on_demand_history(), now);
        assert_eq!(kept_ids(&d), [id(6), id(5), id(4)]);
        assert_eq!(reasons(&d, 5), [KeepReason::OnDemand]);
        for n in 1..=3 {
            assert_eq!(forgotten(&d, n), Some(ForgetReason::OnDemandCap));
        }

        // Day 4 is 48 hours old: past a 36-hour TTL although within the cap.
        policy.on_demand_ttl = Some(Duration::from_secs(36 * 3600));
        let d = policy.apply(&on_demand_history(), now);
        assert_eq!(kept_ids(&d), [id(6), id(5)]);
        for n in 1..=4 {
            assert_eq!(forgotten(&d, n), Some(ForgetReason::OnDemandTtl));
        }

        // Only Max(n) caps: Default (resolved by the caller), Unlimited and Disabled keep all.
        for cap in [Limit::Default, Limit::Unlimited, Limit::Disabled] {
            let policy = RetentionPolicy {
                keep_last: Some(1),
                on_demand_cap: cap,
                ..Default::default()
            };
            assert!(policy.apply(&on_demand_history(), now).forget.is_empty());
        }
    }

    #[test]
    fn safety_snapshots_are_kept_whatever_the_rules() {
        let mut history = scheduled(&["2025-06-01T00:00:00Z", "2025-06-03T00:00:00Z"]);
        history.push(snapshot(
            3,
            at("2025-06-02T00:00:00Z"),
            SnapshotKind::Safety,
        ));
        let policy = RetentionPolicy {
            keep_last: Some(1),
            ..Default::default()
        };
        let d = policy.apply(&history, at(NOW));
        assert_eq!(kept_ids(&d), [id(2), id(3)]);
        assert_eq!(reasons(&d, 3), [KeepReason::Safety]);
        assert_eq!(forgotten(&d, 1), Some(ForgetReason::NotKept));
    }

    #[test]
    fn locks_protect_until_their_ttl_ends() {
        let now = at(NOW);
        let mut history = scheduled(&[
            "2025-06-01T00:00:00Z",
            "2025-06-02T00:00:00Z",
            "2025-06-03T00:00:00Z",
            "2025-06-04T00:00:00Z",
        ]);
        history[0].locked = true; // until unlocked
        history[1].locked = true;
        history[1].lock_until = Some(at("2025-07-01T00:00:00Z"));
        history[2].locked = true;
        history[2].lock_until = Some(now); // over at now
        let mut on_demand = snapshot(5, at("2025-05-01T00:00:00Z"), SnapshotKind::OnDemand);
        on_demand.locked = true;
        history.push(on_demand);
        let policy = RetentionPolicy {
            keep_last: Some(1),
            on_demand_cap: Limit::Max(0),
            on_demand_ttl: Some(Duration::from_secs(86_400)),
            ..Default::default()
        };
        let d = policy.apply(&history, now);
        assert_eq!(kept_ids(&d), [id(4), id(2), id(1), id(5)]);
        assert_eq!(reasons(&d, 1), [KeepReason::Locked]);
        assert_eq!(reasons(&d, 2), [KeepReason::Locked]);
        assert_eq!(reasons(&d, 5), [KeepReason::Locked]);
        assert_eq!(forgotten(&d, 3), Some(ForgetReason::NotKept));
    }

    #[test]
    fn the_newest_snapshot_is_never_forgotten_and_ties_go_by_id() {
        let created = at("2025-06-01T00:00:00Z");
        let history = vec![
            snapshot(7, created, SnapshotKind::OnDemand),
            snapshot(9, created, SnapshotKind::OnDemand),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(1),
            on_demand_cap: Limit::Max(0),
            ..Default::default()
        };
        let d = policy.apply(&history, at(NOW));
        assert_eq!(kept_ids(&d), [id(9)]);
        assert_eq!(reasons(&d, 9), [KeepReason::Newest]);
        assert_eq!(forgotten(&d, 7), Some(ForgetReason::OnDemandCap));
    }

    #[test]
    fn a_policy_without_keep_rules_keeps_every_scheduled_and_clone_snapshot() {
        let mut history = scheduled(&["2025-06-01T00:00:00Z", "2025-06-02T00:00:00Z"]);
        history.push(snapshot(3, at("2025-06-03T00:00:00Z"), SnapshotKind::Clone));
        history.push(snapshot(
            4,
            at("2025-05-01T00:00:00Z"),
            SnapshotKind::OnDemand,
        ));
        history.push(snapshot(
            5,
            at("2025-05-02T00:00:00Z"),
            SnapshotKind::OnDemand,
        ));
        let policy = RetentionPolicy {
            on_demand_cap: Limit::Max(1),
            ..Default::default()
        };
        assert!(policy.keeps_everything());
        let d = policy.apply(&history, at(NOW));
        assert_eq!(reasons(&d, 3), [KeepReason::NoPolicy, KeepReason::Newest]);
        assert_eq!(reasons(&d, 1), [KeepReason::NoPolicy]);
        assert_eq!(forgotten(&d, 4), Some(ForgetReason::OnDemandCap));
        assert!(
            !RetentionPolicy {
                keep_within: Some(Duration::from_secs(60)),
                ..Default::default()
            }
            .keeps_everything()
        );
    }

    #[test]
    fn old_json_reads_and_new_fields_round_trip() {
        let old = r#"{"keep_last":7,"hourly":null,"daily":14,"weekly":null,
            "monthly":null,"yearly":null,"on_demand_cap":{"max":3}}"#;
        let policy: RetentionPolicy = serde_json::from_str(old).unwrap();
        assert_eq!(policy.keep_last, Some(7));
        assert_eq!(policy.on_demand_cap, Limit::Max(3));
        assert!(policy.time_zone.is_utc() && policy.keep_within.is_none());
        // Unset new fields are left out, so the JSON is what older readers know.
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(
            json,
            serde_json::from_str::<serde_json::Value>(old).unwrap()
        );

        let policy = RetentionPolicy {
            keep_within: Some(Duration::from_secs(30 * 86_400)),
            time_zone: "europe/berlin".parse().unwrap(),
            on_demand_ttl: Some(Duration::from_secs(5400)),
            ..policy
        };
        let json = serde_json::to_value(&policy).unwrap();
        assert_eq!(json["keep_within"], "30days");
        assert_eq!(json["time_zone"], "Europe/Berlin");
        assert_eq!(json["on_demand_ttl"], "1h 30m");
        let back: RetentionPolicy = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, policy);

        let mut seconds = json.clone();
        seconds["on_demand_ttl"] = 5400.into();
        assert_eq!(
            serde_json::from_value::<RetentionPolicy>(seconds).unwrap(),
            policy
        );
        let mut bad = json.clone();
        bad["time_zone"] = "Mars/Olympus_Mons".into();
        let err = serde_json::from_value::<RetentionPolicy>(bad).unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus_Mons"), "{err}");
        let mut bad = json;
        bad["keep_within"] = "a fortnight".into();
        assert!(serde_json::from_value::<RetentionPolicy>(bad).is_err());
    }

    #[test]
    fn zones_parse_or_fail_with_a_typed_error() {
        for (given, name) in [
            ("Europe/Berlin", "Europe/Berlin"),
            ("america/new_york", "America/New_York"),
            ("utc", "UTC"),
            (" UTC ", "UTC"),
            ("+02:00", "+02:00"),
            ("-0330", "-03:30"),
            ("+05", "+05:00"),
        ] {
            assert_eq!(RetentionZone::new(given).unwrap().name(), name, "{given}");
        }
        for bad in [
            "",
            "local",
            "Mars/Olympus_Mons",
            "+24:00",
            "+2:00",
            "+02:60",
            "+02:0x",
        ] {
            let err = RetentionZone::new(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Invalid {
                        field: "time zone",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn validate_refuses_zero_counts_and_windows() {
        assert!(RetentionPolicy::default().validate().is_ok());
        let zero_count = RetentionPolicy {
            weekly: Some(0),
            ..Default::default()
        };
        assert!(matches!(zero_count.validate(), Err(Error::Invalid { .. })));
        let zero_ttl = RetentionPolicy {
            on_demand_ttl: Some(Duration::ZERO),
            ..Default::default()
        };
        assert!(zero_ttl.validate().is_err());
    }

    #[test]
    fn decisions_print_and_serialize_for_the_cli() {
        let forgotten = Forgotten {
            snapshot: id(1),
            reason: ForgetReason::NotKept,
        };
        assert_eq!(
            forgotten.to_string(),
            "00000000-0000-0000-0000-000000000001: not kept by any rule"
        );
        let kept = Kept {
            snapshot: id(2),
            reasons: vec![KeepReason::Daily, KeepReason::Locked],
        };
        assert!(
            kept.to_string()
                .ends_with(": newest of its day (daily); locked")
        );
        let decision = RetentionDecision {
            keep: vec![kept],
            forget: vec![Forgotten {
                reason: ForgetReason::OnDemandTtl,
                ..forgotten
            }],
        };
        let json = serde_json::to_value(&decision).unwrap();
        assert_eq!(
            json["keep"][0]["reasons"],
            serde_json::json!(["daily", "locked"])
        );
        assert_eq!(json["forget"][0]["reason"], "on_demand_ttl");
        for reason in [KeepReason::OnDemand, KeepReason::NoPolicy] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert_eq!(
            serde_json::to_value(ForgetReason::OnDemandCap).unwrap(),
            ForgetReason::OnDemandCap.as_str()
        );
    }

    // --- Properties over generated histories ---

    const ZONES: [&str; 6] = [
        "UTC",
        "Europe/Berlin",
        "America/St_Johns",
        "Australia/Lord_Howe",
        "+05:45",
        "-03:00",
    ];

    fn policy_strategy() -> impl Strategy<Value = RetentionPolicy> {
        let count = || proptest::option::weighted(0.5, 0u32..6);
        let duration =
            |max: u64| proptest::option::weighted(0.3, (0..max).prop_map(Duration::from_secs));
        let cap = prop_oneof![
            Just(Limit::Default),
            Just(Limit::Unlimited),
            Just(Limit::Disabled),
            (0u32..4).prop_map(Limit::Max),
        ];
        (
            (count(), count(), count(), count(), count(), count()),
            duration(400 * 86_400),
            0..ZONES.len(),
            cap,
            duration(60 * 86_400),
        )
            .prop_map(
                |(
                    (keep_last, hourly, daily, weekly, monthly, yearly),
                    keep_within,
                    zone,
                    cap,
                    ttl,
                )| {
                    RetentionPolicy {
                        keep_last,
                        hourly,
                        daily,
                        weekly,
                        monthly,
                        yearly,
                        on_demand_cap: cap,
                        keep_within,
                        time_zone: ZONES[zone].parse().unwrap(),
                        on_demand_ttl: ttl,
                    }
                },
            )
    }

    /// Up to 40 snapshots on whole minutes over 2 days, 60 days or 2 years (so that
    /// buckets and even creation times collide), of random kinds and locks; and a `now`
    /// from the start of the span to 3 days past its end.
    fn history_strategy() -> impl Strategy<Value = (Vec<Snapshot>, DateTime<Utc>)> {
        let base = at("2023-01-01T00:00:00Z");
        prop_oneof![Just(2i64), Just(60), Just(730)].prop_flat_map(move |days| {
            let minutes = days * 24 * 60;
            let spec = (
                0..minutes,
                any::<u64>(),
                prop_oneof![
                    6 => Just(SnapshotKind::Scheduled),
                    2 => Just(SnapshotKind::OnDemand),
                    1 => Just(SnapshotKind::Safety),
                    1 => Just(SnapshotKind::Clone),
                ],
                prop_oneof![6 => Just(None), 1 => Just(Some(None)), 2 => (0..minutes + 4320).prop_map(|m| Some(Some(m)))],
            );
            (
                proptest::collection::vec(spec, 0..40),
                0..minutes + 3 * 24 * 60,
            )
                .prop_map(move |(specs, now)| {
                    let minute = |m: i64| base + TimeDelta::minutes(m);
                    let history = specs
                        .into_iter()
                        .enumerate()
                        .map(|(i, (created, high, kind, lock))| {
                            let id = (u128::from(high) << 64) | i as u128;
                            let mut s = snapshot(id, minute(created), kind);
                            if let Some(until) = lock {
                                s.locked = true;
                                s.lock_until = until.map(minute);
                            }
                            s
                        })
                        .collect();
                    (history, minute(now))
                })
        })
    }

    /// Snapshots newest first, as the policy orders them.
    fn newest_first(history: &[Snapshot]) -> Vec<&Snapshot> {
        let mut order: Vec<_> = history.iter().collect();
        order.sort_by_key(|s| std::cmp::Reverse((s.created, s.id)));
        order
    }

    /// The bucket label of `t`, drawn by jiff's strftime: a second road to the buckets.
    fn label(zone: &RetentionZone, t: DateTime<Utc>, format: &str) -> String {
        jiff::Timestamp::from_second(t.timestamp())
            .unwrap()
            .to_zoned_datetime(zone.zone.clone())
            .strftime(format)
            .to_string()
    }

    /// The snapshots a rule must keep, computed the slow way.
    fn expected(
        policy: &RetentionPolicy,
        history: &[Snapshot],
        now: DateTime<Utc>,
    ) -> HashMap<KeepReason, HashSet<SnapshotId>> {
        let rotated: Vec<_> = newest_first(history)
            .into_iter()
            .filter(|s| rotated(s))
            .collect();
        let mut out = HashMap::new();
        if policy.keeps_everything() {
            return out;
        }
        if let Some(n) = policy.keep_last {
            out.insert(
                KeepReason::Last,
                rotated.iter().take(n as usize).map(|s| s.id).collect(),
            );
        }
        if let Some(d) = policy.keep_within {
            let cutoff = now - TimeDelta::from_std(d).unwrap();
            out.insert(
                KeepReason::Within,
                rotated
                    .iter()
                    .filter(|s| s.created >= cutoff)
                    .map(|s| s.id)
                    .collect(),
            );
        }
        for (n, reason, format) in [
            (policy.hourly, KeepReason::Hourly, "%Y-%m-%d %H"),
            (policy.daily, KeepReason::Daily, "%Y-%m-%d"),
            (policy.weekly, KeepReason::Weekly, "%G-W%V"),
            (policy.monthly, KeepReason::Monthly, "%Y-%m"),
            (policy.yearly, KeepReason::Yearly, "%Y"),
        ] {
            let Some(n) = n else { continue };
            let mut labels = Vec::new();
            let mut newest = HashMap::new();
            for s in &rotated {
                let l = label(&policy.time_zone, s.created, format);
                if !newest.contains_key(&l) {
                    newest.insert(l.clone(), s.id);
                    labels.push(l);
                }
            }
            out.insert(
                reason,
                labels.iter().take(n as usize).map(|l| newest[l]).collect(),
            );
        }
        out
    }

    fn shuffled(history: &[Snapshot], mut seed: u64) -> Vec<Snapshot> {
        let mut out = history.to_vec();
        for i in (1..out.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decisions_hold_their_invariants(
            policy in policy_strategy(),
            (history, now) in history_strategy(),
            seed in 1u64..,
        ) {
            let d = policy.apply(&history, now);

            // Every snapshot in exactly one list, each list newest first.
            let mut seen: Vec<_> = kept_ids(&d).into_iter().chain(d.forget.iter().map(|f| f.snapshot)).collect();
            prop_assert_eq!(seen.len(), history.len());
            seen.sort();
            seen.dedup();
            prop_assert_eq!(seen.len(), history.len());
            let by_id: HashMap<_, _> = history.iter().map(|s| (s.id, s)).collect();
            let order = |ids: Vec<SnapshotId>| ids.windows(2).all(|w| {
                (by_id[&w[0]].created, w[0]) > (by_id[&w[1]].created, w[1])
            });
            prop_assert!(order(kept_ids(&d)));
            prop_assert!(order(d.forget.iter().map(|f| f.snapshot).collect()));
            prop_assert!(d.keep.iter().all(|k| !k.reasons.is_empty()));

            // Locked-at-now and the newest are never forgotten.
            let forgotten: HashSet<_> = d.forget.iter().map(|f| f.snapshot).collect();
            for s in &history {
                if s.is_locked_at(now) {
                    prop_assert!(!forgotten.contains(&s.id));
                }
            }
            if let Some(newest) = newest_first(&history).first() {
                prop_assert_eq!(&d.keep[0].snapshot, &newest.id);
                prop_assert!(d.keep[0].reasons.contains(&KeepReason::Newest));
            }

            // Each keep rule keeps exactly what the slow way says.
            for (reason, want) in expected(&policy, &history, now) {
                let got: HashSet<_> = d.keep.iter().filter(|k| k.reasons.contains(&reason)).map(|k| k.snapshot).collect();
                prop_assert_eq!(got, want, "{:?}", reason);
            }

            // The input order does not matter.
            prop_assert_eq!(&policy.apply(&shuffled(&history, seed), now), &d);

            // Applying the policy again to what it kept keeps all of it, for the same reasons:
            // every rule's picks among the kept are the picks among all (the newest n of a
            // set, the newest of its n newest buckets) and they were all kept.
            let kept: HashSet<_> = kept_ids(&d).into_iter().collect();
            let rest: Vec<_> = history.iter().filter(|s| kept.contains(&s.id)).cloned().collect();
            let again = policy.apply(&rest, now);
            prop_assert!(again.forget.is_empty(), "{:?}", again.forget);
            prop_assert_eq!(again.keep, d.keep);
        }
    }
}
