//! The `backupctl` commands that run a hosting server's nights: tags, priority groups,
//! jobs, the queue, the daemon and the health summary. Every rule is the library's
//! (`backup_core::service::Server`, its `jobs` module); this file parses and prints.
//!
//! ```text
//! tag add NAME [--color #RRGGBB|random] [--json] | tag list [--json]
//! priority-group add NAME --backup N --restore N --download N --clone N [--tag NAME]... [--default] [--json]
//! priority-group list [--json]
//! job add NAME --destination NAME... [--items KIND,...] [--accounts all|tag:T|org:O|re:PATTERN]
//!     [--exclude-suspended] [--schedule manual|hourly:N|daily@HH:MM|weekly:DAYS@HH:MM|monthly:DAYS@HH:MM|after:JOB]
//!     [--time-zone ZONE] [--delay MINUTES] [--exclude GLOB]... [--keep-last N --keep-daily N ...]
//!     [--on-demand] [--disabled] [--json]
//! job list [--json] | job run NAME [--wait] [--workers N] [--lanes KIND=N,...] [--json]
//! queue list [--all] [--json] | queue cancel TASK_ID [--json]
//! daemon [--workers N] [--once] [--lanes KIND=N,...] [--lease SECONDS] [--no-schedule] [--json]
//! health [--stale-days N] [--json]
//! ```
//! The daemon stops on SIGTERM or SIGINT: it claims nothing more, lets running tasks finish
//! for `--grace` seconds, then cancels them and hands them back to the queue.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use backup_core::model::{
    AccountSelection, ItemKind, Job, PriorityGroup, RunTrigger, Schedule, TagColor, Task,
    TaskFilter, TaskId, TaskState,
};
use backup_core::service::{DaemonReport, Server, WorkerOptions};
use backup_core::{Error, Result};
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;

use super::retention::KeepArgs;
use super::{EXIT_INCOMPLETE, out, print_json};

