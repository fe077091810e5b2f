//! What the daemon watches by itself, read fresh at each check: the newest backup of each kind,
//! the recoverable window, the archiver (`pg_stat_archiver`) and the last drill
//! ([`ClusterFacts`]); and the conditions those facts raise ([`conditions`]): **overdue** (no
//! good backup of a kind within its maximum age) and **archiving stuck** (the archiver's newest
//! attempt failed, or nothing was archived for longer than the limit while WAL waits).

use std::time::Duration;

use chrono::{DateTime, Utc};
use pgkeep_core::{BackupKind, DrillRecord, RecoveryWindow, Repository, Settings};
use serde::Serialize;

use crate::job::SchedulerSettings;

/// `pg_stat_archiver`, and how many segments wait to be archived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Archiver {
    /// Segments archived since the statistics were reset.
    pub archived_count: i64,
    /// The newest archived segment.
    pub last_archived_wal: Option<String>,
    /// When it was archived.
    pub last_archived_time: Option<DateTime<Utc>>,
    /// Failed attempts since the statistics were reset.
    pub failed_count: i64,
    /// The segment of the newest failed attempt.
    pub last_failed_wal: Option<String>,
    /// When it failed.
    pub last_failed_time: Option<DateTime<Utc>>,
    /// Segments waiting (`.ready` files), when this user may list them.
    pub waiting: Option<i64>,
}

impl Archiver {
    /// Whether the newest attempt failed.
    pub fn failing(&self) -> bool {
        match (self.last_failed_time, self.last_archived_time) {
            (Some(failed), Some(archived)) => failed > archived,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// The newest good backup of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Newest {
    /// Logical or physical.
    pub kind: BackupKind,
    /// Its id.
    pub id: String,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// The facts of the cluster that alerts, metrics and `pgkeep status` are made of. Each part that
/// could not be read says why instead.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterFacts {
    /// The cluster's name in the repository.
    pub cluster: String,
    /// The newest good backup of each kind there is.
    pub newest: Vec<Newest>,
    /// Backups whose manifest cannot be used.
    pub damaged: usize,
    /// The point-in-time recovery window.
    pub window: Option<RecoveryWindow>,
    /// The newest drill of any backup.
    pub last_drill: Option<DrillRecord>,
    /// Why the repository could not be read.
    pub repository_error: Option<String>,
    /// The archiver, or why it could not be read.
    pub archiver: Result<Archiver, String>,
}

impl ClusterFacts {
    /// The newest backup of `kind`.
    pub fn newest(&self, kind: BackupKind) -> Option<&Newest> {
        self.newest.iter().find(|n| n.kind == kind)
    }
}

/// Reads the facts: the repository (catalog, window, drills) and the server's archiver.
pub async fn cluster_facts(settings: &Settings) -> ClusterFacts {
    let mut facts = ClusterFacts {
        cluster: settings.cluster.clone(),
        newest: Vec::new(),
        damaged: 0,
        window: None,
        last_drill: None,
        repository_error: None,
        archiver: archiver(settings).await,
    };
    if let Err(e) = read_repository(settings, &mut facts).await {
        facts.repository_error = Some(e.to_string());
    }
    facts
}

async fn read_repository(
    settings: &Settings,
    facts: &mut ClusterFacts,
) -> Result<(), pgkeep_core::Error> {
    let repo = Repository::open(settings).await?;
    let catalog = pgkeep_core::read_catalog(&repo).await?;
    facts.damaged = catalog.damaged.len();
    for kind in [BackupKind::Logical, BackupKind::Physical] {
        if let Some(m) = catalog
            .backups
            .iter()
            .filter(|m| m.kind == kind)
            .max_by_key(|m| m.finished_at)
        {
            facts.newest.push(Newest {
                kind,
                id: m.id.clone(),
                finished_at: m.finished_at,
            });
        }
    }
    facts.window = Some(
        pgkeep_core::recoverable_window(&repo, &catalog.backups, settings.bin_dir.as_deref())
            .await?,
    );
    let drills = pgkeep_core::last_drills(&repo, &catalog).await?;
    facts.last_drill = drills
        .into_values()
        .map(|d| d.last)
        .max_by_key(|d| d.finished_at);
    Ok(())
}

async fn archiver(settings: &Settings) -> Result<Archiver, String> {
    let client = pgkeep_core::connect(&settings.conninfo, None)
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT archived_count, last_archived_wal, \
             extract(epoch FROM last_archived_time)::float8, failed_count, last_failed_wal, \
             extract(epoch FROM last_failed_time)::float8 FROM pg_stat_archiver",
            &[],
        )
        .await
        .map_err(|e| format!("cannot read pg_stat_archiver: {e}"))?;
    let waiting = client
        .query_one(
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get::<_, i64>(0));
    Ok(Archiver {
        archived_count: row.get(0),
        last_archived_wal: row.get(1),
        last_archived_time: epoch(row.get(2)),
        failed_count: row.get(3),
        last_failed_wal: row.get(4),
        last_failed_time: epoch(row.get(5)),
        waiting,
    })
}

fn epoch(seconds: Option<f64>) -> Option<DateTime<Utc>> {
    let micros = (seconds? * 1e6).round() as i64;
    DateTime::from_timestamp_micros(micros)
}

/// A condition the daemon alerts on while it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// Its key: `overdue:logical`, `overdue:physical`, `archiving-stuck`.
    pub key: String,
    /// What it says, for a person.
    pub summary: String,
}

