//! Multipart uploads: parts read one at a time into memory, at most `max_parts_in_flight` uploading
//! at once, the part size doubling every [`PARTS_PER_SIZE_STEP`] parts; completed only after every
//! part succeeded, aborted otherwise (also when the put's future is dropped).

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::S3Storage;
use crate::storage::{PutMode, StorageError};

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u32 = 10_000;
/// The part size doubles after every this many parts, so that the part limit is never reached
/// (16 MiB parts cover 16 GB before the first doubling, and 10 doublings cover 16 TB).
const PARTS_PER_SIZE_STEP: u32 = 1_000;
/// S3's largest part.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

impl S3Storage {
    pub(super) fn part_size_for(&self, part_number: u32) -> usize {
        let doublings = ((part_number - 1) / PARTS_PER_SIZE_STEP).min(20);
        (self.part_size << doublings).min(MAX_PART_SIZE)
    }

    pub(super) async fn put_multipart(
        &self,
        key: &str,
        first: Bytes,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<u64, StorageError> {
        let full_key = self.full_key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let mut guard = AbortOnDrop {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: full_key.clone(),
            upload_id: upload_id.clone(),
            armed: true,
        };
        let result = self.upload_parts(key, &upload_id, first, body, mode).await;
        guard.armed = false;
        if result.is_err() {
            guard.abort().await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<u64, StorageError> {
        let full_key = self.full_key(key);
        let mut in_flight = tokio::task::JoinSet::new();
        let mut done: Vec<CompletedPart> = Vec::new();
        let mut next = Some(first);
        let mut part_number: u32 = 1;
        let mut total = 0u64;
        loop {
            let want = self.part_size_for(part_number);
            let data = match next.take() {
                Some(data) => data,
                None => read_part(body, want, key).await?,
            };
            if data.is_empty() {
                break;
            }
            if part_number > MAX_PARTS {
                return Err(StorageError::S3 {
                    op: "UploadPart",
                    bucket: self.bucket.clone(),
                    key: full_key,
                    message: format!("the object needs more than {MAX_PARTS} parts"),
                    fix: "raise repository.s3.part-size-mib".into(),
                    permanent: true,
                });
            }
            let last = data.len() < want;
            total += data.len() as u64;
            while in_flight.len() >= self.max_parts_in_flight {
                if let Some(joined) = in_flight.join_next().await {
                    done.push(self.joined(key, joined)?);
                }
            }
            let request = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(&full_key)
                .upload_id(upload_id)
                .part_number(part_number as i32)
                .content_length(data.len() as i64)
                .body(ByteStream::from(data));
            let number = part_number as i32;
            in_flight.spawn(async move {
                let out = request.send().await?;
                Ok(CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build())
            });
            part_number += 1;
            if last {
                break;
            }
        }
        while let Some(joined) = in_flight.join_next().await {
            done.push(self.joined(key, joined)?);
        }
        done.sort_by_key(|p| p.part_number());
        let mut complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&full_key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            );
        if mode == PutMode::Create {
            complete = complete.if_none_match("*");
        }
        complete
            .send()
            .await
            .map_err(|e| self.error("CompleteMultipartUpload", key, e))?;
        Ok(total)
    }

    fn joined(
        &self,
        key: &str,
        joined: Result<
            Result<CompletedPart, SdkError<aws_sdk_s3::operation::upload_part::UploadPartError>>,
            tokio::task::JoinError,
        >,
    ) -> Result<CompletedPart, StorageError> {
        match joined {
            Ok(Ok(part)) => Ok(part),
            Ok(Err(e)) => Err(self.error("UploadPart", key, e)),
            Err(join) => Err(StorageError::S3 {
                op: "UploadPart",
                bucket: self.bucket.clone(),
                key: self.full_key(key),
                message: format!("the upload task failed: {join}"),
                fix: "this is a bug in pgkeep; please report it".into(),
                permanent: true,
            }),
        }
    }
}

/// Reads until `want` bytes or the end of the stream.
pub(super) async fn read_part(
    body: &mut (dyn AsyncRead + Send + Unpin),
    want: usize,
    key: &str,
) -> Result<Bytes, StorageError> {
    let mut buf = BytesMut::with_capacity(want);
    while buf.len() < want {
        let room = want - buf.len();
        let n = body
            .read_buf(&mut (&mut buf).limit(room))
            .await
            .map_err(StorageError::source_failed(key))?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

/// Aborts a multipart upload whose put did not finish, including when the put's future is dropped.
struct AbortOnDrop {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl AbortOnDrop {
    async fn abort(&self) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(
                "could not abort the multipart upload of s3://{}/{} ({}); it is invisible, and a \
                 lifecycle rule for incomplete uploads reclaims its space",
                self.bucket,
                self.key,
                DisplayErrorContext(&e)
            );
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let this = AbortOnDrop {
                client: self.client.clone(),
                bucket: self.bucket.clone(),
                key: self.key.clone(),
                upload_id: self.upload_id.clone(),
                armed: false,
            };
            handle.spawn(async move { this.abort().await });
        }
    }
}
