//! `restore --globals`: a backup's roles and tablespaces (`pg_dumpall --globals-only`) replayed
//! with psql, the first step of restoring into a new cluster.

use std::sync::Arc;

use serde::Serialize;

use super::restore::{BackupChoice, Chosen, MAINTENANCE_DB, choose_backup, not_in_backup};
use crate::error::{Error, LogicalError};
use crate::exec;
use crate::repo::Repository;
use crate::repo::scan::DamagedBackup;
use crate::settings::Settings;
use crate::stream::{Progress, feed_child};

/// How `restore --globals` went.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalsReport {
    /// The backup used.
    pub backup_id: String,
    /// Statements that failed only because the role or tablespace already exists.
    pub already_existed: usize,
    /// Backups passed over because their manifest cannot be used.
    pub skipped: Vec<DamagedBackup>,
}

/// Replays a backup's roles and tablespaces with psql. Errors that only say a role already exists
/// (the connecting role always does) are counted, not fatal; any other error fails the restore.
/// Safe to repeat.
pub async fn restore_globals(
    settings: &Settings,
    repo: &Repository,
    choice: &BackupChoice,
    progress: Arc<dyn Progress>,
) -> Result<GlobalsReport, Error> {
    let Chosen {
        backup, skipped, ..
    } = choose_backup(repo, choice, "globals", |m| m.globals().is_some()).await?;
    let object = backup
        .globals()
        .ok_or_else(|| not_in_backup(&backup, "globals"))?;
    let psql = exec::located(
        settings.bin_dir.as_deref(),
        "psql",
        backup.server_version_num / 10_000,
    )?;
    let mut cmd = exec::pg_command(&psql, &settings.conninfo, Some(MAINTENANCE_DB));
    cmd.args([
        "-X",
        "-q",
        "--no-password",
        "-v",
        "ON_ERROR_STOP=0",
        "-f",
        "-",
    ]);
    let fed = feed_child(
        cmd,
        &psql,
        repo.storage(),
        &object.stored,
        &progress,
        "globals",
    )
    .await?;
    let errors: Vec<&str> = fed
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .collect();
    let (benign, real): (Vec<&str>, Vec<&str>) =
        errors.iter().partition(|l| l.contains("already exists"));
    if !fed.status.success() || !real.is_empty() {
        return Err(LogicalError::GlobalsFailed {
            errors: if real.is_empty() {
                fed.stderr.clone()
            } else {
                real.join("; ")
            },
        }
        .into());
    }
    Ok(GlobalsReport {
        backup_id: backup.id,
        already_existed: benign.len(),
        skipped,
    })
}
