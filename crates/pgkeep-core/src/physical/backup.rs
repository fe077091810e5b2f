//! `backup physical`: pg_basebackup's tar stream (`-D - -Ft -X none`) stored as one object
//! through the pipeline, PostgreSQL's `backup_manifest` beside it, and the configuration files
//! kept outside the data directory. The backup carries no WAL of its own: recovery reads the WAL
//! archive, so the manifest is written only once the segment holding the backup's end has been
//! archived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::config_files::store_outside_config;
use super::local::{BackupMode, take_local};
use crate::error::{Error, PhysicalError};
use crate::exec::{self, BlockingStdout, Interrupt, ToolInfo};
use crate::pg::{self, ConnInfo, Lsn, ServerInfo, UTC_TEXT, query_error, segment_name};
use crate::repo::catalog::{
    self, BackupKind, BaseMode, Manifest, ManifestObject, ObjectFormat, ObjectRole, PhysicalInfo,
};
use crate::repo::lease::{LeaseGuard, LeasePurpose};
use crate::repo::{BackupWrites, Repository};
use crate::settings::Settings;
use crate::storage::PutMode;
use crate::stream::{self, Progress, ProgressReader, TarWatch};
use crate::wal;

/// Options of `backup physical`.
#[derive(Debug, Clone)]
pub struct PhysicalBackupOptions {
    /// The server is a standby (pg_basebackup works the same; the primary archives the WAL).
    pub from_standby: bool,
    /// How long to wait for the backup's last WAL segment to be archived.
    pub wal_timeout: Duration,
    /// Stops the backup from outside (SIGTERM): pg_basebackup is killed and what the backup
    /// wrote is removed, as for any failure.
    pub interrupt: Interrupt,
    /// Read the data directory directly (local), through pg_basebackup (stream), or whichever
    /// fits (auto, the default).
    pub mode: BackupMode,
}

/// Values of `backup_label`.
fn label_value<'a>(label: &'a str, key: &str) -> Option<&'a str> {
    label
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
}

/// Where a backup starts, from its `backup_label`: the start LSN and timeline.
pub(super) fn label_start(label: &str) -> Result<(Lsn, u32), PhysicalError> {
    let missing = |missing| PhysicalError::BaseBackupOutput { missing };
    let start_lsn = label_value(label, "START WAL LOCATION")
        .and_then(|v| v.split_whitespace().next())
        .and_then(Lsn::parse)
        .ok_or_else(|| missing("START WAL LOCATION in backup_label"))?;
    let timeline: u32 = label_value(label, "START TIMELINE")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| missing("START TIMELINE in backup_label"))?;
    Ok((start_lsn, timeline))
}

/// One `WAL-Ranges` entry of a `backup_manifest`: timeline, start, end.
pub(super) type WalRange = (u32, Lsn, Lsn);

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

