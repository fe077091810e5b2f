//! `restore --db`: the backup chosen by time or id, then pg_restore fed from the repository —
//! through its stdin, or with `jobs > 1` from a staged file that pg_restore can seek in.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::toc::add_data_offsets;
use crate::error::{Error, LogicalError};
use crate::exec::{self, ProcessError};
use crate::pg::{self, quote_ident, quote_literal};
use crate::repo::Repository;
use crate::repo::catalog::{self, BackupKind, DatabaseInfo, Manifest, ManifestObject};
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
#[derive(Debug, Clone, Copy, Default)]
pub struct LogicalRestoreOptions {
    /// Parallel pg_restore jobs; above 1 the archive is staged in a temporary file (under TMPDIR)
    /// that is removed afterwards.
    pub jobs: usize,
    /// Replace the contents of an existing target database (else an existing one is refused).
    pub clean: bool,
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
                None => Err(LogicalError::NoBackupBefore {
                    database: what.to_string(),
                    target: *at,
                    oldest: candidates.first().map(|m| m.finished_at),
                }
                .into()),
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
pub async fn restore_logical(
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
    let (mut args, connect_to, cleaned) =
        prepare_target(&client, settings, plan, object, options.clean).await?;
    drop(client);
    args.push(format!("--dbname={connect_to}"));

    let program = pg_restore.program();
    let item = progress_item(plan);
    progress.start(&item);
    let mut cmd = exec::pg_command(&program, &settings.conninfo, Some(&connect_to));
    cmd.args(&args);
    let bytes = if options.jobs > 1 {
        restore_staged(repo, plan, object, cmd, &program, options.jobs, &progress).await?
    } else {
        let fed = feed_child(
            cmd,
            &program,
            repo.storage(),
            &object.stored,
            &progress,
            &item,
        )
        .await?;
        if !fed.status.success() {
            return Err(restore_failed(
                plan,
                ProcessError::Failed {
                    program,
                    status: fed.status,
                    stderr: fed.stderr,
                },
            ));
        }
        fed.bytes
    };
    progress.finish(&item);
    Ok(LogicalRestoreReport {
        target: plan.target.clone(),
        backup_id: plan.backup.id.clone(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        cleaned,
    })
}

/// Decides how pg_restore meets the target: `--clean` into an existing database (only when
/// asked), `--create` of the database under its own name, or a database created here like the
/// original under another name. Returns pg_restore's arguments, the database it connects to, and
/// whether existing contents are replaced.
async fn prepare_target(
    client: &tokio_postgres::Client,
    settings: &Settings,
    plan: &LogicalRestorePlan,
    object: &ManifestObject,
    clean: bool,
) -> Result<(Vec<String>, String, bool), Error> {
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&plan.target],
        )
        .await
        .map_err(|e| pg::query_error(&settings.conninfo, "looking up the target database", e))?
        .is_some();
    if exists && !clean {
        return Err(LogicalError::DatabaseExists {
            name: plan.target.clone(),
        }
        .into());
    }
    let mut args = vec!["--exit-on-error".to_string(), "--no-password".to_string()];
    let connect_to = if exists {
        args.extend(["--clean".into(), "--if-exists".into()]);
        plan.target.clone()
    } else if plan.target == plan.database {
        // pg_restore creates it as it was: encoding, locale, owner, settings, grants.
        args.push("--create".into());
        MAINTENANCE_DB.to_string()
    } else {
        create_like(
            client,
            settings,
            &plan.target,
            object.database_info.as_ref(),
        )
        .await?;
        plan.target.clone()
    };
    Ok((args, connect_to, exists))
}

/// `pg_restore --jobs`: the archive decompressed into a temporary file first (pg_restore -j needs
/// to seek), given the data offsets a piped dump lacks. Returns the archive's size.
async fn restore_staged(
    repo: &Repository,
    plan: &LogicalRestorePlan,
    object: &ManifestObject,
    mut cmd: tokio::process::Command,
    program: &Path,
    jobs: usize,
    progress: &Arc<dyn Progress>,
) -> Result<u64, Error> {
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
    cmd.arg(format!("--jobs={jobs}")).arg(staging.path());
    exec::run(cmd, program)
        .await
        .map_err(|e| restore_failed(plan, e))?;
    Ok(bytes)
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

async fn create_like(
    client: &tokio_postgres::Client,
    settings: &Settings,
    name: &str,
    info: Option<&DatabaseInfo>,
) -> Result<(), Error> {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    if let Some(info) = info {
        sql.push_str(&format!(
            " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_literal(&info.encoding),
            quote_literal(&info.collate),
            quote_literal(&info.ctype)
        ));
        let owner_exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&info.owner])
            .await
            .map_err(|e| pg::query_error(&settings.conninfo, "looking up the owner role", e))?
            .is_some();
        if owner_exists {
            sql.push_str(&format!(" OWNER {}", quote_ident(&info.owner)));
        }
    }
    client.batch_execute(&sql).await.map_err(|e| {
        pg::query_error(
            &settings.conninfo,
            &format!("creating database `{name}`"),
            e,
        )
        .into()
    })
}
