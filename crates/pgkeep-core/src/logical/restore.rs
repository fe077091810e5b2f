//! `restore --db`: the backup chosen by time or id, the dump checked to be there, then pg_restore
//! fed from the repository — through its stdin, or with `jobs > 1` from a staged file that
//! pg_restore can seek in; the target database itself is handled by [`super::target`].

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::target::{Made, clean_up, prepare_target, target_exists};
use super::toc::add_data_offsets;
use crate::error::{Error, LogicalError, PayloadProblem, TargetOutcome};
use crate::exec::{self, Interrupt, ProcessError};
use crate::pg;
use crate::repo::Repository;
use crate::repo::catalog::{self, BackupKind, Manifest, ManifestObject};
use crate::repo::lease::{self, LeasePurpose};
use crate::repo::scan::{DamagedBackup, read_catalog};
use crate::settings::Settings;
use crate::stream::{self, Progress, ProgressWriter, feed_child};

/// The database restores connect to while the target is created or replaced.
pub(crate) const MAINTENANCE_DB: &str = "postgres";

/// Which backup a restore uses.
#[derive(Debug, Clone)]
pub enum BackupChoice {
    /// The newest logical backup that finished at or before this time.
    At(DateTime<Utc>),
    /// This backup.
    Id(String),
}

/// The backup a logical restore will use, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LogicalRestorePlan {
    /// The backup chosen.
    pub backup: Manifest,
    /// The database in it.
    pub database: String,
    /// The database restored into.
    pub target: String,
    /// The time asked for, if any.
    pub requested_at: Option<DateTime<Utc>>,
    /// Seconds between the backup's end and the requested time.
    pub seconds_before_target: Option<i64>,
    /// Backups passed over because their manifest cannot be used.
    pub skipped: Vec<DamagedBackup>,
}

/// How to carry out a logical restore.
#[derive(Debug, Clone, Default)]
pub struct LogicalRestoreOptions {
    /// Parallel pg_restore jobs; above 1 the archive is staged in a temporary file (under TMPDIR)
    /// that is removed afterwards.
    pub jobs: usize,
    /// Replace the contents of an existing target database (else an existing one is refused).
    pub clean: bool,
    /// `pg_restore --no-tablespaces`: every object goes into the target database's default
    /// tablespace (with [`GlobalsOptions::skip_tablespaces`](super::GlobalsOptions)).
    pub no_tablespaces: bool,
    /// Stops the restore from outside (SIGTERM, SIGINT): pg_restore is killed and the restore
    /// fails like any other, dropping a database it created itself.
    pub interrupt: Interrupt,
}

/// How a logical restore went.
#[derive(Debug, Clone, Serialize)]
pub struct LogicalRestoreReport {
    /// The database restored into.
    pub target: String,
    /// The backup used.
    pub backup_id: String,
    /// Bytes of archive fed to pg_restore.
    pub bytes: u64,
    /// Seconds taken.
    pub seconds: f64,
    /// Whether an existing database's contents were replaced (`--clean`).
    pub cleaned: bool,
}

/// The backup a restore chose.
pub(crate) struct Chosen {
    /// The backup.
    pub(crate) backup: Manifest,
    /// The time asked for, if any.
    pub(crate) requested_at: Option<DateTime<Utc>>,
    /// Backups passed over because their manifest cannot be used.
    pub(crate) skipped: Vec<DamagedBackup>,
}

/// The backup named, or the newest logical backup that `holds` what is wanted (`what`, for the
/// error) and finished at or before the time, passing over damaged ones.
pub(crate) async fn choose_backup(
    repo: &Repository,
    choice: &BackupChoice,
    what: &str,
    holds: impl Fn(&Manifest) -> bool,
) -> Result<Chosen, Error> {
    match choice {
        BackupChoice::Id(id) => Ok(Chosen {
            backup: catalog::find_backup(repo, id).await?,
            requested_at: None,
            skipped: Vec::new(),
        }),
        BackupChoice::At(at) => {
            let catalog = read_catalog(repo).await?;
            let candidates: Vec<Manifest> = catalog
                .backups
                .into_iter()
                .filter(|m| m.kind == BackupKind::Logical && holds(m))
                .collect();
            match candidates.iter().rev().find(|m| m.finished_at <= *at) {
                Some(m) => Ok(Chosen {
                    backup: m.clone(),
                    requested_at: Some(*at),
                    skipped: catalog.damaged,
                }),
                None => Err(Error::passed_over(
                    LogicalError::NoBackupBefore {
                        database: what.to_string(),
                        target: *at,
                        oldest: candidates.first().map(|m| m.finished_at),
                    }
                    .into(),
                    catalog.damaged.iter().map(|d| d.id.clone()).collect(),
                )),
            }
        }
    }
}

