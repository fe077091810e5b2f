//! Physical backups (pg_basebackup) and point-in-time restores.
//!
//! A physical backup is pg_basebackup's tar stream (`-D - -Ft -X none`) stored as one object
//! through the pipeline, plus PostgreSQL's `backup_manifest` beside it. It carries no WAL of its
//! own: recovery reads the WAL archive (`wal-push`), so a backup is recorded only once the
//! segment holding its end has been archived.
//!
//! A restore picks the base backup, proves that the archive holds every segment recovery needs
//! ([`wal::Archive::chain`]) before writing anything, extracts the tar into the target directory,
//! and writes recovery settings whose `restore_command` is `pgkeep wal-fetch`. With `start` it then
//! starts the server and waits until recovery reaches the target.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ConnInfo;
use crate::catalog::{
    self, BackupKind, MANIFEST_FORMAT, Manifest, ManifestObject, ObjectRole, PhysicalInfo,
};
use crate::config::Settings;
use crate::error::Error;
use crate::logical::{feed_child, fitting_tool, located};
use crate::pg::{self, query_error};
use crate::pipeline;
use crate::process::{self, BlockingStdout};
use crate::progress::{Progress, ProgressReader};
use crate::repo::Repository;
use crate::storage::PutMode;
use crate::tarwatch::TarWatch;
use crate::wal::{self, Archive, ChainBreak, ChainEnd, Lsn};

/// Options of `backup physical`.
#[derive(Debug, Clone)]
pub struct PhysicalBackupOptions {
    /// The server is a standby (pg_basebackup works the same; the primary archives the WAL).
    pub from_standby: bool,
    /// How long to wait for the backup's last WAL segment to be archived.
    pub wal_timeout: Duration,
}

fn physical(problem: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::Physical {
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The server's clock, in UTC.
async fn server_now(
    client: &tokio_postgres::Client,
    conninfo: &ConnInfo,
) -> Result<DateTime<Utc>, Error> {
    let text: String = client
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .map_err(|e| query_error(conninfo, "reading the server's clock", e))?
        .get(0);
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            physical(
                format!("the server's clock reads `{text}`: {e}"),
                "this is a bug in pgkeep; please report it",
            )
        })
}

/// Values of `backup_label`.
fn label_value<'a>(label: &'a str, key: &str) -> Option<&'a str> {
    label
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
}

/// One `WAL-Ranges` entry of a `backup_manifest`: timeline, start, end.
type WalRange = (u32, Lsn, Lsn);

