//! Logical backups and restores: pg_dump (custom format, its own compression off) and
//! `pg_dumpall --globals-only` streamed through the pipeline into the repository, and pg_restore fed
//! back from it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::catalog::{
    self, BackupKind, DatabaseInfo, LogicalOptions, MANIFEST_FORMAT, Manifest, ManifestObject,
    ObjectRole,
};
use crate::config::Settings;
use crate::error::Error;
use crate::pg;
use crate::pipeline::{self, StoredObject};
use crate::process::{self, StdoutStream};
use crate::progress::{Progress, ProgressReader};
use crate::repo::Repository;
use crate::storage::PutMode;
use crate::tools::{self, ToolInfo};

/// What `backup logical` backs up.
#[derive(Debug, Clone, Default)]
pub struct LogicalBackupOptions {
    /// Databases by name; ignored with `all`.
    pub databases: Vec<String>,
    /// Every connectable, non-template database.
    pub all: bool,
    /// Store `pg_dumpall --globals-only` (roles, tablespaces) too.
    pub globals: bool,
    /// Databases dumped at once (at least 1).
    pub jobs: usize,
    /// `pg_dump --exclude-table` patterns.
    pub exclude_tables: Vec<String>,
    /// `pg_dump --schema-only`.
    pub schema_only: bool,
}

/// The database restores connect to while the target is created or replaced.
const MAINTENANCE_DB: &str = "postgres";

/// A client program that must fit the server, or a clear error.
pub(crate) async fn fitting_tool(
    settings: &Settings,
    name: &str,
    server_major: u32,
) -> Result<ToolInfo, Error> {
    let tool = tools::inspect(name, settings.bin_dir.as_deref(), Some(server_major)).await;
    match tools::misfit(&tool, Some(server_major)) {
        Some((problem, fix)) => Err(Error::Tool {
            tool: name.into(),
            problem,
            fix,
        }),
        None => Ok(tool),
    }
}

/// Where a client program for a backup of PostgreSQL `major` is, or a clear error.
pub(crate) fn located(settings: &Settings, name: &str, major: u32) -> Result<PathBuf, Error> {
    tools::locate(name, settings.bin_dir.as_deref(), Some(major)).ok_or_else(|| Error::Tool {
        tool: name.into(),
        problem: "not found".into(),
        fix: tools::install_fix(Some(major)),
    })
}

fn tool_path(tool: &ToolInfo) -> PathBuf {
    tool.path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&tool.name))
}

async fn database_infos(
    client: &tokio_postgres::Client,
    settings: &Settings,
) -> Result<BTreeMap<String, DatabaseInfo>, Error> {
    let rows = client
        .query(
            "SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding),
                    datcollate, datctype
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
                },
            )
        })
        .collect())
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

struct DumpJob {
    item: String,
    key: String,
    program: PathBuf,
    args: Vec<String>,
    dbname: Option<String>,
}

async fn run_dump(
    settings: &Settings,
    repo: &Repository,
    job: DumpJob,
    progress: Arc<dyn Progress>,
) -> Result<(StoredObject, f64), Error> {
    let started = Instant::now();
    progress.start(&job.item);
    let mut cmd = process::pg_command(&job.program, &settings.conninfo, job.dbname.as_deref());
    cmd.args(&job.args);
    let stdout = StdoutStream::spawn(cmd, &job.program)?;
    let reader = ProgressReader {
        inner: stdout,
        progress: progress.clone(),
        item: job.item.clone(),
    };
    let stored = pipeline::store(
        repo.storage(),
        &job.key,
        reader,
        PutMode::Create,
        settings.compression,
    )
    .await?;
    progress.finish(&job.item);
    Ok((stored, started.elapsed().as_secs_f64()))
}

