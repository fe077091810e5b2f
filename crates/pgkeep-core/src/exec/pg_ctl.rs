//! pg_ctl on a data directory: starting a restored or throwaway server, and stopping one — as the
//! server's OS user when pgkeep runs as root, since pg_ctl refuses to run as root.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Output, Stdio};

use super::ProcessError;

/// Runs `pg_ctl --pgdata DIR ARGS` as `owner` (uid, gid) when given, in `dir`, its stdout
/// discarded and its stderr kept, whatever its exit status. Not [`super::output`]: a server that
/// pg_ctl starts would hold a stdout pipe open.
pub(crate) async fn pg_ctl(
    pg_ctl: &Path,
    dir: &Path,
    args: &[&OsStr],
    owner: Option<(u32, u32)>,
) -> Result<Output, ProcessError> {
    let mut cmd = tokio::process::Command::new(pg_ctl);
    cmd.arg("--pgdata")
        .arg(dir)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd.output().await.map_err(|source| ProcessError::Spawn {
        program: pg_ctl.to_path_buf(),
        source,
    })
}

/// `pg_ctl stop -m immediate` on `dir` as `owner`, waiting until the server is gone (an
/// immediate stop takes a moment). Blocking: it also runs where no runtime does (a `Drop`).
/// Returns pg_ctl's complaint when it failed.
pub(crate) fn stop_immediate(
    pg_ctl: &Path,
    dir: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), String> {
    let mut cmd = std::process::Command::new(pg_ctl);
    cmd.arg("--pgdata")
        .arg(dir)
        .args(["--mode", "immediate", "--wait", "stop"])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{} stop failed ({}): {}",
            pg_ctl.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", pg_ctl.display())),
    }
}
