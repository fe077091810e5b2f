//! `[retention]`: which backups `expire` keeps, per backup kind, and how it treats leftovers and
//! leases. [`RetentionConfig`] is the section as written; [`Retention`] the checked settings.

use std::fmt;
use std::time::Duration;

use super::Zone;
use serde::{Deserialize, Serialize};

use super::duration::{format_duration, parse_duration};
use super::{ConfigError, InvalidValue};

/// `[retention]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetentionConfig {
    /// The IANA time zone the daily, weekly and monthly rules count in (`Europe/Belgrade`);
    /// default: the local zone (`TZ`, else /etc/localtime).
    pub time_zone: Option<String>,
    /// How old a leftover of an interrupted run must be before `expire` removes it (default `6h`).
    pub leftover_grace: Option<String>,
    /// How long a running backup's or restore's lease lives without renewal (default `10m`; it
    /// is renewed every fifth of that).
    pub lease_ttl: Option<String>,
    /// `[retention.logical]`: the policy of logical backups; none: they never expire.
    pub logical: Option<RetentionPolicyConfig>,
    /// `[retention.physical]`: the policy of physical backups; none: they never expire.
    pub physical: Option<RetentionPolicyConfig>,
}

/// `[retention.logical]`, `[retention.physical]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetentionPolicyConfig {
    /// Keep the N newest backups.
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N most recent days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N most recent ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N most recent months that have one.
    pub keep_monthly: Option<u32>,
    /// Keep every backup that ended within this duration of now (`14d`).
    pub keep_within: Option<String>,
    /// Never keep fewer than this many (default 1, at least 1).
    pub min_keep: Option<u32>,
}

/// One backup kind's retention policy. A backup that any rule keeps is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the N newest.
    pub keep_last: u32,
    /// Keep the newest of each of the N most recent days that have a backup.
    pub keep_daily: u32,
    /// Keep the newest of each of the N most recent ISO weeks that have a backup.
    pub keep_weekly: u32,
    /// Keep the newest of each of the N most recent months that have a backup.
    pub keep_monthly: u32,
    /// Keep every backup that ended within this long of now.
    pub keep_within: Option<Duration>,
    /// The floor: never fewer kept than this (at least 1).
    pub min_keep: u32,
}

impl Default for RetentionPolicy {
    /// A policy that keeps only the newest backup (every rule off, `min-keep` 1).
    fn default() -> Self {
        RetentionPolicy {
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_within: None,
            min_keep: 1,
        }
    }
}

impl RetentionPolicy {
    /// Whether any keep- rule is set (a count above 0, or `keep-within`): a policy without one
    /// keeps only `min-keep` backups of each series, which the configuration refuses.
    pub fn has_keep_rule(&self) -> bool {
        self.keep_last > 0
            || self.keep_daily > 0
            || self.keep_weekly > 0
            || self.keep_monthly > 0
            || self.keep_within.is_some()
    }
}

impl fmt::Display for RetentionPolicy {
    /// The rules as the configuration writes them: `keep-last 3, keep-within 14d, min-keep 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, n) in [
            ("keep-last", self.keep_last),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
        ] {
            if n > 0 {
                parts.push(format!("{name} {n}"));
            }
        }
        if let Some(within) = self.keep_within {
            parts.push(format!("keep-within {}", format_duration(within)));
        }
        parts.push(format!("min-keep {}", self.min_keep));
        f.write_str(&parts.join(", "))
    }
}

impl Serialize for RetentionPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("RetentionPolicy", 7)?;
        out.serialize_field("keep_last", &self.keep_last)?;
        out.serialize_field("keep_daily", &self.keep_daily)?;
        out.serialize_field("keep_weekly", &self.keep_weekly)?;
        out.serialize_field("keep_monthly", &self.keep_monthly)?;
        out.serialize_field("keep_within", &self.keep_within.map(format_duration))?;
        out.serialize_field("min_keep", &self.min_keep)?;
        out.serialize_field("text", &self.to_string())?;
        out.end()
    }
}

/// The checked `[retention]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Where days, weeks and months begin.
    pub time_zone: Zone,
    /// Leftovers of interrupted runs younger than this are left alone.
    pub leftover_grace: Duration,
    /// How long a lease lives without renewal.
    pub lease_ttl: Duration,
    /// The policy of logical backups; `None`: none expires.
    pub logical: Option<RetentionPolicy>,
    /// The policy of physical backups; `None`: none expires.
    pub physical: Option<RetentionPolicy>,
}

