//! What a point-in-time restore aims at: the recovery target, the timeline to follow, what the
//! server does there, and the window of times the repository can restore to.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, PitrError};
use crate::exec;
use crate::pg::{Lsn, utc_micros};
use crate::repo::Repository;
use crate::repo::catalog::{BackupKind, Manifest, wal_segment_size};
use crate::wal::{Archive, SCAN_SEGMENTS, newest_commit};

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

/// The longest restore point name PostgreSQL takes (`MAXFNAMELEN - 1`).
const MAX_NAME: usize = 63;

const NAME_FIX: &str = "give the name exactly as pg_create_restore_point() was called: the server log says `restore point \"NAME\" created at ...`";

impl RecoveryTarget {
    /// Refuses a target PostgreSQL could not be given: an empty restore point name, one with a
    /// control character such as a newline, or one longer than PostgreSQL's 63 bytes; a
    /// transaction id that is not a number.
    pub fn check(&self) -> Result<(), PitrError> {
        let problem = match self {
            RecoveryTarget::Name(n) if n.is_empty() => "the restore point name is empty",
            RecoveryTarget::Name(n) if n.chars().any(char::is_control) => {
                "the restore point name holds a control character (a newline?), which no restore point has"
            }
            RecoveryTarget::Name(n) if n.len() > MAX_NAME => {
                "the restore point name is longer than the 63 bytes PostgreSQL allows"
            }
            RecoveryTarget::Xid(x) if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) => {
                "a transaction id is a number"
            }
            _ => return Ok(()),
        };
        let (target, fix) = match self {
            RecoveryTarget::Xid(x) => (
                format!("transaction {x:?}"),
                "give the transaction id as a number, e.g. --xid 742",
            ),
            RecoveryTarget::Name(n) => (format!("restore point {n:?}"), NAME_FIX),
            other => (other.to_string(), NAME_FIX),
        };
        Err(PitrError::BadTarget {
            target,
            problem,
            fix,
        })
    }
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryTarget::Time(t) => write!(f, "time {}", utc_micros(t)),
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
    /// The newest commit (or abort) the archive holds: a time target must be before it, since
    /// recovery to a time stops only at a commit stamped after the target. When that commit
    /// cannot be read ([`WindowEnd::ArchiveTime`]), when the newest WAL segment was archived.
    pub to: Option<DateTime<Utc>>,
    /// What `to` is.
    pub end: WindowEnd,
}

/// What the end of a [`RecoveryWindow`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WindowEnd {
    /// The newest commit or abort in the archive, read with pg_waldump from this segment.
    NewestCommit {
        /// The segment that holds it.
        segment: String,
    },
    /// When the newest segment was archived; the newest commit could not be read.
    ArchiveTime {
        /// Why not.
        why: String,
    },
    /// There is no window: no physical backup, or no archived WAL.
    Empty,
}

impl std::fmt::Display for RecoveryWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |t: &Option<DateTime<Utc>>| t.as_ref().map_or("-".to_string(), utc_micros);
        write!(f, "{} to {}", t(&self.from), t(&self.to))?;
        match &self.end {
            WindowEnd::NewestCommit { .. } => f.write_str(" (the newest archived commit)"),
            WindowEnd::ArchiveTime { why } => write!(
                f,
                " (when the newest WAL segment was archived; the newest commit is unknown: {why})"
            ),
            WindowEnd::Empty => Ok(()),
        }
    }
}

/// The recoverable window by archive times: from the end of the oldest physical backup to the
/// newest WAL archived on the newest timeline's path.
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
            end: WindowEnd::ArchiveTime {
                why: "not read".into(),
            },
        },
        _ => RecoveryWindow {
            from: None,
            to: None,
            end: WindowEnd::Empty,
        },
    }
}

/// The recoverable window ending at the newest commit in the archive, read with pg_waldump (from
/// `bin_dir` or the usual places); without pg_waldump, without a commit in the newest segments,
/// or when one of them cannot be read, it ends when the newest segment was archived and says why.
pub(crate) async fn commit_window(
    repo: &Repository,
    backups: &[Manifest],
    archive: &Archive,
    bin_dir: Option<&Path>,
) -> RecoveryWindow {
    let mut w = window(backups, archive);
    let (Some(from), Some(tli), Some(newest)) = (
        w.from,
        archive.latest_timeline(),
        backups.iter().max_by_key(|b| b.finished_at),
    ) else {
        return w;
    };
    let major = newest.server_version_num / 10_000;
    let Ok(pg_waldump) = exec::located(bin_dir, "pg_waldump", major) else {
        w.end = WindowEnd::ArchiveTime {
            why: format!(
                "pg_waldump not found (it ships with the server package, postgresql-{major}; or set postgres.bin-dir)"
            ),
        };
        return w;
    };
    // A segment that cannot be read here is reported where a restore needs it (the chain, or
    // wal-fetch): the window only loses its precise end.
    match newest_commit(repo, archive, tli, &pg_waldump).await {
        Ok(Some(commit)) => {
            w.to = Some(commit.time.max(from));
            w.end = WindowEnd::NewestCommit {
                segment: commit.segment,
            };
        }
        Ok(None) => {
            w.end = WindowEnd::ArchiveTime {
                why: format!("no commit in the newest {SCAN_SEGMENTS} archived segments"),
            };
        }
        Err(e) => {
            let why = e.to_string();
            w.end = WindowEnd::ArchiveTime {
                why: why.lines().next().unwrap_or_default().to_string(),
            };
        }
    }
    w
}

