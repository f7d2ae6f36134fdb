//! `queue!(Catalog, Database, Dialect)`: the [`JobQueue`](backup_core::ports::JobQueue)
//! implementation over a backend's pool, expanded once per backend (see
//! [`crate::sql`] for why a macro). The backend type needs the `pool` field and the
//! `begin_write` method that [`rows!`](crate::sql::rows) needs too; `Dialect` is the
//! backend's [`Dialect`](super::statements::Dialect).
//!
//! A claim is one transaction (see [`statements::SQLITE`](super::statements::SQLITE) and
//! [`statements::POSTGRES`](super::statements::POSTGRES) for how claimers take turns):
//!
//! 1. every running task whose lease ended before now goes back to the queue, or ends
//!    (failed when its attempts are used up, cancelled when that was asked for); its open
//!    attempt ends at the lease's end, `lost`;
//! 2. the running tasks are counted per kind, giving each kind's free lanes;
//! 3. the queued tasks that are due, of a kind with a free lane, of an account without a
//!    running task and not on a paused destination are read in claim order (priority,
//!    enqueued, id), a window at a time, and taken while the claim has room, skipping a
//!    second task of an account already taken and a kind whose lanes filled meanwhile;
//! 4. the chosen tasks become running (worker, attempts + 1, lease, started) and get an
//!    attempt row.

/// Tasks read per window of a claim, beyond 8 per task asked for: most windows hold enough
/// claimable tasks; when one does not, the claim reads the next.
pub(crate) const CLAIM_WINDOW: i64 = 256;