#[derive(Subcommand, Debug)]
pub(crate) enum TagCmd {
    /// Add a tag (for job selections and priority groups).
    Add {
        /// Unique name.
        name: String,
        /// Colour, #RRGGBB, or random (the default).
        #[arg(long)]
        color: Option<String>,
        /// Print the tag as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tags.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PriorityGroupCmd {
    /// Add (or replace, by name) a queue priority group: lower numbers run first; accounts
    /// join by carrying one of its tags or by `account set --priority-group`.
    Add {
        /// Name.
        name: String,
        /// Backup priority, 0-100.
        #[arg(long)]
        backup: u8,
        /// Restore priority, 0-100.
        #[arg(long)]
        restore: u8,
        /// Download priority, 0-100.
        #[arg(long)]
        download: u8,
        /// Clone priority, 0-100.
        #[arg(long)]
        clone: u8,
        /// Accounts with this tag join the group (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Make it the default group (accounts with no override and no group tag).
        #[arg(long)]
        default: bool,
        /// Print the group as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List priority groups (the built-in High 10, Normal 50, Low 90 until others exist).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub(crate) struct JobAddArgs {
    /// Unique name.
    name: String,
    /// Destination name (repeatable: one snapshot per destination).
    #[arg(long = "destination", required = true)]
    destinations: Vec<String>,
    /// Items, comma-separated (home,databases,email,...); default every item.
    #[arg(long, value_delimiter = ',')]
    items: Vec<String>,
    /// all, tag:TAG, org:LOGIN or re:PATTERN (a regular expression the whole username
    /// matches).
    #[arg(long, default_value = "all")]
    accounts: String,
    /// Leave suspended accounts out (they are included by default).
    #[arg(long)]
    exclude_suspended: bool,
    /// manual, hourly:N, daily@HH:MM, weekly:DAYS@HH:MM (mon,wed or 1-7), monthly:DAYS@HH:MM
    /// or after:JOB.
    #[arg(long, default_value = "manual")]
    schedule: String,
    /// The zone of the schedule's times and of the retention's calendar: an IANA name,
    /// UTC (the default) or an offset.
    #[arg(long, value_name = "ZONE")]
    time_zone: Option<String>,
    /// Minutes added to every scheduled time (and after the job an after:JOB follows).
    #[arg(long, value_name = "MINUTES", default_value_t = 0)]
    delay: u32,
    /// Exclude glob, relative to each home directory (repeatable).
    #[arg(long = "exclude")]
    excludes: Vec<String>,
    #[command(flatten)]
    keep: KeepArgs,
    /// The on-demand job: the one "create snapshot" uses (its snapshots are on-demand).
    #[arg(long)]
    on_demand: bool,
    /// Add it disabled (its schedule does not start runs).
    #[arg(long)]
    disabled: bool,
    /// Print the job as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct WorkArgs {
    /// Tasks this process runs at once.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Queue-wide lanes per task kind, KIND=N,... (default backup=4,restore=2,download=2,
    /// verify=2,retention=2,clone=2).
    #[arg(long, value_name = "KIND=N,...")]
    lanes: Option<String>,
    /// Seconds a claimed task's lease lasts without a heartbeat.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    lease: u64,
    /// Seconds running tasks may go on after SIGTERM before they are handed back.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    grace: u64,
}

impl WorkArgs {
    fn options(&self) -> Result<WorkerOptions> {
        if self.workers == 0 {
            return Err(Error::invalid("--workers", "at least 1"));
        }
        if self.lease < 3 {
            return Err(Error::invalid("--lease", "at least 3 seconds"));
        }
        let mut options = WorkerOptions {
            workers: self.workers,
            lease: Duration::from_secs(self.lease),
            grace: Duration::from_secs(self.grace),
            ..WorkerOptions::default()
        };
        if let Some(lanes) = &self.lanes {
            options.lanes = backup_core::model::Lanes::parse(lanes)?;
        }
        Ok(options)
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum JobCmd {
    /// Add a backup job.
    Add(Box<JobAddArgs>),
    /// List jobs.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a run of a job now: a task per selected account and destination is queued;
    /// with --wait, work the queue here until they end and print a summary.
    Run {
        /// Job name or id.
        name: String,
        /// Work the queue until the run's tasks end.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        work: WorkArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum QueueCmd {
    /// List queued and running tasks (with --all, ended ones too), oldest first, with the
    /// progress their workers last wrote.
    List {
        /// Ended tasks too.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a task: a queued one at once, a running one at its worker's next heartbeat.
    Cancel {
        /// Task id.
        task: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub(crate) struct DaemonArgs {
    #[command(flatten)]
    work: WorkArgs,
    /// Run what is due and exit when the queue is empty.
    #[arg(long)]
    once: bool,
    /// Do not start scheduled runs (only work the queue).
    #[arg(long)]
    no_schedule: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct HealthArgs {
    /// Accounts not backed up for this many days are listed.
    #[arg(long, default_value_t = 2)]
    stale_days: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn tag(server: &Server, command: TagCmd) -> Result<ExitCode> {
    match command {
        TagCmd::Add { name, color, json } => {
            let color = match color.as_deref() {
                None | Some("random") => None,
                Some(c) => Some(TagColor::parse(c)?),
            };
            let tag = server.add_tag(&name, color).await?;
            if json {
                print_json(&tag)?;
            } else {
                outln!("tag {} added ({})", tag.name, tag.color);
            }
        }
        TagCmd::List { json } => {
            let tags = server.tags().await?;
            if json {
                print_json(&tags)?;
            } else {
                for t in tags {
                    outln!("{}\t{}\t{}", t.name, t.color, t.id);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn priority_group(server: &Server, command: PriorityGroupCmd) -> Result<ExitCode> {
    match command {
        PriorityGroupCmd::Add {
            name,
            backup,
            restore,
            download,
            clone,
            tags,
            default,
            json,
        } => {
            let mut group = PriorityGroup::new(&name, backup, restore, download, clone)?;
            for t in &tags {
                group.tags.push(server.tag(t).await?.id);
            }
            group.default = default;
            let group = server.put_priority_group(group).await?;
            if json {
                print_json(&group)?;
            } else {
                outln!(
                    "priority group {}: backup {}, restore {}, download {}, clone {}{}",
                    group.name,
                    group.backup,
                    group.restore,
                    group.download,
                    group.clone,
                    if group.default { " (default)" } else { "" }
                );
            }
        }
        PriorityGroupCmd::List { json } => {
            let groups = server.priority_groups().await?;
            if json {
                print_json(&groups)?;
            } else {
                let tags: HashMap<_, _> = server
                    .tags()
                    .await?
                    .into_iter()
                    .map(|t| (t.id, t.name))
                    .collect();
                for g in groups {
                    let names: Vec<&str> = g
                        .tags
                        .iter()
                        .filter_map(|t| tags.get(t).map(String::as_str))
                        .collect();
                    outln!(
                        "{}\tbackup {}\trestore {}\tdownload {}\tclone {}\t{}{}",
                        g.name,
                        g.backup,
                        g.restore,
                        g.download,
                        g.clone,
                        if g.default { "default " } else { "" },
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!("tags {}", names.join(","))
                        }
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--accounts`: all, tag:T, org:O or re:PATTERN.
async fn selection(server: &Server, text: &str) -> Result<AccountSelection> {
    if text == "all" {
        return Ok(AccountSelection::All);
    }
    if let Some(tag) = text.strip_prefix("tag:") {
        return Ok(AccountSelection::Tag {
            tag: server.tag(tag).await?.id,
        });
    }
    if let Some(login) = text.strip_prefix("org:") {
        let org = server
            .catalog()
            .find_organization(login)
            .await?
            .ok_or_else(|| Error::not_found(format!("organization {login:?}")))?;
        return Ok(AccountSelection::Organization {
            organization: org.id,
        });
    }
    if let Some(pattern) = text.strip_prefix("re:") {
        return AccountSelection::pattern(pattern);
    }
    Err(Error::invalid(
        "--accounts",
        format!("{text:?}: expected all, tag:TAG, org:LOGIN or re:PATTERN"),
    ))
}

pub(crate) async fn job(server: &Server, command: JobCmd) -> Result<ExitCode> {
    match command {
        JobCmd::Add(args) => {
            let jobs = server.jobs().await?;
            let schedule = Schedule::parse_with(&args.schedule, |name| {
                jobs.iter()
                    .find(|j| j.name == name)
                    .map(|j| j.id)
                    .ok_or_else(|| Error::not_found(format!("job {name:?} (after:{name})")))
            })?;
            let mut destinations = Vec::new();
            for name in &args.destinations {
                destinations.push(server.destination(name).await?.id);
            }
            let items = if args.items.is_empty() {
                ItemKind::ALL.to_vec()
            } else {
                args.items
                    .iter()
                    .map(|k| k.trim().parse())
                    .collect::<Result<Vec<ItemKind>>>()?
            };
            let mut job = Job::new(&args.name, items, schedule, destinations)?;
            job.accounts = selection(server, &args.accounts).await?;
            job.exclude_suspended = args.exclude_suspended;
            job.delay_minutes = args.delay;
            job.on_demand = args.on_demand;
            job.enabled = !args.disabled;
            job.excludes = backup_core::model::PathFilter::new(args.excludes.clone())?;
            job.retention = args.keep.policy()?;
            if let Some(zone) = &args.time_zone {
                job.time_zone = backup_core::model::RetentionZone::new(zone)?;
                job.retention.time_zone = job.time_zone.clone();
            }
            let job = server.add_job(job).await?;
            if args.json {
                print_json(&job)?;
            } else {
                outln!(
                    "job {} added: id {}, schedule {}",
                    job.name,
                    job.id,
                    job.schedule
                        .spelling(|_| args.schedule.trim_start_matches("after:").into())
                );
            }
        }
        JobCmd::List { json } => {
            let jobs = server.jobs().await?;
            let names: HashMap<_, _> = jobs.iter().map(|j| (j.id, j.name.clone())).collect();
            let health = server.job_health().await.ok();
            if json {
                let docs: Vec<serde_json::Value> = jobs
                    .iter()
                    .map(|j| {
                        let mut v = serde_json::to_value(j).map_err(|e| Error::Internal {
                            reason: e.to_string(),
                        })?;
                        v["schedule_spelling"] = j
                            .schedule
                            .spelling(|id| names.get(&id).cloned().unwrap_or_default())
                            .into();
                        if let Some(h) = health
                            .as_ref()
                            .and_then(|h| h.iter().find(|x| x.job == j.id))
                        {
                            v["next_run"] = serde_json::to_value(h.next_run).unwrap_or_default();
                            v["last_run"] = serde_json::to_value(&h.last_run).unwrap_or_default();
                        }
                        Ok(v)
                    })
                    .collect::<Result<_>>()?;
                print_json(&docs)?;
            } else {
                for j in &jobs {
                    let next = health
                        .as_ref()
                        .and_then(|h| h.iter().find(|x| x.job == j.id))
                        .and_then(|h| h.next_run)
                        .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string());
                    outln!(
                        "{}\t{}\t{}\tnext {}{}{}",
                        j.name,
                        j.schedule
                            .spelling(|id| names.get(&id).cloned().unwrap_or_default()),
                        j.items
                            .iter()
                            .map(|k| k.to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        next,
                        if j.on_demand { "\ton-demand" } else { "" },
                        if j.enabled { "" } else { "\tdisabled" },
                    );
                }
            }
        }
        JobCmd::Run {
            name,
            wait,
            work,
            json,
        } => {
            let job = server.job(&name).await?;
            let (run, tasks) = server
                .start_job_run(&job, RunTrigger::Manual, None)
                .await?
                .ok_or_else(|| Error::refused("a run of this job was just started"))?;
            if !wait {
                if json {
                    print_json(&serde_json::json!({"run": run, "tasks": tasks}))?;
                } else {
                    outln!(
                        "run {} of job {}: {} tasks queued",
                        run.id,
                        job.name,
                        tasks.len()
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut options = work.options()?;
            options.once = true;
            options.schedule = false;
            options.runs = vec![run.id];
            let stop = shutdown_on_signals();
            server.run_daemon(options, stop).await?;
            let tasks = server
                .tasks(&TaskFilter {
                    run: Some(run.id),
                    ..TaskFilter::default()
                })
                .await?;
            let run = server.queue()?.get_run(run.id).await?.unwrap_or(run);
            let incomplete = tasks.iter().any(|t| !matches!(t.state, TaskState::Done));
            if json {
                print_json(&serde_json::json!({"run": run, "tasks": tasks}))?;
            } else {
                print_summary(&tasks)?;
            }
            if incomplete {
                return Ok(ExitCode::from(EXIT_INCOMPLETE));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(tasks: &[Task]) -> Result<()> {
    let count = |s: TaskState| tasks.iter().filter(|t| t.state == s).count();
    outln!(
        "{} tasks: {} done, {} partial, {} failed, {} cancelled",
        tasks.len(),
        count(TaskState::Done),
        count(TaskState::Partial),
        count(TaskState::Failed),
        count(TaskState::Cancelled),
    );
    for t in tasks.iter().filter(|t| t.state != TaskState::Done) {
        outln!(
            "{}\t{}\t{}\t{}",
            t.state,
            t.kind,
            t.username,
            t.message.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub(crate) async fn queue(server: &Server, command: QueueCmd) -> Result<ExitCode> {
    match command {
        QueueCmd::List { all, json } => {
            let filter = TaskFilter {
                states: if all {
                    Vec::new()
                } else {
                    vec![TaskState::Queued, TaskState::Running]
                },
                ..TaskFilter::default()
            };
            let tasks = server.tasks(&filter).await?;
            if json {
                print_json(&tasks)?;
            } else {
                for t in tasks {
                    let progress = t.progress.as_ref().map_or_else(String::new, |p| {
                        format!("{} {} files {} bytes", p.phase, p.files, p.bytes)
                    });
                    outln!(
                        "{}\t{}\t{}\t{}\tpriority {}\tattempt {}/{}\t{}{}",
                        t.id,
                        t.state,
                        t.kind,
                        t.username,
                        t.priority,
                        t.attempts,
                        t.max_attempts,
                        progress,
                        t.message.map(|m| format!("\t{m}")).unwrap_or_default()
                    );
                }
            }
        }
        QueueCmd::Cancel { task, json } => {
            let id: TaskId = task.parse()?;
            let state = server.cancel_task(id).await?;
            if json {
                print_json(&serde_json::json!({"task": id, "state": state}))?;
            } else if state == TaskState::Running {
                outln!("task {id} is running: its worker stops it at its next heartbeat");
            } else {
                outln!("task {id} is {state}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A token that fires on SIGTERM or SIGINT.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        fire.cancel();
    });
    token
}

pub(crate) async fn daemon(server: &Server, args: DaemonArgs) -> Result<ExitCode> {
    let mut options = args.work.options()?;
    options.once = args.once;
    options.schedule = !args.no_schedule;
    let stop = shutdown_on_signals();
    let report: DaemonReport = server.run_daemon(options, stop).await?;
    if args.json {
        print_json(&report)?;
    } else {
        let count = |s: TaskState| report.tasks.iter().filter(|t| t.state == s).count();
        outln!(
            "daemon stopped: {} runs started, {} tasks ended here ({} done, {} partial, {} failed, {} cancelled, {} handed back or retried, {} lost)",
            report.runs_started,
            report.tasks.len(),
            count(TaskState::Done),
            count(TaskState::Partial),
            count(TaskState::Failed),
            count(TaskState::Cancelled),
            count(TaskState::Queued),
            report.tasks.iter().filter(|t| t.lost).count(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn health(server: &Server, args: HealthArgs) -> Result<ExitCode> {
    let health = server.health(args.stale_days).await?;
    if args.json {
        print_json(&health)?;
        return Ok(ExitCode::SUCCESS);
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "never".into(),
            |t| t.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    for j in &health.jobs {
        outln!(
            "job {}\tlast success {}\tnext run {}",
            j.name,
            time(j.last_success),
            j.next_run
                .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
        );
    }
    outln!(
        "queue: {} queued, {} running",
        health.queued,
        health.running
    );
    for (name, until) in &health.paused_destinations {
        outln!(
            "destination {name} paused until {}",
            until.format("%Y-%m-%d %H:%M:%S")
        );
    }
    outln!(
        "{} accounts not backed up for {} days",
        health.stale_accounts.len(),
        health.stale_days
    );
    for a in &health.stale_accounts {
        outln!("  {}\tlast backup {}", a.username, time(a.last_backup));
    }
    Ok(ExitCode::SUCCESS)
}
