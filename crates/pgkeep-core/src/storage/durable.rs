//! Durable file writes: the one way pgkeep writes a file that must survive a crash — repository
//! objects on local storage, the switchover journal, the must-rejoin record, and every other state
//! file.
//!
//! The rule, kept by [`Staged`] and [`write_file`]: write under a unique staging name in the
//! target's own directory (never a fixed `.tmp` name, which two writers would share), fsync the
//! file (the data must be on disk before a name points at it, or a crash could publish a hole),
//! publish it — by `rename` to replace, or by `link`, which refuses an existing name atomically, to
//! create — and fsync the directory, so that the new name survives a crash too. A staging file
//! left by a killed writer starts with [`STAGING_PREFIX`] and is never read as the file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::PutMode;

/// Names starting with this are staging files of writes in progress (or of killed ones).
pub(crate) const STAGING_PREFIX: &str = ".pgkeep-tmp-";

/// A file operation that failed, with the operation and the path.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FileError {
    /// What was being done (`writing`, `fsyncing`, `renaming into place`, ...).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    pub(crate) fn new(op: &'static str, path: &Path, source: std::io::Error) -> FileError {
        FileError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether a [`PutMode::Create`] write found the name taken (and left it alone).
    pub fn is_already_exists(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AlreadyExists
    }
}

/// A uniquely named staging file in a target's directory; removed when dropped unless published.
pub(crate) struct Staged {
    path: PathBuf,
    published: bool,
}

impl Staged {
    /// A new staging name in `dir` (nothing is created yet).
    pub(crate) fn in_dir(dir: &Path) -> Staged {
        Staged {
            path: dir.join(format!("{STAGING_PREFIX}{:016x}", rand::random::<u64>())),
            published: false,
        }
    }

    /// The staging file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Publishes the written, fsynced staging file as `target`, then fsyncs the directory.
    pub(crate) fn publish(mut self, target: &Path, mode: PutMode) -> Result<(), FileError> {
        match mode {
            PutMode::Overwrite => std::fs::rename(&self.path, target)
                .map_err(|e| FileError::new("renaming into place", target, e))?,
            PutMode::Create => {
                // link(2) refuses an existing name atomically, which rename(2) would replace.
                std::fs::hard_link(&self.path, target)
                    .map_err(|e| FileError::new("linking into place", target, e))?;
                let _ = std::fs::remove_file(&self.path);
            }
        }
        self.published = true;
        let dir = target.parent().unwrap_or(Path::new("."));
        // The rename or link lives in the directory: fsync it so the name survives a crash.
        fsync_dir(dir).map_err(|e| FileError::new("fsyncing directory", dir, e))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// fsyncs a directory, so that the names created or removed in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` durably, all or nothing: a reader sees the old file or the new one,
/// never a part. The file gets the mode `std::fs::write` would give it (0666 less the umask). With [`PutMode::Create`] an existing file is left alone and the error
/// says so ([`FileError::is_already_exists`]). The directory must exist.
pub fn write_file(path: &Path, bytes: &[u8], mode: PutMode) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let staged = Staged::in_dir(dir);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(staged.path())
        .map_err(|e| FileError::new("creating", staged.path(), e))?;
    file.write_all(bytes)
        .map_err(|e| FileError::new("writing", staged.path(), e))?;
    file.sync_all()
        .map_err(|e| FileError::new("fsyncing", staged.path(), e))?;
    drop(file);
    staged.publish(path, mode)
}

/// Removes `path` durably (the removal survives a crash); a file that is not there is no error.
pub fn remove_file(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FileError::new("removing", path, e)),
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fsync_dir(dir).map_err(|e| FileError::new("fsyncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_or_create_and_leave_no_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_file(&path, b"one", PutMode::Create).unwrap();
        let e = write_file(&path, b"two", PutMode::Create).unwrap_err();
        assert!(e.is_already_exists(), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_file(&path, b"three", PutMode::Overwrite).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        remove_file(&path).unwrap();
        remove_file(&path).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A missing directory is an error that names the staging file's directory.
        let e = write_file(&dir.path().join("no/such/file"), b"x", PutMode::Overwrite).unwrap_err();
        assert!(e.to_string().contains("no/such"), "{e}");
    }
}
