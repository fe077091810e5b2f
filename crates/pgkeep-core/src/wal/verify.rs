//! `verify --wal`: every archived file read back and checked, gaps within a timeline's segments,
//! timelines without their history file, and forks.

use futures::StreamExt;
use serde::Serialize;

use super::branches::branch_records;
use super::fetch::read;
use super::timeline::Archive;
use crate::error::Error;
use crate::repo::Repository;

/// What `verify --wal` found.
#[derive(Debug, Clone, Serialize)]
pub struct WalReport {
    /// Timelines seen, each with its first and last segment and count.
    pub timelines: Vec<TimelineSummary>,
    /// Problems: gaps, damaged files, timelines without their history file.
    pub problems: Vec<String>,
    /// Timeline forks: a parent timeline that kept archiving after a child branched off it.
    pub forks: Vec<String>,
    /// Files read and checked.
    pub checked: usize,
}

/// One timeline in a [`WalReport`].
#[derive(Debug, Clone, Serialize)]
pub struct TimelineSummary {
    /// Timeline.
    pub timeline: u32,
    /// First segment archived.
    pub first: String,
    /// Last segment archived.
    pub last: String,
    /// Number of segments.
    pub segments: usize,
}

/// `verify --wal`: reads back every archived file (checksums) and reports gaps within a timeline's
/// segments and forks (a timeline that kept writing after a newer timeline branched off it).
pub(crate) async fn verify_archive(
    repo: &Repository,
    segment_size: u64,
) -> Result<WalReport, Error> {
    let archive = Archive::load(repo, segment_size).await?;
    let mut problems = Vec::new();
    let mut timelines = Vec::new();
    for (tli, segs) in &archive.segments {
        let (Some(first), Some(last)) = (segs.keys().next(), segs.keys().next_back()) else {
            continue;
        };
        timelines.push(TimelineSummary {
            timeline: *tli,
            first: archive.name(*tli, *first),
            last: archive.name(*tli, *last),
            segments: segs.len(),
        });
        let mut expected = *first;
        for segno in segs.keys() {
            if *segno > expected {
                let missing_to = segno - 1;
                problems.push(if missing_to == expected {
                    format!(
                        "gap on timeline {tli}: {} is missing",
                        archive.name(*tli, expected)
                    )
                } else {
                    format!(
                        "gap on timeline {tli}: {} to {} are missing",
                        archive.name(*tli, expected),
                        archive.name(*tli, missing_to)
                    )
                });
            }
            expected = segno + 1;
        }
    }
    let mut forks = Vec::new();
    for tli in archive.segments.keys() {
        if *tli > 1 && !archive.histories.contains_key(tli) {
            problems.push(format!(
                "timeline {tli} has segments but no {tli:08X}.history: recovery cannot follow it (push the file from that server's pg_wal with `pgkeep wal-push`)"
            ));
        }
    }
    let recorded = branch_records(repo).await?;
    for (fork, tli) in find_forks(&archive, segment_size) {
        match recorded.get(&tli) {
            Some(record) => forks.push(format!(
                "{fork}: timeline {tli} was started on purpose ({}, recorded {})",
                record.cause,
                record.recorded_at.format("%Y-%m-%d %H:%M:%S UTC")
            )),
            None => {
                forks.push(format!(
                    "{fork}: NOT recorded as started on purpose (see problems)"
                ));
                problems.push(format!(
                "{fork}, and no promotion by pgkeep started timeline {tli}: two servers wrote as primary (split brain) unless the branch was made on purpose outside pgkeep\n  fix: make sure only one server writes (stop the other, and rejoin it as a standby); once the branch is known to be deliberate, `pgkeep accept-fork {tli}` records it"
            ));
            }
        }
    }
    let names: Vec<String> = archive
        .segments
        .iter()
        .flat_map(|(tli, segs)| segs.keys().map(|s| archive.name(*tli, *s)))
        .chain(archive.partials.iter().cloned())
        .collect();
    let checked = names.len() + archive.histories.len();
    let damaged: Vec<String> = futures::stream::iter(names)
        .map(|name| async move {
            match read(repo, &name).await {
                Ok(_) => None,
                Err(e) if e.is_corruption() => Some(format!("damaged: {name}: {e}")),
                Err(e) => Some(format!("unreadable: {name}: {e}")),
            }
        })
        .buffered(4)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    problems.extend(damaged);
    Ok(WalReport {
        timelines,
        problems,
        forks,
        checked,
    })
}

