//! For unit tests: a local storage whose puts and deletes fail for chosen keys, as a read-only or
//! half-broken repository would.

use std::ops::Range;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use super::{ByteReader, LocalStorage, ObjectMeta, PutMode, Storage, StorageError};

/// A [`LocalStorage`] whose puts of keys containing `fail_puts`, and deletes of keys containing
/// `fail_deletes`, fail with "permission denied" (an empty pattern matches nothing).
#[derive(Debug)]
pub(crate) struct Faulty {
    pub(crate) inner: LocalStorage,
    pub(crate) fail_puts: &'static str,
    pub(crate) fail_deletes: &'static str,
}

fn denied(op: &'static str, key: &str) -> StorageError {
    StorageError::Local {
        op,
        path: key.into(),
        source: std::io::ErrorKind::PermissionDenied.into(),
        fix: "fix the permissions",
    }
}

fn matches(key: &str, pattern: &str) -> bool {
    !pattern.is_empty() && key.contains(pattern)
}

#[async_trait]
impl Storage for Faulty {
    fn url(&self) -> String {
        self.inner.url()
    }

    async fn put(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<ObjectMeta, StorageError> {
        if matches(key, self.fail_puts) {
            return Err(denied("writing", key));
        }
        self.inner.put(key, body, mode).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteReader, StorageError> {
        self.inner.get(key, range).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        self.inner.head(key).await
    }

    async fn create_root(&self) -> Result<(), StorageError> {
        self.inner.create_root().await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.list(prefix).await
    }

    async fn list_unfinished(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.list_unfinished(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        if matches(key, self.fail_deletes) {
            return Err(denied("deleting", key));
        }
        self.inner.delete(key).await
    }

    async fn remove_unfinished(&self, write: &ObjectMeta) -> Result<(), StorageError> {
        self.inner.remove_unfinished(write).await
    }
}
