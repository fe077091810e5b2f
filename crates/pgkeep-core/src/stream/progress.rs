//! Progress reporting: the library calls a [`Progress`]; the CLI draws it (a bar on a terminal,
//! periodic lines otherwise). [`NoProgress`] ignores everything.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use super::tap::{See, Tap};

/// Receives progress events. Every method has a do-nothing default.
pub trait Progress: Send + Sync {
    /// Work on `item` (a database, `globals`, an object) started.
    fn start(&self, item: &str) {
        let _ = item;
    }
    /// `bytes` more bytes of `item` were read.
    fn advance(&self, item: &str, bytes: u64) {
        let _ = (item, bytes);
    }
    /// Work on `item` finished.
    fn finish(&self, item: &str) {
        let _ = item;
    }
}

/// Ignores progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Reports what a [`Tap`] reads as progress of `item`.
pub(crate) struct Advance {
    progress: Arc<dyn Progress>,
    item: String,
}

impl See for Advance {
    fn see(&mut self, data: &[u8]) {
        self.progress.advance(&self.item, data.len() as u64);
    }
}

/// A reader that reports what passes through it.
pub(crate) type ProgressReader<R> = Tap<R, Advance>;

impl<R> ProgressReader<R> {
    /// Reports what is read from `inner` as progress of `item`.
    pub(crate) fn new(inner: R, progress: Arc<dyn Progress>, item: &str) -> ProgressReader<R> {
        Tap::with(
            inner,
            Advance {
                progress,
                item: item.to_string(),
            },
        )
    }
}

/// A writer that reports what passes through it. When the reader at the other end of a pipe
/// closes it (`pg_restore --list` stops after the table of contents), the rest is discarded, so
/// that the object is still read to its end and its checksums checked; the child's exit status
/// says whether it got what it needed.
pub(crate) struct ProgressWriter<'a, W> {
    inner: &'a mut W,
    progress: Arc<dyn Progress>,
    item: String,
    closed: bool,
}

impl<'a, W> ProgressWriter<'a, W> {
    /// Reports what is written to `inner` as progress of `item`.
    pub(crate) fn new(inner: &'a mut W, progress: Arc<dyn Progress>, item: &str) -> Self {
        ProgressWriter {
            inner,
            progress,
            item: item.to_string(),
            closed: false,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ProgressWriter<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut *self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.progress.advance(&self.item, n as u64);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}
