//! Parallel workers on blocking threads (a module of its own: it depends on `error`, which depends
//! on `exec` and `storage`), for the local-mode copy and the restore that unpacks it:
//! `jobs` of them run the same loop over shared work, the first failure stops the others, and
//! dropping the caller (an interrupt) stops them too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;

/// Shared work that blocking threads take pieces of until none is left.
pub(crate) trait Workers: Send + Sync + 'static {
    /// Set when the work must stop: a worker failed, or the caller was dropped.
    fn stop_flag(&self) -> &AtomicBool;
    /// One worker's loop.
    fn work(&self) -> Result<(), Error>;
}

/// Sets the workers' stop flag when dropped: when the caller is dropped midway (an interrupt),
/// the workers end after their current piece.
struct StopOnDrop<W: Workers>(Arc<W>);

impl<W: Workers> Drop for StopOnDrop<W> {
    fn drop(&mut self) {
        self.0.stop_flag().store(true, Ordering::SeqCst);
    }
}

/// Runs `jobs` workers (at least one) to their end; the first error.
pub(crate) async fn run_workers<W: Workers>(shared: &Arc<W>, jobs: usize) -> Result<(), Error> {
    let _stop = StopOnDrop(shared.clone());
    let handles: Vec<_> = (0..jobs.max(1))
        .map(|_| {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || {
                let result = shared.work();
                if result.is_err() {
                    shared.stop_flag().store(true, Ordering::SeqCst);
                }
                result
            })
        })
        .collect();
    let mut first = None;
    for handle in handles {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first.get_or_insert(e);
            }
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
