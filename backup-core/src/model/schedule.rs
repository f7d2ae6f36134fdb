//! When jobs run: schedules, their CLI spelling, and next-run times.
//!
//! A schedule names *slots*: instants at which a run is due (every N hours from midnight,
//! daily at a time, on some weekdays or month days at a time, all in the job's time zone,
//! plus the job's delay). The scheduler keeps, per job, the slot of its last run; the next
//! run is the first slot after it. When the server was down across several slots, the run
//! that catches up takes the latest slot that has passed, so a missed run runs once, not
//! once per missed slot ([`Schedule::due`]). A clock set back never makes a slot due twice:
//! the next slot is always after the last one run.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::JobId;
use super::retention::RetentionZone;
use crate::error::{Error, Result};

/// A time of day, `HH:MM` (00:00-23:59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeOfDay {
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
}

impl TimeOfDay {
    /// A validated time of day.
    pub fn new(hour: u8, minute: u8) -> Result<Self> {
        if hour > 23 || minute > 59 {
            return Err(Error::invalid(
                "schedule",
                format!("{hour:02}:{minute:02} is not a time of day (00:00-23:59)"),
            ));
        }
        Ok(Self { hour, minute })
    }

    /// Parses `HH:MM` (or `H:MM`).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::invalid("schedule", format!("{text:?}: expected a time HH:MM"));
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return Err(bad());
        }
        let hour = h.parse().map_err(|_| bad())?;
        let minute = m.parse().map_err(|_| bad())?;
        Self::new(hour, minute)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// When a job runs. Times are in the job's time zone ([`crate::model::Job::time_zone`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ScheduleRepr", into = "ScheduleRepr")]
pub enum Schedule {
    /// Only when started by hand (`job run`), or by "create snapshot" for the on-demand job.
    Manual,
    /// Every `every` hours, counted from local midnight: with 6, at 00:00, 06:00, 12:00 and
    /// 18:00 each day (with 5, at 00:00, 05:00, ..., 20:00, then 00:00 again).
    Hourly {
        /// 1-24.
        every: u8,
    },
    /// Every day at a time.
    Daily {
        /// The time of day.
        at: TimeOfDay,
    },
    /// On some weekdays at a time.
    Weekly {
        /// Weekdays, 0 = Monday to 6 = Sunday; sorted, no repeats, at least one.
        days: Vec<u8>,
        /// The time of day.
        at: TimeOfDay,
    },
    /// On some days of the month at a time. A day past the month's end (29-31) means the
    /// month's last day, so `31` runs on the last day of every month.
    Monthly {
        /// Days of the month, 1-31; sorted, no repeats, at least one.
        days: Vec<u8>,
        /// The time of day.
        at: TimeOfDay,
    },
    /// When a run of another job finishes (plus the delay).
    After {
        /// The job whose runs trigger this one.
        job: JobId,
    },
}

impl Schedule {
    /// Checks every field's range; day lists must be non-empty (they are sorted and
    /// deduplicated by [`Schedule::normalized`]).
    pub fn validate(&self) -> Result<()> {
        let check_days = |days: &[u8], range: std::ops::RangeInclusive<u8>, what: &str| {
            if days.is_empty() {
                return Err(Error::invalid(
                    "schedule",
                    format!("a {what} schedule names at least one day"),
                ));
            }
            match days.iter().find(|d| !range.contains(d)) {
                Some(d) => Err(Error::invalid(
                    "schedule",
                    format!(
                        "day {d} of a {what} schedule is not in {}-{}",
                        range.start(),
                        range.end()
                    ),
                )),
                None => Ok(()),
            }
        };
        match self {
            Schedule::Manual | Schedule::After { .. } => Ok(()),
            Schedule::Hourly { every } if (1..=24).contains(every) => Ok(()),
            Schedule::Hourly { every } => Err(Error::invalid(
                "schedule",
                format!("every {every} hours: expected 1-24"),
            )),
            Schedule::Daily { at } => TimeOfDay::new(at.hour, at.minute).map(|_| ()),
            Schedule::Weekly { days, at } => {
                check_days(days, 0..=6, "weekly")?;
                TimeOfDay::new(at.hour, at.minute).map(|_| ())
            }
            Schedule::Monthly { days, at } => {
                check_days(days, 1..=31, "monthly")?;
                TimeOfDay::new(at.hour, at.minute).map(|_| ())
            }
        }
    }

    /// The same schedule with its day lists sorted and deduplicated.
    pub fn normalized(mut self) -> Self {
        if let Schedule::Weekly { days, .. } | Schedule::Monthly { days, .. } = &mut self {
            days.sort_unstable();
            days.dedup();
        }
        self
    }

    /// Whether runs are started by the clock (not manual, not after another job).
    pub fn is_timed(&self) -> bool {
        !matches!(self, Schedule::Manual | Schedule::After { .. })
    }

