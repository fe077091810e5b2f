//! `[drill]`: where `pgkeep drill` builds its throwaway clusters. [`DrillConfig`] is the section as
//! written; [`DrillSettings`] is what it resolves to.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `[drill]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DrillConfig {
    /// The directory the drills restore into, one fresh subdirectory per drill (default
    /// `pgkeep-drill` under the system temporary directory). Absolute.
    pub scratch_dir: Option<PathBuf>,
}

/// `[drill]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillSettings {
    /// The directory the drills restore into, one fresh subdirectory per drill; the throwaway
    /// cluster needs room there for the backup's original size and the WAL it replays.
    pub scratch_dir: PathBuf,
}

impl Default for DrillSettings {
    /// `pgkeep-drill` under the system temporary directory (`TMPDIR`, else `/tmp`).
    fn default() -> DrillSettings {
        DrillSettings {
            scratch_dir: std::env::temp_dir().join("pgkeep-drill"),
        }
    }
}

impl DrillConfig {
    /// The section checked: `scratch-dir` must be absolute. `origin` names the file in errors.
    pub(crate) fn resolve(self, origin: &str) -> Result<DrillSettings, ConfigError> {
        match self.scratch_dir {
            None => Ok(DrillSettings::default()),
            Some(dir) if dir.is_absolute() => Ok(DrillSettings { scratch_dir: dir }),
            Some(dir) => Err(ConfigError::invalid(
                origin,
                "drill.scratch-dir",
                format!("`{}` is not an absolute path", dir.display()),
                "give an absolute path (starting with /), e.g. /var/tmp/pgkeep-drill",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dir_defaults_under_the_temp_dir_and_must_be_absolute() {
        let default = DrillConfig::default().resolve("f").unwrap();
        assert_eq!(
            default.scratch_dir,
            std::env::temp_dir().join("pgkeep-drill")
        );
        let set = DrillConfig {
            scratch_dir: Some("/var/tmp/d".into()),
        };
        assert_eq!(
            set.resolve("f").unwrap().scratch_dir,
            PathBuf::from("/var/tmp/d")
        );
        let relative = DrillConfig {
            scratch_dir: Some("scratch".into()),
        };
        let e = relative
            .resolve("/etc/pgkeep/pgkeep.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`drill.scratch-dir`"), "{e}");
        assert!(e.contains("absolute"), "{e}");
    }
}
