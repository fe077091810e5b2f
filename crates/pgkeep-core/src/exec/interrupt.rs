//! Stopping a long run from outside: the CLI turns SIGTERM and SIGINT into an [`Interrupt`], and
//! the runs that write to the repository (the backups) stop their child programs, remove what
//! they wrote, and return [`Error::Interrupted`](crate::Error::Interrupted).

use std::future::Future;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// A handle that asks a run to stop. Clones share one state; the default never fires unless
/// [`Interrupt::interrupt`] is called.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    reason: Arc<OnceLock<String>>,
}

impl Interrupt {
    /// A handle that has not fired.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Asks every run holding a clone to stop; `reason` (`SIGTERM`, `SIGINT`, ...) goes into its
    /// error. Only the first reason is kept.
    pub fn interrupt(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.token.cancel();
    }

    /// Whether [`Interrupt::interrupt`] was called.
    pub fn is_interrupted(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once [`Interrupt::interrupt`] has been called.
    pub async fn fired(&self) {
        self.token.cancelled().await;
    }

    /// Why it fired, once it has.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Runs `work` until it ends or the handle fires; then `work` is dropped (its child programs
    /// are killed, its unfinished puts abandoned) and the result is `Err(on_interrupt(reason))`.
    pub(crate) async fn run<T, E>(
        &self,
        work: impl Future<Output = Result<T, E>>,
        on_interrupt: impl FnOnce(String) -> E,
    ) -> Result<T, E> {
        tokio::select! {
            biased;
            () = self.token.cancelled() => {
                Err(on_interrupt(self.reason().unwrap_or("an interrupt").to_string()))
            }
            result = work => result,
        }
    }
}
