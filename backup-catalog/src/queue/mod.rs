//! The [`JobQueue`](backup_core::ports::JobQueue) port for both backends: the tables of
//! `migrations/*/0004_queue.sql`, their [`statements`], the row codec here, and the code
//! over a pool in [`methods`] (a macro expanded for each backend, like [`crate::sql`]'s).
//!
//! A task is a row whose queried and changing fields are columns, so that every change of
//! state is one guarded `UPDATE`; `data` holds the JSON of the rest ([`TaskData`]).
//!
//! Beyond the port's contract, three choices:
//!
//! - a running task whose cancellation was asked for never goes back to the queue: when
//!   its worker retries or releases it, or its lease runs out, it ends `Cancelled`;
//! - a lapsed task that ends failed says `worker lost: the lease ran out N times`, N
//!   counting its lost attempts;
//! - attempts are numbered in the history by claim (1, 2, ...): a released attempt keeps
//!   its number, so after a release the history numbers run ahead of the task's
//!   `attempts`.

pub(crate) mod methods;
pub(crate) mod statements;

use std::time::Duration;

use backup_core::model::{DestinationHealth, Task, TaskAttempt, TaskKind, TaskProgress, TaskState};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What `tasks.data` holds: the fields no statement reads or changes.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskData {
    /// The account's username when enqueued.
    pub(crate) username: String,
    /// The kind's parameters.
    pub(crate) payload: serde_json::Value,
}

/// A `tasks` row as read (every column, in `task_columns!` order).
#[derive(Debug)]
pub(crate) struct TaskRow {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) account_id: String,
    pub(crate) state: String,
    pub(crate) priority: i64,
    pub(crate) enqueued: (i64, i64),
    pub(crate) not_before: (i64, i64),
    pub(crate) attempts: i64,
    pub(crate) max_attempts: i64,
    pub(crate) worker: Option<String>,
    pub(crate) lease: (Option<i64>, Option<i64>),
    pub(crate) started: (Option<i64>, Option<i64>),
    pub(crate) finished: (Option<i64>, Option<i64>),
    pub(crate) cancel_requested: i64,
    pub(crate) destination_id: Option<String>,
    pub(crate) run_id: Option<String>,
    pub(crate) job_id: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) progress: Option<String>,
    pub(crate) data: String,
}

/// Reads a column as `BadColumn` names it.
struct Column<'a> {
    table: &'static str,
    key: &'a str,
}