/// Takes a logical backup and returns its manifest (written last; the backup exists only once it
/// is). On any failure nothing is listed: running dumps are killed, uploads aborted.
pub async fn backup(
    settings: &Settings,
    repo: &Repository,
    options: &LogicalBackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<Manifest, Error> {
    let client = pg::connect(&settings.conninfo, None).await?;
    let server = pg::server_info(&client, &settings.conninfo).await?;
    repo.ensure_identity(&server.system_identifier, server.major)
        .await?;
    let pg_dump = fitting_tool(settings, "pg_dump", server.major).await?;
    let pg_dumpall = if options.globals {
        Some(fitting_tool(settings, "pg_dumpall", server.major).await?)
    } else {
        None
    };

    let infos = database_infos(&client, settings).await?;
    let databases: Vec<String> = if options.all {
        infos.keys().cloned().collect()
    } else {
        for name in &options.databases {
            if !infos.contains_key(name) {
                return Err(Error::NoSuchDatabase {
                    name: name.clone(),
                    available: infos.keys().cloned().collect(),
                });
            }
        }
        options.databases.clone()
    };
    if databases.is_empty() && !options.globals {
        return Err(Error::Tool {
            tool: "pgkeep backup logical".into(),
            problem: "nothing to back up".into(),
            fix: "name databases with --db NAME, or pass --all".into(),
        });
    }

    let started_at = Utc::now();
    let id = catalog::new_backup_id(repo).await?;
    let prefix = catalog::backup_prefix(repo, &id);
    tracing::info!("backup {id}: {} database(s)", databases.len());

    let mut objects = Vec::new();
    if let Some(tool) = &pg_dumpall {
        let job = DumpJob {
            item: "globals".into(),
            key: format!("{prefix}globals.sql.zst"),
            program: tool_path(tool),
            args: vec!["--globals-only".into(), "--no-password".into()],
            dbname: Some("postgres".into()),
        };
        let (stored, seconds) = run_dump(settings, repo, job, progress.clone()).await?;
        objects.push(ManifestObject {
            role: ObjectRole::Globals,
            database: None,
            format: "sql".into(),
            database_info: None,
            seconds,
            path: None,
            stored,
        });
    }

    let mut dump_args = vec![
        "--format=custom".to_string(),
        "--compress=0".to_string(),
        "--no-password".to_string(),
    ];
    if options.schema_only {
        dump_args.push("--schema-only".into());
    }
    for pattern in &options.exclude_tables {
        dump_args.push(format!("--exclude-table={pattern}"));
    }
    let jobs = databases.iter().enumerate().map(|(i, db)| DumpJob {
        item: db.clone(),
        key: format!("{prefix}{}", object_name(i + 1, db)),
        program: tool_path(&pg_dump),
        args: dump_args.clone(),
        dbname: Some(db.clone()),
    });
    let dumped: Vec<(String, StoredObject, f64)> = futures::stream::iter(jobs)
        .map(|job| {
            let progress = progress.clone();
            async move {
                let db = job.item.clone();
                let (stored, seconds) = run_dump(settings, repo, job, progress).await?;
                Ok::<_, Error>((db, stored, seconds))
            }
        })
        .buffered(options.jobs.max(1))
        .try_collect()
        .await?;
    for (db, stored, seconds) in dumped {
        objects.push(ManifestObject {
            role: ObjectRole::Database,
            database_info: infos.get(&db).cloned(),
            database: Some(db),
            format: "custom".into(),
            seconds,
            path: None,
            stored,
        });
    }

    let mut tools = BTreeMap::new();
    tools.insert("pgkeep".to_string(), env!("CARGO_PKG_VERSION").to_string());
    tools.insert(
        "pg_dump".into(),
        pg_dump.version.clone().unwrap_or_default(),
    );
    if let Some(tool) = &pg_dumpall {
        tools.insert(
            "pg_dumpall".into(),
            tool.version.clone().unwrap_or_default(),
        );
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id,
        kind: BackupKind::Logical,
        cluster: repo.cluster().to_string(),
        system_identifier: server.system_identifier.clone(),
        server_version: server.version.clone(),
        server_version_num: server.version_num,
        started_at,
        finished_at: Utc::now(),
        tools,
        logical: Some(LogicalOptions {
            schema_only: options.schema_only,
            exclude_tables: options.exclude_tables.clone(),
        }),
        physical: None,
        objects,
    };
    catalog::write_manifest(repo, &manifest).await?;
    Ok(manifest)
}

/// Which backup a restore uses.
#[derive(Debug, Clone)]
pub enum BackupChoice {
    /// The newest logical backup that finished at or before this time.
    At(DateTime<Utc>),
    /// This backup.
    Id(String),
}

/// The backup a restore will use, and why.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
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
}

/// The backup named, or the newest logical backup that `holds` what is wanted (`what`, for the
/// error) and finished at or before the time; with the time asked for.
async fn choose_backup(
    repo: &Repository,
    choice: &BackupChoice,
    what: &str,
    holds: impl Fn(&Manifest) -> bool,
) -> Result<(Manifest, Option<DateTime<Utc>>), Error> {
    match choice {
        BackupChoice::Id(id) => Ok((catalog::find_backup(repo, id).await?, None)),
        BackupChoice::At(at) => {
            let candidates: Vec<Manifest> = catalog::list_backups(repo)
                .await?
                .into_iter()
                .filter(|m| m.kind == BackupKind::Logical && holds(m))
                .collect();
            match candidates.iter().rev().find(|m| m.finished_at <= *at) {
                Some(m) => Ok((m.clone(), Some(*at))),
                None => Err(Error::NoBackupBefore {
                    database: what.to_string(),
                    target: *at,
                    oldest: candidates.first().map(|m| m.finished_at),
                }),
            }
        }
    }
}

