//! The configuration file exactly as the operator wrote it: [`Config`] mirrors the TOML one to one
//! and rejects unknown keys (`deny_unknown_fields`); [`Config::parse`] names the file, the dotted
//! key and the fix in every error. Values are checked later, by [`Settings::resolve`](super::Settings::resolve).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, DrillConfig};
use crate::pg::conninfo_has_password;

/// Where the configuration file is looked for when `--config` is not given, in order.
pub const DEFAULT_CONFIG_PATHS: &[&str] = &["./pgkeep.toml", "/etc/pgkeep/pgkeep.toml"];

/// The configuration file, exactly as written. Every key is documented in `config/pgkeep.example.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// IANA zone for `--at` times without an offset, retention's calendar, jobs' schedules and
    /// the times reports show (default: the machine's own zone).
    pub timezone: Option<String>,
    /// Where the scheduler keeps its history and alert state (default `/var/lib/pgkeep`).
    pub state_dir: Option<PathBuf>,
    /// Where backups and expire take their locks (default `/run/lock`, cleared at boot).
    pub lock_dir: Option<PathBuf>,
    /// Where backups and WAL are stored.
    pub repository: RepositoryConfig,
    /// How to reach the PostgreSQL cluster being backed up.
    pub postgres: PostgresConfig,
    /// Compression of everything written to the repository.
    pub compression: CompressionConfig,
    /// Physical backups and restores.
    pub backup: BackupConfig,
    /// WAL archiving.
    pub wal: WalConfig,
    /// The two-server failover scheme (read by `pgkeep-failover`).
    pub failover: FailoverConfig,
    /// File replication from the master to its peers (read by `pgkeep-failover`).
    pub sync: SyncConfig,
    /// Which backups `expire` keeps.
    pub retention: super::RetentionConfig,
    /// Restore drills (`pgkeep drill`).
    pub drill: DrillConfig,
    /// The scheduled jobs (read by `pgkeep-scheduler`).
    pub job: Vec<super::JobConfig>,
    /// How the scheduler runs them (read by `pgkeep-scheduler`).
    pub schedule: super::ScheduleConfig,
    /// Where alerts go (read by `pgkeep-scheduler`).
    pub notify: super::NotifyConfig,
}

/// `[repository]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RepositoryConfig {
    /// `file:///path` or `s3://bucket/prefix`.
    pub url: Option<String>,
    /// The cluster's name inside the repository (default `main`).
    pub cluster: Option<String>,
    /// S3 settings, used when `url` is an `s3://` URL.
    pub s3: S3Config,
}

/// `[repository.s3]`. Anything left out falls back to the standard AWS variables and files.
#[derive(Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct S3Config {
    /// AWS region (else `AWS_REGION` / `AWS_DEFAULT_REGION` / the profile).
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store, e.g. `http://127.0.0.1:3900` (else `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Named profile from `~/.aws/config` and `~/.aws/credentials` (else `AWS_PROFILE`).
    pub profile: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    /// Defaults to true when an endpoint is set, false for AWS itself.
    pub force_path_style: Option<bool>,
    /// Access key id. Prefer `AWS_ACCESS_KEY_ID` or a profile; if set here the file must not be
    /// readable by group or others.
    pub access_key_id: Option<String>,
    /// Secret access key; see `access-key-id`.
    pub secret_access_key: Option<String>,
    /// Size of one multipart upload part in MiB (5 to 5120, default 16).
    pub part_size_mib: Option<u64>,
    /// How many parts are uploaded at once (1 to 64, default 4). Memory is about
    /// `part-size-mib * (max-parts-in-flight + 1)`.
    pub max_parts_in_flight: Option<usize>,
    /// Attempts per request, including the first, for transient errors (1 to 20, default 5).
    pub max_attempts: Option<u32>,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("profile", &self.profile)
            .field("force_path_style", &self.force_path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("part_size_mib", &self.part_size_mib)
            .field("max_parts_in_flight", &self.max_parts_in_flight)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// `[postgres]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq connection string, `key=value` or `postgresql://` URL. Leave the password out: it is
    /// read from `PGPASSWORD` or the password file, as libpq does.
    pub conninfo: Option<String>,
    /// The cluster's data directory, when pgkeep runs on the database server.
    pub pgdata: Option<PathBuf>,
    /// Directory holding pg_dump, pg_basebackup and pg_restore (default: the server's major version
    /// under `/usr/lib/postgresql/<major>/bin`, else `PATH`).
    pub bin_dir: Option<PathBuf>,
}

/// `[compression]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct CompressionConfig {
    /// zstd level, 1 to 19 (default 3).
    pub level: Option<i32>,
    /// zstd worker threads; 0 means one per CPU (default 0).
    pub threads: Option<u32>,
}

/// `[backup]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct BackupConfig {
    /// Parallel workers of a local-mode physical backup and of a physical restore: each reads,
    /// compresses and checksums files on its own (default: the number of CPUs).
    pub jobs: Option<u32>,
}

/// `[wal]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct WalConfig {
    /// Whether this cluster archives its WAL to the repository with `pgkeep wal-push`. When true,
    /// `pgkeep check` requires archive_mode and archive_command to be set accordingly.
    pub archive: bool,
}

