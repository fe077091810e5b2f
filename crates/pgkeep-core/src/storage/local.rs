//! A repository in a local directory.
//!
//! A put is a durable write ([`super::durable`]): a uniquely named staging file
//! (`.pgkeep-tmp-<random>`) in the target's own directory, fsynced, published — by `rename` to
//! overwrite, or by `link`, which fails if the name exists, to create — and the directory fsynced so
//! the new name survives a crash. A staging file left by a killed process is never listed and
//! never read.

use std::io::SeekFrom;
use std::ops::Range;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::durable::{FileError, STAGING_PREFIX, Staged, fsync_dir};
use super::{ByteReader, ObjectMeta, PutMode, Storage, StorageError, validate_key};

const COPY_BUFFER: usize = 1024 * 1024;

/// A repository rooted at a local directory, created (mode 0700) on first write.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

fn local_err(op: &'static str, path: &Path, source: std::io::Error) -> StorageError {
    let fix = match source.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "run pgkeep as the user that owns the repository directory, or fix its permissions"
        }
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            "free space on the filesystem holding the repository (`df` shows it; remove files that \
             are not pgkeep's, or grow the filesystem), or move the repository to a larger one"
        }
        std::io::ErrorKind::ReadOnlyFilesystem => {
            "remount the repository's filesystem read-write, or move the repository"
        }
        std::io::ErrorKind::NotFound => "check that the repository path exists and is mounted",
        _ => "check the repository's filesystem (mounted, writable, healthy)",
    };
    StorageError::Local {
        op,
        path: path.to_path_buf(),
        source,
        fix,
    }
}

fn local_file_err(e: FileError) -> StorageError {
    local_err(e.op, &e.path, e.source)
}

/// Gives `path` (just created by root) to the owner of the repository's root directory, so that
/// a repository owned by the servers' OS user stays theirs when root writes into it (`failover
/// promote` recording a timeline, `check`'s probes). Best effort: nothing to do unless root runs
/// and the root directory belongs to someone else.
fn keep_owner(root: &Path, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    if crate::exec::euid() != Some(0) {
        return;
    }
    if let Ok(meta) = std::fs::metadata(root)
        && meta.uid() != 0
    {
        let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
    }
}

/// Creates `dir` and its missing parents (mode 0700), and fsyncs the parent of each, so that a
/// crash cannot lose a directory holding a published object. Under `root`, they keep its owner.
fn create_dirs(root: &Path, dir: &Path) -> Result<(), StorageError> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    for created in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(0o700).create(created) {
            Ok(()) => keep_owner(root, created),
            // Another put created it meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(local_err("creating directory", created, e)),
        }
        if let Some(parent) = created.parent() {
            fsync_dir(parent).map_err(|e| local_err("fsyncing directory", parent, e))?;
        }
    }
    Ok(())
}

impl LocalStorage {
    /// A repository at `root` (an absolute path).
    pub fn new(root: impl Into<PathBuf>) -> LocalStorage {
        LocalStorage { root: root.into() }
    }

    /// The repository's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    /// Writes `body` into the staging file; errors name `target`, the file being written.
    async fn write_staging(
        &self,
        key: &str,
        staging: &Path,
        target: &Path,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StorageError> {
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = options
            .open(staging)
            .await
            .map_err(|e| local_err("creating", target, e))?;
        let mut buf = vec![0u8; COPY_BUFFER];
        let mut size = 0u64;
        loop {
            let n = body
                .read(&mut buf)
                .await
                .map_err(StorageError::source_failed(key))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])
                .await
                .map_err(|e| local_err("writing", target, e))?;
            size += n as u64;
        }
        file.flush()
            .await
            .map_err(|e| local_err("writing", target, e))?;
        // The data must be on disk before the name points at it, or a crash could publish a hole.
        file.sync_all()
            .await
            .map_err(|e| local_err("fsyncing", target, e))?;
        Ok(size)
    }
}

