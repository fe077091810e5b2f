//! pgkeep-core: PostgreSQL backups, WAL archiving and point-in-time restores, as a library.
//!
//! Every feature of the `pgkeep` command line is a call into this crate first; the CLI only parses
//! flags, draws progress and maps errors to exit codes. A nightly logical backup of every database
//! and the roles, into a local repository, without a configuration file:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use pgkeep_core::{
//!     ConnInfo, LogicalBackupOptions, NoProgress, RepoLocation, Repository, Settings,
//!     backup_logical,
//! };
//!
//! # async fn nightly() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = Settings::new(
//!     RepoLocation::parse("file:///var/lib/pgkeep/repo")?,
//!     ConnInfo::from_conninfo_and_env(Some("host=/var/run/postgresql user=postgres"))?,
//! );
//! let repo = Repository::open(&settings).await?;
//! let options = LogicalBackupOptions {
//!     all: true,
//!     jobs: 2,
//!     ..LogicalBackupOptions::default()
//! };
//! let manifest = backup_logical(&settings, &repo, &options, Arc::new(NoProgress)).await?;
//! println!("backup {}: {} bytes stored", manifest.id, manifest.stored_size());
//! # Ok(()) }
//! ```
//!
//! The incident at 15:07: someone dropped a table at 15:05. Plan a restore to 15:04:30 — which
//! base backup, which WAL, proven present before anything is written — then carry it out:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use pgkeep_core::{
//!     NoProgress, PhysicalRestoreOptions, PhysicalRestoreRequest, RecoveryTarget, Repository,
//!     Settings, TargetAction, TimelineChoice, parse_time, plan_physical_restore,
//!     restore_physical,
//! };
//!
//! # async fn incident(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
//! let repo = Repository::open(&settings).await?;
//! let request = PhysicalRestoreRequest {
//!     target: RecoveryTarget::Time(parse_time("2026-11-25 15:04:30+01")?),
//!     backup: None,
//!     timeline: TimelineChoice::Latest,
//!     pgdata: "/srv/restore".into(),
//!     force: false,
//!     bin_dir: settings.bin_dir.clone(),
//! };
//! let plan = plan_physical_restore(&repo, &request).await?;
//! println!("backup {}, WAL {} to {}", plan.backup, plan.wal_from, plan.wal_to);
//! let options = PhysicalRestoreOptions {
//!     start: true,
//!     target_action: TargetAction::Pause,
//!     port: Some(5433),
//!     keep_archiving: false,
//!     owner: None,
//!     wal_fetch_program: Some("/usr/local/bin/pgkeep".into()),
//!     server_settings: Vec::new(),
//! };
//! let report = restore_physical(&settings, &repo, &plan, &options, Arc::new(NoProgress)).await?;
//! println!("{}: reached {:?}", report.state, report.reached_lsn);
//! # Ok(()) }
//! ```
//!
//! `crates/pgkeep-core/examples/` has both as runnable programs.
//!
//! # The surface
//!
//! - Settings: [`Settings`] (from a file with [`Settings::load`], or in code with
//!   [`Settings::new`]), [`Config`] (the file as written), [`ConnInfo`] (libpq's rules),
//!   [`RepoLocation`], [`Compression`].
//! - The repository: [`Repository`] over a [`Storage`] ([`LocalStorage`], [`S3Storage`]); its
//!   backups' [`Manifest`]s ([`read_catalog`], [`find_backup`]); objects streamed through zstd and
//!   sha256 ([`store_object`], [`fetch_object`]).
//! - Logical: [`backup_logical`], [`plan_logical_restore`] and [`restore_logical`],
//!   [`restore_globals`].
//! - Physical and WAL: [`backup_physical`], [`wal_push`], [`wal_fetch`],
//!   [`recoverable_window`], [`plan_physical_restore`] and [`restore_physical`].
//! - Checks: [`verify_backups`], [`verify_wal`], [`check()`].
//! - Retention: [`plan_expire`] (the policy of `[retention]`, [`apply_policy`] as a pure
//!   function) and [`expire`]; [`pin_backup`], [`unpin_backup`] (their arguments checked by
//!   [`validate_backup_id`] and [`validate_pin_reason`]); the [`Lease`]s running backups
//!   and restores hold, which expire respects.
//! - Restore drills: [`drill()`] restores backups into throwaway clusters, checks and measures
//!   them and records the result beside each backup ([`DrillRecord`]); [`drill_history`] and
//!   [`last_drills`] read the records back.
//! - Errors: [`Error`], with the lower layers' errors and each feature's refusals as variants.
//!
//! The code is layered (docs/architecture.md): PostgreSQL vocabulary and access, settings, child
//! processes, storage, errors, streams, the repository, then the features; each layer imports only
//! from the layers before it.

