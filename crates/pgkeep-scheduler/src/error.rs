//! The scheduler's errors: why a run failed ([`RunError`]) and why the scheduler itself cannot go
//! on ([`SchedulerError`]). Each names the problem and the fix.

use std::path::PathBuf;

/// Why one run of a job failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The pgkeep operation failed.
    #[error(transparent)]
    Core(#[from] pgkeep_core::Error),
    /// The file sync failed.
    #[error(transparent)]
    Failover(#[from] pgkeep_failover::FailoverError),
    /// The operation ran but found a problem (a drill that failed).
    #[error("{problem}")]
    Failed {
        /// What it found.
        problem: String,
    },
    /// The run took longer than the job's timeout and was stopped.
    #[error(
        "stopped after the job's timeout ({after}); what it had written was removed\n  fix: find out why it was slow (`pgkeep -v` by hand), or raise the job's `timeout`"
    )]
    TimedOut {
        /// The timeout, as text.
        after: String,
    },
    /// The scheduler was stopped (SIGTERM, SIGINT) while the run went on past the grace period.
    #[error(
        "interrupted by {reason}; what it had written was removed\n  fix: the next scheduled run takes it up; `pgkeep schedule once JOB` runs it now"
    )]
    Interrupted {
        /// What stopped it.
        reason: String,
    },
    /// A hook failed.
    #[error(
        "{which} hook `{command}` failed: {problem}\n  fix: fix the hook, then run `pgkeep schedule once JOB`"
    )]
    Hook {
        /// `run-before`, `run-after` or `run-failed`.
        which: &'static str,
        /// The command.
        command: String,
        /// Its exit status and the end of its stderr.
        problem: String,
    },
    /// Another run of the same job holds its lock.
    #[error(
        "job {job} did not start: its previous run ({holder}) still runs after {waited}\n  fix: let it finish; raise the job's `lock-wait` to wait longer"
    )]
    JobBusy {
        /// The job.
        job: String,
        /// Who runs it.
        holder: String,
        /// How long this run waited.
        waited: String,
    },
    /// The scheduler's own files failed.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// Why the scheduler cannot go on: its configuration, its state file, its locks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] pgkeep_core::ConfigError),
    /// No job has this name.
    #[error(
        "no job is named `{name}`\n  fix: use one of the names `pgkeep schedule list` shows: {known}"
    )]
    NoSuchJob {
        /// The name given.
        name: String,
        /// The jobs there are.
        known: String,
    },
    /// A file of the scheduler's state cannot be read or written.
    #[error(
        "{action} {}: {source}\n  fix: make state-dir ({}) a directory the scheduler's user may write (the .deb makes /var/lib/pgkeep, owned by postgres), or set state-dir",
        path.display(),
        path.parent().map_or_else(String::new, |p| p.display().to_string())
    )]
    State {
        /// What was being done (`cannot write`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The state file is not what the scheduler writes.
    #[error(
        "the scheduler's state file {} is damaged: {problem}\n  fix: move it aside (the history and alert states start afresh; nothing else is lost)",
        path.display()
    )]
    DamagedState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}
