//! WAL archiving: `wal-push` (archive_command), `wal-fetch` (restore_command), and reading the
//! archive as a whole (timelines, gaps, forks) for restores, `list` and `verify --wal`.
//!
//! Files are stored at `<cluster>/wal/<timeline>/<name>.zst`, where `<timeline>` is the eight hex
//! digits of the file's own timeline. Each object is one zstd skippable frame holding a small header
//! (the original size and its sha256) followed by one ordinary zstd frame with zstd's content
//! checksum, so `zstd -d` alone can still read it and `wal-fetch` can prove what it returns.
//!
//! The rules PostgreSQL depends on:
//! - `wal-push` returns only once the object is durable; the same content pushed again succeeds
//!   (PostgreSQL retries after a crash), different content under the same name is refused and the
//!   stored object is left alone.
//! - `wal-fetch` reports "not found" ([`Fetched::NotFound`]) only when the archive really has no such
//!   file; every other failure is an error, which the CLI turns into an exit code above 125 so that
//!   PostgreSQL stops instead of ending recovery early.

mod branches;
mod codec;
mod fetch;
mod identity;
mod push;
mod timeline;
mod verify;
mod waldump;

pub(crate) use branches::newest_timeline;
pub use branches::{BranchCause, BranchRecord, accept_fork, record_branch};
pub use fetch::{Fetched, wal_fetch};
pub use identity::{
    IdentityEvidence, IdentityRepair, ManifestOwner, ensure_identity, repair_identity,
};
pub use push::{Pushed, wal_push};
#[cfg(test)]
pub(crate) use timeline::Switch;
pub(crate) use timeline::{Archive, ChainBreak, ChainEnd};
pub(crate) use verify::verify_archive;
pub use verify::{TimelineSummary, WalReport};
pub(crate) use waldump::{SCAN_SEGMENTS, newest_commit};

use crate::error::{Error, WalError};
use crate::pg::WalFile;
use crate::repo::Repository;

/// The repository key of archived file `name`.
pub(crate) fn wal_key(repo: &Repository, name: &str) -> Result<String, Error> {
    let file = WalFile::parse(name).ok_or_else(|| not_wal_file(name))?;
    Ok(key_of(repo, &file, name))
}

/// The repository key of `file`, named `name`.
fn key_of(repo: &Repository, file: &WalFile, name: &str) -> String {
    repo.key(&format!("wal/{:08X}/{name}.zst", file.timeline()))
}

fn not_wal_file(name: &str) -> Error {
    Error::Wal(WalError::NotWalFile {
        name: name.to_string(),
    })
}
