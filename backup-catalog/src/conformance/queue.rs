//! The conformance suite of the [`JobQueue`] port: its contract, checked against any
//! implementation.
//!
//! A claim sees every task of the queue, so each check needs a queue of its own, empty:
//! [`run`] takes a factory of fresh queues and gives one to each check; the checks are
//! public one by one too (each asserts first that its queue is empty). Every time is
//! explicit (a fixed base plus offsets, some a nanosecond apart): nothing sleeps or reads
//! the clock, and the checks are exact about time.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//!
//! use backup_catalog::SqliteCatalog;
//! use backup_catalog::conformance::queue;
//! use backup_core::ports::JobQueue;
//!
//! queue::run(|| async {
//!     Arc::new(SqliteCatalog::in_memory().await.unwrap()) as Arc<dyn JobQueue>
//! })
//! .await;
//! # });
//! ```
//!
//! What is checked: tasks read back as enqueued (at nanosecond precision); claims take
//! the lowest priority first, then the oldest, then by id, only when due; never a second
//! task of an account that has one running (in one claim or across claims, whatever the
//! kinds); never more running tasks of a kind than the request's lanes allow, counting
//! every worker's; a lease that ran out (strictly before the claim's time) hands the task
//! to the next claim, the lost attempt ending at the lease's end, and the old worker's
//! heartbeat, finish, retry and release are refused; lapses that use up the attempts fail
//! the task (`worker lost: ...`); a retry waits for its time and keeps its message; a
//! release does not count the attempt; cancellation ends a queued task and asks a running
//! one to stop (heartbeat answers `CancelRequested`, the worker finishes it as cancelled),
//! and a running task whose cancellation was asked for never goes back to the queue (not
//! by a retry, a release or a lapse); the circuit breaker pauses a destination's tasks
//! after the policy's failures in a row, until the pause ends, while other tasks are
//! claimed, and a success resets it; a job's slot starts one run; runs list newest first;
//! progress written by heartbeats reads back; listings filter by state, run and account,
//! by id, with a limit; and [`concurrent_claims`]: many claimers at once keep all of
//! this.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::model::{
    AccountId, BreakerPolicy, ClaimRequest, DestinationHealth, DestinationId, Heartbeat, JobId,
    JobRun, Lanes, NewTask, Outcome, RunId, RunTrigger, Task, TaskAttempt, TaskFilter, TaskId,
    TaskKind, TaskProgress, TaskState,
};
use backup_core::ports::JobQueue;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::ok;

/// Runs every check, each on a fresh empty queue from `fresh`, in the order of this
/// module's functions, [`concurrent_claims`] last (eight claimers sharing one handle);
/// panics on the first failure.
pub async fn run<F, Fut>(mut fresh: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn JobQueue>>,
{
    empty(fresh().await.as_ref()).await;
    enqueued_tasks_read_back(fresh().await.as_ref()).await;
    claim_order(fresh().await.as_ref()).await;
    one_task_per_account(fresh().await.as_ref()).await;
    lanes_per_kind(fresh().await.as_ref()).await;
    lapsed_leases(fresh().await.as_ref()).await;
    lapses_use_up_attempts(fresh().await.as_ref()).await;
    retry_with_backoff(fresh().await.as_ref()).await;
    release_does_not_count(fresh().await.as_ref()).await;
    cancellation(fresh().await.as_ref()).await;
    circuit_breaker(fresh().await.as_ref()).await;
    runs(fresh().await.as_ref()).await;
    progress_reads_back(fresh().await.as_ref()).await;
    list_filters(fresh().await.as_ref()).await;
    let shared = fresh().await;
    concurrent_claims(&vec![shared; 8]).await;
}

/// The lease of the checks' claims.
const LEASE: Duration = Duration::from_secs(60);

/// The checks' times: a fixed base (with nanoseconds) plus `secs`.
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 123_456_789).expect("a valid time")
}

/// `t` plus `n` nanoseconds.
fn plus_ns(t: DateTime<Utc>, n: i64) -> DateTime<Utc> {
    t + TimeDelta::nanoseconds(n)
}

/// When a lease taken at `t` ends.
fn lease_end(t: DateTime<Utc>) -> DateTime<Utc> {
    t + TimeDelta::from_std(LEASE).expect("a short lease")
}

/// A task of `kind` for `account`, due at once, 3 attempts, no job, run or destination.
fn new_task(kind: TaskKind, account: AccountId, priority: i64) -> NewTask {
    NewTask {
        kind,
        account,
        username: format!("user-{}", &account.to_string()[..8]),
        job: None,
        run: None,
        destination: None,
        priority,
        not_before: at(0),
        max_attempts: 3,
        payload: json!({ "priority": priority, "kind": kind.as_str() }),
    }
}

/// A backup task of a fresh account.
fn backup(priority: i64) -> NewTask {
    new_task(TaskKind::Backup, AccountId::new(), priority)
}

/// The task `new` becomes when enqueued with `id` at `enqueued`.
fn queued(new: &NewTask, id: TaskId, enqueued: DateTime<Utc>) -> Task {
    Task {
        id,
        kind: new.kind,
        account: new.account,
        username: new.username.clone(),
        job: new.job,
        run: new.run,
        destination: new.destination,
        priority: new.priority,
        enqueued,
        not_before: new.not_before,
        state: TaskState::Queued,
        attempts: 0,
        max_attempts: new.max_attempts,
        worker: None,
        lease_until: None,
        started: None,
        finished: None,
        cancel_requested: false,
        progress: None,
        message: None,
        payload: new.payload.clone(),
    }
}

/// `task` after `worker` claimed it at `now` (with [`LEASE`]).
fn claimed(mut task: Task, worker: &str, now: DateTime<Utc>) -> Task {
    task.state = TaskState::Running;
    task.attempts += 1;
    task.worker = Some(worker.to_owned());
    task.lease_until = Some(lease_end(now));
    task.started = Some(now);
    task.cancel_requested = false;
    task
}

fn request(worker: &str, max: u32, lanes: &Lanes, now: DateTime<Utc>) -> ClaimRequest {
    ClaimRequest {
        worker: worker.to_owned(),
        max,
        lanes: lanes.clone(),
        lease: LEASE,
        now,
        now_after_lock: false,
    }
}

/// Enqueues at `now`; the ids, one per task.
async fn enqueue(q: &dyn JobQueue, tasks: &[NewTask], now: DateTime<Utc>) -> Vec<TaskId> {
    let ids = ok(q.enqueue(tasks, now).await, "enqueue");
    assert_eq!(
        ids.len(),
        tasks.len(),
        "conformance: enqueue should return one id per task"
    );
    ids
}

