//! Exit codes, documented in docs/cli.md. Cron and scripts read them, so they never change meaning.

/// The command failed (storage, PostgreSQL, corruption, ...); the message says why.
pub const FAILURE: u8 = 1;
/// Invalid flags or configuration; nothing was done. (clap uses 2 for usage errors too.)
pub const USAGE: u8 = 2;
/// `pgkeep check` found a problem that blocks the configured jobs.
pub const CHECK_FAILED: u8 = 3;

/// `wal-fetch`: the archive has no such file (PostgreSQL reads 1..=125 as "not found" and ends
/// recovery normally there).
pub const WAL_NOT_FOUND: u8 = 1;
/// `wal-fetch`: any real failure (repository unreachable, checksum mismatch, bad configuration).
/// Above 125, so PostgreSQL stops with a FATAL error instead of ending recovery at the wrong point.
pub const WAL_FETCH_FAILED: u8 = 200;

/// A flag value that parsed but makes no sense (a bad time, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// An invalid value found after parsing (exit code 2).
pub fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(message))
}

/// 0 when a check found nothing wrong, else [`CHECK_FAILED`].
pub fn check_code(ok: bool) -> std::process::ExitCode {
    match ok {
        true => std::process::ExitCode::SUCCESS,
        false => std::process::ExitCode::from(CHECK_FAILED),
    }
}

/// The exit code for an error that ended a command.
pub fn code_for(error: &anyhow::Error) -> u8 {
    let is_config = error.chain().any(|cause| {
        cause.is::<pgkeep_core::ConfigError>()
            || cause.is::<UsageError>()
            || matches!(
                cause.downcast_ref::<pgkeep_failover::FailoverError>(),
                Some(pgkeep_failover::FailoverError::Config { .. })
            )
            || matches!(
                cause.downcast_ref::<pgkeep_scheduler::SchedulerError>(),
                Some(
                    pgkeep_scheduler::SchedulerError::Config(_)
                        | pgkeep_scheduler::SchedulerError::NoSuchJob { .. }
                )
            )
            || matches!(
                cause.downcast_ref::<pgkeep_core::Error>(),
                Some(pgkeep_core::Error::Config(_) | pgkeep_core::Error::NoRepository)
            )
    });
    if is_config { USAGE } else { FAILURE }
}
