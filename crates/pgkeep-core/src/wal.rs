//! WAL archiving: `wal-push` (archive_command), `wal-fetch` (restore_command), and reading the
//! archive as a whole (timelines, gaps, forks) for restores, `list` and `verify --wal`.
//!
//! Files are stored at `<cluster>/wal/<timeline>/<name>.zst`, where `<timeline>` is the eight hex
//! digits of the file's own timeline. Each object is one zstd skippable frame holding a small header
//! (the original size and its sha256) followed by one ordinary zstd frame with zstd's content
//! checksum, so `zstd -d` alone can still read it and `wal-fetch` can prove what it returns.
//!
//! The rules PostgreSQL depends on:
//! - `wal-push` returns only once the object is durable; the same content pushed again succeeds
//!   (PostgreSQL retries after a crash), different content under the same name is refused and the
//!   stored object is left alone.
//! - `wal-fetch` reports "not found" ([`Fetched::NotFound`]) only when the archive really has no such
//!   file; every other failure is an error, which the CLI turns into an exit code above 125 so that
//!   PostgreSQL stops instead of ending recovery early.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::pipeline::Compression;
use crate::repo::Repository;
use crate::storage::{ObjectMeta, PutMode, StorageError};

/// The WAL segment size unless a backup recorded another one.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// A write-ahead log location, `X/Y` in PostgreSQL's notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `16/B374D848`.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }

    /// The segment number holding this location.
    pub fn segno(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let text = String::deserialize(d)?;
        Lsn::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("not an LSN: {text}")))
    }
}

/// The name of segment `segno` of timeline `tli`.
pub fn segment_name(tli: u32, segno: u64, segment_size: u64) -> String {
    let per_id = 0x1_0000_0000 / segment_size;
    format!("{tli:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// The kinds of file PostgreSQL archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalFile {
    /// A full segment, `000000010000000A000000FF`.
    Segment {
        /// Timeline.
        tli: u32,
        /// Segment number (`log * segments_per_id + seg`; needs the segment size to compute, so
        /// kept as the two name halves).
        log: u32,
        /// Low half of the name.
        seg: u32,
    },
    /// The last, incomplete segment of a timeline that a promotion ended, `<segment>.partial`.
    Partial {
        /// Timeline.
        tli: u32,
        /// The segment's name without `.partial`.
        segment: String,
    },
    /// A timeline history file, `00000002.history`.
    History {
        /// The timeline it describes.
        tli: u32,
    },
    /// A backup history file, `<segment>.<offset>.backup`.
    BackupHistory {
        /// Timeline.
        tli: u32,
    },
}

fn hex8(text: &str) -> Option<u32> {
    (text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(text, 16).ok())
        .flatten()
}

fn is_segment_name(text: &str) -> bool {
    text.len() == 24 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl WalFile {
    /// Recognizes a file name PostgreSQL archives or asks for; `None` for anything else.
    pub fn parse(name: &str) -> Option<WalFile> {
        if is_segment_name(name) {
            return Some(WalFile::Segment {
                tli: hex8(&name[..8])?,
                log: hex8(&name[8..16])?,
                seg: hex8(&name[16..])?,
            });
        }
        if let Some(segment) = name.strip_suffix(".partial")
            && is_segment_name(segment)
        {
            return Some(WalFile::Partial {
                tli: hex8(&segment[..8])?,
                segment: segment.to_string(),
            });
        }
        if let Some(tli) = name.strip_suffix(".history") {
            return Some(WalFile::History { tli: hex8(tli)? });
        }
        if let Some(rest) = name.strip_suffix(".backup")
            && let Some((segment, offset)) = rest.split_once('.')
            && is_segment_name(segment)
            && hex8(offset).is_some()
        {
            return Some(WalFile::BackupHistory {
                tli: hex8(&segment[..8])?,
            });
        }
        None
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        match self {
            WalFile::Segment { tli, .. }
            | WalFile::Partial { tli, .. }
            | WalFile::History { tli }
            | WalFile::BackupHistory { tli } => *tli,
        }
    }

    /// For a full segment, its number.
    pub fn segno(&self, segment_size: u64) -> Option<u64> {
        match self {
            WalFile::Segment { log, seg, .. } => {
                Some(u64::from(*log) * (0x1_0000_0000 / segment_size) + u64::from(*seg))
            }
            _ => None,
        }
    }
}

fn bad_name(name: &str) -> Error {
    Error::Wal {
        name: name.to_string(),
        problem: "is not a WAL segment, .partial, .history or .backup file name".into(),
        fix: "use `pgkeep wal-push %p` as archive_command and `pgkeep wal-fetch %f %p` as restore_command".into(),
    }
}

/// The repository key of archived file `name`.
pub fn wal_key(repo: &Repository, name: &str) -> Result<String, Error> {
    let file = WalFile::parse(name).ok_or_else(|| bad_name(name))?;
    Ok(repo.key(&format!("wal/{:08X}/{name}.zst", file.timeline())))
}

/// Skippable-frame magic number used for pgkeep's header (zstd reserves 0x184D2A50..=0x184D2A5F).
const HEADER_MAGIC: u32 = 0x184D_2A5E;
const HEADER_TAG: &[u8; 8] = b"PGKWAL01";
const HEADER_LEN: usize = 8 + 8 + 8 + 32;

/// Compresses `raw` into an archive object: header frame (size, sha256), then a zstd frame.
fn encode(raw: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 4 + HEADER_LEN);
    out.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
    out.extend_from_slice(&((HEADER_LEN - 8) as u32).to_le_bytes());
    out.extend_from_slice(HEADER_TAG);
    out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(raw));
    let mut encoder = zstd::stream::Encoder::new(out, compression.level)?;
    encoder.include_checksum(true)?;
    encoder.include_contentsize(true)?;
    encoder.set_pledged_src_size(Some(raw.len() as u64))?;
    std::io::Write::write_all(&mut encoder, raw)?;
    encoder.finish()
}

