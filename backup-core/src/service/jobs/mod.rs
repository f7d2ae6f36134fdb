//! Jobs, their runs, the queue's tasks, priorities, the scheduler and the health summary.
//! The workers that run tasks are in [`worker`].
//!
//! A job run enqueues one backup task per selected account and destination, each with the
//! priority of the account's priority group; the queue ([`JobQueue`]) hands tasks to
//! workers on any number of machines, one per account at a time, within the lanes. The
//! scheduler ([`Server::schedule_due`]) starts the runs that are due (once per slot, however
//! many schedulers run) and settles finished runs, starting the jobs that follow them.

mod worker;

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Server;
use crate::error::{Error, Result};
use crate::model::{
    Account, AccountId, AccountStatus, Job, JobId, JobRun, NewTask, PriorityGroup, RetryPolicy,
    RunId, RunTrigger, Schedule, SnapshotKind, Tag, TagColor, Task, TaskFilter, TaskId, TaskKind,
    TaskState,
};
use crate::ports::JobQueue;

pub use worker::{DaemonReport, TaskEnd, WorkerOptions};

/// What a backup task's payload holds.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct BackupPayload {
    /// The snapshot kind (scheduled for a job's runs, on-demand for "create snapshot").
    pub kind: SnapshotKind,
}

/// The priority of `account`'s tasks of `kind` (lower runs first): from the group named by
/// the account's override, else from the best (lowest) group carrying one of its tags, else
/// from the default group, else [`PriorityGroup::NORMAL`]. Restores add a base by account
/// level (administrators 1000, resellers 10000, users 100000), so parents restore before
/// their children; verification and retention take the backup priority.
pub fn priority_for(account: &Account, kind: TaskKind, groups: &[PriorityGroup]) -> i64 {
    let value = |g: &PriorityGroup| -> u8 {
        match kind {
            TaskKind::Backup | TaskKind::Verify | TaskKind::Retention => g.backup,
            TaskKind::Restore => g.restore,
            TaskKind::Download => g.download,
            TaskKind::Clone => g.clone,
        }
    };
    let group = account
        .priority_group
        .and_then(|id| groups.iter().find(|g| g.id == id))
        .or_else(|| {
            groups
                .iter()
                .filter(|g| g.tags.iter().any(|t| account.tags.contains(t)))
                .min_by_key(|g| value(g))
        })
        .or_else(|| groups.iter().find(|g| g.default));
    let base = match kind {
        TaskKind::Restore if account.admin => 1_000,
        TaskKind::Restore if account.reseller => 10_000,
        TaskKind::Restore => 100_000,
        _ => 0,
    };
    base + i64::from(group.map_or(PriorityGroup::NORMAL, value))
}

/// The monitor's view of one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobHealth {
    /// The job.
    pub job: JobId,
    /// Its name.
    pub name: String,
    /// Its latest run.
    pub last_run: Option<JobRun>,
    /// When its latest run with no failed task finished.
    pub last_success: Option<DateTime<Utc>>,
    /// When it runs next (timed schedules).
    pub next_run: Option<DateTime<Utc>>,
}

/// An account not backed up for a while.
#[derive(Debug, Clone, Serialize)]
pub struct StaleAccount {
    /// The account.
    pub account: AccountId,
    /// Its username.
    pub username: String,
    /// Its newest snapshot's time (`None`: never backed up).
    pub last_backup: Option<DateTime<Utc>>,
}

/// The health summary (JetBackup's monitor): jobs, accounts not backed up for `stale_days`,
/// the queue's counts and paused destinations.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// Per job, by name.
    pub jobs: Vec<JobHealth>,
    /// Active or suspended accounts whose newest snapshot is older than the limit.
    pub stale_accounts: Vec<StaleAccount>,
    /// The limit, in days.
    pub stale_days: u32,
    /// Queued tasks.
    pub queued: usize,
    /// Running tasks.
    pub running: usize,
    /// Destinations whose tasks wait (circuit breaker), by name, with the time they resume.
    pub paused_destinations: Vec<(String, DateTime<Utc>)>,
}

impl Server {
    /// The queue, or [`Error::Invalid`] when the server was built without one.
    pub fn queue(&self) -> Result<&std::sync::Arc<dyn JobQueue>> {
        self.inner.queue.as_ref().ok_or_else(|| {
            Error::invalid(
                "queue",
                "this server has no job queue (ServerBuilder::queue)",
            )
        })
    }

