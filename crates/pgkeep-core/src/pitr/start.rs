//! Starting a restored server and watching its recovery until it pauses at the target, is
//! promoted, or shuts down; then what it reached. The server is asked through psql as its own
//! user (the restored pg_hba.conf may allow only peer authentication), one JSON object per
//! question.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::plan::PhysicalRestorePlan;
use super::restore::{PhysicalRestoreOptions, PhysicalRestoreReport, RestoreState};
use super::target::{RecoveryTarget, TargetAction};
use crate::error::{Error, PitrError};
use crate::exec;
use crate::pg::{UTC_TEXT, parse_utc_text};
use crate::settings::Settings;
use crate::stream::Progress;

/// What `postmaster.pid` says about a running server.
#[derive(Debug, PartialEq, Eq)]
struct PidFile {
    port: u16,
    socket_dir: String,
    listen: String,
    /// `starting`, `ready`, `standby`, `stopping`.
    status: String,
}

impl PidFile {
    /// Reads `dir/postmaster.pid`; `None` while there is none (or it is being written).
    fn read(dir: &Path) -> Option<PidFile> {
        let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
        PidFile::parse(&text)
    }

    fn parse(text: &str) -> Option<PidFile> {
        let lines: Vec<&str> = text.lines().collect();
        let line = |n: usize| lines.get(n).map_or("", |l| l.trim()).to_string();
        Some(PidFile {
            port: lines.get(3)?.trim().parse().ok()?,
            socket_dir: line(4),
            listen: line(5),
            status: line(7),
        })
    }

    /// Where psql reaches it: its socket directory, else its listen address.
    fn host(&self) -> String {
        if !self.socket_dir.is_empty() {
            self.socket_dir.clone()
        } else if self.listen.is_empty() || self.listen == "*" {
            "127.0.0.1".to_string()
        } else {
            self.listen.clone()
        }
    }
}

/// The restored server's recovery, as one JSON object from psql.
#[derive(Debug, Deserialize)]
struct Recovery {
    in_recovery: bool,
    pause_state: String,
    replay_lsn: Option<String>,
    replay_time: Option<String>,
    /// Tables locked (ACCESS EXCLUSIVE), e.g. by the DROP a paused recovery stopped before.
    locked_tables: i64,
}

fn recovery_query() -> String {
    format!(
        "SELECT json_build_object(
                'in_recovery', pg_is_in_recovery(),
                'pause_state', CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state()
                                    ELSE 'not paused' END,
                'replay_lsn', pg_last_wal_replay_lsn()::text,
                'replay_time', to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', {UTC_TEXT}),
                'locked_tables', (SELECT count(DISTINCT (database, relation)) FROM pg_locks
                                   WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock'))"
    )
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n    ")
}

/// `pg_ctl start` on the restored directory, as `owner` when given; its log is `log`.
async fn pg_ctl_start(
    pg_ctl: &Path,
    dir: &Path,
    log: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), Error> {
    let args = [
        "--log".as_ref(),
        log.as_os_str(),
        "--no-wait".as_ref(),
        "start".as_ref(),
    ];
    let out = exec::pg_ctl(pg_ctl, dir, &args, owner).await?;
    if !out.status.success() {
        return Err(PitrError::StartFailed {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            log: log.to_path_buf(),
        }
        .into());
    }
    Ok(())
}

/// Asks the server where recovery stands; `None` while it does not answer yet.
async fn ask(
    settings: &Settings,
    psql: &Path,
    pid: &PidFile,
    owner: Option<(u32, u32)>,
) -> Result<Option<Recovery>, Error> {
    let mut query = tokio::process::Command::from(exec::pg_std_command(
        psql,
        &settings.conninfo,
        Some("postgres"),
    ));
    query
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-h",
            &pid.host(),
            "-p",
            &pid.port.to_string(),
        ])
        .arg("-c")
        .arg(recovery_query())
        .kill_on_drop(true);
    if let Some((uid, gid)) = owner {
        query.uid(uid).gid(gid);
    }
    let out = exec::output(&mut query, psql).await?;
    if !out.status.success() {
        tracing::debug!(
            "querying the restored server: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Ok(None);
    }
    Ok(serde_json::from_slice(&out.stdout).ok())
}

