//! Local mode of `backup physical`, for when pgkeep runs on the database host: the backup held
//! open with `pg_backup_start` / `pg_backup_stop` (non-exclusive, on one connection), the data
//! directory read directly ([`walk`]) by parallel workers that compress and checksum chunks of
//! files into bundles ([`copy`]), and the file list ([`list`]) stored beside them. `backup_label`
//! comes from `pg_backup_stop` and is kept in the manifest; a restore writes it.

mod copy;
pub(crate) mod list;
mod walk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::backup::{BaseTaken, base_object, label_start};
use crate::error::{Error, PhysicalError};
use crate::pg::{ConnInfo, Lsn, ServerInfo, UTC_TEXT, parse_utc_text, query_error};
use crate::repo::Repository;
use crate::repo::catalog::{self, BaseMode, ObjectFormat, ObjectRole};
use crate::settings::Settings;
use crate::storage::PutMode;
use crate::stream::{self, Progress};

/// Which way `backup physical` reads the data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackupMode {
    /// Local when this process can read the server's data directory (the same cluster: its
    /// `global/pg_control` names the server's system identifier) and the server is a primary;
    /// else stream.
    #[default]
    Auto,
    /// pgkeep reads the data directory itself; refused when it cannot.
    Local,
    /// pg_basebackup through the server's walsender.
    Stream,
}

/// The data directory local mode can read, or why it cannot.
async fn local_dir(
    settings: &Settings,
    client: &tokio_postgres::Client,
    conninfo: &ConnInfo,
    server: &ServerInfo,
) -> Result<PathBuf, String> {
    let dir = match &settings.pgdata {
        Some(dir) => dir.clone(),
        None => {
            let row = client
                .query_one("SELECT current_setting('data_directory')", &[])
                .await
                .map_err(|e| query_error(conninfo, "reading data_directory", e).to_string())?;
            PathBuf::from(row.get::<_, String>(0))
        }
    };
    let control = dir.join(walk::CONTROL_FILE);
    let bytes = std::fs::read(&control)
        .map_err(|e| format!("{} cannot be read here ({e})", control.display()))?;
    let local_id = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")).to_string());
    if local_id.as_deref() != Some(server.system_identifier.as_str()) {
        return Err(format!(
            "{} belongs to another cluster (system identifier {}, the server's is {}): the server is not on this host",
            dir.display(),
            local_id.unwrap_or_default(),
            server.system_identifier
        ));
    }
    Ok(dir)
}

/// The data directory to read in local mode, or `None` for stream mode.
pub(crate) async fn choose(
    settings: &Settings,
    client: &tokio_postgres::Client,
    server: &ServerInfo,
    mode: BackupMode,
    from_standby: bool,
) -> Result<Option<PathBuf>, Error> {
    match (mode, from_standby) {
        (BackupMode::Stream, _) | (BackupMode::Auto, true) => return Ok(None),
        (BackupMode::Local, true) => return Err(PhysicalError::LocalFromStandby.into()),
        _ => {}
    }
    match (
        local_dir(settings, client, &settings.conninfo, server).await,
        mode,
    ) {
        (Ok(dir), _) => Ok(Some(dir)),
        (Err(reason), BackupMode::Local) => Err(PhysicalError::LocalUnavailable { reason }.into()),
        (Err(reason), _) => {
            tracing::info!("backing up through pg_basebackup (stream mode): {reason}");
            Ok(None)
        }
    }
}

/// Ends the backup held open on `client`: the stop LSN, the `backup_label` text and the server's
/// clock at the end.
async fn stop_backup(
    client: &tokio_postgres::Client,
    conninfo: &ConnInfo,
) -> Result<(Lsn, String, chrono::DateTime<chrono::Utc>), Error> {
    let stop = format!(
        "SELECT lsn::text, labelfile, to_char(clock_timestamp() AT TIME ZONE 'UTC', {UTC_TEXT}) FROM pg_backup_stop(false)"
    );
    let row = client
        .query_one(&stop, &[])
        .await
        .map_err(|e| query_error(conninfo, "ending the backup (pg_backup_stop)", e))?;
    let missing = |missing| PhysicalError::BaseBackupOutput { missing };
    let stop_lsn = Lsn::parse(&row.get::<_, String>(0)).ok_or_else(|| missing("stop LSN"))?;
    let stop_time =
        parse_utc_text(&row.get::<_, String>(2)).ok_or_else(|| missing("server clock"))?;
    Ok((stop_lsn, row.get(1), stop_time))
}

/// Takes the base backup of `pgdata` in local mode into the backup's directory.
pub(crate) async fn take_local(
    settings: &Settings,
    repo: &Repository,
    client: &tokio_postgres::Client,
    pgdata: &Path,
    id: &str,
    progress: &Arc<dyn Progress>,
) -> Result<BaseTaken, Error> {
    let conninfo = &settings.conninfo;
    let prefix = catalog::backup_prefix(repo, id);
    let begun = Instant::now();
    client
        .execute(
            "SELECT pg_backup_start($1, true)",
            &[&format!("pgkeep {id}")],
        )
        .await
        .map_err(|e| query_error(conninfo, "starting the backup (pg_backup_start)", e))?;
    // From here the backup is open on this connection; any failure ends the connection (when the
    // caller drops it), which aborts the backup on the server.
    let root = pgdata.to_path_buf();
    let entries = tokio::task::spawn_blocking(move || walk::walk(&root))
        .await
        .expect("the walk does not panic")?;
    let item = "base backup (local)".to_string();
    progress.start(&item);
    let plan = copy::CopyPlan {
        root: pgdata.to_path_buf(),
        prefix: prefix.clone(),
        jobs: settings.backup_jobs,
        level: settings.compression.level,
        item: item.clone(),
    };
    let copied = copy::copy_files(repo, entries, plan, progress.clone()).await?;
    progress.finish(&item);
    let json = serde_json::to_vec(&copied.list).expect("the file list serializes");
    let list = stream::store_object(
        repo.storage(),
        &format!("{prefix}files.json.zst"),
        std::io::Cursor::new(json),
        PutMode::Create,
        settings.compression,
    )
    .await?;
    let (stop_lsn, label, stop_time) = stop_backup(client, conninfo).await?;
    let (start_lsn, timeline) = label_start(&label)?;
    let seconds = begun.elapsed().as_secs_f64();
    let mut objects = vec![base_object(
        ObjectRole::FileList,
        ObjectFormat::Json,
        list,
        seconds,
    )];
    objects.extend(
        copied
            .bundles
            .into_iter()
            .map(|b| base_object(ObjectRole::Files, ObjectFormat::Chunks, b, seconds)),
    );
    Ok(BaseTaken {
        objects,
        label,
        pg_manifest: None,
        // A primary's backup starts and ends on one timeline (pg_backup_stop fails otherwise).
        ranges: vec![(timeline, start_lsn, stop_lsn)],
        manifest_checksum: None,
        stop_time,
        mode: BaseMode::Local,
    })
}
