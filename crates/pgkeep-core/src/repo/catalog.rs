//! Backups and their manifests.
//!
//! A backup is `<cluster>/backups/<id>/`: its payload objects, then `manifest.json`, written last
//! and create-if-absent. The ordering rule: **a backup exists if and only if its manifest exists**.
//! A run that dies before the manifest leaves payload objects that no command lists or restores
//! (`expire` removes them), and the next run takes a new id.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::exec::ToolInfo;
use crate::pg::{DEFAULT_SEGMENT_SIZE, Lsn, ServerInfo};
use crate::repo::{ClusterIdentity, Repository};
use crate::storage::PutMode;
use crate::stream::StoredObject;

/// The manifest's file name inside a backup's directory.
pub(crate) const MANIFEST: &str = "manifest.json";
/// The key (inside a backup's directory) of the record that pins the backup against expiry.
pub(crate) const PIN: &str = "pinned.json";
/// The directory (inside a backup's directory) of the records of its restore drills, one small
/// object each.
pub(crate) const DRILLS: &str = "drills/";

/// The key (inside a backup's directory) of the marker `expire` writes before it deletes the
/// backup: a restore that sees it refuses the backup (see repo/lease.rs for the ordering).
pub(crate) const EXPIRING: &str = "expiring.json";

/// Whether `name` (a key relative to a backup's directory) is a note about the backup written
/// after it — its pin, a drill record, expire's marker — rather than a payload object its
/// manifest lists.
pub(crate) fn is_note(name: &str) -> bool {
    name == PIN || name == EXPIRING || name.starts_with(DRILLS)
}

/// The manifest format written by this version.
pub(crate) const MANIFEST_FORMAT: u32 = 1;

/// What kind of backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// pg_dump / pg_dumpall.
    Logical,
    /// pg_basebackup.
    Physical,
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupKind::Logical => "logical",
            BackupKind::Physical => "physical",
        })
    }
}

/// What a payload object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectRole {
    /// `pg_dumpall --globals-only`: roles and tablespaces, as SQL.
    Globals,
    /// One database, as a pg_dump custom-format archive.
    Database,
    /// The data directory, as pg_basebackup's tar stream.
    Base,
    /// PostgreSQL's `backup_manifest` of a physical backup (also inside the base tar).
    BackupManifest,
    /// A configuration file kept outside the data directory (Debian's /etc/postgresql/...), which
    /// pg_basebackup does not copy: `postgresql.conf`, `pg_hba.conf` or `pg_ident.conf`.
    Config,
    /// A local-mode physical backup's list of the data directory's entries and where each
    /// file's chunks are stored.
    FileList,
    /// A bundle of a local-mode physical backup: chunks of the data directory's files, each its
    /// own zstd frame, one after the other.
    Files,
}

/// A configuration file kept from outside the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFile {
    /// `postgresql.conf` (the `config_file` setting).
    PostgresqlConf,
    /// `pg_hba.conf` (`hba_file`).
    PgHbaConf,
    /// `pg_ident.conf` (`ident_file`).
    PgIdentConf,
}

impl ConfigFile {
    /// Every one, in the order a restore writes them.
    pub const ALL: [ConfigFile; 3] = [
        ConfigFile::PostgresqlConf,
        ConfigFile::PgHbaConf,
        ConfigFile::PgIdentConf,
    ];

    /// Its name in a data directory.
    pub fn file_name(self) -> &'static str {
        match self {
            ConfigFile::PostgresqlConf => "postgresql.conf",
            ConfigFile::PgHbaConf => "pg_hba.conf",
            ConfigFile::PgIdentConf => "pg_ident.conf",
        }
    }

    /// The server setting that says where it is.
    pub fn setting(self) -> &'static str {
        match self {
            ConfigFile::PostgresqlConf => "config_file",
            ConfigFile::PgHbaConf => "hba_file",
            ConfigFile::PgIdentConf => "ident_file",
        }
    }
}

