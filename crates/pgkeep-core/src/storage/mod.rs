//! Repository storage: a small object-store trait and its two backends, a local directory
//! ([`LocalStorage`]) and S3 ([`S3Storage`]).
//!
//! Keys are relative, `/`-separated paths (`main/backups/20261125T150430Z/manifest.json`). The
//! ordering rule every caller relies on: a [`Storage::put`] is all or nothing. Until it returns `Ok`,
//! nothing is visible under the key (a local put publishes a fully written, fsynced staging file by
//! rename or hard link; an S3 put completes or aborts its multipart upload); an interrupted put —
//! an error, a dropped future, a killed process — leaves no object behind that `get`, `head` or `list`
//! would show.

mod durable;
#[cfg(test)]
pub(crate) mod faulty;
mod local;
mod s3;

use std::fmt;
use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

pub use durable::{FileError, remove_file, write_file};
pub use local::LocalStorage;
pub use s3::S3Storage;

/// A boxed byte stream returned by [`Storage::get`].
pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;

/// How a put treats an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Fail with [`StorageError::AlreadyExists`] if the key exists; never replace it.
    Create,
}

/// What storage knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the repository root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time, if the backend reports one.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// A storage failure. Callers act on [`StorageError::is_not_found`] and
/// [`StorageError::is_permanent`]; the message says what failed and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No object under that key.
    #[error("{key}: no such object in the repository")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A [`PutMode::Create`] put found the key taken; nothing was written.
    #[error("{key}: already exists in the repository and is never overwritten")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A local repository's root directory does not exist: reads refuse it rather than take it
    /// for an empty repository (an unmounted disk, a wrong path).
    #[error(
        "repository directory {path} does not exist\n  fix: check the path in --repo / repository.url and that its disk is mounted; the first backup or wal-push creates it"
    )]
    RootMissing {
        /// The root directory.
        path: std::path::PathBuf,
    },
    /// The key is not a clean relative path.
    #[error("invalid repository key `{key}`: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading the data to be stored failed; nothing was stored.
    #[error("reading the data to store under {key} failed: {source}")]
    Source {
        /// The key being written.
        key: String,
        /// Why.
        source: std::io::Error,
    },
    /// Reading an object's bytes from the repository failed midway.
    #[error(
        "reading {key} from the repository failed: {source}\n  fix: check the repository's storage and run the command again"
    )]
    Read {
        /// The key being read.
        key: String,
        /// Why.
        source: std::io::Error,
    },
    /// A local filesystem operation failed.
    #[error("{op} {path} failed: {source}\n  fix: {fix}")]
    Local {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
        /// What to do.
        fix: &'static str,
    },
    /// An S3 request failed (after retries, when the error was transient).
    #[error("S3 {op} of s3://{bucket}/{key} failed: {message}\n  fix: {fix}")]
    S3 {
        /// The operation (`PutObject`, `UploadPart`, ...).
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The full object key.
        key: String,
        /// The service's error code and message, or the transport error.
        message: String,
        /// What to do.
        fix: String,
        /// False for transient failures (5xx, throttling, timeouts, connection errors) that were
        /// retried until the attempts ran out.
        permanent: bool,
    },
}

impl StorageError {
    /// Maps a failure to read the data being stored under `key`.
    pub(crate) fn source_failed(key: &str) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
        move |source| StorageError::Source {
            key: key.to_string(),
            source,
        }
    }

    /// Whether the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    /// Whether retrying later cannot help (bad credentials, missing bucket, invalid key, an existing
    /// object) as opposed to a transient outage.
    pub fn is_permanent(&self) -> bool {
        match self {
            StorageError::S3 { permanent, .. } => *permanent,
            StorageError::Local { source, .. }
            | StorageError::Source { source, .. }
            | StorageError::Read { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            _ => true,
        }
    }
}

/// Checks that a key is a clean relative path: no leading `/`, no empty, `.` or `..` segments, and
/// no segment that looks like a staging file.
pub(crate) fn validate_key(key: &str) -> Result<(), StorageError> {
    let bad = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return bad("starts or ends with `/`");
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return bad("has an empty, `.` or `..` segment");
        }
        if segment.starts_with(durable::STAGING_PREFIX) {
            return bad("uses the reserved staging prefix");
        }
    }
    if key.contains('\0') {
        return bad("contains a NUL byte");
    }
    Ok(())
}

/// An object store holding a repository.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    /// The repository's URL (`file:///...` or `s3://bucket/prefix`), for messages.
    fn url(&self) -> String;

    /// Streams `body` to `key` until it ends. All or nothing: see the module docs. Returns the stored
    /// object's metadata.
    async fn put(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<ObjectMeta, StorageError>;

    /// Streams an object, or the byte `range` of it.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteReader, StorageError>;

    /// An object's metadata, or [`StorageError::NotFound`].
    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError>;

    /// Makes sure the repository exists before its first write: a local repository's root
    /// directory is created (mode 0700); S3 needs nothing.
    async fn create_root(&self) -> Result<(), StorageError>;

    /// Every object whose key starts with `prefix`, sorted by key; [`StorageError::RootMissing`]
    /// when a local repository's root does not exist.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;

    /// Writes under `prefix` that were started and never finished (a killed writer's): local
    /// staging files (under their own names), S3 multipart uploads never completed (under the key
    /// they were meant for). No other call sees them.
    async fn list_unfinished(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;

    /// Deletes an object; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Removes an unfinished write that [`Storage::list_unfinished`] returned (`write`, as
    /// listed): a local staging file, or the S3 multipart uploads to that key started no later
    /// than it was (an upload begun since belongs to a writer that is running now, and is left
    /// alone). One that is gone already is no error.
    async fn remove_unfinished(&self, write: &ObjectMeta) -> Result<(), StorageError>;

    /// Removes the directory a local repository keeps for `prefix` (`main/backups/<id>/`) once it
    /// holds no object (a staging file of a killed writer keeps it); a directory that is gone or
    /// not empty is no error. Object stores have no directories: there this does nothing.
    async fn remove_empty_dir(&self, prefix: &str) -> Result<(), StorageError> {
        validate_key(prefix.trim_end_matches('/'))
    }

    /// The file holding `key` when the repository is a local directory: a reader on this machine
    /// may read it directly, into a buffer it keeps, without the async file layer. `None` for an
    /// object store (and for wrappers that must see every read).
    fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
        let _ = key;
        None
    }

    /// Stores a small in-memory object.
    async fn put_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        mode: PutMode,
    ) -> Result<ObjectMeta, StorageError> {
        let mut reader = bytes;
        self.put(key, &mut reader, mode).await
    }

    /// Reads a whole (small) object into memory.
    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let mut reader = self.get(key, None).await?;
        let mut out = Vec::new();
        reader
            .read_to_end(&mut out)
            .await
            .map_err(|source| StorageError::Read {
                key: key.to_string(),
                source,
            })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "./a",
            "a/.pgkeep-tmp-x",
            "a\0b",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "main/backups/x/manifest.json", "a/.hidden"] {
            assert!(validate_key(good).is_ok(), "{good:?} rejected");
        }
    }
}
