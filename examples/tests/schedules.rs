//! Scheduled runs through the server: a missed run runs once, a slot starts once however
//! many schedulers look, after-job chains follow their first job, the on-demand job, and the
//! health summary.

use std::path::Path;
use std::sync::Arc;

use backup_catalog::SqliteCatalog;
use backup_core::model::{
    AccountStatus, EncryptionMode, ItemKind, Job, JobRun, RunTrigger, Schedule, SnapshotKind,
    TaskFilter, TaskState, TimeOfDay,
};
use backup_core::service::{NewAccount, Server, WorkerOptions};
use backup_crypto::MasterKeyVault;
use backup_examples::generate_sample_account;
use backup_storage::UrlResolver;
use chrono::{DateTime, Duration, Timelike, Utc};
use tokio_util::sync::CancellationToken;

/// A server over a file catalog in `dir` (a second call opens the same catalog and queue).
async fn server(dir: &Path) -> Server {
    let (vault, _) = MasterKeyVault::load_or_create(dir.join("state")).unwrap();
    let catalog = Arc::new(
        SqliteCatalog::open(dir.join("state").join("catalog.db"))
            .await
            .unwrap(),
    );
    Server::builder(
        catalog.clone(),
        Arc::new(vault),
        Arc::new(UrlResolver::new()),
    )
    .queue(catalog)
    .build()
}

/// Works the queue until nothing is left, in this process.
async fn drain(server: &Server) {
    let options = WorkerOptions {
        once: true,
        schedule: false,
        poll: std::time::Duration::from_millis(50),
        ..WorkerOptions::default()
    };
    server
        .run_daemon(options, CancellationToken::new())
        .await
        .unwrap();
}

async fn runs(server: &Server, job: &Job) -> Vec<JobRun> {
    server
        .queue()
        .unwrap()
        .list_runs(Some(job.id), 100)
        .await
        .unwrap()
}

