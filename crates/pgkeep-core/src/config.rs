//! Configuration: the TOML file as written by the operator ([`Config`]), command-line overrides
//! ([`Overrides`]), and the validated [`Settings`] derived from both.
//!
//! Parsing and validation are separate steps (ripgrep's lowargs/hiargs split): [`Config`] mirrors the
//! file one to one and rejects unknown keys; [`Settings::resolve`] checks values, applies the
//! overrides, and turns every problem into a [`ConfigError`] that names where the value came from (the
//! file or the flag), the key, and the fix.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::conninfo::ConnInfo;
use crate::pipeline::Compression;

/// Where the configuration file is looked for when `--config` is not given, in order.
pub const DEFAULT_CONFIG_PATHS: &[&str] = &["./pgkeep.toml", "/etc/pgkeep/pgkeep.toml"];

/// The default cluster name inside a repository.
pub const DEFAULT_CLUSTER: &str = "main";

/// The configuration file, exactly as written. Every key is documented in `config/pgkeep.example.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Where backups and WAL are stored.
    pub repository: RepositoryConfig,
    /// How to reach the PostgreSQL cluster being backed up.
    pub postgres: PostgresConfig,
    /// Compression of everything written to the repository.
    pub compression: CompressionConfig,
    /// WAL archiving.
    pub wal: WalConfig,
    /// The two-server failover scheme (read by `pgkeep-failover`).
    pub failover: FailoverConfig,
    /// File replication from the master to its peers (read by `pgkeep-failover`).
    pub sync: SyncConfig,
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

/// Values given on the command line (or through `PGKEEP_*` variables); they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`: this file and no other; it must exist.
    pub config: Option<PathBuf>,
    /// `--repo URL`
    pub repo: Option<String>,
    /// `--cluster NAME`
    pub cluster: Option<String>,
}

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A local directory (`file:///path`).
    Local(PathBuf),
    /// A bucket and key prefix (`s3://bucket/prefix`); the prefix has no leading or trailing `/`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, possibly empty.
        prefix: String,
    },
}

impl fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoLocation::Local(path) => write!(f, "file://{}", path.display()),
            RepoLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RepoLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl RepoLocation {
    /// Parses `file:///absolute/path` or `s3://bucket[/prefix]`. The error is the problem and the fix.
    pub fn parse(url: &str) -> Result<RepoLocation, (String, String)> {
        const FIX: &str = "give file:///absolute/path or s3://bucket/prefix";
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err((
                    format!(
                        "`{url}` is not an absolute file URL (file:// must be followed by /path)"
                    ),
                    "write it as file:///absolute/path (three slashes)".into(),
                ));
            }
            let path = Path::new(path);
            if path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err((
                    format!("`{url}` contains `..`"),
                    "give the directory's real absolute path".into(),
                ));
            }
            return Ok(RepoLocation::Local(path.to_path_buf()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !valid_bucket {
                return Err((
                    format!("`{bucket}` in `{url}` is not a valid S3 bucket name"),
                    "use 3 to 63 lowercase letters, digits, `-` and `.`, as in s3://my-backups/pgkeep"
                        .into(),
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|s| s == "." || s == "..") || prefix.contains("//") {
                return Err((
                    format!("the prefix `{prefix}` in `{url}` has an empty, `.` or `..` segment"),
                    "use a plain prefix such as s3://bucket/pgkeep/prod".into(),
                ));
            }
            return Ok(RepoLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let scheme = url.split_once("://").map_or(url, |(s, _)| s);
        Err((
            format!("`{url}` has an unsupported scheme `{scheme}`"),
            FIX.to_string(),
        ))
    }
}

/// Validated S3 settings.
#[derive(Clone)]
pub struct S3Settings {
    /// Region, if configured (else the SDK's default chain decides).
    pub region: Option<String>,
    /// Endpoint URL, if configured (else the SDK reads `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Profile name, if configured.
    pub profile: Option<String>,
    /// Path-style addressing; `None` means "true when an endpoint is set".
    pub force_path_style: Option<bool>,
    /// Static credentials from the configuration file, if any.
    pub credentials: Option<(String, String)>,
    /// Multipart part size in bytes.
    pub part_size: usize,
    /// Parts uploaded concurrently.
    pub max_parts_in_flight: usize,
    /// Attempts per request for transient errors.
    pub max_attempts: u32,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            region: None,
            endpoint: None,
            profile: None,
            force_path_style: None,
            credentials: None,
            part_size: 16 * 1024 * 1024,
            max_parts_in_flight: 4,
            max_attempts: 5,
        }
    }
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("profile", &self.profile)
            .field("force_path_style", &self.force_path_style)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(id, _)| (id, "<redacted>")),
            )
            .field("part_size", &self.part_size)
            .field("max_parts_in_flight", &self.max_parts_in_flight)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// Settings validated and merged from the configuration file, flags and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file the settings were read from, if any.
    pub config_path: Option<PathBuf>,
    /// The repository, if one was configured (commands that need one fail without it).
    pub repo: Option<RepoLocation>,
    /// The cluster's name inside the repository.
    pub cluster: String,
    /// S3 settings.
    pub s3: S3Settings,
    /// How to connect to PostgreSQL.
    pub conninfo: ConnInfo,
    /// The data directory, if configured.
    pub pgdata: Option<PathBuf>,
    /// Where the PostgreSQL client programs are, if configured.
    pub bin_dir: Option<PathBuf>,
    /// Compression for everything stored.
    pub compression: Compression,
    /// Whether WAL archiving through pgkeep is expected.
    pub wal_archive: bool,
    /// `[failover]` as written; `pgkeep-failover` validates it.
    pub failover: FailoverConfig,
    /// `[sync]` as written; `pgkeep-failover` validates it.
    pub sync: SyncConfig,
}