/// Picks the backup for restoring `database`: the newest logical backup holding it that finished
/// at or before the time, or the one named.
pub async fn plan_restore(
    repo: &Repository,
    database: &str,
    choice: &BackupChoice,
    into: Option<&str>,
) -> Result<RestorePlan, Error> {
    let (backup, requested_at) =
        choose_backup(repo, choice, database, |m| m.database(database).is_some()).await?;
    if backup.database(database).is_none() {
        return Err(Error::NotInBackup {
            id: backup.id.clone(),
            database: database.to_string(),
            has: backup.databases().iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(RestorePlan {
        seconds_before_target: requested_at.map(|at| (at - backup.finished_at).num_seconds()),
        database: database.to_string(),
        target: into.unwrap_or(database).to_string(),
        requested_at,
        backup,
    })
}

/// How a restore went.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
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

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Restores the plan's database with pg_restore. Refuses an existing target unless `clean`. With
/// `jobs > 1` the archive is decompressed into a temporary file (pg_restore -j needs to seek), which
/// is removed afterwards.
pub async fn restore(
    settings: &Settings,
    repo: &Repository,
    plan: &RestorePlan,
    jobs: usize,
    clean: bool,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport, Error> {
    let started = Instant::now();
    let object = plan
        .backup
        .database(&plan.database)
        .ok_or_else(|| Error::NotInBackup {
            id: plan.backup.id.clone(),
            database: plan.database.clone(),
            has: vec![],
        })?;
    let client = pg::connect(&settings.conninfo, Some(MAINTENANCE_DB)).await?;
    let server = pg::server_info(&client, &settings.conninfo).await?;
    let pg_restore = fitting_tool(settings, "pg_restore", server.major).await?;
    let exists = client
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&plan.target],
        )
        .await
        .map_err(|e| pg::query_error(&settings.conninfo, "looking up the target database", e))?
        .is_some();
    if exists && !clean {
        return Err(Error::DatabaseExists {
            name: plan.target.clone(),
        });
    }

    let mut args = vec!["--exit-on-error".to_string(), "--no-password".to_string()];
    let connect_to;
    if exists {
        args.extend(["--clean".into(), "--if-exists".into()]);
        connect_to = plan.target.clone();
    } else if plan.target == plan.database {
        // pg_restore creates it as it was: encoding, locale, owner, settings, grants.
        args.push("--create".into());
        connect_to = MAINTENANCE_DB.to_string();
    } else {
        create_like(
            &client,
            settings,
            &plan.target,
            object.database_info.as_ref(),
        )
        .await?;
        connect_to = plan.target.clone();
    }
    args.push(format!("--dbname={}", connect_to));
    drop(client);

    let program = tool_path(&pg_restore);
    let item = format!("restore {}", plan.target);
    progress.start(&item);
    let bytes = if jobs > 1 {
        let staging = tempfile::Builder::new()
            .prefix("pgkeep-restore-")
            .tempfile()
            .map_err(|e| restore_io(&plan.target, "creating a temporary file", e))?;
        let mut file = tokio::fs::File::create(staging.path())
            .await
            .map_err(|e| restore_io(&plan.target, "opening the temporary file", e))?;
        let mut counted = ProgressWriter {
            inner: &mut file,
            progress: progress.clone(),
            item: item.clone(),
            closed: false,
        };
        let bytes = pipeline::fetch(repo.storage(), &object.stored, &mut counted).await?;
        // Flushed to the page cache for pg_restore to read; no fsync: the file is thrown away.
        file.flush()
            .await
            .map_err(|e| restore_io(&plan.target, "writing the temporary file", e))?;
        drop(file);
        // pg_dump wrote to a pipe, so the archive has no data offsets; add them, or every
        // pg_restore worker scans the archive chunk by chunk for its table's data.
        let path = staging.path().to_path_buf();
        match tokio::task::spawn_blocking(move || crate::archive::add_data_offsets(&path)).await {
            Ok(Ok(n)) => tracing::debug!("added {n} data offsets to the staged archive"),
            Ok(Err(why)) => tracing::warn!(
                "cannot add data offsets to the staged archive ({why}); pg_restore will scan it"
            ),
            Err(e) => tracing::warn!("adding data offsets failed: {e}"),
        }
        let mut cmd = process::pg_command(&program, &settings.conninfo, Some(&connect_to));
        cmd.args(&args)
            .arg(format!("--jobs={jobs}"))
            .arg(staging.path());
        process::run(cmd, &program)
            .await
            .map_err(|e| restore_failed(&plan.target, e))?;
        bytes
    } else {
        let mut cmd = process::pg_command(&program, &settings.conninfo, Some(&connect_to));
        cmd.args(&args);
        let fed = feed_child(cmd, &program, repo, &object.stored, &progress, &item).await?;
        if !fed.status.success() {
            return Err(restore_failed(
                &plan.target,
                process::ProcessError::Failed {
                    program,
                    status: fed.status,
                    stderr: fed.stderr,
                },
            ));
        }
        fed.bytes
    };
    progress.finish(&item);
    Ok(RestoreReport {
        target: plan.target.clone(),
        backup_id: plan.backup.id.clone(),
        bytes,
        seconds: started.elapsed().as_secs_f64(),
        cleaned: exists,
    })
}

/// What a child fed from a stored object did.
pub(crate) struct Fed {
    pub(crate) bytes: u64,
    pub(crate) status: std::process::ExitStatus,
    pub(crate) stderr: String,
}

/// Runs `cmd` with `object` decompressed into its stdin. A failed read of the object kills the
/// child (it must not finish its work on bad data) and is the error; a child that stops reading
/// early is reported through its exit status and stderr.
pub(crate) async fn feed_child(
    mut cmd: tokio::process::Command,
    program: &std::path::Path,
    repo: &Repository,
    object: &StoredObject,
    progress: &Arc<dyn Progress>,
    item: &str,
) -> Result<Fed, Error> {
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| {
        Error::Process(process::ProcessError::Spawn {
            program: program.to_path_buf(),
            source,
        })
    })?;
    let stderr = child.stderr.take();
    let stderr_text = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut text).await;
        }
        text
    });
    let fetched = match child.stdin.take() {
        Some(mut stdin) => {
            let mut counted = ProgressWriter {
                inner: &mut stdin,
                progress: progress.clone(),
                item: item.to_string(),
                closed: false,
            };
            let fetched = pipeline::fetch(repo.storage(), object, &mut counted).await;
            let _ = stdin.shutdown().await;
            fetched
        }
        None => Err(Error::Output {
            key: object.key.clone(),
            source: std::io::Error::other("no stdin pipe"),
        }),
    };
    if matches!(&fetched, Err(e) if !matches!(e, Error::Output { .. })) {
        let _ = child.kill().await;
    }
    let status = child.wait().await.map_err(|source| Error::Output {
        key: object.key.clone(),
        source,
    })?;
    let stderr = stderr_text.await.unwrap_or_default().trim().to_string();
    match fetched {
        Ok(bytes) => Ok(Fed {
            bytes,
            status,
            stderr,
        }),
        // The child stopped reading: its exit status and stderr say why.
        Err(Error::Output { .. }) if !status.success() => Ok(Fed {
            bytes: 0,
            status,
            stderr,
        }),
        Err(e) => Err(e),
    }
}

