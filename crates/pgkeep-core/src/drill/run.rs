//! Running one prepared drill: its directory made, the backup restored and the server checked
//! under the interrupt, then the directory stopped and removed whatever happened, and the record
//! stored beside the backup.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::checks::Checker;
use super::scratch::DrillDir;
use super::{
    DrillAim, DrillCause, DrillCheck, DrillCheckKind, DrillCheckResult, DrillOptions, DrillOutcome,
    DrillRecord, DrillReport, Prepared, Way, cluster, objects, record,
};
use crate::error::Error;
use crate::exec::Interrupt;
use crate::logical::{
    BackupChoice, GlobalsOptions, LogicalRestoreOptions, plan_logical_restore, restore_globals,
    restore_logical,
};
use crate::pg::{ConnInfo, utc_micros};
use crate::pitr::{PhysicalRestoreOptions, PhysicalRestorePlan, TargetAction, restore_physical};
use crate::repo::Repository;
use crate::repo::catalog::BackupKind;
use crate::repo::lease::{self, LeasePurpose};
use crate::settings::Settings;
use crate::stream::Progress;

/// The log a physical restore writes in its data directory.
const RESTORE_LOG: &str = "pgkeep-restore.log";

/// How many of the restore log's last lines a drill's cause quotes.
const LOG_LINES: usize = 12;

/// A restore's error as a drill's cause. The restored server's log at `log` goes with the drill's
/// directory, so an error that sends the reader to it is told so, and quotes its last lines (read
/// now, before the directory is removed) unless it already does.
fn restore_error(error: &Error, log: &Path) -> String {
    let text = error.to_string();
    let shown = log.display().to_string();
    if !text.contains(&shown) {
        return text;
    }
    let quoted = text.contains("log ends with");
    let text = text.replace(
        &format!("read {shown}"),
        "read the end of the restore's log quoted here (the log itself was removed with the drill's directory)",
    );
    if quoted {
        return text;
    }
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = log_text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_LINES)..].join("\n    ");
    format!(
        "{text}\n  the end of the restore's log (removed with the drill's directory):\n    {tail}"
    )
}

/// What a drill found before its record was made.
#[derive(Default)]
struct Found {
    cause: Option<DrillCause>,
    checks: Vec<DrillCheck>,
    reached_time: Option<DateTime<Utc>>,
    reached_lsn: Option<String>,
    rto_seconds: Option<f64>,
    rpo_seconds: Option<f64>,
}

/// A restored server: how to reach it, the roles to try, and what recovery reached.
struct Restored {
    conninfo: ConnInfo,
    users: Vec<String>,
    reached_time: Option<DateTime<Utc>>,
    reached_lsn: Option<String>,
    /// The end of the recoverable window (physical), for the RPO.
    window_end: Option<DateTime<Utc>>,
}

/// Runs one prepared drill to its end: its directory made, the restore and the checks under the
/// interrupt, the directory stopped and removed, the record stored — all under one lease on the
/// backup, so that `expire` leaves it alone between the restore calls (which hold leases of their
/// own) and until its record is stored.
pub(super) async fn run_one(
    settings: &Settings,
    repo: &Repository,
    p: Prepared,
    user: Option<(u32, u32)>,
    options: &DrillOptions,
    progress: &Arc<dyn Progress>,
) -> Result<DrillReport, Error> {
    let id = p.backup.id.clone();
    let ttl = settings.retention.lease_ttl;
    let work = run_leased(settings, repo, p, user, options, progress);
    lease::restoring(repo, ttl, LeasePurpose::Drill, &id, work).await
}

/// [`run_one`] under its lease.
async fn run_leased(
    settings: &Settings,
    repo: &Repository,
    p: Prepared,
    user: Option<(u32, u32)>,
    options: &DrillOptions,
    progress: &Arc<dyn Progress>,
) -> Result<DrillReport, Error> {
    let begun = Instant::now();
    let started_at = Utc::now();
    let item = format!("drill {}", p.backup.id);
    progress.start(&item);
    let mut notes = p.notes.clone();
    let mut problems = Vec::new();
    let mut found = match &p.way {
        Way::Unplannable(e) => Found {
            cause: Some(DrillCause::Restore {
                error: e.to_string(),
            }),
            ..Found::default()
        },
        way => {
            let mut dir = DrillDir::create(&p.path, &p.backup.id, &p.pg_ctl, user)?;
            let work = async {
                let ctx = Ctx {
                    settings,
                    repo,
                    p: &p,
                    dir: &dir,
                    user,
                    options,
                    progress,
                    started_at,
                };
                Ok::<_, Error>(ctx.drill(way, begun, &mut notes).await)
            };
            let found = options
                .interrupt
                .run(work, |reason| Error::Interrupted { reason })
                .await;
            if let Err(e) = dir.remove() {
                tracing::warn!("drill of backup {}: {e}", p.backup.id);
                problems.push(format!("the scratch cluster was not removed: {e}"));
            }
            found?
        }
    };
    if let Some(objects) = objects::check_unread(repo, &p.backup).await {
        add_check(&mut found, objects);
    }
    progress.finish(&item);
    let record = p.record(started_at, found);
    let record_key = match record::write_record(repo, &record).await {
        Ok(key) => Some(key),
        Err(e) => {
            problems.push(format!("the drill's record was not stored: {e}"));
            None
        }
    };
    Ok(DrillReport {
        record,
        record_key,
        scratch: p.path,
        notes,
        problems,
    })
}

