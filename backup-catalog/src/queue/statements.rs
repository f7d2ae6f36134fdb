//! The queue's SQL statements (see `migrations/*/0004_queue.sql` for the tables), the same
//! text for SQLite and PostgreSQL except the row locks of a claim ([`Dialect`]).
//!
//! Timestamps are bound as (seconds, nanoseconds) pairs and compared as row values
//! (`(secs, nanos) < ($1, $2)`), which both databases order column by column. Every state
//! change of a running task is one `UPDATE` whose `WHERE` checks the state, the worker and
//! the lease, so it acts atomically or not at all.

/// Every column of `tasks`, in the order [`TaskRow`](super::TaskRow) reads them.
macro_rules! task_columns {
    () => {
        "id, kind, account_id, state, priority, enqueued_secs, enqueued_nanos, \
         not_before_secs, not_before_nanos, attempts, max_attempts, worker, lease_secs, \
         lease_nanos, started_secs, started_nanos, finished_secs, finished_nanos, \
         cancel_requested, destination_id, run_id, job_id, message, progress, data"
    };
}

/// The running tasks whose lease ended before `$1, $2` (now): (id, attempts, max attempts,
/// cancel requested, lease secs, lease nanos), by id.
macro_rules! lapsed {
    ($lock:literal) => {
        concat!(
            "SELECT id, attempts, max_attempts, cancel_requested, lease_secs, lease_nanos \
             FROM tasks WHERE state = 'running' AND (lease_secs, lease_nanos) < ($1, $2) \
             ORDER BY id",
            $lock
        )
    };
}

/// One page of claimable tasks in claim order: queued, due at `$1, $2` (now), of a kind in
/// `$3`..`$8` (kinds with a free lane, padded with `''`), of an account without a running
/// task, not on a paused destination, after the key `$9`..`$12` (priority, enqueued secs,
/// enqueued nanos, id), at most `$13`. Gives (id, kind, account id, priority, enqueued
/// secs, enqueued nanos).
macro_rules! candidates {
    ($lock:literal) => {
        concat!(
            "SELECT id, kind, account_id, priority, enqueued_secs, enqueued_nanos FROM tasks \
             WHERE state = 'queued' \
             AND (not_before_secs, not_before_nanos) <= ($1, $2) \
             AND kind IN ($3, $4, $5, $6, $7, $8) \
             AND account_id NOT IN (SELECT r.account_id FROM tasks r WHERE r.state = 'running') \
             AND (destination_id IS NULL OR destination_id NOT IN \
                 (SELECT h.destination_id FROM destination_health h \
                  WHERE (h.paused_secs, h.paused_nanos) > ($1, $2))) \
             AND (priority, enqueued_secs, enqueued_nanos, id) > ($9, $10, $11, $12) \
             ORDER BY priority, enqueued_secs, enqueued_nanos, id \
             LIMIT $13",
            $lock
        )
    };
}

/// What differs between the backends' claims.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// Run first in a claim's transaction, to make claimers take turns; `None` where the
    /// transaction itself does (SQLite's `BEGIN IMMEDIATE` holds the database's write lock).
    pub(crate) claim_lock: Option<&'static str>,
    /// See `lapsed!`.
    pub(crate) lapsed: &'static str,
    /// See `candidates!`.
    pub(crate) candidates: &'static str,
}

/// SQLite: one writer at a time, and a claim is one write transaction from its first
/// statement (`BEGIN IMMEDIATE`), so it reads and changes the queue alone; SQLite has no
/// row locks.
pub(crate) const SQLITE: Dialect = Dialect {
    claim_lock: None,
    lapsed: lapsed!(""),
    candidates: candidates!(""),
};

/// PostgreSQL: claims take turns on the one row of `queue_claims`. Under READ COMMITTED
/// each later statement of the claim sees every claim committed before it got the lock, so
/// the lane counts and the accounts with a running task it reads are exact for as long as
/// it holds the lock. (A serializable transaction would also be exact, but fails claims
/// that collide, which then have to be retried.) The task rows it reads are locked too:
/// lapsed ones `FOR UPDATE` (a heartbeat renewing one in the meantime is waited for, and
/// the row is then read again and no longer lapsed), candidates `FOR UPDATE SKIP LOCKED`
/// (a queued task being cancelled or changed right now is passed over, not waited for),
/// so nothing changes a chosen task before the claim commits.
pub(crate) const POSTGRES: Dialect = Dialect {
    claim_lock: Some("SELECT id FROM queue_claims WHERE id = 1 FOR UPDATE"),
    lapsed: lapsed!(" FOR UPDATE"),
    candidates: candidates!(" FOR UPDATE SKIP LOCKED"),
};

