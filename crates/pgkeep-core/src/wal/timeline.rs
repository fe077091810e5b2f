//! The archive as a whole: its segments by timeline, the timeline history files, and the chain of
//! segments recovery needs from a backup's start along a timeline's history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::fetch::read;
use crate::error::Error;
use crate::pg::{Lsn, WalFile, segment_name};
use crate::repo::Repository;
use crate::storage::ObjectMeta;

/// One line of a timeline history file: timeline `parent` ended at `switch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Switch {
    /// The timeline that ended.
    pub parent: u32,
    /// Where the next timeline branched off.
    pub switch: Lsn,
}

/// Parses a `.history` file: the ancestors of its timeline, oldest first.
pub fn parse_history(text: &str) -> Vec<Switch> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut fields = line.split_whitespace();
            let parent = fields.next()?.parse().ok()?;
            let switch = Lsn::parse(fields.next()?)?;
            Some(Switch { parent, switch })
        })
        .collect()
}

/// Everything in the WAL archive, by timeline.
#[derive(Debug, Default)]
pub struct Archive {
    /// Full segments: timeline → segment number → object.
    pub segments: BTreeMap<u32, BTreeMap<u64, ObjectMeta>>,
    /// History files: timeline → its ancestors (fetched and parsed).
    pub histories: BTreeMap<u32, Vec<Switch>>,
    /// `.partial` segment names.
    pub partials: Vec<String>,
    /// The segment size used to number segments.
    pub segment_size: u64,
}

impl Archive {
    /// Lists the archive (one listing) and reads every history file.
    pub async fn load(repo: &Repository, segment_size: u64) -> Result<Archive, Error> {
        let prefix = repo.key("wal/");
        let mut archive = Archive {
            segment_size,
            ..Archive::default()
        };
        let mut history_names = Vec::new();
        for meta in repo.storage().list(&prefix).await? {
            let Some(name) = meta
                .key
                .rsplit('/')
                .next()
                .and_then(|n| n.strip_suffix(".zst"))
                .map(str::to_string)
            else {
                continue;
            };
            match WalFile::parse(&name) {
                Some(file @ WalFile::Segment { .. }) => {
                    let segno = file.segno(segment_size).expect("a segment");
                    archive
                        .segments
                        .entry(file.timeline())
                        .or_default()
                        .insert(segno, meta);
                }
                Some(WalFile::Partial { .. }) => archive.partials.push(name),
                Some(WalFile::History { tli }) => history_names.push((tli, name)),
                _ => {}
            }
        }
        let histories: Vec<(u32, Vec<Switch>)> = futures::stream::iter(history_names)
            .map(|(tli, name)| async move {
                let raw = read(repo, &name).await?;
                Ok::<_, Error>((tli, parse_history(&String::from_utf8_lossy(&raw))))
            })
            .buffered(8)
            .try_collect()
            .await?;
        archive.histories = histories.into_iter().collect();
        Ok(archive)
    }

    /// The newest timeline with anything archived.
    pub fn latest_timeline(&self) -> Option<u32> {
        let segs = self.segments.keys().next_back().copied();
        let hist = self.histories.keys().next_back().copied();
        segs.max(hist)
    }

    /// The timelines that lead to `tli`, oldest first, each with the location where it ended
    /// (`None` for `tli` itself).
    pub fn path_to(&self, tli: u32) -> Vec<(u32, Option<Lsn>)> {
        let mut path: Vec<(u32, Option<Lsn>)> = self
            .histories
            .get(&tli)
            .map(|h| h.iter().map(|s| (s.parent, Some(s.switch))).collect())
            .unwrap_or_default();
        path.push((tli, None));
        path
    }

    /// The segments on the path to `tli`, newest first: each ancestor's up to where it ended.
    pub fn newest_on_path(&self, tli: u32) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        for (t, ends_at) in self.path_to(tli).into_iter().rev() {
            let end = ends_at.map_or(u64::MAX, |switch| switch.segno(self.segment_size));
            if let Some(segs) = self.segments.get(&t) {
                out.extend(segs.range(..end).rev().map(|(segno, _)| (t, *segno)));
            }
        }
        out
    }

    /// The segment name of `segno` on `tli`.
    pub fn name(&self, tli: u32, segno: u64) -> String {
        segment_name(tli, segno, self.segment_size)
    }

    /// Walks the segments recovery needs, from `start` (on timeline `from_tli`) along the path to
    /// `to_tli`, up to `end` (`None`: as far as the archive goes on `to_tli`). Returns the segments
    /// in order, or the first missing one.
    pub fn chain(
        &self,
        from_tli: u32,
        start: u64,
        to_tli: u32,
        end: Option<ChainEnd>,
    ) -> Result<Vec<ChainSegment>, ChainBreak> {
        let path = self.path_to(to_tli);
        let Some(first) = path.iter().position(|(tli, _)| *tli == from_tli) else {
            return Err(ChainBreak::NotAncestor {
                tli: from_tli,
                target: to_tli,
                path: path.iter().map(|(t, _)| *t).collect(),
            });
        };
        let mut out = Vec::new();
        let mut segno = start;
        for (tli, ends_at) in &path[first..] {
            let last = match (ends_at, end) {
                // The segment holding the switch point is read from the next timeline.
                (Some(switch), _) => switch.segno(self.segment_size).checked_sub(1),
                (None, Some(ChainEnd::Segment(s))) => Some(s),
                (None, _) => self
                    .segments
                    .get(tli)
                    .and_then(|s| s.keys().next_back().copied()),
            };
            let last = match end {
                Some(ChainEnd::Segment(s)) => last.map(|l| l.min(s)),
                _ => last,
            };
            while last.is_some_and(|last| segno <= last) {
                let Some(meta) = self.segments.get(tli).and_then(|s| s.get(&segno)) else {
                    return Err(ChainBreak::Missing {
                        name: self.name(*tli, segno),
                    });
                };
                out.push(ChainSegment {
                    tli: *tli,
                    segno,
                    name: self.name(*tli, segno),
                    archived_at: meta.modified,
                });
                match end {
                    Some(ChainEnd::Segment(s)) if segno == s => return Ok(out),
                    Some(ChainEnd::ArchivedAt(t)) if meta.modified.is_some_and(|m| m >= t) => {
                        return Ok(out);
                    }
                    _ => {}
                }
                segno += 1;
            }
            if let Some(switch) = ends_at {
                segno = segno.max(switch.segno(self.segment_size));
            }
        }
        if let Some(ChainEnd::ArchivedAt(time)) = end {
            return Err(ChainBreak::TimeNotArchived { time });
        }
        Ok(out)
    }
}

