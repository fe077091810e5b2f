//! Restore drills (`pgkeep drill`): a backup restored into a throwaway cluster in the scratch
//! directory ([`scratch`]), reachable only through its own socket directory ([`cluster`]),
//! checked ([`checks`]; the backup's objects the restore does not read, [`objects`]), measured (RTO and RPO), removed, and the result stored beside the backup
//! ([`record`]); [`run`] runs one drill.
//!
//! A physical backup goes through [`plan_physical_restore`] and
//! [`restore_physical`](crate::restore_physical) with the
//! server started and promoted at the end of recovery, with all of the archived WAL replayed
//! ([`DrillTarget::Latest`]) or recovered to a random time between the backup's end and the
//! newest archived commit ([`DrillTarget::Random`]). A logical backup goes into a fresh `initdb`:
//! its globals first ([`restore_globals`](crate::restore_globals)), then every database
//! ([`restore_logical`](crate::restore_logical)).
//!
//! The order: everything that can refuse (no backup, a window end that is not known to be a commit
//! for a random time, too little room in the scratch filesystem) is decided for every drill of a
//! run before the first one starts, and a refusal restores and records nothing. A drill that starts always ends with its scratch cluster
//! stopped and removed (also on a failure or an interrupt), and then its record is stored.

mod checks;
mod cluster;
mod objects;
mod record;
mod run;
mod scratch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SubsecRound as _, Utc};
use serde::Serialize;

use self::scratch::ScratchRoot;
use crate::error::{DrillError, Error};
use crate::exec::{self, Interrupt};
use crate::pitr::{
    PhysicalRestorePlan, PhysicalRestoreRequest, RecoveryTarget, RecoveryWindow, TimelineChoice,
    WindowEnd, plan_physical_restore, recoverable_window,
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
    /// unless recovery stops there. A backup after which no commit was archived (a quiet
    /// database) is drilled to [`DrillTarget::Latest`] instead, and its report notes it.
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
    /// [`PhysicalRestoreOptions::wal_fetch_program`](crate::PhysicalRestoreOptions::wal_fetch_program)
    /// (default: this process's executable).
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
    /// What went wrong around the drills: directories of killed drills in the scratch directory
    /// that could not be cleaned up (a server may still run there), each with its fix.
    pub problems: Vec<String>,
}

impl DrillRun {
    /// Whether every drill passed and nothing went wrong around them.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.drills.iter().all(DrillReport::ok)
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
    /// What deciding it noticed that is no failure (a random target fallen back to latest).
    notes: Vec<String>,
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
    let sweep = root.sweep();
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
        drills.push(run::run_one(settings, repo, p, user, options, &progress).await?);
    }
    Ok(DrillRun {
        drills,
        swept: sweep.removed,
        problems: sweep.problems,
    })
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
                    kind: match kind {
                        BackupKind::Logical => "logical",
                        BackupKind::Physical => "physical",
                    },
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
    let mut notes = Vec::new();
    let (aim, way) = match backup.kind {
        BackupKind::Logical => (DrillAim::Backup, Way::Dumps),
        BackupKind::Physical => {
            let from = backup
                .physical
                .as_ref()
                .map_or(backup.finished_at, |p| p.stop_time);
            let (aim, target) = match (options.target, window) {
                (DrillTarget::Random, Some(window)) => match random_time(&backup.id, from, window)?
                {
                    Some(time) => (DrillAim::Time { time }, RecoveryTarget::Time(time)),
                    None => {
                        notes.push(format!(
                            "--target random: no commit was archived after backup {} ended (the window is {window}), so there is no time to aim at; it was drilled to the end of the archived WAL (latest) instead",
                            backup.id
                        ));
                        (DrillAim::Latest, RecoveryTarget::Latest)
                    }
                },
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
        notes,
    })
}

/// A random time, to the microsecond, strictly between `from` (the end of backup `id`) and the
/// end of the window (the newest archived commit): recovery to it stops before the first commit
/// after it. `None` when no commit was archived after the backup ended (a quiet database: the
/// drill then aims at latest); refused when the window's end is not known to be a commit.
fn random_time(
    id: &str,
    from: DateTime<Utc>,
    window: &RecoveryWindow,
) -> Result<Option<DateTime<Utc>>, Error> {
    let (WindowEnd::NewestCommit { .. }, Some(to)) = (&window.end, window.to) else {
        return Err(DrillError::NoRandomTime {
            backup: id.to_string(),
            why: format!("the window's end is not the newest archived commit ({window})"),
            fix: "make pg_waldump available (it ships with the server package; or set postgres.bin-dir), or drill with --target latest",
        }
        .into());
    };
    let from = from.trunc_subsecs(6);
    let span = (to - from).num_microseconds().unwrap_or(i64::MAX);
    if span < 2 {
        return Ok(None);
    }
    Ok(Some(
        from + chrono::Duration::microseconds(rand::random_range(1..span)),
    ))
}

/// Refuses a drill whose restore needs more room than the scratch filesystem has.
fn check_space(p: &Prepared, root: &ScratchRoot, available: u64) -> Result<(), Error> {
    let size = p.backup.restored_size();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_time_is_inside_the_window_and_none_without_a_commit_after_the_backup() {
        let from: DateTime<Utc> = "2026-11-25T15:00:00Z".parse().unwrap();
        let window = |to: &str, end| RecoveryWindow {
            from: Some(from),
            to: Some(to.parse().unwrap()),
            end,
        };
        let commit = || WindowEnd::NewestCommit {
            segment: "000000010000000000000003".into(),
        };
        let inside = window("2026-11-25T15:00:10Z", commit());
        let time = random_time("b", from, &inside).unwrap().unwrap();
        assert!(time > from && time < inside.to.unwrap(), "{time}");
        // The newest commit is before the backup's end: no time to aim at, no refusal.
        let quiet = window("2026-11-25T14:59:00Z", commit());
        assert_eq!(random_time("b", from, &quiet).unwrap(), None);
        // The end is not known to be a commit: refused.
        let unknown = window(
            "2026-11-25T15:00:10Z",
            WindowEnd::ArchiveTime { why: "x".into() },
        );
        let e = random_time("b", from, &unknown).unwrap_err().to_string();
        assert!(e.contains("pg_waldump"), "{e}");
    }
}
