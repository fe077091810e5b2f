//! Refusals and failures of point-in-time restores. A refusal changes nothing; the messages say
//! so where it matters.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

const INSIDE_WINDOW: &str = "choose a target inside the window (`pgkeep list`); WAL not yet archived cannot be restored: `pgkeep restore --switch-wal ...` archives the server's current segment first";
const BEFORE_WINDOW: &str = "choose a target at or after the window's start (`pgkeep list`): no base backup is older; a logical backup may reach further back (`pgkeep restore --db`)";

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
    #[error(
        "{target} is {why}; the restorable window is {window}\n  fix: {}",
        if why.starts_with("before") { BEFORE_WINDOW } else { INSIDE_WINDOW }
    )]
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

    /// The directory a restore puts tablespaces in already exists.
    #[error(
        "{} already exists: a restore into the directory beside it puts the backup's tablespaces there, and it holds another restore's\n  fix: remove it, restore into another directory, or pass --force to replace it too",
        dir.display()
    )]
    TablespacesInTheWay {
        /// `<pgdata>.tablespaces`.
        dir: PathBuf,
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
        "extracting backup {backup} into {} failed ({status}): {stderr}\n  fix: check the free space (the plan says how large the data directory is) and the permissions of the target",
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

    /// `--start` of a data directory whose path pg_ctl's shell would change.
    #[error(
        "{}: pg_ctl starts the server through /bin/sh with the data directory in double quotes, where `{character}` changes the path, so --start cannot work there; nothing was written\n  fix: restore into a directory without $ ` \" or \\ in its path, or restore without --start and start it yourself",
        dir.display()
    )]
    Unstartable {
        /// The target directory.
        dir: PathBuf,
        /// The character.
        character: char,
    },

    /// A restore failed before its server started; what it had written was removed.
    #[error("{source}\n  cleanup: {}", cleanup_text(dir, *created, left.as_deref()))]
    Undone {
        /// Why it failed.
        source: Box<crate::Error>,
        /// The target directory.
        dir: PathBuf,
        /// Whether this restore had created the directory (it was removed), or it existed empty
        /// (it was emptied again).
        created: bool,
        /// Why the cleanup itself failed, if it did.
        left: Option<String>,
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

    /// A restore to the end of the archive whose recovery ended before the last segment its plan
    /// found there: a segment was missing when the server asked for it.
    #[error(
        "recovery ended at LSN {reached}, before the end of the WAL archive the plan found ({wal_to}): a segment was missing when the server asked for it (deleted or lost since the plan), and PostgreSQL took that for the end of the WAL; the server in {} is {state} without the WAL after {reached}\n  fix: do not use it as the restored state; run `pgkeep verify --wal` to find what is missing, then restore again into an empty directory",
        pgdata.display()
    )]
    EndedEarly {
        /// Where recovery stopped.
        reached: crate::pg::Lsn,
        /// The last segment of the plan.
        wal_to: String,
        /// Where the server stands (`promoted`, `paused`).
        state: String,
        /// The restored data directory.
        pgdata: PathBuf,
    },

    /// A recovery target PostgreSQL could not be given.
    #[error("{target}: {problem}; nothing was written\n  fix: {fix}")]
    BadTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        problem: &'static str,
        /// What to give instead.
        fix: &'static str,
    },

    /// Port 0 for the restored server.
    #[error(
        "port 0 is not a port a server can listen on; nothing was written\n  fix: give --port a number from 1 to 65535, or leave it out to keep the backup's port"
    )]
    PortZero,

    /// A time target at or after the newest commit in the archive: recovery would replay all of it
    /// and stop without reaching the target.
    #[error(
        "{target} is at or after the newest commit in the WAL archive ({commit}, in segment {segment}): recovery to a time stops at the first commit after the target, and the archive holds none yet (it is still in the server's current WAL segment), so PostgreSQL would replay all of it and stop with `recovery ended before configured recovery target was reached`; nothing was written\n  fix: rerun with --switch-wal (pgkeep switches the primary to a new WAL segment and waits until the current one is archived), or run `SELECT pg_switch_wal();` on the primary and wait for the archive, or choose a target before {commit}; the restorable window is {window}"
    )]
    AfterNewestCommit {
        /// The target.
        target: String,
        /// The newest commit's time.
        commit: String,
        /// The segment holding it.
        segment: String,
        /// The window.
        window: String,
    },

    /// An LSN target past the end of the archived WAL.
    #[error(
        "{target} is past the end of the WAL archive on timeline {timeline}, which ends with segment {segment}, at LSN {end}; the archive has no gap up to there, and the WAL after it is not archived yet; nothing was written\n  fix: rerun with --switch-wal (pgkeep switches the primary to a new WAL segment and waits until the current one is archived), or choose an LSN before {end}"
    )]
    LsnPastEnd {
        /// The target.
        target: String,
        /// The timeline followed.
        timeline: u32,
        /// The newest archived segment on it.
        segment: String,
        /// Where that segment ends.
        end: crate::pg::Lsn,
    },

    /// `--switch-wal` reached a standby.
    #[error(
        "--switch-wal: the server at {server} is a standby (in recovery); only the primary can switch and archive its WAL; nothing was changed\n  fix: point postgres.conninfo (or PGHOST/PGPORT) at the primary, or leave out --switch-wal"
    )]
    SwitchOnStandby {
        /// Where the server is.
        server: String,
    },

    /// `--switch-wal` reached a server that is not the repository's cluster.
    #[error(
        "--switch-wal: the server at {server} (system identifier {actual}) is not the cluster whose backups are in {repo} (system identifier {expected}); nothing was changed\n  fix: point postgres.conninfo (or PGHOST/PGPORT) at that cluster's primary, or check --repo and --cluster"
    )]
    SwitchWrongServer {
        /// Where the server is.
        server: String,
        /// Its system identifier.
        actual: String,
        /// The backups'.
        expected: String,
        /// The repository.
        repo: String,
    },

    /// The segment `--switch-wal` ended was not archived in time.
    #[error(
        "--switch-wal: segment {segment} was not archived within {seconds} s of the switch; nothing was written\n  fix: check the server's archive_command and `SELECT * FROM pg_stat_archiver` (last_failed_wal, failed_count) and its log, then rerun"
    )]
    SwitchNotArchived {
        /// The segment.
        segment: String,
        /// How long pgkeep waited.
        seconds: u64,
    },
}

fn cleanup_text(dir: &Path, created: bool, left: Option<&str>) -> String {
    match (left, created) {
        (Some(why), _) => format!(
            "{} still holds a partial restore ({why}): remove it, or restore again with --force",
            dir.display()
        ),
        (None, true) => format!(
            "{} was removed again (this restore had created it); nothing is left behind",
            dir.display()
        ),
        (None, false) => format!(
            "{} was emptied again, as it was before; nothing is left behind",
            dir.display()
        ),
    }
}
