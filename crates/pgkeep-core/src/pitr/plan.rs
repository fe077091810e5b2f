//! Planning a point-in-time restore: which base backup, which WAL, which timeline. The plan proves
//! that the archive holds every segment recovery needs before anything is written.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::target::{RecoveryTarget, RecoveryWindow, TimelineChoice, WindowEnd, commit_window};
use crate::error::{Error, PitrError};
use crate::pg::{Lsn, utc_micros};
use crate::repo::Repository;
use crate::repo::catalog::{self, BackupKind, Manifest, PhysicalInfo, wal_segment_size};
use crate::repo::scan::{Catalog, DamagedBackup, read_catalog};
use crate::storage::FileError;
use crate::wal::{Archive, ChainBreak, ChainEnd};

/// What a point-in-time restore is asked to do.
#[derive(Debug, Clone)]
pub struct PhysicalRestoreRequest {
    /// Where to stop.
    pub target: RecoveryTarget,
    /// Use this backup instead of choosing one.
    pub backup: Option<String>,
    /// Which timeline to follow.
    pub timeline: TimelineChoice,
    /// The directory to restore into (absolute).
    pub pgdata: PathBuf,
    /// Replace the contents of a non-empty directory.
    pub force: bool,
    /// Where pg_waldump is (`postgres.bin-dir`); `None`: the backup's version directory under
    /// `/usr/lib/postgresql`, else `PATH`. It reads the newest commit in the archive, where the
    /// times that can be restored to end.
    pub bin_dir: Option<PathBuf>,
}

/// A checked plan: which backup, which WAL, what target.
#[derive(Debug, Clone, Serialize)]
pub struct PhysicalRestorePlan {
    /// The base backup.
    pub backup: String,
    /// When it ended (server clock).
    pub backup_stop_time: DateTime<Utc>,
    /// Where it ended.
    pub backup_stop_lsn: Lsn,
    /// The target.
    pub target: RecoveryTarget,
    /// The timeline recovery follows.
    pub timeline: u32,
    /// `recovery_target_timeline`.
    pub timeline_setting: String,
    /// First WAL segment needed.
    pub wal_from: String,
    /// Last WAL segment known to be needed.
    pub wal_to: String,
    /// Segments checked present.
    pub wal_segments: usize,
    /// The directory restored into.
    pub pgdata: PathBuf,
    /// The restorable window.
    pub window: RecoveryWindow,
    /// Bytes of the base backup (uncompressed).
    pub size: u64,
    /// Backups passed over because their manifest cannot be used.
    pub skipped: Vec<DamagedBackup>,
    #[serde(skip)]
    pub(crate) manifest: Manifest,
    /// The request's `force`: the restore replaces a non-empty directory's contents.
    #[serde(skip)]
    pub(crate) force: bool,
}

/// The number of entries in `dir`, `None` when it does not exist.
pub(crate) fn entries(dir: &Path) -> Result<Option<usize>, Error> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries.count())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileError::new("cannot read", dir, e).into()),
    }
}