/// Every fork in the archive, described, with the timeline that branched off: a parent timeline
/// with segments archived after the segment its child branched in.
fn find_forks(archive: &Archive, segment_size: u64) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for (tli, history) in &archive.histories {
        let Some(last) = history.last() else { continue };
        let switch_seg = last.switch.segno(segment_size);
        if let Some(after) = archive
            .segments
            .get(&last.parent)
            .and_then(|s| s.range(switch_seg + 1..).next())
        {
            out.push((
                format!(
                    "timeline {} branched off timeline {} at {}, and timeline {} kept writing ({} was archived after the switch)",
                    tli,
                    last.parent,
                    last.switch,
                    last.parent,
                    archive.name(last.parent, *after.0)
                ),
                *tli,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::{Lsn, segment_name};
    use crate::settings::Compression;
    use crate::wal::{wal_key, wal_push as push};

    /// A synthetic segment `segno` of `size` bytes whose first page header names `tli` and
    /// `sysid`.
    fn segment(tli: u32, segno: u64, sysid: u64, size: u32) -> Vec<u8> {
        let mut raw = vec![0u8; size as usize];
        raw[2..4].copy_from_slice(&2u16.to_le_bytes()); // XLP_LONG_HEADER
        raw[4..8].copy_from_slice(&tli.to_le_bytes());
        raw[8..16].copy_from_slice(&(segno * u64::from(size)).to_le_bytes());
        raw[24..32].copy_from_slice(&sysid.to_le_bytes());
        raw[32..36].copy_from_slice(&size.to_le_bytes());
        raw
    }

    #[tokio::test]
    async fn verify_archive_reports_gaps_forks_and_missing_history() {
        const SIZE: u32 = 1024 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::new(
            std::sync::Arc::new(crate::storage::LocalStorage::new(dir.path().join("repo"))),
            "main",
        );
        let files = dir.path().join("pg_wal");
        std::fs::create_dir(&files).unwrap();
        let push_file = |name: String, bytes: Vec<u8>| {
            let path = files.join(&name);
            std::fs::write(&path, bytes).unwrap();
            let repo = &repo;
            async move { push(repo, &path, Compression::default()).await.unwrap() }
        };
        // Timeline 1: segments 1..=5; timeline 2 branched in segment 3 and has 3 and 4.
        for segno in 1..=5 {
            push_file(
                segment_name(1, segno, u64::from(SIZE)),
                segment(1, segno, 42, SIZE),
            )
            .await;
        }
        for segno in 3..=4 {
            push_file(
                segment_name(2, segno, u64::from(SIZE)),
                segment(1, segno, 42, SIZE),
            )
            .await;
        }
        // Timeline 3 has a segment but no history file.
        push_file(segment_name(3, 9, u64::from(SIZE)), segment(3, 9, 42, SIZE)).await;
        let switch = Lsn(3 * u64::from(SIZE) + 100);
        push_file(
            "00000002.history".into(),
            format!("1\t{switch}\tbefore the drop\n").into_bytes(),
        )
        .await;

        // Timeline 1 kept writing after timeline 2 branched off, and nothing recorded timeline 2
        // as deliberate: a split brain, a problem.
        let report = verify_archive(&repo, u64::from(SIZE)).await.unwrap();
        assert_eq!(report.checked, 9, "{report:?}");
        assert_eq!(report.forks.len(), 1, "{report:?}");
        assert!(report.forks[0].contains("NOT recorded"), "{report:?}");
        assert_eq!(report.problems.len(), 2, "{report:?}");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("split brain") && p.contains("accept-fork 2")),
            "{report:?}"
        );
        // Recorded as deliberate, the fork is a note.
        crate::wal::record_branch(&repo, 2, crate::wal::BranchCause::Accepted)
            .await
            .unwrap();
        let report = verify_archive(&repo, u64::from(SIZE)).await.unwrap();
        assert_eq!(report.forks.len(), 1, "{report:?}");
        assert!(
            report.forks[0].contains("timeline 2 branched off timeline 1"),
            "{report:?}"
        );
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(
            report.problems[0].contains("00000003.history"),
            "{report:?}"
        );

        // A segment lost from the middle of timeline 1 is a gap.
        let lost = segment_name(1, 2, u64::from(SIZE));
        repo.storage()
            .delete(&wal_key(&repo, &lost).unwrap())
            .await
            .unwrap();
        let report = verify_archive(&repo, u64::from(SIZE)).await.unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains(&lost) && p.contains("gap")),
            "{report:?}"
        );
    }
}
