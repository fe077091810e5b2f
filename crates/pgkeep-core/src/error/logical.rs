//! Refusals and failures of logical backups and restores.

use chrono::{DateTime, Utc};

use crate::exec::ProcessError;
use crate::pg::utc_millis as time;

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
        "database `{name}` already exists; nothing was changed\n  fix: pass --clean to replace its contents, or --into NEW_NAME to restore beside it"
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
        "restoring `{database}` failed: {source}\n  fix: read pg_restore's message above; the database `{database}` may be partly restored: drop it (DROP DATABASE) before trying again, and restore the roles first (`pgkeep restore --globals`) if a role is missing"
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
}
