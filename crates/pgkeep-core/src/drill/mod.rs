//! Restore drills (`pgkeep drill`): a backup restored into a throwaway cluster in the scratch
//! directory ([`scratch`]), reachable only through its own socket directory ([`cluster`]),
//! checked ([`checks`]), measured (RTO and RPO), removed, and the result stored beside the backup
//! ([`record`]).
//!
//! A physical backup goes through [`plan_physical_restore`] and [`restore_physical`] with the
//! server started and promoted at the end of recovery, with all of the archived WAL replayed
//! ([`DrillTarget::Latest`]) or recovered to a random time between the backup's end and the
//! newest archived commit ([`DrillTarget::Random`]). A logical backup goes into a fresh `initdb`:
//! its globals first ([`restore_globals`]), then every database ([`restore_logical`]).
//!
//! The order: everything that can refuse (no backup, no random time to aim at, too little room in
//! the scratch filesystem) is decided for every drill of a run before the first one starts, and a
//! refusal restores and records nothing. A drill that starts always ends with its scratch cluster
//! stopped and removed (also on a failure or an interrupt), and then its record is stored.

mod checks;
mod cluster;
mod record;
mod scratch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SubsecRound as _, Utc};
use serde::Serialize;

use self::checks::Checker;
use self::scratch::{DrillDir, ScratchRoot};
use crate::error::{DrillError, Error};
use crate::exec::{self, Interrupt};
use crate::logical::{
    BackupChoice, GlobalsOptions, LogicalRestoreOptions, plan_logical_restore, restore_globals,
    restore_logical,
};
use crate::pg::ConnInfo;
use crate::pitr::{
    PhysicalRestoreOptions, PhysicalRestorePlan, PhysicalRestoreRequest, RecoveryTarget,
    RecoveryWindow, TargetAction, TimelineChoice, WindowEnd, plan_physical_restore,
    recoverable_window, restore_physical,
};
use crate::repo::Repository;
use crate::repo::catalog::{BackupKind, Manifest, find_backup};
use crate::repo::scan::{Catalog, read_catalog};
use crate::settings::Settings;
use crate::stream::Progress;
pub use record::{
    DrillAim, DrillCause, DrillCheck, DrillCheckKind, DrillCheckResult, DrillHistory, DrillOutcome,
    DrillRecord, LastDrills, UnreadableRecord, drill_history, last_drills,
};

/// The room a drill needs beyond the backup and its WAL: 64 MiB (a fresh cluster's own files)
/// and a tenth of the backup.
const MARGIN_BYTES: u64 = 64 << 20;

/// Which backups a drill run restores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DrillSelection {
    /// The newest backup of each kind the repository holds (by end time, then start LSN).
    #[default]
    Newest,
    /// The newest logical and the newest physical backup; refused when a kind has none.
    AllKinds,
    /// This backup.
    Backup(String),
}

/// Where a physical drill's recovery stops (logical drills restore the dumps as taken).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DrillTarget {
    /// Replay all of the archived WAL.
    #[default]
    Latest,
    /// A random time between the backup's end and the newest archived commit; the drill fails
    /// unless recovery stops there.
    Random,
}

/// How to drill.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Which backups.
    pub selection: DrillSelection,
    /// Where physical recovery stops.
    pub target: DrillTarget,
    /// The pgkeep program the restored server's `restore_command` runs, as in
    /// [`PhysicalRestoreOptions::wal_fetch_program`] (default: this process's executable).
    pub wal_fetch_program: Option<PathBuf>,
    /// Stops the drill from outside (SIGTERM, SIGINT): its children are killed, its scratch
    /// cluster stopped and removed, nothing is recorded, and the run returns
    /// [`Error::Interrupted`].
    pub interrupt: Interrupt,
}

/// One drill: its record, where the record is stored, and what else happened.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// What the drill found (stored beside the backup).
    #[serde(flatten)]
    pub record: DrillRecord,
    /// The record's key, once stored.
    pub record_key: Option<String>,
    /// The drill's scratch directory (removed by now, unless `problems` says otherwise).
    pub scratch: PathBuf,
    /// What the drill noticed that is no failure (a logical backup without globals).
    pub notes: Vec<String>,
    /// What went wrong around the drill: its record not stored, its scratch cluster not removed.
    pub problems: Vec<String>,
}

impl DrillReport {
    /// Whether the drill passed and nothing went wrong around it.
    pub fn ok(&self) -> bool {
        self.record.passed() && self.problems.is_empty()
    }
}

