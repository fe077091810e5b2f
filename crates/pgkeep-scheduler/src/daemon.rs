//! The daemon (`pgkeep schedule run`): sleeps until the next due job or check, runs due jobs
//! (each job at most once at a time; a slot that comes due while its previous run still runs is
//! skipped with a warning), checks the conditions and writes the metrics. At start-up it records
//! the runs a dead daemon left as running, and catches up a missed run once when its slot is
//! younger than `[schedule] catch-up`. [`Control::Reload`] reads the configuration again (a broken
//! one keeps the old and says why); [`Control::Stop`] lets running jobs go on for the stop grace,
//! then stops them and records them as interrupted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pgkeep_core::{ConfigError, Interrupt, Settings};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::error::SchedulerError;
use crate::history::{Outcome, StateFile, Trigger};
use crate::job::Jobs;
use crate::notify::{Event, Notification};
use crate::runner::{job_is_running, run_job};

/// What the daemon is told from outside (the CLI maps SIGTERM/SIGINT and SIGHUP to these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop: `reason` (`SIGTERM`) goes into interrupted runs' records.
    Stop(String),
    /// Read the configuration again.
    Reload,
}

/// How the daemon reads its configuration, at start and at each reload.
pub type Loader = Box<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

struct Loaded {
    settings: Arc<Settings>,
    jobs: Arc<Jobs>,
}

fn load(loader: &Loader) -> Result<Loaded, SchedulerError> {
    let settings = loader()?;
    let jobs = Jobs::from_settings(&settings)?;
    Ok(Loaded {
        settings: Arc::new(settings),
        jobs: Arc::new(jobs),
    })
}

/// Runs the daemon until [`Control::Stop`]. Fails at start when the configuration or the state
/// directory cannot be used; later problems are logged, recorded and alerted, never fatal.
pub async fn run_daemon(
    loader: Loader,
    control: mpsc::Receiver<Control>,
) -> Result<(), SchedulerError> {
    // The jobs run as tasks of this one thread: pgkeep-core's futures need not be `Send`.
    tokio::task::LocalSet::new()
        .run_until(daemon(loader, control))
        .await
}

async fn daemon(
    loader: Loader,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), SchedulerError> {
    let mut cur = load(&loader)?;
    reap_dead_runs(&cur.settings, &cur.jobs).await?;
    let mut running: HashMap<String, Interrupt> = HashMap::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    let now = Utc::now();
    let mut next = next_runs(&cur.jobs, now);
    for name in catch_up(&cur.settings, &cur.jobs, now)? {
        start(&cur, &name, Trigger::CatchUp, &mut running, &mut tasks);
    }
    let mut next_check = now;
    tracing::info!("scheduler started with {} job(s)", cur.jobs.jobs.len());
    let stop_reason = loop {
        let now = Utc::now();
        let wake = next
            .values()
            .copied()
            .chain([next_check])
            .min()
            .unwrap_or(next_check);
        // Never sleep past a check: a machine that slept wakes to a wall clock far ahead.
        let nap = (wake - now)
            .to_std()
            .unwrap_or_default()
            .min(cur.jobs.settings.check_interval);
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            c = control.recv() => match c {
                None => break "the controlling process ended".to_string(),
                Some(Control::Stop(reason)) => break reason,
                Some(Control::Reload) => {
                    match load(&loader) {
                        Ok(new) => {
                            tracing::info!("configuration reloaded: {} job(s)", new.jobs.jobs.len());
                            cur = new;
                            next = next_runs(&cur.jobs, Utc::now());
                        }
                        Err(e) => tracing::error!("reload refused, the old configuration stays: {e}"),
                    }
                    continue;
                }
            },
            Some(done) = tasks.join_next() => {
                if let Ok(name) = done {
                    running.remove(&name);
                }
                write_metrics(&cur.settings, &cur.jobs, None).await;
                continue;
            }
        }
        let now = Utc::now();
        start_due(&cur, &mut next, now, &mut running, &mut tasks);
        if now >= next_check {
            check(&cur.settings, &cur.jobs).await;
            next_check = now + cur.jobs.settings.check_interval;
        }
    };
    stop(&cur, running, tasks, stop_reason).await;
    Ok(())
}

/// Starts the jobs that are due at `now` and moves their next run on; a job still running skips
/// this slot.
fn start_due(
    cur: &Loaded,
    next: &mut HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
    running: &mut HashMap<String, Interrupt>,
    tasks: &mut JoinSet<String>,
) {
    let due: Vec<String> = next
        .iter()
        .filter(|(_, t)| **t <= now)
        .map(|(n, _)| n.clone())
        .collect();
    for name in due {
        if let Some(job) = cur.jobs.get(&name) {
            let later = job
                .schedule
                .next_after(now)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            next.insert(name.clone(), later);
        }
        if running.contains_key(&name) {
            tracing::warn!("job {name}: skipped a run, the previous one still runs");
            continue;
        }
        start(cur, &name, Trigger::Schedule, running, tasks);
    }
}

fn next_runs(jobs: &Jobs, now: DateTime<Utc>) -> HashMap<String, DateTime<Utc>> {
    jobs.jobs
        .iter()
        .filter_map(|j| Some((j.name.clone(), j.schedule.next_after(now)?)))
        .collect()
}