macro_rules! queue {
    ($catalog:ty, $db:ty, $dialect:expr) => {
        const _: () = {
            use std::collections::{BTreeMap, HashSet};

            use async_trait::async_trait;
            use backup_core::model::{
                BreakerPolicy, ClaimRequest, DestinationHealth, DestinationId, Heartbeat, JobId,
                JobRun, NewTask, Outcome, RunId, Task, TaskAttempt, TaskFilter, TaskId, TaskKind,
                TaskProgress, TaskState,
            };
            use backup_core::ports::JobQueue;
            use chrono::{DateTime, Utc};
            use $crate::queue::statements as st;
            use $crate::queue::{Lapse, TaskData, TaskRow};
            use $crate::sql::{decode, encode, split_time};

            type Row = <$db as sqlx::Database>::Row;

            /// Reads a `tasks` row (every column, in `task_columns!` order).
            fn task_row(row: &Row) -> sqlx::Result<TaskRow> {
                use sqlx::Row as _;
                Ok(TaskRow {
                    id: row.try_get(0)?,
                    kind: row.try_get(1)?,
                    account_id: row.try_get(2)?,
                    state: row.try_get(3)?,
                    priority: row.try_get(4)?,
                    enqueued: (row.try_get(5)?, row.try_get(6)?),
                    not_before: (row.try_get(7)?, row.try_get(8)?),
                    attempts: row.try_get(9)?,
                    max_attempts: row.try_get(10)?,
                    worker: row.try_get(11)?,
                    lease: (row.try_get(12)?, row.try_get(13)?),
                    started: (row.try_get(14)?, row.try_get(15)?),
                    finished: (row.try_get(16)?, row.try_get(17)?),
                    cancel_requested: row.try_get(18)?,
                    destination_id: row.try_get(19)?,
                    run_id: row.try_get(20)?,
                    job_id: row.try_get(21)?,
                    message: row.try_get(22)?,
                    progress: row.try_get(23)?,
                    data: row.try_get(24)?,
                })
            }

            fn task(row: &Row) -> $crate::Result<Task> {
                task_row(row)?.into_task()
            }

            impl $catalog {
                async fn queue_enqueue(
                    &self,
                    tasks: &[NewTask],
                    now: DateTime<Utc>,
                ) -> backup_core::Result<Vec<TaskId>> {
                    if let Some(t) = tasks.iter().find(|t| t.max_attempts == 0) {
                        return Err(backup_core::Error::invalid(
                            "max attempts",
                            format!("a {} task of {} allows no attempt", t.kind, t.username),
                        ));
                    }
                    let (secs, nanos) = split_time(now);
                    let mut ids = Vec::with_capacity(tasks.len());
                    let mut tx = self.begin_write().await?;
                    for t in tasks {
                        let id = TaskId::new();
                        let data = TaskData {
                            username: t.username.clone(),
                            payload: t.payload.clone(),
                        };
                        let data = encode("task", &id.to_string(), &data)?;
                        let (nb_secs, nb_nanos) = split_time(t.not_before);
                        sqlx::query(st::INSERT_TASK)
                            .bind(id.to_string())
                            .bind(t.kind.as_str())
                            .bind(t.account.to_string())
                            .bind(t.priority)
                            .bind(secs)
                            .bind(nanos)
                            .bind(nb_secs)
                            .bind(nb_nanos)
                            .bind(i64::from(t.max_attempts))
                            .bind(t.destination.map(|d| d.to_string()))
                            .bind(t.run.map(|r| r.to_string()))
                            .bind(t.job.map(|j| j.to_string()))
                            .bind(data)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::Error::from)?;
                        ids.push(id);
                    }
                    tx.commit().await.map_err($crate::Error::from)?;
                    Ok(ids)
                }

                async fn queue_claim(&self, request: &ClaimRequest) -> $crate::Result<Vec<Task>> {
                    let dialect: &st::Dialect = &$dialect;
                    let mut tx = self.begin_write().await?;
                    if let Some(lock) = dialect.claim_lock {
                        // The row must be there: a claim that locked nothing would not
                        // take turns.
                        sqlx::query(lock).fetch_one(&mut *tx).await?;
                    }
                    // Read after the lock: the finish this claim waited for is then
                    // recorded before it.
                    let now = if request.now_after_lock {
                        request.now.max(Utc::now())
                    } else {
                        request.now
                    };
                    let (now_secs, now_nanos) = split_time(now);

                    // 1. Lapsed leases.
                    let lapsed: Vec<(String, i64, i64, i64, i64, i64)> =
                        sqlx::query_as(dialect.lapsed)
                            .bind(now_secs)
                            .bind(now_nanos)
                            .fetch_all(&mut *tx)
                            .await?;
                    for (id, attempts, max_attempts, cancel, lease_secs, lease_nanos) in lapsed {
                        sqlx::query(st::CLOSE_ATTEMPT)
                            .bind(id.clone())
                            .bind(lease_secs)
                            .bind(lease_nanos)
                            .bind("lost")
                            .execute(&mut *tx)
                            .await?;
                        let lost: i64 = sqlx::query_scalar(st::LOST_ATTEMPTS)
                            .bind(id.clone())
                            .fetch_one(&mut *tx)
                            .await?;
                        match Lapse::of(attempts, max_attempts, lost, cancel != 0) {
                            Lapse::Requeue => {
                                sqlx::query(st::REQUEUE_LAPSED)
                                    .bind(id)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                            Lapse::End(state, message) => {
                                sqlx::query(st::END_LAPSED)
                                    .bind(id)
                                    .bind(state.as_str())
                                    .bind(message)
                                    .bind(now_secs)
                                    .bind(now_nanos)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                        }
                    }

                    // 2. Free lanes.
                    let running: Vec<(String, i64)> = sqlx::query_as(st::RUNNING_PER_KIND)
                        .fetch_all(&mut *tx)
                        .await?;
                    let mut free: BTreeMap<TaskKind, i64> = TaskKind::ALL
                        .into_iter()
                        .map(|kind| {
                            let busy = running
                                .iter()
                                .filter(|(k, _)| k == kind.as_str())
                                .map(|(_, n)| *n)
                                .sum::<i64>();
                            (kind, i64::from(request.lanes.get(kind)) - busy)
                        })
                        .collect();

                    // 3. Choose, a window at a time.
                    let max = usize::try_from(request.max).unwrap_or(usize::MAX);
                    let window = i64::from(request.max) * 8 + $crate::queue::methods::CLAIM_WINDOW;
                    let mut after = (i64::MIN, i64::MIN, -1_i64, String::new());
                    let mut chosen: Vec<String> = Vec::new();
                    let mut accounts: HashSet<String> = HashSet::new();
                    while chosen.len() < max {
                        let kinds: Vec<&'static str> = free
                            .iter()
                            .filter(|(_, n)| **n > 0)
                            .map(|(k, _)| k.as_str())
                            .collect();
                        if kinds.is_empty() {
                            break;
                        }
                        let mut query =
                            sqlx::query_as::<_, (String, String, String, i64, i64, i64)>(
                                dialect.candidates,
                            )
                            .bind(now_secs)
                            .bind(now_nanos);
                        for i in 0..TaskKind::ALL.len() {
                            query = query.bind(kinds.get(i).copied().unwrap_or(""));
                        }
                        let page = query
                            .bind(after.0)
                            .bind(after.1)
                            .bind(after.2)
                            .bind(after.3.clone())
                            .bind(window)
                            .fetch_all(&mut *tx)
                            .await?;
                        let more = i64::try_from(page.len()).is_ok_and(|n| n == window);
                        for (id, kind, account, priority, secs, nanos) in page {
                            after = (priority, secs, nanos, id.clone());
                            let Ok(kind) = kind.parse::<TaskKind>() else {
                                continue;
                            };
                            let lanes = free.entry(kind).or_insert(0);
                            if *lanes <= 0 || accounts.contains(&account) {
                                continue;
                            }
                            *lanes -= 1;
                            accounts.insert(account);
                            chosen.push(id);
                            if chosen.len() >= max {
                                break;
                            }
                        }
                        if !more {
                            break;
                        }
                    }

                    // 4. Take them.
                    let lease = split_time($crate::queue::later(now, request.lease));
                    let mut claimed = Vec::with_capacity(chosen.len());
                    for id in chosen {
                        let row = sqlx::query(st::CLAIM_TASK)
                            .bind(id.clone())
                            .bind(request.worker.clone())
                            .bind(lease.0)
                            .bind(lease.1)
                            .bind(now_secs)
                            .bind(now_nanos)
                            .fetch_optional(&mut *tx)
                            .await?;
                        let Some(row) = row else { continue };
                        sqlx::query(st::INSERT_ATTEMPT)
                            .bind(id)
                            .bind(request.worker.clone())
                            .bind(now_secs)
                            .bind(now_nanos)
                            .execute(&mut *tx)
                            .await?;
                        claimed.push(task(&row)?);
                    }
                    tx.commit().await?;
                    Ok(claimed)
                }

                async fn queue_heartbeat(
                    &self,
                    id: TaskId,
                    worker: &str,
                    lease_until: DateTime<Utc>,
                    progress: Option<&TaskProgress>,
                    now: DateTime<Utc>,
                ) -> $crate::Result<Heartbeat> {
                    let id = id.to_string();
                    let progress = progress
                        .map(|p| encode("task progress", &id, p))
                        .transpose()?;
                    let (lease_secs, lease_nanos) = split_time(lease_until);
                    let (now_secs, now_nanos) = split_time(now);
                    let cancel: Option<i64> = sqlx::query_scalar(st::HEARTBEAT)
                        .bind(id)
                        .bind(worker.to_owned())
                        .bind(lease_secs)
                        .bind(lease_nanos)
                        .bind(progress)
                        .bind(now_secs)
                        .bind(now_nanos)
                        .fetch_optional(&self.pool)
                        .await?;
                    Ok(match cancel {
                        None => Heartbeat::Lost,
                        Some(0) => Heartbeat::Held,
                        Some(_) => Heartbeat::CancelRequested,
                    })
                }

                async fn queue_finish(
                    &self,
                    id: TaskId,
                    worker: &str,
                    outcome: &Outcome,
                    now: DateTime<Utc>,
                ) -> $crate::Result<bool> {
                    let id = id.to_string();
                    let state = outcome.state().as_str();
                    let (now_secs, now_nanos) = split_time(now);
                    let mut tx = self.begin_write().await?;
                    let done = sqlx::query(st::FINISH)
                        .bind(id.clone())
                        .bind(worker.to_owned())
                        .bind(state)
                        .bind(outcome.message().map(str::to_owned))
                        .bind(now_secs)
                        .bind(now_nanos)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    self.queue_close_attempt(&mut tx, id, now, state).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn queue_retry(
                    &self,
                    id: TaskId,
                    worker: &str,
                    not_before: DateTime<Utc>,
                    message: &str,
                    now: DateTime<Utc>,
                ) -> $crate::Result<bool> {
                    let id = id.to_string();
                    let (nb_secs, nb_nanos) = split_time(not_before);
                    let (now_secs, now_nanos) = split_time(now);
                    let mut tx = self.begin_write().await?;
                    let state: Option<String> = sqlx::query_scalar(st::RETRY)
                        .bind(id.clone())
                        .bind(worker.to_owned())
                        .bind(nb_secs)
                        .bind(nb_nanos)
                        .bind(message.to_owned())
                        .bind(now_secs)
                        .bind(now_nanos)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(state) = state else {
                        return Ok(false);
                    };
                    let outcome = $crate::queue::handed_back("retry", &state);
                    self.queue_close_attempt(&mut tx, id, now, outcome).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn queue_release(
                    &self,
                    id: TaskId,
                    worker: &str,
                    now: DateTime<Utc>,
                ) -> $crate::Result<bool> {
                    let id = id.to_string();
                    let (now_secs, now_nanos) = split_time(now);
                    let mut tx = self.begin_write().await?;
                    let state: Option<String> = sqlx::query_scalar(st::RELEASE)
                        .bind(id.clone())
                        .bind(worker.to_owned())
                        .bind(now_secs)
                        .bind(now_nanos)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(state) = state else {
                        return Ok(false);
                    };
                    let outcome = $crate::queue::handed_back("released", &state);
                    self.queue_close_attempt(&mut tx, id, now, outcome).await?;
                    tx.commit().await?;
                    Ok(true)
                }

                /// Closes a task's open attempt, ended now with `outcome`.
                async fn queue_close_attempt(
                    &self,
                    tx: &mut sqlx::Transaction<'static, $db>,
                    id: String,
                    now: DateTime<Utc>,
                    outcome: &'static str,
                ) -> $crate::Result<()> {
                    let (now_secs, now_nanos) = split_time(now);
                    sqlx::query(st::CLOSE_ATTEMPT)
                        .bind(id)
                        .bind(now_secs)
                        .bind(now_nanos)
                        .bind(outcome)
                        .execute(&mut **tx)
                        .await?;
                    Ok(())
                }

                async fn queue_cancel(
                    &self,
                    id: TaskId,
                    now: DateTime<Utc>,
                ) -> $crate::Result<Option<TaskState>> {
                    let key = id.to_string();
                    let (now_secs, now_nanos) = split_time(now);
                    let state: Option<String> = sqlx::query_scalar(st::CANCEL)
                        .bind(key.clone())
                        .bind(now_secs)
                        .bind(now_nanos)
                        .fetch_optional(&self.pool)
                        .await?;
                    state
                        .map(|s| {
                            s.parse()
                                .map_err(|e: backup_core::Error| $crate::Error::BadColumn {
                                    table: "tasks",
                                    column: "state",
                                    value: key.clone(),
                                    reason: e.to_string(),
                                })
                        })
                        .transpose()
                }

                async fn queue_get_task(&self, id: TaskId) -> $crate::Result<Option<Task>> {
                    let row = sqlx::query(st::GET_TASK)
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(task).transpose()
                }

                async fn queue_list_tasks(&self, filter: &TaskFilter) -> $crate::Result<Vec<Task>> {
                    let mut query = sqlx::QueryBuilder::<$db>::new(st::LIST_TASKS);
                    if !filter.states.is_empty() {
                        query.push(" AND state IN (");
                        let mut states = query.separated(", ");
                        for state in &filter.states {
                            states.push_bind(state.as_str());
                        }
                        states.push_unseparated(")");
                    }
                    if let Some(run) = filter.run {
                        query.push(" AND run_id = ").push_bind(run.to_string());
                    }
                    if let Some(account) = filter.account {
                        query
                            .push(" AND account_id = ")
                            .push_bind(account.to_string());
                    }
                    query.push(" ORDER BY id");
                    if let Some(limit) = filter.limit {
                        query.push(" LIMIT ").push_bind(i64::from(limit));
                    }
                    let rows = query.build().fetch_all(&self.pool).await?;
                    rows.iter().map(task).collect()
                }

                async fn queue_attempts(
                    &self,
                    id: Option<TaskId>,
                ) -> $crate::Result<Vec<TaskAttempt>> {
                    let rows: Vec<$crate::queue::AttemptRow> = match id {
                        Some(id) => {
                            sqlx::query_as(st::TASK_ATTEMPTS)
                                .bind(id.to_string())
                                .fetch_all(&self.pool)
                                .await?
                        }
                        None => sqlx::query_as(st::ATTEMPTS).fetch_all(&self.pool).await?,
                    };
                    rows.into_iter()
                        .map($crate::queue::decode_attempt)
                        .collect()
                }

                async fn queue_record_destination(
                    &self,
                    destination: DestinationId,
                    error: Option<&str>,
                    policy: &BreakerPolicy,
                    now: DateTime<Utc>,
                ) -> $crate::Result<DestinationHealth> {
                    let id = destination.to_string();
                    let mut tx = self.begin_write().await?;
                    match error {
                        None => {
                            sqlx::query(st::HEALTH_SUCCESS)
                                .bind(id.clone())
                                .execute(&mut *tx)
                                .await?;
                        }
                        Some(message) => {
                            let failures: i64 = sqlx::query_scalar(st::HEALTH_FAILURE)
                                .bind(id.clone())
                                .bind(message.to_owned())
                                .fetch_one(&mut *tx)
                                .await?;
                            let failures = u32::try_from(failures).unwrap_or(u32::MAX);
                            if let Some(pause) = policy.pause_after(failures) {
                                let (secs, nanos) = split_time($crate::queue::later(now, pause));
                                sqlx::query(st::HEALTH_PAUSE)
                                    .bind(id.clone())
                                    .bind(secs)
                                    .bind(nanos)
                                    .execute(&mut *tx)
                                    .await?;
                            }
                        }
                    }
                    let row: $crate::queue::HealthRow = sqlx::query_as(st::GET_HEALTH)
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    $crate::queue::decode_health(row)
                }

                async fn queue_health(&self) -> $crate::Result<Vec<DestinationHealth>> {
                    let rows: Vec<$crate::queue::HealthRow> = sqlx::query_as(st::LIST_HEALTH)
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter().map($crate::queue::decode_health).collect()
                }

                /// Inserts (`START_RUN`) or replaces (`UPDATE_RUN`) a run's row; whether a
                /// row was written.
                async fn queue_write_run(
                    &self,
                    sql: &'static str,
                    run: &JobRun,
                ) -> $crate::Result<bool> {
                    let id = run.id.to_string();
                    let data = encode("job run", &id, run)?;
                    let (secs, nanos) = split_time(run.slot);
                    let done = sqlx::query(sql)
                        .bind(id.clone())
                        .bind(run.job.to_string())
                        .bind(secs)
                        .bind(nanos)
                        .bind(data)
                        .execute(&self.pool)
                        .await
                        .map_err(|e| {
                            $crate::error::clash_as(e, || {
                                format!("job run {id} (job {} slot {})", run.job, run.slot)
                            })
                        })?;
                    Ok(done.rows_affected() > 0)
                }

                async fn queue_list_runs(
                    &self,
                    job: Option<JobId>,
                    limit: u32,
                ) -> $crate::Result<Vec<JobRun>> {
                    let rows: Vec<(String, String)> = match job {
                        Some(job) => {
                            sqlx::query_as(st::LIST_JOB_RUNS)
                                .bind(job.to_string())
                                .bind(i64::from(limit))
                                .fetch_all(&self.pool)
                                .await?
                        }
                        None => {
                            sqlx::query_as(st::LIST_RUNS)
                                .bind(i64::from(limit))
                                .fetch_all(&self.pool)
                                .await?
                        }
                    };
                    rows.into_iter().map(|row| decode("job run", row)).collect()
                }

                async fn queue_get_run(&self, id: RunId) -> $crate::Result<Option<JobRun>> {
                    let row: Option<(String, String)> = sqlx::query_as(st::GET_RUN)
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(|row| decode("job run", row)).transpose()
                }
            }

            #[async_trait]
            impl JobQueue for $catalog {
                async fn enqueue(
                    &self,
                    tasks: &[NewTask],
                    now: DateTime<Utc>,
                ) -> backup_core::Result<Vec<TaskId>> {
                    self.queue_enqueue(tasks, now).await
                }
                async fn claim(&self, request: &ClaimRequest) -> backup_core::Result<Vec<Task>> {
                    Ok(self.queue_claim(request).await?)
                }
                async fn heartbeat(
                    &self,
                    task: TaskId,
                    worker: &str,
                    lease_until: DateTime<Utc>,
                    progress: Option<&TaskProgress>,
                    now: DateTime<Utc>,
                ) -> backup_core::Result<Heartbeat> {
                    Ok(self
                        .queue_heartbeat(task, worker, lease_until, progress, now)
                        .await?)
                }
                async fn finish(
                    &self,
                    task: TaskId,
                    worker: &str,
                    outcome: &Outcome,
                    now: DateTime<Utc>,
                ) -> backup_core::Result<bool> {
                    Ok(self.queue_finish(task, worker, outcome, now).await?)
                }
                async fn retry(
                    &self,
                    task: TaskId,
                    worker: &str,
                    not_before: DateTime<Utc>,
                    message: &str,
                    now: DateTime<Utc>,
                ) -> backup_core::Result<bool> {
                    Ok(self
                        .queue_retry(task, worker, not_before, message, now)
                        .await?)
                }
                async fn release(
                    &self,
                    task: TaskId,
                    worker: &str,
                    now: DateTime<Utc>,
                ) -> backup_core::Result<bool> {
                    Ok(self.queue_release(task, worker, now).await?)
                }
                async fn cancel(
                    &self,
                    task: TaskId,
                    now: DateTime<Utc>,
                ) -> backup_core::Result<Option<TaskState>> {
                    Ok(self.queue_cancel(task, now).await?)
                }
                async fn get_task(&self, task: TaskId) -> backup_core::Result<Option<Task>> {
                    Ok(self.queue_get_task(task).await?)
                }
                async fn list_tasks(&self, filter: &TaskFilter) -> backup_core::Result<Vec<Task>> {
                    Ok(self.queue_list_tasks(filter).await?)
                }
                async fn task_attempts(
                    &self,
                    task: Option<TaskId>,
                ) -> backup_core::Result<Vec<TaskAttempt>> {
                    Ok(self.queue_attempts(task).await?)
                }
                async fn record_destination(
                    &self,
                    destination: DestinationId,
                    error: Option<&str>,
                    policy: &BreakerPolicy,
                    now: DateTime<Utc>,
                ) -> backup_core::Result<DestinationHealth> {
                    Ok(self
                        .queue_record_destination(destination, error, policy, now)
                        .await?)
                }
                async fn destination_health(&self) -> backup_core::Result<Vec<DestinationHealth>> {
                    Ok(self.queue_health().await?)
                }
                async fn start_run(&self, run: &JobRun) -> backup_core::Result<bool> {
                    Ok(self.queue_write_run(st::START_RUN, run).await?)
                }
                async fn update_run(&self, run: &JobRun) -> backup_core::Result<()> {
                    if self.queue_write_run(st::UPDATE_RUN, run).await? {
                        Ok(())
                    } else {
                        Err(backup_core::Error::not_found(format!("job run {}", run.id)))
                    }
                }
                async fn list_runs(
                    &self,
                    job: Option<JobId>,
                    limit: u32,
                ) -> backup_core::Result<Vec<JobRun>> {
                    Ok(self.queue_list_runs(job, limit).await?)
                }
                async fn get_run(&self, run: RunId) -> backup_core::Result<Option<JobRun>> {
                    Ok(self.queue_get_run(run).await?)
                }
            }
        };
    };
}

pub(crate) use queue;
