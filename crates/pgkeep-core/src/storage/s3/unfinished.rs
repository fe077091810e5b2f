//! Multipart uploads that were started and never completed nor aborted (a killed writer's): S3
//! keeps their parts, and bills them, until someone aborts them.

use super::S3Storage;
use crate::storage::{ObjectMeta, StorageError, validate_key};

impl S3Storage {
    /// The unfinished multipart uploads under `prefix`: each upload's final key, the size of the
    /// parts it holds, and when it was started.
    pub(super) async fn unfinished_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(self.full_key(prefix))
            .send()
            .await
            .map_err(|e| self.error("ListMultipartUploads", prefix, e))?;
        let strip = match self.prefix.is_empty() {
            true => 0,
            false => self.prefix.len() + 1,
        };
        let mut out = Vec::new();
        for upload in listed.uploads() {
            let (Some(full_key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            let key = full_key[strip..].to_string();
            let parts = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|e| self.error("ListParts", &key, e))?;
            out.push(ObjectMeta {
                size: parts
                    .parts()
                    .iter()
                    .map(|p| p.size().unwrap_or(0).max(0) as u64)
                    .sum(),
                modified: upload
                    .initiated()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                key,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Aborts the unfinished multipart uploads to `write.key` that were started no later than
    /// `write.modified` (all of them when it is unknown).
    pub(super) async fn abort_unfinished(&self, write: &ObjectMeta) -> Result<(), StorageError> {
        validate_key(&write.key)?;
        let full_key = self.full_key(&write.key);
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&full_key)
            .send()
            .await
            .map_err(|e| self.error("ListMultipartUploads", &write.key, e))?;
        for upload in listed.uploads() {
            let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            let started = upload
                .initiated()
                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
            let listed_one = match (started, write.modified) {
                (Some(started), Some(listed)) => started <= listed,
                _ => true,
            };
            if key != full_key || !listed_one {
                continue;
            }
            match self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|e| self.error("AbortMultipartUpload", &write.key, e))
            {
                Ok(_) => {}
                // Completed or aborted by its writer since the listing.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