/// The default `leftover-grace`.
const DEFAULT_GRACE: Duration = Duration::from_secs(6 * 3600);
/// The default `lease-ttl`.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(600);
/// The shortest `lease-ttl`.
const MIN_LEASE_TTL: Duration = Duration::from_secs(1);
/// The longest `lease-ttl`: a day.
const MAX_LEASE_TTL: Duration = Duration::from_secs(86_400);

impl Default for Retention {
    fn default() -> Self {
        Retention {
            time_zone: Zone::Local,
            leftover_grace: DEFAULT_GRACE,
            lease_ttl: DEFAULT_LEASE_TTL,
            logical: None,
            physical: None,
        }
    }
}

impl Retention {
    /// Checks `[retention]`; `origin` names the file in errors.
    pub(crate) fn resolve(
        config: &RetentionConfig,
        origin: &str,
        default_zone: Zone,
    ) -> Result<Retention, ConfigError> {
        let time_zone = match &config.time_zone {
            None => default_zone,
            Some(name) => Zone::parse(name).map_err(|e| {
                ConfigError::invalid(origin, "retention.time-zone", e.problem, e.fix)
            })?,
        };
        let duration = |key: &str, value: &Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => parse_duration(text).map_err(|e| ConfigError::at(origin, key, e)),
        };
        let lease_ttl = duration("retention.lease-ttl", &config.lease_ttl, DEFAULT_LEASE_TTL)?;
        if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&lease_ttl) {
            let text = config.lease_ttl.as_deref().unwrap_or_default();
            return Err(ConfigError::invalid(
                origin,
                "retention.lease-ttl",
                match lease_ttl < MIN_LEASE_TTL {
                    true => format!("`{text}` is too short: a lease must live at least 1s"),
                    false => format!(
                        "`{text}` is longer than 1d: the lease of a killed backup or restore would keep expire away from its backup that long"
                    ),
                },
                "give a duration between 1s and 1d, such as 10m (the default)",
            ));
        }
        Ok(Retention {
            time_zone,
            leftover_grace: duration(
                "retention.leftover-grace",
                &config.leftover_grace,
                DEFAULT_GRACE,
            )?,
            lease_ttl,
            logical: resolve_policy(config.logical.as_ref(), origin, "retention.logical")?,
            physical: resolve_policy(config.physical.as_ref(), origin, "retention.physical")?,
        })
    }
}

