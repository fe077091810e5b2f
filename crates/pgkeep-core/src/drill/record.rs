//! Drill records: one small JSON object per drill beside the backup it drilled,
//! `<cluster>/backups/<id>/drills/<UTC time>-<random>.json`, written create-if-absent once the
//! drill has ended. A record is a note about the backup, never part of it: the catalog does not
//! count it as a leftover, and deleting the backup deletes its records too. Names sort in time
//! order, so the newest record is the last name.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::pg::quote_ident;
use crate::repo::Repository;
use crate::repo::catalog::{BackupKind, DRILLS, MANIFEST, backup_prefix};
use crate::repo::scan::Catalog;
use crate::storage::PutMode;

/// The record format written by this version.
const RECORD_FORMAT: u32 = 1;

/// What a drill checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillCheckKind {
    /// The restored server accepts connections.
    Connects,
    /// Every database of the backup is there (physical: the databases found, each reached).
    Databases,
    /// `count(*)` of every user table of a database succeeds.
    Tables,
    /// amcheck's `bt_index_check` passes on every B-tree index of a database.
    Indexes,
    /// Recovery stopped at the random target time, not after it.
    Target,
    /// Every object of the backup its restore does not read (PostgreSQL's `backup_manifest`, the
    /// configuration files kept) is there, with its size and sha256.
    Objects,
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum DrillCheckResult {
    /// It passed.
    Passed,
    /// It failed: what is wrong.
    Failed {
        /// What is wrong (the first failures, with PostgreSQL's messages).
        problem: String,
    },
    /// It could not run here, which is no failure: why (`amcheck not available`).
    Skipped {
        /// Why.
        why: String,
    },
}

/// One check of a drill and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillCheck {
    /// What was checked.
    pub check: DrillCheckKind,
    /// The database, for the checks of one database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// How many things it checked: databases found, tables counted, indexes checked.
    pub checked: u64,
    /// How it went.
    #[serde(flatten)]
    pub result: DrillCheckResult,
}

impl DrillCheck {
    /// Whether it failed.
    pub fn failed(&self) -> bool {
        matches!(self.result, DrillCheckResult::Failed { .. })
    }

    /// What it checked, for people: `tables of "shop"`.
    pub fn subject(&self) -> String {
        let what = match self.check {
            DrillCheckKind::Connects => "connections",
            DrillCheckKind::Databases => "databases",
            DrillCheckKind::Tables => "tables",
            DrillCheckKind::Indexes => "indexes",
            DrillCheckKind::Target => "recovery target",
            DrillCheckKind::Objects => "objects the restore does not read",
        };
        match &self.database {
            Some(db) => format!("{what} of {}", quote_ident(db)),
            None => what.to_string(),
        }
    }
}

/// Why a drill failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DrillCause {
    /// The restore failed before the server answered: its plan (a WAL segment missing from the
    /// archive), reading the backup (a corrupt or missing object), pg_restore, or the server's
    /// recovery.
    Restore {
        /// The restore's error, with its fix.
        error: String,
    },
    /// The restored server did not accept a connection.
    NoConnection {
        /// The connection's error.
        error: String,
    },
    /// The server answered, but checks failed (each check says why).
    Checks {
        /// The checks that failed, as [`DrillCheck::subject`] names them.
        failed: Vec<String>,
    },
}

impl std::fmt::Display for DrillCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrillCause::Restore { error } => write!(f, "the restore failed: {error}"),
            DrillCause::NoConnection { error } => {
                write!(
                    f,
                    "the restored server does not accept connections: {error}"
                )
            }
            DrillCause::Checks { failed } => {
                write!(f, "check(s) failed: {}", failed.join("; "))
            }
        }
    }
}

/// How a drill ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DrillOutcome {
    /// The backup restored and every check passed.
    Passed,
    /// It did not.
    Failed {
        /// Why.
        cause: DrillCause,
    },
}

/// Where a drill's restore aimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DrillAim {
    /// A logical backup: its dumps as they were taken.
    Backup,
    /// A physical backup with all of the archived WAL replayed.
    Latest,
    /// A physical backup recovered to this (random) time.
    Time {
        /// The target time.
        time: DateTime<Utc>,
    },
}

