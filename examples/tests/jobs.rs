//! Jobs, the task queue and the daemon through `backupctl`, end to end: tags, priority
//! groups and job selections; runs queued by `job run` and worked by `daemon`; priorities
//! with one lane; a daemon SIGKILLed in the middle of a run (SQLite) and several daemons,
//! two of them killed, sharing a PostgreSQL queue; the destination circuit breaker; and a
//! running task cancelled through its heartbeat.
//!
//! The binary is the one `cargo build --example backupctl` built: build it before running
//! these tests (`cargo test` does not rebuild it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use backup_core::model::{TaskAttempt, TaskState};
use serde_json::Value;

mod jobs_support;
use jobs_support::{
    Ctl, Db, PgSchema, file_url, overlaps, run_id, snapshot_files, task_id, wait_for, write_home,
};

/// How long a test waits for a daemon or a state before it fails.
const PATIENCE: Duration = Duration::from_secs(240);

/// The task lease (seconds) of daemons that must not lose their tasks: their heartbeats
/// (every 5 s) have ample time even on a loaded machine, where a queue write (a SQLite
/// commit) can take seconds.
const QUIET_LEASE: &str = "30";

/// The task lease of the daemons the tests kill: what the dead daemon held goes back to
/// the queue this long after its last heartbeat. The account leases on destinations live
/// shorter ([`jobs_support::LEASE_TTL`]): the one a killed backup leaves behind has run
/// out when its task is claimed again.
const KILL_LEASE: &str = "12";

/// The lease of the daemon whose running task is cancelled: a heartbeat every 2 s.
const CANCEL_LEASE: &str = "6";

/// The tests run one at a time: each starts daemons that work hard for a while, and
/// heartbeats that starve on an overloaded machine lose their leases.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A state directory under `dir/state` with the `file://` destination `d` at `dir/dest`.
fn setup(dir: &Path) -> Ctl {
    let ctl = Ctl::new(&dir.join("state"));
    ctl.ok(&["init"]);
    ctl.ok(&["destination", "add", "d", &file_url(&dir.join("dest"))]);
    ctl
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {v}"))
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("a JSON array: {v}"))
}

/// The snapshots of `user` (`snapshots --json`) made by the job `job` (its id).
fn job_snapshots(ctl: &Ctl, user: &str, job: &str) -> Vec<Value> {
    array(&ctl.json(&["snapshots", user, "--json"]))
        .iter()
        .filter(|s| s["job"].as_str() == Some(job))
        .cloned()
        .collect()
}

/// The tasks of `queue list --all --json` by id.
fn all_tasks(ctl: &Ctl) -> BTreeMap<String, Value> {
    array(&ctl.json(&["queue", "list", "--all", "--json"]))
        .iter()
        .map(|t| (str_of(t, "id").to_owned(), t.clone()))
        .collect()
}