impl Prepared {
    /// The record of this drill, begun at `started_at`, from what it found.
    fn record(&self, started_at: DateTime<Utc>, found: Found) -> DrillRecord {
        let outcome = match found.cause {
            None => DrillOutcome::Passed,
            Some(cause) => DrillOutcome::Failed { cause },
        };
        let mut record = DrillRecord::new(
            &self.backup.id,
            self.backup.kind,
            started_at,
            outcome,
            self.aim,
        );
        record.reached_time = found.reached_time;
        record.reached_lsn = found.reached_lsn;
        record.rto_seconds = found.rto_seconds;
        record.rpo_seconds = found.rpo_seconds;
        record.checks = found.checks;
        record
    }
}

/// What a running drill works with.
struct Ctx<'a> {
    settings: &'a Settings,
    repo: &'a Repository,
    p: &'a Prepared,
    dir: &'a DrillDir,
    user: Option<(u32, u32)>,
    options: &'a DrillOptions,
    progress: &'a Arc<dyn Progress>,
    /// When the drill began: a logical backup's RPO is its age then.
    started_at: DateTime<Utc>,
}

/// Seconds from `from` to `to`, never negative.
fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}

impl Ctx<'_> {
    /// Restores, connects, measures and checks; every failure is the drill's cause.
    async fn drill(&self, way: &Way, begun: Instant, notes: &mut Vec<String>) -> Found {
        let mut found = Found::default();
        let restored = match way {
            Way::Base(plan) => self.restore_base(plan).await,
            _ => self.restore_dumps(notes).await,
        };
        let restored = match restored {
            Ok(restored) => restored,
            Err(e) => {
                let log = self.dir.data().join(RESTORE_LOG);
                found.cause = Some(DrillCause::Restore {
                    error: restore_error(&e, &log),
                });
                return found;
            }
        };
        found.reached_time = restored.reached_time;
        found.reached_lsn = restored.reached_lsn.clone();
        let (checker, connects) = match Checker::connect(&restored.conninfo, &restored.users).await
        {
            Ok(connected) => connected,
            Err(e) => {
                found.cause = Some(DrillCause::NoConnection {
                    error: e.to_string(),
                });
                return found;
            }
        };
        found.rto_seconds = Some(self.p.plan_seconds + begun.elapsed().as_secs_f64());
        found.rpo_seconds = match (self.p.backup.kind, restored.window_end) {
            (BackupKind::Logical, _) => {
                Some(seconds_between(self.p.backup.finished_at, self.started_at))
            }
            (BackupKind::Physical, Some(end)) => {
                // No commit replayed: the data is as of the target time, else the backup's end.
                let aimed = match self.p.aim {
                    DrillAim::Time { time } => Some(time),
                    _ => None,
                };
                let stop = self.p.backup.physical.as_ref().map(|i| i.stop_time);
                let data_of = restored.reached_time.or(aimed).or(stop);
                data_of.map(|t| seconds_between(t, end))
            }
            (BackupKind::Physical, None) => None,
        };
        found.checks.push(connects);
        if let DrillAim::Time { time } = self.p.aim {
            found.checks.push(target_check(time, restored.reached_time));
        }
        self.check_databases(&checker, &mut found).await;
        let failed: Vec<String> = found
            .checks
            .iter()
            .filter(|c| c.failed())
            .map(DrillCheck::subject)
            .collect();
        if !failed.is_empty() {
            found.cause = Some(DrillCause::Checks { failed });
        }
        found
    }

    /// The databases check, then each database's checks.
    async fn check_databases(&self, checker: &Checker, found: &mut Found) {
        let expected = self.p.backup.databases();
        let expected = (self.p.backup.kind == BackupKind::Logical).then_some(expected.as_slice());
        match checker.databases(expected).await {
            Ok((databases, check)) => {
                found.checks.push(check);
                for database in databases {
                    found.checks.extend(checker.database(&database).await);
                }
            }
            Err(e) => {
                found.cause = Some(DrillCause::NoConnection {
                    error: e.to_string(),
                })
            }
        }
    }

    /// A physical backup restored by `plan`, its server started and promoted.
    async fn restore_base(&self, plan: &PhysicalRestorePlan) -> Result<Restored, Error> {
        let options = PhysicalRestoreOptions {
            start: true,
            // Promoted at the target, the server accepts the amcheck extension.
            target_action: TargetAction::Promote,
            port: Some(self.p.port),
            keep_archiving: false,
            owner: None,
            wal_fetch_program: self.options.wal_fetch_program.clone(),
            server_settings: cluster::confine(self.dir, self.user)?,
        };
        let report = restore_physical(
            self.settings,
            self.repo,
            plan,
            &options,
            self.progress.clone(),
        )
        .await?;
        // Who the restored cluster's superuser is is only known once connected: try the role
        // the backup was taken as, then the usual bootstrap superusers.
        let mut users = vec![
            self.settings.conninfo.user.clone(),
            cluster::SUPERUSER.into(),
        ];
        users.extend(std::env::var("USER").ok());
        users.dedup();
        Ok(Restored {
            conninfo: ConnInfo::local_socket(&self.dir.socket(), self.p.port, &users[0]),
            users,
            reached_time: report.reached_time,
            reached_lsn: report.reached_lsn,
            window_end: plan.window.to,
        })
    }

    /// A logical backup restored into a fresh cluster: its globals first, then every database.
    async fn restore_dumps(&self, notes: &mut Vec<String>) -> Result<Restored, Error> {
        let backup = &self.p.backup;
        let conninfo =
            cluster::fresh_cluster(self.settings, backup, self.dir, self.p.port, self.user).await?;
        let into = Settings {
            conninfo: conninfo.clone(),
            ..self.settings.clone()
        };
        let choice = BackupChoice::Id(backup.id.clone());
        if backup.globals().is_some() {
            // The backup's tablespace locations belong to its own server, maybe on this host.
            let options = GlobalsOptions {
                skip_tablespaces: true,
                ..GlobalsOptions::default()
            };
            let report =
                restore_globals(&into, self.repo, &choice, &options, self.progress.clone()).await?;
            if report.tablespace_statements_skipped > 0 {
                notes.push(
                    "tablespaces were not recreated (their locations belong to the backup's own server): every table went into the throwaway cluster's data directory".into(),
                );
            }
        } else {
            notes.push(format!(
                "backup {} holds no globals (taken without --globals): its roles were not restored, so objects owned by roles other than `{}` cannot be restored into a new cluster",
                backup.id,
                cluster::SUPERUSER
            ));
        }
        for database in backup.databases() {
            let plan = plan_logical_restore(self.repo, database, &choice, None).await?;
            let options = LogicalRestoreOptions {
                jobs: 1,
                // The fresh cluster's own `postgres` database is replaced; the others are new.
                clean: true,
                no_tablespaces: true,
                interrupt: Interrupt::new(),
            };
            restore_logical(&into, self.repo, &plan, &options, self.progress.clone()).await?;
        }
        Ok(Restored {
            conninfo,
            users: vec![cluster::SUPERUSER.into()],
            reached_time: None,
            reached_lsn: None,
            window_end: None,
        })
    }
}