/// Refuses a directory that holds a running server, or anything at all without `force`.
pub(crate) fn check_target_dir(dir: &Path, force: bool) -> Result<(), Error> {
    if dir.join("postmaster.pid").exists() {
        return Err(PitrError::ServerRunning {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    if let Some(n) = entries(dir)?
        && n > 0
        && !force
    {
        return Err(PitrError::TargetNotEmpty {
            dir: dir.to_path_buf(),
            entries: n,
        }
        .into());
    }
    Ok(())
}

fn outside(target: &RecoveryTarget, window: &RecoveryWindow, why: &'static str) -> Error {
    PitrError::OutsideWindow {
        target: target.to_string(),
        why,
        window: window.to_string(),
    }
    .into()
}

/// `t` cut to the microsecond, the precision times are shown and PostgreSQL's targets have.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

const BEFORE_OLDEST: &str = "before the end of the oldest base backup";
const AFTER_NEWEST: &str = "after the newest archived WAL";

/// The info of a backup known to be physical.
fn info(backup: &Manifest) -> &PhysicalInfo {
    backup.physical.as_ref().expect("physical backups only")
}

/// The base backup for the request: the one named, else the newest that ends before the target.
async fn choose_base(
    repo: &Repository,
    request: &PhysicalRestoreRequest,
    backups: &[Manifest],
    window: &RecoveryWindow,
) -> Result<Manifest, Error> {
    let target = &request.target;
    if let RecoveryTarget::Time(t) = target {
        // Times are shown and given to the microsecond: the window's start, copied, is in it.
        if window.from.is_none_or(|from| *t < micros(from)) {
            return Err(outside(target, window, BEFORE_OLDEST));
        }
        match (&window.end, window.to) {
            (WindowEnd::NewestCommit { segment }, Some(to)) if *t >= to => {
                return Err(PitrError::AfterNewestCommit {
                    target: target.to_string(),
                    commit: utc_micros(&to),
                    segment: segment.clone(),
                    window: window.to_string(),
                }
                .into());
            }
            (_, Some(to)) if *t > to => return Err(outside(target, window, AFTER_NEWEST)),
            _ => {}
        }
    }
    let chosen = match &request.backup {
        Some(id) => {
            let b = catalog::find_backup(repo, id).await?;
            if b.physical.is_none() {
                return Err(PitrError::NotPhysical { id: id.clone() }.into());
            }
            b
        }
        None => {
            let ends_before = |b: &&Manifest| match target {
                RecoveryTarget::Time(t) => micros(info(b).stop_time) <= *t,
                RecoveryTarget::Lsn(l) => info(b).stop_lsn <= *l,
                _ => true,
            };
            match backups.iter().rfind(ends_before) {
                Some(b) => b.clone(),
                None => return Err(outside(target, window, BEFORE_OLDEST)),
            }
        }
    };
    let p = info(&chosen);
    let end = match target {
        RecoveryTarget::Time(t) if *t < micros(p.stop_time) => Some(utc_micros(&p.stop_time)),
        RecoveryTarget::Lsn(l) if *l < p.stop_lsn => Some(p.stop_lsn.to_string()),
        _ => None,
    };
    if let Some(end) = end {
        return Err(PitrError::BeforeBackupEnd {
            target: target.to_string(),
            backup: chosen.id.clone(),
            end,
        }
        .into());
    }
    Ok(chosen)
}

/// The timeline recovery follows, and its `recovery_target_timeline` setting.
fn target_timeline(choice: TimelineChoice, archive: &Archive, p: &PhysicalInfo) -> (u32, String) {
    match choice {
        TimelineChoice::Latest => (
            archive
                .latest_timeline()
                .unwrap_or(p.stop_timeline)
                .max(p.stop_timeline),
            "latest".to_string(),
        ),
        TimelineChoice::Current => (p.stop_timeline, "current".to_string()),
        TimelineChoice::Id(n) => (n, n.to_string()),
    }
}

/// The refusal of an LSN target past the end of the archive on timeline `tli`, once the chain up
/// to that end is proven complete (a gap before it is the [`ChainBreak`]).
fn past_the_end(
    archive: &Archive,
    p: &PhysicalInfo,
    start: u64,
    tli: u32,
    target: Lsn,
) -> Result<Option<PitrError>, ChainBreak> {
    let Some((last_tli, last)) = archive.newest_on_path(tli).first().copied() else {
        return Ok(None);
    };
    if target.segno(archive.segment_size) <= last {
        return Ok(None);
    }
    archive.chain(p.timeline, start, tli, None)?;
    Ok(Some(PitrError::LsnPastEnd {
        target: RecoveryTarget::Lsn(target).to_string(),
        timeline: tli,
        segment: archive.name(last_tli, last),
        end: Lsn((last + 1) * archive.segment_size),
    }))
}

/// Chooses the backup and checks the WAL chain. Writes nothing.
pub async fn plan_physical_restore(
    repo: &Repository,
    request: &PhysicalRestoreRequest,
) -> Result<PhysicalRestorePlan, Error> {
    request.target.check()?;
    check_target_dir(&request.pgdata, request.force)?;
    let catalog = read_catalog(repo).await?;
    let damaged = catalog.damaged_ids();
    plan_from(repo, request, catalog)
        .await
        .map_err(|e| Error::passed_over(e, damaged))
}

/// [`plan_physical_restore`] once the catalog is read.
async fn plan_from(
    repo: &Repository,
    request: &PhysicalRestoreRequest,
    catalog: Catalog,
) -> Result<PhysicalRestorePlan, Error> {
    let skipped = catalog.damaged;
    let backups: Vec<Manifest> = catalog
        .backups
        .into_iter()
        .filter(|b| b.kind == BackupKind::Physical && b.physical.is_some())
        .collect();
    if backups.is_empty() {
        return Err(PitrError::NoPhysicalBackup {
            repo: repo.storage().url(),
            cluster: repo.cluster().to_string(),
        }
        .into());
    }
    let segment_size = wal_segment_size(&backups);
    let archive = Archive::load(repo, segment_size).await?;
    let window = commit_window(repo, &backups, &archive, request.bin_dir.as_deref()).await;
    let chosen = choose_base(repo, request, &backups, &window).await?;
    let p = info(&chosen);
    let (target_tli, timeline_setting) = target_timeline(request.timeline, &archive, p);
    let start = p.start_lsn.segno(segment_size);
    let stop = Lsn(p.stop_lsn.0.saturating_sub(1)).segno(segment_size);
    let end = match &request.target {
        RecoveryTarget::Time(t) => Some(ChainEnd::ArchivedAt(*t)),
        RecoveryTarget::Lsn(l) => Some(ChainEnd::Segment(l.segno(segment_size))),
        RecoveryTarget::Immediate => Some(ChainEnd::Segment(stop)),
        RecoveryTarget::Xid(_) | RecoveryTarget::Name(_) | RecoveryTarget::Latest => None,
    };
    let broken = |e: ChainBreak| -> Error {
        match e {
            ChainBreak::Missing { name } => PitrError::WalMissing {
                segment: name,
                backup: chosen.id.clone(),
                start: p.start_segment.clone(),
                target: request.target.to_string(),
            }
            .into(),
            ChainBreak::NotAncestor { tli, target, path } => PitrError::NotAncestor {
                backup: chosen.id.clone(),
                timeline: tli,
                target,
                history: path,
            }
            .into(),
            ChainBreak::TimeNotArchived { .. } => outside(&request.target, &window, AFTER_NEWEST),
        }
    };
    if let RecoveryTarget::Lsn(l) = &request.target
        && let Some(past) = past_the_end(&archive, p, start, target_tli, *l).map_err(broken)?
    {
        return Err(past.into());
    }
    let mut chain = match archive.chain(p.timeline, start, target_tli, end) {
        // Inside the window but after the newest segment's archive time (a target at the window's
        // end): recovery needs all of the archive.
        Err(ChainBreak::TimeNotArchived { .. }) => {
            archive.chain(p.timeline, start, target_tli, None)
        }
        other => other,
    }
    .map_err(broken)?;
    if chain.last().is_none_or(|c| c.segno < stop) {
        // Whatever the target, recovery must at least reach the end of the backup.
        chain = archive
            .chain(p.timeline, start, target_tli, Some(ChainEnd::Segment(stop)))
            .map_err(broken)?;
    }
    Ok(PhysicalRestorePlan {
        backup: chosen.id.clone(),
        backup_stop_time: p.stop_time,
        backup_stop_lsn: p.stop_lsn,
        target: request.target.clone(),
        timeline: target_tli,
        timeline_setting,
        wal_from: chain.first().map(|c| c.name.clone()).unwrap_or_default(),
        wal_to: chain.last().map(|c| c.name.clone()).unwrap_or_default(),
        wal_segments: chain.len(),
        pgdata: request.pgdata.clone(),
        window,
        size: chosen.base_size().unwrap_or(0),
        force: request.force,
        skipped,
        manifest: chosen,
    })
}