/// Claims; the tasks claimed.
async fn claim_tasks(
    q: &dyn JobQueue,
    worker: &str,
    max: u32,
    lanes: &Lanes,
    now: DateTime<Utc>,
) -> Vec<Task> {
    let tasks = ok(
        q.claim(&request(worker, max, lanes, now)).await,
        format_args!("claim by {worker}"),
    );
    assert!(
        tasks.len() <= max as usize,
        "conformance: a claim of at most {max} took {}",
        tasks.len()
    );
    tasks
}

/// Claims; the ids claimed, sorted (claims promise a set, not an order).
async fn claim(
    q: &dyn JobQueue,
    worker: &str,
    max: u32,
    lanes: &Lanes,
    now: DateTime<Utc>,
) -> Vec<TaskId> {
    let mut ids: Vec<TaskId> = claim_tasks(q, worker, max, lanes, now)
        .await
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    ids
}

/// `ids`, sorted.
fn set(ids: &[TaskId]) -> Vec<TaskId> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

async fn get(q: &dyn JobQueue, id: TaskId) -> Task {
    ok(q.get_task(id).await, "get task")
        .unwrap_or_else(|| panic!("conformance: task {id} should exist"))
}

async fn attempts(q: &dyn JobQueue, id: TaskId) -> Vec<TaskAttempt> {
    ok(q.task_attempts(Some(id)).await, "task attempts")
}

async fn finish(q: &dyn JobQueue, id: TaskId, worker: &str, outcome: Outcome, now: DateTime<Utc>) {
    assert!(
        ok(q.finish(id, worker, &outcome, now).await, "finish"),
        "conformance: the lease holder {worker} should finish its task"
    );
}

fn done(message: &str) -> Outcome {
    Outcome::Done {
        message: message.to_owned(),
    }
}

fn attempt(
    task: TaskId,
    n: u32,
    worker: &str,
    claimed: DateTime<Utc>,
    end: Option<(DateTime<Utc>, &str)>,
) -> TaskAttempt {
    TaskAttempt {
        task,
        attempt: n,
        worker: worker.to_owned(),
        claimed,
        ended: end.map(|(t, _)| t),
        outcome: end.map(|(_, o)| o.to_owned()),
    }
}

/// Asserts the queue holds no task (each check needs an empty queue).
async fn expect_empty_queue(q: &dyn JobQueue, check: &str) {
    let tasks = ok(q.list_tasks(&TaskFilter::default()).await, "list tasks");
    assert!(
        tasks.is_empty(),
        "conformance: the {check} check needs an empty queue, this one holds {} tasks",
        tasks.len()
    );
}

/// What a queue that never stored anything reads: no task, attempt, destination health or
/// run.
pub async fn empty(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "empty").await;
    assert!(
        ok(q.task_attempts(None).await, "task attempts").is_empty(),
        "conformance: a new queue should have no attempts"
    );
    assert!(
        ok(q.destination_health().await, "destination health").is_empty(),
        "conformance: a new queue should have no destination health"
    );
    assert!(
        ok(q.list_runs(None, 100).await, "list runs").is_empty(),
        "conformance: a new queue should have no runs"
    );
    assert_eq!(
        ok(q.get_task(TaskId::new()).await, "get missing task"),
        None,
        "conformance: get of a missing task should be None"
    );
    assert_eq!(
        ok(q.get_run(RunId::new()).await, "get missing run"),
        None,
        "conformance: get of a missing run should be None"
    );
}

/// Enqueued tasks read back exactly (every field, times to the nanosecond), queued, in
/// enqueue order; a claim of nothing due takes nothing.
pub async fn enqueued_tasks_read_back(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "enqueued tasks").await;
    let mut full = new_task(TaskKind::Restore, AccountId::new(), -7);
    full.job = Some(JobId::new());
    full.run = Some(RunId::new());
    full.destination = Some(DestinationId::new());
    full.not_before = plus_ns(at(30), 1);
    full.max_attempts = 5;
    full.payload = json!({ "paths": ["/a", "/b é"], "n": 1, "nested": { "x": null } });
    let plain = backup(i64::MAX);
    let now = plus_ns(at(1), 7);
    let ids = enqueue(q, &[full.clone(), plain.clone()], now).await;
    assert_ne!(ids[0], ids[1], "conformance: task ids should be unique");
    let expected = vec![queued(&full, ids[0], now), queued(&plain, ids[1], now)];
    for task in &expected {
        assert_eq!(
            &get(q, task.id).await,
            task,
            "conformance: a task should read back as enqueued"
        );
    }
    assert_eq!(
        ok(q.list_tasks(&TaskFilter::default()).await, "list tasks"),
        expected,
        "conformance: tasks should list in enqueue order"
    );
    let later = enqueue(q, &[backup(0)], at(0)).await;
    assert!(
        later[0] > ids[1],
        "conformance: a task enqueued later should have a greater id, even with an \
         earlier `now`"
    );
    assert!(
        ok(q.task_attempts(None).await, "task attempts").is_empty(),
        "conformance: enqueuing records no attempt"
    );
}

