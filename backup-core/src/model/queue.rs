//! The persistent task queue's values: tasks, their states and outcomes, lanes, retries,
//! the destination circuit breaker and job runs. The queue itself is the
//! [`JobQueue`](crate::ports::JobQueue) port.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{AccountId, DestinationId, JobId, RunId, TaskId};
use crate::error::{Error, Result};

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Back up one account to one destination.
    Backup,
    /// Restore an account.
    Restore,
    /// Build a download archive.
    Download,
    /// Verify an account's snapshots.
    Verify,
    /// Apply a job's retention to an account and collect its garbage.
    Retention,
    /// Copy an account's snapshots to another destination.
    Clone,
}

impl TaskKind {
    /// Every kind.
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Backup,
        TaskKind::Restore,
        TaskKind::Download,
        TaskKind::Verify,
        TaskKind::Retention,
        TaskKind::Clone,
    ];

    /// The stored and printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Backup => "backup",
            TaskKind::Restore => "restore",
            TaskKind::Download => "download",
            TaskKind::Verify => "verify",
            TaskKind::Retention => "retention",
            TaskKind::Clone => "clone",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TaskKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "task kind",
                    format!(
                        "{s:?}: expected backup, restore, download, verify, retention or clone"
                    ),
                )
            })
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting to be claimed (maybe not before `not_before`).
    Queued,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Finished successfully.
    Done,
    /// Finished, with something left out (a partial snapshot).
    Partial,
    /// Failed for good (a permanent error, or retries used up).
    Failed,
    /// Cancelled before or while it ran.
    Cancelled,
}

impl TaskState {
    /// Every state.
    pub const ALL: [TaskState; 6] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Done,
        TaskState::Partial,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// Whether the task has ended (it will not run again).
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskState::Queued | TaskState::Running)
    }

    /// The stored and printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Partial => "partial",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        TaskState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::invalid("task state", format!("{s:?} is not a task state")))
    }
}

/// Progress of a running task, as its worker last wrote it (readable by any process that
/// reads the queue: a panel's web page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TaskProgress {
    /// The phase (`preparing`, `walking`, `uploading`, `committing`, ...).
    pub phase: String,
    /// Files done so far.
    pub files: u64,
    /// Bytes done so far.
    pub bytes: u64,
    /// Files in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_total: Option<u64>,
    /// Bytes in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
}

/// A task to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// What it does.
    pub kind: TaskKind,
    /// The account it works on (at most one task per account runs at a time).
    pub account: AccountId,
    /// The account's username when enqueued, for listings.
    pub username: String,
    /// The job it belongs to, if any.
    pub job: Option<JobId>,
    /// The job run it belongs to, if any.
    pub run: Option<RunId>,
    /// The destination it writes to or reads from, if one (the circuit breaker pauses
    /// tasks by destination).
    pub destination: Option<DestinationId>,
    /// Lower runs first (the account's priority group for this kind, see
    /// [`PriorityGroup`](crate::model::PriorityGroup)).
    pub priority: i64,
    /// Not claimed before this time.
    pub not_before: DateTime<Utc>,
    /// Attempts allowed in all (at least 1).
    pub max_attempts: u32,
    /// Kind-specific parameters (JSON), read by the worker.
    pub payload: serde_json::Value,
}

/// A task in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Identity (a UUIDv7: ids sort by enqueue time).
    pub id: TaskId,
    /// What it does.
    pub kind: TaskKind,
    /// The account it works on.
    pub account: AccountId,
    /// The account's username when enqueued.
    pub username: String,
    /// The job it belongs to, if any.
    pub job: Option<JobId>,
    /// The job run it belongs to, if any.
    pub run: Option<RunId>,
    /// Its destination, if one.
    pub destination: Option<DestinationId>,
    /// Lower runs first.
    pub priority: i64,
    /// When it was enqueued.
    pub enqueued: DateTime<Utc>,
    /// Not claimed before this time (a retry's backoff).
    pub not_before: DateTime<Utc>,
    /// Where it is.
    pub state: TaskState,
    /// Claims so far (each claim is an attempt).
    pub attempts: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// The worker holding it (while running).
    pub worker: Option<String>,
    /// Its lease runs out at this time (while running): the worker renews it by
    /// heartbeats; past it, the task goes back to the queue.
    pub lease_until: Option<DateTime<Utc>>,
    /// When the current or last attempt started.
    pub started: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished: Option<DateTime<Utc>>,
    /// Cancellation was asked for while it ran; the worker stops at its next check.
    pub cancel_requested: bool,
    /// Progress, as the worker last wrote it.
    pub progress: Option<TaskProgress>,
    /// The outcome's message, or the last error (for a task waiting to retry).
    pub message: Option<String>,
    /// Kind-specific parameters.
    pub payload: serde_json::Value,
}