fn restore_io(database: &str, what: &str, e: std::io::Error) -> Error {
    Error::Restore {
        database: database.to_string(),
        problem: format!("{what}: {e}"),
        fix: "check free space and permissions of the temporary directory (TMPDIR)".into(),
    }
}

fn restore_failed(database: &str, e: process::ProcessError) -> Error {
    Error::Restore {
        database: database.to_string(),
        problem: e.to_string(),
        fix: format!(
            "read pg_restore's message above; the database `{database}` may be partly restored: \
             drop it (DROP DATABASE) before trying again, and restore the roles first \
             (`pgkeep restore --globals`) if a role is missing"
        ),
    }
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
    })
}

/// A writer that reports what passes through it. When the reader at the other end of a pipe
/// closes it (`pg_restore --list` stops after the table of contents), the rest is discarded, so
/// that the object is still read to its end and its checksums checked; the child's exit status
/// says whether it got what it needed.
struct ProgressWriter<'a, W> {
    inner: &'a mut W,
    progress: Arc<dyn Progress>,
    item: String,
    closed: bool,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for ProgressWriter<'_, W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        if self.closed {
            return Poll::Ready(Ok(buf.len()));
        }
        match std::pin::Pin::new(&mut *self.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                self.progress.advance(&self.item, n as u64);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.closed {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.closed {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// How `restore --globals` went.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalsReport {
    /// The backup used.
    pub backup_id: String,
    /// Statements that failed only because the role or tablespace already exists.
    pub already_existed: usize,
}

/// Replays a backup's roles and tablespaces (`pg_dumpall --globals-only`) with psql. Errors that
/// only say a role already exists (the connecting role always does) are counted, not fatal; any
/// other error fails the restore.
pub async fn restore_globals(
    settings: &Settings,
    repo: &Repository,
    choice: &BackupChoice,
    progress: Arc<dyn Progress>,
) -> Result<GlobalsReport, Error> {
    let (backup, _) = choose_backup(repo, choice, "globals", |m| m.globals().is_some()).await?;
    let object = backup.globals().ok_or_else(|| Error::NotInBackup {
        id: backup.id.clone(),
        database: "globals".into(),
        has: backup.databases().iter().map(|s| s.to_string()).collect(),
    })?;
    let psql = located(settings, "psql", backup.server_version_num / 10_000)?;
    let mut cmd = process::pg_command(&psql, &settings.conninfo, Some(MAINTENANCE_DB));
    cmd.args([
        "-X",
        "-q",
        "--no-password",
        "-v",
        "ON_ERROR_STOP=0",
        "-f",
        "-",
    ]);
    let fed = feed_child(cmd, &psql, repo, &object.stored, &progress, "globals").await?;
    let errors: Vec<&str> = fed
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .collect();
    let (benign, real): (Vec<&str>, Vec<&str>) =
        errors.iter().partition(|l| l.contains("already exists"));
    if !fed.status.success() || !real.is_empty() {
        return Err(Error::Restore {
            database: "globals".into(),
            problem: format!(
                "psql reported: {}",
                if real.is_empty() {
                    fed.stderr.clone()
                } else {
                    real.join("; ")
                }
            ),
            fix: "read the errors above; fix their cause (e.g. a missing tablespace directory) and run `pgkeep restore --globals` again: it is safe to repeat".into(),
        });
    }
    Ok(GlobalsReport {
        backup_id: backup.id,
        already_existed: benign.len(),
    })
}

/// The result of verifying one object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectCheck {
    /// The object's key.
    pub key: String,
    /// Its database, if any.
    pub database: Option<String>,
    /// Whether size, checksums and (for archives) `pg_restore --list` all passed.
    pub ok: bool,
    /// What failed.
    pub error: Option<String>,
}

/// The result of verifying one backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupCheck {
    /// The backup id.
    pub id: String,
    /// Whether every object passed.
    pub ok: bool,
    /// Each object.
    pub objects: Vec<ObjectCheck>,
}

