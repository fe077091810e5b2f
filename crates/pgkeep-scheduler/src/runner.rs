//! One run of one job, the same from the daemon and from `pgkeep schedule once`: the job's own
//! lock (one run of a job at a time, across processes), the run recorded before it starts and
//! after it ends, the hooks, the timeout, and the notification.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use pgkeep_core::{Acquired, Interrupt, LockFile, Settings};

use crate::action::Done;
use crate::error::RunError;
use crate::history::{Outcome, Run, StateFile, Trigger};
use crate::job::{Job, Jobs};
use crate::notify::{Event, Notification};

/// How long a stopped action gets to clean up (kill its children, remove what it wrote).
const CLEANUP: Duration = Duration::from_secs(60);

/// How a run ended, as recorded.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The record.
    pub run: Run,
    /// Problems sending its notification (the run itself is recorded).
    pub notify_problems: Vec<String>,
}

/// The lock file of job `name`.
pub(crate) fn job_lock_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("jobs").join(format!("{name}.lock"))
}

/// Runs `job` once: takes its lock (waiting up to its `lock-wait`), records the run, runs the
/// hooks and the action within the job's timeout, records how it ended and notifies. `interrupt`
/// stops the action (the daemon fires it after its stop grace). Returns the record; an `Err` only
/// when the state file cannot be written.
pub async fn run_job(
    settings: &Settings,
    jobs: &Jobs,
    job: &Job,
    trigger: Trigger,
    interrupt: &Interrupt,
) -> Result<Finished, RunError> {
    let state = StateFile::new(&settings.state_dir, jobs.settings.history_runs);
    let mut run = Run {
        started: Utc::now(),
        ended: None,
        outcome: Outcome::Running,
        error: None,
        summary: None,
        bytes: None,
        backup_id: None,
        trigger,
        pid: std::process::id(),
    };
    let lock = lock_job(settings, job, interrupt).await;
    let result = match lock {
        // Held (bound, not `_`) until the run's end is recorded: a free lock with a run recorded
        // as running means its process died.
        Ok(_held) => {
            state.record(&job.name, &run)?;
            let result = attempt(settings, job, interrupt).await;
            finish(&mut run, &result);
            state.record(&job.name, &run)?;
            result
        }
        Err(e) => {
            // Not started: recorded as a failure of its own, beside the run that holds the lock.
            let result = Err(e);
            finish(&mut run, &result);
            state.record(&job.name, &run)?;
            result
        }
    };
    let notify_problems = notify(settings, jobs, job, &run, result.is_ok()).await;
    Ok(Finished {
        run,
        notify_problems,
    })
}

fn finish(run: &mut Run, result: &Result<Done, RunError>) {
    run.ended = Some(Utc::now());
    match result {
        Ok(done) => {
            run.outcome = Outcome::Succeeded;
            run.summary = Some(done.summary.clone());
            run.bytes = done.bytes;
            run.backup_id = done.backup_id.clone();
        }
        Err(e) => {
            run.outcome = match e {
                RunError::TimedOut { .. } => Outcome::TimedOut,
                RunError::Interrupted { .. } => Outcome::Interrupted,
                RunError::Core(pgkeep_core::Error::Interrupted { .. }) => Outcome::Interrupted,
                _ => Outcome::Failed,
            };
            run.error = Some(e.to_string());
        }
    }
}