    /// Adds a job: its name is unique, its destinations and the job it follows exist, its
    /// retention is valid. At most one job is the on-demand job.
    pub async fn add_job(&self, job: Job) -> Result<Job> {
        let job = Job {
            schedule: job.schedule.normalized(),
            ..job
        };
        job.schedule.validate()?;
        job.retention.validate()?;
        job.accounts.matcher()?;
        let jobs = self.inner.catalog.list_jobs().await?;
        if jobs.iter().any(|j| j.name == job.name && j.id != job.id) {
            return Err(Error::AlreadyExists {
                what: format!("job {:?}", job.name),
            });
        }
        if job.on_demand && jobs.iter().any(|j| j.on_demand && j.id != job.id) {
            return Err(Error::refused(
                "there is already an on-demand job; change it instead of adding another",
            ));
        }
        if let Schedule::After { job: first } = &job.schedule
            && (*first == job.id || !jobs.iter().any(|j| j.id == *first))
        {
            return Err(Error::invalid(
                "schedule",
                "an after-job schedule follows another existing job",
            ));
        }
        for d in &job.destinations {
            if self.inner.catalog.get_destination(*d).await?.is_none() {
                return Err(Error::not_found(format!("destination {d}")));
            }
        }
        self.inner.catalog.put_job(&job).await?;
        Ok(job)
    }

    /// Every job, by name.
    pub async fn jobs(&self) -> Result<Vec<Job>> {
        self.inner.catalog.list_jobs().await
    }

    /// A job by name or id.
    pub async fn job(&self, name_or_id: &str) -> Result<Job> {
        let jobs = self.inner.catalog.list_jobs().await?;
        let id: Option<JobId> = name_or_id.parse().ok();
        jobs.into_iter()
            .find(|j| j.name == name_or_id || Some(j.id) == id)
            .ok_or_else(|| Error::not_found(format!("job {name_or_id:?}")))
    }

    /// The on-demand job ("create snapshot"), if one is set.
    pub async fn on_demand_job(&self) -> Result<Option<Job>> {
        Ok(self
            .inner
            .catalog
            .list_jobs()
            .await?
            .into_iter()
            .find(|j| j.on_demand))
    }

    /// Adds a tag (unique name).
    pub async fn add_tag(&self, name: &str, color: Option<TagColor>) -> Result<Tag> {
        let tag = Tag::new(name, color)?;
        if self.tag(&tag.name).await.is_ok() {
            return Err(Error::AlreadyExists {
                what: format!("tag {:?}", tag.name),
            });
        }
        self.inner.catalog.put_tag(&tag).await?;
        Ok(tag)
    }

    /// A tag by name or id.
    pub async fn tag(&self, name_or_id: &str) -> Result<Tag> {
        let id = name_or_id.parse().ok();
        self.inner
            .catalog
            .list_tags()
            .await?
            .into_iter()
            .find(|t| t.name == name_or_id || Some(t.id) == id)
            .ok_or_else(|| Error::not_found(format!("tag {name_or_id:?}")))
    }

    /// Every tag, by name.
    pub async fn tags(&self) -> Result<Vec<Tag>> {
        self.inner.catalog.list_tags().await
    }

    /// Every priority group, by name. A catalog without any gets the built-in High (10),
    /// Normal (50, the default) and Low (90) first.
    pub async fn priority_groups(&self) -> Result<Vec<PriorityGroup>> {
        let groups = self.inner.catalog.list_priority_groups().await?;
        if !groups.is_empty() {
            return Ok(groups);
        }
        for g in PriorityGroup::built_in() {
            self.inner.catalog.put_priority_group(&g).await?;
        }
        self.inner.catalog.list_priority_groups().await
    }

    /// A priority group by name or id.
    pub async fn priority_group(&self, name_or_id: &str) -> Result<PriorityGroup> {
        let id = name_or_id.parse().ok();
        self.priority_groups()
            .await?
            .into_iter()
            .find(|g| g.name == name_or_id || Some(g.id) == id)
            .ok_or_else(|| Error::not_found(format!("priority group {name_or_id:?}")))
    }

    /// Adds or replaces (by name) a priority group; a new default group takes the role from
    /// the old one.
    pub async fn put_priority_group(&self, group: PriorityGroup) -> Result<PriorityGroup> {
        let existing = self.priority_groups().await?;
        let mut group = group;
        if let Some(old) = existing.iter().find(|g| g.name == group.name) {
            group.id = old.id;
        }
        for t in &group.tags {
            if self.inner.catalog.get_tag(*t).await?.is_none() {
                return Err(Error::not_found(format!("tag {t}")));
            }
        }
        if group.default {
            for mut other in existing
                .into_iter()
                .filter(|g| g.default && g.id != group.id)
            {
                other.default = false;
                self.inner.catalog.put_priority_group(&other).await?;
            }
        }
        self.inner.catalog.put_priority_group(&group).await?;
        Ok(group)
    }