/// `list`'s window: loads the archive listing and reads its newest segments with pg_waldump
/// (from `bin_dir`, else the server's version directory or `PATH`).
pub async fn recoverable_window(
    repo: &Repository,
    backups: &[Manifest],
    bin_dir: Option<&Path>,
) -> Result<RecoveryWindow, Error> {
    let physical: Vec<Manifest> = backups
        .iter()
        .filter(|b| b.kind == BackupKind::Physical && b.physical.is_some())
        .cloned()
        .collect();
    if physical.is_empty() {
        return Ok(RecoveryWindow {
            from: None,
            to: None,
            end: WindowEnd::Empty,
        });
    }
    let archive = Archive::load(repo, wal_segment_size(&physical)).await?;
    Ok(commit_window(repo, &physical, &archive, bin_dir).await)
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
                mode: crate::repo::catalog::BaseMode::Stream,
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
        // To the microsecond, in a form `--at` reads back.
        let shown = w.to_string();
        let (from, rest) = shown.split_once(" to ").unwrap();
        let to = rest.split(" (").next().unwrap();
        assert_eq!(crate::pg::parse_time(from), Ok(at(100)), "{shown}");
        assert_eq!(crate::pg::parse_time(to), Ok(at(700)), "{shown}");
        assert!(from.ends_with(".000000 UTC"), "{shown}");
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
    fn times_are_shown_to_the_microsecond_and_targets_checked() {
        let t = DateTime::from_timestamp(1_764_000_000, 123_456_000).unwrap();
        let w = RecoveryWindow {
            from: Some(t),
            to: Some(t),
            end: WindowEnd::NewestCommit {
                segment: "000000010000000000000003".into(),
            },
        };
        let shown = w.to_string();
        assert!(shown.contains(".123456 UTC"), "{shown}");
        assert!(shown.ends_with("(the newest archived commit)"), "{shown}");
        assert!(RecoveryTarget::Time(t).to_string().contains(".123456 UTC"));
        for bad in ["", "a\nb", "tab\there", &"x".repeat(64)] {
            let e = RecoveryTarget::Name(bad.into()).check().unwrap_err();
            assert!(e.to_string().contains("nothing was written"), "{e}");
        }
        assert!(RecoveryTarget::Name("x".repeat(63)).check().is_ok());
        assert!(
            RecoveryTarget::Name("before it's gone".into())
                .check()
                .is_ok()
        );
        assert!(RecoveryTarget::Xid("12a".into()).check().is_err());
        assert!(RecoveryTarget::Xid("742".into()).check().is_ok());
    }

    #[tokio::test]
    async fn without_pg_waldump_or_a_readable_segment_the_window_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::new(
            std::sync::Arc::new(crate::storage::LocalStorage::new(dir.path())),
            "main",
        );
        let backups = [backup("b", 100)];
        // The archive lists segment 2, but the repository holds no such object.
        let wal = archive(&[(1, &[(2, 300)])], &[]);
        let no_tools = dir.path().join("bin");
        std::fs::create_dir(&no_tools).unwrap();
        let w = commit_window(&repo, &backups, &wal, Some(&no_tools)).await;
        assert_eq!(w.to, Some(at(300)));
        assert!(
            matches!(&w.end, WindowEnd::ArchiveTime { why } if why.contains("pg_waldump not found")),
            "{w}"
        );
        assert!(w.to_string().contains("pg_waldump not found"), "{w}");
        // A real pg_waldump, an unreadable segment: the archive time, and the reason.
        std::fs::write(no_tools.join("pg_waldump"), "").unwrap();
        let w = commit_window(&repo, &backups, &wal, Some(&no_tools)).await;
        assert!(
            matches!(&w.end, WindowEnd::ArchiveTime { why } if why.contains("000000010000000000000002")),
            "{w}"
        );
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
