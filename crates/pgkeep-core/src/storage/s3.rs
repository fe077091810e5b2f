//! A repository under an S3 bucket and prefix (AWS, or an S3-compatible store such as Garage or MinIO).
//!
//! A put of unknown size reads one part into memory; if the stream ends within it, the object is sent
//! with a single PutObject, otherwise as a multipart upload with at most `max_parts_in_flight` parts
//! uploading at once. Memory is therefore bounded by `part_size * (max_parts_in_flight + 1)` whatever
//! the object's size. A multipart upload is completed only after every part succeeded; on an error
//! or when the put's future is dropped it is aborted, and an upload left by a killed process is never
//! visible to `get`, `head` or `list` (a bucket lifecycle rule for incomplete uploads reclaims its
//! space).
//!
//! Transient failures — 5xx, throttling (`SlowDown`), timeouts, connection resets — are retried by the
//! SDK's standard retry strategy (exponential backoff with full jitter, `max_attempts` in all); every
//! request body is an in-memory buffer, so every request is replayable. Permanent failures (403, 404
//! bucket, invalid request) fail at once.
//!
//! `PutMode::Create` checks with HeadObject first and also sends `If-None-Match: *` so that stores
//! which implement conditional writes close the race between the check and the write.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{ByteReader, ObjectMeta, PutMode, Storage, StorageError, validate_key};
use crate::config::S3Settings;

/// S3 allows at most this many parts in one upload.
const MAX_PARTS: u32 = 10_000;
/// The part size doubles after every this many parts, so that the part limit is never reached
/// (16 MiB parts cover 16 GB before the first doubling, and 10 doublings cover 16 TB).
const PARTS_PER_SIZE_STEP: u32 = 1_000;
/// S3's largest part.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;

/// A repository in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Storage {
    client: Client,
    bucket: String,
    prefix: String,
    part_size: usize,
    max_parts_in_flight: usize,
    max_attempts: u32,
}

fn fix_for(code: &str, status: u16, permanent: bool, attempts: u32) -> String {
    match code {
        "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "Forbidden" => {
            "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or \
             repository.s3 keys) and that the key may read and write the bucket"
                .into()
        }
        "NoSuchBucket" => {
            "create the bucket, or correct the bucket name in --repo / repository.url".into()
        }
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => {
            "set the bucket's region (AWS_REGION or repository.s3.region)".into()
        }
        _ if !permanent => format!(
            "the store was unreachable or overloaded through {attempts} attempts: check the endpoint \
             (AWS_ENDPOINT_URL / repository.s3.endpoint) and the network, then run the command again"
        ),
        _ if status == 400 => {
            "the store rejected the request; check repository.s3 settings (force-path-style for \
             S3-compatible stores, region)"
                .into()
        }
        _ => "check the repository URL and the store's logs".into(),
    }
}