/// The server's settings a base backup depends on, refused with the fix when wrong. Returns the
/// WAL segment size.
async fn check_server(
    client: &tokio_postgres::Client,
    conninfo: &ConnInfo,
    server: &ServerInfo,
    options: &PhysicalBackupOptions,
    local: bool,
) -> Result<u64, Error> {
    match (server.in_recovery, options.from_standby) {
        (true, false) => {
            return Err(PhysicalError::IsStandby {
                server: conninfo.server(),
            }
            .into());
        }
        (false, true) => {
            return Err(PhysicalError::NotStandby {
                server: conninfo.server(),
            }
            .into());
        }
        _ => {}
    }
    if server.wal_level == "minimal" {
        return Err(PhysicalError::WalLevelMinimal.into());
    }
    if server.archive_mode == "off" && !options.from_standby {
        return Err(PhysicalError::ArchiveModeOff.into());
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
    // Local mode copies tablespaces; pg_basebackup writes only one of them to a stream.
    if !tablespaces.is_empty() && !local {
        return Err(PhysicalError::Tablespaces { tablespaces }.into());
    }
    let segment_size: i64 = client
        .query_one(
            "SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'",
            &[],
        )
        .await
        .map_err(|e| query_error(conninfo, "reading wal_segment_size", e))?
        .get(0);
    Ok(segment_size.unsigned_abs())
}

/// What taking the base backup stored and learnt, in either mode.
pub(crate) struct BaseTaken {
    /// The base's objects: pg_basebackup's tar, or the file list and the bundles.
    pub(super) objects: Vec<ManifestObject>,
    pub(super) label: String,
    /// PostgreSQL's `backup_manifest` (stream mode), unless it was too large to keep whole.
    pub(super) pg_manifest: Option<Vec<u8>>,
    pub(super) ranges: Vec<WalRange>,
    pub(super) manifest_checksum: Option<String>,
    pub(super) stop_time: chrono::DateTime<Utc>,
    pub(super) mode: BaseMode,
}

/// Runs pg_basebackup into `<prefix>base.tar.zst`, watching its tar stream for `backup_label` and
/// `backup_manifest`.
async fn take_base(
    settings: &Settings,
    repo: &Repository,
    client: &tokio_postgres::Client,
    tool: &ToolInfo,
    id: &str,
    progress: &Arc<dyn Progress>,
) -> Result<BaseTaken, Error> {
    let conninfo = &settings.conninfo;
    let program = tool.program();
    let mut cmd = exec::pg_std_command(&program, conninfo, None);
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
    // Read on the compression thread: this kills pg_basebackup when the run fails or is dropped,
    // even while that thread waits for its next bytes.
    let _stop = stdout.stopper();
    let watch = TarWatch::new(
        ProgressReader::new(stdout, progress.clone(), &item),
        &["backup_label", "backup_manifest"],
    );
    let watched = watch.handle();
    let stored = stream::store_blocking(
        repo.storage(),
        &format!("{}base.tar.zst", catalog::backup_prefix(repo, id)),
        watch,
        PutMode::Create,
        settings.compression,
    )
    .await?;
    let seconds = begun.elapsed().as_secs_f64();
    progress.finish(&item);
    // The server sends backup_manifest right after pg_backup_stop: the server's clock now, less the
    // time since the manifest went by, is when the backup ended (a little after, never before).
    let clock = format!("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', {UTC_TEXT})");
    let now = pg::query_time(client, conninfo, "reading the server's clock", &clock)
        .await?
        .ok_or_else(|| Error::Internal {
            problem: "the server's clock cannot be read as RFC 3339 text".into(),
        })?;
    let stop_time = now
        - watched
            .get("backup_manifest")
            .and_then(|c| c.seen_at)
            .map_or(chrono::Duration::zero(), |seen| {
                chrono::Duration::from_std(seen.elapsed()).unwrap_or_default()
            });
    let missing = |missing| PhysicalError::BaseBackupOutput { missing };
    let label = watched
        .get("backup_label")
        .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
        .ok_or_else(|| missing("backup_label"))?;
    let pg_manifest = watched
        .get("backup_manifest")
        .ok_or_else(|| missing("backup_manifest"))?;
    let (ranges, manifest_checksum) = manifest_facts(&String::from_utf8_lossy(&pg_manifest.bytes))
        .ok_or_else(|| missing("WAL-Ranges in backup_manifest"))?;
    Ok(BaseTaken {
        objects: vec![base_object(
            ObjectRole::Base,
            ObjectFormat::Tar,
            stored,
            seconds,
        )],
        label,
        pg_manifest: (!pg_manifest.truncated).then_some(pg_manifest.bytes),
        ranges,
        manifest_checksum,
        stop_time,
        mode: BaseMode::Stream,
    })
}

/// A manifest entry of a base backup's object (the tar, or the file list and bundles).
pub(super) fn base_object(
    role: ObjectRole,
    format: ObjectFormat,
    stored: stream::StoredObject,
    seconds: f64,
) -> ManifestObject {
    ManifestObject {
        role,
        database: None,
        format,
        database_info: None,
        seconds,
        path: None,
        stored,
    }
}

/// The WAL facts of the backup, from its `backup_label` and `backup_manifest`.
fn physical_info(
    base: &BaseTaken,
    segment_size: u64,
    from_standby: bool,
) -> Result<PhysicalInfo, PhysicalError> {
    let missing = |missing| PhysicalError::BaseBackupOutput { missing };
    let (start_lsn, timeline) = label_start(&base.label)?;
    let &(stop_timeline, _, stop_lsn) = base
        .ranges
        .last()
        .ok_or_else(|| missing("WAL range in backup_manifest"))?;
    Ok(PhysicalInfo {
        start_lsn,
        stop_lsn,
        start_segment: segment_name(timeline, start_lsn.segno(segment_size), segment_size),
        stop_segment: segment_name(
            stop_timeline,
            Lsn(stop_lsn.0.saturating_sub(1)).segno(segment_size),
            segment_size,
        ),
        timeline,
        stop_timeline,
        stop_time: base.stop_time,
        wal_segment_size: segment_size,
        from_standby,
        mode: base.mode,
        backup_label: base.label.clone(),
        backup_manifest_checksum: base.manifest_checksum.clone(),
    })
}

/// What a backup learns before it takes anything: the server, the mode (the data directory to
/// read in local mode), the WAL segment size and (stream mode) pg_basebackup.
struct Prepared {
    client: tokio_postgres::Client,
    server: ServerInfo,
    local: Option<std::path::PathBuf>,
    segment_size: u64,
    tool: Option<ToolInfo>,
}

/// Connects, chooses the mode and checks the server and the repository's identity.
async fn prepare(
    settings: &Settings,
    repo: &Repository,
    options: &PhysicalBackupOptions,
) -> Result<Prepared, Error> {
    let conninfo = &settings.conninfo;
    let client = pg::connect(conninfo, None).await?;
    let server = pg::server_info(&client, conninfo).await?;
    let local = super::local::choose(
        settings,
        &client,
        &server,
        options.mode,
        options.from_standby,
    )
    .await?;
    let segment_size = check_server(&client, conninfo, &server, options, local.is_some()).await?;
    wal::ensure_identity(repo, &server.system_identifier, server.major).await?;
    // pg_basebackup is only needed (and recorded in the manifest) in stream mode.
    let tool = match local {
        Some(_) => None,
        None => Some(
            exec::fitting_tool(settings.bin_dir.as_deref(), "pg_basebackup", server.major).await?,
        ),
    };
    Ok(Prepared {
        client,
        server,
        local,
        segment_size,
        tool,
    })
}

/// Takes a physical backup and returns its manifest (written last, once its WAL is archived). On
/// any failure or interrupt nothing is listed: pg_basebackup is killed and the objects already
/// stored are removed ([`Error::BackupUndone`] says what). While it runs it holds a lease in the
/// repository, so that `expire` leaves its directory (and the WAL it needs) alone.
pub async fn backup_physical(
    settings: &Settings,
    repo: &Repository,
    options: &PhysicalBackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<Manifest, Error> {
    // One backup of the cluster at a time; expire waits for it (held until the manifest is in).
    let _lock = crate::lock::lock_work(settings, "backup physical", &options.interrupt).await?;
    let Prepared {
        client,
        server,
        local,
        segment_size,
        tool,
    } = prepare(settings, repo, options).await?;

    // Before the id is reserved: whatever `expire` sees of this backup, it sees the lease too.
    let lease = LeaseGuard::take(
        repo,
        settings.retention.lease_ttl,
        LeasePurpose::BackupPhysical,
        None,
    )
    .await?;
    let result = async {
        let started_at = Utc::now();
        let id = catalog::new_backup_id(repo).await?;
        let writes = BackupWrites::new(repo, &catalog::backup_prefix(repo, &id));
        if let Err(e) = lease.set_backup(&id).await {
            return Err(writes.undo(e).await);
        }
        let taken = async {
            let base = match &local {
                Some(pgdata) => {
                    take_local(settings, writes.repo(), &client, pgdata, &id, &progress).await?
                }
                None => {
                    let tool = tool.as_ref().expect("stream mode found pg_basebackup");
                    take_base(settings, writes.repo(), &client, tool, &id, &progress).await?
                }
            };
            let info = physical_info(&base, segment_size, options.from_standby)?;
            wait_archived(writes.repo(), &info.stop_segment, options, &progress).await?;
            let objects = store_after_base(settings, writes.repo(), &client, &id, base).await?;
            Ok((info, objects))
        };
        let (info, objects) = match options
            .interrupt
            .run(taken, |reason| Error::Interrupted { reason })
            .await
        {
            Ok(taken) => taken,
            Err(e) => return Err(writes.undo(e).await),
        };
        let manifest = Manifest {
            physical: Some(info),
            objects,
            ..Manifest::finished(
                repo,
                &server,
                BackupKind::Physical,
                id,
                started_at,
                &tool.iter().collect::<Vec<_>>(),
            )
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

/// The base's entry and what a physical backup stores after it: PostgreSQL's `backup_manifest`
/// and the configuration files kept outside the data directory.
async fn store_after_base(
    settings: &Settings,
    repo: &Repository,
    client: &tokio_postgres::Client,
    id: &str,
    base: BaseTaken,
) -> Result<Vec<ManifestObject>, Error> {
    let prefix = catalog::backup_prefix(repo, id);
    let mut objects = base.objects;
    if let Some(bytes) = base.pg_manifest {
        let stored = stream::store_object(
            repo.storage(),
            &format!("{prefix}backup_manifest.zst"),
            std::io::Cursor::new(bytes),
            PutMode::Create,
            settings.compression,
        )
        .await?;
        objects.push(ManifestObject {
            role: ObjectRole::BackupManifest,
            database: None,
            format: ObjectFormat::Json,
            database_info: None,
            seconds: 0.0,
            path: None,
            stored,
        });
    }
    objects.extend(store_outside_config(settings, repo, client, &prefix).await?);
    Ok(objects)
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
            return Err(PhysicalError::WalNotArchived {
                segment: segment.to_string(),
                seconds: options.wal_timeout.as_secs(),
                from_standby: options.from_standby,
            }
            .into());
        }
        if !announced {
            progress.start(&item);
            tracing::info!("{item}");
            announced = true;
        }
        // The archiver usually takes the segment within milliseconds of the switch: look often
        // at first, then every 250 ms.
        let waited = begun.elapsed();
        tokio::time::sleep(Duration::from_millis(if waited < Duration::from_secs(1) {
            20
        } else {
            250
        }))
        .await;
    }
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
}