/// How a task ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// It did its work.
    Done {
        /// A summary (the snapshot id, counts).
        message: String,
    },
    /// It did its work, leaving something out.
    Partial {
        /// What was left out.
        message: String,
    },
    /// It failed for good.
    Failed {
        /// Why.
        message: String,
    },
    /// It stopped because it was cancelled.
    Cancelled,
}

impl Outcome {
    /// The state the task ends in.
    pub fn state(&self) -> TaskState {
        match self {
            Outcome::Done { .. } => TaskState::Done,
            Outcome::Partial { .. } => TaskState::Partial,
            Outcome::Failed { .. } => TaskState::Failed,
            Outcome::Cancelled => TaskState::Cancelled,
        }
    }

    /// The message, if any.
    pub fn message(&self) -> Option<&str> {
        match self {
            Outcome::Done { message }
            | Outcome::Partial { message }
            | Outcome::Failed { message } => Some(message),
            Outcome::Cancelled => None,
        }
    }
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease is renewed.
    Held,
    /// The lease is renewed, and cancellation was asked for: stop.
    CancelRequested,
    /// The lease is gone (it ran out and the task went back to the queue or to another
    /// worker, or the task ended): stop at once and record nothing.
    Lost,
}

/// How many tasks of each kind run at once, queue-wide (every worker of every machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lanes(BTreeMap<TaskKind, u32>);

impl Default for Lanes {
    /// 4 backups, 2 restores, 2 downloads, 2 verifications, 2 retention runs, 2 clones.
    fn default() -> Self {
        Self(BTreeMap::from([
            (TaskKind::Backup, 4),
            (TaskKind::Restore, 2),
            (TaskKind::Download, 2),
            (TaskKind::Verify, 2),
            (TaskKind::Retention, 2),
            (TaskKind::Clone, 2),
        ]))
    }
}

impl Lanes {
    /// The same limit for every kind.
    pub fn uniform(n: u32) -> Self {
        Self(TaskKind::ALL.into_iter().map(|k| (k, n)).collect())
    }

    /// Sets one kind's limit (0 means the kind is not claimed).
    pub fn with(mut self, kind: TaskKind, n: u32) -> Self {
        self.0.insert(kind, n);
        self
    }

    /// One kind's limit (0 for a kind not named).
    pub fn get(&self, kind: TaskKind) -> u32 {
        self.0.get(&kind).copied().unwrap_or(0)
    }

    /// Parses `backup=4,restore=2`: kinds not named keep their default.
    pub fn parse(text: &str) -> Result<Self> {
        let mut lanes = Self::default();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (kind, n) = part
                .split_once('=')
                .ok_or_else(|| Error::invalid("lanes", format!("{part:?}: expected KIND=N")))?;
            let n = n
                .trim()
                .parse()
                .map_err(|_| Error::invalid("lanes", format!("{part:?}: N is a number")))?;
            lanes = lanes.with(kind.trim().parse()?, n);
        }
        Ok(lanes)
    }
}

/// Retries of transient errors: up to `max_attempts` attempts in all, waiting
/// `base * 2^(attempt-1)` (at most `max_backoff`) before each new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all (a task's `max_attempts`).
    pub max_attempts: u32,
    /// The wait before the second attempt.
    pub base: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 30 s then 60 s apart, at most 1 h.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_secs(30),
            max_backoff: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The wait after attempt `attempt` (1-based) failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.max_backoff)
    }

    /// Whether a task whose attempt `attempt` failed goes back to the queue: its error was
    /// transient ([`Error::is_transient`], or the store resolver's finer rule for storage
    /// errors) and attempts remain.
    pub fn retries(&self, transient: bool, attempt: u32, max_attempts: u32) -> bool {
        transient && attempt < max_attempts
    }
}

/// The circuit breaker of destinations: after `threshold` tasks in a row failed on a
/// destination with a storage error, its tasks wait `pause` (doubling, up to
/// `max_pause`, while it keeps failing) while other destinations' tasks go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerPolicy {
    /// Failures in a row that open the breaker.
    pub threshold: u32,
    /// The first pause.
    pub pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
}

impl Default for BreakerPolicy {
    /// 3 failures in a row; a 5-minute pause, doubling up to 1 hour.
    fn default() -> Self {
        Self {
            threshold: 3,
            pause: Duration::from_secs(300),
            max_pause: Duration::from_secs(3600),
        }
    }
}

impl BreakerPolicy {
    /// The pause after `failures` failures in a row (`None` below the threshold).
    pub fn pause_after(&self, failures: u32) -> Option<Duration> {
        if failures < self.threshold.max(1) {
            return None;
        }
        let doublings = (failures - self.threshold.max(1)).min(20);
        Some(
            self.pause
                .saturating_mul(1 << doublings)
                .min(self.max_pause),
        )
    }
}

