//! The library's error type. Each variant is something a caller can act on, carries its cause, and
//! its message says what failed, why, and what to do next. Messages never contain a password.

use chrono::{DateTime, Utc};

use crate::config::ConfigError;
use crate::process::ProcessError;
use crate::storage::StorageError;

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

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

/// Errors returned by `pgkeep-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration or a flag is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The repository's storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// No repository was configured for a command that needs one.
    #[error(
        "no repository configured\n  fix: pass --repo file:///path or --repo s3://bucket/prefix, or set repository.url in the configuration file"
    )]
    NoRepository,

    /// An object read back does not match what was recorded when it was written.
    #[error(
        "{key}: checksum mismatch: expected sha256 {expected} ({expected_size} bytes), read {actual} ({actual_size} bytes); the stored object is corrupt or was changed\n  fix: do not restore from it; run `pgkeep verify` to find every damaged object and take a new backup"
    )]
    ChecksumMismatch {
        /// The object.
        key: String,
        /// The recorded sha256.
        expected: String,
        /// The sha256 of what was read.
        actual: String,
        /// The recorded size.
        expected_size: u64,
        /// The size read.
        actual_size: u64,
    },

    /// The storage reported a different size than the pipeline sent.
    #[error(
        "{key}: the repository reports {actual} bytes but {expected} were written\n  fix: check the repository's storage; the object cannot be trusted"
    )]
    SizeMismatch {
        /// The object.
        key: String,
        /// Bytes written.
        expected: u64,
        /// Bytes the storage reports.
        actual: u64,
    },

    /// The stored bytes match their checksum but do not decompress (they were written corrupt).
    #[error(
        "{key}: cannot be decompressed: {source}\n  fix: do not restore from this object; take a new backup"
    )]
    Corrupt {
        /// The object.
        key: String,
        /// The decoder's error.
        source: std::io::Error,
    },

    /// Compression failed while storing.
    #[error(
        "{key}: compressing failed: {source}\n  fix: check memory and the compression settings"
    )]
    Compress {
        /// The object.
        key: String,
        /// Why.
        source: std::io::Error,
    },

    /// Reading the data to be stored failed; nothing was stored.
    #[error("{key}: reading the data to store failed: {source}; nothing was stored")]
    Input {
        /// The object.
        key: String,
        /// Why.
        source: std::io::Error,
    },

    /// Writing restored data to its destination failed.
    #[error("{key}: writing the restored data failed: {source}")]
    Output {
        /// The object being read.
        key: String,
        /// Why.
        source: std::io::Error,
    },

    /// The repository holds another cluster under this cluster name.
    #[error(
        "{repo}: cluster name `{cluster}` belongs to another PostgreSQL cluster (system identifier {stored_system_id}, PostgreSQL {stored_major}); this server is {actual_system_id}, PostgreSQL {actual_major}\n  fix: use another --cluster name (or repository.cluster) for this server, or another repository; never mix two clusters' backups and WAL"
    )]
    ClusterMismatch {
        /// The repository URL.
        repo: String,
        /// The cluster name.
        cluster: String,
        /// What the repository recorded.
        stored_system_id: String,
        /// What the repository recorded.
        stored_major: u32,
        /// The server being backed up.
        actual_system_id: String,
        /// The server being backed up.
        actual_major: u32,
    },

    /// A repository file exists but cannot be understood.
    #[error("{key}: {problem}\n  fix: {fix}")]
    BadRepositoryFile {
        /// The object.
        key: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// A child program (pg_dump, pg_restore, ...) failed.
    #[error(transparent)]
    Process(#[from] ProcessError),

    /// A client program is missing or does not fit the server.
    #[error("{tool}: {problem}\n  fix: {fix}")]
    Tool {
        /// The program.
        tool: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },

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

    /// No backup has this id.
    #[error(
        "no backup `{id}` in {repo} (cluster {cluster})\n  fix: `pgkeep list` shows the backups there"
    )]
    NoSuchBackup {
        /// The id given.
        id: String,
        /// The repository.
        repo: String,
        /// The cluster name.
        cluster: String,
    },

    /// A backup does not hold the database asked for.
    #[error("backup `{id}` has no database `{database}` (it has: {})\n  fix: pick another backup, or check the name", has.join(", "))]
    NotInBackup {
        /// The backup.
        id: String,
        /// The database asked for.
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

    /// A restore step failed.
    #[error("restoring `{database}` failed: {problem}\n  fix: {fix}")]
    Restore {
        /// The database being restored.
        database: String,
        /// What went wrong.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// A WAL file name or content that pgkeep refuses to archive or fetch.
    #[error("{name}: {problem}\n  fix: {fix}")]
    Wal {
        /// The file name.
        name: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// `wal-push` of a name the archive already holds with other content.
    #[error(
        "{name}: the archive already holds {why} under this name ({key}); nothing was overwritten\n  fix: two servers may be archiving into the same repository and cluster name: give each server its own --cluster, and check that only one primary runs; `pgkeep verify --wal` shows forks"
    )]
    WalConflict {
        /// The file name.
        name: String,
        /// The stored object.
        key: String,
        /// What is stored there.
        why: String,
    },

    /// A physical backup or restore cannot go ahead.
    #[error("{problem}\n  fix: {fix}")]
    Physical {
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// Connecting to or querying PostgreSQL failed.
    #[error("PostgreSQL at {server}: {what}: {detail}\n  fix: {fix}")]
    Postgres {
        /// host:port (never the password).
        server: String,
        /// What was being done.
        what: String,
        /// The server's message, or the chain of causes.
        detail: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
        /// What to do.
        fix: String,
    },
}

impl Error {
    /// Whether the error means the data read back is not what was stored.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::ChecksumMismatch { .. } | Error::Corrupt { .. } | Error::SizeMismatch { .. }
        )
    }
}

/// The full story of a driver error: the server's message with its detail and hint, or the chain of
/// causes ("error connecting to server: No such file or directory").
pub(crate) fn pg_detail(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