mod check;
mod drill;
mod error;
mod exec;
mod lock;
mod logical;
mod pg;
mod physical;
mod pitr;
mod repo;
mod retention;
mod settings;
mod storage;
mod stream;
mod verify;
mod wal;
mod workers;

pub use check::{
    CheckReport, ConnectionReport, DataDirReport, Problem, RepositoryReport, Severity, check,
};
pub use drill::{
    DrillAim, DrillCause, DrillCheck, DrillCheckKind, DrillCheckResult, DrillHistory, DrillOptions,
    DrillOutcome, DrillRecord, DrillReport, DrillRun, DrillSelection, DrillTarget, LastDrills,
    UnreadableRecord, drill, drill_history, last_drills,
};
pub use error::{
    BackupCleanup, Damage, DrillError, Error, ExpireReport, LogicalError, PhysicalError, PitrError,
    RetentionError, SegmentProblem, WalError,
};
pub use exec::{Interrupt, ProcessError, ToolError, ToolInfo, host_name, shell_quote};
pub use lock::{Acquired, LockFile, WorkLock, lock_work, work_lock_path};
pub use logical::{
    BackupChoice, GlobalsReport, LogicalBackupOptions, LogicalRestoreOptions, LogicalRestorePlan,
    LogicalRestoreReport, backup_logical, plan_logical_restore, restore_globals, restore_logical,
};
// Logical restores: what a failed one found and left, and how existing roles are treated.
pub use error::{PayloadProblem, TargetOutcome};
pub use logical::GlobalsOptions;
// Writing PostgreSQL's configuration (the failover crate writes restore_command with them).
pub use pg::{
    ConnInfo, ConnInfoError, DEFAULT_PORT, DEFAULT_SEGMENT_SIZE, DEFAULT_SOCKET_DIR, Lsn,
    PasswordSource, PgError, ServerInfo, TimeError, UnknownZone, WalFile, connect, parse_time,
    parse_time_in, segment_name, server_info,
};
pub use pg::{command_percent, conf_quote};
pub use physical::{BackupMode, PhysicalBackupOptions, backup_physical};
pub use pitr::{
    PhysicalRestoreOptions, PhysicalRestorePlan, PhysicalRestoreReport, PhysicalRestoreRequest,
    RECOVERY_LEASE, RecoveryTarget, RecoveryWindow, RestoreState, SwitchedWal, TargetAction,
    TimelineChoice, TimelineChoiceError, WindowEnd, plan_physical_restore, recoverable_window,
    restore_physical, switch_wal,
};
pub use repo::catalog::{
    BackupKind, BaseMode, ConfigFile, DatabaseInfo, LogicalOptions, Manifest, ManifestObject,
    ObjectFormat, ObjectRole, PhysicalInfo, find_backup,
};
pub use repo::lease::{HeldLease, Lease, LeasePurpose, UnreadableLease};
pub use repo::scan::{Catalog, DamagedBackup, Leftover, LeftoverKind, read_catalog};
pub use repo::{ClusterIdentity, Repository, open_storage};
pub use retention::{
    BytesToFree, ExpireOptions, ExpirePlan, FUTURE_TOLERANCE, FutureBackup, KeepReason,
    LeftoverAction, Pin, PinChange, PinOutcome, PlannedBackup, PlannedLeftover, PolicyBackup,
    Series, UNFINISHED_MIN_AGE, WalObject, WalPlan, WalStart, apply_policy, expire, pin_backup,
    plan_expire, unpin_backup, validate_backup_id, validate_pin_reason,
};
pub use settings::{
    ArchivingConfig, Compression, CompressionConfig, Config, ConfigError, DEFAULT_CLUSTER,
    DEFAULT_CONFIG_PATHS, DEFAULT_LOCK_DIR, DEFAULT_STATE_DIR, DrillConfig, DrillSettings,
    FailoverConfig, InvalidValue, JobConfig, NodeConfig, NotifyConfig, OverdueConfig, Overrides,
    PostgresConfig, RepoLocation, RepositoryConfig, Retention, RetentionConfig, RetentionPolicy,
    RetentionPolicyConfig, S3Config, S3Settings, ScheduleConfig, Settings, SyncConfig, WalConfig,
    Zone, format_duration, parse_duration, validate_cluster_name,
};
pub use storage::{
    ByteReader, FileError, LocalStorage, ObjectMeta, PutMode, S3Storage, Storage, StorageError,
    remove_file, write_file,
};
pub use stream::{Codec, NoProgress, Progress, StoredObject, fetch_object, store_object};
pub use verify::{
    BackupCheck, ObjectCheck, VerifyReport, VerifySelection, verify_backups, verify_wal,
};
pub use wal::{
    BranchCause, BranchRecord, Fetched, IdentityEvidence, IdentityRepair, ManifestOwner, Pushed,
    TimelineSummary, WalReport, accept_fork, ensure_identity, record_branch, repair_identity,
    wal_fetch, wal_push,
};
