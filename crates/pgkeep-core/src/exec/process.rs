//! PostgreSQL client programs as child processes: explicit environment (the connection, password
//! included, goes through `PG*` variables, never argv), stdin closed unless asked for, killed when
//! dropped, stderr drained concurrently (a full stderr pipe would block the child and deadlock the
//! stdout reader) and its tail kept for the error message.
//!
//! [`StdoutStream`] turns a child's stdout into an `AsyncRead` whose end is only clean when the child
//! exited 0: a pg_dump that fails after writing half a dump makes the read fail, so the pipeline's
//! put fails and nothing is published.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::process::{Child, ChildStdout, Command};

use crate::pg::ConnInfo;

const STDERR_TAIL: usize = 16 * 1024;

/// A child program failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// It could not be started.
    #[error(
        "cannot run {program}: {source}\n  fix: check that it is installed and executable (postgres.bin-dir)"
    )]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It exited non-zero.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
}

/// The last [`STDERR_TAIL`] bytes a child wrote to stderr, collected by a background task.
#[derive(Debug, Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    fn collect(self, mut stderr: tokio::process::ChildStderr) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                self.keep(&buf[..n]);
            }
        })
    }

    fn collect_blocking(
        self,
        mut stderr: std::process::ChildStderr,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
                if n == 0 {
                    break;
                }
                self.keep(&buf[..n]);
            }
        })
    }

    fn keep(&self, data: &[u8]) {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.extend_from_slice(data);
        if tail.len() > STDERR_TAIL {
            let cut = tail.len() - STDERR_TAIL;
            tail.drain(..cut);
        }
    }

    /// What was collected so far, trimmed.
    pub fn text(&self) -> String {
        let tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&tail).trim().to_string()
    }
}

/// A command for a PostgreSQL client program connecting with `conninfo` to `dbname`.
pub(crate) fn pg_command(program: &Path, conninfo: &ConnInfo, dbname: Option<&str>) -> Command {
    let mut cmd = Command::from(pg_std_command(program, conninfo, dbname));
    cmd.kill_on_drop(true);
    cmd
}