/// Starts the restored server and waits until recovery pauses at the target, the server is
/// promoted, or it shuts down at the target.
pub(crate) async fn start_and_wait(
    settings: &Settings,
    plan: &PhysicalRestorePlan,
    options: &PhysicalRestoreOptions,
    owner: Option<(u32, u32)>,
    major: u32,
    progress: &Arc<dyn Progress>,
) -> Result<PhysicalRestoreReport, Error> {
    let dir = &plan.pgdata;
    let bin_dir = settings.bin_dir.as_deref();
    let pg_ctl = exec::located(bin_dir, "pg_ctl", major)?;
    let psql = exec::located(bin_dir, "psql", major)?;
    let log = dir.join("pgkeep-restore.log");
    pg_ctl_start(&pg_ctl, dir, &log, owner).await?;
    let started = Instant::now();
    let item = format!("recovering to {}", plan.target);
    progress.start(&item);
    let wants_promotion =
        plan.target == RecoveryTarget::Latest || options.target_action == TargetAction::Promote;
    let mut seen_pid = false;
    let mut port = options.port;
    let report =
        |state, recovery: Option<&Recovery>, port| finished(state, recovery, port, &log, started);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some(pid) = PidFile::read(dir) else {
            if !seen_pid && started.elapsed() < Duration::from_secs(30) {
                continue;
            }
            progress.finish(&item);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if options.target_action == TargetAction::Shutdown
                && plan.target != RecoveryTarget::Latest
                && !text.contains("FATAL")
                && !text.contains("PANIC")
            {
                return Ok(report(RestoreState::ShutDown, None, port));
            }
            return Err(PitrError::RecoveryStopped {
                tail: log_tail(&log),
                log: log.clone(),
            }
            .into());
        };
        seen_pid = true;
        port = Some(pid.port);
        if pid.status != "ready" && pid.status != "standby" {
            continue;
        }
        let Some(recovery) = ask(settings, &psql, &pid, owner).await? else {
            continue;
        };
        let state = match (recovery.in_recovery, recovery.pause_state.as_str()) {
            (false, _) => RestoreState::Promoted,
            (true, "paused") if !wants_promotion => RestoreState::Paused,
            _ => continue,
        };
        progress.finish(&item);
        return Ok(report(state, Some(&recovery), port));
    }
}

/// The report of a started restore that reached `state`.
fn finished(
    state: RestoreState,
    recovery: Option<&Recovery>,
    port: Option<u16>,
    log: &Path,
    started: Instant,
) -> PhysicalRestoreReport {
    PhysicalRestoreReport {
        state,
        reached_lsn: recovery
            .and_then(|r| r.replay_lsn.clone())
            .filter(|v| !v.is_empty()),
        reached_time: recovery
            .and_then(|r| r.replay_time.as_deref())
            .and_then(parse_utc_text),
        seconds: 0.0,
        recovery_seconds: Some(started.elapsed().as_secs_f64()),
        log: Some(PathBuf::from(log)),
        port,
        // Only a paused server keeps the locks of the transactions it stopped in.
        locked_tables: recovery
            .filter(|_| state == RestoreState::Paused)
            .map_or(0, |r| r.locked_tables),
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_and_recovery_answers() {
        let pid = PidFile::parse(
            "4242\n/srv/restore\n1764000000\n5433\n/tmp\n*\n  5433001  1\nready   \n",
        )
        .unwrap();
        assert_eq!(pid.port, 5433);
        assert_eq!(pid.host(), "/tmp");
        assert_eq!(pid.status, "ready");
        assert!(PidFile::parse("4242\n/srv/restore\n").is_none());
        let answer = r#"{"in_recovery" : true, "pause_state" : "paused", "replay_lsn" : "0/3000060", "replay_time" : "2026-11-25T14:04:30.000000Z", "locked_tables" : 1}"#;
        let recovery: Recovery = serde_json::from_str(answer).unwrap();
        let report = finished(
            RestoreState::Paused,
            Some(&recovery),
            Some(5433),
            Path::new("/l"),
            Instant::now(),
        );
        assert_eq!(report.reached_lsn.as_deref(), Some("0/3000060"));
        assert_eq!(
            report.reached_time.map(|t| t.to_rfc3339()),
            Some("2026-11-25T14:04:30+00:00".into())
        );
        assert_eq!(report.locked_tables, 1);
        // A promoted server holds no recovery locks worth reporting.
        let report = finished(
            RestoreState::Promoted,
            Some(&recovery),
            None,
            Path::new("/l"),
            Instant::now(),
        );
        assert_eq!(report.locked_tables, 0);
    }
}