/// What one drill found: stored beside the backup, shown by `list` and `info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The record format (1).
    pub format: u32,
    /// The backup drilled.
    pub backup: String,
    /// Its kind.
    pub kind: BackupKind,
    /// When the drill began.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Passed, or failed and why.
    #[serde(flatten)]
    pub outcome: DrillOutcome,
    /// Where the restore aimed.
    pub target: DrillAim,
    /// The commit time of the newest transaction replayed (physical).
    #[serde(default)]
    pub reached_time: Option<DateTime<Utc>>,
    /// The last WAL location replayed (physical).
    #[serde(default)]
    pub reached_lsn: Option<String>,
    /// Recovery time: seconds from the drill's start until the restored server answered with the
    /// backup's data; `None` when it never did.
    #[serde(default)]
    pub rto_seconds: Option<f64>,
    /// Recovery point: the data this restore would have lost, in seconds. Physical: from the
    /// newest commit replayed (when none was: the target time, else the backup's end) to the end
    /// of the recoverable window (the newest archived commit); logical: the backup's age at the
    /// drill.
    #[serde(default)]
    pub rpo_seconds: Option<f64>,
    /// Every check and its result.
    #[serde(default)]
    pub checks: Vec<DrillCheck>,
    /// The host the drill ran on.
    pub host: String,
    /// The pgkeep version that ran it.
    pub pgkeep: String,
}

impl DrillRecord {
    /// A record of this host and pgkeep version.
    pub(crate) fn new(
        backup: &str,
        kind: BackupKind,
        started_at: DateTime<Utc>,
        outcome: DrillOutcome,
        target: DrillAim,
    ) -> DrillRecord {
        DrillRecord {
            format: RECORD_FORMAT,
            backup: backup.to_string(),
            kind,
            started_at,
            finished_at: Utc::now(),
            outcome,
            target,
            reached_time: None,
            reached_lsn: None,
            rto_seconds: None,
            rpo_seconds: None,
            checks: Vec::new(),
            host: crate::exec::host_name(),
            pgkeep: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Whether the drill passed.
    pub fn passed(&self) -> bool {
        self.outcome == DrillOutcome::Passed
    }
}

/// The key prefix of backup `id`'s drill records.
fn drills_prefix(repo: &Repository, id: &str) -> String {
    format!("{}{DRILLS}", backup_prefix(repo, id))
}

/// Stores `record` beside its backup, create-if-absent; returns its key. Refused (nothing
/// written) when the backup's manifest is gone meanwhile: a record must not recreate the
/// directory of a backup deleted while it was drilled.
pub(crate) async fn write_record(repo: &Repository, record: &DrillRecord) -> Result<String, Error> {
    repo.storage()
        .head(&format!(
            "{}{MANIFEST}",
            backup_prefix(repo, &record.backup)
        ))
        .await?;
    let key = format!(
        "{}{}-{:08x}.json",
        drills_prefix(repo, &record.backup),
        record.started_at.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    );
    let json = serde_json::to_vec_pretty(record).map_err(|e| Error::encode(&key, e))?;
    repo.storage()
        .put_bytes(&key, &json, PutMode::Create)
        .await?;
    Ok(key)
}

/// A drill record that cannot be read as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableRecord {
    /// Its key.
    pub key: String,
    /// Why it cannot be read.
    pub problem: String,
}

/// A backup's drills, oldest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrillHistory {
    /// The records that read.
    pub drills: Vec<DrillRecord>,
    /// The records that do not.
    pub unreadable: Vec<UnreadableRecord>,
}

impl DrillHistory {
    /// The newest drill that passed.
    pub fn last_passed(&self) -> Option<&DrillRecord> {
        self.drills.iter().rev().find(|d| d.passed())
    }
}

/// Reads the record at `key`, beside backup `id`: `Ok(Err(problem))` when it is no drill record
/// of that backup.
async fn read_record(
    repo: &Repository,
    key: &str,
    id: &str,
) -> Result<Result<DrillRecord, UnreadableRecord>, Error> {
    let bytes = repo.storage().get_bytes(key).await?;
    Ok(parse_record(&bytes, key, id))
}

/// The drill record `bytes` stored at `key` beside backup `id`; a record of another backup (one
/// copied from its directory) is no proof of this one and is unreadable.
fn parse_record(bytes: &[u8], key: &str, id: &str) -> Result<DrillRecord, UnreadableRecord> {
    let unreadable = |problem| UnreadableRecord {
        key: key.to_string(),
        problem,
    };
    let record: DrillRecord = serde_json::from_slice(bytes)
        .map_err(|e| unreadable(format!("not a drill record: {e}")))?;
    if record.backup != id {
        return Err(unreadable(format!(
            "a record of backup {}, not of backup {id} whose directory holds it (copied from another backup's drills?): no proof of this backup",
            record.backup
        )));
    }
    Ok(record)
}