impl Column<'_> {
    fn bad(&self, column: &'static str, reason: impl Into<String>) -> Error {
        Error::BadColumn {
            table: self.table,
            column,
            value: self.key.to_owned(),
            reason: reason.into(),
        }
    }

    fn parse<T>(&self, column: &'static str, text: &str) -> Result<T>
    where
        T: std::str::FromStr<Err = backup_core::Error>,
    {
        text.parse()
            .map_err(|e: backup_core::Error| self.bad(column, e.to_string()))
    }

    fn parse_opt<T>(&self, column: &'static str, text: Option<&str>) -> Result<Option<T>>
    where
        T: std::str::FromStr<Err = backup_core::Error>,
    {
        text.map(|t| self.parse(column, t)).transpose()
    }

    fn count(&self, column: &'static str, n: i64) -> Result<u32> {
        u32::try_from(n).map_err(|_| self.bad(column, format!("{n} is not a count")))
    }

    fn time(&self, column: &'static str, (secs, nanos): (i64, i64)) -> Result<DateTime<Utc>> {
        u32::try_from(nanos)
            .ok()
            .and_then(|nanos| DateTime::from_timestamp(secs, nanos))
            .ok_or_else(|| self.bad(column, format!("({secs}, {nanos}) is not a time")))
    }

    fn time_opt(
        &self,
        column: &'static str,
        pair: (Option<i64>, Option<i64>),
    ) -> Result<Option<DateTime<Utc>>> {
        match pair {
            (Some(secs), Some(nanos)) => self.time(column, (secs, nanos)).map(Some),
            (None, None) => Ok(None),
            (secs, nanos) => Err(self.bad(column, format!("half a time: ({secs:?}, {nanos:?})"))),
        }
    }
}

impl TaskRow {
    /// The task the row stores.
    pub(crate) fn into_task(self) -> Result<Task> {
        let c = Column {
            table: "tasks",
            key: &self.id,
        };
        let data: TaskData = serde_json::from_str(&self.data).map_err(|source| Error::Corrupt {
            entity: "task",
            id: self.id.clone(),
            source,
        })?;
        let progress = self
            .progress
            .as_deref()
            .map(serde_json::from_str::<TaskProgress>)
            .transpose()
            .map_err(|source| Error::Corrupt {
                entity: "task progress",
                id: self.id.clone(),
                source,
            })?;
        Ok(Task {
            id: c.parse("id", &self.id)?,
            kind: c.parse::<TaskKind>("kind", &self.kind)?,
            account: c.parse("account_id", &self.account_id)?,
            username: data.username,
            job: c.parse_opt("job_id", self.job_id.as_deref())?,
            run: c.parse_opt("run_id", self.run_id.as_deref())?,
            destination: c.parse_opt("destination_id", self.destination_id.as_deref())?,
            priority: self.priority,
            enqueued: c.time("enqueued", self.enqueued)?,
            not_before: c.time("not_before", self.not_before)?,
            state: c.parse::<TaskState>("state", &self.state)?,
            attempts: c.count("attempts", self.attempts)?,
            max_attempts: c.count("max_attempts", self.max_attempts)?,
            worker: self.worker,
            lease_until: c.time_opt("lease", self.lease)?,
            started: c.time_opt("started", self.started)?,
            finished: c.time_opt("finished", self.finished)?,
            cancel_requested: self.cancel_requested != 0,
            progress,
            message: self.message,
            payload: data.payload,
        })
    }
}

/// A `task_attempts` row: (task id, attempt, worker, claimed secs, claimed nanos, ended
/// secs, ended nanos, outcome).
pub(crate) type AttemptRow = (
    String,
    i64,
    String,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// The attempt a row stores.
pub(crate) fn decode_attempt(row: AttemptRow) -> Result<TaskAttempt> {
    let (task, attempt, worker, claimed_secs, claimed_nanos, ended_secs, ended_nanos, outcome) =
        row;
    let key = format!("{task}/{attempt}");
    let c = Column {
        table: "task_attempts",
        key: &key,
    };
    Ok(TaskAttempt {
        task: c.parse("task_id", &task)?,
        attempt: c.count("attempt", attempt)?,
        worker,
        claimed: c.time("claimed", (claimed_secs, claimed_nanos))?,
        ended: c.time_opt("ended", (ended_secs, ended_nanos))?,
        outcome,
    })
}

/// A `destination_health` row: (destination id, failures, paused secs, paused nanos, last
/// error).
pub(crate) type HealthRow = (String, i64, Option<i64>, Option<i64>, Option<String>);

/// The health a row stores.
pub(crate) fn decode_health(row: HealthRow) -> Result<DestinationHealth> {
    let (id, failures, paused_secs, paused_nanos, last_error) = row;
    let c = Column {
        table: "destination_health",
        key: &id,
    };
    Ok(DestinationHealth {
        destination: c.parse("destination_id", &id)?,
        failures: c.count("failures", failures)?,
        paused_until: c.time_opt("paused", (paused_secs, paused_nanos))?,
        last_error,
    })
}

/// `now + span`, or the latest time there is when that is later.
pub(crate) fn later(now: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(span)
        .ok()
        .and_then(|span| now.checked_add_signed(span))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What becomes of a running task whose lease ran out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lapse {
    /// Back to the queue: attempts remain.
    Requeue,
    /// It ends, in this state with this message.
    End(TaskState, Option<String>),
}

impl Lapse {
    /// For a task with `attempts` of `max_attempts` used, `lost` of them (this one
    /// included) lost, and cancellation asked for or not.
    pub(crate) fn of(attempts: i64, max_attempts: i64, lost: i64, cancel_requested: bool) -> Self {
        if cancel_requested {
            Lapse::End(TaskState::Cancelled, None)
        } else if attempts < max_attempts {
            Lapse::Requeue
        } else {
            let message = format!("worker lost: the lease ran out {lost} times");
            Lapse::End(TaskState::Failed, Some(message))
        }
    }
}

/// The attempt outcome recorded when a worker hands its task back with `outcome` and the
/// task ends up in `state` (cancelled instead when cancellation was asked for).
pub(crate) fn handed_back(outcome: &'static str, state: &str) -> &'static str {
    if state == TaskState::Cancelled.as_str() {
        TaskState::Cancelled.as_str()
    } else {
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapses() {
        assert_eq!(Lapse::of(1, 3, 1, false), Lapse::Requeue);
        assert_eq!(
            Lapse::of(3, 3, 2, false),
            Lapse::End(
                TaskState::Failed,
                Some("worker lost: the lease ran out 2 times".into())
            )
        );
        assert_eq!(
            Lapse::of(1, 3, 1, true),
            Lapse::End(TaskState::Cancelled, None)
        );
    }

    #[test]
    fn later_saturates() {
        let now = DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        assert_eq!(
            later(now, Duration::from_nanos(10)),
            DateTime::from_timestamp(1_700_000_000, 15).unwrap()
        );
        assert_eq!(later(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn bad_rows_name_their_column() {
        let row: AttemptRow = ("x".into(), 1, "w".into(), 0, 0, Some(1), None, None);
        let err = decode_attempt(row).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BadColumn {
                    column: "task_id",
                    ..
                }
            ),
            "{err}"
        );
        let id = backup_core::model::TaskId::new().to_string();
        let row: AttemptRow = (id, 1, "w".into(), 0, 0, Some(1), None, None);
        let err = decode_attempt(row).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BadColumn {
                    column: "ended",
                    ..
                }
            ),
            "{err}"
        );
        let row: HealthRow = (
            backup_core::model::DestinationId::new().to_string(),
            -1,
            None,
            None,
            None,
        );
        let err = decode_health(row).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BadColumn {
                    column: "failures",
                    ..
                }
            ),
            "{err}"
        );
    }
}