    /// The live data directory of `account`: its recorded source, else the server's
    /// accounts root for its username.
    pub async fn source_dir(&self, account: &Account) -> Result<std::path::PathBuf> {
        if let Some(dir) = &account.source {
            return Ok(dir.clone());
        }
        Ok(self.settings().await?.account_dir(&account.username))
    }

    /// Starts a run of `job` now: one backup task per selected account and destination
    /// (accounts that already have a queued or running task of this job and destination
    /// are not queued twice), with their priorities. `slot` is the schedule slot the run is
    /// for (scheduled runs); `None` uses now. `Ok(None)` when a run of that slot exists
    /// already (another scheduler started it).
    pub async fn start_job_run(
        &self,
        job: &Job,
        trigger: RunTrigger,
        slot: Option<DateTime<Utc>>,
    ) -> Result<Option<(JobRun, Vec<TaskId>)>> {
        let accounts = self.inner.catalog.list_accounts().await?;
        self.start_run_of(job, trigger, slot, accounts).await
    }

    /// "Create snapshot": queues a run of the on-demand job for one account (its items,
    /// destinations and excludes; on-demand snapshots, counted against the account's cap).
    /// Fails with [`Error::NotFound`] when no job is the on-demand job, and with
    /// [`Error::SettingRefused`] when the job does not take the account (status, selection).
    pub async fn queue_snapshot(&self, account: &Account) -> Result<(JobRun, Vec<TaskId>)> {
        let job = self
            .on_demand_job()
            .await?
            .ok_or_else(|| Error::not_found("an on-demand job (job add NAME --on-demand)"))?;
        let account = self
            .inner
            .catalog
            .get_account(account.id)
            .await?
            .ok_or_else(|| Error::not_found(format!("account {}", account.username)))?;
        if !job.takes(&job.accounts.matcher()?, &account) {
            return Err(Error::setting(
                "on-demand job",
                format!(
                    "the on-demand job {} does not back up account {} (its status or the job's selection)",
                    job.name, account.username
                ),
            ));
        }
        self.start_run_of(&job, RunTrigger::Manual, None, vec![account])
            .await?
            .ok_or_else(|| Error::refused("a run of the on-demand job was just started"))
    }

    /// Queues one task of `kind` (verify, retention, ...) for `account`, on `destination`
    /// when given, with the account's priority for the kind; `payload` is the kind's
    /// parameters (verify: `{"read_data": true}`; retention: none, or the job's policy when
    /// `job` is given).
    pub async fn queue_task(
        &self,
        kind: TaskKind,
        account: &Account,
        destination: Option<&str>,
        job: Option<JobId>,
        payload: serde_json::Value,
    ) -> Result<TaskId> {
        let destination = match destination {
            Some(name) => Some(self.destination(name).await?.id),
            None => None,
        };
        let groups = self.priority_groups().await?;
        let now = self.now();
        let task = NewTask {
            kind,
            account: account.id,
            username: account.username.to_string(),
            job,
            run: None,
            destination,
            priority: priority_for(account, kind, &groups),
            not_before: now,
            max_attempts: RetryPolicy::default().max_attempts,
            payload,
        };
        let ids = self.queue()?.enqueue(&[task], now).await?;
        ids.into_iter().next().ok_or_else(|| Error::Internal {
            reason: "the queue returned no id for an enqueued task".into(),
        })
    }

