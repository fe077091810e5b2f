//! Refusals and failures of point-in-time restores. A refusal changes nothing; the messages say
//! so where it matters.

use std::path::PathBuf;
use std::process::ExitStatus;

const INSIDE_WINDOW: &str = "choose a target inside the window (`pgkeep list`); WAL not yet archived cannot be restored (`SELECT pg_switch_wal()` on the server archives the current segment)";

/// A point-in-time restore cannot go ahead or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PitrError {
    /// The repository has no physical backup of the cluster.
    #[error(
        "{repo} holds no physical backup of cluster {cluster}\n  fix: take one with `pgkeep backup physical`, or check --repo and --cluster"
    )]
    NoPhysicalBackup {
        /// The repository.
        repo: String,
        /// The cluster name.
        cluster: String,
    },

    /// The target is outside the recoverable window.
    #[error("{target} is {why}; the restorable window is {window}\n  fix: {INSIDE_WINDOW}")]
    OutsideWindow {
        /// The target, as the plan prints it.
        target: String,
        /// `before the end of the oldest base backup` or `after the newest archived WAL`.
        why: &'static str,
        /// The window, as `list` prints it.
        window: String,
    },

    /// `--backup` named a logical backup.
    #[error(
        "backup {id} is a logical backup\n  fix: restore it with `pgkeep restore --db NAME --backup ID`, or pick a physical backup (`pgkeep list`)"
    )]
    NotPhysical {
        /// The backup.
        id: String,
    },

    /// The target is before the chosen backup is consistent.
    #[error(
        "{target} is before backup {backup} ended ({end}); recovery cannot stop before a backup is consistent\n  fix: choose an older backup with --backup, or a later target"
    )]
    BeforeBackupEnd {
        /// The target.
        target: String,
        /// The backup.
        backup: String,
        /// Where or when it ends.
        end: String,
    },

    /// A segment recovery needs is not in the archive.
    #[error(
        "the WAL archive is missing segment {segment}, which recovery from backup {backup} ({start} onward) to {target} needs; nothing was written\n  fix: find the segment (the server's pg_wal, another copy of the archive) and store it with `pgkeep wal-push`, or choose an earlier target; `pgkeep verify --wal` lists every gap"
    )]
    WalMissing {
        /// The missing segment.
        segment: String,
        /// The backup.
        backup: String,
        /// Its first segment.
        start: String,
        /// The target.
        target: String,
    },

    /// The backup's timeline is not in the history of the target timeline.
    #[error(
        "backup {backup} is on timeline {timeline}, which is not in the history of timeline {target} (its history: {history:?})\n  fix: pass --timeline current, or choose a backup taken on that timeline's history (`pgkeep list`)"
    )]
    NotAncestor {
        /// The backup.
        backup: String,
        /// Its timeline.
        timeline: u32,
        /// The target timeline.
        target: u32,
        /// The target timeline's ancestry.
        history: Vec<u32>,
    },

    /// A server seems to run in the target directory.
    #[error(
        "{} holds postmaster.pid: a server may be running there; nothing was changed\n  fix: stop that server first (pg_ctl -D DIR stop), or restore into another directory",
        dir.display()
    )]
    ServerRunning {
        /// The target directory.
        dir: PathBuf,
    },

    /// The target directory is not empty and `--force` was not given.
    #[error(
        "{} is not empty ({entries} entries); nothing was changed\n  fix: restore into an empty or new directory, or pass --force to replace its contents",
        dir.display()
    )]
    TargetNotEmpty {
        /// The target directory.
        dir: PathBuf,
        /// How many entries it holds.
        entries: usize,
    },

    /// The user to own the restored files does not exist.
    #[error(
        "user `{user}` (owner of the restored files) does not exist\n  fix: pass --owner with the user PostgreSQL runs as"
    )]
    NoSuchUser {
        /// The user.
        user: String,
    },

    /// `--owner` without root.
    #[error(
        "--owner {user} needs root\n  fix: run the restore as root, or as the user the server runs as without --owner"
    )]
    OwnerNeedsRoot {
        /// The user.
        user: String,
    },

    /// The backup's manifest lists no base object.
    #[error(
        "backup {backup} lists no base object\n  fix: the manifest is damaged; choose another backup with --backup"
    )]
    NoBaseObject {
        /// The backup.
        backup: String,
    },

    /// tar could not extract the base backup.
    #[error(
        "extracting backup {backup} into {} failed ({status}): {stderr}\n  fix: check the free space and permissions of the target; the directory holds a partial restore: remove it or use --force",
        dir.display()
    )]
    ExtractFailed {
        /// The backup.
        backup: String,
        /// The target directory.
        dir: PathBuf,
        /// tar's exit status.
        status: ExitStatus,
        /// What tar said.
        stderr: String,
    },

    /// The path of the running pgkeep binary, for `restore_command`, is unknown.
    #[error(
        "cannot find the pgkeep binary for restore_command: {source}\n  fix: run pgkeep by its full path"
    )]
    OwnBinary {
        /// Why.
        source: std::io::Error,
    },

    /// `pg_ctl start` failed.
    #[error("pg_ctl start failed ({status}): {stderr}\n  fix: read {}", log.display())]
    StartFailed {
        /// pg_ctl's exit status.
        status: ExitStatus,
        /// What it said.
        stderr: String,
        /// The restored server's log.
        log: PathBuf,
    },

    /// The restored server stopped before reaching the target.
    #[error(
        "the restored server stopped during recovery; its log ends with:\n    {tail}\n  fix: read {}: `recovery ended before configured recovery target was reached` means the target is past the archived WAL (choose an earlier one, `pgkeep list`); `could not restore file` means wal-fetch failed (run it by hand as the server's user)",
        log.display()
    )]
    RecoveryStopped {
        /// The restored server's log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
}
