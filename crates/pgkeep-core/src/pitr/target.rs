//! What a point-in-time restore aims at: the recovery target, the timeline to follow, what the
//! server does there, and the window of times the repository can restore to.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Error;
use crate::pg::Lsn;
use crate::repo::Repository;
use crate::repo::catalog::{BackupKind, Manifest, wal_segment_size};
use crate::wal::Archive;

/// What recovery should stop at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum RecoveryTarget {
    /// `recovery_target_time`.
    Time(DateTime<Utc>),
    /// `recovery_target_lsn`.
    Lsn(Lsn),
    /// `recovery_target_xid`.
    Xid(String),
    /// `recovery_target_name` (a `pg_create_restore_point`).
    Name(String),
    /// `recovery_target = 'immediate'`: the backup's consistent point.
    Immediate,
    /// No target: replay all archived WAL.
    Latest,
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryTarget::Time(t) => write!(f, "time {}", t.format("%Y-%m-%d %H:%M:%S%.6f UTC")),
            RecoveryTarget::Lsn(l) => write!(f, "LSN {l}"),
            RecoveryTarget::Xid(x) => write!(f, "transaction {x}"),
            RecoveryTarget::Name(n) => write!(f, "restore point `{n}`"),
            RecoveryTarget::Immediate => f.write_str("the end of the base backup (immediate)"),
            RecoveryTarget::Latest => f.write_str("the end of the archived WAL (latest)"),
        }
    }
}

/// Which timeline recovery follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineChoice {
    /// The newest timeline in the archive that descends from the backup's (PostgreSQL's default).
    Latest,
    /// The backup's own timeline.
    Current,
    /// This timeline.
    Id(u32),
}

/// A `--timeline` that is none of `latest`, `current` or a timeline number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not latest, current or a timeline number")]
pub struct TimelineChoiceError(String);

impl std::str::FromStr for TimelineChoice {
    type Err = TimelineChoiceError;
    fn from_str(s: &str) -> Result<Self, TimelineChoiceError> {
        match s {
            "latest" => Ok(TimelineChoice::Latest),
            "current" => Ok(TimelineChoice::Current),
            n => n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .map(TimelineChoice::Id)
                .ok_or_else(|| TimelineChoiceError(s.to_string())),
        }
    }
}

/// What to do once the target is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetAction {
    /// Stay in recovery, read-only, for inspection (PostgreSQL's default).
    Pause,
    /// End recovery and accept writes (a new timeline).
    Promote,
    /// Shut down.
    Shutdown,
}

impl TargetAction {
    pub(crate) fn setting(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// The times that can be restored to.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryWindow {
    /// The end of the oldest physical backup.
    pub from: Option<DateTime<Utc>>,
    /// When the newest WAL segment was archived.
    pub to: Option<DateTime<Utc>>,
}

impl std::fmt::Display for RecoveryWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |t: &Option<DateTime<Utc>>| {
            t.map_or("-".to_string(), |t| {
                t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            })
        };
        write!(f, "{} to {}", t(&self.from), t(&self.to))
    }
}

/// The recoverable window: from the end of the oldest physical backup to the newest WAL archived
/// on the newest timeline's path.
pub(crate) fn window(backups: &[Manifest], archive: &Archive) -> RecoveryWindow {
    let from = backups
        .iter()
        .filter_map(|b| b.physical.as_ref())
        .map(|p| p.stop_time)
        .min();
    let to = archive.latest_timeline().and_then(|tli| {
        archive
            .path_to(tli)
            .iter()
            .filter_map(|(t, _)| archive.segments.get(t))
            .flat_map(|segs| segs.values())
            .filter_map(|m| m.modified)
            .max()
    });
    match (from, to) {
        // The segment holding a backup's end can be archived a moment before the backup's end is
        // measured: right after a backup, the window is the backup's end itself.
        (Some(from), Some(to)) => RecoveryWindow {
            from: Some(from),
            to: Some(to.max(from)),
        },
        _ => RecoveryWindow {
            from: None,
            to: None,
        },
    }
}

/// `list`'s window: loads the archive listing.
pub async fn recoverable_window(
    repo: &Repository,
    backups: &[Manifest],
) -> Result<RecoveryWindow, Error> {
    if !backups.iter().any(|b| b.kind == BackupKind::Physical) {
        return Ok(RecoveryWindow {
            from: None,
            to: None,
        });
    }
    let archive = Archive::load(repo, wal_segment_size(backups)).await?;
    Ok(window(backups, &archive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_choice() {
        assert_eq!("latest".parse(), Ok(TimelineChoice::Latest));
        assert_eq!("current".parse(), Ok(TimelineChoice::Current));
        assert_eq!("3".parse(), Ok(TimelineChoice::Id(3)));
        assert!("0".parse::<TimelineChoice>().is_err());
        assert!("x".parse::<TimelineChoice>().is_err());
    }
}