    async fn start_run_of(
        &self,
        job: &Job,
        trigger: RunTrigger,
        slot: Option<DateTime<Utc>>,
        accounts: Vec<Account>,
    ) -> Result<Option<(JobRun, Vec<TaskId>)>> {
        let queue = self.queue()?.clone();
        let now = self.now();
        let groups = self.priority_groups().await?;
        let matcher = job.accounts.matcher()?;
        let pending: HashSet<(AccountId, Option<crate::model::DestinationId>)> = queue
            .list_tasks(&TaskFilter {
                states: vec![TaskState::Queued, TaskState::Running],
                ..TaskFilter::default()
            })
            .await?
            .into_iter()
            .filter(|t| t.job == Some(job.id))
            .map(|t| (t.account, t.destination))
            .collect();
        let delay = match trigger {
            RunTrigger::After => chrono::Duration::minutes(i64::from(job.delay_minutes)),
            _ => chrono::Duration::zero(),
        };
        let run_id = RunId::new();
        let payload = serde_json::to_value(BackupPayload {
            kind: if job.on_demand {
                SnapshotKind::OnDemand
            } else {
                SnapshotKind::Scheduled
            },
        })
        .map_err(|e| Error::Internal {
            reason: format!("encoding a task payload: {e}"),
        })?;
        let retry = RetryPolicy::default();
        let mut tasks = Vec::new();
        for account in accounts.iter().filter(|a| job.takes(&matcher, a)) {
            for destination in &job.destinations {
                if pending.contains(&(account.id, Some(*destination))) {
                    continue;
                }
                tasks.push(NewTask {
                    kind: TaskKind::Backup,
                    account: account.id,
                    username: account.username.to_string(),
                    job: Some(job.id),
                    run: Some(run_id),
                    destination: Some(*destination),
                    priority: priority_for(account, TaskKind::Backup, &groups),
                    not_before: now + delay,
                    max_attempts: retry.max_attempts,
                    payload: payload.clone(),
                });
            }
        }
        let run = JobRun {
            id: run_id,
            job: job.id,
            slot: slot.unwrap_or(now),
            trigger,
            started: now,
            finished: None,
            tasks: u32::try_from(tasks.len()).unwrap_or(u32::MAX),
            done: 0,
            partial: 0,
            failed: 0,
            cancelled: 0,
        };
        if !queue.start_run(&run).await? {
            return Ok(None);
        }
        let ids = queue.enqueue(&tasks, now).await?;
        if ids.is_empty() {
            let mut run = run.clone();
            run.finished = Some(now);
            queue.update_run(&run).await?;
            return Ok(Some((run, ids)));
        }
        Ok(Some((run, ids)))
    }

    /// Starts the runs of timed jobs that are due at `now`: one run per job however many
    /// slots were missed (it takes the latest slot that passed), and none for a slot that
    /// already has a run.
    pub async fn schedule_due(&self, now: DateTime<Utc>) -> Result<Vec<JobRun>> {
        let queue = self.queue()?.clone();
        let mut started = Vec::new();
        for job in self.inner.catalog.list_jobs().await? {
            if !job.enabled || !job.schedule.is_timed() {
                continue;
            }
            let runs = queue.list_runs(Some(job.id), 50).await?;
            let last = runs
                .iter()
                .find(|r| r.trigger == RunTrigger::Schedule)
                .map(|r| r.slot)
                .or(job.created)
                // A job stored without a creation time: its latest slot is due now (32 days
                // back holds a slot of every timed schedule).
                .unwrap_or(now - chrono::Duration::days(32));
            if let Some(slot) = job.timing().due(last, now)
                && let Some((run, _)) = self
                    .start_job_run(&job, RunTrigger::Schedule, Some(slot))
                    .await?
            {
                started.push(run);
            }
        }
        Ok(started)
    }

    /// Settles runs whose tasks have all ended (their counts and end are recorded) and
    /// starts the jobs scheduled after them. Returns the runs settled now.
    pub async fn settle_runs(&self) -> Result<Vec<JobRun>> {
        let queue = self.queue()?.clone();
        let mut settled = Vec::new();
        let open: Vec<JobRun> = queue
            .list_runs(None, 500)
            .await?
            .into_iter()
            .filter(|r| r.finished.is_none())
            .collect();
        if open.is_empty() {
            return Ok(settled);
        }
        let jobs = self.inner.catalog.list_jobs().await?;
        for mut run in open {
            let tasks = queue
                .list_tasks(&TaskFilter {
                    run: Some(run.id),
                    ..TaskFilter::default()
                })
                .await?;
            if tasks.iter().any(|t| !t.state.is_terminal()) {
                continue;
            }
            let count = |s: TaskState| tasks.iter().filter(|t| t.state == s).count() as u32;
            run.done = count(TaskState::Done);
            run.partial = count(TaskState::Partial);
            run.failed = count(TaskState::Failed);
            run.cancelled = count(TaskState::Cancelled);
            let finished = tasks
                .iter()
                .filter_map(|t| t.finished)
                .max()
                .unwrap_or(run.started);
            run.finished = Some(finished);
            queue.update_run(&run).await?;
            for next in jobs.iter().filter(|j| {
                j.enabled && matches!(j.schedule, Schedule::After { job } if job == run.job)
            }) {
                // The slot is the first job's run: however many schedulers settle it, the
                // follower starts once.
                self.start_job_run(next, RunTrigger::After, Some(run.slot))
                    .await?;
            }
            settled.push(run);
        }
        Ok(settled)
    }

