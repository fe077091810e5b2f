//! The expire plan: the catalog, the pins and the leases read, the policy applied to each kind,
//! the WAL rule and the leftovers judged. Planning changes nothing in the repository.
//!
//! The catalog is listed **before** the leases are read (see `repo::lease`): whatever a running
//! backup had written when the listing saw it, its lease was already there to be read.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::leftovers::{LeftoverAction, PlannedLeftover, plan_leftovers};
use super::pin::{Pin, read_pin};
use super::policy::{PolicyBackup, apply_policy};
use super::reason::{KeepReason, Series};
use super::wal::{WalPlan, plan_wal};
use crate::error::{Error, RetentionError};
use crate::pg::Lsn;
use crate::repo::Repository;
use crate::repo::catalog::{BackupKind, Manifest};
use crate::repo::lease::{HeldLease, UnreadableLease, read_leases};
use crate::repo::scan::{DamagedBackup, read_catalog};
use crate::settings::{RetentionPolicy, Settings, Zone, format_duration};

/// How to plan an expire.
#[derive(Debug, Clone, Default)]
pub struct ExpireOptions {
    /// The grace period for leftovers, instead of `retention.leftover-grace` (`--grace`).
    pub grace: Option<Duration>,
}

/// One backup in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedBackup {
    /// The backup id.
    pub id: String,
    /// Logical or physical.
    pub kind: BackupKind,
    /// When it ended: `finished_at` for a logical backup, `physical.stop_time` for a physical one.
    pub end: DateTime<Utc>,
    /// Where a physical backup starts in the WAL.
    pub start_lsn: Option<Lsn>,
    /// The series it belongs to.
    pub series: Vec<Series>,
    /// Its objects' stored bytes, freed when it expires.
    pub stored_size: u64,
    /// Whether it expires: no reason keeps it.
    pub expire: bool,
    /// Why it is kept.
    pub reasons: Vec<KeepReason>,
    /// The reasons as shown (`keep-weekly 2026-W47`, `pinned`, ...).
    pub why: Vec<String>,
    #[serde(skip)]
    pub(crate) manifest: Manifest,
}

/// How far after now a backup may end before its end time is distrusted (a clock that jumped).
pub const FUTURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A backup that ends more than [`FUTURE_TOLERANCE`] after the plan's `now`: a host's clock
/// jumped. `expire --confirm` refuses while there is one ([`ExpirePlan::check_confirmable`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FutureBackup {
    /// The backup id.
    pub id: String,
    /// Logical or physical.
    pub kind: BackupKind,
    /// Its end time (see [`PlannedBackup::end`]).
    pub end: DateTime<Utc>,
}

/// What an expire frees, in stored bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BytesToFree {
    /// The expired backups.
    pub backups: u64,
    /// The WAL no kept backup needs.
    pub wal: u64,
    /// The leftovers removed.
    pub leftovers: u64,
    /// All of it.
    pub total: u64,
}

/// What `expire --confirm` would do, and why.
#[derive(Debug, Clone, Serialize)]
pub struct ExpirePlan {
    /// The repository's URL.
    pub repository: String,
    /// The cluster name.
    pub cluster: String,
    /// When the plan was made: `keep-within` counts back from here.
    pub now: DateTime<Utc>,
    /// Where days, weeks and months begin.
    pub time_zone: Zone,
    /// The grace period of leftovers, as shown (`6h`).
    pub grace: String,
    /// The policy of logical backups (`None`: none expires).
    pub logical_policy: Option<RetentionPolicy>,
    /// The policy of physical backups (`None`: none expires).
    pub physical_policy: Option<RetentionPolicy>,
    /// What an operator should know about the plan (a kind without a policy, ...).
    pub notes: Vec<String>,
    /// Every backup whose manifest reads, by end time, each kept or expired.
    pub backups: Vec<PlannedBackup>,
    /// Backups whose manifest cannot be used: never deleted by expire.
    pub damaged: Vec<DamagedBackup>,
    /// Backups that end in the future (a clock jumped): while there is one, the plan cannot be
    /// carried out.
    pub future_backups: Vec<FutureBackup>,
    /// The WAL to delete.
    pub wal: WalPlan,
    /// The leftovers, each removed or left alone.
    pub leftovers: Vec<PlannedLeftover>,
    /// Leases alive now: what they cover stays.
    pub live_leases: Vec<HeldLease>,
    /// Leases of processes that stopped renewing them: removed.
    pub expired_leases: Vec<HeldLease>,
    /// Objects under `leases/` that cannot be read: left alone, and they protect nothing.
    pub unreadable_leases: Vec<UnreadableLease>,
    /// The stored bytes freed.
    pub to_free: BytesToFree,
}

