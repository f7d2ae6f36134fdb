//! The daemon: the scheduler and the workers that run the queue's tasks.
//!
//! [`Server::run_daemon`] claims tasks within the lanes, runs each with a heartbeat that
//! renews its lease and writes its progress to the queue row (so another process, a
//! panel's web page, reads it), and ends it by its outcome: transient errors go back to
//! the queue with backoff until the task's attempts run out, permanent ones fail at once,
//! storage errors count against the destination's circuit breaker. A task whose lease was
//! lost (the worker stalled past it and another took the task) stops and records nothing.
//! On shutdown the daemon stops claiming, lets running tasks finish for a grace period,
//! then cancels them and hands them back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::BackupPayload;
use crate::engine::ProgressEvent;
use crate::error::{Error, Result};
use crate::model::{
    BreakerPolicy, ClaimRequest, Heartbeat, Lanes, Outcome, RetryPolicy, RunId, Task, TaskFilter,
    TaskId, TaskKind, TaskProgress, TaskState,
};
use crate::service::{
    BackupJob, ForgetRequest, OperationEvent, OperationProgress, PruneRequest, Server,
    VerifyRequest,
};

/// How a daemon (or `job run --wait`) works the queue.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// This worker's name in the queue: unique among live workers (the default is
    /// `HOST:PID:RANDOM`).
    pub name: String,
    /// Tasks run at once by this process.
    pub workers: usize,
    /// Queue-wide limits per task kind (every worker's running tasks count).
    pub lanes: Lanes,
    /// Each claimed task's lease; renewed by heartbeats (which also write the task's
    /// progress) every third of it, at most every 5 s. A worker that dies gives its tasks back when the lease runs out.
    pub lease: Duration,
    /// How often an idle daemon looks at the queue and the schedules.
    pub poll: Duration,
    /// Backoff of transient errors (a task's attempts are set when it is enqueued).
    pub retry: RetryPolicy,
    /// The destinations' circuit breaker.
    pub breaker: BreakerPolicy,
    /// Start the runs of timed jobs that are due.
    pub schedule: bool,
    /// Exit when nothing is left to wait for: no queued or running task (of `runs`, when
    /// given) and none claimed.
    pub once: bool,
    /// With `once`, wait only for these runs' tasks.
    pub runs: Vec<RunId>,
    /// On shutdown, how long running tasks may go on before they are cancelled and handed
    /// back.
    pub grace: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".into());
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        Self {
            name: format!("{host}:{}:{}", std::process::id(), &nonce[..8]),
            workers: 2,
            lanes: Lanes::default(),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            schedule: true,
            once: false,
            runs: Vec::new(),
            grace: Duration::from_secs(30),
        }
    }
}

/// How one task ended in this daemon.
#[derive(Debug, Clone, Serialize)]
pub struct TaskEnd {
    /// The task.
    pub task: TaskId,
    /// Its kind.
    pub kind: TaskKind,
    /// The account's username.
    pub username: String,
    /// Its state afterwards (`Queued` for a retry or a hand-back).
    pub state: TaskState,
    /// The outcome's message or the error.
    pub message: Option<String>,
    /// The lease was lost: another worker may have the task; nothing was recorded here.
    pub lost: bool,
}

/// What a daemon did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonReport {
    /// Runs the scheduler started.
    pub runs_started: usize,
    /// The tasks it ran, in the order they ended.
    pub tasks: Vec<TaskEnd>,
}

/// Progress of a running task, kept for its heartbeats.
#[derive(Debug, Default)]
struct QueueProgress {
    phase: std::sync::Mutex<String>,
    files: AtomicU64,
    bytes: AtomicU64,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
}

impl QueueProgress {
    fn snapshot(&self) -> TaskProgress {
        let total = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|n| *n > 0);
        TaskProgress {
            phase: self.phase.lock().map(|p| p.clone()).unwrap_or_default(),
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            files_total: total(&self.files_total),
            bytes_total: total(&self.bytes_total),
        }
    }
}