/// A drill run: one drill per backup chosen.
#[derive(Debug, Clone, Serialize)]
pub struct DrillRun {
    /// The drills, in order (logical before physical).
    pub drills: Vec<DrillReport>,
    /// What earlier drills that were killed had left in the scratch directory, and was removed.
    pub swept: Vec<String>,
}

impl DrillRun {
    /// Whether every drill passed and nothing went wrong around them.
    pub fn ok(&self) -> bool {
        self.drills.iter().all(DrillReport::ok)
    }
}

/// How a drill restores its backup.
enum Way {
    /// A logical backup's dumps into a fresh cluster.
    Dumps,
    /// A physical backup by this plan.
    Base(Box<PhysicalRestorePlan>),
    /// A physical backup whose restore cannot even be planned (a WAL segment missing): the drill
    /// fails with this.
    Unplannable(Error),
}

/// A drill decided on and not started: nothing of it exists yet.
struct Prepared {
    backup: Manifest,
    path: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    aim: DrillAim,
    way: Way,
    /// Seconds its planning took, counted into its RTO.
    plan_seconds: f64,
}

/// Restores each chosen backup into a throwaway cluster, checks it, measures RTO and RPO, removes
/// it and stores the record beside the backup. First removes what killed drills left in the
/// scratch directory.
///
/// A drill that ran is in the result whatever its outcome ([`DrillRun::ok`]); an error means a
/// refusal before any drill started ([`DrillError`]: no backup, no random time, too little free
/// space in `[drill] scratch-dir`), or an interrupt.
pub async fn drill(
    settings: &Settings,
    repo: &Repository,
    options: &DrillOptions,
    progress: Arc<dyn Progress>,
) -> Result<DrillRun, Error> {
    let root = ScratchRoot::open(&settings.drill.scratch_dir)?;
    let swept = root.sweep();
    let catalog = read_catalog(repo).await?;
    let chosen = choose(repo, &catalog, &options.selection).await?;
    let random = options.target == DrillTarget::Random;
    let window = match random && chosen.iter().any(|b| b.kind == BackupKind::Physical) {
        true => {
            let bin_dir = settings.bin_dir.as_deref();
            Some(recoverable_window(repo, &catalog.backups, bin_dir).await?)
        }
        false => None,
    };
    let user = cluster::server_user()?;
    let mut prepared = Vec::new();
    for backup in chosen {
        prepared.push(prepare(settings, repo, &root, backup, options, window.as_ref()).await?);
    }
    let available = root.available()?;
    for p in &prepared {
        check_space(p, &root, available)?;
    }
    let mut drills = Vec::new();
    for p in prepared {
        if let Some(reason) = options.interrupt.reason() {
            return Err(Error::Interrupted {
                reason: reason.to_string(),
            });
        }
        drills.push(run_one(settings, repo, p, user, options, &progress).await?);
    }
    Ok(DrillRun { drills, swept })
}

/// The backups the selection names.
async fn choose(
    repo: &Repository,
    catalog: &Catalog,
    selection: &DrillSelection,
) -> Result<Vec<Manifest>, Error> {
    if let DrillSelection::Backup(id) = selection {
        return Ok(vec![find_backup(repo, id).await?]);
    }
    let mut chosen = Vec::new();
    for kind in [BackupKind::Logical, BackupKind::Physical] {
        let newest = catalog
            .backups
            .iter()
            .filter(|b| b.kind == kind)
            .max_by_key(|b| (b.finished_at, b.physical.as_ref().map(|p| p.start_lsn)));
        match newest {
            Some(backup) => chosen.push(backup.clone()),
            None if *selection == DrillSelection::AllKinds => {
                return Err(DrillError::KindMissing {
                    kind,
                    repo: repo.storage().url(),
                    cluster: repo.cluster().to_string(),
                }
                .into());
            }
            None => {}
        }
    }
    if chosen.is_empty() {
        return Err(DrillError::NothingToDrill {
            repo: repo.storage().url(),
            cluster: repo.cluster().to_string(),
        }
        .into());
    }
    Ok(chosen)
}