    /// Parses the CLI spelling: `manual`, `hourly:N`, `daily@HH:MM`,
    /// `weekly:DAYS@HH:MM` (DAYS: `mon,wed,fri`, full names, or ISO numbers 1-7 with 1 =
    /// Monday), `monthly:DAYS@HH:MM` (DAYS: `1,15,31`) or `after:JOB`; `job` turns the
    /// name after `after:` into the job's id.
    pub fn parse_with(text: &str, job: impl FnOnce(&str) -> Result<JobId>) -> Result<Self> {
        let text = text.trim();
        let bad = |why: &str| Error::invalid("schedule", format!("{text:?}: {why}"));
        let spelling = "expected manual, hourly:N, daily@HH:MM, weekly:DAYS@HH:MM, \
                        monthly:DAYS@HH:MM or after:JOB";
        let schedule = if text == "manual" {
            Schedule::Manual
        } else if let Some(n) = text.strip_prefix("hourly:") {
            Schedule::Hourly {
                every: n
                    .parse()
                    .map_err(|_| bad("hourly:N takes a number of hours"))?,
            }
        } else if let Some(at) = text.strip_prefix("daily@") {
            Schedule::Daily {
                at: TimeOfDay::parse(at)?,
            }
        } else if let Some(rest) = text.strip_prefix("weekly:") {
            let (days, at) = rest.split_once('@').ok_or_else(|| bad(spelling))?;
            let days = days
                .split(',')
                .map(|d| parse_weekday(d.trim()).ok_or_else(|| bad("unknown weekday")))
                .collect::<Result<Vec<_>>>()?;
            Schedule::Weekly {
                days,
                at: TimeOfDay::parse(at)?,
            }
        } else if let Some(rest) = text.strip_prefix("monthly:") {
            let (days, at) = rest.split_once('@').ok_or_else(|| bad(spelling))?;
            let days = days
                .split(',')
                .map(|d| {
                    d.trim()
                        .parse::<u8>()
                        .map_err(|_| bad("monthly days are numbers 1-31"))
                })
                .collect::<Result<Vec<_>>>()?;
            Schedule::Monthly {
                days,
                at: TimeOfDay::parse(at)?,
            }
        } else if let Some(name) = text.strip_prefix("after:") {
            if name.trim().is_empty() {
                return Err(bad("after:JOB names a job"));
            }
            Schedule::After {
                job: job(name.trim())?,
            }
        } else {
            return Err(bad(spelling));
        };
        let schedule = schedule.normalized();
        schedule.validate()?;
        Ok(schedule)
    }