impl OperationProgress for QueueProgress {
    fn event(&self, event: &OperationEvent) {
        if let Ok(serde_json::Value::String(name)) = serde_json::to_value(event.phase)
            && let Ok(mut phase) = self.phase.lock()
            && *phase != name
        {
            *phase = name;
        }
        if let Some(t) = event.totals {
            self.files_total.store(t.files, Ordering::Relaxed);
            self.bytes_total.store(t.bytes, Ordering::Relaxed);
        }
        match event.step {
            Some(ProgressEvent::Bytes { bytes }) => {
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Some(ProgressEvent::FileDone) => {
                self.files.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// A storage error counts against its destination's circuit breaker; account settings,
/// catalog errors, keys and the tenant's own files do not.
fn destination_failure(error: &Error) -> bool {
    matches!(error, Error::Storage { .. })
}

impl Server {
    /// Runs the scheduler (with `options.schedule`) and `options.workers` workers over the
    /// queue until `stop` fires (then: no more claims, running tasks get `options.grace` to
    /// finish, then are cancelled and handed back) or, with `options.once`, until nothing is
    /// left to wait for.
    pub async fn run_daemon(
        &self,
        options: WorkerOptions,
        stop: CancellationToken,
    ) -> Result<DaemonReport> {
        let queue = self.queue()?.clone();
        let options = Arc::new(options);
        let hard_stop = CancellationToken::new();
        let mut report = DaemonReport::default();
        let mut running: JoinSet<TaskEnd> = JoinSet::new();
        let mut last_tick: Option<tokio::time::Instant> = None;
        loop {
            let tick_due = last_tick.is_none_or(|t| t.elapsed() >= options.poll);
            if tick_due && !stop.is_cancelled() {
                last_tick = Some(tokio::time::Instant::now());
                if options.schedule {
                    match self.schedule_due(self.now()).await {
                        Ok(runs) => report.runs_started += runs.len(),
                        Err(e) => keep_going(e, "starting the runs that are due")?,
                    }
                }
                if let Err(e) = self.settle_runs().await {
                    keep_going(e, "settling finished runs")?;
                }
            }
            if stop.is_cancelled() {
                break;
            }
            let free = options.workers.saturating_sub(running.len());
            let mut claimed = 0;
            if free > 0 {
                let tasks = queue
                    .claim(&ClaimRequest {
                        worker: options.name.clone(),
                        max: u32::try_from(free).unwrap_or(u32::MAX),
                        lanes: options.lanes.clone(),
                        lease: options.lease,
                        now: self.now(),
                        now_after_lock: true,
                    })
                    .await
                    .or_else(|e| keep_going(e, "claiming tasks").map(|()| Vec::new()))?;
                claimed = tasks.len();
                for task in tasks {
                    running.spawn(self.clone().run_task(
                        task,
                        options.clone(),
                        hard_stop.child_token(),
                    ));
                }
            }
            if options.once
                && running.is_empty()
                && claimed == 0
                && self
                    .idle(&options)
                    .await
                    .or_else(|e| keep_going(e, "reading the queue").map(|()| false))?
            {
                // Settling may start the jobs that follow the runs just ended: their tasks
                // are work for this daemon too.
                self.settle_runs().await?;
                if self.idle(&options).await? {
                    break;
                }
            }
            if claimed > 0 && claimed == free {
                continue;
            }
            tokio::select! {
                Some(end) = running.join_next(), if !running.is_empty() => match end {
                    Ok(end) => report.tasks.push(end),
                    // A bug in one task's work: its lease runs out and the queue gives it
                    // back (or fails it after its attempts); the others go on.
                    Err(e) => tracing::error!(error = %e, "a task's worker panicked"),
                },
                _ = tokio::time::sleep(options.poll) => {}
                _ = stop.cancelled() => {}
            }
        }
        // Shutdown: no more claims; running tasks get the grace period, then are cancelled
        // and handed back.
        let deadline = tokio::time::sleep(options.grace);
        tokio::pin!(deadline);
        while !running.is_empty() {
            tokio::select! {
                Some(end) = running.join_next() => {
                    if let Ok(end) = end {
                        report.tasks.push(end);
                    }
                }
                _ = &mut deadline, if !hard_stop.is_cancelled() => hard_stop.cancel(),
            }
        }
        Ok(report)
    }

    /// Whether a `once` daemon has nothing left to wait for.
    async fn idle(&self, options: &WorkerOptions) -> Result<bool> {
        let active = self
            .queue()?
            .list_tasks(&TaskFilter {
                states: vec![TaskState::Queued, TaskState::Running],
                ..TaskFilter::default()
            })
            .await?;
        Ok(!active
            .iter()
            .any(|t| options.runs.is_empty() || t.run.is_some_and(|r| options.runs.contains(&r))))
    }

    /// Runs one claimed task with its heartbeat, and ends it in the queue.
    async fn run_task(
        self,
        task: Task,
        options: Arc<WorkerOptions>,
        hard_stop: CancellationToken,
    ) -> TaskEnd {
        let queue = match self.queue() {
            Ok(q) => q.clone(),
            Err(e) => return end(&task, TaskState::Running, Some(e.to_string()), true),
        };
        let cancel = hard_stop.child_token();
        let progress = Arc::new(QueueProgress::default());
        let lost = Arc::new(AtomicBool::new(false));
        let requested = Arc::new(AtomicBool::new(false));
        let beat = (options.lease / 3).min(Duration::from_secs(5));
        let heartbeat = {
            let (queue, server, progress) = (queue.clone(), self.clone(), progress.clone());
            let (lost, requested, cancel) = (lost.clone(), requested.clone(), cancel.clone());
            let (id, worker, lease) = (task.id, options.name.clone(), options.lease);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(beat).await;
                    let now = server.now();
                    let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
                    match queue
                        .heartbeat(id, &worker, until, Some(&progress.snapshot()), now)
                        .await
                    {
                        Ok(Heartbeat::Held) | Err(_) => {}
                        Ok(Heartbeat::CancelRequested) => {
                            requested.store(true, Ordering::SeqCst);
                            cancel.cancel();
                        }
                        Ok(Heartbeat::Lost) => {
                            lost.store(true, Ordering::SeqCst);
                            cancel.cancel();
                            return;
                        }
                    }
                }
            })
        };
        let result = self
            .execute(&task, cancel.clone(), progress.clone(), &options)
            .await;
        heartbeat.abort();
        if lost.load(Ordering::SeqCst) {
            return end(&task, TaskState::Running, None, true);
        }
        let now = self.now();
        let worker = options.name.as_str();
        let task = &task;
        let finish = |outcome: Outcome| {
            let queue = queue.clone();
            async move {
                let state = outcome.state();
                let message = outcome.message().map(str::to_owned);
                match queue.finish(task.id, worker, &outcome, now).await {
                    Ok(true) => end(task, state, message, false),
                    Ok(false) => end(task, TaskState::Running, message, true),
                    Err(e) => end(task, TaskState::Running, Some(e.to_string()), true),
                }
            }
        };
        match result {
            Ok(outcome) => {
                if let Some(d) = task.destination {
                    let _ = queue
                        .record_destination(d, None, &options.breaker, now)
                        .await;
                }
                finish(outcome).await
            }
            Err(_) if requested.load(Ordering::SeqCst) => finish(Outcome::Cancelled).await,
            Err(e) if hard_stop.is_cancelled() || self.inner.shutdown.is_cancelled() => {
                match queue.release(task.id, worker, now).await {
                    Ok(true) => end(task, TaskState::Queued, Some(e.to_string()), false),
                    _ => end(task, TaskState::Running, Some(e.to_string()), true),
                }
            }
            // Not a shutdown and not a lost lease: the last check before the commit saw the
            // cancellation asked for.
            Err(Error::Cancelled) => finish(Outcome::Cancelled).await,
            Err(e) => {
                let message = e.to_string();
                if let Some(d) = task.destination
                    && destination_failure(&e)
                {
                    let _ = queue
                        .record_destination(d, Some(&message), &options.breaker, now)
                        .await;
                }
                let transient = match &e {
                    Error::Storage { source } => self.inner.resolver.is_transient(source),
                    Error::Cancelled => false,
                    other => other.is_transient(),
                };
                if options
                    .retry
                    .retries(transient, task.attempts, task.max_attempts)
                {
                    let wait = options.retry.backoff(task.attempts);
                    let not_before = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    match queue
                        .retry(task.id, worker, not_before, &message, now)
                        .await
                    {
                        Ok(true) => end(task, TaskState::Queued, Some(message), false),
                        _ => end(task, TaskState::Running, Some(message), true),
                    }
                } else {
                    finish(Outcome::Failed { message }).await
                }
            }
        }
    }

    /// Does a task's work.
    async fn execute(
        &self,
        task: &Task,
        cancel: CancellationToken,
        progress: Arc<QueueProgress>,
        options: &WorkerOptions,
    ) -> Result<Outcome> {
        let Some(account) = self.inner.catalog.get_account(task.account).await? else {
            return Ok(Outcome::Failed {
                message: format!("account {} was removed", task.username),
            });
        };
        match task.kind {
            TaskKind::Backup => {
                self.execute_backup(task, &account, cancel, progress, options)
                    .await
            }
            TaskKind::Verify => {
                let read_data = task
                    .payload
                    .get("read_data")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let reports = self
                    .verify(
                        &account,
                        &VerifyRequest {
                            read_data,
                            sample_percent: None,
                            owner_key: None,
                            cancel,
                        },
                    )
                    .await?;
                let bad: Vec<String> = reports
                    .iter()
                    .filter(|(_, r)| !r.is_ok())
                    .map(|(d, r)| format!("{}: {} problems", d.name, r.problems.len()))
                    .collect();
                Ok(if bad.is_empty() {
                    Outcome::Done {
                        message: format!("{} destinations verified", reports.len()),
                    }
                } else {
                    Outcome::Partial {
                        message: bad.join("; "),
                    }
                })
            }
            TaskKind::Retention => self.execute_retention(task, &account, cancel).await,
            TaskKind::Restore | TaskKind::Download | TaskKind::Clone => Ok(Outcome::Failed {
                message: format!(
                    "{} tasks are not run from the queue yet: call the server directly",
                    task.kind
                ),
            }),
        }
    }

    async fn execute_backup(
        &self,
        task: &Task,
        account: &crate::model::Account,
        cancel: CancellationToken,
        progress: Arc<QueueProgress>,
        options: &WorkerOptions,
    ) -> Result<Outcome> {
        let payload: BackupPayload = serde_json::from_value(task.payload.clone())
            .map_err(|e| Error::invalid("task payload", format!("backup task {}: {e}", task.id)))?;
        let job = match task.job {
            Some(id) => self.inner.catalog.get_job(id).await?,
            None => None,
        };
        let destination = match task.destination {
            Some(id) => self.destination_by_id(id).await?,
            None => return Err(Error::invalid("task", "a backup task names a destination")),
        };
        // A task whose attempt committed its snapshot but died before ending the task is
        // not run again: the snapshot names the task. Only a task claimed before can have
        // one (a released attempt, which does not count, never committed), so a first
        // attempt skips the listing.
        let done = if task.attempts > 1 {
            self.inner
                .catalog
                .list_snapshots(account.id)
                .await?
                .into_iter()
                .find(|s| s.task == Some(task.id))
        } else {
            None
        };
        if let Some(s) = done {
            return Ok(Outcome::Done {
                message: format!("snapshot {} (recorded by an earlier attempt)", s.id),
            });
        }
        let dir = self.source_dir(account).await?;
        let meta = tokio::fs::symlink_metadata(&dir).await;
        if !meta.as_ref().is_ok_and(std::fs::Metadata::is_dir) {
            return Ok(Outcome::Failed {
                message: format!(
                    "the account's data directory {} is missing or not a directory",
                    dir.display()
                ),
            });
        }
        let source = self.inner.sources.source(account, &dir)?;
        let still_ours = TaskGuard {
            queue: self.queue()?.clone(),
            task: task.id,
            worker: options.name.clone(),
            lease: options.lease,
            server: self.clone(),
        };
        let mut backup = BackupJob::new(account, source.as_ref(), &destination.name)
            .with_kind(payload.kind)
            .with_cancel(cancel)
            .with_progress(progress);
        backup.task = Some(task.id);
        backup.guard = Some(&still_ours);
        if let Some(job) = &job {
            backup = backup.for_job(job).with_items(job.items.clone());
        }
        let report = self.backup(backup).await?;
        let mut message = format!("snapshot {}", report.snapshot.id);
        if let Some(job) = &job
            && !job.retention.keeps_everything()
        {
            let forgotten = self
                .forget(
                    account,
                    &ForgetRequest {
                        policy: job.retention.clone(),
                        destination: Some(destination.name.clone()),
                        dry_run: false,
                    },
                )
                .await;
            match forgotten {
                Ok(r) => {
                    let n: usize = r.destinations.iter().map(|d| d.forgotten.len()).sum();
                    message.push_str(&format!(", {n} forgotten by the job's retention"));
                }
                Err(e) => {
                    return Ok(Outcome::Partial {
                        message: format!("{message}; retention failed: {e}"),
                    });
                }
            }
        }
        Ok(if report.skipped.is_empty() {
            Outcome::Done { message }
        } else {
            Outcome::Partial {
                message: format!(
                    "{message}: {} entries left out (first: {})",
                    report.skipped.total,
                    report
                        .skipped
                        .entries
                        .first()
                        .map(|e| format!("{} {}: {}", e.item, e.path, e.reason))
                        .unwrap_or_default()
                ),
            }
        })
    }

    /// A retention task: the job's policy on the task's destination (when the task names a
    /// job), then garbage collection of the account there.
    async fn execute_retention(
        &self,
        task: &Task,
        account: &crate::model::Account,
        cancel: CancellationToken,
    ) -> Result<Outcome> {
        let destination = match task.destination {
            Some(id) => Some(self.destination_by_id(id).await?.name),
            None => None,
        };
        let mut message = String::new();
        if let Some(id) = task.job
            && let Some(job) = self.inner.catalog.get_job(id).await?
            && !job.retention.keeps_everything()
        {
            let report = self
                .forget(
                    account,
                    &ForgetRequest {
                        policy: job.retention.clone(),
                        destination: destination.clone(),
                        dry_run: false,
                    },
                )
                .await?;
            let n: usize = report.destinations.iter().map(|d| d.forgotten.len()).sum();
            message.push_str(&format!("{n} snapshots forgotten; "));
        }
        let run = self
            .prune(&PruneRequest {
                destination,
                account: Some(account.id),
                cancel,
                ..PruneRequest::default()
            })
            .await?;
        message.push_str(&format!("{} bytes deleted", run.deleted_bytes()));
        Ok(if run.problems.is_empty() {
            Outcome::Done { message }
        } else {
            Outcome::Partial {
                message: format!(
                    "{message}; {}",
                    run.problems
                        .iter()
                        .map(|p| format!("{p:?}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }
        })
    }
}

/// A daemon outlives a catalog that is busy or briefly unreachable: a transient error of its
/// own bookkeeping is logged and the loop goes on (the next tick tries again); any other
/// error stops the daemon.
fn keep_going(error: Error, doing: &str) -> Result<()> {
    if error.is_transient() {
        tracing::warn!(error = %error, "{doing}; trying again at the next tick");
        Ok(())
    } else {
        Err(error)
    }
}

/// A worker's last check before its backup commits: it still holds the task (a heartbeat
/// renews the lease). A worker that stalled past its lease, whose task another worker may
/// have claimed, records nothing; the lease it just renewed outlasts the commit.
#[derive(Debug)]
struct TaskGuard {
    queue: Arc<dyn crate::ports::JobQueue>,
    task: TaskId,
    worker: String,
    lease: Duration,
    server: Server,
}

#[async_trait::async_trait]
impl crate::engine::CommitGuard for TaskGuard {
    async fn check(&self) -> Result<()> {
        let now = self.server.now();
        let until = now + chrono::Duration::from_std(self.lease).unwrap_or_default();
        match self
            .queue
            .heartbeat(self.task, &self.worker, until, None, now)
            .await?
        {
            Heartbeat::Held => Ok(()),
            Heartbeat::CancelRequested => Err(Error::Cancelled),
            Heartbeat::Lost => Err(Error::refused(format!(
                "task {}: this worker's lease on it ran out (another worker may run it): nothing was recorded",
                self.task
            ))),
        }
    }
}

fn end(task: &Task, state: TaskState, message: Option<String>, lost: bool) -> TaskEnd {
    TaskEnd {
        task: task.id,
        kind: task.kind,
        username: task.username.clone(),
        state,
        message,
        lost,
    }
}
