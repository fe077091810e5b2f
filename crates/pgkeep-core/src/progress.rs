//! Progress reporting: the library calls a [`Progress`]; the CLI draws it (a bar on a terminal,
//! periodic lines otherwise). [`NoProgress`] ignores everything.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

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

/// A reader that reports what passes through it.
pub(crate) struct ProgressReader<R> {
    pub(crate) inner: R,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) item: String,
}

impl<R: AsyncRead + Unpin> AsyncRead for ProgressReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.progress.advance(&self.item, n as u64);
        }
        poll
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.progress.advance(&self.item, n as u64);
        }
        Ok(n)
    }
}
