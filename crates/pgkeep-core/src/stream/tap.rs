//! A reader that shows every chunk read through it to an observer and passes it on unchanged:
//! progress reporting and the tar watcher are both taps.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Sees the bytes a [`Tap`] passes on.
pub(crate) trait See {
    /// `data` just went by.
    fn see(&mut self, data: &[u8]);
}

/// A reader (blocking or async) that shows what it reads to `S`.
pub(crate) struct Tap<R, S> {
    inner: R,
    see: S,
}

impl<R, S> Tap<R, S> {
    /// Reads `inner`, showing every chunk to `see`.
    pub(crate) fn with(inner: R, see: S) -> Tap<R, S> {
        Tap { inner, see }
    }

    /// The observer.
    pub(crate) fn observer(&self) -> &S {
        &self.see
    }
}

impl<R: AsyncRead + Unpin, S: See + Unpin> AsyncRead for Tap<R, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.see.see(&buf.filled()[before..]);
        }
        poll
    }
}

impl<R: std::io::Read, S: See> std::io::Read for Tap<R, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.see.see(&buf[..n]);
        }
        Ok(n)
    }
}
