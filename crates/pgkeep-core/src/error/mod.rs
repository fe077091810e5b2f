//! The library's error type. Each variant is something a caller can act on, carries its cause
//! (`source`) where there is one, and its message says what failed, why, and what to do next.
//! Messages never contain a password.
//!
//! The layers below have errors of their own, which [`Error`] wraps unchanged: [`ConfigError`]
//! (settings), [`PgError`] (PostgreSQL), [`ProcessError`] and [`ToolError`] (child programs),
//! [`StorageError`] (the repository's storage) and [`FileError`] (local files). The features' own
//! refusals and failures are grouped by feature: [`LogicalError`], [`PhysicalError`],
//! [`WalError`], [`PitrError`], [`RetentionError`] and [`DrillError`].

mod cleanup;
mod drill;
mod logical;
mod physical;
mod pitr;
mod retention;
mod wal;

pub use cleanup::BackupCleanup;
pub use drill::DrillError;
pub use logical::{LogicalError, PayloadProblem, TargetOutcome};
pub use physical::PhysicalError;
pub use pitr::PitrError;
pub use retention::{ExpireReport, RetentionError};
pub use wal::{Damage, SegmentProblem, WalError};

use crate::exec::{ProcessError, ToolError};
use crate::pg::PgError;
use crate::settings::ConfigError;
use crate::storage::{FileError, StorageError};

impl Error {
    /// `error`, noting the damaged backups (their ids) a restore passed over; unchanged when there
    /// are none.
    pub(crate) fn passed_over(error: Error, passed_over: Vec<String>) -> Error {
        if passed_over.is_empty() {
            return error;
        }
        Error::PassedOver {
            source: Box::new(error),
            passed_over,
        }
    }
}

