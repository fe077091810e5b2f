//! Refusals and failures of physical backups.

/// A physical backup cannot go ahead or failed; nothing was recorded as a backup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhysicalError {
    /// The server is a standby but `--from-standby` was not given.
    #[error(
        "{server} is a standby (in recovery)\n  fix: pass --from-standby to back up this standby, or point pgkeep at the primary"
    )]
    IsStandby {
        /// host:port.
        server: String,
    },

    /// `--from-standby` was given but the server is a primary.
    #[error(
        "--from-standby was given but {server} is a primary\n  fix: drop --from-standby, or point pgkeep at the standby"
    )]
    NotStandby {
        /// host:port.
        server: String,
    },

    /// `wal_level = minimal`.
    #[error(
        "wal_level is minimal: a base backup cannot be recovered from\n  fix: set wal_level = replica in postgresql.conf and restart PostgreSQL"
    )]
    WalLevelMinimal,

    /// `archive_mode = off` on a primary.
    #[error(
        "archive_mode is off: without archived WAL a base backup can never be restored\n  fix: set archive_mode = on and archive_command = 'pgkeep wal-push %p' (see deploy/postgresql.pgkeep.conf), then restart PostgreSQL"
    )]
    ArchiveModeOff,

    /// The cluster has tablespaces outside the data directory, which the backup would miss.
    #[error(
        "the cluster has tablespaces outside the data directory: {}; pgkeep's physical backups hold the data directory only, so these would be missing; nothing was stored\n  fix: move their objects to pg_default (ALTER TABLE/INDEX ... SET TABLESPACE pg_default, then DROP TABLESPACE), or back those databases up with `pgkeep backup logical`",
        tablespaces.join(", ")
    )]
    Tablespaces {
        /// `name (location)` of each.
        tablespaces: Vec<String>,
    },

    /// pg_basebackup's output lacks something the manifest needs.
    #[error(
        "pg_basebackup's output has no usable {missing}\n  fix: check that pg_basebackup fits the server (`pgkeep check`); this may be a bug in pgkeep"
    )]
    BaseBackupOutput {
        /// What is missing (`backup_label`, `WAL-Ranges in backup_manifest`, ...).
        missing: &'static str,
    },

    /// The segment holding the backup's end was not archived in time.
    #[error(
        "WAL segment {segment}, where this backup ends, was not archived within {seconds} s; without it the backup cannot be restored, so it was not recorded\n  fix: {}",
        if *from_standby {
            "the primary archives a standby's WAL: check its archive_command (`pgkeep wal-push %p`, same repository and cluster name) and run `SELECT pg_switch_wal()` there or set archive_timeout; then back up again"
        } else {
            "check archive_command = 'pgkeep wal-push %p' with this repository and cluster name (`pgkeep check`) and the archiver errors in the server log (pg_stat_archiver); then back up again"
        }
    )]
    WalNotArchived {
        /// The segment.
        segment: String,
        /// How long pgkeep waited.
        seconds: u64,
        /// Whether the backup was taken from a standby.
        from_standby: bool,
    },

    /// `--mode local` was asked for a server whose data directory this process cannot read.
    #[error(
        "--mode local reads the data directory itself, but {reason}\n  fix: run pgkeep on the database host as the server's OS user (postgres), set [postgres] pgdata if the server reports another path, or use --mode stream"
    )]
    LocalUnavailable {
        /// Why: the path and what went wrong.
        reason: String,
    },

    /// `--mode local` with `--from-standby`.
    #[error(
        "--mode local backs up a primary; a standby is backed up with pg_basebackup\n  fix: use --mode stream (or leave --mode out) with --from-standby"
    )]
    LocalFromStandby,
}
