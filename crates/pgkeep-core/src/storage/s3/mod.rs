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
use tokio::io::AsyncRead;

use super::{ByteReader, ObjectMeta, PutMode, Storage, StorageError, validate_key};
use crate::settings::S3Settings;

mod multipart;
mod resume;
mod unfinished;

use multipart::read_part;
use resume::ResumingReader;

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
        Ok(Box::pin(ResumingReader::new(self, key, start, opened)))
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

    async fn create_root(&self) -> Result<(), StorageError> {
        Ok(())
    }

    async fn list_unfinished(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.unfinished_uploads(prefix).await
    }

    async fn remove_unfinished(&self, write: &ObjectMeta) -> Result<(), StorageError> {
        self.abort_unfinished(write).await
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