/// Claims take the lowest priority first, then the oldest `enqueued` (to the nanosecond,
/// whatever the ids say), then the lowest id; a task is claimed only once its
/// `not_before` has come; a claimed task is running with its lease, attempt and start.
pub async fn claim_order(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "claim order").await;
    let lanes = Lanes::uniform(10);
    let x = enqueue(q, &[backup(1)], at(5)).await[0];
    let y = enqueue(q, &[backup(1)], at(3)).await[0];
    let a = enqueue(q, &[backup(5)], at(0)).await[0];
    let cd = enqueue(q, &[backup(1), backup(1)], at(4)).await;
    let (c, d) = (cd[0], cd[1]);
    let e = enqueue(q, &[backup(1)], plus_ns(at(4), 1)).await[0];
    let mut due_later = backup(0);
    due_later.not_before = at(20);
    let f = enqueue(q, &[due_later], at(0)).await[0];
    let g = enqueue(q, &[backup(-3)], at(6)).await[0];
    let order = [g, y, c, d, e, x, a];

    let first = get(q, g).await;
    let taken = claim_tasks(q, "w", 1, &lanes, at(10)).await;
    let expected = claimed(first, "w", at(10));
    assert_eq!(
        taken,
        vec![expected.clone()],
        "conformance: the claim should take the lowest priority, running with its lease"
    );
    assert_eq!(
        get(q, g).await,
        expected,
        "conformance: a claimed task should read back as the claim returned it"
    );
    assert_eq!(
        attempts(q, g).await,
        vec![attempt(g, 1, "w", at(10), None)],
        "conformance: a claim should record an open attempt"
    );
    assert_eq!(
        claim(q, "w", 3, &lanes, at(10)).await,
        set(&order[1..4]),
        "conformance: a claim of 3 should take the next three by (priority, enqueued, id)"
    );
    for (i, id) in order[4..].iter().enumerate() {
        assert_eq!(
            claim(q, "w", 1, &lanes, at(10)).await,
            vec![*id],
            "conformance: claim {} should follow (priority, enqueued, id) order",
            i + 5
        );
    }
    assert!(
        claim(q, "w", 5, &lanes, plus_ns(at(20), -1))
            .await
            .is_empty(),
        "conformance: a task should not be claimed before its not_before"
    );
    assert_eq!(
        claim(q, "w", 5, &lanes, at(20)).await,
        vec![f],
        "conformance: a task should be claimable at its not_before"
    );
    assert!(
        claim(q, "w", 5, &lanes, at(21)).await.is_empty(),
        "conformance: running tasks are not claimed again"
    );
}

/// At most one running task per account: two tasks of one account in one claim, or a
/// second one (of any kind) in another claim while the first runs, are not taken; once it
/// ends, the next one is.
pub async fn one_task_per_account(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "one task per account").await;
    let lanes = Lanes::uniform(10);
    let (p, other) = (AccountId::new(), AccountId::new());
    let tasks = [
        new_task(TaskKind::Verify, p, 0),
        new_task(TaskKind::Backup, p, 1),
        new_task(TaskKind::Backup, p, 2),
        new_task(TaskKind::Backup, other, 3),
    ];
    let ids = enqueue(q, &tasks, at(0)).await;
    assert_eq!(
        claim(q, "w1", 10, &lanes, at(1)).await,
        set(&[ids[0], ids[3]]),
        "conformance: one claim should take one task per account"
    );
    assert!(
        claim(q, "w2", 10, &lanes, at(2)).await.is_empty(),
        "conformance: no task of an account with a running task should be claimed"
    );
    finish(q, ids[0], "w1", done("verified"), at(3)).await;
    assert_eq!(
        claim(q, "w2", 10, &lanes, at(4)).await,
        vec![ids[1]],
        "conformance: once an account's task ended, its next task should be claimed"
    );
    finish(q, ids[3], "w1", done("ok"), at(5)).await;
    assert!(
        claim(q, "w3", 10, &lanes, at(5)).await.is_empty(),
        "conformance: the account still has a running task"
    );
    finish(q, ids[1], "w2", done("ok"), at(6)).await;
    assert_eq!(
        claim(q, "w3", 10, &lanes, at(7)).await,
        vec![ids[2]],
        "conformance: the account's last task should be claimed"
    );
}

/// Lanes per kind: a claim never makes more tasks of a kind run than its lanes say,
/// counting the running tasks of every worker; a kind without lanes is not claimed; each
/// request's own lanes apply.
pub async fn lanes_per_kind(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "lanes").await;
    let lanes = Lanes::uniform(0)
        .with(TaskKind::Backup, 2)
        .with(TaskKind::Verify, 1);
    let tasks = [
        backup(0),
        backup(1),
        backup(2),
        backup(3),
        new_task(TaskKind::Verify, AccountId::new(), 4),
        new_task(TaskKind::Verify, AccountId::new(), 5),
        new_task(TaskKind::Restore, AccountId::new(), -1),
    ];
    let ids = enqueue(q, &tasks, at(0)).await;
    assert_eq!(
        claim(q, "w1", 1, &lanes, at(1)).await,
        vec![ids[0]],
        "conformance: a kind without lanes should not be claimed"
    );
    assert_eq!(
        claim(q, "w2", 10, &lanes, at(2)).await,
        set(&[ids[1], ids[4]]),
        "conformance: lanes should count every worker's running tasks (2 backups, 1 verify)"
    );
    assert!(
        claim(q, "w3", 10, &lanes, at(3)).await.is_empty(),
        "conformance: full lanes should take nothing"
    );
    finish(q, ids[0], "w1", done("ok"), at(4)).await;
    assert_eq!(
        claim(q, "w3", 10, &lanes, at(5)).await,
        vec![ids[2]],
        "conformance: a freed backup lane should take the next backup"
    );
    let restore = Lanes::uniform(0).with(TaskKind::Restore, 1);
    assert_eq!(
        claim(q, "w4", 10, &restore, at(6)).await,
        vec![ids[6]],
        "conformance: each request's own lanes should apply"
    );
    assert!(
        claim(q, "w5", 10, &Lanes::uniform(0), at(7))
            .await
            .is_empty(),
        "conformance: no lanes, no claim"
    );
}

