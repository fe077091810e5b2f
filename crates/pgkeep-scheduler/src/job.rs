//! The jobs and the scheduler's settings, checked: [`Jobs::from_settings`] turns `[[job]]`,
//! `[schedule]` and `[notify]` into [`Job`]s and [`SchedulerSettings`], and every problem into a
//! [`ConfigError`] naming the file, the job, the key and the fix.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use pgkeep_core::{BackupKind, ConfigError, JobConfig, Settings, Zone};

use crate::action::Action;
use crate::notify::Notifier;
use crate::schedule::Schedule;

/// One scheduled job, checked.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its name.
    pub name: String,
    /// When it runs, in its zone.
    pub schedule: Schedule,
    /// What it does.
    pub action: Action,
    /// Longest a run may take (`None`: no limit).
    pub timeout: Option<Duration>,
    /// How long a run waits for a lock another run holds.
    pub lock_wait: Duration,
    /// Shell command run before the action.
    pub run_before: Option<String>,
    /// Shell command run after the action succeeded.
    pub run_after: Option<String>,
    /// Shell command run after the action failed.
    pub run_failed: Option<String>,
}

/// `[schedule]` and `[notify]`, checked.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Missed runs younger than this run once at start-up.
    pub catch_up: Duration,
    /// How long running jobs may go on after SIGTERM/SIGINT.
    pub stop_grace: Duration,
    /// How often the overdue and archiving conditions are checked.
    pub check_interval: Duration,
    /// Runs kept per job.
    pub history_runs: usize,
    /// The Prometheus textfile, if any.
    pub metrics_file: Option<PathBuf>,
    /// The largest age of the newest backup of a kind.
    pub overdue: Vec<(BackupKind, Duration)>,
    /// Watch the archiver: stuck when nothing was archived for this long while WAL waits.
    pub archiving: Option<Duration>,
    /// Where notifications go.
    pub notifier: Notifier,
}

/// The jobs of a configuration and how the scheduler runs them.
#[derive(Debug, Clone)]
pub struct Jobs {
    /// The jobs, in the order written.
    pub jobs: Vec<Job>,
    /// How they are run and watched.
    pub settings: SchedulerSettings,
}

impl Jobs {
    /// Checks the scheduler's part of `settings`.
    pub fn from_settings(settings: &Settings) -> Result<Jobs, ConfigError> {
        let origin = settings.config_path.as_ref().map_or_else(
            || "(no configuration file)".to_string(),
            |p| p.display().to_string(),
        );
        let mut names = BTreeSet::new();
        let mut jobs = Vec::new();
        for (i, raw) in settings.jobs.iter().enumerate() {
            let job = job(raw, i, settings, &origin)?;
            if !names.insert(job.name.clone()) {
                return Err(invalid(
                    &origin,
                    format!("job.{}.name", job.name),
                    "two jobs have this name".into(),
                    "give each [[job]] its own name".into(),
                ));
            }
            jobs.push(job);
        }
        Ok(Jobs {
            jobs,
            settings: scheduler_settings(settings, &origin)?,
        })
    }

    /// The job named `name`.
    pub fn get(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

fn invalid(origin: &str, key: String, problem: String, fix: String) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        key,
        problem,
        fix,
    }
}

fn duration(
    origin: &str,
    key: &str,
    text: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(t) => pgkeep_core::parse_duration(t)
            .map_err(|e| invalid(origin, key.to_string(), e.problem, e.fix)),
    }
}

