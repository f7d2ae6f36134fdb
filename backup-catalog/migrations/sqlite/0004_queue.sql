-- Catalog schema, version 4: the persistent task queue (the `JobQueue` port).
--
-- `tasks` holds one row per task. The columns the queue looks up, orders, counts or changes
-- in place are columns (so that every state change is one `UPDATE` whose `WHERE` checks the
-- task's state, worker and lease atomically); `data` holds the serde_json of what never
-- changes and is never queried (the account's username and the kind's payload). `progress`
-- is the serde_json of the worker's last progress report. Timestamps are split like
-- `created_secs`/`created_nanos` in version 1 (seconds since the epoch, floor, and
-- nanoseconds within that second), so comparisons and ordering keep full precision; a
-- NULL pair is an absent time. `cancel_requested` is 0 or 1.
--
-- Indexes: `tasks_claim` walks the queued tasks in claim order (priority, then oldest, then
-- id), from where the previous window of a claim stopped; `tasks_one_running_per_account`
-- finds the accounts that have a running task and, being unique, makes a second running
-- task of one account impossible whatever the code does; the others serve listings (by
-- state, run or account, in id order).
--
-- `task_attempts` records every claim (numbered 1, 2, ... per task in claim order; a
-- released attempt keeps its row, so numbers can run ahead of the task's `attempts`).
-- `destination_health` is the circuit breaker's state per destination. `job_runs` records
-- job runs, the whole value in `data`; its unique (job, slot) makes a scheduled slot start
-- once, whoever tries. `queue_claims` is one row that PostgreSQL claimers lock to take turns
-- (see `../postgres/0004_queue.sql`); SQLite's claimers take turns through the write lock
-- and never read it.

CREATE TABLE tasks (
    id               TEXT   NOT NULL PRIMARY KEY,
    kind             TEXT   NOT NULL,
    account_id       TEXT   NOT NULL,
    state            TEXT   NOT NULL,
    priority         BIGINT NOT NULL,
    enqueued_secs    BIGINT NOT NULL,
    enqueued_nanos   BIGINT NOT NULL,
    not_before_secs  BIGINT NOT NULL,
    not_before_nanos BIGINT NOT NULL,
    attempts         BIGINT NOT NULL,
    max_attempts     BIGINT NOT NULL,
    worker           TEXT,
    lease_secs       BIGINT,
    lease_nanos      BIGINT,
    started_secs     BIGINT,
    started_nanos    BIGINT,
    finished_secs    BIGINT,
    finished_nanos   BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    destination_id   TEXT,
    run_id           TEXT,
    job_id           TEXT,
    message          TEXT,
    progress         TEXT,
    data             TEXT   NOT NULL
);
CREATE INDEX tasks_claim ON tasks (state, priority, enqueued_secs, enqueued_nanos, id);
CREATE UNIQUE INDEX tasks_one_running_per_account ON tasks (account_id)
    WHERE state = 'running';
CREATE INDEX tasks_state ON tasks (state, id);
CREATE INDEX tasks_account ON tasks (account_id, id);
CREATE INDEX tasks_run ON tasks (run_id, id);

CREATE TABLE task_attempts (
    task_id       TEXT   NOT NULL,
    attempt       BIGINT NOT NULL,
    worker        TEXT   NOT NULL,
    claimed_secs  BIGINT NOT NULL,
    claimed_nanos BIGINT NOT NULL,
    ended_secs    BIGINT,
    ended_nanos   BIGINT,
    outcome       TEXT,
    PRIMARY KEY (task_id, attempt)
);

CREATE TABLE destination_health (
    destination_id TEXT   NOT NULL PRIMARY KEY,
    failures       BIGINT NOT NULL,
    paused_secs    BIGINT,
    paused_nanos   BIGINT,
    last_error     TEXT
);

CREATE TABLE job_runs (
    id         TEXT   NOT NULL PRIMARY KEY,
    job_id     TEXT   NOT NULL,
    slot_secs  BIGINT NOT NULL,
    slot_nanos BIGINT NOT NULL,
    data       TEXT   NOT NULL,
    CONSTRAINT job_runs_slot_unique UNIQUE (job_id, slot_secs, slot_nanos)
);
CREATE INDEX job_runs_newest ON job_runs (slot_secs, slot_nanos, id);

CREATE TABLE queue_claims (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1)
);
INSERT INTO queue_claims (id) VALUES (1);