/// The hooks and the action, within the timeout.
async fn attempt(settings: &Settings, job: &Job, interrupt: &Interrupt) -> Result<Done, RunError> {
    let mut settings = settings.clone();
    settings.lock_wait = job.lock_wait;
    // The action's own interrupt: fired by the daemon's stop or by the timeout.
    let stop = Interrupt::new();
    // The run-before hook counts against the timeout and stops with the daemon too; until the
    // action has begun, stopping is dropping (the hook's shell is killed).
    let began = std::cell::Cell::new(false);
    let work = async {
        if let Some(command) = &job.run_before {
            hook("run-before", command, job, None).await?;
        }
        began.set(true);
        job.action.run(&settings, &stop).await
    };
    tokio::pin!(work);
    let deadline = job.timeout.map(|t| tokio::time::Instant::now() + t);
    let until_deadline = async move {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = &mut work => r,
        () = until_deadline => {
            let after = pgkeep_core::format_duration(job.timeout.unwrap_or_default());
            stop.interrupt(format!("the job's timeout ({after})"));
            if began.get() {
                let _ = tokio::time::timeout(CLEANUP, &mut work).await;
            }
            Err(RunError::TimedOut { after })
        }
        () = interrupt.fired() => {
            let reason = interrupt.reason().unwrap_or("an interrupt").to_string();
            stop.interrupt(reason.clone());
            if began.get() {
                let _ = tokio::time::timeout(CLEANUP, &mut work).await;
            }
            Err(RunError::Interrupted { reason })
        }
    };
    match &result {
        Ok(_) => {
            if let Some(command) = &job.run_after {
                hook("run-after", command, job, Some(&result)).await?;
            }
        }
        Err(_) => {
            if let Some(command) = &job.run_failed
                && let Err(e) = hook("run-failed", command, job, Some(&result)).await
            {
                tracing::error!("job {}: {e}", job.name);
            }
        }
    }
    result
}

/// Runs a hook through `sh -c` with the job and its outcome in the environment.
async fn hook(
    which: &'static str,
    command: &str,
    job: &Job,
    result: Option<&Result<Done, RunError>>,
) -> Result<(), RunError> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("PGKEEP_JOB", &job.name)
        .env("PGKEEP_ACTION", job.action.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match result {
        Some(Ok(done)) => {
            cmd.env("PGKEEP_OUTCOME", "succeeded");
            if let Some(id) = &done.backup_id {
                cmd.env("PGKEEP_BACKUP_ID", id);
            }
        }
        Some(Err(e)) => {
            cmd.env("PGKEEP_OUTCOME", "failed")
                .env("PGKEEP_ERROR", e.to_string());
        }
        None => {}
    }
    let failed = |problem: String| RunError::Hook {
        which,
        command: command.to_string(),
        problem,
    };
    let out = cmd.output().await.map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(failed(format!("{} {}", out.status, tail.join(" / "))));
    }
    Ok(())
}

/// The job's own lock, held for the whole run.
async fn lock_job(
    settings: &Settings,
    job: &Job,
    interrupt: &Interrupt,
) -> Result<LockFile, RunError> {
    let path = job_lock_path(&settings.state_dir, &job.name);
    let what = format!("job {}", job.name);
    match LockFile::acquire(&path, &what, job.lock_wait, interrupt).await {
        Ok(Acquired::Held(lock)) => Ok(lock),
        Ok(Acquired::Busy { holder }) => Err(RunError::JobBusy {
            job: job.name.clone(),
            holder,
            waited: pgkeep_core::format_duration(job.lock_wait),
        }),
        Ok(Acquired::Interrupted(reason)) => Err(RunError::Interrupted { reason }),
        Err(source) => Err(crate::error::SchedulerError::State {
            action: "cannot lock",
            path,
            source,
        }
        .into()),
    }
}

/// Whether a run of `name` holds its lock now (another process's run that is still going).
pub(crate) fn job_is_running(state_dir: &Path, name: &str) -> bool {
    LockFile::is_held(&job_lock_path(state_dir, name))
}

async fn notify(settings: &Settings, jobs: &Jobs, job: &Job, run: &Run, ok: bool) -> Vec<String> {
    let notifier = &jobs.settings.notifier;
    if notifier.is_empty() || (ok && !notifier.on_success) {
        return Vec::new();
    }
    let n = Notification {
        event: match ok {
            true => Event::JobSucceeded,
            false => Event::JobFailed,
        },
        job: Some(job.name.clone()),
        alert: None,
        cluster: settings.cluster.clone(),
        host: pgkeep_core::host_name(),
        at: Utc::now(),
        summary: match ok {
            true => format!(
                "job {} succeeded: {}",
                job.name,
                run.summary.as_deref().unwrap_or("")
            ),
            false => format!("job {} {}", job.name, run.outcome.as_str()),
        },
        detail: run.error.clone(),
    };
    notifier
        .send(&n)
        .await
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}