/// How a payload object's original stream is laid out. Stored in manifests as `custom`, `sql`,
/// `tar`, `json`, or a configuration file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    /// A pg_dump custom-format archive.
    Custom,
    /// SQL text (`pg_dumpall --globals-only`).
    Sql,
    /// A tar stream (pg_basebackup's).
    Tar,
    /// JSON (PostgreSQL's `backup_manifest`).
    Json,
    /// A configuration file, as it was on the server.
    Config(ConfigFile),
    /// Chunks of files one after the other (a local-mode bundle), located by the file list.
    Chunks,
}

impl ObjectFormat {
    fn name(self) -> &'static str {
        match self {
            ObjectFormat::Custom => "custom",
            ObjectFormat::Sql => "sql",
            ObjectFormat::Tar => "tar",
            ObjectFormat::Json => "json",
            ObjectFormat::Chunks => "chunks",
            ObjectFormat::Config(file) => file.file_name(),
        }
    }
}

impl Serialize for ObjectFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ObjectFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ObjectFormat, D::Error> {
        let text = String::deserialize(d)?;
        [
            ObjectFormat::Custom,
            ObjectFormat::Sql,
            ObjectFormat::Tar,
            ObjectFormat::Json,
            ObjectFormat::Chunks,
        ]
        .into_iter()
        .chain(ConfigFile::ALL.map(ObjectFormat::Config))
        .find(|f| f.name() == text)
        .ok_or_else(|| serde::de::Error::custom(format!("unknown object format `{text}`")))
    }
}

/// A database's properties at backup time, to recreate it under another name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Owner role.
    pub owner: String,
    /// Encoding, e.g. `UTF8`.
    pub encoding: String,
    /// `datcollate`.
    pub collate: String,
    /// `datctype`.
    pub ctype: String,
    /// Its size on disk when the backup was taken (`pg_database_size`): the room a restore of it
    /// needs, indexes included. Absent in manifests written before pgkeep recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// One payload object of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// What it holds.
    pub role: ObjectRole,
    /// The database, for [`ObjectRole::Database`].
    pub database: Option<String>,
    /// How its original stream is laid out.
    pub format: ObjectFormat,
    /// The database's properties, for [`ObjectRole::Database`].
    pub database_info: Option<DatabaseInfo>,
    /// Seconds the dump took.
    pub seconds: f64,
    /// For [`ObjectRole::Config`], the file's path on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where and how it is stored, with sizes and checksums.
    #[serde(flatten)]
    pub stored: StoredObject,
}

/// Options a logical backup was taken with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogicalOptions {
    /// `--schema-only`.
    pub schema_only: bool,
    /// `--exclude-table` patterns.
    pub exclude_tables: Vec<String>,
}

/// How a physical backup read the data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseMode {
    /// pg_basebackup's tar stream through the server's walsender (a remote host or a standby).
    #[default]
    Stream,
    /// pgkeep read the files itself, on the database host, between `pg_backup_start` and
    /// `pg_backup_stop`, with parallel workers.
    Local,
}

impl std::fmt::Display for BaseMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BaseMode::Stream => "stream",
            BaseMode::Local => "local",
        })
    }
}

/// The WAL facts of a physical backup: what recovery from it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhysicalInfo {
    /// Where replay starts (the backup's checkpoint redo location).
    pub start_lsn: Lsn,
    /// Where the backup ends: replay must get at least this far to be consistent.
    pub stop_lsn: Lsn,
    /// The segment holding `start_lsn`.
    pub start_segment: String,
    /// The last segment the backup needs.
    pub stop_segment: String,
    /// The timeline the backup started on.
    pub timeline: u32,
    /// The timeline it ended on.
    pub stop_timeline: u32,
    /// The server's clock when the backup ended: the earliest time it can restore to.
    pub stop_time: DateTime<Utc>,
    /// WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// Taken from a standby.
    pub from_standby: bool,
    /// How the data directory was read (absent in manifests written before local mode: stream).
    #[serde(default)]
    pub mode: BaseMode,
    /// The `backup_label` PostgreSQL wrote.
    pub backup_label: String,
    /// The `Manifest-Checksum` of PostgreSQL's `backup_manifest`.
    pub backup_manifest_checksum: Option<String>,
}

