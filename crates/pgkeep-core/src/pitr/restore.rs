//! Carrying out a point-in-time restore plan: the target directory prepared (created, or emptied
//! with `force`; mode 0700), the base backup extracted into it by tar, the configuration files it
//! lacks written, the recovery settings and `recovery.signal` added, the files handed to the
//! server's user when run as root, and — with `start` — the server started and watched until it
//! reaches the target ([`super::start`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::plan::{PhysicalRestorePlan, check_target_dir, entries};
use super::recovery::{recovery_settings, restore_command};
use super::start::start_and_wait;
use super::target::{RecoveryTarget, TargetAction};
use super::unpack::{is_local, tablespace_root, unpack};
use crate::error::{Error, PitrError};
use crate::exec::{self, chown_tree, euid, lookup_user};
use crate::pg::Lsn;
use crate::physical::config_files::restore_config;
use crate::repo::Repository;
use crate::repo::lease::{self, LeasePurpose};
use crate::settings::Settings;
use crate::storage::FileError;
use crate::stream::{Progress, feed_child};
use crate::wal::{self, BranchCause};

/// How to carry out a plan.
#[derive(Debug, Clone)]
pub struct PhysicalRestoreOptions {
    /// Start the server and wait for the target.
    pub start: bool,
    /// What the server does at the target.
    pub target_action: TargetAction,
    /// `port` for the restored server.
    pub port: Option<u16>,
    /// Keep the backup's archive settings (otherwise `archive_mode = off`).
    pub keep_archiving: bool,
    /// Owner of the files when running as root (default `postgres`).
    pub owner: Option<String>,
    /// The pgkeep command line program the restored server's `restore_command` runs
    /// (`PROGRAM --repo URL --cluster NAME wal-fetch %f %p`); default this process's own
    /// executable, which is right when this process is the pgkeep CLI. A program embedding the
    /// library names the installed `pgkeep` here.
    pub wal_fetch_program: Option<PathBuf>,
    /// Server settings written last into postgresql.auto.conf, after pgkeep's own, each value
    /// quoted as PostgreSQL's configuration parser reads it: a drill's throwaway cluster gets
    /// `listen_addresses = ''` and its own `unix_socket_directories` and `hba_file` this way.
    /// Usually empty.
    pub server_settings: Vec<(String, String)>,
}

/// Where a restored server stands at the end of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RestoreState {
    /// Not started: the data directory is ready, recovery runs when it is started.
    #[serde(rename = "not started")]
    NotStarted,
    /// In recovery at the target, read-only, replay paused.
    #[serde(rename = "paused")]
    Paused,
    /// Recovery ended; the server accepts writes on a new timeline.
    #[serde(rename = "promoted")]
    Promoted,
    /// The server shut down at the target.
    #[serde(rename = "shut down")]
    ShutDown,
}

impl std::fmt::Display for RestoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RestoreState::NotStarted => "not started",
            RestoreState::Paused => "paused",
            RestoreState::Promoted => "promoted",
            RestoreState::ShutDown => "shut down",
        })
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct PhysicalRestoreReport {
    /// Where the restored server stands.
    pub state: RestoreState,
    /// The last WAL location replayed.
    pub reached_lsn: Option<String>,
    /// The commit time of the last transaction replayed.
    pub reached_time: Option<DateTime<Utc>>,
    /// Seconds from start to finish.
    pub seconds: f64,
    /// Seconds recovery took after the server started.
    pub recovery_seconds: Option<f64>,
    /// The server log of the restored cluster, when started.
    pub log: Option<PathBuf>,
    /// The port the restored server listens on, when started.
    pub port: Option<u16>,
    /// Tables locked (ACCESS EXCLUSIVE) by transactions still open at a paused target, e.g. the
    /// DROP TABLE recovery stopped before: reading them waits until recovery ends.
    pub locked_tables: i64,
    /// What the restore had to supply, e.g. configuration files from outside the data directory.
    pub notes: Vec<String>,
}

/// The uid and gid the restored files belong to: the server's user when run as root (`owner`,
/// default `postgres`), else this process's own (`None`).
fn file_owner(owner: Option<&str>) -> Result<Option<(u32, u32)>, Error> {
    match (euid() == Some(0), owner) {
        (true, owner) => {
            let user = owner.unwrap_or("postgres");
            let ids = lookup_user(user).ok_or_else(|| PitrError::NoSuchUser {
                user: user.to_string(),
            })?;
            Ok(Some(ids))
        }
        (false, Some(user)) => Err(PitrError::OwnerNeedsRoot {
            user: user.to_string(),
        }
        .into()),
        (false, None) => Ok(None),
    }
}

