//! `backup logical`: pg_dump of each database (custom format, its own compression off) and
//! `pg_dumpall --globals-only`, each streamed through the pipeline into one object; the manifest
//! is written last, so a failed run lists nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, LogicalError};
use crate::exec::{self, Interrupt, StdoutStream, ToolInfo};
use crate::pg;
use crate::repo::catalog::{
    self, BackupKind, DatabaseInfo, LogicalOptions, Manifest, ManifestObject, ObjectFormat,
    ObjectRole,
};
use crate::repo::lease::{LeaseGuard, LeasePurpose};
use crate::repo::{BackupWrites, Repository};
use crate::settings::Settings;
use crate::storage::PutMode;
use crate::stream::{self, Progress, ProgressReader, StoredObject};
use crate::wal;

/// What `backup logical` backs up.
#[derive(Debug, Clone, Default)]
pub struct LogicalBackupOptions {
    /// Databases by name; ignored with `all`.
    pub databases: Vec<String>,
    /// Every connectable, non-template database, and the globals with them.
    pub all: bool,
    /// Store `pg_dumpall --globals-only` (roles, tablespaces) too (always with `all`).
    pub globals: bool,
    /// Databases dumped at once (at least 1).
    pub jobs: usize,
    /// `pg_dump --exclude-table` patterns.
    pub exclude_tables: Vec<String>,
    /// `pg_dump --schema-only`.
    pub schema_only: bool,
    /// Stops the backup from outside (SIGTERM): running dumps are killed and what the backup
    /// wrote is removed, as for any failure.
    pub interrupt: Interrupt,
}

impl LogicalBackupOptions {
    /// Whether the globals are stored: asked for, or implied by `all`.
    pub fn with_globals(&self) -> bool {
        self.globals || self.all
    }
}

async fn database_infos(
    client: &tokio_postgres::Client,
    settings: &Settings,
) -> Result<BTreeMap<String, DatabaseInfo>, Error> {
    let rows = client
        .query(
            "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding),
                    datcollate, datctype,
                    CASE WHEN has_database_privilege(oid, 'CONNECT') THEN pg_database_size(oid) END
               FROM pg_database
              WHERE datallowconn AND NOT datistemplate
              ORDER BY datname",
            &[],
        )
        .await
        .map_err(|e| pg::query_error(&settings.conninfo, "listing the databases", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                DatabaseInfo {
                    owner: r.get(1),
                    encoding: r.get(2),
                    collate: r.get(3),
                    ctype: r.get(4),
                    size: r
                        .get::<_, Option<i64>>(5)
                        .and_then(|s| u64::try_from(s).ok()),
                },
            )
        })
        .collect())
}

/// The databases to dump: every one with `all`, else the named ones, each checked to exist.
fn chosen_databases(
    options: &LogicalBackupOptions,
    infos: &BTreeMap<String, DatabaseInfo>,
) -> Result<Vec<String>, LogicalError> {
    let databases: Vec<String> = if options.all {
        infos.keys().cloned().collect()
    } else {
        if let Some(name) = options.databases.iter().find(|n| !infos.contains_key(*n)) {
            return Err(LogicalError::NoSuchDatabase {
                name: name.clone(),
                available: infos.keys().cloned().collect(),
            });
        }
        options.databases.clone()
    };
    if databases.is_empty() && !options.with_globals() {
        return Err(LogicalError::NothingToBackUp);
    }
    Ok(databases)
}

/// A safe, readable object name for a database: `db-0001-app`.
fn object_name(index: usize, database: &str) -> String {
    let clean: String = database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("db-{index:04}-{clean}.dump.zst")
}

/// One dump: a program's stdout into one object.
struct DumpJob {
    item: String,
    key: String,
    program: PathBuf,
    args: Vec<String>,
    dbname: Option<String>,
}

/// Runs the dumps of one backup into its directory.
struct Dumper<'a> {
    settings: &'a Settings,
    repo: &'a Repository,
    prefix: String,
    progress: Arc<dyn Progress>,
}