/// A backup's manifest: everything needed to verify and restore it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format version (1).
    pub format: u32,
    /// The backup id (a UTC timestamp, `20261125T150430Z`).
    pub id: String,
    /// Logical or physical.
    pub kind: BackupKind,
    /// The cluster name in the repository.
    pub cluster: String,
    /// The server's system identifier.
    pub system_identifier: String,
    /// `server_version`.
    pub server_version: String,
    /// `server_version_num`.
    pub server_version_num: u32,
    /// When the backup started.
    pub started_at: DateTime<Utc>,
    /// When the last payload object was stored.
    pub finished_at: DateTime<Utc>,
    /// Program versions: `pgkeep`, `pg_dump`, ...
    pub tools: BTreeMap<String, String>,
    /// Options of a logical backup.
    pub logical: Option<LogicalOptions>,
    /// Where a physical backup starts and ends in the WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalInfo>,
    /// The payload objects.
    pub objects: Vec<ManifestObject>,
}

impl Manifest {
    /// The manifest of backup `id` of `server`, started at `started_at` and finished now, taken
    /// with `tools` (their `--version` lines; pgkeep's own is added). It lists no object yet.
    pub(crate) fn finished(
        repo: &Repository,
        server: &ServerInfo,
        kind: BackupKind,
        id: String,
        started_at: DateTime<Utc>,
        tools: &[&ToolInfo],
    ) -> Manifest {
        let mut versions: BTreeMap<String, String> = tools
            .iter()
            .map(|t| (t.name.clone(), t.version.clone().unwrap_or_default()))
            .collect();
        versions.insert("pgkeep".to_string(), env!("CARGO_PKG_VERSION").to_string());
        Manifest {
            format: MANIFEST_FORMAT,
            id,
            kind,
            cluster: repo.cluster().to_string(),
            system_identifier: server.system_identifier.clone(),
            server_version: server.version.clone(),
            server_version_num: server.version_num,
            started_at,
            finished_at: Utc::now(),
            tools: versions,
            logical: None,
            physical: None,
            objects: Vec::new(),
        }
    }

    /// The databases in the backup, in order.
    pub fn databases(&self) -> Vec<&str> {
        self.objects
            .iter()
            .filter_map(|o| o.database.as_deref())
            .collect()
    }

    /// The object holding `database`.
    pub fn database(&self, database: &str) -> Option<&ManifestObject> {
        self.objects
            .iter()
            .find(|o| o.role == ObjectRole::Database && o.database.as_deref() == Some(database))
    }

    /// The globals object, if the backup has one.
    pub fn globals(&self) -> Option<&ManifestObject> {
        self.objects.iter().find(|o| o.role == ObjectRole::Globals)
    }

    /// Sum of the original sizes.
    pub fn size(&self) -> u64 {
        self.objects.iter().map(|o| o.stored.size).sum()
    }

    /// The bytes a restore of the backup writes: a physical backup's original size; for a logical
    /// one its databases' sizes on disk when it was taken (indexes included) — or, for a database
    /// whose size the manifest does not record, four times its dump — and the globals.
    pub fn restored_size(&self) -> u64 {
        if self.kind == BackupKind::Physical {
            return self.size();
        }
        self.objects
            .iter()
            .map(|o| match o.database_info.as_ref().and_then(|i| i.size) {
                Some(size) => size.max(o.stored.size),
                None if o.role == ObjectRole::Database => o.stored.size.saturating_mul(4),
                None => o.stored.size,
            })
            .sum()
    }

