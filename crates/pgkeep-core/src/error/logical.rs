//! Refusals and failures of logical backups and restores.

use chrono::{DateTime, Utc};

use super::Error;
use crate::exec::ProcessError;
use crate::pg::{quote_ident, utc_millis as time};

fn oldest_hint(oldest: &Option<DateTime<Utc>>) -> String {
    match oldest {
        Some(t) => format!(
            "the oldest restorable time is {}\n  fix: choose a time at or after {}, or `pgkeep list` to see every backup",
            time(t),
            time(t)
        ),
        None => "the repository holds no such backup\n  fix: take one with `pgkeep backup logical`, or check --repo and --cluster".into(),
    }
}

/// A logical backup or restore cannot go ahead or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogicalError {
    /// Neither a database nor the globals were asked for.
    #[error(
        "pgkeep backup logical: nothing to back up\n  fix: name databases with --db NAME, or pass --all"
    )]
    NothingToBackUp,

    /// A database named on the command line does not exist.
    #[error("database `{name}` does not exist on the server (it has: {})\n  fix: check the name; `--all` backs up every database", available.join(", "))]
    NoSuchDatabase {
        /// The name given.
        name: String,
        /// The databases that exist.
        available: Vec<String>,
    },

    /// A restore would overwrite an existing database.
    #[error(
        "database `{name}` already exists; nothing was changed\n  fix: pass --clean to replace its contents, or --into NEW_NAME to restore beside it; if it was left by an interrupted restore, drop it first (DROP DATABASE {})",
        quote_ident(name)
    )]
    DatabaseExists {
        /// The database.
        name: String,
    },

    /// A backup does not hold the database asked for.
    #[error("backup `{id}` has no database `{database}` (it has: {})\n  fix: pick another backup, or check the name", has.join(", "))]
    NotInBackup {
        /// The backup.
        id: String,
        /// The database asked for (`globals` for the roles and tablespaces).
        database: String,
        /// The databases it has.
        has: Vec<String>,
    },

    /// No backup finished at or before the target time.
    #[error(
        "no logical backup of `{database}` finished at or before {}; {}",
        time(target),
        oldest_hint(oldest)
    )]
    NoBackupBefore {
        /// The database.
        database: String,
        /// The time asked for.
        target: DateTime<Utc>,
        /// The oldest time that can be restored, if any backup exists.
        oldest: Option<DateTime<Utc>>,
    },

    /// The archive could not be staged for a parallel pg_restore.
    #[error(
        "restoring `{database}` failed: {what}: {source}\n  fix: check free space and permissions of the temporary directory (TMPDIR)"
    )]
    Staging {
        /// The database being restored.
        database: String,
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },

    /// pg_restore failed.
    #[error(
        "restoring `{database}` failed: {source}\n  fix: read pg_restore's message above, and restore the roles first (`pgkeep restore --globals`) if a role is missing"
    )]
    RestoreFailed {
        /// The database being restored.
        database: String,
        /// pg_restore's failure, with its stderr.
        source: ProcessError,
    },

    /// Replaying the roles and tablespaces failed for another reason than "already exists".
    #[error(
        "restoring `globals` failed: psql reported: {errors}\n  fix: read the errors above; fix their cause (e.g. a missing tablespace directory) and run `pgkeep restore --globals` again: it is safe to repeat"
    )]
    GlobalsFailed {
        /// The errors psql reported.
        errors: String,
    },

    /// The backup's dump of the database is missing from the repository or is not the size that
    /// was stored; found before anything was created or changed.
    #[error(
        "backup `{backup}`: the dump of `{database}` ({key}) {problem}; nothing was created or changed\n  fix: put the object back from a copy of the repository and run the restore again, or restore from another backup (`pgkeep list` shows them, `pgkeep verify --all` checks them)"
    )]
    PayloadUnusable {
        /// The backup.
        backup: String,
        /// The database whose dump it is (`globals` for the roles and tablespaces).
        database: String,
        /// The object's key.
        key: String,
        /// What is wrong with it.
        problem: PayloadProblem,
    },

    /// A restore failed after it had begun; the message says what it left of the target
    /// database (dropped again, left alone, or partly restored).
    #[error("{source}\n  {}", outcome_text(target, outcome))]
    Incomplete {
        /// The database restored into.
        target: String,
        /// What became of it.
        outcome: TargetOutcome,
        /// Why the restore failed.
        source: Box<Error>,
    },
}

/// What is wrong with a dump found before a restore begins.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum PayloadProblem {
    /// The object is not in the repository.
    Missing,
    /// The repository holds a different number of bytes than were stored (truncated or replaced).
    WrongSize {
        /// Bytes stored by the backup.
        expected: u64,
        /// Bytes the repository holds now.
        actual: u64,
    },
}

impl std::fmt::Display for PayloadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadProblem::Missing => write!(f, "is missing from the repository"),
            PayloadProblem::WrongSize { expected, actual } => write!(
                f,
                "is {actual} bytes in the repository but the backup stored {expected}: it is truncated or was replaced"
            ),
        }
    }
}

/// What a failed logical restore left of its target database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum TargetOutcome {
    /// The restore failed before it created or changed the target database.
    Untouched,
    /// The database this restore created was dropped again.
    Dropped,
    /// The restore had not created the database yet (pg_restore --create stopped before it).
    NothingLeft,
    /// The database this restore created could not be dropped; it is left half-made.
    DropFailed {
        /// Why dropping it failed.
        reason: String,
    },
    /// A database under the name exists that this restore did not create; it was left alone.
    NotOurs,
    /// An existing database restored into with `--clean`: now partly restored, never dropped.
    PartlyRestored,
}

fn outcome_text(target: &str, outcome: &TargetOutcome) -> String {
    let quoted = quote_ident(target);
    match outcome {
        TargetOutcome::Untouched => format!(
            "database `{target}` was not created or changed: with --jobs the archive is read and checked first; the same restore can run again once the cause is fixed"
        ),
        TargetOutcome::Dropped => format!(
            "removed: database `{target}`, which this restore had created, was dropped again; nothing is left behind and the same restore can run again once the cause is fixed"
        ),
        TargetOutcome::NothingLeft => format!(
            "database `{target}` was not created; nothing is left behind and the same restore can run again once the cause is fixed"
        ),
        TargetOutcome::DropFailed { reason } => format!(
            "database `{target}`, which this restore created, is left half-made: dropping it failed: {reason}\n  fix: drop it (DROP DATABASE {quoted}) before running the restore again"
        ),
        TargetOutcome::NotOurs => format!(
            "a database `{target}` exists that this restore did not create; it was left as it is"
        ),
        TargetOutcome::PartlyRestored => format!(
            "database `{target}` existed before and is now PARTLY RESTORED: --clean had begun to replace its contents when the restore stopped; it was not dropped\n  fix: once the cause is fixed, run the same restore with --clean again to replace its contents completely, or restore into a new database with --into NEW_NAME"
        ),
    }
}