    /// The CLI spelling ([`Schedule::parse_with`]'s input); `after:` takes `job_name`.
    pub fn spelling(&self, job_name: impl FnOnce(JobId) -> String) -> String {
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let list = |days: &[u8], name: bool| {
            days.iter()
                .map(|&d| {
                    if name {
                        DAYS.get(usize::from(d)).copied().unwrap_or("?").to_owned()
                    } else {
                        d.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Schedule::Manual => "manual".into(),
            Schedule::Hourly { every } => format!("hourly:{every}"),
            Schedule::Daily { at } => format!("daily@{at}"),
            Schedule::Weekly { days, at } => format!("weekly:{}@{at}", list(days, true)),
            Schedule::Monthly { days, at } => format!("monthly:{}@{at}", list(days, false)),
            Schedule::After { job } => format!("after:{}", job_name(*job)),
        }
    }
}

/// `mon`..`sun`, `monday`..`sunday` (any case) or ISO `1`..`7` (1 = Monday), as 0-6.
fn parse_weekday(text: &str) -> Option<u8> {
    const NAMES: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let lower = text.to_ascii_lowercase();
    if let Ok(n) = lower.parse::<u8>() {
        return (1..=7).contains(&n).then(|| n - 1);
    }
    NAMES
        .iter()
        .position(|name| lower.len() >= 3 && name.starts_with(&lower))
        .map(|i| i as u8)
}

/// The stored shape of a [`Schedule`]: flat fields under an `every` tag. It also reads the
/// shape of earlier versions (`hours`, a single `weekday`, a single `day`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ScheduleRepr {
    every: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hours: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hour: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minute: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    days: Option<Vec<u8>>,
    #[serde(default, skip_serializing)]
    weekday: Option<u8>,
    #[serde(default, skip_serializing)]
    day: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<JobId>,
}

impl TryFrom<ScheduleRepr> for Schedule {
    type Error = Error;
    fn try_from(r: ScheduleRepr) -> Result<Self> {
        let missing = |field: &str| {
            Error::invalid(
                "schedule",
                format!("a {} schedule needs `{field}`", r.every),
            )
        };
        let at = || -> Result<TimeOfDay> {
            TimeOfDay::new(
                r.hour.ok_or_else(|| missing("hour"))?,
                r.minute.unwrap_or(0),
            )
        };
        let schedule = match r.every.as_str() {
            "manual" => Schedule::Manual,
            "hourly" | "hours" => Schedule::Hourly {
                every: r.hours.ok_or_else(|| missing("hours"))?,
            },
            "daily" => Schedule::Daily { at: at()? },
            "weekly" => Schedule::Weekly {
                days: r
                    .days
                    .clone()
                    .or(r.weekday.map(|d| vec![d]))
                    .ok_or_else(|| missing("days"))?,
                at: at()?,
            },
            "monthly" => Schedule::Monthly {
                days: r
                    .days
                    .clone()
                    .or(r.day.map(|d| vec![d]))
                    .ok_or_else(|| missing("days"))?,
                at: at()?,
            },
            "after" => Schedule::After {
                job: r.job.ok_or_else(|| missing("job"))?,
            },
            other => {
                return Err(Error::invalid(
                    "schedule",
                    format!("unknown schedule kind {other:?}"),
                ));
            }
        }
        .normalized();
        schedule.validate()?;
        Ok(schedule)
    }
}

impl From<Schedule> for ScheduleRepr {
    fn from(s: Schedule) -> Self {
        let with_at = |every: &str, at: TimeOfDay, days: Option<Vec<u8>>| ScheduleRepr {
            every: every.into(),
            hour: Some(at.hour),
            minute: Some(at.minute),
            days,
            ..Default::default()
        };
        match s {
            Schedule::Manual => ScheduleRepr {
                every: "manual".into(),
                ..Default::default()
            },
            Schedule::Hourly { every } => ScheduleRepr {
                every: "hourly".into(),
                hours: Some(every),
                ..Default::default()
            },
            Schedule::Daily { at } => with_at("daily", at, None),
            Schedule::Weekly { days, at } => with_at("weekly", at, Some(days)),
            Schedule::Monthly { days, at } => with_at("monthly", at, Some(days)),
            Schedule::After { job } => ScheduleRepr {
                every: "after".into(),
                job: Some(job),
                ..Default::default()
            },
        }
    }
}

/// When a timed schedule is due, in a zone, with a delay: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing<'a> {
    /// The schedule.
    pub schedule: &'a Schedule,
    /// The zone its times are in.
    pub zone: &'a RetentionZone,
    /// Added to every slot.
    pub delay: chrono::Duration,
}

impl Timing<'_> {
    /// The first slot strictly after `after` (delay included); `None` for manual and
    /// after-job schedules.
    ///
    /// Also `None` when the answer would lie outside the range of the calendar (years
    /// beyond ±9999) or of [`DateTime`], and for a schedule that [`Schedule::validate`]
    /// refuses and that names no slot at all.
    pub fn next_slot(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.schedule.is_timed() {
            return None;
        }
        let base = after.checked_sub_signed(self.delay)?;
        let tz = self.zone.tz();
        // Resolution with compatible disambiguation never moves a later local time to an
        // earlier instant, so the first day that holds a slot after `base` holds the
        // first one. Two days back covers any offset change.
        let mut day = tz.to_datetime(to_timestamp(base)?).date();
        for _ in 0..2 {
            day = day.yesterday().unwrap_or(day);
        }
        for _ in 0..SCAN_DAYS {
            let first = self.day_slots(day).filter(|&slot| slot > base).min();
            if let Some(slot) = first {
                return slot.checked_add_signed(self.delay);
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// The latest slot at or before `now` (delay included); `None` for manual and
    /// after-job schedules, or when no slot exists before `now`.
    ///
    /// Also `None` when the answer would lie outside the range of the calendar (years
    /// beyond ±9999) or of [`DateTime`].
    pub fn latest_slot(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.schedule.is_timed() {
            return None;
        }
        let base = now.checked_sub_signed(self.delay)?;
        let tz = self.zone.tz();
        // As in `next_slot`, scanning back: the first day that holds a slot at or before
        // `base` holds the latest one.
        let mut day = tz.to_datetime(to_timestamp(base)?).date();
        for _ in 0..2 {
            day = day.tomorrow().unwrap_or(day);
        }
        for _ in 0..SCAN_DAYS {
            let last = self.day_slots(day).filter(|&slot| slot <= base).max();
            if let Some(slot) = last {
                return slot.checked_add_signed(self.delay);
            }
            day = day.yesterday().ok()?;
        }
        None
    }

    /// The slots (without the delay) of the schedule's local times on `day`, each
    /// resolved to an instant with compatible disambiguation: a time in a gap moves
    /// forward by the gap's length, a time in a fold takes its earlier instant.
    fn day_slots(&self, day: jiff::civil::Date) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let tz = self.zone.tz();
        let times: Vec<jiff::civil::Time> = match *self.schedule {
            Schedule::Manual | Schedule::After { .. } => Vec::new(),
            Schedule::Hourly { every } => {
                let every = usize::from(every);
                if every == 0 {
                    Vec::new()
                } else {
                    (0..24i8)
                        .step_by(every)
                        .filter_map(|hour| jiff::civil::Time::new(hour, 0, 0, 0).ok())
                        .collect()
                }
            }
            Schedule::Daily { at } => local_time(at).into_iter().collect(),
            Schedule::Weekly { ref days, at } => {
                let weekday = u8::try_from(day.weekday().to_monday_zero_offset());
                if weekday.is_ok_and(|weekday| days.contains(&weekday)) {
                    local_time(at).into_iter().collect()
                } else {
                    Vec::new()
                }
            }
            Schedule::Monthly { ref days, at } => {
                let last = day.days_in_month();
                let today = day.day();
                let named = days.iter().any(|&d| {
                    (1..=31).contains(&d) && i8::try_from(d).is_ok_and(|d| d.min(last) == today)
                });
                if named {
                    local_time(at).into_iter().collect()
                } else {
                    Vec::new()
                }
            }
        };
        times.into_iter().filter_map(move |time| {
            let instant = tz
                .to_ambiguous_timestamp(day.to_datetime(time))
                .compatible()
                .ok()?;
            from_timestamp(instant)
        })
    }

    /// Whether a run is due at `now`, given the slot of the job's last run (or, for a job
    /// that never ran, the time it was created): if the first slot after `last` has
    /// passed, the run to start now, which takes the latest slot that has passed (so
    /// several missed slots make one run). `None` when nothing is due.
    pub fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = self.next_slot(last)?;
        if next > now {
            return None;
        }
        Some(self.latest_slot(now).unwrap_or(next).max(next))
    }
}

/// How many days a search for a slot looks at before giving up: more than any gap between
/// two slots of a valid schedule (a month, plus offset changes).
const SCAN_DAYS: usize = 400;

/// `at` as a civil time; `None` for an out-of-range [`TimeOfDay`] built by hand.
fn local_time(at: TimeOfDay) -> Option<jiff::civil::Time> {
    let hour = i8::try_from(at.hour).ok()?;
    let minute = i8::try_from(at.minute).ok()?;
    jiff::civil::Time::new(hour, minute, 0, 0).ok()
}

/// `t` as a jiff timestamp; `None` outside jiff's range. A leap second counts as the
/// last nanosecond of its second.
fn to_timestamp(t: DateTime<Utc>) -> Option<jiff::Timestamp> {
    let nanos = t.timestamp_subsec_nanos().min(999_999_999);
    jiff::Timestamp::new(t.timestamp(), i32::try_from(nanos).ok()?).ok()
}

/// `t` as a chrono time; `None` outside chrono's range.
fn from_timestamp(t: jiff::Timestamp) -> Option<DateTime<Utc>> {
    let mut seconds = t.as_second();
    let mut nanos = t.subsec_nanosecond();
    if nanos < 0 {
        seconds = seconds.checked_sub(1)?;
        nanos += 1_000_000_000;
    }
    DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proptest::prelude::*;

    use super::*;

    fn no_job(_: &str) -> Result<JobId> {
        Err(Error::not_found("job"))
    }

    #[test]
    fn spellings_parse_and_print() {
        for text in [
            "manual",
            "hourly:6",
            "daily@02:30",
            "weekly:mon,fri@23:00",
            "monthly:1,15,31@04:05",
        ] {
            let s = Schedule::parse_with(text, no_job).unwrap();
            assert_eq!(s.spelling(|_| unreachable!()), text);
            let back: Schedule = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
            assert_eq!(back, s);
        }
        let id = JobId::new();
        let after = Schedule::parse_with("after:nightly", |n| {
            assert_eq!(n, "nightly");
            Ok(id)
        })
        .unwrap();
        assert_eq!(after, Schedule::After { job: id });
        assert_eq!(
            Schedule::parse_with("weekly:7,1,1@00:00", no_job).unwrap(),
            Schedule::Weekly {
                days: vec![0, 6],
                at: TimeOfDay::new(0, 0).unwrap()
            }
        );
        for bad in [
            "",
            "hourly:0",
            "hourly:25",
            "daily@24:00",
            "daily@2:5",
            "weekly:@01:00",
            "weekly:funday@01:00",
            "weekly:0@01:00",
            "monthly:0@01:00",
            "monthly:32@01:00",
            "monthly:1",
            "after:",
            "after:missing",
            "yearly",
        ] {
            assert!(Schedule::parse_with(bad, no_job).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn earlier_shapes_still_read() {
        let old: Schedule =
            serde_json::from_str(r#"{"every":"weekly","weekday":2,"hour":3,"minute":0}"#).unwrap();
        assert_eq!(
            old,
            Schedule::Weekly {
                days: vec![2],
                at: TimeOfDay::new(3, 0).unwrap()
            }
        );
        let old: Schedule = serde_json::from_str(r#"{"every":"hours","hours":6}"#).unwrap();
        assert_eq!(old, Schedule::Hourly { every: 6 });
        let old: Schedule =
            serde_json::from_str(r#"{"every":"monthly","day":28,"hour":1,"minute":2}"#).unwrap();
        assert!(matches!(old, Schedule::Monthly { days, .. } if days == vec![28]));
        assert!(serde_json::from_str::<Schedule>(r#"{"every":"hourly","hours":0}"#).is_err());
    }

    // --- Slots ---

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn zone(name: &str) -> RetentionZone {
        RetentionZone::new(name).unwrap()
    }

    fn schedule(text: &str) -> Schedule {
        Schedule::parse_with(text, no_job).unwrap()
    }

    fn timing<'a>(schedule: &'a Schedule, zone: &'a RetentionZone, delay: i64) -> Timing<'a> {
        Timing {
            schedule,
            zone,
            delay: TimeDelta::minutes(delay),
        }
    }

    /// The slots in `(from, to]`, by following `next_slot`.
    fn slots(timing: &Timing<'_>, from: &str, to: &str) -> Vec<DateTime<Utc>> {
        let to = utc(to);
        let mut out = Vec::new();
        let mut at = utc(from);
        while let Some(next) = timing.next_slot(at).filter(|&next| next <= to) {
            out.push(next);
            at = next;
        }
        out
    }

    fn all_utc(texts: &[&str]) -> Vec<DateTime<Utc>> {
        texts.iter().map(|t| utc(t)).collect()
    }

    #[test]
    fn daily_runs_once_a_day_across_daylight_saving_changes() {
        let berlin = zone("Europe/Berlin");
        let daily = schedule("daily@02:30");
        let t = timing(&daily, &berlin, 0);
        // 02:30 does not exist on 2026-03-29: the run is at 03:30 CEST.
        assert_eq!(
            slots(&t, "2026-03-28T00:00:00Z", "2026-03-30T23:59:59Z"),
            all_utc(&[
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
            ])
        );
        // 02:30 happens twice on 2026-10-25: the run is at the first, 02:30 CEST.
        assert_eq!(
            slots(&t, "2026-10-24T00:00:00Z", "2026-10-26T23:59:59Z"),
            all_utc(&[
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ])
        );
        // At the second 02:30 (CET) the latest slot is still the first one.
        assert_eq!(
            t.latest_slot(utc("2026-10-25T01:30:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            t.due(utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:45:00Z")),
            None
        );

        let new_york = zone("America/New_York");
        let t = timing(&daily, &new_york, 0);
        assert_eq!(
            slots(&t, "2026-03-07T00:00:00Z", "2026-03-09T23:59:59Z"),
            all_utc(&[
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:30:00Z", // 03:30 EDT
                "2026-03-09T06:30:00Z",
            ])
        );
        let early = schedule("daily@01:30");
        let t = timing(&early, &new_york, 0);
        assert_eq!(
            slots(&t, "2026-10-31T00:00:00Z", "2026-11-02T23:59:59Z"),
            all_utc(&[
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z", // the first 01:30, EDT
                "2026-11-02T06:30:00Z",
            ])
        );

        // Lord Howe Island moves its clocks by 30 minutes.
        let lord_howe = zone("Australia/Lord_Howe");
        let quarter = schedule("daily@02:15");
        let t = timing(&quarter, &lord_howe, 0);
        assert_eq!(
            t.next_slot(utc("2026-10-03T12:00:00Z")),
            Some(utc("2026-10-03T15:45:00Z")) // 02:45 +11:00
        );
        let t = timing(&early, &lord_howe, 0);
        assert_eq!(
            t.next_slot(utc("2026-04-04T12:00:00Z")),
            Some(utc("2026-04-04T14:30:00Z")) // the first 01:30, +11:00
        );
        assert_eq!(
            t.next_slot(utc("2026-04-04T14:30:00Z")),
            Some(utc("2026-04-05T15:00:00Z")) // 01:30 +10:30
        );
    }

    #[test]
    fn hourly_slots_are_local_hours_across_daylight_saving_changes() {
        let berlin = zone("Europe/Berlin");
        let hourly = schedule("hourly:1");
        let t = timing(&hourly, &berlin, 0);
        // Local 2026-03-29 runs from 23:00 UTC the day before to 22:00 UTC, 23 hours:
        // local 02:00 does not exist and becomes 03:00, which is already a slot.
        let spring = slots(&t, "2026-03-28T22:59:59Z", "2026-03-29T21:59:59Z");
        assert_eq!(spring.len(), 23);
        assert_eq!(
            spring[..4],
            all_utc(&[
                "2026-03-28T23:00:00Z",
                "2026-03-29T00:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
            ])
        );
        assert!(
            spring
                .windows(2)
                .all(|w| w[1] - w[0] == TimeDelta::hours(1))
        );
        // Local 2026-10-25 lasts 25 hours; the repeated 02:00 runs once, at its first
        // occurrence, so the day has 24 slots and a two-hour step.
        let autumn = slots(&t, "2026-10-24T21:59:59Z", "2026-10-25T22:59:59Z");
        assert_eq!(autumn.len(), 24);
        assert_eq!(
            autumn[..4],
            all_utc(&[
                "2026-10-24T22:00:00Z",
                "2026-10-24T23:00:00Z",
                "2026-10-25T00:00:00Z",
                "2026-10-25T02:00:00Z",
            ])
        );
        assert_eq!(autumn.last(), Some(&utc("2026-10-25T22:00:00Z")));
        assert_eq!(
            t.latest_slot(utc("2026-10-25T01:59:59Z")),
            Some(utc("2026-10-25T00:00:00Z"))
        );

        // Every two hours: local 02:00 moves to 03:00 CEST, an hour before 04:00.
        let two = schedule("hourly:2");
        let t = timing(&two, &berlin, 0);
        assert_eq!(
            slots(&t, "2026-03-28T22:00:00Z", "2026-03-29T02:00:00Z"),
            all_utc(&[
                "2026-03-28T23:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
            ])
        );

        let utc_zone = RetentionZone::default();
        let five = schedule("hourly:5");
        let t = timing(&five, &utc_zone, 0);
        assert_eq!(
            slots(&t, "2026-01-01T00:00:00Z", "2026-01-02T05:00:00Z"),
            all_utc(&[
                "2026-01-01T05:00:00Z",
                "2026-01-01T10:00:00Z",
                "2026-01-01T15:00:00Z",
                "2026-01-01T20:00:00Z",
                "2026-01-02T00:00:00Z",
                "2026-01-02T05:00:00Z",
            ])
        );
        let day = schedule("hourly:24");
        let t = timing(&day, &utc_zone, 0);
        assert_eq!(
            slots(&t, "2026-01-01T00:00:00Z", "2026-01-03T12:00:00Z"),
            all_utc(&["2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"])
        );
    }

    #[test]
    fn a_month_day_past_the_end_means_the_last_day() {
        let utc_zone = RetentionZone::default();
        let last = schedule("monthly:31@00:00");
        let t = timing(&last, &utc_zone, 0);
        assert_eq!(
            slots(&t, "2026-01-01T00:00:00Z", "2026-04-30T00:00:00Z"),
            all_utc(&[
                "2026-01-31T00:00:00Z",
                "2026-02-28T00:00:00Z",
                "2026-03-31T00:00:00Z",
                "2026-04-30T00:00:00Z",
            ])
        );
        assert_eq!(
            t.next_slot(utc("2028-01-31T00:00:00Z")),
            Some(utc("2028-02-29T00:00:00Z"))
        );
        let ends = schedule("monthly:30,31@04:05");
        let t = timing(&ends, &utc_zone, 0);
        assert_eq!(
            slots(&t, "2026-02-01T00:00:00Z", "2026-05-01T00:00:00Z"),
            all_utc(&[
                "2026-02-28T04:05:00Z",
                "2026-03-30T04:05:00Z",
                "2026-03-31T04:05:00Z",
                "2026-04-30T04:05:00Z",
            ])
        );
        let many = schedule("monthly:1,15,29,30,31@12:00");
        let t = timing(&many, &utc_zone, 0);
        assert_eq!(
            slots(&t, "2026-02-01T00:00:00Z", "2026-03-01T12:00:00Z"),
            all_utc(&[
                "2026-02-01T12:00:00Z",
                "2026-02-15T12:00:00Z",
                "2026-02-28T12:00:00Z",
                "2026-03-01T12:00:00Z",
            ])
        );
    }

    #[test]
    fn weekly_days_zones_and_delay() {
        let new_york = zone("America/New_York");
        let weekly = schedule("weekly:mon,fri@23:00");
        let t = timing(&weekly, &new_york, 90);
        // 2026-01-01 is a Thursday; 23:00 EST is 04:00 UTC the next day, plus 90 minutes.
        assert_eq!(
            slots(&t, "2026-01-01T00:00:00Z", "2026-01-10T05:29:59Z"),
            all_utc(&["2026-01-03T05:30:00Z", "2026-01-06T05:30:00Z"])
        );
        assert_eq!(
            t.latest_slot(utc("2026-01-06T05:29:59Z")),
            Some(utc("2026-01-03T05:30:00Z"))
        );
        assert_eq!(
            t.latest_slot(utc("2026-01-06T05:30:00Z")),
            Some(utc("2026-01-06T05:30:00Z"))
        );

        let kolkata = zone("Asia/Kolkata");
        let midnight = schedule("daily@00:00");
        let t = timing(&midnight, &kolkata, 0);
        assert_eq!(
            t.next_slot(utc("2026-06-01T00:00:00Z")),
            Some(utc("2026-06-01T18:30:00Z"))
        );
        let nepal = zone("+05:45");
        let t = timing(&midnight, &nepal, 15);
        assert_eq!(
            t.next_slot(utc("2026-06-01T00:00:00Z")),
            Some(utc("2026-06-01T18:30:00Z"))
        );
        assert_eq!(
            t.latest_slot(utc("2026-06-01T00:00:00Z")),
            Some(utc("2026-05-31T18:30:00Z"))
        );
    }

    #[test]
    fn missed_slots_make_one_run() {
        let berlin = zone("Europe/Berlin");
        let daily = schedule("daily@03:00");
        let t = timing(&daily, &berlin, 15);
        let first = t.next_slot(utc("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(first, utc("2026-01-01T02:15:00Z"));
        let mut tenth = first;
        for _ in 0..10 {
            tenth = t.next_slot(tenth).unwrap();
        }
        assert_eq!(tenth, utc("2026-01-11T02:15:00Z"));
        let now = tenth + TimeDelta::hours(5);
        assert_eq!(t.due(first, now), Some(tenth));
        assert_eq!(t.due(tenth, now), None);
        assert_eq!(t.due(first, first + TimeDelta::hours(23)), None);
        assert_eq!(
            t.due(first, first + TimeDelta::hours(24)),
            Some(first + TimeDelta::hours(24))
        );
        // A job created between two slots first runs at the next one.
        let created = utc("2026-01-11T12:00:00Z");
        assert_eq!(t.due(created, utc("2026-01-12T02:14:59Z")), None);
        assert_eq!(
            t.due(created, utc("2026-01-12T02:15:00Z")),
            Some(utc("2026-01-12T02:15:00Z"))
        );
        // A clock set back makes nothing due.
        assert_eq!(t.due(tenth, first), None);
    }

    #[test]
    fn manual_after_and_out_of_range_have_no_slots() {
        let utc_zone = RetentionZone::default();
        let now = utc("2026-01-01T00:00:00Z");
        for untimed in [Schedule::Manual, Schedule::After { job: JobId::new() }] {
            let t = timing(&untimed, &utc_zone, 0);
            assert_eq!(t.next_slot(now), None);
            assert_eq!(t.latest_slot(now), None);
            assert_eq!(t.due(now - TimeDelta::days(400), now), None);
        }

        let hourly = schedule("hourly:1");
        let berlin = zone("Europe/Berlin");
        let t = timing(&hourly, &berlin, 0);
        for far in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            assert_eq!(t.next_slot(far), None);
            assert_eq!(t.latest_slot(far), None);
            assert_eq!(t.due(far, far), None);
        }
        // At the ends of the calendar's range (UTC slots fall on its whole hours).
        let utc_hourly = timing(&hourly, &utc_zone, 0);
        let second = TimeDelta::seconds(1);
        let min = from_timestamp(jiff::Timestamp::MIN).unwrap();
        assert_eq!(min, utc("-9999-01-02T01:59:59Z"));
        assert_eq!(utc_hourly.latest_slot(min), None);
        assert_eq!(utc_hourly.latest_slot(min - second), None);
        assert_eq!(utc_hourly.next_slot(min), Some(min + second));
        assert_eq!(utc_hourly.next_slot(min - second), None);
        assert_eq!(
            utc_hourly.latest_slot(min + TimeDelta::minutes(30)),
            Some(min + second)
        );
        let max = from_timestamp(jiff::Timestamp::MAX).unwrap();
        let last_hour = utc("9999-12-30T22:00:00Z");
        assert_eq!(utc_hourly.latest_slot(max), Some(last_hour));
        assert_eq!(utc_hourly.next_slot(last_hour - second), Some(last_hour));
        assert_eq!(utc_hourly.next_slot(last_hour), None);
        assert_eq!(utc_hourly.latest_slot(max + second), None);
        for delay in [TimeDelta::MAX, TimeDelta::MIN] {
            let t = Timing { delay, ..t.clone() };
            assert_eq!(t.next_slot(now), None);
            assert_eq!(t.latest_slot(now), None);
        }
    }

    #[test]
    fn schedules_built_by_hand_out_of_range_never_panic() {
        let utc_zone = RetentionZone::default();
        let now = utc("2026-01-01T12:00:00Z");
        let at = TimeOfDay { hour: 1, minute: 0 };
        for empty in [
            Schedule::Hourly { every: 0 },
            Schedule::Daily {
                at: TimeOfDay {
                    hour: 24,
                    minute: 0,
                },
            },
            Schedule::Daily {
                at: TimeOfDay {
                    hour: 200,
                    minute: 200,
                },
            },
            Schedule::Weekly { days: vec![], at },
            Schedule::Weekly { days: vec![7], at },
            Schedule::Monthly {
                days: vec![0, 32],
                at,
            },
        ] {
            let t = timing(&empty, &utc_zone, 0);
            assert_eq!(t.next_slot(now), None, "{empty:?}");
            assert_eq!(t.latest_slot(now), None, "{empty:?}");
        }
        let daily = Schedule::Hourly { every: 200 };
        let t = timing(&daily, &utc_zone, 0);
        assert_eq!(t.next_slot(now), Some(utc("2026-01-02T00:00:00Z")));
    }

    // --- Properties ---

    const ZONES: [&str; 6] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "+05:45",
    ];

    /// 2000-01-01 to 2100-01-01, in seconds.
    const YEARS: std::ops::Range<i64> = 946_684_800..4_102_444_800;

    fn time_of_day() -> impl Strategy<Value = TimeOfDay> {
        (
            prop_oneof![0u8..24, 0u8..4],
            prop_oneof![Just(0u8), Just(15), Just(30), Just(45), 0u8..60],
        )
            .prop_map(|(hour, minute)| TimeOfDay { hour, minute })
    }

    fn timed_schedule() -> impl Strategy<Value = Schedule> {
        prop_oneof![
            (1u8..=24).prop_map(|every| Schedule::Hourly { every }),
            time_of_day().prop_map(|at| Schedule::Daily { at }),
            (
                proptest::collection::btree_set(0u8..7, 1..=7),
                time_of_day()
            )
                .prop_map(|(days, at)| Schedule::Weekly {
                    days: days.into_iter().collect(),
                    at
                }),
            (
                proptest::collection::btree_set(prop_oneof![1u8..=31, 28u8..=31], 1..=4),
                time_of_day()
            )
                .prop_map(|(days, at)| Schedule::Monthly {
                    days: days.into_iter().collect(),
                    at
                }),
        ]
    }

    /// An instant in 2000-2100 (on a whole hour, a whole minute, a whole second or not),
    /// and whether to move it near the zone's next offset change, with a jitter.
    fn instant() -> impl Strategy<Value = (DateTime<Utc>, bool, i64)> {
        (
            YEARS,
            prop_oneof![Just(3600), Just(60), Just(1), Just(0)],
            0u32..1_000_000_000,
            any::<bool>(),
            prop_oneof![-3i64 * 3600..3 * 3600, (-36i64..36).prop_map(|m| m * 1800)],
        )
            .prop_map(|(seconds, snap, nanos, near, jitter)| {
                let (seconds, nanos) = match snap {
                    0 => (seconds, nanos),
                    snap => (seconds - seconds % snap, 0),
                };
                (
                    DateTime::from_timestamp(seconds, nanos).unwrap(),
                    near,
                    jitter,
                )
            })
    }

    /// `t`, or when `near`, the zone's first offset change after `t` moved by `jitter`
    /// seconds (`t` in a zone without changes).
    fn place(zone: &RetentionZone, (t, near, jitter): (DateTime<Utc>, bool, i64)) -> DateTime<Utc> {
        if !near {
            return t;
        }
        match zone.tz().following(to_timestamp(t).unwrap()).next() {
            Some(change) => {
                from_timestamp(change.timestamp()).unwrap() + TimeDelta::seconds(jitter)
            }
            None => t,
        }
    }

    /// The times of day the schedule names.
    fn times_of(schedule: &Schedule) -> Vec<jiff::civil::Time> {
        let time = |at: &TimeOfDay| jiff::civil::time(at.hour as i8, at.minute as i8, 0, 0);
        match schedule {
            Schedule::Hourly { every } => (0..24)
                .filter(|h| h % every == 0)
                .map(|h| jiff::civil::time(h as i8, 0, 0, 0))
                .collect(),
            Schedule::Daily { at } | Schedule::Weekly { at, .. } | Schedule::Monthly { at, .. } => {
                vec![time(at)]
            }
            Schedule::Manual | Schedule::After { .. } => vec![],
        }
    }

    /// Whether the schedule runs on `date`.
    fn runs_on(schedule: &Schedule, date: jiff::civil::Date) -> bool {
        match schedule {
            Schedule::Weekly { days, .. } => {
                days.contains(&((date.weekday().to_sunday_zero_offset() as u8 + 6) % 7))
            }
            Schedule::Monthly { days, .. } => days.iter().any(|&d| {
                let d = d as i8;
                d == date.day() || (d > date.days_in_month() && date == date.last_of_month())
            }),
            _ => true,
        }
    }

    /// Checks that `slot` is a scheduled local time plus the delay: either its own local
    /// time (resolved back to it), or a scheduled time that falls in a gap and moves to it.
    fn check_origin(t: &Timing<'_>, slot: DateTime<Utc>) -> std::result::Result<(), TestCaseError> {
        let tz = t.zone.tz();
        let instant = to_timestamp(slot - t.delay).unwrap();
        let local = tz.to_datetime(instant);
        let times = times_of(t.schedule);
        if runs_on(t.schedule, local.date()) && times.contains(&local.time()) {
            prop_assert_eq!(tz.to_timestamp(local).unwrap(), instant, "{}", local);
            return Ok(());
        }
        let day = local.date();
        let moved = [day.yesterday().unwrap(), day].into_iter().any(|date| {
            runs_on(t.schedule, date)
                && times.iter().any(|&time| {
                    let wanted = date.to_datetime(time);
                    let ambiguous = tz.to_ambiguous_timestamp(wanted);
                    matches!(ambiguous.offset(), jiff::tz::AmbiguousOffset::Gap { .. })
                        && ambiguous.compatible().unwrap() == instant
                })
        });
        prop_assert!(
            moved,
            "{} ({}) is not a slot of {:?}",
            slot,
            local,
            t.schedule
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn slots_are_consistent(
            schedule in timed_schedule(),
            zone in 0..ZONES.len(),
            at in instant(),
            delay in 0i64..=180,
        ) {
            let zone = RetentionZone::new(ZONES[zone]).unwrap();
            let t = timing(&schedule, &zone, delay);
            let now = place(&zone, at);

            let next = t.next_slot(now).unwrap();
            let latest = t.latest_slot(now).unwrap();
            prop_assert!(next > now);
            prop_assert!(latest <= now);
            // Nothing between them: each is the other's neighbour.
            prop_assert_eq!(t.next_slot(latest), Some(next));
            prop_assert_eq!(t.latest_slot(next), Some(next));
            prop_assert_eq!(t.latest_slot(next - TimeDelta::nanoseconds(1)), Some(latest));
            check_origin(&t, latest)?;

            let mut slot = next;
            for _ in 0..8 {
                check_origin(&t, slot)?;
                let following = t.next_slot(slot).unwrap();
                prop_assert!(following > slot);
                prop_assert_eq!(t.latest_slot(following - TimeDelta::nanoseconds(1)), Some(slot));
                prop_assert_eq!(t.latest_slot(following), Some(following));
                slot = following;
            }
        }

        #[test]
        fn every_scheduled_local_time_is_a_slot(
            schedule in timed_schedule(),
            zone in 0..ZONES.len(),
            at in instant(),
            pick in any::<usize>(),
            delay in 0i64..=180,
        ) {
            let zone = RetentionZone::new(ZONES[zone]).unwrap();
            let t = timing(&schedule, &zone, delay);
            let tz = zone.tz();
            let mut date = tz.to_datetime(to_timestamp(place(&zone, at)).unwrap()).date();
            while !runs_on(&schedule, date) {
                date = date.tomorrow().unwrap();
            }
            let times = times_of(&schedule);
            let wanted = date.to_datetime(times[pick % times.len()]);
            let slot = from_timestamp(tz.to_timestamp(wanted).unwrap()).unwrap() + t.delay;
            prop_assert_eq!(t.latest_slot(slot), Some(slot), "{}", wanted);
            prop_assert!(t.next_slot(slot - TimeDelta::seconds(1)) == Some(slot));
            if !tz.to_ambiguous_timestamp(wanted).is_ambiguous() {
                prop_assert_eq!(tz.to_datetime(to_timestamp(slot - t.delay).unwrap()), wanted);
            }
        }

        #[test]
        fn due_runs_the_latest_passed_slot_once(
            schedule in timed_schedule(),
            zone in 0..ZONES.len(),
            at in instant(),
            elapsed in prop_oneof![-3 * 86_400i64..0, 0i64..86_400, 0i64..60 * 86_400],
            delay in 0i64..=180,
        ) {
            let zone = RetentionZone::new(ZONES[zone]).unwrap();
            let t = timing(&schedule, &zone, delay);
            let last = place(&zone, at);
            let now = last + TimeDelta::seconds(elapsed);
            let next = t.next_slot(last).unwrap();
            let due = t.due(last, now);
            prop_assert_eq!(due.is_some(), next <= now);
            if now < last {
                prop_assert_eq!(due, None);
            }
            if let Some(run) = due {
                prop_assert!(run > last && run <= now);
                prop_assert_eq!(Some(run), t.latest_slot(now));
                prop_assert_eq!(t.due(run, now), None);
            }
        }
    }
}