/// An empty directory `dir` (mode 0700), emptied first when the plan allows it.
fn prepare_dir(dir: &Path, force: bool) -> Result<(), Error> {
    check_target_dir(dir, force)?;
    // A restore's tablespaces live beside the directory: a leftover there is another restore's.
    let tablespaces = tablespace_root(dir);
    if tablespaces.exists() {
        match force {
            true => std::fs::remove_dir_all(&tablespaces)
                .map_err(|e| FileError::new("cannot remove", &tablespaces, e))?,
            false => {
                return Err(PitrError::TablespacesInTheWay { dir: tablespaces }.into());
            }
        }
    }
    if entries(dir)?.is_some_and(|n| n > 0) {
        for entry in std::fs::read_dir(dir).map_err(|e| FileError::new("cannot read", dir, e))? {
            let path = entry
                .map_err(|e| FileError::new("cannot read", dir, e))?
                .path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| FileError::new("cannot remove", &path, e))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| FileError::new("cannot create", dir, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| FileError::new("cannot set the mode of", dir, e))?;
    Ok(())
}

/// The first `n` lines of a program's complaint (tar repeats one per file on a full disk).
fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    match lines.len() > n {
        true => format!(
            "{}\n  ({} more lines)",
            lines[..n].join("\n"),
            lines.len() - n
        ),
        false => text.to_string(),
    }
}

/// Removes what a failed restore wrote: the directory itself when it created it, else its
/// contents (it was empty, or `--force` emptied it); and the tablespaces' directory beside it.
fn undo_target(dir: &Path, created: bool, error: Error) -> Error {
    let tablespaces = tablespace_root(dir);
    if tablespaces.exists() {
        let _ = std::fs::remove_dir_all(&tablespaces);
    }
    let removed = if created {
        std::fs::remove_dir_all(dir)
    } else {
        std::fs::read_dir(dir).and_then(|entries| {
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
            Ok(())
        })
    };
    PitrError::Undone {
        source: Box::new(error),
        dir: dir.to_path_buf(),
        created,
        left: removed.err().map(|e| e.to_string()),
    }
    .into()
}

/// pg_ctl runs the server through `/bin/sh -c` with the data directory in double quotes, where
/// `$`, `` ` ``, `"` and `\` keep a meaning: such a directory cannot be started by it.
fn check_startable(dir: &Path) -> Result<(), Error> {
    let text = dir.to_string_lossy();
    match text.chars().find(|c| matches!(c, '$' | '`' | '"' | '\\')) {
        Some(c) => Err(PitrError::Unstartable {
            dir: dir.to_path_buf(),
            character: c,
        }
        .into()),
        None => Ok(()),
    }
}

/// Extracts the plan's base backup into its directory.
async fn extract(
    settings: &Settings,
    repo: &Repository,
    plan: &PhysicalRestorePlan,
    progress: &Arc<dyn Progress>,
) -> Result<(), Error> {
    let dir = &plan.pgdata;
    if is_local(&plan.manifest) {
        let item = format!("restore {}", plan.backup);
        progress.start(&item);
        unpack(
            repo,
            &plan.manifest,
            dir,
            settings.backup_jobs,
            progress,
            &item,
        )
        .await?;
        progress.finish(&item);
        // A local-mode backup keeps backup_label in its manifest (pg_backup_stop returned it).
        let label = plan
            .manifest
            .physical
            .as_ref()
            .map(|p| p.backup_label.as_str());
        return write_private(
            &dir.join("backup_label"),
            label.unwrap_or_default().as_bytes(),
        );
    }
    let base = plan
        .manifest
        .base()
        .ok_or_else(|| PitrError::NoBaseObject {
            backup: plan.backup.clone(),
        })?;
    let item = format!("extract {}", plan.backup);
    progress.start(&item);
    let cmd = exec::tar_extract(dir, true);
    let tar = Path::new("tar");
    let fed = feed_child(cmd, tar, repo.storage(), &base.stored, progress, &item).await?;
    progress.finish(&item);
    if !fed.status.success() {
        return Err(PitrError::ExtractFailed {
            backup: plan.backup.clone(),
            dir: dir.clone(),
            status: fed.status,
            stderr: first_lines(fed.stderr.trim(), 5),
        }
        .into());
    }
    for leftover in ["standby.signal", "postmaster.opts"] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    Ok(())
}

