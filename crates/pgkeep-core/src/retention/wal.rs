//! The WAL rule of `expire`: which archived WAL files no kept physical backup needs.
//!
//! Segment (timeline `t`, number `n`) is needed by a kept physical backup `b` when `n` is at
//! least `b`'s start segment number and `t` is at least `b`'s timeline: recovery from `b` reads
//! from its start segment on, on its timeline and the timelines after it. A `.partial` segment
//! and a `.backup` history file are judged by the segment they name. `.history` files always
//! stay (they are tiny, and every later timeline's recovery reads them), and so does anything
//! under `wal/` that is not a WAL file name. A segment a wal-push writes now is newer than every
//! backup's start, so it is always needed. With no physical backup kept, or a backup whose
//! manifest cannot be read (which WAL it needs is unknown), no WAL is deleted.

use serde::Serialize;

use crate::error::Error;
use crate::pg::WalFile;
use crate::repo::Repository;
use crate::repo::catalog::{Manifest, wal_segment_size};

/// Where a kept physical backup's WAL begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WalStart {
    /// The backup's timeline.
    pub timeline: u32,
    /// Its start segment's number.
    pub segno: u64,
}

/// One archived WAL file to delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WalObject {
    /// Its name (`000000010000000000000003`, `.partial`, `.backup`).
    pub name: String,
    /// Its key.
    pub key: String,
    /// Its stored size.
    pub bytes: u64,
    /// The timeline it is judged by.
    pub timeline: u32,
    /// The segment number it is judged by.
    pub segno: u64,
}

/// What `expire` does with the WAL archive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WalPlan {
    /// The files no kept backup needs, oldest first.
    pub delete: Vec<WalObject>,
    /// Their stored bytes.
    pub bytes: u64,
    /// Files that stay (segments and the like that a kept backup needs, and files not judged).
    pub kept: usize,
    /// `.history` files, which always stay.
    pub history_files: usize,
    /// The rule's inputs: where each kept physical backup's WAL begins.
    pub needed_from: Vec<WalStart>,
    /// Why no WAL at all is deleted, when that is so.
    pub left_alone: Option<String>,
}

/// The segment number a WAL file is judged by, `None` for files that always stay.
fn judged_segno(file: &WalFile, name: &str, segment_size: u64) -> Option<u64> {
    match file {
        WalFile::Segment { .. } => file.segno(segment_size),
        WalFile::Partial { .. } | WalFile::BackupHistory { .. } => {
            WalFile::parse(name.get(..24)?)?.segno(segment_size)
        }
        WalFile::History { .. } => None,
    }
}

/// Whether segment `segno` of timeline `timeline` is needed by a backup starting at one of
/// `starts`.
pub(crate) fn is_needed(timeline: u32, segno: u64, starts: &[WalStart]) -> bool {
    starts
        .iter()
        .any(|s| segno >= s.segno && timeline >= s.timeline)
}

/// Where `backup`'s WAL begins (`None` for a logical backup).
pub(crate) fn wal_start(backup: &Manifest) -> Option<WalStart> {
    let info = backup.physical.as_ref()?;
    Some(WalStart {
        timeline: info.timeline,
        segno: info.start_lsn.segno(info.wal_segment_size),
    })
}

/// Plans the WAL deletions for the physical backups `kept`; `damaged` names the backups whose
/// manifest cannot be read.
pub(crate) async fn plan_wal(
    repo: &Repository,
    kept: &[Manifest],
    damaged: &[String],
) -> Result<WalPlan, Error> {
    let listed = repo.storage().list(&repo.key("wal/")).await?;
    let mut plan = WalPlan {
        needed_from: kept.iter().filter_map(wal_start).collect(),
        ..WalPlan::default()
    };
    let segment_size = wal_segment_size(kept);
    plan.left_alone = if !damaged.is_empty() {
        Some(format!(
            "backup(s) {} cannot be read, so which WAL they need is unknown: no WAL is deleted until they are repaired or removed by hand",
            damaged.join(", ")
        ))
    } else if plan.needed_from.is_empty() {
        Some("no physical backup is kept: the WAL archive is left as it is".into())
    } else {
        None
    };
    for meta in listed {
        let name = meta
            .key
            .rsplit('/')
            .next()
            .and_then(|n| n.strip_suffix(".zst"))
            .unwrap_or_default()
            .to_string();
        let Some(file) = WalFile::parse(&name) else {
            plan.kept += 1;
            continue;
        };
        if matches!(file, WalFile::History { .. }) {
            plan.history_files += 1;
            continue;
        }
        let timeline = file.timeline();
        match judged_segno(&file, &name, segment_size) {
            Some(segno)
                if plan.left_alone.is_none() && !is_needed(timeline, segno, &plan.needed_from) =>
            {
                plan.bytes += meta.size;
                plan.delete.push(WalObject {
                    name,
                    key: meta.key,
                    bytes: meta.size,
                    timeline,
                    segno,
                });
            }
            _ => plan.kept += 1,
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::DEFAULT_SEGMENT_SIZE;

    #[test]
    fn the_wal_rule_by_timeline_and_segment() {
        let starts = [
            WalStart {
                timeline: 1,
                segno: 10,
            },
            WalStart {
                timeline: 3,
                segno: 5,
            },
        ];
        // Timeline 1 and 2 from segment 10 on; timeline 3 and later from segment 5 on.
        for (timeline, segno, needed) in [
            (1, 9, false),
            (1, 10, true),
            (2, 9, false),
            (2, 11, true),
            (3, 4, false),
            (3, 5, true),
            (4, 6, true),
        ] {
            assert_eq!(
                is_needed(timeline, segno, &starts),
                needed,
                "{timeline} {segno}"
            );
        }
        let size = DEFAULT_SEGMENT_SIZE;
        for (name, segno) in [
            ("00000001000000000000000A", Some(10)),
            ("00000002000000000000000B.partial", Some(11)),
            ("000000010000000000000009.00000028.backup", Some(9)),
            ("00000002.history", None),
        ] {
            let file = WalFile::parse(name).unwrap();
            assert_eq!(judged_segno(&file, name, size), segno, "{name}");
        }
    }
}
