//! Downloads that survive a broken connection: a GetObject body that continues with a ranged
//! GetObject, pinned to the same ETag, from the first byte not yet delivered.

use std::time::Duration;

use tokio::io::AsyncRead;

use super::S3Storage;
use crate::storage::{ByteReader, StorageError};

impl S3Storage {
    /// Starts a GetObject of bytes `start..end` (`end` = the object's end when `None`), pinned to
    /// `etag` when resuming so that a replaced object is never stitched onto the old one.
    pub(super) async fn open_range(
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
}

/// An opened GetObject.
pub(super) struct Opened {
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
pub(super) struct ResumingReader {
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
    /// Reads `opened`, which starts at byte `start` of `key`.
    pub(super) fn new(
        storage: &S3Storage,
        key: &str,
        start: u64,
        opened: Opened,
    ) -> ResumingReader {
        ResumingReader {
            storage: storage.clone(),
            key: key.to_string(),
            pos: start,
            end: start + opened.length,
            etag: opened.etag,
            resumes_left: storage.max_attempts.saturating_sub(1),
            resumes_done: 0,
            state: ReadState::Reading(opened.body),
        }
    }

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