/// A configuration problem: where, which key, what is wrong, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}\n  fix: {fix}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
        /// What to do.
        fix: String,
    },
    /// A value is missing, unknown, of the wrong type, or out of range.
    #[error("{origin}: `{key}`: {problem}\n  fix: {fix}")]
    Invalid {
        /// The file path, or the flag / environment variable the value came from.
        origin: String,
        /// The key, dotted (`repository.s3.part-size-mib`), or the flag name.
        key: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
}

impl ConfigError {
    fn invalid(
        origin: impl Into<String>,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.into(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
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
        if config.repository.s3.secret_access_key.is_some() {
            check_private(path, &origin)?;
        }
        Ok(config)
    }
}

fn check_private(path: &Path, origin: &str) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    if mode & 0o077 != 0 {
        return Err(ConfigError::invalid(
            origin,
            "repository.s3.secret-access-key",
            format!(
                "the file holds a secret but its mode is {:04o}",
                mode & 0o7777
            ),
            format!(
                "chmod 600 {} (or move the keys to AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn in_range<T: PartialOrd + fmt::Display + Copy>(
    origin: &str,
    key: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) if range.contains(&v) => Ok(v),
        Some(v) => Err(ConfigError::invalid(
            origin,
            key,
            format!("{v} is out of range"),
            format!(
                "use a value from {} to {} (default {default})",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// Checks a cluster name: it becomes a directory or key prefix in the repository.
pub fn validate_cluster_name(name: &str) -> Result<(), (String, String)> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err((
            format!("`{name}` is not a usable cluster name"),
            "use 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.` (e.g. main, prod-15)"
                .into(),
        ))
    }
}

impl Settings {
    /// Finds and reads the configuration file (the `--config` one, else the first of
    /// [`DEFAULT_CONFIG_PATHS`] that exists, else none) and resolves it with the overrides.
    pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
        let path = match &overrides.config {
            Some(path) => Some(path.clone()),
            None => DEFAULT_CONFIG_PATHS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists()),
        };
        let config = match &path {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        Settings::resolve(config, path, overrides)
    }

    /// Validates a parsed configuration and applies the overrides.
    pub fn resolve(
        config: Config,
        config_path: Option<PathBuf>,
        overrides: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let file_origin = config_path.as_ref().map_or_else(
            || "(no configuration file)".to_string(),
            |p| p.display().to_string(),
        );
        let origin = file_origin.as_str();

        let repo = match (&overrides.repo, &config.repository.url) {
            (Some(url), _) => Some(
                RepoLocation::parse(url)
                    .map_err(|(p, f)| ConfigError::invalid("command line", "--repo", p, f))?,
            ),
            (None, Some(url)) => Some(
                RepoLocation::parse(url)
                    .map_err(|(p, f)| ConfigError::invalid(origin, "repository.url", p, f))?,
            ),
            (None, None) => None,
        };

        let cluster = match (&overrides.cluster, &config.repository.cluster) {
            (Some(name), _) => {
                validate_cluster_name(name)
                    .map_err(|(p, f)| ConfigError::invalid("command line", "--cluster", p, f))?;
                name.clone()
            }
            (None, Some(name)) => {
                validate_cluster_name(name)
                    .map_err(|(p, f)| ConfigError::invalid(origin, "repository.cluster", p, f))?;
                name.clone()
            }
            (None, None) => DEFAULT_CLUSTER.to_string(),
        };

        let s3c = &config.repository.s3;
        let credentials = match (&s3c.access_key_id, &s3c.secret_access_key) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    origin,
                    "repository.s3.secret-access-key",
                    "access-key-id is set but secret-access-key is not",
                    "set both keys, or neither and use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    origin,
                    "repository.s3.access-key-id",
                    "secret-access-key is set but access-key-id is not",
                    "set both keys, or neither and use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                ));
            }
        };
        if let Some(endpoint) = &s3c.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                origin,
                "repository.s3.endpoint",
                format!("`{endpoint}` is not an http:// or https:// URL"),
                "give the full URL, e.g. https://s3.example.com or http://127.0.0.1:3900",
            ));
        }
        let s3 = S3Settings {
            region: s3c.region.clone(),
            endpoint: s3c.endpoint.clone(),
            profile: s3c.profile.clone(),
            force_path_style: s3c.force_path_style,
            credentials,
            part_size: in_range(
                origin,
                "repository.s3.part-size-mib",
                s3c.part_size_mib,
                5..=5120,
                16,
            )? as usize
                * 1024
                * 1024,
            max_parts_in_flight: in_range(
                origin,
                "repository.s3.max-parts-in-flight",
                s3c.max_parts_in_flight,
                1..=64,
                4,
            )?,
            max_attempts: in_range(
                origin,
                "repository.s3.max-attempts",
                s3c.max_attempts,
                1..=20,
                5,
            )?,
        };