/// Leases: a heartbeat renews the lease; a lease ending exactly at the claim's time still
/// holds, one nanosecond later it ran out and the next claim (another worker's) takes the
/// task, its lost attempt ending at the lease's end; the old worker's heartbeat, finish,
/// retry and release are then refused and change nothing; a holder whose lease ran out is
/// refused even before anyone claimed the task.
pub async fn lapsed_leases(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "lapsed leases").await;
    let lanes = Lanes::uniform(10);
    let x = enqueue(q, &[backup(0)], at(0)).await[0];
    assert_eq!(claim(q, "w1", 1, &lanes, at(0)).await, vec![x]);
    let held = ok(
        q.heartbeat(x, "w1", at(90), None, at(30)).await,
        "heartbeat",
    );
    assert_eq!(held, Heartbeat::Held, "conformance: the holder's heartbeat");
    assert_eq!(
        get(q, x).await.lease_until,
        Some(at(90)),
        "conformance: a heartbeat should renew the lease"
    );
    let stranger = ok(
        q.heartbeat(x, "w2", at(99), None, at(31)).await,
        "heartbeat",
    );
    assert_eq!(
        stranger,
        Heartbeat::Lost,
        "conformance: another worker's heartbeat should be Lost"
    );
    assert!(
        !ok(q.finish(x, "w2", &done("no"), at(31)).await, "finish"),
        "conformance: another worker's finish should be refused"
    );
    assert!(
        claim(q, "w2", 1, &lanes, at(90)).await.is_empty(),
        "conformance: a lease ending at the claim's time has not run out"
    );
    let now = plus_ns(at(90), 1);
    let taken = claim_tasks(q, "w2", 1, &lanes, now).await;
    assert_eq!(
        taken.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![x],
        "conformance: a lease that ran out should hand the task to the next claim"
    );
    let reclaimed = taken[0].clone();
    assert_eq!(
        (reclaimed.attempts, reclaimed.worker.as_deref()),
        (2, Some("w2")),
        "conformance: the reclaimed task counts a second attempt, for its new worker"
    );
    assert_eq!(reclaimed.lease_until, Some(lease_end(now)));
    assert_eq!(reclaimed.started, Some(now));
    assert_eq!(
        attempts(q, x).await,
        vec![
            attempt(x, 1, "w1", at(0), Some((at(90), "lost"))),
            attempt(x, 2, "w2", now, None),
        ],
        "conformance: the lost attempt should end at its lease's end"
    );
    let late = ok(
        q.heartbeat(x, "w1", at(200), None, at(91)).await,
        "heartbeat",
    );
    assert_eq!(
        late,
        Heartbeat::Lost,
        "conformance: the old worker's heartbeat should be Lost"
    );
    assert!(
        !ok(q.finish(x, "w1", &done("late"), at(91)).await, "finish"),
        "conformance: the old worker's finish should be refused"
    );
    assert!(
        !ok(q.retry(x, "w1", at(95), "late", at(91)).await, "retry"),
        "conformance: the old worker's retry should be refused"
    );
    assert!(
        !ok(q.release(x, "w1", at(91)).await, "release"),
        "conformance: the old worker's release should be refused"
    );
    assert_eq!(
        get(q, x).await,
        reclaimed,
        "conformance: refused calls should change nothing"
    );
    finish(q, x, "w2", done("snapshot 1"), at(100)).await;
    let mut ended = reclaimed.clone();
    ended.state = TaskState::Done;
    ended.message = Some("snapshot 1".into());
    ended.finished = Some(at(100));
    ended.worker = None;
    ended.lease_until = None;
    assert_eq!(
        get(q, x).await,
        ended,
        "conformance: a finished task ends with its outcome, its lease and worker cleared"
    );
    assert_eq!(
        attempts(q, x).await[1],
        attempt(x, 2, "w2", now, Some((at(100), "done"))),
        "conformance: finishing should close the attempt with the outcome"
    );
    assert!(
        !ok(q.finish(x, "w2", &done("twice"), at(101)).await, "finish"),
        "conformance: finishing an ended task should be refused"
    );
    assert_eq!(
        ok(
            q.heartbeat(x, "w2", at(200), None, at(101)).await,
            "heartbeat"
        ),
        Heartbeat::Lost,
        "conformance: a heartbeat of an ended task should be Lost"
    );

    // The holder's own lease ran out, nobody claimed the task yet: still refused.
    let y = enqueue(q, &[backup(0)], at(200)).await[0];
    assert_eq!(claim(q, "w1", 1, &lanes, at(200)).await, vec![y]);
    let after = plus_ns(lease_end(at(200)), 1);
    assert_eq!(
        ok(
            q.heartbeat(y, "w1", at(400), None, after).await,
            "heartbeat"
        ),
        Heartbeat::Lost,
        "conformance: a heartbeat after the lease ran out should be Lost"
    );
    assert!(
        !ok(q.finish(y, "w1", &done("late"), after).await, "finish"),
        "conformance: a finish after the lease ran out should be refused"
    );
    assert_eq!(
        claim(q, "w2", 1, &lanes, after).await,
        vec![y],
        "conformance: the task whose lease ran out should be claimed again"
    );
}

/// Lapses use up the attempts: when the last allowed attempt's lease runs out, the next
/// claim fails the task (`worker lost: the lease ran out 2 times`), finished at that claim.
pub async fn lapses_use_up_attempts(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "lapses").await;
    let lanes = Lanes::uniform(10);
    let mut new = backup(0);
    new.max_attempts = 2;
    let t = enqueue(q, std::slice::from_ref(&new), at(0)).await[0];
    assert_eq!(claim(q, "w1", 1, &lanes, at(0)).await, vec![t]);
    assert_eq!(claim(q, "w2", 1, &lanes, at(61)).await, vec![t]);
    assert!(
        claim(q, "w3", 1, &lanes, at(122)).await.is_empty(),
        "conformance: a task whose attempts are used up should not be claimed again"
    );
    let mut failed = queued(&new, t, at(0));
    failed.state = TaskState::Failed;
    failed.attempts = 2;
    failed.started = Some(at(61));
    failed.finished = Some(at(122));
    failed.message = Some("worker lost: the lease ran out 2 times".into());
    assert_eq!(
        get(q, t).await,
        failed,
        "conformance: lapses that use up the attempts should fail the task"
    );
    assert_eq!(
        attempts(q, t).await,
        vec![
            attempt(t, 1, "w1", at(0), Some((at(60), "lost"))),
            attempt(t, 2, "w2", at(61), Some((at(121), "lost"))),
        ],
        "conformance: both attempts were lost at their leases' ends"
    );
}

/// Retry: the task goes back to the queue with the error's message until `not_before`
/// (not claimable a nanosecond before, claimable at it), the attempt closed as `retry`;
/// the next claim counts the attempt and keeps the message.
pub async fn retry_with_backoff(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "retry").await;
    let lanes = Lanes::uniform(10);
    let new = backup(0);
    let t = enqueue(q, std::slice::from_ref(&new), at(0)).await[0];
    assert_eq!(claim(q, "w1", 1, &lanes, at(0)).await, vec![t]);
    assert!(
        !ok(q.retry(t, "w2", at(100), "not mine", at(5)).await, "retry"),
        "conformance: another worker's retry should be refused"
    );
    assert!(
        ok(
            q.retry(t, "w1", at(100), "store busy", at(5)).await,
            "retry"
        ),
        "conformance: the holder's retry should succeed"
    );
    let mut waiting = queued(&new, t, at(0));
    waiting.attempts = 1;
    waiting.started = Some(at(0));
    waiting.not_before = at(100);
    waiting.message = Some("store busy".into());
    assert_eq!(
        get(q, t).await,
        waiting,
        "conformance: a retried task is queued until not_before, with the message"
    );
    assert_eq!(
        attempts(q, t).await,
        vec![attempt(t, 1, "w1", at(0), Some((at(5), "retry")))]
    );
    assert!(claim(q, "w2", 1, &lanes, at(99)).await.is_empty());
    assert!(
        claim(q, "w2", 1, &lanes, plus_ns(at(100), -1))
            .await
            .is_empty(),
        "conformance: a retried task should wait for its not_before"
    );
    let taken = claim_tasks(q, "w2", 1, &lanes, at(100)).await;
    assert_eq!(
        taken,
        vec![claimed(waiting, "w2", at(100))],
        "conformance: the retried task is claimed at not_before, attempt 2, message kept"
    );
    assert!(
        !ok(q.retry(t, "w1", at(200), "late", at(101)).await, "retry"),
        "conformance: the old worker's retry should be refused"
    );
    let failed = Outcome::Failed {
        message: "gave up".into(),
    };
    finish(q, t, "w2", failed, at(110)).await;
    let task = get(q, t).await;
    assert_eq!(
        (task.state, task.message.as_deref()),
        (TaskState::Failed, Some("gave up"))
    );
}