/// Writes the recovery settings into postgresql.auto.conf, and `recovery.signal`.
fn write_recovery(
    settings: &Settings,
    repo: &Repository,
    plan: &PhysicalRestorePlan,
    options: &PhysicalRestoreOptions,
) -> Result<(), Error> {
    let auto_conf = plan.pgdata.join("postgresql.auto.conf");
    let existing = std::fs::read_to_string(&auto_conf).unwrap_or_default();
    let text = recovery_settings(
        &existing,
        &restore_command(settings, repo, options.wal_fetch_program.as_deref())?,
        &plan.backup,
        &plan.target,
        &plan.timeline_setting,
        options,
    );
    write_private(&auto_conf, text.as_bytes())?;
    write_private(&plan.pgdata.join("recovery.signal"), b"")
}

/// Writes a file of the data directory with mode 0600, whatever the umask (as PostgreSQL keeps
/// its own files).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let cannot = |e| FileError::new("cannot write", path, e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(cannot)?;
    file.write_all(bytes).map_err(cannot)?;
    // An existing file (postgresql.auto.conf from the backup) keeps its old mode on open.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(cannot)?;
    Ok(())
}

/// Carries out a plan from [`plan_physical_restore`](super::plan_physical_restore). While it runs
/// it holds a lease on the plan's backup, so that `expire` keeps the backup and its WAL; a
/// backup expired since the plan was made is [`RetentionError::BackupGone`](crate::RetentionError).
/// A restored server that has not finished recovery when this returns (not started, or paused at
/// its target) still reads the backup's WAL through its `restore_command`: the backup keeps a
/// lease of [`LeasePurpose::Recovery`] for [`RECOVERY_LEASE`] after the restore.
pub async fn restore_physical(
    settings: &Settings,
    repo: &Repository,
    plan: &PhysicalRestorePlan,
    options: &PhysicalRestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<PhysicalRestoreReport, Error> {
    let mut report = lease::restoring(
        repo,
        settings.retention.lease_ttl,
        LeasePurpose::RestorePhysical,
        &plan.backup,
        restore_leased(settings, repo, plan, options, progress),
    )
    .await?;
    if matches!(
        report.state,
        RestoreState::NotStarted | RestoreState::Paused
    ) {
        match lease::leave(repo, LeasePurpose::Recovery, &plan.backup, RECOVERY_LEASE).await {
            Ok(key) => report.notes.push(format!(
                "backup {} and its WAL are kept from `pgkeep expire` until recovery has surely ended (lease {key}, {} days; delete it once the server is promoted to release them sooner)",
                plan.backup,
                RECOVERY_LEASE.as_secs() / 86_400
            )),
            Err(e) => report.notes.push(format!(
                "no lease keeps backup {} from `pgkeep expire` while the server recovers ({e}): do not run expire until it is promoted",
                plan.backup
            )),
        }
    }
    Ok(report)
}

/// How long a restored server that had not finished recovery when pgkeep exited keeps its backup
/// and WAL from `expire`: three days.
pub const RECOVERY_LEASE: std::time::Duration = std::time::Duration::from_secs(3 * 86_400);

/// [`restore_physical`] under its lease.
async fn restore_leased(
    settings: &Settings,
    repo: &Repository,
    plan: &PhysicalRestorePlan,
    options: &PhysicalRestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<PhysicalRestoreReport, Error> {
    let begun = Instant::now();
    if options.port == Some(0) {
        return Err(PitrError::PortZero.into());
    }
    let dir = &plan.pgdata;
    let owner = file_owner(options.owner.as_deref())?;
    if options.start {
        check_startable(dir)?;
    }
    let created = !dir.exists();
    prepare_dir(dir, plan.force)?;
    let made = async {
        extract(settings, repo, plan, &progress).await?;
        let notes = restore_config(repo, &plan.manifest, dir).await?;
        write_recovery(settings, repo, plan, options)?;
        if let Some((uid, gid)) = owner {
            for tree in [dir.clone(), tablespace_root(dir)] {
                if tree.exists() {
                    chown_tree(&tree, uid, gid)
                        .map_err(|e| FileError::new("cannot change the owner of", &tree, e))?;
                }
            }
        }
        Ok::<_, Error>(notes)
    };
    // A restore that fails before its server starts leaves the target as it found it.
    let notes = match made.await {
        Ok(notes) => notes,
        Err(e) => return Err(undo_target(dir, created, e)),
    };
    if !options.start {
        return Ok(PhysicalRestoreReport {
            state: RestoreState::NotStarted,
            reached_lsn: None,
            reached_time: None,
            seconds: begun.elapsed().as_secs_f64(),
            recovery_seconds: None,
            log: None,
            port: options.port,
            locked_tables: 0,
            notes,
        });
    }
    let major = plan.manifest.server_version_num / 10_000;
    let mut report = start_and_wait(settings, plan, options, owner, major, &progress).await?;
    report.seconds = begun.elapsed().as_secs_f64();
    report.notes = notes;
    if let Some(reached) = ended_short(plan, &report) {
        return Err(PitrError::EndedEarly {
            reached,
            wal_to: plan.wal_to.clone(),
            state: report.state.to_string(),
            pgdata: dir.clone(),
        }
        .into());
    }
    if report.state == RestoreState::Promoted && options.keep_archiving {
        // The promoted server archives a new timeline beside the old primary's: on purpose.
        let timeline = wal::newest_timeline(dir);
        wal::record_branch(repo, timeline, BranchCause::Restore).await?;
        report.notes.push(format!(
            "timeline {timeline} archives into this repository beside the old primary's; it is recorded as started on purpose, so `pgkeep verify --wal` reports the fork as a note"
        ));
    }
    Ok(report)
}

/// For a restore to the end of the archive: where recovery stopped, when that is before the last
/// segment the plan found in the archive — a segment missing when the server asked for it (deleted
/// or lost since the plan), which PostgreSQL takes for the end of the WAL. The end of the last
/// record replayed lies in the segment before it when that record ends a segment (a WAL switch).
fn ended_short(plan: &PhysicalRestorePlan, report: &PhysicalRestoreReport) -> Option<Lsn> {
    if plan.target != RecoveryTarget::Latest {
        return None;
    }
    let segment_size = plan.manifest.physical.as_ref()?.wal_segment_size;
    let reached = Lsn::parse(report.reached_lsn.as_deref()?)?;
    short_of(reached, &plan.wal_to, segment_size).then_some(reached)
}

/// Whether replay that reached `reached` (the end of its last record) stopped before segment
/// `wal_to`.
fn short_of(reached: Lsn, wal_to: &str, segment_size: u64) -> bool {
    segment_number(wal_to, segment_size)
        .is_some_and(|last| Lsn(reached.0.saturating_sub(1)).segno(segment_size) < last)
}

/// The segment number a WAL segment's name (`TTTTTTTTXXXXXXXXYYYYYYYY`) stands for.
fn segment_number(name: &str, segment_size: u64) -> Option<u64> {
    let log = u64::from_str_radix(name.get(8..16)?, 16).ok()?;
    let seg = u64::from_str_radix(name.get(16..24)?, 16).ok()?;
    Some(log * (0x1_0000_0000 / segment_size) + seg)
}

#[cfg(test)]
mod tests {
    use super::{Lsn, short_of};

    #[test]
    fn recovery_that_stopped_before_the_plans_last_segment_is_short() {
        const SEG: u64 = 16 << 20;
        let lsn = |t: &str| Lsn::parse(t).unwrap();
        // Inside the last segment, or at the end of a switch record that ends it: the end.
        assert!(!short_of(
            lsn("0/780000A0"),
            "000000010000000000000078",
            SEG
        ));
        assert!(!short_of(
            lsn("0/79000000"),
            "000000010000000000000078",
            SEG
        ));
        // Segments 77 and 78 deleted: replay ended with 76.
        assert!(short_of(lsn("0/77000000"), "000000010000000000000078", SEG));
        assert!(short_of(lsn("0/76FFFF00"), "000000010000000000000078", SEG));
        // Past the 4 GB boundary of the segment name's middle part.
        assert!(!short_of(
            lsn("1/00000010"),
            "000000020000000100000000",
            SEG
        ));
        assert!(short_of(lsn("0/FF000010"), "000000020000000100000000", SEG));
    }
}