impl ExpirePlan {
    /// The backups that expire, by end time.
    pub fn expired(&self) -> impl Iterator<Item = &PlannedBackup> {
        self.backups.iter().filter(|b| b.expire)
    }

    /// The leftovers removed.
    pub fn removed_leftovers(&self) -> impl Iterator<Item = &PlannedLeftover> {
        self.leftovers
            .iter()
            .filter(|l| l.action == LeftoverAction::Remove)
    }

    /// Refused ([`RetentionError::FutureBackups`]) while backups end in the future: their end
    /// times would decide what expires. [`expire`](super::expire) must only carry out a plan
    /// that passes.
    pub fn check_confirmable(&self) -> Result<(), RetentionError> {
        match self.future_backups.is_empty() {
            true => Ok(()),
            false => Err(RetentionError::FutureBackups {
                now: self.now,
                backups: self
                    .future_backups
                    .iter()
                    .map(|b| (b.id.clone(), b.end))
                    .collect(),
            }),
        }
    }

    /// Whether carrying the plan out would change nothing.
    pub fn changes_nothing(&self) -> bool {
        self.expired().next().is_none()
            && self.wal.delete.is_empty()
            && self.removed_leftovers().next().is_none()
            && self.expired_leases.is_empty()
    }
}

/// The end time backups are ordered by (see [`PlannedBackup::end`]).
fn end_of(backup: &Manifest) -> DateTime<Utc> {
    backup
        .physical
        .as_ref()
        .map_or(backup.finished_at, |p| p.stop_time)
}

/// The series a backup belongs to.
fn series_of(backup: &Manifest) -> Vec<Series> {
    match backup.kind {
        BackupKind::Physical => vec![Series::Cluster],
        BackupKind::Logical => backup
            .globals()
            .map(|_| Series::Globals)
            .into_iter()
            .chain(
                backup
                    .databases()
                    .into_iter()
                    .map(|db| Series::Database(db.to_string())),
            )
            .collect(),
    }
}

/// Plans an expire of `repo` by `settings.retention`. Reads, never writes. Refused
/// ([`RetentionError::RepositoryProblem`]) while the identity record has a problem.
pub async fn plan_expire(
    settings: &Settings,
    repo: &Repository,
    options: &ExpireOptions,
) -> Result<ExpirePlan, Error> {
    let retention = &settings.retention;
    let catalog = read_catalog(repo).await?;
    if let Some(problem) = &catalog.identity_problem {
        return Err(RetentionError::RepositoryProblem {
            problem: problem.clone(),
        }
        .into());
    }
    // After the listing: see the module docs.
    let (leases, unreadable_leases) = read_leases(repo).await?;
    let now = Utc::now();
    let (live, expired): (Vec<HeldLease>, Vec<HeldLease>) =
        leases.into_iter().partition(|l| l.lease.is_live(now));
    let pins: Vec<Option<Pin>> = futures::stream::iter(&catalog.backups)
        .map(|b| read_pin(repo, &b.id))
        .buffered(8)
        .try_collect()
        .await?;
    let mut backups = Vec::new();
    let mut notes = Vec::new();
    for (kind, policy) in [
        (BackupKind::Logical, retention.logical.as_ref()),
        (BackupKind::Physical, retention.physical.as_ref()),
    ] {
        let of_kind: Vec<(&Manifest, &Option<Pin>)> = catalog
            .backups
            .iter()
            .zip(&pins)
            .filter(|(b, _)| b.kind == kind)
            .collect();
        if policy.is_none() && !of_kind.is_empty() {
            notes.push(format!(
                "{}: no {kind} backup expires (set a policy in [retention.{kind}])",
                KeepReason::NoPolicy { kind }
            ));
        }
        backups.extend(plan_kind(
            policy,
            kind,
            &of_kind,
            &live,
            retention.time_zone,
            now,
        ));
    }
    backups.sort_by_key(|b| (b.end, b.start_lsn));
    let kept_physical: Vec<Manifest> = backups
        .iter()
        .filter(|b| b.kind == BackupKind::Physical && !b.expire)
        .map(|b| b.manifest.clone())
        .collect();
    let wal = plan_wal(repo, &kept_physical, &catalog.damaged_ids()).await?;
    let future_backups = future_backups(&backups, now);
    let grace = options.grace.unwrap_or(retention.leftover_grace);
    let leftovers = plan_leftovers(&catalog.leftovers, &live, &repo.key("backups/"), grace, now);
    let mut plan = ExpirePlan {
        repository: repo.storage().url(),
        cluster: repo.cluster().to_string(),
        now,
        time_zone: retention.time_zone,
        grace: format_duration(grace),
        logical_policy: retention.logical.clone(),
        physical_policy: retention.physical.clone(),
        notes,
        backups,
        damaged: catalog.damaged,
        future_backups,
        wal,
        leftovers,
        live_leases: live,
        expired_leases: expired,
        unreadable_leases,
        to_free: BytesToFree::default(),
    };
    let backups = plan.expired().map(|b| b.stored_size).sum();
    let leftovers = plan.removed_leftovers().map(|l| l.leftover.bytes).sum();
    plan.to_free = BytesToFree {
        backups,
        wal: plan.wal.bytes,
        leftovers,
        total: backups + plan.wal.bytes + leftovers,
    };
    Ok(plan)
}

