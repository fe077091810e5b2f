//! `wal-push` (archive_command): stores a segment, `.partial`, `.history` or `.backup` file and
//! returns only once it is durable. The same content pushed again succeeds (PostgreSQL retries
//! after a crash); different content under the same name is refused and the stored object is left
//! alone. A segment must belong to this repository's cluster (its page header names it).

use std::path::Path;

use super::codec::{decode, encode};
use super::{key_of, not_wal_file};
use crate::error::{Error, SegmentProblem, WalError};
use crate::pg::WalFile;
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

/// The fields of a segment's first page header that identify the cluster.
struct SegmentHeader {
    tli: u32,
    system_identifier: u64,
    segment_size: u32,
}

/// Reads `XLogLongPageHeaderData` at the start of a segment.
fn segment_header(raw: &[u8]) -> Option<SegmentHeader> {
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
    if let Some(identity) = repo.identity().await?
        && identity.system_identifier != header.system_identifier.to_string()
    {
        return Err(Error::ClusterMismatch {
            repo: repo.storage().url(),
            cluster: repo.cluster().to_string(),
            stored_system_id: identity.system_identifier,
            stored_major: identity.pg_major,
            actual_system_id: header.system_identifier.to_string(),
            actual_major: identity.pg_major,
        });
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
    if matches!(file, WalFile::Segment { .. } | WalFile::Partial { .. }) {
        check_segment(repo, &name, file.timeline(), &raw).await?;
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