        let conninfo = ConnInfo::from_conninfo_and_env(config.postgres.conninfo.as_deref())
            .map_err(|problem| {
                ConfigError::invalid(
                    origin,
                    "postgres.conninfo",
                    problem,
                    "write key=value pairs (host=/var/run/postgresql port=5432 user=postgres) or a postgresql:// URL",
                )
            })?;

        for (key, dir) in [
            ("postgres.pgdata", &config.postgres.pgdata),
            ("postgres.bin-dir", &config.postgres.bin_dir),
        ] {
            if let Some(dir) = dir
                && !dir.is_absolute()
            {
                return Err(ConfigError::invalid(
                    origin,
                    key,
                    format!("`{}` is not an absolute path", dir.display()),
                    "give an absolute path (starting with /)",
                ));
            }
        }

        let compression = Compression {
            level: in_range(
                origin,
                "compression.level",
                config.compression.level,
                1..=19,
                3,
            )?,
            threads: in_range(
                origin,
                "compression.threads",
                config.compression.threads,
                0..=256,
                0,
            )?,
        };

        Ok(Settings {
            config_path,
            repo,
            cluster,
            s3,
            conninfo,
            pgdata: config.postgres.pgdata,
            bin_dir: config.postgres.bin_dir,
            compression,
            wal_archive: config.wal.archive,
            failover: config.failover,
            sync: config.sync,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        let config = match Config::parse(text, "/etc/pgkeep/pgkeep.toml") {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        Settings::resolve(
            config,
            Some("/etc/pgkeep/pgkeep.toml".into()),
            &Overrides::default(),
        )
        .expect_err("must be rejected")
        .to_string()
    }

    #[test]
    fn unknown_key_names_file_key_and_fix() {
        let e = err("[repository.s3]\nregoin = \"x\"\n");
        assert!(
            e.starts_with("/etc/pgkeep/pgkeep.toml: `repository.s3.regoin`"),
            "{e}"
        );
        assert!(e.contains("unknown field"), "{e}");
        assert!(e.contains("fix: remove the key"), "{e}");
    }

    #[test]
    fn wrong_type_names_key() {
        let e = err("[compression]\nlevel = \"high\"\n");
        assert!(e.contains("`compression.level`"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
        assert!(e.contains("fix:"), "{e}");
    }

    #[test]
    fn syntax_error_names_line() {
        let e = err("[repository\nurl = 1\n");
        assert!(e.contains("/etc/pgkeep/pgkeep.toml"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn out_of_range_values() {
        let e = err("[compression]\nlevel = 40\n");
        assert!(e.contains("`compression.level`: 40 is out of range"), "{e}");
        assert!(e.contains("from 1 to 19"), "{e}");
        let e = err("[repository.s3]\npart-size-mib = 1\n");
        assert!(e.contains("part-size-mib"), "{e}");
    }

    #[test]
    fn bad_repo_urls() {
        let e = err("[repository]\nurl = \"ftp://x/y\"\n");
        assert!(e.contains("`repository.url`"), "{e}");
        assert!(e.contains("unsupported scheme `ftp`"), "{e}");
        assert!(RepoLocation::parse("file://relative/x").is_err());
        assert!(RepoLocation::parse("s3://Bad_Bucket/x").is_err());
        assert_eq!(
            RepoLocation::parse("s3://my-bucket/a/b/").unwrap(),
            RepoLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            RepoLocation::parse("file:///var/lib/pgkeep").unwrap(),
            RepoLocation::Local("/var/lib/pgkeep".into())
        );
    }

    #[test]
    fn flags_override_file_and_are_validated() {
        let config =
            Config::parse("[repository]\nurl = \"file:///a\"\ncluster = \"x\"\n", "f").unwrap();
        let s = Settings::resolve(
            config.clone(),
            None,
            &Overrides {
                config: None,
                repo: Some("s3://bucket-1/p".into()),
                cluster: Some("prod".into()),
            },
        )
        .unwrap();
        assert_eq!(s.cluster, "prod");
        assert!(matches!(s.repo, Some(RepoLocation::S3 { .. })));
        let e = Settings::resolve(
            config,
            None,
            &Overrides {
                config: None,
                repo: None,
                cluster: Some("../etc".into()),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("command line: `--cluster`"), "{e}");
    }

    #[test]
    fn half_credentials_rejected() {
        let e = err("[repository.s3]\naccess-key-id = \"GK1\"\n");
        assert!(e.contains("secret-access-key"), "{e}");
    }

    #[test]
    fn secret_is_redacted_in_debug() {
        let c = Config::parse(
            "[repository.s3]\naccess-key-id = \"GK1\"\nsecret-access-key = \"hunter2\"\n",
            "f",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let s = Settings::resolve(c, None, &Overrides::default()).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