/// `backup` has no `database` (`globals` for the roles).
pub(crate) fn not_in_backup(backup: &Manifest, database: &str) -> Error {
    LogicalError::NotInBackup {
        id: backup.id.clone(),
        database: database.to_string(),
        has: backup.databases().iter().map(|s| s.to_string()).collect(),
    }
    .into()
}

/// Picks the backup for restoring `database` (into `into`, else under its own name): the newest
/// logical backup holding it that finished at or before the time, or the one named. Changes
/// nothing.
pub async fn plan_logical_restore(
    repo: &Repository,
    database: &str,
    choice: &BackupChoice,
    into: Option<&str>,
) -> Result<LogicalRestorePlan, Error> {
    let Chosen {
        backup,
        requested_at,
        skipped,
    } = choose_backup(repo, choice, database, |m| m.database(database).is_some()).await?;
    if backup.database(database).is_none() {
        return Err(not_in_backup(&backup, database));
    }
    Ok(LogicalRestorePlan {
        seconds_before_target: requested_at.map(|at| (at - backup.finished_at).num_seconds()),
        database: database.to_string(),
        target: into.unwrap_or(database).to_string(),
        requested_at,
        backup,
        skipped,
    })
}

/// Restores the plan's database with pg_restore. Refuses an existing target unless
/// `options.clean`.
///
/// Before anything is created, the dump is checked to be in the repository with the size the
/// backup stored (with `jobs > 1` it is read whole and its checksums checked). A restore that
/// fails after that drops the database it created itself (never one that existed before) and its
/// error ([`LogicalError::Incomplete`]) says what became of the target. While it runs it holds a
/// lease on the plan's backup, so that `expire` keeps it; a backup expired since the plan was made
/// is [`RetentionError::BackupGone`](crate::RetentionError).
pub async fn restore_logical(
    settings: &Settings,
    repo: &Repository,
    plan: &LogicalRestorePlan,
    options: &LogicalRestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<LogicalRestoreReport, Error> {
    lease::restoring(
        repo,
        settings.retention.lease_ttl,
        LeasePurpose::RestoreLogical,
        &plan.backup.id,
        restore_leased(settings, repo, plan, options, progress),
    )
    .await
}

/// [`restore_logical`] under its lease.
async fn restore_leased(
    settings: &Settings,
    repo: &Repository,
    plan: &LogicalRestorePlan,
    options: &LogicalRestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<LogicalRestoreReport, Error> {
    let started = Instant::now();
    let object = plan
        .backup
        .database(&plan.database)
        .ok_or_else(|| not_in_backup(&plan.backup, &plan.database))?;
    let client = pg::connect(&settings.conninfo, Some(MAINTENANCE_DB)).await?;
    let server = pg::server_info(&client, &settings.conninfo).await?;
    let pg_restore =
        exec::fitting_tool(settings.bin_dir.as_deref(), "pg_restore", server.major).await?;
    let exists = target_exists(&client, settings, &plan.target, options.clean).await?;
    check_payload(repo, &plan.backup, &plan.database, object).await?;
    let item = progress_item(plan);
    progress.start(&item);
    let staged = if options.jobs > 1 {
        Some(
            stage_archive(repo, plan, object, &progress)
                .await
                .map_err(|e| incomplete(plan, TargetOutcome::Untouched, e))?,
        )
    } else {
        None
    };
    let target = prepare_target(
        &client,
        settings,
        plan,
        object.database_info.as_ref(),
        exists,
    )
    .await?;
    drop(client);
    let program = pg_restore.program();
    let mut cmd = exec::pg_command(&program, &settings.conninfo, Some(&target.connect_to));
    cmd.env("PGAPPNAME", &target.application_name)
        .args(&target.args)
        .arg(format!("--dbname={}", target.connect_to));
    if options.no_tablespaces {
        cmd.arg("--no-tablespaces");
    }
    let work = async {
        match &staged {
            Some((file, bytes)) => {
                cmd.arg(format!("--jobs={}", options.jobs)).arg(file.path());
                exec::run(cmd, &program)
                    .await
                    .map(|_| *bytes)
                    .map_err(|e| restore_failed(plan, e))
            }
            None => restore_streamed(repo, plan, object, cmd, &program, &progress, &item).await,
        }
    };
    // Interrupted, pg_restore is killed with `work` and the cleanup below runs as for a failure.
    let result = options
        .interrupt
        .run(work, |reason| Error::Interrupted { reason })
        .await;
    drop(staged);
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(e) => {
            let outcome = clean_up(settings, server.major, &plan.target, &target, &e).await;
            return Err(incomplete(plan, outcome, e));
        }
    };
    progress.finish(&item);
    Ok(LogicalRestoreReport {
        target: plan.target.clone(),
        backup_id: plan.backup.id.clone(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        cleaned: target.made == Made::Existing,
    })
}

/// The dump of `database` (`globals` for the roles) in `backup` is in the repository with the
/// size the backup stored; checked before a restore changes anything.
pub(crate) async fn check_payload(
    repo: &Repository,
    backup: &Manifest,
    database: &str,
    object: &ManifestObject,
) -> Result<(), Error> {
    let unusable = |problem| LogicalError::PayloadUnusable {
        backup: backup.id.clone(),
        database: database.to_string(),
        key: object.stored.key.clone(),
        problem,
    };
    match repo.storage().head(&object.stored.key).await {
        Ok(meta) if meta.size == object.stored.stored_size => Ok(()),
        Ok(meta) => Err(unusable(PayloadProblem::WrongSize {
            expected: object.stored.stored_size,
            actual: meta.size,
        })
        .into()),
        Err(e) if e.is_not_found() => Err(unusable(PayloadProblem::Missing).into()),
        Err(e) => Err(e.into()),
    }
}

/// pg_restore fed the archive through its stdin. Returns the archive's size.
async fn restore_streamed(
    repo: &Repository,
    plan: &LogicalRestorePlan,
    object: &ManifestObject,
    cmd: tokio::process::Command,
    program: &Path,
    progress: &Arc<dyn Progress>,
    item: &str,
) -> Result<u64, Error> {
    let fed = feed_child(cmd, program, repo.storage(), &object.stored, progress, item).await?;
    if !fed.status.success() {
        return Err(restore_failed(
            plan,
            ProcessError::Failed {
                program: program.to_path_buf(),
                status: fed.status,
                stderr: fed.stderr,
            },
        ));
    }
    Ok(fed.bytes)
}

/// For `pg_restore --jobs`: the archive decompressed and checked into a temporary file (pg_restore
/// -j needs to seek), given the data offsets a piped dump lacks. Returns the file and the
/// archive's size.
async fn stage_archive(
    repo: &Repository,
    plan: &LogicalRestorePlan,
    object: &ManifestObject,
    progress: &Arc<dyn Progress>,
) -> Result<(tempfile::NamedTempFile, u64), Error> {
    let staging_error = |what, source| LogicalError::Staging {
        database: plan.target.clone(),
        what,
        source,
    };
    let staging = tempfile::Builder::new()
        .prefix("pgkeep-restore-")
        .tempfile()
        .map_err(|e| staging_error("creating a temporary file", e))?;
    let mut file = tokio::fs::File::create(staging.path())
        .await
        .map_err(|e| staging_error("opening the temporary file", e))?;
    let item = progress_item(plan);
    let mut counted = ProgressWriter::new(&mut file, progress.clone(), &item);
    let bytes = stream::fetch_object(repo.storage(), &object.stored, &mut counted).await?;
    // Flushed to the page cache for pg_restore to read; no fsync: the file is thrown away.
    file.flush()
        .await
        .map_err(|e| staging_error("writing the temporary file", e))?;
    drop(file);
    // pg_dump wrote to a pipe, so the archive has no data offsets; add them, or every
    // pg_restore worker scans the archive chunk by chunk for its table's data.
    let path = staging.path().to_path_buf();
    match tokio::task::spawn_blocking(move || add_data_offsets(&path)).await {
        Ok(Ok(n)) => tracing::debug!("added {n} data offsets to the staged archive"),
        Ok(Err(why)) => tracing::warn!(
            "cannot add data offsets to the staged archive ({why}); pg_restore will scan it"
        ),
        Err(e) => tracing::warn!("adding data offsets failed: {e}"),
    }
    Ok((staging, bytes))
}

fn incomplete(plan: &LogicalRestorePlan, outcome: TargetOutcome, source: Error) -> Error {
    LogicalError::Incomplete {
        target: plan.target.clone(),
        outcome,
        source: Box::new(source),
    }
    .into()
}

/// The progress item of a restore.
fn progress_item(plan: &LogicalRestorePlan) -> String {
    format!("restore {}", plan.target)
}

fn restore_failed(plan: &LogicalRestorePlan, source: ProcessError) -> Error {
    LogicalError::RestoreFailed {
        database: plan.target.clone(),
        source,
    }
    .into()
}