impl Dumper<'_> {
    async fn run(&self, job: DumpJob) -> Result<(StoredObject, f64), Error> {
        let started = Instant::now();
        self.progress.start(&job.item);
        let mut cmd =
            exec::pg_command(&job.program, &self.settings.conninfo, job.dbname.as_deref());
        cmd.args(&job.args);
        let stdout = StdoutStream::spawn(cmd, &job.program)?;
        // The dump is read on the compression thread: this kills it when the run fails or is
        // dropped, even while that thread waits for its next bytes.
        let _stop = stdout.stopper();
        let reader = ProgressReader::new(stdout, self.progress.clone(), &job.item);
        let stored = stream::store_object(
            self.repo.storage(),
            &job.key,
            reader,
            PutMode::Create,
            self.settings.compression,
        )
        .await?;
        self.progress.finish(&job.item);
        Ok((stored, started.elapsed().as_secs_f64()))
    }

    /// The globals object, dumped with `pg_dumpall --globals-only`.
    async fn globals(&self, pg_dumpall: &ToolInfo) -> Result<ManifestObject, Error> {
        let job = DumpJob {
            item: "globals".into(),
            key: format!("{}globals.sql.zst", self.prefix),
            program: pg_dumpall.program(),
            args: vec!["--globals-only".into(), "--no-password".into()],
            dbname: Some("postgres".into()),
        };
        let (stored, seconds) = self.run(job).await?;
        Ok(ManifestObject {
            role: ObjectRole::Globals,
            database: None,
            format: ObjectFormat::Sql,
            database_info: None,
            seconds,
            path: None,
            stored,
        })
    }

    /// Each database dumped with pg_dump, `options.jobs` at a time, in order.
    async fn databases(
        &self,
        pg_dump: &ToolInfo,
        databases: &[String],
        infos: &BTreeMap<String, DatabaseInfo>,
        options: &LogicalBackupOptions,
    ) -> Result<Vec<ManifestObject>, Error> {
        let mut args = vec![
            "--format=custom".to_string(),
            "--compress=0".to_string(),
            "--no-password".to_string(),
        ];
        if options.schema_only {
            args.push("--schema-only".into());
        }
        for pattern in &options.exclude_tables {
            args.push(format!("--exclude-table={pattern}"));
        }
        let jobs = databases.iter().enumerate().map(|(i, db)| DumpJob {
            item: db.clone(),
            key: format!("{}{}", self.prefix, object_name(i + 1, db)),
            program: pg_dump.program(),
            args: args.clone(),
            dbname: Some(db.clone()),
        });
        futures::stream::iter(jobs)
            .map(|job| async move {
                let db = job.item.clone();
                let (stored, seconds) = self.run(job).await?;
                Ok::<_, Error>(ManifestObject {
                    role: ObjectRole::Database,
                    database_info: infos.get(&db).cloned(),
                    database: Some(db),
                    format: ObjectFormat::Custom,
                    seconds,
                    path: None,
                    stored,
                })
            })
            .buffered(options.jobs.max(1))
            .try_collect()
            .await
    }
}

/// Takes a logical backup and returns its manifest (written last; the backup exists only once it
/// is). On any failure or interrupt nothing is listed: running dumps are killed, uploads aborted,
/// and the objects already stored are removed ([`Error::BackupUndone`] says what). While it runs
/// it holds a lease in the repository, so that `expire` leaves its directory alone.
pub async fn backup_logical(
    settings: &Settings,
    repo: &Repository,
    options: &LogicalBackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<Manifest, Error> {
    // One backup of the cluster at a time; expire waits for it (held until the manifest is in).
    let _lock = crate::lock::lock_work(settings, "backup logical", &options.interrupt).await?;
    let client = pg::connect(&settings.conninfo, None).await?;
    let server = pg::server_info(&client, &settings.conninfo).await?;
    wal::ensure_identity(repo, &server.system_identifier, server.major).await?;
    let bin_dir = settings.bin_dir.as_deref();
    let pg_dump = exec::fitting_tool(bin_dir, "pg_dump", server.major).await?;
    let pg_dumpall = match options.with_globals() {
        true => Some(exec::fitting_tool(bin_dir, "pg_dumpall", server.major).await?),
        false => None,
    };
    let infos = database_infos(&client, settings).await?;
    let databases = chosen_databases(options, &infos)?;

    // Before the id is reserved: whatever `expire` sees of this backup, it sees the lease too.
    let lease = LeaseGuard::take(
        repo,
        settings.retention.lease_ttl,
        LeasePurpose::BackupLogical,
        None,
    )
    .await?;
    let result = async {
        let started_at = Utc::now();
        let id = catalog::new_backup_id(repo).await?;
        tracing::info!("backup {id}: {} database(s)", databases.len());
        let prefix = catalog::backup_prefix(repo, &id);
        let writes = BackupWrites::new(repo, &prefix);
        if let Err(e) = lease.set_backup(&id).await {
            return Err(writes.undo(e).await);
        }
        let dumper = Dumper {
            settings,
            repo: writes.repo(),
            prefix,
            progress,
        };
        let dumped = async {
            let mut objects = Vec::new();
            if let Some(tool) = &pg_dumpall {
                objects.push(dumper.globals(tool).await?);
            }
            objects.extend(
                dumper
                    .databases(&pg_dump, &databases, &infos, options)
                    .await?,
            );
            Ok(objects)
        };
        let objects = match options
            .interrupt
            .run(dumped, |reason| Error::Interrupted { reason })
            .await
        {
            Ok(objects) => objects,
            Err(e) => return Err(writes.undo(e).await),
        };
        let tools: Vec<&ToolInfo> = std::iter::once(&pg_dump).chain(&pg_dumpall).collect();
        let manifest = Manifest {
            logical: Some(LogicalOptions {
                schema_only: options.schema_only,
                exclude_tables: options.exclude_tables.clone(),
            }),
            objects,
            ..Manifest::finished(repo, &server, BackupKind::Logical, id, started_at, &tools)
        };
        // Not interruptible: once written, the backup is complete.
        if let Err(e) = catalog::write_manifest(writes.repo(), &manifest).await {
            return Err(writes.undo(e).await);
        }
        Ok(manifest)
    }
    .await;
    lease.release().await;
    result
}
