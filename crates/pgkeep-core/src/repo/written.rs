//! What a backup wrote, so that a backup that fails or is interrupted removes it: the backup
//! writes through a [`Repository`] whose storage records the key of every put it starts, and
//! [`BackupWrites::undo`] deletes those objects — the manifest first, so the backup is never
//! listed with objects missing — and then the backup's directory.
//!
//! Only keys this run put are deleted, never the whole directory's listing: a directory that
//! another run wrote into (two backups given one id) keeps the other run's objects.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::io::AsyncRead;

use super::{Repository, catalog};
use crate::error::{BackupCleanup, Error};
use crate::storage::{ByteReader, ObjectMeta, PutMode, Storage, StorageError};

/// A storage that records the key of every put through it, in its shared set.
#[derive(Debug)]
struct Recording {
    inner: Repository,
    keys: Arc<Mutex<BTreeSet<String>>>,
    /// Set once the backup is being undone: a put that lands after that (a worker's upload still
    /// in flight when an interrupt dropped the backup) removes its own object again.
    undone: Arc<std::sync::atomic::AtomicBool>,
    /// The backup's directory, removed again with such an object when it is left empty.
    prefix: String,
}

impl Recording {
    fn keys(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Storage for Recording {
    fn url(&self) -> String {
        self.inner.storage().url()
    }

    async fn put(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<ObjectMeta, StorageError> {
        // Recorded before the put: a put dropped midway may still publish its object.
        self.keys().insert(key.to_string());
        let result = self.inner.storage().put(key, body, mode).await;
        if let Err(StorageError::AlreadyExists { .. }) = &result {
            // Someone else's object: never ours to remove.
            self.keys().remove(key);
        }
        if result.is_ok() && self.undone.load(std::sync::atomic::Ordering::SeqCst) {
            let storage = self.inner.storage();
            let _ = storage.delete(key).await;
            let _ = storage.remove_empty_dir(&self.prefix).await;
            // Nothing of it is stored any more.
            return Err(StorageError::Source {
                key: key.to_string(),
                source: std::io::Error::other(
                    "the backup was undone while this object was stored; it was removed again",
                ),
            });
        }
        result
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteReader, StorageError> {
        self.inner.storage().get(key, range).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        self.inner.storage().head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.storage().list(prefix).await
    }

    async fn create_root(&self) -> Result<(), StorageError> {
        self.inner.storage().create_root().await
    }

    async fn list_unfinished(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.storage().list_unfinished(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.storage().delete(key).await
    }

    async fn remove_unfinished(&self, write: &ObjectMeta) -> Result<(), StorageError> {
        self.inner.storage().remove_unfinished(write).await
    }

    async fn remove_empty_dir(&self, prefix: &str) -> Result<(), StorageError> {
        self.inner.storage().remove_empty_dir(prefix).await
    }
}

/// The objects one backup writes under its directory.
pub(crate) struct BackupWrites {
    original: Repository,
    recording: Repository,
    keys: Arc<Mutex<BTreeSet<String>>>,
    undone: Arc<std::sync::atomic::AtomicBool>,
    prefix: String,
}

impl BackupWrites {
    /// Writes of the backup whose directory is `prefix` into `repo`.
    pub(crate) fn new(repo: &Repository, prefix: &str) -> BackupWrites {
        let keys = Arc::new(Mutex::new(BTreeSet::new()));
        let undone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let recording = Recording {
            inner: repo.clone(),
            keys: keys.clone(),
            undone: undone.clone(),
            prefix: prefix.to_string(),
        };
        BackupWrites {
            original: repo.clone(),
            recording: Repository::new(Arc::new(recording), repo.cluster()),
            keys,
            undone,
            prefix: prefix.to_string(),
        }
    }

    /// The repository to write the backup through.
    pub(crate) fn repo(&self) -> &Repository {
        &self.recording
    }

    /// Removes what the backup wrote and returns `error` with what was removed
    /// ([`Error::BackupUndone`]).
    pub(crate) async fn undo(&self, error: Error) -> Error {
        // Before the keys are read: a put that lands from now on removes its own object.
        self.undone.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut keys: Vec<String> = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        // The manifest first: while it exists the backup is listed, so it must never outlive
        // the objects it names.
        keys.sort_by_key(|k| !k.ends_with("/manifest.json"));
        let storage = self.original.storage();
        let mut cleanup = BackupCleanup {
            url: storage.url(),
            prefix: self.prefix.clone(),
            removed: 0,
            bytes: 0,
            left: Vec::new(),
            error: None,
        };
        for (i, key) in keys.iter().enumerate() {
            let size = match storage.head(key).await {
                Ok(meta) => Some(meta.size),
                Err(e) if e.is_not_found() => None,
                Err(_) => Some(0),
            };
            match storage.delete(key).await {
                Ok(()) if size.is_some() => {
                    cleanup.removed += 1;
                    cleanup.bytes += size.unwrap_or(0);
                }
                Ok(()) => {}
                Err(e) => {
                    cleanup.left = keys[i..].to_vec();
                    cleanup.error = Some(e.to_string().replace("\n  fix: ", "; "));
                    break;
                }
            }
        }
        if cleanup.error.is_none() {
            // The id's reservation was written before the recording began.
            if let Err(e) = catalog::release_id(&self.original, &self.prefix).await {
                cleanup.error = Some(e.to_string().replace("\n  fix: ", "; "));
            } else if let Err(e) = storage.remove_empty_dir(&self.prefix).await {
                tracing::warn!("{e}");
            }
        }
        Error::BackupUndone {
            source: Box::new(error),
            cleanup: Box::new(cleanup),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    #[tokio::test]
    async fn undo_removes_only_what_the_backup_put_and_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let repo = Repository::new(Arc::new(LocalStorage::new(&root)), "main");
        let prefix = "main/backups/X/";
        // Another run's object under the same id: never the failed backup's to remove.
        repo.storage()
            .put_bytes("main/backups/X/theirs", b"1", PutMode::Create)
            .await
            .unwrap();
        let writes = BackupWrites::new(&repo, prefix);
        let storage = writes.repo().storage();
        storage
            .put_bytes("main/backups/X/a", b"12345", PutMode::Create)
            .await
            .unwrap();
        storage
            .put_bytes("main/backups/X/manifest.json", b"{}", PutMode::Create)
            .await
            .unwrap();
        let taken = storage
            .put_bytes("main/backups/X/theirs", b"2", PutMode::Create)
            .await;
        assert!(matches!(taken, Err(StorageError::AlreadyExists { .. })));

        let error = writes
            .undo(Error::Interrupted {
                reason: "SIGTERM".into(),
            })
            .await;
        let Error::BackupUndone { cleanup, source } = &error else {
            panic!("{error}");
        };
        assert_eq!(source.interrupted_by(), Some("SIGTERM"));
        assert_eq!((cleanup.removed, cleanup.bytes), (2, 7), "{cleanup}");
        assert!(
            error
                .to_string()
                .contains("cleanup: removed the 2 object(s)")
        );
        let left: Vec<String> = repo
            .storage()
            .list("main/backups/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(left, ["main/backups/X/theirs"]);

        // Alone in its directory, the directory goes too.
        let writes = BackupWrites::new(&repo, "main/backups/Y/");
        writes
            .repo()
            .storage()
            .put_bytes("main/backups/Y/a", b"1", PutMode::Create)
            .await
            .unwrap();
        writes.undo(Error::NoRepository).await;
        assert!(!root.join("main/backups/Y").exists());
    }
}