/// Decodes an archive object, checking the size and sha256 recorded in its header.
fn decode(key: &str, stored: &[u8]) -> Result<Vec<u8>, Error> {
    let corrupt = |problem: String| {
        Error::BadRepositoryFile {
        key: key.to_string(),
        problem,
        fix: "the archived file is damaged; do not recover past it: take a new base backup, and run `pgkeep verify --wal` to find other damage".into(),
    }
    };
    if stored.len() < HEADER_LEN
        || stored[..4] != HEADER_MAGIC.to_le_bytes()
        || &stored[8..16] != HEADER_TAG
    {
        return Err(corrupt("has no pgkeep WAL header".into()));
    }
    let size = u64::from_le_bytes(stored[16..24].try_into().expect("8 bytes"));
    let expected = hex(&stored[24..56]);
    let raw = zstd::stream::decode_all(&stored[HEADER_LEN..])
        .map_err(|e| corrupt(format!("cannot be decompressed ({e})")))?;
    let actual = hex(&Sha256::digest(&raw));
    if raw.len() as u64 != size || actual != expected {
        return Err(Error::ChecksumMismatch {
            key: key.to_string(),
            expected,
            actual,
            expected_size: size,
            actual_size: raw.len() as u64,
        });
    }
    Ok(raw)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
    const FIX: &str = "push only files from the server's pg_wal directory (archive_command = 'pgkeep wal-push %p')";
    let refuse = |problem: String| Error::Wal {
        name: name.to_string(),
        problem,
        fix: FIX.into(),
    };
    let header = segment_header(raw).ok_or_else(|| refuse("has no WAL segment header".into()))?;
    if u64::from(header.segment_size) != raw.len() as u64 {
        return Err(refuse(format!(
            "is {} bytes but its header says segments are {} bytes (a truncated or foreign file)",
            raw.len(),
            header.segment_size
        )));
    }
    // The first page's timeline can be older than the name's (a new timeline's first segment is a
    // copy of the old one), never newer.
    if header.tli > timeline {
        return Err(refuse(format!(
            "its header is from timeline {} but its name says timeline {timeline}",
            header.tli
        )));
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
pub async fn push(
    repo: &Repository,
    path: &Path,
    compression: Compression,
) -> Result<Pushed, Error> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad_name(&path.display().to_string()))?
        .to_string();
    let file = WalFile::parse(&name).ok_or_else(|| bad_name(&name))?;
    let key = wal_key(repo, &name)?;
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
                Ok(_) => Err(Error::WalConflict {
                    name,
                    key,
                    why: "a different file".into(),
                }),
                Err(e) => Err(Error::WalConflict {
                    name,
                    key,
                    why: format!("a file that cannot be read ({e})"),
                }),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// What `wal-fetch` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Written to the destination; its size.
    Restored(u64),
    /// The archive has no such file.
    NotFound,
}

