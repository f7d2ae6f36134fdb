-- Catalog schema, version 4 (PostgreSQL): the persistent task queue. The same tables,
-- columns and indexes as `../sqlite/0004_queue.sql` (read it for the layout), with
-- `COLLATE "C"` on the compared text columns.
--
-- Workers on several machines claim at once. A claim first locks the one row of
-- `queue_claims` (`SELECT ... FOR UPDATE`), so claims of this catalog take turns: each sees
-- every earlier claim committed, which keeps the lanes (running tasks per kind, counted
-- over every worker) and one-running-task-per-account exact. The lock is the schema's own
-- (unlike an advisory lock, which is database-wide), so catalogs in other schemas of the
-- same database do not wait for each other. Heartbeats, finishes and cancellations do not
-- take it: they are single-row updates whose `WHERE` checks the state, and the claim locks
-- the task rows it reads (`FOR UPDATE`). The unique index `tasks_one_running_per_account`
-- is the backstop: a second running task of one account fails to commit.

CREATE TABLE tasks (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind             TEXT COLLATE "C" NOT NULL,
    account_id       TEXT COLLATE "C" NOT NULL,
    state            TEXT COLLATE "C" NOT NULL,
    priority         BIGINT           NOT NULL,
    enqueued_secs    BIGINT           NOT NULL,
    enqueued_nanos   BIGINT           NOT NULL,
    not_before_secs  BIGINT           NOT NULL,
    not_before_nanos BIGINT           NOT NULL,
    attempts         BIGINT           NOT NULL,
    max_attempts     BIGINT           NOT NULL,
    worker           TEXT COLLATE "C",
    lease_secs       BIGINT,
    lease_nanos      BIGINT,
    started_secs     BIGINT,
    started_nanos    BIGINT,
    finished_secs    BIGINT,
    finished_nanos   BIGINT,
    cancel_requested BIGINT           NOT NULL DEFAULT 0,
    destination_id   TEXT COLLATE "C",
    run_id           TEXT COLLATE "C",
    job_id           TEXT COLLATE "C",
    message          TEXT,
    progress         TEXT,
    data             TEXT             NOT NULL
);
CREATE INDEX tasks_claim ON tasks (state, priority, enqueued_secs, enqueued_nanos, id);
CREATE UNIQUE INDEX tasks_one_running_per_account ON tasks (account_id)
    WHERE state = 'running';
CREATE INDEX tasks_state ON tasks (state, id);
CREATE INDEX tasks_account ON tasks (account_id, id);
CREATE INDEX tasks_run ON tasks (run_id, id);

CREATE TABLE task_attempts (
    task_id       TEXT COLLATE "C" NOT NULL,
    attempt       BIGINT           NOT NULL,
    worker        TEXT COLLATE "C" NOT NULL,
    claimed_secs  BIGINT           NOT NULL,
    claimed_nanos BIGINT           NOT NULL,
    ended_secs    BIGINT,
    ended_nanos   BIGINT,
    outcome       TEXT COLLATE "C",
    PRIMARY KEY (task_id, attempt)
);

CREATE TABLE destination_health (
    destination_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    failures       BIGINT           NOT NULL,
    paused_secs    BIGINT,
    paused_nanos   BIGINT,
    last_error     TEXT
);

CREATE TABLE job_runs (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    job_id     TEXT COLLATE "C" NOT NULL,
    slot_secs  BIGINT           NOT NULL,
    slot_nanos BIGINT           NOT NULL,
    data       TEXT             NOT NULL,
    CONSTRAINT job_runs_slot_unique UNIQUE (job_id, slot_secs, slot_nanos)
);
CREATE INDEX job_runs_newest ON job_runs (slot_secs, slot_nanos, id);

CREATE TABLE queue_claims (
    id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1)
);
INSERT INTO queue_claims (id) VALUES (1);
