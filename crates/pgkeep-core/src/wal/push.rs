//! `wal-push` (archive_command): stores a segment, `.partial`, `.history` or `.backup` file and
//! returns only once it is durable. The same content pushed again succeeds (PostgreSQL retries
//! after a crash); different content under the same name is refused and the stored object is left
//! alone. A segment must belong to this repository's cluster (its page header names it).

use std::path::Path;

use super::codec::{decode, encode};
use super::identity::check_wal_identity;
use super::{key_of, not_wal_file};
use crate::error::{Error, SegmentProblem, WalError};
use crate::pg::{Lsn, WalFile, segment_name};
use crate::repo::Repository;
use crate::settings::Compression;
use crate::storage::{PutMode, StorageError};

/// What `wal-push` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The file is now stored.
    Stored,
    /// The archive already held exactly this content.
    AlreadyThere,
}

/// The fields of a segment's first page header that identify the cluster and the place.
pub(super) struct SegmentHeader {
    /// `xlp_tli`.
    pub(super) tli: u32,
    /// `xlp_pageaddr`: where in the WAL the segment starts.
    pub(super) page_address: u64,
    /// `xlp_sysid`.
    pub(super) system_identifier: u64,
    /// `xlp_seg_size`.
    pub(super) segment_size: u32,
}

/// Reads `XLogLongPageHeaderData` at the start of a segment.
pub(super) fn segment_header(raw: &[u8]) -> Option<SegmentHeader> {
    let u32_at = |at: usize| {
        raw.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |at: usize| {
        raw.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    // xlp_info must carry XLP_LONG_HEADER (0x0002) on a segment's first page.
    let info = raw.get(2..4).map(|b| u16::from_le_bytes([b[0], b[1]]))?;
    if info & 0x0002 == 0 {
        return None;
    }
    Some(SegmentHeader {
        tli: u32_at(4)?,
        page_address: u64_at(8)?,
        system_identifier: u64_at(24)?,
        segment_size: u32_at(32)?,
    })
}

/// Checks that a segment belongs to this repository's cluster, so that a second server pointed at
/// the same repository and cluster name cannot mix its WAL in.
async fn check_segment(
    repo: &Repository,
    name: &str,
    timeline: u32,
    raw: &[u8],
) -> Result<(), Error> {
    let refuse = |problem| {
        Error::Wal(WalError::BadSegment {
            name: name.to_string(),
            problem,
        })
    };
    let header = segment_header(raw).ok_or_else(|| refuse(SegmentProblem::NoHeader))?;
    if u64::from(header.segment_size) != raw.len() as u64 {
        return Err(refuse(SegmentProblem::WrongSize {
            size: raw.len() as u64,
            header: header.segment_size,
        }));
    }
    // The first page's timeline can be older than the name's (a new timeline's first segment is a
    // copy of the old one), never newer.
    if header.tli > timeline {
        return Err(refuse(SegmentProblem::NewerTimeline {
            header: header.tli,
            name: timeline,
        }));
    }
    // The page address says which segment this is: a renamed file is refused.
    let segment_size = u64::from(header.segment_size);
    if segment_size > 0 && header.page_address % segment_size == 0 {
        let named = &name[8..24];
        let is = segment_name(timeline, header.page_address / segment_size, segment_size);
        if &is[8..] != named {
            return Err(refuse(SegmentProblem::WrongAddress { header: is }));
        }
    } else {
        return Err(refuse(SegmentProblem::NoHeader));
    }
    check_wal_identity(repo, &header.system_identifier.to_string()).await
}

/// Checks that a `.history` file of timeline `timeline` is one: text lines of a parent timeline,
/// the LSN where it ended and a reason, the parents ascending and older than `timeline`.
fn check_history(name: &str, timeline: u32, raw: &[u8]) -> Result<(), Error> {
    let refuse = |problem: String| {
        Error::Wal(WalError::BadHistory {
            name: name.to_string(),
            problem,
        })
    };
    let text = std::str::from_utf8(raw).map_err(|_| refuse("it is not text".to_string()))?;
    let mut last_parent = 0;
    let mut entries = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let parent: Option<u32> = fields.next().and_then(|f| f.parse().ok());
        let switch = fields.next().and_then(Lsn::parse);
        match (parent, switch) {
            (Some(parent), Some(_)) if parent > last_parent && parent < timeline => {
                last_parent = parent;
                entries += 1;
            }
            _ => {
                return Err(refuse(format!(
                    "line {} is not `<parent timeline> <LSN> <reason>` with parents ascending below {timeline}: {line:?}",
                    n + 1
                )));
            }
        }
    }
    if entries == 0 || timeline < 2 {
        return Err(refuse(format!(
            "it names no parent timeline (timeline {timeline} must have at least one)"
        )));
    }
    Ok(())
}

/// `wal-push`: stores the file at `path` (a segment, `.partial`, `.history` or `.backup` file) and
/// returns once it is durable.
pub async fn wal_push(
    repo: &Repository,
    path: &Path,
    compression: Compression,
) -> Result<Pushed, Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| not_wal_file(&path.display().to_string()))?
        .to_string();
    let file = WalFile::parse(&name).ok_or_else(|| not_wal_file(&name))?;
    let key = key_of(repo, &file, &name);
    let raw = tokio::fs::read(path).await.map_err(|source| Error::Input {
        key: key.clone(),
        source: std::io::Error::new(source.kind(), format!("{}: {source}", path.display())),
    })?;
    match file {
        WalFile::Segment { .. } | WalFile::Partial { .. } => {
            check_segment(repo, &name, file.timeline(), &raw).await?;
        }
        WalFile::History { tli } => check_history(&name, tli, &raw)?,
        WalFile::BackupHistory { .. } => {}
    }
    // The segment goes to the compression thread and comes back, for the comparison below.
    let (encoded, raw) = tokio::task::spawn_blocking(move || (encode(&raw, compression), raw))
        .await
        .expect("compression does not panic");
    let encoded = encoded.map_err(|source| Error::Compress {
        key: key.clone(),
        source,
    })?;
    match repo
        .storage()
        .put_bytes(&key, &encoded, PutMode::Create)
        .await
    {
        Ok(_) => Ok(Pushed::Stored),
        Err(StorageError::AlreadyExists { .. }) => {
            let stored = repo.storage().get_bytes(&key).await?;
            match decode(&key, &stored) {
                Ok(existing) if existing == raw => Ok(Pushed::AlreadyThere),
                Ok(_) => Err(Error::Wal(WalError::Conflict {
                    name,
                    key,
                    unreadable: None,
                })),
                Err(e) => Err(Error::Wal(WalError::Conflict {
                    name,
                    key,
                    unreadable: Some(Box::new(e)),
                })),
            }
        }
        Err(e) => Err(e.into()),
    }
}
