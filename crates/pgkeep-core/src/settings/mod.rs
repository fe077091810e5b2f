//! Configuration: the TOML file as written by the operator ([`Config`]), command-line overrides
//! ([`Overrides`]), and the validated [`Settings`] derived from both.
//!
//! Parsing and validation are separate steps (ripgrep's lowargs/hiargs split): [`Config`] mirrors the
//! file one to one and rejects unknown keys; [`Settings::resolve`] checks values, applies the
//! overrides, and turns every problem into a [`ConfigError`] that names where the value came from (the
//! file or the flag), the key, and the fix.
//!
//! A program that embeds pgkeep needs no file at all: [`Settings::new`] takes a repository and a
//! connection and sets everything else to its default; the fields are public for the rest.

mod drill;
mod duration;
mod error;
mod file;
mod jobs;
mod location;
mod resolve;
mod retention;

use std::fmt;
use std::path::PathBuf;

pub use crate::pg::Zone;
pub use drill::{DrillConfig, DrillSettings};
pub use duration::format_duration;
pub use duration::parse_duration;
pub use error::{ConfigError, InvalidValue};
pub use file::{
    CompressionConfig, Config, DEFAULT_CONFIG_PATHS, FailoverConfig, NodeConfig, PostgresConfig,
    RepositoryConfig, S3Config, SyncConfig, WalConfig,
};
pub use jobs::{ArchivingConfig, JobConfig, NotifyConfig, OverdueConfig, ScheduleConfig};
pub use location::RepoLocation;
pub use resolve::validate_cluster_name;
pub use retention::{Retention, RetentionConfig, RetentionPolicy, RetentionPolicyConfig};

use crate::pg::ConnInfo;

/// The default cluster name inside a repository.
pub const DEFAULT_CLUSTER: &str = "main";

/// zstd settings for everything written to the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// Level, 1 to 19.
    pub level: i32,
    /// Worker threads; 0 means one per CPU.
    pub threads: u32,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            level: 3,
            threads: 0,
        }
    }
}

impl Compression {
    /// The number of worker threads to run.
    pub(crate) fn workers(&self) -> u32 {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            n => n,
        }
    }
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
    /// `[backup] jobs`: parallel workers of a local-mode physical backup and of a physical
    /// restore (at least 1).
    pub backup_jobs: usize,
    /// Whether WAL archiving through pgkeep is expected.
    pub wal_archive: bool,
    /// `[failover]` as written; `pgkeep-failover` validates it.
    pub failover: FailoverConfig,
    /// `[sync]` as written; `pgkeep-failover` validates it.
    pub sync: SyncConfig,
    /// `[drill]`: where restore drills build their throwaway clusters.
    pub drill: DrillSettings,
    /// `[retention]`: what `expire` keeps, leftovers' grace, leases' lifetime.
    pub retention: Retention,
    /// The top-level `timezone`: reads `--at` times, places jobs' runs, shows times.
    pub timezone: Zone,
    /// Where the scheduler keeps its history and alert state.
    pub state_dir: PathBuf,
    /// Where backups and expire take their locks.
    pub lock_dir: PathBuf,
    /// `[schedule] lock-wait`: how long a backup or expire waits for another run's lock.
    pub lock_wait: std::time::Duration,
    /// `[[job]]` as written; `pgkeep-scheduler` validates it.
    pub jobs: Vec<JobConfig>,
    /// `[schedule]` as written; `pgkeep-scheduler` validates it.
    pub schedule: ScheduleConfig,
    /// `[notify]` as written; `pgkeep-scheduler` validates it.
    pub notify: NotifyConfig,
}

/// The default of `[backup] jobs`: the number of CPUs this process may use.
pub(crate) fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where the scheduler's state lives unless `state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/pgkeep";
/// How long a run waits for a lock unless `[schedule] lock-wait` says otherwise.
pub const DEFAULT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Where locks live unless `lock-dir` says otherwise.
pub const DEFAULT_LOCK_DIR: &str = "/run/lock";

impl Settings {
    /// Settings made in code, without a configuration file: the repository at `repo`, the server
    /// reached with `conninfo`, the cluster name [`DEFAULT_CLUSTER`], and every other value at the
    /// default the configuration file documents.
    ///
    /// ```
    /// use pgkeep_core::{ConnInfo, RepoLocation, Settings};
    ///
    /// let repo = RepoLocation::parse("file:///var/lib/pgkeep/repo")?;
    /// let conninfo = ConnInfo::from_conninfo_and_env(Some("host=/var/run/postgresql user=postgres"))?;
    /// let settings = Settings::new(repo, conninfo).with_cluster("prod-15")?;
    /// assert_eq!(settings.cluster, "prod-15");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(repo: RepoLocation, conninfo: ConnInfo) -> Settings {
        Settings {
            config_path: None,
            repo: Some(repo),
            cluster: DEFAULT_CLUSTER.to_string(),
            s3: S3Settings::default(),
            conninfo,
            pgdata: None,
            bin_dir: None,
            compression: Compression::default(),
            backup_jobs: default_jobs(),
            wal_archive: false,
            failover: FailoverConfig::default(),
            sync: SyncConfig::default(),
            drill: DrillSettings::default(),
            retention: Retention::default(),
            timezone: Zone::Local,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            lock_dir: PathBuf::from(DEFAULT_LOCK_DIR),
            lock_wait: DEFAULT_LOCK_WAIT,
            jobs: Vec::new(),
            schedule: ScheduleConfig::default(),
            notify: NotifyConfig::default(),
        }
    }

    /// The same settings for another cluster name, checked as `repository.cluster` is.
    pub fn with_cluster(mut self, name: &str) -> Result<Settings, InvalidValue> {
        validate_cluster_name(name)?;
        self.cluster = name.to_string();
        Ok(self)
    }
}
