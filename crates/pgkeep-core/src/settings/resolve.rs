//! Deriving validated [`Settings`] from a parsed [`Config`] and the [`Overrides`]: every value is
//! checked, and every problem is a [`ConfigError`] that names where the value came from (the file or
//! the flag), the key, and the fix.

use std::fmt;
use std::path::PathBuf;

use super::{
    Compression, Config, ConfigError, DEFAULT_CLUSTER, DEFAULT_CONFIG_PATHS, InvalidValue,
    Overrides, RepoLocation, Retention, S3Config, S3Settings, Settings,
};
use crate::pg::ConnInfo;

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
pub fn validate_cluster_name(name: &str) -> Result<(), InvalidValue> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidValue::new(
            format!("`{name}` is not a usable cluster name"),
            "use 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.` (e.g. main, prod-15)",
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

        let repo = resolve_repo(&config, origin, overrides)?;
        let cluster = resolve_cluster(&config, origin, overrides)?;
        let s3 = resolve_s3(&config.repository.s3, origin)?;
        let conninfo = ConnInfo::from_conninfo_and_env(config.postgres.conninfo.as_deref())
            .map_err(|problem| {
                ConfigError::invalid(
                    origin,
                    "postgres.conninfo",
                    problem.to_string(),
                    "write key=value pairs (host=/var/run/postgresql port=5432 user=postgres) or a postgresql:// URL",
                )
            })?;

        let timezone = match &config.timezone {
            None => super::Zone::Local,
            Some(name) => super::Zone::parse(name)
                .map_err(|e| ConfigError::invalid(origin, "timezone", e.problem, e.fix))?,
        };
        for (key, dir) in [
            ("postgres.pgdata", &config.postgres.pgdata),
            ("postgres.bin-dir", &config.postgres.bin_dir),
            ("state-dir", &config.state_dir),
            ("lock-dir", &config.lock_dir),
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
            backup_jobs: match config.backup.jobs {
                None => super::default_jobs(),
                jobs => in_range(origin, "backup.jobs", jobs, 1..=256, 1)? as usize,
            },
            wal_archive: config.wal.archive,
            retention: Retention::resolve(&config.retention, origin, timezone)?,
            timezone,
            state_dir: config
                .state_dir
                .unwrap_or_else(|| PathBuf::from(super::DEFAULT_STATE_DIR)),
            lock_dir: config
                .lock_dir
                .unwrap_or_else(|| PathBuf::from(super::DEFAULT_LOCK_DIR)),
            lock_wait: match &config.schedule.lock_wait {
                None => super::DEFAULT_LOCK_WAIT,
                Some(text) => super::parse_duration(text)
                    .map_err(|e| ConfigError::at(origin, "schedule.lock-wait", e))?,
            },
            jobs: config.job,
            schedule: config.schedule,
            notify: config.notify,
            failover: config.failover,
            sync: config.sync,
            drill: config.drill.resolve(origin)?,
        })
    }
}

/// The repository: `--repo`, else `repository.url`, else none.
fn resolve_repo(
    config: &Config,
    origin: &str,
    overrides: &Overrides,
) -> Result<Option<RepoLocation>, ConfigError> {
    Ok(match (&overrides.repo, &config.repository.url) {
        (Some(url), _) => Some(
            RepoLocation::parse(url).map_err(|e| ConfigError::at("command line", "--repo", e))?,
        ),
        (None, Some(url)) => Some(
            RepoLocation::parse(url).map_err(|e| ConfigError::at(origin, "repository.url", e))?,
        ),
        (None, None) => None,
    })
}

/// The cluster name: `--cluster`, else `repository.cluster`, else [`DEFAULT_CLUSTER`].
fn resolve_cluster(
    config: &Config,
    origin: &str,
    overrides: &Overrides,
) -> Result<String, ConfigError> {
    Ok(match (&overrides.cluster, &config.repository.cluster) {
        (Some(name), _) => {
            validate_cluster_name(name)
                .map_err(|e| ConfigError::at("command line", "--cluster", e))?;
            name.clone()
        }
        (None, Some(name)) => {
            validate_cluster_name(name)
                .map_err(|e| ConfigError::at(origin, "repository.cluster", e))?;
            name.clone()
        }
        (None, None) => DEFAULT_CLUSTER.to_string(),
    })
}

/// `[repository.s3]`, checked.
fn resolve_s3(s3c: &S3Config, origin: &str) -> Result<S3Settings, ConfigError> {
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
    Ok(S3Settings {
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
    })
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