/// Insert a queued task: `$1` id, `$2` kind, `$3` account id, `$4` priority, `$5`/`$6`
/// enqueued, `$7`/`$8` not before, `$9` max attempts, `$10` destination id, `$11` run id,
/// `$12` job id, `$13` data.
pub(crate) const INSERT_TASK: &str = "INSERT INTO tasks (id, kind, account_id, state, priority, \
     enqueued_secs, enqueued_nanos, not_before_secs, not_before_nanos, attempts, max_attempts, \
     cancel_requested, destination_id, run_id, job_id, data) \
     VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, 0, $9, 0, $10, $11, $12, $13)";

/// `$1` id → the task's row.
pub(crate) const GET_TASK: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1");

/// Start of a listing: filters, `ORDER BY id` and the limit follow.
pub(crate) const LIST_TASKS: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE 1 = 1");

/// Closes a task's open attempt: `$1` task id, `$2`/`$3` ended, `$4` outcome.
pub(crate) const CLOSE_ATTEMPT: &str = "UPDATE task_attempts \
     SET ended_secs = $2, ended_nanos = $3, outcome = $4 \
     WHERE task_id = $1 AND ended_secs IS NULL";

/// `$1` task id → how many of its attempts were lost.
pub(crate) const LOST_ATTEMPTS: &str =
    "SELECT COUNT(*) FROM task_attempts WHERE task_id = $1 AND outcome = 'lost'";

/// A lapsed task back to the queue (its `not_before` has come already): `$1` id.
pub(crate) const REQUEUE_LAPSED: &str = "UPDATE tasks \
     SET state = 'queued', worker = NULL, lease_secs = NULL, lease_nanos = NULL \
     WHERE id = $1 AND state = 'running'";

/// A lapsed task ends: `$1` id, `$2` state, `$3` message, `$4`/`$5` finished.
pub(crate) const END_LAPSED: &str = "UPDATE tasks \
     SET state = $2, message = $3, finished_secs = $4, finished_nanos = $5, worker = NULL, \
     lease_secs = NULL, lease_nanos = NULL \
     WHERE id = $1 AND state = 'running'";

/// (kind, running tasks of that kind), for every kind that has one.
pub(crate) const RUNNING_PER_KIND: &str =
    "SELECT kind, COUNT(*) FROM tasks WHERE state = 'running' GROUP BY kind";

/// Claims a queued task: `$1` id, `$2` worker, `$3`/`$4` lease until, `$5`/`$6` now → the
/// task's new row (none if it is no longer queued).
pub(crate) const CLAIM_TASK: &str = concat!(
    "UPDATE tasks SET state = 'running', worker = $2, attempts = attempts + 1, \
     lease_secs = $3, lease_nanos = $4, started_secs = $5, started_nanos = $6, \
     cancel_requested = 0 \
     WHERE id = $1 AND state = 'queued' RETURNING ",
    task_columns!()
);

/// Records a claim in the history, numbered after the task's earlier ones: `$1` task id,
/// `$2` worker, `$3`/`$4` claimed.
pub(crate) const INSERT_ATTEMPT: &str = "INSERT INTO task_attempts \
     (task_id, attempt, worker, claimed_secs, claimed_nanos) \
     SELECT $1, COALESCE(MAX(attempt), 0) + 1, $2, $3, $4 FROM task_attempts WHERE task_id = $1";

/// The lease holder's guard, shared by the updates of a running task: `$1` id, `$2` worker,
/// and the lease not ended before now (`$N`/`$N+1`, given by each statement).
macro_rules! held {
    ($s:literal, $n:literal) => {
        concat!(
            " WHERE id = $1 AND state = 'running' AND worker = $2 \
             AND (lease_secs, lease_nanos) >= ($",
            $s,
            ", $",
            $n,
            ")"
        )
    };
}

/// Renews a lease: `$1` id, `$2` worker, `$3`/`$4` new lease end, `$5` progress (NULL
/// keeps the stored one), `$6`/`$7` now → cancel requested (no row: not the holder).
pub(crate) const HEARTBEAT: &str = concat!(
    "UPDATE tasks SET lease_secs = $3, lease_nanos = $4, progress = COALESCE($5, progress)",
    held!("6", "7"),
    " RETURNING cancel_requested"
);

/// Ends a running task: `$1` id, `$2` worker, `$3` state, `$4` message, `$5`/`$6` now.
pub(crate) const FINISH: &str = concat!(
    "UPDATE tasks SET state = $3, message = $4, finished_secs = $5, finished_nanos = $6, \
     worker = NULL, lease_secs = NULL, lease_nanos = NULL",
    held!("5", "6")
);

/// The state a running task leaves for when its worker hands it back: the queue, or
/// cancelled if cancellation was asked for meanwhile (with `finished` now: `$N`/`$N+1`).
macro_rules! handed_back {
    ($s:literal, $n:literal) => {
        concat!(
            "state = CASE WHEN cancel_requested = 0 THEN 'queued' ELSE 'cancelled' END, \
             finished_secs = CASE WHEN cancel_requested = 0 THEN NULL ELSE $",
            $s,
            " END, finished_nanos = CASE WHEN cancel_requested = 0 THEN NULL ELSE $",
            $n,
            " END, worker = NULL, lease_secs = NULL, lease_nanos = NULL"
        )
    };
}