/// `wal-fetch`: writes archived file `name` to `dest` atomically (a temporary file in the same
/// directory, then a rename), after checking its size and sha256.
pub async fn fetch(repo: &Repository, name: &str, dest: &Path) -> Result<Fetched, Error> {
    let key = wal_key(repo, name)?;
    let stored = match repo.storage().get_bytes(&key).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            // "Not found" ends recovery: say it only when the repository does hold this cluster.
            // A backup records cluster.json; before any backup, archived WAL is the evidence.
            if repo.identity().await?.is_none()
                && repo.storage().list(&repo.key("wal/")).await?.is_empty()
            {
                return Err(Error::Wal {
                    name: name.to_string(),
                    problem: format!(
                        "{} holds nothing for cluster `{}`: a wrong --repo, --cluster or --config, or a repository that is not mounted",
                        repo.storage().url(),
                        repo.cluster()
                    ),
                    fix: "fix restore_command (`pgkeep list` with the same flags, as the server's user, must show the backups); PostgreSQL stops instead of taking this for the end of the archive".into(),
                });
            }
            return Ok(Fetched::NotFound);
        }
        Err(e) => return Err(e.into()),
    };
    let raw = tokio::task::spawn_blocking({
        let key = key.clone();
        move || decode(&key, &stored)
    })
    .await
    .expect("decoding does not panic")?;
    let output = |source: std::io::Error| Error::Output {
        key: key.clone(),
        source: std::io::Error::new(source.kind(), format!("{}: {source}", dest.display())),
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    let tmp = dir.join(format!(
        ".pgkeep-fetch-{file_name}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let write = async {
        tokio::fs::write(&tmp, &raw).await?;
        tokio::fs::rename(&tmp, dest).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(output(e));
    }
    Ok(Fetched::Restored(raw.len() as u64))
}

/// Reads and checks one archived file (for history files and `verify --wal`).
pub async fn read(repo: &Repository, name: &str) -> Result<Vec<u8>, Error> {
    let key = wal_key(repo, name)?;
    let stored = repo.storage().get_bytes(&key).await?;
    tokio::task::spawn_blocking(move || decode(&key, &stored))
        .await
        .expect("decoding does not panic")
}

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
pub async fn verify_archive(repo: &Repository, segment_size: u64) -> Result<WalReport, Error> {
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
    for (tli, history) in &archive.histories {
        if let Some(last) = history.last() {
            let switch_seg = last.switch.segno(segment_size);
            if let Some(after) = archive
                .segments
                .get(&last.parent)
                .and_then(|s| s.range(switch_seg + 1..).next())
            {
                forks.push(format!(
                    "timeline {} branched off timeline {} at {}, and timeline {} kept writing ({} was archived after the switch): expected after a point-in-time restore that was promoted beside the old primary; split brain if both still serve writes",
                    tli,
                    last.parent,
                    last.switch,
                    last.parent,
                    archive.name(last.parent, *after.0)
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
                Err(e) if e.is_corruption() || matches!(e, Error::BadRepositoryFile { .. }) => {
                    Some(format!("damaged: {name}: {e}"))
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trip() {
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        assert_eq!(Lsn::parse("nope"), None);
    }

    #[test]
    fn names() {
        let seg = WalFile::parse("000000020000000A000000FF").unwrap();
        assert_eq!(seg.timeline(), 2);
        let segno = seg.segno(DEFAULT_SEGMENT_SIZE).unwrap();
        assert_eq!(segno, 0xA * 256 + 0xFF);
        assert_eq!(
            segment_name(2, segno, DEFAULT_SEGMENT_SIZE),
            "000000020000000A000000FF"
        );
        assert_eq!(
            segment_name(
                1,
                Lsn::parse("0/3000028").unwrap().segno(DEFAULT_SEGMENT_SIZE),
                DEFAULT_SEGMENT_SIZE
            ),
            "000000010000000000000003"
        );
        assert!(matches!(
            WalFile::parse("000000010000000000000003.partial"),
            Some(WalFile::Partial { tli: 1, .. })
        ));
        assert_eq!(
            WalFile::parse("00000003.history"),
            Some(WalFile::History { tli: 3 })
        );
        assert_eq!(
            WalFile::parse("000000010000000000000002.00000028.backup"),
            Some(WalFile::BackupHistory { tli: 1 })
        );
        for bad in [
            "RECOVERYXLOG",
            "0000000100000000000000",
            "../etc/passwd",
            "00000001.histor",
        ] {
            assert_eq!(WalFile::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn encode_decode_and_damage() {
        let raw: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let stored = encode(&raw, Compression::default()).unwrap();
        assert!(stored.len() < raw.len());
        assert_eq!(decode("k", &stored).unwrap(), raw);
        // zstd itself reads it (the header is a skippable frame).
        assert_eq!(zstd::stream::decode_all(&stored[..]).unwrap(), raw);
        let mut flipped = stored.clone();
        flipped[30] ^= 1; // inside the recorded sha256
        assert!(matches!(
            decode("k", &flipped),
            Err(Error::ChecksumMismatch { .. })
        ));
        assert!(decode("k", &stored[..stored.len() - 5]).is_err());
    }

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

    /// A synthetic segment of `size` bytes whose first page header names `tli` and `sysid`.
    fn segment(tli: u32, sysid: u64, size: u32) -> Vec<u8> {
        let mut raw = vec![0u8; size as usize];
        raw[2..4].copy_from_slice(&2u16.to_le_bytes()); // XLP_LONG_HEADER
        raw[4..8].copy_from_slice(&tli.to_le_bytes());
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
                segment(1, 42, SIZE),
            )
            .await;
        }
        for segno in 3..=4 {
            push_file(
                segment_name(2, segno, u64::from(SIZE)),
                segment(1, 42, SIZE),
            )
            .await;
        }
        // Timeline 3 has a segment but no history file.
        push_file(segment_name(3, 9, u64::from(SIZE)), segment(3, 42, SIZE)).await;
        let switch = Lsn(3 * u64::from(SIZE) + 100);
        push_file(
            "00000002.history".into(),
            format!("1\t{switch}\tbefore the drop\n").into_bytes(),
        )
        .await;

        let report = verify_archive(&repo, u64::from(SIZE)).await.unwrap();
        assert_eq!(report.checked, 9, "{report:?}");
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
        // Not an ancestor.
        assert!(matches!(
            archive.chain(3, 2, 2, None),
            Err(ChainBreak::NotAncestor { .. })
        ));
    }
}