/// Where a chain of segments must reach.
#[derive(Debug, Clone, Copy)]
pub enum ChainEnd {
    /// This segment number (on whatever timeline the path is on there).
    Segment(u64),
    /// The first segment archived at or after this time.
    ArchivedAt(DateTime<Utc>),
}

/// One segment of a chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainSegment {
    /// Timeline.
    pub tli: u32,
    /// Segment number.
    pub segno: u64,
    /// File name.
    pub name: String,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
}

/// Why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// A segment the chain needs is not in the archive.
    Missing {
        /// Its name.
        name: String,
    },
    /// The backup's timeline is not an ancestor of the target timeline.
    NotAncestor {
        /// The backup's timeline.
        tli: u32,
        /// The target timeline.
        target: u32,
        /// The target's ancestry.
        path: Vec<u32>,
    },
    /// Nothing was archived at or after the target time.
    TimeNotArchived {
        /// The target time.
        time: DateTime<Utc>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::DEFAULT_SEGMENT_SIZE;

    #[test]
    fn history_files() {
        let text = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000A0\tbefore 2026-11-25\n";
        assert_eq!(
            parse_history(text),
            vec![
                Switch {
                    parent: 1,
                    switch: Lsn(0x300_0000)
                },
                Switch {
                    parent: 2,
                    switch: Lsn(0x50_00A0)
                }
            ]
        );
    }

    fn meta(at: i64) -> ObjectMeta {
        ObjectMeta {
            key: String::new(),
            size: 1,
            modified: DateTime::from_timestamp(at, 0),
        }
    }

    #[test]
    fn chains_follow_timelines_and_find_gaps() {
        let size = DEFAULT_SEGMENT_SIZE;
        let mut archive = Archive {
            segment_size: size,
            ..Archive::default()
        };
        // Timeline 1: segments 2..=6; timeline 2 branched at 0/5000100 (segment 5): 5..=7.
        archive
            .segments
            .insert(1, (2..=6).map(|s| (s, meta(s as i64 * 10))).collect());
        archive
            .segments
            .insert(2, (5..=7).map(|s| (s, meta(100 + s as i64))).collect());
        archive.histories.insert(
            2,
            vec![Switch {
                parent: 1,
                switch: Lsn(0x500_0100),
            }],
        );
        let chain = archive.chain(1, 2, 2, None).unwrap();
        let names: Vec<(u32, u64)> = chain.iter().map(|c| (c.tli, c.segno)).collect();
        assert_eq!(names, [(1, 2), (1, 3), (1, 4), (2, 5), (2, 6), (2, 7)]);
        // Staying on timeline 1.
        assert_eq!(archive.chain(1, 2, 1, None).unwrap().len(), 5);
        // Up to a segment.
        assert_eq!(
            archive
                .chain(1, 2, 2, Some(ChainEnd::Segment(5)))
                .unwrap()
                .len(),
            4
        );
        // Up to a time: the first segment of the path archived at or after it.
        assert_eq!(
            archive
                .chain(
                    1,
                    2,
                    1,
                    Some(ChainEnd::ArchivedAt(meta(35).modified.unwrap()))
                )
                .unwrap()
                .len(),
            3
        );
        assert!(matches!(
            archive.chain(
                1,
                2,
                1,
                Some(ChainEnd::ArchivedAt(meta(1000).modified.unwrap()))
            ),
            Err(ChainBreak::TimeNotArchived { .. })
        ));
        // A gap.
        archive.segments.get_mut(&1).unwrap().remove(&3);
        assert_eq!(
            archive.chain(1, 2, 2, None).unwrap_err(),
            ChainBreak::Missing {
                name: "000000010000000000000003".into()
            }
        );
        // Newest first along the path: timeline 2's, then timeline 1's before the switch.
        assert_eq!(
            archive.newest_on_path(2),
            [(2, 7), (2, 6), (2, 5), (1, 4), (1, 2)]
        );
        // Not an ancestor.
        assert!(matches!(
            archive.chain(3, 2, 2, None),
            Err(ChainBreak::NotAncestor { .. })
        ));
    }
}