/// Back to the queue until a time: `$1` id, `$2` worker, `$3`/`$4` not before, `$5`
/// message, `$6`/`$7` now → the new state (no row: not the holder).
pub(crate) const RETRY: &str = concat!(
    "UPDATE tasks SET not_before_secs = $3, not_before_nanos = $4, message = $5, ",
    handed_back!("6", "7"),
    held!("6", "7"),
    " RETURNING state"
);

/// Back to the queue at once, the attempt not counted: `$1` id, `$2` worker, `$3`/`$4`
/// now → the new state (no row: not the holder).
pub(crate) const RELEASE: &str = concat!(
    "UPDATE tasks SET attempts = attempts - 1, ",
    handed_back!("3", "4"),
    held!("3", "4"),
    " RETURNING state"
);

/// Cancels: a queued task ends (`$2`/`$3` now), a running one is asked to stop, an ended
/// one stays as it is. `$1` id → the state after.
pub(crate) const CANCEL: &str = "UPDATE tasks SET \
     state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, \
     finished_secs = CASE WHEN state = 'queued' THEN $2 ELSE finished_secs END, \
     finished_nanos = CASE WHEN state = 'queued' THEN $3 ELSE finished_nanos END, \
     cancel_requested = CASE WHEN state = 'running' THEN 1 ELSE cancel_requested END \
     WHERE id = $1 RETURNING state";

/// The columns of a [`TaskAttempt`](backup_core::model::TaskAttempt).
macro_rules! attempt_columns {
    () => {
        "SELECT task_id, attempt, worker, claimed_secs, claimed_nanos, ended_secs, \
         ended_nanos, outcome FROM task_attempts"
    };
}

/// Every attempt, by task then attempt.
pub(crate) const ATTEMPTS: &str = concat!(attempt_columns!(), " ORDER BY task_id, attempt");
/// `$1` task id → its attempts, in order.
pub(crate) const TASK_ATTEMPTS: &str = concat!(
    attempt_columns!(),
    " WHERE task_id = $1 ORDER BY task_id, attempt"
);

/// A success on a destination: `$1` destination id.
pub(crate) const HEALTH_SUCCESS: &str = "INSERT INTO destination_health \
     (destination_id, failures) VALUES ($1, 0) \
     ON CONFLICT (destination_id) DO UPDATE \
     SET failures = 0, paused_secs = NULL, paused_nanos = NULL";
/// A failure on a destination: `$1` destination id, `$2` message → failures in a row.
pub(crate) const HEALTH_FAILURE: &str = "INSERT INTO destination_health \
     (destination_id, failures, last_error) VALUES ($1, 1, $2) \
     ON CONFLICT (destination_id) DO UPDATE \
     SET failures = destination_health.failures + 1, last_error = excluded.last_error \
     RETURNING failures";
/// Pauses a destination: `$1` destination id, `$2`/`$3` until.
pub(crate) const HEALTH_PAUSE: &str = "UPDATE destination_health \
     SET paused_secs = $2, paused_nanos = $3 WHERE destination_id = $1";

/// The columns of a [`DestinationHealth`](backup_core::model::DestinationHealth).
macro_rules! health_columns {
    () => {
        "SELECT destination_id, failures, paused_secs, paused_nanos, last_error \
         FROM destination_health"
    };
}

/// `$1` destination id → its health.
pub(crate) const GET_HEALTH: &str = concat!(health_columns!(), " WHERE destination_id = $1");
/// Every destination's health, by id.
pub(crate) const LIST_HEALTH: &str = concat!(health_columns!(), " ORDER BY destination_id");

/// Records a run unless its job has one for the slot: `$1` id, `$2` job id, `$3`/`$4`
/// slot, `$5` data.
pub(crate) const START_RUN: &str = "INSERT INTO job_runs \
     (id, job_id, slot_secs, slot_nanos, data) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (job_id, slot_secs, slot_nanos) DO NOTHING";
/// Replaces a run's row: the same binds as [`START_RUN`].
pub(crate) const UPDATE_RUN: &str = "UPDATE job_runs \
     SET job_id = $2, slot_secs = $3, slot_nanos = $4, data = $5 WHERE id = $1";
/// `$1` id → (id, data).
pub(crate) const GET_RUN: &str = "SELECT id, data FROM job_runs WHERE id = $1";
/// (id, data) of every run, newest slot first, then by id descending; at most `$1`.
pub(crate) const LIST_RUNS: &str = "SELECT id, data FROM job_runs \
     ORDER BY slot_secs DESC, slot_nanos DESC, id DESC LIMIT $1";
/// (id, data) of `$1` job's runs, as [`LIST_RUNS`]; at most `$2`.
pub(crate) const LIST_JOB_RUNS: &str = "SELECT id, data FROM job_runs WHERE job_id = $1 \
     ORDER BY slot_secs DESC, slot_nanos DESC, id DESC LIMIT $2";