/// Release: the task is queued again at once, its attempt not counted (with one attempt
/// allowed it runs again), the attempt closed as `released`.
pub async fn release_does_not_count(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "release").await;
    let lanes = Lanes::uniform(10);
    let mut new = backup(0);
    new.max_attempts = 1;
    let t = enqueue(q, std::slice::from_ref(&new), at(0)).await[0];
    assert_eq!(claim(q, "w1", 1, &lanes, at(0)).await, vec![t]);
    assert!(
        !ok(q.release(t, "w2", at(5)).await, "release"),
        "conformance: another worker's release should be refused"
    );
    assert!(
        ok(q.release(t, "w1", at(5)).await, "release"),
        "conformance: the holder's release should succeed"
    );
    let mut back = queued(&new, t, at(0));
    back.started = Some(at(0));
    assert_eq!(
        get(q, t).await,
        back,
        "conformance: a released task is queued with its attempt not counted"
    );
    let taken = claim_tasks(q, "w2", 1, &lanes, at(5)).await;
    assert_eq!(
        taken,
        vec![claimed(back, "w2", at(5))],
        "conformance: a released task should be claimable at once, as attempt 1"
    );
    assert_eq!(
        attempts(q, t).await,
        vec![
            attempt(t, 1, "w1", at(0), Some((at(5), "released"))),
            attempt(t, 2, "w2", at(5), None),
        ],
        "conformance: the history keeps the released attempt"
    );
}

/// Cancellation: a queued task ends `Cancelled` at once (and is never claimed); a running
/// one is asked to stop (`Running`, `cancel_requested`), its heartbeat answers
/// `CancelRequested` while still renewing the lease, and its worker finishes it as
/// cancelled; an ended task keeps its state; an unknown one is `None`. A running task
/// whose cancellation was asked for ends `Cancelled` instead of going back to the queue
/// when its worker retries it or its lease runs out.
pub async fn cancellation(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "cancellation").await;
    let lanes = Lanes::uniform(10);
    let news = [backup(0), backup(1), backup(2), backup(3), backup(4)];
    let ids = enqueue(q, &news, at(0)).await;
    let (waiting, running, ended, retried, lapsing) = (ids[0], ids[1], ids[2], ids[3], ids[4]);

    assert_eq!(
        ok(q.cancel(waiting, at(1)).await, "cancel"),
        Some(TaskState::Cancelled),
        "conformance: cancelling a queued task ends it"
    );
    let mut cancelled = queued(&news[0], waiting, at(0));
    cancelled.state = TaskState::Cancelled;
    cancelled.finished = Some(at(1));
    assert_eq!(get(q, waiting).await, cancelled);
    assert_eq!(
        claim(q, "w1", 10, &lanes, at(2)).await,
        set(&ids[1..]),
        "conformance: a cancelled task is not claimed"
    );

    finish(q, ended, "w1", done("ok"), at(3)).await;
    assert_eq!(
        ok(q.cancel(ended, at(3)).await, "cancel"),
        Some(TaskState::Done),
        "conformance: cancelling an ended task leaves it as it is"
    );
    assert_eq!(get(q, ended).await.state, TaskState::Done);

    assert_eq!(
        ok(q.cancel(running, at(4)).await, "cancel"),
        Some(TaskState::Running),
        "conformance: cancelling a running task asks it to stop"
    );
    let task = get(q, running).await;
    assert_eq!(
        (task.state, task.cancel_requested, task.finished),
        (TaskState::Running, true, None)
    );
    assert_eq!(
        ok(
            q.heartbeat(running, "w1", at(100), None, at(5)).await,
            "heartbeat"
        ),
        Heartbeat::CancelRequested,
        "conformance: the worker's heartbeat should see the cancellation"
    );
    assert_eq!(
        get(q, running).await.lease_until,
        Some(at(100)),
        "conformance: a heartbeat answering CancelRequested still renews the lease"
    );
    assert_eq!(
        ok(q.cancel(running, at(5)).await, "cancel"),
        Some(TaskState::Running)
    );
    finish(q, running, "w1", Outcome::Cancelled, at(6)).await;
    let task = get(q, running).await;
    assert_eq!(
        (task.state, task.finished, task.message),
        (TaskState::Cancelled, Some(at(6)), None),
        "conformance: the worker finishes a cancelled task as cancelled"
    );
    assert_eq!(
        attempts(q, running).await,
        vec![attempt(running, 1, "w1", at(2), Some((at(6), "cancelled")))]
    );
    assert_eq!(
        ok(q.cancel(waiting, at(7)).await, "cancel"),
        Some(TaskState::Cancelled)
    );
    assert_eq!(
        get(q, waiting).await,
        cancelled,
        "conformance: cancelling a cancelled task changes nothing"
    );
    assert_eq!(
        ok(q.cancel(TaskId::new(), at(7)).await, "cancel"),
        None,
        "conformance: cancelling an unknown task is None"
    );

    assert_eq!(
        ok(q.cancel(retried, at(8)).await, "cancel"),
        Some(TaskState::Running)
    );
    assert!(ok(
        q.retry(retried, "w1", at(9), "oops", at(8)).await,
        "retry"
    ));
    assert_eq!(
        get(q, retried).await.state,
        TaskState::Cancelled,
        "conformance: a retry of a task whose cancellation was asked for cancels it"
    );
    assert_eq!(
        ok(q.cancel(lapsing, at(8)).await, "cancel"),
        Some(TaskState::Running)
    );
    let after = plus_ns(lease_end(at(2)), 1);
    assert!(
        claim(q, "w2", 10, &lanes, after).await.is_empty(),
        "conformance: cancelled tasks are not claimed again"
    );
    let task = get(q, lapsing).await;
    assert_eq!(
        (task.state, task.finished),
        (TaskState::Cancelled, Some(after)),
        "conformance: a lapsed task whose cancellation was asked for is cancelled"
    );
}

