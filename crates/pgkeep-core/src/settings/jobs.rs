//! The scheduler's part of the configuration file, as written: `[[job]]`, `[schedule]` and
//! `[notify]`. `pgkeep-scheduler` checks it (schedules, zones, actions and their options) and
//! names the job, the key and the fix in every error; this crate only carries it.

use std::path::PathBuf;

use serde::Deserialize;

/// `[[job]]`: one scheduled job. Keys other than the ones below are the action's options
/// (`all = true` for `action = "backup logical"`), kept in [`JobConfig::options`] for the
/// scheduler to check against the action.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobConfig {
    /// The job's name: what `schedule once NAME`, history, alerts and metrics call it.
    pub name: Option<String>,
    /// When it runs: 5-field crontab syntax, or `@hourly`, `@daily`, `@weekly`, `@monthly`.
    pub schedule: Option<String>,
    /// IANA zone the schedule is read in (default: the top-level `timezone`).
    pub timezone: Option<String>,
    /// What it does: `backup logical`, `backup physical`, `expire`, `drill`, `verify`,
    /// `sync files`.
    pub action: Option<String>,
    /// Longest a run may take before it is stopped and recorded as failed (e.g. `4h`).
    pub timeout: Option<String>,
    /// How long a run waits for a lock another run holds before it fails (default
    /// `[schedule] lock-wait`).
    pub lock_wait: Option<String>,
    /// Shell command run before the action; when it fails the action does not run.
    pub run_before: Option<String>,
    /// Shell command run after the action succeeded.
    pub run_after: Option<String>,
    /// Shell command run after the action failed.
    pub run_failed: Option<String>,
    /// The action's options, as written.
    #[serde(flatten)]
    pub options: toml::Table,
}

/// `[schedule]`: how the daemon runs the jobs and which conditions it watches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A run missed while the daemon was down runs once at start-up when its slot is younger than
    /// this (default `6h`; `0s`: never).
    pub catch_up: Option<String>,
    /// How long a job that holds a lock is waited for (default `30m`).
    pub lock_wait: Option<String>,
    /// On SIGTERM/SIGINT, how long running jobs may go on before they are stopped (default `5m`).
    pub stop_grace: Option<String>,
    /// How often the daemon checks the overdue and archiving conditions (default `1m`).
    pub check_interval: Option<String>,
    /// Runs kept in the history per job (default 100).
    pub history_runs: Option<usize>,
    /// Prometheus textfile-collector file to write after every run and check (default: none).
    pub metrics_file: Option<PathBuf>,
    /// `[schedule.overdue]`: alert when the newest good backup of a kind is older than this.
    pub overdue: OverdueConfig,
    /// `[schedule.archiving]`: alert when WAL archiving is stuck.
    pub archiving: ArchivingConfig,
}

/// `[schedule.overdue]`: the largest age of the newest backup of each kind (e.g. `26h`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct OverdueConfig {
    /// Logical backups.
    pub logical: Option<String>,
    /// Physical backups.
    pub physical: Option<String>,
}

/// `[schedule.archiving]`: when `pg_stat_archiver` means archiving is stuck.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ArchivingConfig {
    /// Watch the archiver (default: when `wal.archive` is true).
    pub watch: Option<bool>,
    /// Stuck when the last archived segment is older than this while WAL is being written
    /// (default `1h`).
    pub max_age: Option<String>,
}

/// `[notify]`: where alerts and job outcomes are sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotifyConfig {
    /// URL a JSON body is POSTed to (Slack's incoming webhooks take it as is).
    pub webhook: Option<String>,
    /// Timeout of one webhook attempt (default `10s`).
    pub webhook_timeout: Option<String>,
    /// Attempts per notification, with backoff between them (default 5).
    pub webhook_attempts: Option<u32>,
    /// Shell command run per notification, the JSON body on its stdin.
    pub command: Option<String>,
    /// Notify after successful runs too (default false: failures and alerts only).
    pub on_success: bool,
}
