//! Why a backup is kept ([`KeepReason`]), and the series of backups the rules count in
//! ([`Series`]). Each reason is shown as the configuration names its rule: `keep-weekly
//! 2026-W47`, `pinned`, `min-keep`, `needed by the window`.

use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;
use serde::Serialize;

use crate::repo::catalog::BackupKind;
use crate::repo::lease::Lease;
use crate::settings::format_duration;

/// A series of backups that replace each other.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Series {
    /// The physical backups of the cluster.
    Cluster,
    /// The logical backups holding the roles and tablespaces.
    Globals,
    /// The logical backups holding this database.
    Database(String),
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Series::Cluster => f.write_str("the cluster"),
            Series::Globals => f.write_str("globals"),
            Series::Database(name) => write!(f, "database {name}"),
        }
    }
}

fn duration_text<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_duration(*d))
}

/// Why a backup is kept. Shown as the configuration names the rule: `keep-weekly 2026-W47`,
/// `pinned`, `min-keep`, `needed by the window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "rule")]
pub enum KeepReason {
    /// `keep-last`: it is the `n`th newest of its series.
    #[serde(rename = "keep-last")]
    Last {
        /// 1 for the newest.
        n: u32,
        /// The series.
        of: Series,
    },
    /// `keep-daily`: the newest of its series on `day`.
    #[serde(rename = "keep-daily")]
    Daily {
        /// The day, in the configured time zone.
        day: NaiveDate,
        /// The series.
        of: Series,
    },
    /// `keep-weekly`: the newest of its series in ISO week `week` (`2026-W47`).
    #[serde(rename = "keep-weekly")]
    Weekly {
        /// The ISO week.
        week: String,
        /// The series.
        of: Series,
    },
    /// `keep-monthly`: the newest of its series in `month` (`2026-11`).
    #[serde(rename = "keep-monthly")]
    Monthly {
        /// The month.
        month: String,
        /// The series.
        of: Series,
    },
    /// `keep-within`: it ended within this long of now.
    #[serde(rename = "keep-within")]
    Within {
        /// The rule's duration.
        #[serde(serialize_with = "duration_text")]
        within: Duration,
        /// The series.
        of: Series,
    },
    /// `pgkeep pin`.
    #[serde(rename = "pinned")]
    Pinned {
        /// The pin's reason.
        reason: Option<String>,
    },
    /// The floor: without it, its series would keep fewer than `min-keep`.
    #[serde(rename = "min-keep")]
    MinKeep {
        /// The series.
        of: Series,
    },
    /// The newest backup of its kind, which never expires.
    #[serde(rename = "newest")]
    Newest,
    /// The newest physical backup that ended before the `keep-within` window: a point-in-time
    /// restore to the window's start needs it.
    #[serde(rename = "needed-by-the-window")]
    NeededByWindow {
        /// The rule's duration.
        #[serde(serialize_with = "duration_text")]
        within: Duration,
    },
    /// A running restore (or backup) holds a lease on it.
    #[serde(rename = "in-use")]
    InUse {
        /// The lease.
        lease: Lease,
    },
    /// No policy is configured for its kind: no backup of it expires.
    #[serde(rename = "no-policy")]
    NoPolicy {
        /// The kind.
        kind: BackupKind,
    },
}

/// ` (database a)`; nothing for the cluster's own series.
fn of(series: &Series) -> String {
    match series {
        Series::Cluster => String::new(),
        other => format!(" ({other})"),
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::Last { n, of: s } => write!(f, "keep-last {n}{}", of(s)),
            KeepReason::Daily { day, of: s } => write!(f, "keep-daily {day}{}", of(s)),
            KeepReason::Weekly { week, of: s } => write!(f, "keep-weekly {week}{}", of(s)),
            KeepReason::Monthly { month, of: s } => write!(f, "keep-monthly {month}{}", of(s)),
            KeepReason::Within { within, of: s } => {
                write!(f, "keep-within {}{}", format_duration(*within), of(s))
            }
            KeepReason::Pinned { reason: None } => f.write_str("pinned"),
            KeepReason::Pinned {
                reason: Some(reason),
            } => write!(f, "pinned: {reason}"),
            KeepReason::MinKeep { of: s } => write!(f, "min-keep{}", of(s)),
            KeepReason::Newest => f.write_str("newest"),
            KeepReason::NeededByWindow { .. } => f.write_str("needed by the window"),
            KeepReason::InUse { lease } => write!(f, "in use by {lease}"),
            KeepReason::NoPolicy { kind } => write!(f, "no [retention.{kind}] policy"),
        }
    }
}