/// The latest 02:00 UTC at or before `now`.
fn latest_two_am(now: DateTime<Utc>) -> DateTime<Utc> {
    let today = now.date_naive().and_hms_opt(2, 0, 0).unwrap().and_utc();
    if today <= now {
        today
    } else {
        today - Duration::days(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_runs_run_once_and_after_jobs_follow() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let repo = dir.path().join("repo");
    let d = server
        .add_destination("d", &format!("file://{}", repo.display()), None, false)
        .await
        .unwrap();
    let mut live = Vec::new();
    for name in ["ann", "ben"] {
        let home = dir.path().join("homes").join(name);
        generate_sample_account(&home, 5).unwrap();
        let mut new = NewAccount::active(name, EncryptionMode::ServerKey).unwrap();
        new.0.source = Some(home.clone());
        live.push(server.add_account(new).await.unwrap().account);
    }
    // Created ten days ago, daily at 02:00: ten slots missed.
    let mut nightly = Job::new(
        "nightly",
        vec![ItemKind::HomeDir],
        Schedule::Daily {
            at: TimeOfDay::new(2, 0).unwrap(),
        },
        vec![d.id],
    )
    .unwrap();
    let now = Utc::now().with_nanosecond(0).unwrap();
    nightly.created = Some(now - Duration::days(10));
    let nightly = server.add_job(nightly).await.unwrap();
    let after = Job::new(
        "after-nightly",
        vec![ItemKind::HomeDir],
        Schedule::After { job: nightly.id },
        vec![d.id],
    )
    .unwrap();
    let after = server.add_job(after).await.unwrap();

    // One run, for the latest slot; asking again (or from a second server on the same
    // catalog) starts nothing.
    let started = server.schedule_due(now).await.unwrap();
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].job, nightly.id);
    assert_eq!(started[0].slot, latest_two_am(now));
    assert_eq!(started[0].trigger, RunTrigger::Schedule);
    assert_eq!(started[0].tasks, 2);
    assert!(server.schedule_due(now).await.unwrap().is_empty());
    let other = self::server(dir.path()).await;
    assert!(other.schedule_due(now).await.unwrap().is_empty());
    assert_eq!(runs(&server, &nightly).await.len(), 1);

    // The after-job starts when the first run settles, once.
    drain(&server).await;
    let nightly_runs = runs(&server, &nightly).await;
    assert_eq!(nightly_runs[0].done, 2, "{nightly_runs:?}");
    assert!(nightly_runs[0].finished.is_some());
    let after_runs = runs(&server, &after).await;
    assert_eq!(after_runs.len(), 1, "{after_runs:?}");
    assert_eq!(after_runs[0].trigger, RunTrigger::After);
    assert_eq!(after_runs[0].done, 2, "{after_runs:?}");
    server.settle_runs().await.unwrap();
    other.settle_runs().await.unwrap();
    assert_eq!(runs(&server, &after).await.len(), 1);
    for account in &live {
        let snaps = server.snapshots(account).await.unwrap();
        let of = |job: &Job| snaps.iter().filter(|s| s.job == Some(job.id)).count();
        assert_eq!((of(&nightly), of(&after)), (1, 1), "{}", account.username);
        assert!(snaps.iter().all(|s| s.kind == SnapshotKind::Scheduled));
    }

    // The next day's slot starts one more run: two servers asking at once start it once.
    let tomorrow = now + Duration::days(1);
    let (a, b) = tokio::join!(server.schedule_due(tomorrow), other.schedule_due(tomorrow));
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1);
    let all = runs(&server, &nightly).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].slot, latest_two_am(tomorrow));
    // A clock set back starts nothing.
    assert!(
        server
            .schedule_due(now - Duration::hours(30))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_demand_job_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let repo = dir.path().join("repo");
    let d = server
        .add_destination("d", &format!("file://{}", repo.display()), None, false)
        .await
        .unwrap();
    let home = dir.path().join("homes").join("cid");
    generate_sample_account(&home, 3).unwrap();
    let mut new = NewAccount::active("cid", EncryptionMode::None).unwrap();
    new.0.source = Some(home);
    let cid = server.add_account(new).await.unwrap().account;
    let mut idle = NewAccount::active("idle", EncryptionMode::None).unwrap();
    idle.0.source = Some(dir.path().join("homes").join("idle"));
    let idle = server.add_account(idle).await.unwrap().account;

    // No on-demand job yet.
    assert!(server.queue_snapshot(&cid).await.is_err());
    let mut job = Job::new(
        "create-snapshot",
        vec![ItemKind::HomeDir],
        Schedule::Manual,
        vec![d.id],
    )
    .unwrap();
    job.on_demand = true;
    job.exclude_suspended = true;
    let job = server.add_job(job).await.unwrap();
    let mut second = Job::new(
        "second",
        vec![ItemKind::HomeDir],
        Schedule::Manual,
        vec![d.id],
    )
    .unwrap();
    second.on_demand = true;
    assert!(server.add_job(second).await.is_err(), "one on-demand job");

    let (run, tasks) = server.queue_snapshot(&cid).await.unwrap();
    assert_eq!(tasks.len(), 1);
    drain(&server).await;
    let ended = server
        .tasks(&TaskFilter {
            run: Some(run.id),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(ended[0].state, TaskState::Done, "{ended:?}");
    let snaps = server.snapshots(&cid).await.unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].kind, SnapshotKind::OnDemand);
    assert_eq!(snaps[0].job, Some(job.id));
    assert_eq!(snaps[0].task, Some(tasks[0]));

    // A suspended account is left out by this job.
    let mut suspended = cid.clone();
    suspended.status = AccountStatus::Suspended;
    server.update_account(&suspended).await.unwrap();
    let refused = server.queue_snapshot(&suspended).await.unwrap_err();
    assert_eq!(refused.kind(), backup_core::ErrorKind::Setting, "{refused}");

    // Health: the account never backed up is stale, the other is not; the job's last
    // success is its run.
    let health = server.health(1).await.unwrap();
    let stale: Vec<&str> = health
        .stale_accounts
        .iter()
        .map(|a| a.username.as_str())
        .collect();
    assert_eq!(stale, vec![idle.username.as_str()], "{health:?}");
    let jh = health.jobs.iter().find(|j| j.job == job.id).unwrap();
    assert!(jh.last_success.is_some(), "{health:?}");
    assert_eq!(jh.next_run, None);
    assert_eq!((health.queued, health.running), (0, 0));
}