#[async_trait]
impl Storage for LocalStorage {
    fn url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<ObjectMeta, StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        if mode == PutMode::Create && tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Err(StorageError::AlreadyExists {
                key: key.to_string(),
            });
        }
        if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            let dir = dir.clone();
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || create_dirs(&root, &dir))
                .await
                .map_err(|e| local_err("creating directory", &self.root, e.into()))??;
        }
        let staged = Staged::in_dir(&dir);
        let size = self.write_staging(key, staged.path(), &path, body).await?;
        let key_owned = key.to_string();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            staged
                .publish(&path, mode)
                .map(|()| keep_owner(&root, &path))
                .map_err(|e| {
                    if e.is_already_exists() {
                        StorageError::AlreadyExists { key: key_owned }
                    } else {
                        local_file_err(e)
                    }
                })
        })
        .await
        .map_err(|e| local_err("publishing", &dir, e.into()))??;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            modified: Some(chrono::Utc::now()),
        })
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteReader, StorageError> {
        let path = self.path(key)?;
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StorageError::NotFound {
                    key: key.to_string(),
                }
            } else {
                local_err("opening", &path, e)
            }
        })?;
        match range {
            None => Ok(Box::pin(tokio::io::BufReader::with_capacity(
                COPY_BUFFER,
                file,
            ))),
            Some(range) => {
                file.seek(SeekFrom::Start(range.start))
                    .await
                    .map_err(|e| local_err("seeking in", &path, e))?;
                let len = range.end.saturating_sub(range.start);
                Ok(Box::pin(tokio::io::BufReader::with_capacity(
                    COPY_BUFFER,
                    file.take(len),
                )))
            }
        }
    }

    fn local_file(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(ObjectMeta {
                key: key.to_string(),
                size: meta.len(),
                modified: meta.modified().ok().map(Into::into),
            }),
            Ok(_) => Err(StorageError::NotFound {
                key: key.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(local_err("reading metadata of", &path, e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_blocking(&root, &prefix, Listing::Finished))
            .await
            .map_err(|e| local_err("listing", &self.root, e.into()))?
    }

    async fn create_root(&self) -> Result<(), StorageError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || create_dirs(&root, &root))
            .await
            .map_err(|e| local_err("creating directory", &self.root, e.into()))?
    }

    async fn list_unfinished(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_blocking(&root, &prefix, Listing::Staging))
            .await
            .map_err(|e| local_err("listing", &self.root, e.into()))?
    }

    async fn remove_empty_dir(&self, prefix: &str) -> Result<(), StorageError> {
        let dir = self.path(prefix.trim_end_matches('/'))?;
        // Empty subdirectories first (a local-mode backup's files/): they hold no object.
        let below = dir.clone();
        tokio::task::spawn_blocking(move || remove_empty_subdirs(&below))
            .await
            .ok();
        match tokio::fs::remove_dir(&dir).await {
            Ok(()) => {
                let parent = dir.parent().unwrap_or(&self.root).to_path_buf();
                tokio::task::spawn_blocking(move || fsync_dir(&parent))
                    .await
                    .ok();
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(local_err("removing directory", &dir, e)),
        }
    }

    async fn remove_unfinished(&self, write: &ObjectMeta) -> Result<(), StorageError> {
        // A staging file's key: a clean directory, and a last segment with the staging prefix
        // (which `validate_key` refuses in an object's key).
        let invalid = || StorageError::InvalidKey {
            key: write.key.clone(),
            reason: "is not a staging file",
        };
        let (dir, name) = write.key.rsplit_once('/').ok_or_else(invalid)?;
        validate_key(dir)?;
        if !name.starts_with(STAGING_PREFIX) || name.contains('\0') {
            return Err(invalid());
        }
        let path = self.root.join(dir).join(name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(local_err("removing the unfinished write", &path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                let dir = path.parent().unwrap_or(&self.root).to_path_buf();
                tokio::task::spawn_blocking(move || fsync_dir(&dir))
                    .await
                    .ok();
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(local_err("deleting", &path, e)),
        }
    }
}

/// Which files a listing returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// The objects.
    Finished,
    /// Staging files of writers that never finished; each under the key it was meant for.
    Staging,
}

fn list_blocking(
    root: &Path,
    prefix: &str,
    listing: Listing,
) -> Result<Vec<ObjectMeta>, StorageError> {
    if !root.is_dir() {
        return Err(StorageError::RootMissing {
            path: root.to_path_buf(),
        });
    }
    // Start at the deepest directory the prefix names in full, then filter by the whole prefix.
    let start_rel = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let start = if start_rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(start_rel)
    };
    let mut out = Vec::new();
    let mut stack = vec![start];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(local_err("listing", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| local_err("listing", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let staging = name.starts_with(STAGING_PREFIX);
            if staging && listing == Listing::Finished {
                continue;
            }
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // A staging file renamed into place, or removed, since the directory was read.
                Err(e) if staging && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(local_err("reading metadata of", &path, e)),
            };
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let Some(key) = rel.to_str() else { continue };
            if meta.is_dir() {
                if staging {
                    continue;
                }
                let as_dir = format!("{key}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    stack.push(path);
                }
            } else if meta.is_file()
                && key.starts_with(prefix)
                && (staging || listing == Listing::Finished)
            {
                out.push(ObjectMeta {
                    key: key.to_string(),
                    size: meta.len(),
                    modified: meta.modified().ok().map(Into::into),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Removes the empty directories below `dir` (not `dir` itself), deepest first; a directory that
/// holds a file, or cannot be read, stays.
fn remove_empty_subdirs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_subdirs(&path);
            let _ = std::fs::remove_dir(&path);
        }
    }
}