/// Re-reads every object of each backup, checking sizes and both checksums; runs
/// `pg_restore --list` over each dump to prove it is a readable archive, and `pg_verifybackup` over
/// a scratch extraction of each physical backup.
pub async fn verify(
    settings: &Settings,
    repo: &Repository,
    backups: &[Manifest],
    progress: Arc<dyn Progress>,
) -> Result<Vec<BackupCheck>, Error> {
    let mut out = Vec::new();
    for backup in backups {
        // Found once per backup, only when it has archives to list.
        let pg_restore = match backup.objects.iter().any(|o| o.format == "custom") {
            true => Some(located(
                settings,
                "pg_restore",
                backup.server_version_num / 10_000,
            )?),
            false => None,
        };
        let mut objects = Vec::new();
        for object in &backup.objects {
            let item = format!("verify {}", object.stored.key);
            progress.start(&item);
            let result = if object.role == ObjectRole::Base {
                crate::physical::verify_base(settings, repo, backup, object, &progress).await
            } else if let (true, Some(program)) = (object.format == "custom", &pg_restore) {
                let mut cmd = tokio::process::Command::new(program);
                cmd.arg("--list")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .kill_on_drop(true);
                match feed_child(cmd, program, repo, &object.stored, &progress, &item).await {
                    Ok(fed) if fed.status.success() => Ok(()),
                    Ok(fed) => Err(format!(
                        "pg_restore --list cannot read the archive ({}): {}",
                        fed.status, fed.stderr
                    )),
                    Err(e) => Err(e.to_string()),
                }
            } else {
                pipeline::fetch(repo.storage(), &object.stored, &mut tokio::io::sink())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            progress.finish(&item);
            objects.push(ObjectCheck {
                key: object.stored.key.clone(),
                database: object.database.clone(),
                ok: result.is_ok(),
                error: result.err(),
            });
        }
        out.push(BackupCheck {
            id: backup.id.clone(),
            ok: objects.iter().all(|o| o.ok),
            objects,
        });
    }
    Ok(out)
}