/// The conditions `facts` raise under `watch`'s limits at `now`.
pub fn conditions(
    facts: &ClusterFacts,
    watch: &SchedulerSettings,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut out = Vec::new();
    for (kind, max_age) in &watch.overdue {
        let word = kind_word(*kind);
        let summary = match (&facts.repository_error, facts.newest(*kind)) {
            (Some(e), _) => Some(format!(
                "no {word} backup can be found: the repository cannot be read: {}",
                e.lines().next().unwrap_or_default()
            )),
            (None, None) => Some(format!(
                "no {word} backup exists (limit {})",
                show(*max_age)
            )),
            (None, Some(n)) => {
                let age = age(now, n.finished_at);
                (age > *max_age).then(|| {
                    format!(
                        "no successful {word} backup for {} (limit {}); the newest is {}",
                        show(age),
                        show(*max_age),
                        n.id
                    )
                })
            }
        };
        if let Some(summary) = summary {
            out.push(Condition {
                key: format!("overdue:{word}"),
                summary,
            });
        }
    }
    if let (Some(max_age), Ok(a)) = (watch.archiving, &facts.archiver) {
        // A server that has archived nothing yet (just started) is not stale: only failing.
        let stale = a.waiting.unwrap_or(0) > 0
            && a.last_archived_time.is_some_and(|t| age(now, t) > max_age);
        if a.failing() {
            out.push(Condition {
                key: "archiving-stuck".into(),
                summary: format!(
                    "WAL archiving is failing: {} failed attempt(s), the newest for {} at {}; pg_wal grows until archive_command succeeds",
                    a.failed_count,
                    a.last_failed_wal.as_deref().unwrap_or("?"),
                    a.last_failed_time.map_or_else(String::new, |t| t.to_rfc3339())
                ),
            });
        } else if stale {
            out.push(Condition {
                key: "archiving-stuck".into(),
                summary: format!(
                    "WAL archiving is stuck: {} segment(s) wait and nothing was archived for more than {}",
                    a.waiting.unwrap_or(0),
                    show(max_age)
                ),
            });
        }
    }
    out
}

/// `logical` or `physical`.
pub(crate) fn kind_word(kind: BackupKind) -> &'static str {
    match kind {
        BackupKind::Logical => "logical",
        BackupKind::Physical => "physical",
    }
}

pub(crate) fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or_default()
}

fn show(d: Duration) -> String {
    pgkeep_core::format_duration(Duration::from_secs(d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> SchedulerSettings {
        SchedulerSettings {
            catch_up: Duration::ZERO,
            stop_grace: Duration::ZERO,
            check_interval: Duration::from_secs(1),
            history_runs: 1,
            metrics_file: None,
            overdue: Vec::new(),
            archiving: Some(Duration::from_secs(3600)),
            notifier: crate::notify::Notifier::default(),
        }
    }

    fn facts(archiver: Archiver) -> ClusterFacts {
        ClusterFacts {
            cluster: "main".into(),
            newest: Vec::new(),
            damaged: 0,
            window: None,
            last_drill: None,
            repository_error: None,
            archiver: Ok(archiver),
        }
    }

    #[test]
    fn archiving_is_stuck_when_failing_or_stale_but_not_before_its_first_segment() {
        let now = Utc::now();
        let keys = |a: Archiver| -> Vec<String> {
            conditions(&facts(a), &watch(), now)
                .into_iter()
                .map(|c| c.key)
                .collect()
        };
        let fresh = Archiver {
            waiting: Some(1),
            ..Archiver::default()
        };
        assert!(keys(fresh).is_empty());
        let failing = Archiver {
            failed_count: 3,
            last_failed_time: Some(now),
            waiting: Some(1),
            ..Archiver::default()
        };
        assert_eq!(keys(failing), ["archiving-stuck"]);
        let stale = Archiver {
            last_archived_time: Some(now - chrono::TimeDelta::hours(2)),
            waiting: Some(4),
            ..Archiver::default()
        };
        assert_eq!(keys(stale.clone()), ["archiving-stuck"]);
        let idle = Archiver {
            waiting: Some(0),
            ..stale
        };
        assert!(
            keys(idle).is_empty(),
            "nothing waits: a quiet server, not a stuck archiver"
        );
        let recovered = Archiver {
            last_failed_time: Some(now - chrono::TimeDelta::minutes(5)),
            last_archived_time: Some(now),
            failed_count: 3,
            ..Archiver::default()
        };
        assert!(keys(recovered).is_empty());
    }
}