/// `[failover]`: the nodes of the master/standby pair and how to switch between them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct FailoverConfig {
    /// Which node this machine is (else `--node`).
    pub local_node: Option<String>,
    /// Directory for the switchover journal and lock (default `/var/lib/pgkeep`).
    pub state_dir: Option<PathBuf>,
    /// Largest replay lag, in bytes, a switchover target may have (default 16 MiB).
    pub max_lag_bytes: Option<u64>,
    /// Seconds to wait for the target to replay the old master's last checkpoint (default 60).
    pub catch_up_timeout: Option<u64>,
    /// Commands run after a role change, with `PGKEEP_NEW_PRIMARY` set to the new master's name.
    pub hooks: Vec<String>,
    /// The nodes, by name: `[failover.nodes.a]`, `[failover.nodes.b]`.
    pub nodes: std::collections::BTreeMap<String, NodeConfig>,
}

/// `[failover.nodes.NAME]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeConfig {
    /// Reach the node over ssh (BatchMode) at this host; absent: the node is this machine.
    pub ssh_host: Option<String>,
    /// ssh user (default: ssh's own default).
    pub ssh_user: Option<String>,
    /// ssh port (default 22).
    pub ssh_port: Option<u16>,
    /// libpq connection string to the node's PostgreSQL, from wherever pgkeep runs.
    pub conninfo: Option<String>,
    /// The node's data directory.
    pub pgdata: Option<PathBuf>,
    /// The node's PostgreSQL programs (default: found as for the backups).
    pub bin_dir: Option<PathBuf>,
    /// The marker file whose presence makes the node the master (default `/primary_server`).
    pub marker: Option<PathBuf>,
    /// Command that starts PostgreSQL on the node (default `systemctl start postgresql`).
    pub start_postgres: Option<String>,
    /// Command that stops PostgreSQL on the node (default `systemctl stop postgresql`).
    pub stop_postgres: Option<String>,
    /// Application services that run only on the master, in start order (e.g. `nginx`).
    pub services: Vec<String>,
    /// Command that starts a service; `{service}` is replaced (default `systemctl start {service}`).
    pub start_service: Option<String>,
    /// Command that stops a service (default `systemctl stop {service}`).
    pub stop_service: Option<String>,
    /// Prefix of the `[sync]` paths on this node (default `/`): for test setups that put both
    /// nodes on one machine.
    pub sync_root: Option<PathBuf>,
}

/// `[sync]`: rsync of site files from the master to the other nodes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct SyncConfig {
    /// Directories to copy, each to the same path on the peer (e.g. `/www`).
    pub paths: Vec<PathBuf>,
    /// rsync `--exclude` patterns.
    pub exclude: Vec<String>,
    /// A file that must exist at the top of each source path, so that an empty or unmounted source
    /// never wipes the peer (default `.pgkeep-sync`).
    pub sentinel: Option<String>,
    /// rsync `--max-delete`: refuse to delete more files than this in one run (default 1000).
    pub max_delete: Option<u64>,
    /// rsync `--timeout` in seconds (default 600).
    pub timeout: Option<u64>,
    /// The rsync program (default `rsync` from PATH).
    pub rsync: Option<PathBuf>,
}

impl Config {
    /// Parses configuration text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ConfigError::invalid(
                origin,
                "(syntax)",
                e.to_string().trim_end().replace('\n', "\n  "),
                "correct the TOML syntax at the line shown",
            )
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().trim_end().to_string();
            let fix = if message.starts_with("unknown field") {
                "remove the key or correct its spelling; config/pgkeep.example.toml lists every key"
            } else {
                "give a value of the expected type; config/pgkeep.example.toml shows each key's type"
            };
            ConfigError::invalid(origin, key, message, fix)
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            fix: match source.kind() {
                std::io::ErrorKind::NotFound => {
                    "check the --config path; copy config/pgkeep.example.toml to start one".into()
                }
                std::io::ErrorKind::PermissionDenied => {
                    "run as the user that owns the file, or make it readable by this user".into()
                }
                _ => "check that the path is a readable file".into(),
            },
            source,
        })?;
        let origin = path.display().to_string();
        let config = Config::parse(&text, &origin)?;
        if let Some(key) = config.secret_key() {
            check_private(path, &origin, &key)?;
        }
        Ok(config)
    }

    /// The first key that holds a secret: the S3 secret key, or a connection string with a
    /// password (`postgres.conninfo`, a node's `conninfo`).
    fn secret_key(&self) -> Option<String> {
        if self.repository.s3.secret_access_key.is_some() {
            return Some("repository.s3.secret-access-key".into());
        }
        if self
            .postgres
            .conninfo
            .as_deref()
            .is_some_and(conninfo_has_password)
        {
            return Some("postgres.conninfo".into());
        }
        self.failover
            .nodes
            .iter()
            .find(|(_, node)| node.conninfo.as_deref().is_some_and(conninfo_has_password))
            .map(|(name, _)| format!("failover.nodes.{name}.conninfo"))
    }
}

fn check_private(path: &Path, origin: &str, key: &str) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        return Err(ConfigError::invalid(
            origin,
            key,
            format!(
                "the file holds a secret but its mode is {:04o}: others can read it",
                mode & 0o7777
            ),
            format!(
                "chmod 600 {} (or keep secrets out of it: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile for S3, PGPASSWORD or ~/.pgpass for PostgreSQL)",
                path.display()
            ),
        ));
    }
    Ok(())
}