/// `WAL-Ranges` and `Manifest-Checksum` of a `backup_manifest` (or of its tail).
fn manifest_facts(text: &str) -> Option<(Vec<WalRange>, Option<String>)> {
    let at = text.rfind("\"WAL-Ranges\"")?;
    let open = at + text[at..].find('[')?;
    let close = open + text[open..].find(']')?;
    let ranges: Vec<serde_json::Value> = serde_json::from_str(&text[open..=close]).ok()?;
    let ranges = ranges
        .iter()
        .map(|r| {
            Some((
                u32::try_from(r["Timeline"].as_u64()?).ok()?,
                Lsn::parse(r["Start-LSN"].as_str()?)?,
                Lsn::parse(r["End-LSN"].as_str()?)?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    let checksum = text[close..].find("\"Manifest-Checksum\"").and_then(|c| {
        let rest = &text[close + c + "\"Manifest-Checksum\"".len()..];
        let start = rest.find('"')? + 1;
        let end = start + rest[start..].find('"')?;
        Some(rest[start..end].to_string())
    });
    Some((ranges, checksum))
}

/// Takes a physical backup and returns its manifest (written last, once its WAL is archived).
pub async fn backup(
    settings: &Settings,
    repo: &Repository,
    options: &PhysicalBackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<Manifest, Error> {
    let conninfo = &settings.conninfo;
    let client = pg::connect(conninfo, None).await?;
    let server = pg::server_info(&client, conninfo).await?;
    match (server.in_recovery, options.from_standby) {
        (true, false) => {
            return Err(physical(
                format!("{} is a standby (in recovery)", conninfo.server()),
                "pass --from-standby to back up this standby, or point pgkeep at the primary",
            ));
        }
        (false, true) => {
            return Err(physical(
                format!(
                    "--from-standby was given but {} is a primary",
                    conninfo.server()
                ),
                "drop --from-standby, or point pgkeep at the standby",
            ));
        }
        _ => {}
    }
    if server.wal_level == "minimal" {
        return Err(physical(
            "wal_level is minimal: a base backup cannot be recovered from",
            "set wal_level = replica in postgresql.conf and restart PostgreSQL",
        ));
    }
    if server.archive_mode == "off" && !options.from_standby {
        return Err(physical(
            "archive_mode is off: without archived WAL a base backup can never be restored",
            "set archive_mode = on and archive_command = 'pgkeep wal-push %p' (see deploy/postgresql.pgkeep.conf), then restart PostgreSQL",
        ));
    }
    let tablespaces: Vec<String> = client
        .query(
            "SELECT spcname || ' (' || pg_tablespace_location(oid) || ')' FROM pg_tablespace
              WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY spcname",
            &[],
        )
        .await
        .map_err(|e| query_error(conninfo, "listing tablespaces", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !tablespaces.is_empty() {
        return Err(physical(
            format!(
                "the cluster has tablespaces outside the data directory: {}; pgkeep's physical backups hold the data directory only, so these would be missing; nothing was stored",
                tablespaces.join(", ")
            ),
            "move their objects to pg_default (ALTER TABLE/INDEX ... SET TABLESPACE pg_default, then DROP TABLESPACE), or back those databases up with `pgkeep backup logical`",
        ));
    }
    let segment_size: i64 = client
        .query_one(
            "SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'",
            &[],
        )
        .await
        .map_err(|e| query_error(conninfo, "reading wal_segment_size", e))?
        .get(0);
    let segment_size = segment_size.unsigned_abs();
    repo.ensure_identity(&server.system_identifier, server.major)
        .await?;
    let tool = fitting_tool(settings, "pg_basebackup", server.major).await?;
    let program = tool
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from("pg_basebackup"));

    let started_at = Utc::now();
    let id = catalog::new_backup_id(repo).await?;
    let prefix = catalog::backup_prefix(repo, &id);
    let mut cmd = process::pg_std_command(&program, conninfo, None);
    cmd.args([
        "--pgdata=-",
        "--format=tar",
        "--wal-method=none",
        "--checkpoint=fast",
        "--no-password",
    ])
    .arg(format!("--label=pgkeep {id}"));
    let item = "base backup".to_string();
    progress.start(&item);
    let begun = Instant::now();
    let stdout = BlockingStdout::spawn(cmd, &program)?;
    let watch = TarWatch::new(
        ProgressReader {
            inner: stdout,
            progress: progress.clone(),
            item: item.clone(),
        },
        &["backup_label", "backup_manifest"],
    );
    let watched = watch.handle();
    let base = pipeline::store_blocking(
        repo.storage(),
        &format!("{prefix}base.tar.zst"),
        watch,
        PutMode::Create,
        settings.compression,
    )
    .await?;
    let seconds = begun.elapsed().as_secs_f64();
    progress.finish(&item);
    // The server sends backup_manifest right after pg_backup_stop: the server's clock now, less the
    // time since the manifest went by, is when the backup ended (a little after, never before).
    let stop_time = server_now(&client, conninfo).await?
        - watched
            .get("backup_manifest")
            .and_then(|c| c.seen_at)
            .map_or(chrono::Duration::zero(), |seen| {
                chrono::Duration::from_std(seen.elapsed()).unwrap_or_default()
            });

    let missing = |what: &str| {
        physical(
            format!("pg_basebackup's output has no usable {what}"),
            "check that pg_basebackup fits the server (`pgkeep check`); this may be a bug in pgkeep",
        )
    };
    let label = watched
        .get("backup_label")
        .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
        .ok_or_else(|| missing("backup_label"))?;
    let start_lsn = label_value(&label, "START WAL LOCATION")
        .and_then(|v| v.split_whitespace().next())
        .and_then(Lsn::parse)
        .ok_or_else(|| missing("START WAL LOCATION in backup_label"))?;
    let timeline: u32 = label_value(&label, "START TIMELINE")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| missing("START TIMELINE in backup_label"))?;
    let pg_manifest = watched
        .get("backup_manifest")
        .ok_or_else(|| missing("backup_manifest"))?;
    let (ranges, manifest_checksum) = manifest_facts(&String::from_utf8_lossy(&pg_manifest.bytes))
        .ok_or_else(|| missing("WAL-Ranges in backup_manifest"))?;
    let &(stop_timeline, _, stop_lsn) = ranges
        .last()
        .ok_or_else(|| missing("WAL range in backup_manifest"))?;
    let start_segment = wal::segment_name(timeline, start_lsn.segno(segment_size), segment_size);
    let stop_segment = wal::segment_name(
        stop_timeline,
        Lsn(stop_lsn.0.saturating_sub(1)).segno(segment_size),
        segment_size,
    );
    wait_archived(repo, &stop_segment, options, &progress).await?;

    let mut objects = vec![ManifestObject {
        role: ObjectRole::Base,
        database: None,
        format: "tar".into(),
        database_info: None,
        seconds,
        path: None,
        stored: base,
    }];
    if !pg_manifest.truncated {
        let stored = pipeline::store(
            repo.storage(),
            &format!("{prefix}backup_manifest.zst"),
            std::io::Cursor::new(pg_manifest.bytes),
            PutMode::Create,
            settings.compression,
        )
        .await?;
        objects.push(ManifestObject {
            role: ObjectRole::BackupManifest,
            database: None,
            format: "json".into(),
            database_info: None,
            seconds: 0.0,
            path: None,
            stored,
        });
    }
    objects.extend(store_outside_config(settings, repo, &client, &prefix).await?);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        id,
        kind: BackupKind::Physical,
        cluster: repo.cluster().to_string(),
        system_identifier: server.system_identifier.clone(),
        server_version: server.version.clone(),
        server_version_num: server.version_num,
        started_at,
        finished_at: Utc::now(),
        tools: [
            ("pgkeep".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            (
                "pg_basebackup".to_string(),
                tool.version.clone().unwrap_or_default(),
            ),
        ]
        .into(),
        logical: None,
        physical: Some(PhysicalInfo {
            start_lsn,
            stop_lsn,
            start_segment,
            stop_segment,
            timeline,
            stop_timeline,
            stop_time,
            wal_segment_size: segment_size,
            from_standby: options.from_standby,
            backup_label: label,
            backup_manifest_checksum: manifest_checksum,
        }),
        objects,
    };
    catalog::write_manifest(repo, &manifest).await?;
    Ok(manifest)
}

/// The configuration files a restored data directory needs, by their name in the data directory.
const CONFIG_FILES: [(&str, &str); 3] = [
    ("config_file", "postgresql.conf"),
    ("hba_file", "pg_hba.conf"),
    ("ident_file", "pg_ident.conf"),
];

/// Stores the configuration files that live outside the data directory (Debian keeps them in
/// /etc/postgresql/<major>/<cluster>/), which pg_basebackup leaves out. Files this process cannot
/// read (a backup taken from another host, or without the rights) are skipped with a warning.
async fn store_outside_config(
    settings: &Settings,
    repo: &Repository,
    client: &tokio_postgres::Client,
    prefix: &str,
) -> Result<Vec<ManifestObject>, Error> {
    let rows = client
        .query(
            "SELECT name, setting, current_setting('data_directory') FROM pg_settings
              WHERE name IN ('config_file', 'hba_file', 'ident_file')",
            &[],
        )
        .await
        .map_err(|e| {
            query_error(
                &settings.conninfo,
                "reading the configuration file paths",
                e,
            )
        })?;
    let mut objects = Vec::new();
    for row in rows {
        let (setting, path, data_dir): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let Some((_, file_name)) = CONFIG_FILES.iter().find(|(s, _)| *s == setting) else {
            continue;
        };
        if Path::new(&path).starts_with(&data_dir) {
            continue;
        }
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(
                    "{setting} {path} is outside the data directory and cannot be read here ({e}): the backup does not hold it; keep a copy of it elsewhere"
                );
                continue;
            }
        };
        let stored = pipeline::store(
            repo.storage(),
            &format!("{prefix}config/{file_name}.zst"),
            std::io::Cursor::new(bytes),
            PutMode::Create,
            settings.compression,
        )
        .await?;
        objects.push(ManifestObject {
            role: ObjectRole::Config,
            database: None,
            format: (*file_name).to_string(),
            database_info: None,
            seconds: 0.0,
            path: Some(path),
            stored,
        });
    }
    Ok(objects)
}

/// Settings of an outside postgresql.conf that point at the original server's own files.
const ORIGINAL_FILES: [&str; 4] = [
    "data_directory",
    "hba_file",
    "ident_file",
    "external_pid_file",
];
/// Include directives: relative paths are relative to the original file's directory.
const INCLUDES: [&str; 3] = ["include", "include_dir", "include_if_exists"];

/// An outside postgresql.conf for the restored data directory: the settings that point at the
/// original's files are commented out; includes are made absolute against the original file's
/// directory, and commented out when they do not exist on this host.
fn adapt_config(text: &str, original: &str) -> String {
    let base = Path::new(original).parent().unwrap_or(Path::new("/"));
    let mut out = format!(
        "# postgresql.conf of the backed-up server ({original}), written by pgkeep restore.\n# Lines pgkeep changed or commented out are marked `#pgkeep#`.\n"
    );
    for line in text.lines() {
        let trimmed = line.trim_start();
        let key = trimmed
            .split(|c: char| c == '=' || c.is_whitespace())
            .next()
            .unwrap_or("");
        if ORIGINAL_FILES.contains(&key) {
            out.push_str(&format!("#pgkeep# (the original's) {line}\n"));
            continue;
        }
        if INCLUDES.contains(&key) {
            let value = trimmed[key.len()..]
                .trim_start()
                .trim_start_matches('=')
                .trim();
            let value = value.split('#').next().unwrap_or("").trim();
            let path = value.trim_matches('\'');
            let absolute = base.join(path);
            if absolute.exists() {
                out.push_str(&format!(
                    "#pgkeep# was: {line}\n{key} = '{}'\n",
                    absolute.display().to_string().replace('\'', "''")
                ));
            } else {
                out.push_str(&format!("#pgkeep# (not on this host) {line}\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Minimal files for a data directory whose backup holds no configuration (taken from another
/// host, or before pgkeep kept it): local connections only.
const MINIMAL_HBA: &str = "# Written by pgkeep restore: the backup held no pg_hba.conf.\n# Local connections only; replace with the original's rules.\nlocal   all   all                 peer\nhost    all   all   127.0.0.1/32  scram-sha-256\nhost    all   all   ::1/128       scram-sha-256\n";

/// Writes the configuration files a restored data directory lacks; returns notes for the report.
async fn restore_config(repo: &Repository, plan: &RestorePlan) -> Result<Vec<String>, Error> {
    let dir = &plan.pgdata;
    let mut notes = Vec::new();
    for (_, file_name) in CONFIG_FILES {
        let target = dir.join(file_name);
        if target.exists() {
            continue;
        }
        let stored = plan
            .manifest
            .objects
            .iter()
            .find(|o| o.role == ObjectRole::Config && o.format == file_name);
        let text = match stored {
            Some(object) => {
                let mut bytes = Vec::new();
                pipeline::fetch(repo.storage(), &object.stored, &mut bytes).await?;
                let original = object.path.clone().unwrap_or_default();
                notes.push(format!(
                    "{file_name} restored from the backup's copy of {original}"
                ));
                match file_name {
                    "postgresql.conf" => adapt_config(&String::from_utf8_lossy(&bytes), &original),
                    _ => String::from_utf8_lossy(&bytes).into_owned(),
                }
            }
            None => {
                notes.push(format!(
                    "the backup holds no {file_name}: a minimal one was written; compare it with the original server's"
                ));
                match file_name {
                    "pg_hba.conf" => MINIMAL_HBA.to_string(),
                    _ => format!("# Written by pgkeep restore: the backup held no {file_name}.\n"),
                }
            }
        };
        tokio::fs::write(&target, text)
            .await
            .map_err(|e| io_error("cannot write", &target, e))?;
    }
    Ok(notes)
}

/// Waits until `segment` is in the archive: without it the backup cannot be restored.
async fn wait_archived(
    repo: &Repository,
    segment: &str,
    options: &PhysicalBackupOptions,
    progress: &Arc<dyn Progress>,
) -> Result<(), Error> {
    let key = wal::wal_key(repo, segment)?;
    let item = format!("waiting for WAL {segment} to be archived");
    let begun = Instant::now();
    let mut announced = false;
    loop {
        match repo.storage().head(&key).await {
            Ok(_) => {
                if announced {
                    progress.finish(&item);
                }
                tracing::info!("WAL up to {segment} is archived");
                return Ok(());
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if begun.elapsed() >= options.wal_timeout {
            return Err(physical(
                format!(
                    "WAL segment {segment}, where this backup ends, was not archived within {} s; without it the backup cannot be restored, so it was not recorded",
                    options.wal_timeout.as_secs()
                ),
                if options.from_standby {
                    "the primary archives a standby's WAL: check its archive_command (`pgkeep wal-push %p`, same repository and cluster name) and run `SELECT pg_switch_wal()` there or set archive_timeout; then back up again"
                } else {
                    "check archive_command = 'pgkeep wal-push %p' with this repository and cluster name (`pgkeep check`) and the archiver errors in the server log (pg_stat_archiver); then back up again"
                },
            ));
        }
        if !announced {
            progress.start(&item);
            tracing::info!("{item}");
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What recovery should stop at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Target {
    /// `recovery_target_time`.
    Time(DateTime<Utc>),
    /// `recovery_target_lsn`.
    Lsn(Lsn),
    /// `recovery_target_xid`.
    Xid(String),
    /// `recovery_target_name` (a `pg_create_restore_point`).
    Name(String),
    /// `recovery_target = 'immediate'`: the backup's consistent point.
    Immediate,
    /// No target: replay all archived WAL.
    Latest,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Time(t) => write!(f, "time {}", t.format("%Y-%m-%d %H:%M:%S%.6f UTC")),
            Target::Lsn(l) => write!(f, "LSN {l}"),
            Target::Xid(x) => write!(f, "transaction {x}"),
            Target::Name(n) => write!(f, "restore point `{n}`"),
            Target::Immediate => f.write_str("the end of the base backup (immediate)"),
            Target::Latest => f.write_str("the end of the archived WAL (latest)"),
        }
    }
}

/// Which timeline recovery follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineChoice {
    /// The newest timeline in the archive that descends from the backup's (PostgreSQL's default).
    Latest,
    /// The backup's own timeline.
    Current,
    /// This timeline.
    Id(u32),
}

impl std::str::FromStr for TimelineChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latest" => Ok(TimelineChoice::Latest),
            "current" => Ok(TimelineChoice::Current),
            n => n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .map(TimelineChoice::Id)
                .ok_or_else(|| format!("`{s}` is not latest, current or a timeline number")),
        }
    }
}

/// What to do once the target is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetAction {
    /// Stay in recovery, read-only, for inspection (PostgreSQL's default).
    Pause,
    /// End recovery and accept writes (a new timeline).
    Promote,
    /// Shut down.
    Shutdown,
}

impl TargetAction {
    fn setting(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// What a point-in-time restore is asked to do.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// Where to stop.
    pub target: Target,
    /// Use this backup instead of choosing one.
    pub backup: Option<String>,
    /// Which timeline to follow.
    pub timeline: TimelineChoice,
    /// The directory to restore into.
    pub pgdata: PathBuf,
    /// Replace the contents of a non-empty directory.
    pub force: bool,
}

/// The times that can be restored to.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The end of the oldest physical backup.
    pub from: Option<DateTime<Utc>>,
    /// When the newest WAL segment was archived.
    pub to: Option<DateTime<Utc>>,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |t: &Option<DateTime<Utc>>| {
            t.map_or("-".to_string(), |t| {
                t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            })
        };
        write!(f, "{} to {}", t(&self.from), t(&self.to))
    }
}

/// The recoverable window: from the end of the oldest physical backup to the newest WAL archived
/// on the newest timeline's path.
pub fn window(backups: &[Manifest], archive: &Archive) -> Window {
    let from = backups
        .iter()
        .filter_map(|b| b.physical.as_ref())
        .map(|p| p.stop_time)
        .min();
    let to = archive.latest_timeline().and_then(|tli| {
        archive
            .path_to(tli)
            .iter()
            .filter_map(|(t, _)| archive.segments.get(t))
            .flat_map(|segs| segs.values())
            .filter_map(|m| m.modified)
            .max()
    });
    match (from, to) {
        // The segment holding a backup's end can be archived a moment before the backup's end is
        // measured: right after a backup, the window is the backup's end itself.
        (Some(from), Some(to)) => Window {
            from: Some(from),
            to: Some(to.max(from)),
        },
        _ => Window {
            from: None,
            to: None,
        },
    }
}

/// The WAL segment size recorded by the newest physical backup, else the default.
pub fn segment_size(backups: &[Manifest]) -> u64 {
    backups
        .iter()
        .rev()
        .find_map(|b| b.physical.as_ref().map(|p| p.wal_segment_size))
        .unwrap_or(wal::DEFAULT_SEGMENT_SIZE)
}

/// `list`'s window: loads the archive listing.
pub async fn recoverable_window(repo: &Repository, backups: &[Manifest]) -> Result<Window, Error> {
    if !backups.iter().any(|b| b.kind == BackupKind::Physical) {
        return Ok(Window {
            from: None,
            to: None,
        });
    }
    let archive = Archive::load(repo, segment_size(backups)).await?;
    Ok(window(backups, &archive))
}

/// A checked plan: which backup, which WAL, what target.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The base backup.
    pub backup: String,
    /// When it ended (server clock).
    pub backup_stop_time: DateTime<Utc>,
    /// Where it ended.
    pub backup_stop_lsn: Lsn,
    /// The target.
    pub target: Target,
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
    pub window: Window,
    /// Bytes of the base backup (uncompressed).
    pub size: u64,
    #[serde(skip)]
    manifest: Manifest,
    /// The request's `force`: the restore replaces a non-empty directory's contents.
    #[serde(skip)]
    force: bool,
}

fn is_empty_dir(dir: &Path) -> Result<Option<usize>, Error> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries.count())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(physical(
            format!("cannot read {}: {e}", dir.display()),
            "check the path and its permissions",
        )),
    }
}

fn check_target_dir(dir: &Path, force: bool) -> Result<(), Error> {
    if dir.join("postmaster.pid").exists() {
        return Err(physical(
            format!(
                "{} holds postmaster.pid: a server may be running there; nothing was changed",
                dir.display()
            ),
            "stop that server first (pg_ctl -D DIR stop), or restore into another directory",
        ));
    }
    if let Some(n) = is_empty_dir(dir)?
        && n > 0
        && !force
    {
        return Err(physical(
            format!(
                "{} is not empty ({n} entries); nothing was changed",
                dir.display()
            ),
            "restore into an empty or new directory, or pass --force to replace its contents",
        ));
    }
    Ok(())
}

fn outside(target: &Target, window: &Window, why: &str) -> Error {
    physical(
        format!("{target} is {why}; the restorable window is {window}"),
        "choose a target inside the window (`pgkeep list`); WAL not yet archived cannot be restored (`SELECT pg_switch_wal()` on the server archives the current segment)",
    )
}

/// Chooses the backup and checks the WAL chain. Writes nothing.
pub async fn plan_restore(
    repo: &Repository,
    request: &RestoreRequest,
) -> Result<RestorePlan, Error> {
    check_target_dir(&request.pgdata, request.force)?;
    let backups: Vec<Manifest> = catalog::list_backups(repo)
        .await?
        .into_iter()
        .filter(|b| b.kind == BackupKind::Physical && b.physical.is_some())
        .collect();
    if backups.is_empty() {
        return Err(physical(
            format!(
                "{} holds no physical backup of cluster {}",
                repo.storage().url(),
                repo.cluster()
            ),
            "take one with `pgkeep backup physical`, or check --repo and --cluster",
        ));
    }
    let segment_size = segment_size(&backups);
    let archive = Archive::load(repo, segment_size).await?;
    let window = window(&backups, &archive);
    let info = |b: &Manifest| b.physical.clone().expect("physical backups only");

    if let Target::Time(t) = &request.target {
        if window.from.is_none_or(|from| *t < from) {
            return Err(outside(
                &request.target,
                &window,
                "before the end of the oldest base backup",
            ));
        }
        if window.to.is_some_and(|to| *t > to) {
            return Err(outside(
                &request.target,
                &window,
                "after the newest archived WAL",
            ));
        }
    }
    let chosen = match &request.backup {
        Some(id) => {
            let b = catalog::find_backup(repo, id).await?;
            if b.physical.is_none() {
                return Err(physical(
                    format!("backup {id} is a logical backup"),
                    "restore it with `pgkeep restore --db NAME --backup ID`, or pick a physical backup (`pgkeep list`)",
                ));
            }
            b
        }
        None => {
            let candidates: Vec<&Manifest> = match &request.target {
                Target::Time(t) => backups.iter().filter(|b| info(b).stop_time <= *t).collect(),
                Target::Lsn(l) => backups.iter().filter(|b| info(b).stop_lsn <= *l).collect(),
                _ => backups.iter().collect(),
            };
            match candidates.last() {
                Some(b) => (*b).clone(),
                None => {
                    return Err(outside(
                        &request.target,
                        &window,
                        "before the end of the oldest base backup",
                    ));
                }
            }
        }
    };
    let p = info(&chosen);
    match &request.target {
        Target::Time(t) if *t < p.stop_time => {
            return Err(physical(
                format!(
                    "{} is before backup {} ended ({}); recovery cannot stop before a backup is consistent",
                    request.target,
                    chosen.id,
                    p.stop_time.format("%Y-%m-%d %H:%M:%S%.3f UTC")
                ),
                "choose an older backup with --backup, or a later target",
            ));
        }
        Target::Lsn(l) if *l < p.stop_lsn => {
            return Err(physical(
                format!(
                    "{} is before backup {} ends ({})",
                    request.target, chosen.id, p.stop_lsn
                ),
                "choose an older backup with --backup, or a later target",
            ));
        }
        _ => {}
    }
    let (target_tli, timeline_setting) = match request.timeline {
        TimelineChoice::Latest => (
            archive
                .latest_timeline()
                .unwrap_or(p.stop_timeline)
                .max(p.stop_timeline),
            "latest".to_string(),
        ),
        TimelineChoice::Current => (p.stop_timeline, "current".to_string()),
        TimelineChoice::Id(n) => (n, n.to_string()),
    };
    let start = p.start_lsn.segno(segment_size);
    let stop = Lsn(p.stop_lsn.0.saturating_sub(1)).segno(segment_size);
    let end = match &request.target {
        Target::Time(t) => Some(ChainEnd::ArchivedAt(*t)),
        Target::Lsn(l) => Some(ChainEnd::Segment(l.segno(segment_size))),
        Target::Immediate => Some(ChainEnd::Segment(stop)),
        Target::Xid(_) | Target::Name(_) | Target::Latest => None,
    };
    let broken = |e: ChainBreak| match e {
        ChainBreak::Missing { name } => physical(
            format!(
                "the WAL archive is missing segment {name}, which recovery from backup {} ({} onward) to {} needs; nothing was written",
                chosen.id, p.start_segment, request.target
            ),
            "find the segment (the server's pg_wal, another copy of the archive) and store it with `pgkeep wal-push`, or choose an earlier target; `pgkeep verify --wal` lists every gap",
        ),
        ChainBreak::NotAncestor { tli, target, path } => physical(
            format!(
                "backup {} is on timeline {tli}, which is not in the history of timeline {target} (its history: {path:?})",
                chosen.id
            ),
            "pass --timeline current, or choose a backup taken on that timeline's history (`pgkeep list`)",
        ),
        ChainBreak::TimeNotArchived { .. } => {
            outside(&request.target, &window, "after the newest archived WAL")
        }
    };
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
    let first = chain.first().map(|c| c.name.clone()).unwrap_or_default();
    let last = chain.last().map(|c| c.name.clone()).unwrap_or_default();
    Ok(RestorePlan {
        backup: chosen.id.clone(),
        backup_stop_time: p.stop_time,
        backup_stop_lsn: p.stop_lsn,
        target: request.target.clone(),
        timeline: target_tli,
        timeline_setting,
        wal_from: first,
        wal_to: last,
        wal_segments: chain.len(),
        pgdata: request.pgdata.clone(),
        window,
        size: chosen.base().map_or(0, |b| b.stored.size),
        manifest: chosen,
        force: request.force,
    })
}

/// How to carry out a plan.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
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
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// `paused`, `promoted`, `shut down` or `not started`.
    pub state: String,
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

/// The effective user id of this process, from /proc.
fn euid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// uid and gid of `user`, from /etc/passwd.
fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[0] == user)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    physical(
        format!("{what} {}: {e}", path.display()),
        "check the path, its permissions and the free space",
    )
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Single-quotes `value` for a shell command line.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Quotes `value` as a postgresql.conf string.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The `restore_command` for the restored server: this very binary, with this repository.
fn restore_command(settings: &Settings, repo: &Repository) -> Result<String, Error> {
    let exe = std::env::current_exe().map_err(|e| {
        physical(
            format!("cannot find the pgkeep binary for restore_command: {e}"),
            "run pgkeep by its full path",
        )
    })?;
    // Replaced while running (a package upgrade, a rebuild): the path still names the new binary.
    let exe = exe
        .to_str()
        .and_then(|p| p.strip_suffix(" (deleted)"))
        .map_or(exe.clone(), PathBuf::from);
    let mut parts = vec![shell_quote(&exe.to_string_lossy())];
    if let Some(config) = &settings.config_path {
        let config = std::fs::canonicalize(config).unwrap_or_else(|_| config.clone());
        parts.push("--config".into());
        parts.push(shell_quote(&config.to_string_lossy()));
    }
    parts.push("--repo".into());
    parts.push(shell_quote(&repo.storage().url()));
    parts.push("--cluster".into());
    parts.push(shell_quote(repo.cluster()));
    parts.push("wal-fetch %f %p".into());
    Ok(parts.join(" "))
}

/// Settings this restore overrides, removed from postgresql.auto.conf before its own are added.
fn overridden(key: &str) -> bool {
    key.starts_with("recovery_target") || matches!(key, "restore_command" | "archive_mode" | "port")
}

fn recovery_settings(
    settings: &Settings,
    repo: &Repository,
    plan: &RestorePlan,
    options: &RestoreOptions,
    existing: &str,
) -> Result<String, Error> {
    let mut out: Vec<String> = existing
        .lines()
        .filter(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            !overridden(key) || options.keep_archiving && key == "archive_mode"
        })
        .map(str::to_string)
        .collect();
    out.push(format!(
        "# Added by pgkeep restore at {}: backup {}, recovery to {}.",
        Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        plan.backup,
        plan.target
    ));
    out.push(format!(
        "restore_command = {}",
        conf_quote(&restore_command(settings, repo)?)
    ));
    let target = match &plan.target {
        Target::Time(t) => Some((
            "recovery_target_time",
            t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        )),
        Target::Lsn(l) => Some(("recovery_target_lsn", l.to_string())),
        Target::Xid(x) => Some(("recovery_target_xid", x.clone())),
        Target::Name(n) => Some(("recovery_target_name", n.clone())),
        Target::Immediate => Some(("recovery_target", "immediate".to_string())),
        Target::Latest => None,
    };
    if let Some((key, value)) = target {
        out.push(format!("{key} = {}", conf_quote(&value)));
        out.push(format!(
            "recovery_target_action = {}",
            conf_quote(options.target_action.setting())
        ));
    }
    out.push(format!(
        "recovery_target_timeline = {}",
        conf_quote(&plan.timeline_setting)
    ));
    if !options.keep_archiving {
        out.push(
            "# The restored copy does not archive into the repository it came from (--keep-archiving keeps the backup's settings)."
                .into(),
        );
        out.push("archive_mode = 'off'".into());
    }
    if let Some(port) = options.port {
        out.push(format!("port = {port}"));
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}

/// Carries out a plan from [`plan_restore`].
pub async fn restore(
    settings: &Settings,
    repo: &Repository,
    plan: &RestorePlan,
    options: &RestoreOptions,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport, Error> {
    let begun = Instant::now();
    let dir = &plan.pgdata;
    let root = euid() == Some(0);
    let owner = match (root, &options.owner) {
        (true, owner) => {
            let name = owner.as_deref().unwrap_or("postgres");
            Some(lookup_user(name).ok_or_else(|| {
                physical(
                    format!("user `{name}` (owner of the restored files) does not exist"),
                    "pass --owner with the user PostgreSQL runs as",
                )
            })?)
        }
        (false, Some(name)) => {
            return Err(physical(
                format!("--owner {name} needs root"),
                "run the restore as root, or as the user the server runs as without --owner",
            ));
        }
        (false, None) => None,
    };
    check_target_dir(dir, plan.force)?;
    if is_empty_dir(dir)?.is_some_and(|n| n > 0) {
        for entry in std::fs::read_dir(dir).map_err(|e| io_error("cannot read", dir, e))? {
            let path = entry.map_err(|e| io_error("cannot read", dir, e))?.path();
            let removed = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| io_error("cannot remove", &path, e))?;
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error("cannot set the mode of", dir, e))?;
    }

    let base = plan.manifest.base().ok_or_else(|| {
        physical(
            format!("backup {} lists no base object", plan.backup),
            "the manifest is damaged; choose another backup with --backup",
        )
    })?;
    let item = format!("extract {}", plan.backup);
    progress.start(&item);
    let cmd = tar_extract(dir, true);
    let fed = feed_child(cmd, Path::new("tar"), repo, &base.stored, &progress, &item).await?;
    progress.finish(&item);
    if !fed.status.success() {
        return Err(physical(
            format!(
                "extracting backup {} into {} failed ({}): {}",
                plan.backup,
                dir.display(),
                fed.status,
                fed.stderr.trim()
            ),
            "check the free space and permissions of the target; the directory holds a partial restore: remove it or use --force",
        ));
    }
    for leftover in ["standby.signal", "postmaster.opts"] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    let notes = restore_config(repo, plan).await?;
    let auto_conf = dir.join("postgresql.auto.conf");
    let existing = std::fs::read_to_string(&auto_conf).unwrap_or_default();
    let text = recovery_settings(settings, repo, plan, options, &existing)?;
    std::fs::write(&auto_conf, text).map_err(|e| io_error("cannot write", &auto_conf, e))?;
    let signal = dir.join("recovery.signal");
    std::fs::write(&signal, "").map_err(|e| io_error("cannot write", &signal, e))?;
    if let Some((uid, gid)) = owner {
        chown_tree(dir, uid, gid).map_err(|e| io_error("cannot change the owner of", dir, e))?;
    }
    if !options.start {
        return Ok(RestoreReport {
            state: "not started".into(),
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
    Ok(report)
}

/// GNU tar extracting stdin into `dir`, reading 1 MiB records: with tar's default 10 KiB ones,
/// every write into its pipe would be cut to 10 KiB.
fn tar_extract(dir: &Path, same_permissions: bool) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("tar");
    cmd.args([
        "--extract",
        "--file=-",
        "--blocking-factor=2048",
        "--read-full-records",
        "--no-same-owner",
    ]);
    if same_permissions {
        cmd.arg("--same-permissions");
    }
    cmd.arg("--directory")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `postmaster.pid`: port, socket directory, listen address and status.
fn read_pid_file(dir: &Path) -> Option<(u16, String, String, String)> {
    let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some((
        lines.get(3)?.trim().parse().ok()?,
        lines.get(4).map_or("", |l| l.trim()).to_string(),
        lines.get(5).map_or("", |l| l.trim()).to_string(),
        lines.get(7).map_or("", |l| l.trim()).to_string(),
    ))
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n    ")
}

async fn start_and_wait(
    settings: &Settings,
    plan: &RestorePlan,
    options: &RestoreOptions,
    owner: Option<(u32, u32)>,
    major: u32,
    progress: &Arc<dyn Progress>,
) -> Result<RestoreReport, Error> {
    let dir = &plan.pgdata;
    let pg_ctl = located(settings, "pg_ctl", major)?;
    let psql = located(settings, "psql", major)?;
    let log = dir.join("pgkeep-restore.log");
    let mut cmd = tokio::process::Command::new(&pg_ctl);
    cmd.arg("--pgdata")
        .arg(dir)
        .arg("--log")
        .arg(&log)
        .args(["--no-wait", "start"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().await.map_err(|source| {
        Error::Process(process::ProcessError::Spawn {
            program: pg_ctl.clone(),
            source,
        })
    })?;
    if !out.status.success() {
        return Err(physical(
            format!(
                "pg_ctl start failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            format!("read {}", log.display()),
        ));
    }
    let started = Instant::now();
    let item = format!("recovering to {}", plan.target);
    progress.start(&item);
    let wants_promotion =
        plan.target == Target::Latest || options.target_action == TargetAction::Promote;
    let mut seen_pid = false;
    let mut port = options.port;
    let report = |state: &str, row: Option<&[&str]>, port: Option<u16>| RestoreReport {
        state: state.into(),
        reached_lsn: row
            .and_then(|r| r.get(2))
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string()),
        reached_time: row
            .and_then(|r| r.get(3))
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        seconds: 0.0,
        recovery_seconds: Some(started.elapsed().as_secs_f64()),
        log: Some(log.clone()),
        port,
        // Only a paused server keeps the locks of the transactions it stopped in.
        locked_tables: row
            .filter(|_| state == "paused")
            .and_then(|r| r.get(4))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        notes: Vec::new(),
    };
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some((pid_port, socket_dir, listen, status)) = read_pid_file(dir) else {
            if !seen_pid && started.elapsed() < Duration::from_secs(30) {
                continue;
            }
            progress.finish(&item);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if options.target_action == TargetAction::Shutdown
                && plan.target != Target::Latest
                && !text.contains("FATAL")
                && !text.contains("PANIC")
            {
                return Ok(report("shut down", None, port));
            }
            return Err(physical(
                format!(
                    "the restored server stopped during recovery; its log ends with:\n    {}",
                    log_tail(&log)
                ),
                format!(
                    "read {}: `recovery ended before configured recovery target was reached` means the target is past the archived WAL (choose an earlier one, `pgkeep list`); `could not restore file` means wal-fetch failed (run it by hand as the server's user)",
                    log.display()
                ),
            ));
        };
        seen_pid = true;
        port = Some(pid_port);
        if status != "ready" && status != "standby" {
            continue;
        }
        let host = if !socket_dir.is_empty() {
            socket_dir
        } else if listen.is_empty() || listen == "*" {
            "127.0.0.1".to_string()
        } else {
            listen
        };
        // psql as the server's user: the restored pg_hba.conf may allow only peer authentication.
        let mut query = tokio::process::Command::from(process::pg_std_command(
            &psql,
            &settings.conninfo,
            Some("postgres"),
        ));
        query
            .args(["-X", "-A", "-t", "-q", "-F", "|", "-h", &host, "-p", &pid_port.to_string()])
            .arg("-c")
            .arg(
                "SELECT pg_is_in_recovery(),
                        CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'not paused' END,
                        coalesce(pg_last_wal_replay_lsn()::text, ''),
                        coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), ''),
                        (SELECT count(DISTINCT (database, relation)) FROM pg_locks
                          WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock')",
            )
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some((uid, gid)) = owner {
            query.uid(uid).gid(gid);
        }
        let out = match query.output().await {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                tracing::debug!(
                    "querying the restored server: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                continue;
            }
            Err(e) => {
                return Err(Error::Process(process::ProcessError::Spawn {
                    program: psql.clone(),
                    source: e,
                }));
            }
        };
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let row: Vec<&str> = text.split('|').collect();
        let state = match (row.first().copied(), row.get(1).copied()) {
            (Some("f"), _) => "promoted",
            (Some("t"), Some("paused")) if !wants_promotion => "paused",
            _ => continue,
        };
        progress.finish(&item);
        return Ok(report(state, Some(&row), port));
    }
}

/// Checks a physical backup's base object: extracts it into a scratch directory (under TMPDIR)
/// and runs `pg_verifybackup` against PostgreSQL's own `backup_manifest`.
pub(crate) async fn verify_base(
    settings: &Settings,
    repo: &Repository,
    backup: &Manifest,
    object: &ManifestObject,
    progress: &Arc<dyn Progress>,
) -> Result<(), String> {
    let major = backup.server_version_num / 10_000;
    let program = located(settings, "pg_verifybackup", major).map_err(|e| e.to_string())?;
    let scratch = tempfile::Builder::new()
        .prefix("pgkeep-verify-")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory under TMPDIR: {e}"))?;
    let item = format!("verify {}", object.stored.key);
    let cmd = tar_extract(scratch.path(), false);
    let fed = feed_child(cmd, Path::new("tar"), repo, &object.stored, progress, &item)
        .await
        .map_err(|e| e.to_string())?;
    if !fed.status.success() {
        return Err(format!(
            "tar cannot extract it ({}): {}",
            fed.status,
            fed.stderr.trim()
        ));
    }
    let out = tokio::process::Command::new(&program)
        .arg("--no-parse-wal")
        .arg("--quiet")
        .arg(scratch.path())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "pg_verifybackup found problems: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_label_and_manifest_facts() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIMELINE: 1\n";
        assert_eq!(
            label_value(label, "START WAL LOCATION"),
            Some("0/2000028 (file 000000010000000000000002)")
        );
        assert_eq!(label_value(label, "START TIMELINE"), Some("1"));
        let manifest = r#"{ "PostgreSQL-Backup-Manifest-Version": 1,
"Files": [ { "Path": "x", "Size": 1 } ],
"WAL-Ranges": [
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }
],
"Manifest-Checksum": "abc123"}
"#;
        let (ranges, checksum) = manifest_facts(manifest).unwrap();
        assert_eq!(ranges, vec![(1, Lsn(0x200_0028), Lsn(0x200_0100))]);
        assert_eq!(checksum.as_deref(), Some("abc123"));
        // Only the tail survived.
        assert!(manifest_facts(&manifest[40..]).is_some());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(conf_quote("it's"), "'it''s'");
        assert!(overridden("recovery_target_time"));
        assert!(overridden("restore_command"));
        assert!(!overridden("shared_buffers"));
    }

    #[test]
    fn outside_config_is_adapted() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::create_dir(etc.path().join("conf.d")).unwrap();
        let original = etc.path().join("postgresql.conf");
        let text = "data_directory = '/var/lib/postgresql/15/main'\nhba_file = '/etc/x/pg_hba.conf'\n\
                    external_pid_file = '/run/x.pid'\nport = 5432\ninclude_dir = 'conf.d' # tuning\n\
                    include_if_exists = 'missing.conf'\nshared_buffers = 1GB\n";
        let adapted = adapt_config(text, &original.to_string_lossy());
        let active: Vec<&str> = adapted
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(
            active,
            [
                "port = 5432",
                &*format!("include_dir = '{}'", etc.path().join("conf.d").display()),
                "shared_buffers = 1GB"
            ],
            "{adapted}"
        );
    }

    #[test]
    fn timeline_choice() {
        assert_eq!("latest".parse(), Ok(TimelineChoice::Latest));
        assert_eq!("current".parse(), Ok(TimelineChoice::Current));
        assert_eq!("3".parse(), Ok(TimelineChoice::Id(3)));
        assert!("0".parse::<TimelineChoice>().is_err());
        assert!("x".parse::<TimelineChoice>().is_err());
    }
}