/// A destination's circuit-breaker state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationHealth {
    /// The destination.
    pub destination: DestinationId,
    /// Task failures in a row on it (0 after a success).
    pub failures: u32,
    /// Its tasks are not claimed before this time.
    pub paused_until: Option<DateTime<Utc>>,
    /// The last failure's message.
    pub last_error: Option<String>,
}

/// One claim of a task: the history that shows no task ran twice at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAttempt {
    /// The task.
    pub task: TaskId,
    /// 1-based.
    pub attempt: u32,
    /// The worker that claimed it.
    pub worker: String,
    /// When it was claimed.
    pub claimed: DateTime<Utc>,
    /// When it ended: finished, retried, handed back, or its lease ran out (then the
    /// lease's end).
    pub ended: Option<DateTime<Utc>>,
    /// How (`done`, `partial`, `failed`, `cancelled`, `retry`, `released`, `lost`).
    pub outcome: Option<String>,
}

/// What started a job run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// The schedule.
    Schedule,
    /// By hand (`job run`).
    Manual,
    /// Another job's run finished.
    After,
}

/// One run of a job: the tasks it enqueued name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    /// Identity.
    pub id: RunId,
    /// The job.
    pub job: JobId,
    /// The schedule slot it runs for (scheduled runs; at most one run per job and slot),
    /// else when it was started.
    pub slot: DateTime<Utc>,
    /// What started it.
    pub trigger: RunTrigger,
    /// When it was started.
    pub started: DateTime<Utc>,
    /// When its last task ended (set by the scheduler).
    pub finished: Option<DateTime<Utc>>,
    /// Tasks it enqueued.
    pub tasks: u32,
    /// Of those, done, partial, failed and cancelled (set when it finishes).
    pub done: u32,
    /// Partial.
    pub partial: u32,
    /// Failed.
    pub failed: u32,
    /// Cancelled.
    pub cancelled: u32,
}

/// Which tasks a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only these states (empty: all).
    pub states: Vec<TaskState>,
    /// Only this run's.
    pub run: Option<RunId>,
    /// Only this account's.
    pub account: Option<AccountId>,
    /// At most this many (the newest are dropped: listings are oldest first).
    pub limit: Option<u32>,
}

/// A worker's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The worker's name (unique among live workers: `host:pid:n`).
    pub worker: String,
    /// At most this many tasks.
    pub max: u32,
    /// The lane limits.
    pub lanes: Lanes,
    /// The lease each claimed task gets.
    pub lease: Duration,
    /// The time of the claim.
    pub now: DateTime<Utc>,
    /// Take the claim's time from the system clock once the queue's lock is held (the later
    /// of it and `now`): a claim that waited for the lock while another worker ended an
    /// account's task is then recorded after that end, so the attempts history shows the
    /// order things happened in. Workers set it; tests with explicit times do not.
    pub now_after_lock: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in TaskKind::ALL {
            assert_eq!(k.as_str().parse::<TaskKind>().unwrap(), k);
        }
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
            assert_eq!(
                s.is_terminal(),
                !matches!(s, TaskState::Queued | TaskState::Running)
            );
        }
        assert!("nap".parse::<TaskKind>().is_err());
    }

    #[test]
    fn lanes_parse() {
        let lanes = Lanes::parse("backup=2, restore=1").unwrap();
        assert_eq!(lanes.get(TaskKind::Backup), 2);
        assert_eq!(lanes.get(TaskKind::Restore), 1);
        assert_eq!(lanes.get(TaskKind::Verify), 2);
        assert!(Lanes::parse("backup").is_err());
        assert!(Lanes::parse("nap=1").is_err());
        assert!(Lanes::parse("backup=x").is_err());
    }

    #[test]
    fn backoff_and_breaker() {
        let r = RetryPolicy::default();
        assert_eq!(r.backoff(1), Duration::from_secs(30));
        assert_eq!(r.backoff(2), Duration::from_secs(60));
        assert_eq!(r.backoff(40), Duration::from_secs(3600));
        assert!(r.retries(true, 1, 3));
        assert!(!r.retries(true, 3, 3));
        assert!(!r.retries(false, 1, 3));
        let b = BreakerPolicy::default();
        assert_eq!(b.pause_after(2), None);
        assert_eq!(b.pause_after(3), Some(Duration::from_secs(300)));
        assert_eq!(b.pause_after(4), Some(Duration::from_secs(600)));
        assert_eq!(b.pause_after(30), Some(Duration::from_secs(3600)));
    }
}