fn job(
    raw: &JobConfig,
    index: usize,
    settings: &Settings,
    origin: &str,
) -> Result<Job, ConfigError> {
    let name = job_name(raw, index, origin)?;
    let key = |k: &str| format!("job.{name}.{k}");
    let zone = match raw.timezone.as_deref() {
        None => settings.timezone,
        Some(tz) => {
            Zone::parse(tz).map_err(|e| invalid(origin, key("timezone"), e.problem, e.fix))?
        }
    };
    let Some(expr) = raw.schedule.as_deref() else {
        return Err(invalid(
            origin,
            key("schedule"),
            "the job has no schedule".into(),
            "add `schedule = \"30 2 * * *\"` (minute hour day-of-month month day-of-week) or `@daily`".into(),
        ));
    };
    let schedule = Schedule::parse(expr, zone)
        .map_err(|e| invalid(origin, key("schedule"), e.problem, e.fix))?;
    let Some(action) = raw.action.as_deref() else {
        return Err(invalid(
            origin,
            key("action"),
            "the job has no action".into(),
            "add `action = \"backup logical\"` (or backup physical, expire, drill, verify, sync files)".into(),
        ));
    };
    let action = Action::parse(action, &raw.options).map_err(|(k, problem, fix)| {
        let k = match k.as_str() {
            "(options)" => format!("job.{name}"),
            _ => key(&k),
        };
        invalid(origin, k, problem, fix)
    })?;
    let timeout = raw
        .timeout
        .as_deref()
        .map(|t| duration(origin, &key("timeout"), Some(t), Duration::ZERO))
        .transpose()?;
    if timeout.is_some_and(|t| t < Duration::from_secs(1)) {
        return Err(invalid(
            origin,
            key("timeout"),
            "a timeout under 1s would stop every run at once".into(),
            "give the longest a run may take, e.g. `4h`, or leave `timeout` out for no limit"
                .into(),
        ));
    }
    Ok(Job {
        lock_wait: duration(
            origin,
            &key("lock-wait"),
            raw.lock_wait.as_deref(),
            settings.lock_wait,
        )?,
        name,
        schedule,
        action,
        timeout,
        run_before: raw.run_before.clone(),
        run_after: raw.run_after.clone(),
        run_failed: raw.run_failed.clone(),
    })
}

/// The job's name, checked: it names the job's lock file, history and metrics.
fn job_name(raw: &JobConfig, index: usize, origin: &str) -> Result<String, ConfigError> {
    match raw.name.as_deref() {
        Some(n) if valid_name(n) => Ok(n.to_string()),
        Some(n) => {
            Err(invalid(
                origin,
                format!("job[{index}].name"),
                format!("`{n}` is not a usable job name"),
                "use 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.` (it names the job's lock, history and metrics)".into(),
            ))
        }
        None => {
            Err(invalid(
                origin,
                format!("job[{index}]"),
                "the job has no name".into(),
                "add `name = \"nightly-dump\"`".into(),
            ))
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn scheduler_settings(settings: &Settings, origin: &str) -> Result<SchedulerSettings, ConfigError> {
    let c = &settings.schedule;
    let d = |key: &str, text: &Option<String>, default: u64| {
        duration(origin, key, text.as_deref(), Duration::from_secs(default))
    };
    let mut overdue = Vec::new();
    for (kind, text, key) in [
        (
            BackupKind::Logical,
            &c.overdue.logical,
            "schedule.overdue.logical",
        ),
        (
            BackupKind::Physical,
            &c.overdue.physical,
            "schedule.overdue.physical",
        ),
    ] {
        if let Some(text) = text {
            overdue.push((kind, duration(origin, key, Some(text), Duration::ZERO)?));
        }
    }
    let watch = c.archiving.watch.unwrap_or(settings.wal_archive);
    let check_interval = d("schedule.check-interval", &c.check_interval, 60)?;
    if check_interval.is_zero() {
        return Err(invalid(
            origin,
            "schedule.check-interval".into(),
            "0s would check without pause".into(),
            "give a duration of 1s or more (default 1m)".into(),
        ));
    }
    Ok(SchedulerSettings {
        catch_up: d("schedule.catch-up", &c.catch_up, 6 * 3600)?,
        stop_grace: d("schedule.stop-grace", &c.stop_grace, 300)?,
        check_interval,
        history_runs: c.history_runs.unwrap_or(100).clamp(1, 10_000),
        metrics_file: c.metrics_file.clone(),
        overdue,
        archiving: match watch {
            true => Some(d("schedule.archiving.max-age", &c.archiving.max_age, 3600)?),
            false => None,
        },
        notifier: Notifier::from_config(&settings.notify, origin)?,
    })
}