/// Adds `check`, made after the drill, to what it found: a failed one fails the drill (a cause of
/// its own, or one more failed check).
fn add_check(found: &mut Found, check: DrillCheck) {
    if check.failed() {
        match &mut found.cause {
            None => {
                found.cause = Some(DrillCause::Checks {
                    failed: vec![check.subject()],
                })
            }
            Some(DrillCause::Checks { failed }) => failed.insert(0, check.subject()),
            Some(_) => {}
        }
    }
    found.checks.insert(0, check);
}

/// The check that recovery to `target` stopped there: promoted at the target (PostgreSQL stops
/// with an error when the WAL ends before it), with no commit after it replayed.
fn target_check(target: DateTime<Utc>, reached: Option<DateTime<Utc>>) -> DrillCheck {
    let result = match reached {
        Some(reached) if reached > target => DrillCheckResult::Failed {
            problem: format!(
                "recovery replayed a commit of {}, after the target {}",
                utc_micros(&reached),
                utc_micros(&target)
            ),
        },
        _ => DrillCheckResult::Passed,
    };
    DrillCheck {
        check: DrillCheckKind::Target,
        database: None,
        checked: 1,
        result,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;
    use crate::error::PitrError;

    #[test]
    fn a_restore_error_quotes_the_log_that_goes_with_the_drill_directory() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(RESTORE_LOG);
        let lines: Vec<String> = (0..20).map(|n| format!("line {n}")).collect();
        std::fs::write(&log, lines.join("\n")).unwrap();
        let failed = Error::from(PitrError::StartFailed {
            status: std::process::ExitStatus::from_raw(256),
            stderr: "pg_ctl: could not start server".into(),
            log: log.clone(),
        });
        let text = restore_error(&failed, &log);
        assert!(!text.contains(&log.display().to_string()), "{text}");
        assert!(
            text.contains("removed with the drill's directory"),
            "{text}"
        );
        assert!(
            text.contains("line 8\n    line 9") && text.ends_with("line 19"),
            "{text}"
        );
        assert!(!text.contains("line 7"), "{text}");
        // Already quoting the log's end, the error is only told the log is gone.
        let stopped = Error::from(PitrError::RecoveryStopped {
            log: log.clone(),
            tail: "FATAL: could not restore file".into(),
        });
        let text = restore_error(&stopped, &log);
        assert!(!text.contains(&log.display().to_string()), "{text}");
        assert_eq!(text.matches("FATAL").count(), 1, "{text}");
        assert!(!text.contains("line 19"), "{text}");
    }
}
