//! SIGTERM and SIGINT: a run is stopped like any failure, never cut short in the middle of a
//! write. A backup is told through its [`Interrupt`] and stops itself (its children killed, what
//! it wrote removed, [`pgkeep_core::Error::Interrupted`] in its error); any other command's future
//! is dropped, which kills its child programs (they are all spawned kill-on-drop) and removes its
//! staging files and scratch directories (they are removed when dropped). A second signal while
//! a backup cleans up stops the cleanup too. The exit code is the shell's for a process killed by
//! the signal: 128 + its number.

use std::future::Future;
use std::process::ExitCode;

use pgkeep_core::Interrupt;
use tokio::signal::unix::{SignalKind, signal};

/// The signals handled, with their exit codes.
const SIGNALS: [(&str, u8); 2] = [("SIGTERM", 128 + 15), ("SIGINT", 128 + 2)];

/// A command stopped by a signal before it ended.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted by {signal}: the command stopped before its end; its child programs were stopped and its scratch files removed\n  fix: run the command again when it can run to its end"
)]
pub struct Interrupted {
    signal: &'static str,
}

/// The exit code for an error that an interrupt caused, if it was one.
pub fn signal_of(error: &anyhow::Error) -> Option<u8> {
    let name = error.chain().find_map(|cause| {
        if let Some(Interrupted { signal }) = cause.downcast_ref::<Interrupted>() {
            return Some(signal.to_string());
        }
        cause
            .downcast_ref::<pgkeep_core::Error>()
            .and_then(pgkeep_core::Error::interrupted_by)
            .map(str::to_string)
    })?;
    SIGNALS
        .iter()
        .find(|(signal, _)| *signal == name)
        .map(|&(_, code)| code)
}

/// Runs `command` until it ends or SIGTERM or SIGINT arrives; see the module docs.
pub async fn run_until_signal<F, Fut>(stops_itself: bool, command: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Interrupt) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let interrupt = Interrupt::new();
    let command = command(interrupt.clone());
    tokio::pin!(command);
    let signal = tokio::select! {
        result = &mut command => return result,
        _ = term.recv() => SIGNALS[0].0,
        _ = int.recv() => SIGNALS[1].0,
    };
    tracing::warn!("{signal} received: stopping");
    interrupt.interrupt(signal);
    if stops_itself {
        tokio::select! {
            // Its error carries the interrupt; a run that finished meanwhile succeeded.
            result = &mut command => return result,
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    Err(Interrupted { signal }.into())
}
