//! Timelines that pgkeep started on purpose: a restore it promoted while the restored server
//! archives into the same repository, a failover promotion, or a fork an operator accepted. Each
//! is `<cluster>/timelines/<TLI>.json`. `verify --wal` treats a fork (a parent timeline that kept
//! archiving after a child branched off it) as a note when the child is recorded here, and as a
//! problem — two primaries, a split brain — when it is not.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, WalError};
use crate::repo::Repository;
use crate::storage::{PutMode, StorageError};

/// Why a timeline was started on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BranchCause {
    /// `pgkeep restore` promoted a restored server that archives into this repository.
    Restore,
    /// `pgkeep failover promote` or `switchover` promoted a standby.
    Promote,
    /// An operator accepted the fork (`pgkeep accept-fork`).
    Accepted,
}

impl std::fmt::Display for BranchCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BranchCause::Restore => "a point-in-time restore promoted by pgkeep",
            BranchCause::Promote => "a promotion by pgkeep failover",
            BranchCause::Accepted => "accepted by an operator (pgkeep accept-fork)",
        })
    }
}

/// The record that a timeline was started on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchRecord {
    /// The timeline.
    pub timeline: u32,
    /// Why it was started.
    pub cause: BranchCause,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The pgkeep version that recorded it.
    pub recorded_by: String,
}

fn prefix(repo: &Repository) -> String {
    repo.key("timelines/")
}

/// Records that `timeline` was started on purpose (create-if-absent: an existing record is kept
/// and returned).
pub async fn record_branch(
    repo: &Repository,
    timeline: u32,
    cause: BranchCause,
) -> Result<BranchRecord, Error> {
    let key = format!("{}{timeline:08X}.json", prefix(repo));
    let record = BranchRecord {
        timeline,
        cause,
        recorded_at: Utc::now(),
        recorded_by: format!("pgkeep {}", env!("CARGO_PKG_VERSION")),
    };
    let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::encode(&key, e))?;
    match repo.storage().put_bytes(&key, &json, PutMode::Create).await {
        Ok(_) => Ok(record),
        Err(StorageError::AlreadyExists { .. }) => {
            let bytes = repo.storage().get_bytes(&key).await?;
            serde_json::from_slice(&bytes).map_err(|source| Error::BadRecord {
                key,
                record: "timeline record",
                source,
                fix: "delete it and record the timeline again with `pgkeep accept-fork`",
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `pgkeep accept-fork`: records `timeline` as started on purpose ([`BranchCause::Accepted`]),
/// once its history file is in the archive (a timeline that does not exist is refused, so that a
/// typo cannot approve a future split brain).
pub async fn accept_fork(repo: &Repository, timeline: u32) -> Result<BranchRecord, Error> {
    let key = super::wal_key(repo, &format!("{timeline:08X}.history"))?;
    match repo.storage().head(&key).await {
        Ok(_) => record_branch(repo, timeline, BranchCause::Accepted).await,
        Err(e) if e.is_not_found() => {
            // A repository that is not there says so first.
            repo.storage().list(&repo.key("wal/")).await?;
            Err(WalError::NoSuchTimeline { timeline, key }.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Every recorded timeline. A record that does not parse counts as absent (its fork is then a
/// problem, which names the way to record it again).
pub(crate) async fn branch_records(
    repo: &Repository,
) -> Result<BTreeMap<u32, BranchRecord>, Error> {
    let mut out = BTreeMap::new();
    let listed = match repo.storage().list(&prefix(repo)).await {
        Ok(listed) => listed,
        Err(StorageError::RootMissing { .. }) => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for object in listed {
        let bytes = repo.storage().get_bytes(&object.key).await?;
        if let Ok(record) = serde_json::from_slice::<BranchRecord>(&bytes) {
            out.insert(record.timeline, record);
        }
    }
    Ok(out)
}

/// The newest timeline a data directory's `pg_wal` holds a history file of (1 without one): the
/// timeline a freshly promoted server writes.
pub(crate) fn newest_timeline(pgdata: &std::path::Path) -> u32 {
    std::fs::read_dir(pgdata.join("pg_wal"))
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            u32::from_str_radix(name.strip_suffix(".history")?, 16).ok()
        })
        .max()
        .unwrap_or(1)
}