fn start(
    cur: &Loaded,
    name: &str,
    trigger: Trigger,
    running: &mut HashMap<String, Interrupt>,
    tasks: &mut JoinSet<String>,
) {
    let Some(job) = cur.jobs.get(name).cloned() else {
        return;
    };
    let interrupt = Interrupt::new();
    running.insert(name.to_string(), interrupt.clone());
    let (settings, jobs) = (cur.settings.clone(), cur.jobs.clone());
    tracing::info!("job {name}: started ({trigger:?})");
    tasks.spawn_local(async move {
        match run_job(&settings, &jobs, &job, trigger, &interrupt).await {
            Ok(f) => {
                tracing::info!("job {}: {}", job.name, f.run.outcome.as_str());
                if let Some(e) = &f.run.error {
                    tracing::error!("job {}: {e}", job.name);
                }
                for p in f.notify_problems {
                    tracing::error!("job {}: notification failed: {p}", job.name);
                }
            }
            Err(e) => tracing::error!("job {}: {e}", job.name),
        }
        job.name
    });
}

/// The jobs whose newest slot within the catch-up window has no run yet.
fn catch_up(
    settings: &Settings,
    jobs: &Jobs,
    now: DateTime<Utc>,
) -> Result<Vec<String>, SchedulerError> {
    let window =
        chrono::Duration::from_std(jobs.settings.catch_up).unwrap_or(chrono::Duration::MAX);
    if window.is_zero() {
        return Ok(Vec::new());
    }
    let state = StateFile::new(&settings.state_dir, jobs.settings.history_runs).read()?;
    Ok(jobs
        .jobs
        .iter()
        .filter(|j| {
            j.schedule
                .latest_between(
                    now.checked_sub_signed(window)
                        .unwrap_or(DateTime::<Utc>::MIN_UTC),
                    now,
                )
                .is_some_and(|slot| state.last_run(&j.name).is_none_or(|r| r.started < slot))
        })
        .map(|j| j.name.clone())
        .collect())
}

/// Records runs left as running by a process that died (their job's lock is free), and notifies.
pub async fn reap_dead_runs(settings: &Settings, jobs: &Jobs) -> Result<(), SchedulerError> {
    let state = StateFile::new(&settings.state_dir, jobs.settings.history_runs);
    let now = Utc::now();
    let dead = state.update(|s| {
        let mut dead = Vec::new();
        for (name, runs) in s.runs.iter_mut() {
            for r in runs.iter_mut().filter(|r| r.outcome == Outcome::Running) {
                if !job_is_running(&settings.state_dir, name) {
                    r.outcome = Outcome::Died;
                    r.ended = Some(now);
                    r.error = Some(format!(
                        "the process running it (pid {}) ended without recording an outcome: it was killed, or the machine went down",
                        r.pid
                    ));
                    dead.push((name.clone(), r.clone()));
                }
            }
        }
        dead
    })?;
    for (name, run) in dead {
        tracing::error!("job {name}: {}", run.error.as_deref().unwrap_or_default());
        send(
            jobs,
            Notification {
                event: Event::JobFailed,
                job: Some(name.clone()),
                alert: None,
                cluster: settings.cluster.clone(),
                host: pgkeep_core::host_name(),
                at: now,
                summary: format!("job {name} died"),
                detail: run.error.clone(),
            },
        )
        .await;
    }
    Ok(())
}

async fn send(jobs: &Jobs, n: Notification) {
    for e in jobs.settings.notifier.send(&n).await {
        tracing::error!("notification failed: {e}");
    }
}

/// One check: the conditions, their alerts, and the metrics.
async fn check(settings: &Settings, jobs: &Jobs) {
    let facts = crate::watch::cluster_facts(settings).await;
    let holding = crate::watch::conditions(&facts, &jobs.settings, Utc::now());
    match crate::alerts::transitions(settings, jobs, &holding, Utc::now()) {
        Ok(notes) => {
            for n in notes {
                tracing::warn!("{}", n.summary);
                send(jobs, n).await;
            }
        }
        Err(e) => tracing::error!("alerts: {e}"),
    }
    write_metrics(settings, jobs, Some(&facts)).await;
}

async fn write_metrics(
    settings: &Settings,
    jobs: &Jobs,
    facts: Option<&crate::watch::ClusterFacts>,
) {
    let Some(path) = &jobs.settings.metrics_file else {
        return;
    };
    let owned;
    let facts = match facts {
        Some(f) => f,
        None => {
            owned = crate::watch::cluster_facts(settings).await;
            &owned
        }
    };
    match crate::report::metrics(settings, jobs, facts) {
        Ok(m) => {
            if let Err(e) = crate::metrics::write_textfile(path, &m) {
                tracing::error!("metrics: {e}");
            }
        }
        Err(e) => tracing::error!("metrics: {e}"),
    }
}

/// Lets running jobs go on for the stop grace, then interrupts them and waits for their records.
async fn stop(
    cur: &Loaded,
    running: HashMap<String, Interrupt>,
    mut tasks: JoinSet<String>,
    reason: String,
) {
    tracing::info!("stopping ({reason}): {} job(s) running", running.len());
    let grace = tokio::time::sleep(cur.jobs.settings.stop_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { return },
            () = &mut grace => break,
        }
    }
    for interrupt in running.values() {
        interrupt.interrupt(reason.clone());
    }
    // They clean up (children killed, what they wrote removed) and record themselves.
    let _ = tokio::time::timeout(Duration::from_secs(90), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}