/// The circuit breaker: failures in a row count up (with the last error), the policy's
/// threshold pauses the destination (its tasks wait, other destinations' tasks and tasks
/// without one are claimed) until the pause ends (claimable at that very time), a further
/// failure doubles the pause, and a success resets the count and the pause.
pub async fn circuit_breaker(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "circuit breaker").await;
    let lanes = Lanes::uniform(10);
    let policy = BreakerPolicy {
        threshold: 2,
        pause: Duration::from_secs(60),
        max_pause: Duration::from_secs(600),
    };
    let (d1, d2) = (DestinationId::new(), DestinationId::new());
    let on = |d: Option<DestinationId>, priority| {
        let mut t = backup(priority);
        t.destination = d;
        t
    };
    let news = [
        on(Some(d1), 0),
        on(Some(d1), 0),
        on(Some(d1), 0),
        on(Some(d2), 1),
        on(None, 1),
    ];
    let ids = enqueue(q, &news, at(0)).await;
    let record = |error: Option<&'static str>, now| async move {
        ok(
            q.record_destination(d1, error, &policy, now).await,
            "record destination",
        )
    };
    let health = |failures, paused_until, last_error: &str| DestinationHealth {
        destination: d1,
        failures,
        paused_until,
        last_error: Some(last_error.to_owned()),
    };
    assert_eq!(
        record(Some("timeout"), at(0)).await,
        health(1, None, "timeout"),
        "conformance: one failure below the threshold does not pause"
    );
    let paused = health(2, Some(at(61)), "refused");
    assert_eq!(
        record(Some("refused"), at(1)).await,
        paused,
        "conformance: the threshold's failure pauses the destination"
    );
    assert_eq!(
        ok(q.destination_health().await, "destination health"),
        vec![paused.clone()]
    );
    assert_eq!(
        claim(q, "w1", 10, &lanes, at(2)).await,
        set(&ids[3..]),
        "conformance: a paused destination's tasks wait while the others are claimed"
    );
    finish(q, ids[3], "w1", done("ok"), at(3)).await;
    finish(q, ids[4], "w1", done("ok"), at(3)).await;
    let fine = ok(
        q.record_destination(d2, None, &policy, at(3)).await,
        "record destination",
    );
    assert_eq!(
        fine,
        DestinationHealth {
            destination: d2,
            failures: 0,
            paused_until: None,
            last_error: None,
        }
    );
    let mut all = vec![paused, fine];
    all.sort_by_key(|h| h.destination.to_string());
    assert_eq!(
        ok(q.destination_health().await, "destination health"),
        all,
        "conformance: every destination's health, by id"
    );
    assert!(
        claim(q, "w2", 10, &lanes, plus_ns(at(61), -1))
            .await
            .is_empty(),
        "conformance: the destination is paused until paused_until"
    );
    assert_eq!(
        claim(q, "w2", 10, &lanes, at(61)).await,
        set(&ids[..3]),
        "conformance: after the pause the destination's tasks are claimed"
    );
    assert_eq!(
        record(Some("again"), at(62)).await,
        health(3, Some(at(182)), "again"),
        "conformance: a further failure doubles the pause"
    );
    let reset = record(None, at(63)).await;
    assert_eq!(
        (reset.failures, reset.paused_until),
        (0, None),
        "conformance: a success resets the failures and the pause"
    );
}

/// Job runs: a run reads back; a second run of the same job and slot is refused (another
/// job's run of that slot, or the job's next slot a nanosecond later, is not); runs list
/// newest slot first (then by id, newest first), per job or all, with a limit; a run's row
/// is replaced by `update_run`.
pub async fn runs(queue: &dyn JobQueue) {
    let q = queue;
    assert!(
        ok(q.list_runs(None, 100).await, "list runs").is_empty(),
        "conformance: the runs check needs a queue without runs"
    );
    let (job, other) = (JobId::new(), JobId::new());
    let run = |job, slot, trigger| JobRun {
        id: RunId::new(),
        job,
        slot,
        trigger,
        started: plus_ns(slot, 5),
        finished: None,
        tasks: 3,
        done: 0,
        partial: 0,
        failed: 0,
        cancelled: 0,
    };
    let (s1, s2) = (at(0), plus_ns(at(0), 1));
    let mut r1 = run(job, s1, RunTrigger::Schedule);
    assert!(ok(q.start_run(&r1).await, "start run"));
    assert_eq!(ok(q.get_run(r1.id).await, "get run"), Some(r1.clone()));
    let twice = run(job, s1, RunTrigger::Manual);
    assert!(
        !ok(q.start_run(&twice).await, "start run"),
        "conformance: a second run of one job and slot should be refused"
    );
    assert_eq!(
        ok(q.get_run(twice.id).await, "get run"),
        None,
        "conformance: a refused run is not recorded"
    );
    let r2 = run(job, s2, RunTrigger::After);
    let r3 = run(other, s1, RunTrigger::Schedule);
    assert!(ok(q.start_run(&r2).await, "start run"));
    assert!(
        ok(q.start_run(&r3).await, "start run"),
        "conformance: another job's run of the same slot is not refused"
    );
    assert_eq!(
        ok(q.list_runs(Some(job), 10).await, "list runs"),
        vec![r2.clone(), r1.clone()],
        "conformance: a job's runs should list newest slot first"
    );
    assert_eq!(
        ok(q.list_runs(Some(job), 1).await, "list runs"),
        vec![r2.clone()]
    );
    let mut same_slot = vec![r1.clone(), r3.clone()];
    same_slot.sort_by_key(|r| std::cmp::Reverse(r.id));
    let mut everything = vec![r2.clone()];
    everything.extend(same_slot);
    assert_eq!(
        ok(q.list_runs(None, 10).await, "list runs"),
        everything,
        "conformance: all runs should list newest slot first, then by id descending"
    );
    assert!(ok(q.list_runs(None, 0).await, "list runs").is_empty());
    r1.finished = Some(at(9));
    r1.done = 1;
    r1.partial = 1;
    r1.failed = 1;
    ok(q.update_run(&r1).await, "update run");
    assert_eq!(
        ok(q.get_run(r1.id).await, "get run"),
        Some(r1.clone()),
        "conformance: update_run should replace the run"
    );
    assert_eq!(
        ok(q.list_runs(Some(job), 10).await, "list runs"),
        vec![r2, r1]
    );
}