/// Errors returned by `pgkeep-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration or a flag is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// No repository was configured for a command that needs one.
    #[error(
        "no repository configured\n  fix: pass --repo file:///path or --repo s3://bucket/prefix, or set repository.url in the configuration file"
    )]
    NoRepository,

    /// The repository's storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),

    /// Connecting to or querying PostgreSQL failed.
    #[error(transparent)]
    Postgres(#[from] PgError),

    /// A child program (pg_dump, pg_restore, ...) could not be run or failed.
    #[error(transparent)]
    Process(#[from] ProcessError),

    /// A PostgreSQL program is missing or does not fit the server.
    #[error(transparent)]
    Tool(#[from] ToolError),

    /// A local file or directory operation failed.
    #[error("{0}\n  fix: check the path, its permissions and the free space")]
    File(#[from] FileError),

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

    /// A backup's manifest exists but cannot be used: it does not parse, or describes another
    /// backup. The other backups are not affected.
    #[error(
        "backup {id} cannot be used: {problem} ({key})\n  fix: restore another backup (`pgkeep list` shows them); take a new backup soon"
    )]
    UnusableBackup {
        /// The backup id.
        id: String,
        /// The manifest's key.
        key: String,
        /// Why it cannot be used.
        problem: String,
    },

    /// The cluster's identity record is missing while the repository holds its backups: whoever
    /// writes next could claim the name, so writes are refused until it is back.
    #[error(
        "{key} is missing, but {repo} holds {evidence} under cluster name `{cluster}`; backups and WAL pushes are refused until it is back, so that no other server can claim the name\n  fix: restore {key} from a copy, or rebuild it from the manifests with `pgkeep repair-identity`"
    )]
    IdentityMissing {
        /// The record's key.
        key: String,
        /// The repository URL.
        repo: String,
        /// The cluster name.
        cluster: String,
        /// What the repository holds (`3 backups of system identifier ...`).
        evidence: String,
    },

    /// The WAL archived under the cluster name comes from another server (and no identity record
    /// says whose the name is yet).
    #[error(
        "{repo}: the WAL archived under cluster name `{cluster}` is from system identifier {archived}; this server is {actual}\n  fix: use another --cluster name (or repository.cluster) for this server, or another repository; never mix two clusters' WAL"
    )]
    ArchiveMismatch {
        /// The repository URL.
        repo: String,
        /// The cluster name.
        cluster: String,
        /// The system identifier in the archived WAL.
        archived: String,
        /// The server writing now.
        actual: String,
    },

    /// `repair-identity` cannot rebuild the identity record.
    #[error("{key}: cannot be rebuilt: {problem}\n  fix: {fix}")]
    IdentityRepair {
        /// The record's key.
        key: String,
        /// Why not.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// A restore found no backup to use, and passed over backups whose manifest cannot be used.
    #[error(
        "{source}\n  note: {} backup(s) were passed over because their manifest cannot be used ({}); `pgkeep list` shows why",
        passed_over.len(),
        passed_over.join(", ")
    )]
    PassedOver {
        /// Why no backup could be used.
        source: Box<Error>,
        /// The ids of the backups passed over.
        passed_over: Vec<String>,
    },

    /// A repository record (a manifest, the cluster identity) exists but cannot be understood.
    #[error("{key}: not a valid {record}: {source}\n  fix: {fix}")]
    BadRecord {
        /// The object.
        key: String,
        /// What it should be (`manifest`, `cluster identity record`).
        record: &'static str,
        /// The parser's error.
        source: serde_json::Error,
        /// What to do.
        fix: &'static str,
    },

    /// Something pgkeep should never meet: a bug.
    #[error("{problem}\n  fix: this is a bug in pgkeep; please report it")]
    Internal {
        /// What happened.
        problem: String,
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

    /// `verify` found nothing to check.
    #[error(
        "the repository {repo} holds no backup of cluster {cluster}\n  fix: check --repo and --cluster, or take a backup first"
    )]
    NothingToVerify {
        /// The repository.
        repo: String,
        /// The cluster name.
        cluster: String,
    },

    /// A program that reads a backup back (`pg_restore --list`, tar, `pg_verifybackup`) found it
    /// unreadable or damaged.
    #[error("{check} ({status}): {output}")]
    CheckFailed {
        /// What the program found (`pg_restore --list cannot read the archive`, ...).
        check: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        output: String,
    },

    /// `verify` found damaged objects (its report says which).
    #[error(
        "verify found {objects} damaged object(s)\n  fix: do not restore from the backups marked FAILED; take a new backup and find the cause (disk, storage, tampering)"
    )]
    DamagedBackups {
        /// How many objects failed.
        objects: usize,
    },

    /// `verify` found a problem with the repository itself, such as its identity record (its
    /// report says which).
    #[error(
        "verify found {problems} problem(s) with the repository (listed above)\n  fix: follow the fix printed with each; the backups themselves read back"
    )]
    RepositoryProblems {
        /// How many.
        problems: usize,
    },

    /// `verify --wal` found problems in the WAL archive (its report says which).
    #[error(
        "verify --wal found {problems} problem(s) in the WAL archive (listed above)\n  fix: as each problem says: for a gap or a damaged file, push the missing files from the server's pg_wal if they still exist and take a new base backup so that restores need not cross them; for a fork, make sure only one server writes"
    )]
    WalArchiveProblems {
        /// How many problems.
        problems: usize,
    },

    /// A logical backup or restore cannot go ahead or failed.
    #[error(transparent)]
    Logical(#[from] LogicalError),

    /// A physical backup cannot go ahead or failed.
    #[error(transparent)]
    Physical(#[from] PhysicalError),

    /// `wal-push` or `wal-fetch` refused a file, or the archive holds a damaged one.
    #[error(transparent)]
    Wal(#[from] WalError),

    /// A point-in-time restore cannot go ahead or failed.
    #[error(transparent)]
    Pitr(#[from] PitrError),

    /// `expire` failed midway, or a restore's backup expired under it.
    #[error(transparent)]
    Retention(#[from] RetentionError),

    /// A restore drill cannot start.
    #[error(transparent)]
    Drill(#[from] DrillError),

    /// Another run holds the lock this one needs (one backup of a cluster at a time; expire waits
    /// for backups), and it did not let go within the lock wait.
    #[error(
        "{what} did not start: {holder} still holds the lock {} after {waited}\n  fix: let that run finish (or stop it), then run this again; raise [schedule] lock-wait to wait longer",
        path.display()
    )]
    Busy {
        /// What could not start (`backup physical`, `expire`).
        what: String,
        /// Who holds the lock, as it wrote itself down (`pid 4242: backup logical since …`).
        holder: String,
        /// How long this run waited, as text (`30m`).
        waited: String,
        /// The lock file.
        path: std::path::PathBuf,
    },

    /// The lock file cannot be created or locked.
    #[error(
        "cannot take the lock {}: {source}\n  fix: make lock-dir a directory this user may create files in (default /run/lock), or set lock-dir in the configuration",
        path.display()
    )]
    Lock {
        /// The lock file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// The run was interrupted ([`Interrupt`](crate::Interrupt): SIGTERM, SIGINT).
    #[error("interrupted by {reason}\n  fix: run the command again when it can run to its end")]
    Interrupted {
        /// What interrupted it (`SIGTERM`, ...).
        reason: String,
    },

    /// A backup failed or was interrupted after it began to write: `source` is why, and what it
    /// had written was removed (`cleanup` says what, or what is left).
    #[error("{source}\n  {cleanup}")]
    BackupUndone {
        /// Why the backup failed.
        source: Box<Error>,
        /// What was removed.
        cleanup: Box<BackupCleanup>,
    },
}

impl Error {
    /// Whether the error means the data read back is not what was stored.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Error::ChecksumMismatch { .. }
                | Error::Corrupt { .. }
                | Error::SizeMismatch { .. }
                | Error::Wal(WalError::Damaged { .. })
        )
    }

    /// What interrupted the run (`SIGTERM`, ...), when an [`Interrupt`](crate::Interrupt) ended it.
    pub fn interrupted_by(&self) -> Option<&str> {
        match self {
            Error::Interrupted { reason } => Some(reason),
            Error::BackupUndone { source, .. }
            | Error::Logical(LogicalError::Incomplete { source, .. }) => source.interrupted_by(),
            _ => None,
        }
    }

    /// A record that could not be serialized (a bug).
    pub(crate) fn encode(key: &str, e: serde_json::Error) -> Error {
        Error::Internal {
            problem: format!("{key}: {e}"),
        }
    }
}