/// The backups that end more than [`FUTURE_TOLERANCE`] after `now`.
fn future_backups(backups: &[PlannedBackup], now: DateTime<Utc>) -> Vec<FutureBackup> {
    let limit = now + FUTURE_TOLERANCE;
    backups
        .iter()
        .filter(|b| b.end > limit)
        .map(|b| FutureBackup {
            id: b.id.clone(),
            kind: b.kind,
            end: b.end,
        })
        .collect()
}

/// The policy applied to the backups of one kind (each with its pin), and the leases.
fn plan_kind(
    policy: Option<&RetentionPolicy>,
    kind: BackupKind,
    of_kind: &[(&Manifest, &Option<Pin>)],
    live: &[HeldLease],
    zone: Zone,
    now: DateTime<Utc>,
) -> Vec<PlannedBackup> {
    let input: Vec<PolicyBackup> = of_kind
        .iter()
        .map(|(b, pin)| PolicyBackup {
            id: b.id.clone(),
            end: end_of(b),
            start_lsn: b.physical.as_ref().map(|p| p.start_lsn),
            series: series_of(b),
            pin: (*pin).clone(),
        })
        .collect();
    let reasons = apply_policy(policy, kind, &input, zone, now);
    input
        .into_iter()
        .zip(reasons)
        .zip(of_kind)
        .map(|((backup, mut reasons), (manifest, _))| {
            reasons.extend(
                live.iter()
                    .filter(|l| l.lease.backup.as_deref() == Some(backup.id.as_str()))
                    .map(|l| KeepReason::InUse {
                        lease: l.lease.clone(),
                    }),
            );
            PlannedBackup {
                expire: reasons.is_empty(),
                why: reasons.iter().map(ToString::to_string).collect(),
                id: backup.id,
                kind,
                end: backup.end,
                start_lsn: backup.start_lsn,
                series: backup.series,
                stored_size: manifest.stored_size(),
                reasons,
                manifest: (*manifest).clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pg::ConnInfo;
    use crate::retention::pin::tests::store_backup;
    use crate::settings::RepoLocation;
    use crate::storage::LocalStorage;

    #[tokio::test]
    async fn a_backup_that_ends_in_the_future_is_marked_and_refuses_confirm() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::new(Arc::new(LocalStorage::new(dir.path())), "main");
        repo.record_identity("7", 15).await.unwrap();
        let now = Utc::now();
        let future: DateTime<Utc> = "2099-01-01T00:00:00Z".parse().unwrap();
        store_backup(&repo, "OLD", now - chrono::Duration::days(3)).await;
        // Within the tolerance: a clock a little ahead is no jump.
        store_backup(&repo, "SOON", now + chrono::Duration::minutes(4)).await;
        store_backup(&repo, "JUMP", future).await;
        let mut settings = Settings::new(
            RepoLocation::Local(dir.path().into()),
            ConnInfo::from_conninfo_and_env(Some("host=/tmp")).unwrap(),
        );
        settings.retention.logical = Some(RetentionPolicy {
            keep_last: 1,
            ..RetentionPolicy::default()
        });

        let plan = plan_expire(&settings, &repo, &ExpireOptions::default())
            .await
            .unwrap();
        assert_eq!(
            plan.future_backups,
            [FutureBackup {
                id: "JUMP".into(),
                kind: BackupKind::Logical,
                end: future
            }]
        );
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["future_backups"][0]["id"], "JUMP", "{json:#}");
        assert_eq!(json["future_backups"][0]["end"], "2099-01-01T00:00:00Z");
        let e = plan.check_confirmable().unwrap_err().to_string();
        for part in [
            "expire --confirm refuses: backup JUMP (ends 2099-01-01 00:00:00 UTC) end(s) more than 5 minutes after now",
            "nothing was deleted",
            "fix: correct the clock of the host that took them, or the manifest's finished_at / physical.stop_time, or remove that backup by hand",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        assert!(!e.contains("SOON"), "{e}");

        // Without it, the plan can be carried out.
        repo.storage()
            .delete("main/backups/JUMP/manifest.json")
            .await
            .unwrap();
        let plan = plan_expire(&settings, &repo, &ExpireOptions::default())
            .await
            .unwrap();
        assert!(plan.future_backups.is_empty());
        plan.check_confirmable().unwrap();
    }
}