/// Progress: each heartbeat's progress reads back (from `get_task` and listings); a
/// heartbeat without progress keeps the last one; a refused heartbeat writes nothing.
pub async fn progress_reads_back(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "progress").await;
    let t = enqueue(q, &[backup(0)], at(0)).await[0];
    assert_eq!(claim(q, "w1", 1, &Lanes::uniform(1), at(0)).await, vec![t]);
    let first = TaskProgress {
        phase: "walking".into(),
        files: 10,
        bytes: 1 << 20,
        files_total: None,
        bytes_total: None,
    };
    let second = TaskProgress {
        phase: "uploading".into(),
        files: 12,
        bytes: 3 << 30,
        files_total: Some(40),
        bytes_total: Some(u64::MAX),
    };
    let beat = |progress: Option<TaskProgress>, worker: &'static str, secs: i64| async move {
        ok(
            q.heartbeat(t, worker, at(secs + 60), progress.as_ref(), at(secs))
                .await,
            "heartbeat",
        )
    };
    assert_eq!(beat(Some(first.clone()), "w1", 1).await, Heartbeat::Held);
    assert_eq!(
        get(q, t).await.progress,
        Some(first.clone()),
        "conformance: progress should read back"
    );
    assert_eq!(beat(None, "w1", 2).await, Heartbeat::Held);
    let task = get(q, t).await;
    assert_eq!(
        (task.progress, task.lease_until),
        (Some(first), Some(at(62))),
        "conformance: a heartbeat without progress keeps it and renews the lease"
    );
    assert_eq!(beat(Some(second.clone()), "w1", 3).await, Heartbeat::Held);
    let stranger = TaskProgress {
        phase: "intruding".into(),
        ..TaskProgress::default()
    };
    assert_eq!(beat(Some(stranger), "w2", 4).await, Heartbeat::Lost);
    let listed = ok(q.list_tasks(&TaskFilter::default()).await, "list tasks");
    assert_eq!(
        listed.first().and_then(|t| t.progress.clone()),
        Some(second.clone()),
        "conformance: the last progress of the holder should read back from listings"
    );
    finish(q, t, "w1", done("ok"), at(5)).await;
    assert_eq!(
        get(q, t).await.progress,
        Some(second),
        "conformance: a finished task keeps its last progress"
    );
}

/// Listings: by id (enqueue order), filtered by states, run and account (together too),
/// the oldest `limit` kept; attempts of every task by task then attempt.
pub async fn list_filters(queue: &dyn JobQueue) {
    let q = queue;
    expect_empty_queue(q, "list filters").await;
    let (run1, run2) = (RunId::new(), RunId::new());
    let (a, b, c) = (AccountId::new(), AccountId::new(), AccountId::new());
    let with = |kind, account, run: Option<RunId>| {
        let mut t = new_task(kind, account, 0);
        t.run = run;
        t
    };
    let news = [
        with(TaskKind::Backup, a, Some(run1)),
        with(TaskKind::Backup, b, Some(run1)),
        with(TaskKind::Verify, c, Some(run2)),
        with(TaskKind::Backup, a, Some(run2)),
        with(TaskKind::Restore, b, None),
        with(TaskKind::Backup, c, Some(run1)),
    ];
    let t = enqueue(q, &news, at(0)).await;
    assert_eq!(
        claim(q, "w1", 10, &Lanes::uniform(10), at(1)).await,
        set(&t[..3]),
        "conformance: the first task of each account"
    );
    finish(q, t[1], "w1", done("ok"), at(2)).await;
    assert_eq!(
        ok(q.cancel(t[4], at(3)).await, "cancel"),
        Some(TaskState::Cancelled)
    );
    let mut all = Vec::new();
    for id in &t {
        all.push(get(q, *id).await);
    }
    let cases: Vec<(TaskFilter, Vec<usize>, &str)> = vec![
        (TaskFilter::default(), vec![0, 1, 2, 3, 4, 5], "everything"),
        (
            TaskFilter {
                states: vec![TaskState::Running],
                ..TaskFilter::default()
            },
            vec![0, 2],
            "running",
        ),
        (
            TaskFilter {
                states: vec![TaskState::Cancelled, TaskState::Queued],
                ..TaskFilter::default()
            },
            vec![3, 4, 5],
            "queued or cancelled",
        ),
        (
            TaskFilter {
                run: Some(run1),
                ..TaskFilter::default()
            },
            vec![0, 1, 5],
            "of a run",
        ),
        (
            TaskFilter {
                account: Some(a),
                ..TaskFilter::default()
            },
            vec![0, 3],
            "of an account",
        ),
        (
            TaskFilter {
                run: Some(run2),
                account: Some(c),
                ..TaskFilter::default()
            },
            vec![2],
            "of a run and an account",
        ),
        (
            TaskFilter {
                states: vec![TaskState::Queued],
                run: Some(run1),
                ..TaskFilter::default()
            },
            vec![5],
            "queued of a run",
        ),
        (
            TaskFilter {
                limit: Some(2),
                ..TaskFilter::default()
            },
            vec![0, 1],
            "the oldest two",
        ),
        (
            TaskFilter {
                account: Some(b),
                limit: Some(1),
                ..TaskFilter::default()
            },
            vec![1],
            "an account's oldest",
        ),
        (
            TaskFilter {
                run: Some(RunId::new()),
                ..TaskFilter::default()
            },
            vec![],
            "of an unknown run",
        ),
        (
            TaskFilter {
                limit: Some(0),
                ..TaskFilter::default()
            },
            vec![],
            "none",
        ),
        (
            TaskFilter {
                states: vec![TaskState::Failed],
                ..TaskFilter::default()
            },
            vec![],
            "failed",
        ),
    ];
    for (filter, expected, what) in cases {
        let listed = ok(q.list_tasks(&filter).await, "list tasks");
        let expected: Vec<Task> = expected.iter().map(|&i| all[i].clone()).collect();
        assert_eq!(
            listed, expected,
            "conformance: listing {what} should give exactly those tasks, by id"
        );
    }
    let mut history: Vec<TaskAttempt> = [0, 1, 2]
        .iter()
        .map(|&i| {
            let end = (i == 1).then_some((at(2), "done"));
            attempt(t[i], 1, "w1", at(1), end)
        })
        .collect();
    history.sort_by_key(|a| a.task.to_string());
    assert_eq!(
        ok(q.task_attempts(None).await, "task attempts"),
        history,
        "conformance: every attempt, by task then attempt"
    );
}