    /// Cancels a task: a queued one at once, a running one at its worker's next check.
    pub async fn cancel_task(&self, task: TaskId) -> Result<TaskState> {
        let now = self.now();
        self.queue()?
            .cancel(task, now)
            .await?
            .ok_or_else(|| Error::not_found(format!("task {task}")))
    }

    /// Tasks, oldest first.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>> {
        self.queue()?.list_tasks(filter).await
    }

    /// Per job, by name: its latest run, last success and next run (the jobs part of
    /// [`Server::health`], without the per-account scan).
    pub async fn job_health(&self) -> Result<Vec<JobHealth>> {
        let queue = self.queue()?.clone();
        let now = self.now();
        let mut jobs = Vec::new();
        for job in self.inner.catalog.list_jobs().await? {
            let runs = queue.list_runs(Some(job.id), 50).await?;
            let last_success = runs
                .iter()
                .filter(|r| r.failed == 0 && r.cancelled == 0)
                .filter_map(|r| r.finished)
                .max();
            let last_scheduled = runs
                .iter()
                .find(|r| r.trigger == RunTrigger::Schedule)
                .map(|r| r.slot)
                .or(job.created)
                .unwrap_or(now);
            jobs.push(JobHealth {
                job: job.id,
                name: job.name.clone(),
                last_run: runs.first().cloned(),
                last_success,
                next_run: job.timing().next_slot(last_scheduled),
            });
        }
        Ok(jobs)
    }

    /// The health summary: per job its last run, last success and next run; accounts
    /// (active or suspended) whose newest snapshot is older than `stale_days` days; the
    /// queue's counts; destinations paused by the circuit breaker.
    pub async fn health(&self, stale_days: u32) -> Result<Health> {
        let queue = self.queue()?.clone();
        let now = self.now();
        let jobs = self.job_health().await?;
        let limit = now
            .checked_sub_signed(chrono::Duration::days(i64::from(stale_days)))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut stale_accounts = Vec::new();
        for account in self.inner.catalog.list_accounts().await? {
            if !matches!(
                account.status,
                AccountStatus::Active | AccountStatus::Suspended
            ) {
                continue;
            }
            let last_backup = self
                .inner
                .catalog
                .list_snapshots(account.id)
                .await?
                .iter()
                .map(|s| s.created)
                .max();
            if last_backup.is_none_or(|t| t < limit) {
                stale_accounts.push(StaleAccount {
                    account: account.id,
                    username: account.username.to_string(),
                    last_backup,
                });
            }
        }
        let active = queue
            .list_tasks(&TaskFilter {
                states: vec![TaskState::Queued, TaskState::Running],
                ..TaskFilter::default()
            })
            .await?;
        let destinations = self.inner.catalog.list_destinations().await?;
        let paused_destinations = queue
            .destination_health()
            .await?
            .into_iter()
            .filter_map(|h| {
                let until = h.paused_until.filter(|t| *t > now)?;
                let name = destinations
                    .iter()
                    .find(|d| d.id == h.destination)
                    .map_or_else(|| h.destination.to_string(), |d| d.name.clone());
                Some((name, until))
            })
            .collect();
        Ok(Health {
            jobs,
            stale_accounts,
            stale_days,
            queued: active
                .iter()
                .filter(|t| t.state == TaskState::Queued)
                .count(),
            running: active
                .iter()
                .filter(|t| t.state == TaskState::Running)
                .count(),
            paused_destinations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_override_then_tags_then_default() {
        let groups = PriorityGroup::built_in();
        let high = groups.iter().find(|g| g.name == "High").unwrap().clone();
        let mut tagged = PriorityGroup::new("Tagged", 30, 31, 32, 33).unwrap();
        let tag = crate::model::TagId::new();
        tagged.tags.push(tag);
        let groups = [groups, vec![tagged]].concat();
        let mut a = Account::new("a").unwrap();
        assert_eq!(priority_for(&a, TaskKind::Backup, &groups), 50);
        a.tags.push(tag);
        assert_eq!(priority_for(&a, TaskKind::Backup, &groups), 30);
        assert_eq!(priority_for(&a, TaskKind::Clone, &groups), 33);
        assert_eq!(priority_for(&a, TaskKind::Restore, &groups), 100_031);
        a.priority_group = Some(high.id);
        assert_eq!(priority_for(&a, TaskKind::Backup, &groups), 10);
        a.reseller = true;
        assert_eq!(priority_for(&a, TaskKind::Restore, &groups), 10_010);
        assert_eq!(priority_for(&a, TaskKind::Backup, &[]), 50);
    }
}