/// Tags, a priority group, accounts placed by `--source` and by the accounts root, jobs
/// selecting by tag and pattern with and without suspended accounts, runs queued then
/// worked by `daemon --once` or worked at once by `job run --wait`, a missing source, a
/// cancelled queued task, and the errors of bad input.
#[test]
fn cli_tags_groups_jobs_queue_and_daemon() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctl = setup(dir.path());

    // Tags and a priority group with a tag.
    let web = ctl.json(&["tag", "add", "web", "--color", "#336699", "--json"]);
    assert_eq!(web["name"], "web");
    assert_eq!(web["color"], "#336699");
    let web_id = str_of(&web, "id").to_owned();
    ctl.ok(&["tag", "add", "mail"]);
    let tags = ctl.json(&["tag", "list", "--json"]);
    let names: BTreeSet<&str> = array(&tags).iter().map(|t| str_of(t, "name")).collect();
    assert_eq!(names, BTreeSet::from(["mail", "web"]));
    let err = ctl.fails_with(1, &["tag", "add", "web"]);
    assert!(err.contains("web"), "{err}");
    let gold = ctl.json(&[
        "priority-group",
        "add",
        "Gold",
        "--backup",
        "5",
        "--restore",
        "6",
        "--download",
        "7",
        "--clone",
        "8",
        "--tag",
        "web",
        "--json",
    ]);
    assert_eq!(gold["tags"], serde_json::json!([web_id]));
    let groups = ctl.json(&["priority-group", "list", "--json"]);
    let gold = array(&groups)
        .iter()
        .find(|g| g["name"] == "Gold")
        .unwrap_or_else(|| panic!("Gold is listed: {groups}"));
    assert_eq!(gold["backup"], 5);
    assert_eq!(gold["tags"], serde_json::json!([web_id]));
    assert!(
        array(&groups)
            .iter()
            .any(|g| g["name"] == "Normal" && g["default"] == true),
        "the built-in default group stays: {groups}"
    );

    // Accounts: sources given, and one from the accounts root.
    let homes = dir.path().join("homes");
    let root = dir.path().join("root");
    let mut files = BTreeMap::new();
    for (i, user) in ["alice", "bob", "dave", "erin"].iter().enumerate() {
        files.insert(*user, write_home(&homes.join(user), i as u64 + 1, 12 + i));
    }
    files.insert("carol", write_home(&root.join("carol"), 9, 9));
    let src = |user: &str| homes.join(user).display().to_string();
    ctl.ok(&[
        "settings",
        "set",
        "accounts-root",
        &root.display().to_string(),
    ]);
    ctl.ok(&[
        "account",
        "add",
        "alice",
        "--source",
        &src("alice"),
        "--tag",
        "web",
    ]);
    ctl.ok(&[
        "account",
        "add",
        "bob",
        "--source",
        &src("bob"),
        "--tag",
        "web",
    ]);
    ctl.ok(&[
        "account",
        "add",
        "dave",
        "--source",
        &src("dave"),
        "--tag",
        "web",
    ]);
    ctl.ok(&["account", "set", "dave", "--status", "suspended"]);
    ctl.ok(&["account", "add", "carol", "--tag", "mail"]);
    ctl.ok(&["account", "add", "erin", "--source", &src("erin")]);
    let alice = ctl.json(&["account", "show", "alice", "--json"]);
    assert_eq!(alice["source"], src("alice").as_str());
    assert_eq!(alice["tags"], serde_json::json!([web_id]));

    // Jobs.
    let active = ctl.json(&[
        "job",
        "add",
        "web-active",
        "--destination",
        "d",
        "--accounts",
        "tag:web",
        "--exclude-suspended",
        "--json",
    ]);
    let active_id = str_of(&active, "id").to_owned();
    ctl.ok(&[
        "job",
        "add",
        "web-all",
        "--destination",
        "d",
        "--accounts",
        "tag:web",
    ]);
    ctl.ok(&[
        "job",
        "add",
        "c-only",
        "--destination",
        "d",
        "--accounts",
        "re:c.*",
        "--schedule",
        "weekly:sun@03:15",
    ]);
    let jobs = ctl.json(&["job", "list", "--json"]);
    let job = |name: &str| -> Value {
        array(&jobs)
            .iter()
            .find(|j| j["name"] == name)
            .unwrap_or_else(|| panic!("job {name} is listed: {jobs}"))
            .clone()
    };
    assert_eq!(array(&jobs).len(), 3, "{jobs}");
    assert_eq!(job("web-active")["exclude_suspended"], true);
    assert_eq!(job("web-all")["exclude_suspended"], false);
    assert_eq!(
        job("web-active")["accounts"],
        serde_json::json!({"by": "tag", "tag": web_id})
    );
    assert_eq!(job("web-active")["schedule_spelling"], "manual");
    assert_eq!(
        job("c-only")["accounts"],
        serde_json::json!({"by": "pattern", "pattern": "c.*"})
    );
    assert_eq!(job("c-only")["schedule_spelling"], "weekly:sun@03:15");
    assert!(
        job("c-only")["next_run"].is_string(),
        "a weekly job has a next run: {jobs}"
    );
    let all_id = str_of(&job("web-all"), "id").to_owned();
    let c_id = str_of(&job("c-only"), "id").to_owned();

    // `job run` queues and returns; the daemon runs the tasks.
    let started = ctl.json(&["job", "run", "web-active", "--json"]);
    let run = str_of(&started["run"], "id").to_owned();
    let ids: BTreeSet<String> = array(&started["tasks"])
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids.len(),
        2,
        "alice and bob, not the suspended dave: {started}"
    );
    let queued = ctl.json(&["queue", "list", "--json"]);
    let listed: BTreeSet<String> = array(&queued)
        .iter()
        .map(|t| str_of(t, "id").to_owned())
        .collect();
    assert_eq!(listed, ids, "{queued}");
    let users: BTreeSet<&str> = array(&queued)
        .iter()
        .map(|t| str_of(t, "username"))
        .collect();
    assert_eq!(users, BTreeSet::from(["alice", "bob"]));
    for t in array(&queued) {
        assert_eq!(t["state"], "queued", "{t}");
        assert_eq!(t["kind"], "backup", "{t}");
        assert_eq!(t["priority"], 5, "the Gold group's backup priority: {t}");
        assert_eq!(t["run"], run.as_str(), "{t}");
        assert_eq!(t["job"], active_id.as_str(), "{t}");
    }
    assert!(job_snapshots(&ctl, "alice", &active_id).is_empty());
    let report = ctl.json(&["daemon", "--once", "--lease", QUIET_LEASE, "--json"]);
    let ended = array(&report["tasks"]);
    assert_eq!(ended.len(), 2, "{report}");
    assert!(ended.iter().all(|t| t["state"] == "done"), "{report}");
    assert!(array(&ctl.json(&["queue", "list", "--json"])).is_empty());
    let tasks = all_tasks(&ctl);
    for id in &ids {
        assert_eq!(tasks[id]["state"], "done", "{}", tasks[id]);
        assert!(tasks[id]["finished"].is_string(), "{}", tasks[id]);
        assert!(str_of(&tasks[id], "message").contains("snapshot"));
    }

    // `job run --wait` works the queue here; a second run, nothing changed, is done too.
    let (code, waited) = ctl.json_with_code(&["job", "run", "web-active", "--wait", "--json"]);
    assert_eq!(code, Some(0), "{waited}");
    assert_eq!(array(&waited["tasks"]).len(), 2, "{waited}");
    assert!(
        array(&waited["tasks"]).iter().all(|t| t["state"] == "done"),
        "{waited}"
    );
    assert_eq!(waited["run"]["done"], 2, "the run is settled: {waited}");
    assert!(waited["run"]["finished"].is_string(), "{waited}");
    for user in ["alice", "bob"] {
        let snaps = job_snapshots(&ctl, user, &active_id);
        assert_eq!(snaps.len(), 2, "{user}: two runs, two snapshots: {snaps:?}");
        for s in &snaps {
            assert_eq!(s["kind"], "scheduled", "{s}");
            assert_eq!(snapshot_files(s), files[user], "{user}: {s}");
        }
    }
    assert!(job_snapshots(&ctl, "dave", &active_id).is_empty());

    // Without --exclude-suspended the suspended account is backed up.
    let (code, waited) = ctl.json_with_code(&["job", "run", "web-all", "--wait", "--json"]);
    assert_eq!(code, Some(0), "{waited}");
    let users: BTreeSet<&str> = array(&waited["tasks"])
        .iter()
        .map(|t| str_of(t, "username"))
        .collect();
    assert_eq!(users, BTreeSet::from(["alice", "bob", "dave"]), "{waited}");
    assert!(
        array(&waited["tasks"]).iter().all(|t| t["state"] == "done"),
        "{waited}"
    );
    assert_eq!(job_snapshots(&ctl, "dave", &all_id).len(), 1);

    // The accounts root: carol's home is ROOT/carol.
    let (code, waited) = ctl.json_with_code(&["job", "run", "c-only", "--wait", "--json"]);
    assert_eq!(code, Some(0), "{waited}");
    assert_eq!(array(&waited["tasks"]).len(), 1, "{waited}");
    assert_eq!(waited["tasks"][0]["username"], "carol");
    assert_eq!(waited["tasks"][0]["state"], "done", "{waited}");
    let carol = job_snapshots(&ctl, "carol", &c_id);
    assert_eq!(carol.len(), 1);
    assert_eq!(snapshot_files(&carol[0]), files["carol"]);

    // `backup` without --source takes the recorded source, else the accounts root.
    for user in ["erin", "carol"] {
        let snap = ctl.json(&["backup", user, "--destination", "d", "--json"]);
        assert_eq!(snapshot_files(&snap), files[user], "{user}: {snap}");
        assert!(snap["job"].is_null(), "{snap}");
    }

    // A missing source fails that account's task; the others are done; exit 3.
    let missing = dir.path().join("gone/frank");
    ctl.ok(&[
        "account",
        "add",
        "frank",
        "--source",
        &missing.display().to_string(),
        "--tag",
        "web",
    ]);
    let (code, waited) = ctl.json_with_code(&["job", "run", "web-active", "--wait", "--json"]);
    assert_eq!(code, Some(3), "a run with a failed task: {waited}");
    let by_user: BTreeMap<&str, &Value> = array(&waited["tasks"])
        .iter()
        .map(|t| (str_of(t, "username"), t))
        .collect();
    assert_eq!(
        by_user.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["alice", "bob", "frank"])
    );
    assert_eq!(by_user["alice"]["state"], "done");
    assert_eq!(by_user["bob"]["state"], "done");
    assert_eq!(by_user["frank"]["state"], "failed", "{waited}");
    let reason = str_of(by_user["frank"], "message");
    assert!(
        reason.contains(&missing.display().to_string()),
        "the reason names the directory: {reason}"
    );
    assert_eq!(waited["run"]["failed"], 1, "{waited}");
    assert_eq!(waited["run"]["done"], 2, "{waited}");

    // Cancelling a queued task ends it at once; no daemon runs it.
    let started = ctl.json(&["job", "run", "c-only", "--json"]);
    let tasks = array(&started["tasks"]);
    assert_eq!(tasks.len(), 1, "{started}");
    let id = tasks[0].as_str().unwrap().to_owned();
    let cancelled = ctl.json(&["queue", "cancel", &id, "--json"]);
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    let task = all_tasks(&ctl).remove(&id).unwrap();
    assert_eq!(task["state"], "cancelled", "{task}");
    assert!(task["finished"].is_string(), "{task}");
    assert_eq!(task["attempts"], 0, "{task}");
    let report = ctl.json(&["daemon", "--once", "--no-schedule", "--json"]);
    assert!(
        array(&report["tasks"]).is_empty(),
        "nothing to run: {report}"
    );
    assert_eq!(all_tasks(&ctl)[&id]["state"], "cancelled");
    assert_eq!(
        job_snapshots(&ctl, "carol", &c_id).len(),
        1,
        "no new snapshot"
    );
    let db = Db::open(&ctl.catalog_url());
    let claimed: Vec<TaskAttempt> = db
        .attempts()
        .into_iter()
        .filter(|a| a.task.to_string() == id)
        .collect();
    assert!(
        claimed.is_empty(),
        "a cancelled queued task is never claimed: {claimed:?}"
    );
    drop(db);
    // Cancelling an ended task changes nothing.
    let again = ctl.json(&["queue", "cancel", &id, "--json"]);
    assert_eq!(again["state"], "cancelled");
    let done_task = ids.iter().next().unwrap();
    let again = ctl.json(&["queue", "cancel", done_task, "--json"]);
    assert_eq!(again["state"], "done", "an ended task stays as it ended");

    // The job list shows the last run.
    let jobs = ctl.json(&["job", "list", "--json"]);
    let listed = array(&jobs)
        .iter()
        .find(|j| j["name"] == "web-active")
        .unwrap();
    assert_eq!(listed["last_run"]["failed"], 1, "{listed}");

    // The health summary: the jobs' last success (a run with no failed or cancelled task)
    // and next run, the one account never backed up, an empty queue, nothing paused.
    let health = ctl.json(&["health", "--json"]);
    let of = |name: &str| -> Value {
        array(&health["jobs"])
            .iter()
            .find(|j| j["name"] == name)
            .unwrap_or_else(|| panic!("job {name} in the health summary: {health}"))
            .clone()
    };
    assert!(of("web-active")["last_success"].is_string(), "{health}");
    assert_eq!(of("web-active")["last_run"]["failed"], 1, "{health}");
    assert!(
        of("web-active")["next_run"].is_null(),
        "a manual job: {health}"
    );
    assert!(of("c-only")["next_run"].is_string(), "{health}");
    let stale: Vec<&str> = array(&health["stale_accounts"])
        .iter()
        .map(|a| str_of(a, "username"))
        .collect();
    assert_eq!(stale, ["frank"], "{health}");
    assert_eq!(health["queued"], 0, "{health}");
    assert_eq!(health["running"], 0, "{health}");
    assert!(array(&health["paused_destinations"]).is_empty(), "{health}");

    // Bad input: one-line errors, 2 for invalid input, 1 for what does not exist.
    let check = |code: i32, args: &[&str], needle: &str| {
        let err = ctl.fails_with(code, args);
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    check(2, &bad_job(&["--schedule", "sometimes"]), "schedule");
    check(2, &bad_job(&["--schedule", "daily@25:00"]), "25");
    check(
        2,
        &bad_job(&["--schedule", "weekly:funday@01:00"]),
        "weekday",
    );
    check(2, &bad_job(&["--schedule", "hourly:0"]), "hours");
    check(1, &bad_job(&["--schedule", "after:nosuch"]), "nosuch");
    check(2, &bad_job(&["--accounts", "re:("]), "(");
    check(2, &bad_job(&["--accounts", "group:x"]), "--accounts");
    check(1, &bad_job(&["--accounts", "tag:nosuch"]), "nosuch");
    check(2, &bad_job(&["--items", "home,socks"]), "socks");
    check(
        1,
        &["job", "add", "bad", "--destination", "nowhere"],
        "nowhere",
    );
    check(
        1,
        &["job", "add", "web-all", "--destination", "d"],
        "web-all",
    );
    let err = ctl.fails_with(1, &["job", "run", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    ctl.fails_with(2, &["queue", "cancel", "not-a-task"]);
    let err = ctl.fails_with(
        1,
        &["queue", "cancel", "01900000-0000-7000-8000-000000000000"],
    );
    assert!(
        err.contains("01900000-0000-7000-8000-000000000000"),
        "{err}"
    );
    let err = ctl.fails_with(2, &["daemon", "--once", "--lease", "1"]);
    assert!(err.contains("--lease"), "{err}");
    let err = ctl.fails_with(2, &["daemon", "--once", "--workers", "0"]);
    assert!(err.contains("--workers"), "{err}");
    ctl.fails_with(2, &["daemon", "--once", "--lanes", "backup"]);
    ctl.fails_with(2, &["daemon", "--once", "--lanes", "naps=2"]);
    let err = ctl.fails_with(1, &["account", "add", "gina", "--tag", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    let err = ctl.fails_with(1, &["account", "add", "gina", "--priority-group", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    let err = ctl.fails_with(2, &["account", "add", "gina", "--source", "relative/dir"]);
    assert!(err.contains("--source"), "{err}");
    let err = ctl.fails_with(
        2,
        &[
            "priority-group",
            "add",
            "Bad",
            "--backup",
            "101",
            "--restore",
            "1",
            "--download",
            "1",
            "--clone",
            "1",
        ],
    );
    assert!(err.contains("101") || err.contains("priority"), "{err}");
    let jobs = ctl.json(&["job", "list", "--json"]);
    assert_eq!(array(&jobs).len(), 3, "no failed add left a job: {jobs}");
    let accounts = ctl.json(&["account", "list", "--json"]);
    assert!(
        !array(&accounts).iter().any(|a| a["username"] == "gina"),
        "no failed add left an account"
    );
}

/// With one lane and one worker, the tasks of one run (queued together) run in priority
/// order: the High group (joined by tag) first, then Normal (the default), then Low (by
/// tag, or by an override that beats the account's High tag); within a group, in the
/// order they were queued.
#[test]
fn one_lane_runs_high_then_normal_then_low() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctl = setup(dir.path());
    ctl.ok(&["tag", "add", "vip"]);
    ctl.ok(&["tag", "add", "bulk"]);
    // Replaces the built-in High and Low groups (by name), adding their tags.
    for (name, p, tag) in [("High", "10", "vip"), ("Low", "90", "bulk")] {
        ctl.ok(&[
            "priority-group",
            "add",
            name,
            "--backup",
            p,
            "--restore",
            p,
            "--download",
            p,
            "--clone",
            p,
            "--tag",
            tag,
        ]);
    }
    // Names sort low, normal, high within each letter: the queue order is not the
    // priority order.
    let accounts: [(&str, &[&str], i64); 11] = [
        (
            "a0-override",
            &["--tag", "vip", "--priority-group", "Low"],
            90,
        ),
        ("a1-low", &["--tag", "bulk"], 90),
        ("a2-normal", &[], 50),
        ("a3-high", &["--tag", "vip"], 10),
        ("b1-low", &["--tag", "bulk"], 90),
        (
            "b2-normal",
            &["--tag", "bulk", "--priority-group", "Normal"],
            50,
        ),
        ("b3-high", &["--tag", "vip", "--tag", "bulk"], 10),
        ("c1-low", &["--tag", "bulk"], 90),
        ("c2-normal", &[], 50),
        ("c3-high", &["--tag", "vip"], 10),
        ("d0-pinned", &["--priority-group", "High"], 10),
    ];
    let mut expected = BTreeMap::new();
    for (i, (user, extra, priority)) in accounts.iter().enumerate() {
        let home = dir.path().join("homes").join(user);
        write_home(&home, 100 + i as u64, 6);
        let home = home.display().to_string();
        let mut args = vec!["account", "add", user, "--source", &home];
        args.extend_from_slice(extra);
        ctl.ok(&args);
        expected.insert(user.to_string(), *priority);
    }
    ctl.ok(&["job", "add", "night", "--destination", "d"]);
    let started = ctl.json(&["job", "run", "night", "--json"]);
    assert_eq!(array(&started["tasks"]).len(), accounts.len(), "{started}");
    let queued = ctl.json(&["queue", "list", "--json"]);
    for t in array(&queued) {
        let user = str_of(t, "username");
        assert_eq!(t["priority"], expected[user], "{user}: {t}");
    }

    let report = ctl.json(&[
        "daemon",
        "--once",
        "--no-schedule",
        "--workers",
        "1",
        "--lanes",
        "backup=1",
        "--lease",
        QUIET_LEASE,
        "--json",
    ]);
    assert_eq!(array(&report["tasks"]).len(), accounts.len(), "{report}");
    let tasks: Vec<Value> = all_tasks(&ctl).into_values().collect();
    assert!(tasks.iter().all(|t| t["state"] == "done"), "{tasks:?}");

    // The order they ran in: by finish time, by claim time, and as the daemon reports.
    let mut by_finish: Vec<(String, String)> = tasks
        .iter()
        .map(|t| {
            (
                str_of(t, "finished").to_owned(),
                str_of(t, "username").to_owned(),
            )
        })
        .collect();
    by_finish.sort();
    let by_finish: Vec<String> = by_finish.into_iter().map(|(_, u)| u).collect();
    // Priority first, then queue order (task ids sort by enqueue order).
    let mut want: Vec<(i64, String, String)> = tasks
        .iter()
        .map(|t| {
            let user = str_of(t, "username").to_owned();
            (expected[&user], str_of(t, "id").to_owned(), user)
        })
        .collect();
    want.sort();
    let want: Vec<String> = want.into_iter().map(|(_, _, u)| u).collect();
    assert_eq!(by_finish, want, "tasks finish in priority order");
    let reported: Vec<String> = array(&report["tasks"])
        .iter()
        .map(|t| str_of(t, "username").to_owned())
        .collect();
    assert_eq!(reported, want, "the daemon ended them in priority order");

    let db = Db::open(&ctl.catalog_url());
    let users: BTreeMap<_, _> = db.tasks().into_iter().map(|t| (t.id, t.username)).collect();
    let mut attempts = db.attempts();
    attempts.sort_by_key(|a| a.claimed);
    let claimed: Vec<String> = attempts.iter().map(|a| users[&a.task].clone()).collect();
    assert_eq!(claimed, want, "claimed in priority order: {attempts:?}");
    // One lane: no two backups at once, whatever their accounts.
    let problems = overlaps(&attempts, |_| ());
    assert!(
        problems.is_empty(),
        "one lane ran two tasks at once: {problems:#?}"
    );
}

/// A daemon SIGKILLed in the middle of a run of 40 accounts (SQLite queue): a second
/// daemon takes over the tasks the dead one held once their leases run out; every task
/// ends done, every account has exactly one snapshot of the job, and the attempts history
/// shows no task and no account worked by two attempts at once.
#[test]
fn sqlite_daemon_killed_mid_run_resumes_without_doubles() {
    let _serial = serial();
    const ACCOUNTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let ctl = setup(dir.path());
    let mut users = Vec::new();
    for i in 0..ACCOUNTS {
        let user = format!("u{i:02}");
        let home = dir.path().join("homes").join(&user);
        write_home(&home, 1_000 + i as u64, 40);
        ctl.ok(&[
            "account",
            "add",
            &user,
            "--source",
            &home.display().to_string(),
        ]);
        users.push(user);
    }
    let job = ctl.json(&["job", "add", "nightly", "--destination", "d", "--json"]);
    let job_id = str_of(&job, "id").to_owned();
    let started = ctl.json(&["job", "run", "nightly", "--json"]);
    let run = run_id(&started["run"]["id"]);
    assert_eq!(array(&started["tasks"]).len(), ACCOUNTS);
    let db = Db::open(&ctl.catalog_url());

    let args = [
        "daemon",
        "--workers",
        "2",
        "--lease",
        KILL_LEASE,
        "--no-schedule",
        "--json",
    ];
    let mut first = ctl.spawn("daemon-killed", &args);
    wait_for(
        "some of the run's tasks done",
        PATIENCE,
        Duration::from_millis(10),
        || {
            let tasks = db.run_tasks(run);
            let done = tasks.iter().filter(|t| t.state == TaskState::Done).count();
            if done >= ACCOUNTS / 4 {
                Ok(())
            } else {
                Err(format!("{done} done"))
            }
        },
    );
    first.kill();
    let killed_at = chrono::Utc::now();
    let at_kill = db.run_tasks(run);
    let done_at_kill = at_kill
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .count();
    assert!(
        done_at_kill < ACCOUNTS,
        "the whole run ended before the daemon was killed: the test needs bigger accounts"
    );
    // The tasks the dead daemon held: running, with a lease that nobody renews.
    let held: Vec<_> = at_kill
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .map(|t| t.id)
        .collect();
    // The next daemon takes the dead one's tasks over once their leases run out.
    let ended = ctl
        .spawn(
            "daemon-after",
            &[
                "daemon",
                "--once",
                "--workers",
                "2",
                "--lease",
                KILL_LEASE,
                "--no-schedule",
                "--json",
            ],
        )
        .wait(PATIENCE);
    let report = ended.json("the second daemon");

    let tasks = db.run_tasks(run);
    let not_done: Vec<_> = tasks
        .iter()
        .filter(|t| t.state != TaskState::Done)
        .map(|t| (t.username.clone(), t.state, t.message.clone()))
        .collect();
    assert!(not_done.is_empty(), "every task ends done: {not_done:?}");
    let settled = db.run(run).expect("the run");
    assert_eq!(settled.done as usize, ACCOUNTS, "{settled:?}");
    assert!(settled.finished.is_some(), "{settled:?}");
    let second_done = array(&report["tasks"])
        .iter()
        .filter(|t| t["state"] == "done")
        .count();
    assert_eq!(
        second_done,
        ACCOUNTS - done_at_kill,
        "the second daemon did what the first had not finished: {report}"
    );

    for user in &users {
        let snaps = job_snapshots(&ctl, user, &job_id);
        assert_eq!(
            snaps.len(),
            1,
            "{user} is backed up exactly once: {snaps:?}"
        );
    }

    let attempts = db.attempts();
    let account_of: BTreeMap<_, _> = db.tasks().into_iter().map(|t| (t.id, t.account)).collect();
    let problems = overlaps(&attempts, |a| a.task);
    assert!(
        problems.is_empty(),
        "a task ran twice at once: {problems:#?}"
    );
    let problems = overlaps(&attempts, |a| account_of[&a.task]);
    assert!(
        problems.is_empty(),
        "an account ran twice at once: {problems:#?}"
    );
    for id in &held {
        let mine: Vec<&TaskAttempt> = attempts.iter().filter(|a| a.task == *id).collect();
        assert!(
            mine.iter().any(|a| a.outcome.as_deref() == Some("lost")),
            "task {id} held by the killed daemon has a lost attempt: {mine:?}"
        );
        assert_eq!(
            mine.last().and_then(|a| a.outcome.as_deref()),
            Some("done"),
            "{mine:?}"
        );
        // The lost attempt ends when its lease ran out, after the daemon died.
        let lost = mine
            .iter()
            .find(|a| a.outcome.as_deref() == Some("lost"))
            .unwrap();
        assert!(
            lost.ended.is_some_and(|e| e > killed_at),
            "the lost attempt ends at its lease's end ({killed_at} the kill): {lost:?}"
        );
    }
    let lost = attempts
        .iter()
        .filter(|a| a.outcome.as_deref() == Some("lost"))
        .count();
    assert!(lost >= held.len(), "{attempts:?}");
    eprintln!(
        "killed with {done_at_kill}/{ACCOUNTS} done and {} running; {} attempts, {lost} lost",
        held.len(),
        attempts.len()
    );
}

/// Four daemons share a PostgreSQL queue for a run of 200 accounts to two destinations
/// (400 tasks) within 5 backup lanes; two are SIGKILLed once some tasks are done and
/// started again. Every task ends done, every account is backed up exactly once to each
/// destination, no task or account is worked by two attempts at once, and never more than
/// the lanes' worth of backups run together.
#[test]
#[ignore = "needs PostgreSQL (BACKUP_TEST_PG_URL)"]
fn postgres_many_daemons_two_killed_every_account_once() {
    let _serial = serial();
    const ACCOUNTS: usize = 200;
    let schema = PgSchema::create("jobs_pg");
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl::new(&dir.path().join("state")).with_catalog(&schema.url);
    ctl.ok(&["init"]);
    for name in ["d", "e"] {
        ctl.ok(&[
            "destination",
            "add",
            name,
            &file_url(&dir.path().join(name)),
        ]);
    }
    assert!(
        !ctl.home.join("catalog.db").exists(),
        "the catalog is in PostgreSQL"
    );
    let db = Db::open(&ctl.catalog_url());
    // The accounts, made in-process over the same state directory (faster than 200 runs
    // of the binary).
    let state = db.block_on(backup_examples::StateDir::open(
        &ctl.home,
        Some(&schema.url),
    ));
    let state = state.unwrap_or_else(|e| panic!("the state directory: {e}"));
    for i in 0..ACCOUNTS {
        let user = format!("pg{i:03}");
        let home = dir.path().join("homes").join(&user);
        write_home(&home, 5_000 + i as u64, 24);
        let mut new = backup_core::service::NewAccount::active(
            &user,
            backup_core::model::EncryptionMode::ServerKey,
        )
        .unwrap();
        new.0.source = Some(home);
        db.block_on(state.server.add_account(new)).unwrap();
    }
    drop(state);
    // Two destinations: two tasks per account, which must never run at once.
    let job = ctl.json(&[
        "job",
        "add",
        "nightly",
        "--destination",
        "d",
        "--destination",
        "e",
        "--json",
    ]);
    let job_id = str_of(&job, "id").to_owned();
    let started = ctl.json(&["job", "run", "nightly", "--json"]);
    let run = run_id(&started["run"]["id"]);
    assert_eq!(array(&started["tasks"]).len(), 2 * ACCOUNTS);

    // Four daemons of two workers each, five backups at once queue-wide.
    const LANES: usize = 5;
    let args = [
        "daemon",
        "--once",
        "--no-schedule",
        "--workers",
        "2",
        "--lease",
        KILL_LEASE,
        "--lanes",
        "backup=5",
        "--json",
    ];
    let mut daemons: Vec<_> = (0..4)
        .map(|i| ctl.spawn(&format!("pg-daemon-{i}"), &args))
        .collect();
    wait_for(
        "some of the run's tasks done",
        PATIENCE,
        Duration::from_millis(20),
        || {
            let done = db
                .run_tasks(run)
                .iter()
                .filter(|t| t.state == TaskState::Done)
                .count();
            if done >= 40 {
                Ok(())
            } else {
                Err(format!("{done} done"))
            }
        },
    );
    let killed: Vec<String> = daemons[..2]
        .iter()
        .map(|d| format!(":{}:", d.pid()))
        .collect();
    daemons[0].kill();
    daemons[1].kill();
    let at_kill = db.run_tasks(run);
    // The tasks the dead daemons held (worker names are HOST:PID:NONCE).
    let held: Vec<_> = at_kill
        .iter()
        .filter(|t| {
            t.state == TaskState::Running
                && t.worker
                    .as_deref()
                    .is_some_and(|w| killed.iter().any(|k| w.contains(k.as_str())))
        })
        .map(|t| t.id)
        .collect();
    let done_at_kill = at_kill
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .count();
    assert!(
        done_at_kill < 2 * ACCOUNTS,
        "the whole run ended before two daemons were killed: the test needs bigger accounts"
    );
    daemons.push(ctl.spawn("pg-daemon-restarted-0", &args));
    daemons.push(ctl.spawn("pg-daemon-restarted-1", &args));
    let mut reports = Vec::new();
    for d in daemons.iter_mut().skip(2) {
        let name = d.name.clone();
        reports.push(d.wait(PATIENCE).json(&name));
    }

    let tasks = db.run_tasks(run);
    let not_done: Vec<_> = tasks
        .iter()
        .filter(|t| t.state != TaskState::Done)
        .map(|t| (t.username.clone(), t.state, t.message.clone()))
        .collect();
    assert!(not_done.is_empty(), "no task is lost: {not_done:?}");
    assert_eq!(tasks.len(), 2 * ACCOUNTS);
    for account in db.accounts() {
        let snaps: Vec<_> = db
            .snapshots(account.id)
            .into_iter()
            .filter(|s| s.job.map(|j| j.to_string()) == Some(job_id.clone()))
            .collect();
        let places: BTreeSet<String> = snaps.iter().map(|s| s.destination.to_string()).collect();
        assert!(
            snaps.len() == 2 && places.len() == 2,
            "{} is backed up exactly once to each destination in the run: {snaps:?}",
            account.username
        );
    }
    let attempts = db.attempts();
    let account_of: BTreeMap<_, _> = tasks.iter().map(|t| (t.id, t.account)).collect();
    let task_problems = overlaps(&attempts, |a| a.task);
    let account_problems = overlaps(&attempts, |a| account_of[&a.task]);
    let (busiest, over_lanes) = most_at_once(&attempts, LANES);
    let workers: BTreeSet<&str> = attempts.iter().map(|a| a.worker.as_str()).collect();
    let lost = attempts
        .iter()
        .filter(|a| a.outcome.as_deref() == Some("lost"))
        .count();
    eprintln!(
        "two of four daemons killed with {done_at_kill}/{} done and {} of their tasks \
         running; {} attempts by {} workers, {lost} lost, at most {busiest} at once \
         (more than {LANES} for at most {over_lanes}); {} \
         overlaps of a task's attempts, {} of an account's",
        2 * ACCOUNTS,
        held.len(),
        attempts.len(),
        workers.len(),
        task_problems.len(),
        account_problems.len()
    );
    assert!(
        workers.len() >= 3,
        "the daemons shared the work: {workers:?}"
    );
    let done_here: usize = reports
        .iter()
        .map(|r| {
            array(&r["tasks"])
                .iter()
                .filter(|t| t["state"] == "done")
                .count()
        })
        .sum();
    assert!(
        done_here >= 2 * ACCOUNTS - done_at_kill,
        "the surviving and restarted daemons did the rest: {done_here} done"
    );
    // What the dead daemons held was lost, and done again by another; unless its finish
    // was on its way to the server when the daemon died (PostgreSQL then commits it).
    let by_killed = |a: &TaskAttempt| killed.iter().any(|k| a.worker.contains(k.as_str()));
    for id in &held {
        let mine: Vec<&TaskAttempt> = attempts.iter().filter(|a| a.task == *id).collect();
        assert!(
            mine.iter().any(|a| a.outcome.as_deref() == Some("lost"))
                || mine
                    .iter()
                    .any(|a| by_killed(a) && a.outcome.as_deref() == Some("done")),
            "task {id} held by a killed daemon has a lost attempt: {mine:?}"
        );
    }
    for a in attempts
        .iter()
        .filter(|a| a.outcome.as_deref() == Some("lost"))
    {
        assert!(by_killed(a), "only the killed daemons lost tasks: {a:?}");
    }
    assert!(
        task_problems.is_empty(),
        "a task ran twice at once: {task_problems:#?}"
    );
    assert!(
        account_problems.is_empty(),
        "an account ran twice at once: {account_problems:#?}"
    );
    assert!(
        busiest <= LANES,
        "{busiest} backups ran at once with {LANES} lanes (more than {LANES} for at most \
         {over_lanes})"
    );
    drop(db);
    drop(schema);
}

/// A job writes to a healthy destination and to one whose every write fails with a
/// storage error: the failures open the destination's circuit breaker after three tasks in
/// a row (health lists it paused, its remaining tasks are not claimed), while every task on
/// the healthy destination is done.
#[test]
fn failing_destination_trips_the_breaker_while_the_healthy_one_finishes() {
    let _serial = serial();
    const ACCOUNTS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl::new(&dir.path().join("state"));
    ctl.ok(&["init"]);
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    ctl.ok(&["destination", "add", "good", &file_url(&good)]);
    ctl.ok(&["destination", "add", "bad", &file_url(&bad)]);
    // Every object of an account (its lease first) goes below these: as regular files,
    // they make every write fail (for root too) with a storage error.
    std::fs::write(bad.join("leases"), b"not a directory").unwrap();
    std::fs::write(bad.join("accounts"), b"not a directory").unwrap();
    for i in 0..ACCOUNTS {
        let user = format!("b{i}");
        let home = dir.path().join("homes").join(&user);
        write_home(&home, 300 + i as u64, 5);
        ctl.ok(&[
            "account",
            "add",
            &user,
            "--source",
            &home.display().to_string(),
        ]);
    }
    let job = ctl.json(&[
        "job",
        "add",
        "two-places",
        "--destination",
        "good",
        "--destination",
        "bad",
        "--json",
    ]);
    let job_id = str_of(&job, "id").to_owned();
    let dests = ctl.json(&["destination", "list", "--json"]);
    let dest_id = |name: &str| -> String {
        str_of(
            array(&dests).iter().find(|d| d["name"] == name).unwrap(),
            "id",
        )
        .to_owned()
    };
    let (good_id, bad_id) = (dest_id("good"), dest_id("bad"));
    let started = ctl.json(&["job", "run", "two-places", "--json"]);
    let run = run_id(&started["run"]["id"]);
    assert_eq!(array(&started["tasks"]).len(), 2 * ACCOUNTS);
    let db = Db::open(&ctl.catalog_url());

    let mut daemon = ctl.spawn(
        "breaker-daemon",
        &[
            "daemon",
            "--workers",
            "2",
            "--lease",
            QUIET_LEASE,
            "--grace",
            "2",
            "--no-schedule",
            "--json",
        ],
    );
    let on = |t: &backup_core::model::Task, id: &str| {
        t.destination.map(|d| d.to_string()).as_deref() == Some(id)
    };
    let health = wait_for(
        "the healthy destination's tasks done and the failing one paused",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let tasks = db.run_tasks(run);
            let good_done = tasks
                .iter()
                .filter(|t| on(t, &good_id) && t.state == TaskState::Done)
                .count();
            let health = ctl.json(&["health", "--json"]);
            let paused = array(&health["paused_destinations"])
                .iter()
                .any(|p| p[0] == "bad");
            if good_done == ACCOUNTS && paused {
                Ok(health)
            } else {
                Err(format!("{good_done} done on good; health {health}"))
            }
        },
    );
    assert!(daemon.running(), "the daemon is still up");
    daemon.terminate();
    let ended = daemon.wait(PATIENCE);
    let report = ended.json("the daemon stopped by SIGTERM");
    // What it ran: every healthy task done; the failing ones handed back to wait for
    // their retry (a storage error is transient), none done.
    let ended_here = array(&report["tasks"]);
    let done_here = ended_here.iter().filter(|t| t["state"] == "done").count();
    assert_eq!(done_here, ACCOUNTS, "{report}");
    assert!(
        ended_here
            .iter()
            .all(|t| t["state"] == "done" || t["state"] == "queued" || t["state"] == "failed"),
        "{report}"
    );

    let paused = array(&health["paused_destinations"]);
    assert_eq!(
        paused.len(),
        1,
        "only the failing destination is paused: {health}"
    );
    assert_eq!(paused[0][0], "bad");
    let tasks = db.run_tasks(run);
    let attempts = db.attempts();
    let mut bad_attempts = 0;
    let mut never_claimed = 0;
    for t in &tasks {
        if on(t, &good_id) {
            assert_eq!(t.state, TaskState::Done, "{t:?}");
            continue;
        }
        assert!(on(t, &bad_id));
        assert!(
            matches!(t.state, TaskState::Queued | TaskState::Failed),
            "a task on the failing destination is retried later or failed, never done: {t:?}"
        );
        let mine = attempts.iter().filter(|a| a.task == t.id).count();
        bad_attempts += mine;
        if mine == 0 {
            never_claimed += 1;
        } else {
            let message = t.message.as_deref().unwrap_or("");
            assert!(
                message.contains("storage") && message.contains(&bad.display().to_string()),
                "the task's error names the storage failure: {t:?}"
            );
        }
    }
    assert!(
        never_claimed >= 1,
        "the open breaker kept the failing destination's other tasks from being claimed \
         ({bad_attempts} attempts on it): {tasks:#?}"
    );
    let breaker = db
        .destination_health()
        .into_iter()
        .map(|h| (h.destination.to_string(), h))
        .collect::<BTreeMap<_, _>>();
    let bad_health = &breaker[&bad_id];
    assert!(bad_health.failures >= 3, "{bad_health:?}");
    assert_eq!(
        bad_health.failures as usize, bad_attempts,
        "every failed attempt counts against the breaker: {bad_health:?}"
    );
    assert!(bad_health.paused_until.is_some(), "{bad_health:?}");
    assert!(
        bad_health
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains(&bad.display().to_string())),
        "{bad_health:?}"
    );
    let good_health = &breaker[&good_id];
    assert_eq!(good_health.failures, 0, "{good_health:?}");
    assert!(good_health.paused_until.is_none(), "{good_health:?}");
    eprintln!(
        "breaker: {bad_attempts} attempts on the failing destination, {never_claimed} of its \
         tasks never claimed; {bad_health:?}"
    );
    for i in 0..ACCOUNTS {
        let snaps = job_snapshots(&ctl, &format!("b{i}"), &job_id);
        assert_eq!(
            snaps.len(),
            1,
            "one snapshot, on the healthy destination: {snaps:?}"
        );
        assert_eq!(snaps[0]["destination"], good_id.as_str());
    }
}

/// A task cancelled while it runs: the daemon's next heartbeat learns it and stops the
/// backup; the task ends cancelled, no snapshot is recorded, and the account backs up
/// normally afterwards.
#[test]
fn cancelling_a_running_task_stops_it_at_the_next_heartbeat() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ctl = setup(dir.path());
    // A home that takes a while to read: large files, mostly zeros (cheap to store) with a
    // unique head each (so packs keep being written while it is read). In memory where
    // /dev/shm is a tmpfs.
    let scratch = jobs_scratch();
    let big = scratch.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let head = 2 << 20;
    let size = 64 << 20;
    for i in 0..32u64 {
        use std::io::Write;
        let mut f = std::fs::File::create(big.join(format!("disk{i}.img"))).unwrap();
        f.write_all(&jobs_support::filler(7_000 + i, head, false))
            .unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(size - head) / zeros.len() {
            f.write_all(&zeros).unwrap();
        }
    }
    ctl.ok(&[
        "account",
        "add",
        "slow",
        "--source",
        &big.display().to_string(),
    ]);
    ctl.ok(&["job", "add", "slow-job", "--destination", "d"]);
    let started = ctl.json(&["job", "run", "slow-job", "--json"]);
    let id = task_id(&started["tasks"][0]);
    let db = Db::open(&ctl.catalog_url());
    let mut daemon = ctl.spawn(
        "cancel-daemon",
        &[
            "daemon",
            "--once",
            "--no-schedule",
            "--workers",
            "1",
            "--lease",
            CANCEL_LEASE,
            "--json",
        ],
    );
    wait_for(
        "the slow task running",
        PATIENCE,
        Duration::from_millis(10),
        || {
            let t = db
                .block_on(db.queue.get_task(id))
                .unwrap()
                .expect("the task");
            match t.state {
                TaskState::Running => Ok(()),
                TaskState::Queued => Err(format!("{t:?}")),
                _ => panic!("the task ended before it could be cancelled: {t:?}"),
            }
        },
    );
    let cancel = ctl.json(&["queue", "cancel", &id.to_string(), "--json"]);
    assert_eq!(
        cancel["state"], "running",
        "cancelled while running (if done, the backup was too quick for the test): {cancel}"
    );
    let task = db.block_on(db.queue.get_task(id)).unwrap().unwrap();
    assert!(task.cancel_requested, "{task:?}");
    let ended = daemon.wait(PATIENCE);
    let report = ended.json("the daemon");
    let task = db.block_on(db.queue.get_task(id)).unwrap().unwrap();
    assert_eq!(task.state, TaskState::Cancelled, "{task:?}");
    assert!(task.finished.is_some(), "{task:?}");
    // Its worker ended it cancelled: the heartbeat learned of the request. (Should a
    // starved heartbeat have lost the lease first, the queue ends the lapsed task
    // cancelled all the same, and the attempt says lost.)
    let attempts = db.block_on(db.queue.task_attempts(Some(id))).unwrap();
    assert_eq!(attempts.len(), 1, "never claimed again: {attempts:?}");
    match attempts[0].outcome.as_deref() {
        Some("cancelled") => assert_eq!(report["tasks"][0]["state"], "cancelled", "{report}"),
        Some("lost") => assert_eq!(report["tasks"][0]["lost"], true, "{report}"),
        other => panic!("the attempt ended {other:?}: {attempts:?} {report}"),
    }
    assert!(
        array(&ctl.json(&["snapshots", "slow", "--json"])).is_empty(),
        "a cancelled backup records no snapshot"
    );
    let run = db.run(run_id(&started["run"]["id"])).unwrap();
    assert_eq!(run.cancelled, 1, "{run:?}");

    // The account is not left locked: with a small home it backs up at once.
    std::fs::remove_dir_all(&big).unwrap();
    let small = dir.path().join("small");
    let files = write_home(&small, 77, 8);
    ctl.ok(&[
        "account",
        "set",
        "slow",
        "--source",
        &small.display().to_string(),
    ]);
    let (code, waited) = ctl.json_with_code(&["job", "run", "slow-job", "--wait", "--json"]);
    assert_eq!(code, Some(0), "{waited}");
    let snaps = array(&ctl.json(&["snapshots", "slow", "--json"])).clone();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snapshot_files(&snaps[0]), files);
}

/// The most attempts the history shows running at one time (an attempt runs from its
/// claim to its end; one that ends as another is claimed does not overlap it), and the
/// longest stretch of time during which more than `limit` ran.
fn most_at_once(attempts: &[TaskAttempt], limit: usize) -> (usize, chrono::TimeDelta) {
    let mut events: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
    for a in attempts {
        events.push((a.claimed, 1));
        events.push((a.ended.expect("every attempt ended"), -1));
    }
    // Ends before claims at the same time.
    events.sort();
    let (mut now, mut most) = (0usize, 0usize);
    let mut longest = chrono::TimeDelta::zero();
    let mut over_since = None;
    for (t, d) in events {
        if d > 0 {
            now += 1;
        } else {
            now -= 1;
        }
        most = most.max(now);
        match (now > limit, over_since) {
            (true, None) => over_since = Some(t),
            (false, Some(since)) => {
                longest = longest.max(t - since);
                over_since = None;
            }
            _ => {}
        }
    }
    (most, longest)
}

/// `job add bad --destination d EXTRA...`.
fn bad_job<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["job", "add", "bad", "--destination", "d"];
    args.extend_from_slice(extra);
    args
}

/// A scratch directory in memory where `/dev/shm` is a tmpfs, else a temporary one.
fn jobs_scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("jobs-test").tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}