/// One task's run as [`concurrent_claims`] records it: `start` is read after the
/// claim returned and `end` before the finish is called, from one logical clock shared by
/// every claimer, so `[start, end]` lies within the time the task really ran.
#[derive(Debug, Clone)]
struct Ran {
    task: TaskId,
    account: AccountId,
    start: i64,
    end: i64,
}

/// Many claimers at once: a claimer per handle in `queues` (handles to ONE empty queue:
/// one shared handle, or separate connections as separate machines would have), each
/// claiming (1 to 3 at a time) and finishing in a loop until 100 backups of 30 accounts
/// are done, with lanes backup=3. Each task is claimed exactly once and done in one
/// attempt; no account ever has two running tasks and no more than 3 run at once (counted
/// live, and checked again over the recorded intervals).
pub async fn concurrent_claims(queues: &[Arc<dyn JobQueue>]) {
    const TASKS: usize = 100;
    const ACCOUNTS: usize = 30;
    const LANES: u32 = 3;
    assert!(
        !queues.is_empty(),
        "conformance: concurrent claims need a queue"
    );
    let q = queues[0].as_ref();
    expect_empty_queue(q, "concurrent claims").await;
    let accounts: Vec<AccountId> = (0..ACCOUNTS).map(|_| AccountId::new()).collect();
    let news: Vec<NewTask> = (0..TASKS)
        .map(|i| new_task(TaskKind::Backup, accounts[i % ACCOUNTS], (i % 7) as i64))
        .collect();
    let ids = enqueue(q, &news, at(0)).await;

    let clock = Arc::new(AtomicI64::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let per_account: Arc<HashMap<AccountId, AtomicUsize>> =
        Arc::new(accounts.iter().map(|a| (*a, AtomicUsize::new(0))).collect());
    let finished = Arc::new(AtomicUsize::new(0));
    let log: Arc<Mutex<Vec<Ran>>> = Arc::new(Mutex::new(Vec::new()));
    let lanes = Lanes::uniform(0).with(TaskKind::Backup, LANES);

    let mut claimers = Vec::new();
    for n in 0..8_usize {
        let queue = queues[n % queues.len()].clone();
        let (clock, running, per_account) = (clock.clone(), running.clone(), per_account.clone());
        let (finished, log, lanes) = (finished.clone(), log.clone(), lanes.clone());
        claimers.push(tokio::spawn(async move {
            let worker = format!("claimer-{n}");
            let tick = || clock.fetch_add(1, Ordering::SeqCst) + 1;
            let time = |tick: i64| at(1) + TimeDelta::milliseconds(tick);
            let max = 1 + (n % 3) as u32;
            let lease = Duration::from_secs(24 * 3600);
            let mut rounds = 0_u32;
            while finished.load(Ordering::SeqCst) < TASKS {
                rounds += 1;
                assert!(
                    rounds <= 200_000,
                    "conformance: {worker} claimed {rounds} times without the tasks ending"
                );
                let request = ClaimRequest {
                    worker: worker.clone(),
                    max,
                    lanes: lanes.clone(),
                    lease,
                    now: time(tick()),
                    now_after_lock: false,
                };
                let tasks = ok(queue.claim(&request).await, "concurrent claim");
                if tasks.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                assert!(tasks.len() <= max as usize);
                let mut held = Vec::new();
                for task in tasks {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(
                        now <= LANES as usize,
                        "conformance: {now} tasks run at once, lanes allow {LANES}"
                    );
                    let mine = per_account[&task.account].fetch_add(1, Ordering::SeqCst) + 1;
                    assert_eq!(
                        mine, 1,
                        "conformance: account {} has two running tasks",
                        task.account
                    );
                    assert_eq!(
                        (task.state, task.attempts, task.worker.as_deref()),
                        (TaskState::Running, 1, Some(worker.as_str()))
                    );
                    held.push((task, tick()));
                }
                tokio::task::yield_now().await;
                for (task, start) in held {
                    let end = tick();
                    per_account[&task.account].fetch_sub(1, Ordering::SeqCst);
                    running.fetch_sub(1, Ordering::SeqCst);
                    log.lock().expect("log").push(Ran {
                        task: task.id,
                        account: task.account,
                        start,
                        end,
                    });
                    let outcome = done(&worker);
                    let ended = ok(
                        queue.finish(task.id, &worker, &outcome, time(tick())).await,
                        "concurrent finish",
                    );
                    assert!(ended, "conformance: {worker} should finish its task");
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for claimer in claimers {
        if let Err(e) = claimer.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    let log = log.lock().expect("log").clone();
    assert_eq!(log.len(), TASKS, "conformance: every task should run once");
    let claimed: HashSet<TaskId> = log.iter().map(|r| r.task).collect();
    assert_eq!(
        claimed,
        ids.iter().copied().collect::<HashSet<_>>(),
        "conformance: each task should be claimed exactly once"
    );
    for account in &accounts {
        let mut mine: Vec<&Ran> = log.iter().filter(|r| r.account == *account).collect();
        mine.sort_by_key(|r| r.start);
        for pair in mine.windows(2) {
            assert!(
                pair[0].end < pair[1].start,
                "conformance: two tasks of account {account} ran at once: {pair:?}"
            );
        }
    }
    let mut events: Vec<(i64, i64)> = log
        .iter()
        .flat_map(|r| [(r.start, 1), (r.end, -1)])
        .collect();
    events.sort();
    let mut at_once = 0;
    for (_, change) in events {
        at_once += change;
        assert!(
            at_once <= i64::from(LANES),
            "conformance: {at_once} tasks ran at once, lanes allow {LANES}"
        );
    }
    let tasks = ok(q.list_tasks(&TaskFilter::default()).await, "list tasks");
    assert!(
        tasks
            .iter()
            .all(|t| t.state == TaskState::Done && t.attempts == 1),
        "conformance: every task should be done in one attempt"
    );
    let history = ok(q.task_attempts(None).await, "task attempts");
    assert_eq!(history.len(), TASKS, "conformance: one attempt per task");
    assert!(
        history
            .iter()
            .all(|a| a.attempt == 1 && a.outcome.as_deref() == Some("done")),
        "conformance: every attempt should be done"
    );
}
