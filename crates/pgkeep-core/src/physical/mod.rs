//! Physical backups: the data directory read by pgkeep itself on the database host ([`local`]),
//! or pg_basebackup's tar stream stored as one object, with PostgreSQL's
//! `backup_manifest` and the configuration files kept from outside the data directory
//! ([`config_files`]), recorded only once the WAL the backup needs is archived. Restoring one is
//! the job of the point-in-time restore module, a layer above this one.

mod backup;
pub(crate) mod config_files;
pub(crate) mod local;

pub use backup::{PhysicalBackupOptions, backup_physical};
pub use local::BackupMode;
