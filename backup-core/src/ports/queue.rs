//! [`JobQueue`]: the persistent task queue (in the catalog's database).

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::{
    BreakerPolicy, ClaimRequest, DestinationHealth, DestinationId, Heartbeat, JobId, JobRun,
    NewTask, Outcome, RunId, Task, TaskAttempt, TaskFilter, TaskId, TaskProgress, TaskState,
};

/// The task queue every worker of every machine shares.
///
/// # Contract
///
/// Implementations (SQLite for one machine, PostgreSQL for many; the conformance suite in
/// `backup-catalog` checks them) keep these rules, atomically against concurrent callers in
/// any number of processes:
///
/// - **claim** takes queued tasks whose `not_before` has come, lowest `priority` first,
///   then oldest (`enqueued`, then id); it never takes a task of an account that has a
///   running task, never two of one account, never more running tasks of a kind than the
///   request's lanes allow (counting every worker's), and never a task whose destination
///   is paused by the circuit breaker. A claimed task is `Running`, its `attempts` counted,
///   its lease `now + lease`, and an attempt is recorded in the history. Before choosing,
///   claim hands back every running task whose lease ran out: to the queue if attempts
///   remain, else failed ("worker lost"); the lost attempt ends at its lease's end;
/// - **heartbeat**, **finish**, **retry** and **release** act only for the worker holding
///   the task's lease (an unexpired one): otherwise heartbeat answers
///   [`Heartbeat::Lost`] and the others `Ok(false)` and change nothing;
/// - **retry** puts a running task back in the queue until `not_before` with the error's
///   message; **release** hands it back at once without counting the attempt (a worker
///   shutting down);
/// - **cancel** ends a queued task at once and asks a running one to stop (its worker sees
///   [`Heartbeat::CancelRequested`] and finishes it as cancelled);
/// - **record_destination** counts task failures in a row on a destination (a success
///   resets the count and the pause) and pauses it as the policy says;
/// - a task whose cancellation was asked for never goes back to the queue: a retry, a
///   release or a lapsed lease ends it `Cancelled`;
/// - boundaries: a lease holds while `lease_until >= now` and lapses when `< now`; a task is
///   due when `not_before <= now`; a destination is paused while `paused_until > now`;
/// - attempt rows are numbered in claim order (a release lowers `attempts`, not the
///   history), and `claim` returns tasks in the order it chose them;
/// - **start_run** records a job run; a second run of the same job and slot is refused
///   (`Ok(false)`), so several schedulers never start a slot twice.
#[async_trait]
pub trait JobQueue: Send + Sync + Debug + 'static {
    /// Adds tasks (in one transaction), `Queued`, enqueued `now`; returns their ids.
    async fn enqueue(&self, tasks: &[NewTask], now: DateTime<Utc>) -> Result<Vec<TaskId>>;
    /// Claims up to `request.max` tasks for a worker (see the contract).
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Task>>;
    /// Renews the lease of a running task to `lease_until` and stores its progress.
    async fn heartbeat(
        &self,
        task: TaskId,
        worker: &str,
        lease_until: DateTime<Utc>,
        progress: Option<&TaskProgress>,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat>;
    /// Ends a running task with its outcome.
    async fn finish(
        &self,
        task: TaskId,
        worker: &str,
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Puts a running task back in the queue until `not_before`, with the error's message.
    async fn retry(
        &self,
        task: TaskId,
        worker: &str,
        not_before: DateTime<Utc>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Hands a running task back to the queue at once, its attempt not counted.
    async fn release(&self, task: TaskId, worker: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Cancels a task: a queued one ends `Cancelled`, a running one is asked to stop. The
    /// state after the call; `None` for an unknown task.
    async fn cancel(&self, task: TaskId, now: DateTime<Utc>) -> Result<Option<TaskState>>;
    /// One task.
    async fn get_task(&self, task: TaskId) -> Result<Option<Task>>;
    /// Tasks, oldest first (by id).
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>>;
    /// The attempts of one task, or of every task when `None`, by task then attempt.
    async fn task_attempts(&self, task: Option<TaskId>) -> Result<Vec<TaskAttempt>>;
    /// Records a task's success (`error` `None`) or failure on a destination.
    async fn record_destination(
        &self,
        destination: DestinationId,
        error: Option<&str>,
        policy: &BreakerPolicy,
        now: DateTime<Utc>,
    ) -> Result<DestinationHealth>;
    /// The circuit-breaker state of every destination that had a task, by id.
    async fn destination_health(&self) -> Result<Vec<DestinationHealth>>;
    /// Records a new job run; `false` if the job already has a run for that slot.
    async fn start_run(&self, run: &JobRun) -> Result<bool>;
    /// Replaces a run's row (its counts and end).
    async fn update_run(&self, run: &JobRun) -> Result<()>;
    /// A job's runs, newest first, at most `limit`.
    async fn list_runs(&self, job: Option<JobId>, limit: u32) -> Result<Vec<JobRun>>;
    /// One run.
    async fn get_run(&self, run: RunId) -> Result<Option<JobRun>>;
}
