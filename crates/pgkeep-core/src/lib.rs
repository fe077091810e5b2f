//! pgkeep-core: PostgreSQL backups, WAL archiving and restores, as a library.
//!
//! Every feature of the `pgkeep` command line is a call into this crate first; the CLI only parses
//! flags, draws progress and maps errors to exit codes. The pieces, in the order data flows through
//! them:
//!
//! - [`Settings`] — configuration from a TOML file, flags and the environment ([`config`]), with the
//!   PostgreSQL connection resolved the way libpq does it ([`ConnInfo`]).
//! - [`Storage`] — a repository's object store: a local directory ([`LocalStorage`]) or S3
//!   ([`S3Storage`]). A put is all or nothing.
//! - [`pipeline`] — streams bytes through multi-threaded zstd and sha256 into storage and back,
//!   with bounded memory and no temporary files; [`StoredObject`] records what was written.
//! - [`Repository`] — a cluster's place in the storage, guarded by the identity record that keeps two
//!   clusters from sharing a name.
//! - [`check()`] — the preflight behind `pgkeep check`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgkeep_core::Error> {
//! use pgkeep_core::{Compression, LocalStorage, PutMode, pipeline};
//!
//! let storage = LocalStorage::new("/var/lib/pgkeep/repo");
//! let data: &[u8] = b"hello";
//! let stored = pipeline::store(&storage, "main/demo.zst", data, PutMode::Create, Compression::default()).await?;
//! let mut out = Vec::new();
//! pipeline::fetch(&storage, &stored, &mut out).await?;
//! assert_eq!(out, b"hello");
//! # Ok(()) }
//! ```

pub mod archive;
pub mod catalog;
mod check;
pub mod config;
mod conninfo;
mod error;
pub mod logical;
pub mod pg;
pub mod physical;
pub mod pipeline;
pub mod process;
pub mod progress;
mod repo;
pub mod storage;
mod tarwatch;
pub mod time;
pub mod tools;
pub mod wal;

pub use catalog::{BackupKind, Manifest};
pub use check::{
    CheckReport, ConnectionReport, DataDirReport, Problem, RepositoryReport, Severity, check,
};
pub use config::{ConfigError, Overrides, RepoLocation, S3Settings, Settings};
pub use conninfo::{ConnInfo, PasswordSource};
pub use error::Error;
pub use pipeline::{Compression, StoredObject};
pub use progress::{NoProgress, Progress};
pub use repo::{ClusterIdentity, Repository, open_storage};
pub use storage::{LocalStorage, ObjectMeta, PutMode, S3Storage, Storage, StorageError};