/// Decides a drill of `backup`: its directory, its port, and for a physical backup its target
/// and plan (which writes nothing).
async fn prepare(
    settings: &Settings,
    repo: &Repository,
    root: &ScratchRoot,
    backup: Manifest,
    options: &DrillOptions,
    window: Option<&RecoveryWindow>,
) -> Result<Prepared, Error> {
    let begun = Instant::now();
    let port = cluster::free_port();
    let path = root.new_path(port)?;
    let major = backup.server_version_num / 10_000;
    let pg_ctl = exec::located(settings.bin_dir.as_deref(), "pg_ctl", major)?;
    let (aim, way) = match backup.kind {
        BackupKind::Logical => (DrillAim::Backup, Way::Dumps),
        BackupKind::Physical => {
            let (aim, target) = match (options.target, window) {
                (DrillTarget::Random, Some(window)) => {
                    let time = random_time(&backup, window)?;
                    (DrillAim::Time { time }, RecoveryTarget::Time(time))
                }
                _ => (DrillAim::Latest, RecoveryTarget::Latest),
            };
            let request = PhysicalRestoreRequest {
                target,
                backup: Some(backup.id.clone()),
                timeline: TimelineChoice::Latest,
                pgdata: scratch::data_dir(&path),
                force: false,
                bin_dir: settings.bin_dir.clone(),
            };
            let way = match plan_physical_restore(repo, &request).await {
                Ok(plan) => Way::Base(Box::new(plan)),
                Err(e) => Way::Unplannable(e),
            };
            (aim, way)
        }
    };
    Ok(Prepared {
        backup,
        path,
        port,
        pg_ctl,
        aim,
        way,
        plan_seconds: begun.elapsed().as_secs_f64(),
    })
}

/// A random time, to the microsecond, strictly between the end of `backup` and the end of the
/// window (the newest archived commit): recovery to it stops before the first commit after it.
fn random_time(backup: &Manifest, window: &RecoveryWindow) -> Result<DateTime<Utc>, Error> {
    let refuse = |why: String, fix| DrillError::NoRandomTime {
        backup: backup.id.clone(),
        why,
        fix,
    };
    let (WindowEnd::NewestCommit { .. }, Some(to)) = (&window.end, window.to) else {
        return Err(refuse(
            format!("the window's end is not the newest archived commit ({window})"),
            "make pg_waldump available (it ships with the server package; or set postgres.bin-dir), or drill with --target latest",
        )
        .into());
    };
    let from = backup
        .physical
        .as_ref()
        .map_or(backup.finished_at, |p| p.stop_time)
        .trunc_subsecs(6);
    let span = (to - from).num_microseconds().unwrap_or(i64::MAX);
    if span < 2 {
        return Err(refuse(
            format!("no commit was archived after it ended (the window is {window})"),
            "commit something on the server and archive its WAL segment (SELECT pg_switch_wal()), or drill with --target latest",
        )
        .into());
    }
    Ok(from + chrono::Duration::microseconds(rand::random_range(1..span)))
}

/// Refuses a drill whose restore needs more room than the scratch filesystem has.
fn check_space(p: &Prepared, root: &ScratchRoot, available: u64) -> Result<(), Error> {
    let size = p.backup.size();
    let wal = match &p.way {
        Way::Base(plan) => {
            let segment = p.backup.physical.as_ref().map_or(0, |i| i.wal_segment_size);
            plan.wal_segments as u64 * segment
        }
        Way::Dumps => 0,
        Way::Unplannable(_) => return Ok(()),
    };
    let margin = MARGIN_BYTES + size / 10;
    let need = size.saturating_add(wal).saturating_add(margin);
    if need > available {
        return Err(DrillError::NoSpace {
            backup: p.backup.id.clone(),
            dir: root.dir().to_path_buf(),
            need,
            size,
            wal,
            margin,
            available,
        }
        .into());
    }
    Ok(())
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
/// interrupt, the directory stopped and removed, the record stored.
async fn run_one(
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
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    let found = match &p.way {
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
                problems.push(format!("the scratch cluster was not removed: {e}"));
            }
            found?
        }
    };
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
                found.cause = Some(DrillCause::Restore {
                    error: e.to_string(),
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
                restored.reached_time.map(|r| seconds_between(r, end))
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
            let options = GlobalsOptions::default();
            restore_globals(&into, self.repo, &choice, &options, self.progress.clone()).await?;
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

/// The check that recovery to `target` stopped there: promoted at the target (PostgreSQL stops
/// with an error when the WAL ends before it), with no commit after it replayed.
fn target_check(target: DateTime<Utc>, reached: Option<DateTime<Utc>>) -> DrillCheck {
    let result = match reached {
        Some(reached) if reached > target => DrillCheckResult::Failed {
            problem: format!(
                "recovery replayed a commit of {}, after the target {}",
                crate::pg::utc_micros(&reached),
                crate::pg::utc_micros(&target)
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
