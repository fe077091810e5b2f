//! Failures of retention (`expire`) and of the leases running backups and restores hold: what
//! `expire --confirm` had deleted when it stopped, and a restore whose backup expired under it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What `expire --confirm` deleted (all of the plan when it succeeds; what it got to when it
/// failed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpireReport {
    /// The backups deleted, manifest first.
    pub backups: Vec<String>,
    /// Their objects' stored bytes.
    pub backup_bytes: u64,
    /// A backup whose deletion began and did not finish (the run failed there): its manifest may
    /// be gone already, which makes it a leftover the next `expire` removes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partly: Vec<String>,
    /// Expired backups left alone after all: a lease (a restore that began meanwhile) took them
    /// between the plan and their deletion.
    pub spared: Vec<String>,
    /// WAL files deleted.
    pub wal_files: usize,
    /// Their bytes.
    pub wal_bytes: u64,
    /// Leftover directories and unfinished writes removed.
    pub leftovers: usize,
    /// Their bytes.
    pub leftover_bytes: u64,
    /// Expired leases removed.
    pub leases: usize,
}

impl ExpireReport {
    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        self.backups.is_empty() && self.wal_files == 0 && self.leftovers == 0 && self.leases == 0
    }
}

impl fmt::Display for ExpireReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for id in &self.partly {
            write!(
                f,
                "began deleting backup {id} (it may be a leftover now, no backup), and "
            )?;
        }
        if self.is_empty() {
            return f.write_str(match self.partly.is_empty() {
                true => "deleted nothing",
                false => "deleted nothing else",
            });
        }
        write!(
            f,
            "deleted {} backup(s) ({} bytes){}, {} WAL file(s) ({} bytes), {} leftover(s) ({} bytes), {} expired lease(s)",
            self.backups.len(),
            self.backup_bytes,
            match self.backups.is_empty() {
                true => String::new(),
                false => format!(": {}", self.backups.join(", ")),
            },
            self.wal_files,
            self.wal_bytes,
            self.leftovers,
            self.leftover_bytes,
            self.leases
        )
    }
}

/// A retention or lease failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// A deletion failed: `expire --confirm` stopped there. What it deleted before is in `done`;
    /// nothing it had not got to was touched.
    #[error(
        "expire stopped: {source}\n  before that it {done}\n  fix: fix the cause above and run `pgkeep expire --confirm` again: it plans afresh, and a backup whose manifest was already deleted is a leftover it removes"
    )]
    ExpireFailed {
        /// What was deleted before the failure.
        done: Box<ExpireReport>,
        /// The failure.
        source: Box<crate::Error>,
    },

    /// `expire` refuses a repository whose identity record has a problem: it might not be the
    /// repository (or the cluster name) it seems, and nothing is deleted there until it is fixed.
    #[error("expire changes nothing while the repository has a problem: {problem}")]
    RepositoryProblem {
        /// The problem, with its fix.
        problem: String,
    },

    /// The backup a restore was planned from is no longer in the repository: `expire` deleted it
    /// (or someone else did) after the plan was made.
    #[error(
        "backup {id} is no longer in the repository: it was expired or deleted after the restore was planned; nothing was restored\n  fix: plan the restore again (`pgkeep list` shows the backups there); pin backups you mean to restore (`pgkeep pin ID`)"
    )]
    BackupGone {
        /// The backup id.
        id: String,
    },

    /// `expire --confirm` refuses while backups end in the future (more than 5 minutes after
    /// now, a host's clock that jumped): they would decide what expires. Nothing was deleted.
    #[error(
        "expire --confirm refuses: {} end(s) more than 5 minutes after now ({}), so a clock jumped and they would decide what expires; nothing was deleted\n  fix: correct the clock of the host that took them, or the manifest's finished_at / physical.stop_time, or remove that backup by hand; then run `pgkeep expire` again",
        future_list(backups), now.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    FutureBackups {
        /// When the plan was made.
        now: DateTime<Utc>,
        /// Each backup's id and end time.
        backups: Vec<(String, DateTime<Utc>)>,
    },
}

/// `backup A (ends 2099-01-01 00:00:00 UTC), backup B (...)`.
fn future_list(backups: &[(String, DateTime<Utc>)]) -> String {
    backups
        .iter()
        .map(|(id, end)| format!("backup {id} (ends {})", end.format("%Y-%m-%d %H:%M:%S UTC")))
        .collect::<Vec<_>>()
        .join(", ")
}