    /// Sum of the stored sizes.
    pub fn stored_size(&self) -> u64 {
        self.objects.iter().map(|o| o.stored.stored_size).sum()
    }

    /// The base tar of a physical backup.
    pub fn base(&self) -> Option<&ManifestObject> {
        self.objects.iter().find(|o| o.role == ObjectRole::Base)
    }

    /// The size of the data directory a physical backup holds: its base tar's, or the sum of its
    /// bundles' (local mode); `None` when it holds neither.
    pub fn base_size(&self) -> Option<u64> {
        if let Some(base) = self.base() {
            return Some(base.stored.size);
        }
        self.objects
            .iter()
            .any(|o| o.role == ObjectRole::FileList)
            .then(|| {
                self.objects
                    .iter()
                    .filter(|o| o.role == ObjectRole::Files)
                    .map(|o| o.stored.size)
                    .sum()
            })
    }

    /// Seconds from start to finish.
    pub fn seconds(&self) -> f64 {
        (self.finished_at - self.started_at).num_milliseconds() as f64 / 1000.0
    }

    /// The configuration file `file` kept from outside the data directory, if the backup has it.
    pub fn config_file(&self, file: ConfigFile) -> Option<&ManifestObject> {
        self.objects
            .iter()
            .find(|o| o.role == ObjectRole::Config && o.format == ObjectFormat::Config(file))
    }
}

/// The WAL segment size recorded by the newest physical backup, else the default.
pub(crate) fn wal_segment_size(backups: &[Manifest]) -> u64 {
    backups
        .iter()
        .rev()
        .find_map(|b| b.physical.as_ref().map(|p| p.wal_segment_size))
        .unwrap_or(DEFAULT_SEGMENT_SIZE)
}

/// The directory (key prefix) of backup `id`.
pub(crate) fn backup_prefix(repo: &Repository, id: &str) -> String {
    repo.key(&format!("backups/{id}/"))
}

/// The name prefix of the objects that reserve a backup id until its manifest is written
/// (`started-<random>.json`).
const RESERVATION: &str = "started-";

/// A new backup id, reserved: the current UTC second, moved on while anything (another run started
/// in the same second, even a killed run's leftovers) already uses it. Each run writes a
/// reservation of its own and then lists the directory: a run that sees anything but its own
/// reservation withdraws and tries the next second. Whichever run lists last sees the other's
/// reservation, so two runs never both keep an id — also on S3 stores that ignore conditional
/// writes.
pub(crate) async fn new_backup_id(repo: &Repository) -> Result<String, Error> {
    loop {
        let id = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let prefix = backup_prefix(repo, &id);
        if repo.storage().list(&prefix).await?.is_empty() {
            let key = format!("{prefix}{RESERVATION}{:016x}.json", rand::random::<u64>());
            let record = serde_json::json!({
                "id": id,
                "pid": std::process::id(),
                "started_at": Utc::now(),
                "pgkeep": env!("CARGO_PKG_VERSION"),
            });
            repo.storage()
                .put_bytes(&key, record.to_string().as_bytes(), PutMode::Create)
                .await?;
            let listed = repo.storage().list(&prefix).await?;
            if listed.iter().all(|o| o.key == key) {
                return Ok(id);
            }
            repo.storage().delete(&key).await?;
        }
        tokio::time::sleep(std::time::Duration::from_millis(
            100 + rand::random::<u64>() % 300,
        ))
        .await;
    }
}

/// Writes the manifest, create-if-absent. This is what makes the backup exist. The id's
/// reservation is removed afterwards (if that fails, it stays behind as a tiny leftover).
pub(crate) async fn write_manifest(repo: &Repository, manifest: &Manifest) -> Result<(), Error> {
    let prefix = backup_prefix(repo, &manifest.id);
    let key = format!("{prefix}{MANIFEST}");
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::encode(&key, e))?;
    repo.storage()
        .put_bytes(&key, &json, PutMode::Create)
        .await?;
    if let Err(e) = release_id(repo, &prefix).await {
        tracing::warn!("backup {}: {e}", manifest.id);
    }
    Ok(())
}