impl S3Storage {
    /// Connects to `bucket` (objects under `prefix`) with the given settings plus the standard AWS
    /// environment variables and files for anything the settings leave out.
    pub async fn new(settings: &S3Settings, bucket: &str, prefix: &str) -> S3Storage {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &settings.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some((id, secret)) = &settings.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                None,
                None,
                "pgkeep-config",
            ));
        }
        let sdk = loader.load().await;
        let path_style = settings
            .force_path_style
            .unwrap_or(sdk.endpoint_url().is_some());
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(path_style)
            // pgkeep checksums every object itself (sha256 in the manifests); the SDK's default
            // CRC trailers are not understood by every S3-compatible store.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        S3Storage {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            part_size: settings.part_size,
            max_parts_in_flight: settings.max_parts_in_flight.max(1),
            max_attempts: settings.max_attempts,
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn error<E>(&self, op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (status, code, permanent) = match &err {
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                let code = service.err().code().unwrap_or("").to_string();
                let transient = status >= 500
                    || status == 408
                    || status == 429
                    || matches!(
                        code.as_str(),
                        "SlowDown" | "Throttling" | "RequestTimeout" | "InternalError"
                    );
                (status, code, !transient)
            }
            SdkError::ConstructionFailure(_) => (0, String::new(), true),
            _ => (0, String::new(), false),
        };
        if status == 404 && (code.is_empty() || code == "NoSuchKey" || code == "NotFound") {
            return StorageError::NotFound {
                key: key.to_string(),
            };
        }
        if status == 412 {
            return StorageError::AlreadyExists {
                key: key.to_string(),
            };
        }
        let message = match &err {
            SdkError::ServiceError(service) => format!(
                "HTTP {status} {code}: {}",
                service.err().message().unwrap_or("(no message)")
            ),
            SdkError::ConstructionFailure(_) => format!(
                "the request could not be built ({}); is a region and are credentials configured \
                 (AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or repository.s3)?",
                DisplayErrorContext(&err)
            ),
            _ => DisplayErrorContext(&err).to_string(),
        };
        StorageError::S3 {
            op,
            bucket: self.bucket.clone(),
            key: self.full_key(key),
            fix: fix_for(&code, status, permanent, self.max_attempts),
            message,
            permanent,
        }
    }

    /// Starts a GetObject of bytes `start..end` (`end` = the object's end when `None`), pinned to
    /// `etag` when resuming so that a replaced object is never stitched onto the old one.
    async fn open_range(
        &self,
        key: &str,
        start: u64,
        end: Option<u64>,
        etag: Option<&str>,
    ) -> Result<Opened, StorageError> {
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key));
        match end {
            Some(end) => request = request.range(format!("bytes={start}-{}", end - 1)),
            None if start > 0 => request = request.range(format!("bytes={start}-")),
            None => {}
        }
        if let Some(etag) = etag {
            request = request.if_match(etag);
        }
        let out = request
            .send()
            .await
            .map_err(|e| self.error("GetObject", key, e))?;
        Ok(Opened {
            length: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(str::to_string),
            body: Box::pin(out.body.into_async_read()),
        })
    }

    fn part_size_for(&self, part_number: u32) -> usize {
        let doublings = ((part_number - 1) / PARTS_PER_SIZE_STEP).min(20);
        (self.part_size << doublings).min(MAX_PART_SIZE)
    }

    async fn put_multipart(
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
async fn read_part(
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

/// An opened GetObject.
struct Opened {
    body: ByteReader,
    length: u64,
    etag: Option<String>,
}

type Reopen = std::pin::Pin<Box<dyn Future<Output = Result<Opened, StorageError>> + Send>>;

enum ReadState {
    Reading(ByteReader),
    Reopening(Reopen),
}

/// A GetObject body that, when the connection breaks midway, continues with a ranged GetObject from
/// the first byte not yet delivered (pinned to the same ETag), up to `max_attempts - 1` times with
/// jittered backoff. A body that ends before its Content-Length counts as broken.
struct ResumingReader {
    storage: S3Storage,
    key: String,
    pos: u64,
    end: u64,
    etag: Option<String>,
    resumes_left: u32,
    resumes_done: u32,
    state: ReadState,
}

impl ResumingReader {
    fn resume(&mut self, cause: std::io::Error) -> Result<(), std::io::Error> {
        if self.resumes_left == 0 {
            return Err(cause);
        }
        self.resumes_left -= 1;
        self.resumes_done += 1;
        tracing::warn!(
            "reading {} broke at byte {} ({cause}); resuming (attempt {})",
            self.key,
            self.pos,
            self.resumes_done + 1
        );
        let backoff = Duration::from_millis(100 << self.resumes_done.min(8))
            .mul_f64(rand::random::<f64>() + 0.5);
        let storage = self.storage.clone();
        let key = self.key.clone();
        let (pos, end, etag) = (self.pos, self.end, self.etag.clone());
        self.state = ReadState::Reopening(Box::pin(async move {
            tokio::time::sleep(backoff).await;
            storage
                .open_range(&key, pos, Some(end), etag.as_deref())
                .await
        }));
        Ok(())
    }
}

impl AsyncRead for ResumingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.pos >= this.end {
                return Poll::Ready(Ok(()));
            }
            match &mut this.state {
                ReadState::Reading(body) => {
                    let before = buf.filled().len();
                    match body.as_mut().poll_read(cx, buf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(())) => {
                            let n = (buf.filled().len() - before) as u64;
                            if n > 0 {
                                this.pos += n;
                                return Poll::Ready(Ok(()));
                            }
                            let cause = std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                format!("the body ended at byte {} of {}", this.pos, this.end),
                            );
                            if let Err(e) = this.resume(cause) {
                                return Poll::Ready(Err(e));
                            }
                        }
                        Poll::Ready(Err(e)) => {
                            if let Err(e) = this.resume(e) {
                                return Poll::Ready(Err(e));
                            }
                        }
                    }
                }
                ReadState::Reopening(reopen) => match reopen.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(opened)) => this.state = ReadState::Reading(opened.body),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                },
            }
        }
    }
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

#[async_trait]
impl Storage for S3Storage {
    fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    async fn put(
        &self,
        key: &str,
        body: &mut (dyn AsyncRead + Send + Unpin),
        mode: PutMode,
    ) -> Result<ObjectMeta, StorageError> {
        validate_key(key)?;
        if mode == PutMode::Create {
            match self.head(key).await {
                Ok(_) => {
                    return Err(StorageError::AlreadyExists {
                        key: key.to_string(),
                    });
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let first = read_part(body, self.part_size_for(1), key).await?;
        let size;
        if first.len() < self.part_size_for(1) {
            size = first.len() as u64;
            let mut request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full_key(key))
                .content_length(first.len() as i64)
                .body(ByteStream::from(first));
            if mode == PutMode::Create {
                request = request.if_none_match("*");
            }
            request
                .send()
                .await
                .map_err(|e| self.error("PutObject", key, e))?;
        } else {
            size = self.put_multipart(key, first, body, mode).await?;
        }
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            modified: Some(chrono::Utc::now()),
        })
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteReader, StorageError> {
        validate_key(key)?;
        let start = range.as_ref().map_or(0, |r| r.start);
        if let Some(range) = &range
            && range.start >= range.end
        {
            self.head(key).await?;
            return Ok(Box::pin(tokio::io::empty()));
        }
        let opened = self
            .open_range(key, start, range.as_ref().map(|r| r.end), None)
            .await?;
        Ok(Box::pin(ResumingReader {
            storage: self.clone(),
            key: key.to_string(),
            pos: start,
            end: start + opened.length,
            etag: opened.etag,
            resumes_left: self.max_attempts.saturating_sub(1),
            resumes_done: 0,
            state: ReadState::Reading(opened.body),
        }))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        validate_key(key)?;
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("HeadObject", key, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            modified: out
                .last_modified()
                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let full_prefix = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full_prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                out.push(ObjectMeta {
                    key: key[strip..].to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    modified: object
                        .last_modified()
                        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", key, e))?;
        Ok(())
    }
}