fn resolve_policy(
    config: Option<&RetentionPolicyConfig>,
    origin: &str,
    section: &str,
) -> Result<Option<RetentionPolicy>, ConfigError> {
    let Some(config) = config else {
        return Ok(None);
    };
    let keep_within = match &config.keep_within {
        None => None,
        Some(text) => Some(
            parse_duration(text)
                .map_err(|e| ConfigError::at(origin, &format!("{section}.keep-within"), e))?,
        ),
    };
    let min_keep = config.min_keep.unwrap_or(1);
    if min_keep == 0 {
        return Err(ConfigError::at(
            origin,
            &format!("{section}.min-keep"),
            InvalidValue::new(
                "min-keep 0 is not a floor: the newest backup is always kept",
                "give 1 or more (default 1), or leave it out",
            ),
        ));
    }
    let policy = RetentionPolicy {
        keep_last: config.keep_last.unwrap_or(0),
        keep_daily: config.keep_daily.unwrap_or(0),
        keep_weekly: config.keep_weekly.unwrap_or(0),
        keep_monthly: config.keep_monthly.unwrap_or(0),
        keep_within,
        min_keep,
    };
    if !policy.has_keep_rule() {
        return Err(ConfigError::invalid(
            origin,
            section,
            format!(
                "[{section}] has no keep- rule: it would keep only min-keep backups of each series"
            ),
            format!(
                "add keep-last/keep-daily/keep-weekly/keep-monthly/keep-within to [{section}], or remove the section (then no backup of that kind expires)"
            ),
        ));
    }
    Ok(Some(policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Config;

    fn resolve(text: &str) -> Result<Retention, String> {
        let config = Config::parse(text, "f.toml").map_err(|e| e.to_string())?;
        Retention::resolve(&config.retention, "f.toml", Zone::Local).map_err(|e| e.to_string())
    }

    #[test]
    fn retention_section_is_checked() {
        let r = resolve(
            "[retention]\ntime-zone = \"Europe/Belgrade\"\nleftover-grace = \"2h\"\n\
             [retention.physical]\nkeep-last = 2\nkeep-within = \"14d\"\n",
        )
        .unwrap();
        assert_eq!(r.time_zone.to_string(), "Europe/Belgrade");
        assert_eq!(r.leftover_grace, Duration::from_secs(7200));
        assert_eq!(r.logical, None);
        let physical = r.physical.unwrap();
        assert_eq!(
            physical.to_string(),
            "keep-last 2, keep-within 14d, min-keep 1"
        );
        assert_eq!(resolve("").unwrap(), Retention::default());

        let e = resolve("[retention]\ntime-zone = \"Europe/Belgrad\"\n").unwrap_err();
        assert!(e.contains("`retention.time-zone`"), "{e}");
        assert!(e.contains("Europe/Belgrad` is not an IANA"), "{e}");
        let e = resolve("[retention.logical]\nkeep-within = \"14\"\n").unwrap_err();
        assert!(e.contains("`retention.logical.keep-within`"), "{e}");
        let e = resolve("[retention.logical]\nkeep-last = 1\nmin-keep = 0\n").unwrap_err();
        assert!(e.contains("min-keep 0 is not a floor"), "{e}");
        let e = resolve("[retention.logical]\nkeep-hourly = 3\n").unwrap_err();
        assert!(e.contains("unknown field `keep-hourly`"), "{e}");
    }

    #[test]
    fn lease_ttl_lives_between_a_second_and_a_day() {
        let ttl = |text: &str| resolve(&format!("[retention]\nlease-ttl = \"{text}\"\n"));
        assert_eq!(ttl("1d").unwrap().lease_ttl, Duration::from_secs(86_400));
        assert_eq!(ttl("1s").unwrap().lease_ttl, Duration::from_secs(1));
        for (text, why) in [
            ("0s", "`0s` is too short: a lease must live at least 1s"),
            ("1d1s", "`1d1s` is longer than 1d"),
            ("2w", "`2w` is longer than 1d"),
            (
                "999999999999w",
                "`999999999999w` is not a duration: it is longer than 36500d",
            ),
        ] {
            let e = ttl(text).unwrap_err();
            assert!(e.contains("f.toml: `retention.lease-ttl`"), "{text}: {e}");
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.contains("fix: "), "{text}: {e}");
        }
    }

    #[test]
    fn huge_durations_are_refused_not_overflowed() {
        for key in ["keep-within", "leftover-grace"] {
            let section = match key {
                "keep-within" => "[retention.physical]\nkeep-last = 1\n",
                _ => "[retention]\n",
            };
            let e = resolve(&format!("{section}{key} = \"999999999999w\"\n")).unwrap_err();
            assert!(
                e.contains(&format!(
                    "{key}`: `999999999999w` is not a duration: it is longer than 36500d"
                )),
                "{e}"
            );
        }
        // The longest accepted ones are read as written.
        let r = resolve(
            "[retention]\nleftover-grace = \"36500d\"\n[retention.physical]\nkeep-within = \"36500d\"\n",
        )
        .unwrap();
        assert_eq!(
            r.physical.unwrap().keep_within,
            Some(Duration::from_secs(36_500 * 86_400))
        );
    }

    #[test]
    fn a_policy_without_a_keep_rule_is_refused() {
        for (kind, body) in [
            ("logical", ""),
            ("physical", "min-keep = 3\n"),
            ("logical", "keep-last = 0\nkeep-daily = 0\n"),
        ] {
            let e = resolve(&format!("[retention.{kind}]\n{body}")).unwrap_err();
            assert!(e.contains(&format!("`retention.{kind}`: [retention.{kind}] has no keep- rule: it would keep only min-keep backups of each series")), "{e}");
            assert!(e.contains("fix: add keep-last/keep-daily/"), "{e}");
            assert!(e.contains("or remove the section"), "{e}");
        }
        let r = resolve("[retention.logical]\nkeep-within = \"1d\"\n").unwrap();
        assert!(r.logical.unwrap().has_keep_rule());
    }
}