/// Removes the reservations of the backup id whose directory is `prefix` (after its manifest is
/// written, or when a failed backup is undone).
pub(crate) async fn release_id(repo: &Repository, prefix: &str) -> Result<(), Error> {
    for object in repo
        .storage()
        .list(&format!("{prefix}{RESERVATION}"))
        .await?
    {
        repo.storage().delete(&object.key).await?;
    }
    Ok(())
}

/// Backup `id`'s manifest, read and parsed: one that does not parse, describes another backup,
/// cannot describe a backup pgkeep wrote, or is a backup of another cluster than `owner` (the
/// identity record, when there is one) is [`Error::UnusableBackup`]; a missing one is the
/// storage's not-found error.
pub(crate) async fn read_backup(
    repo: &Repository,
    id: &str,
    owner: Option<&ClusterIdentity>,
) -> Result<Manifest, Error> {
    let key = format!("{}{MANIFEST}", backup_prefix(repo, id));
    let bytes = repo.storage().get_bytes(&key).await?;
    let unusable = |problem: String| Error::UnusableBackup {
        id: id.to_string(),
        key: key.clone(),
        problem,
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| unusable(format!("its manifest is not a valid pgkeep manifest: {e}")))?;
    if manifest.id != id || manifest.cluster != repo.cluster() {
        return Err(unusable(format!(
            "its manifest describes backup {} of cluster {}: it was copied or moved here",
            manifest.id, manifest.cluster
        )));
    }
    if let Some(problem) = shape_problem(&manifest, &backup_prefix(repo, id)) {
        return Err(unusable(format!("its manifest {problem}")));
    }
    if let Some(owner) = owner.filter(|o| o.system_identifier != manifest.system_identifier) {
        return Err(unusable(format!(
            "it is a backup of another PostgreSQL cluster (system identifier {}), not of the one {} names ({})",
            manifest.system_identifier,
            repo.identity_key(),
            owner.system_identifier
        )));
    }
    Ok(manifest)
}

/// What is wrong with a manifest that parses but cannot describe a backup pgkeep wrote: no
/// objects, a physical backup without its WAL facts or base, or an object stored outside the
/// backup's own directory.
fn shape_problem(manifest: &Manifest, prefix: &str) -> Option<String> {
    if manifest.objects.is_empty() {
        return Some("lists no object".into());
    }
    match manifest.kind {
        BackupKind::Physical if manifest.physical.is_none() || manifest.base_size().is_none() => {
            return Some("says physical but has no WAL facts or no data directory object".into());
        }
        BackupKind::Logical if manifest.physical.is_some() => {
            return Some("says logical but has the WAL facts of a physical backup".into());
        }
        _ => {}
    }
    manifest
        .objects
        .iter()
        .find(|o| {
            !o.stored.key.starts_with(prefix)
                || crate::storage::validate_key(&o.stored.key).is_err()
        })
        .map(|o| {
            format!(
                "names object {} outside the backup's directory",
                o.stored.key
            )
        })
}

/// Backup `id`, or [`Error::NoSuchBackup`], or [`Error::UnusableBackup`] (also for a backup of
/// another cluster than the identity record names).
pub async fn find_backup(repo: &Repository, id: &str) -> Result<Manifest, Error> {
    let owner = repo.identity().await.ok().flatten();
    match read_backup(repo, id, owner.as_ref()).await {
        Err(Error::Storage(e)) if e.is_not_found() => {
            // A repository that is not there says so, rather than "no such backup".
            repo.storage().list(&backup_prefix(repo, id)).await?;
            Err(Error::NoSuchBackup {
                id: id.to_string(),
                repo: repo.storage().url(),
                cluster: repo.cluster().to_string(),
            })
        }
        other => other,
    }
}
