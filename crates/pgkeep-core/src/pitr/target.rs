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
    use std::collections::BTreeMap;

    use super::*;
    use crate::repo::catalog::{MANIFEST_FORMAT, PhysicalInfo};
    use crate::storage::ObjectMeta;
    use crate::wal::Switch;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    /// A physical backup that ended at `stop`.
    fn backup(id: &str, stop: i64) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            id: id.into(),
            kind: BackupKind::Physical,
            cluster: "main".into(),
            system_identifier: "7".into(),
            server_version: "15.18".into(),
            server_version_num: 150018,
            started_at: at(stop - 10),
            finished_at: at(stop + 1),
            tools: BTreeMap::new(),
            logical: None,
            physical: Some(PhysicalInfo {
                start_lsn: Lsn(0x200_0028),
                stop_lsn: Lsn(0x200_0100),
                start_segment: "000000010000000000000002".into(),
                stop_segment: "000000010000000000000002".into(),
                timeline: 1,
                stop_timeline: 1,
                stop_time: at(stop),
                wal_segment_size: 16 << 20,
                from_standby: false,
                backup_label: String::new(),
                backup_manifest_checksum: None,
            }),
            objects: Vec::new(),
        }
    }

    /// An archive holding, per timeline, segments archived at the given times.
    fn archive(timelines: &[(u32, &[(u64, i64)])], histories: &[(u32, u32)]) -> Archive {
        Archive {
            segments: timelines
                .iter()
                .map(|(tli, segs)| {
                    let metas = segs.iter().map(|(segno, t)| {
                        let meta = ObjectMeta {
                            key: String::new(),
                            size: 1,
                            modified: Some(at(*t)),
                        };
                        (*segno, meta)
                    });
                    (*tli, metas.collect())
                })
                .collect(),
            histories: histories
                .iter()
                .map(|(tli, parent)| {
                    let switch = Switch {
                        parent: *parent,
                        switch: Lsn(0x500_0000),
                    };
                    (*tli, vec![switch])
                })
                .collect(),
            partials: Vec::new(),
            segment_size: 16 << 20,
        }
    }

    #[test]
    fn window_runs_from_the_oldest_backup_to_the_newest_wal_on_the_latest_timeline() {
        let backups = [backup("new", 500), backup("old", 100)];
        let wal = archive(&[(1, &[(2, 90), (3, 300), (4, 700)])], &[]);
        let w = window(&backups, &wal);
        assert_eq!((w.from, w.to), (Some(at(100)), Some(at(700))));
        assert_eq!(
            w.to_string(),
            format!(
                "{} to {}",
                at(100).format("%Y-%m-%d %H:%M:%S UTC"),
                at(700).format("%Y-%m-%d %H:%M:%S UTC")
            )
        );
    }

    #[test]
    fn window_follows_the_newest_timeline_and_ignores_abandoned_ones() {
        // Timeline 2 branched off 1; timeline 3 branched off 1 too and is the newest: timeline 2's
        // later segments are not on its path.
        let wal = archive(
            &[
                (1, &[(2, 100), (3, 200)]),
                (2, &[(5, 900)]),
                (3, &[(5, 400)]),
            ],
            &[(2, 1), (3, 1)],
        );
        let w = window(&[backup("b", 50)], &wal);
        assert_eq!((w.from, w.to), (Some(at(50)), Some(at(400))));
    }

    #[test]
    fn window_never_ends_before_it_starts_and_is_empty_without_backups_or_wal() {
        // The segment holding the backup's end was archived a moment before the end was measured.
        let wal = archive(&[(1, &[(2, 99)])], &[]);
        let w = window(&[backup("b", 100)], &wal);
        assert_eq!((w.from, w.to), (Some(at(100)), Some(at(100))));
        let empty = window(&[], &wal);
        assert_eq!((empty.from, empty.to), (None, None));
        assert_eq!(empty.to_string(), "- to -");
        let no_wal = window(&[backup("b", 100)], &Archive::default());
        assert_eq!((no_wal.from, no_wal.to), (None, None));
    }

    #[test]
    fn timeline_choice() {
        assert_eq!("latest".parse(), Ok(TimelineChoice::Latest));
        assert_eq!("current".parse(), Ok(TimelineChoice::Current));
        assert_eq!("3".parse(), Ok(TimelineChoice::Id(3)));
        assert!("0".parse::<TimelineChoice>().is_err());
        assert!("x".parse::<TimelineChoice>().is_err());
    }
}
