//! Refusals of `wal-push` and `wal-fetch`, and damaged archived files.

use std::fmt;

/// Why a file offered to `wal-push` is not a segment of this cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentProblem {
    /// Its first page has no long page header.
    NoHeader,
    /// Its size is not the segment size its header names.
    WrongSize {
        /// The file's size.
        size: u64,
        /// The segment size in its header.
        header: u32,
    },
    /// Its header says it starts at another place in the WAL than its name says.
    WrongAddress {
        /// The segment its header's page address names.
        header: String,
    },
    /// Its header names a newer timeline than its file name.
    NewerTimeline {
        /// The header's timeline.
        header: u32,
        /// The name's timeline.
        name: u32,
    },
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentProblem::NoHeader => f.write_str("has no WAL segment header"),
            SegmentProblem::WrongSize { size, header } => write!(
                f,
                "is {size} bytes but its header says segments are {header} bytes (a truncated or foreign file)"
            ),
            SegmentProblem::WrongAddress { header } => write!(
                f,
                "its header says it is segment {header} (a renamed or foreign file)"
            ),
            SegmentProblem::NewerTimeline { header, name } => write!(
                f,
                "its header is from timeline {header} but its name says timeline {name}"
            ),
        }
    }
}

/// What is wrong with an archived file's stored bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Damage {
    /// The object does not start with pgkeep's header frame.
    NoHeader,
    /// The compressed bytes do not decode.
    Undecodable(std::io::Error),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::NoHeader => f.write_str("has no pgkeep WAL header"),
            Damage::Undecodable(e) => write!(f, "cannot be decompressed ({e})"),
        }
    }
}

/// `wal-push` or `wal-fetch` refused a file, or the archive holds a damaged one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A name that is not a WAL file PostgreSQL archives.
    #[error(
        "{name}: is not a WAL segment, .partial, .history or .backup file name\n  fix: use `pgkeep wal-push %p` as archive_command and `pgkeep wal-fetch %f %p` as restore_command"
    )]
    NotWalFile {
        /// The name given.
        name: String,
    },

    /// A segment whose content does not fit its name.
    #[error(
        "{name}: {problem}\n  fix: push only files from the server's pg_wal directory (archive_command = 'pgkeep wal-push %p')"
    )]
    BadSegment {
        /// The file name.
        name: String,
        /// What is wrong.
        problem: SegmentProblem,
    },

    /// `accept-fork` of a timeline the archive has no history file of.
    #[error(
        "timeline {timeline} has no history file in the archive ({key}): there is no such timeline to accept\n  fix: give the timeline that `pgkeep verify --wal` names in its fork problem"
    )]
    NoSuchTimeline {
        /// The timeline.
        timeline: u32,
        /// Where its history file would be.
        key: String,
    },

    /// A `.history` file that is not a timeline history file.
    #[error(
        "{name}: is not a timeline history file: {problem}\n  fix: push only files from the server's pg_wal directory (archive_command = 'pgkeep wal-push %p'); nothing was stored"
    )]
    BadHistory {
        /// The file name.
        name: String,
        /// What is wrong.
        problem: String,
    },

    /// `wal-fetch` from a repository that holds nothing for the cluster: a wrong repository, not
    /// the end of the archive.
    #[error(
        "{name}: {repo} holds nothing for cluster `{cluster}`: a wrong --repo, --cluster or --config, or a repository that is not mounted\n  fix: fix restore_command (`pgkeep list` with the same flags, as the server's user, must show the backups); PostgreSQL stops instead of taking this for the end of the archive"
    )]
    NothingArchived {
        /// The file asked for.
        name: String,
        /// The repository.
        repo: String,
        /// The cluster name.
        cluster: String,
    },

    /// `wal-push` of a name the archive already holds with other content.
    #[error(
        "{name}: the archive already holds {} under this name ({key}); nothing was overwritten\n  fix: two servers may be archiving into the same repository and cluster name: give each server its own --cluster, and check that only one primary runs; `pgkeep verify --wal` shows forks",
        match unreadable { None => "a different file".to_string(), Some(e) => format!("a file that cannot be read ({e})") }
    )]
    Conflict {
        /// The file name.
        name: String,
        /// The stored object.
        key: String,
        /// Why the stored object could not be compared, when it could not be read.
        unreadable: Option<Box<crate::Error>>,
    },

    /// An archived file's stored bytes are damaged.
    #[error(
        "{key}: {damage}\n  fix: the archived file is damaged; do not recover past it: take a new base backup, and run `pgkeep verify --wal` to find other damage"
    )]
    Damaged {
        /// The object.
        key: String,
        /// What is wrong.
        damage: Damage,
    },
}
