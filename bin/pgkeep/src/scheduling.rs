//! The scheduler's handlers: `schedule list`, `schedule once JOB`, `schedule run` (the daemon) and
//! `status`. Each is one call into `pgkeep-scheduler`.

use std::process::ExitCode;

use pgkeep_core::{Interrupt, Overrides, Settings};
use pgkeep_scheduler::{Control, Jobs, Outcome, SchedulerError, Trigger};
use tokio::signal::unix::{SignalKind, signal};

use crate::commands::Ctx;
use crate::output;

fn jobs(ctx: &Ctx) -> anyhow::Result<Jobs> {
    Ok(Jobs::from_settings(&ctx.settings)?)
}

/// `schedule list`.
pub async fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let jobs = jobs(ctx)?;
    let listing = pgkeep_scheduler::job_listing(&ctx.settings, &jobs, chrono::Utc::now())?;
    ctx.print(&listing, || {
        output::job_listing(&listing, ctx.settings.timezone)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `schedule once JOB`: exit 0 when the run succeeded, 1 otherwise (the error on stderr).
pub async fn once(ctx: &Ctx, name: &str, interrupt: &Interrupt) -> anyhow::Result<ExitCode> {
    let jobs = jobs(ctx)?;
    let Some(job) = jobs.get(name) else {
        return Err(SchedulerError::NoSuchJob {
            name: name.to_string(),
            known: jobs
                .jobs
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    };
    pgkeep_scheduler::reap_dead_runs(&ctx.settings, &jobs).await?;
    let finished =
        pgkeep_scheduler::run_job(&ctx.settings, &jobs, job, Trigger::Once, interrupt).await?;
    let ok = finished.run.outcome == Outcome::Succeeded;
    ctx.report(ok, &finished.run, || {
        output::job_run(name, &finished.run, ctx.settings.timezone)
    })?;
    for problem in &finished.notify_problems {
        ctx.warn(&format!("warning: notification failed: {problem}\n"));
    }
    match (&finished.run.error, ok) {
        (_, true) => Ok(ExitCode::SUCCESS),
        (Some(error), false) => {
            anyhow::bail!("job {name} {}: {error}", finished.run.outcome.as_str())
        }
        (None, false) => anyhow::bail!("job {name} {}", finished.run.outcome.as_str()),
    }
}

/// `schedule run`: the daemon, until SIGTERM/SIGINT (through `interrupt`); SIGHUP reloads.
pub async fn run(
    ctx: &Ctx,
    overrides: Overrides,
    interrupt: Interrupt,
) -> anyhow::Result<ExitCode> {
    // Refuse a broken configuration at once, before anything runs.
    jobs(ctx)?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = interrupt.fired() => {
                    let reason = interrupt.reason().unwrap_or("a signal").to_string();
                    let _ = tx.send(Control::Stop(reason)).await;
                    return;
                }
                _ = hup.recv() => {
                    if tx.send(Control::Reload).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let loader = Box::new(move || Settings::load(&overrides));
    pgkeep_scheduler::run_daemon(loader, rx).await?;
    Ok(ExitCode::SUCCESS)
}

/// `status`: exit 1 while an alert is active, a condition holds or the repository cannot be read.
pub async fn status(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let jobs = jobs(ctx)?;
    let status = pgkeep_scheduler::status(&ctx.settings, &jobs).await?;
    let ok = status.alerts.is_empty()
        && status.holding.is_empty()
        && status.facts.repository_error.is_none();
    ctx.print(&status, || output::status(&status, ctx.settings.timezone))?;
    Ok(match ok {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}