/// [`pg_command`] as a `std` command, for [`BlockingStdout`].
pub(crate) fn pg_std_command(
    program: &Path,
    conninfo: &ConnInfo,
    dbname: Option<&str>,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    // Stale PG* variables of the caller must not mix with the resolved connection.
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && key.starts_with("PG")
        {
            cmd.env_remove(key);
        }
    }
    cmd.envs(conninfo.child_env(dbname))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` (the program at `program`) to the end with stdout and stderr captured, whatever its
/// exit status; only a program that cannot be started is an error.
pub(crate) async fn output(cmd: &mut Command, program: &Path) -> Result<Output, ProcessError> {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|source| ProcessError::Spawn {
            program: program.to_path_buf(),
            source,
        })
}

/// Runs a command to the end with stdout captured; non-zero exit is an error with stderr's tail.
pub(crate) async fn run(mut cmd: Command, program: &Path) -> Result<String, ProcessError> {
    let out = output(&mut cmd, program).await?;
    if !out.status.success() {
        return Err(ProcessError::Failed {
            program: program.to_path_buf(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How often the end of a child is polled for once its stdout has closed (it exits right after).
const EXIT_POLL: Duration = Duration::from_millis(5);

fn lock<T>(child: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    child.lock().unwrap_or_else(|p| p.into_inner())
}

/// A child that can be killed from elsewhere than the thread reading its stdout.
enum Shared {
    Tokio(Arc<Mutex<Child>>),
    Std(Arc<Mutex<std::process::Child>>),
}

/// Kills a [`StdoutStream`]'s or [`BlockingStdout`]'s child when dropped, if it still runs. The
/// stream itself is read on the compression thread, which a cancelled or failed caller cannot
/// stop while it waits for the child's next bytes; the caller holds this instead, so that a
/// failure, an interrupt or a dropped future never leaves the child running.
pub(crate) struct StopOnDrop(Shared);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        match &self.0 {
            Shared::Tokio(child) => {
                let mut child = lock(child);
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.start_kill();
                }
            }
            Shared::Std(child) => {
                let mut child = lock(child);
                if matches!(child.try_wait(), Ok(None)) {
                    let _ = child.kill();
                }
            }
        }
    }
}

type Wait = Pin<Box<dyn Future<Output = std::io::Result<ExitStatus>> + Send>>;

enum State {
    Reading(ChildStdout),
    Waiting(Wait),
    Done,
}

/// A child's stdout as a stream that ends cleanly only if the child exits 0.
pub(crate) struct StdoutStream {
    program: PathBuf,
    state: State,
    child: Option<Arc<Mutex<Child>>>,
    stderr: StderrTail,
    stderr_task: Option<tokio::task::JoinHandle<()>>,
}

impl StdoutStream {
    /// Starts `cmd` with stdout and stderr piped.
    pub fn spawn(mut cmd: Command, program: &Path) -> Result<StdoutStream, ProcessError> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
        let stdout = child.stdout.take().ok_or_else(|| ProcessError::Spawn {
            program: program.to_path_buf(),
            source: std::io::Error::other("no stdout pipe"),
        })?;
        let stderr = StderrTail::default();
        let stderr_task = child.stderr.take().map(|e| stderr.clone().collect(e));
        Ok(StdoutStream {
            program: program.to_path_buf(),
            state: State::Reading(stdout),
            child: Some(Arc::new(Mutex::new(child))),
            stderr,
            stderr_task,
        })
    }

    /// A guard that kills the child when dropped, if it still runs then.
    pub fn stopper(&self) -> Option<StopOnDrop> {
        self.child
            .as_ref()
            .map(|child| StopOnDrop(Shared::Tokio(child.clone())))
    }
}

impl AsyncRead for StdoutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Reading(stdout) => {
                    let before = buf.filled().len();
                    match Pin::new(stdout).poll_read(cx, buf) {
                        Poll::Ready(Ok(())) if buf.filled().len() == before => {
                            // End of stdout: the stream is only complete if the child succeeded.
                            let Some(child) = this.child.take() else {
                                this.state = State::Done;
                                continue;
                            };
                            let stderr_task = this.stderr_task.take();
                            this.state = State::Waiting(Box::pin(async move {
                                // Polled, not awaited: a StopOnDrop may need the lock to kill it.
                                let status = loop {
                                    match lock(&child).try_wait() {
                                        Ok(Some(status)) => break Ok(status),
                                        Ok(None) => {}
                                        Err(e) => break Err(e),
                                    }
                                    tokio::time::sleep(EXIT_POLL).await;
                                };
                                if let Some(task) = stderr_task {
                                    let _ = task.await;
                                }
                                status
                            }));
                        }
                        other => return other,
                    }
                }
                State::Waiting(wait) => match wait.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(status)) if status.success() => this.state = State::Done,
                    Poll::Ready(Ok(status)) => {
                        this.state = State::Done;
                        return Poll::Ready(Err(std::io::Error::other(format!(
                            "{} failed ({status}): {}",
                            this.program.display(),
                            this.stderr.text()
                        ))));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                },
                State::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// A child's stdout read with blocking reads (on a blocking thread), ending cleanly only if the
/// child exits 0, like [`StdoutStream`]. Dropping it kills a child still running.
pub(crate) struct BlockingStdout {
    program: PathBuf,
    child: Arc<Mutex<std::process::Child>>,
    stdout: std::process::ChildStdout,
    stderr: StderrTail,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    done: bool,
}

impl BlockingStdout {
    /// Starts `cmd` with stdout and stderr piped.
    pub fn spawn(
        mut cmd: std::process::Command,
        program: &Path,
    ) -> Result<BlockingStdout, ProcessError> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
        let stderr = StderrTail::default();
        let stderr_thread = child
            .stderr
            .take()
            .map(|e| stderr.clone().collect_blocking(e));
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProcessError::Spawn {
                program: program.to_path_buf(),
                source: std::io::Error::other("no stdout pipe"),
            });
        };
        Ok(BlockingStdout {
            program: program.to_path_buf(),
            child: Arc::new(Mutex::new(child)),
            stdout,
            stderr,
            stderr_thread,
            done: false,
        })
    }
}

impl std::io::Read for BlockingStdout {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        // End of stdout: the stream is only complete if the child succeeded. Polled, not
        // waited for: a StopOnDrop may need the lock to kill it.
        let status = loop {
            if let Some(status) = lock(&self.child).try_wait()? {
                break status;
            }
            std::thread::sleep(EXIT_POLL);
        };
        if let Some(thread) = self.stderr_thread.take() {
            let _ = thread.join();
        }
        self.done = true;
        if status.success() {
            Ok(0)
        } else {
            Err(std::io::Error::other(format!(
                "{} failed ({status}): {}",
                self.program.display(),
                self.stderr.text()
            )))
        }
    }
}

impl BlockingStdout {
    /// A guard that kills the child when dropped, if it still runs then.
    pub fn stopper(&self) -> StopOnDrop {
        StopOnDrop(Shared::Std(self.child.clone()))
    }
}

impl Drop for BlockingStdout {
    fn drop(&mut self) {
        let mut child = lock(&self.child);
        if !self.done && matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
