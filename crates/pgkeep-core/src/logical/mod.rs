//! Logical backups and restores: pg_dump (custom format, its own compression off) and
//! `pg_dumpall --globals-only` streamed through the pipeline into the repository ([`backup`]),
//! and pg_restore ([`restore`]) or psql ([`globals`]) fed back from it. [`toc`] reads pg_dump's
//! archive format.

mod backup;
mod globals;
mod restore;
mod roles;
mod target;
mod toc;

pub use backup::{LogicalBackupOptions, backup_logical};
pub use globals::{GlobalsOptions, GlobalsReport, restore_globals};
pub use restore::{
    BackupChoice, LogicalRestoreOptions, LogicalRestorePlan, LogicalRestoreReport,
    plan_logical_restore, restore_logical,
};