/// Backup `id`'s drill history (`pgkeep info ID`), oldest first. Empty for a backup never
/// drilled; a record that does not read is listed as unreadable, never dropped silently.
pub async fn drill_history(repo: &Repository, id: &str) -> Result<DrillHistory, Error> {
    let mut keys: Vec<String> = repo
        .storage()
        .list(&drills_prefix(repo, id))
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    keys.sort();
    let mut history = DrillHistory::default();
    for key in keys {
        match read_record(repo, &key, id).await? {
            Ok(record) => history.drills.push(record),
            Err(unreadable) => history.unreadable.push(unreadable),
        }
    }
    Ok(history)
}

/// A backup's newest drill, and its newest drill that passed.
#[derive(Debug, Clone, Serialize)]
pub struct LastDrills {
    /// The newest drill, passed or failed.
    pub last: DrillRecord,
    /// The newest drill that passed: when the backup was last proven restorable.
    pub last_passed: Option<DrillRecord>,
}

impl LastDrills {
    /// Whether the newest drill failed.
    pub fn last_failed(&self) -> bool {
        !self.last.passed()
    }
}

/// The newest drill and the newest passed drill of every backup that has been drilled, by backup
/// id (`pgkeep list`): the records `catalog` (from [`read_catalog`](crate::read_catalog)) lists,
/// read newest first as far as needed. Records that do not read are passed over here
/// (`drill_history` reports them).
pub async fn last_drills(
    repo: &Repository,
    catalog: &Catalog,
) -> Result<BTreeMap<String, LastDrills>, Error> {
    let mut out = BTreeMap::new();
    for (id, keys) in &catalog.drill_records {
        let (id, mut keys) = (id.clone(), keys.clone());
        keys.sort();
        let mut last: Option<DrillRecord> = None;
        let mut last_passed = None;
        for key in keys.iter().rev() {
            let record = match read_record(repo, key, &id).await? {
                Ok(record) => record,
                Err(unreadable) => {
                    tracing::warn!("{}: {}", unreadable.key, unreadable.problem);
                    continue;
                }
            };
            let passed = record.passed();
            if last.is_none() {
                last = Some(record.clone());
            }
            if passed {
                last_passed = Some(record);
                break;
            }
        }
        if let Some(last) = last {
            out.insert(id, LastDrills { last, last_passed });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_its_json_is_flat() {
        let mut record = DrillRecord::new(
            "20261125T150430Z",
            BackupKind::Physical,
            Utc::now(),
            DrillOutcome::Failed {
                cause: DrillCause::Checks {
                    failed: vec!["tables of shop".into()],
                },
            },
            DrillAim::Time {
                time: "2026-11-25T15:10:00Z".parse().unwrap(),
            },
        );
        record.checks.push(DrillCheck {
            check: DrillCheckKind::Tables,
            database: Some("a \"b\"".into()),
            checked: 3,
            result: DrillCheckResult::Failed {
                problem: "x".into(),
            },
        });
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["cause"]["kind"], "checks");
        assert_eq!(json["target"]["kind"], "time");
        assert_eq!(json["checks"][0]["result"], "failed");
        assert_eq!(json["checks"][0]["check"], "tables");
        let back: DrillRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.checks[0].subject(), "tables of \"a \"\"b\"\"\"");
        assert!(back.checks[0].failed());
        assert!(!back.passed());
    }

    #[test]
    fn a_record_of_another_backup_is_unreadable() {
        let record = DrillRecord::new(
            "20261125T150430Z",
            BackupKind::Logical,
            Utc::now(),
            DrillOutcome::Passed,
            DrillAim::Backup,
        );
        let bytes = serde_json::to_vec(&record).unwrap();
        let key = "main/backups/20261126T000000Z/drills/x.json";
        assert_eq!(
            parse_record(&bytes, key, "20261125T150430Z").unwrap(),
            record
        );
        let copied = parse_record(&bytes, key, "20261126T000000Z").unwrap_err();
        assert_eq!(copied.key, key);
        assert!(
            copied
                .problem
                .contains("a record of backup 20261125T150430Z")
                && copied.problem.contains("not of backup 20261126T000000Z"),
            "{copied:?}"
        );
        let garbage = parse_record(b"{}", key, "20261126T000000Z").unwrap_err();
        assert!(
            garbage.problem.starts_with("not a drill record"),
            "{garbage:?}"
        );
    }
}
